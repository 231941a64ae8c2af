"""``stackcue run``: the daemon. Idle (sensors closed) → a session on ``start`` → idle again on ``stop``.

Why a daemon rather than one session per process: the runner starts, pauses and stops runs from the road
(the phone page, the push button, ``stackcue ctl``), so the process outlives a session. It keeps ONE MQTT
connection (``MqttPublisher``) for all of them: the retained ``state`` and the ``command`` subscription never
blink between runs, and alerts held for the broker survive a stop/start.

Threads. Commands arrive on paho's thread, the button's thread or a test's and only enter the queue
(``service.controls.Controls``). They are applied on the thread that drives the session (``Session.on_tick``,
between two blocks, so a pause never races the pipeline) or, while idle, on the main thread, which waits on
that queue. A block is at most a few tens of ms, so a command is applied well within a second.

``[control] start``: ``command`` waits for a start command; ``now`` starts at once (and again after each stop
only on a command); ``running`` opens the sensors and starts a session when running is detected
(``RunningDetector``). A ``replay`` source always starts at once and the daemon exits when the replay ends, so
``stackcue run --source replay`` behaves as before. SIGTERM and Ctrl-C end the daemon; a running session ends
clean first ("stopped"), and the state becomes ``idle`` before ``offline``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from stackcue.dsp.phrases import phrase
from stackcue.errors import StackcueError

from .controls import SNOOZE, TOGGLE, Command, Controls, Refusal, confirmation, refusal_for, resolve_toggle
from .sdnotify import SdNotify
from .session import EXIT_NOT_CALIBRATED, Session, new_session_id
from .state import StateTracker

log = logging.getLogger("stackcue.control")

IDLE_POLL_S = 0.1


class RunningDetector:
    """Has running begun? From the pelvis accelerometer alone, before any calibration.

    Running's foot strikes swing the specific force by ±1–3 g at 2.5–3 Hz; walking, standing and the
    calibration routine's slow hip hinge stay well below. The standard deviation of |acc| over ``window_s``
    above ``threshold`` in ``windows`` windows in a row (so a few hops do not start a run) is running.
    """

    def __init__(self, window_s: float = 2.0, threshold: float = 4.0, windows: int = 2) -> None:
        self.window_s, self.threshold, self.windows = window_s, threshold, windows
        self._mag: deque[np.ndarray] = deque()
        self._t0: float | None = None
        self._hits = 0

    def feed(self, t: np.ndarray, acc: np.ndarray) -> bool:
        if len(t) == 0:
            return False
        if self._t0 is None:
            self._t0 = float(t[0])
        self._mag.append(np.linalg.norm(acc, axis=1))
        if float(t[-1]) - self._t0 < self.window_s:
            return False
        mag = np.concatenate(self._mag)
        self._mag.clear()
        self._t0 = None
        self._hits = self._hits + 1 if float(np.std(mag)) > self.threshold else 0
        return self._hits >= self.windows


class _SessionNotifier(SdNotify):
    """systemd hears READY and STOPPING from the daemon once; a session only pings the watchdog and sets STATUS."""

    def __init__(self, inner: SdNotify) -> None:
        self.inner = inner
        self.addr = inner.addr
        self.watchdog_s = inner.watchdog_s
        self.sent = inner.sent

    def notify(self, *fields: str) -> None:
        self.inner.notify(*fields)

    def ready(self, status: str = "") -> None:
        if status:
            self.inner.status(status)

    def stopping(self) -> None:
        pass


class _DaemonMqttSink:
    """The publisher as a session's sink; unlike ``MqttSink`` a session's end does not close the connection."""

    name = "mqtt"

    def __init__(self, publisher) -> None:
        self.publisher = publisher

    def handle(self, event: dict) -> None:
        self.publisher.publish_event(event)

    def close(self) -> None:
        pass


class Daemon:
    """The idle → session → idle loop (module docstring). ``open_source()`` opens the configured source."""

    def __init__(
        self,
        cfg: Any,
        open_source: Callable[[], Any],
        *,
        replay: bool,
        jsonl: bool = False,
        notifier: SdNotify | None = None,
        first_source: Any = None,
    ) -> None:
        self.cfg = cfg
        self.open_source = open_source
        self.replay = replay
        self.jsonl = jsonl
        ctl = cfg["control"]
        self.start_mode = "now" if replay else ctl["start"]
        self.controls = Controls(ctl["mute_max_min"])
        from stackcue.firmware_bridge.battery import Battery

        self.tracker = StateTracker(battery=Battery(cfg["battery"]["path"]).level)
        self.notifier = notifier or SdNotify()
        self.exit = threading.Event()
        self.session: Session | None = None
        self.muted_until: float | None = None
        self._first_source = first_source
        self.book = None
        self.outbox = None
        self.button = None
        self.code = 0
        self._setup_storage()
        from .mqtt_publisher import MqttPublisher

        self.publisher = MqttPublisher(
            cfg.mqtt_settings(),
            "",
            outbox=self.outbox,
            on_command=lambda p: self.controls.submit(p, "mqtt"),
            fresh_s=cfg["cue"]["max_age_s"],  # a fresh alert never waits behind older ones
        )
        self.tracker.set(last_session=self._last_session_from_logbook())
        self.autosync = None  # [sync] auto: the hub hears of each ended session in the background (docs/sync.md)
        if self.book is not None:
            from .sync.auto import AutoSync

            if AutoSync.wanted(cfg):
                self.autosync = AutoSync(cfg)

    # ------------------------------------------------------------------ set-up
    def _setup_storage(self) -> None:
        cfg = self.cfg
        if cfg["mqtt"]["outbox"]:
            from .outbox import JsonlOutbox

            try:
                self.outbox = JsonlOutbox(cfg["mqtt"]["outbox"])
            except StackcueError as exc:  # a bad outbox path must not stop the cues: one line, then the logbook's
                log.error("%s; [mqtt] outbox not used", exc)
        if cfg.logbook_path is None:
            return
        from .logbook import Logbook, LogbookOutbox, explain
        from .runlock import run_lock_held

        lb = cfg["logbook"]
        try:
            self.book = Logbook(cfg.logbook_path, int(lb["max_mb"] * 1e6) or None)
            n = self.book.mark_unclean_sessions(  # ours are dead (we hold our lock); another's only if its is free
                cfg.runner_id, held=lambda r: isinstance(r, str) and run_lock_held(r, cfg.logbook_path)
            )
            if n:
                log.warning("logbook: %d earlier session(s) ended uncleanly; kept what they had", n)
        except Exception as exc:  # a bad logbook must not stop the cues (LogbookError, sqlite3, OSError)
            log.error("logbook %s unusable: %s; running without it", cfg.logbook_path, explain(cfg.logbook_path, exc))
            self.book = None
        if self.book is not None and self.outbox is None:
            self.outbox = LogbookOutbox(self.book)

    def _last_session_from_logbook(self) -> dict | None:
        """How this runner's previous session ended, as the logbook says (after marking the unclean ones)."""
        if self.book is None:
            return None
        try:
            rows = self.book.sessions(runner=self.cfg.runner_id)
        except Exception as exc:
            log.warning("logbook: cannot read the last session: %s", exc)
            return None
        if not rows:
            return None
        last = rows[-1]
        how = last.get("ended_how") or "unknown"
        summary = last.get("summary") if isinstance(last.get("summary"), dict) else {}
        if how == "clean" and isinstance(summary.get("ended"), str):
            how = summary["ended"]  # "stopped", "source ended": the words the daemon used
        elif how == "unclean" and not summary:  # the process died with no summary: a pulled battery, kill -9
            how = "power lost"
        return {"id": last["id"], "ended": how}

    def _fading(self, cfg: Any) -> Any:
        """The fading stage of a new session (``dsp.fading``) from this runner's earlier sessions in the logbook;
        stage 1 (every alert cued) without a logbook, or when ``[cue] fading`` (or the coach's target) is off."""
        from stackcue.dsp.fading import PastSession, decide_stage

        p = cfg.pipeline.cue
        rows: list[dict] = []
        if p.fading and self.book is not None:
            try:
                rows = self.book.fading_history(cfg.runner_id)
            except Exception as exc:  # a damaged logbook must not stop the cues: the most feedback then
                log.warning("logbook: cannot read the earlier sessions for faded feedback: %s; every alert cued", exc)
        decision = decide_stage([PastSession(r["alert_fraction"], r["running_s"]) for r in rows], p)
        log.info("cue: fading stage %d: %s", decision.stage, decision.reason)
        return decision

    def _start_button(self) -> None:
        ctl = self.cfg["control"]
        if not ctl["button_pin"]:
            return
        try:
            from stackcue.firmware_bridge.button import GestureButton

            self.button = GestureButton(
                ctl["button_pin"],
                lambda gesture: self.controls.submit(gesture, "button"),
                hold_s=ctl["button_hold_s"],
                double_s=ctl["button_double_s"],
            )
            log.info("control: push button on GPIO %d", ctl["button_pin"])
        except Exception as exc:  # no GPIO here (a laptop), pin busy: the other controls still work
            log.error("control: no push button on GPIO %d: %s", ctl["button_pin"], exc)

    def install_signals(self) -> None:
        """SIGTERM and SIGINT end the daemon: a running session first ends clean."""

        def handler(signum, frame) -> None:
            self.exit.set()
            if self.session is not None:
                self.session.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------ state
    def _publish_state(self, force: bool = False) -> None:
        s = self.session
        if s is not None:
            self.tracker.data_time(s.t_data)
            self.tracker.set(state=s.state, alerts=s.alerts)
        p = self.tracker.update(force)
        if p is not None:
            self.publisher.publish_state(p)

    def _say(self, text: str) -> None:
        """A spoken confirmation: through the session while one runs (logged with it), else straight to MQTT."""
        if self.session is not None:
            self.session.say("control", text)
            return
        ev = {"type": "guide", "t": round(time.time(), 3), "step": "control", "say": text}
        log.info("control: %s", text)
        self.publisher.publish_event(ev)

    # ------------------------------------------------------------------ commands
    def _state(self) -> str:
        return self.session.state if self.session is not None else "idle"

    def _refuse(self, cid: str | None, cmd: str | None, reason: str, source: str) -> None:
        log.warning("control: %s refused (%s%s): %s", cmd or "command", source, f", id {cid}" if cid else "", reason)
        self.tracker.command(cid, cmd, False, reason)
        self._publish_state()

    def _accept(self, c: Command, cmd: str) -> None:
        who = c.source + (f" from {c.sender}" if c.sender and c.sender != c.source else "")
        log.info("control: %s (%s%s)", cmd, who, f", id {c.id}" if c.id else "")
        self.tracker.command(c.id, cmd, True, None)

    def apply(self, item: Command | Refusal) -> Command | None:
        """Apply one command in the current state; returns the accepted ``start`` (only the idle loop acts on it)."""
        if isinstance(item, Refusal):
            self._refuse(item.id, item.cmd, item.reason, item.source)
            return None
        state = self._state()
        if item.cmd == SNOOZE:  # the button's triple press: snooze the cues, or end the snooze under way
            ctl = self.cfg["control"]
            snoozed = self.muted_until is not None and self.muted_until > time.time()
            minutes = 0.0 if snoozed else min(ctl["button_snooze_min"], ctl["mute_max_min"])
            item = Command("mute", item.id, item.sender, minutes, item.source)
        cmd = resolve_toggle(state) if item.cmd == TOGGLE else item.cmd
        reason = refusal_for(cmd, state)
        if reason is not None:
            self._refuse(item.id, cmd, reason, item.source)
            return None
        s = self.session
        if cmd == "start":
            self._accept(item, cmd)
            self._publish_state()
            return Command("start", item.id, item.sender, None, item.source)  # the idle loop starts it
        if cmd == "mute":
            minutes = item.minutes or 0.0
            self.muted_until = round(time.time() + minutes * 60.0, 3) if minutes > 0 else None
            if s is not None:
                # the snooze is the pipeline's (dsp.cue_policy), on the data's clock: alerts marked cue false,
                # cue_skipped "snoozed", and the snooze event stored for `analyze --session` (no "muted" mark)
                s.flush()  # the snooze starts at the newest sample read
                for ev in s.pipeline.snooze(None, minutes * 60.0, item.source):
                    s.emit(ev)
            self.tracker.set(muted_until=self.muted_until)
        elif s is not None:
            if cmd == "pause":
                s.pause()
            elif cmd == "resume":
                s.resume()
            elif cmd == "stop":
                s.stop()
        self._accept(item, cmd)
        self._say(confirmation(Command(cmd, minutes=item.minutes), self.cfg["cue"]["language"]))
        if cmd == "recalibrate" and s is not None:
            s.recalibrate()  # after its confirmation: the routine's instructions follow it
            # where it happened (the last sample fed, exact), so `analyze --session` re-calibrates at that sample
            s.emit({"type": "recalibrate", "t": s.t_data, "segment": s.pipeline.segment})
        self._publish_state()
        return None

    def _output_closed(self) -> None:
        """The reader of stdout went away (``run --jsonl | head -1``): the daemon ends, its session first."""
        self.exit.set()
        if self.session is not None:
            self.session.stop()

    def _tick(self) -> None:
        """Between two blocks of a session: apply what came in, publish the state when due."""
        for item in self.controls.drain():
            self.apply(item)
        self._publish_state()

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        self.install_signals()
        self.publisher.start()
        self._start_button()
        self.notifier.ready("idle")
        self._publish_state(force=True)
        if self.autosync is not None:  # sessions an earlier run (or a hub away) left unsent
            self.autosync.request()
        start: Command | None = Command("start", source="config") if self.start_mode == "now" else None
        try:
            while not self.exit.is_set():
                if start is None:
                    start, source = self._idle()
                    if start is None:
                        break
                else:
                    source = None
                ended = self._session(start, source)
                start = None
                if self.autosync is not None and ended != "not started":
                    self.autosync.request()
                if self.replay and ended == "source ended":
                    break
        finally:
            self.notifier.stopping()
            if self.button is not None:
                self.button.close()
            self.tracker.set(state="idle", session=None)
            self._publish_state(force=True)
            self.publisher.stop()
            if self.autosync is not None:  # a sync under way gets a few seconds, then is cut (and resumes later)
                from .sync.auto import STOP_WAIT_S

                self.autosync.close(STOP_WAIT_S)
            if self.book is not None:
                self.book.close()
        held = self.publisher.held_alerts()
        print(
            f"stackcue run: stopped; MQTT {self.publisher.status}"
            + (f"; {held} alert{'s' if held != 1 else ''} not delivered yet" if held else ""),
            file=sys.stderr,
        )
        if self.code == EXIT_NOT_CALIBRATED:
            print("stackcue run: the source ended before a calibration was accepted; nothing coached", file=sys.stderr)
        return self.code

    def _idle(self) -> tuple[Command | None, Any]:
        """Wait for a start (a command, or running detected); None at the daemon's end."""
        self.tracker.set(state="idle", session=None, last_stride=None, calibration_age_s=None)
        self._publish_state()
        self.notifier.status("idle: waiting for " + ("running or " if self.start_mode == "running" else "") + "a start")
        detector, source = None, None
        if self.start_mode == "running":
            try:
                source = self.open_source()
                detector = RunningDetector()
                log.info("control: waiting for running to begin (or a start command)")
            except StackcueError as exc:
                log.error("control: cannot watch for running: %s; waiting for a start command", exc)
        next_dog = time.monotonic()
        try:
            while not self.exit.is_set():
                item = self.controls.get(timeout=IDLE_POLL_S if detector is None else None)
                if item is not None:
                    start = self.apply(item)
                    if start is not None:
                        return start, source  # the session takes over the watching source, if any
                if detector is not None and source is not None:
                    block = source.read()
                    if block is None:
                        log.warning("control: the source ended while watching for running")
                        source.close()
                        detector = source = None
                    elif len(block) and detector.feed(block.t, block.acc):
                        log.info("control: running detected; starting a session")
                        return Command("start", source="running"), source
                self._publish_state()
                now = time.monotonic()
                if self.notifier.watchdog_s and now >= next_dog:
                    self.notifier.watchdog()
                    next_dog = now + self.notifier.watchdog_s / 2
            return None, None
        finally:
            if source is not None and self.exit.is_set():
                source.close()

    def _session(self, start: Command, source: Any = None) -> str:
        """One session from ``start`` to its end; returns how it ended ("stopped", "source ended")."""
        from stackcue.dsp.cue_policy import CuePlan
        from stackcue.dsp.pipeline import Pipeline

        from .record import clock_synchronised
        from .sinks import LogSink, WithoutPreviews
        from .sync.targets import session_config

        cfg, stored_config = session_config(self.cfg)  # the coach's targets from the last sync, if any
        fading = self._fading(cfg)
        if source is None:
            source = self._first_source
            self._first_source = None
        if source is None:
            try:
                source = self.open_source()
            except StackcueError as exc:
                self._refuse(start.id, "start", f"cannot open the sensors: {exc}", start.source)
                return "not started"
        started = time.time()
        sid = new_session_id(started)
        self.publisher.set_session(sid)
        # `| head -1`: the end; previews go to MQTT only (as analyze prints them only with --provisional)
        sinks: list = [WithoutPreviews(LogSink(json_lines=self.jsonl, on_closed=self._output_closed))]
        book_sink = None
        if self.book is not None:
            from .logbook import LogbookSink

            lb = cfg["logbook"]
            book_sink = LogbookSink(
                cfg.logbook_path,
                config=stored_config,
                flush_s=lb["flush_s"],
                max_bytes=int(lb["max_mb"] * 1e6) or None,
            )
            sinks.append(WithoutPreviews(book_sink))  # a preview is published live, never stored
        sinks.append(_DaemonMqttSink(self.publisher))

        def held(summary: dict) -> None:  # how many alerts wait for the next start (after a short wait for acks)
            summary["alerts_held"] = self.publisher.settle(session.alerts, 1.0)

        session = Session(
            source,
            Pipeline(  # previews for continuous cues; the fading stage decided from the earlier sessions
                cfg.pipeline, strict_calibration=False, provisional=True, cue_plan=CuePlan(stage=fading.stage)
            ),
            sinks,
            runner_id=cfg.runner_id,
            session_id=sid,
            started_epoch=started,
            cue_owner=cfg["cue"]["owner"],
            sensor_lost_s=cfg["source"]["sensor_lost_s"],
            clock_synchronised=clock_synchronised(),
            block_sinks=(book_sink,) if (book_sink is not None and cfg["logbook"]["raw"]) else (),
            on_summary=held,
            notifier=_SessionNotifier(self.notifier),
            on_event=self.tracker.on_event,
            on_tick=self._tick,
        )
        if self.muted_until is not None and self.muted_until > started:  # snoozed while idle: from the first sample
            session.pipeline.snooze(None, self.muted_until - started, "mute")
        session.language = cfg["cue"]["language"]
        session.cue_style = cfg["cue"]["style"]
        self.tracker.set(session=sid, alerts=0, state="calibrating")
        if self.exit.is_set():  # SIGTERM while the sensors were being opened: no session to keep
            source.close()
            return "not started"
        self.session = session
        if self.exit.is_set():  # the signal came between the check and here
            session.stop()
        if start.source != "config":  # a start the runner asked for (or running detected): confirmed aloud
            session.first_words = phrase(cfg["cue"]["language"], "control.start")
        if self.book is not None:  # with the session, so its report and `analyze --session` use this stage
            try:
                self.book.set_cue_plan(sid, cfg.runner_id, fading.as_dict(), started)
            except Exception as exc:  # the cues go on at the stage decided
                log.warning("logbook: the fading stage of session %s not stored: %s", sid, exc)
        try:
            code = session.run()
        finally:
            self.session = None
        self.tracker.set(last_session={"id": sid, "ended": session.ended}, state="idle", session=None)
        self._publish_state()
        print(
            f"stackcue run: session {sid} ended; MQTT {self.publisher.status}; {self.publisher.held_line()}",
            file=sys.stderr,
        )
        if code == EXIT_NOT_CALIBRATED and self.replay:
            self.code = code
        return session.ended


def run_daemon(args) -> int:
    """``stackcue run`` (the caller holds the runner's run lock)."""
    from .cli import open_live_source
    from .config import load_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    cfg = load_config(args.config)
    src = cfg["source"]
    kind = args.source or src["kind"]
    path, speed = args.path or src["path"], args.speed or src["speed"]

    def open_source():
        return open_live_source(cfg, kind, path, speed)

    replay = kind == "replay"
    first = open_source() if replay else None  # a wrong path is the one-line error it always was, before MQTT
    daemon = Daemon(cfg, open_source, replay=replay, jsonl=args.jsonl, first_source=first)
    return daemon.run()
