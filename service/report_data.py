"""The report's input: one session read from the logbook, with the stride figures as float columns.

Nothing here formats or draws; the statistics are in report_stats, the page in report_render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackcue.dsp.alert_kinds import ALERT_KINDS
from stackcue.dsp.drift import threshold
from stackcue.errors import ReportError

if TYPE_CHECKING:
    import numpy as np

#: the report's short column name -> the stride event's field
COLUMNS = {
    "t_start": "t_start",
    "t_end": "t_end",
    "cadence": "cadence_spm",
    "tilt": "pelvic_tilt_deg",
    "lean": "trunk_lean_deg",
    "stack": "stack_deg",
    "obl": "pelvic_obliquity_range_deg",
    "rot": "pelvic_rotation_range_deg",
    "drop_l": "pelvic_drop_left_deg",
    "drop_r": "pelvic_drop_right_deg",
    "ct_l": "contact_time_left_s",
    "ct_r": "contact_time_right_s",
}

#: (kind, alert t, clear t or the end, cleared)
Period = tuple[str, float, float, bool]


@dataclass
class Run:
    """One session as the report needs it: the logbook rows plus stride columns as float arrays (NaN = none)."""

    session: dict
    strides: list[dict]
    alerts: list[dict]  # the alert events (payloads), reminders included, in time order
    events: list[dict]  # every other stored event (calibration, clear, gap, reference, summary, ...)
    cfg: dict
    cfg_note: str | None
    col: dict[str, np.ndarray]
    steady: np.ndarray
    end_t: float
    periods: list[Period]
    thresholds: dict[str, float]  # signed, reference included, per enabled kind
    ref_t: float | None  # first_minutes: when the reference was set (no thresholds before); inf: never set
    reference: dict[str, float]
    trunk_note: str | None  # why there is no lean/stack, or None when there is
    cue_plan: dict | None = None  # the fading stage stored with the session (the Pi's logbook), None without

    @property
    def summary(self) -> dict | None:
        return self.session.get("summary")

    @property
    def sid(self) -> str:
        return self.session["id"]

    def calibration(self) -> dict | None:
        return self.session.get("calibration")

    @property
    def calibrations(self) -> list[dict]:
        """The accepted calibrations in time order: the run's first, then one per re-calibration (``segment``).

        The session row keeps only the latest, so they come from the stored events.
        """
        return sorted(
            (e for e in self.events if e.get("type") == "calibration" and e.get("ok")), key=lambda e: num(e.get("t"))
        )

    @property
    def recalibrations(self) -> list[dict]:
        """The calibrations that changed the one in use mid-run (every accepted one after the first)."""
        return self.calibrations[1:]

    @property
    def pauses(self) -> list[tuple[float, float]]:
        """The run's pauses (start, end); one never resumed lasts to the end. Paused time is no data."""
        return pauses(self.events, self.end_t)

    @property
    def thresholds_set(self) -> bool:
        """False when a first-minutes reference was never set, so no posture alert could fire."""
        return self.ref_t != math.inf


def num(x: Any) -> float:
    """A stored figure as a float; NaN for None, a string or a bool."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def resolve(book, session_id: str) -> dict:
    """The session row for an id, a unique prefix or ``latest``; one-line errors naming the logbook."""
    from .session_store import find_session

    return find_session(book, session_id)


def load_run(book, session: dict) -> Run:
    import numpy as np

    sid = session["id"]
    strides = book.strides(sid)
    if not strides:
        cal = session.get("calibration") or {}
        why = (
            f": the calibration was refused ({cal.get('reason')})"
            if cal and not cal.get("ok")
            else ": it never calibrated"
            if not cal
            else ": no running was detected"
        )
        raise ReportError(f"session {sid} has no strides, nothing to report{why}")
    alerts = sorted((a["payload"] for a in book.alerts(sid)), key=lambda e: (num(e.get("t")), e.get("id") or 0))
    events = book.events(sid)
    cfg, cfg_note = session.get("config"), None
    if not isinstance(cfg, dict) or "alerts" not in cfg:
        from .config import load_config

        cfg, cfg_note = load_config().data, "the session stored no configuration: the defaults are shown"
    col = {k: np.array([num(s.get(f)) for s in strides]) for k, f in COLUMNS.items()}
    steady = np.array([bool(s.get("steady", True)) for s in strides])
    times = [col["t_end"].max()] + [num(e.get("t", e.get("t_end"))) for e in events if e.get("type") != "summary"]
    times += [num(a.get("t")) for a in alerts]
    end_t = float(np.nanmax(times))
    summ = session.get("summary") or {}
    if summ.get("duration_s") and col["t_start"][0] <= summ["duration_s"]:  # the summary knows the last sample
        end_t = max(end_t, float(summ["duration_s"]))
    clears = [e for e in events if e.get("type") == "clear"]
    periods = alert_periods(alerts, clears, end_t)
    reference, ref_t = _reference(cfg, events)
    al = cfg["alerts"]
    thresholds = {
        kind: threshold(kind, al[f"{kind}_deg"], reference)
        for kind in al.get("enabled", ALERT_KINDS)
        if kind in ALERT_KINDS
    }
    return Run(
        session,
        strides,
        alerts,
        events,
        cfg,
        cfg_note,
        col,
        steady,
        end_t,
        periods,
        thresholds,
        ref_t,
        reference,
        _trunk_note(session, col),
        cue_plan=_cue_plan(book, sid),
    )


def _cue_plan(book, sid: str) -> dict | None:
    """The session's stored fading decision (``Logbook.cue_plan``); the hub's book has none (its summary's
    ``cues`` says the stage)."""
    read = getattr(book, "cue_plan", None)
    return read(sid) if callable(read) else None


def pauses(events: list[dict], end_t: float) -> list[tuple[float, float]]:
    """(start, end) of each pause from the ``pause`` events (paused, then resumed)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for e in sorted((e for e in events if e.get("type") == "pause"), key=lambda e: num(e.get("t"))):
        t = num(e.get("t"))
        if not math.isfinite(t):
            continue
        if e.get("state") == "paused" and start is None:
            start = t
        elif e.get("state") == "resumed" and start is not None:
            out.append((start, max(t, start)))
            start = None
    if start is not None:
        out.append((start, max(end_t, start)))
    return out


