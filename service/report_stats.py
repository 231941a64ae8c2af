"""The report's statistics over one session's stride columns.

Where the pipeline already has a figure the report takes it: the summary's stride statistics and time in alert
when the session has a summary, and the pipeline's own functions (``describe``, ``time_in_alert``) when it has
not (a session cut off before its summary), so the two agree by construction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from stackcue.dsp import drift
from stackcue.dsp.stats import describe

from .report_data import Period, Run, num

if TYPE_CHECKING:
    import numpy as np

WINDOW_MAX_S = 600.0  # compare at most the first and the last 10 min of steady running
WINDOW_MIN_TOTAL_S = 360.0  # below 6 min of steady running there is nothing to compare


def mean(x: np.ndarray) -> float:
    """Mean of the finite values; NaN when there are none."""
    st = describe(x)
    return st["mean"] if st else math.nan


def stat(x: np.ndarray) -> dict[str, float] | None:
    """mean, sd, p10, p90 of the finite values, as the pipeline's summary has them (unrounded)."""
    return describe(x)


def summary_stat(run: Run, field: str, short: str) -> dict[str, float] | None:
    """A stride figure's statistics over steady strides: the summary's when stored, else computed alike."""
    summ = run.summary or {}
    return summ[field] if isinstance(summ.get(field), dict) else stat(run.col[short][run.steady])


def running_s(run: Run) -> float:
    """Seconds of running (strides' durations): the summary's figure, else the strides'."""
    import numpy as np

    return (run.summary or {}).get("running_s") or float(np.nansum(run.col["t_end"] - run.col["t_start"]))


def cues(run: Run) -> dict[str, Any]:
    """The cues the runner was given (issue 17): how many, per 10 minutes of running, the alerts not cued by
    reason (``dsp.cue_policy``) and the fading stage the session ran in (``dsp.fading``).

    From the stored alerts' ``cue`` marks (an alert without one, from before the cue policy, was cued). The
    stage: the one stored with the session, else its summary's, else 1 (a session before faded feedback).
    Per km needs a distance, and no source measures one yet (``distance_m`` is empty): ``per_km`` is then None.
    """
    from stackcue.dsp.cue_policy import SKIP_REASONS
    from stackcue.dsp.fading import STAGES

    given = sum(1 for a in run.alerts if a.get("cue") is not False)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for a in run.alerts:
        if a.get("cue") is False:
            why = a.get("cue_skipped") if a.get("cue_skipped") in skipped else "other"
            skipped[why] = skipped.get(why, 0) + 1
    summ = (run.summary or {}).get("cues") if isinstance((run.summary or {}).get("cues"), dict) else {}
    plan = run.cue_plan or {}
    stage = plan.get("stage", summ.get("stage"))
    known = stage in STAGES
    run_s = running_s(run)
    distance = run.session.get("distance_m")
    return {
        "given": given,
        "not_cued": sum(skipped.values()),
        "skipped": {k: v for k, v in skipped.items() if v},
        "per_10min": 600.0 * given / run_s if run_s else None,
        "per_km": 1000.0 * given / distance if isinstance(distance, int | float) and distance > 0 else None,
        "stage": stage if known else 1,
        "stage_text": STAGES[stage if known else 1],
        "stage_known": known,
        "stage_from": "stored" if plan.get("stage") in STAGES else "summary" if known else None,
        "fading": plan.get("fading", summ.get("fading")),
        "reason": plan.get("reason"),
        "max_per_10min": summ.get("max_per_10min"),
    }


def time_in_alert(run: Run) -> tuple[dict[str, float], str]:
    """Seconds in each alert state: the pipeline's own figure when the session has a summary, else the periods."""
    tia = (run.summary or {}).get("time_in_alert_s")
    if isinstance(tia, dict):
        return {k: float(v) for k, v in tia.items()}, "the pipeline's summary (from confirmation to clearing)"
    periods = [(kind, t0, t1) for kind, t0, t1, _ in run.periods]
    return (
        drift.time_in_alert(periods, run.end_t, run.thresholds, no_data(run)),
        "the alerts and clears stored (the session has no summary)",
    )


