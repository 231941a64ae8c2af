"""The calibration routine: stand tall, hip hinge, stand; sensor → body axes.

Stillness gives gravity (the body's z) and the gyroscope bias; the hinge's
angular impulse gives the body's y (front going down is positive about y).
The search is causal and keyed to sample times, so feeding a recording in
blocks of any size finds the same calibration at the same sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stackcue.errors import CalibrationError

from .params import GRAVITY, CalibrationParams
from .rotations import matrix_from_quat, quat_from_matrix

#: a saved gyro offset beyond this is not an offset (an MPU-6050's is specified within ±20 °/s)
MAX_GYRO_BIAS_RAD_S = 1.0
#: the magnitude of the accelerometer's mean at rest (m/s²) that can be gravity; and that looks like gravity in g
G_REST_RANGE = (7.5, 12.0)
G_IN_G_RANGE = (0.5, 2.0)
UNITS_NOTE = "the recording needs"
#: no gyro reads beyond this (2000 °/s, the largest usual full scale): a typical rate above it is not rad/s
GYRO_FULL_SCALE_RAD_S = float(np.radians(2000.0))
#: a saved calibration's unit check: over windows of this many seconds, for the first ``UNITS_WATCH_S``
UNITS_WINDOW_S = 5.0
UNITS_WATCH_S = 120.0


def _number(v: object) -> float:
    """A JSON number as a float; a string or a boolean is not one (``float("0.5")`` and ``float(True)`` are)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{v!r:.40} is not a number")
    return float(v)


