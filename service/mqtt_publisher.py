"""MQTT sink for the live daemon: alerts, stride telemetry, the session summary and the device status.

Topics (DESIGN.md, "MQTT"), under ``prefix`` (default ``stackcue/<runner_id>``):

| topic | what | QoS | retained |
|---|---|---|---|
| ``<prefix>/status`` | ``online`` on connect, ``offline`` at stop and as the last will | 1 | yes |
| ``<prefix>/alert`` | one JSON object an alert (fields below) | 1 | no |
| ``<prefix>/stride`` | the stride event as JSON (telemetry) | 0 | no |
| ``<prefix>/session`` | the summary event plus ``session`` | 1 | yes |
| ``<prefix>/alert_state`` | ``ON`` while any alert kind is active, ``OFF`` once all cleared | 1 | yes |
| ``<prefix>/event`` | system events for the cue: session, calibration, guide, sensor, clear (JSON) | 1 | no |

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
* Our own session is clean (the publisher subscribes to nothing); the broker must hold a persistent session
  for offline *subscribers* (the phone subscribes with clean_session False and QoS 1).
* ``publish_event`` only appends to in-memory queues under a lock never held across I/O; a sender thread
  writes the outbox (fsync) and calls paho; paho's network thread (``loop_start``) does the socket work and
  reconnects with backoff (``reconnect_delay_set``). A crash between ``publish_event`` and the sender's
  outbox write (normally well under a millisecond) can lose that alert; after the write nothing is lost.
* Stride telemetry is QoS 0; while offline at most ``stride_queue_max`` strides are kept, oldest dropped first
  (``strides_dropped`` counts them). Summary and alert state keep only their latest value until connected.

Outbox records are the alert payload plus private keys starting with ``_`` (the monotonic raise time and the
boot id, so that a replay in the same boot still gives a monotonic ``age_s``; after a reboot ``age_s`` falls
back to the wall clocks and the payload says ``"age_source": "wall"``). Private keys are never published.

Failures never raise into the pipeline: a wrong host, a refused CONNACK, a bad certificate or an unreadable
password file each give a one-line ``status`` (also logged on the ``stackcue.mqtt`` logger) and the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from stackcue.errors import MqttSetupError

log = logging.getLogger("stackcue.mqtt")

ALERT_WINDOW = 20  # alerts handed to paho and not yet acknowledged, at most
EVENT_QUEUE_MAX = 50  # system events kept while the broker is away
SYSTEM_EVENTS = ("session", "guide", "sensor", "calibration", "calibration_suspect", "reference", "clear")
HA_PREFIX = "homeassistant"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"process-{uuid.uuid4()}"


BOOT_ID = _boot_id()


@dataclass(frozen=True)
class MqttSettings:
    host: str = "localhost"
    port: int = 1883
    prefix: str = "stackcue/{runner_id}"
    runner_id: str = "runner1"
    username: str = ""
    password_file: str = ""  # the password is the file's first line, stripped
    tls_ca: str = ""  # TLS when set
    tls_cert: str = ""  # client certificate (optional, with tls_key)
    tls_key: str = ""
    keepalive_s: int = 30
    client_id: str = ""  # default f"stackcue-{runner_id}"
    stride_queue_max: int = 200  # stride telemetry kept while offline; oldest dropped first
    homeassistant: bool = False  # Home Assistant MQTT discovery under homeassistant/
    reconnect_min_s: float = 1.0  # reconnect backoff: doubles from min to max
    reconnect_max_s: float = 30.0

    @property
    def topic_prefix(self) -> str:
        return self.prefix.format(runner_id=self.runner_id).rstrip("/")

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"stackcue-{self.runner_id}"


class Outbox(Protocol):
    """Durable store of alerts not yet acknowledged by the broker (the logbook implements it in SQLite)."""

    def add(self, alert_payload: dict) -> None: ...  # before publishing

    def mark_delivered(self, session: str, alert_id: int) -> None: ...  # on PUBACK

    def pending(self) -> list[dict]: ...  # undelivered, oldest first


class MemoryOutbox:
    """Outbox in memory (tests; a daemon without durable storage)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, Any], dict] = {}
        self._lock = threading.Lock()

    def add(self, alert_payload: dict) -> None:
        with self._lock:
            self._items.setdefault((alert_payload["session"], alert_payload["alert_id"]), dict(alert_payload))

    def mark_delivered(self, session: str, alert_id: int) -> None:
        with self._lock:
            self._items.pop((session, alert_id), None)

    def pending(self) -> list[dict]:
        with self._lock:
            return [dict(p) for p in self._items.values()]


