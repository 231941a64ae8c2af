"""stackcue's own GATT profile for DIY BLE sensors (ESP32 / nRF52 + IMU): packets, no radio.

The full specification, with the reasons, is ``docs/ble_profile.md``; this module is its reference
implementation on the receiver side, and ``firmware_bridge/micropython/stackcue_sensor.py`` the one on
the sensor side (their encoders are checked byte for byte against each other by the tests).

Data notification (all little-endian)::

    0  u8   version (1)
    1  u8   flags: bit0 RESTART (counter started again at this batch: boot, config change, new connection),
                   bit1 OVERFLOW (the sensor lost samples before this batch; the counter skipped them),
                   bit7 COMPACT (the short layout below)
    2  u8   sample count N
    3  u8   ranges: bits 0-3 accel code (0..3 = ±2/4/8/16 g), bits 4-7 gyro code (0..3 = ±250/500/1000/2000 °/s)
    4  u32  counter of the first sample (samples since the counter started, mod 2**32)
    8  u32  sample rate, mHz (200 Hz = 200000)
    12 u16  boot id (random at every boot of the sensor)
    14      N samples × (ax, ay, az, gx, gy, gz) int16, sensor axes, MPU-6050 sensitivities
    14+12N  u16 CRC-16/CCITT-FALSE of everything before it

Compact (for the 20-byte payload of the minimum ATT MTU 23): version, flags | COMPACT, ranges, u32 counter,
one sample, CRC-8 (poly 0x07) of the 19 bytes before it; rate and boot id then come from the info
characteristic / the last control reply (they change only at a boot, which drops the link, or by a
control write, which also restarts the counter). Full batches: up to 19 samples in a 244-byte payload
(ATT MTU 247). The checksum catches what the link layer's CRC lets through (a buggy stack, a damaged
buffer on either side): a damaged batch is rejected whole and its samples become a gap.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field

import numpy as np

SERVICE_UUID = "d08c0001-f4a4-4e53-b237-6ce85239c84a"
DATA_UUID = "d08c0002-f4a4-4e53-b237-6ce85239c84a"  # notify
CONTROL_UUID = "d08c0003-f4a4-4e53-b237-6ce85239c84a"  # write, read, notify (replies)
INFO_UUID = "d08c0004-f4a4-4e53-b237-6ce85239c84a"  # read

VERSION = 1
FLAG_RESTART = 0x01
FLAG_OVERFLOW = 0x02
FLAG_COMPACT = 0x80
_KNOWN_FLAGS = FLAG_RESTART | FLAG_OVERFLOW | FLAG_COMPACT

HEADER = struct.Struct("<BBBBIIH")  # 14 bytes
COMPACT_HEADER = struct.Struct("<BBBI")  # 7 bytes: version, flags, ranges, counter (N = 1)
SAMPLE_BYTES = 12
CRC_BYTES = 2  # CRC-16/CCITT-FALSE after a full batch
COMPACT_CRC_BYTES = 1  # CRC-8 (poly 0x07) after a compact batch
MAX_PAYLOAD = 244  # ATT MTU 247 - 3
MIN_PAYLOAD = 20  # ATT MTU 23 - 3
MAX_SAMPLES = (MAX_PAYLOAD - HEADER.size - CRC_BYTES) // SAMPLE_BYTES  # 19
MAX_SAMPLES_COMPACT = (MIN_PAYLOAD - COMPACT_HEADER.size - COMPACT_CRC_BYTES) // SAMPLE_BYTES  # 1


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF; check value 0x29B1 for b"123456789")."""
    return binascii.crc_hqx(data, 0xFFFF)


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0; check value 0xF4 for b"123456789")."""
    c = 0
    for b in data:
        c = _CRC8[c ^ b]
    return c


G = 9.80665
#: range code -> (full scale, LSB per unit): accel in g, gyro in °/s (MPU-6050 datasheet sensitivities)
ACC_RANGES = {0: (2, 16384.0), 1: (4, 8192.0), 2: (8, 4096.0), 3: (16, 2048.0)}
GYR_RANGES = {0: (250, 131.0), 1: (500, 65.5), 2: (1000, 32.8), 3: (2000, 16.4)}

COUNTER_MOD = 1 << 32


def samples_per_notification(att_mtu: int) -> tuple[int, bool]:
    """(samples per batch, compact?) a sensor uses for a negotiated ATT MTU."""
    payload = att_mtu - 3
    if payload < MIN_PAYLOAD:
        raise ValueError(f"ATT MTU {att_mtu} is below the minimum 23")
    n = min(MAX_SAMPLES, (payload - HEADER.size - CRC_BYTES) // SAMPLE_BYTES)
    return (n, False) if n >= 1 else (MAX_SAMPLES_COMPACT, True)


@dataclass(frozen=True)
class Batch:
    """One decoded data notification. ``raw`` (N, 6) int16: ax, ay, az, gx, gy, gz."""

    version: int
    flags: int
    counter: int
    acc_code: int
    gyr_code: int
    raw: np.ndarray
    rate_mhz: int | None = None  # None in compact batches
    boot_id: int | None = None  # None in compact batches

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def restart(self) -> bool:
        return bool(self.flags & FLAG_RESTART)

    @property
    def overflow(self) -> bool:
        return bool(self.flags & FLAG_OVERFLOW)

    @property
    def compact(self) -> bool:
        return bool(self.flags & FLAG_COMPACT)

    @property
    def rate_hz(self) -> float | None:
        return None if self.rate_mhz is None else self.rate_mhz / 1000.0

    @property
    def acc(self) -> np.ndarray:
        """(N, 3) m/s², specific force, sensor axes."""
        return self.raw[:, 0:3].astype(float) * (G / ACC_RANGES[self.acc_code][1])

    @property
    def gyr(self) -> np.ndarray:
        """(N, 3) rad/s, sensor axes."""
        return np.radians(self.raw[:, 3:6].astype(float) / GYR_RANGES[self.gyr_code][1])


def _check_codes(acc_code: int, gyr_code: int) -> None:
    if acc_code not in ACC_RANGES:
        raise ValueError(f"accel range code {acc_code} unknown (0..3 = ±2/4/8/16 g)")
    if gyr_code not in GYR_RANGES:
        raise ValueError(f"gyro range code {gyr_code} unknown (0..3 = ±250/500/1000/2000 °/s)")


def encode_batch(
    counter: int,
    raw,
    *,
    rate_mhz: int = 200_000,
    acc_code: int = 2,
    gyr_code: int = 2,
    boot_id: int = 0,
    flags: int = 0,
    compact: bool = False,
) -> bytes:
    """One data notification for raw int16 samples ``raw`` (N, 6) whose first sample has ``counter``."""
    arr = np.asarray(raw)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"encode_batch: samples must have shape (N, 6), got {arr.shape}")
    if arr.size and (arr.min() < -32768 or arr.max() > 32767):
        raise ValueError("encode_batch: samples must be int16")
    _check_codes(acc_code, gyr_code)
    limit = MAX_SAMPLES_COMPACT if compact else MAX_SAMPLES
    if len(arr) > limit:
        raise ValueError(f"encode_batch: {len(arr)} samples do not fit one notification (at most {limit})")
    if flags & ~(FLAG_RESTART | FLAG_OVERFLOW):
        raise ValueError(f"encode_batch: unknown flags 0x{flags:02x}")
    if not 0 < rate_mhz < COUNTER_MOD or not 0 <= boot_id <= 0xFFFF:
        raise ValueError(f"encode_batch: rate_mhz must be 1..2**32-1 and boot_id 0..65535, got {rate_mhz}, {boot_id}")
    ranges = acc_code | (gyr_code << 4)
    counter %= COUNTER_MOD
    body = arr.astype("<i2").tobytes()
    if compact:
        if len(arr) != 1:
            raise ValueError("encode_batch: a compact batch carries exactly one sample")
        out = COMPACT_HEADER.pack(VERSION, flags | FLAG_COMPACT, ranges, counter) + body
        return out + bytes([crc8(out)])
    out = HEADER.pack(VERSION, flags, len(arr), ranges, counter, rate_mhz, boot_id) + body
    return out + crc16(out).to_bytes(2, "little")


def decode_batch(payload: bytes) -> Batch:
    """Strictly decode one data notification; ValueError saying what is wrong (a bad checksum first)."""
    payload = bytes(payload)
    if len(payload) < 2:
        raise ValueError(f"stackcue batch too short: {len(payload)} bytes")
    version, flags = payload[0], payload[1]
    if version != VERSION:
        raise ValueError(f"stackcue batch version {version} not supported (this receiver reads version {VERSION})")
    compact = bool(flags & FLAG_COMPACT)
    if compact:
        want = COMPACT_HEADER.size + SAMPLE_BYTES + COMPACT_CRC_BYTES
        if len(payload) != want:
            raise ValueError(f"stackcue compact batch length {len(payload)} bytes, must be {want}")
        if crc8(payload[:-1]) != payload[-1]:
            raise ValueError("stackcue batch checksum (CRC-8) does not match: damaged")
        _, _, ranges, counter = COMPACT_HEADER.unpack_from(payload)
        n, head, rate_mhz, boot_id = 1, COMPACT_HEADER.size, None, None
    else:
        if len(payload) < HEADER.size + CRC_BYTES:
            raise ValueError(
                f"stackcue batch too short: {len(payload)} bytes, header and checksum alone are "
                f"{HEADER.size + CRC_BYTES}"
            )
        n = payload[2]
        want = HEADER.size + n * SAMPLE_BYTES + CRC_BYTES
        if n > MAX_SAMPLES or len(payload) != want:
            raise ValueError(
                f"stackcue batch length {len(payload)} bytes, but {n} samples (at most {MAX_SAMPLES}) "
                f"with a {HEADER.size}-byte header and the checksum make {want}"
            )
        if crc16(payload[:-CRC_BYTES]) != int.from_bytes(payload[-CRC_BYTES:], "little"):
            raise ValueError("stackcue batch checksum (CRC-16) does not match: damaged")
        _, _, _, ranges, counter, rate_mhz, boot_id = HEADER.unpack_from(payload)
        head = HEADER.size
        if rate_mhz == 0:
            raise ValueError("stackcue batch has a sample rate of 0")
    if flags & ~_KNOWN_FLAGS:
        raise ValueError(f"stackcue batch has unknown flags 0x{flags & ~_KNOWN_FLAGS:02x}")
    acc_code, gyr_code = ranges & 0x0F, ranges >> 4
    _check_codes(acc_code, gyr_code)
    raw = np.frombuffer(payload, "<i2", offset=head, count=n * 6).reshape(n, 6).astype(np.int16)
    return Batch(version, flags, counter, acc_code, gyr_code, raw, rate_mhz, boot_id)


# --- control and info characteristics --------------------------------------------------------------

OP_GET_CONFIG = 0x01
OP_SET_RATE = 0x02  # u32 rate mHz: the sensor takes the nearest rate it can make, the reply says which
OP_SET_RANGES = 0x03  # u8 ranges (as in the data header)
OP_START = 0x04
OP_STOP = 0x05
REPLY_BIT = 0x80

STATUS_OK = 0
STATUS_UNKNOWN_OP = 1
STATUS_BAD_LENGTH = 2
STATUS_BAD_VALUE = 3
STATUS_TEXT = {
    STATUS_OK: "ok",
    STATUS_UNKNOWN_OP: "unknown opcode",
    STATUS_BAD_LENGTH: "bad length",
    STATUS_BAD_VALUE: "value not supported",
}

REPLY = struct.Struct("<BBBBIHI")  # op|0x80, seq, status, ranges, rate mHz, boot id, next counter: 14 bytes
INFO = struct.Struct("<BBBBIHBB")  # version, imu kind, ranges, max batch, rate mHz, boot id, fw major, minor: 12
IMU_KINDS = {1: "MPU-6050", 2: "MPU-6500/9250", 3: "LSM6DS3", 4: "BMI270"}
_REQUEST_LEN = {OP_GET_CONFIG: 0, OP_SET_RATE: 4, OP_SET_RANGES: 1, OP_START: 0, OP_STOP: 0}


def encode_request(op: int, seq: int, value: int | None = None) -> bytes:
    """A control write: ``op``, ``seq`` (echoed in the reply), then the op's value."""
    if op not in _REQUEST_LEN:
        raise ValueError(f"unknown control opcode {op}")
    size = _REQUEST_LEN[op]
    if (value is None) != (size == 0):
        raise ValueError(f"control opcode {op} takes {'no value' if size == 0 else f'a {size}-byte value'}")
    body = b"" if size == 0 else int(value).to_bytes(size, "little")  # type: ignore[arg-type]
    return bytes((op, seq & 0xFF)) + body


