"""Event sinks of the live service, each on its own thread so none can block the pipeline.

Modelled on python-can's Notifier/Listener: the daemon hands every event to
every sink's queue and moves on; a sink that raises is reported and retried
with backoff, and never stops the others; ``stop()`` lets each sink flush.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .mqtt_publisher import MqttPublisher

log = logging.getLogger("stackcue.sinks")

#: the event types that are a preview (docs/formats.md, stride_provisional): published live, never stored
PREVIEWS = frozenset({"stride_provisional"})
#: what a full queue drops first, oldest first: previews, then stride telemetry; never an alert or another event
_DROPPABLE = (PREVIEWS, frozenset({"stride"}))


class Sink(Protocol):
    name: str

    def handle(self, event: dict) -> None: ...

    def close(self) -> None: ...


class SinkWorker:
    """One sink, one ordered queue, one thread.

    ``put`` never blocks. The queue keeps event order; when it is full the
    oldest preview (``stride_provisional``), else the oldest stride (telemetry) in it is dropped, never an
    alert or another event. A failing event is retried with backoff; a sink that keeps
    failing (``degraded``) gets one attempt an event, so it cannot fall
    ever further behind.
    """

    def __init__(self, sink: Sink, maxsize: int = 1000, retries: int = 3, degrade_after: int = 10) -> None:
        self.sink = sink
        self.maxsize = maxsize
        self.retries = retries
        self.degrade_after = degrade_after
        self.failures = 0
        self.consecutive = 0
        self.dropped = 0
        self.last_error = ""
        self._q: deque[dict] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        self._thread.start()

    @property
    def degraded(self) -> bool:
        return self.consecutive >= self.degrade_after

    def put(self, event: dict) -> None:
        with self._cond:
            if len(self._q) >= self.maxsize:
                for types in _DROPPABLE:
                    i = next((i for i, old in enumerate(self._q) if old.get("type") in types), None)
                    if i is not None:
                        del self._q[i]
                        self.dropped += 1
                        break
            self._q.append(event)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._q and not self._stop:
                    self._cond.wait(0.5)
                if not self._q:
                    return
                ev = self._q.popleft()
            delay = 0.05
            tries = 1 if self.degraded else self.retries + 1
            for attempt in range(tries):
                try:
                    self.sink.handle(ev)
                    self.consecutive = 0
                    break
                except Exception as exc:  # a failing sink is reported and retried, never fatal
                    self.failures += 1
                    self.consecutive += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("sink %s failed (%s), attempt %d", self.sink.name, self.last_error, attempt + 1)
                    if attempt + 1 < tries:
                        time.sleep(delay)
                        delay *= 2

    def stop(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
        try:
            self.sink.close()
        except Exception as exc:
            log.warning("sink %s did not close cleanly: %s", self.sink.name, exc)


class LogSink:
    """Human log lines for what matters (alerts, calibration, the runner's state); strides every 30 s."""

    name = "log"

    def __init__(
        self,
        stream: IO[str] | None = None,
        json_lines: bool = False,
        on_closed: Callable[[], object] | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self.on_closed = on_closed  # told once when the reader went away (``run --jsonl | head -1``)
        self.closed = False
        self._last_stride = -1e9

    def _write(self, text: str) -> None:
        """Write and flush; a reader that went away (a closed pipe) ends the output quietly, once."""
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            with contextlib.suppress(OSError, ValueError):  # the exit's flush of what is buffered goes nowhere
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)
            log.info("log: the output was closed (broken pipe); ending the session")
            if self.on_closed is not None:
                self.on_closed()

    def handle(self, event: dict) -> None:
        if self.json_lines:
            self._write(json.dumps(event, separators=(",", ":")) + "\n")
            return
        from .report_text import KIND_NAMES, clock

        et = event.get("type")
        t = event.get("t", event.get("t_start", 0.0)) or 0.0
        line = None
        if et == "alert":
            line = (
                f"ALERT {KIND_NAMES.get(event['kind'], event['kind'])} {event['value_deg']:+.1f}° "
                f"(threshold {event['threshold_deg']:+.1f}°)" + (" reminder" if event.get("reminder") else "")
            )
        elif et == "clear":
            line = f"clear {KIND_NAMES.get(event['kind'], event['kind'])}"
        elif et == "calibration":
            line = "calibration accepted" if event.get("ok") else f"calibration refused: {event.get('reason')}"
        elif et == "trunk_missing":
            line = f"no trunk figures: {event.get('reason')}"
        elif et in ("guide", "sensor", "calibration_suspect"):
            line = event.get("say") or event.get("reason") or json.dumps(event)
        elif et == "gap":
            line = f"gap {event['t_end'] - event['t_start']:.2f} s"
        elif et == "stride" and t - self._last_stride >= 30:
            self._last_stride = t
            tilt = event.get("pelvic_tilt_deg")
            stack = event.get("stack_deg")
            line = f"running {event.get('cadence_spm')} spm, tilt {tilt:+.1f}°" + (
                f", stack {stack:+.1f}°" if stack is not None else ""
            )
        elif et == "summary":
            line = f"session ended: {event.get('strides')} strides, {event.get('alerts')} alerts"
            if event.get("alerts_held"):
                line += f", {event['alerts_held']} held for the next start"
        if line:
            self._write(f"{clock(t):>9}  {line}\n")

    def close(self) -> None:
        try:
            self.stream.flush()
        except Exception:
            pass


class WithoutPreviews:
    """A sink that keeps a record (the logbook) sees everything but the previews: a preview is superseded by
    its final stride, so storing it would only double the strides."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.name = sink.name

    def handle(self, event: dict) -> None:
        if event.get("type") not in PREVIEWS:
            self.sink.handle(event)

    def close(self) -> None:
        self.sink.close()


class MqttSink:
    """The MQTT publisher as a sink (its publish never blocks; its own threads do the network)."""

    name = "mqtt"

    def __init__(self, publisher: MqttPublisher) -> None:
        self.publisher = publisher

    def handle(self, event: dict) -> None:
        self.publisher.publish_event(event)

    def close(self) -> None:
        self.publisher.stop(timeout=1.2)
