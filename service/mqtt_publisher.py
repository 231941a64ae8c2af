"""MQTT sink for the live daemon: alerts, stride telemetry, the session summary and the device status.

Topics, their QoS and retain flags: ``service.topics.TOPICS`` (the one table; docs/mqtt.md).
The connection itself (settings, credentials, TLS, status wording) is ``service.mqtt_connection``, shared with
the cue client; the durable stores of unacknowledged alerts are ``service.outbox``.

Alert payload: the alert event's fields plus ``session``, ``alert_id`` (= the event's ``id``), ``raised_at``
(epoch s when ``publish_event`` was called), ``sent_at`` (epoch s when handed to the network), ``age_s``
(Pi monotonic seconds from raising to sending) and ``replayed`` (true when it comes from the durable outbox
after a restart). Delivery is at least once: subscribers de-duplicate on (``session``, ``alert_id``).

Delivery design (decided after reading paho-mqtt 2.2's client.py):

* paho keeps every QoS 1 message it accepted in ``_out_messages`` until its PUBACK, across reconnects and
  whatever ``clean_session`` says (``_messages_reconnect_reset_out`` only resets their state; the CONNACK
  handler sends them again with DUP set). ``publish()`` while disconnected returns ``MQTT_ERR_NO_CONN`` yet
  keeps the message. Publishing it again ourselves would therefore duplicate it.
* We do NOT let paho queue alerts while the broker is away: its payload would be frozen at raise time, so
  ``sent_at``/``age_s`` could not be true, and its queue is neither bounded by us nor durable. Instead this
  class holds alerts itself (in memory and in the durable ``Outbox``) and hands one to paho only while
  connected, tracking its mid until PUBACK (``on_publish``). Once paho has a message it owns it: we never
  hand it over again in this process (no duplicates from us). If the link drops between our check and the
  write (a narrow race), paho resends it on the next connection; its ``sent_at`` is then the first hand-off.
* Order: on reconnect paho resends its un-acknowledged messages from the CONNACK handler *after* our
  ``on_connect`` returns, so newer alerts handed over right away could overtake them. Every hand-off is
  therefore tagged with a connection generation and held alerts are sent only once no alert of an earlier
  generation is still waiting for its PUBACK. At most ``ALERT_WINDOW`` alerts are in flight; paho's own
  in-flight limit is lifted so that nothing sits in paho's queue with a stale ``sent_at``.
* Our own session is clean; the broker must hold a persistent session for offline *subscribers* (the phone
  subscribes with clean_session False and QoS 1). The daemon's publisher subscribes to one topic, the
  ``command`` topic (``on_command``), again on each connection; a command sent while it is away is lost, as
  it should be (a stale "stop" must not end a later run). Each ``state`` is sent in order (the newest 20 wait
  while the broker is away): one state answers one command, so none may be overwritten by the next.
* ``publish_event`` only appends to in-memory queues under a lock never held across I/O; a sender thread
  writes the outbox (fsync) and calls paho; paho's network thread (``loop_start``) does the socket work and
  reconnects with backoff (``reconnect_delay_set``). A crash between ``publish_event`` and the sender's
  outbox write (normally well under a millisecond) can lose that alert; after the write nothing is lost.
* Stride telemetry is QoS 0; while offline at most ``stride_queue_max`` strides are kept, oldest dropped first
  (``strides_dropped`` counts them). A stride's preview (``stride_provisional``, QoS 0) is worth something only
  at once: it goes right after the alerts, is never queued while the broker is away, nor written to the outbox
  (``previews_dropped`` counts those not sent); at most ``PREVIEW_QUEUE_MAX`` wait for the sender. Summary and
  alert state keep only their latest value until connected.

Outbox records are the alert payload plus private keys starting with ``_`` (the monotonic raise time and the
boot id, so that a replay in the same boot still gives a monotonic ``age_s``; after a reboot ``age_s`` falls
back to the wall clocks and the payload says ``"age_source": "wall"``; ``_runner``, so that the replay at
start-up sends only this runner's alerts, on its own topic, from an outbox or logbook that runners share).
Private keys are never published. A stored record that cannot be published (``outbox.record_problem``) is
left in the outbox with a one-line warning and never stops the sender thread.

Failures never raise into the pipeline: a wrong host, a refused CONNACK, a bad certificate or an unreadable
password file each give a one-line ``status`` (also logged on the ``stackcue.mqtt`` logger) and the run goes on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from stackcue.errors import MqttSetupError

from . import json_input
from .mqtt_connection import LinkStatus, MqttClient, MqttSettings, new_client
from .outbox import Outbox, record_problem
from .topics import HA_BINARY_SENSOR, HA_SENSOR, TOPICS, topic

log = logging.getLogger("stackcue.mqtt")

ALERT_WINDOW = 20  # alerts handed to paho and not yet acknowledged, at most
FRESH_S = 10.0  # a live alert younger than this goes first (the cue client's default [cue] max_age_s)
EVENT_QUEUE_MAX = 50  # system events kept while the broker is away
STATE_QUEUE_MAX = 20  # states kept in order (throttled to 1 Hz; more only when commands come in a burst)
PREVIEW_QUEUE_MAX = 8  # stride previews waiting for the sender while connected (a few strides); the oldest go
SYSTEM_EVENTS = (
    "session",
    "guide",
    "sensor",
    "calibration",
    "calibration_suspect",
    "trunk_missing",
    "reference",
    "snooze",
    "clear",
)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"process-{uuid.uuid4()}"


BOOT_ID = _boot_id()


def _public(payload: dict) -> dict:
    return {k: v for k, v in payload.items() if not k.startswith("_")}


def _dumps(obj: Any) -> str:
    return json_input.dumps(obj, default=str)  # strict JSON: a stored NaN goes out as null


class MqttPublisher:
    """paho-mqtt 2.x (CallbackAPIVersion.VERSION2), its own network thread (loop_start); publish_* never block."""

    def __init__(
        self,
        settings: MqttSettings,
        session_id: str,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_command: Callable[[bytes], None] | None = None,
        fresh_s: float = FRESH_S,
    ) -> None:
        self.settings = settings
        self.session_id = session_id
        self.outbox = outbox
        self.on_command = on_command  # set: subscribe to <prefix>/command and hand it each payload (paho's thread)
        self._clock = clock
        self._wall = wall
        self.fresh_s = fresh_s  # a live alert younger than this goes before older ones (``_next_alert``)
        p = settings.topic_prefix
        self.prefix = p
        self.topics = {name: topic(p, name) for name, t in TOPICS.items() if t.under_prefix}
        self.link = LinkStatus(settings, log)
        self.delivered: list[dict] = []  # alerts acknowledged by the broker (PUBACK), in order
        self.strides_dropped = 0
        self.previews_dropped = 0  # stride previews not sent: the broker was away, or newer ones overtook them
        self.outbox_errors = 0
        self.alerts_raised = 0  # alerts handed to publish_event in this process
        self.alerts_unsendable = 0  # alerts that could not be published (left in the outbox)
        self._cond = threading.Condition()
        self._raised: deque[dict] = deque()  # alerts not yet written to the outbox
        self._alerts: deque[dict] = deque()  # this process's alerts in the outbox, not yet handed to paho
        self._backlog: deque[dict] = deque()  # earlier runs' alerts from the outbox: after every live one
        self._strides: deque[dict] = deque()
        self._previews: deque[dict] = deque()  # stride previews, only while connected: never held for later
        self._events: deque[dict] = deque(maxlen=EVENT_QUEUE_MAX)  # system events while offline: latest kept
        self._retained: dict[str, str] = {}  # topic name (TOPICS) -> latest payload
        self._states: deque[str] = deque(maxlen=STATE_QUEUE_MAX)  # each state in order (each answers a command)
        self._inflight: dict[int, tuple[dict, int]] = {}  # mid -> (alert payload, connection generation)
        self._early_acks: dict[int, float] = {}  # PUBACKs seen before the mid was recorded
        self._acked: deque[dict] = deque()  # acknowledged alerts waiting for outbox.mark_delivered
        self._active_kinds: set[str] = set()
        self._gen = 0
        self._connected = False
        self._exit = False
        self._client: MqttClient | None = None
        self._sender: threading.Thread | None = None

    # ------------------------------------------------------------------ status

    @property
    def status(self) -> str:
        """One line: connecting, connected, why it cannot connect, stopped."""
        return self.link.text

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Connect in the background (connect_async + loop_start); replay the outbox first. Never raises."""
        if self._sender is not None:
            return
        s = self.settings
        if self.outbox is not None:
            try:
                replay = self.outbox.pending()
            except Exception as exc:  # a broken outbox must not stop the run
                self.outbox_errors += 1
                log.warning("mqtt: outbox unreadable: %s", exc)
                replay = []
            with self._cond:
                for q in self._own(replay):
                    q["replayed"] = True
                    self._backlog.append(q)
        self._sender = threading.Thread(target=self._run_sender, name="stackcue-mqtt-sender", daemon=True)
        self._sender.start()
        try:
            client = self._make_client()
        except Exception as exc:  # bad TLS files, unreadable password file, invalid settings
            self.link.set(str(exc) if isinstance(exc, MqttSetupError) else f"cannot set up MQTT: {exc}", logging.ERROR)
            return
        self._client = client
        self.link.connecting()
        try:
            client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
            client.loop_start()
        except Exception as exc:
            self.link.set(f"cannot start MQTT: {exc}", logging.ERROR)

    def _own(self, replay: list[dict]) -> list[dict]:
        """The replayed records that are this runner's and can be sent; the others stay in the outbox."""
        runner = self.settings.runner_id
        own, others, unknown = [], 0, 0
        for p in replay:
            why = record_problem(p)
            if why is not None:
                self.alerts_unsendable += 1
                log.warning("mqtt: stored alert not sent (%s); left in the outbox", why)
            elif p.get("_runner") == runner:
                own.append(dict(p))
            elif p.get("_runner") is None:
                unknown += 1
            else:
                others += 1
        if others:
            log.info("mqtt: %d stored alert(s) of other runners left in the outbox for them", others)
        if unknown:
            log.warning(
                "mqtt: %d stored alert(s) of an unknown runner left in the outbox: not sent, their topic is not known",
                unknown,
            )
        return own

    def set_session(self, session_id: str) -> None:
        """The daemon keeps one connection across sessions: what is published from now on carries this id."""
        with self._cond:
            self.session_id = session_id

    def publish_state(self, state: dict) -> None:
        """The retained ``<prefix>/state`` (service/state.py). Sent in order, not only the latest: each answers
        a command (``last_command``), and a sender waiting for its answer must see it (at most 20 wait)."""
        data = _dumps(state)
        with self._cond:
            self._states.append(data)
            self._cond.notify_all()

    def publish_event(self, event: dict) -> None:
        """Route one pipeline event; returns at once (queues only). Unknown types are ignored."""
        try:
            etype = event.get("type")
        except AttributeError:
            return
        if etype == "alert":
            payload = dict(event)
            payload.update(
                session=self.session_id,
                alert_id=event.get("id"),
                raised_at=self._wall(),
                sent_at=None,
                age_s=None,
                replayed=False,
                _raised_mono=self._clock(),
                _boot_id=BOOT_ID,
                _runner=self.settings.runner_id,
            )
            with self._cond:
                self.alerts_raised += 1
                self._raised.append(payload)
                self._active_kinds.add(str(event.get("kind")))
                self._retained["alert_state"] = "ON"
                self._cond.notify_all()
        elif etype == "stride":
            with self._cond:
                if len(self._strides) >= max(1, self.settings.stride_queue_max):
                    self._strides.popleft()
                    self.strides_dropped += 1
                self._strides.append(event)
                self._cond.notify_all()
        elif etype == "stride_provisional":
            with self._cond:
                if not self._connected:  # a preview is stale by the time the broker is back
                    self.previews_dropped += 1
                    return
                if len(self._previews) >= PREVIEW_QUEUE_MAX:
                    self._previews.popleft()
                    self.previews_dropped += 1
                self._previews.append(event)
                self._cond.notify_all()
        elif etype == "clear":
            with self._cond:
                self._active_kinds.discard(str(event.get("kind")))
                if not self._active_kinds:
                    self._retained["alert_state"] = "OFF"
                self._events.append({**event, "session": self.session_id})
                self._cond.notify_all()
        elif etype in SYSTEM_EVENTS:
            with self._cond:
                self._events.append({**event, "session": self.session_id, "sent_at": None})
                self._cond.notify_all()
        elif etype == "summary":
            data = _dumps({**event, "session": self.session_id})
            with self._cond:
                self._retained["session"] = data
                self._cond.notify_all()

    def stop(self, timeout: float = 1.5) -> None:
        """Send what can be sent, publish "offline" (retained), wait for QoS 1 acks up to timeout, disconnect."""
        deadline = time.monotonic() + max(0.0, timeout)
        client = self._client

        def drained() -> bool:
            if self._raised:
                return False
            if not self._connected:
                return True
            return (
                not (self._alerts or self._backlog or self._inflight or self._acked or self._retained or self._events)
                and not self._states
            )

        with self._cond:
            while not drained() and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            connected = self._connected
        if client is not None and connected:
            try:
                info = self._publish(client, "status", "offline")
                while not info.is_published() and time.monotonic() < deadline and self._connected:
                    time.sleep(0.005)
            except Exception as exc:
                log.debug("mqtt: offline not published: %s", exc)
        with self._cond:
            self._exit = True
            self._cond.notify_all()
        if client is not None:
            try:
                client.disconnect()
            except Exception:
                pass
            stopper = threading.Thread(target=client.loop_stop, daemon=True)
            stopper.start()
            stopper.join(max(0.1, deadline - time.monotonic()))
        if self._sender is not None:
            self._sender.join(max(0.5, deadline - time.monotonic()))
        self.link.set("stopped")

    @property
    def connected(self) -> bool:
        return self._connected

    def pending_alerts(self) -> int:
        """Alerts raised and not yet acknowledged by the broker."""
        with self._cond:
            return len(self._raised) + len(self._alerts) + len(self._backlog) + len(self._inflight)

    def settle(self, raised: int, timeout: float) -> int:
        """Wait (at most ``timeout`` s) for ``raised`` alerts to reach the publisher and, while connected, their
        acknowledgements; returns the alerts still held (``pending_alerts``). For the summary at the end."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while time.monotonic() < deadline:
                arrived = self.alerts_raised >= raised
                busy = self._raised or self._alerts or self._backlog or self._inflight
                if arrived and not (self._connected and busy):
                    break
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.pending_alerts()

    def held_alerts(self) -> int:
        """After ``stop``: the alerts not acknowledged, which a durable outbox holds for the next start."""
        return self.pending_alerts()

    def held_line(self) -> str:
        """After ``stop``, in a few words: how many alerts are held for the next start, and where."""
        n = self.held_alerts()
        what = f"{n} alert{'s' if n != 1 else ''}"
        if n == 0:
            line = "no alerts held"
        elif self.outbox is None:
            line = f"{what} not delivered and lost (no durable outbox: set [mqtt] outbox or [logbook] path)"
        else:
            where = getattr(self.outbox, "path", None) or getattr(getattr(self.outbox, "logbook", None), "path", None)
            line = f"{what} held for the next start" + (f" in {where}" if where else "")
        if self.outbox_errors:
            line += f" ({self.outbox_errors} outbox write(s) failed: see the warnings)"
        return line

    # ------------------------------------------------------------------ paho set-up and callbacks

    def _make_client(self) -> MqttClient:
        s = self.settings
        client = new_client(s, s.effective_client_id, clean_session=True, link=self.link)
        status = TOPICS["status"]
        client.will_set(self.topics["status"], "offline", qos=status.qos, retain=status.retained)
        client.max_inflight_messages_set(0)  # we window alerts ourselves; nothing waits in paho's queue
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.on_command is not None:
            client.on_message = self._on_message
        return client

    def _on_message(self, client, userdata, msg) -> None:
        if self.on_command is not None and msg.topic == self.topics["command"]:
            try:
                self.on_command(msg.payload)
            except Exception as exc:  # a command must never end paho's network thread
                log.warning("mqtt: command not handled (%s: %s)", type(exc).__name__, exc)

    def _publish(self, client: mqtt.Client, name: str, payload: str, topic_name: str | None = None) -> Any:
        """Publish on ``TOPICS[name]`` with the table's QoS and retain flag (``topic_name`` for absolute ones)."""
        t = TOPICS[name]
        return client.publish(topic_name or self.topics[name], payload, qos=t.qos, retain=t.retained)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.link.connack(reason_code):
            return
        with self._cond:
            self._gen += 1
            self._connected = True
            self._cond.notify_all()
        self._publish(client, "status", "online")
        if self.on_command is not None:  # our session is clean: subscribe again on every connection
            t = TOPICS["command"]
            client.subscribe(self.topics["command"], qos=t.qos)
        if self.settings.homeassistant:
            for name, full, config in self._discovery():
                self._publish(client, name, _dumps(config), full)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            self.previews_dropped += len(self._previews)  # stale by the time the broker is back
            self._previews.clear()
            exiting = self._exit
            self._cond.notify_all()
        self.link.lost(reason_code, closing=exiting)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                now = time.monotonic()
                self._early_acks[mid] = now
                if len(self._early_acks) > 64:
                    self._early_acks = {m: t for m, t in self._early_acks.items() if now - t < 10.0}
                return
            self._acked.append(entry[0])
            self._cond.notify_all()

    # ------------------------------------------------------------------ sender thread

    def _can_send_alert(self) -> bool:
        if not (self._alerts or self._backlog) or len(self._inflight) >= ALERT_WINDOW:
            return False
        return all(gen == self._gen for _, gen in self._inflight.values())

    def _next_alert(self) -> dict:
        """The alert to hand over next (under ``_cond``): a fresh one must never wait behind old ones.

        This process's alerts go before the replayed backlog of earlier runs (10 000 of them took minutes, so
        an alert raised meanwhile reached the runner stale). Among this process's, the oldest one still younger
        than ``fresh_s`` (the cue client's ``max_age_s``) goes first; the older ones, already too late to be
        cued, follow in order, then the backlog: every one is still delivered, for the record.
        """
        if self._alerts:
            now = self._clock()
            i = len(self._alerts)
            while i > 0:  # newest at the right: walk back over the fresh ones only
                mono = self._alerts[i - 1].get("_raised_mono")
                if not isinstance(mono, int | float) or now - mono > self.fresh_s:
                    break
                i -= 1
            if 0 < i < len(self._alerts):
                item = self._alerts[i]
                del self._alerts[i]
                return item
            return self._alerts.popleft()
        return self._backlog.popleft()

    def _work(self) -> bool:
        if self._raised or self._acked:
            return True
        if not self._connected or self._client is None:
            return False
        return bool(
            self._can_send_alert() or self._previews or self._retained or self._states or self._events or self._strides
        )

    def _run_sender(self) -> None:
        while True:
            try:
                if self._sender_round():
                    return
            except Exception as exc:  # never let one bad item end every alert's delivery
                log.warning("mqtt: sender error (%s: %s); going on", type(exc).__name__, exc)
                time.sleep(0.05)

    def _sender_round(self) -> bool:
        """One round of the sender thread; True when it is time to end."""
        with self._cond:
            while not self._work() and not self._exit:
                self._cond.wait(0.5)
            if self._exit and not self._raised and not self._acked:
                return True
            raised = list(self._raised)
            self._raised.clear()
            acked = list(self._acked)
            self._acked.clear()
        for p in raised:
            self._outbox_call("add", p)
        with self._cond:
            self._alerts.extend(raised)
            exiting = self._exit
        if raised and not exiting:
            self._send_ready()  # a new alert does not wait for the deliveries below to be written (fsync each)
        for p in acked:
            self._outbox_call("mark_delivered", p.get("session"), p.get("alert_id"))
            self.delivered.append(_public(p))
        with self._cond:
            if self._exit:
                return False
        self._send_ready()
        return False

    def _outbox_call(self, name: str, *args) -> None:
        if self.outbox is None:
            return
        try:
            getattr(self.outbox, name)(*args)
        except Exception as exc:  # a full disk must not stop the run
            self.outbox_errors += 1
            log.warning("mqtt: outbox %s failed: %s", name, exc)

    def _send_ready(self) -> None:
        client = self._client
        if client is None:
            return
        while True:
            with self._cond:
                if not self._connected:
                    return
                gen = self._gen
                if self._can_send_alert():
                    kind, item = "alert", self._next_alert()
                elif self._previews:  # continuous feedback: worth something only at once
                    kind, item = "preview", self._previews.popleft()
                elif self._states:
                    kind, item = "retained", ("state", self._states.popleft())
                elif self._retained:
                    name = next(iter(self._retained))
                    kind, item = "retained", (name, self._retained.pop(name))
                elif self._events:
                    kind, item = "event", self._events.popleft()
                elif self._strides:
                    kind, item = "stride", self._strides.popleft()
                else:
                    return
            if kind == "alert":
                try:
                    self._send_alert(client, item, gen)
                except Exception as exc:  # e.g. a stored raise time that is not a number
                    self.alerts_unsendable += 1
                    log.warning(
                        "mqtt: alert %r of session %r not sent (%s: %s); left in the outbox",
                        item.get("alert_id"),
                        item.get("session"),
                        type(exc).__name__,
                        exc,
                    )
            elif kind == "preview":
                info = self._publish(client, "stride_provisional", _dumps(item))
                if info.rc != mqtt.MQTT_ERR_SUCCESS:  # never sent again: the next stride's preview supersedes it
                    with self._cond:
                        self.previews_dropped += 1
            elif kind == "retained":
                self._publish(client, item[0], item[1])
            elif kind == "event":
                self._publish(client, "event", _dumps({**item, "sent_at": self._wall()}))
            else:
                info = self._publish(client, "stride", _dumps(item))
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    with self._cond:
                        if len(self._strides) < self.settings.stride_queue_max:
                            self._strides.appendleft(item)

    def _send_alert(self, client: MqttClient, payload: dict, gen: int) -> None:
        now_wall = self._wall()
        payload["sent_at"] = now_wall
        mono = payload.get("_raised_mono")
        if payload.get("_boot_id") == BOOT_ID and isinstance(mono, int | float):
            payload["age_s"] = round(max(0.0, self._clock() - mono), 6)
        else:
            raised = payload.get("raised_at")
            known = isinstance(raised, int | float) and not isinstance(raised, bool) and raised <= now_wall + 1.0
            # a raise time unknown, or later than now (a clock set back since): the age cannot be known, so it is
            # sent as null and the cue client does not take the alert for fresh
            payload["age_s"] = round(max(0.0, now_wall - float(raised)), 6) if known else None
            payload["age_source"] = "wall"
        info = self._publish(client, "alert", _dumps(_public(payload)))
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # not accepted by paho: keep it first in line
            with self._cond:
                (self._backlog if payload.get("replayed") else self._alerts).appendleft(payload)
            return
        with self._cond:
            if self._early_acks.pop(info.mid, None) is not None:
                self._acked.append(payload)
            else:
                self._inflight[info.mid] = (payload, gen)
            self._cond.notify_all()

    # ------------------------------------------------------------------ Home Assistant

    def discovery_configs(self) -> dict[str, dict]:
        """Retained Home Assistant MQTT discovery configs, by topic."""
        return {full: config for _, full, config in self._discovery()}

    def _discovery(self) -> list[tuple[str, str, dict]]:
        """(``TOPICS`` name, topic, config) of each Home Assistant entity."""
        runner = re.sub(r"[^A-Za-z0-9_-]", "_", self.settings.runner_id)
        device = {
            "identifiers": [f"stackcue_{runner}"],
            "name": f"stackcue {self.settings.runner_id}",
            "manufacturer": "stackcue",
            "model": "running posture biofeedback",
        }
        avail = {
            "availability_topic": self.topics["status"],
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        out: list[tuple[str, str, dict]] = []
        for key, name, field, unit in (
            ("pelvic_tilt", "Pelvic tilt", "pelvic_tilt_deg", "°"),
            ("stack", "Stack angle", "stack_deg", "°"),
            ("cadence", "Cadence", "cadence_spm", "spm"),
        ):
            uid = f"stackcue_{runner}_{key}"
            out.append(
                (
                    HA_SENSOR,
                    topic(self.prefix, HA_SENSOR, uid=uid),
                    {
                        "name": name,
                        "unique_id": uid,
                        "state_topic": self.topics["stride"],
                        "value_template": f"{{{{ value_json.{field} }}}}",
                        "unit_of_measurement": unit,
                        "state_class": "measurement",
                        "device": device,
                        **avail,
                    },
                )
            )
        uid = f"stackcue_{runner}_posture_alert"
        out.append(
            (
                HA_BINARY_SENSOR,
                topic(self.prefix, HA_BINARY_SENSOR, uid=uid),
                {
                    "name": "Posture alert",
                    "unique_id": uid,
                    "state_topic": self.topics["alert_state"],
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "device_class": "problem",
                    "device": device,
                    **avail,
                },
            )
        )
        return out
