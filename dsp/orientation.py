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

#: samples per VQF call: its full state is 34 arrays (810 bytes a sample), so a 50 000-row block of `analyze` held
#: 40 MB per sensor at once (issue 18); live blocks are far smaller
_VQF_PIECE = 4096


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
        w = np.ascontiguousarray((gyr - self.bias0) * np.maximum(k, 0)[:, None])
        acc = np.ascontiguousarray(acc)
        parts = []
        for i in range(0, len(t), _VQF_PIECE):  # the filter runs sample by sample: pieces change nothing
            out = self.vqf.updateBatchFullState(w[i : i + _VQF_PIECE], acc[i : i + _VQF_PIECE])
            parts.append((out["gyrQuat"], out["quat6D"], out["bias"]))
            del out
        self.t_last = float(t[-1])
        if len(parts) == 1:
            q3, q6, bias = parts[0]
        else:
            q3, q6, bias = (np.concatenate(x) for x in zip(*parts, strict=True))
        return OrientationOut(q3, q6, bias + self.bias0)
