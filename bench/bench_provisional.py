"""Stride previews (issue 17): latency and agreement with the final strides on simulated runs.

Each run is fed as a live source feeds it, in blocks of 0.02 s (``[mpu6050] poll_s``) and 0.05 s (the simulated
and replay sources' ``block_s``). Latency is a preview's ``decided_t`` minus its stride's ``t_end`` (sample
time: what the pipeline adds; a source's own buffering, e.g. ``[ble] decision_delay_s``, comes on top).
Usage: bench_provisional.py [MINUTES]   (default 4)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_provisional import fed

from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate

METRICS = ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg")


def main(minutes: float) -> None:
    for rate, trunk, seed in [(100, True, 2), (200, True, 4), (100, False, 1), (200, False, 3)]:
        run = simulate(SimParams(minutes=minutes, rate_hz=rate, trunk=trunk, seed=seed))
        for block_s in (0.02, 0.05):
            events = fed(run.block, block_s, provisional=True)
            prev = {e["t_start"]: e for e in events if e["type"] == "stride_provisional"}
            final = [e for e in events if e["type"] == "stride"]
            lat = np.array([p["decided_t"] - p["t_end"] for p in prev.values()])
            agree = []
            for k in METRICS:
                d = [abs(f[k] - prev[f["t_start"]][k]) for f in final if f[k] is not None]
                if d:
                    agree.append(f"{k} p95 {np.percentile(d, 95):.3f}°")
            print(
                f"{rate} Hz {'trunk ' if trunk else 'pelvis'} blocks {block_s:.2f} s: {len(prev)} previews "
                f"{len(final)} finals; latency p50 {np.percentile(lat, 50):.3f} p95 {np.percentile(lat, 95):.3f} "
                f"max {lat.max():.3f} s; |preview - final| " + ", ".join(agree)
            )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)
