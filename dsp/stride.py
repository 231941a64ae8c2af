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

#: a median ``fore_aft_sin`` above this over the check's strides: the forward axis points backwards
FORE_AFT_REVERSED_SIN = 0.5


def time_weights(t: np.ndarray) -> np.ndarray:
    """Trapezoid weights (s) so that uneven sampling does not bias a mean; along the last axis of ``t``."""
    w = np.empty_like(t)
    w[..., 1:-1] = (t[..., 2:] - t[..., :-2]) / 2
    w[..., 0] = (t[..., 1] - t[..., 0]) / 2
    w[..., -1] = (t[..., -1] - t[..., -2]) / 2
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


@dataclass
class SegmentStrides:
    """:class:`SegmentStride` of S windows of N samples each: per-sample (S, N) arrays, per-stride (S,) arrays."""

    tilt: np.ndarray
    obliquity: np.ndarray
    heading: np.ndarray
    tilt_mean: np.ndarray
    forward_axis_error_deg: np.ndarray
    up_error_deg: np.ndarray
    fore_aft_sin: np.ndarray

    def __getitem__(self, k: int) -> SegmentStride:
        return SegmentStride(
            self.tilt[k],
            self.obliquity[k],
            self.heading[k],
            float(self.tilt_mean[k]),
            float(self.forward_axis_error_deg[k]),
            float(self.up_error_deg[k]),
            float(self.fore_aft_sin[k]),
        )


