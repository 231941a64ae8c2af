"""Event sinks of the live service, each on its own thread so none can block the pipeline.

Modelled on python-can's Notifier/Listener: the daemon hands every event to
every sink's queue and moves on; a sink that raises is reported and retried
with backoff, and never stops the others; ``stop()`` lets each sink flush.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import IO, Protocol

log = logging.getLogger("stackcue.sinks")


class Sink(Protocol):
    name: str

    def handle(self, event: dict) -> None: ...

    def close(self) -> None: ...


class SinkWorker:
    """One sink, one bounded queue, one thread. Telemetry (strides) is dropped oldest-first when full;
    other events wait in an unbounded side queue so none is ever dropped."""

    def __init__(self, sink: Sink, maxsize: int = 1000, retries: int = 3) -> None:
        self.sink = sink
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.important: queue.SimpleQueue = queue.SimpleQueue()
        self.retries = retries
        self.failures = 0
        self.dropped = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        self._thread.start()

    def put(self, event: dict) -> None:
        if event.get("type") != "stride":
            self.important.put(event)
            self.q.put_nowait(None) if not self.q.full() else None  # wake the thread
            return
        while True:
            try:
                self.q.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _next(self) -> dict | None:
        try:
            return self.important.get_nowait()
        except queue.Empty:
            pass
        try:
            return self.q.get(timeout=0.1)
        except queue.Empty:
            return None

    def _run(self) -> None:
        while True:
            ev = self._next()
            if ev is None:
                if self._stop.is_set() and self.important.empty() and self.q.empty():
                    return
                continue
            delay = 0.05
            for attempt in range(self.retries + 1):
                try:
                    self.sink.handle(ev)
                    break
                except Exception as exc:  # a failing sink is reported and retried, never fatal
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("sink %s failed (%s), attempt %d", self.sink.name, self.last_error, attempt + 1)
                    if attempt < self.retries:
                        time.sleep(delay)
                        delay *= 2

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        try:
            self.sink.close()
        except Exception as exc:
            log.warning("sink %s did not close cleanly: %s", self.sink.name, exc)


class LogSink:
    """Human log lines for what matters (alerts, calibration, the runner's state); strides every 30 s."""

    name = "log"

    def __init__(self, stream: IO[str] | None = None, json_lines: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self._last_stride = -1e9

    def handle(self, event: dict) -> None:
        if self.json_lines:
            self.stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.stream.flush()
            return
        from .report_text import KIND_NAMES, clock

        et = event.get("type")
        t = event.get("t", event.get("t_start", 0.0)) or 0.0
        line = None
        if et == "alert":
            line = (f"ALERT {KIND_NAMES.get(event['kind'], event['kind'])} {event['value_deg']:+.1f}° "
                    f"(threshold {event['threshold_deg']:+.1f}°)" + (" reminder" if event.get("reminder") else ""))
        elif et == "clear":
            line = f"clear {KIND_NAMES.get(event['kind'], event['kind'])}"
        elif et == "calibration":
            line = ("calibration accepted" if event.get("ok") else f"calibration refused: {event.get('reason')}")
        elif et in ("guide", "sensor", "calibration_suspect"):
            line = event.get("say") or event.get("reason") or json.dumps(event)
        elif et == "gap":
            line = f"gap {event['t_end'] - event['t_start']:.2f} s"
        elif et == "stride" and t - self._last_stride >= 30:
            self._last_stride = t
            tilt = event.get("pelvic_tilt_deg")
            stack = event.get("stack_deg")
            line = (f"running {event.get('cadence_spm')} spm, tilt {tilt:+.1f}°"
                    + (f", stack {stack:+.1f}°" if stack is not None else ""))
        elif et == "summary":
            line = f"session ended: {event.get('strides')} strides, {event.get('alerts')} alerts"
        if line:
            self.stream.write(f"{clock(t):>9}  {line}\n")
            self.stream.flush()

    def close(self) -> None:
        try:
            self.stream.flush()
        except Exception:
            pass


class MqttSink:
    """The MQTT publisher as a sink (its publish never blocks; its own threads do the network)."""

    name = "mqtt"

    def __init__(self, publisher) -> None:
        self.publisher = publisher

    def handle(self, event: dict) -> None:
        self.publisher.publish_event(event)

    def close(self) -> None:
        self.publisher.stop(timeout=1.2)