@dataclass(frozen=True)
class SegmentCalibration:
    """Sensor → body rotation of one segment, with what it was measured from."""

    q_body_from_sensor_wxyz: tuple[float, float, float, float]
    gyro_bias_rad_s: tuple[float, float, float]
    hinge_deg: float | None = None
    quality: float | None = None
    #: the accelerometer's magnitude standing still at the neutral (m/s²): its excess over gravity is the sensor's
    #: offset and scale error along the vertical, which scales every angle from the neutral (0.4 m/s² is 4 %:
    #: 0.8° at 20° of lean); None in calibrations saved before it was kept
    g_rest_m_s2: float | None = None

    @property
    def body_from_sensor(self) -> np.ndarray:
        """3×3 matrix taking sensor axes to body axes."""
        return matrix_from_quat(self.q_body_from_sensor_wxyz)

    def to_dict(self) -> dict:
        return {
            "q_body_from_sensor_wxyz": [round(float(v), 6) for v in self.q_body_from_sensor_wxyz],
            "gyro_bias_rad_s": [round(float(v), 6) for v in self.gyro_bias_rad_s],
            "hinge_deg": None if self.hinge_deg is None else round(self.hinge_deg, 2),
            "quality": None if self.quality is None else round(self.quality, 3),
            **({} if self.g_rest_m_s2 is None else {"g_rest_m_s2": round(self.g_rest_m_s2, 4)}),
        }

    def acc_offset(self, gravity: float) -> np.ndarray:
        """What to take off the accelerometer (sensor axes, m/s²) so that it reads ``gravity`` at the neutral."""
        if self.g_rest_m_s2 is None:
            return np.zeros(3)
        return (self.g_rest_m_s2 - gravity) * self.body_from_sensor[2]

    @staticmethod
    def from_dict(d: dict, where: str) -> SegmentCalibration:
        try:
            q = tuple(_number(v) for v in d["q_body_from_sensor_wxyz"])
            b = tuple(_number(v) for v in d["gyro_bias_rad_s"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            msg = f"{where}: needs q_body_from_sensor_wxyz[4] and gyro_bias_rad_s[3] ({exc})"
            raise CalibrationError(msg) from None
        if len(q) != 4 or len(b) != 3 or not np.all(np.isfinite(q + b)):
            raise CalibrationError(f"{where}: q_body_from_sensor_wxyz must have 4 and gyro_bias_rad_s 3 numbers")
        n = float(np.linalg.norm(q))
        if abs(n - 1.0) > 1e-3:
            raise CalibrationError(f"{where}: q_body_from_sensor_wxyz is not a unit quaternion (norm {n:.4f})")
        worst = max(abs(v) for v in b)
        if worst > MAX_GYRO_BIAS_RAD_S:
            raise CalibrationError(
                f"{where}: gyro_bias_rad_s {worst:.4g} rad/s is not a gyro offset "
                f"(at most {MAX_GYRO_BIAS_RAD_S:g} rad/s = {np.degrees(MAX_GYRO_BIAS_RAD_S):.0f}°/s)"
            )
        extra = {}
        for key, lo, hi in (("hinge_deg", 0.0, 180.0), ("quality", 0.0, 1.0), ("g_rest_m_s2", *G_REST_RANGE)):
            v = d.get(key)
            ok = v is None or (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
            )
            if not ok:
                raise CalibrationError(f"{where}: {key} {v!r} is not a number in {lo:g}..{hi:g}")
            extra[key] = None if v is None else float(v)
        return SegmentCalibration(
            tuple(v / n for v in q),  # type: ignore[arg-type]
            b,  # type: ignore[arg-type]
            extra["hinge_deg"],
            extra["quality"],
            extra["g_rest_m_s2"],
        )


@dataclass(frozen=True)
class Calibration:
    """A whole calibration: the pelvis, and the trunk when one was calibrated."""

    pelvis: SegmentCalibration
    trunk: SegmentCalibration | None = None
    t: float = 0.0
    source: str = "routine"  # "routine" | "saved"
    trunk_reason: str | None = None

    def to_event(self) -> dict:
        segments = {"pelvis": self.pelvis.to_dict()}
        if self.trunk is not None:
            segments["trunk"] = self.trunk.to_dict()
        ev: dict = {
            "type": "calibration",
            "t": round(self.t, 4),
            "ok": True,
            "source": self.source,
            "segments": segments,
        }
        if self.trunk_reason:
            ev["trunk_reason"] = self.trunk_reason
        return ev

    @staticmethod
    def from_event(d: dict, where: str = "calibration") -> Calibration:
        """Read a saved calibration (a calibration event as printed by ``analyze --jsonl``)."""
        if not isinstance(d, dict) or d.get("type", "calibration") != "calibration" or "segments" not in d:
            raise CalibrationError(f"{where}: not a calibration event (needs type=calibration and segments)")
        if d.get("ok") is False:
            raise CalibrationError(f"{where}: this calibration was refused ({d.get('reason', 'no reason')})")
        segs = d["segments"]
        if not isinstance(segs, dict):
            raise CalibrationError(f"{where}: segments must be an object of segments (pelvis, trunk)")
        if "pelvis" not in segs:
            raise CalibrationError(f"{where}: segments.pelvis is missing")
        trunk = SegmentCalibration.from_dict(segs["trunk"], f"{where}: segments.trunk") if "trunk" in segs else None
        return Calibration(
            SegmentCalibration.from_dict(segs["pelvis"], f"{where}: segments.pelvis"), trunk, source="saved"
        )


def still_mask(t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, first: int, p: CalibrationParams) -> np.ndarray:
    """Stillness of samples ``first:`` judged on the window (t−W, t] behind each.

    Spread, not closeness to zero: an MPU-6050's gyro offset can be many °/s.
    Returns a bool array for the samples ``first:``.
    """
    n = len(t)
    out = np.zeros(n - first, bool)
    if n - first <= 0:
        return out
    j = np.searchsorted(t, t[first:] - p.still_window_s, side="right")
    lo = int(j.min())
    x = np.concatenate([gyr[lo:], acc[lo:]], axis=1)
    x = x - x[0]
    c1 = np.vstack([np.zeros((1, 6)), np.cumsum(x, axis=0)])
    c2 = np.vstack([np.zeros((1, 6)), np.cumsum(x * x, axis=0)])
    a = j - lo
    b = np.arange(first, n) - lo + 1
    cnt = (b - a)[:, None].astype(float)
    mean = (c1[b] - c1[a]) / cnt
    var = np.maximum((c2[b] - c2[a]) / cnt - mean**2, 0.0)
    std = np.sqrt(var)
    span_ok = (t[first:] - t[j]) >= 0.8 * p.still_window_s
    g_ok = np.all(std[:, :3] <= np.radians(p.still_gyro_std_dps), axis=1)
    a_ok = np.all(std[:, 3:] <= p.still_acc_std_m_s2, axis=1)
    out[:] = span_ok & g_ok & a_ok
    return out


@dataclass
class _Hinge:
    ok: bool
    reason: str
    angle_deg: float
    seg: SegmentCalibration | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def units_problem(g_rest: float, bias_max: float) -> str | None:
    """Why readings at rest cannot be in m/s² and rad/s (gravity magnitude, a still gyro's rate); None if they can."""
    if G_IN_G_RANGE[0] <= g_rest <= G_IN_G_RANGE[1]:
        return f"acceleration seems to be in g, not m/s²: gravity reads {g_rest:.2f} at rest ({UNITS_NOTE} m/s²)"
    if 1000.0 * G_IN_G_RANGE[0] <= g_rest <= 1000.0 * G_IN_G_RANGE[1]:
        return f"acceleration seems to be in mg, not m/s²: gravity reads {g_rest:.0f} at rest ({UNITS_NOTE} m/s²)"
    if not G_REST_RANGE[0] <= g_rest <= G_REST_RANGE[1]:
        return (
            f"gravity reads {g_rest:.2f} m/s² at rest, not about 9.81: check the accelerometer's unit and scale "
            f"({UNITS_NOTE} m/s²)"
        )
    if bias_max > MAX_GYRO_BIAS_RAD_S:
        unit = "°/s" if np.radians(bias_max) <= MAX_GYRO_BIAS_RAD_S else "m°/s"  # an offset of 57°/s is not one
        return (
            f"angular rate seems to be in {unit}, not rad/s: a still gyro reads {bias_max:.2f} "
            f"({np.degrees(bias_max):.0f}°/s if that were rad/s; {UNITS_NOTE} rad/s)"
        )
    return None


def gyro_range_problem(rate: float, what: str) -> str | None:
    """Why a typical angular rate ``rate`` (``what`` says which) cannot be in rad/s; None if it can."""
    if not rate > GYRO_FULL_SCALE_RAD_S:
        return None
    unit = "°/s" if np.radians(rate) <= GYRO_FULL_SCALE_RAD_S else "m°/s"
    return (
        f"angular rate seems to be in {unit}, not rad/s: {what} reads {rate:.0f}, beyond any gyro's range as rad/s "
        f"(2000°/s = {GYRO_FULL_SCALE_RAD_S:.1f} rad/s; {UNITS_NOTE} rad/s)"
    )


class UnitsCheck:
    """The routine's unit check, for data analysed with a saved calibration (no routine to check them on).

    The first window of ``UNITS_WINDOW_S`` gives gravity (the accelerometer's mean where it is still,
    judged relative to its own scale so that mg data can read still; the mean of the whole window
    otherwise) and, where still, the gyro's offset; every window of the first ``UNITS_WATCH_S`` gives the
    gyro's typical rate, which in °/s or m°/s is beyond any gyro's range once the runner moves. Windows
    are fixed in time from the first sample, so any block split gives the same verdict at the same sample.
    """

    def __init__(self, p: CalibrationParams) -> None:
        self.p = p
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.t0: float | None = None
        self.k = 0  # the next window's number
        self.done = False

    def feed(self, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray) -> str | None:
        """Why these samples (and those fed before) cannot be in m/s² and rad/s; None if they can."""
        if self.done or not len(t):
            return None
        if self.t0 is None:
            self.t0 = float(t[0])
        self.parts.append((t, acc, gyr))
        while not self.done:
            end = self.t0 + (self.k + 1) * UNITS_WINDOW_S
            if self.parts[-1][0][-1] < end:
                return None
            tt, aa, gg = (np.concatenate(x) for x in zip(*self.parts, strict=True))
            cut = int(np.searchsorted(tt, end, side="left"))
            self.parts = [(tt[cut:], aa[cut:], gg[cut:])]
            problem = self._window(tt[:cut], aa[:cut], gg[:cut], first=self.k == 0) if cut else None
            self.k += 1
            if problem or end - self.t0 >= UNITS_WATCH_S:
                self.done = True
                self.parts = []
                return problem
        return None

    def _window(self, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, first: bool) -> str | None:
        if first:
            g_all = float(np.linalg.norm(acc.mean(axis=0)))
            scale = g_all / GRAVITY if g_all > 0 else 1.0
            still = still_mask(t, acc / scale, np.zeros_like(gyr), 0, self.p)
            if np.count_nonzero(still) >= 2:
                g_rest = float(np.linalg.norm(acc[still].mean(axis=0)))
                bias = float(np.abs(gyr[still].mean(axis=0)).max())
            else:
                g_rest, bias = g_all, 0.0
            problem = units_problem(g_rest, bias)
            if problem:
                return problem
        rate = float(np.median(np.linalg.norm(gyr, axis=1)))
        return gyro_range_problem(rate, f"the gyro's median over {t[-1] - t[0]:.0f} s")


def neutral_span(t: np.ndarray, still1: slice, window_s: float) -> slice:
    """The samples of the first stillness that give the neutral: all but its last ``window_s``.

    Stillness is judged on the window behind each sample, so the stillness ends only once the bow's start has
    spread the readings over that window: its last window holds the first tenths of a second of the bow (the
    body pitching forward, the sacrum pushed back). Averaged in, they tilted the neutral by 0.06–0.13° (pelvis
    back, trunk forward: the stack read 0.2° high with an ideal sensor, issue 16). At least half of the
    stillness is kept (a short one with a long window).
    """
    stop = int(np.searchsorted(t, t[still1.stop - 1] - window_s, side="right"))
    return slice(still1.start, max(stop, still1.start + (still1.stop - still1.start + 1) // 2))


def hinge_calibration(
    t: np.ndarray,
    acc: np.ndarray,
    gyr: np.ndarray,
    still1: slice,
    hinge: slice,
    still2: slice,
    p: CalibrationParams,
) -> _Hinge:
    """Sensor → body axes of one segment from one stand–hinge–stand sequence.

    The neutral (gravity's direction, ``g_rest``) is the first stillness without its last ``still_window_s``
    (:func:`neutral_span`). The gyro bias is the mean rate over both stillnesses whole: the bow's start at the
    end of the first and its end at the start of the second turn the body there and back, and cancel.
    """
    bias = (
        gyr[still1].mean(axis=0) * (still1.stop - still1.start)
        + gyr[still2].mean(axis=0) * (still2.stop - still2.start)
    ) / ((still1.stop - still1.start) + (still2.stop - still2.start))
    neutral = neutral_span(t, still1, p.still_window_s)
    g_rest = float(np.linalg.norm(acc[neutral].mean(axis=0)))
    unit = units_problem(g_rest, float(np.abs(bias).max()))
    if unit:
        return _Hinge(False, unit, 0.0)
    z = _unit(acc[neutral].mean(axis=0))
    z2 = _unit(acc[still2].mean(axis=0))
    w = gyr[hinge] - bias
    dt = t[hinge.start : hinge.stop] - t[hinge.start - 1 : hinge.stop - 1]
    theta = np.cumsum(w * dt[:, None], axis=0)
    mag = np.linalg.norm(theta, axis=1)
    k = int(np.argmax(mag))
    angle = float(np.degrees(mag[k]))
    if angle > 720.0 and p.hinge_min_deg <= np.radians(angle) <= p.hinge_max_deg:
        return _Hinge(
            False,
            f"angular rate seems to be in °/s, not rad/s: the hinge reads {angle:.0f}° as rad/s, "
            f"{np.radians(angle):.0f}° as °/s ({UNITS_NOTE} rad/s)",
            angle,
        )
    if angle < p.hinge_ignore_below_deg:
        return _Hinge(False, "no hinge", angle)
    if angle < p.hinge_min_deg:
        return _Hinge(
            False,
            f"hinge too small: the pelvis turned {angle:.0f}°, needs {p.hinge_min_deg:.0f}° "
            "(bow from the hips, not by rounding the back)",
            angle,
        )
    if angle > p.hinge_max_deg:
        return _Hinge(False, f"hinge too large: {angle:.0f}° (max {p.hinge_max_deg:.0f}°)", angle)
    axis = theta[k] / mag[k]
    energy = np.einsum("ij,ij->i", w, w) * dt
    quality = float(np.sum((w @ axis) ** 2 * dt) / max(np.sum(energy), 1e-12))
    if quality < p.hinge_single_axis_min:
        return _Hinge(
            False,
            f"hinge not about one axis (quality {quality:.2f} < {p.hinge_single_axis_min:.2f}): "
            "bow straight forward without twisting",
            angle,
        )
    from_vertical = float(np.degrees(np.arccos(min(1.0, abs(float(axis @ z))))))
    if from_vertical < p.hinge_axis_min_from_vertical_deg:
        return _Hinge(False, f"that was a twist, not a hinge (axis {from_vertical:.0f}° from vertical)", angle)
    back = float(np.degrees(np.arccos(np.clip(z @ z2, -1.0, 1.0))))
    if back > p.hinge_return_max_deg:
        return _Hinge(False, f"did not come back upright after the hinge ({back:.0f}° off the start)", angle)
    y = _unit(axis - (axis @ z) * z)
    x = np.cross(y, z)
    sensor_from_body = np.column_stack([x, y, z])
    q = quat_from_matrix(sensor_from_body.T)  # body_from_sensor, wxyz, w ≥ 0
    seg = SegmentCalibration(
        (float(q[0]), float(q[1]), float(q[2]), float(q[3])),
        (float(bias[0]), float(bias[1]), float(bias[2])),
        angle,
        quality,
        g_rest,
    )
    return _Hinge(True, "", angle, seg)


@dataclass
class _Run:
    still: bool
    start: int  # global sample index
    end: int  # exclusive


class CalibrationSearch:
    """Finds the routine in a stream of samples; keeps only the recent past.

    ``feed`` returns events (refused attempts) and, once accepted, the
    :class:`Calibration` plus the global index from which the pipeline should
    run (the start of the second stillness, so the orientation filter starts
    at rest).
    """

    def __init__(self, p: CalibrationParams, trunk: bool) -> None:
        self.p = p
        self.trunk = trunk
        self.base = 0  # global index of buffer row 0
        self.t = np.zeros(0)
        self.acc = np.zeros((0, 3))
        self.gyr = np.zeros((0, 3))
        self.tacc = np.zeros((0, 3))
        self.tgyr = np.zeros((0, 3))
        self.tvalid = np.zeros(0, bool)
        self.mask = np.zeros(0, bool)
        self.runs: list[_Run] = []
        self.last_reason: str | None = None
        self.period_s: float | None = None  # set when a routine is accepted
        self.t_first: float | None = None
        self.seg_start = 0  # global index where the current gap-free stretch starts
        # wrong-unit evidence for the refusal: time still by the accelerometer that the gyro would also call
        # still were it in °/s, before any real stillness was seen; and what that gyro read
        self.still_s = 0.0
        self.dps_only_s = 0.0
        self.dps_rate: float | None = None
        self.dps_unit = "°/s"  # or "m°/s"
        self.acc_norms: list[float] = []  # the accelerometer's median magnitude of each piece fed before stillness

    def reset_at(self, global_index: int) -> None:
        """A gap: nothing before ``global_index`` may pair with what follows."""
        self.seg_start = global_index
        self.runs = []

    def feed(self, t, acc, gyr, tacc, tgyr, tvalid) -> tuple[list[dict], Calibration | None, int]:
        if self.t_first is None and len(t):
            self.t_first = float(t[0])
        n_old = len(self.t)
        self.t = np.concatenate([self.t, t])
        self.acc = np.concatenate([self.acc, acc])
        self.gyr = np.concatenate([self.gyr, gyr])
        if self.trunk:
            self.tacc = np.concatenate([self.tacc, tacc])
            self.tgyr = np.concatenate([self.tgyr, tgyr])
            self.tvalid = np.concatenate([self.tvalid, tvalid])
        first_local = max(n_old, self.seg_start - self.base)
        new_mask = np.zeros(len(t), bool)
        if len(t):
            lo = max(self.seg_start - self.base, 0)
            m = still_mask(self.t[lo:], self.acc[lo:], self.gyr[lo:], first_local - lo, self.p)
            new_mask[len(t) - len(m) :] = m
            if self.still_s < self.p.still_before_s and len(m):
                self._unit_evidence(lo, first_local, m)
        self.mask = np.concatenate([self.mask, new_mask])
        events: list[dict] = []
        for i in range(n_old, len(self.t)):
            g = self.base + i
            still = bool(self.mask[i])
            if self.runs and self.runs[-1].still == still and self.runs[-1].end == g:
                self.runs[-1].end = g + 1
            else:
                self.runs.append(_Run(still, g, g + 1))
            run = self.runs[-1]
            need = self.p.still_after_s - self.p.still_window_s
            t_run = self.t[max(run.start - self.base, 0)]
            if still and self.t[i] - t_run >= need and (i == 0 or self.t[i - 1] - t_run < need):
                result = self._attempt(len(self.runs) - 1, g)
                if isinstance(result, Calibration):
                    return events, result, run.start
                if result is not None:
                    events.append(result)
        self._trim()
        return events, None, -1

    def _unit_evidence(self, lo: int, first_local: int, m: np.ndarray) -> None:
        """Stillness the gyro misses that it would see were its readings °/s (the refusal names the unit)."""
        t = self.t[first_local - 1 : len(self.t)] if first_local > 0 else self.t[first_local:]
        dt = np.diff(t) if first_local > 0 else np.concatenate([[0.0], np.diff(t)])
        self.still_s += float(dt[m].sum())
        if len(self.acc_norms) < 10_000:  # mg data never reads still: its magnitude names the unit
            self.acc_norms.append(float(np.median(np.linalg.norm(self.acc[first_local:], axis=1))))
        for unit, scale in (("°/s", np.radians(1.0)), ("m°/s", np.radians(1e-3))):
            m_dps = still_mask(self.t[lo:], self.acc[lo:], scale * self.gyr[lo:], first_local - lo, self.p)
            only = m_dps & ~m
            if only.any():
                self.dps_only_s += float(dt[only].sum())
                self.dps_rate = float(np.median(np.linalg.norm(self.gyr[first_local:][only], axis=1)))
                self.dps_unit = unit
                break  # °/s data also reads still as m°/s: the first unit that fits

    def _attempt(self, r2: int, g_now: int) -> Calibration | dict | None:
        p = self.p
        run2 = self.runs[r2]
        t_s2 = self._tt(run2.start)
        for r1 in range(r2 - 1, -1, -1):
            run1 = self.runs[r1]
            if not run1.still:
                continue
            if t_s2 - self._tt(run1.end - 1) > p.hinge_max_s:
                break
            # the stillness mask lags by the window: the motion starts after the mask's window start
            d1 = self._tt(run1.end - 1) - self._tt(run1.start) + p.still_window_s
            if d1 < p.still_before_s:
                continue
            s1_lo = max(run1.start - p_idx_window(self, run1.start), self.base, self.seg_start)
            s1_lo = max(s1_lo, self._index_at(self._tt(run1.end - 1) - p.still_use_max_s))
            still1 = slice(s1_lo - self.base, run1.end - self.base)
            # the mask notices motion only once it exceeds the sway threshold: integrate from a
            # window earlier so the slow start of the bow is counted (still samples add nothing)
            h0 = max(run1.end - p_idx_window(self, run1.end - 1), s1_lo + 1)
            hinge = slice(h0 - self.base, run2.start - self.base)
            s2_lo = max(run2.start - p_idx_window(self, run2.start), run1.end + 1)
            still2 = slice(s2_lo - self.base, g_now + 1 - self.base)
            if hinge.stop - hinge.start < 2:
                continue
            res = hinge_calibration(self.t, self.acc, self.gyr, still1, hinge, still2, p)
            if not res.ok:
                if res.reason == "no hinge":
                    return None
                self.last_reason = res.reason
                return {
                    "type": "calibration",
                    "t": round(float(self.t[g_now - self.base]), 4),
                    "ok": False,
                    "reason": res.reason,
                }
            trunk = None
            trunk_reason = None
            if self.trunk:
                # the trunk may have started a moment late: use the valid end of the first stillness
                bad1 = np.flatnonzero(~self.tvalid[still1])
                t_still1 = slice(still1.start + (int(bad1[-1]) + 1 if len(bad1) else 0), still1.stop)
                enough = (
                    t_still1.stop - t_still1.start > 1
                    and self.t[t_still1.stop - 1] - self.t[t_still1.start] >= p.still_before_s / 2
                )
                if not enough or not np.all(self.tvalid[hinge.start - 1 : still2.stop]):
                    trunk_reason = "trunk sensor had no data during the routine"
                else:
                    h = slice(max(hinge.start, t_still1.start + 1), hinge.stop)
                    tr = hinge_calibration(self.t, self.tacc, self.tgyr, t_still1, h, still2, p)
                    trunk = tr.seg if tr.ok else None
                    trunk_reason = None if tr.ok else f"trunk: {tr.reason}"
            # the mean sample period over the routine (a fixed span, so any block split agrees)
            d = np.diff(self.t[still1.start : still2.stop])
            med = np.median(d)
            # a doubled interval is a dropped sample, unless the timestamps jitter too much to count that way
            countable = float(np.median(np.abs(d - med))) < 0.1 * med
            k = np.rint(d / med) if countable else np.ones(len(d))
            self.period_s = float(d.sum() / k.sum())
            return Calibration(res.seg, trunk, t=float(self.t[g_now - self.base]), trunk_reason=trunk_reason)  # type: ignore[arg-type]
        return None

    def _tt(self, g: int) -> float:
        return float(self.t[g - self.base])

    def _index_at(self, time: float) -> int:
        return self.base + int(np.searchsorted(self.t, time, side="left"))

    def _trim(self) -> None:
        p = self.p
        keep_s = p.still_use_max_s + p.hinge_max_s + p.still_after_s + 2 * p.still_window_s + 1.0
        if not len(self.t) or self.t[-1] - self.t[0] < 2 * keep_s:
            return
        cut = int(np.searchsorted(self.t, self.t[-1] - keep_s))
        self.base += cut
        for name in ("t", "acc", "gyr", "mask"):
            setattr(self, name, getattr(self, name)[cut:])
        if self.trunk:
            self.tacc, self.tgyr, self.tvalid = self.tacc[cut:], self.tgyr[cut:], self.tvalid[cut:]
        self.runs = [r for r in self.runs if r.end > self.base]
        for r in self.runs:
            r.start = max(r.start, self.base)

    def refusal(self) -> CalibrationError:
        p = self.p
        hint = (
            f"stand still ≥{p.still_before_s:.0f} s, hip hinge 30–45° and back within "
            f"{p.hinge_max_s:.0f} s, stand still ≥{p.still_after_s:.0f} s"
        )
        if self.last_reason and UNITS_NOTE in self.last_reason:  # not the routine's fault: no routine hint
            return CalibrationError(f"calibration refused: {self.last_reason}")
        if self.last_reason:
            return CalibrationError(f"calibration refused: {self.last_reason} ({hint})")
        if self.still_s < p.still_before_s and self.dps_only_s >= p.still_before_s and self.dps_rate is not None:
            return CalibrationError(
                f"no calibration routine found: angular rate seems to be in {self.dps_unit}, not rad/s: while the "
                f"accelerometer read still, the gyro read {self.dps_rate:.2f}, never still as rad/s but still as "
                f"{self.dps_unit} ({UNITS_NOTE} rad/s)"
            )
        g_typ = float(np.median(self.acc_norms)) if self.acc_norms else None
        if self.still_s < p.still_before_s and g_typ is not None and not 0.2 * GRAVITY <= g_typ <= 5.0 * GRAVITY:
            return CalibrationError(f"no calibration routine found: {units_problem(g_typ, 0.0)}")
        return CalibrationError(f"no calibration routine found ({hint}); or supply a saved calibration")


def p_idx_window(search: CalibrationSearch, g: int) -> int:
    """Samples covered by the stillness window that ends at global index ``g``."""
    t0 = search._tt(g)
    j = int(np.searchsorted(search.t, t0 - search.p.still_window_s, side="right"))
    return g - (search.base + j)
