"""Per-sensor accelerometer calibration from still poses (a "tumble"): offset and gain per axis.

Why: an accelerometer's offset and gain errors (MPU-6050: zero-g ±50-80 mg, sensitivity ±3 %) turn the
measured gravity by an amount that depends on the sensor's attitude. The standing neutral cancels them only
at the standing attitude; a runner runs 7-13° further forward than they stand (RBDS004), and there the
error reaches a few tenths of a degree of lean and stack (docs/accuracy.md). A sensor held still in six
or more attitudes, each axis once up and once down, measures them: at rest the corrected reading's length
is gravity, whatever the attitude. The fit is the classic six-parameter one (offset and gain per axis,
least squares on the magnitude); it needs no knowledge of the attitudes, so the sensor may be placed by
hand against any box's faces. Cross-axis terms (MPU-6050 ±2 %) are not fitted: six poses cannot separate
them, and their effect is a small fixed rotation that the standing calibration's sensor → body rotation
absorbs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from stackcue.errors import CalibrationError

from .calibration import _unit, still_mask
from .params import GRAVITY, CalibrationParams

#: offsets beyond this are not an accelerometer's zero-g error (MPU-6050: ±80 mg = 0.8 m/s² at worst)
MAX_OFFSET_M_S2 = 2.0
#: gains outside this are not a sensitivity error (MPU-6050: ±3 %)
GAIN_RANGE = (0.9, 1.1)
#: an axis counts as "up" (or "down") in a pose when it carries this share of gravity
AXIS_SHARE = 0.8
#: two still stretches whose gravity directions are closer than this are one pose
SAME_POSE_DEG = 20.0
AXES = "xyz"


@dataclass(frozen=True)
class AccelCalibration:
    """``corrected = (raw - offset) / gain``, per axis, in the sensor's axes (m/s²)."""

    offset_m_s2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        problem = check(self.offset_m_s2, self.gain)
        if problem:
            raise CalibrationError(problem)

    @property
    def identity(self) -> bool:
        return self.offset_m_s2 == (0.0, 0.0, 0.0) and self.gain == (1.0, 1.0, 1.0)

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """Corrected readings (N, 3); NaN rows (a trunk sensor's holes) stay NaN."""
        return (np.asarray(acc, float) - np.asarray(self.offset_m_s2)) / np.asarray(self.gain)

    def undo(self, acc: np.ndarray) -> np.ndarray:
        """The raw readings a corrected recording was made from."""
        return np.asarray(acc, float) * np.asarray(self.gain) + np.asarray(self.offset_m_s2)

    def to_meta(self) -> str:
        """One ``# key=value`` line's value: ``offset=ox,oy,oz gain=gx,gy,gz``."""
        off = ",".join(f"{v:.4f}" for v in self.offset_m_s2)
        return f"offset={off} gain=" + ",".join(f"{v:.5f}" for v in self.gain)

    @staticmethod
    def from_meta(text: str) -> AccelCalibration:
        """The inverse of :meth:`to_meta`; a one-line :class:`CalibrationError` for anything else."""
        parts = dict(p.partition("=")[::2] for p in text.split())
        try:
            off = tuple(float(v) for v in parts["offset"].split(","))
            gain = tuple(float(v) for v in parts["gain"].split(","))
        except (KeyError, ValueError):
            raise CalibrationError(f"{text!r} is not 'offset=ox,oy,oz gain=gx,gy,gz'") from None
        if len(off) != 3 or len(gain) != 3:
            raise CalibrationError(f"{text!r} needs three offsets and three gains")
        return AccelCalibration(off, gain)  # type: ignore[arg-type]


def check(offset: tuple[float, ...] | list, gain: tuple[float, ...] | list) -> str:
    """Why these cannot be an accelerometer's calibration, or "" when they can."""
    if len(offset) != 3 or len(gain) != 3:
        return "needs three offsets and three gains (x, y, z)"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (*offset, *gain)):
        return "offsets and gains must be numbers"
    worst = max(abs(v) for v in offset)
    if worst > MAX_OFFSET_M_S2:
        return f"an offset of {worst:.3g} m/s² is not an accelerometer's zero-g error (at most {MAX_OFFSET_M_S2:g})"
    lo, hi = GAIN_RANGE
    bad = [v for v in gain if not lo <= v <= hi]
    if bad:
        return f"a gain of {bad[0]:.4g} is not a sensitivity error (expected {lo:g}..{hi:g})"
    return ""


