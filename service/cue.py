"""``stackcue cue``: the MQTT client that turns the session's alerts and system events into cues.

Subscriptions (paho-mqtt 2.x, CallbackAPIVersion.VERSION2): the topics ``service.topics`` lists for "cue"
(``<prefix>/alert`` and ``<prefix>/event``, QoS 1) with a persistent session (``clean_session=False``, fixed
client id ``stackcue-cue-<runner>-<device>``), so the broker keeps what was published while this client was
away; the staleness rule drops what has become useless meanwhile.

What each message means (which event cues what, duplicates, staleness, ownership) is ``service.cue_rules``;
the speaker and the buzzer are ``service.cue_outputs``; the connection is ``service.mqtt_connection``, shared
with the publisher.

Outputs never block the MQTT callback: ``handle`` only decides and queues; one worker thread plays cues
one after another (haptic pattern, then speech), so speech never overlaps. The rules' deadline is checked
again just before a cue plays, in case it waited in the queue.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable

from stackcue.errors import CueError, MqttSetupError

from .cue_outputs import Buzzer, Haptic, PrintSpeaker, Speaker, Voice
from .cue_rules import Cue, CueRules, Decision
from .mqtt_connection import LinkStatus, MqttClient, MqttSettings, new_client
from .topics import subscribed_by

log = logging.getLogger("stackcue.cue")

CUE_GAP_S = 0.35  # pause after a haptic cue so that two patterns never run together


class CueClient:
    """Subscribes to the session's alerts and system events and cues the runner (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        cue: dict,
        device: str,
        speaker: Voice | None,
        haptic: Buzzer | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.cue_cfg = cue
        self.device = device
        self.speaker = speaker
        self.haptic = haptic
        self.subscriptions = [(settings.topic(t.name), t.qos) for t in subscribed_by("cue")]
        self.topics = {t.name: settings.topic(t.name) for t in subscribed_by("cue")}
        self.rules = CueRules(
            str(cue.get("owner", "pi")),
            device,
            float(cue.get("max_age_s", 10.0)),
            self.topics,
            can_say=speaker is not None,
            can_buzz=haptic is not None,
            clock=clock,
        )
        self.client_id = f"stackcue-cue-{settings.runner_id}-{device}"
        self.link = LinkStatus(settings, log)
        self.played: list[Cue] = []  # cues played, in order
        self._lock = threading.Lock()  # handle() may be called from paho's thread and from tests
        self._queue: list[Cue] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._client: MqttClient | None = None
        self._closing = False
        self.subscribed = threading.Event()  # set once the broker acknowledged the subscriptions

    @property
    def owner(self) -> str:
        return self.rules.owner

    @property
    def is_owner(self) -> bool:
        return self.rules.is_owner

    @property
    def counts(self) -> dict[str, int]:
        """Decisions so far: queued, duplicate, stale, silent, ignored."""
        return self.rules.counts

    @property
    def status(self) -> str:
        """One line: connecting, connected, why it cannot connect, stopped."""
        return self.link.text

    def silent_reason(self) -> str:
        return self.rules.silent_reason()

    def handle(self, topic: str, payload: bytes | str) -> Decision:
        """Decide what one MQTT message means for the runner; queue the cue. Never raises."""
        try:
            with self._lock:
                decision = self.rules.decide(topic, payload)
                if decision.cue is not None:
                    with self._cond:
                        self._queue.append(decision.cue)
                        self._cond.notify_all()
                return decision
        except Exception as exc:  # a bug here must not kill paho's network thread
            log.exception("cue: message on %s not handled", topic)
            return Decision(None, f"error: {exc}")

    # ------------------------------------------------------------------ the worker

    def start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run_worker, name="stackcue-cue-worker", daemon=True)
            self._worker.start()

    def _run_worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                cue = self._queue.pop(0)
                self._busy = True
            try:
                self._play(cue)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _play(self, cue: Cue) -> None:
        if cue.deadline is not None and time.monotonic() > cue.deadline:
            log.warning("cue: %s not cued: it waited behind other cues past [cue] max_age_s", cue.what)
            return
        buzzed = False
        try:
            if cue.pattern and self.haptic is not None:
                self.haptic.play(cue.pattern, self._stop)
                buzzed = True
            if cue.text and self.speaker is not None and not self._stop.is_set():
                self.speaker.speak(cue.text)
        except Exception as exc:  # a fake or broken output must not end the worker
            log.error("cue: %s could not be played: %s", cue.what, exc)
        self.played.append(cue)
        if buzzed:
            self._stop.wait(CUE_GAP_S)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every queued cue has been played (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # ------------------------------------------------------------------ MQTT

    def _make_client(self) -> MqttClient:
        client = new_client(self.settings, self.client_id, clean_session=False, link=self.link)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: self.subscribed.set()
        return client

    def start(self) -> None:
        """Start the worker and connect in the background. Raises CueError for a setup mistake."""
        self.start_worker()
        if not self.is_owner:
            self.rules.tell_silence()
        try:
            client = self._make_client()
        except MqttSetupError as exc:
            raise CueError(str(exc)) from None
        self._client = client
        s = self.settings
        self.link.connecting()
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Disconnect, stop the worker (a cue being said is cut short)."""
        self._closing = True
        client = self._client
        was = self.status
        connected = self.connected
        if client is not None:
            try:
                client.disconnect()
            except Exception:
                pass
            stopper = threading.Thread(target=client.loop_stop, daemon=True)
            stopper.start()
            stopper.join(timeout)
        self._stop.set()
        if self.speaker is not None:
            self.speaker.cancel()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
        if self.haptic is not None:
            self.haptic.close()
        self.link.set(f"disconnected from {self.settings.address}" if connected else f"stopped ({was})")

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        resumed = " (resumed session)" if getattr(flags, "session_present", False) else ""
        if self.link.connack(reason_code, resumed):
            client.subscribe(self.subscriptions)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.link.lost(reason_code, closing=self._closing)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.retain and msg.topic == self.rules.topics["alert"]:
            # alerts are never published retained: one held by the broker (another client's, a stale test)
            # would be spoken again at every start of this client
            log.warning("cue: ignored: a retained message on %s (alerts are never retained)", msg.topic)
            return
        self.handle(msg.topic, msg.payload)

    # ------------------------------------------------------------------ the command

    def describe(self) -> str:
        s = self.settings
        if not self.is_owner:
            outputs = f"silent ({self.silent_reason()})"
        else:
            outs = [o.describe() for o in (self.speaker, self.haptic) if o is not None]
            outputs = "cueing by " + (" and ".join(outs) if outs else "nothing (audio off, gpio_pin 0)")
        return (
            f"listening to {self.topics['alert']} and {self.topics['event']} on {s.host}:{s.port} "
            f"as {self.client_id}; {outputs}"
        )


def from_config(cfg, device: str, print_only: bool = False) -> CueClient:
    """The cue client of ``stackcue cue``: outputs opened only when this device is the cue owner."""
    c = dict(cfg["cue"])
    speaker: Voice | None = None
    haptic: Buzzer | None = None
    if c["owner"] == device and print_only:
        speaker = PrintSpeaker()
    elif c["owner"] == device:
        if c["audio"]:
            speaker = Speaker(c["voice"], c["speed_wpm"])
            if shutil.which(speaker.command) is None:
                log.error(
                    "cue: audio: %s is not installed (sudo apt-get install espeak-ng); cues are not spoken",
                    speaker.command,
                )
        if c["gpio_pin"]:
            try:
                haptic = Haptic(c["gpio_pin"])
            except CueError as exc:
                if speaker is None:
                    raise
                log.error("cue: %s (going on with audio only)", exc)
    return CueClient(cfg.mqtt_settings(), c, device, speaker, haptic)


def serve(client: CueClient) -> int:
    """Run until SIGTERM/SIGINT; then disconnect. Exit status 0."""
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    client.start()
    while not stop.wait(0.5):
        pass
    client.stop()
    return 0
