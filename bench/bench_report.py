"""Benchmark: `stackcue report` of a 30- and a 60-minute session (200 Hz, two sensors): generation time and size.

Each recording is simulated once (kept in out/bench/), analysed into a fresh logbook as `analyze --save` does,
then the report is built and written the way the command does it. Figures are printed, not asserted.
Usage: bench_report.py [MINUTES ...]   (default: 30 60)
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recording import bench_recording  # noqa: E402

from stackcue.service.config import load_config  # noqa: E402
from stackcue.service.logbook import Logbook  # noqa: E402
from stackcue.service.report_html import build_report, write_report  # noqa: E402
from stackcue.service.session_store import store_recording  # noqa: E402

REPEAT = 3  # the best of a few builds: the figure a coach waits for on a quiet machine


def bench(minutes: float, out: Path) -> None:
    csv = bench_recording(minutes)
    book_path = out / f"report_{minutes:g}min.sqlite"
    for p in out.glob(f"{book_path.name}*"):
        p.unlink()
    t0 = time.perf_counter()
    sid, _ = store_recording(
        csv, load_config(), out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(book_path)
    )
    t_store = time.perf_counter() - t0
    html = out / f"report_{minutes:g}min.html"
    with Logbook(book_path) as book:
        s = book.session(sid)
        t0 = time.perf_counter()
        write_report(book, sid, html)  # the first build also imports matplotlib, as the command does
        first = time.perf_counter() - t0
        builds = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            build_report(book, sid)
            builds.append(time.perf_counter() - t0)
        n_strides = len(book.strides(sid))
    size = html.stat().st_size
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exe = Path(sys.executable).parent / "stackcue"  # the whole command: interpreter start, imports, logbook, file
    t0 = time.perf_counter()
    r = subprocess.run(
        [str(exe), "report", sid, "--logbook", str(book_path), "-o", str(html)], capture_output=True, text=True
    )
    t_cli = time.perf_counter() - t0
    cli = f"`stackcue report` end to end {t_cli:.2f} s" if r.returncode == 0 else f"CLI failed: {r.stderr.strip()}"
    print(
        f"{minutes:g} min session ({n_strides} strides, {s['summary']['alerts']} alerts; stored in "
        f"{t_store:.1f} s): report {size / 1000:.0f} kB, first build and write {first:.2f} s (matplotlib "
        f"import included), later builds best {min(builds):.2f} s, {cli}; peak RSS so far {rss:.0f} MB"
    )


def main() -> None:
    out = ROOT / "out" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    for minutes in [float(a) for a in sys.argv[1:]] or [30.0, 60.0]:
        bench(minutes, out)


if __name__ == "__main__":
    main()
