"""What a sensor feels, as a function of time: the input every emulated device samples.

Kept beside the simulator because its usual content is the synthetic runner
(:meth:`MotionTrack.from_simulation`); the MPU-6050 emulator and the emulated BLE sensors both sample it
at their own (imperfect) instants, so one track drives either transport.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .simulator import SimParams, SimRun, simulate

#: the datasheet's LSB/g are per standard gravity; the simulated world's g (9.81) is a fact of the motion
G_STANDARD = 9.80665


class MotionTrack:
    """Continuous motion of one sensor in its own axes: acc (specific force, m/s²) and gyr (rad/s) at any time.

    Interpolated linearly between the given instants and held at the ends.
    """

    def __init__(self, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray) -> None:
        t = np.asarray(t, float).reshape(-1)
        acc = np.asarray(acc, float).reshape(-1, 3)
        gyr = np.asarray(gyr, float).reshape(-1, 3)
        if len(t) == 0 or len(acc) != len(t) or len(gyr) != len(t):
            raise ValueError(f"MotionTrack: t ({len(t)}), acc ({len(acc)}) and gyr ({len(gyr)}) need equal, >0 rows")
        if len(t) > 1 and not np.all(np.diff(t) > 0):
            raise ValueError("MotionTrack: t must be strictly increasing")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(acc)) and np.all(np.isfinite(gyr))):
            raise ValueError("MotionTrack: values must be finite")
        self.t, self.acc, self.gyr = t, acc, gyr
        self._values = np.ascontiguousarray(np.hstack([acc, gyr]))

    @classmethod
    def still(
        cls,
        acc: Sequence[float] = (0, 0, G_STANDARD),
        gyr: Sequence[float] = (0, 0, 0),
        *,
        noise: tuple[float, float] | None = None,
        seconds: float = 600.0,
        seed: int = 0,
    ) -> MotionTrack:
        """At rest (by default lying flat, z up); ``noise`` = (accel m/s², gyro rad/s) rms at 1 kHz."""
        a0, g0 = np.asarray(acc, float)[None, :], np.asarray(gyr, float)[None, :]
        if noise is None:
            return cls(np.zeros(1), a0, g0)
        rng = np.random.default_rng(seed)
        t = np.arange(0.0, seconds, 0.001)
        return cls(t, a0 + rng.normal(0, noise[0], (len(t), 3)), g0 + rng.normal(0, noise[1], (len(t), 3)))

    @classmethod
    def from_simulation(
        cls,
        minutes: float = 10.0,
        trunk: bool = False,
        seed: int = 0,
        recal_at_s: float | None = None,
        restrap: bool = False,
    ) -> tuple[MotionTrack, MotionTrack | None, SimRun]:
        """The synthetic runner at 1000 Hz with the sensor's own errors (bias, drift, scale, noise).

        Without timing errors, gaps, quantisation or clipping: the emulated chip adds those. Track time
        0 is the start of the simulated run (its truth ``t``). Note that the simulator already smooths
        the impacts as a 188 Hz sensor filter would; the chip's DLPF comes on top. ``recal_at_s`` and
        ``restrap``: a second calibration routine mid-run, after re-strapping (see SimParams).
        """
        params = SimParams(
            minutes=minutes,
            rate_hz=1000.0,
            trunk=trunk,
            seed=seed,
            gaps=False,
            timing_errors=False,
            quantise=False,
            recal_at_s=recal_at_s,
            restrap=restrap,
        )
        run = simulate(params)
        t = run.truth["t"]
        pelvis = cls(t, run.block.acc, run.block.gyr)
        trunk_track = None
        if trunk and run.block.trunk_acc is not None and run.block.trunk_gyr is not None:
            trunk_track = cls(t, run.block.trunk_acc, run.block.trunk_gyr)
        return pelvis, trunk_track, run

    def sample(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(acc (N, 3), gyr (N, 3)) at times t (N,)."""
        t = np.atleast_1d(np.asarray(t, float))
        if len(self.t) == 1:
            return np.repeat(self.acc, len(t), axis=0), np.repeat(self.gyr, len(t), axis=0)
        i = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.t) - 2)
        w = np.clip((t - self.t[i]) / (self.t[i + 1] - self.t[i]), 0.0, 1.0)[:, None]
        v = self._values[i] + w * (self._values[i + 1] - self._values[i])
        return v[:, :3], v[:, 3:]
