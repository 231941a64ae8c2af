"""Live at the track: the coach's broker relayed to each coach's squad page as Server-Sent Events.

Each runner's Pi bridges its ``stackcue/<runner>/state`` (retained) and ``/alert`` to the coach's broker
(config/mosquitto/bridge-to-coach.conf, docs/hub.md); the hub holds one MQTT client there, subscribed to
``stackcue/+/state`` and ``stackcue/+/alert``, and hands each message only to the pages of coaches whose squad
holds that runner (``BrokerRelay``'s per-page filter, the set ``HubStore.runners_of`` gave when the page opened).
The page never talks to the broker, so the broker's accounts stay the Pis' and the hub's.

What a page gets: ``broker`` (the link, lost and back), ``state`` (the runner's running/paused state, the last
stride's tilt and stack and the few strides before it, the alert count) and ``alert`` as they happen. A page that
opens gets each of its runners' last state and recent alerts at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections import deque
from pathlib import Path
from typing import Any

from stackcue.dsp.alert_kinds import label

from ..config import RUNNER_ID
from ..mqtt_connection import MqttSettings
from ..web.relay import BrokerRelay

log = logging.getLogger("stackcue.hub")

TOPICS = ("stackcue/+/state", "stackcue/+/alert")
RECENT_STRIDES = 20  # tilt and stack of the last strides, drawn as a sparkline
RECENT_ALERTS = 5
MAX_RUNNERS = 10000  # a broker full of strangers must not grow the hub without bound
STATE_KEYS = ("state", "session", "alerts", "battery_pct", "muted_until", "updated_at")


def hub_mqtt_settings(cfg) -> MqttSettings:
    """The hub's account on the coach's broker, from ``[hub] broker_*``."""
    h = cfg["hub"]
    pw = h["broker_password_file"]
    return MqttSettings(
        host=h["broker_host"],
        port=h["broker_port"],
        runner_id="hub",
        username=h["broker_username"],
        password_file=str(Path(pw).expanduser()) if pw else "",
        tls_ca=str(Path(h["broker_tls_ca"]).expanduser()) if h["broker_tls_ca"] else "",
    )


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class LiveRelay(BrokerRelay):
    """Every runner's live state from the coach's broker, relayed to the pages allowed to see that runner."""

    drop_first = "state"  # a full page loses a state (a newer one follows) before an alert

    def __init__(self, settings: MqttSettings, hub_name: str = "hub") -> None:
        tag = re.sub(r"[^A-Za-z0-9_-]", "-", hub_name)[:40] or "hub"
        super().__init__(settings, f"stackcue-hub-{tag}-{os.getpid()}", log)
        self.states: dict[str, dict] = {}
        self.strides: dict[str, deque] = {}
        self.alerts: dict[str, deque] = {}

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(t, 1) for t in TOPICS]

    def _prime(self, q: asyncio.Queue, allowed: frozenset[str] | None) -> None:
        for runner, st in list(self.states.items()):
            if allowed is None or runner in allowed:
                q.put_nowait(("state", json.dumps(st, separators=(",", ":"))))
                for a in self.alerts.get(runner, ()):
                    q.put_nowait(("alert", json.dumps({**a, "old": True}, separators=(",", ":"))))

    def _relay(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 3 or not RUNNER_ID.fullmatch(parts[1]):
            return
        runner, name = parts[1], parts[2]
        if runner not in self.states and len(self.states) >= MAX_RUNNERS:
            return
        msg = self._json_object(topic, payload)
        if msg is None:
            return
        if name == "state":
            self._state(runner, msg)
        elif name == "alert":
            self._alert(runner, msg)

    def _state(self, runner: str, msg: dict) -> None:
        recent = self.strides.setdefault(runner, deque(maxlen=RECENT_STRIDES))
        stride = msg.get("last_stride") if isinstance(msg.get("last_stride"), dict) else {}
        tilt, stack, t = _number(stride.get("pelvic_tilt_deg")), _number(stride.get("stack_deg")), stride.get("t")
        if (tilt is not None or stack is not None) and (not recent or recent[-1][0] != t):
            recent.append((t, tilt, stack))
        st = {k: msg.get(k) for k in STATE_KEYS}
        if not isinstance(st["state"], str):
            st["state"] = "unknown"
        st.update(runner=runner, tilt_deg=tilt, stack_deg=stack, recent=[[a, b] for _, a, b in recent])
        self.states[runner] = st
        self._send("state", st, runner)

    def _alert(self, runner: str, msg: dict) -> None:
        kind = str(msg.get("kind"))
        a = {
            "runner": runner,
            "kind": kind,
            "label": label(kind),
            "value_deg": _number(msg.get("value_deg")),
            "threshold_deg": _number(msg.get("threshold_deg")),
            "raised_at": _number(msg.get("raised_at")),
            "reminder": msg.get("reminder") is True,
            "session": msg.get("session") if isinstance(msg.get("session"), str) else None,
        }
        self.alerts.setdefault(runner, deque(maxlen=RECENT_ALERTS)).append(a)
        self._send("alert", a, runner)