def _rows(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, row by row: a row's sum never depends on the other rows of the batch."""
    return np.add.reduce(x, axis=-1)


def segment_strides(
    t: np.ndarray, acc: np.ndarray, q3: np.ndarray, body_from_sensor: np.ndarray, w: np.ndarray
) -> SegmentStrides:
    """Posture of one segment over S stride windows of N samples each, computed together.

    ``t`` (S, N) s, ``acc`` (S, N, 3) m/s² sensor axes, ``q3`` (S, N, 4) wxyz gyro-only orientation (sensor →
    filter frame), ``body_from_sensor`` 3×3, ``w`` (S, N) time weights. Offline, a block holds hundreds of
    strides and one call does the work of hundreds (issue 18: per-stride numpy calls were 60 % of `analyze`);
    live, a block holds at most one. Vectors are kept as (S, N) component arrays and every sum runs along a
    row, so a stride's figures are bit-identical whatever else is in the batch (the block-split property).
    """
    b = np.asarray(body_from_sensor, float)
    wsum = _rows(w)
    # the gyro-frame rotation of every sample (rotations.matrix_from_quat, written per component)
    qw, qx, qy, qz = q3[..., 0], q3[..., 1], q3[..., 2], q3[..., 3]
    qn = np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    qw, qx, qy, qz = qw / qn, qx / qn, qy / qn, qz / qn
    xx, yy, zz = qx * qx, qy * qy, qz * qz
    xy, xz, yz, wx, wy, wz = qx * qy, qx * qz, qy * qz, qw * qx, qw * qy, qw * qz
    r = (
        (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)),
    )
    ax, ay, az = acc[..., 0], acc[..., 1], acc[..., 2]
    f_e = [ri[0] * ax + ri[1] * ay + ri[2] * az for ri in r]  # specific force in the gyro frame
    m = np.stack([_rows(w * f) for f in f_e], axis=-1) / wsum[:, None]  # (S, 3)
    up_e = m / np.sqrt((m * m).sum(axis=-1))[:, None]
    u = [up_e[:, i, None] for i in range(3)]  # (S, 1) each, broadcast over the samples
    up_s = [u[0] * r[0][j] + u[1] * r[1][j] + u[2] * r[2][j] for j in range(3)]  # rᵀ·up_e
    up_b = [up_s[0] * b[k, 0] + up_s[1] * b[k, 1] + up_s[2] * b[k, 2] for k in range(3)]
    tilt = np.degrees(np.arcsin(np.clip(-up_b[0], -1, 1)))
    obl = np.degrees(np.arcsin(np.clip(up_b[1], -1, 1)))
    # heading of the body's x axis about the stride's vertical; e1 = y × up, or x × up where up is near y
    near_y = np.abs(up_e[:, 1]) >= 0.9
    zero = np.zeros(len(up_e))
    e1 = np.where(
        near_y[:, None],
        np.stack([zero, -up_e[:, 2], up_e[:, 1]], axis=-1),
        np.stack([up_e[:, 2], zero, -up_e[:, 0]], axis=-1),
    )
    e1 /= np.sqrt((e1 * e1).sum(axis=-1))[:, None]
    e2 = np.stack(
        [
            up_e[:, 1] * e1[:, 2] - up_e[:, 2] * e1[:, 1],
            up_e[:, 2] * e1[:, 0] - up_e[:, 0] * e1[:, 2],
            up_e[:, 0] * e1[:, 1] - up_e[:, 1] * e1[:, 0],
        ],
        axis=-1,
    )
    x_e = [ri[0] * b[0, 0] + ri[1] * b[0, 1] + ri[2] * b[0, 2] for ri in r]  # the body's x axis, gyro frame

    def dot(v: list[np.ndarray], e: np.ndarray) -> np.ndarray:
        return v[0] * e[:, 0, None] + v[1] * e[:, 1, None] + v[2] * e[:, 2, None]

    head = np.unwrap(np.arctan2(dot(x_e, e2), dot(x_e, e1)), axis=-1)
    tc = t - t[:, :1]
    # the heading's trend: a straight line fitted by weighted least squares (np.polyfit(tc, head, 1,
    # w=sqrt(w)) in closed form: polyfit's SVD per stride cost more than the rest of the stride)
    tm = _rows(w * tc) / wsum
    hm = _rows(w * head) / wsum
    dtc = tc - tm[:, None]
    slope = _rows(w * dtc * (head - hm[:, None])) / _rows(w * dtc * dtc)
    head_dt = np.degrees(head - hm[:, None] - slope[:, None] * dtc)
    # fore-aft axis from the step-frequency (2 cycles a stride) horizontal acceleration
    period = t[:, -1] - t[:, 0]
    ph = np.exp(-2j * np.pi * 2 * tc / period[:, None])
    wph = w * ph
    h1, h2 = dot(f_e, e1), dot(f_e, e2)
    c = np.stack([_rows(wph * h1), _rows(wph * h2)], axis=-1)  # (S, 2)
    cov = np.real(c[:, :, None] * np.conj(c[:, None, :]))
    _evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, :, -1]
    fwd_head = _rows(head) / head.shape[-1]
    proj = np.abs(major[:, 0] * np.cos(fwd_head) + major[:, 1] * np.sin(fwd_head))
    err = np.degrees(np.arccos(np.minimum(1.0, proj)))
    tilt_mean = _rows(w * tilt) / wsum
    x_up = dot(x_e, up_e)
    x_h = [x_e[i] - x_up * up_e[:, i, None] for i in range(3)]  # the body's forward axis, horizontal
    x_hn = np.sqrt(x_h[0] * x_h[0] + x_h[1] * x_h[1] + x_h[2] * x_h[2])
    a_f = f_e[0] * (x_h[0] / x_hn) + f_e[1] * (x_h[1] / x_hn) + f_e[2] * (x_h[2] / x_hn)
    a_v = dot(f_e, up_e)
    cf = _rows(wph * a_f)
    cv = _rows(wph * (a_v - (_rows(a_v) / a_v.shape[-1])[:, None]))
    ok = (np.abs(cf) > 0) & (np.abs(cv) > 0)
    ratio = np.where(ok, cf, 1.0) / np.where(ok, cv, 1.0)
    fore_aft = np.where(ok, np.imag(ratio) / np.abs(ratio), 0.0)
    up_mean = np.stack([_rows(w * x) for x in up_b], axis=-1)
    up_cos = up_mean[:, 2] / np.sqrt((up_mean * up_mean).sum(axis=-1))
    up_error = np.degrees(np.arccos(np.clip(up_cos, -1.0, 1.0)))
    return SegmentStrides(tilt, obl, head_dt, tilt_mean, err, up_error, fore_aft)


def segment_stride(
    t: np.ndarray, acc: np.ndarray, q3: np.ndarray, body_from_sensor: np.ndarray, w: np.ndarray
) -> SegmentStride:
    """Posture of one segment over one stride window: :func:`segment_strides` of a batch of one.

    ``t`` (N,) s, ``acc`` (N, 3) m/s² sensor axes, ``q3`` (N, 4) wxyz gyro-only
    orientation (sensor → filter frame), ``body_from_sensor`` 3×3, ``w`` (N,) time weights.
    """
    return segment_strides(t[None], acc[None], q3[None], body_from_sensor, w[None])[0]


def contact_time(t: np.ndarray, s: np.ndarray, threshold_g: float) -> float | None:
    """Stance duration within one step window from the specific-force norm ``s`` (g)."""
    above = np.flatnonzero(s > threshold_g)
    if len(above) < 2:
        return None
    return float(t[above[-1]] - t[above[0]])
