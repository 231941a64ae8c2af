"""A synthetic runner with a truth channel, to test the pipeline where real truth is unavailable.

The run follows docs/calibration.md: the calibration routine (still, hip hinge, still), a walking start,
running with cadence variation, posture drift episodes, gentle turns, an optional traffic-light
stop (or instead a second calibration routine, optionally after re-strapping the sensors in another
mounting: ``recal_at_s``, ``restrap``) and a walk-down. Every profile is an analytic function of time
(raised-cosine knots, cubic splines through smoothed noise, closed-form gait waveforms), so the gyroscope
comes from central differences of the orientation and everything is vectorised numpy.

Frames: world Z up; body (pelvis, trunk) x forward, y left, z up, level at the standing neutral;
R_world_from_body = Rz(heading)·Ry(pitch)·Rx(roll). Gait waveforms are built so that over a stride
of steady running the mean acceleration is zero; ``speed_changes`` (on by default) adds what real runners
do on top: stride-to-stride speed changes and a slow drift.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation, Slerp

from stackcue.errors import ConfigError, SourceError

from ..block import Block
from ..csv_format import write_recording
from ..source import Source

G = 9.81
DEG = np.pi / 180.0
ACC_LSB = G / 4096.0  # MPU-6050 at ±8 g
GYR_LSB = DEG / 32.8  # MPU-6050 at ±1000 °/s
H_DIFF = 0.5e-3  # half step of the central difference that gives the gyroscope

TRUTH_COLUMNS = [
    "t",
    "pelvic_tilt_deg",
    "pelvic_obliquity_deg",
    "pelvic_rotation_deg",
    "trunk_lean_deg",
    "stack_deg",
    "speed_m_s",
    "cadence_spm",
    "mode",
]
_TRUTH_FMT = {
    "t": "%.6f",
    "speed_m_s": "%.4f",
    "cadence_spm": "%.3f",
    "mode": "%d",
}

# Episode targets (relative to neutral), chosen well clear of the product's thresholds.
_EPISODE_TARGETS: dict[str, dict[str, float]] = {
    "anterior_tilt": {"tilt": 10.5, "lean_delta": 1.0, "peak": 10.5},
    "ribs_behind_pelvis": {"tilt": 4.5, "lean": -7.0, "peak": -11.5},
    "posterior_tilt": {"tilt": -10.0, "lean": -3.0, "peak": -10.0},
    "trunk_lean": {"tilt": 3.5, "lean": 20.0, "peak": 20.0},
    "pelvic_drop": {"drop_right": 13.0, "peak": 13.0},
}
_EPISODE_QUANTITY = {
    "anterior_tilt": "pelvic_tilt_deg",
    "ribs_behind_pelvis": "stack_deg",
    "posterior_tilt": "pelvic_tilt_deg",
    "trunk_lean": "trunk_lean_deg",
    "pelvic_drop": "pelvic_drop_deg (left side, during right stance)",
}


@dataclass
class SimParams:
    """What to simulate; ``minutes`` is the running time after the calibration routine."""

    minutes: float = 10.0
    rate_hz: float = 200.0
    trunk: bool = False
    seed: int = 0
    cadence_spm: float = 170.0
    speed_m_s: float = 3.3
    episodes: bool = True
    turns: bool = True
    stop: bool = True
    sensor_errors: bool = True
    gaps: bool = True
    # With sensor_errors on: False keeps the oscillator error and timestamp jitter out (a chip emulator adds its own).
    timing_errors: bool = True
    # With sensor_errors on: False keeps quantisation and clipping out (a chip emulator does those).
    quantise: bool = True
    # Seconds of running after which the runner stops and does the calibration routine again (for
    # re-calibration); the traffic-light stop is then left out, and episodes that would overlap it.
    recal_at_s: float | None = None
    # With recal_at_s: the sensors are re-strapped while standing before that routine, in another mounting.
    restrap: bool = False
    # Stride-to-stride speed changes while running (issue 16): a real runner's sacrum and sternum do not
    # come back to the same speed every stride. On by default (the standard of issue 16's accuracy targets);
    # off gives exactly the runs of before, whose every stride comes back to the same speed.
    speed_changes: bool = True
    # RMS of the sacrum's stride-mean forward acceleration, m/s² (RBDS runner 004 on a treadmill, 2.5–4.5 m/s:
    # 0.060–0.068 between like instants; the trial issue 16 cites: ~0.13).
    speed_change_rms_m_s2: float = 0.065
    # RMS of its stride-mean vertical acceleration, m/s² (RBDS004: ~0.01 between height minima, 0.05–0.10
    # between instants a quarter stride later; it scales the mean specific force more than it turns it).
    speed_change_up_rms_m_s2: float = 0.06
    # Correlation of the sternum's stride-mean accelerations with the sacrum's ("partly anti-correlated" in
    # issue 16; no trunk markers in the RBDS trials to measure it).
    speed_change_corr: float = -0.3
    # RMS of a slow drift of the running speed, m/s (correlation time 60 s; assumed, a treadmill has none).
    speed_drift_m_s: float = 0.15
    # The runner's stride-mean pelvic tilt while running, above standing (± 0.3° per runner), deg. Runners tilt
    # more running than standing: RBDS runner 004 +5.9/+10.0/+11.7° at 2.5/3.5/4.5 m/s (docs/calibration.md);
    # the default 2° keeps every earlier run as it was. The trunk leans forward by as much more (the stack,
    # lean − tilt, stays as it was), and the episodes' tilt and lean targets move with it: an episode is a
    # drift from the runner's own running posture.
    running_tilt_deg: float = 2.0


@dataclass
class SimRun:
    """A simulated recording and, row by row, what really happened."""

    block: Block
    meta: dict[str, str]
    truth: dict[str, np.ndarray]
    info: dict


# --------------------------------------------------------------------------- profile helpers


def _knots(t: np.ndarray, knots: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine interpolation through (time, value) knots and its derivative.

    C1 everywhere (zero slope at each knot), so accelerations and angular rates stay continuous.
    """
    kt = np.array([k[0] for k in knots], float)
    kv = np.array([k[1] for k in knots], float)
    t = np.asarray(t, float)
    if len(kt) == 1:
        return np.full(t.shape, kv[0]), np.zeros(t.shape)
    i = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    span = kt[i + 1] - kt[i]
    u = np.clip((t - kt[i]) / span, 0.0, 1.0)
    dv = kv[i + 1] - kv[i]
    return kv[i] + dv * (1.0 - np.cos(np.pi * u)) / 2.0, dv * np.pi * np.sin(np.pi * u) / (2.0 * span)


def _bump_knots(t0: float, ramp: float, hold: float) -> list[tuple[float, float]]:
    return [(t0, 0.0), (t0 + ramp, 1.0), (t0 + ramp + hold, 1.0), (t0 + 2 * ramp + hold, 0.0)]


class _Noise:
    """Unit-variance smooth random signal of correlation time ~tau, evaluable at any time."""

    def __init__(self, rng: np.random.Generator, t_end: float, tau: float) -> None:
        dt, sigma = tau / 4.0, 2.0
        half = int(4 * sigma)
        n = int(np.ceil(t_end / dt)) + 4
        kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
        kernel /= kernel.sum()
        white = rng.standard_normal(n + 2 * half)
        values = np.convolve(white, kernel, mode="valid") / np.sqrt(np.sum(kernel**2))
        self._spline = CubicSpline(np.arange(n) * dt - 2 * dt, values)

    def __call__(self, t: np.ndarray, order: int = 0) -> np.ndarray:
        return self._spline(t, order) if order else self._spline(t)