@dataclass(frozen=True)
class Pose:
    """One still stretch: where it was, and the mean reading there (sensor axes, m/s²)."""

    t0: float
    t1: float
    mean_m_s2: tuple[float, float, float]
    samples: int

    @property
    def direction(self) -> str:
        """The axis nearest to up, signed: "+z" when lying flat face up."""
        m = np.asarray(self.mean_m_s2)
        i = int(np.argmax(np.abs(m)))
        return ("+" if m[i] > 0 else "-") + AXES[i]


def still_poses(
    t: np.ndarray,
    acc: np.ndarray,
    gyr: np.ndarray,
    *,
    window_s: float = 0.5,
    min_still_s: float = 2.0,
    gyro_std_dps: float = 1.0,
    acc_std_m_s2: float = 0.15,
) -> list[Pose]:
    """Still stretches of at least ``min_still_s``, one per attitude (the longest where one recurs).

    Stillness is the routine's (:func:`calibration.still_mask`: each axis's spread over the ``window_s``
    behind a sample, not its level, so a gyro's offset does not matter), on a table's tighter bounds. A
    stretch's last window is left out, where the hand took the box again.
    """
    t, acc, gyr = np.asarray(t, float), np.asarray(acc, float), np.asarray(gyr, float)
    if len(t) < 3:
        return []
    p = replace(
        CalibrationParams(), still_window_s=window_s, still_gyro_std_dps=gyro_std_dps, still_acc_std_m_s2=acc_std_m_s2
    )
    still = still_mask(t, acc, gyr, 0, p)  # a sample is still when the window behind it is
    w = max(1, round(window_s / float(np.median(np.diff(t)))))
    poses: list[Pose] = []
    edges = np.flatnonzero(np.diff(np.r_[0, still.astype(int), 0]))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        end = b - w  # leave out the last window
        if end <= a or t[b - 1] - t[a] + window_s < min_still_s:  # the stretch began a window before its mark
            continue
        m = acc[a:end].mean(axis=0)
        poses.append(Pose(float(t[a]), float(t[b - 1]), (float(m[0]), float(m[1]), float(m[2])), end - a))
    kept: list[Pose] = []
    for pose in sorted(poses, key=lambda q: -q.samples):
        u = _unit(np.asarray(pose.mean_m_s2))
        if all(u @ _unit(np.asarray(k.mean_m_s2)) <= math.cos(math.radians(SAME_POSE_DEG)) for k in kept):
            kept.append(pose)
    return sorted(kept, key=lambda q: q.t0)


def missing_directions(poses: list[Pose], gravity: float = GRAVITY) -> list[str]:
    """The signed axes no pose had up (each must be up once and down once for the gains to be told apart)."""
    means = np.array([p.mean_m_s2 for p in poses]) if poses else np.zeros((0, 3))
    out = []
    for i, ax in enumerate(AXES):
        for sign in ("+", "-"):
            v = means[:, i] if sign == "+" else -means[:, i]
            if not np.any(v > AXIS_SHARE * gravity):
                out.append(sign + ax)
    return out


@dataclass(frozen=True)
class AccelFit:
    """A fitted calibration, with how well each pose agrees before and after (|reading| - g, m/s²)."""

    calibration: AccelCalibration
    poses: list[Pose]
    error_before_m_s2: tuple[float, ...]
    error_after_m_s2: tuple[float, ...]

    @property
    def rms_after_m_s2(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.error_after_m_s2))))


def fit(poses: list[Pose], gravity: float = GRAVITY) -> AccelFit:
    """Offset and gain per axis so that every pose reads ``gravity``; a one-line error when it can't be told."""
    missing = missing_directions(poses, gravity)
    if missing:
        raise CalibrationError(
            f"found {len(poses)} still pose(s); each axis must be held up once and down once for 2 s or more "
            f"(missing: {', '.join(missing)})"
        )
    from scipy.optimize import least_squares  # here: every source imports this module, few sources fit

    m = np.array([p.mean_m_s2 for p in poses])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm((m - x[:3]) / x[3:], axis=1) - gravity

    sol = least_squares(residual, np.r_[np.zeros(3), np.ones(3)], x_scale=np.r_[np.ones(3), 0.01 * np.ones(3)])
    off = tuple(float(v) for v in sol.x[:3])
    gain = tuple(float(v) for v in sol.x[3:])
    problem = check(off, gain)
    if problem:
        raise CalibrationError(f"the poses give {problem}: were they still, and all of the one sensor?")
    cal = AccelCalibration(off, gain)  # type: ignore[arg-type]
    before = tuple(float(v) for v in np.linalg.norm(m, axis=1) - gravity)
    after = tuple(float(v) for v in residual(sol.x))
    return AccelFit(cal, poses, before, after)
