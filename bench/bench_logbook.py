"""Benchmark: a 60-minute, 200 Hz, two-sensor session into the logbook as a live run writes it, then read back.

The samples go in one-second chunks with one commit each (a live run's 1 s flushes), so size and cost are
the live ones, not those of `analyze --save` (which hands over bigger chunks and compresses a little better).

Prints the database size per hour, the writer's CPU per second of data (the live sink's cost, measured on
its own thread), the wall time of the save, and the time to re-read every raw sample. Figures are printed,
not asserted. The recording is shared with bench_analyze.py (out/bench/).
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recording import OUT, bench_recording  # noqa: E402

from stackcue.firmware_bridge.replay import ReplaySource  # noqa: E402
from stackcue.service.analyze import AnalysisOutput, replay_session  # noqa: E402
from stackcue.service.config import load_config  # noqa: E402
from stackcue.service.logbook import Logbook, LogbookSink  # noqa: E402

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0


def main() -> None:
    csv = bench_recording(MINUTES)
    db = OUT / "bench_logbook.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cfg = load_config()

    sink = LogbookSink(db, config=cfg.data)

    class EverySecond:
        """One commit per second of data, as the live writer does."""

        def add_block(self, b) -> None:
            for i in range(0, len(b), 200):
                sink.add_block(b.slice(i, i + 200))
                sink.flush(30.0)

    t0 = time.perf_counter()
    events = replay_session(
        ReplaySource(csv),
        cfg,
        output=AnalysisOutput(io.StringIO(), jsonl=True),
        sinks=[sink],
        block_sinks=[EverySecond()],
        session_id="bench",
        runner_id="bench",
    )
    t_save = time.perf_counter() - t0
    summ = events[-1]
    hours = summ["duration_s"] / 3600
    size = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal", "-shm") if Path(f"{db}{s}").exists())
    with Logbook(db) as book:
        t1 = time.perf_counter()
        samples = sum(len(c["t"]) for c in book.raw_chunks("bench"))
        t_read = time.perf_counter() - t1
        strides = len(book.strides("bench"))
        raw_bytes = book.conn.execute("SELECT sum(length(data)) FROM raw_chunks").fetchone()[0]
    print(f"logbook: {summ['duration_s'] / 60:.1f} min, 200 Hz, pelvis + trunk, {samples} samples, {strides} strides")
    print(
        f"  database {size / 1e6:.1f} MB ({size / 1e6 / hours:.1f} MB per hour; raw chunks "
        f"{raw_bytes / 1e6 / hours:.1f} MB/h), {sink.commits} commits, errors {sink.errors}"
    )
    print(
        f"  writer CPU {sink.write_s:.2f} s = {sink.write_s / summ['duration_s'] * 1000:.2f} ms per s of data; "
        f"analyze + save wall {t_save:.1f} s"
    )
    print(f"  read back every raw sample: {t_read:.2f} s")


if __name__ == "__main__":
    main()
