"""The MQTT connection both the publisher (``stackcue run``) and the cue client (``stackcue cue``) open.

One place for what a connection needs whoever uses it: the settings, credentials and TLS, a paho client that
says why a connection attempt failed, TCP_NODELAY, and the one-line status a wrong host, a refused CONNACK or
a bad certificate gives (logged once per change, never raised into the caller's thread).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from stackcue.errors import MqttSetupError

from .topics import topic


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

    def topic(self, name: str) -> str:
        """The full topic of a ``service.topics.TOPICS`` entry for this runner."""
        return topic(self.topic_prefix, name)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def apply_credentials(client: mqtt.Client, s: MqttSettings) -> None:
    """Username/password (from the password file) and TLS from the settings; one-line MqttSetupError if unusable."""
    if s.username:
        password = None
        if s.password_file:
            try:
                password = Path(s.password_file).read_text().splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise MqttSetupError(
                    f"cannot read MQTT password file {s.password_file}: "
                    f"{getattr(exc, 'strerror', None) or 'empty file'}"
                ) from exc
        client.username_pw_set(s.username, password)
    if s.tls_ca:
        try:
            ctx = ssl.create_default_context(cafile=s.tls_ca)
            if s.tls_cert:
                ctx.load_cert_chain(s.tls_cert, s.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise MqttSetupError(
                f"TLS: cannot load certificates ({s.tls_ca}, {s.tls_cert or '-'}): "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from exc
        client.tls_set_context(ctx)


def connack_refusal(reason_code: Any, username: str) -> str:
    """One line for a refused CONNACK (mosquitto 2.0 answers 5/135 for anonymous and wrong password alike)."""
    code = reason_code.value
    if code == 134:
        return "refused: bad username or password"
    if code == 135:
        return (
            "refused: not authorised (bad username or password)"
            if username
            else "refused: not authorised (the broker wants a username and password)"
        )
    return f"refused: {reason_code}"


def describe_os_error(exc: BaseException, host: str, port: int) -> str:
    """One line for a failed connection attempt, naming what to check rather than paho's traceback."""
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


class MqttClient(mqtt.Client):
    """paho's client, reporting why a connection attempt failed (paho's on_connect_fail gets no reason)."""

    connect_error: Callable[[BaseException], None] | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError, socket.gaierror, ConnectionRefusedError ... are all OSError
            if self.connect_error is not None:
                self.connect_error(exc)
            raise


def no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Small messages go out at once (no Nagle: an alert must not wait for the ACK of the one before)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def new_client(s: MqttSettings, client_id: str, clean_session: bool, link: LinkStatus) -> MqttClient:
    """A paho 2.x client (MQTT 3.1.1) with credentials, TLS, backoff and status reporting set up.

    Raises MqttSetupError (one line) for settings that can never connect: each caller decides whether that
    stops it (the cue client) or only becomes its status (the publisher, which must not stop the run).
    """
    if not s.host:
        raise MqttSetupError("MQTT host is empty")
    if not 0 < s.port < 65536:
        raise MqttSetupError(f"MQTT port {s.port} is out of range")
    client = MqttClient(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311
    )
    client.connect_error = link.connect_error
    apply_credentials(client, s)
    client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
    client.on_socket_open = no_delay
    return client


class LinkStatus:
    """The connection's state as one line (``text``), logged on ``log`` once each time it changes.

    ``refused`` remembers a refused CONNACK, so that the disconnect paho reports right after it does not
    overwrite the reason with a vaguer "connection lost".
    """

    def __init__(self, settings: MqttSettings, log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self.text = "not started"
        self.refused = False
        self._last_logged = ""

    def set(self, text: str, level: int = logging.INFO) -> None:
        self.text = text
        if text != self._last_logged:
            self._last_logged = text
            self.log.log(level, "mqtt: %s", text)

    def connecting(self) -> None:
        self.set(f"connecting to {self.settings.address}")

    def connect_error(self, exc: BaseException) -> None:
        """paho's network thread could not open the connection (called from ``MqttClient.reconnect``)."""
        self.refused = False
        self.set(describe_os_error(exc, self.settings.host, self.settings.port), logging.WARNING)

    def connack(self, reason_code: Any, detail: str = "") -> bool:
        """Record a CONNACK; True when the broker accepted the connection."""
        if reason_code.is_failure:
            self.refused = True
            self.set(connack_refusal(reason_code, self.settings.username), logging.ERROR)
            return False
        self.refused = False
        self.set(f"connected to {self.settings.address}{detail}")
        return True

    def lost(self, reason_code: Any, closing: bool) -> None:
        """The connection dropped; paho reconnects with backoff unless we are closing."""
        if not closing and not self.refused:
            self.set(f"connection lost ({reason_code}); reconnecting to {self.settings.address}", logging.WARNING)
