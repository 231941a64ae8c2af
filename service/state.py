"""The daemon's retained ``<prefix>/state``: what a page opened mid-run needs to know at once.

Retained, so a phone that connects (or reconnects) gets the current state without waiting for an event.
``StateTracker`` builds the payload (docs/mqtt.md) from what the daemon knows and decides when to send it:
at once when something a reader acts on changed (the state, the session, the alert count, the mute, a command's
answer, the previous session), otherwise at most once a second while a session runs (the last stride, the
calibration's age). It only decides: the caller publishes what ``update`` returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

THROTTLE_S = 1.0
STRIDE_FIELDS = ("pelvic_tilt_deg", "stack_deg", "cadence_spm")
#: the fields whose change is published at once (the rest waits for the 1 s throttle)
EVENTFUL = ("state", "session", "alerts", "muted_until", "last_command", "last_session", "battery_pct")


def _r(x: Any, nd: int = 2) -> Any:
    return round(x, nd) if isinstance(x, float) else x


class StateTracker:
    """The state payload and its throttle. Thread-safe; ``wall`` is the epoch clock, ``clock`` the monotonic one."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        throttle_s: float = THROTTLE_S,
        battery: Callable[[], int | None] | None = None,
    ) -> None:
        """``battery``: the level in percent or None (``firmware_bridge.battery.Battery.level``, which reads
        sysfs at most every 30 s); asked at every payload."""
        self.wall = wall
        self.battery = battery
        self.clock = clock
        self.throttle_s = throttle_s
        self._lock = threading.Lock()
        self.fields: dict[str, Any] = {
            "state": "idle",
            "session": None,
            "calibration_age_s": None,
            "last_stride": None,
            "alerts": 0,
            "battery_pct": None,  # [battery]: a UPS HAT's or fuel gauge's level, or None
            "muted_until": None,
            "last_command": None,
            "last_session": None,
        }
        self._cal_t: float | None = None  # data time of the accepted calibration in use
        self._t_data: float | None = None
        self._sent: dict[str, Any] | None = None
        self._sent_at = -1e18

    # ------------------------------------------------------------------ what happened
    def set(self, **kw: Any) -> None:
        with self._lock:
            self.fields.update(kw)

    def on_event(self, ev: dict) -> None:
        """The session's events that the state shows: the calibration in use, the last stride."""
        with self._lock:
            et = ev.get("type")
            if et == "calibration" and ev.get("ok"):
                self._cal_t = ev.get("t")
            elif et == "stride":
                self.fields["last_stride"] = {"t": _r(ev.get("t_end"), 3), **{k: _r(ev.get(k)) for k in STRIDE_FIELDS}}
            elif et == "session" and ev.get("state") == "started":
                self._cal_t = None
                self.fields["last_stride"] = None

    def data_time(self, t: float) -> None:
        with self._lock:
            self._t_data = t

    def command(self, cid: str | None, cmd: str | None, ok: bool, reason: str | None) -> None:
        with self._lock:
            self.fields["last_command"] = {"id": cid, "cmd": cmd, "ok": ok, "reason": reason}

    # ------------------------------------------------------------------ what to send
    def payload(self) -> dict[str, Any]:
        with self._lock:
            return self._payload()

    def _payload(self) -> dict[str, Any]:
        if self.battery is not None:
            self.fields["battery_pct"] = self.battery()
        p = dict(self.fields)
        if self._cal_t is not None and self._t_data is not None and p["state"] != "idle":
            p["calibration_age_s"] = round(max(0.0, self._t_data - self._cal_t), 1)
        else:
            p["calibration_age_s"] = None
        muted = p["muted_until"]
        if muted is not None and muted <= self.wall():
            p["muted_until"] = self.fields["muted_until"] = None
        p["updated_at"] = round(self.wall(), 3)
        return p

    def muted(self) -> bool:
        with self._lock:
            m = self.fields["muted_until"]
            return m is not None and m > self.wall()

    def update(self, force: bool = False) -> dict[str, Any] | None:
        """The payload to publish now, or None: at once on an eventful change (or ``force``), else at most once
        every ``throttle_s`` while a session runs and something else (the stride, the age) changed."""
        with self._lock:
            p = self._payload()
            now = self.clock()
            sent = self._sent
            changed = sent is None or any(p[k] != sent.get(k) for k in EVENTFUL)
            if not (force or changed):
                if p["state"] == "idle" or now - self._sent_at < self.throttle_s:
                    return None
                if all(p[k] == sent.get(k) for k in p if k != "updated_at"):
                    return None
            self._sent, self._sent_at = p, now
            return p