def gaps(run: Run) -> list[tuple[float, float]]:
    """The session's gaps in the data (start, end): they count as no data, not as time in alert."""
    out = []
    for e in run.events:
        if e.get("type") == "gap":
            a, b = num(e.get("t_start")), num(e.get("t_end"))
            if math.isfinite(a) and math.isfinite(b) and b > a:
                out.append((a, b))
    return out


def no_data(run: Run) -> list[tuple[float, float]]:
    """The gaps and the pauses: neither counts as time in alert."""
    return sorted(gaps(run) + run.pauses)


def paused_s(run: Run) -> float:
    """Seconds paused: the summary's figure, else the pause events'."""
    v = (run.summary or {}).get("paused_s")
    return float(v) if isinstance(v, int | float) else sum(b - a for a, b in run.pauses)


def union_s(periods: Iterable[Period], gaps: Iterable[tuple[float, float]] = ()) -> float:
    """Seconds with any alert active (overlapping periods counted once), time in ``gaps`` left out."""
    merged: list[list[float]] = []
    for _, a, b, _ in sorted(periods, key=lambda p: p[1]):
        if not merged or a > merged[-1][1]:
            merged.append([a, b])
        else:
            merged[-1][1] = max(merged[-1][1], b)
    gaps = list(gaps)
    total = 0.0
    for a, b in merged:
        total += (b - a) - sum(max(0.0, min(b, g1) - max(a, g0)) for g0, g1 in gaps)
    return total


def window_masks(run: Run) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Masks of the first and the last stretch of steady running (a third of it, at most 10 min) and its length.

    None below WINDOW_MIN_TOTAL_S of steady running: too little to compare the start with the end.
    """
    import numpy as np

    c, st = run.col, run.steady
    idx = np.nonzero(st)[0]
    dur = (c["t_end"] - c["t_start"])[idx]
    cum = np.cumsum(dur)
    if not len(idx) or cum[-1] < WINDOW_MIN_TOTAL_S:
        return None
    total = float(cum[-1])
    w = min(WINDOW_MAX_S, total / 3)
    first = np.zeros(len(st), bool)
    last = np.zeros(len(st), bool)
    first[idx[cum <= w]] = True
    last[idx[cum > total - w]] = True
    return first, last, w


def session_figures(book, s: dict, this_id: str) -> dict:
    """A session's figures for the comparison: from its summary, else from its strides (an unclean session)."""
    import numpy as np

    summ = s.get("summary") or {}
    sid = s["id"]

    def m(key: str) -> float:
        v = summ.get(key)
        return float(v["mean"]) if isinstance(v, dict) and v.get("mean") is not None else math.nan

    if summ.get("running_s") and isinstance(summ.get("cadence_spm"), dict):
        running = float(summ["running_s"])
        tilt, lean, stack, cad = m("pelvic_tilt_deg"), m("trunk_lean_deg"), m("stack_deg"), m("cadence_spm")
        alerts = int(summ.get("alerts", 0))
        tia = sum(float(v) for v in (summ.get("time_in_alert_s") or {}).values())
        n = int(summ.get("strides", 0))
    else:
        strides = list(book.strides(sid))
        steady = [x for x in strides if x.get("steady", True)]
        running = sum(num(x["t_end"]) - num(x["t_start"]) for x in strides)

        def mm(key: str) -> float:
            return mean(np.array([num(x.get(key)) for x in steady])) if steady else math.nan

        tilt, lean, stack, cad = mm("pelvic_tilt_deg"), mm("trunk_lean_deg"), mm("stack_deg"), mm("cadence_spm")
        alerts = sum(1 for a in book.alerts(sid) if not a["payload"].get("reminder"))
        tia = math.nan
        n = len(strides)
    return {
        "id": sid,
        "started_epoch": s.get("started_epoch"),
        "clock_synchronised": s.get("clock_synchronised"),
        "this": sid == this_id,
        "duration": s.get("duration_s") or summ.get("duration_s"),
        "running": running,
        "strides": n,
        "cadence": cad,
        "tilt": tilt,
        "lean": lean,
        "stack": stack,
        "alerts": alerts,
        "alerts_h": alerts / (running / 3600) if running > 0 else math.nan,
        "alert_share": tia / running if running > 0 and math.isfinite(tia) else math.nan,
        "ended": s.get("ended_how") or "open",
    }
