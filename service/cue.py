"""``stackcue cue``: turn the session's MQTT alerts and system events into something the runner hears or feels.

One cue owner a session (DESIGN.md, "Cues"): this client cues only when ``[cue] owner`` equals its
``--device`` (default ``pi``). Otherwise it logs what it would cue and, once, why it stays silent.

Subscriptions (paho-mqtt 2.x, CallbackAPIVersion.VERSION2): ``<prefix>/alert`` and ``<prefix>/event`` at
QoS 1 with a persistent session (``clean_session=False``, fixed client id ``stackcue-cue-<runner>-<device>``),
so the broker keeps what was published while this client was away; the staleness rule below drops what
has become useless meanwhile.

What is cued:

* alerts (``<prefix>/alert``): a short phrase per kind (``PHRASES``; a reminder says the same phrase) and/or
  a haptic pattern per kind (``ALERT_PATTERNS``, (on_s, off_s) pairs on a GPIO pin, distinct per kind);
* ``guide`` and ``sensor`` events: their ``say`` text is spoken; ``sensor`` lost also buzzes four short,
  back one short;
* ``calibration`` events: accepted buzzes one short, refused three long (the words come with the ``guide``
  event the daemon sends right after);
* ``session`` events are logged; ``clear`` and anything else are ignored (silence means posture fine).

Duplicates: delivery is at least once, so an alert is cued once per (session, alert_id) and a system event
once per (session, type, t, step/state/ok, say). The keys live in a bounded LRU (``DEDUPE_KEYS``).

Staleness (alerts; system events use the transit part only, as they carry no ``age_s``):

    age = age_s + transit        transit = now (this machine's wall clock) - sent_at (the Pi's wall clock)

``age_s`` is the raise→send time measured on the Pi's monotonic clock (or its wall clock after a reboot),
so it is trustworthy wherever it is read. ``transit`` covers the time spent in the broker (a persistent
session holds alerts while this client is away) and is used only when the two wall clocks are clearly
comparable: ``-CLOCK_SLACK_S <= transit <= MAX_TRANSIT_S`` (a small negative value counts as 0). A
negative or absurd difference means the clocks disagree (a Pi without RTC and without NTP, a phone on
another clock) and ``age_s`` is used alone. On the Pi itself both stamps come from the same clock, so the
rule is exact there. An alert older than ``[cue] max_age_s`` is logged, not cued: a cue five minutes late
helps nobody. The same deadline is checked again just before the cue plays, in case it waited in the queue.

Outputs never block the MQTT callback: ``handle`` only decides and queues; one worker thread plays cues
one after another (haptic pattern, then speech), so speech never overlaps. Audio is
``espeak-ng -v <voice> -s <wpm> "<text>"`` on the default audio device (where Bluetooth earbuds appear on a
Pi). A missing espeak-ng, a failing command or a failing buzzer is reported once and is never fatal.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt

from stackcue.dsp.alert_kinds import ALERT_KINDS, GENERIC_PATTERN, GENERIC_PHRASE, SHORT, Pattern
from stackcue.errors import CueError, MqttSetupError

from .mqtt_publisher import (
    MqttSettings,
    _Client,
    _describe_os_error,
    _no_delay,
    apply_credentials,
    connack_refusal,
)

log = logging.getLogger("stackcue.cue")


PHRASES: dict[str, str] = {k.name: k.phrase for k in ALERT_KINDS.values()}
ALERT_PATTERNS: dict[str, Pattern] = {k.name: k.pattern for k in ALERT_KINDS.values()}
SYSTEM_PATTERNS: dict[str, Pattern] = {
    "calibration_ok": ((SHORT, 0.0),),  # one short
    "calibration_refused": ((0.5, 0.25), (0.5, 0.25), (0.5, 0.0)),  # three long
    "sensor_lost": ((0.1, 0.1), (0.1, 0.1), (0.1, 0.1), (0.1, 0.0)),  # four short
    "sensor_back": ((SHORT, 0.0),),  # one short: all well again
}
SAY_LOST = "Sensor lost."
SAY_BACK = "Sensor back."

CUE_GAP_S = 0.35  # pause after a haptic cue so that two patterns never run together
DEDUPE_KEYS = 2048
CLOCK_SLACK_S = 2.0
MAX_TRANSIT_S = 86400.0
SAY_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------- outputs


class Speaker:
    """espeak-ng on the default audio output. ``speak`` never raises: a failure is reported once."""

    def __init__(self, voice: str = "en", wpm: int = 170, command: str = "espeak-ng") -> None:
        self.voice, self.wpm, self.command = voice, int(wpm), command
        self.failures = 0
        self._reported = False
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _argv(self, text: str, *extra: str) -> list[str]:
        return [self.command, "-v", self.voice, "-s", str(self.wpm), *extra, text.lstrip("-")]

    def render(self, text: str, wav_path: str | Path) -> None:
        """Write the spoken text to a WAV file (espeak-ng -w). Raises CueError on failure."""
        if shutil.which(self.command) is None:
            raise CueError(f"{self.command} is not installed (sudo apt-get install espeak-ng)")
        r = subprocess.run(self._argv(text, "-w", str(wav_path)), capture_output=True, text=True,
                           timeout=SAY_TIMEOUT_S)
        if r.returncode != 0:
            raise CueError(f"{self.command} failed (exit {r.returncode}): {_last_line(r.stderr)}")

    def speak(self, text: str) -> bool:
        """Say ``text`` and wait until it has been said. False (reported once) when it could not be."""
        if shutil.which(self.command) is None:
            return self._fail(f"{self.command} is not installed (sudo apt-get install espeak-ng)")
        try:
            with self._lock:
                self._proc = subprocess.Popen(self._argv(text), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              stdin=subprocess.DEVNULL, text=True)
            proc = self._proc
            try:
                _, err = proc.communicate(timeout=SAY_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                return self._fail(f"{self.command} did not finish within {SAY_TIMEOUT_S:.0f} s")
            finally:
                with self._lock:
                    self._proc = None
        except OSError as exc:
            return self._fail(f"cannot run {self.command}: {exc.strerror or exc}")
        if proc.returncode < 0:  # cancelled (stop)
            return False
        if proc.returncode != 0:
            return self._fail(f"{self.command} failed (exit {proc.returncode}): {_last_line(err)}")
        return True

    def cancel(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()

    def _fail(self, why: str) -> bool:
        self.failures += 1
        if not self._reported:
            self._reported = True
            log.error("cue: audio: %s; cues are not spoken (reported once)", why)
        return False

    def describe(self) -> str:
        return f"voice (espeak-ng -v {self.voice} -s {self.wpm})"


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


class Haptic:
    """A buzzer or vibration motor on a GPIO pin (gpiozero ``OutputDevice``, active high)."""

    def __init__(self, pin: int, pin_factory=None, active_high: bool = True) -> None:
        self.pin = pin
        self.failures = 0
        self._reported = False
        try:
            from gpiozero import OutputDevice
            from gpiozero.exc import BadPinFactory
        except ImportError as exc:
            raise CueError(f"GPIO {pin}: gpiozero is not installed ({exc}); "
                           "set [cue] gpio_pin = 0 to disable") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gpiozero warns about every pin library it falls back from
                self.device = OutputDevice(pin, active_high=active_high, initial_value=False,
                                           pin_factory=pin_factory)
        except BadPinFactory:
            raise CueError(f"GPIO {pin}: no GPIO pin library works here (not a Raspberry Pi, or lgpio is not "
                           "installed); set [cue] gpio_pin = 0 to disable") from None
        except Exception as exc:  # pin in use, no permission, not a GPIO ...
            reason = str(exc) or type(exc).__name__
            raise CueError(f"GPIO {pin}: {reason}; set [cue] gpio_pin = 0 to disable") from None

    def play(self, pattern: Sequence[tuple[float, float]], stop: threading.Event | None = None) -> None:
        """Drive the pin on/off per (on_s, off_s); timed against one start instant, so errors do not add up."""
        t = time.monotonic()
        try:
            for on_s, off_s in pattern:
                self.device.on()
                t += on_s
                _sleep_until(t, stop)
                self.device.off()
                t += off_s
                _sleep_until(t, stop)
        except Exception as exc:
            self.failures += 1
            if not self._reported:
                self._reported = True
                log.error("cue: GPIO %s: %s (reported once)", self.pin, exc)
        finally:
            try:
                self.device.off()
            except Exception:
                pass

    def close(self) -> None:
        try:
            self.device.off()
            self.device.close()
        except Exception:
            pass

    def describe(self) -> str:
        return f"haptic on GPIO {self.pin}"


def _sleep_until(t: float, stop: threading.Event | None) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        if stop is not None and stop.is_set():
            return
        time.sleep(min(left, 0.05))


# --------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Cue:
    what: str  # "alert anterior_tilt", "guide", "sensor lost", "calibration refused" ...
    text: str | None  # to speak, if a speaker is there
    pattern: Pattern | None  # to buzz, if a haptic is there
    key: tuple
    deadline: float | None = None  # time.monotonic() after which it is too late to play (alerts)


class Decision(NamedTuple):
    cue: Cue | None  # the cue queued, or None
    reason: str  # why (also for a queued cue: "queued")


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[tuple, None] = OrderedDict()

    def seen(self, key: tuple) -> bool:
        """True if key was seen before; remembers it either way."""
        if key in self._d:
            self._d.move_to_end(key)
            return True
        self._d[key] = None
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._d)


def _num(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


class CueClient:
    """Subscribes to the session's alerts and system events and cues the runner (see the module docstring)."""

    def __init__(self, settings: MqttSettings, cue: dict, device: str, speaker: Speaker | None,
                 haptic: Haptic | None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.cue_cfg = cue
        self.device = device
        self.owner = str(cue.get("owner", "pi"))
        self.is_owner = self.owner == device
        self.max_age_s = float(cue.get("max_age_s", 10.0))
        self.speaker = speaker
        self.haptic = haptic
        self.clock = clock
        p = settings.topic_prefix
        self.topics = {"alert": f"{p}/alert", "event": f"{p}/event"}
        self.client_id = f"stackcue-cue-{settings.runner_id}-{device}"
        self.status = "not started"
        self.played: list[Cue] = []  # cues played, in order
        self.counts = {"queued": 0, "duplicate": 0, "stale": 0, "silent": 0, "ignored": 0}
        self._seen = _Lru(DEDUPE_KEYS)
        self._lock = threading.Lock()  # handle() may be called from paho's thread and from tests
        self._queue: list[Cue] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._client: _Client | None = None
        self._silence_told = False
        self._owner_warned: set[str] = set()
        self._last_logged = ""
        self._refused = False
        self._closing = False
        self.subscribed = threading.Event()  # set once the broker acknowledged the subscriptions

    # ------------------------------------------------------------------ the decision

    def silent_reason(self) -> str:
        if self.owner == "none":
            return '[cue] owner = "none": no device cues this session'
        return f"[cue] owner = {self.owner!r}: the {self.owner} cues this session, not this device ({self.device})"

    def handle(self, topic: str, payload: bytes | str) -> Decision:
        """Decide what one MQTT message means for the runner; queue the cue. Never raises."""
        try:
            with self._lock:
                return self._handle(topic, payload)
        except Exception as exc:  # a bug here must not kill paho's network thread
            log.exception("cue: message on %s not handled", topic)
            return Decision(None, f"error: {exc}")

    def _ignore(self, reason: str, level: int = logging.DEBUG) -> Decision:
        self.counts["ignored"] += 1
        log.log(level, "cue: ignored: %s", reason)
        return Decision(None, reason)

    def _handle(self, topic: str, payload: bytes | str) -> Decision:
        if topic not in self.topics.values():
            return self._ignore(f"unknown topic {topic}")
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return self._ignore(f"malformed JSON on {topic}", logging.WARNING)
        if not isinstance(msg, dict):
            return self._ignore(f"not a JSON object on {topic}", logging.WARNING)
        if topic == self.topics["alert"]:
            return self._alert(msg)
        return self._event(msg)

    def _transit(self, msg: dict) -> float | None:
        """now - sent_at when the clocks are clearly comparable (module docstring), else None."""
        sent = _num(msg.get("sent_at"))
        if sent is None:
            return None
        d = self.clock() - sent
        if -CLOCK_SLACK_S <= d <= MAX_TRANSIT_S:
            return max(0.0, d)
        return None

    def _alert(self, msg: dict) -> Decision:
        kind = msg.get("kind")
        if not isinstance(kind, str):
            return self._ignore("alert without a kind", logging.WARNING)
        aid = msg.get("alert_id", msg.get("id"))
        key = ("alert", msg.get("session"), aid) if aid is not None else ("alert", msg.get("session"), kind,
                                                                         msg.get("t"))
        if self._seen.seen(key):
            self.counts["duplicate"] += 1
            return Decision(None, "duplicate")
        age_s = _num(msg.get("age_s"))
        transit = self._transit(msg)
        age = (max(0.0, age_s) if age_s is not None else 0.0) + (transit or 0.0)
        what = f"alert {kind}" + (" (reminder)" if msg.get("reminder") else "")
        label = f"{what} #{aid}"
        if age > self.max_age_s:
            self.counts["stale"] += 1
            how = (f"age_s {age_s if age_s is not None else '?'} + {transit:.1f} s in transit" if transit is not None
                   else f"age_s {age_s if age_s is not None else '?'}, sent_at not comparable")
            reason = f"stale: {age:.1f} s old ({how}), over [cue] max_age_s = {self.max_age_s:g}"
            log.warning("cue: %s not cued: %s; a cue that late helps nobody", label, reason)
            return Decision(None, reason)
        cue = Cue(what, PHRASES.get(kind, GENERIC_PHRASE), ALERT_PATTERNS.get(kind, GENERIC_PATTERN), key,
                  deadline=time.monotonic() + (self.max_age_s - age))
        return self._queue_cue(cue, label)

    def _event(self, msg: dict) -> Decision:
        etype = msg.get("type")
        session = msg.get("session")
        if etype == "session":
            owner = msg.get("cue_owner")
            log.info("cue: session %s %s (runner %s, cue owner %s)", session, msg.get("state"), msg.get("runner"),
                     owner)
            if isinstance(owner, str) and owner != self.owner and session not in self._owner_warned:
                self._owner_warned.add(session)
                log.warning("cue: the daemon says cue owner %r for session %s but this client's [cue] owner is %r: "
                            "give both the same configuration, or the runner may hear alerts twice or not at all",
                            owner, session, self.owner)
            return Decision(None, "session event: logged")
        if etype == "guide":
            say = msg.get("say")
            if not isinstance(say, str) or not say.strip():
                return self._ignore("guide event without text")
            key = ("guide", session, msg.get("t"), msg.get("step"), say)
            what, text, pattern = f"guide {msg.get('step')}", say, None
        elif etype == "sensor":
            state = msg.get("state")
            if state not in ("lost", "back"):
                return self._ignore(f"sensor event with state {state!r}")
            say = msg.get("say")
            text = say if isinstance(say, str) and say.strip() else (SAY_LOST if state == "lost" else SAY_BACK)
            key = ("sensor", session, msg.get("t"), state, text)
            what, pattern = f"sensor {state}", SYSTEM_PATTERNS[f"sensor_{state}"]
        elif etype == "calibration":
            ok = bool(msg.get("ok"))
            key = ("calibration", session, msg.get("t"), ok, None)
            what = "calibration " + ("accepted" if ok else "refused")
            text, pattern = None, SYSTEM_PATTERNS["calibration_ok" if ok else "calibration_refused"]
        else:
            return self._ignore(f"no cue for event type {etype!r}")
        if self._seen.seen(key):
            self.counts["duplicate"] += 1
            return Decision(None, "duplicate")
        transit = self._transit(msg)
        if transit is not None and transit > self.max_age_s:
            self.counts["stale"] += 1
            reason = f"stale: {transit:.1f} s in transit, over [cue] max_age_s = {self.max_age_s:g}"
            log.warning("cue: %s not cued: %s", what, reason)
            return Decision(None, reason)
        return self._queue_cue(Cue(what, text, pattern, key), what)

    def _queue_cue(self, cue: Cue, label: str) -> Decision:
        desc = " + ".join(x for x in (f"say {cue.text!r}" if cue.text else "",
                                      f"buzz {_pattern_text(cue.pattern)}" if cue.pattern else "") if x)
        if not self.is_owner:
            self.counts["silent"] += 1
            if not self._silence_told:
                self._silence_told = True
                log.warning("cue: staying silent: %s", self.silent_reason())
            log.info("cue: would cue %s: %s", label, desc)
            return Decision(None, f"silent: {self.silent_reason()}")
        say = bool(cue.text and self.speaker is not None)
        buzz = bool(cue.pattern and self.haptic is not None)
        if not (say or buzz):
            return self._ignore(f"{label}: no output for it (audio off or no haptic)", logging.INFO)
        self.counts["queued"] += 1
        log.info("cue: %s: %s", label, " + ".join(x for x in (f"say {cue.text!r}" if say else "",
                                                              f"buzz {_pattern_text(cue.pattern)}" if buzz else "")
                                                  if x))
        with self._cond:
            self._queue.append(cue)
            self._cond.notify_all()
        return Decision(cue, "queued")

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

    def _set_status(self, text: str, level: int = logging.INFO) -> None:
        self.status = text
        if text != self._last_logged:
            self._last_logged = text
            log.log(level, "mqtt: %s", text)

    def _make_client(self) -> _Client:
        s = self.settings
        if not s.host:
            raise MqttSetupError("MQTT host is empty")
        client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                         protocol=mqtt.MQTTv311)
        client.connect_error = self._on_connect_error
        apply_credentials(client, s)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_socket_open = _no_delay
        return client

    def start(self) -> None:
        """Start the worker and connect in the background. Raises CueError for a setup mistake."""
        self.start_worker()
        if not self.is_owner:
            log.warning("cue: staying silent: %s", self.silent_reason())
            self._silence_told = True
        try:
            client = self._make_client()
        except MqttSetupError as exc:
            raise CueError(str(exc)) from None
        self._client = client
        s = self.settings
        self._set_status(f"connecting to {s.host}:{s.port}")
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
        s = self.settings
        self._set_status(f"disconnected from {s.host}:{s.port}" if connected else f"stopped ({was})")

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def _on_connect_error(self, exc: BaseException) -> None:
        self._refused = False
        self._set_status(_describe_os_error(exc, self.settings.host, self.settings.port), logging.WARNING)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self._set_status(connack_refusal(reason_code, self.settings.username), logging.ERROR)
            return
        self._refused = False
        resumed = " (resumed session)" if getattr(flags, "session_present", False) else ""
        self._set_status(f"connected to {self.settings.host}:{self.settings.port}{resumed}")
        client.subscribe([(self.topics["alert"], 1), (self.topics["event"], 1)])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._closing and not self._refused:
            s = self.settings
            self._set_status(f"connection lost ({reason_code}); reconnecting to {s.host}:{s.port}", logging.WARNING)

    def _on_message(self, client, userdata, msg) -> None:
        self.handle(msg.topic, msg.payload)

    # ------------------------------------------------------------------ the command

    def describe(self) -> str:
        s = self.settings
        if not self.is_owner:
            outputs = f"silent ({self.silent_reason()})"
        else:
            outs = [o.describe() for o in (self.speaker, self.haptic) if o is not None]
            outputs = "cueing by " + (" and ".join(outs) if outs else "nothing (audio off, gpio_pin 0)")
        return (f"listening to {self.topics['alert']} and {self.topics['event']} on {s.host}:{s.port} "
                f"as {self.client_id}; {outputs}")


def _pattern_text(pattern: Pattern | None) -> str:
    return " ".join(f"{on:g}/{off:g}" for on, off in pattern or ())


class PrintSpeaker:
    """Writes what would be said, with the time, instead of saying it (``stackcue cue --print``)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def speak(self, text: str) -> bool:
        self.stream.write(f"{time.strftime('%H:%M:%S')} cue: \"{text}\"\n")
        self.stream.flush()
        return True

    def cancel(self) -> None:
        pass

    def describe(self) -> str:
        return "printing the cues (--print)"


def from_config(cfg, device: str, print_only: bool = False) -> CueClient:
    """The cue client of ``stackcue cue``: outputs opened only when this device is the cue owner."""
    c = dict(cfg["cue"])
    speaker = haptic = None
    if c["owner"] == device and print_only:
        speaker = PrintSpeaker()
    elif c["owner"] == device:
        if c["audio"]:
            speaker = Speaker(c["voice"], c["speed_wpm"])
            if shutil.which(speaker.command) is None:
                log.error("cue: audio: %s is not installed (sudo apt-get install espeak-ng); cues are not spoken",
                          speaker.command)
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
