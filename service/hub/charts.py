"""Small server-side SVG charts for the hub's runner page (weekly trends).

Hand-drawn SVG rather than the report's matplotlib: a runner page must render in well under a second with 200
sessions behind it, and matplotlib's import alone costs about that. The SVG is inline (no script, no request),
its text is escaped, and it scales with the page (viewBox).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

W, H = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 24, 34


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + 1e-9:
        out.append(round(v, 6))
        v += step
    return out


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    unit: str,
    title: str,
    y_range: tuple[float, float] | None = None,
    chart_id: str = "",
) -> Markup:
    """One chart: x = ``labels`` (weeks), each series (name, values with None for a gap, colour) as a line with dots.

    ``y_range`` fixes the axis (a percentage: 0..100); otherwise it spans the data, zero included.
    """
    values = [v for _, vs, _ in series for v in vs if v is not None and math.isfinite(v)]
    if y_range is not None:
        lo, hi = y_range
    elif values:
        lo, hi = min(0.0, *values), max(0.0, *values)
        pad = max((hi - lo) * 0.1, 1.0)
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = -1.0, 1.0
    n = max(len(labels), 1)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (pw * (i + 0.5) / n)

    def y(v: float) -> float:
        return TOP + ph * (1 - (v - lo) / (hi - lo))

    out = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{LEFT}" y="15" class="ct">{escape(title)}</text>',
    ]
    for t in _ticks(lo, hi):
        yy = y(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" class="tick" text-anchor="end">{t:g}{escape(unit)}</text>')
    every = max(1, math.ceil(n / 8))
    for i, lab in enumerate(labels):
        if i % every == 0 or i == n - 1:
            out.append(f'<text x="{x(i):.1f}" y="{H - 12}" class="tick" text-anchor="middle">{escape(lab)}</text>')
    legend_x = W - RIGHT
    for name, vs, colour in reversed(series):
        legend_x -= 8 + 7 * len(name) + 14
        out.append(f'<circle cx="{legend_x + 5}" cy="11" r="4" fill="{escape(colour)}"/>')
        out.append(f'<text x="{legend_x + 13}" y="15" class="tick">{escape(name)}</text>')
        run: list[str] = []
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                if len(run) > 1:
                    out.append(
                        f'<polyline points="{" ".join(run)}" fill="none" stroke="{escape(colour)}" stroke-width="2"/>'
                    )
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{escape(colour)}">'
                f"<title>{escape(labels[i])}: {v:.1f}{escape(unit)}</title></circle>"
            )
        if len(run) > 1:
            out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{escape(colour)}" stroke-width="2"/>')
    if not values:
        out.append(f'<text x="{W / 2}" y="{H / 2}" class="tick" text-anchor="middle">no data yet</text>')
    out.append("</svg>")
    return Markup("".join(out))