class _SpeedChanges:
    """Stride-to-stride speed changes and a slow drift, per segment, only while running (issue 16).

    Forward: a velocity that is smooth noise of correlation time 0.9 stride, so that the stride-mean
    accelerations of consecutive strides correlate at about −0.3 (RBDS004: −0.16 to −0.40) and the
    speed at like instants varies by ~0.04 m/s (RBDS004: 0.035–0.039), plus a 60 s drift. Vertical: a
    height that is such noise (bounded, as a runner's is). Sacrum and sternum share one noise and
    differ by another, mixed to the correlation asked for; both are scaled so that the sacrum's
    stride-mean accelerations have the RMS asked for. From a generator of its own: with the option
    off, or on, every other draw of the run stays the same.
    """

    def __init__(self, p: SimParams, end: float) -> None:
        rng = np.random.default_rng([p.seed, 16])
        self.stride_s = 120.0 / p.cadence_spm
        tau = 0.9 * self.stride_s
        self.fwd = (_Noise(rng, end, tau), _Noise(rng, end, tau))
        self.up = (_Noise(rng, end, tau), _Noise(rng, end, tau))
        self.drift = _Noise(rng, end, 60.0)
        c = float(np.clip(p.speed_change_corr, -1.0, 1.0))
        self.mix = (np.sqrt((1.0 + c) / 2.0), np.sqrt((1.0 - c) / 2.0))
        self.drift_m_s = p.speed_drift_m_s
        grid = np.arange(0.0, max(end - self.stride_s - 1.0, 10.0), 0.01)
        a, b = self.mix
        # Scale: the sacrum's stride-mean acceleration (velocity change over a stride / its duration).
        v_fwd = a * self.fwd[0](grid) + b * self.fwd[1](grid)
        v_fwd_t = a * self.fwd[0](grid + self.stride_s) + b * self.fwd[1](grid + self.stride_s)
        v_up = a * self.up[0](grid, 1) + b * self.up[1](grid, 1)
        v_up_t = a * self.up[0](grid + self.stride_s, 1) + b * self.up[1](grid + self.stride_s, 1)
        rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
        self.k_fwd = p.speed_change_rms_m_s2 * self.stride_s / max(rms(v_fwd_t - v_fwd), 1e-12)
        self.k_up = p.speed_change_up_rms_m_s2 * self.stride_s / max(rms(v_up_t - v_up), 1e-12)

    def _pair(self, noises: tuple[_Noise, _Noise], t: np.ndarray, trunk: bool, order: int) -> np.ndarray:
        a, b = self.mix
        return a * noises[0](t, order) + (-b if trunk else b) * noises[1](t, order)

    def velocity(self, t: np.ndarray, gate: np.ndarray, trunk: bool) -> np.ndarray:
        """Forward speed change, m/s (the truth's speed adds the sacrum's)."""
        return gate * (self.k_fwd * self._pair(self.fwd, t, trunk, 0) + self.drift_m_s * self.drift(t))

    def accel(self, t: np.ndarray, gate: np.ndarray, dgate: np.ndarray, trunk: bool) -> tuple[np.ndarray, np.ndarray]:
        """(forward, up) acceleration, m/s²: the forward is exactly the derivative of ``velocity``."""
        v = self.k_fwd * self._pair(self.fwd, t, trunk, 0) + self.drift_m_s * self.drift(t)
        dv = self.k_fwd * self._pair(self.fwd, t, trunk, 1) + self.drift_m_s * self.drift(t, 1)
        return dgate * v + gate * dv, gate * self.k_up * self._pair(self.up, t, trunk, 2)


class _Sway:
    """Standing sway: sums of cos(2πn·u) − cos(2πm·u) over each still window.

    Each term is zero, with zero slope, at both ends of the window and has zero mean over it, so the
    neutral (mean over the first still phase) stays exactly level and nothing jumps at the edges.
    """

    def __init__(self, rng: np.random.Generator, windows: list[tuple[float, float]], amp_deg: float) -> None:
        self._terms: list[tuple[float, float, np.ndarray, np.ndarray, np.ndarray]] = []
        u = np.linspace(0.0, 1.0, 2001)
        for t0, t1 in windows:
            length = t1 - t0
            lo = max(1, int(np.ceil(0.2 * length)))
            hi = max(lo + 1, int(np.floor(1.0 * length)))
            n = rng.integers(lo, hi + 1, 3)
            m = rng.integers(lo, hi + 1, 3)
            m = np.where(m == n, np.where(n < hi, n + 1, n - 1), m)
            c = rng.standard_normal(3)
            peak = np.abs(self._eval(u, n, m, c)).max()
            self._terms.append((t0, t1, n, m, c * amp_deg / max(peak, 1e-9)))

    @staticmethod
    def _eval(u: np.ndarray, n: np.ndarray, m: np.ndarray, c: np.ndarray) -> np.ndarray:
        ang = 2 * np.pi * u[:, None]
        return (c * (np.cos(ang * n) - np.cos(ang * m))).sum(axis=1)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        out = np.zeros(t.shape)
        for t0, t1, n, m, c in self._terms:
            lo, hi = np.searchsorted(t, [t0, t1])
            if hi > lo:
                out[lo:hi] = self._eval((t[lo:hi] - t0) / (t1 - t0), n, m, c)
        return out


def _free_spot(
    rng: np.random.Generator,
    length: float,
    allowed: list[tuple[float, float]],
    taken: list[tuple[float, float]],
    margin: float,
    tries: int = 400,
) -> float | None:
    """A random start so [start, start+length] lies in an allowed interval and clears the taken ones."""
    spans = [(a, b - length) for a, b in allowed if b - length > a]
    if not spans:
        return None
    widths = np.array([b - a for a, b in spans])
    for _ in range(tries):
        k = int(rng.choice(len(spans), p=widths / widths.sum()))
        start = float(rng.uniform(*spans[k]))
        if all(start + length + margin <= a or start >= b + margin for a, b in taken):
            return start
    return None


# --------------------------------------------------------------------------- the runner


