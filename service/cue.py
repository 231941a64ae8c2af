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

Cue styles (``[cue] style``, or the session event's ``cue_style`` when the coach's targets set one): besides
the alerts, ``sonify``, ``beep`` and ``haptic`` follow every provisional stride (``<prefix>/stride_provisional``)
with a continuous layer (``service.cue_stream``). While an alert is spoken the layer ducks; while an alert's
pattern buzzes the pulses pause: the two never fight.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable

from stackcue.dsp.phrases import LANGUAGES, VOICES
from stackcue.dsp.sonify import CONTINUOUS_STYLES, SoundMap, Synth, sonified_deviation
from stackcue.errors import CueError, MqttSetupError

from . import json_input
from .cue_outputs import Buzzer, Haptic, PrintSpeaker, Speaker, Voice
from .cue_rules import Cue, CueRules, Decision
from .cue_stream import CueStream, HapticPulses, Layer, PlayerSink, player_argv
from .mqtt_connection import LinkStatus, MqttClient, MqttSettings, new_client
from .topics import TOPICS, subscribed_by

log = logging.getLogger("stackcue.cue")

CUE_GAP_S = 0.35  # pause after a haptic cue so that two patterns never run together
PROVISIONAL = "stride_provisional"  # the topic of the strides the continuous styles follow (docs/mqtt.md)


