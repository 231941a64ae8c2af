"""MPU-6050 over I2C: configuration, FIFO reads, faults, host timestamps.

Follows the InvenSense register map (RM-MPU-6000A rev 4.2) and product
specification (PS-MPU-6000A rev 3.4), and the traps the Linux driver
(drivers/iio/imu/inv_mpu6050) guards against:

- the FIFO is 1024 bytes, not a multiple of a 12-byte frame: after an
  overflow the content is misaligned, so the FIFO is reset and the lost span
  becomes a gap; some chips do not report the overflow bit, so a count near
  the limit, or a read that took long enough for the FIFO to fill, is
  treated the same way;
- reading an empty FIFO returns the last byte again, not an error: only
  whole frames counted by FIFO_COUNT are read;
- FIFO_COUNT is read high byte first, in one burst.

``bus`` is anything with smbus2's ``SMBus`` methods: a real ``smbus2.SMBus(1)``
on a Pi, or :class:`firmware_bridge.emulated.mpu6050.EmulatedBus`.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stackcue.errors import SourceError

from .block import Block
from .timestamps import SampleClock

# registers (RM-MPU-6000A)
SMPLRT_DIV = 0x19
CONFIG = 0x1A
GYRO_CONFIG = 0x1B
ACCEL_CONFIG = 0x1C
FIFO_EN = 0x23
INT_ENABLE = 0x38
INT_STATUS = 0x3A
ACCEL_XOUT_H = 0x3B
SIGNAL_PATH_RESET = 0x68
USER_CTRL = 0x6A
PWR_MGMT_1 = 0x6B
FIFO_COUNT_H = 0x72
FIFO_R_W = 0x74
WHO_AM_I = 0x75

WHO_AM_I_MPU6050 = 0x68
FIFO_SIZE = 1024
FRAME = 12  # accel XYZ + gyro XYZ, big-endian int16 each
FIFO_EN_ACCEL_GYRO = 0x78  # XG, YG, ZG, ACCEL
USER_CTRL_FIFO_EN = 0x40
USER_CTRL_FIFO_RESET = 0x04
PWR_DEVICE_RESET = 0x80
PWR_CLKSEL_PLL_XGYRO = 0x01
INT_FIFO_OFLOW = 0x10
INT_DATA_RDY = 0x01

ACCEL_RANGES_G = {2: 0, 4: 1, 8: 2, 16: 3}
GYRO_RANGES_DPS = {250: 0, 500: 1, 1000: 2, 2000: 3}
ACCEL_LSB_PER_G = {2: 16384.0, 4: 8192.0, 8: 4096.0, 16: 2048.0}
GYRO_LSB_PER_DPS = {250: 131.0, 500: 65.5, 1000: 32.8, 2000: 16.4}
#: DLPF_CFG -> accelerometer bandwidth Hz (gyro output rate 1 kHz for 1..6)
DLPF_BANDWIDTH_HZ = {1: 184, 2: 94, 3: 44, 4: 21, 5: 10, 6: 5}
G = 9.80665
#: the largest read in one i2c_rdwr transfer; smbus block reads stop at 32 bytes
MAX_RDWR_BYTES = 240
MAX_BLOCK_BYTES = 32


def valid_rates() -> list[float]:
    """Rates the MPU-6050 makes with its low-pass on: 1000/(1+d) Hz, 50 Hz and up."""
    return [1000.0 / (1 + d) for d in range(0, 20)]


def check_rate(rate_hz: float) -> int:
    """SMPLRT_DIV for ``rate_hz``, or SourceError naming the nearest valid rate."""
    for d, r in enumerate(valid_rates()):
        if abs(r - rate_hz) < 1e-6 * r:
            return d
    near = min(valid_rates(), key=lambda r: abs(r - rate_hz))
    raise SourceError(
        f"the MPU-6050 cannot sample at {rate_hz:g} Hz (it makes 1000/(1+d) Hz, 50–1000); nearest: {near:g} Hz"
    )


def dlpf_for(rate_hz: float) -> int:
    """The widest low-pass whose bandwidth stays under a quarter of the rate (impacts must not alias)."""
    for cfg in sorted(DLPF_BANDWIDTH_HZ):
        if DLPF_BANDWIDTH_HZ[cfg] <= rate_hz / 4:
            return cfg
    return 6


@dataclass
class DriverStats:
    """What went wrong and what it cost, for logs and the session statistics."""

    frames: int = 0
    reads: int = 0
    bus_errors: int = 0
    retries: int = 0
    overflows: int = 0
    fifo_resets: int = 0
    reinits: int = 0
    lost_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class MPU6050:
    """One MPU-6050: ``start()``, then ``read()`` a Block of every whole sample since the last call.

    ``clock``/``sleep`` are injectable (tests drive them with the emulator's
    clock). Bus errors (OSError, e.g. errno 121 on a loose connector) are
    retried with bounded backoff; repeated failures re-initialise the chip;
    while it stays unreachable ``read()`` returns empty blocks, ``status``
    says why, and attempts are spaced ``reconnect_s`` apart (no busy loop).
    """

    def __init__(
        self,
        bus,
        address: int = 0x68,
        rate_hz: float = 200,
        accel_range_g: int = 8,
        gyro_range_dps: int = 1000,
        *,
        accept_who_am_i: tuple[int, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retries: int = 3,
        reconnect_s: float = 2.0,
        bus_number: int | None = None,
    ) -> None:
        if accel_range_g not in ACCEL_RANGES_G:
            raise SourceError(f"accel_range_g must be one of {sorted(ACCEL_RANGES_G)}, got {accel_range_g}")
        if gyro_range_dps not in GYRO_RANGES_DPS:
            raise SourceError(f"gyro_range_dps must be one of {sorted(GYRO_RANGES_DPS)}, got {gyro_range_dps}")
        self.div = check_rate(rate_hz)
        self.bus = bus
        self.address = address
        self.rate_hz = 1000.0 / (1 + self.div)
        self.accel_range_g = accel_range_g
        self.gyro_range_dps = gyro_range_dps
        self.accept = (WHO_AM_I_MPU6050, *accept_who_am_i)
        self.clock = clock
        self.sleep = sleep
        self.retries = retries
        self.reconnect_s = reconnect_s
        number = bus_number if bus_number is not None else getattr(bus, "bus", "?")
        self.where = f"I2C bus {number} address 0x{address:02x}"
        self.acc_scale = G / ACCEL_LSB_PER_G[accel_range_g]
        self.gyr_scale = np.radians(1.0) / GYRO_LSB_PER_DPS[gyro_range_dps]
        self.stamps = SampleClock(1.0 / self.rate_hz)
        self.stats = DriverStats()
        self.status = "stopped"
        self.who_am_i: int | None = None
        self._down_since: float | None = None
        self._next_attempt = 0.0
        self._gap_from: float | None = None
        self._use_rdwr = hasattr(bus, "i2c_rdwr")

    # ------------------------------------------------------------- bus access
    def _xfer(self, fn: Callable, *args):
        """One bus transaction with bounded retries; raises the last OSError."""
        delay = 0.001
        for attempt in range(self.retries + 1):
            try:
                return fn(*args)
            except OSError:
                self.stats.bus_errors += 1
                if attempt == self.retries:
                    raise
                self.stats.retries += 1
                self.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _read(self, reg: int, n: int) -> bytes:
        return bytes(self._xfer(self.bus.read_i2c_block_data, self.address, reg, n))

    def _write(self, reg: int, value: int) -> None:
        self._xfer(self.bus.write_byte_data, self.address, reg, value)

    def _read_fifo(self, n: int) -> bytes:
        """``n`` bytes from FIFO_R_W in as few transfers as the bus allows (whole frames each)."""
        out = bytearray()
        step = (MAX_RDWR_BYTES if self._use_rdwr else MAX_BLOCK_BYTES) // FRAME * FRAME
        while len(out) < n:
            k = min(step, n - len(out))
            if self._use_rdwr:
                from smbus2 import i2c_msg

                def rdwr(k: int = k) -> bytes:
                    w, r = i2c_msg.write(self.address, [FIFO_R_W]), i2c_msg.read(self.address, k)
                    self.bus.i2c_rdwr(w, r)
                    return bytes(r)

                out += self._xfer(rdwr)
            else:
                out += self._read(FIFO_R_W, k)
        return bytes(out)

    # ------------------------------------------------------------- set-up
    def identify(self) -> int:
        """WHO_AM_I, or a one-line SourceError naming bus and address."""
        try:
            who = self._read(WHO_AM_I, 1)[0]
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SourceError(
                f"no MPU-6050 answers on {self.where} ({reason}): check wiring, power and the "
                "address (AD0 low = 0x68, high = 0x69)"
            ) from None
        if who not in self.accept:
            raise SourceError(
                f"{self.where}: WHO_AM_I is 0x{who:02x}, not an MPU-6050 (0x68); if it is a "
                f"register-compatible clone, accept it with [mpu6050] accept_who_am_i = [0x{who:02x}]"
            )
        self.who_am_i = who
        return who

    def configure(self) -> None:
        """Reset, wake on the gyro PLL, low-pass, rate, ranges, FIFO of accel+gyro frames."""
        self._write(PWR_MGMT_1, PWR_DEVICE_RESET)
        self.sleep(0.1)  # reset takes up to 100 ms
        self._write(SIGNAL_PATH_RESET, 0x07)
        self.sleep(0.1)
        self._write(PWR_MGMT_1, PWR_CLKSEL_PLL_XGYRO)
        self.sleep(0.01)
        settings = {
            CONFIG: dlpf_for(self.rate_hz),
            SMPLRT_DIV: self.div,
            GYRO_CONFIG: GYRO_RANGES_DPS[self.gyro_range_dps] << 3,
            ACCEL_CONFIG: ACCEL_RANGES_G[self.accel_range_g] << 3,
            INT_ENABLE: INT_FIFO_OFLOW | INT_DATA_RDY,
            FIFO_EN: FIFO_EN_ACCEL_GYRO,
        }
        for reg, value in settings.items():
            self._write(reg, value)
        for reg, value in settings.items():
            got = self._read(reg, 1)[0]
            if got != value:
                raise OSError(errno.EIO, f"register 0x{reg:02x} reads 0x{got:02x}, wrote 0x{value:02x}")
        self._reset_fifo()

    def _reset_fifo(self) -> None:
        self._write(USER_CTRL, USER_CTRL_FIFO_RESET)
        self._write(USER_CTRL, USER_CTRL_FIFO_EN)
        self._read(INT_STATUS, 1)  # clear a stale overflow flag
        self.stats.fifo_resets += 1
        self.stamps.restart()

    def start(self) -> None:
        """Identify (one-line error if absent or wrong), configure, start the FIFO."""
        deadline = self.clock() + 2.0
        while True:
            try:
                self.identify()
                break
            except SourceError:
                if self.clock() >= deadline:
                    raise
                self.sleep(0.2)
        try:
            self.configure()
        except OSError as exc:
            raise SourceError(f"{self.where}: configuring the MPU-6050 failed ({exc.strerror or exc})") from None
        self.status = "streaming"
        self._down_since = None

    def stop(self) -> None:
        """Put the chip to sleep (SLEEP bit); errors here are not worth raising."""
        try:
            self._write(USER_CTRL, 0)
            self._write(PWR_MGMT_1, 0x40)
        except OSError:
            pass
        self.status = "stopped"

    # ------------------------------------------------------------- reading
    def read(self) -> Block:
        """Every whole sample that has arrived since the last call (possibly none)."""
        if self._down_since is not None:
            return self._reconnect()
        try:
            return self._read_frames()
        except OSError as exc:
            return self._fault(exc)

    def _read_frames(self) -> Block:
        t0 = self.clock()
        status = self._read(INT_STATUS, 1)[0]
        count_bytes = self._read(FIFO_COUNT_H, 2)
        t_count = self.clock()
        count = (count_bytes[0] << 8) | count_bytes[1]
        self.stats.reads += 1
        if status & INT_FIFO_OFLOW or count >= FIFO_SIZE - 2 * FRAME:
            return self._overflow(t_count, "overflow" if status & INT_FIFO_OFLOW else "count near the limit")
        n = count // FRAME
        if n == 0:
            return Block.empty()
        raw = self._read_fifo(n * FRAME)
        t_done = self.clock()
        # a hang between FIFO_COUNT and the data read may have filled the FIFO (the overflow bit is not
        # always reported): if it could have, the bytes read may be misaligned, so drop them
        could_fill = count + (t_done - t0) * self.rate_hz * 1.05 * FRAME >= FIFO_SIZE
        if could_fill or self._read(INT_STATUS, 1)[0] & INT_FIFO_OFLOW:
            return self._overflow(t_done, "the FIFO may have filled during the read")
        vals = np.frombuffer(raw, dtype=">i2").reshape(n, 6).astype(float)
        t = self.stamps.stamp(n, t_count)
        self.stats.frames += n
        if self._gap_from is not None:
            self.stats.lost_s += max(0.0, t[0] - self._gap_from)
            self._gap_from = None
        return Block(t, vals[:, :3] * self.acc_scale, vals[:, 3:] * self.gyr_scale)

    def _overflow(self, t_now: float, why: str) -> Block:
        self.stats.overflows += 1
        self.stats.errors.append(f"FIFO reset ({why})")
        if self._gap_from is None:
            self._gap_from = self.stamps.t_last if self.stamps.t_last is not None else t_now
        self._reset_fifo()
        return Block.empty()

    def _fault(self, exc: OSError) -> Block:
        """Retries are exhausted: re-initialise now, or go down and retry every ``reconnect_s``."""
        self.stats.errors.append(f"{type(exc).__name__}: {exc}")
        if self._gap_from is None:
            self._gap_from = self.stamps.t_last if self.stamps.t_last is not None else self.clock()
        try:
            self.stats.reinits += 1
            self.identify()
            self.configure()
            self.status = "streaming"
            return Block.empty()
        except (OSError, SourceError) as exc2:
            self._down_since = self.clock()
            self._next_attempt = self._down_since + self.reconnect_s
            self.status = f"sensor unreachable on {self.where}: {exc2}; retrying every {self.reconnect_s:g} s"
            return Block.empty()

    def _reconnect(self) -> Block:
        now = self.clock()
        if now < self._next_attempt:
            return Block.empty()
        try:
            self.identify()
            self.configure()
        except (OSError, SourceError) as exc:
            self._next_attempt = now + self.reconnect_s
            self.status = f"sensor unreachable on {self.where}: {exc}; retrying every {self.reconnect_s:g} s"
            return Block.empty()
        self._down_since = None
        self.status = "streaming"
        return Block.empty()

    @classmethod
    def open(cls, bus_number: int = 1, address: int = 0x68, **kwargs) -> MPU6050:
        """A driver on the Pi's I2C bus ``bus_number`` (``/dev/i2c-N``)."""
        return cls(open_i2c_bus(bus_number), address, bus_number=bus_number, **kwargs)


def open_i2c_bus(bus_number: int = 1):
    """``smbus2.SMBus(bus_number)`` with one-line errors a runner can act on."""
    import os

    path = f"/dev/i2c-{bus_number}"
    if not os.path.exists(path):
        raise SourceError(
            f"no I2C bus: {path} does not exist. On a Raspberry Pi enable I2C "
            "(sudo raspi-config nonint do_i2c 0, then reboot); elsewhere use the emulator "
            '(--emulate, or [source] kind = "emulated" for stackcue run)'
        )
    try:
        from smbus2 import SMBus

        return SMBus(bus_number)
    except PermissionError:
        raise SourceError(
            f"{path}: permission denied; add this user to the i2c group (sudo adduser $USER i2c) and log in again"
        ) from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc})") from None
