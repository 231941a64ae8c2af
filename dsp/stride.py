"""Stride-synchronous posture: the physics-limited stride means.

Over one stride of steady running the sacrum returns to the same place at
the same speed, so the mean specific force over the stride, taken in a frame
that follows the gyroscope (VQF's gyro-only quaternion), points straight up.
That up vector, carried back to every sample by the same gyro frame, gives
per-sample tilt and obliquity free of the accelerometer/gyro compromise of a
complementary filter; their means are the stride's posture figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rotations import matrix_from_quat

#: a median ``fore_aft_sin`` above this over the check's strides: the forward axis points backwards
FORE_AFT_REVERSED_SIN = 0.5


def _cross(a, b) -> np.ndarray:
    """Cross product of two 3-vectors (``np.cross`` costs more in axis handling than in arithmetic here)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def time_weights(t: np.ndarray) -> np.ndarray:
    """Trapezoid weights (s) so that uneven sampling does not bias a mean."""
    w = np.empty_like(t)
    w[1:-1] = (t[2:] - t[:-2]) / 2
    w[0] = (t[1] - t[0]) / 2
    w[-1] = (t[-1] - t[-2]) / 2
    return w


@dataclass
class SegmentStride:
    """Per-sample angles (deg) of one segment over a stride window, and the stride means."""

    tilt: np.ndarray
    obliquity: np.ndarray
    heading: np.ndarray  # detrended, deg
    tilt_mean: float
    forward_axis_error_deg: float
    #: the angle between the stride's mean up and the body's z (0..180°): a body z pointing down reads 180°,
    #: where tilt and obliquity (arcsin of its x and y) would read it upright
    up_error_deg: float = 0.0
    #: sin of the phase of the forward acceleration against the vertical at the step rate: braking comes as the
    #: vertical force rises and propulsion as it falls, so forward lags vertical by about 90° (−1); a forward
    #: axis turned round reads about +1
    fore_aft_sin: float = 0.0


def segment_stride(
    t: np.ndarray, acc: np.ndarray, q3: np.ndarray, body_from_sensor: np.ndarray, w: np.ndarray
) -> SegmentStride:
    """Posture of one segment over one stride window.

    ``t`` (N,) s, ``acc`` (N, 3) m/s² sensor axes, ``q3`` (N, 4) wxyz gyro-only
    orientation (sensor → filter frame), ``body_from_sensor`` 3×3, ``w`` (N,) time weights.
    """
    r = matrix_from_quat(q3)  # (N, 3, 3), sensor → gyro frame
    f_e = np.einsum("nij,nj->ni", r, acc)  # specific force in the gyro frame
    m = (w[:, None] * f_e).sum(axis=0) / w.sum()
    up_e = m / np.linalg.norm(m)
    up_s = up_e @ r  # rᵀ·up_e for every sample
    up_b = up_s @ body_from_sensor.T
    tilt = np.degrees(np.arcsin(np.clip(-up_b[:, 0], -1, 1)))
    obl = np.degrees(np.arcsin(np.clip(up_b[:, 1], -1, 1)))
    # heading of the body's x axis about the stride's vertical
    e1 = _cross((0.0, 1.0, 0.0), up_e) if abs(up_e[1]) < 0.9 else _cross((1.0, 0.0, 0.0), up_e)
    e1 /= np.linalg.norm(e1)
    e2 = _cross(up_e, e1)
    x_e = r @ body_from_sensor[0]  # the body's x axis (first row of body_from_sensor) in the gyro frame
    head = np.unwrap(np.arctan2(x_e @ e2, x_e @ e1))
    tc = t - t[0]
    coef = np.polyfit(tc, head, 1, w=np.sqrt(w))
    head_dt = np.degrees(head - np.polyval(coef, tc))
    # fore-aft axis from the step-frequency (2 cycles a stride) horizontal acceleration
    h = np.column_stack([f_e @ e1, f_e @ e2])
    period = t[-1] - t[0]
    ph = np.exp(-2j * np.pi * 2 * tc / period)
    c = (w[:, None] * h * ph[:, None]).sum(axis=0)
    cov = np.real(np.outer(c, np.conj(c)))
    _evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, -1]
    fwd_head = float(np.mean(head))
    fwd = np.array([np.cos(fwd_head), np.sin(fwd_head)])
    err = float(np.degrees(np.arccos(min(1.0, abs(float(major @ fwd))))))
    tilt_mean = float((w * tilt).sum() / w.sum())
    x_h = x_e - np.outer(x_e @ up_e, up_e)  # the body's forward axis, horizontal, at every sample
    a_f = np.einsum("ni,ni->n", f_e, x_h / np.linalg.norm(x_h, axis=1)[:, None])
    a_v = f_e @ up_e
    cf = (w * a_f * ph).sum()
    cv = (w * (a_v - a_v.mean()) * ph).sum()
    fore_aft = float(np.imag(cf / cv) / abs(cf / cv)) if abs(cf) > 0 and abs(cv) > 0 else 0.0
    up_mean = (w[:, None] * up_b).sum(axis=0)
    up_error = float(np.degrees(np.arccos(np.clip(up_mean[2] / np.linalg.norm(up_mean), -1.0, 1.0))))
    return SegmentStride(tilt, obl, head_dt, tilt_mean, err, up_error, fore_aft)


def contact_time(t: np.ndarray, s: np.ndarray, threshold_g: float) -> float | None:
    """Stance duration within one step window from the specific-force norm ``s`` (g)."""
    above = np.flatnonzero(s > threshold_g)
    if len(above) < 2:
        return None
    return float(t[above[-1]] - t[above[0]])
