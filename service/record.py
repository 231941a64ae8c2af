"""``stackcue record``: an MPU-6050 run (or the emulated one) to the exchange CSV.

Ctrl-C or SIGTERM ends it cleanly: whatever was read is written and the file
is complete. Rows are flushed to disk every second, so a pulled battery
costs at most the last second.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import numpy as np

from stackcue.dsp.params import GAP_PERIODS
from stackcue.errors import StackcueError, StorageError
from stackcue.firmware_bridge.csv_format import RecordingWriter
from stackcue.firmware_bridge.source import Source

from .live_line import LiveLine
from .report_text import clock


def clock_synchronised() -> str:
    """'yes', 'no' or 'unknown': is the wall clock NTP-synchronised (a Pi often has no RTC)?"""
    try:
        r = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=2
        )
        return {"yes": "yes", "no": "no"}.get(r.stdout.strip(), "unknown")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _Stop(Exception):
    pass


def record(source: Source, out: Path, *, seconds: float | None, runner: str, err: IO[str] | None = None) -> dict:
    """Write ``source`` to ``out`` until ``seconds`` of data, the source's end, or Ctrl-C/SIGTERM."""
    err = err or sys.stderr
    meta = dict(source.meta)
    meta.update(
        {
            "runner": runner,
            "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "clock_synchronised": clock_synchronised(),
        }
    )
    rate = float(meta.get("rate", "200"))
    line = LiveLine(err)
    stats = {"samples": 0, "gaps": 0, "gap_s": 0.0, "trunk_valid": 0, "t_last": None}

    def on_term(signum, frame):
        raise _Stop

    old = signal.signal(signal.SIGTERM, on_term)
    t_flush = time.monotonic()
    try:
        writer = RecordingWriter(out, source.has_trunk, meta)
    except OSError as exc:
        raise StorageError(f"{out}: cannot write ({exc.strerror})") from None
    reason = "source ended"
    try:
        with writer:
            try:
                for block in source:
                    if seconds is not None and len(block) and block.t[0] >= seconds:
                        reason = f"{seconds:g} s recorded"
                        break
                    if seconds is not None and len(block):
                        block = block.slice(0, int(np.searchsorted(block.t, seconds)))
                    if len(block):
                        _count(block, stats, rate)
                        writer.write(block)
                    if time.monotonic() - t_flush >= 1.0:
                        writer.flush()
                        t_flush = time.monotonic()
                    t = stats["t_last"] or 0.0
                    measured = stats["samples"] / t if t > 0 else 0.0
                    trunk = (
                        f"  trunk {100 * stats['trunk_valid'] / max(stats['samples'], 1):.0f}%"
                        if source.has_trunk
                        else ""
                    )
                    status = getattr(source, "status", "")
                    line.show(
                        f"recording {clock(t)}  {measured:6.1f} Hz  samples {stats['samples']}  "
                        f"gaps {stats['gaps']}{trunk}  {status}"
                    )
                    if seconds is not None and t >= seconds - 0.5 / rate:
                        reason = f"{seconds:g} s recorded"
                        break
            except (KeyboardInterrupt, _Stop):
                reason = "stopped by the user"
    except StackcueError:
        raise
    except OSError as exc:  # a full disk: what was flushed (up to a second before) stays in the file
        raise StorageError(
            f"{out}: cannot write ({exc.strerror or exc}); the file keeps the rows written before "
            f"({stats['samples']} samples read)"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, old)
        line.end()
        source.close()
    stats["reason"] = reason
    return stats


def _count(block, stats: dict, rate: float) -> None:
    t = block.t
    prev = stats["t_last"]
    steps = np.diff(t if prev is None else np.concatenate([[prev], t]))
    big = steps > GAP_PERIODS / rate
    stats["gaps"] += int(big.sum())
    stats["gap_s"] += float(steps[big].sum())
    stats["samples"] += len(t)
    stats["t_last"] = float(t[-1])
    if block.has_trunk:
        stats["trunk_valid"] += int(block.trunk_valid.sum())