class JsonlOutbox:
    """Append-only JSON lines, fsync'd: ``{"add": payload}`` then ``{"delivered": [session, alert_id]}``.

    ``pending()`` replays the file. A torn last line (power lost mid-write) is skipped. On opening, a file
    whose alerts were all delivered is rewritten with only the pending ones (atomically: temp file, fsync,
    rename, fsync of the directory). The file is created readable by its owner only (health data).
    """

    def __init__(self, path: str | os.PathLike, compact: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if compact and self.path.exists():
            self._compact()

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def add(self, alert_payload: dict) -> None:
        self._append({"add": alert_payload})

    def mark_delivered(self, session: str, alert_id: int) -> None:
        self._append({"delivered": [session, alert_id]})

    def pending(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        items: dict[tuple[str, Any], dict] = {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # torn write
            if not isinstance(rec, dict):
                continue
            if isinstance(rec.get("add"), dict):
                p = rec["add"]
                items.setdefault((p.get("session"), p.get("alert_id")), p)
            elif isinstance(rec.get("delivered"), list) and len(rec["delivered"]) == 2:
                items.pop((rec["delivered"][0], rec["delivered"][1]), None)
        return list(items.values())

    def _compact(self) -> None:
        pend = self.pending()
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join((json.dumps({"add": p}, separators=(",", ":")) + "\n").encode() for p in pend))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _describe_os_error(exc: BaseException, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message} ({where})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: handshake with {where} failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach {where}: connection refused (is the broker running?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"cannot reach {where}: timed out"
    return f"cannot reach {where}: {getattr(exc, 'strerror', None) or exc}"


class _Client(mqtt.Client):
    """paho's client, reporting why a connection attempt failed (paho's on_connect_fail gets no reason)."""

    connect_error: Callable[[BaseException], None] | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError, socket.gaierror, ConnectionRefusedError ... are all OSError
            if self.connect_error is not None:
                self.connect_error(exc)
            raise


def _no_delay(client, userdata, sock) -> None:
    """Small messages go out at once (no Nagle: an alert must not wait for the ACK of the one before)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def _public(payload: dict) -> dict:
    return {k: v for k, v in payload.items() if not k.startswith("_")}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


class MqttPublisher:
    """paho-mqtt 2.x (CallbackAPIVersion.VERSION2), its own network thread (loop_start); publish_* never block."""

    def __init__(
        self,
        settings: MqttSettings,
        session_id: str,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.session_id = session_id
        self.outbox = outbox
        self._clock = clock
        self._wall = wall
        p = settings.topic_prefix
        self.prefix = p
        self.topics = {
            "status": f"{p}/status",
            "alert": f"{p}/alert",
            "stride": f"{p}/stride",
            "session": f"{p}/session",
            "alert_state": f"{p}/alert_state",
            "event": f"{p}/event",
        }
        self.status = "not started"
        self.delivered: list[dict] = []  # alerts acknowledged by the broker (PUBACK), in order
        self.strides_dropped = 0
        self.outbox_errors = 0
        self._cond = threading.Condition()
        self._raised: deque[dict] = deque()  # alerts not yet written to the outbox
        self._alerts: deque[dict] = deque()  # alerts in the outbox, not yet handed to paho
        self._strides: deque[dict] = deque()
        self._events: deque[dict] = deque(maxlen=EVENT_QUEUE_MAX)  # system events while offline: latest kept
        self._retained: dict[str, str] = {}  # topic -> latest payload
        self._inflight: dict[int, tuple[dict, int]] = {}  # mid -> (alert payload, connection generation)
        self._early_acks: dict[int, float] = {}  # PUBACKs seen before the mid was recorded
        self._acked: deque[dict] = deque()  # acknowledged alerts waiting for outbox.mark_delivered
        self._active_kinds: set[str] = set()
        self._gen = 0
        self._connected = False
        self._refused = False
        self._exit = False
        self._client: _Client | None = None
        self._sender: threading.Thread | None = None
        self._last_logged = ""

    # ------------------------------------------------------------------ status

    def _set_status(self, text: str, level: int = logging.INFO) -> None:
        self.status = text
        if text != self._last_logged:
            self._last_logged = text
            log.log(level, "mqtt: %s", text)

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
                for p in replay:
                    q = dict(p)
                    q["replayed"] = True
                    self._alerts.append(q)
        self._sender = threading.Thread(target=self._run_sender, name="stackcue-mqtt-sender", daemon=True)
        self._sender.start()
        try:
            client = self._make_client()
        except Exception as exc:  # bad TLS files, unreadable password file, invalid settings
            self._set_status(str(exc) if isinstance(exc, MqttSetupError) else f"cannot set up MQTT: {exc}",
                             logging.ERROR)
            return
        self._client = client
        self._set_status(f"connecting to {s.host}:{s.port}")
        try:
            client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
            client.loop_start()
        except Exception as exc:
            self._set_status(f"cannot start MQTT: {exc}", logging.ERROR)

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
            )
            with self._cond:
                self._raised.append(payload)
                self._active_kinds.add(str(event.get("kind")))
                self._retained[self.topics["alert_state"]] = "ON"
                self._cond.notify_all()
        elif etype == "stride":
            with self._cond:
                if len(self._strides) >= max(1, self.settings.stride_queue_max):
                    self._strides.popleft()
                    self.strides_dropped += 1
                self._strides.append(event)
                self._cond.notify_all()
        elif etype == "clear":
            with self._cond:
                self._active_kinds.discard(str(event.get("kind")))
                if not self._active_kinds:
                    self._retained[self.topics["alert_state"]] = "OFF"
                self._events.append({**event, "session": self.session_id})
                self._cond.notify_all()
        elif etype in SYSTEM_EVENTS:
            with self._cond:
                self._events.append({**event, "session": self.session_id, "sent_at": None})
                self._cond.notify_all()
        elif etype == "summary":
            data = _dumps({**event, "session": self.session_id})
            with self._cond:
                self._retained[self.topics["session"]] = data
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
            return not (self._alerts or self._inflight or self._acked or self._retained or self._events)

        with self._cond:
            while not drained() and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            connected = self._connected
        if client is not None and connected:
            try:
                info = client.publish(self.topics["status"], "offline", qos=1, retain=True)
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
        self._set_status("stopped")

    @property
    def connected(self) -> bool:
        return self._connected

    def pending_alerts(self) -> int:
        """Alerts raised and not yet acknowledged by the broker."""
        with self._cond:
            return len(self._raised) + len(self._alerts) + len(self._inflight)

    # ------------------------------------------------------------------ paho set-up and callbacks

    def _make_client(self) -> _Client:
        s = self.settings
        if not s.host:
            raise MqttSetupError("MQTT host is empty")
        if not 0 < s.port < 65536:
            raise MqttSetupError(f"MQTT port {s.port} is out of range")
        client = _Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.effective_client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.connect_error = self._on_connect_error
        apply_credentials(client, s)
        client.will_set(self.topics["status"], "offline", qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(0)  # we window alerts ourselves; nothing waits in paho's queue
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = _no_delay
        return client

    def _on_connect_error(self, exc: BaseException) -> None:
        self._refused = False
        self._set_status(_describe_os_error(exc, self.settings.host, self.settings.port), logging.WARNING)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self._set_status(connack_refusal(reason_code, self.settings.username), logging.ERROR)
            return
        with self._cond:
            self._gen += 1
            self._connected = True
            self._refused = False
            self._cond.notify_all()
        self._set_status(f"connected to {self.settings.host}:{self.settings.port}")
        client.publish(self.topics["status"], "online", qos=1, retain=True)
        if self.settings.homeassistant:
            for topic, config in self.discovery_configs().items():
                client.publish(topic, _dumps(config), qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            exiting = self._exit
            self._cond.notify_all()
        if not exiting and not self._refused:
            s = self.settings
            self._set_status(f"connection lost ({reason_code}); reconnecting to {s.host}:{s.port}", logging.WARNING)

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
        if not self._alerts or len(self._inflight) >= ALERT_WINDOW:
            return False
        return all(gen == self._gen for _, gen in self._inflight.values())

    def _work(self) -> bool:
        if self._raised or self._acked:
            return True
        if not self._connected or self._client is None:
            return False
        return bool(self._can_send_alert() or self._retained or self._events or self._strides)

    def _run_sender(self) -> None:
        while True:
            with self._cond:
                while not self._work() and not self._exit:
                    self._cond.wait(0.5)
                if self._exit and not self._raised and not self._acked:
                    return
                raised = list(self._raised)
                self._raised.clear()
                acked = list(self._acked)
                self._acked.clear()
            for p in raised:
                self._outbox_call("add", p)
            with self._cond:
                self._alerts.extend(raised)
            for p in acked:
                self._outbox_call("mark_delivered", p.get("session"), p.get("alert_id"))
                self.delivered.append(_public(p))
            with self._cond:
                if self._exit:
                    continue
            self._send_ready()

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
                    kind, item = "alert", self._alerts.popleft()
                elif self._retained:
                    topic = next(iter(self._retained))
                    kind, item = "retained", (topic, self._retained.pop(topic))
                elif self._events:
                    kind, item = "event", self._events.popleft()
                elif self._strides:
                    kind, item = "stride", self._strides.popleft()
                else:
                    return
            if kind == "alert":
                self._send_alert(client, item, gen)
            elif kind == "retained":
                client.publish(item[0], item[1], qos=1, retain=True)
            elif kind == "event":
                client.publish(self.topics["event"], _dumps({**item, "sent_at": self._wall()}), qos=1)
            else:
                info = client.publish(self.topics["stride"], _dumps(item), qos=0)
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    with self._cond:
                        if len(self._strides) < self.settings.stride_queue_max:
                            self._strides.appendleft(item)

    def _send_alert(self, client: _Client, payload: dict, gen: int) -> None:
        now_wall = self._wall()
        payload["sent_at"] = now_wall
        mono = payload.get("_raised_mono")
        if payload.get("_boot_id") == BOOT_ID and isinstance(mono, int | float):
            payload["age_s"] = round(max(0.0, self._clock() - mono), 6)
        else:
            payload["age_s"] = round(max(0.0, now_wall - float(payload.get("raised_at") or now_wall)), 6)
            payload["age_source"] = "wall"
        info = client.publish(self.topics["alert"], _dumps(_public(payload)), qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # not accepted by paho: keep it first in line
            with self._cond:
                self._alerts.appendleft(payload)
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
        out: dict[str, dict] = {}
        for key, name, field, unit in (
            ("pelvic_tilt", "Pelvic tilt", "pelvic_tilt_deg", "°"),
            ("stack", "Stack angle", "stack_deg", "°"),
            ("cadence", "Cadence", "cadence_spm", "spm"),
        ):
            uid = f"stackcue_{runner}_{key}"
            out[f"{HA_PREFIX}/sensor/{uid}/config"] = {
                "name": name,
                "unique_id": uid,
                "state_topic": self.topics["stride"],
                "value_template": f"{{{{ value_json.{field} }}}}",
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "device": device,
                **avail,
            }
        uid = f"stackcue_{runner}_posture_alert"
        out[f"{HA_PREFIX}/binary_sensor/{uid}/config"] = {
            "name": "Posture alert",
            "unique_id": uid,
            "state_topic": self.topics["alert_state"],
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "device": device,
            **avail,
        }
        return out


def connack_refusal(reason_code, username: str) -> str:
    """One line for a refused CONNACK (mosquitto 2.0 answers 5/135 for anonymous and wrong password alike)."""
    code = reason_code.value
    if code == 134:
        return "refused: bad username or password"
    if code == 135:
        return ("refused: not authorised (bad username or password)" if username
                else "refused: not authorised (the broker wants a username and password)")
    return f"refused: {reason_code}"


def apply_credentials(client: mqtt.Client, s: MqttSettings) -> None:
    """Username/password (from the password file) and TLS from the settings; one-line MqttSetupError if unusable."""
    if s.username:
        password = None
        if s.password_file:
            try:
                password = Path(s.password_file).read_text().splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise MqttSetupError(f"cannot read MQTT password file {s.password_file}: "
                                  f"{getattr(exc, 'strerror', None) or 'empty file'}") from exc
        client.username_pw_set(s.username, password)
    if s.tls_ca:
        try:
            ctx = ssl.create_default_context(cafile=s.tls_ca)
            if s.tls_cert:
                ctx.load_cert_chain(s.tls_cert, s.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise MqttSetupError(f"TLS: cannot load certificates ({s.tls_ca}, {s.tls_cert or '-'}): "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc
        client.tls_set_context(ctx)


