"""Live blocks feed VQF sample by sample, large ones in one full-state batch (issue 18): the same quaternions."""

from __future__ import annotations

import numpy as np
import pytest
from vqf import VQF

from stackcue.dsp import orientation
from stackcue.dsp.calibration import SegmentCalibration
from stackcue.dsp.orientation import SegmentOrientation
from stackcue.dsp.params import OrientationParams

TS = 0.005


def _cal() -> SegmentCalibration:
    class Cal:  # the orientation reads only the gyro bias
        gyro_bias_rad_s = (0.01, -0.02, 0.005)

    return Cal()  # type: ignore[return-value]


def _samples(n: int = 3000):
    rng = np.random.default_rng(5)
    t = np.cumsum(np.full(n, TS) + rng.normal(0, 0.0003, n))
    t[700:] += 2 * TS  # one dropped sample: the gyro counts twice
    t[1800:] += 1.0  # a gap: nothing integrated over it
    acc = rng.normal(0, 3, (n, 3)) + np.array([0.0, 0.0, 9.81])
    gyr = rng.normal(0, 2, (n, 3))
    return t, acc, gyr


def _reference(t, acc, gyr) -> np.ndarray:
    """The quaternions as VQF's own full-state batch gives them for the whole recording at once."""
    seg = SegmentOrientation(TS, _cal(), OrientationParams())
    k = np.maximum(seg.periods(t), 0)
    w = np.ascontiguousarray((gyr - seg.bias0) * k[:, None])
    p = OrientationParams()
    vqf = VQF(TS, tauAcc=p.vqf_tau_acc_s, motionBiasEstEnabled=p.vqf_motion_bias_est)
    return vqf.updateBatchFullState(w, np.ascontiguousarray(acc))["gyrQuat"]


@pytest.mark.parametrize("sizes", [[1], [4], [10], [32], [33], [7, 40, 3, 500], [3000]])
def test_any_split_gives_the_full_state_quaternions_bit_for_bit(sizes):
    t, acc, gyr = _samples()
    seg = SegmentOrientation(TS, _cal(), OrientationParams())
    parts, i, k = [], 0, 0
    while i < len(t):
        n = sizes[k % len(sizes)]
        parts.append(seg.update(t[i : i + n], acc[i : i + n], gyr[i : i + n]).q3)
        i, k = i + n, k + 1
    assert np.array_equal(np.concatenate(parts), _reference(t, acc, gyr))


def test_a_live_block_does_not_build_the_full_state(monkeypatch):
    """The full state is 34 arrays a call, the largest single cost of a 10-sample live block."""
    t, acc, gyr = _samples(40)
    seg = SegmentOrientation(TS, _cal(), OrientationParams())
    calls = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            if name == "updateBatchFullState":
                calls.append(name)
            return getattr(self.inner, name)

    seg.vqf = Spy(seg.vqf)
    seg.update(t[:10], acc[:10], gyr[:10])
    assert calls == []
    seg.update(t[10:], acc[10:], gyr[10:])  # 30 samples: still sample by sample
    assert calls == []
    assert orientation._SAMPLEWISE_MAX >= 10
