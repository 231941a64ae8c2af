"""Benchmark: every coach's command on one stored session (60 minutes, 200 Hz, two sensors), as whole processes.

Issue 18's targets, printed with PASS/FAIL (bench/timing.py: medians of 3 runs after one uncounted):

* `stackcue export --format fit` <= 1.5 s and <= 100 MB peak RSS;
* `stackcue report` <= 1.5 s end to end and <= 150 MB peak;
* every command on the session <= 150 MB peak.

Usage: bench_commands.py [MINUTES]   (default 60)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_analyze import EXE, stored  # noqa: E402
from recording import bench_recording  # noqa: E402
from timing import measure, verdict  # noqa: E402

PEAK_MAX_MB = 150.0
#: command -> (wall s, peak MB) bounds of its own, beside the 150 MB of every command
OWN = {"export fit": (1.5, 100.0), "report": (1.5, 150.0)}


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    csv = bench_recording(minutes)
    book = str(stored(csv))
    tmp = Path(tempfile.mkdtemp(prefix="stackcue-bench-"))
    fresh = tmp / "import.sqlite"
    commands = {
        # a new logbook each run: rm in the shell, then exec: the figures are the command's
        "import": ["sh", "-c", f'rm -f "{fresh}"*; exec "{EXE}" import "{csv}" --logbook "{fresh}"'],
        "analyze --session": [EXE, "analyze", "--session", "latest", "--logbook", book, "--no-progress"],
        "sessions": [EXE, "sessions", "--logbook", book],
        "report": [EXE, "report", "latest", "--logbook", book, "-o", str(tmp / "r.html")],
        "export fit": [EXE, "export", "latest", "--format", "fit", "-o", str(tmp / "r.fit"), "--logbook", book],
        "export csv strides": [EXE, "export", "latest", "--format", "csv", "-o", str(tmp / "s.csv"), "--logbook", book],
        "export csv samples": [
            *(EXE, "export", "latest", "--format", "csv", "--what", "samples"),
            *("-o", str(tmp / "samples.csv"), "--logbook", book),
        ],
        "export jsonl": [EXE, "export", "latest", "--format", "jsonl", "-o", str(tmp / "e.jsonl"), "--logbook", book],
    }
    print(f"session: {csv.name} stored in {Path(book).name} ({minutes:g} min, 200 Hz, pelvis + trunk)")
    worst = 0.0
    for name, cmd in commands.items():
        s = measure(cmd, n=3 if name in OWN else 1)
        worst = max(worst, s.peak_mb)
        line = f"stackcue {name}: {s.wall_s:.2f} s wall, {s.cpu_s:.2f} s CPU, peak {s.peak_mb:.0f} MB"
        if name in OWN:
            wall_max, peak_max = OWN[name]
            line += (
                f" | {verdict(s.wall_s <= wall_max)} <= {wall_max} s,"
                f" {verdict(s.peak_mb <= peak_max)} <= {peak_max:.0f} MB"
            )
        print(line)
    print(f"{verdict(worst <= PEAK_MAX_MB)} every command <= {PEAK_MAX_MB:.0f} MB peak (largest {worst:.0f} MB)")


if __name__ == "__main__":
    main()
