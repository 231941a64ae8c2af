"""Summary statistics of one stride figure, shared by the pipeline's summary and the reports.

One function, so a report of a session without a summary (cut off by a pulled battery) computes its figures
exactly as the pipeline would have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def median(values: Iterable[float]) -> float:
    """``np.median`` of a few numbers, bit for bit (the mean of the two middle ones for an even count; NaN if any
    is NaN), in plain Python: the pipeline takes several medians of a handful of values per stride, where
    np.median's array set-up cost 0.7 s of a 60-minute `analyze` (issue 18)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0 or any(math.isnan(x) for x in xs):
        return math.nan
    h = n // 2
    return float(xs[h]) if n % 2 else float((xs[h - 1] + xs[h]) / 2)


def describe(x: np.ndarray, nd: int | None = None) -> dict[str, float] | None:
    """Mean, sd (population), 10th and 90th percentile of the finite values of ``x`` (shape (N,)); None if none.

    ``nd``: round each figure to that many decimals (the summary event stores 2), or keep them whole.
    """
    x = x[np.isfinite(x)]
    if not len(x):
        return None
    out = {"mean": x.mean(), "sd": x.std(), "p10": np.percentile(x, 10), "p90": np.percentile(x, 90)}
    return {k: float(v) if nd is None else round(float(v), nd) for k, v in out.items()}
