"""Summary statistics of one stride figure, shared by the pipeline's summary and the reports.

One function, so a report of a session without a summary (cut off by a pulled battery) computes its figures
exactly as the pipeline would have.
"""

from __future__ import annotations

import numpy as np


def describe(x: np.ndarray, nd: int | None = None) -> dict[str, float] | None:
    """Mean, sd (population), 10th and 90th percentile of the finite values of ``x`` (shape (N,)); None if none.

    ``nd``: round each figure to that many decimals (the summary event stores 2), or keep them whole.
    """
    x = x[np.isfinite(x)]
    if not len(x):
        return None
    out = {"mean": x.mean(), "sd": x.std(), "p10": np.percentile(x, 10), "p90": np.percentile(x, 90)}
    return {k: float(v) if nd is None else round(float(v), nd) for k, v in out.items()}
