"""Benchmark: `analyze` of a 200 Hz recording against its yardstick, numpy `loadtxt` + `vqf.offlineVQF`.

Issue 18's targets, each measured as whole processes run in turn (bench/timing.py) and printed with PASS/FAIL:

* `stackcue analyze FILE --jsonl` <= 1.5x the yardstick (bench/reference_floor.py) on the same file;
* `stackcue analyze --session ID --jsonl` (re-analysis from the logbook) <= 1.5x the same yardstick;
* each <= 150 MB peak RSS (every command on a 60-minute session).

Usage: bench_analyze.py [MINUTES [pelvis]]   (default 60 minutes, two sensors; `pelvis`: one sensor)
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from recording import OUT, bench_recording  # noqa: E402
from timing import paired, verdict  # noqa: E402

RATIO_MAX = 1.5
PEAK_MAX_MB = 150.0
EXE = str(Path(sys.executable).parent / "stackcue")


def stored(csv: Path) -> Path:
    """A logbook holding ``csv`` as a session (`analyze --save`), made once beside the recording."""
    book = OUT / f"{csv.stem}.sqlite"
    if not book.exists():
        from stackcue.service.config import load_config
        from stackcue.service.session_store import store_recording

        part = book.with_suffix(".part")
        for p in OUT.glob(f"{part.name}*"):
            p.unlink()
        store_recording(csv, load_config(), out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(part))
        part.rename(book)
    return book


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    trunk = not (len(sys.argv) > 2 and sys.argv[2] == "pelvis")
    csv = bench_recording(minutes, trunk=trunk)
    what = "pelvis + trunk" if trunk else "pelvis"
    print(f"file: {csv.name}, {csv.stat().st_size / 1e6:.0f} MB, {minutes:g} min at 200 Hz, {what}")
    floor = [sys.executable, str(ROOT / "bench" / "reference_floor.py"), str(csv)]
    book = stored(csv)
    for name, cmd in (
        ("stackcue analyze FILE --jsonl", [EXE, "analyze", str(csv), "--jsonl", "--no-progress"]),
        (
            "stackcue analyze --session --jsonl",
            [EXE, "analyze", "--session", "latest", "--logbook", str(book), "--jsonl", "--no-progress"],
        ),
    ):
        a, b, ratio = paired(cmd, floor, n=3)
        print(
            f"{name}: {a.wall_s:.2f} s wall, {a.cpu_s:.2f} s CPU, peak {a.peak_mb:.0f} MB | loadtxt + offlineVQF: "
            f"{b.wall_s:.2f} s wall, peak {b.peak_mb:.0f} MB | ratio {ratio:.2f} (median of {a.runs} pairs)"
        )
        print(f"  {verdict(ratio <= RATIO_MAX)} ratio <= {RATIO_MAX}")
        print(f"  {verdict(a.peak_mb <= PEAK_MAX_MB)} peak <= {PEAK_MAX_MB:.0f} MB")


if __name__ == "__main__":
    main()