def set_rate_request(seq: int, rate_hz: float) -> bytes:
    return encode_request(OP_SET_RATE, seq, round(rate_hz * 1000))


def set_ranges_request(seq: int, acc_code: int, gyr_code: int) -> bytes:
    _check_codes(acc_code, gyr_code)
    return encode_request(OP_SET_RANGES, seq, acc_code | (gyr_code << 4))


@dataclass(frozen=True)
class ControlReply:
    op: int
    seq: int
    status: int
    acc_code: int
    gyr_code: int
    rate_mhz: int
    boot_id: int
    next_counter: int

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def encode_reply(op: int, seq: int, status: int, ranges: int, rate_mhz: int, boot_id: int, next_counter: int) -> bytes:
    return REPLY.pack(op | REPLY_BIT, seq & 0xFF, status, ranges, rate_mhz, boot_id, next_counter % COUNTER_MOD)


def decode_reply(payload: bytes) -> ControlReply:
    if len(payload) != REPLY.size:
        raise ValueError(f"stackcue control reply must be {REPLY.size} bytes, got {len(payload)}")
    op, seq, status, ranges, rate, boot, nxt = REPLY.unpack(bytes(payload))
    if not op & REPLY_BIT:
        raise ValueError(f"stackcue control reply without the reply bit: opcode 0x{op:02x}")
    return ControlReply(op & 0x7F, seq, status, ranges & 0x0F, ranges >> 4, rate, boot, nxt)


