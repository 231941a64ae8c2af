"""The report page: each section's figures gathered here, its markup in a Jinja2 template (autoescaped).

Strings from the logbook (runner, notes, reasons, file names) reach the page only through the templates, which
escape them; the only markup passed through unescaped is matplotlib's SVG (see report_plots.Plotter.svg).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from stackcue.dsp.alert_kinds import ALERT_KINDS, GENERIC_COLOUR, label
from stackcue.errors import ReportError

from . import report_stats as stats
from .output_files import write_output
from .report_data import COLUMNS, Run, load_run, num, reference_sources, resolve
from .report_plots import Plotter, compare_figure, hist_figure, time_figure
from .report_text import clock, recalibration_line, trunk_missing_line
from .report_units import Units
from .wallclock import known_start

#: A change between the start and the end of the run is called out only past these (see _what_changed).
CHANGE_MIN_DEG = 1.0
CHANGE_MIN_SPM = 3.0
CHANGE_MIN_CONTACT_S = 0.010
TABLE_MAX_ROWS = 45  # the per-minute table widens its bins (1, 2, 5, 10 min) to stay under this
DEG = "°"
NO_DATA = "—"


# ---------------------------------------------------------------------------------------------- formatting


def fmt(x: float | None, spec: str = "+.1f", unit: str = "") -> str:
    """A number for the page: ``spec`` then ``unit``; a dash for none; never "-0.0"."""
    if x is None or not math.isfinite(x):
        return NO_DATA
    digits = re.search(r"\.(\d+)f", spec)
    if abs(x) < 0.5 * 10.0 ** -(int(digits.group(1)) if digits else 0):
        x = 0.0
    return f"{x:{spec}}{unit}"


def hms(seconds: float) -> str:
    """Whole seconds on the session clock: m:ss, or h:mm:ss."""
    s = round(max(seconds, 0.0))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def when(epoch: float | None) -> str:
    """The start as a reader expects it, in the local time zone with its offset."""
    epoch = known_start(epoch)  # none, or out of range (a clock that was not set): no date to show
    if epoch is None:
        return "unknown"
    d = dt.datetime.fromtimestamp(epoch).astimezone()
    off = d.strftime("%z")
    return f"{d:%a %d %b %Y, %H:%M} (UTC{off[:3]}:{off[3:]})"


def day(epoch: float | None) -> str:
    epoch = known_start(epoch)
    return "unknown" if epoch is None else f"{dt.datetime.fromtimestamp(epoch).astimezone():%d %b %Y %H:%M}"


@functools.cache
def environment() -> jinja2.Environment:
    """The templates shipped in stackcue/service/templates/report, autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stackcue.service", "templates/report"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=fmt, hms=hms, clock=clock, when=when)
    env.globals.update(
        kind_label=label,
        kind_colour=lambda k: getattr(ALERT_KINDS.get(k), "colour", GENERIC_COLOUR),
        DEG=DEG,
        NO_DATA=NO_DATA,
    )
    return env


# ---------------------------------------------------------------------------------------------- overview


def _overview(run: Run) -> dict[str, Any]:
    s, summ = run.session, run.summary or {}
    origin = {"live": "live run", "analyze": "recording analysed afterwards", "import": "imported"}.get(
        s.get("origin") or "", s.get("origin") or ""
    )
    src_text = _source_text(s.get("source"))
    return {
        "runner": s.get("runner"),
        "started_epoch": s.get("started_epoch"),
        "sync": s.get("clock_synchronised"),
        "recorded_s": run.end_t if not summ.get("duration_s") else summ["duration_s"],
        "running_s": stats.running_s(run),
        "strides": len(run.strides),
        "steady": int(run.steady.sum()),
        "distance_m": s.get("distance_m"),
        "sensors": "pelvis + trunk" if run.trunk_note is None else f"pelvis only ({run.trunk_note})",
        "source": f"{origin}; {src_text}" if origin and src_text else origin or src_text or "unknown",
        "ended_how": s.get("ended_how"),
        "ended_reason": s.get("ended_reason"),
        "ended": summ.get("ended"),
        "end_t": run.end_t,
        "calibration": _calibration_brief(run),
        "recalibrated": [recalibration_line(e) for e in run.recalibrations],
        "paused": _paused_brief(run),
        "thresholds": _thresholds_brief(run),
        "notes": s.get("notes").split("\n") if s.get("notes") else [],  # `stackcue note --append` adds lines
        "glance": _glance(run),
    }