def provisional_topic(settings: MqttSettings) -> str:
    """``<prefix>/stride_provisional``."""
    if PROVISIONAL in TOPICS:
        return settings.topic(PROVISIONAL)
    return f"{settings.topic_prefix}/{PROVISIONAL}"


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
        layer_factory: Callable[[str], Layer | None] | None = None,
    ) -> None:
        self.settings = settings
        self.cue_cfg = cue
        self.device = device
        self.speaker = speaker
        self.haptic = haptic
        self.subscriptions = [(settings.topic(t.name), t.qos) for t in subscribed_by("cue") if t.name != PROVISIONAL]
        self.topics = {t.name: settings.topic(t.name) for t in subscribed_by("cue") if t.name != PROVISIONAL}
        self.provisional_topic = provisional_topic(settings)
        self.layer_factory = layer_factory
        self.style = str(cue.get("style", "spoken"))
        self.layer: Layer | None = None
        self._style_lock = threading.Lock()
        if layer_factory is not None:  # strides reach the client whatever the style: a session may switch it
            self.subscriptions.append((self.provisional_topic, 0))
        self.provisional = 0  # provisional strides handed to the layer
        self._snoozed_until = 0.0  # time.monotonic(): the layer stays silent until then (a "snooze" event)
        self.rules = CueRules(
            str(cue.get("owner", "pi")),
            device,
            float(cue.get("max_age_s", 10.0)),
            self.topics,
            can_say=speaker is not None,
            can_buzz=haptic is not None,
            clock=clock,
            language=str(cue.get("language", "en")),
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

    # ------------------------------------------------------------------ the continuous layer

    def set_style(self, style: str) -> None:
        """Use ``style`` from now on: the old layer stops, the new one (if any) starts. Unknown: kept as is."""
        if style not in ("spoken", *CONTINUOUS_STYLES):
            log.warning("cue: unknown cue style %r ignored (keeping %r)", style, self.style)
            return
        with self._style_lock:
            if style == self.style and (self.layer is not None or style == "spoken"):
                return
            old, self.layer = self.layer, None
            self.style = style
            if old is not None:
                old.stop()
            if style != "spoken" and self.layer_factory is not None and self.is_owner:
                layer = self.layer_factory(style)
                if layer is not None:
                    layer.start()
                    self.layer = layer
            log.info("cue: style %s%s", style, f": {self.layer.describe()}" if self.layer is not None else "")

    def _provisional(self, payload: bytes | str) -> Decision:
        layer = self.layer
        if layer is None:
            return Decision(None, "provisional stride: no continuous layer")
        try:
            msg = json_input.loads(payload)
        except ValueError:
            return Decision(None, "provisional stride: malformed JSON")
        if not isinstance(msg, dict) or msg.get("type", PROVISIONAL) != PROVISIONAL:
            return Decision(None, "provisional stride: not a stride")
        dev = sonified_deviation(msg)
        if time.monotonic() < self._snoozed_until:  # the runner snoozed the cues: the layer too
            dev = None
        layer.set_deviation(dev)
        self.provisional += 1
        return Decision(None, f"layer: deviation {dev}")

    def _session_settings(self, topic: str, payload: bytes | str) -> None:
        """The session event's ``cue_style`` and ``cue_language`` (the coach's targets) are followed; a ``snooze``
        event (``minutes``) silences the continuous layer too."""
        if topic != self.topics.get("event"):
            return
        try:
            msg = json_input.loads(payload)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") == "snooze":  # {"minutes": N}; 0 ends it
            minutes = msg.get("minutes")
            if isinstance(minutes, int | float) and not isinstance(minutes, bool) and 0 <= minutes <= 1440:
                self._snoozed_until = time.monotonic() + 60.0 * float(minutes)
                if minutes and self.layer is not None:
                    self.layer.set_deviation(None)
            return
        if not isinstance(msg, dict) or msg.get("type") != "session" or msg.get("state") != "started":
            return
        lang = msg.get("cue_language")
        if isinstance(lang, str) and lang in LANGUAGES:
            self.rules.language = lang
        style = msg.get("cue_style")
        if isinstance(style, str) and style != self.style:
            self.set_style(style)

    def handle(self, topic: str, payload: bytes | str) -> Decision:
        """Decide what one MQTT message means for the runner; queue the cue. Never raises."""
        try:
            if topic == self.provisional_topic:  # many a second: not through the rules, never queued
                return self._provisional(payload)
            self._session_settings(topic, payload)
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
        layer = self.layer
        try:
            if cue.pattern and self.haptic is not None:
                with layer.hold() if isinstance(layer, HapticPulses) else _nothing():
                    self.haptic.play(cue.pattern, self._stop)
                buzzed = True
            if cue.text and self.speaker is not None and not self._stop.is_set():
                with layer.hold() if isinstance(layer, CueStream) else _nothing():  # the layer ducks
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
        if self.style != "spoken":
            style, self.style = self.style, "spoken"
            self.set_style(style)
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
        with self._style_lock:
            layer, self.layer = self.layer, None
        if layer is not None:
            layer.stop()
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
            outs = [o.describe() for o in (self.speaker, self.haptic, self.layer) if o is not None]
            outputs = "cueing by " + (" and ".join(outs) if outs else "nothing (audio off, gpio_pin 0)")
            outputs += f"; style {self.style}"
        return (
            f"listening to {self.topics['alert']} and {self.topics['event']} on {s.host}:{s.port} "
            f"as {self.client_id}; {outputs}"
        )


class _nothing(contextlib.AbstractContextManager):
    def __exit__(self, *exc) -> None:
        return None


def voice_of(cue: dict) -> str:
    """``[cue] voice``, or the espeak-ng voice of ``[cue] language`` when it is empty."""
    return str(cue.get("voice") or VOICES.get(str(cue.get("language", "en")), "en"))


def layer_factory(cue: dict, haptic: Buzzer | None, record: str | None = None) -> Callable[[str], Layer | None]:
    """Makes the continuous layer of a style: a ``CueStream`` to the audio player (or to the WAV file
    ``record``), or ``HapticPulses`` on the buzzer. None, with one error line, when the style cannot be had."""
    smap = SoundMap(dead_band_deg=float(cue["dead_band_deg"]), full_scale_deg=float(cue["full_scale_deg"]))

    def make(style: str) -> Layer | None:
        if style == "haptic":
            if haptic is None:
                log.error('cue: [cue] style = "haptic" needs a buzzer: set [cue] gpio_pin; no continuous layer')
                return None
            return HapticPulses(haptic, smap)
        if record is not None:
            from .cue_stream import WavSink

            return CueStream(Synth(style, smap), WavSink(record))
        argv = player_argv()
        if argv is None:
            log.error(
                "cue: [cue] style = %r needs an audio player: none of pw-play, aplay, play is installed "
                "(sudo apt-get install pipewire-bin); no continuous layer",
                style,
            )
            return None
        try:
            return CueStream(Synth(style, smap), PlayerSink(argv))
        except OSError as exc:
            log.error("cue: cannot start %s: %s; no continuous layer", argv[0], exc.strerror or exc)
            return None

    return make


def from_config(cfg, device: str, print_only: bool = False, record: str | None = None) -> CueClient:
    """The cue client of ``stackcue cue``: outputs opened only when this device is the cue owner."""
    c = dict(cfg["cue"])
    speaker: Voice | None = None
    haptic: Buzzer | None = None
    if c["style"] == "haptic" and not c["gpio_pin"] and c["owner"] == device:
        raise CueError('[cue] style = "haptic" needs [cue] gpio_pin (the buzzer\'s GPIO pin)')
    if c["owner"] == device and print_only:
        speaker = PrintSpeaker()
    elif c["owner"] == device:
        if c["audio"]:
            speaker = Speaker(voice_of(c), c["speed_wpm"])
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
    factory = None if print_only else layer_factory(c, haptic, record)
    return CueClient(cfg.mqtt_settings(), c, device, speaker, haptic, layer_factory=factory)


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
