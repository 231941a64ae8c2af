"""The benchmarks' shared recording: a synthetic run at 200 Hz with two sensors, simulated once into out/bench/."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "out" / "bench"


def bench_recording(minutes: float, trunk: bool = True) -> Path:
    """out/bench/run_<minutes>min_200hz_trunk.csv (or ..._pelvis.csv), simulated (seed 11) the first time."""
    OUT.mkdir(parents=True, exist_ok=True)
    csv = OUT / f"run_{minutes:g}min_200hz_{'trunk' if trunk else 'pelvis'}.csv"
    if not csv.exists():
        # in a child process: the simulation's memory must not count in the benchmark's peak RSS
        t0 = time.perf_counter()
        exe = str(Path(sys.executable).parent / "stackcue")
        subprocess.run(
            [exe, "simulate", "-o", str(csv), "--minutes", f"{minutes:g}", "--rate", "200", "--seed", "11"]
            + (["--trunk"] if trunk else []),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"simulated and wrote {csv.name} in {time.perf_counter() - t0:.1f} s")
    return csv
