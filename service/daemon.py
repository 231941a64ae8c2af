"""``stackcue run``: source → pipeline → sinks, for as long as the runner runs.

The main thread reads the source and feeds the pipeline; every event goes to
every sink's own thread (MQTT, log, later the logbook), so nothing the
outside world does can stall the pipeline. The runner hears about the system
too: calibration steps, calibration accepted or refused (and to try again),
sensor lost and back. SIGTERM/SIGINT end the session: the summary and
``offline`` are published, sinks flush, exit 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable

from stackcue.dsp.pipeline import Pipeline
from stackcue.firmware_bridge.source import Source

from .sdnotify import SdNotify
from .sinks import Sink, SinkWorker

log = logging.getLogger("stackcue.daemon")

SAY_START = ("Stand tall and still for three seconds. Then bow forward from the hips and come back up. "
             "Then stand still for two seconds.")
SAY_OK = "Calibrated. Off you go."
SAY_LOST = "Sensor lost."
SAY_BACK = "Sensor back."


def short_reason(reason: str) -> str:
    """The part of a refusal worth saying aloud."""
    return reason.split(":")[0].split("(")[0].strip()


class Daemon:
    """One live session. ``run()`` returns the exit status."""

    def __init__(self, source: Source, pipeline: Pipeline, sinks: list[Sink], *, runner_id: str,
                 cue_owner: str = "pi", notifier: SdNotify | None = None, sensor_lost_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 clock_synchronised: str = "unknown", block_sinks: tuple = ()) -> None:
        self.source = source
        self.pipeline = pipeline
        self.workers = [SinkWorker(s) for s in sinks]
        self.block_sinks = list(block_sinks)  # also take raw blocks (the logbook): their add_block only queues
        self.runner_id = runner_id
        self.cue_owner = cue_owner
        self.notifier = notifier or SdNotify()
        self.sensor_lost_s = sensor_lost_s
        self.clock, self.wall = clock, wall
        self.session_id = f"{dt.datetime.fromtimestamp(wall(), dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        self.started_epoch = wall()
        self.clock_synchronised = clock_synchronised
        self.stop_event = threading.Event()
        self.t_data = 0.0  # the source's time of the newest sample
        self.events = 0
        self.alerts = 0
        self.calibrated = False

    # --------------------------------------------------------------- outputs
    def emit(self, event: dict) -> None:
        self.events += 1
        if event.get("type") == "alert":
            self.alerts += 1
        for w in self.workers:
            w.put(event)

    def say(self, step: str, text: str, t: float | None = None) -> None:
        self.emit({"type": "guide", "t": round(self.t_data if t is None else t, 3), "step": step, "say": text})

    # --------------------------------------------------------------- run
    def install_signals(self) -> None:
        def handler(signum, frame):
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        self.emit({"type": "session", "t": 0.0, "state": "started", "session": self.session_id,
                   "runner": self.runner_id, "started_epoch": round(self.started_epoch, 3),
                   "clock_synchronised": self.clock_synchronised, "cue_owner": self.cue_owner,
                   "source": dict(self.source.meta)})
        self.say("calibrate", SAY_START, 0.0)
        self.notifier.ready("calibrating")
        next_dog = self.clock()
        last_data = self.clock()
        lost = False
        ended = "stopped"
        try:
            while not self.stop_event.is_set():
                block = self.source.read()
                now = self.clock()
                if block is None:
                    ended = "source ended"
                    break
                if len(block):
                    for bs in self.block_sinks:
                        bs.add_block(block)
                    self.t_data = float(block.t[-1])
                    last_data = now
                    if lost:
                        lost = False
                        self.emit({"type": "sensor", "t": round(self.t_data, 3), "state": "back", "say": SAY_BACK})
                    for ev in self.pipeline.feed(block):
                        self._on_event(ev)
                elif not lost and now - last_data > self.sensor_lost_s:
                    lost = True
                    status = getattr(self.source, "status", "")
                    self.emit({"type": "sensor", "t": round(self.t_data, 3), "state": "lost", "say": SAY_LOST,
                               "reason": status})
                if self.notifier.watchdog_s and now >= next_dog:
                    self.notifier.watchdog()
                    next_dog = now + self.notifier.watchdog_s / 2
                    self.notifier.status(self._status_line(lost))
        finally:
            self.notifier.stopping()
            self._finish(ended)
        return 0

    def _status_line(self, lost: bool) -> str:
        if lost:
            return "sensor lost"
        if not self.calibrated:
            return "calibrating"
        return f"coaching: {self.alerts} alerts, t={self.t_data:.0f} s"

    def _on_event(self, ev: dict) -> None:
        if ev.get("type") == "calibration":
            if ev.get("ok"):
                self.calibrated = True
                self.emit(ev)
                self.say("calibrated", SAY_OK, ev.get("t"))
                self.notifier.status("coaching")
                return
            self.emit(ev)
            self.say("calibrate", f"Calibration not accepted: {short_reason(ev.get('reason', ''))}. "
                     "Stand still and try again.", ev.get("t"))
            return
        self.emit(ev)

    def _finish(self, why: str) -> None:
        try:
            for ev in self.pipeline.finish():
                if ev.get("type") == "summary":
                    ev.update(session=self.session_id, runner=self.runner_id, ended=why,
                              started_epoch=round(self.started_epoch, 3),
                              clock_synchronised=self.clock_synchronised)
                    stats = getattr(self.source, "stats", None)
                    if isinstance(stats, dict):
                        ev["source_stats"] = stats  # per segment: lost samples, bad packets, reconnects ...
                self._on_event(ev)
        except Exception as exc:  # e.g. a run that never calibrated: still close cleanly
            log.warning("session ended without a summary: %s", exc)
            self.emit({"type": "summary", "session": self.session_id, "runner": self.runner_id, "ended": why,
                       "calibrated": False, "strides": 0, "alerts": self.alerts, "reason": str(exc)})
        deadline = time.monotonic() + 1.5
        for w in self.workers:
            w.stop(max(0.1, deadline - time.monotonic()))
        try:
            self.source.close()
        except Exception as exc:
            log.warning("source did not close cleanly: %s", exc)
