"""The yardstick of `analyze` (issue 18): numpy `loadtxt` + `vqf.offlineVQF` on both sensors of one CSV.

What a user would write by hand to get orientations out of a recording: parse the exchange CSV with numpy and
run VQF's offline filter on the pelvis and on the trunk's valid rows. Run as a whole process beside
`stackcue analyze FILE --jsonl` (bench_analyze.py times the two in turn and prints their ratio).
Usage: reference_floor.py FILE
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from vqf import offlineVQF


def floor(csv: Path) -> int:
    """Parse ``csv`` and filter both sensors; returns the number of rows (so the work cannot be skipped)."""
    text = [ln for ln in csv.read_text().splitlines() if not ln.startswith("#")][1:]
    data = np.loadtxt(
        io.StringIO("\n".join(ln.replace(",,,,,,", ",nan,nan,nan,nan,nan,nan") for ln in text)), delimiter=","
    )
    del text
    ts = float(np.median(np.diff(data[:, 0])))
    offlineVQF(np.ascontiguousarray(data[:, 4:7]), np.ascontiguousarray(data[:, 1:4]), None, ts)
    if data.shape[1] > 7:
        ok = np.isfinite(data[:, 7])
        offlineVQF(np.ascontiguousarray(data[ok, 10:13]), np.ascontiguousarray(data[ok, 7:10]), None, ts)
    return len(data)


if __name__ == "__main__":
    print(floor(Path(sys.argv[1])))