@dataclass(frozen=True)
class SensorInfo:
    version: int
    imu_kind: int
    acc_code: int
    gyr_code: int
    max_batch: int
    rate_mhz: int
    boot_id: int
    firmware: tuple[int, int]


def encode_info(
    imu_kind: int, ranges: int, max_batch: int, rate_mhz: int, boot_id: int, firmware: tuple[int, int] = (1, 0)
) -> bytes:
    return INFO.pack(VERSION, imu_kind, ranges, max_batch, rate_mhz, boot_id, *firmware)


def decode_info(payload: bytes) -> SensorInfo:
    if len(payload) < INFO.size:  # later versions may append fields
        raise ValueError(f"stackcue info must be at least {INFO.size} bytes, got {len(payload)}")
    v, kind, ranges, max_batch, rate, boot, fw1, fw2 = INFO.unpack_from(bytes(payload))
    if v != VERSION:
        raise ValueError(f"stackcue sensor speaks profile version {v}; this receiver reads version {VERSION}")
    return SensorInfo(v, kind, ranges & 0x0F, ranges >> 4, max_batch, rate, boot, (fw1, fw2))


# --- counters -> sample indices ------------------------------------------------------------------


@dataclass(frozen=True)
class Tracked:
    """Where a batch goes: ``index`` of its first sample in the receiver's unbroken numbering.

    ``lost`` samples were missing just before it (their indices are skipped: a gap, never filled);
    ``restart``: the sensor's counter started again (boot, config change, or it went backwards), so the
    timestamps must be anchored afresh (index continues, but no time relation to before);
    ``wrapped``: the 32-bit counter wrapped around inside or just before this batch.
    """

    index: int
    lost: int
    restart: bool
    wrapped: bool


