"""The one session driver: source → pipeline → sinks, live (``run``) and offline (``analyze``, ``import``).

Live and offline differ only where a runner is listening. A live session
hands every event to each sink's own thread (nothing outside can stall the
pipeline), guides the runner through calibration, notices a lost sensor,
keeps systemd's watchdog fed and must never crash: a run that never
calibrated still ends with a summary. An offline session is a replay at
unlimited speed: sinks are called in turn on the caller's thread, and a
mistake in the data (no calibration) is raised as the one-line error it is.

The session id is made here once (``new_session_id``), from the start time
and either a random suffix (a live run) or a digest of what was replayed (a
stored recording: storing the same file twice gives the same id).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stackcue.dsp.phrases import phrase, refusal_phrase
from stackcue.dsp.pipeline import Pipeline
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import concat_blocks
from stackcue.firmware_bridge.source import Source

from .sdnotify import SdNotify
from .sinks import Sink, SinkWorker

log = logging.getLogger("stackcue.session")

# the English phrases (every language's: ``dsp.phrases``; a session speaks ``Session.language``)
#: s of samples a live pipeline call takes (the sources read every 20–50 ms; see Session's feed_s)
FEED_S = 0.1
SAY_START = phrase("en", "calibrate_start")
SAY_OK = phrase("en", "calibrated")
SAY_LOST = phrase("en", "sensor_lost")
SAY_BACK = phrase("en", "sensor_back")


def new_session_id(started_epoch: float, key: str | None = None) -> str:
    """``20261204T155133Z-1a2b3c``: the UTC start, then a digest of ``key`` (stable) or a random suffix."""
    raw = None if key is None else key.encode("utf-8", "surrogateescape")  # a file name need not be UTF-8
    suffix = hashlib.sha1(raw).hexdigest()[:6] if raw is not None else uuid.uuid4().hex[:6]
    try:
        d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=started_epoch)
        when = f"{d.year:04d}{d:%m%dT%H%M%SZ}"  # a four-digit year even for year 1 (a clock never set)
    except (OverflowError, ValueError):  # before year 1 or after 9999 (or NaN): no date to write
        when = "00000000T000000Z"
    return f"{when}-{suffix}"


def short_reason(reason: str) -> str:
    """The part of a calibration refusal worth saying aloud."""
    return reason.split(":")[0].split("(")[0].strip()


class BlocksSource(Source):
    """Blocks from anywhere (a logbook session's raw chunks, arrays in a test) as a source."""

    def __init__(self, blocks: Iterable[Block], meta: dict[str, str] | None = None) -> None:
        super().__init__()
        self._blocks = iter(blocks)
        self.meta = dict(meta or {})

    def _read_block(self) -> Block | None:
        return next(self._blocks, None)


class _Inline:
    """An offline sink: called in turn on the driver's thread (a replay has no runner to keep waiting)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def put(self, event: dict) -> None:
        self.sink.handle(event)

    def stop(self, timeout: float = 0.0) -> None:
        self.sink.close()


EXIT_NOT_CALIBRATED = 3  # a live run whose source ended before any calibration was accepted


class Session:
    """One session. ``run()`` drives it to the source's end (or ``stop()``) and returns the exit status.

    ``sinks`` get every event; ``block_sinks`` also get every raw block (the logbook: its ``add_block``
    only queues). ``on_block`` sees each block after the pipeline (progress bars); ``on_summary`` may add
    facts to the summary event before the sinks see it (the rows a file reader rejected). ``on_tick`` runs
    between two blocks on the driver's thread: the daemon applies the run's controls there (``pause``,
    ``resume``, ``recalibrate``, ``stop``), so they never race the pipeline; ``on_event`` sees every event
    before the sinks (the daemon's state topic).
    """

    def __init__(
        self,
        source: Source,
        pipeline: Pipeline,
        sinks: Sequence[Sink],
        *,
        runner_id: str,
        live: bool = True,
        session_id: str | None = None,
        started_epoch: float | None = None,
        clock_synchronised: str = "unknown",
        cue_owner: str = "pi",
        origin: str | None = None,
        block_sinks: Sequence[Any] = (),
        notifier: SdNotify | None = None,
        sensor_lost_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_block: Callable[[Block], None] | None = None,
        on_summary: Callable[[dict], None] | None = None,
        on_event: Callable[[dict], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        feed_s: float | None = None,
    ) -> None:
        self.source = source
        # live, the pipeline is fed about FEED_S of samples at a time (a source reads every 20–50 ms): its cost is
        # mostly per call (issue 18: 1.4 % of a core at 50 ms, 0.8 % at 0.1 s), and a preview comes 0.05 s later
        self.feed_s = (FEED_S if live else 0.0) if feed_s is None else feed_s
        self._held: list[Block] = []
        self.pipeline = pipeline
        self.live = live
        self.workers: list[SinkWorker | _Inline] = [SinkWorker(s) if live else _Inline(s) for s in sinks]
        self.block_sinks = list(block_sinks)
        self.runner_id = runner_id
        self.cue_owner = cue_owner
        self.origin = origin
        self.notifier = notifier or SdNotify()
        self.sensor_lost_s = sensor_lost_s
        self.clock = clock
        self.started_epoch = wall() if started_epoch is None else started_epoch
        self.session_id = session_id or new_session_id(self.started_epoch)
        self.clock_synchronised = clock_synchronised
        self.on_block, self.on_summary = on_block, on_summary
        self.on_event, self.on_tick = on_event, on_tick
        self.wall = wall
        self.stop_event = threading.Event()
        self.t_data = 0.0  # the source's time of the newest sample analysed
        self.t_read = 0.0  # ... and of the newest read (also while paused)
        self.events = 0
        self.alerts = 0
        self.calibrated = False  # a calibration was accepted in this session (any segment)
        self.searching = True  # looking for the calibration routine (at the start, after ``recalibrate``)
        self.paused = False
        self.lost = False
        self.muted_until: float | None = None  # epoch s: alerts until then are marked "muted" (not cued)
        self.dropped = 0  # samples read while paused: neither analysed nor kept
        self._resume_pending = False  # the pipeline resumes at the first sample after the resume
        self.first_words: str | None = None  # said right after the session event (the daemon's "Starting.")
        self.language = "en"  # [cue] language: what the guide and sensor events say (dsp.phrases)
        self.cue_style: str | None = None  # [cue] style after the coach's targets: told in the session event
        self.ended = ""

    # --------------------------------------------------------------- outputs
    def emit(self, event: dict) -> None:
        self.events += 1
        if event.get("type") == "alert":
            self.alerts += 1
            if self.muted_until is not None and self.wall() < self.muted_until:
                event = {**event, "muted": True}
        if self.on_event is not None:
            self.on_event(event)
        for w in self.workers:
            w.put(event)

    def say(self, step: str, text: str, t: float | None = None) -> None:
        if self.live:  # offline nobody is listening
            self.emit({"type": "guide", "t": round(self.t_data if t is None else t, 3), "step": step, "say": text})

    # --------------------------------------------------------------- control
    def stop(self) -> None:
        """End the session at the next block (any thread, or a signal handler)."""
        self.stop_event.set()

    @property
    def state(self) -> str:
        """What the run is doing: calibrating, running, paused or sensor_lost (the state topic's words)."""
        if self.paused:
            return "paused"
        if self.lost:
            return "sensor_lost"
        return "calibrating" if self.searching else "running"

    # The run's controls. Call them on the driver's thread only (``on_tick``): they touch the pipeline.
    def flush(self) -> None:
        """Feed the pipeline the samples held for the next feed (before a control acts at the newest sample)."""
        if not self._held:
            return
        held, self._held = self._held, []
        block = held[0] if len(held) == 1 else concat_blocks(held, held[0].has_trunk)
        for ev in self.pipeline.feed(block):
            self._on_event(ev)

    def _hold(self, block: Block) -> None:
        if self._held and self._held[0].has_trunk != block.has_trunk:
            self.flush()
        self._held.append(block)
        if float(block.t[-1]) - float(self._held[0].t[0]) >= 0.9 * self.feed_s:
            self.flush()

    def pause(self) -> None:
        """Stop analysing and keeping samples from the newest one on (a traffic light); ``resume`` goes on."""
        if self.paused:
            return
        self.flush()
        self.paused = True
        for ev in self.pipeline.pause(self.t_data):
            self._on_event(ev)

    @property
    def _back(self) -> str:
        return phrase(self.language, "sensor_back")

    def resume(self) -> None:
        """Analyse again from the next sample read (the pipeline learns the pause's end from its time)."""
        if self.paused:
            self.paused = False
            self._resume_pending = True

    def recalibrate(self) -> None:
        """Look for the calibration routine again (a new calibration segment); a paused run resumes for it."""
        self.flush()
        for ev in self.pipeline.recalibrate(self.t_data):
            self._on_event(ev)
        self.searching = True
        self.resume()
        self.say("calibrate", phrase(self.language, "calibrate_start"))

    def install_signals(self) -> None:
        """SIGTERM and SIGINT end the session cleanly (systemd's stop, Ctrl-C)."""
        signal.signal(signal.SIGTERM, lambda signum, frame: self.stop())
        signal.signal(signal.SIGINT, lambda signum, frame: self.stop())

    # --------------------------------------------------------------- run
    def run(self) -> int:
        start = {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": self.session_id,
            "runner": self.runner_id,
            "started_epoch": round(self.started_epoch, 3),
            "clock_synchronised": self.clock_synchronised,
        }
        if self.origin is not None:
            start["origin"] = self.origin
        if self.live:
            start["cue_owner"] = self.cue_owner
            start["cue_language"] = self.language
            if self.cue_style is not None:  # the cue client and the phone follow the session's style
                start["cue_style"] = self.cue_style
        start["source"] = dict(self.source.meta)
        self.emit(start)
        if self.first_words:
            self.say("control", self.first_words, 0.0)
        self.say("calibrate", phrase(self.language, "calibrate_start"), 0.0)
        if self.live:
            self.notifier.ready("calibrating")
        next_dog = last_data = self.clock()
        ended = "stopped"
        try:
            while not self.stop_event.is_set():
                if self.on_tick is not None:  # the daemon applies commands here, between blocks
                    self.on_tick()
                    if self.stop_event.is_set():
                        break
                block = self.source.read()
                now = self.clock() if self.live else 0.0
                if block is None:
                    ended = "source ended"
                    break
                if len(block) and self.paused:  # read and dropped: neither analysed nor kept
                    self.dropped += len(block)
                    self.t_read = float(block.t[-1])
                    last_data = now
                    if self.lost:
                        self.lost = False
                        self.emit({"type": "sensor", "t": round(self.t_data, 3), "state": "back", "say": self._back})
                elif len(block):
                    if self._resume_pending:
                        self._resume_pending = False
                        for ev in self.pipeline.resume(float(block.t[0])):
                            self._on_event(ev)
                    for bs in self.block_sinks:
                        bs.add_block(block)
                    self.t_data = self.t_read = float(block.t[-1])
                    last_data = now
                    if self.lost:
                        self.lost = False
                        self.emit({"type": "sensor", "t": round(self.t_data, 3), "state": "back", "say": self._back})
                    self._hold(block)
                    if self.on_block:
                        self.on_block(block)
                else:
                    self.flush()  # nothing more to read now: what is held is analysed at once
                if not len(block) and self.live and not self.lost and now - last_data > self.sensor_lost_s:
                    self.lost = True
                    self.emit(
                        {
                            "type": "sensor",
                            "t": round(self.t_data, 3),
                            "state": "lost",
                            "say": phrase(self.language, "sensor_lost"),
                            "reason": self.source.status,
                        }
                    )
                if self.live and self.notifier.watchdog_s and now >= next_dog:
                    self.notifier.watchdog()
                    next_dog = now + self.notifier.watchdog_s / 2
                    self.notifier.status(self._status_line(self.lost))
        except BaseException:
            if not self.live:
                self._close(ended)  # offline: the error is the caller's to print; the sinks still close
            raise
        finally:
            if self.live:
                self.notifier.stopping()
                self._finish(ended)
        if not self.live:
            self._finish(ended)
        if self.live and ended == "source ended" and not self.calibrated:
            # nothing was coached and no one asked it to stop: a failure for the caller (the summary says why)
            return EXIT_NOT_CALIBRATED
        return 0

    def _status_line(self, lost: bool) -> str:
        if self.paused:
            return "paused"
        if lost:
            return "sensor lost"
        if not self.calibrated:
            return "calibrating"
        return f"coaching: {self.alerts} alerts, t={self.t_data:.0f} s"

    def _on_event(self, ev: dict) -> None:
        if ev.get("type") == "calibration":
            self.emit(ev)
            if ev.get("ok"):
                self.calibrated = True
                self.searching = False
                self.say("calibrated", phrase(self.language, "calibrated"), ev.get("t"))
                if self.live:
                    self.notifier.status("coaching")
            else:
                self.say("calibrate", refusal_phrase(self.language, str(ev.get("reason", ""))), ev.get("t"))
            return
        self.emit(ev)

    def _summarise(self, ev: dict, why: str) -> None:
        if self.live:  # who and how it ended: a live summary is read without its session event at hand
            ev.update(
                session=self.session_id,
                runner=self.runner_id,
                ended=why,
                started_epoch=round(self.started_epoch, 3),
                clock_synchronised=self.clock_synchronised,
            )
        stats = self.source.stats
        if stats is not None:
            ev["source_stats"] = stats  # per segment: lost samples, bad packets, reconnects ...
        if self.on_summary:
            self.on_summary(ev)

    def _finish(self, why: str) -> None:
        try:
            self.flush()
            if self.paused or self._resume_pending:  # stopped while paused: the pause lasted to the end
                for ev in self.pipeline.resume(self.t_read):
                    self._on_event(ev)
            for ev in self.pipeline.finish():
                if ev.get("type") == "summary":
                    self._summarise(ev, why)
                self._on_event(ev)
        except Exception as exc:
            if not self.live:
                self._close(why)
                raise
            # a live run that never calibrated still closes cleanly, with what it knows
            log.warning("session ended without a summary: %s", exc)
            self.emit(
                {
                    "type": "summary",
                    "session": self.session_id,
                    "runner": self.runner_id,
                    "ended": why,
                    "calibrated": False,
                    "strides": 0,
                    "alerts": self.alerts,
                    "reason": str(exc),
                }
            )
        self._close(why)

    def _close(self, why: str) -> None:
        self.ended = why
        deadline = time.monotonic() + 1.5
        for w in self.workers:
            w.stop(max(0.1, deadline - time.monotonic()))
        self.workers = []
        try:
            self.source.close()
        except Exception as exc:
            log.warning("source did not close cleanly: %s", exc)
