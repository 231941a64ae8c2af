"""The register-level MPU-6050 emulator: register map behaviour, timing, FIFO traps and bus faults."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import smbus2

from stackcue.firmware_bridge.emulated.motion import G_STANDARD as G
from stackcue.firmware_bridge.emulated.motion import MotionTrack
from stackcue.firmware_bridge.emulated.mpu6050 import (
    ACCEL_CONFIG,
    ACCEL_XOUT_H,
    CONFIG,
    FIFO_COUNT_H,
    FIFO_COUNT_L,
    FIFO_EN,
    FIFO_R_W,
    GYRO_CONFIG,
    INT_ENABLE,
    INT_STATUS,
    PWR_MGMT_1,
    SMPLRT_DIV,
    USER_CTRL,
    WHO_AM_I,
    EmulatedBus,
    EmulatedChip,
    FakeClock,
)

A = 0x68
DEG = np.pi / 180.0


def _bus(motion=None, **chip_kw):
    clock = FakeClock(1000.0)
    chip = EmulatedChip(motion or MotionTrack.still(), **chip_kw)
    return EmulatedBus([chip], clock=clock), clock, chip


def _start(bus, *, cfg=3, div=0, gyro_fs=0, accel_fs=0, fifo_en=0x78, int_enable=0x00):
    """Wake on the gyro PLL, configure, reset and enable the FIFO (as a driver would)."""
    bus.write_byte_data(A, PWR_MGMT_1, 0x01)
    bus.write_byte_data(A, CONFIG, cfg)
    bus.write_byte_data(A, SMPLRT_DIV, div)
    bus.write_byte_data(A, GYRO_CONFIG, gyro_fs << 3)
    bus.write_byte_data(A, ACCEL_CONFIG, accel_fs << 3)
    bus.write_byte_data(A, INT_ENABLE, int_enable)
    bus.write_byte_data(A, FIFO_EN, fifo_en)
    bus.write_byte_data(A, USER_CTRL, 0x04)  # FIFO_RESET with FIFO_EN clear
    bus.write_byte_data(A, USER_CTRL, 0x40)


def _count(bus) -> int:
    hi, lo = bus.read_i2c_block_data(A, FIFO_COUNT_H, 2)
    return hi << 8 | lo


def _read_fifo(bus, n: int) -> bytes:
    out = b""
    while n > 0:
        k = min(n, 32)
        out += bytes(bus.read_i2c_block_data(A, FIFO_R_W, k))
        n -= k
    return out


def _words(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, ">i2").astype(int)


# --------------------------------------------------------------------------- registers


def test_reset_values() -> None:
    bus, _, _ = _bus()
    values = {reg: bus.read_byte_data(A, reg) for reg in range(0x00, 0x76)}
    assert values.pop(PWR_MGMT_1) == 0x40
    assert values.pop(WHO_AM_I) == 0x68
    assert set(values.values()) == {0}


@pytest.mark.parametrize(("address", "who", "expected"), [(0x68, 0x68, 0x68), (0x69, 0x68, 0x68), (0x68, 0x98, 0x98)])
def test_who_am_i(address: int, who: int, expected: int) -> None:
    bus = EmulatedBus([EmulatedChip(MotionTrack.still(), address=address, who_am_i=who)], clock=FakeClock())
    assert bus.read_byte_data(address, WHO_AM_I) == expected
    bus.write_byte_data(address, WHO_AM_I, 0x12)  # read-only
    assert bus.read_byte_data(address, WHO_AM_I) == expected


def test_device_reset_restores_reset_values_and_nacks_for_100_ms() -> None:
    bus, clock, _ = _bus()
    _start(bus, cfg=1, div=4, gyro_fs=2, accel_fs=2)
    bus.write_byte_data(A, PWR_MGMT_1, 0x80)
    clock.advance(0.05)
    with pytest.raises(OSError) as err:
        bus.read_byte_data(A, WHO_AM_I)
    assert err.value.errno == errno.EREMOTEIO
    clock.advance(0.06)
    assert bus.read_byte_data(A, PWR_MGMT_1) == 0x40  # DEVICE_RESET self-cleared, asleep
    assert [bus.read_byte_data(A, r) for r in (CONFIG, SMPLRT_DIV, GYRO_CONFIG, ACCEL_CONFIG, USER_CTRL)] == [0] * 5


def test_user_ctrl_reset_bits_self_clear_and_fifo_reset() -> None:
    bus, clock, _ = _bus()
    _start(bus)
    clock.advance(0.02)
    assert _count(bus) == 240
    assert bus.read_byte_data(A, USER_CTRL) == 0x40
    bus.write_byte_data(A, USER_CTRL, 0x44)  # FIFO_RESET (the lenient default acts with FIFO_EN set)
    assert _count(bus) == 0
    assert bus.read_byte_data(A, USER_CTRL) == 0x40


def test_strict_fifo_reset_needs_fifo_en_clear() -> None:
    bus, clock, _ = _bus(strict_fifo_reset=True)
    _start(bus)
    clock.advance(0.02)
    bus.write_byte_data(A, USER_CTRL, 0x44)
    assert _count(bus) == 240
    bus.write_byte_data(A, USER_CTRL, 0x04)
    assert _count(bus) == 0


def test_read_word_data_is_little_endian_like_smbus() -> None:
    bus, clock, _ = _bus(MotionTrack.still(acc=(0, 0, G)))
    _start(bus, accel_fs=2)
    clock.advance(0.01)
    hi, lo = bus.read_i2c_block_data(A, ACCEL_XOUT_H + 4, 2)
    assert (hi << 8 | lo) == 4096
    assert bus.read_word_data(A, ACCEL_XOUT_H + 4) == (lo << 8 | hi)


def test_write_byte_sets_pointer_and_read_byte_auto_increments() -> None:
    bus, _, _ = _bus()
    bus.write_byte(A, 0x6B)
    assert bus.read_byte(A) == 0x40
    assert bus.read_byte(A) == 0x00  # PWR_MGMT_2
    bus.write_byte(A, WHO_AM_I)
    assert bus.read_byte(A) == 0x68


# --------------------------------------------------------------------------- timing


@pytest.mark.parametrize(
    ("cfg", "div", "osc", "nominal_hz"),
    [(3, 0, 0.02, 1000.0), (3, 4, -0.013, 200.0), (1, 9, 0.0, 100.0), (0, 7, 0.005, 1000.0), (7, 39, -0.01, 200.0)],
)
def test_sample_rate_from_smplrt_div_dlpf_and_oscillator(cfg: int, div: int, osc: float, nominal_hz: float) -> None:
    bus, clock, chip = _bus(osc_error=osc)
    _start(bus, cfg=cfg, div=div, fifo_en=0x08)  # accel only: 6-byte frames
    assert chip.sample_rate_hz == nominal_hz
    total = 0
    for _ in range(1000):
        clock.advance(0.01)
        total += len(_read_fifo(bus, _count(bus)))
    assert total % 6 == 0
    expected = 10.0 * nominal_hz * (1.0 + osc)
    assert abs(total / 6 - expected) <= max(1.0, 1e-4 * expected)


def test_no_samples_while_asleep_and_clock_starts_at_wake() -> None:
    bus, clock, chip = _bus()
    bus.write_byte_data(A, CONFIG, 0x03)  # 1 kHz gyro output rate (DLPF_CFG 0 would give 8 kHz)
    bus.write_byte_data(A, FIFO_EN, 0x08)
    bus.write_byte_data(A, USER_CTRL, 0x40)
    clock.advance(1.0)
    assert _count(bus) == 0 and chip.samples_generated == 0
    bus.write_byte_data(A, PWR_MGMT_1, 0x00)
    clock.advance(0.0105)
    assert _count(bus) == 60  # 10 samples since the wake-up, 1 kHz
    bus.write_byte_data(A, PWR_MGMT_1, 0x40)
    clock.advance(1.0)
    assert _count(bus) == 60


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize(("accel_fs", "gyro_fs"), [(0, 0), (2, 2), (3, 3)])
def test_scaling_and_saturation_in_registers_and_fifo(accel_fs: int, gyro_fs: int) -> None:
    acc_g = np.array([0.5, -0.25, 1.0])
    gyr_dps = np.array([10.0, -100.0, 300.0])
    motion = MotionTrack.still(acc=acc_g * G, gyr=gyr_dps * DEG)
    bus, clock, _ = _bus(motion, gyro_offset_dps=(1.0, 0.0, -700.0), temperature_c=30.0)
    _start(bus, accel_fs=accel_fs, gyro_fs=gyro_fs, fifo_en=0xF8)  # temp too: 14-byte frames
    clock.advance(0.0055)
    a_lsb = (16384, 8192, 4096, 2048)[accel_fs]
    g_lsb = (131.0, 65.5, 32.8, 16.4)[gyro_fs]
    gyro_true = gyr_dps + np.array([1.0, 0.0, -700.0])
    expected = np.concatenate([np.rint(acc_g * a_lsb), [np.rint((30.0 - 36.53) * 340)], np.rint(gyro_true * g_lsb)])
    expected = np.clip(expected, -32768, 32767)
    regs = _words(bytes(bus.read_i2c_block_data(A, ACCEL_XOUT_H, 14)))
    np.testing.assert_array_equal(regs, expected)
    assert _count(bus) == 5 * 14
    frames = _words(_read_fifo(bus, 70)).reshape(5, 7)
    np.testing.assert_array_equal(frames, np.tile(expected, (5, 1)))
    if gyro_fs == 0:
        assert expected[6] == -32768  # -400 °/s at ±250 °/s saturates low


def test_saturation_high() -> None:
    bus, clock, _ = _bus(MotionTrack.still(acc=(3.0 * G, 0, 0), gyr=(600 * DEG, 0, 0)))
    _start(bus, accel_fs=0, gyro_fs=1)
    clock.advance(0.002)
    regs = _words(bytes(bus.read_i2c_block_data(A, ACCEL_XOUT_H, 14)))
    assert regs[0] == 32767 and regs[4] == 32767


def test_fifo_order_follows_fifo_en_bits() -> None:
    motion = MotionTrack.still(acc=(0.25 * G, 0.5 * G, 0.75 * G), gyr=(10 * DEG, 20 * DEG, 30 * DEG))
    bus, clock, _ = _bus(motion)
    _start(bus, accel_fs=0, gyro_fs=0, fifo_en=0x50)  # XG and ZG only: 4-byte frames
    clock.advance(0.0015)
    assert _count(bus) == 4
    np.testing.assert_array_equal(_words(_read_fifo(bus, 4)), [1310, 3930])


def test_dlpf_attenuates_fast_motion() -> None:
    t = np.arange(0, 2.0, 0.0002)
    gyr = np.zeros((len(t), 3))
    gyr[:, 0] = 50 * DEG * np.sin(2 * np.pi * 80.0 * t)
    motion = MotionTrack(t, np.tile([0, 0, G], (len(t), 1)), gyr)
    amplitudes = {}
    for cfg in (1, 4):
        bus, clock, _ = _bus(motion)
        bus.epoch = 1000.0
        _start(bus, cfg=cfg, fifo_en=0x40)
        clock.advance(0.5)
        data = _words(_read_fifo(bus, _count(bus)))
        amplitudes[cfg] = np.abs(data[100:]).max() / 131.0
    assert amplitudes[1] > 35.0  # 188 Hz: an 80 Hz motion mostly passes
    assert amplitudes[4] < 15.0  # 20 Hz: it is strongly attenuated


# --------------------------------------------------------------------------- FIFO traps


def test_fifo_count_big_endian_and_latched_by_the_high_byte() -> None:
    bus, clock, _ = _bus()
    _start(bus)
    clock.advance(0.0505)  # 50 samples of 12 bytes = 600 = 0x0258
    assert bus.read_i2c_block_data(A, FIFO_COUNT_H, 2) == [0x02, 0x58]
    clock.advance(0.0100)  # 720 = 0x02D0, but FIFO_COUNT_L alone still shows the latched value
    assert bus.read_byte_data(A, FIFO_COUNT_L) == 0x58
    assert bus.read_byte_data(A, FIFO_COUNT_H) == 0x02
    assert bus.read_byte_data(A, FIFO_COUNT_L) == 0xD0


def test_empty_fifo_read_returns_the_last_byte_again() -> None:
    bus, clock, _ = _bus(MotionTrack.still(acc=(0, 0, G), gyr=(0, 0, 3 * DEG)))
    _start(bus, gyro_fs=0)
    clock.advance(0.0015)
    frame = _read_fifo(bus, 12)
    assert frame[-2:] == (393).to_bytes(2, "big")
    again = bus.read_i2c_block_data(A, FIFO_R_W, 5)
    assert again == [frame[-1]] * 5
    assert bus.read_byte_data(A, FIFO_R_W) == frame[-1]
    assert _count(bus) == 0


def _frame_pattern():
    acc_g = np.array([0.125, 0.25, 0.375])
    gyr_dps = np.array([1.0, 2.0, 3.0]) * 100 / 131
    return MotionTrack.still(acc=acc_g * G, gyr=gyr_dps * DEG)


@pytest.mark.parametrize("report", [True, False])
def test_overflow_overwrites_oldest_bytes_and_misaligns(report: bool) -> None:
    bus, clock, chip = _bus(_frame_pattern(), report_overflow=report)
    _start(bus, accel_fs=0, gyro_fs=0, int_enable=0x10)
    clock.advance(0.1005)  # 100 frames = 1200 bytes into a 1024-byte FIFO
    assert _count(bus) == 1024
    status = bus.read_byte_data(A, INT_STATUS)
    assert bool(status & 0x10) is report
    assert bus.read_byte_data(A, INT_STATUS) & 0x10 == 0  # reading clears
    frame = _read_fifo(bus, 12)
    stream = bytes(np.array([2048, 4096, 6144, 100, 200, 300], ">i2").tobytes()) * 100
    assert frame == stream[-1024:][:12]
    assert (1200 - 1024) % 12 == 8 and frame == (stream[8:20])  # starts 8 bytes into a frame
    assert chip.fifo_bytes_lost == 176


def test_overflow_bit_needs_int_enable_by_default() -> None:
    bus, clock, _ = _bus()
    _start(bus, int_enable=0x00)
    clock.advance(0.2)
    assert _count(bus) == 1024
    assert bus.read_byte_data(A, INT_STATUS) == 0
    bus2, clock2, _ = _bus(int_status_needs_enable=False)
    _start(bus2, int_enable=0x00)
    clock2.advance(0.2)
    assert bus2.read_byte_data(A, INT_STATUS) == 0x11  # FIFO_OFLOW_INT and DATA_RDY_INT


def test_long_idle_is_fast_and_keeps_the_fifo_content_right() -> None:
    bus, clock, chip = _bus(_frame_pattern(), int_status_needs_enable=False)
    _start(bus, cfg=0, div=0, accel_fs=0, gyro_fs=0)  # 8 kHz
    clock.advance(600.0)
    assert _count(bus) == 1024
    samples = chip.samples_generated
    assert abs(samples - 600 * 8000) <= 1
    data = _read_fifo(bus, 1024)
    stream = np.array([2048, 4096, 6144, 100, 200, 300], ">i2").tobytes()
    offset = (samples * 12 - 1024) % 12
    assert data[:12] == (stream * 2)[offset : offset + 12]


# --------------------------------------------------------------------------- the bus


def test_block_read_over_32_bytes_raises_like_smbus2() -> None:
    bus, _, _ = _bus()
    with pytest.raises(ValueError) as ours:
        bus.read_i2c_block_data(A, FIFO_R_W, 33)
    with pytest.raises(ValueError) as theirs:
        smbus2.SMBus().read_i2c_block_data(A, FIFO_R_W, 33)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError):
        bus.write_i2c_block_data(A, 0x19, [0] * 33)
    assert bus.transactions == 0


def test_i2c_rdwr_with_smbus2_messages() -> None:
    bus, clock, _ = _bus(MotionTrack.still(acc=(0, 0, G)))
    write, read = smbus2.i2c_msg.write(A, [WHO_AM_I]), smbus2.i2c_msg.read(A, 1)
    bus.i2c_rdwr(write, read)
    assert list(read) == [0x68]
    _start(bus, accel_fs=2, fifo_en=0x08)
    clock.advance(0.0105)
    count = smbus2.i2c_msg.read(A, 2)
    bus.i2c_rdwr(smbus2.i2c_msg.write(A, [FIFO_COUNT_H]), count)
    n = int.from_bytes(bytes(count), "big")
    assert n == 60
    fifo = smbus2.i2c_msg.read(A, n)
    bus.i2c_rdwr(smbus2.i2c_msg.write(A, [FIFO_R_W]), fifo)
    np.testing.assert_array_equal(_words(bytes(fifo)).reshape(10, 3), np.tile([0, 0, 4096], (10, 1)))
    bus.i2c_rdwr(smbus2.i2c_msg.write(A, [SMPLRT_DIV, 4, 2]))  # burst write: SMPLRT_DIV, CONFIG
    assert bus.read_i2c_block_data(A, SMPLRT_DIV, 2) == [4, 2]
    with pytest.raises(OSError) as err:
        bus.i2c_rdwr(*[smbus2.i2c_msg.read(A, 1)] * 43)
    assert err.value.errno == errno.EINVAL
    with pytest.raises(OSError) as err:
        bus.i2c_rdwr(smbus2.i2c_msg.write(A, [FIFO_R_W]), smbus2.i2c_msg.read(A, 8193))
    assert err.value.errno == errno.EINVAL


def test_nack_rate_is_the_fraction_of_failing_transactions() -> None:
    bus, _, _ = _bus()
    bus.nack_rate = 0.1
    failed = 0
    for _ in range(5000):
        try:
            bus.read_byte_data(A, WHO_AM_I)
        except OSError as exc:
            assert exc.errno == errno.EREMOTEIO == 121
            failed += 1
    assert abs(failed / 5000 - 0.1) < 0.015
    assert bus.failures == failed and bus.transactions == 5000


def test_absent_address_raises_remote_io_error() -> None:
    bus, _, _ = _bus()
    for call in (lambda: bus.read_byte_data(0x69, WHO_AM_I), lambda: bus.write_quick(0x69)):
        with pytest.raises(OSError) as err:
            call()
        assert err.value.errno == errno.EREMOTEIO
    with pytest.raises(OSError) as err:
        bus.i2c_rdwr(smbus2.i2c_msg.write(0x69, [WHO_AM_I]), smbus2.i2c_msg.read(0x69, 1))
    assert err.value.errno == errno.EREMOTEIO
    bus.write_quick(A)


def test_two_chips_are_independent() -> None:
    clock = FakeClock()
    pelvis = EmulatedChip(MotionTrack.still(acc=(0, 0, G)))
    trunk = EmulatedChip(MotionTrack.still(acc=(G, 0, 0)), address=0x69, osc_error=0.01)
    bus = EmulatedBus([pelvis, trunk], clock=clock)
    for addr in (0x68, 0x69):
        bus.write_byte_data(addr, PWR_MGMT_1, 0x01)
        bus.write_byte_data(addr, CONFIG, 0x03)
    clock.advance(1.0)
    assert _words(bytes(bus.read_i2c_block_data(0x68, ACCEL_XOUT_H, 6))).tolist() == [0, 0, 16384]
    assert _words(bytes(bus.read_i2c_block_data(0x69, ACCEL_XOUT_H, 6))).tolist() == [16384, 0, 0]
    assert abs(trunk.samples_generated - 1010) <= 1 and abs(pelvis.samples_generated - 1000) <= 1


def test_on_transaction_hook_arguments() -> None:
    bus, _, _ = _bus()
    calls = []
    bus.on_transaction = lambda kind, addr, reg: calls.append((kind, addr, reg))
    bus.read_byte_data(A, WHO_AM_I)
    bus.write_byte_data(A, PWR_MGMT_1, 0x01)
    bus.read_i2c_block_data(A, FIFO_COUNT_H, 2)
    bus.i2c_rdwr(smbus2.i2c_msg.write(A, [FIFO_R_W]), smbus2.i2c_msg.read(A, 4))
    bus.write_byte(A, 0x6B)
    bus.read_byte(A)
    with pytest.raises(OSError):
        bus.read_byte_data(0x69, 0x75)
    assert calls == [
        ("read", A, WHO_AM_I),
        ("write", A, PWR_MGMT_1),
        ("read", A, FIFO_COUNT_H),
        ("read", A, FIFO_R_W),
        ("write", A, 0x6B),
        ("read", A, 0x6B),
        ("read", 0x69, 0x75),
    ]


def test_hang_between_fifo_count_and_fifo_read_via_hook() -> None:
    bus, clock, _ = _bus(_frame_pattern())
    _start(bus, int_enable=0x10)
    clock.advance(0.0105)

    def stall_before_fifo_read(kind: str, addr: int, reg: int) -> None:
        if kind == "read" and reg == FIFO_R_W:
            bus.on_transaction = None
            bus.hang(0.2)  # the bus stalls right after the count was read

    n = _count(bus)
    assert n == 120
    bus.on_transaction = stall_before_fifo_read
    t0 = clock()
    first = _read_fifo(bus, 12)
    assert clock() - t0 == pytest.approx(0.2)  # the transaction blocked through the fake clock's sleep
    assert _count(bus) == 1024 - 12  # meanwhile 210 frames (2520 bytes) went in: the FIFO overflowed ...
    assert bus.read_byte_data(A, INT_STATUS) & 0x10
    stream = np.array([2048, 4096, 6144, 100, 200, 300], ">i2").tobytes() * 2
    assert (2520 - 1024) % 12 == 8
    assert first == stream[8:20]  # ... and the "frame" read after the stale count is misaligned


def test_hang_longer_than_the_adapter_timeout_fails_with_etimedout() -> None:
    bus, clock, _ = _bus()
    bus.hang(5.0)
    t0 = clock()
    with pytest.raises(OSError) as err:
        bus.read_byte_data(A, WHO_AM_I)
    assert err.value.errno == errno.ETIMEDOUT
    assert clock() - t0 == pytest.approx(1.0)
    clock.advance(4.0)
    assert bus.read_byte_data(A, WHO_AM_I) == 0x68


def test_counters() -> None:
    bus, _, _ = _bus()
    bus.read_byte_data(A, WHO_AM_I)  # reg + 1
    bus.write_byte_data(A, PWR_MGMT_1, 0)  # reg + 1
    bus.read_i2c_block_data(A, ACCEL_XOUT_H, 14)  # reg + 14
    bus.i2c_rdwr(smbus2.i2c_msg.write(A, [FIFO_R_W]), smbus2.i2c_msg.read(A, 30))  # 1 + 30
    with pytest.raises(OSError):
        bus.read_byte_data(0x69, WHO_AM_I)  # attempted, failed: no bytes
    assert bus.transactions == 5
    assert bus.failures == 1
    assert bus.bytes_transferred == 2 + 2 + 15 + 31
    assert bus.bus_time_s > 0


def test_close_and_context_manager() -> None:
    with EmulatedBus([EmulatedChip(MotionTrack.still())], clock=FakeClock()) as bus:
        assert bus.read_byte_data(A, WHO_AM_I) == 0x68
    with pytest.raises(OSError) as err:
        bus.read_byte_data(A, WHO_AM_I)
    assert err.value.errno == errno.EBADF


# --------------------------------------------------------------------------- motion


def test_motion_track_interpolates_and_holds() -> None:
    track = MotionTrack(np.array([0.0, 1.0]), np.array([[0, 0, 0], [2, 4, 6]]), np.array([[1, 1, 1], [1, 1, 3]]))
    acc, gyr = track.sample(np.array([-1.0, 0.5, 2.0]))
    np.testing.assert_allclose(acc, [[0, 0, 0], [1, 2, 3], [2, 4, 6]])
    np.testing.assert_allclose(gyr[:, 2], [1, 2, 3])


def test_from_simulation_drives_a_chip() -> None:
    pelvis, trunk, run = MotionTrack.from_simulation(minutes=0.25, trunk=True, seed=2)
    assert trunk is not None
    assert run.info["rate_true_hz"] == 1000.0
    np.testing.assert_allclose(np.diff(pelvis.t[:5]), 0.001)
    clock = FakeClock(50.0)
    chip = EmulatedChip(pelvis)
    bus = EmulatedBus([chip], clock=clock)
    _start(bus, cfg=3, div=4, accel_fs=2, gyro_fs=2, fifo_en=0x08)
    clock.advance(0.5)  # standing still at the start: |acc| near 1 g
    acc = _words(_read_fifo(bus, _count(bus))).reshape(-1, 3) / 4096.0
    assert len(acc) == 100
    assert np.all(np.abs(np.linalg.norm(acc, axis=1) - 1.0) < 0.1)