@dataclass
class TrackerStats:
    batches: int = 0
    samples: int = 0
    lost: int = 0
    gaps: int = 0
    restarts: int = 0
    wraps: int = 0


@dataclass
class CounterTracker:
    """Turns 32-bit sample counters into an unbroken sample index, seeing every lost sample.

    A jump forward of less than ``max_gap`` samples is a gap (lost samples); a step backwards, a bigger
    jump, a RESTART flag, a new boot id or a new rate/range is a restart.
    """

    max_gap: int = 1 << 24  # 23 h at 200 Hz
    stats: TrackerStats = field(default_factory=TrackerStats)
    _next: int | None = None  # expected next counter
    _index: int = 0  # index the next sample gets if contiguous
    _config: tuple | None = None

    def expect(self, boot_id: int, rate_mhz: int) -> None:
        """Boot id and rate from the info characteristic or a control reply (what compact batches omit)."""
        if self._config is None:
            self._config = (boot_id, rate_mhz, None, None)
        elif (self._config[0], self._config[1]) != (boot_id, rate_mhz):
            self._config = (boot_id, rate_mhz, *self._config[2:])
            self._next = None  # a new configuration: the next batch starts a new segment

    def update(self, batch: Batch) -> Tracked:
        self.stats.batches += 1
        config = (batch.boot_id, batch.rate_mhz, batch.acc_code, batch.gyr_code)
        same = self._config is not None and all(
            a is None or b is None or a == b for a, b in zip(config, self._config, strict=True)
        )
        if self._config is not None:  # compact batches carry no boot id / rate: keep the known ones
            config = tuple(b if a is None else a for a, b in zip(config, self._config, strict=True))
        lost, restart = 0, False
        if self._next is None or batch.restart or not same:
            restart = True
        else:
            delta = (batch.counter - self._next) % COUNTER_MOD
            if delta >= self.max_gap:
                restart = True
            else:
                lost = delta
        if restart:
            self.stats.restarts += 1
        elif lost:
            self.stats.gaps += 1
            self.stats.lost += lost
        index = self._index + lost
        n = len(batch)
        if restart:
            start = batch.counter
            wrapped = start + n > COUNTER_MOD
        else:
            start = self._next + lost  # type: ignore[operator]  # _next may be 2**32 after a batch ending there
            wrapped = start >= COUNTER_MOD or start + n > COUNTER_MOD
        end = start + n
        if wrapped:
            self.stats.wraps += 1
        self._next = end - COUNTER_MOD if (wrapped and end >= COUNTER_MOD) else end
        self._index = index + len(batch)
        self._config = config
        self.stats.samples += len(batch)
        return Tracked(index, lost, restart, wrapped)
