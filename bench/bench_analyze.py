"""Benchmark: `analyze` of a 60-minute, 200 Hz, two-sensor recording.

Beside it, the floor a user would compare against: numpy's loadtxt plus
vqf.offlineVQF alone on the same file. Figures are printed, not asserted.
"""

from __future__ import annotations

import io
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recording import bench_recording  # noqa: E402

from stackcue.service.analyze import analyze_file  # noqa: E402
from stackcue.service.config import load_config  # noqa: E402

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0


def main() -> None:
    csv = bench_recording(MINUTES)
    size_mb = csv.stat().st_size / 1e6
    cfg = load_config()

    t0 = time.perf_counter()
    events = analyze_file(csv, cfg, jsonl=True, out=io.StringIO(), err=sys.stderr, progress=False)
    t_analyze = time.perf_counter() - t0
    summ = events[-1]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    from vqf import offlineVQF

    t0 = time.perf_counter()
    text = [ln for ln in csv.read_text().splitlines() if not ln.startswith("#")][1:]
    data = np.loadtxt(
        io.StringIO("\n".join(ln.replace(",,,,,,", ",nan,nan,nan,nan,nan,nan") for ln in text)), delimiter=","
    )
    t_load = time.perf_counter() - t0
    ts = float(np.median(np.diff(data[:, 0])))
    t1 = time.perf_counter()
    offlineVQF(np.ascontiguousarray(data[:, 4:7]), np.ascontiguousarray(data[:, 1:4]), None, ts)
    ok = np.isfinite(data[:, 7])
    offlineVQF(np.ascontiguousarray(data[ok, 10:13]), np.ascontiguousarray(data[ok, 7:10]), None, ts)
    t_vqf = time.perf_counter() - t1

    print(f"file: {csv.name}, {size_mb:.0f} MB, {len(data)} rows, {MINUTES:g} min at 200 Hz, pelvis + trunk")
    print(
        f"stackcue analyze: {t_analyze:.1f} s ({summ['strides']} strides, {summ['alerts']} alerts), "
        f"peak RSS {rss_mb:.0f} MB"
    )
    print(f"floor: loadtxt {t_load:.1f} s + offlineVQF x2 {t_vqf:.1f} s = {t_load + t_vqf:.1f} s")


if __name__ == "__main__":
    main()
