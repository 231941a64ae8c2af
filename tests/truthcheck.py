"""Compare pipeline events against the simulator's truth channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stackcue.dsp.drift import KINDS


def window_mean(t: np.ndarray, x: np.ndarray, a: float, b: float) -> float:
    """Time-weighted mean of x over [a, b]."""
    i0, i1 = np.searchsorted(t, a), np.searchsorted(t, b, side="right")
    tt, xx = t[i0:i1], x[i0:i1]
    if len(tt) < 3:
        return float("nan")
    return float(np.trapezoid(xx, tt) / (tt[-1] - tt[0]))


def stride_truth(truth: dict, stride: dict) -> dict:
    """Stride-mean truth over the window the pipeline reported."""
    t = truth["t"]
    out = {"pelvic_tilt_deg": window_mean(t, truth["pelvic_tilt_deg"], stride["t_start"], stride["t_end"])}
    if "trunk_lean_deg" in truth:
        out["trunk_lean_deg"] = window_mean(t, truth["trunk_lean_deg"], stride["t_start"], stride["t_end"])
        out["stack_deg"] = out["trunk_lean_deg"] - out["pelvic_tilt_deg"]
    return out


def true_cadence(info: dict, stride: dict) -> float:
    """Steps a minute over the two true steps that start inside the stride's window."""
    strikes = np.array([s[0] for s in info["foot_strikes"]])
    k = int(np.searchsorted(strikes, stride["t_start"]))
    return 120.0 / float(strikes[k + 2] - strikes[k])


def rmse(a: list[float], b: list[float]) -> float:
    d = np.asarray(a) - np.asarray(b)
    return float(np.sqrt(np.nanmean(d**2)))


@dataclass
class Episode:
    kind: str
    t_cross: float  # stride-mean truth first beyond the threshold
    t_back: float  # stride-mean truth first back inside


def true_strides(truth: dict, info: dict) -> list[dict]:
    """Strides from the truth's foot strikes (same foot to same foot) while running, with stride means."""
    t = truth["t"]
    strikes = info["foot_strikes"]
    mode = truth["mode"]
    out = []
    for k in range(0, len(strikes) - 2, 2):
        a, b, c = strikes[k][0], strikes[k + 1][0], strikes[k + 2][0]
        i0, i1 = np.searchsorted(t, a), np.searchsorted(t, c)
        if i1 - i0 < 5 or not np.all(mode[i0:i1] == 2):
            continue
        s = {"t_start": a, "t_end": c, "pelvic_tilt_deg": window_mean(t, truth["pelvic_tilt_deg"], a, c)}
        obl = truth["pelvic_obliquity_deg"]
        drops = []
        for (ta, side), tb in ((strikes[k], b), (strikes[k + 1], c)):
            j0, j1 = np.searchsorted(t, ta), np.searchsorted(t, tb)
            seg = obl[j0:j1]
            if len(seg) < 3:
                break
            drops.append(float(seg.max() if side == "L" else -seg.min()))
        if len(drops) < 2:
            continue
        s["pelvic_drop_deg"] = max(drops)
        if "trunk_lean_deg" in truth:
            s["trunk_lean_deg"] = window_mean(t, truth["trunk_lean_deg"], a, c)
            s["stack_deg"] = s["trunk_lean_deg"] - s["pelvic_tilt_deg"]
        out.append(s)
    return out


def expected_episodes(strides: list[dict], kind: str, threshold: float, margin: float) -> list[Episode]:
    """Stretches where the stride-mean truth goes past threshold+margin (clearly a drift)."""
    fld, sign = KINDS[kind]
    eps: list[Episode] = []
    inside = True
    t_cross = 0.0
    peak = 0.0
    for s in strides:
        v = s.get(fld)
        if v is None or not np.isfinite(v):
            continue
        beyond = sign * (v - sign * threshold) > 0
        if inside and beyond:
            inside, t_cross, peak = False, s["t_end"], sign * v
        elif not inside:
            peak = max(peak, sign * v)
            if not beyond:
                inside = True
                if peak > threshold + margin:
                    eps.append(Episode(kind, t_cross, s["t_end"]))
    return eps


def ambiguous_spans(strides: list[dict], kind: str, threshold: float, margin: float) -> list[tuple[float, float]]:
    """Where the truth is within the margin of the threshold: an alert there is neither required nor wrong."""
    fld, sign = KINDS[kind]
    spans = []
    for s in strides:
        v = s.get(fld)
        if v is not None and np.isfinite(v) and sign * v > threshold - margin:
            spans.append((s["t_start"], s["t_end"]))
    return spans


# --------------------------------------------------------------------------- per-stance and range truth


def stance_truth(truth: dict, info: dict, stride: dict) -> dict[str, tuple[float, float]] | None:
    """Per side, (contact time s, peak drop deg) of the true stances whose strikes fall in the stride's window.

    A stance runs from its strike to the next strike; its drop is the peak obliquity during a left
    stance (left side up, right side dropping) and the peak of −obliquity during a right stance.
    None unless the window holds exactly one left and one right strike.
    """
    ct = info["contact_times_s"]
    strikes = np.array([c[0] for c in ct])
    k0, k1 = np.searchsorted(strikes, [stride["t_start"], stride["t_end"]])
    if k1 - k0 != 2 or k1 >= len(ct):
        return None
    t, obl = truth["t"], truth["pelvic_obliquity_deg"]
    out = {}
    for k in (k0, k0 + 1):
        ta, side, dur = ct[k]
        j0, j1 = np.searchsorted(t, [ta, ct[k + 1][0]])
        seg = obl[j0:j1]
        if len(seg) < 3:
            return None
        out[side] = (float(dur), float(seg.max() if side == "L" else -seg.min()))
    return out if set(out) == {"L", "R"} else None


def window_range(t: np.ndarray, x: np.ndarray, a: float, b: float, detrend: bool = False) -> float:
    """max − min of x over [a, b]; with ``detrend`` after removing a least-squares line in time."""
    i0, i1 = np.searchsorted(t, a), np.searchsorted(t, b, side="right")
    tt, xx = t[i0:i1] - a, x[i0:i1]
    if len(tt) < 3:
        return float("nan")
    if detrend:
        xx = xx - np.polyval(np.polyfit(tt, xx, 1), tt)
    return float(xx.max() - xx.min())
