"""`stackcue report`: one self-contained HTML file a coach can open anywhere (issue #6).

Everything is in the file: inline CSS, the plots as inline SVG drawn by matplotlib (Agg, text kept as text),
no JavaScript and no network reference, so it opens offline on a laptop or a phone and prints cleanly. Every
string that comes from the logbook is HTML-escaped. The output is deterministic for the same logbook (SVG ids
salted per figure, no dates in the SVG metadata), so two reports of one session compare equal.

This module is imported only by the CLI command; matplotlib is imported when a report is drawn, never at import
time, so ``stackcue --help`` and the live service stay light.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import io
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackcue.dsp.alert_kinds import ALERT_KINDS
from stackcue.dsp.drift import KINDS
from stackcue.errors import ReportError

from .argtypes import logbook_options
from .report_text import KIND_NAMES, clock

if TYPE_CHECKING:
    import numpy as np

#: Shading colour of each alert kind (the same in the plots and the tables).
KIND_COLOURS = {k.name: k.colour for k in ALERT_KINDS.values()}
#: What an alert kind means, in the coach's words.
KIND_WHEN = {k.name: k.when for k in ALERT_KINDS.values()}
#: A change between the start and the end of the run is called out only past these (see _what_changed).
CHANGE_MIN_DEG = 1.0
CHANGE_MIN_SPM = 3.0
CHANGE_MIN_CONTACT_S = 0.010
WINDOW_MAX_S = 600.0  # compare at most the first and the last 10 min of steady running
WINDOW_MIN_TOTAL_S = 360.0  # below 6 min of steady running there is nothing to compare
MOVING_S = 30.0  # the bold line in the time plots: a centred 30-s moving mean of steady strides
TABLE_MAX_ROWS = 45  # the per-minute table widens its bins (1, 2, 5, 10 min) to stay under this
GAP_SHADE_S = 10.0  # gaps longer than this are shaded grey; shorter ones are a dotted line
DEG = "°"
NO_DATA = "—"


# ---------------------------------------------------------------------------------------------- data

@dataclass
class _Run:
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
    periods: list[tuple[str, float, float, bool]]  # (kind, alert t, clear t or end, cleared)
    thresholds: dict[str, float]  # signed, reference included, per enabled kind
    ref_t: float | None  # first_minutes: when the reference was set (no thresholds before)
    reference: dict[str, float]
    trunk_note: str | None  # why there is no lean/stack, or None when there is

    @property
    def summary(self) -> dict | None:
        return self.session.get("summary")

    @property
    def sid(self) -> str:
        return self.session["id"]

    def calibration(self) -> dict | None:
        return self.session.get("calibration")


_COLUMNS = {
    "t_start": "t_start", "t_end": "t_end", "cadence": "cadence_spm", "tilt": "pelvic_tilt_deg",
    "lean": "trunk_lean_deg", "stack": "stack_deg", "obl": "pelvic_obliquity_range_deg",
    "rot": "pelvic_rotation_range_deg", "drop_l": "pelvic_drop_left_deg", "drop_r": "pelvic_drop_right_deg",
    "ct_l": "contact_time_left_s", "ct_r": "contact_time_right_s",
}


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _resolve(book, session_id: str) -> dict:
    """The session row for an id, a unique prefix or ``latest``; one-line errors naming the logbook."""
    from .session_store import find_session

    return find_session(book, session_id)


def _load_run(book, session: dict) -> _Run:
    import numpy as np

    sid = session["id"]
    strides = book.strides(sid)
    if not strides:
        cal = session.get("calibration") or {}
        why = (f": the calibration was refused ({cal.get('reason')})" if cal and not cal.get("ok") else
               ": it never calibrated" if not cal else ": no running was detected")
        raise ReportError(f"session {sid} has no strides, nothing to report{why}")
    alerts = sorted((a["payload"] for a in book.alerts(sid)), key=lambda e: (_num(e.get("t")), e.get("id") or 0))
    events = book.events(sid)
    cfg, cfg_note = session.get("config"), None
    if not isinstance(cfg, dict) or "alerts" not in cfg:
        from .config import load_config

        cfg, cfg_note = load_config().data, "the session stored no configuration: the defaults are shown"
    col = {k: np.array([_num(s.get(f)) for s in strides]) for k, f in _COLUMNS.items()}
    steady = np.array([bool(s.get("steady", True)) for s in strides])
    times = [col["t_end"].max()] + [_num(e.get("t", e.get("t_end"))) for e in events if e.get("type") != "summary"]
    times += [_num(a.get("t")) for a in alerts]
    end_t = float(np.nanmax(times))
    summ = session.get("summary") or {}
    if summ.get("duration_s") and col["t_start"][0] <= summ["duration_s"]:  # the summary knows the last sample
        end_t = max(end_t, float(summ["duration_s"]))
    clears = [e for e in events if e.get("type") == "clear"]
    periods = _periods(alerts, clears, end_t)
    reference, ref_t = _reference(cfg, events)
    al = cfg["alerts"]
    thresholds = {}
    for kind in al.get("enabled", KINDS):
        if kind in KINDS:
            fld, sign = KINDS[kind]
            ref = reference.get(fld, 0.0) if kind != "pelvic_drop" else 0.0
            thresholds[kind] = ref + sign * float(al[f"{kind}_deg"])
    trunk_note = None
    if not np.isfinite(col["lean"]).any():
        cal = session.get("calibration") or {}
        if cal.get("trunk_reason"):
            trunk_note = f"trunk sensor not calibrated: {cal['trunk_reason']}"
        elif "trunk" in (cal.get("segments") or {}):
            trunk_note = "the trunk sensor gave no usable strides"
        else:
            trunk_note = "no trunk sensor"
    return _Run(session, strides, alerts, events, cfg, cfg_note, col, steady, end_t, periods, thresholds,
                ref_t, reference, trunk_note)


def _periods(alerts: list[dict], clears: list[dict], end_t: float) -> list[tuple[str, float, float, bool]]:
    """Alert periods per kind, from an alert to its clear (reminders extend nothing); an open one lasts to the end."""
    out: list[tuple[str, float, float, bool]] = []
    open_: dict[str, float] = {}
    seq = sorted([(_num(a["t"]), 1, a) for a in alerts] + [(_num(c["t"]), 0, c) for c in clears],
                 key=lambda x: (x[0], x[1]))
    for t, is_alert, e in seq:
        kind = e.get("kind")
        if is_alert:
            open_.setdefault(kind, t)
        elif kind in open_:
            out.append((kind, open_.pop(kind), t, True))
    out += [(k, t0, end_t, False) for k, t0 in open_.items()]
    return sorted(out, key=lambda p: p[1])


def _reference(cfg: dict, events: list[dict]) -> tuple[dict[str, float], float | None]:
    ref = cfg.get("reference", {})
    mode = ref.get("mode", "neutral")
    if mode == "targets":
        return {k: float(ref.get(k, 0.0)) for k in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg")}, None
    if mode == "first_minutes":
        ev = next((e for e in events if e.get("type") == "reference"), None)
        if ev is None:
            return {}, math.inf  # never set: no alert could fire
        return {k: float(ev[k]) for k in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg")
                if ev.get(k) is not None}, float(ev["t"])
    return {}, None


def _mean(x: np.ndarray) -> float:
    import numpy as np

    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


def _stat(x: np.ndarray) -> dict | None:
    import numpy as np

    x = x[np.isfinite(x)]
    if not len(x):
        return None
    return {"mean": float(x.mean()), "sd": float(x.std()), "p10": float(np.percentile(x, 10)),
            "p90": float(np.percentile(x, 90))}


def _time_in_alert(run: _Run) -> tuple[dict[str, float], str]:
    """Seconds in each alert state: the pipeline's own figure when the session has a summary, else the periods."""
    tia = (run.summary or {}).get("time_in_alert_s")
    if isinstance(tia, dict):
        return {k: float(v) for k, v in tia.items()}, "the pipeline's summary (from confirmation to clearing)"
    out = dict.fromkeys(run.thresholds, 0.0)
    for kind, t0, t1, _ in run.periods:
        out[kind] = out.get(kind, 0.0) + (t1 - t0)
    return out, "the alerts and clears stored (the session has no summary)"


