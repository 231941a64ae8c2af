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
    #: m/s², the stride's mean specific force off the gravity reference: its mean horizontal acceleration
    #: (speeding up, slowing down), 0 where the stride is its own reference
    horizontal_acc: float = 0.0


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
    horizontal_acc: np.ndarray

    def __getitem__(self, k: int) -> SegmentStride:
        return SegmentStride(
            self.tilt[k],
            self.obliquity[k],
            self.heading[k],
            float(self.tilt_mean[k]),
            float(self.forward_axis_error_deg[k]),
            float(self.up_error_deg[k]),
            float(self.fore_aft_sin[k]),
            float(self.horizontal_acc[k]),
        )


def _rows(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, row by row: a row's sum never depends on the other rows of the batch."""
    return np.add.reduce(x, axis=-1)


@dataclass
class StrideForces:
    """The first half of :func:`segment_strides` for S windows: every sample's gyro-frame rotation ``r`` (3×3 of
    (S, N)) and specific force ``f_e`` (3 of (S, N)), and each window's time-weighted sum ``sum_f`` (S, 3) of it
    (m/s²·s): what the gravity reference of several strides is pooled from (:class:`GravityPool`)."""

    r: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    f_e: list[np.ndarray]
    sum_f: np.ndarray


def stride_forces(
    acc: np.ndarray,
    q3: np.ndarray,
    w: np.ndarray,
    acc_offset: np.ndarray | None = None,
    q_before: np.ndarray | None = None,
) -> StrideForces:
    """Specific force of S windows in their gyro frame (``acc`` (S, N, 3), ``q3`` (S, N, 4), ``w`` (S, N)).

    ``acc_offset`` (3,), sensor axes: taken off every sample first (``SegmentCalibration.acc_offset``).
    ``q_before`` (S, 4): VQF's quaternion of the sample before each window. VQF's quaternion after a sample has
    turned by that sample's rate over a whole period, so it is the frame half a period after the sample; the
    specific force rotated by it is turned by ω·T/2 (10 ms at 50 Hz), and the trunk's pitching and its vertical
    force do not average that away over a stride: with an ideal sensor it put the stride-mean lean 0.15° high at
    50 Hz and 0.04° at 200 Hz (issue 16). Given ``q_before``, each sample's frame is the one halfway from the
    quaternion before it (their normalised sum, the slerp midpoint: VQF's quaternions are continuous, no sign
    flips), the frame at the sample's instant. A dropped sample's rate turned the frame over two periods and it
    is placed halfway too: a quarter period off for that one sample, nothing a stride's mean sees. None: VQF's
    own (the frame half a period on).
    """
    if q_before is not None:
        q3 = q3 + np.concatenate([q_before[:, None, :], q3[:, :-1, :]], axis=1)
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
    if acc_offset is not None:
        ax, ay, az = ax - acc_offset[0], ay - acc_offset[1], az - acc_offset[2]
    f_e = [ri[0] * ax + ri[1] * ay + ri[2] * az for ri in r]  # specific force in the gyro frame
    return StrideForces(r, f_e, np.stack([_rows(w * f) for f in f_e], axis=-1))


#: with at least this many strides in the pool, gravity is the trend line's value at the newest; with fewer, their mean
TREND_MIN_STRIDES = 6


class GravityPool:
    """Pipeline state: the last strides' mean specific force in one segment's gyro frame, and gravity from them.

    A runner speeds up and slows down from stride to stride, so one stride's mean specific force is gravity
    plus that stride's mean acceleration (0.13 m/s² RMS is 0.75° of tilt: issue 16). Gravity is fixed in the
    gyro frame (the gyroscope carries each stride's own orientation change) while the stride-mean
    accelerations alternate and cancel over strides, so the strides before this one tell where gravity is,
    without delaying a change of posture. The gyro frame is not quite fixed: VQF's gyro bias estimate is off by
    0.1–0.3 °/s while running, so the frame turns steadily and a plain mean over several strides lags
    (measured: it is best at 3–4 strides and worse beyond). A straight line fitted (least squares, in time)
    through the directions of this stride and up to ``strides`` − 1 before it, taken at this stride, follows
    that turn and averages the accelerations away; with fewer than ``TREND_MIN_STRIDES`` at hand (the start of
    running, after a gap) it is their mean. Only strides of the same ``epoch`` (a stretch over which the gyro
    frame is continuous: the pipeline starts a new one at a gap, a pause, a calibration, a bout's end, and
    for each stride while speeding up) and ending within ``span_s`` are used. Each stride's sums are taken
    along its own row of (strides × ``strides``) arrays, absent strides as exact zeros, so a stride's reference
    is bit-identical whatever the block split, and a batch of any size takes a dozen numpy operations.
    """

    def __init__(self, strides: int, span_s: float) -> None:
        self.strides = max(1, int(strides))
        self.span_s = span_s
        self.up = np.zeros((0, 3))  # unit mean specific force of the latest strides
        self.t_end = np.zeros(0)
        self.epoch = np.zeros(0, np.int64)

    def pool(self, sum_f: np.ndarray, t_end: np.ndarray, epoch: np.ndarray) -> np.ndarray:
        """Gravity's direction (S, 3, not unit) for S new strides in time order, from their ``sum_f`` (S, 3)
        (:class:`StrideForces`), ``t_end`` and ``epoch``."""
        n_new = len(sum_f)
        sum_f = np.asarray(sum_f, float)
        ups = np.concatenate([self.up, sum_f / np.sqrt((sum_f * sum_f).sum(axis=-1))[:, None]])
        te = np.concatenate([self.t_end, np.asarray(t_end, float)])
        ep = np.concatenate([self.epoch, np.asarray(epoch, np.int64)])
        h = len(ups) - n_new
        now = np.arange(h, h + n_new)
        j = now[:, None] + np.arange(1 - self.strides, 1)[None, :]  # (S, strides): this stride and those before
        jj = np.maximum(j, 0)
        ok = (j >= 0) & (ep[jj] == ep[now][:, None]) & (te[now][:, None] - te[jj] <= self.span_s)
        tau = np.where(ok, te[jj] - te[now][:, None], 0.0)  # s before this stride's end
        x = np.ascontiguousarray(np.where(ok[:, :, None], ups[jj], 0.0).transpose(0, 2, 1))  # (S, 3, strides)
        n = _rows(ok.astype(float))
        st = _rows(tau)
        stt = _rows(tau * tau)
        sx = _rows(x)
        stx = _rows(tau[:, None, :] * x)
        den = n * stt - st * st
        fit = (n >= TREND_MIN_STRIDES) & (den > 1e-9)
        line = (stt[:, None] * sx - st[:, None] * stx) / np.where(fit, den, 1.0)[:, None]  # the line at tau = 0
        cut = max(0, len(ups) - (self.strides - 1))
        self.up, self.t_end, self.epoch = ups[cut:], te[cut:], ep[cut:]
        return np.where(fit[:, None], line, sx / n[:, None])


def segment_strides(
    t: np.ndarray,
    acc: np.ndarray | None,
    q3: np.ndarray | None,
    body_from_sensor: np.ndarray,
    w: np.ndarray,
    up: np.ndarray | None = None,
    forces: StrideForces | None = None,
) -> SegmentStrides:
    """Posture of one segment over S stride windows of N samples each, computed together.

    ``t`` (S, N) s, ``acc`` (S, N, 3) m/s² sensor axes, ``q3`` (S, N, 4) wxyz gyro-only orientation (sensor →
    filter frame), ``body_from_sensor`` 3×3, ``w`` (S, N) time weights. ``up`` (S, 3): the gravity reference in
    the gyro frame (any length: :meth:`GravityPool.pool`); None takes each window's own mean specific force.
    ``forces``: :func:`stride_forces` of the same windows, when already computed (``acc`` and ``q3`` unused).
    Offline, a block holds hundreds of strides and one call does the work of hundreds (issue 18: per-stride
    numpy calls were 60 % of `analyze`); live, a block holds at most one. Vectors are kept as (S, N) component
    arrays and every sum runs along a row, so a stride's figures are bit-identical whatever else is in the
    batch (the block-split property).
    """
    b = np.asarray(body_from_sensor, float)
    wsum = _rows(w)
    if forces is None:
        assert acc is not None and q3 is not None
        forces = stride_forces(acc, q3, w)
    r, f_e = forces.r, forces.f_e
    m = forces.sum_f if up is None else np.asarray(up, float)
    up_e = m / np.sqrt((m * m).sum(axis=-1))[:, None]
    mean_f = forces.sum_f / wsum[:, None]
    off = mean_f - (mean_f * up_e).sum(axis=-1)[:, None] * up_e
    horizontal = np.sqrt((off * off).sum(axis=-1))
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
    return SegmentStrides(tilt, obl, head_dt, tilt_mean, err, up_error, fore_aft, horizontal)


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
