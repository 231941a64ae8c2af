"""The report's plots: matplotlib figures (object API, Agg) returned as inline SVG text.

The SVG is deterministic for the same data (ids salted per figure, no date in the metadata), text stays text
(``svg.fonttype: none``) so the page's font and search work, and path coordinates are cut to 0.1 pt. matplotlib is
imported when a Plotter is made, never at import time.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from markupsafe import Markup

from stackcue.dsp.alert_kinds import ALERT_KINDS
from stackcue.errors import ReportError

from .report_data import Run, num

if TYPE_CHECKING:
    import numpy as np

#: Shading colour of each alert kind (the same in the plots and the tables).
KIND_COLOURS = {k.name: k.colour for k in ALERT_KINDS.values()}
MOVING_S = 30.0  # the bold line in the time plots: a centred 30-s moving mean of steady strides
GAP_SHADE_S = 10.0  # gaps longer than this are shaded grey; shorter ones are a dotted line
PAUSE_COLOUR = "#4a7fc1"  # paused spans (shaded) and their legend entry
RECAL_COLOUR = "#1d2a6b"  # a re-calibration: a solid vertical line where the calibration in use changed
DEG = "°"

_SVG_ID = re.compile(r'\sid="[A-Za-z][A-Za-z0-9.]*(?:_\d+)+"')  # matplotlib's group ids (figure_1, line2d_3, ...)
_PATH_D = re.compile(r'\bd="([^"]*)"')
_DECIMALS = re.compile(r"(\.\d)\d+")  # path coordinates to 0.1 pt: the long stride lines shrink by a third


class Plotter:
    """Draws figures with matplotlib's object API (no pyplot state) and returns them as inline SVG."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        self.mpl = matplotlib
        self.Figure = Figure
        self.n = 0
        self.rc = {
            "svg.fonttype": "none",
            "font.size": 10,
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "legend.frameon": False,
            "svg.image_inline": True,
            "path.simplify": True,
        }

    def figure(
        self,
        w: float,
        h: float,
        rows: int,
        cols: int = 1,
        top: float = 0.35,
        bottom: float = 0.55,
        left: float = 0.8,
        right: float = 0.25,
        hgap: float = 0.6,
        wgap: float = 0.9,
    ):
        """A figure with a ``rows`` x ``cols`` grid of axes, margins and gaps in inches.

        Fixed margins instead of constrained layout: the same look, a third of the drawing time.
        """
        with self.mpl.rc_context(self.rc):
            fig = self.Figure(figsize=(w, h))
            ah = (h - top - bottom - (rows - 1) * hgap) / rows
            aw = (w - left - right - (cols - 1) * wgap) / cols
            fig.subplots_adjust(
                left=left / w,
                right=1 - right / w,
                top=1 - top / h,
                bottom=bottom / h,
                hspace=hgap / ah,
                wspace=wgap / aw,
            )
            axes = fig.subplots(rows, cols, squeeze=False)
        return fig, axes.ravel()

    def context(self):
        return self.mpl.rc_context(self.rc)

    def svg(self, fig, label: str) -> Markup:
        """The figure as an ``<svg class="plot">`` element, ``label`` its accessible name.

        Returned as Markup: matplotlib wrote it as XML (its text escaped), so the page's template inserts it as
        markup, not as text; only ``label`` is ours to escape, and Markup.format does that.
        """
        self.n += 1
        buf = io.StringIO()
        with self.mpl.rc_context({**self.rc, "svg.hashsalt": f"stackcue-report-{self.n}"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        text = buf.getvalue()
        text = text[text.index("<svg") :]  # no XML declaration or DTD (with its URL) inside HTML
        text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
        text = _SVG_ID.sub("", text)
        text = _PATH_D.sub(lambda m: 'd="' + _DECIMALS.sub(r"\1", m.group(1)).replace("\n", "") + '"', text)
        m = re.search(r'<svg ([^>]*?)width="[\d.]+pt" height="[\d.]+pt"', text)
        if m is None:
            raise ReportError("matplotlib wrote an SVG root without a width and height in pt")
        root = Markup('<svg class="plot" role="img" aria-label="{}" ').format(label) + Markup(m.group(1))
        return root + Markup(text[m.end() :].rstrip())


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


def _series_panel(
    ax,
    run: Run,
    series: Sequence[tuple[str, str]],
    title: str,
    unit: str,
    kinds: Sequence[str],
    gaps: list[tuple[float, float]],
    min_span: float = 6.0,
) -> None:
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
    for p0, p1 in run.pauses:
        ax.axvspan(p0 / 60, p1 / 60, facecolor=PAUSE_COLOUR, alpha=0.16, lw=0, hatch="//", edgecolor=PAUSE_COLOUR)
    for e in run.recalibrations:
        t = num(e.get("t")) / 60
        ax.axvline(t, color=RECAL_COLOUR, lw=1.3)
        label = f" cal {e.get('segment', '?')}"
        ax.text(t, 1.0, label, transform=ax.get_xaxis_transform(), va="top", fontsize=8, color=RECAL_COLOUR)
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


def time_figure(p: Plotter, run: Run) -> str:
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    gaps = [(float(e["t_start"]), float(e["t_end"])) for e in run.events if e.get("type") == "gap"]
    has_drop = np.isfinite(run.col["drop_l"]).any() or np.isfinite(run.col["drop_r"]).any()
    rows = 5 if has_drop else 4
    fig, axes = p.figure(10, 2.1 * rows + 1.5, rows, top=1.0)
    with p.context():
        _series_panel(
            axes[0],
            run,
            [("tilt", "#c0601a")],
            "Pelvic tilt (+ forward, − tucked under)",
            DEG,
            ("anterior_tilt", "posterior_tilt"),
            gaps,
        )
        _series_panel(axes[1], run, [("lean", "#b83232")], "Trunk lean (+ forward)", DEG, ("trunk_lean",), gaps)
        _series_panel(
            axes[2],
            run,
            [("stack", "#16806f")],
            "Stack angle: trunk lean − pelvic tilt (+ ribs ahead, − ribs behind)",
            DEG,
            ("ribs_behind_pelvis", "ribs_ahead_of_pelvis"),
            gaps,
        )
        _series_panel(axes[3], run, [("cadence", "#3a5fa8")], "Cadence", "steps/min", (), gaps, min_span=16.0)
        if has_drop:
            _series_panel(
                axes[4],
                run,
                [("drop_l", "#7a4a9a"), ("drop_r", "#d08a1e")],
                "Pelvic drop in stance (purple: left stance, orange: right stance)",
                DEG,
                ("pelvic_drop",),
                gaps,
            )
        axes[-1].set_xlabel("minutes on the session clock")
        for ax in axes:
            ax.tick_params(labelbottom=True)
        handles = [
            Line2D([], [], color="#555", lw=0.6, alpha=0.6, label="each steady stride"),
            Line2D([], [], color="#555", ls="none", marker="o", ms=3, alpha=0.35, label="unsteady stride"),
            Line2D([], [], color="#555", lw=1.8, label="30-s moving mean"),
            Line2D([], [], color="#555", lw=1.0, ls="--", label="alert threshold"),
            Line2D([], [], color="#888", lw=0.8, ls=":", label="gap in the data"),
        ]
        if run.pauses:
            handles.append(Patch(facecolor=PAUSE_COLOUR, alpha=0.3, hatch="//", edgecolor=PAUSE_COLOUR, label="paused"))
        if run.recalibrations:
            handles.append(Line2D([], [], color=RECAL_COLOUR, lw=1.3, label="re-calibrated (new segment)"))
        kinds = [k for k in KIND_COLOURS if any(pk == k for pk, *_ in run.periods)]
        handles += [Patch(color=KIND_COLOURS[k], alpha=0.35, label=ALERT_KINDS[k].label) for k in kinds]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=9)
    return p.svg(fig, "pelvic tilt, trunk lean, stack angle, cadence and pelvic drop over the run")


def hist_figure(p: Plotter, run: Run) -> str:
    import numpy as np

    fig, axes = p.figure(10, 6.0, 2, 2, top=0.4, bottom=0.6, hgap=0.9)
    c, st = run.col, run.steady
    panels = [
        ("tilt", "Pelvic tilt", ("anterior_tilt", "posterior_tilt"), "#c0601a"),
        ("lean", "Trunk lean", ("trunk_lean",), "#b83232"),
        ("stack", "Stack angle", ("ribs_behind_pelvis", "ribs_ahead_of_pelvis"), "#16806f"),
        ("drop", "Pelvic drop (left and right stance)", ("pelvic_drop",), "#7a4a9a"),
    ]
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


def compare_figure(p: Plotter, rows: list[dict]) -> str:
    import numpy as np

    fig, (a1, a2, a3) = p.figure(10, 6.0, 3, top=0.35, bottom=0.8 if len(rows) > 4 else 0.55, right=1.5)
    x = np.arange(len(rows))
    labels = [r["label"] for r in rows]
    with p.context():
        for key, name, colour in (
            ("tilt", "pelvic tilt", "#c0601a"),
            ("lean", "trunk lean", "#b83232"),
            ("stack", "stack angle", "#16806f"),
        ):
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