def _union_s(periods: Iterable[tuple[str, float, float, bool]]) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for _, a, b, _ in sorted(periods, key=lambda p: p[1]):
        if cur_b is None or a > cur_b:
            total += (cur_b - cur_a) if cur_b is not None else 0.0
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    return total + ((cur_b - cur_a) if cur_b is not None else 0.0)


# ---------------------------------------------------------------------------------------------- formatting

def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _f(x: float | None, fmt: str = "+.1f", unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return NO_DATA
    digits = re.search(r"\.(\d+)f", fmt)
    if abs(x) < 0.5 * 10.0 ** -(int(digits.group(1)) if digits else 0):
        x = 0.0  # no "-0.0"
    return f"{x:{fmt}}{unit}"


def _hms(seconds: float) -> str:
    """Whole seconds on the session clock: m:ss, or h:mm:ss."""
    s = round(max(seconds, 0.0))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "unknown"
    d = dt.datetime.fromtimestamp(epoch).astimezone()
    off = d.strftime("%z")
    return f"{d:%a %d %b %Y, %H:%M} (UTC{off[:3]}:{off[3:]})"


def _day(epoch: float | None) -> str:
    return "?" if epoch is None else f"{dt.datetime.fromtimestamp(epoch).astimezone():%d %b %Y %H:%M}"


def _chip(kind: str) -> str:
    return f'<span class="chip" style="background:{KIND_COLOURS.get(kind, "#888")}"></span>'


def _kind(kind: str) -> str:
    return _chip(kind) + _e(KIND_NAMES.get(kind, kind))


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table in a horizontal scroller (narrow screens); cells are HTML already."""
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table></div>'


# ---------------------------------------------------------------------------------------------- plots

_SVG_ID = re.compile(r'\sid="[A-Za-z][A-Za-z0-9.]*(?:_\d+)+"')  # matplotlib's group ids (figure_1, line2d_3, ...)
_PATH_D = re.compile(r'\bd="([^"]*)"')
_DECIMALS = re.compile(r"(\.\d)\d+")  # path coordinates to 0.1 pt: the long stride lines shrink by a third


class _Plotter:
    """Draws figures with matplotlib's object API (no pyplot state) and returns them as inline SVG."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        self.mpl = matplotlib
        self.Figure = Figure
        self.n = 0
        self.rc = {"svg.fonttype": "none", "font.size": 10, "font.family": "sans-serif",
                   "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"], "axes.spines.top": False,
                   "axes.spines.right": False, "axes.titlesize": 11, "axes.titleweight": "bold",
                   "axes.titlelocation": "left", "legend.frameon": False, "svg.image_inline": True,
                   "path.simplify": True}

    def figure(self, w: float, h: float, rows: int, cols: int = 1, top: float = 0.35, bottom: float = 0.55,
               left: float = 0.8, right: float = 0.25, hgap: float = 0.6, wgap: float = 0.9):
        """A figure with a ``rows`` x ``cols`` grid of axes, margins and gaps in inches.

        Fixed margins instead of constrained layout: the same look, a third of the drawing time.
        """
        with self.mpl.rc_context(self.rc):
            fig = self.Figure(figsize=(w, h))
            ah = (h - top - bottom - (rows - 1) * hgap) / rows
            aw = (w - left - right - (cols - 1) * wgap) / cols
            fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h,
                                hspace=hgap / ah, wspace=wgap / aw)
            axes = fig.subplots(rows, cols, squeeze=False)
        return fig, axes.ravel()

    def context(self):
        return self.mpl.rc_context(self.rc)

    def svg(self, fig, label: str) -> str:
        self.n += 1
        buf = io.StringIO()
        with self.mpl.rc_context({**self.rc, "svg.hashsalt": f"stackcue-report-{self.n}"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        text = buf.getvalue()
        text = text[text.index("<svg"):]  # no XML declaration or DTD (with its URL) inside HTML
        text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
        text = _SVG_ID.sub("", text)
        text = _PATH_D.sub(lambda m: 'd="' + _DECIMALS.sub(r"\1", m.group(1)).replace("\n", "") + '"', text)
        text = re.sub(r'<svg ([^>]*?)width="[\d.]+pt" height="[\d.]+pt"',
                      lambda m: f'<svg class="plot" role="img" aria-label="{_e(label)}" {m.group(1)}',
                      text, count=1)
        return text.strip()


def _moving_mean(t: np.ndarray, x: np.ndarray, window_s: float) -> np.ndarray:
    """Centred moving mean over ``window_s`` of time (t sorted, x finite); NaN where the window is nearly empty."""
    import numpy as np

    c = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.searchsorted(t, t - window_s / 2, side="left")
    hi = np.searchsorted(t, t + window_s / 2, side="right")
    n = hi - lo
    out = (c[hi] - c[lo]) / np.maximum(n, 1)
    out[n < 5] = np.nan
    return out


def _broken(t: np.ndarray, y: np.ndarray, max_dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where consecutive points are more than ``max_dt`` apart, so a line is not drawn across a gap."""
    import numpy as np

    if len(t) < 2:
        return t, y
    cut = np.nonzero(np.diff(t) > max_dt)[0] + 1
    return np.insert(t.astype(float), cut, np.nan), np.insert(y.astype(float), cut, np.nan)


def _no_data(ax, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="#666")


def _series_panel(ax, run: _Run, series: Sequence[tuple[str, str]], title: str, unit: str, kinds: Sequence[str],
                  gaps: list[tuple[float, float]], min_span: float = 6.0) -> None:
    """One quantity over the run: per-stride line, unsteady dots, moving mean, thresholds, alert and gap marks."""
    import numpy as np

    c, st = run.col, run.steady
    mid = (c["t_start"] + c["t_end"]) / 2
    x = mid / 60.0
    ax.set_title(title)
    if not any(np.isfinite(c[key]).any() for key, _ in series):
        key = series[0][0]
        _no_data(ax, run.trunk_note if key in ("lean", "stack") and run.trunk_note else "not measured")
        return
    for kind, t0, t1, cleared in run.periods:
        if kind in kinds:
            ax.axvspan(t0 / 60, t1 / 60, color=KIND_COLOURS[kind], alpha=0.18 if cleared else 0.12, lw=0)
    for g0, g1 in gaps:
        if g1 - g0 > GAP_SHADE_S:
            ax.axvspan(g0 / 60, g1 / 60, color="#999", alpha=0.25, lw=0)
        else:
            ax.axvline(g0 / 60, color="#888", lw=0.7, ls=":")
    lim: list[float] = []
    for key, colour in series:
        y = c[key]
        ok = np.isfinite(y)
        if not ok.any():
            continue
        sel = ok & st
        tx, ty = _broken(x[sel], y[sel], 3.0 / 60)
        ax.plot(tx, ty, color=colour, lw=0.6, alpha=0.45)
        uns = ok & ~st
        if uns.any():
            ax.plot(x[uns], y[uns], ls="none", marker="o", ms=2.2, color=colour, alpha=0.25, mec="none")
        lim += list(np.percentile(y[sel] if sel.sum() >= 5 else y[ok], [0.5, 99.5]))
        if sel.sum() >= 5:
            mx, my = _broken(x[sel], _moving_mean(mid[sel], y[sel], MOVING_S), 20.0 / 60)
            ax.plot(mx, my, color=colour, lw=1.8)
            if np.isfinite(my).any():  # the bold line is always whole
                lim += [float(np.nanmin(my)), float(np.nanmax(my))]
    for kind in kinds:
        thr = run.thresholds.get(kind)
        if thr is None or run.ref_t == math.inf:
            continue
        x0 = max((run.ref_t or 0.0) / 60, float(np.nanmin(x)))
        ax.hlines(thr, x0, run.end_t / 60, colors=KIND_COLOURS[kind], lw=1.0, ls="--")
        lim.append(thr)
    if unit == DEG:
        ax.axhline(0.0, color="#333", lw=0.5)
    lo, hi = min(lim), max(lim)
    if hi - lo < min_span:  # a flat series is not blown up into noise
        lo, hi = (lo + hi - min_span) / 2, (lo + hi + min_span) / 2
    pad = 0.08 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)  # outliers (unsteady strides) do not squash the steady running
    ax.set_ylabel("degrees" if unit == DEG else unit)
    ax.grid(axis="y", color="#ddd", lw=0.5)
    ax.set_xlim(0, run.end_t / 60)


def _time_figure(p: _Plotter, run: _Run) -> str:
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    gaps = [(float(e["t_start"]), float(e["t_end"])) for e in run.events if e.get("type") == "gap"]
    has_drop = np.isfinite(run.col["drop_l"]).any() or np.isfinite(run.col["drop_r"]).any()
    rows = 5 if has_drop else 4
    fig, axes = p.figure(10, 2.1 * rows + 1.5, rows, top=1.0)
    with p.context():
        _series_panel(axes[0], run, [("tilt", "#c0601a")], "Pelvic tilt (+ forward, − tucked under)", DEG,
                      ("anterior_tilt", "posterior_tilt"), gaps)
        _series_panel(axes[1], run, [("lean", "#b83232")], "Trunk lean (+ forward)", DEG, ("trunk_lean",), gaps)
        _series_panel(axes[2], run, [("stack", "#16806f")],
                      "Stack angle: trunk lean − pelvic tilt (+ ribs ahead, − ribs behind)", DEG,
                      ("ribs_behind_pelvis", "ribs_ahead_of_pelvis"), gaps)
        _series_panel(axes[3], run, [("cadence", "#3a5fa8")], "Cadence", "steps/min", (), gaps, min_span=16.0)
        if has_drop:
            _series_panel(axes[4], run, [("drop_l", "#7a4a9a"), ("drop_r", "#d08a1e")],
                          "Pelvic drop in stance (purple: left stance, orange: right stance)", DEG, ("pelvic_drop",),
                          gaps)
        axes[-1].set_xlabel("minutes on the session clock")
        for ax in axes:
            ax.tick_params(labelbottom=True)
        handles = [Line2D([], [], color="#555", lw=0.6, alpha=0.6, label="each steady stride"),
                   Line2D([], [], color="#555", ls="none", marker="o", ms=3, alpha=0.35, label="unsteady stride"),
                   Line2D([], [], color="#555", lw=1.8, label="30-s moving mean"),
                   Line2D([], [], color="#555", lw=1.0, ls="--", label="alert threshold"),
                   Line2D([], [], color="#888", lw=0.8, ls=":", label="gap in the data")]
        kinds = [k for k in KIND_COLOURS if any(pk == k for pk, *_ in run.periods)]
        handles += [Patch(color=KIND_COLOURS[k], alpha=0.35, label=KIND_NAMES[k]) for k in kinds]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=9)
    return p.svg(fig, "pelvic tilt, trunk lean, stack angle, cadence and pelvic drop over the run")


def _hist_figure(p: _Plotter, run: _Run) -> str:
    import numpy as np

    fig, axes = p.figure(10, 6.0, 2, 2, top=0.4, bottom=0.6, hgap=0.9)
    c, st = run.col, run.steady
    panels = [("tilt", "Pelvic tilt", ("anterior_tilt", "posterior_tilt"), "#c0601a"),
              ("lean", "Trunk lean", ("trunk_lean",), "#b83232"),
              ("stack", "Stack angle", ("ribs_behind_pelvis", "ribs_ahead_of_pelvis"), "#16806f"),
              ("drop", "Pelvic drop (left and right stance)", ("pelvic_drop",), "#7a4a9a")]
    with p.context():
        for ax, (key, title, kinds, colour) in zip(axes, panels, strict=True):
            ax.set_title(title)
            y = np.concatenate([c["drop_l"][st], c["drop_r"][st]]) if key == "drop" else c[key][st]
            y = y[np.isfinite(y)]
            if not len(y):
                _no_data(ax, run.trunk_note if key in ("lean", "stack") and run.trunk_note else "not measured")
                continue
            lo, hi = np.percentile(y, [0.5, 99.5])
            thr = [run.thresholds[k] for k in kinds if k in run.thresholds and run.ref_t != math.inf]
            lo, hi = min([lo, *[t - 1 for t in thr]]), max([hi, *[t + 1 for t in thr]])
            bins = np.arange(math.floor(lo * 2) / 2, math.ceil(hi * 2) / 2 + 0.5, 0.5)
            counts, edges = np.histogram(np.clip(y, bins[0], bins[-1]), bins=bins)
            ax.stairs(counts, edges, fill=True, color=colour, alpha=0.75)  # one path, not a patch per bin
            for k in kinds:
                if k in run.thresholds and run.ref_t != math.inf:
                    ax.axvline(run.thresholds[k], color=KIND_COLOURS[k], ls="--", lw=1.0)
            m = float(y.mean())
            ax.axvline(m, color="#222", lw=1.2)
            ax.text(m, 1.0, f" mean {m:+.1f}{DEG}", transform=ax.get_xaxis_transform(), va="top", fontsize=9)
            ax.set_xlabel(f"{DEG} (steady strides; dashed: alert thresholds)")
            ax.set_ylabel("strides")
    return p.svg(fig, "distributions of pelvic tilt, trunk lean, stack angle and pelvic drop")


def _compare_figure(p: _Plotter, rows: list[dict]) -> str:
    import numpy as np

    fig, (a1, a2, a3) = p.figure(10, 6.0, 3, top=0.35, bottom=0.8 if len(rows) > 4 else 0.55, right=1.5)
    x = np.arange(len(rows))
    labels = [r["label"] for r in rows]
    with p.context():
        for key, name, colour in (("tilt", "pelvic tilt", "#c0601a"), ("lean", "trunk lean", "#b83232"),
                                  ("stack", "stack angle", "#16806f")):
            y = np.array([r[key] for r in rows], dtype=float)
            if np.isfinite(y).any():
                a1.plot(x, y, marker="o", color=colour, label=name)
        a1.axhline(0, color="#333", lw=0.5)
        a1.set_title("Mean posture per run (steady strides)")
        a1.set_ylabel("degrees")
        a1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)  # beside the plot, never on a point
        cad = np.array([r["cadence"] for r in rows], dtype=float)
        a2.plot(x, cad, marker="o", color="#3a5fa8")
        if np.isfinite(cad).any():  # at least 12 spm of axis: a 1-spm wobble is not drawn as a cliff
            lo, hi = float(np.nanmin(cad)), float(np.nanmax(cad))
            half = max(6.0, (hi - lo) / 2 * 1.15)
            a2.set_ylim((lo + hi) / 2 - half, (lo + hi) / 2 + half)
        a2.set_title("Mean cadence")
        a2.set_ylabel("steps/min")
        colours = ["#e8892b" if r["this"] else "#9bb0d0" for r in rows]
        a3.bar(x, [r["alerts_h"] if math.isfinite(r["alerts_h"]) else 0.0 for r in rows], color=colours)
        a3.set_title("Alerts per hour of running (this run in orange)")
        a3.set_ylabel("per hour")
        a3.set_xticks(x, labels, rotation=30 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
        for ax in (a1, a2, a3):
            ax.grid(axis="y", color="#ddd", lw=0.5)
            ax.set_xlim(-0.5, len(rows) - 0.5)
        for ax in (a1, a2):
            ax.set_xticks(x, [""] * len(rows))
    return p.svg(fig, "the runner's sessions over time")


# ---------------------------------------------------------------------------------------------- sections

def _header(run: _Run) -> str:
    import numpy as np

    s, summ = run.session, run.summary or {}
    sync = s.get("clock_synchronised")
    when = _e(_when(s.get("started_epoch")))
    if sync == "no":
        when += ' <span class="warn">the clock was not synchronised (no network time): the date may be wrong</span>'
    elif sync == "file time":
        when += ' <span class="note">(taken from the recording file\'s time)</span>'
    elif sync != "yes":
        when += ' <span class="note">(whether the clock was synchronised is not known)</span>'
    c = run.col
    running_s = summ.get("running_s") or float(np.nansum(c["t_end"] - c["t_start"]))
    n, n_steady = len(run.strides), int(run.steady.sum())
    src_text = _source_text(s.get("source"))
    sensors = "pelvis + trunk" if run.trunk_note is None else f"pelvis only ({run.trunk_note})"
    origin = {"live": "live run", "analyze": "recording analysed afterwards", "import": "imported"}.get(
        s.get("origin") or "", s.get("origin") or "")
    how = s.get("ended_how")
    if how == "clean":
        ended = "cleanly" + (f" ({summ['ended']})" if summ.get("ended") else "")
    elif how == "unclean":
        ended = ('<span class="warn">uncleanly: the recorder stopped without closing the session (a crash or a '
                 f"power cut); the data up to {_e(clock(run.end_t))} is kept</span>")
    else:
        ended = '<span class="warn">not closed: still running, or cut off and not yet marked</span>'
    facts = [
        ("Runner", _e(s.get("runner") or "unknown")),
        ("Started", when),
        ("Duration", f"{_e(_hms(run.end_t if not summ.get('duration_s') else summ['duration_s']))} recorded, "
                     f"{_e(_hms(running_s))} running"),
        ("Strides", f"{n} ({n_steady} steady)"),
        ("Sensors", _e(sensors)),
        ("Source", _e(f"{origin}; {src_text}" if origin and src_text else origin or src_text or "unknown")),
        ("Ended", ended if how != "clean" else _e(ended)),
    ]
    facts.append(("Calibration", _e(_calibration_brief(run))))
    facts.append(("Thresholds", _e(_thresholds_brief(run))))
    if s.get("distance_m"):
        facts.insert(4, ("Distance", _e(f"{s['distance_m'] / 1000:.2f} km")))
    if s.get("notes"):
        facts.append(("Notes", _e(s["notes"]).replace("\n", "<br>")))  # `stackcue note --append` adds lines
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (f'<header><h1>Run report: {_e(s.get("runner") or "unknown runner")}</h1>'
            f'<p class="sub">{_e(_when(s.get("started_epoch")))} · session {_e(run.sid)}</p></header>'
            f'<section id="overview"><h2>Overview</h2><dl class="facts">{dl}</dl>{_glance(run)}</section>')


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


def _calibration_brief(run: _Run) -> str:
    cal = run.calibration() or {}
    if not cal.get("ok"):
        return "none accepted" + (f": {cal['reason']}" if cal.get("reason") else "")
    segs = []
    for seg, d in (cal.get("segments") or {}).items():
        hinge = _num(d.get("hinge_deg"))
        segs.append(f"{seg} hinge {hinge:.0f}{DEG} quality {_num(d.get('quality')):.2f}" if math.isfinite(hinge)
                    else seg)
    how = "saved calibration" if cal.get("source") == "saved" else "routine"
    return f"{how}, accepted at {clock(_num(cal.get('t')))}: " + "; ".join(segs)


def _thresholds_brief(run: _Run) -> str:
    if run.ref_t == math.inf:
        return "no reference was set: no posture alert could fire"
    th = run.thresholds
    parts = []
    for name, lo, hi in (("tilt", "posterior_tilt", "anterior_tilt"), ("lean", None, "trunk_lean"),
                         ("stack", "ribs_behind_pelvis", "ribs_ahead_of_pelvis"), ("drop", None, "pelvic_drop")):
        vals = [f"{th[k]:+.1f}{DEG}" for k in (lo, hi) if k in th]
        if vals:
            parts.append(f"{name} {' / '.join(vals)}")
    mode = run.cfg.get("reference", {}).get("mode", "neutral")
    ref = {"neutral": "from the standing neutral", "targets": "around coach-set targets",
           "first_minutes": "around the runner's first minutes"}.get(mode, mode)
    return (", ".join(parts) + f" ({ref})") if parts else "all alerts off"


def _glance(run: _Run) -> str:
    import numpy as np

    summ, c, st = run.summary or {}, run.col, run.steady
    rows = []
    for key, name, unit, signed in (("cadence_spm", "Cadence", " spm", False), ("pelvic_tilt_deg", "Pelvic tilt",
                                    DEG, True), ("trunk_lean_deg", "Trunk lean", DEG, True),
                                    ("stack_deg", "Stack angle", DEG, True),
                                    ("pelvic_obliquity_range_deg", "Obliquity range", DEG, False),
                                    ("pelvic_rotation_range_deg", "Rotation range", DEG, False)):
        short = {v: k for k, v in _COLUMNS.items()}[key]
        stt = summ.get(key) if isinstance(summ.get(key), dict) else _stat(c[short][st])
        f = "+.1f" if signed else ".1f"
        if not stt:
            note = run.trunk_note if short in ("lean", "stack") and run.trunk_note else "not measured"
            rows.append([_e(name), f'<td colspan="3" class="na">{_e(note)}</td>'])
            continue
        rows.append([_e(name), _f(stt["mean"], f, unit), _f(stt["sd"], ".1f", unit),
                     f"{_f(stt['p10'], f)} to {_f(stt['p90'], f, unit)}"])
    drop = np.concatenate([c["drop_l"][st], c["drop_r"][st]])
    if np.isfinite(drop).any():
        dl, dr = _mean(c["drop_l"][st]), _mean(c["drop_r"][st])
        d = _stat(drop)
        assert d is not None
        rows.append(["Pelvic drop", f"{_f(dl, '.1f', DEG)} left, {_f(dr, '.1f', DEG)} right",
                     _f(d["sd"], ".1f", DEG), f"{_f(d['p10'], '.1f')} to {_f(d['p90'], '.1f', DEG)}"])
    ct = np.concatenate([c["ct_l"][st], c["ct_r"][st]])
    if np.isfinite(ct).any():
        rows.append(["Ground contact", f"{_mean(c['ct_l'][st]) * 1000:.0f} ms left, "
                     f"{_mean(c['ct_r'][st]) * 1000:.0f} ms right", "", ""])
    return ("<h3>At a glance (steady strides)</h3>"
            + _table(["", "mean", "spread (sd)", "10–90 % of strides"], rows, "num"))


def _window_masks(run: _Run) -> tuple[np.ndarray, np.ndarray, float] | None:
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


def _stack_note(run: _Run, key: str, d: float, b: float) -> str:
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


def _what_changed(run: _Run) -> str:
    """Start vs end of the steady running: a plain sentence for each change past the stated thresholds."""
    import numpy as np

    head = '<section id="changed"><h2>What changed as the runner tired</h2>'
    masks = _window_masks(run)
    if masks is None:
        return (head + f"<p>Too little steady running to compare the start with the end (needs "
                f"{WINDOW_MIN_TOTAL_S / 60:.0f} minutes).</p></section>")
    first, last, w = masks
    c = run.col
    span = [(float(c["t_start"][m].min()), float(c["t_end"][m].max())) for m in (first, last)]
    wtxt = (f"the first {_e(_hms(w))} of steady running ({_e(_hms(span[0][0]))}–{_e(_hms(span[0][1]))}) "
            f"and the last {_e(_hms(w))} ({_e(_hms(span[1][0]))}–{_e(_hms(span[1][1]))})")
    rows, said = [], []

    def angle(key: str, name: str, up: str, down: str, what: str = "", signed: bool = True) -> None:
        """A row for one angle; a sentence when it changed by CHANGE_MIN_DEG or more. Signed angles are said
        against the standing neutral; ranges and drops (unsigned) only as before → after."""
        a, b = _mean(c[key][first]), _mean(c[key][last])
        if not (math.isfinite(a) and math.isfinite(b)):
            return
        d = b - a
        big = abs(d) >= CHANGE_MIN_DEG
        fmt = "+.1f" if signed else ".1f"
        rows.append([_e(name), _f(a, fmt, DEG), _f(b, fmt, DEG),
                     f'<td class="{"big" if big else ""}">{_f(d, "+.1f", DEG)}</td>'])
        if big and signed:
            toward = "closer to" if abs(b) < abs(a) else "further from"
            said.append(f"{up if d > 0 else down} by {abs(d):.1f}{DEG} ({what}{a:+.1f}{DEG} → {b:+.1f}{DEG}), "
                        f"{toward} the standing neutral (0{DEG}){_stack_note(run, key, d, b)}.")
        elif big:
            said.append(f"{up if d > 0 else down}: {a:.1f}{DEG} → {b:.1f}{DEG}.")

    angle("tilt", "Pelvic tilt", "The pelvis tipped further forward (more anterior tilt)",
          "The pelvis tipped back, tucking under (less anterior tilt)")
    b_lean = _mean(c["lean"][last])
    angle("lean", "Trunk lean", "The trunk leaned further forward",
          "The trunk leaned back" if b_lean < 0 else "The trunk came more upright")
    angle("stack", "Stack angle", "The ribs moved forward relative to the pelvis",
          "The ribs moved back relative to the pelvis", "stack ")
    a, b = _mean(c["cadence"][first]), _mean(c["cadence"][last])
    d = b - a
    rows.append(["Cadence", _f(a, ".0f", " spm"), _f(b, ".0f", " spm"),
                 f'<td class="{"big" if abs(d) >= CHANGE_MIN_SPM else ""}">{_f(d, "+.1f", " spm")}</td>'])
    if abs(d) >= CHANGE_MIN_SPM:
        said.append(f"Cadence {'rose' if d > 0 else 'dropped'} by {abs(d):.1f} steps/min ({a:.1f} → {b:.1f}).")
    for key, name, up, down in (("obl", "Obliquity range", "The hips rocked more from side to side",
                                 "The hips rocked less from side to side"),
                                ("rot", "Rotation range", "The pelvis turned more with each stride",
                                 "The pelvis turned less with each stride"),
                                ("drop_l", "Pelvic drop, left stance", "The hip dropped more in left stance",
                                 "The hip dropped less in left stance"),
                                ("drop_r", "Pelvic drop, right stance", "The hip dropped more in right stance",
                                 "The hip dropped less in right stance")):
        angle(key, name, up, down, signed=False)
    ct = {m: _mean(np.concatenate([c["ct_l"][mask], c["ct_r"][mask]])) for m, mask in (("a", first), ("b", last))}
    if math.isfinite(ct["a"]) and math.isfinite(ct["b"]):
        d = ct["b"] - ct["a"]
        big = abs(d) >= CHANGE_MIN_CONTACT_S
        rows.append(["Ground contact", f"{ct['a'] * 1000:.0f} ms", f"{ct['b'] * 1000:.0f} ms",
                     f'<td class="{"big" if big else ""}">{_f(d * 1000, "+.0f", " ms")}</td>'])
        if big:
            said.append(f"Ground contact got {'longer' if d > 0 else 'shorter'}: {ct['a'] * 1000:.0f} → "
                        f"{ct['b'] * 1000:.0f} ms.")
    n_a = sum(1 for e in run.alerts if not e.get("reminder") and span[0][0] <= e["t"] <= span[0][1])
    n_b = sum(1 for e in run.alerts if not e.get("reminder") and span[1][0] <= e["t"] <= span[1][1])
    rows.append(["Alerts raised", str(n_a), str(n_b), f"{n_b - n_a:+d}"])
    if n_a != n_b:
        said.append(f"{'More' if n_b > n_a else 'Fewer'} posture alerts late in the run: {n_a} in the first window, "
                    f"{n_b} in the last.")
    if said:
        body = "<ul class=\"said\">" + "".join(f"<li>{_e(x)}</li>" for x in said) + "</ul>"
    else:
        body = ("<p class=\"said\">Nothing changed by more than these amounts: the runner's carriage held from the "
                "start to the end of the run.</p>")
    return (head + f"<p>Comparing {wtxt} (means of steady strides). Changes are called out when larger than "
            f"{CHANGE_MIN_DEG:.0f}{DEG} in an angle, {CHANGE_MIN_SPM:.0f} steps/min in cadence or "
            f"{CHANGE_MIN_CONTACT_S * 1000:.0f} ms in ground contact.</p>" + body
            + _table(["", "start", "end", "change"], rows, "num")
            + "<p class=\"note\">Pace, hills and wind move these numbers too; this is form feedback for coaching, "
              "not a diagnosis.</p></section>")


def _plots_section(run: _Run, p: _Plotter) -> str:
    return ('<section id="over-the-run"><h2>Over the run</h2><p class="note">Thin line: each steady stride; '
            "faded dots: strides while speeding up or slowing down (never alerted on); bold line: 30-second moving "
            "mean; dashed: alert thresholds; shaded: from an alert to its clear (an alert never cleared lasts to "
            "the end); dotted: gaps in the data.</p>"
            f'<figure class="plotwrap">{_time_figure(p, run)}</figure></section>'
            f'<section id="distributions"><h2>Distributions</h2><figure class="plotwrap">{_hist_figure(p, run)}'
            "</figure></section>")


def _alerts_section(run: _Run) -> str:
    import numpy as np

    summ = run.summary or {}
    tia, src = _time_in_alert(run)
    running_s = summ.get("running_s") or float(np.nansum(run.col["t_end"] - run.col["t_start"]))
    rows = []
    for kind in KINDS:
        if kind not in run.thresholds:
            rows.append([_kind(kind), "off", "", "", "", ""])
            continue
        n = sum(1 for e in run.alerts if e.get("kind") == kind and not e.get("reminder"))
        nr = sum(1 for e in run.alerts if e.get("kind") == kind and e.get("reminder"))
        s = tia.get(kind, 0.0)
        needs_trunk = KINDS[kind][0] in ("trunk_lean_deg", "stack_deg") and run.trunk_note is not None
        thr = ("not set (no reference)" if run.ref_t == math.inf else f"{run.thresholds[kind]:+.1f}{DEG}")
        rows.append([_kind(kind), _e(thr), str(n) + (f" (+{nr} reminders)" if nr else ""),
                     _e(_hms(s)) if not needs_trunk else '<td class="na">no trunk data</td>',
                     f"{100 * s / running_s:.1f} %" if running_s and not needs_trunk else "",
                     _e(KIND_WHEN[kind])])
    any_s = _union_s(run.periods)
    out = ['<section id="alerts"><h2>Alerts</h2><h3>Time in each alert state</h3>',
           _table(["alert", "threshold", "alerts", "time in alert", "of running", "means"], rows, "num"),
           f'<p class="note">Time in alert from {_e(src)}. With any alert active (alert to clear): '
           f"{_e(_hms(any_s))}" + (f" ({100 * any_s / running_s:.1f} % of the running time)" if running_s else "")
           + ".</p>"]
    clears = {}
    for e in run.events:
        if e.get("type") == "clear":
            clears.setdefault(e["kind"], []).append(float(e["t"]))
    arows = []
    for i, e in enumerate(run.alerts, 1):
        later = [t for t in clears.get(e["kind"], []) if t >= e["t"]]
        if e.get("reminder"):
            cleared, lasted = "", "reminder"
        elif later:
            cleared, lasted = clock(later[0]), clock(later[0] - e["t"])
        else:
            cleared, lasted = "not cleared", f"{clock(run.end_t - e['t'])}+"
        arows.append([str(e.get("id", i)), _e(clock(e["t"])), _kind(e["kind"]), _f(_num(e.get("value_deg")),
                      "+.1f", DEG), _f(_num(e.get("threshold_deg")), "+.1f", DEG), _e(cleared), _e(lasted)])
    if arows:
        out += ["<h3>Alert list</h3>", _table(["#", "at", "alert", "value", "threshold", "cleared at", "lasted"],
                                              arows, "num")]
    else:
        out.append("<p>No alerts: posture stayed within the thresholds.</p>")
    gaps = [e for e in run.events if e.get("type") == "gap"]
    if gaps:
        lens = [float(g["t_end"]) - float(g["t_start"]) for g in gaps]
        i = int(np.argmax(lens))
        out.append(f"<p>{len(gaps)} gap{'s' if len(gaps) > 1 else ''} in the data, {sum(lens):.1f} s in all "
                   f"(longest {lens[i]:.1f} s at {_e(clock(float(gaps[i]['t_start'])))}); strides across a gap are "
                   "dropped.</p>")
    else:
        out.append("<p>No gaps in the data.</p>")
    for e in run.events:
        if e.get("type") == "calibration_suspect":
            out.append(f'<p class="warn">Suspect calibration from {_e(clock(float(e["t"])))}: '
                       f"{_e(e.get('reason', ''))}</p>")
    return "".join(out) + "</section>"


def _minute_table(run: _Run) -> str:
    import numpy as np

    c, st = run.col, run.steady
    mid = (c["t_start"] + c["t_end"]) / 2
    span = float(mid.max() - mid.min())
    bin_min = next((b for b in (1, 2, 5, 10) if span / (60 * b) <= TABLE_MAX_ROWS), 15)
    w = 60.0 * bin_min
    k = np.floor(mid / w).astype(int)
    has_trunk = run.trunk_note is None
    has_drop = np.isfinite(c["drop_l"]).any() or np.isfinite(c["drop_r"]).any()
    thr = run.thresholds if run.ref_t != math.inf else {}
    head = ["time", "strides<br>(steady)", "cadence<br>spm", f"tilt<br>{DEG}"]
    head += [f"lean<br>{DEG}", f"stack<br>{DEG}"] if has_trunk else []
    head += [f"obliquity<br>range {DEG}", f"rotation<br>range {DEG}"]
    head += [f"drop<br>L / R {DEG}"] if has_drop else []
    head += ["alerts raised"]

    def over(kinds: Sequence[str], v: float) -> str:
        for kind in kinds:
            if kind in thr and KINDS[kind][1] * (v - thr[kind]) > 0:
                return f'<td class="over" title="past the {_e(KIND_NAMES[kind])} threshold">'
        return "<td>"

    rows = []
    for b in range(int(k.min()), int(k.max()) + 1):
        m = k == b
        ms = m & st
        t0, t1 = b * w, (b + 1) * w
        raised = [e for e in run.alerts if t0 <= e["t"] < t1]
        label = f"{_hms(t0)}–{_hms(t1)}"
        if not m.any():
            rows.append([_e(label), "0", f'<td colspan="{len(head) - 3}" class="na">not running</td>',
                         _e(", ".join(KIND_NAMES.get(e["kind"], e["kind"]) for e in raised))])
            continue
        tilt, lean, stack = _mean(c["tilt"][ms]), _mean(c["lean"][ms]), _mean(c["stack"][ms])
        r = [_e(label), f"{int(m.sum())} ({int(ms.sum())})", _f(_mean(c["cadence"][ms]), ".0f"),
             over(("anterior_tilt", "posterior_tilt"), tilt) + _f(tilt) + "</td>"]
        if has_trunk:
            r += [over(("trunk_lean",), lean) + _f(lean) + "</td>",
                  over(("ribs_behind_pelvis", "ribs_ahead_of_pelvis"), stack) + _f(stack) + "</td>"]
        r += [_f(_mean(c["obl"][ms]), ".1f"), _f(_mean(c["rot"][ms]), ".1f")]
        if has_drop:
            dl, dr = _mean(c["drop_l"][ms]), _mean(c["drop_r"][ms])
            r.append(over(("pelvic_drop",), max(dl, dr) if math.isfinite(dl) and math.isfinite(dr) else math.nan)
                     + f"{_f(dl, '.1f')} / {_f(dr, '.1f')}</td>")
        r.append(", ".join(_kind(e["kind"]) + (" (reminder)" if e.get("reminder") else "") for e in raised))
        rows.append(r)
    per = "minute" if bin_min == 1 else f"{bin_min} minutes"
    return (f'<section id="per-minute"><h2>Per {per}</h2><p class="note">Means of the steady strides in each '
            f"{per} of the session clock (distance is not measured, so there is no per-km table). Shaded cells: the "
            "mean itself is past an alert threshold.</p>" + _table(head, rows, "num minutes") + "</section>")


def _calibration_section(run: _Run) -> str:
    cal = run.calibration() or {}
    out = ['<section id="calibration"><h2>Calibration and thresholds</h2>']
    if cal.get("ok"):
        how = ("a saved calibration (valid only while the sensors stay strapped on as they were)"
               if cal.get("source") == "saved" else "the routine (stand tall, hip hinge, stand)")
        out.append(f"<p>Accepted at {_e(clock(_num(cal.get('t')) if cal.get('t') is not None else 0.0))} from "
                   f"{_e(how)}. All angles are relative to the neutral it captured: standing tall, ribs stacked "
                   f"over the pelvis, reads 0{DEG}.</p>")
        rows = []
        for seg, d in (cal.get("segments") or {}).items():
            hinge = _num(d.get("hinge_deg"))
            rows.append([_e(seg), _f(hinge, ".0f", DEG) if math.isfinite(hinge) else "saved",
                         _f(_num(d.get("quality")), ".2f")])
        out.append(_table(["segment", "hip hinge", "quality (0–1)"], rows, "num"))
        if cal.get("trunk_reason"):
            out.append(f'<p class="warn">Trunk not calibrated: {_e(cal["trunk_reason"])}</p>')
    else:
        why = f": {_e(cal['reason'])}" if cal.get("reason") else ""
        out.append(f'<p class="warn">No accepted calibration stored{why}.</p>')
    refused = [e for e in run.events if e.get("type") == "calibration" and e.get("ok") is False]
    if refused:
        out.append("<p>Refused attempts before it:</p><ul>" + "".join(
            f"<li>{_e(clock(_num(e.get('t'))))}: {_e(e.get('reason', ''))}</li>" for e in refused) + "</ul>")
    al, ref = run.cfg["alerts"], run.cfg.get("reference", {})
    rows = []
    for kind in KINDS:
        on = kind in run.thresholds
        base = float(al.get(f"{kind}_deg", math.nan))
        rows.append([_kind(kind), _e(KIND_WHEN[kind]), f"{KINDS[kind][1] * base:+.1f}{DEG}",
                     _e(f"{run.thresholds[kind]:+.1f}{DEG}") if on and run.ref_t != math.inf else
                     ("not set" if on else "off")])
    out.append("<h3>Thresholds in force</h3>" + _table(["alert", "fires when", "setting", "threshold used"], rows,
                                                       "num"))
    mode = ref.get("mode", "neutral")
    if mode == "targets":
        rtxt = (f"coach-set targets: tilt {ref.get('pelvic_tilt_deg', 0):+.1f}{DEG}, lean "
                f"{ref.get('trunk_lean_deg', 0):+.1f}{DEG}, stack {ref.get('stack_deg', 0):+.1f}{DEG}")
    elif mode == "first_minutes":
        if run.ref_t == math.inf:
            rtxt = (f"the runner's own first {ref.get('first_minutes', 3):g} minutes of steady running, which this "
                    "run never completed: no posture alert could fire")
        else:
            vals = ", ".join(f"{k.split('_')[1] if k != 'stack_deg' else 'stack'} {v:+.1f}{DEG}"
                             for k, v in run.reference.items())
            rtxt = (f"the runner's own first {ref.get('first_minutes', 3):g} minutes of steady running ({vals}), "
                    f"set at {clock(run.ref_t or 0.0)}; no alerts before")
    else:
        rtxt = f"the standing neutral from the calibration (0{DEG})"
    out.append(f"<p>Measured from {_e(rtxt)}. A drift is confirmed by {al.get('confirm_strides')} consecutive steady "
               f"strides past the threshold and cleared by {al.get('clear_strides')} strides back inside it by "
               f"{al.get('hysteresis_deg')}{DEG}; the same alert is not cued again within {al.get('quiet_s'):g} s, "
               + (f"and a drift that lasts is cued again every {al.get('remind_every_s'):g} s."
                  if al.get("remind_every_s") else "and a drift that lasts is not cued again.") + "</p>")
    if run.cfg_note:
        out.append(f'<p class="note">{_e(run.cfg_note)}.</p>')
    return "".join(out) + "</section>"


def _session_row(book, s: dict, this_id: str) -> dict:
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
        strides = [x for x in book.strides(sid)]
        steady = [x for x in strides if x.get("steady", True)]
        running = sum(_num(x["t_end"]) - _num(x["t_start"]) for x in strides)

        def mm(key: str) -> float:
            return _mean(np.array([_num(x.get(key)) for x in steady])) if steady else math.nan

        tilt, lean, stack, cad = mm("pelvic_tilt_deg"), mm("trunk_lean_deg"), mm("stack_deg"), mm("cadence_spm")
        alerts = sum(1 for a in book.alerts(sid) if not a["payload"].get("reminder"))
        tia = math.nan
        n = len(strides)
    dur = s.get("duration_s") or summ.get("duration_s")
    return {"id": sid, "label": _day(s.get("started_epoch")) + ("" if s.get("clock_synchronised") == "yes" else "*"),
            "this": sid == this_id, "duration": dur, "running": running, "strides": n, "cadence": cad,
            "tilt": tilt, "lean": lean, "stack": stack, "alerts": alerts,
            "alerts_h": alerts / (running / 3600) if running > 0 else math.nan,
            "alert_share": tia / running if running > 0 and math.isfinite(tia) else math.nan,
            "ended": s.get("ended_how") or "open"}


def _compare_sessions(book, this: dict, compare: Sequence[str]) -> list[dict]:
    chosen: dict[str, dict] = {this["id"]: this}
    for c in compare:
        if c == "runner":
            for s in book.sessions(runner=this.get("runner")):
                if (s.get("started_epoch") or 0) <= (this.get("started_epoch") or 0):
                    chosen.setdefault(s["id"], s)
        else:
            s = _resolve(book, c)
            chosen.setdefault(s["id"], s)
    return sorted(chosen.values(), key=lambda s: (s.get("started_epoch") or 0, s["id"]))


def _compare_section(book, run: _Run, compare: Sequence[str], p: _Plotter) -> str:
    sessions = _compare_sessions(book, run.session, compare)
    rows = [_session_row(book, s, run.sid) for s in sessions]
    runners = sorted({str(s.get("runner")) for s in sessions})
    trs = []
    for r in rows:
        cells = [_e(r["label"]) + (" <b>(this run)</b>" if r["this"] else ""),
                 _e(_hms(r["duration"])) if r["duration"] else NO_DATA, _e(_hms(r["running"])), str(r["strides"]),
                 _f(r["cadence"], ".0f"), _f(r["tilt"]), _f(r["lean"]), _f(r["stack"]), str(r["alerts"]),
                 _f(r["alerts_h"], ".1f"), _f(100 * r["alert_share"], ".1f", " %"), _e(r["ended"])]
        trs.append([f'<td class="this">{x}</td>' if r["this"] else x for x in cells])
    table = _table(["started", "duration", "running", "strides", "cadence spm", f"tilt {DEG}", f"lean {DEG}",
                    f"stack {DEG}", "alerts", "alerts / h", "time in alert", "ended"], trs, "num")
    note = ("Means of steady strides. * the Pi's clock was not synchronised or not known: that date may be wrong. "
            "Time in alert adds up every alert state (they can overlap).")
    if len(runners) > 1:
        note += f" These sessions belong to more than one runner: {', '.join(runners)}."
    fig = _compare_figure(p, rows) if len(rows) > 1 else ""
    return (f'<section id="compare"><h2>Sessions compared</h2>{table}<p class="note">{_e(note)}</p>'
            + (f'<figure class="plotwrap">{fig}</figure>' if fig else "") + "</section>")


# ---------------------------------------------------------------------------------------------- the page

_CSS = """
:root{--ink:#1d2430;--mute:#5b6474;--line:#d9dde3;--bg:#fff;--soft:#f4f6f9;--warn:#a33c00}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;-webkit-text-size-adjust:100%}
main{max-width:1080px;margin:0 auto;padding:16px}
header h1{font-size:1.6em;margin:.2em 0 0}
.sub{color:var(--mute);margin:.2em 0 1em}
h2{font-size:1.25em;border-bottom:2px solid var(--line);padding-bottom:.2em;margin:1.6em 0 .6em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:6px 18px;margin:0}
.facts div{background:var(--soft);border-radius:6px;padding:6px 10px}
.facts dt{font-size:.8em;color:var(--mute);text-transform:uppercase;letter-spacing:.03em}
.facts dd{margin:0}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:.4em 0}
table{border-collapse:collapse;font-size:.92em;min-width:100%}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
table.num td{font-variant-numeric:tabular-nums}
table.minutes td{white-space:nowrap}
table.minutes td:last-child{white-space:normal;min-width:9em}
tbody tr:nth-child(even){background:#fafbfc}
td.over{background:#fde3cf}
td.big{font-weight:700}
td.na{color:var(--mute);font-style:italic}
td.this{background:#fff4e6}
.chip{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
.note{color:var(--mute);font-size:.9em}
.warn{color:var(--warn);font-weight:600}
ul.said li,p.said{margin:.3em 0;font-size:1.02em}
figure{margin:.6em 0}
.plotwrap{overflow-x:auto}
svg.plot{display:block;width:100%;height:auto;min-width:620px}
footer{color:var(--mute);font-size:.85em;margin:2em 0 1em;border-top:1px solid var(--line);padding-top:.5em}
@media (max-width:600px){body{font-size:14px}main{padding:10px}th,td{padding:3px 6px}}
@media print{
 @page{margin:12mm}
 body{font-size:10pt}
 main{max-width:none;padding:0}
 .scroll,.plotwrap{overflow:visible}
 svg.plot{min-width:0}
 figure,tr,.facts div{break-inside:avoid}
 h2,h3{break-after:avoid}
 #over-the-run,#per-minute{break-before:page}
}
"""


def build_report(book, session_id: str, compare: Sequence[str] = ()) -> str:
    """The report of one session (id, unique prefix or ``latest``) as one self-contained HTML page.

    ``compare``: more sessions (ids or prefixes) to set beside it, or ``"runner"`` for every session of the same
    runner up to this one.
    """
    session = _resolve(book, session_id)
    run = _load_run(book, session)
    p = _Plotter()
    parts = [_header(run), _what_changed(run), _plots_section(run, p), _alerts_section(run), _minute_table(run),
             _calibration_section(run)]
    if compare:
        parts.append(_compare_section(book, run, compare, p))
    try:
        from importlib.metadata import version

        ver = version("stackcue")
    except Exception:  # not installed (a source checkout): the report is still good
        ver = "?"
    title = f"stackcue · {session.get('runner') or 'run'} · {_day(session.get('started_epoch'))}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"stackcue {_e(ver)}\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><main>" + "\n".join(parts)
            + f"<footer>stackcue {_e(ver)} · session {_e(run.sid)} · angles in degrees from the standing neutral; "
              "form feedback for coaching, not a medical assessment.</footer></main></body></html>\n")


def write_report(book, session_id: str, output: str | os.PathLike, compare: Sequence[str] = ()) -> Path:
    """Build the report and write it to ``output`` (whole or not at all: a temporary file then a rename)."""
    out = Path(output)
    if not out.parent.is_dir():
        raise ReportError(f"{out}: the folder {out.parent} does not exist")
    text = build_report(book, session_id, compare)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"{out}: cannot write ({exc.strerror})") from None
    return out


# ---------------------------------------------------------------------------------------------- the command

def add_parser(subparsers) -> argparse.ArgumentParser:
    """``stackcue report``'s arguments (the CLI wires ``cmd_report`` to it)."""
    r = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a logged session for the coach",
        description="One HTML file (no network needed): posture over the run with the alerts, distributions, a "
                    "per-minute table, time in each alert state, the calibration and thresholds used, and what "
                    "changed as the runner tired.")
    r.add_argument("session", metavar="SESSION", help="session id, a unique prefix of it, or 'latest'")
    r.add_argument("-o", "--output", metavar="FILE", help="HTML file to write (default: report-<session>.html here)")
    logbook_options(r)
    r.add_argument("--compare", nargs="+", metavar="SESSION", default=[],
                   help="sessions to set beside this one, or 'runner' for all of this runner's sessions up to it "
                        "(put SESSION before --compare)")
    return r


def cmd_report(args: argparse.Namespace) -> int:
    from .config import load_config
    from .session_store import open_logbook

    t0 = time.monotonic()
    book = open_logbook(load_config(args.config), args.logbook)
    try:
        session = _resolve(book, args.session)
        out = Path(args.output) if args.output else Path(f"report-{session['id']}.html")
        path = write_report(book, session["id"], out, args.compare)
    finally:
        book.close()
    print(f"wrote {path} ({path.stat().st_size / 1000:.0f} kB) in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0
