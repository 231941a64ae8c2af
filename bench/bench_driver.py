"""Benchmark: the MPU-6050 driver at 200 Hz, one and two sensors, on the emulated bus.

Prints I2C transactions and bytes per second of data, and the driver's own
CPU time per second of data (time inside the emulated bus subtracted).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackcue.firmware_bridge.clocks import ManualClock
from stackcue.firmware_bridge.emulated.motion import MotionTrack
from stackcue.firmware_bridge.emulated.mpu6050 import EmulatedBus, EmulatedChip
from stackcue.firmware_bridge.mpu6050_source import MPU6050Source

SECONDS = 120.0


class TimedBus:
    """Counts the CPU time spent inside the bus (the emulator), so it can be taken off."""

    def __init__(self, bus: EmulatedBus) -> None:
        self._bus = bus
        self.inside = 0.0

    def __getattr__(self, name):
        attr = getattr(self._bus, name)
        if not callable(attr):
            return attr

        def timed(*a, **k):
            t0 = time.process_time()
            try:
                return attr(*a, **k)
            finally:
                self.inside += time.process_time() - t0

        return timed


def run(trunk: bool, poll_s: float) -> None:
    clock = ManualClock(0.0)
    noise = (0.04, 0.002)
    chips = [EmulatedChip(MotionTrack.still(noise=noise, seed=1), address=0x68, osc_error=0.013)]
    if trunk:
        chips.append(EmulatedChip(MotionTrack.still(noise=noise, seed=2), address=0x69, osc_error=-0.01))
    raw = EmulatedBus(chips, clock=clock)
    bus = TimedBus(raw)
    src = MPU6050Source(i2c=bus, clock=clock, sleep=clock.sleep, trunk="on" if trunk else "off", poll_s=poll_s)
    tx0, by0 = raw.transactions, raw.bytes_transferred
    bus.inside = 0.0
    c0 = time.process_time()
    n = 0
    t_end = clock() + SECONDS
    while clock() < t_end:
        n += len(src.read())
    cpu = time.process_time() - c0
    driver = cpu - bus.inside
    label = f"{'two sensors' if trunk else 'one sensor'}, read every {poll_s * 1000:.0f} ms"
    print(
        f"{label}: {(raw.transactions - tx0) / SECONDS:.0f} transactions/s, "
        f"{(raw.bytes_transferred - by0) / SECONDS:.0f} bytes/s, wire time {raw.bus_time_s / SECONDS * 100:.0f} % "
        f"at 100 kHz; driver CPU {driver / SECONDS * 1000:.2f} ms per s of data "
        f"({n / SECONDS:.1f} rows/s)"
    )


if __name__ == "__main__":
    for trunk in (False, True):
        for poll in (0.02, 0.05):
            run(trunk, poll)