def _trunk_note(session: dict, col: dict[str, np.ndarray]) -> str | None:
    import numpy as np

    if np.isfinite(col["lean"]).any():
        return None
    cal = session.get("calibration") or {}
    if cal.get("trunk_reason"):
        return f"trunk sensor not calibrated: {cal['trunk_reason']}"
    if "trunk" in (cal.get("segments") or {}):
        return "the trunk sensor gave no usable strides"
    return "no trunk sensor"


def alert_periods(alerts: list[dict], clears: list[dict], end_t: float) -> list[Period]:
    """Alert periods per kind, from an alert to its clear (reminders extend nothing); an open one lasts to the end.

    From the stored alerts and clears, not the detector's own periods: those are not stored, and a period that
    raised no alert (within the quiet time) is not what the coach saw.
    """
    out: list[Period] = []
    open_: dict[str, float] = {}
    seq = sorted(
        [(num(a["t"]), 1, a) for a in alerts] + [(num(c["t"]), 0, c) for c in clears], key=lambda x: (x[0], x[1])
    )
    for t, is_alert, e in seq:
        kind = e.get("kind")
        if is_alert:
            open_.setdefault(kind, t)
        elif kind in open_:
            out.append((kind, open_.pop(kind), t, True))
    out += [(k, t0, end_t, False) for k, t0 in open_.items()]
    return sorted(out, key=lambda p: p[1])


def reference_sources(cfg: dict) -> dict[str, str]:
    """Where each metric's reference came from in a stored config: ``mode``, or with ``"per_metric"`` each
    metric's own key (the declared default where a config predates it)."""
    from stackcue.dsp.params import REFERENCE_FIELDS, ReferenceParams

    ref = cfg.get("reference", {})
    mode = ref.get("mode", "neutral")
    default = ReferenceParams()
    if mode != "per_metric":
        return dict.fromkeys(REFERENCE_FIELDS, mode)
    return {k: str(ref.get(k.removesuffix("_deg"), default.source(k))) for k in REFERENCE_FIELDS}


def _reference(cfg: dict, events: list[dict]) -> tuple[dict[str, float], float | None]:
    """The reference the thresholds were measured from, and when it was set (first_minutes only)."""
    ref = cfg.get("reference", {})
    mode = ref.get("mode", "neutral")
    if mode == "per_metric":  # each metric its own; the time is the baseline's when a metric waits for it
        sources = reference_sources(cfg)
        out = {k: float(ref.get(k, 0.0)) for k, src in sources.items() if src == "targets"}
        if "first_minutes" not in sources.values():
            return out, None
        ev = next((e for e in events if e.get("type") == "reference" and e.get("set") == "first_minutes"), None)
        if ev is None:
            return out, math.inf
        out.update({k: float(ev[k]) for k, src in sources.items() if src == "first_minutes" and ev.get(k) is not None})
        return out, float(ev["t"])
    if mode == "targets":
        return {k: float(ref.get(k, 0.0)) for k in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg")}, None
    if mode == "first_minutes":  # the baseline's event (a run's first reference event said so before "set")
        ev = next(
            (e for e in events if e.get("type") == "reference" and e.get("set", "first_minutes") == "first_minutes"),
            None,
        )
        if ev is None:
            return {}, math.inf  # never set: no alert could fire
        return {
            k: float(ev[k]) for k in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg") if ev.get(k) is not None
        }, float(ev["t"])
    return {}, None