def _source_text(src: Any) -> str:
    """The source's metadata in a few words (the file's name, not its whole path)."""
    if not isinstance(src, dict):
        return "" if src is None else str(src)
    parts = []
    for k, v in src.items():
        if k in ("kind", "runner", "clock_synchronised", "started_utc"):
            continue
        if k == "path":
            parts.append(f"file {Path(str(v)).name}")
        elif k == "rate":
            parts.append(f"{v} Hz")
        elif k == "sensor":
            parts.append(str(v))
        else:
            parts.append(f"{k.replace('_', ' ')} {v}")
    return ", ".join(parts)


def _paused_brief(run: Run) -> str | None:
    """The pauses in a line ("2 pauses, 1:05 in all (at 12:31, 40:02), not analysed"); None if never paused."""
    pauses = run.pauses
    if not pauses:
        return None
    n = len(pauses)
    at = ", ".join(hms(a) for a, _ in pauses[:6]) + (", …" if n > 6 else "")
    return f"{n} pause{'s' if n > 1 else ''}, {hms(stats.paused_s(run))} in all (at {at}), not analysed"


def _first_calibration(run: Run) -> dict:
    """The run's first accepted calibration (the session row keeps the latest), else what the session has."""
    cals = run.calibrations
    cal = cals[0] if cals else run.calibration()
    return cal if isinstance(cal, dict) else {}


def _calibration_brief(run: Run) -> str:
    cal = _first_calibration(run)
    if not cal.get("ok"):
        return "none accepted" + (f": {cal['reason']}" if cal.get("reason") else "")
    segs = []
    segments = cal.get("segments")
    for seg, d in (segments if isinstance(segments, dict) else {}).items():
        if not isinstance(d, dict):  # a damaged stored calibration: name the segment, show no figure
            segs.append(str(seg))
            continue
        hinge = num(d.get("hinge_deg"))
        segs.append(
            f"{seg} hinge {hinge:.0f}{DEG} quality {num(d.get('quality')):.2f}" if math.isfinite(hinge) else seg
        )
    how = "saved calibration" if cal.get("source") == "saved" else "routine"
    return f"{how}, accepted at {clock(num(cal.get('t')))}: " + "; ".join(segs)


def _thresholds_brief(run: Run) -> str:
    if not run.thresholds_set:
        return "no reference was set: no posture alert could fire"
    th = run.thresholds
    parts = []
    for name, lo, hi in (
        ("tilt", "posterior_tilt", "anterior_tilt"),
        ("lean", None, "trunk_lean"),
        ("stack", "ribs_behind_pelvis", "ribs_ahead_of_pelvis"),
        ("drop", None, "pelvic_drop"),
    ):
        vals = [f"{th[k]:+.1f}{DEG}" for k in (lo, hi) if k in th]
        if vals:
            parts.append(f"{name} {' / '.join(vals)}")
    mode = run.cfg.get("reference", {}).get("mode", "neutral")
    how = {
        "neutral": "from the standing neutral",
        "targets": "around coach-set targets",
        "first_minutes": "around the runner's first minutes",
    }
    ref = how.get(mode, mode)
    if mode == "per_metric":
        src = reference_sources(run.cfg)
        ref = "; ".join(f"{name} {how[src[k]]}" for k, name in _REF_NAMES.items())
    return (", ".join(parts) + f" ({ref})") if parts else "all alerts off"


_REF_NAMES = {"pelvic_tilt_deg": "tilt", "trunk_lean_deg": "lean", "stack_deg": "stack"}


