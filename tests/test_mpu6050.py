"""The MPU-6050 driver against the register-level emulator, faults included."""

from __future__ import annotations

import numpy as np
import pytest

from stackcue.errors import SourceError
from stackcue.firmware_bridge.clocks import ManualClock
from stackcue.firmware_bridge.emulated.motion import G_STANDARD, MotionTrack
from stackcue.firmware_bridge.emulated.mpu6050 import EmulatedBus, EmulatedChip
from stackcue.firmware_bridge.mpu6050 import (
    ACCEL_CONFIG,
    CONFIG,
    FIFO_EN,
    GYRO_CONFIG,
    INT_ENABLE,
    MPU6050,
    PWR_MGMT_1,
    SMPLRT_DIV,
    USER_CTRL,
    check_rate,
    dlpf_for,
)
from stackcue.firmware_bridge.mpu6050_source import EmulatedSource, MPU6050Source

DEG = np.pi / 180


def wavy(seconds: float = 400.0) -> MotionTrack:
    """Slow, distinct motion on every axis: a misaligned or corrupted frame cannot pass for a good one."""
    t = np.arange(0, seconds, 0.001)
    acc = np.column_stack(
        [
            2.0 + np.sin(2 * np.pi * 0.3 * t),
            -3.0 + 0.5 * np.cos(2 * np.pi * 0.2 * t),
            9.0 + 0.3 * np.sin(2 * np.pi * 0.1 * t),
        ]
    )
    gyr = np.column_stack(
        [0.5 * np.sin(2 * np.pi * 0.25 * t), -0.3 + 0.2 * np.cos(2 * np.pi * 0.15 * t), 0.8 * np.ones_like(t)]
    )
    return MotionTrack(t, acc, gyr)


def rig(motion=None, *, osc_error=0.0, nack_rate=0.0, seed=0, **chip_kw):
    clock = ManualClock(50.0)
    chip = EmulatedChip(motion or MotionTrack.still(), osc_error=osc_error, **chip_kw)
    bus = EmulatedBus([chip], clock=clock, nack_rate=nack_rate, seed=seed)
    dev = MPU6050(bus, clock=clock, sleep=clock.sleep)
    return clock, chip, bus, dev


def run_for(clock, dev, seconds, poll=0.02, seed=1):
    rng = np.random.default_rng(seed)
    ts, accs, gyrs = [], [], []
    end = clock() + seconds
    while clock() < end:
        clock.sleep(poll + rng.uniform(0, 0.4 * poll))  # scheduling jitter
        b = dev.read()
        ts.append(b.t)
        accs.append(b.acc)
        gyrs.append(b.gyr)
    return np.concatenate(ts), np.concatenate(accs), np.concatenate(gyrs)


def test_configuration_registers_as_specified():
    clock, chip, bus, dev = rig()
    dev.start()
    regs = {
        r: chip.peek(r)
        for r in (PWR_MGMT_1, CONFIG, SMPLRT_DIV, GYRO_CONFIG, ACCEL_CONFIG, FIFO_EN, INT_ENABLE, USER_CTRL)
    }
    assert regs == {
        PWR_MGMT_1: 0x01,  # awake, clock from the X gyro PLL
        CONFIG: 3,  # DLPF 44 Hz: well under half of 200 Hz
        SMPLRT_DIV: 4,  # 1 kHz / (1 + 4) = 200 Hz
        GYRO_CONFIG: 2 << 3,
        ACCEL_CONFIG: 2 << 3,  # ±1000 °/s, ±8 g
        FIFO_EN: 0x78,  # gyro XYZ + accel
        INT_ENABLE: 0x11,
        USER_CTRL: 0x40,
    }
    assert chip.sample_rate_hz == pytest.approx(200.0)
    dev.stop()
    assert chip.peek(PWR_MGMT_1) & 0x40  # asleep


def test_rates_and_low_pass_choice():
    assert check_rate(1000) == 0 and check_rate(200) == 4 and check_rate(50) == 19
    with pytest.raises(SourceError, match=r"cannot sample at 150 Hz.*nearest: 142\.857"):
        check_rate(150)
    with pytest.raises(SourceError, match="nearest: 50 Hz"):
        check_rate(30)
    for rate in (1000, 500, 200, 100, 50):
        bw = {1: 184, 2: 94, 3: 44, 4: 21, 5: 10, 6: 5}[dlpf_for(rate)]
        assert bw <= rate / 4


