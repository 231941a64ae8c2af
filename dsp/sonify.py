"""The continuous cue styles as numbers and samples: the deviation → loudness / pitch / pulse-rate mapping and a
block synthesiser (docs/cues.md, "Cue styles").

Pure computation: ``SoundMap`` maps one provisional stride's deviation (degrees from the reference in force) to
what the runner hears or feels; ``Synth`` turns the latest of them into int16 PCM blocks, one block at a time, so
the player (``service.cue_stream``) can stream them with a small buffer. Gain changes are ramped over
``RAMP_S`` (no clicks) and beeps have raised-cosine edges.

The mapping (degrees beyond the dead band, ``d = |deviation| - dead_band``, ``x = min(d / (full - dead), 1)``):

* within the dead band: silence (digital zero), no beep, no pulse;
* ``sonify``: band-limited noise at ``floor_dbfs + x * (top_dbfs - floor_dbfs)`` dBFS RMS (-40 → -18 dBFS):
  straight in dB, because loudness is heard in dB;
* ``beep``: one 120 ms beep a stride at ``low_hz * 2 ** (x * octaves)`` (440 Hz → 1760 Hz): straight in
  octaves, because pitch is heard in octaves;
* ``haptic``: 80 ms pulses every ``slow_s - x * (slow_s - fast_s)`` s (1.0 s → 0.25 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the styles that follow each provisional stride (``spoken`` cues alerts only)
CONTINUOUS_STYLES = ("sonify", "beep", "haptic")

RATE_HZ = 48000  # the Pi's PipeWire graph and Bluetooth earbuds run at 48 kHz: no resampling
RAMP_S = 0.03  # a gain change is spread over this: no click, and well inside a stride
NOISE_POLE = 0.85  # one-pole low-pass of the noise (-3 dB near 1.2 kHz at 48 kHz): a soft "shhh", not a hiss
NOISE_LOOP_S = 8.0  # the noise is made once and looped: no per-block filtering (numpy only, no scipy: a Pi Zero's
# 512 MB, docs/dependencies.md); filtered circularly, so the loop has no seam


def noise_loop(n: int, seed: int = 0, pole: float = NOISE_POLE) -> np.ndarray:
    """``n`` samples of white noise through a one-pole low-pass, circular (loops seamlessly), unit RMS."""
    white = np.random.default_rng(seed).standard_normal(n)
    w = 2 * np.pi * np.fft.rfftfreq(n)
    h = (1 - pole) / (1 - pole * np.exp(-1j * w))
    y = np.fft.irfft(np.fft.rfft(white) * h, n)
    return y / np.sqrt(np.mean(y**2))


@dataclass(frozen=True)
class SoundMap:
    """Deviation (degrees) → level, pitch, pulse period. ``dead_band_deg``/``full_scale_deg`` are ``[cue]`` keys."""

    dead_band_deg: float = 3.0
    full_scale_deg: float = 15.0
    floor_dbfs: float = -40.0  # RMS just beyond the dead band: faint under music, but there
    top_dbfs: float = -18.0  # RMS at full scale: noise peaks stay below full scale (about 4 sigma)
    low_hz: float = 440.0
    octaves: float = 2.0
    beep_s: float = 0.12
    beep_dbfs: float = -18.0
    slow_s: float = 1.0
    fast_s: float = 0.25
    pulse_on_s: float = 0.08
    duck_db: float = -20.0  # the layer while a cue is spoken

    def excess(self, deviation: float | None) -> float | None:
        """0..1: how far beyond the dead band towards full scale; None inside the dead band or unknown."""
        if deviation is None or not math.isfinite(deviation):
            return None
        d = abs(deviation) - self.dead_band_deg
        if d <= 0:
            return None
        return min(d / (self.full_scale_deg - self.dead_band_deg), 1.0)

    def level_dbfs(self, deviation: float | None) -> float | None:
        """The sonify layer's RMS level in dBFS (as sox's "RMS lev dB" reads it); None: silent."""
        x = self.excess(deviation)
        return None if x is None else self.floor_dbfs + x * (self.top_dbfs - self.floor_dbfs)

    def gain(self, deviation: float | None) -> float:
        """The linear RMS amplitude of the layer (0.0: silent)."""
        db = self.level_dbfs(deviation)
        return 0.0 if db is None else 10.0 ** (db / 20.0)

    def beep_hz(self, deviation: float | None) -> float | None:
        """The beep's pitch; None: no beep."""
        x = self.excess(deviation)
        return None if x is None else self.low_hz * 2.0 ** (x * self.octaves)

    def pulse_period_s(self, deviation: float | None) -> float | None:
        """Time from one haptic pulse to the next; None: no pulses."""
        x = self.excess(deviation)
        return None if x is None else self.slow_s - x * (self.slow_s - self.fast_s)


