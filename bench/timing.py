"""Whole-process timing for the benchmarks: wall time, CPU and peak RSS of a command, and paired ratios.

A command is timed from outside, start-up and imports included, as a user waits for it: wall time on a
monotonic clock around the child, CPU (user + system) and peak resident memory from the kernel's accounting of
the finished child (``os.wait4``; the same figures as ``/usr/bin/time -v``). Two commands compared run in
turn, A B A B ..., and their ratio is taken pair by pair, so a machine whose speed drifts (other work on it)
moves both sides of each ratio alike; the median of each figure is reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_mb: float  # MiB, the child's own peak resident set


def run(cmd: list[str]) -> Run:
    """Run ``cmd`` once (output thrown away); raises if it fails."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    err = p.stderr.read()
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err.decode(errors='replace')[-500:]}")
    return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)


@dataclass
class Summary:
    """Medians over the runs."""

    wall_s: float
    cpu_s: float
    peak_mb: float
    runs: int


def summary(runs: list[Run]) -> Summary:
    return Summary(
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.cpu_s for r in runs),
        statistics.median(r.peak_mb for r in runs),
        len(runs),
    )


def measure(cmd: list[str], n: int = 3, warmup: int = 1) -> Summary:
    """``cmd`` run ``warmup`` times uncounted (file cache, byte-code), then ``n`` times."""
    for _ in range(warmup):
        run(cmd)
    return summary([run(cmd) for _ in range(n)])


def paired(a: list[str], b: list[str], n: int = 3, warmup: int = 1) -> tuple[Summary, Summary, float]:
    """A and B in turn ``n`` times each (after ``warmup`` uncounted pairs); the median of the A/B wall ratios."""
    for _ in range(warmup):
        run(a)
        run(b)
    ra, rb = [], []
    for _ in range(n):
        ra.append(run(a))
        rb.append(run(b))
    ratio = statistics.median(x.wall_s / y.wall_s for x, y in zip(ra, rb, strict=True))
    return summary(ra), summary(rb), ratio


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