def test_rate_and_timestamps_follow_the_chip_clock_not_the_nominal_rate():
    clock, chip, bus, dev = rig(osc_error=0.013)
    dev.start()
    t, _, _ = run_for(clock, dev, 120.0)
    true_period = 1.0 / (200.0 * 1.013)
    est_period = (t[-1] - t[0]) / (len(t) - 1)
    assert abs(est_period / true_period - 1) < 0.005
    assert abs(len(t) / 120.0 / (200 * 1.013) - 1) < 0.005  # every sample delivered
    d = np.diff(t)
    assert d.min() > 0.9 * true_period and d.max() < 1.1 * true_period  # no jumps
    # no drift: timestamps stay on a straight line of the true period
    resid = t - (t[0] + np.arange(len(t)) * true_period)
    assert np.ptp(resid[len(t) // 10 :]) < 0.003


def test_scaled_values_exact_for_a_known_motion():
    acc_counts = np.array([1234, -2048, 3900])
    gyr_counts = np.array([328, -164, 3280])
    acc = acc_counts / 4096 * G_STANDARD
    gyr = gyr_counts / 32.8 * DEG
    clock, chip, bus, dev = rig(MotionTrack.still(acc=acc, gyr=gyr))
    dev.start()
    clock.sleep(1.0)  # the low-pass settles
    dev.read()
    clock.sleep(0.1)
    b = dev.read()
    assert len(b) == 20
    np.testing.assert_allclose(b.acc, np.tile(acc, (20, 1)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.gyr, np.tile(gyr, (20, 1)), rtol=0, atol=1e-12)


def correct_fraction(t, acc, gyr, motion, clock_offset):
    ea, eg = motion.sample(t + clock_offset)
    ok = (np.abs(acc - ea).max(axis=1) < 0.05) & (np.abs(gyr - eg).max(axis=1) < 0.01)
    return float(ok.mean())


def test_two_percent_failing_transactions():
    motion = wavy()
    clock, chip, bus, dev = rig(motion, nack_rate=0.02, seed=3)
    dev.start()
    t, acc, gyr = run_for(clock, dev, 120.0)
    expected = 120.0 * 200
    delivered = len(t) / expected
    # compare each frame with the motion at its time (the track's time 0 is the bus's epoch on the same clock)
    frac = correct_fraction(t, acc, gyr, motion, -bus.epoch)
    assert bus.failures > 0.015 * bus.transactions
    assert delivered >= 0.90, delivered
    assert frac >= 0.995, frac


def test_bus_hang_between_count_and_frames_overflows_without_misalignment():
    motion = wavy()
    clock, chip, bus, dev = rig(motion, report_overflow=False)  # and the chip hides the overflow bit
    dev.start()
    struck = []
    t_strike = clock() + 20.0

    def hook(kind, addr, reg):
        if reg == 0x74 and clock() > t_strike and not struck:
            struck.append(clock())
            clock.advance(0.8)  # the bus stalls after FIFO_COUNT was read: 0.8 s = 1920 bytes > 1024

    bus.on_transaction = hook
    t, acc, gyr = run_for(clock, dev, 40.0)
    assert struck and chip.fifo_bytes_lost > 0
    assert correct_fraction(t, acc, gyr, motion, -bus.epoch) == 1.0  # nothing misaligned emitted
    steps = np.diff(t)
    assert steps.max() > 2.5 / 200  # the lost span is a visible gap
    assert dev.stats.overflows >= 1


def test_overflow_reported_by_the_chip_resets_and_gaps():
    motion = wavy()
    clock, chip, bus, dev = rig(motion)
    dev.start()
    run_for(clock, dev, 5.0)
    clock.advance(1.0)  # the host stalls: the FIFO overflows
    t, acc, gyr = run_for(clock, dev, 5.0)
    assert dev.stats.overflows == 1
    assert correct_fraction(t, acc, gyr, motion, -bus.epoch) == 1.0


def test_absent_chip_is_a_clear_error_within_two_seconds():
    clock = ManualClock(0.0)
    bus = EmulatedBus([], clock=clock)
    dev = MPU6050(bus, clock=clock, sleep=clock.sleep)
    with pytest.raises(SourceError) as exc:
        dev.start()
    msg = str(exc.value)
    assert "no MPU-6050 answers on I2C bus 1 address 0x68" in msg and "\n" not in msg
    assert clock() <= 2.5


def test_wrong_chip_names_the_value_and_the_setting():
    clock, chip, bus, dev = rig(who_am_i=0x98)
    with pytest.raises(SourceError, match=r"WHO_AM_I is 0x98, not an MPU-6050 \(0x68\).*accept_who_am_i = \[0x98\]"):
        dev.start()
    ok = MPU6050(bus, clock=clock, sleep=clock.sleep, accept_who_am_i=(0x98,))
    ok.start()
    clock.sleep(0.1)
    assert len(ok.read()) > 10


def test_chip_lost_mid_run_is_reported_and_comes_back_without_busy_loop():
    motion = wavy()
    clock, chip, bus, dev = rig(motion)
    dev.start()
    run_for(clock, dev, 5.0)
    bus.remove_chip(0x68)
    n0 = bus.transactions
    t_lost, _, _ = run_for(clock, dev, 20.0)
    assert len(t_lost) == 0
    assert "unreachable" in dev.status and "0x68" in dev.status
    assert bus.transactions - n0 < 200  # 20 s of polling: retries are spaced, not a busy loop
    bus.add_chip(chip)
    t, acc, gyr = run_for(clock, dev, 10.0)
    assert dev.status == "streaming" and len(t) > 1500
    assert correct_fraction(t, acc, gyr, motion, -bus.epoch) == 1.0


def test_two_sensors_form_one_aligned_source():
    clock = ManualClock(10.0)
    pel, tr = wavy(), MotionTrack.still(acc=(0.0, 9.80665, 0.0), gyr=(0.1, 0.2, 0.3))
    bus = EmulatedBus(
        [EmulatedChip(pel, address=0x68, osc_error=0.01), EmulatedChip(tr, address=0x69, osc_error=-0.01)], clock=clock
    )
    src = MPU6050Source(i2c=bus, clock=clock, sleep=clock.sleep)
    assert src.has_trunk
    blocks = [src.read() for _ in range(500)]
    t = np.concatenate([b.t for b in blocks])
    valid = np.concatenate([b.trunk_valid for b in blocks])
    tacc = np.concatenate([b.trunk_acc for b in blocks])
    assert np.all(np.diff(t) > 0)
    late = t > t[0] + 0.5  # the trunk chip starts a moment after the pelvis one
    assert valid[late].all()
    np.testing.assert_allclose(tacc[valid], np.tile([0, 9.80665, 0], (valid.sum(), 1)), atol=0.01)
    assert not valid[~late].all()  # rows before the trunk's first sample are marked, not invented
    src.close()


@pytest.mark.slow
def test_emulated_runner_end_to_end(tmp_path):
    """Recorded from emulated chips, analysed: the posture figures of the motion fed in."""
    import io

    from truthcheck import rmse, stride_truth, true_cadence

    from stackcue.service.analyze import analyze_file
    from stackcue.service.config import load_config
    from stackcue.service.record import record

    clock = ManualClock(0.0)
    src = EmulatedSource(minutes=2.5, trunk="on", seed=5, clock=clock, nack_rate=0.005)
    out = tmp_path / "emu.csv"
    stats = record(src, out, seconds=None, runner="emu", err=io.StringIO())
    assert stats["samples"] > 20000
    events = analyze_file(out, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    strides = [e for e in events if e["type"] == "stride" and e["steady"]]
    assert len(strides) > 100
    truth, info = src.run.truth, src.run.info
    # the emulator's clock starts at 0 with the simulation; the recording's t is since the source started
    shift = src.t0
    moved = [dict(s, t_start=s["t_start"] + shift, t_end=s["t_end"] + shift) for s in strides]
    tt = [stride_truth(truth, s) for s in moved]
    for f in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"):
        est = [s[f] for s in strides if s[f] is not None]
        tru = [x[f] for s, x in zip(strides, tt, strict=True) if s[f] is not None]
        assert rmse(est, tru) <= 1.0, f
    cad = [abs(s["cadence_spm"] - true_cadence(info, m)) for s, m in zip(strides, moved, strict=True)]
    assert max(cad) <= 2.0
