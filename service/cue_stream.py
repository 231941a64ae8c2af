"""The continuous cue layer: ``dsp.sonify`` samples streamed to the audio output, or pulses on the buzzer.

``CueStream`` renders ``Synth`` blocks of ``BLOCK_S`` against the monotonic clock, never more than ``LEAD_S``
ahead of it, so a new stride's deviation reaches the written stream within one block plus the lead (~30 ms).
The sink is either

* ``PlayerSink``: one long-lived player fed raw PCM (s16le, mono, 48 kHz) through a pipe: ``pw-play``
  (PipeWire's own client, Raspberry Pi OS bookworm's default) with ``--latency`` and ``--media-role``, else
  ``aplay`` with ``--buffer-time``, else sox's ``play``. The pipe is shrunk to one page (4096 bytes, 43 ms), so
  if the device's clock runs slower than ours the stream waits rather than piling audio up; or
* ``WavSink``: a real WAV file holding exactly the samples the player would get (tests, ``--record``).

The player's own buffer comes on top: ``pw-play --latency 50ms`` / ``aplay --buffer-time 50000``; with the
page-sized pipe the end-to-end added latency stays below ~0.15 s (docs/cues.md).

``HapticPulses`` drives the existing ``Haptic`` with pulses whose period follows the deviation.

Both go silent when no stride has come for ``HOLD_S`` (the runner stopped, paused, the session ended or the
link dropped): a layer is never stuck on the last stride's level.

Both have ``hold()``: a context in which the layer gives way to a discrete cue (the sonify layer and beeps duck
by ``SoundMap.duck_db`` while an alert is spoken; pulses pause while an alert pattern buzzes).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from stackcue.dsp.sonify import RATE_HZ, SoundMap, Synth

log = logging.getLogger("stackcue.cue")

BLOCK_S = 0.01  # one rendered block
LEAD_S = 0.02  # how far ahead of the clock the stream is written
PLAYER_LATENCY_MS = 50  # the player's own buffer
MEDIA_ROLE = "Music"  # the layer mixes with the runner's music (WirePlumber's Multimedia group); speech is "event"
F_SETPIPE_SZ = 1031  # fcntl: a pipe's capacity (Linux)
HOLD_S = 2.5  # no stride for this long (a stop, a pause, the session's end, a lost link): the layer goes silent


class Layer(Protocol):
    """What the cue client needs of a continuous layer (``CueStream``, ``HapticPulses``)."""

    def set_deviation(self, deviation: float | None) -> None: ...

    def hold(self) -> contextlib.AbstractContextManager: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def describe(self) -> str: ...


class WavSink:
    """The stream written to a WAV file (int16 mono): what would be played, sample for sample."""

    def __init__(self, path: str | Path, rate: int = RATE_HZ) -> None:
        self.path = Path(path)
        self.rate = rate
        self._w = wave.open(str(self.path), "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(rate)

    def write(self, pcm: bytes) -> None:
        self._w.writeframesraw(pcm)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._w.close()

    def describe(self) -> str:
        return f"recorded to {self.path}"


def player_argv(rate: int = RATE_HZ, which: Callable[[str], str | None] = shutil.which) -> list[str] | None:
    """The command of the first player found (pw-play, aplay, sox's play) reading raw s16le mono on stdin."""
    if which("pw-play"):
        return [
            "pw-play",
            f"--rate={rate}",
            "--channels=1",
            "--format=s16",
            f"--latency={PLAYER_LATENCY_MS}ms",
            f"--media-role={MEDIA_ROLE}",
            "-",
        ]
    if which("aplay"):
        return ["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", str(rate),
                f"--buffer-time={PLAYER_LATENCY_MS * 1000}", "-"]  # fmt: skip
    if which("play"):
        return ["play", "-q", "--buffer", "4096", "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r",
                str(rate), "-"]  # fmt: skip
    return None


class PlayerSink:
    """A long-lived player process fed through a pipe. ``write`` never raises: a failure is reported once and
    the stream goes on (discarding) so the cue client keeps running."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self._reported = False
        self.failed = False
        env = None
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # not Linux, or not allowed: the default pipe size then
            fcntl.fcntl(self.proc.stdin.fileno(), F_SETPIPE_SZ, 4096)

    def write(self, pcm: bytes) -> None:
        if self.failed:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(pcm)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            self.failed = True
            err = ""
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=1)
                err = (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-1:][0]
            if not self._reported:
                self._reported = True
                log.error("cue: audio layer: %s stopped (%s); the layer is off", self.argv[0], err or exc)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def describe(self) -> str:
        return f"{self.argv[0]} ({PLAYER_LATENCY_MS} ms buffer)"


class CueStream:
    """``Synth`` blocks written to a sink in real time (``start``), or up to a stream time (``render_until``).

    ``t0`` is the monotonic time of sample 0, so sample ``k`` belongs to ``t0 + k / rate``: the test's latency
    measurement and the player both count from it.
    """

    def __init__(
        self,
        synth: Synth,
        sink: WavSink | PlayerSink,
        *,
        block_s: float = BLOCK_S,
        lead_s: float = LEAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.synth = synth
        self.sink = sink
        self.rate = synth.rate
        self.block_n = max(1, int(block_s * self.rate))
        self.lead_s = lead_s
        self.clock = clock
        self.t0: float | None = None
        self.changes: list[tuple[int, float | None]] = []  # (first sample rendered after it, deviation)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holds = 0
        self._last_set: float | None = None  # clock() of the newest stride: silence after HOLD_S without one

    @property
    def style(self) -> str:
        return self.synth.style

    def set_deviation(self, deviation: float | None) -> None:
        with self._lock:
            self.synth.set_deviation(deviation)
            self.changes.append((self.synth.frames, deviation))
            self._last_set = self.clock() if deviation is not None else None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Duck the layer while a cue is spoken over it."""
        with self._lock:
            self._holds += 1
            self.synth.duck(True)
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if self._holds == 0:
                    self.synth.duck(False)

    def _block(self) -> None:
        with self._lock:
            pcm = self.synth.render(self.block_n).tobytes()
        self.sink.write(pcm)  # outside the lock: a full pipe must not hold up set_deviation

    def render_until(self, t_s: float) -> None:
        """Render (offline) until the stream holds ``t_s`` seconds."""
        while self.synth.frames < t_s * self.rate:
            self._block()

    def start(self) -> None:
        if self._thread is None:
            self.t0 = self.clock()
            self._thread = threading.Thread(target=self._run, name="stackcue-cue-layer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.t0 is not None
        while not self._stop.is_set():
            last = self._last_set
            if last is not None and self.clock() - last > HOLD_S:  # strides stopped coming: silent, not stuck
                self.set_deviation(None)
            due = (self.clock() - self.t0 + self.lead_s) * self.rate
            while self.synth.frames < due and not self._stop.is_set():
                self._block()
            self._stop.wait(self.block_n / self.rate / 2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.sink.close()

    def describe(self) -> str:
        return f"{self.style} layer ({self.sink.describe()})"


class HapticPulses:
    """Pulses on the buzzer whose period follows the deviation (``SoundMap.pulse_period_s``)."""

    def __init__(self, haptic, smap: SoundMap | None = None) -> None:
        self.haptic = haptic
        self.map = smap or SoundMap()
        self.style = "haptic"
        self._period: float | None = None
        self._lock = threading.Lock()
        self._held = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_set = 0.0
        self.pulses: list[tuple[float, float]] = []  # (monotonic start, period in force): what was buzzed

    def set_deviation(self, deviation: float | None) -> None:
        with self._lock:
            self._period = self.map.pulse_period_s(deviation)
            self._last_set = time.monotonic()
        self._wake.set()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Pause the pulses while an alert's own pattern buzzes."""
        self._held.set()
        try:
            yield
        finally:
            self._held.clear()
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stackcue-cue-pulses", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        last: float | None = None  # when the last pulse was due: pulses keep to that grid, lateness never adds up
        while not self._stop.is_set():
            with self._lock:
                if self._period is not None and time.monotonic() - self._last_set > HOLD_S:
                    self._period = None  # strides stopped coming: no more pulses
                period = self._period
            if period is None or self._held.is_set():
                last = None
                self._wake.wait(0.02)
                self._wake.clear()
                continue
            now = time.monotonic()
            due = now if last is None or now - last > 2 * period else last + period
            if due > now:  # short sleeps: a new period (a shorter one) is taken up at once
                time.sleep(min(due - now, 0.005))
                continue
            last = due
            self.pulses.append((now, period))
            self.haptic.play(((self.map.pulse_on_s, 0.0),), self._stop)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def describe(self) -> str:
        return f"haptic pulses ({self.haptic.describe()})"