def sonified_deviation(stride: dict) -> float | None:
    """The one deviation the continuous styles follow: the stack angle's when there is a trunk sensor (the
    coaching idea: ribs over the pelvis), else the pelvic tilt's. None while no reference is in force."""
    dev = stride.get("deviation_deg")
    if not isinstance(dev, dict):
        return None
    for key in ("stack_deg", "pelvic_tilt_deg"):
        v = dev.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


class Synth:
    """int16 mono blocks for ``sonify`` (a noise layer) or ``beep`` (a beep per stride); silence otherwise.

    ``set_deviation`` takes effect at the next sample rendered; ``duck`` lowers everything by
    ``SoundMap.duck_db`` (ramped) while a cue is spoken over it.
    """

    def __init__(self, style: str, smap: SoundMap | None = None, rate: int = RATE_HZ, seed: int = 0) -> None:
        self.style = style
        self.map = smap or SoundMap()
        self.rate = int(rate)
        self._noise = noise_loop(int(NOISE_LOOP_S * self.rate), seed) if style == "sonify" else np.zeros(1)
        self._noise_pos = 0
        self._ramp_n = max(1, int(RAMP_S * self.rate))
        self._gain = 0.0  # current linear gain (layer or beep) ...
        self._target = 0.0  # ... and where it is going
        self._step = 0.0
        self._duck = 1.0
        self._duck_target = 1.0
        self._duck_step = 0.0
        self._beep_hz: float | None = None
        self._beep_left = 0  # samples of the current beep still to play
        self._beep_pos = 0
        self._phase = 0.0
        self.frames = 0  # samples rendered so far

    def set_deviation(self, deviation: float | None) -> None:
        """The newest stride's deviation: the layer's target level, or a beep at its pitch."""
        if self.style == "sonify":
            self._set_target(self.map.gain(deviation))
        elif self.style == "beep":
            hz = self.map.beep_hz(deviation)
            if hz is not None:
                self._beep_hz = hz
                self._beep_left = int(self.map.beep_s * self.rate)
                self._beep_pos = 0

    def duck(self, on: bool) -> None:
        target = 10.0 ** (self.map.duck_db / 20.0) if on else 1.0
        if target != self._duck_target:
            self._duck_target = target
            self._duck_step = (target - self._duck) / self._ramp_n

    def _set_target(self, g: float) -> None:
        if g != self._target:
            self._target = g
            self._step = (g - self._gain) / self._ramp_n

    @staticmethod
    def _ramp(cur: float, target: float, step: float, n: int) -> tuple[np.ndarray, float]:
        if cur == target or step == 0.0:
            return np.full(n, cur), target
        g = cur + step * np.arange(1, n + 1)
        g = np.minimum(g, target) if step > 0 else np.maximum(g, target)
        return g, float(g[-1])

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` samples, int16."""
        duck, self._duck = self._ramp(self._duck, self._duck_target, self._duck_step, n)
        if self.style == "sonify":
            gain, self._gain = self._ramp(self._gain, self._target, self._step, n)
            if self._gain == 0.0 and not gain.any():
                out = np.zeros(n)
            else:
                idx = (self._noise_pos + np.arange(n)) % len(self._noise)
                out = self._noise[idx] * gain * duck
            self._noise_pos = (self._noise_pos + n) % len(self._noise)
        elif self.style == "beep":
            out = np.zeros(n)
            if self._beep_left > 0 and self._beep_hz is not None:
                k = min(n, self._beep_left)
                total = int(self.map.beep_s * self.rate)
                idx = self._beep_pos + np.arange(k)
                edge = int(0.01 * self.rate)  # 10 ms raised-cosine edges
                env = np.ones(k)
                rise = idx < edge
                env[rise] = 0.5 - 0.5 * np.cos(np.pi * idx[rise] / edge)
                fall = idx >= total - edge
                env[fall] = 0.5 - 0.5 * np.cos(np.pi * (total - idx[fall]) / edge)
                w = 2 * np.pi * self._beep_hz / self.rate
                ph = self._phase + w * np.arange(1, k + 1)
                amp = math.sqrt(2.0) * 10.0 ** (self.map.beep_dbfs / 20.0)  # a sine's RMS is its peak / sqrt 2
                out[:k] = amp * np.sin(ph) * env * duck[:k]
                self._phase = float(ph[-1] % (2 * np.pi))
                self._beep_left -= k
                self._beep_pos += k
        else:
            out = np.zeros(n)
        self.frames += n
        return np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)
