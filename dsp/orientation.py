"""Continuous orientation of one segment with VQF (6D), fed block by block.

VQF assumes one fixed sample time, but sources jitter and drop samples. The
gyroscope is therefore scaled by the number of nominal periods a sample
stands for (1 normally, 2 after one dropped sample), so integrated angles
stay right without inventing samples. Across a real gap (over 2.5 periods)
nothing is integrated; the caller drops strides that contain one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vqf import VQF

from .calibration import SegmentCalibration
from .params import GAP_PERIODS, OrientationParams


@dataclass
class OrientationOut:
    """Per-sample results: ``q3``/``q6`` (N, 4) wxyz sensor→filter-frame, ``bias`` (N, 3) rad/s."""

    q3: np.ndarray
    q6: np.ndarray
    bias: np.ndarray


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

    def update(self, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray) -> OrientationOut:
        """Feed samples (sensor axes); returns per-sample orientation."""
        if len(t) == 0:
            e = np.zeros((0, 4))
            return OrientationOut(e, e.copy(), np.zeros((0, 3)))
        k = self.periods(t)
        self.periods_last = k
        w = (gyr - self.bias0) * np.maximum(k, 0)[:, None]
        out = self.vqf.updateBatchFullState(np.ascontiguousarray(w), np.ascontiguousarray(acc))
        self.t_last = float(t[-1])
        return OrientationOut(out["gyrQuat"], out["quat6D"], out["bias"] + self.bias0)