def _glance(run: Run) -> list[dict[str, str]]:
    """Rows of the at-a-glance table: name, mean, sd, 10–90 % range (text), or name and a note."""
    import numpy as np

    c, st = run.col, run.steady
    short_of = {v: k for k, v in COLUMNS.items()}
    rows = []
    for field, name, unit, signed in (
        ("cadence_spm", "Cadence", " spm", False),
        ("pelvic_tilt_deg", "Pelvic tilt", DEG, True),
        ("trunk_lean_deg", "Trunk lean", DEG, True),
        ("stack_deg", "Stack angle", DEG, True),
        ("pelvic_obliquity_range_deg", "Obliquity range", DEG, False),
        ("pelvic_rotation_range_deg", "Rotation range", DEG, False),
    ):
        short = short_of[field]
        stt = stats.summary_stat(run, field, short)
        f = "+.1f" if signed else ".1f"
        if not stt:
            rows.append(
                {
                    "name": name,
                    "note": run.trunk_note if short in ("lean", "stack") and run.trunk_note else "not measured",
                }
            )
            continue
        rows.append(
            {
                "name": name,
                "mean": fmt(stt["mean"], f, unit),
                "sd": fmt(stt["sd"], ".1f", unit),
                "range": f"{fmt(stt['p10'], f)} to {fmt(stt['p90'], f, unit)}",
            }
        )
    d = stats.stat(np.concatenate([c["drop_l"][st], c["drop_r"][st]]))
    if d is not None:
        dl, dr = stats.mean(c["drop_l"][st]), stats.mean(c["drop_r"][st])
        rows.append(
            {
                "name": "Pelvic drop",
                "mean": f"{fmt(dl, '.1f', DEG)} left, {fmt(dr, '.1f', DEG)} right",
                "sd": fmt(d["sd"], ".1f", DEG),
                "range": f"{fmt(d['p10'], '.1f')} to {fmt(d['p90'], '.1f', DEG)}",
            }
        )
    if np.isfinite(np.concatenate([c["ct_l"][st], c["ct_r"][st]])).any():
        rows.append(
            {
                "name": "Ground contact",
                "mean": f"{stats.mean(c['ct_l'][st]) * 1000:.0f} ms left, "
                f"{stats.mean(c['ct_r'][st]) * 1000:.0f} ms right",
                "sd": "",
                "range": "",
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- what changed


def _stack_note(run: Run, key: str, d: float, b: float) -> str:
    """For the stack angle: name the fault once the end mean is at least half-way to its alert threshold."""
    if key != "stack":
        return ""
    ref = run.reference.get("stack_deg", 0.0)
    ahead, behind = run.thresholds.get("ribs_ahead_of_pelvis"), run.thresholds.get("ribs_behind_pelvis")
    if d > 0 and ahead is not None and b - ref >= (ahead - ref) / 2:
        return ": the ribs are running ahead of the pelvis, a hunched carriage"
    if d < 0 and behind is not None and b - ref <= (behind - ref) / 2:
        return ": the ribs are falling behind the pelvis, the back arching"
    return ""


def _what_changed(run: Run) -> dict[str, Any] | None:
    """Start vs end of the steady running: table rows and a plain sentence for each change past the thresholds."""
    import numpy as np

    masks = stats.window_masks(run)
    if masks is None:
        return None
    first, last, w = masks
    c = run.col
    span = [(float(c["t_start"][m].min()), float(c["t_end"][m].max())) for m in (first, last)]
    rows: list[dict[str, Any]] = []
    said: list[str] = []
    mean = stats.mean

    def angle(key: str, name: str, up: str, down: str, what: str = "", signed: bool = True) -> None:
        """A row for one angle; a sentence when it changed by CHANGE_MIN_DEG or more. Signed angles are said
        against the standing neutral; ranges and drops (unsigned) only as before → after."""
        a, b = mean(c[key][first]), mean(c[key][last])
        if not (math.isfinite(a) and math.isfinite(b)):
            return
        d = b - a
        big = abs(d) >= CHANGE_MIN_DEG
        f = "+.1f" if signed else ".1f"
        rows.append({"name": name, "a": fmt(a, f, DEG), "b": fmt(b, f, DEG), "d": fmt(d, "+.1f", DEG), "big": big})
        if big and signed:
            toward = "closer to" if abs(b) < abs(a) else "further from"
            said.append(
                f"{up if d > 0 else down} by {abs(d):.1f}{DEG} ({what}{a:+.1f}{DEG} → {b:+.1f}{DEG}), "
                f"{toward} the standing neutral (0{DEG}){_stack_note(run, key, d, b)}."
            )
        elif big:
            said.append(f"{up if d > 0 else down}: {a:.1f}{DEG} → {b:.1f}{DEG}.")

    angle(
        "tilt",
        "Pelvic tilt",
        "The pelvis tipped further forward (more anterior tilt)",
        "The pelvis tipped back, tucking under (less anterior tilt)",
    )
    angle(
        "lean",
        "Trunk lean",
        "The trunk leaned further forward",
        "The trunk leaned back" if mean(c["lean"][last]) < 0 else "The trunk came more upright",
    )
    angle(
        "stack",
        "Stack angle",
        "The ribs moved forward relative to the pelvis",
        "The ribs moved back relative to the pelvis",
        "stack ",
    )
    a, b = mean(c["cadence"][first]), mean(c["cadence"][last])
    d = b - a
    rows.append(
        {
            "name": "Cadence",
            "a": fmt(a, ".0f", " spm"),
            "b": fmt(b, ".0f", " spm"),
            "d": fmt(d, "+.1f", " spm"),
            "big": abs(d) >= CHANGE_MIN_SPM,
        }
    )
    if abs(d) >= CHANGE_MIN_SPM:
        said.append(f"Cadence {'rose' if d > 0 else 'dropped'} by {abs(d):.1f} steps/min ({a:.1f} → {b:.1f}).")
    for key, name, up, down in (
        ("obl", "Obliquity range", "The hips rocked more from side to side", "The hips rocked less from side to side"),
        ("rot", "Rotation range", "The pelvis turned more with each stride", "The pelvis turned less with each stride"),
        (
            "drop_l",
            "Pelvic drop, left stance",
            "The hip dropped more in left stance",
            "The hip dropped less in left stance",
        ),
        (
            "drop_r",
            "Pelvic drop, right stance",
            "The hip dropped more in right stance",
            "The hip dropped less in right stance",
        ),
    ):
        angle(key, name, up, down, signed=False)
    ct_a = mean(np.concatenate([c["ct_l"][first], c["ct_r"][first]]))
    ct_b = mean(np.concatenate([c["ct_l"][last], c["ct_r"][last]]))
    if math.isfinite(ct_a) and math.isfinite(ct_b):
        d = ct_b - ct_a
        big = abs(d) >= CHANGE_MIN_CONTACT_S
        rows.append(
            {
                "name": "Ground contact",
                "a": f"{ct_a * 1000:.0f} ms",
                "b": f"{ct_b * 1000:.0f} ms",
                "d": fmt(d * 1000, "+.0f", " ms"),
                "big": big,
            }
        )
        if big:
            said.append(
                f"Ground contact got {'longer' if d > 0 else 'shorter'}: {ct_a * 1000:.0f} → {ct_b * 1000:.0f} ms."
            )
    n_a = sum(1 for e in run.alerts if not e.get("reminder") and span[0][0] <= e["t"] <= span[0][1])
    n_b = sum(1 for e in run.alerts if not e.get("reminder") and span[1][0] <= e["t"] <= span[1][1])
    rows.append({"name": "Alerts raised", "a": str(n_a), "b": str(n_b), "d": f"{n_b - n_a:+d}", "big": None})
    if n_a != n_b:
        said.append(
            f"{'More' if n_b > n_a else 'Fewer'} posture alerts late in the run: {n_a} in the first window, "
            f"{n_b} in the last."
        )
    return {"w": w, "span": span, "rows": rows, "said": said}


# ---------------------------------------------------------------------------------------------- alerts


def _alerts(run: Run) -> dict[str, Any]:
    import numpy as np

    tia, src = stats.time_in_alert(run)
    running_s = stats.running_s(run)
    kinds = []
    for kind, k in ALERT_KINDS.items():
        if kind not in run.thresholds:
            kinds.append({"kind": kind, "off": True})
            continue
        s = tia.get(kind, 0.0)
        kinds.append(
            {
                "kind": kind,
                "off": False,
                "threshold": run.thresholds[kind] if run.thresholds_set else None,
                "n": sum(1 for e in run.alerts if e.get("kind") == kind and not e.get("reminder")),
                "reminders": sum(1 for e in run.alerts if e.get("kind") == kind and e.get("reminder")),
                "seconds": s,
                "no_trunk": k.needs_trunk and run.trunk_note is not None,
                "share": 100 * s / running_s if running_s else None,
                "when": k.when,
            }
        )
    clears: dict[str, list[float]] = {}
    for e in run.events:
        if e.get("type") == "clear":
            clears.setdefault(e["kind"], []).append(float(e["t"]))
    listed = []
    for i, e in enumerate(run.alerts, 1):
        later = [t for t in clears.get(e["kind"], []) if t >= e["t"]]
        if e.get("reminder"):
            cleared, lasted = "", "reminder"
        elif later:
            cleared, lasted = clock(later[0]), clock(later[0] - e["t"])
        else:
            cleared, lasted = "not cleared", f"{clock(run.end_t - e['t'])}+"
        listed.append(
            {
                "id": e.get("id", i),
                "t": e["t"],
                "kind": e["kind"],
                "value": num(e.get("value_deg")),
                "threshold": num(e.get("threshold_deg")),
                "cleared": cleared,
                "lasted": lasted,
                "cued": "yes" if e.get("cue") is not False else f"no: {e.get('cue_skipped') or '?'}",
            }
        )
    gaps = [e for e in run.events if e.get("type") == "gap"]
    gap = None
    if gaps:
        lens = [float(g["t_end"]) - float(g["t_start"]) for g in gaps]
        i = int(np.argmax(lens))
        gap = {"n": len(gaps), "total_s": sum(lens), "longest_s": lens[i], "at": float(gaps[i]["t_start"])}
    suspects = [e for e in run.events if e.get("type") == "calibration_suspect"]
    return {
        "kinds": kinds,
        "source": src,
        "any_s": stats.union_s(run.periods, stats.no_data(run)),
        "running_s": running_s,
        "listed": listed,
        "gap": gap,
        "suspects": suspects,
        "trunk_missing": [trunk_missing_line(e, run.strides) for e in run.events if e.get("type") == "trunk_missing"],
        "no_steady": not bool(np.any(run.steady)),  # alerts come from steady strides only
        "cues": stats.cues(run),
    }


# ---------------------------------------------------------------------------------------------- per minute


def _minutes(run: Run) -> dict[str, Any]:
    """The per-minute table: bins of 1, 2, 5, 10 or 15 minutes; cells whose mean is past a threshold are marked."""
    import numpy as np

    c, st = run.col, run.steady
    mean = stats.mean
    mid = (c["t_start"] + c["t_end"]) / 2
    span = float(mid.max() - mid.min())
    bin_min = next((b for b in (1, 2, 5, 10) if span / (60 * b) <= TABLE_MAX_ROWS), 15)
    w = 60.0 * bin_min
    k = np.floor(mid / w).astype(int)
    has_trunk = run.trunk_note is None
    has_drop = bool(np.isfinite(c["drop_l"]).any() or np.isfinite(c["drop_r"]).any())
    thr = run.thresholds if run.thresholds_set else {}

    def cell(kinds: Sequence[str], v: float, text: str) -> dict[str, Any]:
        """A cell; ``over`` names the first kind whose threshold ``v`` is past."""
        over = next((kind for kind in kinds if kind in thr and ALERT_KINDS[kind].sign * (v - thr[kind]) > 0), None)
        return {"text": text, "over": over}

    rows = []
    for b in range(int(k.min()), int(k.max()) + 1):
        m = k == b
        ms = m & st
        t0, t1 = b * w, (b + 1) * w
        row: dict[str, Any] = {
            "t0": t0,
            "t1": t1,
            "raised": [e for e in run.alerts if t0 <= e["t"] < t1],
            "strides": int(m.sum()),
            "steady": int(ms.sum()),
        }
        rows.append(row)
        if not m.any():
            continue
        tilt, lean, stack = mean(c["tilt"][ms]), mean(c["lean"][ms]), mean(c["stack"][ms])
        cells = [
            {"text": fmt(mean(c["cadence"][ms]), ".0f"), "over": None},
            cell(("anterior_tilt", "posterior_tilt"), tilt, fmt(tilt)),
        ]
        if has_trunk:
            cells += [
                cell(("trunk_lean",), lean, fmt(lean)),
                cell(("ribs_behind_pelvis", "ribs_ahead_of_pelvis"), stack, fmt(stack)),
            ]
        cells += [
            {"text": fmt(mean(c["obl"][ms]), ".1f"), "over": None},
            {"text": fmt(mean(c["rot"][ms]), ".1f"), "over": None},
        ]
        if has_drop:
            dl, dr = mean(c["drop_l"][ms]), mean(c["drop_r"][ms])
            cells.append(
                cell(
                    ("pelvic_drop",),
                    max(dl, dr) if math.isfinite(dl) and math.isfinite(dr) else math.nan,
                    f"{fmt(dl, '.1f')} / {fmt(dr, '.1f')}",
                )
            )
        row["cells"] = cells
    return {
        "per": "minute" if bin_min == 1 else f"{bin_min} minutes",
        "has_trunk": has_trunk,
        "has_drop": has_drop,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------- calibration


def _calibration(run: Run) -> dict[str, Any]:
    cal = _first_calibration(run)
    al, ref = run.cfg["alerts"], run.cfg.get("reference", {})
    segments = []
    for seg, d in (cal.get("segments") or {}).items():
        hinge = num(d.get("hinge_deg"))
        segments.append(
            {
                "name": seg,
                "hinge": fmt(hinge, ".0f", DEG) if math.isfinite(hinge) else "saved",
                "quality": fmt(num(d.get("quality")), ".2f"),
            }
        )
    kinds = [
        {
            "kind": kind,
            "when": k.when,
            "setting": k.sign * float(al.get(f"{kind}_deg", math.nan)),
            "on": kind in run.thresholds,
            "threshold": run.thresholds.get(kind),
        }
        for kind, k in ALERT_KINDS.items()
    ]
    mode = ref.get("mode", "neutral")
    if mode == "targets":
        rtxt = (
            f"coach-set targets: tilt {ref.get('pelvic_tilt_deg', 0):+.1f}{DEG}, lean "
            f"{ref.get('trunk_lean_deg', 0):+.1f}{DEG}, stack {ref.get('stack_deg', 0):+.1f}{DEG}"
        )
    elif mode == "first_minutes":
        if not run.thresholds_set:
            rtxt = (
                f"the runner's own first {ref.get('first_minutes', 3):g} minutes of steady running, which this "
                "run never completed: no posture alert could fire"
            )
        else:
            vals = ", ".join(
                f"{k.split('_')[1] if k != 'stack_deg' else 'stack'} {v:+.1f}{DEG}" for k, v in run.reference.items()
            )
            rtxt = (
                f"the runner's own first {ref.get('first_minutes', 3):g} minutes of steady running ({vals}), "
                f"set at {clock(run.ref_t or 0.0)}; no alerts before"
            )
    elif mode == "per_metric":
        src = reference_sources(run.cfg)
        each = []
        for k, name in _REF_NAMES.items():
            if src[k] == "first_minutes":
                v = run.reference.get(k)
                each.append(
                    f"{name}: the runner's own first {ref.get('first_minutes', 3):g} minutes of steady running "
                    + (
                        f"({v:+.1f}{DEG}, set at {clock(run.ref_t or 0.0)}; no {name} alerts before)"
                        if v is not None
                        else "(never completed: no such alert could fire)"
                    )
                )
            elif src[k] == "targets":
                each.append(f"{name}: coach-set target {ref.get(k, 0):+.1f}{DEG}")
            else:
                each.append(f"{name}: the standing neutral (0{DEG})")
        rtxt = "; ".join(each)
    else:
        rtxt = f"the standing neutral from the calibration (0{DEG})"
    return {
        "cal": cal,
        "t": num(cal.get("t")) if cal.get("t") is not None else 0.0,
        "segments": segments,
        "refused": [
            {"t": num(e.get("t")), "reason": e.get("reason", ""), "segment": e.get("segment")}
            for e in run.events
            if e.get("type") == "calibration" and e.get("ok") is False
        ],
        "changes": [
            {
                "t": num(e.get("t")),
                "segment": e.get("segment", "?"),
                "hinge": ", ".join(
                    f"{seg} {fmt(num(d.get('hinge_deg')), '.0f', DEG)}" for seg, d in (e.get("segments") or {}).items()
                ),
                "quality": ", ".join(
                    f"{seg} {fmt(num(d.get('quality')), '.2f')}" for seg, d in (e.get("segments") or {}).items()
                ),
            }
            for e in run.recalibrations
        ],
        "pauses": [{"t0": a, "t1": b} for a, b in run.pauses],
        "kinds": kinds,
        "reference": rtxt,
        "alerts": al,
        "thresholds_set": run.thresholds_set,
        "cfg_note": run.cfg_note,
    }


# ---------------------------------------------------------------------------------------------- compare


def _compare_sessions(book, this: dict, compare: Sequence[str]) -> list[dict]:
    chosen: dict[str, dict] = {this["id"]: this}
    for c in compare:
        if c == "runner":
            for s in book.sessions(runner=this.get("runner")):
                if (s.get("started_epoch") or 0) <= (this.get("started_epoch") or 0):
                    chosen.setdefault(s["id"], s)
        else:
            s = resolve(book, c)
            chosen.setdefault(s["id"], s)
    return sorted(chosen.values(), key=lambda s: (s.get("started_epoch") or 0, s["id"]))


def _compare(book, run: Run, compare: Sequence[str], p: Plotter) -> dict[str, Any]:
    sessions = _compare_sessions(book, run.session, compare)
    rows = [stats.session_figures(book, s, run.sid) for s in sessions]
    for r in rows:
        r["label"] = day(r["started_epoch"]) + ("" if r["clock_synchronised"] == "yes" else "*")
    runners = sorted({str(s.get("runner")) for s in sessions})
    return {"rows": rows, "runners": runners, "figure": compare_figure(p, rows) if len(rows) > 1 else None}


# ---------------------------------------------------------------------------------------------- the page


def build_report(book, session_id: str, compare: Sequence[str] = (), units: str = "metric") -> str:
    """The report of one session (id, unique prefix or ``latest``) as one self-contained HTML page; lengths in
    ``units`` ("metric" or "imperial", ``[report] units``: ``report_units``).

    ``compare``: more sessions (ids or prefixes) to set beside it, or ``"runner"`` for every session of the same
    runner up to this one.
    """
    session = resolve(book, session_id)
    run = load_run(book, session)
    p = Plotter()
    try:
        from importlib.metadata import version

        ver = version("stackcue")
    except Exception:  # not installed (a source checkout): the report is still good
        ver = "?"
    page = {
        "version": ver,
        "sid": run.sid,
        "runner": session.get("runner"),
        "title": f"stackcue · {session.get('runner') or 'run'} · {day(session.get('started_epoch'))}",
        "overview": _overview(run),
        "changed": _what_changed(run),
        "change_min": {"deg": CHANGE_MIN_DEG, "spm": CHANGE_MIN_SPM, "contact_ms": CHANGE_MIN_CONTACT_S * 1000},
        "window_min_total_min": stats.WINDOW_MIN_TOTAL_S / 60,
        "time_svg": time_figure(p, run),
        "hist_svg": hist_figure(p, run),
        "alerts": _alerts(run),
        "minutes": _minutes(run),
        "calibration": _calibration(run),
        "compare": _compare(book, run, compare, p) if compare else None,
        "units": Units(units),
    }
    return environment().get_template("page.html").render(page)


def write_report(
    book, session_id: str, output: str | os.PathLike, compare: Sequence[str] = (), units: str = "metric"
) -> Path:
    """Build the report and write it to ``output`` with ``output_files.write_output``: a regular file whole or not
    at all (a temporary file then a rename) and owner-only (0600: a runner's health data); ``-``, a device or a
    FIFO written through."""
    out = Path(output)
    if not out.parent.is_dir():
        raise ReportError(f"{out}: the folder {out.parent} does not exist")
    text = build_report(book, session_id, compare, units)
    write_output(output, text)
    return out
