"""WitMotion BLE IMUs (WT901BLECL, BWT901BLE5.0): GATT UUIDs, notification decoding, register commands.

The packet layer only: no radio here (the bleak client comes with the BLE issue's next slice).

Sources (checked against the vendor's own code, not copied):

- WITMOTION/WitBluetooth_BWT901BLE5_0, ``Python/BWT901BLE5.0_python_sdk/device_model.py``
  (commit 803c1a815d8f144c983e28309d4f3665e89d3df9, 2024-08-01): service ``0000ffe5-…``,
  notify ``0000ffe4-…``, write ``0000ffe9-…``, all on the vendor's base ``-0000-1000-8000-00805f9a34fb``
  (note **9a**, not the Bluetooth base ``…00805f9b34fb``: matching on 16-bit short forms or the
  standard base finds nothing); the 20-byte ``0x55 0x61`` frame (acc, gyro, angle: 9 × int16 little-endian,
  ×16 g, ×2000 °/s, ×180° over 32768); the ``0x55 0x71`` register reply (register number, then
  registers from it on as int16 LE); read ``FF AA 27 reg 00``, write ``FF AA reg lo hi``,
  unlock = write 0x69 ← 0xB588 (``FF AA 69 88 B5``), save = write 0x00 ← 0 (``FF AA 00 00 00``).
- Same repository, ``Android_Java/wit-example-ble5/app/src/main/java/com/wit/witsdk/sensor/modular/
  connector/modular/bluetooth/constant/BleUUID.java`` (the same three UUIDs) and
  ``Android_Java/wit-example-ble5/WitSDK/src/main/java/com/wit/witsdk/Device/DeviceModel.java``
  ``SetRRate`` (1 Hz→3, 5→5, 10→6, 50→8, 100→9, 200→11); ``IOS_swift/BleExample/BleExampleApp.swift``
  (``FF AA 03 08 00`` = 50 Hz, ``FF AA 03 06 00`` = 10 Hz); ``Unity_C#/Android/.../Bwt901ble5UI.cs``
  (``SetReturnRate(0x0b)`` = 200 Hz). The codes for 0.2/0.5/2/20 Hz (1, 2, 4, 7) follow the same
  table in LiDline/witmotion_wt901blecl_ts ``src/functions/CommandsForDevice.ts``.

Known traps:

- The vendor's Python sample (device_model.py above) declares ``async def writeReg`` but calls
  ``self.unlock()`` and ``self.save()`` without ``await`` (they wrap the coroutine ``sendData``),
  so the unlock and the save never reach the sensor and a rate change is not kept; it also sleeps
  with ``time.sleep`` inside the event loop. Await every write, in order, with ~100 ms between
  (:func:`rate_sequence` gives the three writes).
- Several third-party samples map rates to the Hz value itself (``FF AA 03 64 00`` for 100 Hz): wrong,
  the register takes a code.
- The BLE frames carry no checksum: a frame that starts on a header and is 20 bytes long is taken as
  it is (the link layer CRC protects each notification); what can go wrong is alignment (a frame
  split across notifications, a truncated frame, stray bytes), which :class:`WitDecoder` handles.
- Above 50 Hz one notification may carry several frames back to back.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

_BASE = "-0000-1000-8000-00805f9a34fb"  # the vendor's base (9a), not Bluetooth's (9b)
SERVICE_UUID = "0000ffe5" + _BASE
NOTIFY_UUID = "0000ffe4" + _BASE
WRITE_UUID = "0000ffe9" + _BASE

FRAME_LEN = 20
HEADER = 0x55
KIND_DATA = 0x61
KIND_REGISTER = 0x71

G = 9.80665
ACC_SCALE_G = 16.0 / 32768.0
GYR_SCALE_DPS = 2000.0 / 32768.0
ANGLE_SCALE_DEG = 180.0 / 32768.0

REG_SAVE = 0x00
REG_RATE = 0x03
REG_UNLOCK = 0x69
UNLOCK_KEY = 0xB588
READ_REGISTER = 0x27

#: output rate (Hz) -> code for register 0x03 (RRATE)
RATE_CODES: dict[float, int] = {
    0.2: 0x01,
    0.5: 0x02,
    1.0: 0x03,
    2.0: 0x04,
    5.0: 0x05,
    10.0: 0x06,
    20.0: 0x07,
    50.0: 0x08,
    100.0: 0x09,
    200.0: 0x0B,
}
MAX_RATE_HZ = max(RATE_CODES)

_FRAME = struct.Struct("<BB9h")
_REPLY = struct.Struct("<BBH8H")


@dataclass(frozen=True)
class WitFrame:
    """One decoded 0x55 0x61 frame: ``acc`` m/s² (specific force), ``gyr`` rad/s, ``angle`` deg; sensor axes."""

    acc: np.ndarray
    gyr: np.ndarray
    angle: np.ndarray


@dataclass(frozen=True)
class RegisterReply:
    """A 0x55 0x71 reply: ``reg`` and the raw 16-bit values of registers ``reg``, ``reg + 1``, … ``reg + 7``."""

    reg: int
    values: tuple[int, ...]

    def signed(self, i: int = 0) -> int:
        v = self.values[i]
        return v - 0x10000 if v >= 0x8000 else v

    @property
    def rate_hz(self) -> float | None:
        """When this is a read of register 0x03: the output rate its code stands for (None if unknown)."""
        if self.reg != REG_RATE:
            return None
        return next((hz for hz, c in RATE_CODES.items() if c == self.values[0]), None)


@dataclass
class WitStats:
    bytes: int = 0
    frames: int = 0
    replies: int = 0
    skipped_bytes: int = 0  # bytes outside any accepted frame (stray bytes, remains of broken frames)
    bad_frames: int = 0  # frames abandoned because a new header started inside them (truncated)
    other_frames: int = 0  # well-formed 0x55 frames of other kinds, ignored


def decode_frame(frame: bytes) -> WitFrame:
    """A 20-byte 0x55 0x61 frame in SI units; ValueError if it is not one."""
    if len(frame) != FRAME_LEN or frame[0] != HEADER or frame[1] != KIND_DATA:
        raise ValueError(f"not a WitMotion data frame (need 20 bytes starting 55 61): {bytes(frame[:4]).hex(' ')}…")
    v = np.array(_FRAME.unpack(bytes(frame))[2:], float)
    return WitFrame(
        acc=v[0:3] * (ACC_SCALE_G * G), gyr=np.radians(v[3:6] * GYR_SCALE_DPS), angle=v[6:9] * ANGLE_SCALE_DEG
    )


def _q(x: float, scale: float) -> int:
    if not math.isfinite(x):
        raise ValueError(f"encode_frame: non-finite value {x}")
    return max(-32768, min(32767, round(x / scale)))


def encode_frame(acc, gyr, angle=(0.0, 0.0, 0.0)) -> bytes:
    """The 20-byte frame for ``acc`` m/s², ``gyr`` rad/s, ``angle`` deg (saturating at the int16 limits)."""
    a = [_q(x, ACC_SCALE_G * G) for x in acc]
    g = [_q(math.degrees(x), GYR_SCALE_DPS) for x in gyr]
    e = [_q(x, ANGLE_SCALE_DEG) for x in angle]
    if len(a) != 3 or len(g) != 3 or len(e) != 3:
        raise ValueError("encode_frame: acc, gyr and angle need three values each")
    return _FRAME.pack(HEADER, KIND_DATA, *a, *g, *e)


def parse_register_reply(frame: bytes) -> RegisterReply:
    """A 20-byte ``55 71 regL regH`` + 8 × uint16 LE reply; ValueError if it is not one."""
    if len(frame) != FRAME_LEN or frame[0] != HEADER or frame[1] != KIND_REGISTER:
        raise ValueError(f"not a WitMotion register reply (need 20 bytes starting 55 71): {bytes(frame[:4]).hex(' ')}")
    _, _, reg, *vals = _REPLY.unpack(bytes(frame))
    return RegisterReply(reg, tuple(vals))


def encode_register_reply(reg: int, values) -> bytes:
    """The inverse of :func:`parse_register_reply` (for the stand-in sensor and tests)."""
    vals = [int(v) & 0xFFFF for v in values] + [0] * (8 - len(values))
    return _REPLY.pack(HEADER, KIND_REGISTER, reg, *vals[:8])


MAX_STRAY = 4  # junk bytes between two frames that still leave the frame before them whole


def _is_header(buf: bytearray | bytes, i: int) -> bool:
    return buf[i] == HEADER and buf[i + 1] in (KIND_DATA, KIND_REGISTER)


@dataclass
class WitDecoder:
    """Stream decoder for the notify characteristic: feed every notification payload as it comes.

    A frame is taken only when it starts on ``55 61`` (or ``55 71``) and ends where another header starts
    (at once, or after at most ``MAX_STRAY`` junk bytes) or where the notification ends (notifications
    carry whole frames, so the end of one is an alignment mark). Anything else is no frame boundary
    (truncated, damaged, two frames run together): the candidate is dropped (``stats.bad_frames``) and
    decoding resumes at the next header. The frames carry no checksum, so this alignment rule is all that
    tells a broken frame: a damaged value inside a well-aligned frame would pass (the link layer's CRC
    makes that rare). Bytes outside accepted
    frames are counted in ``stats.skipped_bytes``. Register replies go to ``replies``.
    """

    stats: WitStats = field(default_factory=WitStats)
    replies: list[RegisterReply] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, payload: bytes) -> list[WitFrame]:
        self.stats.bytes += len(payload)
        buf = self._buf
        buf += payload
        out: list[WitFrame] = []
        i = 0
        n = len(buf)
        while True:
            # find the next header
            j = i
            while j + 1 < n and not _is_header(buf, j):
                j += 1
            if j + 1 >= n:  # no header: keep a trailing 0x55 (a header may be split), drop the rest
                keep = j if (j < n and buf[j] == HEADER) else n
                self.stats.skipped_bytes += keep - i
                i = keep
                break
            self.stats.skipped_bytes += j - i
            i = j
            if n - i < FRAME_LEN:
                break  # incomplete: wait for more
            end = i + FRAME_LEN
            if not self._ends_a_frame(buf, i, end, n):  # truncated, damaged or run into another
                self.stats.bad_frames += 1
                self.stats.skipped_bytes += 1
                i += 1  # look for the next header from the next byte on
                continue
            frame = bytes(buf[i:end])
            if frame[1] == KIND_DATA:
                out.append(decode_frame(frame))
                self.stats.frames += 1
            else:
                self.replies.append(parse_register_reply(frame))
                self.stats.replies += 1
            i = end
        del buf[:i]
        return out

    @staticmethod
    def _ends_a_frame(buf: bytearray, i: int, end: int, n: int) -> bool:
        if end == n or (end + 1 < n and _is_header(buf, end)) or (end + 1 == n and buf[end] == HEADER):
            return True  # the next header, or the end of the notification, follows right away
        if any(_is_header(buf, k) for k in range(i + 1, end)):
            return False  # another frame starts inside this one: this one was cut short
        # a few stray bytes, then a header (or the end): the frame is whole and the bytes are junk
        return any(end + k == n or (end + k + 1 < n and _is_header(buf, end + k)) for k in range(1, MAX_STRAY + 1))

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        self.stats.skipped_bytes += len(self._buf)
        self._buf.clear()


def frames_to_arrays(frames: list[WitFrame]) -> tuple[np.ndarray, np.ndarray]:
    """``acc`` (N, 3) m/s² and ``gyr`` (N, 3) rad/s of decoded frames, for a Block."""
    if not frames:
        return np.zeros((0, 3)), np.zeros((0, 3))
    return np.array([f.acc for f in frames]), np.array([f.gyr for f in frames])


def write_register(reg: int, value: int) -> bytes:
    """``FF AA reg lo hi``: write a 16-bit value to a register (needs :func:`unlock` first, :func:`save` after)."""
    if not 0 <= reg <= 0xFF or not 0 <= value <= 0xFFFF:
        raise ValueError(f"write_register: register 0..255 and value 0..65535, got {reg}, {value}")
    return bytes((0xFF, 0xAA, reg, value & 0xFF, value >> 8))


def unlock() -> bytes:
    """``FF AA 69 88 B5``: unlocks register writes for about 10 s."""
    return write_register(REG_UNLOCK, UNLOCK_KEY)


def save() -> bytes:
    """``FF AA 00 00 00``: keeps the current configuration over a power cycle."""
    return write_register(REG_SAVE, 0)


def set_rate(hz: float = MAX_RATE_HZ) -> bytes:
    """``FF AA 03 code 00``: the output rate; by default the fastest the sensor supports (200 Hz).

    Rates without a code are refused (ValueError naming the valid ones), never rounded silently.
    """
    for rate, code in RATE_CODES.items():
        if math.isclose(float(hz), rate, rel_tol=1e-9):
            return write_register(REG_RATE, code)
    valid = ", ".join(f"{r:g}" for r in RATE_CODES)
    raise ValueError(f"WitMotion BLE sensors cannot output at {hz:g} Hz; valid rates (Hz): {valid}")


def rate_sequence(hz: float = MAX_RATE_HZ) -> list[bytes]:
    """The writes that change the rate and keep it: unlock, set rate, save (await each, ~100 ms apart)."""
    return [unlock(), set_rate(hz), save()]


def read_register(reg: int) -> bytes:
    """``FF AA 27 reg 00``: ask for registers ``reg``…``reg + 7``; the answer is a 0x55 0x71 frame."""
    if not 0 <= reg <= 0xFF:
        raise ValueError(f"read_register: register must be 0..255, got {reg}")
    return bytes((0xFF, 0xAA, READ_REGISTER, reg, 0x00))
