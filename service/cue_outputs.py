"""The cue's output devices: speech by espeak-ng (or printed), a buzzer or vibration motor on a GPIO pin.

Each reports a failure once and never raises while playing, so a missing espeak-ng or a failing buzzer never
ends the cue client; only opening a GPIO pin that cannot work raises (CueError), as a setup mistake.
Audio is ``espeak-ng -v <voice> -s <wpm> "<text>"`` on the default audio device (where Bluetooth earbuds
appear on a Pi). Its stream is marked as an event (``PULSE_PROP_media.role=event``, which pipewire-pulse turns
into PipeWire's ``Notification`` role), so an audio stack set up for role-based ducking lowers the runner's
music while a cue is said (docs/cues.md, "Ducking").
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from stackcue.errors import CueError

log = logging.getLogger("stackcue.cue")

SAY_TIMEOUT_S = 30.0
#: espeak-ng's stream is an event (PulseAudio's role; pipewire-pulse maps it to "Notification"): ducking keys on it
SPEECH_ENV = {"PULSE_PROP_media.role": "event"}


class Voice(Protocol):
    """What the cue client needs of a speaker (``Speaker``, ``PrintSpeaker``, a test's fake)."""

    def speak(self, text: str) -> bool: ...  # blocks until said; False when it could not be

    def cancel(self) -> None: ...  # cut short what is being said (stop)

    def describe(self) -> str: ...


class Buzzer(Protocol):
    """What the cue client needs of a haptic output (``Haptic``)."""

    def play(self, pattern: Sequence[tuple[float, float]], stop: threading.Event | None = None) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


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
        r = subprocess.run(self._argv(text, "-w", str(wav_path)), capture_output=True, text=True, timeout=SAY_TIMEOUT_S)
        if r.returncode != 0:
            raise CueError(f"{self.command} failed (exit {r.returncode}): {_last_line(r.stderr)}")

    def speak(self, text: str) -> bool:
        """Say ``text`` and wait until it has been said. False (reported once) when it could not be."""
        if shutil.which(self.command) is None:
            return self._fail(f"{self.command} is not installed (sudo apt-get install espeak-ng)")
        try:
            with self._lock:
                self._proc = subprocess.Popen(
                    self._argv(text),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    env={**os.environ, **SPEECH_ENV},
                )
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
            raise CueError(
                f"GPIO {pin}: gpiozero is not installed ({exc}); set [cue] gpio_pin = 0 to disable"
            ) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gpiozero warns about every pin library it falls back from
                self.device = OutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
        except BadPinFactory:
            raise CueError(
                f"GPIO {pin}: no GPIO pin library works here (not a Raspberry Pi, or lgpio is not "
                "installed); set [cue] gpio_pin = 0 to disable"
            ) from None
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


class PrintSpeaker:
    """Writes what would be said, with the time, instead of saying it (``stackcue cue --print``)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def speak(self, text: str) -> bool:
        self.stream.write(f'{time.strftime("%H:%M:%S")} cue: "{text}"\n')
        self.stream.flush()
        return True

    def cancel(self) -> None:
        pass

    def describe(self) -> str:
        return "printing the cues (--print)"