class _Runner:
    """The random runner and its schedule; every profile is an analytic function of time."""

    def __init__(self, p: SimParams, rng: np.random.Generator) -> None:
        self.p = p
        # Calibration routine.
        self.t_still1 = float(rng.uniform(4.0, 4.5))
        self.hinge = (self.t_still1, self.t_still1 + float(rng.uniform(2.8, 3.4)))
        self.hinge_deg = float(rng.uniform(30.0, 40.0))
        self.hinge_trunk_deg = self.hinge_deg + float(rng.uniform(5.0, 10.0))
        self.hinge_roll_deg = float(rng.uniform(-0.5, 0.5))
        self.hinge_back_m = float(rng.uniform(0.08, 0.12))
        self.t_still2 = self.hinge[1] + float(rng.uniform(3.0, 3.5))
        self.run_start = self.t_still2 + 1.0
        self.accel_end = self.run_start + 4.0
        self.end_decel = self.run_start + 60.0 * p.minutes
        self.duration = self.end_decel + 15.0
        self.hinges = [self.hinge]
        # The second routine (recal_at_s): slow to a stand, re-strap, still, hinge, still, walk off, run.
        self.recal: dict[str, Any] | None = None
        if p.recal_at_s is not None:
            tr = self.run_start + p.recal_at_s
            h0 = tr + 12.0 + 4.2
            h1 = h0 + (self.hinge[1] - self.hinge[0])
            self.recal = {
                "t_stop": tr,
                "restrap": [tr + 9.0, tr + 11.5],
                "still1": [tr + 11.5, h0],
                "hinge": [h0, h1],
                "still2": [h1, h1 + 3.2],
                "run_start": h1 + 3.2 + 1.0,
            }
            self.hinges.append((h0, h1))
        # Runner constants.
        self.v_walk = float(rng.uniform(1.2, 1.5))
        self.incline = p.running_tilt_deg - 2.0  # pelvis and trunk, over the 2° and 4° of the default runner
        self.tilt0 = p.running_tilt_deg + float(rng.uniform(-0.3, 0.3))
        self.lean0 = 4.0 + self.incline + float(rng.uniform(-0.5, 0.5))
        self.obl0 = float(rng.uniform(-0.5, 0.5))
        self.drop_left0, self.drop_right0 = (float(x) for x in rng.uniform(4.0, 5.0, 2))
        self.contact0 = float(rng.uniform(0.22, 0.26))
        self.impact_g = float(rng.uniform(2.0, 3.0))
        self.ring_hz = float(rng.uniform(15.0, 20.0))
        self.phase0 = float(rng.uniform(0, 2 * np.pi))
        self.ph = rng.uniform(-0.4, 0.4, 4)  # phase offsets of the angle oscillations
        self.heading0 = float(rng.uniform(-np.pi, np.pi))
        # Sensor low-pass (MPU-6050 DLPF well under Nyquist), applied analytically to the impact and ringing.
        dlpf_hz = min(p.rate_hz / 4.0, 188.0)
        sig_f = 0.1325 / dlpf_hz  # Gaussian filter with -3 dB at dlpf_hz
        self.dlpf_hz = dlpf_hz
        self.impact_sigma = float(np.hypot(0.008, sig_f))
        self.impact_gain = 0.008 / self.impact_sigma
        self.ring_gain = float(np.exp(-0.5 * (2 * np.pi * self.ring_hz * sig_f) ** 2))
        # Smooth noises.
        end = self.duration + 5.0
        self.n_cad_slow = _Noise(rng, end, 30.0)
        self.n_cad_jit = _Noise(rng, end, 0.7)
        self.n_tilt = _Noise(rng, end, 1.5)
        self.n_lean = _Noise(rng, end, 1.5)
        self.n_obl = _Noise(rng, end, 3.0)
        self.n_contact = _Noise(rng, end, 10.0)
        self.speed_changes = _SpeedChanges(p, end) if p.speed_changes else None
        self._plan_events(rng)
        self._build_knots()
        still = [(0.0, self.t_still1), (self.hinge[1], self.t_still2)]
        if self.recal is not None:
            still += [tuple(self.recal["still1"]), tuple(self.recal["still2"])]
        if self.stop is not None:
            still.append((self.stop[0] + 8.0, self.stop[0] + 22.0))
        still.append((self.end_decel + 12.0, self.duration))
        self.sway = [_Sway(rng, still, 0.3) for _ in range(4)]  # pelvis pitch, roll; trunk pitch, roll

    # ---- schedule

    def _plan_events(self, rng: np.random.Generator) -> None:
        p = self.p
        lo, hi = self.accel_end + 10.0, self.end_decel - 5.0
        self.episodes: list[dict[str, Any]] = []
        if p.episodes and hi > lo:
            self.episodes = self._layout_episodes(rng, lo, hi)
        recal_span = None
        if self.recal is not None:
            recal_span = (self.recal["t_stop"] - 8.0, self.recal["run_start"] + 10.0)
            self.episodes = [e for e in self.episodes if e["t_end"] < recal_span[0] or e["t_start"] > recal_span[1]]
        # The stop goes into the free zone nearest the middle (8 s after an episode, 10 s before the next).
        self.stop: tuple[float, float] | None = None
        if p.stop and p.minutes >= 4 and self.recal is None:
            bounds = [lo] + [x for e in self.episodes for x in (e["t_start"], e["t_end"])] + [hi]
            target = self.run_start + 60.0 * p.minutes * (0.5 + float(rng.uniform(-0.08, 0.08)))
            best = None
            for a, b in zip(bounds[::2], bounds[1::2], strict=True):
                s_lo, s_hi = a + 8.0, b - 39.0
                if s_hi >= s_lo:
                    ts = float(np.clip(target, s_lo, s_hi))
                    if best is None or abs(ts - target) < abs(best - target):
                        best = ts
            if best is not None:
                self.stop = (best, best + 29.0)
        # Turns: in steady running, clear of episodes, the stop and each other.
        self.turns: list[dict[str, float]] = []
        if p.turns:
            taken = [(e["t_start"], e["t_end"]) for e in self.episodes]
            if self.stop:
                taken.append(self.stop)
            if recal_span is not None:
                taken.append(recal_span)
            for _ in range(max(1, round(p.minutes / 3.0))):
                length = float(rng.uniform(5.0, 15.0))
                start = _free_spot(rng, length, [(self.accel_end + 5.0, self.end_decel - 5.0)], taken, 5.0)
                if start is None:
                    continue
                radius = float(rng.uniform(25.0, 60.0))
                sign = float(rng.choice([-1.0, 1.0]))
                self.turns.append({"t0": start, "t1": start + length, "radius": radius, "sign": sign})
                taken.append((start, start + length))
            self.turns.sort(key=lambda x: x["t0"])

    def _layout_episodes(self, rng: np.random.Generator, lo: float, hi: float) -> list[dict[str, Any]]:
        """Episodes in a row with ≥ 60 s of baseline running between them, durations shrunk to fit."""
        gap = 60.0
        kinds = ["anterior_tilt", "ribs_behind_pelvis", "posterior_tilt", "trunk_lean", "pelvic_drop"]
        if not self.p.trunk:
            kinds = ["anterior_tilt", "anterior_tilt", "posterior_tilt", "pelvic_drop"]
        minutes = self.p.minutes
        # Up to 10 min one kind per 2 min (all kinds in 10 min), then one more per 4 min.
        n = min(int(minutes // 2), len(kinds)) + max(0, int((minutes - 10.0) // 4))
        order: list[str] = []
        while len(order) < n:
            order += [kinds[i] for i in rng.permutation(len(kinds))]
        length = hi - lo
        ramps = rng.uniform(10.0, 15.0, max(n, 1))
        holds = rng.uniform(40.0, 70.0, max(n, 1))
        while n > 0 and n * 60.0 + (n - 1) * gap > length:
            n -= 1
        if n == 0:
            return []
        ramps, holds = ramps[:n], holds[:n]
        total = float(np.sum(2 * ramps + holds)) + (n - 1) * gap
        min_total = n * 60.0 + (n - 1) * gap
        if total > length:
            alpha = (length - min_total) / (total - min_total)
            ramps, holds = 10.0 + (ramps - 10.0) * alpha, 40.0 + (holds - 40.0) * alpha
            total = length
        slack = rng.dirichlet(np.ones(n + 1)) * max(length - total, 0.0)
        out, t = [], lo + slack[0]
        for i in range(n):
            r, h = float(ramps[i]), float(holds[i])
            out.append({"kind": order[i], "t_start": t, "t_end": t + 2 * r + h, "ramp_s": r, "hold_s": h})
            t += 2 * r + h + gap + slack[i + 1]
        return out

    def _build_knots(self) -> None:
        s2, rs, te, vw, v = self.t_still2, self.run_start, self.end_decel, self.v_walk, self.p.speed_m_s
        level = [(0.0, 0.0), (s2, 0.0), (rs, 1.0), (rs + 4.0, 2.0)]
        speed = [(0.0, 0.0), (s2, 0.0), (rs, vw), (rs + 4.0, v)]
        stand_tilt: list[tuple[float, float]] = [(0.0, 0.0)]
        stand_lean: list[tuple[float, float]] = [(0.0, 0.0)]
        if self.stop is not None:
            ts = self.stop[0]
            level += [(ts, 2.0), (ts + 3, 1.0), (ts + 7, 1.0), (ts + 8, 0.0), (ts + 22, 0.0), (ts + 23, 1.0)]
            level += [(ts + 25, 1.0), (ts + 29, 2.0)]
            speed += [(ts, v), (ts + 3, vw), (ts + 7, vw), (ts + 8, 0.0), (ts + 22, 0.0), (ts + 23, vw)]
            speed += [(ts + 25, vw), (ts + 29, v)]
            # Relaxed at the lights: +8° anterior tilt, a posture that must raise no alert.
            stand_tilt += [(ts + 8, 0.0), (ts + 11, 8.0), (ts + 19, 8.0), (ts + 22, 0.0)]
            stand_lean += [(ts + 8, 0.0), (ts + 11, 6.0), (ts + 19, 6.0), (ts + 22, 0.0)]
        if self.recal is not None:
            tr, back = self.recal["t_stop"], self.recal["run_start"]
            level += [(tr, 2.0), (tr + 3, 1.0), (tr + 7, 1.0), (tr + 8, 0.0), (back - 1.0, 0.0), (back, 1.0)]
            level += [(back + 4.0, 2.0)]
            speed += [(tr, v), (tr + 3, vw), (tr + 7, vw), (tr + 8, 0.0), (back - 1.0, 0.0), (back, vw)]
            speed += [(back + 4.0, v)]
        level += [(te, 2.0), (te + 3, 1.0), (te + 11, 1.0), (te + 12, 0.0)]
        speed += [(te, v), (te + 3, vw), (te + 11, vw), (te + 12, 0.0)]
        self.k_level, self.k_speed = level, speed
        self.k_stand_tilt, self.k_stand_lean = stand_tilt, stand_lean
        base = {"tilt": self.tilt0, "lean": self.lean0, "drop_right": self.drop_right0}
        self.k_episode: dict[str, list[tuple[list[tuple[float, float]], float]]] = {
            "tilt": [],
            "lean": [],
            "drop_right": [],
        }
        for e in self.episodes:
            target = dict(_EPISODE_TARGETS[e["kind"]])
            for k in ("tilt", "lean"):
                if k in target:
                    target[k] += self.incline
            if e["kind"] in ("anterior_tilt", "posterior_tilt", "trunk_lean"):
                target["peak"] += self.incline
            knots = _bump_knots(e["t_start"], e["ramp_s"], e["hold_s"])
            for key in self.k_episode:
                if key in target:
                    self.k_episode[key].append((knots, target[key] - base[key]))
            if "lean_delta" in target:
                self.k_episode["lean"].append((knots, target["lean_delta"]))
            e["peak"] = target["peak"]
            e["quantity"] = _EPISODE_QUANTITY[e["kind"]]
        self.k_turns = []
        for x in self.turns:  # onset and offset of 2 s (less for a very short turn)
            r = min(2.0, (x["t1"] - x["t0"]) / 2.5)
            self.k_turns.append((_bump_knots(x["t0"], r, x["t1"] - x["t0"] - 2 * r), x))

    # ---- profiles

    def weights(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stand, walk, run) weights summing to 1."""
        level, _ = _knots(t, self.k_level)
        return np.clip(1.0 - level, 0, 1), 1.0 - np.abs(level - 1.0).clip(0, 1), np.clip(level - 1.0, 0, 1)

    def speed(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _knots(t, self.k_speed)

    def run_gate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The running weight and its time derivative (speed changes happen while running)."""
        level, dlevel = _knots(t, self.k_level)
        return np.clip(level - 1.0, 0.0, 1.0), np.where((level > 1.0) & (level < 2.0), dlevel, 0.0)

    def cadence(self, t: np.ndarray) -> np.ndarray:
        """Steps per minute: ~110 walking (and, invisibly, standing), the running cadence when running."""
        _, _, w_run = self.weights(t)
        run = self.p.cadence_spm * (1.0 + 0.01 * self.n_cad_slow(t) + 0.005 * self.n_cad_jit(t))
        return 110.0 + (run - 110.0) * w_run

    def contact_time(self, t: np.ndarray) -> np.ndarray:
        return self.contact0 * (1.0 + 0.03 * self.n_contact(t))

    def heading_rate(self, t: np.ndarray) -> np.ndarray:
        """Path heading rate v/R during turns (positive = left)."""
        v, _ = self.speed(t)
        rate = np.zeros(t.shape)
        for knots, x in self.k_turns:
            w, _ = _knots(t, knots)
            rate += w * x["sign"] / x["radius"]
        return v * rate

    def _episode(self, key: str, t: np.ndarray) -> np.ndarray:
        out = np.zeros(t.shape)
        for knots, delta in self.k_episode[key]:
            out += _knots(t, knots)[0] * delta
        return out

    def angles(self, t: np.ndarray, phi: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        """Per segment (yaw relative to the path, pitch, roll) in degrees, at times t and stride phase phi."""
        w_stand, w_walk, w_run = self.weights(t)
        amp = w_run + w_walk / 3.0
        tilt = w_run * (self.tilt0 + self._episode("tilt", t) + 0.4 * self.n_tilt(t)) + w_walk * 1.0
        tilt += w_stand * _knots(t, self.k_stand_tilt)[0]
        lean = w_run * (self.lean0 + self._episode("lean", t) + 0.4 * self.n_lean(t)) + w_walk * 2.0
        lean += w_stand * _knots(t, self.k_stand_lean)[0]
        obl = w_run * (self.obl0 + 0.3 * self.n_obl(t)) + w_walk * 0.5 * self.obl0
        drop_r = self.drop_right0 + self._episode("drop_right", t)
        s = np.sin(phi)
        # Pelvic drop: left side up during left stance (phi in [0, π)), down during right stance.
        drop = self.drop_left0 * np.clip(s, 0, None) ** 2 - drop_r * np.clip(-s, 0, None) ** 2
        hinge = np.zeros(t.shape)
        for h0, h1 in self.hinges:
            u = (t - h0) / (h1 - h0)
            hinge = hinge + np.where((u > 0) & (u < 1), (1.0 - np.cos(2 * np.pi * u)) / 2.0, 0.0)
        yaw_p = -5.0 * amp * np.cos(phi + self.ph[0])
        pelvis = (
            yaw_p,
            tilt + 2.5 * amp * np.cos(2 * phi - 1.0 + self.ph[1]) + self.sway[0](t) + self.hinge_deg * hinge,
            obl + amp * drop + self.sway[1](t) + self.hinge_roll_deg * hinge,
        )
        trunk = (
            -0.5 * yaw_p,
            lean + 1.5 * amp * np.cos(2 * phi - 0.5 + self.ph[2]) + self.sway[2](t) + self.hinge_trunk_deg * hinge,
            0.5 * obl + 2.0 * amp * np.sin(phi + 0.3 + self.ph[3]) + self.sway[3](t),
        )
        return {"pelvis": pelvis, "trunk": trunk}

    def accel_path(self, t: np.ndarray, phi: np.ndarray, cad: np.ndarray, trunk: bool) -> np.ndarray:
        """Acceleration (forward, left, up) in the path frame, m/s², gravity excluded."""
        _, w_walk, w_run = self.weights(t)
        step_t = 60.0 / cad
        s = (phi / np.pi) % 1.0  # step phase, foot strike at 0
        d = np.clip(self.contact_time(t) / step_t, 0.3, 0.9)
        att = 0.6 if trunk else 1.0
        sig_s = self.impact_sigma / step_t
        imp_amp = self.impact_g * self.impact_gain * att
        # Running vertical specific force (in g): stance half-sine scaled so the step mean is exactly 1 g.
        p_amp = (1.0 - imp_amp * sig_s * np.sqrt(2 * np.pi)) * np.pi / (2.0 * d)
        stance = s < d
        f_up = np.where(stance, p_amp * np.sin(np.pi * np.minimum(s / d, 1.0)), 0.0)
        ds = (s - 0.02 + 0.5) % 1.0 - 0.5
        f_up += imp_amp * np.exp(-0.5 * (ds / sig_s) ** 2)
        tau = s * step_t
        omega = 2 * np.pi * self.ring_hz
        # Soft-tissue ringing: the time derivative of a decaying sinusoid, so its integral is zero.
        decay = np.exp(-tau / 0.025)
        ring = 0.5 * att * self.ring_gain * decay * (np.cos(omega * tau) - np.sin(omega * tau) / (omega * 0.025))
        f_up += ring
        up = w_run * (f_up - 1.0) + w_walk * 0.25 * np.cos(2 * np.pi * s)
        fwd = w_run * (np.where(stance, -0.45 * np.sin(2 * np.pi * np.minimum(s / d, 1.0)), 0.0) + 0.3 * ring)
        fwd += w_walk * -0.15 * np.sin(2 * np.pi * s)
        left = (w_run * -0.17 + w_walk * -0.06) * np.sin(phi)
        acc = np.stack([fwd, left, up], axis=1) * G
        v, dv = self.speed(t)
        acc[:, 0] += dv
        if self.speed_changes is not None:
            gate, dgate = self.run_gate(t)
            fwd_extra, up_extra = self.speed_changes.accel(t, gate, dgate, trunk)
            acc[:, 0] += fwd_extra
            acc[:, 2] += up_extra
        acc[:, 1] += v * self.heading_rate(t)  # centripetal, toward the turn centre
        # Hip hinge: the sacrum moves back and returns; the sternum swings on a lever about the hips.
        for h0, h1 in self.hinges:
            u = (t - h0) / (h1 - h0)
            inside = (u > 0) & (u < 1)
            w = 2 * np.pi / (h1 - h0)
            acc[:, 0] += np.where(inside, -self.hinge_back_m * w**2 * np.cos(w * (t - h0)) / 2.0, 0.0)
            if trunk:
                a = self.hinge_trunk_deg * DEG
                x = w * (t - h0)
                pth = a * (1 - np.cos(x)) / 2
                pd, pdd = a * w * np.sin(x) / 2, a * w**2 * np.cos(x) / 2
                lever = 0.45
                acc[:, 0] += np.where(inside, lever * (np.cos(pth) * pdd - np.sin(pth) * pd**2), 0.0)
                acc[:, 2] += np.where(inside, lever * (-np.sin(pth) * pdd - np.cos(pth) * pd**2), 0.0)
        return acc


# --------------------------------------------------------------------------- simulation


def _validate(p: SimParams) -> None:
    if not 50.0 <= p.rate_hz <= 1000.0:
        raise ConfigError(f"rate_hz={p.rate_hz} is outside 50..1000 Hz")
    if not 0.25 <= p.minutes <= 600.0:
        raise ConfigError(f"minutes={p.minutes} is outside 0.25..600")
    if not 100.0 <= p.cadence_spm <= 240.0:
        raise ConfigError(f"cadence_spm={p.cadence_spm} is outside 100..240")
    if not 1.5 <= p.speed_m_s <= 8.0:
        raise ConfigError(f"speed_m_s={p.speed_m_s} is outside 1.5..8")
    if p.recal_at_s is not None and not 10.0 <= p.recal_at_s <= 60.0 * p.minutes - 45.0:
        raise ConfigError(
            f"recal_at_s={p.recal_at_s} is outside 10..{60.0 * p.minutes - 45.0:g} s (the routine and 15 s of "
            "running after it must fit before the end)"
        )
    if p.restrap and p.recal_at_s is None:
        raise ConfigError("restrap needs recal_at_s (the sensors are re-strapped before the second routine)")


def _euler_rates_to_body(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Body angular velocity for R = Rz(yaw)·Ry(pitch)·Rx(roll) from the Euler angle rates (rad/s)."""
    dy, dp, dr = rates.T
    sr, cr, sp, cp = np.sin(roll), np.cos(roll), np.sin(pitch), np.cos(pitch)
    return np.stack([dr - dy * sp, dp * cr + dy * sr * cp, -dp * sr + dy * cr * cp], axis=1)


def _random_rotation(rng: np.random.Generator) -> Rotation:
    """Uniform random rotation (normalised Gaussian quaternion), independent of the scipy version."""
    q = rng.standard_normal(4)
    return Rotation.from_quat(q / np.linalg.norm(q))


def _wxyz(rot: Rotation) -> list[float]:
    x, y, z, w = rot.as_quat()
    q = np.array([w, x, y, z])
    return [round(float(v), 8) for v in (q if w >= 0 else -q)]


def _intervals_mask(t: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(t.shape, bool)
    for a, b in intervals:
        lo, hi = np.searchsorted(t, [a, b])
        mask[lo:hi] = True
    return mask


def _restrapped(
    t: np.ndarray, f_body: np.ndarray, omega: np.ndarray, before: Rotation, after: Rotation, recal: dict
) -> tuple[np.ndarray, np.ndarray]:
    """(acc, gyr) in sensor axes of a sensor turned from mounting ``before`` to ``after`` during the re-strap.

    The turn follows a raised cosine; the gyroscope adds the sensor's rotation relative to the body
    (central differences of the mounting), so a filter integrating it stays consistent.
    """
    r0, r1 = recal["restrap"]
    key = Rotation.concatenate([before, after])
    slerp = Slerp([0.0, 1.0], key)

    def mounting(tt: np.ndarray) -> Rotation:
        u = np.clip((tt - r0) / (r1 - r0), 0.0, 1.0)
        return slerp((1.0 - np.cos(np.pi * u)) / 2.0)

    m = mounting(t)
    acc = m.apply(f_body)
    gyr = m.apply(omega)
    inside = (t > r0 - H_DIFF) & (t < r1 + H_DIFF)
    if inside.any():
        ti = t[inside]
        # sensor-from-body at t±h; the sensor's own rate relative to the body, in sensor axes
        rel = (mounting(ti - H_DIFF) * mounting(ti + H_DIFF).inv()).as_rotvec() / (2 * H_DIFF)
        gyr[inside] += rel
    return acc, gyr


@dataclass(frozen=True)
class Device:
    """One MPU-6050-like sensor's own errors, drawn once: the same sensor in a run and in its tumble."""

    gyro_bias_rad_s: np.ndarray
    gyro_drift_rad_s: np.ndarray  # reached over the warm-up (time constant 400 s)
    gyro_gain: np.ndarray
    acc_offset_m_s2: np.ndarray
    acc_gain: np.ndarray

    @staticmethod
    def draw(rng: np.random.Generator) -> Device:
        bias_g = rng.uniform(-5.0, 5.0, 3) * DEG
        drift = rng.uniform(0.3, 0.6, 3) * rng.choice([-1.0, 1.0], 3) * DEG
        scale_g = 1.0 + rng.uniform(-0.02, 0.02, 3)
        bias_a = rng.uniform(-0.4, 0.4, 3)
        scale_a = 1.0 + rng.uniform(-0.02, 0.02, 3)
        return Device(bias_g, drift, scale_g, bias_a, scale_a)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [float(x) for x in v] for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(d: dict[str, list[float]]) -> Device:
        return Device(**{k: np.asarray(v, float) for k, v in d.items()})

    def measure(
        self, rng: np.random.Generator, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, quantise: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """What this sensor reads of true specific force and rate: its errors, noise, quantisation, clipping."""
        warm = (1.0 - np.exp(-t / 400.0)) / (1.0 - np.exp(-1.5))
        g = gyr * self.gyro_gain + self.gyro_bias_rad_s + warm[:, None] * self.gyro_drift_rad_s
        g = g + rng.normal(0.0, 0.06 * DEG, gyr.shape)
        a = acc * self.acc_gain + self.acc_offset_m_s2 + rng.normal(0.0, 0.04, acc.shape)
        if not quantise:
            return a, g
        a = np.clip(np.round(a / ACC_LSB), -32768, 32767) * ACC_LSB
        g = np.clip(np.round(g / GYR_LSB), -32768, 32767) * GYR_LSB
        return a, g


def _sensor(
    rng: np.random.Generator, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, errors: bool, quantise: bool = True
) -> tuple[np.ndarray, np.ndarray, Device | None]:
    """MPU-6050-like errors: bias, warm-up drift, scale, noise, quantisation, clipping (±8 g, ±1000 °/s)."""
    if not errors:
        return acc, gyr, None
    device = Device.draw(rng)
    a, g = device.measure(rng, t, acc, gyr, quantise)
    return a, g, device


def simulate(params: SimParams) -> SimRun:
    """Simulate one run (calibration routine, running, stop, walk-down) with its truth channel."""
    p = params
    _validate(p)
    rng = np.random.default_rng(p.seed)
    runner = _Runner(p, rng)
    segments = ["pelvis", "trunk"] if p.trunk else ["pelvis"]
    mount = {seg: _random_rotation(rng) for seg in segments}  # R_sensor_from_body
    # after a re-strap: from a generator of its own, so every other draw stays as without one
    rng_strap = np.random.default_rng([p.seed, 14])
    mount_after = {seg: _random_rotation(rng_strap) for seg in segments} if p.restrap else mount

    # True sample instants on the chip's (slightly wrong) oscillator.
    eps = float(rng.uniform(-0.015, 0.015)) if p.sensor_errors else 0.0
    if not p.timing_errors:
        eps = 0.0
    rate_true = p.rate_hz * (1.0 + eps)
    n = int(np.floor(runner.duration * rate_true)) + 1
    t = np.arange(n) / rate_true

    cad = runner.cadence(t)
    phi_dot = 2 * np.pi * cad / 120.0
    phi = runner.phase0 + np.concatenate([[0.0], np.cumsum((phi_dot[1:] + phi_dot[:-1]) / 2.0 / rate_true)])
    psi_dot = runner.heading_rate(t)
    psi = runner.heading0 + np.concatenate([[0.0], np.cumsum((psi_dot[1:] + psi_dot[:-1]) / 2.0 / rate_true)])

    h = H_DIFF
    ang = runner.angles(t, phi)
    ang_m = runner.angles(t - h, phi - h * phi_dot)
    ang_p = runner.angles(t + h, phi + h * phi_dot)
    w_stand, w_walk, w_run = runner.weights(t)
    speed, _ = runner.speed(t)

    truth: dict[str, np.ndarray] = {"t": t}
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for seg in segments:
        yaw_rel, pitch, roll = (a * DEG for a in ang[seg])
        rates = np.stack([(pv - mv) * DEG / (2 * h) for pv, mv in zip(ang_p[seg], ang_m[seg], strict=True)], axis=1)
        rates[:, 0] += psi_dot
        yaw = psi + yaw_rel
        omega = _euler_rates_to_body(yaw, pitch, roll, rates)
        r_wb = Rotation.from_euler("ZYX", np.stack([yaw, pitch, roll], axis=1))
        a_path = runner.accel_path(t, phi, cad, seg == "trunk")
        cp, sp = np.cos(psi), np.sin(psi)
        f_world = np.stack(
            [cp * a_path[:, 0] - sp * a_path[:, 1], sp * a_path[:, 0] + cp * a_path[:, 1], a_path[:, 2] + G], axis=1
        )
        acc = mount[seg].apply(r_wb.inv().apply(f_world))
        gyr = mount[seg].apply(omega)
        if p.restrap and runner.recal is not None:
            acc, gyr = _restrapped(t, r_wb.inv().apply(f_world), omega, mount[seg], mount_after[seg], runner.recal)
        raw[seg] = (acc, gyr)
        # Truth in the vector forms of docs/frames-and-signs.md (the body is level at the neutral).
        tilt = np.degrees(pitch)  # asin(-x_b·Z) for |pitch| < 90°
        if seg == "pelvis":
            truth["pelvic_tilt_deg"] = tilt
            truth["pelvic_obliquity_deg"] = np.degrees(np.arcsin(np.cos(pitch) * np.sin(roll)))
            truth["pelvic_rotation_deg"] = (np.degrees(yaw_rel) + 180.0) % 360.0 - 180.0
        else:
            truth["trunk_lean_deg"] = tilt
    if p.trunk:
        truth["stack_deg"] = truth["trunk_lean_deg"] - truth["pelvic_tilt_deg"]
    if runner.speed_changes is not None:
        speed = speed + runner.speed_changes.velocity(t, runner.run_gate(t)[0], False)
    truth["speed_m_s"] = speed
    truth["cadence_spm"] = np.where(w_stand < 0.5, cad, 0.0)
    truth["mode"] = np.argmax(np.stack([w_stand, w_walk, w_run]), axis=0).astype(float)

    # Foot strikes at phi = kπ (even k: left) while the runner is moving.
    k = np.floor(phi / np.pi)
    idx = np.nonzero(np.diff(k) > 0)[0]
    t_strike = t[idx] + (k[idx + 1] * np.pi - phi[idx]) / (phi[idx + 1] - phi[idx]) / rate_true
    ws, _, wr = runner.weights(t_strike)
    moving = ws < 0.5
    t_strike, side_even, wr = t_strike[moving], (k[idx + 1][moving] % 2 == 0), wr[moving]
    contact = np.where(wr >= 0.5, runner.contact_time(t_strike), 0.62 * 120.0 / runner.cadence(t_strike))
    sides = ["L" if even else "R" for even in side_even]

    # Sensor errors, per segment, in a fixed order.
    devices: dict[str, Device | None] = {}
    meas: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for seg in segments:
        a, g, devices[seg] = _sensor(rng, t, *raw[seg], p.sensor_errors, p.quantise)
        meas[seg] = (a, g)

    # Gaps and dropped samples, on true time.
    keep = np.ones(n, bool)
    gaps: list[tuple[float, float]] = []
    dropouts: list[tuple[float, float]] = []
    if p.gaps:
        drop = rng.random(n) < 0.001
        drop[1:] &= ~drop[:-1]  # isolated only: two in a row would be a (tiny) gap
        drop[[0, -1]] = False
        keep &= ~drop
        allowed = [(runner.accel_end + 5.0, runner.end_decel - 2.0)]
        if runner.stop is not None:
            allowed = [(allowed[0][0], runner.stop[0] - 2.0), (runner.stop[1] + 5.0, allowed[0][1])]
        if runner.recal is not None:
            r = runner.recal
            allowed = [(allowed[0][0], r["t_stop"] - 2.0), (r["run_start"] + 5.0, allowed[0][1])]
        lengths = list(rng.uniform(0.3, 1.2, int(np.floor(p.minutes / 10.0 * rng.integers(1, 3) + rng.random()))))
        if p.minutes >= 6:
            lengths.append(float(rng.uniform(2.5, 3.5)))
        taken: list[tuple[float, float]] = []
        for length in lengths:
            start = _free_spot(rng, float(length), allowed, taken, 5.0)
            if start is not None:
                taken.append((start, start + float(length)))
        gaps = sorted(taken)
        keep &= ~_intervals_mask(t, gaps)
        if p.trunk:
            count = int(np.floor(p.minutes / 10.0 * rng.integers(2, 4) + rng.random()))
            for length in rng.uniform(0.5, 3.0, count):
                start = _free_spot(rng, float(length), allowed, taken, 5.0)
                if start is not None:
                    taken.append((start, start + float(length)))
                    dropouts.append((start, start + float(length)))
            dropouts.sort()

    # Recorded timestamps: true instants plus jitter, on a microsecond clock, strictly increasing.
    jitter = rng.normal(0.0, 0.03 / rate_true, n) if p.sensor_errors else np.zeros(n)
    if not p.timing_errors:
        jitter = np.zeros(n)
    us = np.round((t + jitter) * 1e6).astype(np.int64)[keep]
    ramp = np.arange(len(us), dtype=np.int64)
    t_rec = (np.maximum.accumulate(us - ramp) + ramp) / 1e6

    acc, gyr = meas["pelvis"]
    if p.trunk:
        valid = ~_intervals_mask(t, dropouts)[keep]
        t_acc, t_gyr = (x[keep].copy() for x in meas["trunk"])
        t_acc[~valid] = np.nan
        t_gyr[~valid] = np.nan
        block = Block(t_rec, acc[keep], gyr[keep], t_acc, t_gyr, valid)
    else:
        block = Block(t_rec, acc[keep], gyr[keep])
    truth = {key: np.asarray(val, float)[keep] for key, val in truth.items()}

    kept_t = t[keep]

    def on_record(a: float, b: float) -> dict[str, float]:
        i0 = max(int(np.searchsorted(kept_t, a)) - 1, 0)
        i1 = min(int(np.searchsorted(kept_t, b)), len(kept_t) - 1)
        return {"t_start": round(float(t_rec[i0]), 6), "t_end": round(float(t_rec[i1]), 6)}

    s2, rs, te = runner.t_still2, runner.run_start, runner.end_decel
    running, steady = [[rs + 2.0]], [[runner.accel_end]]
    if runner.stop is not None:
        ts = runner.stop[0]
        running[-1].append(ts + 1.5)
        running.append([ts + 27.0])
        steady[-1].append(ts)
        steady.append([ts + 29.0])
    if runner.recal is not None:
        tr, back = runner.recal["t_stop"], runner.recal["run_start"]
        running[-1].append(tr + 1.5)
        running.append([back + 2.0])
        steady[-1].append(tr)
        steady.append([back + 4.0])
    running[-1].append(te + 1.5)
    steady[-1].append(te)
    info: dict[str, Any] = {
        "rate_nominal_hz": p.rate_hz,
        "rate_true_hz": rate_true,
        "seed": p.seed,
        "params": asdict(p),
        "duration_s": runner.duration,
        "mounting": {seg: {"q_body_from_sensor_wxyz": _wxyz(mount[seg].inv())} for seg in segments},
        "gyro_bias_rad_s": {
            seg: [0.0, 0.0, 0.0] if d is None else [float(x) for x in d.gyro_bias_rad_s] for seg, d in devices.items()
        },
        # each sensor's own errors: `simulate --tumble` holds the same sensors still in six attitudes
        "devices": {seg: None if d is None else d.to_dict() for seg, d in devices.items()},
        "hinge_deg": {"pelvis": runner.hinge_deg, "trunk": runner.hinge_trunk_deg},
        "phases": {
            "still1": [0.0, runner.t_still1],
            "hinge": list(runner.hinge),
            "still2": [runner.hinge[1], s2],
            "walk_start": [s2, rs],
            "running": running,
            "steady_running": steady,
            "walk_down": [te, runner.duration],
        },
        "foot_strikes": [[round(float(a), 5), s] for a, s in zip(t_strike, sides, strict=True)],
        "contact_times_s": [
            [round(float(a), 5), s, round(float(c), 4)] for a, s, c in zip(t_strike, sides, contact, strict=True)
        ],
        "episodes": [
            {key: (round(float(v), 4) if isinstance(v, float) else v) for key, v in e.items()} for e in runner.episodes
        ],
        "gaps": [on_record(a, b) for a, b in gaps],
        "trunk_dropouts": [on_record(a, b) for a, b in dropouts],
        "stop": list(runner.stop) if runner.stop else None,
        **(
            {
                "recalibration": runner.recal,
                "mounting_after": {seg: {"q_body_from_sensor_wxyz": _wxyz(mount_after[seg].inv())} for seg in segments},
            }
            if runner.recal is not None
            else {}
        ),
        **(
            {
                "speed_changes": {
                    "fwd_rms_m_s2": p.speed_change_rms_m_s2,
                    "up_rms_m_s2": p.speed_change_up_rms_m_s2,
                    "trunk_corr": p.speed_change_corr,
                    "drift_m_s": p.speed_drift_m_s,
                    "note": "speed_m_s includes the sacrum's forward speed change",
                }
            }
            if runner.speed_changes is not None
            else {}
        ),
        "turns": [[x["t0"], x["t1"], x["radius"]] for x in runner.turns],
        "turn_directions": ["L" if x["sign"] > 0 else "R" for x in runner.turns],
        "baseline_deg": {
            "tilt": runner.tilt0,
            "lean": runner.lean0,
            "obliquity": runner.obl0,
            "drop_left": runner.drop_left0,
            "drop_right": runner.drop_right0,
        },
        "dlpf_hz": runner.dlpf_hz,
        "timestamps": "truth t = true sample instants; block t = those plus jitter (same rows)",
    }
    meta = {"sensor": "simulated", "rate": f"{p.rate_hz:g}", "runner": "sim", "seed": str(p.seed)}
    return SimRun(block=block, meta=meta, truth=truth, info=info)


# --------------------------------------------------------------------------- tumble

#: the box's faces turned up in a tumble (box axes), then two oblique attitudes for redundancy
TUMBLE_FACES = ((0, 0, 1), (0, 0, -1), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (1, 1, 1), (-1, 1, -1))


def simulate_tumble(
    devices: dict[str, Device | None], rate_hz: float = 200.0, seed: int = 0, hold_s: float = 4.0, move_s: float = 2.0
) -> SimRun:
    """The same sensors taped to a box and set down by hand on each face in turn (``TUMBLE_FACES``).

    What a runner does once per sensor for ``stackcue accel-cal`` (docs/calibration.md): each face held
    ``hold_s``, turned and lifted over ``move_s`` between faces. Each face sits up to 3° off level (a hand
    on a table); the trunk sensor is taped a quarter turn about z from the pelvis one, 2° off square. An
    ideal sensor (a ``None`` device) reads the motion as it is. ``info["devices"]`` is the truth.
    """
    rng = np.random.default_rng([seed, 7])
    up = np.array([0.0, 0.0, 1.0])
    poses = []
    for face in TUMBLE_FACES:
        f = np.asarray(face, float) / np.linalg.norm(face)
        r = Rotation.align_vectors([up], [f])[0]  # world <- box: the face's normal up
        yaw = Rotation.from_rotvec(up * rng.uniform(-np.pi, np.pi))
        tilt_axis = np.r_[rng.normal(size=2), 0.0]
        off_level = Rotation.from_rotvec(tilt_axis / np.linalg.norm(tilt_axis) * np.radians(rng.uniform(0.0, 3.0)))
        poses.append(off_level * yaw * r)
    n_hold, n_move = round(hold_s * rate_hz), round(move_s * rate_hz)
    rots, omegas, lifts = [], [], []
    for k, pose in enumerate(poses):
        rots.append(pose.as_quat()[None, :].repeat(n_hold, 0))
        omegas.append(np.zeros((n_hold, 3)))
        lifts.append(np.zeros(n_hold))
        if k + 1 == len(poses):
            break
        rotvec = (pose.inv() * poses[k + 1]).as_rotvec()  # in the box's axes
        tau = np.arange(n_move) / n_move
        s = tau * tau * (3 - 2 * tau)  # smooth start and stop
        ds = 6 * tau * (1 - tau) / move_s
        rots.append((pose * Rotation.from_rotvec(s[:, None] * rotvec)).as_quat())
        omegas.append(ds[:, None] * rotvec)  # the box's rate, in its own axes
        lifts.append(1.5 * np.sin(2 * np.pi * tau))  # lifted and set down again, m/s²
    world_from_box = Rotation.from_quat(np.concatenate(rots))
    omega_box = np.concatenate(omegas)
    f_world = np.zeros((len(omega_box), 3))
    f_world[:, 2] = G + np.concatenate(lifts)
    t = np.arange(len(omega_box)) / rate_hz
    mounts = {"pelvis": Rotation.identity()}
    if "trunk" in devices:
        mounts["trunk"] = Rotation.from_rotvec([0.0, 0.0, np.pi / 2]) * Rotation.from_rotvec(
            np.radians(2.0) * np.array([0.6, 0.8, 0.0])
        )
    meas = {}
    for seg, box_from_sensor in mounts.items():
        world_from_sensor = world_from_box * box_from_sensor
        acc = world_from_sensor.inv().apply(f_world)
        gyr = box_from_sensor.inv().apply(omega_box)
        device = devices[seg]
        meas[seg] = (acc, gyr) if device is None else device.measure(rng, t, acc, gyr)
    if "trunk" in meas:
        block = Block(t, *meas["pelvis"], *meas["trunk"], np.ones(len(t), bool))
    else:
        block = Block(t, *meas["pelvis"])
    meta = {"sensor": "simulated", "rate": f"{rate_hz:g}", "runner": "sim", "seed": str(seed), "tumble": "box"}
    info = {
        "kind": "tumble",
        "faces": [list(f) for f in TUMBLE_FACES],
        "hold_s": hold_s,
        "move_s": move_s,
        "devices": {seg: None if d is None else d.to_dict() for seg, d in devices.items()},
    }
    return SimRun(block=block, meta=meta, truth={"t": t}, info=info)


def devices_of(params: SimParams) -> dict[str, Device | None]:
    """The sensors a run with ``params`` wears (drawn as that run draws them: the run is simulated)."""
    info = simulate(params).info
    return {seg: None if d is None else Device.from_dict(d) for seg, d in info["devices"].items()}


# --------------------------------------------------------------------------- files


def _truth_paths(csv_path: str | Path) -> tuple[Path, Path]:
    path = Path(csv_path)
    name = path.name
    for suffix in (".truth.csv", ".truth.json"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        stem = path.stem
    return path.with_name(stem + ".truth.csv"), path.with_name(stem + ".truth.json")


def write_simulation(run: SimRun, csv_path: str | Path) -> tuple[Path, Path]:
    """Write the recording CSV and, beside it, ``<stem>.truth.csv`` and ``<stem>.truth.json``."""
    write_recording(csv_path, run.block, run.meta)
    truth_csv, truth_json = _truth_paths(csv_path)
    columns = [c for c in TRUTH_COLUMNS if c in run.truth]
    data = np.column_stack([run.truth[c] for c in columns])
    fmt = [_TRUTH_FMT.get(c, "%.4f") for c in columns]
    np.savetxt(truth_csv, data, fmt=fmt, delimiter=",", header=",".join(columns), comments="")
    truth_json.write_text(json.dumps(run.info, indent=1) + "\n", encoding="utf-8")
    return truth_csv, truth_json


def load_truth(csv_path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read the truth files written beside a recording (pass the recording or a truth file)."""
    truth_csv, truth_json = _truth_paths(csv_path)
    with open(truth_csv, encoding="utf-8") as fh:
        columns = fh.readline().strip().split(",")
    data = np.loadtxt(truth_csv, delimiter=",", skiprows=1, ndmin=2)
    truth = {c: data[:, i].astype(float) for i, c in enumerate(columns)}
    return truth, json.loads(truth_json.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- source


class SimulatedSource(Source):
    """Source kind ``simulated``: simulate(SimParams(**kwargs)) and hand it out in blocks of block_s.

    Paced at real time / ``speed`` when ``speed`` is given (a live stand-in), as fast as possible
    when None. The whole run, truth included, is on ``self.run``.
    """

    def __init__(self, *, speed: float | None = None, block_s: float = 0.05, **sim_kwargs: Any) -> None:
        super().__init__()
        if block_s <= 0 or (speed is not None and speed <= 0):
            raise SourceError(f"simulated source: block_s ({block_s}) and speed ({speed}) must be > 0")
        try:
            params = SimParams(**sim_kwargs)
        except TypeError as exc:
            raise SourceError(f"simulated source: {exc}") from None
        self.run = simulate(params)
        self.has_trunk = params.trunk
        self.meta = dict(self.run.meta)
        t = self.run.block.t
        n_blocks = int(np.floor((t[-1] - t[0]) / block_s)) + 1
        self._edges = t[0] + block_s * np.arange(1, n_blocks + 1)
        self._ends = np.searchsorted(t, self._edges, side="left")
        self._ends[-1] = len(t)
        self._k = 0
        self._row = 0
        self._speed = speed
        self._wall0: float | None = None

    def _read_block(self) -> Block | None:
        if self._k >= len(self._ends):
            return None
        if self._speed is not None:
            now = time.monotonic()
            if self._wall0 is None:
                self._wall0 = now
            due = self._wall0 + (self._edges[self._k] - self.run.block.t[0]) / self._speed
            if due > now:
                time.sleep(due - now)
        end = int(self._ends[self._k])
        block = self.run.block.slice(self._row, end)
        self._row, self._k = end, self._k + 1
        return block
