"""Issue 18's output check: `analyze --jsonl` of two checkouts, byte for byte, on the same recordings.

Usage: compare_analyze.py STACKCUE_A STACKCUE_B [CSV ...]

STACKCUE_A / B are two `stackcue` commands (e.g. the code before a change, from a clone, and after it). The
recordings are three simulated runs (seeds 1, 2 and 3: 10, 12 and 8 minutes, two with a trunk), written once
by A's `simulate` into out/bench/compare/, and any CSV given. Prints SAME or DIFFERENT (with the first line that
differs) for each, and exits 1 if any differs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench" / "compare"
RUNS = [(1, 10, True), (2, 12, False), (3, 8, True)]


def recordings(exe: str) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, minutes, trunk in RUNS:
        csv = OUT / f"sim_seed{seed}_{minutes}min{'_trunk' if trunk else ''}.csv"
        if not csv.exists():
            cmd = [exe, "simulate", "-o", str(csv), "--seed", str(seed), "--minutes", str(minutes)]
            subprocess.run([*cmd, *(["--trunk"] if trunk else [])], check=True, capture_output=True)
        paths.append(csv)
    return paths


def analyze(exe: str, csv: Path) -> bytes:
    cmd = [exe, "analyze", str(csv), "--jsonl", "--no-progress"]
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    a, b = sys.argv[1], sys.argv[2]
    differ = 0
    for csv in [*recordings(a), *(Path(p) for p in sys.argv[3:])]:
        out_a, out_b = analyze(a, csv), analyze(b, csv)
        if out_a == out_b:
            print(f"SAME {csv.name}: {len(out_a.splitlines())} lines, {len(out_a)} bytes")
            continue
        differ += 1
        lines_a, lines_b = out_a.splitlines(), out_b.splitlines()
        first = next(
            (i for i, (x, y) in enumerate(zip(lines_a, lines_b, strict=False)) if x != y),
            min(len(lines_a), len(lines_b)),
        )
        print(f"DIFFERENT {csv.name}: {len(lines_a)} vs {len(lines_b)} lines; first difference at line {first + 1}")
        for name, lines in (("A", lines_a), ("B", lines_b)):
            print(f"  {name}: {lines[first][:300].decode(errors='replace') if first < len(lines) else '(none)'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
