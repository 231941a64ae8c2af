"""Continuous orientation of one segment with VQF (6D), fed block by block.

VQF assumes one fixed sample time, but sources jitter and drop samples. The
gyroscope is therefore scaled by the number of nominal periods a sample
stands for (1 normally, 2 after one dropped sample), so integrated angles
stay right without inventing samples. Across a real gap (over 2.5 periods)
nothing is integrated; the caller drops strides that contain one.

Only the gyro-only quaternion (VQF's ``gyrQuat``: integrated with VQF's own
bias estimate) is used downstream. VQF turns it by each sample's rate over a
whole period as it takes the sample, so the quaternion after sample k is the
orientation half a period later (a sensor samples its rate, as its
acceleration, at one instant): the stride figures take the frame at the
sample's instant, halfway from the quaternion before (``dsp/stride.py``,
:func:`~stackcue.dsp.stride.stride_forces`). Large blocks (offline) take it from
``updateBatchFullState``; live blocks of a few samples feed VQF sample by
sample and read ``getQuat3D``, which is the same C++ update (the batch call
loops over it) without building the full state's 34 arrays a call (issue 18:
the largest single cost of a live block). Both give the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from vqf import VQF

from .calibration import SegmentCalibration
from .params import GAP_PERIODS, OrientationParams

#: samples per VQF call: its full state is 34 arrays (810 bytes a sample), so a 50 000-row block of `analyze`
#: held 40 MB per sensor at once (issue 18); live blocks are far smaller
_VQF_PIECE = 4096
#: blocks up to this many samples go sample by sample (a live block: 4 samples every 20 ms, 10 every 50 ms);
#: measured paced as live, 10 samples: 52 µs against 73 µs for the full-state call, and it grows by ~2.5 µs a
#: sample where the batch grows by ~0.3 µs, so large blocks keep the batch call
_SAMPLEWISE_MAX = 32


@dataclass
class OrientationOut:
    """Per-sample results: ``q3`` (N, 4) wxyz, the gyro-only quaternion (sensor → VQF's gyro frame)."""

    q3: np.ndarray


class SegmentOrientation:
    """VQF for one sensor, gyro bias from calibration subtracted first."""

    def __init__(self, ts: float, cal: SegmentCalibration, p: OrientationParams) -> None:
        self.ts = ts
        self.bias0 = np.asarray(cal.gyro_bias_rad_s, float)
        self.vqf = VQF(ts, tauAcc=p.vqf_tau_acc_s, motionBiasEstEnabled=p.vqf_motion_bias_est)
        self.t_last: float | None = None
        self.periods_last = np.zeros(0)

    def periods(self, t: np.ndarray) -> np.ndarray:
        """How many sample periods each sample closes (0 marks the first after a gap)."""
        prev = np.concatenate([[self.t_last if self.t_last is not None else np.nan], t[:-1]])
        k = np.rint((t - prev) / self.ts)
        k[~np.isfinite(k)] = 0
        k[(t - prev) > GAP_PERIODS * self.ts] = 0
        return k

    def _periods_small(self, t: list[float]) -> list[float]:
        """:meth:`periods` in plain Python for a few samples (the same floats: one IEEE division, round half
        to even as ``np.rint``); a live block's dozen numpy calls cost more than the arithmetic."""
        ts, gap = self.ts, GAP_PERIODS * self.ts
        prev = self.t_last if self.t_last is not None else math.nan
        out = []
        for ti in t:
            d = ti - prev
            r = d / ts
            out.append(0.0 if not math.isfinite(r) or d > gap else float(round(r)))
            prev = ti
        return out

    def update(self, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray) -> OrientationOut:
        """Feed samples (sensor axes); returns per-sample orientation."""
        n = len(t)
        if n == 0:
            return OrientationOut(np.zeros((0, 4)))
        if n <= _SAMPLEWISE_MAX:
            k = np.array(self._periods_small(t.tolist()))
        else:
            k = self.periods(t)
        self.periods_last = k
        w = np.ascontiguousarray((gyr - self.bias0) * np.maximum(k, 0)[:, None])
        acc = np.ascontiguousarray(acc, dtype=float)
        self.t_last = float(t[-1])
        if n <= _SAMPLEWISE_MAX:
            q3 = np.empty((n, 4))
            step, quat = self.vqf.update, self.vqf.getQuat3D
            for i in range(n):
                step(w[i], acc[i])
                q3[i] = quat()
            return OrientationOut(q3)
        parts = []
        for i in range(0, n, _VQF_PIECE):  # the filter runs sample by sample: pieces change nothing
            out = self.vqf.updateBatchFullState(w[i : i + _VQF_PIECE], acc[i : i + _VQF_PIECE])
            parts.append(out["gyrQuat"])
            del out
        return OrientationOut(parts[0] if len(parts) == 1 else np.concatenate(parts))
