"""``stackcue probe``: which sensors answer on the bus, and are they healthy?

For each address (0x68 pelvis, 0x69 trunk): chip type, the sample rate it
really makes (its clock is off by up to a few percent), and the noise and
bias of a few seconds at rest, with a verdict a runner can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stackcue.errors import SourceError
from stackcue.firmware_bridge.mpu6050 import MPU6050

CHIP_NAMES = {0x68: "MPU-6050", 0x70: "MPU-6500", 0x71: "MPU-9250", 0x73: "MPU-9255", 0x98: "clone (0x98)"}


@dataclass
class ProbeResult:
    address: int
    found: bool
    message: str
    lines: list[str]
    ok: bool


def probe_address(
    bus,
    address: int,
    *,
    rate_hz: float,
    seconds: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    bus_number: int,
) -> ProbeResult:
    dev = MPU6050(bus, address, rate_hz=rate_hz, clock=clock, sleep=sleep, bus_number=bus_number, retries=1)
    try:
        who = dev.identify()
    except SourceError as exc:
        found = "WHO_AM_I" in str(exc)
        return ProbeResult(address, found, str(exc), [], False)
    dev.start()
    t0 = clock()
    ts, accs, gyrs = [], [], []
    while clock() - t0 < seconds:
        sleep(0.02)
        b = dev.read()
        ts.append(b.t)
        accs.append(b.acc)
        gyrs.append(b.gyr)
    elapsed = clock() - t0
    dev.stop()
    t = np.concatenate(ts)
    acc = np.concatenate(accs)
    gyr = np.degrees(np.concatenate(gyrs))
    n = len(t)
    name = CHIP_NAMES.get(who, f"0x{who:02x}")
    lines = [f"0x{address:02x}: {name} (WHO_AM_I 0x{who:02x}), {n} samples in {elapsed:.1f} s"]
    if n < 10:
        return ProbeResult(address, True, "too few samples arrived", lines, False)
    measured = 1.0 / dev.stamps.period  # the driver's fit of samples against host time
    err_pct = 100 * (measured / dev.rate_hz - 1)
    g = np.linalg.norm(acc.mean(axis=0)) / 9.80665
    acc_noise_mg = acc.std(axis=0) / 9.80665 * 1000
    gyr_noise = gyr.std(axis=0)
    bias = gyr.mean(axis=0)
    lines.append(f"  rate        {measured:7.2f} Hz (nominal {dev.rate_hz:g} Hz, clock {err_pct:+.2f} %)")
    lines.append(f"  gravity     {g:7.3f} g")
    lines.append("  gyro bias   " + "  ".join(f"{v:+6.2f}" for v in bias) + " °/s (removed at calibration)")
    lines.append("  gyro noise  " + "  ".join(f"{v:6.3f}" for v in gyr_noise) + " °/s rms")
    lines.append("  accel noise " + "  ".join(f"{v:6.2f}" for v in acc_noise_mg) + " mg rms")
    problems = []
    if abs(err_pct) > 5:
        problems.append(f"the sample clock is {err_pct:+.1f} % off (more than 5 %)")
    if gyr_noise.max() > 1.0 or acc_noise_mg.max() > 50:
        problems.append("it moved: keep the sensor still while probing")
    elif gyr_noise.max() > 0.2 or acc_noise_mg.max() > 10:
        problems.append("noisier than an MPU-6050 should be at rest (loose mounting or vibration?)")
    if not 0.9 <= g <= 1.1:
        problems.append(f"the accelerometer reads {g:.2f} g at rest (should be 1 g)")
    if np.abs(bias).max() > 20:
        problems.append(f"gyro bias {np.abs(bias).max():.0f} °/s is beyond the datasheet's ±20 °/s")
    verdict = "OK: ready to run" if not problems else "CHECK: " + "; ".join(problems)
    lines.append(f"  verdict     {verdict}")
    return ProbeResult(address, True, verdict, lines, not problems)
