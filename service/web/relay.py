"""One MQTT client in the serve process, relayed to every open page as Server-Sent Events.

The page never talks to the broker: the broker stays on the Pi with its own users and ACL, and the only
thing a phone must authenticate to is this app. The client subscribes to the runner's ``state`` (retained),
``alert``, ``event``, ``stride`` and ``status`` topics and hands each message to every page's queue; a page
that connects gets the last state, the broker link and the cue owner at once.

Speaking on the phone is decided here with the cue client's own rules (``cue_rules.CueRules`` as device
"phone"): the same phrases, de-duplication, staleness and ownership as the Pi's ``stackcue cue``, so the
runner hears one voice whichever device owns the cue. An alert or guide line carries ``cue`` (what to say,
the vibration pattern in ms) only when the phone owns the cue, the alert is not muted and the pipeline marked
it to be cued (``"cue"`` not false: ``dsp.cue_policy``; it is shown either way).

The cue style (``[cue] style``, or the session event's ``cue_style``) and the continuous styles' mapping go to
the page in the ``session`` message; each ``stride_provisional`` goes to it as ``provisional`` with the one
deviation the styles follow (``dsp.sonify.sonified_deviation``), so the page's Web Audio layer follows the same
strides as the Pi's ``stackcue cue`` (docs/phone.md).

Threads: paho's network thread calls ``_on_*``; they hand messages to the asyncio loop with
``call_soon_threadsafe``, and only the loop touches the page queues.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from stackcue.dsp.alert_kinds import label
from stackcue.dsp.phrases import LANGUAGES
from stackcue.dsp.sonify import SoundMap, sonified_deviation

from ..cue_rules import CueRules
from ..mqtt_connection import LinkStatus, MqttSettings, new_client

log = logging.getLogger("stackcue.serve")

RELAYED = ("state", "alert", "event", "stride", "stride_provisional", "status")
UNACKED = ("stride", "stride_provisional")  # subscribed at QoS 0: a late stride is no use
QUEUE_MAX = 256  # per page; a page that falls this far behind loses strides first
COMMANDS = ("start", "pause", "resume", "stop", "recalibrate", "mute")


def serve_mqtt_settings(cfg) -> MqttSettings:
    """The broker account serve relays with: the runner's own when ``[serve] mqtt_password_file`` is set.

    The shipped ACL (config/mosquitto/acl) lets the account named after the runner read ``stackcue/#`` and
    write ``stackcue/<runner>/command`` only: a phone that gets into serve can steer this runner's run and
    nothing else, where the device account could write every topic. Broker address and TLS stay [mqtt]'s;
    without a password file serve uses the [mqtt] account (anonymous on the Pi's localhost listener).
    """
    s = cfg.mqtt_settings()
    sv = cfg["serve"]
    if not sv["mqtt_password_file"]:
        return s
    return dataclasses.replace(
        s,
        username=sv["mqtt_username"] or cfg.runner_id,
        password_file=str(Path(sv["mqtt_password_file"]).expanduser()),
    )


def _vibrate_ms(pattern: Any) -> list[int]:
    """cue_rules' ((on_s, off_s), ...) as navigator.vibrate's [on_ms, off_ms, ...]."""
    out: list[int] = []
    for on, off in pattern or ():
        out += [round(on * 1000), round(off * 1000)]
    while out and out[-1] == 0:
        out.pop()
    return out


class BrokerRelay:
    """One paho client relayed to open pages' queues; the part serve's ``Relay`` and the hub's live relay share.

    A page's queue is registered with what it may see (``allowed``: a set of runner ids, or None for all);
    ``_send(name, payload, runner)`` reaches only the pages that may see that runner. Subclasses say what to
    subscribe to (``subscriptions``), what a new page gets at once (``_prime``) and what a message means
    (``_relay``); the broker link (connected, lost, back) goes to every page as the ``broker`` event.
    """

    drop_first = "stride"  # the event a full queue loses first

    def __init__(self, settings: MqttSettings, client_id: str, logger: logging.Logger = log) -> None:
        self.settings = dataclasses.replace(
            settings,
            client_id=client_id,
            reconnect_max_s=min(settings.reconnect_max_s, 5.0),  # the page shows a broker that is back soon
        )
        self.connected = False
        self.link = LinkStatus(self.settings, logger)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pages: dict[asyncio.Queue, frozenset[str] | None] = {}
        self.client = None
        self.closing = False

    # ------------------------------------------------------------------ life cycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        c = new_client(self.settings, self.settings.effective_client_id, True, self.link)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c
        self.link.connecting()
        c.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        c.loop_start()

    def stop(self) -> None:
        if self.client is not None:
            self.closing = True
            self.client.disconnect()
            self.client.loop_stop()

    # ------------------------------------------------------------------ pages

    def open_page(self, allowed: frozenset[str] | None = None) -> asyncio.Queue:
        """A new page's queue, primed with the broker link and what else it must show at once."""
        q: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        q.put_nowait(("broker", self._broker()))
        self._prime(q, allowed)
        self.pages[q] = allowed
        return q

    def close_page(self, q: asyncio.Queue) -> None:
        self.pages.pop(q, None)

    def _prime(self, q: asyncio.Queue, allowed: frozenset[str] | None) -> None:
        """Put what a page shows at once into its queue (after the broker link)."""

    def _fanout(self, name: str, data: str, runner: str | None) -> None:
        for q, allowed in list(self.pages.items()):
            if runner is not None and allowed is not None and runner not in allowed:
                continue
            if q.full():
                if name == self.drop_first:
                    continue
                try:
                    q.get_nowait()  # the oldest goes, so an alert still gets through
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait((name, data))

    def _send(self, name: str, payload: Any, runner: str | None = None) -> None:
        if self.loop is not None:
            data = json.dumps(payload, separators=(",", ":"))
            self.loop.call_soon_threadsafe(self._fanout, name, data, runner)

    def _broker(self) -> str:
        return json.dumps({"connected": self.connected, "text": self.link.text})

    # ------------------------------------------------------------------ paho's thread

    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic filter, QoS) pairs subscribed on every (re)connect."""
        raise NotImplementedError

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.link.connack(reason_code):
            return
        client.subscribe(self.subscriptions())
        self.connected = True
        self._send("broker", {"connected": True, "text": self.link.text})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.link.lost(reason_code, closing=self.closing)
        self.connected = False
        self._send("broker", {"connected": False, "text": self.link.text})

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._relay(msg.topic, msg.payload)
        except Exception:  # one bad message must not stop paho's thread
            log.exception("relay: message on %s not relayed", msg.topic)

    def _relay(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError

    def _json_object(self, topic: str, payload: bytes) -> dict | None:
        """The message as a JSON object; None (a warning for bad JSON) for anything else."""
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self.link.log.warning("relay: malformed JSON on %s", topic)
            return None
        return msg if isinstance(msg, dict) else None


class Relay(BrokerRelay):
    """serve's relay: one runner's topics, and the phone's cues decided with the cue client's rules."""

    def __init__(self, settings: MqttSettings, cue_owner: str, max_age_s: float, cue: dict | None = None) -> None:
        super().__init__(settings, f"stackcue-{settings.runner_id}-serve-{os.getpid()}")
        cue = cue or {}
        self.style = str(cue.get("style", "spoken"))  # the session event's cue_style replaces it
        smap = SoundMap(
            dead_band_deg=float(cue.get("dead_band_deg", SoundMap.dead_band_deg)),
            full_scale_deg=float(cue.get("full_scale_deg", SoundMap.full_scale_deg)),
        )
        self.sound = {  # the page's Web Audio mapping: the same numbers as dsp.sonify's
            k: getattr(smap, k)
            for k in ("dead_band_deg", "full_scale_deg", "floor_dbfs", "top_dbfs", "low_hz", "octaves", "beep_s",
                      "beep_dbfs", "slow_s", "fast_s", "pulse_on_s", "duck_db")
        }  # fmt: skip
        self.language = str(cue.get("language", "en"))
        self.topics = {name: self.settings.topic(name) for name in (*RELAYED, "command")}
        self.configured_owner = cue_owner
        self.cue_owner = cue_owner  # the daemon's session event says which owner this session has
        self.rules = CueRules(
            cue_owner,
            "phone",
            max_age_s,
            {"alert": self.topics["alert"], "event": self.topics["event"]},
            can_say=True,
            can_buzz=True,
            language=self.language,
        )
        self.daemon: str | None = None  # "online" | "offline" from the status topic
        self.state: dict | None = None

    def _prime(self, q: asyncio.Queue, allowed: frozenset[str] | None) -> None:
        q.put_nowait(("session", json.dumps(self._session_message())))
        if self.daemon is not None:
            q.put_nowait(("status", json.dumps({"daemon": self.daemon})))
        if self.state is not None:
            q.put_nowait(("state", json.dumps(self.state)))

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.topics[n], 0 if n in UNACKED else 1) for n in RELAYED]

    # ------------------------------------------------------------------ commands

    def publish_command(self, cmd: str, minutes: float | None) -> str | None:
        """Publish a command (QoS 1) with a new id; None when the broker is not connected."""
        if not self.connected or self.client is None:
            return None
        cid = secrets.token_hex(6)
        payload: dict[str, Any] = {"cmd": cmd, "id": cid, "from": "phone"}
        if minutes is not None:
            payload["minutes"] = minutes
        info = self.client.publish(self.topics["command"], json.dumps(payload), qos=1, retain=False)
        if info.rc != 0:
            return None
        log.info("serve: command %s (id %s) published", cmd, cid)
        return cid

    def _relay(self, topic: str, payload: bytes) -> None:
        name = next((n for n, t in self.topics.items() if t == topic), None)
        if name == "status":
            self.daemon = payload.decode("utf-8", "replace").strip()[:32]
            self._send("status", {"daemon": self.daemon})
            return
        msg = self._json_object(topic, payload)
        if msg is None:
            return
        if name == "state":
            self.state = msg
            self._send("state", msg)
        elif name == "stride":
            keep = ("t", "t_start", "t_end", "pelvic_tilt_deg", "stack_deg", "trunk_lean_deg", "cadence_spm", "steady")
            self._send("stride", {k: msg[k] for k in keep if k in msg})
        elif name == "stride_provisional":
            self._send("provisional", {"t_end": msg.get("t_end"), "deviation": sonified_deviation(msg)})
        elif name == "alert":
            self._send("alert", {**msg, "label": label(str(msg.get("kind"))), "cue": self._cue(topic, payload, msg)})
        elif name == "event":
            etype = msg.get("type")
            if etype == "session":
                self._session(msg)
            elif etype in ("guide", "sensor"):
                cue = self._cue(topic, payload, msg)
                say = msg.get("say") or (cue or {}).get("say")
                self._send("guide", {**msg, "say": say, "cue": cue})

    def _session(self, msg: dict) -> None:
        owner = msg.get("cue_owner")
        if isinstance(owner, str) and owner != self.cue_owner:
            self.cue_owner = owner
            self.rules.owner = owner
            self.rules.is_owner = owner == "phone"
            self.rules._silence_told = False
        style = msg.get("cue_style")
        if isinstance(style, str) and style in ("spoken", "sonify", "beep", "haptic"):
            self.style = style
        lang = msg.get("cue_language")
        if isinstance(lang, str) and lang in LANGUAGES:
            self.language = self.rules.language = lang
        self.rules.decide(self.topics["event"], json.dumps(msg))  # logs the session, warns on a mismatch
        self._send("session", self._session_message())

    def _session_message(self) -> dict:
        return {
            "cue_owner": self.cue_owner,
            "configured": self.configured_owner,
            "style": self.style,
            "language": self.language,
            "sound": self.sound,
        }

    def _cue(self, topic: str, payload: bytes, msg: dict) -> dict | None:
        """What the phone says and vibrates for this message, or None (not the owner, muted, not to be cued,
        stale, a repeat)."""
        decision = self.rules.decide(topic, payload)
        if decision.cue is None or msg.get("muted") is True or msg.get("cue") is False:
            return None
        return {"say": decision.cue.text, "vibrate": _vibrate_ms(decision.cue.pattern), "at": time.time()}
