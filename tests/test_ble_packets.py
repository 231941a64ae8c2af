"""BLE packet layer: WitMotion frames and commands, stackcue's own profile, counters, the MicroPython encoder."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from stackcue.firmware_bridge import ble_profile as bp
from stackcue.firmware_bridge import witmotion as wm

ROOT = Path(__file__).resolve().parents[1]


def _load_micropython():
    path = ROOT / "firmware_bridge" / "micropython" / "stackcue_sensor.py"
    spec = importlib.util.spec_from_file_location("stackcue_sensor_mpy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MPY = _load_micropython()


# --- WitMotion --------------------------------------------------------------------------------------


def _frames(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-30, 30, 3), rng.uniform(-10, 10, 3), rng.uniform(-170, 170, 3)) for _ in range(n)]


def test_uuids_use_the_vendor_base_not_the_bluetooth_base():
    assert wm.SERVICE_UUID == "0000ffe5-0000-1000-8000-00805f9a34fb"
    assert wm.NOTIFY_UUID == "0000ffe4-0000-1000-8000-00805f9a34fb"
    assert wm.WRITE_UUID == "0000ffe9-0000-1000-8000-00805f9a34fb"


def test_frame_layout_and_scales():
    frame = bytes([0x55, 0x61]) + np.array([2048, 0, -2048, 16384, 0, 0, 8192, 0, -32768], "<i2").tobytes()
    f = wm.decode_frame(frame)
    np.testing.assert_allclose(f.acc, [9.80665, 0, -9.80665])  # 2048 * 16 g / 32768 = 1 g
    np.testing.assert_allclose(f.gyr, [math.radians(1000.0), 0, 0])
    np.testing.assert_allclose(f.angle, [45.0, 0, -180.0])


def test_frame_round_trip_within_one_lsb():
    for acc, gyr, ang in _frames(20):
        f = wm.decode_frame(wm.encode_frame(acc, gyr, ang))
        assert np.all(np.abs(f.acc - acc) <= 16 * 9.80665 / 32768)
        assert np.all(np.abs(f.gyr - gyr) <= math.radians(2000 / 32768))
        assert np.all(np.abs(f.angle - ang) <= 180 / 32768)
    assert len(wm.encode_frame((0, 0, 9.8), (0, 0, 0))) == 20


def test_encode_frame_saturates_and_refuses_nan():
    f = wm.decode_frame(wm.encode_frame((1000.0, -1000.0, 0), (0, 0, 0)))
    assert f.acc[0] == pytest.approx(32767 * 16 * 9.80665 / 32768)
    assert f.acc[1] == pytest.approx(-16 * 9.80665)
    with pytest.raises(ValueError):
        wm.encode_frame((math.nan, 0, 0), (0, 0, 0))


def test_several_frames_in_one_notification():
    truth = _frames(5)
    payload = b"".join(wm.encode_frame(*t) for t in truth)
    dec = wm.WitDecoder()
    out = dec.feed(payload)
    assert len(out) == 5
    for f, (acc, _, _) in zip(out, truth, strict=True):
        np.testing.assert_allclose(f.acc, acc, atol=0.005)
    assert dec.stats.frames == 5 and dec.stats.skipped_bytes == 0 and dec.stats.bad_frames == 0


def test_frames_split_across_notifications():
    truth = _frames(7, seed=1)
    stream = b"".join(wm.encode_frame(*t) for t in truth)
    dec = wm.WitDecoder()
    out = []
    for cut in range(0, len(stream), 13):  # cuts land everywhere, also between 0x55 and 0x61
        out += dec.feed(stream[cut : cut + 13])
    assert len(out) == 7
    for f, (acc, gyr, _) in zip(out, truth, strict=True):
        np.testing.assert_allclose(f.acc, acc, atol=0.005)
        np.testing.assert_allclose(f.gyr, gyr, atol=0.002)
    assert dec.stats.skipped_bytes == 0 and dec.stats.bad_frames == 0
    # byte by byte too
    dec2 = wm.WitDecoder()
    assert sum(len(dec2.feed(stream[i : i + 1])) for i in range(len(stream))) == 7


def test_garbage_is_skipped_and_counted():
    a, b, c = (wm.encode_frame(*t) for t in _frames(3, seed=2))
    dec = wm.WitDecoder()
    out = dec.feed(b"\x00\x13\x55\x10" + a + b"\xaa\xbb\xcc" + b)
    out += dec.feed(b"\x01\x02" + c)
    assert len(out) == 3
    assert dec.stats.skipped_bytes == 4 + 3 + 2
    assert dec.stats.bad_frames == 0


def test_truncated_frame_is_dropped_and_decoder_resynchronises():
    truth = _frames(3, seed=3)
    a, b, c = (wm.encode_frame(*t) for t in truth)
    dec = wm.WitDecoder()
    out = dec.feed(a + b[:11] + c)  # b cut short inside one notification
    assert len(out) == 2
    np.testing.assert_allclose(out[1].acc, truth[2][0], atol=0.005)
    assert dec.stats.bad_frames == 1 and dec.stats.skipped_bytes == 11
    # a frame cut at the end of one notification, the next notification starts with a fresh frame
    dec = wm.WitDecoder()
    out = dec.feed(a[:9]) + dec.feed(b) + dec.feed(c)
    assert len(out) == 2 and dec.stats.bad_frames == 1
    np.testing.assert_allclose(out[0].acc, truth[1][0], atol=0.005)


def test_register_reply_in_the_stream():
    reply = wm.encode_register_reply(0x03, [0x0B, 0, 0, 0, 0, 0, 0, 0xFFFF])
    frame = wm.encode_frame((0, 0, 9.8), (0, 0, 0))
    dec = wm.WitDecoder()
    out = dec.feed(frame + reply + frame)
    assert len(out) == 2 and len(dec.replies) == 1
    r = dec.replies[0]
    assert r.reg == 0x03 and r.values[0] == 0x0B and r.rate_hz == 200.0
    assert r.signed(7) == -1
    with pytest.raises(ValueError):
        wm.parse_register_reply(frame)


def test_command_bytes():
    assert wm.unlock() == bytes.fromhex("ffaa6988b5")
    assert wm.save() == bytes.fromhex("ffaa000000")
    assert wm.read_register(0x03) == bytes.fromhex("ffaa270300")
    assert wm.set_rate() == bytes.fromhex("ffaa030b00")  # fastest: 200 Hz
    assert wm.set_rate(100) == bytes.fromhex("ffaa030900")
    assert wm.set_rate(50) == bytes.fromhex("ffaa030800")
    assert wm.set_rate(10) == bytes.fromhex("ffaa030600")
    assert wm.set_rate(0.2) == bytes.fromhex("ffaa030100")
    assert wm.rate_sequence(50) == [wm.unlock(), wm.set_rate(50), wm.save()]


def test_unsupported_rate_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"150 Hz.*0\.2, 0\.5, 1, 2, 5, 10, 20, 50, 100, 200"):
        wm.set_rate(150)
    with pytest.raises(ValueError):
        wm.set_rate(1000)


# --- stackcue profile -------------------------------------------------------------------------------


def _raw(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32768, (n, 6)).astype(np.int16)


def test_uuids_are_fixed_and_not_on_the_bluetooth_base():
    uuids = [bp.SERVICE_UUID, bp.DATA_UUID, bp.CONTROL_UUID, bp.INFO_UUID]
    assert len(set(uuids)) == 4
    assert all(not u.endswith("-0000-1000-8000-00805f9b34fb") for u in uuids)
    assert [MPY.SERVICE_UUID, MPY.DATA_UUID, MPY.CONTROL_UUID, MPY.INFO_UUID] == uuids


def test_batch_sizes_fit_the_mtu():
    assert bp.MAX_SAMPLES == 19
    full = bp.encode_batch(0, _raw(19))
    assert len(full) == 14 + 19 * 12 + 2 == 244
    compact = bp.encode_batch(0, _raw(1), compact=True)
    assert len(compact) == 20
    assert bp.samples_per_notification(247) == (19, False)
    assert bp.samples_per_notification(23) == (1, True)
    assert bp.samples_per_notification(185) == (13, False)
    with pytest.raises(ValueError, match="at most 19"):
        bp.encode_batch(0, _raw(20))
    with pytest.raises(ValueError, match="at most 1"):
        bp.encode_batch(0, _raw(2), compact=True)


def test_batch_round_trip_full_and_compact():
    raw = _raw(19, seed=4)
    b = bp.decode_batch(
        bp.encode_batch(123456, raw, rate_mhz=208_333, acc_code=3, gyr_code=1, boot_id=0xBEEF, flags=bp.FLAG_RESTART)
    )
    assert (b.counter, b.rate_mhz, b.acc_code, b.gyr_code, b.boot_id) == (123456, 208_333, 3, 1, 0xBEEF)
    assert b.restart and not b.overflow and not b.compact and len(b) == 19
    np.testing.assert_array_equal(b.raw, raw)
    assert b.rate_hz == pytest.approx(208.333)
    c = bp.decode_batch(bp.encode_batch(2**32 - 1, raw[:1], compact=True, flags=bp.FLAG_OVERFLOW))
    assert c.compact and c.overflow and c.counter == 2**32 - 1 and c.rate_mhz is None and c.boot_id is None
    np.testing.assert_array_equal(c.raw, raw[:1])
    empty = bp.decode_batch(bp.encode_batch(7, np.zeros((0, 6), np.int16)))
    assert len(empty) == 0 and empty.acc.shape == (0, 3)


def test_batch_units():
    raw = np.array([[4096, 0, -4096, 328, 0, 0]], np.int16)  # ±8 g code 2, ±1000 °/s code 2
    b = bp.decode_batch(bp.encode_batch(0, raw, acc_code=2, gyr_code=2))
    np.testing.assert_allclose(b.acc, [[9.80665, 0, -9.80665]])
    np.testing.assert_allclose(b.gyr, [[math.radians(10.0), 0, 0]])


def _resealed(p: bytes) -> bytes:
    """A full batch with its CRC made right again: to test the checks behind the checksum."""
    body = p[:-2]
    return body + bp.crc16(body).to_bytes(2, "little")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: bytes([2]) + p[1:], "version 2"),
        (lambda p: p[:-1], "length"),
        (lambda p: p + b"\x00" * 12, "length"),
        (lambda p: _resealed(p[:2] + bytes([20]) + p[3:]), "20 samples"),
        (lambda p: _resealed(p[:1] + bytes([0x10]) + p[2:]), "unknown flags"),
        (lambda p: _resealed(p[:3] + bytes([0x05]) + p[4:]), "accel range code 5"),
        (lambda p: _resealed(p[:3] + bytes([0x42]) + p[4:]), "gyro range code 4"),
        (lambda p: p[:5], "too short"),
        (lambda p: _resealed(p[:8] + b"\x00\x00\x00\x00" + p[12:]), "rate of 0"),
        (lambda p: p[:20] + bytes([p[20] ^ 0x04]) + p[21:], "checksum"),
    ],
)
def test_decode_batch_is_strict(mutate, message):
    good = bp.encode_batch(0, _raw(3))
    with pytest.raises(ValueError, match=message):
        bp.decode_batch(mutate(good))


def test_the_checksums():
    assert bp.crc16(b"123456789") == 0x29B1 == MPY.crc16(b"123456789")  # CRC-16/CCITT-FALSE check value
    assert bp.crc8(b"123456789") == 0xF4 == MPY.crc8(b"123456789")  # CRC-8/SMBUS check value
    # every single-bit error in a full or a compact batch is caught (a CRC catches all of them)
    for p in (bp.encode_batch(123, _raw(19, seed=12)), bp.encode_batch(123, _raw(1, seed=13), compact=True)):
        for bit in range(8 * len(p)):
            bad = bytearray(p)
            bad[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(ValueError):
                bp.decode_batch(bytes(bad))
    # two-byte bursts inside the samples (a value damaged, not its framing) are caught too
    p = bp.encode_batch(5, _raw(19, seed=14))
    rng = np.random.default_rng(15)
    for _ in range(500):
        bad = bytearray(p)
        i = int(rng.integers(14, len(p) - 3))
        bad[i] ^= int(rng.integers(1, 256))
        bad[i + 1] ^= int(rng.integers(0, 256))
        with pytest.raises(ValueError, match="checksum"):
            bp.decode_batch(bytes(bad))


def test_control_and_info_round_trip():
    req = bp.set_rate_request(7, 200.0)
    assert req == bytes([bp.OP_SET_RATE, 7]) + (200_000).to_bytes(4, "little")
    assert bp.set_ranges_request(8, 3, 2) == bytes([bp.OP_SET_RANGES, 8, 0x23])
    with pytest.raises(ValueError):
        bp.encode_request(bp.OP_START, 1, 5)
    r = bp.decode_reply(bp.encode_reply(bp.OP_SET_RATE, 7, bp.STATUS_OK, 0x22, 200_000, 0x1234, 2**32 + 5))
    assert r.ok and r.op == bp.OP_SET_RATE and r.seq == 7 and r.rate_mhz == 200_000 and r.next_counter == 5
    info = bp.decode_info(bp.encode_info(1, 0x22, 19, 200_000, 0x1234))
    assert (info.acc_code, info.gyr_code, info.max_batch, info.boot_id) == (2, 2, 19, 0x1234)
    assert len(bp.encode_info(1, 0x22, 19, 200_000, 0x1234)) <= 20 and bp.REPLY.size <= 20


# --- counters ---------------------------------------------------------------------------------------


def _b(counter, n=10, flags=0, boot=1, rate=200_000, compact=False):
    return bp.decode_batch(bp.encode_batch(counter, _raw(n), flags=flags, boot_id=boot, rate_mhz=rate, compact=compact))


def test_counter_contiguous_and_gaps():
    t = bp.CounterTracker()
    r = t.update(_b(500, flags=bp.FLAG_RESTART))
    assert r.restart and r.index == 0
    r = t.update(_b(510))
    assert (r.index, r.lost, r.restart) == (10, 0, False)
    r = t.update(_b(527))  # 7 samples lost
    assert (r.index, r.lost, r.restart) == (27, 7, False)
    r = t.update(_b(537))
    assert r.index == 37
    assert t.stats.lost == 7 and t.stats.gaps == 1 and t.stats.samples == 40


def test_counter_wraps_at_2_32():
    t = bp.CounterTracker()
    t.update(_b(2**32 - 15))
    r = t.update(_b(2**32 - 5))  # 2**32-5 .. 2**32+4: wraps inside the batch
    assert (r.index, r.lost, r.wrapped, r.restart) == (10, 0, True, False)
    r = t.update(_b(5))
    assert (r.index, r.lost, r.wrapped) == (20, 0, False)
    t2 = bp.CounterTracker()
    t2.update(_b(2**32 - 10))  # ends exactly at 2**32
    r = t2.update(_b(3))  # 3 lost across the wrap
    assert (r.index, r.lost, r.wrapped, r.restart) == (13, 3, True, False)
    assert t.stats.wraps == 1 and t2.stats.wraps == 1


def test_counter_restart():
    t = bp.CounterTracker()
    t.update(_b(1000))
    r = t.update(_b(0, flags=bp.FLAG_RESTART))
    assert r.restart and r.lost == 0 and r.index == 10
    r = t.update(_b(5))  # backwards without the flag: a restart too
    assert r.restart
    r = t.update(_b(15, boot=2))  # another boot
    assert r.restart
    r = t.update(_b(25, boot=2, rate=100_000))  # rate changed
    assert r.restart
    r = t.update(_b(35, boot=2, rate=100_000))
    assert not r.restart and r.index == 50
    assert t.stats.restarts == 5  # the first batch counts too


def test_counter_compact_batches_use_known_config():
    t = bp.CounterTracker()
    t.expect(boot_id=1, rate_mhz=200_000)
    assert t.update(_b(0, n=1, compact=True)).restart
    for k in range(1, 5):
        r = t.update(_b(k, n=1, compact=True))
        assert not r.restart and r.index == k
    r = t.update(_b(7, n=1, compact=True))
    assert r.lost == 2 and r.index == 7
    r = t.update(_b(8, n=10))  # a full batch agreeing with the known boot id and rate: no restart
    assert not r.restart and r.index == 8


# --- the MicroPython sensor's encoder ---------------------------------------------------------------


@pytest.mark.parametrize("compact", [False, True])
def test_micropython_encoder_equals_the_receiver_encoder(compact):
    n = 1 if compact else 19
    raw = _raw(n, seed=9)
    for counter, flags in [(0, bp.FLAG_RESTART), (2**32 - 3, 0), (77, bp.FLAG_OVERFLOW)]:
        ours = bp.encode_batch(
            counter, raw, rate_mhz=200_000, acc_code=2, gyr_code=2, boot_id=0xA5A5, flags=flags, compact=compact
        )
        theirs = MPY.encode_batch(counter, raw.astype("<i2").tobytes(), 200_000, 0x22, 0xA5A5, flags, compact)
        assert theirs == ours
        b = bp.decode_batch(theirs)
        np.testing.assert_array_equal(b.raw, raw)


def test_micropython_fifo_byte_order_and_helpers():
    raw = _raw(4, seed=10)
    fifo = raw.astype(">i2").tobytes()  # the MPU-6050 FIFO is big-endian
    assert MPY.fifo_to_le(fifo) == raw.astype("<i2").tobytes()
    assert MPY.batch_size(247) == bp.samples_per_notification(247)
    assert MPY.batch_size(23) == bp.samples_per_notification(23)
    assert MPY.encode_reply(2, 7, 0, 0x22, 200_000, 5, 9) == bp.encode_reply(2, 7, 0, 0x22, 200_000, 5, 9)
    assert MPY.encode_info(0x22, 19, 200_000, 5) == bp.encode_info(1, 0x22, 19, 200_000, 5)
    assert MPY.rate_divider(200_000) == 4 and MPY.divider_rate_mhz(4) == 200_000
    assert MPY.rate_divider(10_000) is None
    assert MPY.divider_rate_mhz(MPY.rate_divider(1_000_000)) == 1_000_000


def test_no_garbage_frame_from_a_truncated_frame_before_a_damaged_one():
    """Without a checksum only alignment tells a broken frame: a cut frame followed by one whose header was
    damaged must not be read as one frame made of both."""
    a, b, c = (wm.encode_frame(*t) for t in _frames(3, seed=5))
    bad_b = b"\x54" + b[1:]  # header byte damaged
    dec = wm.WitDecoder()
    out = dec.feed(a[:15] + bad_b + c)
    assert len(out) == 1 and dec.stats.bad_frames >= 1
    np.testing.assert_array_equal(out[0].acc, wm.decode_frame(c).acc)
    # a frame ending in 0x55 followed by a stray 0x61 looks like a header: no garbage from it either
    d = bytearray(wm.encode_frame((0.0, 0.0, 9.8), (0.0, 0.0, 0.0)))
    d[19] = 0x55
    dec = wm.WitDecoder()
    out = dec.feed(bytes(d) + b"\x61" + c)
    assert all(
        np.array_equal(f.acc, wm.decode_frame(bytes(d)).acc) or np.array_equal(f.acc, wm.decode_frame(c).acc)
        for f in out
    )
    assert np.array_equal(out[-1].acc, wm.decode_frame(c).acc)
