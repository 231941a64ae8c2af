"""One or two InvenSense MPU-6050 chips on an emulated I2C bus, register by register.

``EmulatedBus`` has the methods of ``smbus2.SMBus`` that drivers use and fails the way
``smbus2.SMBus(1)`` on a Raspberry Pi fails (Linux i2c-dev over i2c-bcm2835): ``OSError`` with
``errno.EREMOTEIO`` (121) for a NACK, ``errno.ETIMEDOUT`` (110) when a stalled bus outlasts the
adapter's 1 s timeout, ``ValueError`` for SMBus blocks over 32 bytes, ``errno.EINVAL`` for an
``i2c_rdwr`` over 42 messages or with a message over 8192 bytes.

``EmulatedChip`` follows the register map RM-MPU-6000A-00 rev 4.2 and the product specification
PS-MPU-6000A-00 rev 3.4. Time advances only through the bus's ``clock()``: on every transaction the
addressed chip works out which of its internal sample instants have passed since the last one and
generates them (lazily, vectorised), so a fake clock makes a test deterministic and fast.

Emulated:
- reset values (all 0 except PWR_MGMT_1 = 0x40, WHO_AM_I = 0x68, settable for clones and other parts);
  DEVICE_RESET restores them and the chip NACKs for ``reset_s`` (100 ms) afterwards;
- SLEEP (no samples; the sample clock starts when the chip wakes), CLKSEL = 7 stops the clock;
- gyro output rate 8 kHz (DLPF_CFG 0 or 7) or 1 kHz, sample rate = gyro rate / (1 + SMPLRT_DIV), all
  on an oscillator off by ``osc_error``; the accelerometer runs at 1 kHz, so at 8 kHz its value repeats;
- the DLPF as a first-order low-pass at the table's bandwidths (accel 260/184/94/44/21/10/5 Hz,
  gyro 256/188/98/42/20/10/5 Hz; DLPF_CFG 7 leaves the gyro unfiltered), run at the internal rate
  and then decimated, so content above the sample rate's Nyquist aliases as on the chip; the
  filter's group delay is that of a first-order filter, not the table's;
- full scales (131/65.5/32.8/16.4 LSB/(°/s), 16384/8192/4096/2048 LSB/g), rounding to counts,
  saturation at -32768..32767; temperature = counts/340 + 36.53 °C;
- data registers 0x3B..0x48 (big-endian int16) updated at each sample; a transaction reads one
  snapshot (the chip copies its internal registers to the user-facing set while the bus is idle);
- FIFO of 1024 bytes, written in register order (accel XYZ, temp, gyro X, Y, Z, each enabled by
  FIFO_EN) when USER_CTRL.FIFO_EN is set; when full, new bytes overwrite the oldest one by one (the
  read side loses frame alignment) and FIFO_OFLOW_INT is set (``report_overflow=False``: the chip
  quirk of not reporting it); reading an empty FIFO returns the last byte read again;
- FIFO_COUNT_H/L big-endian, latched when FIFO_COUNT_H is read (reading only FIFO_COUNT_L gives the
  value latched last time, as the register map says);
- burst reads auto-increment the register address, except at FIFO_R_W (0x74), which keeps popping
  the FIFO; burst writes auto-increment too (writes to 0x74 push into the FIFO);
- INT_STATUS cleared by reading it (by any read with INT_PIN_CFG.INT_RD_CLEAR); USER_CTRL's
  FIFO_RESET, I2C_MST_RESET and SIG_COND_RESET self-clear, SIG_COND_RESET also zeroes the data
  registers; SIGNAL_PATH_RESET restarts the filters;
- the register pointer persists, so ``write_byte(addr, reg)`` then ``read_byte(addr)`` works.

Simplified or not emulated (stored only): self-test responses and the factory self-test registers
(read 0 as in the reset table), CYCLE and LP_WAKE_CTRL, PWR_MGMT_2 standby bits, TEMP_DIS, the
auxiliary I2C master and EXT_SENS_DATA, FSYNC, the DMP and its memory, motion interrupts, the
undocumented offset registers, the gyro start-up transient after waking, sensor noise of the chip
itself (the motion track carries the noise), and the exact delay of the DLPF.

Whether INT_STATUS bits are set for sources not enabled in INT_ENABLE is not documented: by default
(``int_status_needs_enable=True``) they are set only for enabled sources, the safe assumption for a
driver. FIFO_RESET is documented to act "while FIFO_EN equals 0"; by default it acts regardless (as
chips are reported to, and as i2cdevlib relies on), ``strict_fifo_reset=True`` enforces the map.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import lfilter
from smbus2 import I2cFunc, i2c_msg

from ..clocks import ManualClock as FakeClock  # noqa: F401 - tests name it FakeClock
from .motion import G_STANDARD, MotionTrack

# Registers (RM-MPU-6000A-00 rev 4.2).
SELF_TEST_X = 0x0D
SMPLRT_DIV = 0x19
CONFIG = 0x1A
GYRO_CONFIG = 0x1B
ACCEL_CONFIG = 0x1C
FIFO_EN = 0x23
I2C_MST_CTRL = 0x24
I2C_MST_STATUS = 0x36
INT_PIN_CFG = 0x37
INT_ENABLE = 0x38
INT_STATUS = 0x3A
ACCEL_XOUT_H = 0x3B
TEMP_OUT_H = 0x41
GYRO_XOUT_H = 0x43
EXT_SENS_DATA_00 = 0x49
EXT_SENS_DATA_23 = 0x60
SIGNAL_PATH_RESET = 0x68
USER_CTRL = 0x6A
PWR_MGMT_1 = 0x6B
PWR_MGMT_2 = 0x6C
FIFO_COUNT_H = 0x72
FIFO_COUNT_L = 0x73
FIFO_R_W = 0x74
WHO_AM_I = 0x75

# Bits.
FIFO_EN_TEMP = 0x80
FIFO_EN_XG = 0x40
FIFO_EN_YG = 0x20
FIFO_EN_ZG = 0x10
FIFO_EN_ACCEL = 0x08
INT_FIFO_OFLOW = 0x10
INT_DATA_RDY = 0x01
INT_PIN_RD_CLEAR = 0x10
USER_CTRL_FIFO_EN = 0x40
USER_CTRL_FIFO_RESET = 0x04
USER_CTRL_I2C_MST_RESET = 0x02
USER_CTRL_SIG_COND_RESET = 0x01
USER_CTRL_SELF_CLEARING = 0x08 | USER_CTRL_FIFO_RESET | USER_CTRL_I2C_MST_RESET | USER_CTRL_SIG_COND_RESET
PWR_DEVICE_RESET = 0x80
PWR_SLEEP = 0x40
PWR_CLKSEL_STOP = 0x07

RESET_VALUES = {PWR_MGMT_1: 0x40, WHO_AM_I: 0x68}
READ_ONLY = {INT_STATUS, I2C_MST_STATUS, FIFO_COUNT_H, FIFO_COUNT_L, WHO_AM_I}
READ_ONLY |= set(range(ACCEL_XOUT_H, EXT_SENS_DATA_23 + 1))

GYRO_LSB_PER_DPS = (131.0, 65.5, 32.8, 16.4)  # FS_SEL 0..3: ±250/500/1000/2000 °/s
ACCEL_LSB_PER_G = (16384.0, 8192.0, 4096.0, 2048.0)  # AFS_SEL 0..3: ±2/4/8/16 g
DLPF_ACCEL_HZ = (260.0, 184.0, 94.0, 44.0, 21.0, 10.0, 5.0, 260.0)
DLPF_GYRO_HZ: tuple[float | None, ...] = (256.0, 188.0, 98.0, 42.0, 20.0, 10.0, 5.0, None)
TEMP_LSB_PER_C = 340.0
TEMP_OFFSET_C = 36.53
FIFO_SIZE = 1024

I2C_SMBUS_BLOCK_MAX = 32  # as smbus2 and linux/i2c.h
I2C_RDWR_IOCTL_MAX_MSGS = 42  # linux/i2c-dev.h
I2C_RDWR_MAX_MSG_LEN = 8192  # drivers/i2c/i2c-dev.c
I2C_M_RD = 0x0001
ADAPTER_TIMEOUT_S = 1.0  # i2c-bcm2835: BCM2835_I2C_TIMEOUT = 1000 ms, then -ETIMEDOUT

_MAX_TICKS_PER_CHUNK = 100_000


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


# --------------------------------------------------------------------------- the chip


class _LowPass:
    """First-order low-pass y += a·(x − y) per tick, state kept between calls; starts settled on its input."""

    def __init__(self) -> None:
        self.y: np.ndarray | None = None

    def reset(self) -> None:
        self.y = None

    def __call__(self, x: np.ndarray, cutoff_hz: float | None, fs: float) -> np.ndarray:
        if len(x) == 0:
            return x
        if cutoff_hz is None:
            self.y = x[-1].copy()
            return x
        a = 1.0 - math.exp(-2.0 * math.pi * cutoff_hz / fs)
        y0 = x[0] if self.y is None else self.y
        out, _ = lfilter([a], [1.0, a - 1.0], x, axis=0, zi=((1.0 - a) * y0)[None, :])
        self.y = out[-1].copy()
        return out


class EmulatedChip:
    """One MPU-6050 at an I2C address, measuring ``motion``.

    ``osc_error``: relative error of the chip's sample clock (0.01 → 1 % fast). ``gyro_offset_dps`` and
    ``accel_offset_g``: the chip's own zero-rate and zero-g offsets, added to the motion. ``g_m_s2``
    converts specific force to g (standard gravity, as the datasheet's LSB/g are).
    """

    def __init__(
        self,
        motion: MotionTrack,
        *,
        address: int = 0x68,
        who_am_i: int = 0x68,
        osc_error: float = 0.0,
        gyro_offset_dps: Sequence[float] = (0.0, 0.0, 0.0),
        accel_offset_g: Sequence[float] = (0.0, 0.0, 0.0),
        temperature_c: float = 25.0,
        report_overflow: bool = True,
        int_status_needs_enable: bool = True,
        strict_fifo_reset: bool = False,
        dlpf: bool = True,
        reset_s: float = 0.1,
        g_m_s2: float = G_STANDARD,
        fifo_size: int = FIFO_SIZE,
    ) -> None:
        if not 0x03 <= address <= 0x77:
            raise ValueError(f"address 0x{address:02x} is not a 7-bit device address")
        if not -0.5 < osc_error < 0.5:
            raise ValueError(f"osc_error={osc_error} is not a plausible oscillator error")
        self.motion = motion
        self.address = address
        self.who_am_i = who_am_i & 0xFF
        self.osc_error = float(osc_error)
        self.gyro_offset_dps = np.asarray(gyro_offset_dps, float).reshape(3)
        self.accel_offset_g = np.asarray(accel_offset_g, float).reshape(3)
        self.temperature_c = float(temperature_c)
        self.report_overflow = report_overflow
        self.int_status_needs_enable = int_status_needs_enable
        self.strict_fifo_reset = strict_fifo_reset
        self.dlpf = dlpf
        self.reset_s = float(reset_s)
        self.g_m_s2 = float(g_m_s2)
        self.fifo_size = int(fifo_size)
        self.epoch = 0.0  # clock value that is time 0 of the motion track; set by the bus
        # Counters for tests and benchmarks.
        self.samples_generated = 0
        self.fifo_bytes_written = 0
        self.fifo_bytes_lost = 0
        self._power_on()

    # ---- state

    def _power_on(self) -> None:
        self.regs = bytearray(256)
        for reg, val in RESET_VALUES.items():
            self.regs[reg] = val
        self.regs[WHO_AM_I] = self.who_am_i
        self.pointer = 0
        self.fifo = bytearray()
        self.last_fifo_byte = 0
        self.count_latch = 0
        self.reset_until = -math.inf
        self._now = 0.0
        self._origin: float | None = None  # clock time of tick 0 while running
        self._ticks_done = 0
        self._since_sample = 0
        self._tick_rate = 0.0
        self._f_int = 1000
        self._acc_lp = _LowPass()
        self._gyr_lp = _LowPass()
        self._acc_hold: np.ndarray | None = None

    @property
    def running(self) -> bool:
        """Awake with a running clock (SLEEP clear, CLKSEL not 7)."""
        pm = self.regs[PWR_MGMT_1]
        return not (pm & PWR_SLEEP) and (pm & 0x07) != PWR_CLKSEL_STOP

    @property
    def gyro_output_rate_hz(self) -> int:
        """Nominal: 8000 with DLPF_CFG 0 or 7, else 1000."""
        return 8000 if self.regs[CONFIG] & 0x07 in (0, 7) else 1000

    @property
    def sample_rate_hz(self) -> float:
        """Nominal sample rate from SMPLRT_DIV and DLPF_CFG (the true one is × (1 + osc_error))."""
        return self.gyro_output_rate_hz / (1 + self.regs[SMPLRT_DIV])

    @property
    def frame_bytes(self) -> int:
        """Bytes pushed into the FIFO per sample with the current FIFO_EN (0 when USER_CTRL.FIFO_EN is clear)."""
        if not self.regs[USER_CTRL] & USER_CTRL_FIFO_EN:
            return 0
        en = self.regs[FIFO_EN]
        two_byte = (FIFO_EN_TEMP, FIFO_EN_XG, FIFO_EN_YG, FIFO_EN_ZG)
        return 6 * bool(en & FIFO_EN_ACCEL) + 2 * sum(bool(en & b) for b in two_byte)

    def peek(self, reg: int) -> int:
        """A register's stored value, without any side effect (FIFO_R_W and FIFO_COUNT: their live values)."""
        if reg == FIFO_R_W:
            return self.fifo[0] if self.fifo else self.last_fifo_byte
        if reg == FIFO_COUNT_H:
            return len(self.fifo) >> 8
        if reg == FIFO_COUNT_L:
            return len(self.fifo) & 0xFF
        return self.regs[reg & 0xFF]

    # ---- time

    def advance(self, now: float) -> None:
        """Generate every sample whose instant has passed by ``now`` (clock time)."""
        self._now = now
        if not self.running or now < self.reset_until:
            self._origin = None
            return
        if self._origin is None:
            self._start_clock(now)
            return
        n_total = math.floor((now - self._origin) * self._tick_rate + 1e-9)
        while n_total > self._ticks_done:
            self._skip_idle(n_total)
            n = min(n_total - self._ticks_done, _MAX_TICKS_PER_CHUNK)
            self._run_ticks(n)

    def _start_clock(self, t0: float) -> None:
        """(Re)start the internal tick counter at clock time t0 with the current rate settings."""
        self._origin = t0
        self._ticks_done = 0
        self._f_int = self.gyro_output_rate_hz
        self._tick_rate = self._f_int * (1.0 + self.osc_error)

    def _retime(self) -> None:
        """Rate settings changed: keep the phase at the last tick, continue with the new tick rate."""
        if self._origin is None:
            return
        last_tick = self._origin + self._ticks_done / self._tick_rate
        if self.gyro_output_rate_hz != self._f_int:
            self._acc_hold = None
        self._start_clock(last_tick)

    def _skip_idle(self, n_total: int) -> None:
        """After a long idle stretch, skip ticks whose samples would be overwritten in the FIFO anyway."""
        div = self.regs[SMPLRT_DIV] + 1
        frame = self.frame_bytes
        keep_samples = (self.fifo_size // max(frame, 2) + 2) if frame else 2
        warm_ticks = int(0.5 * self._f_int)  # ≥ 10 time constants of the slowest (5 Hz) filter
        keep = keep_samples * div + warm_ticks
        skip = n_total - self._ticks_done - keep
        if skip <= _MAX_TICKS_PER_CHUNK:
            return
        n_samples = (self._since_sample + skip) // div
        self._since_sample = (self._since_sample + skip) % div
        self._ticks_done += skip
        self.samples_generated += n_samples
        if frame:
            self.fifo_bytes_written += n_samples * frame
            self.fifo_bytes_lost += n_samples * frame  # all of it is overwritten by what follows
        self._acc_lp.reset()
        self._gyr_lp.reset()
        self._acc_hold = None

    def _run_ticks(self, n: int) -> None:
        k = np.arange(self._ticks_done + 1, self._ticks_done + n + 1)
        t = self._origin + k / self._tick_rate
        self._ticks_done += n
        div = self.regs[SMPLRT_DIV] + 1
        first = div - self._since_sample if self._since_sample < div else 1
        sample_idx = np.arange(first - 1, n, div)
        self._since_sample = n - (sample_idx[-1] + 1) if len(sample_idx) else self._since_sample + n
        if len(sample_idx) == 0 and not self.dlpf:
            return
        cfg = self.regs[CONFIG] & 0x07
        osc = 1.0 + self.osc_error
        if self._f_int == 8000:
            acc_ticks = k % 8 == 0
            acc_raw, _ = self.motion.sample(t[acc_ticks] - self.epoch)
            _, gyr_raw = self.motion.sample(t - self.epoch)
            acc_f = self._acc_lp(acc_raw, DLPF_ACCEL_HZ[cfg] if self.dlpf else None, 1000.0 * osc)
            idx = np.cumsum(acc_ticks) - 1
            hold = self._acc_hold if self._acc_hold is not None else (acc_f[0] if len(acc_f) else None)
            if hold is None:  # no accelerometer tick yet since (re)start: evaluate at the first tick
                hold = self.motion.sample(t[:1] - self.epoch)[0][0]
            acc = np.where(idx[:, None] >= 0, acc_f[np.maximum(idx, 0)] if len(acc_f) else hold, hold)
            self._acc_hold = acc[-1].copy()
        else:
            acc_raw, gyr_raw = self.motion.sample(t - self.epoch)
            acc = self._acc_lp(acc_raw, DLPF_ACCEL_HZ[cfg] if self.dlpf else None, 1000.0 * osc)
        gyr_dps = np.degrees(gyr_raw) + self.gyro_offset_dps
        gyr_dps = self._gyr_lp(gyr_dps, DLPF_GYRO_HZ[cfg] if self.dlpf else None, self._f_int * osc)
        if len(sample_idx):
            self._emit(acc[sample_idx] / self.g_m_s2 + self.accel_offset_g, gyr_dps[sample_idx])

    def _emit(self, acc_g: np.ndarray, gyr_dps: np.ndarray) -> None:
        """Convert samples to counts, update the data registers, push enabled sensors into the FIFO."""
        n = len(acc_g)
        a_lsb = ACCEL_LSB_PER_G[(self.regs[ACCEL_CONFIG] >> 3) & 3]
        g_lsb = GYRO_LSB_PER_DPS[(self.regs[GYRO_CONFIG] >> 3) & 3]
        counts = np.empty((n, 7), float)
        counts[:, 0:3] = acc_g * a_lsb
        counts[:, 3] = (self.temperature_c - TEMP_OFFSET_C) * TEMP_LSB_PER_C
        counts[:, 4:7] = gyr_dps * g_lsb
        words = np.clip(np.rint(counts), -32768, 32767).astype(">i2")
        raw = words.view(np.uint8).reshape(n, 14)
        self.regs[ACCEL_XOUT_H : GYRO_XOUT_H + 6] = raw[-1].tobytes()
        self.samples_generated += n
        self._set_status(INT_DATA_RDY)
        frame = self.frame_bytes
        if frame:
            en = self.regs[FIFO_EN]
            cols = [0, 1, 2, 3, 4, 5] if en & FIFO_EN_ACCEL else []
            for bit, c in ((FIFO_EN_TEMP, 6), (FIFO_EN_XG, 8), (FIFO_EN_YG, 10), (FIFO_EN_ZG, 12)):
                if en & bit:
                    cols += [c, c + 1]
            self._push(raw[:, cols].tobytes())

    def _push(self, data: bytes) -> None:
        self.fifo += data
        self.fifo_bytes_written += len(data)
        excess = len(self.fifo) - self.fifo_size
        if excess > 0:  # the oldest bytes are overwritten one by one: the read side loses alignment
            del self.fifo[:excess]
            self.fifo_bytes_lost += excess
            if self.report_overflow:
                self._set_status(INT_FIFO_OFLOW)

    def _set_status(self, bit: int) -> None:
        if not self.int_status_needs_enable or self.regs[INT_ENABLE] & bit:
            self.regs[INT_STATUS] |= bit

    # ---- register access (the bus calls these after advance())

    def read(self, reg: int, n: int) -> bytes:
        """A burst read of n bytes starting at reg (auto-increment, except at FIFO_R_W)."""
        out = bytearray()
        reg &= 0xFF
        cleared = False
        while len(out) < n:
            if reg == FIFO_R_W:
                want = n - len(out)
                take = bytes(self.fifo[:want])
                del self.fifo[:want]
                if take:
                    self.last_fifo_byte = take[-1]
                out += take + bytes([self.last_fifo_byte]) * (want - len(take))
                break
            if reg == FIFO_COUNT_H:
                self.count_latch = len(self.fifo)
                out.append(self.count_latch >> 8)
            elif reg == FIFO_COUNT_L:
                out.append(self.count_latch & 0xFF)
            else:
                out.append(self.regs[reg])
                cleared |= reg == INT_STATUS
            reg = (reg + 1) & 0xFF
        self.pointer = reg
        if cleared or self.regs[INT_PIN_CFG] & INT_PIN_RD_CLEAR:
            self.regs[INT_STATUS] = 0
        return bytes(out)

    def write(self, reg: int, data: bytes) -> None:
        """A burst write starting at reg (auto-increment; FIFO_R_W takes all the rest)."""
        reg &= 0xFF
        for i, val in enumerate(data):
            if reg == FIFO_R_W:
                self._push(bytes(data[i:]))
                break
            self._write_register(reg, val & 0xFF)
            reg = (reg + 1) & 0xFF
        self.pointer = reg

    def _write_register(self, reg: int, val: int) -> None:
        if reg in READ_ONLY:
            return
        if reg == PWR_MGMT_1:
            if val & PWR_DEVICE_RESET:
                self._device_reset()
                return
            was_running = self.running
            self.regs[reg] = val
            if self.running and not was_running:
                self._start_clock(self._now)  # the sample clock starts when the chip wakes
                self._since_sample = 0
                self._acc_lp.reset()
                self._gyr_lp.reset()
                self._acc_hold = None
            elif not self.running:
                self._origin = None
            return
        if reg == USER_CTRL:
            if val & USER_CTRL_FIFO_RESET and not (self.strict_fifo_reset and val & USER_CTRL_FIFO_EN):
                self.fifo.clear()
                self.count_latch = 0
            if val & USER_CTRL_SIG_COND_RESET:
                self._acc_lp.reset()
                self._gyr_lp.reset()
                self._acc_hold = None
                self.regs[ACCEL_XOUT_H : GYRO_XOUT_H + 6] = bytes(14)
            self.regs[reg] = val & ~USER_CTRL_SELF_CLEARING & 0xFF
            return
        if reg == SIGNAL_PATH_RESET:
            if val & 0x04:
                self._gyr_lp.reset()
            if val & 0x02:
                self._acc_lp.reset()
                self._acc_hold = None
            self.regs[reg] = 0
            return
        old = self.regs[reg]
        self.regs[reg] = val
        if reg == SMPLRT_DIV or (reg == CONFIG and (old ^ val) & 0x07):
            self._retime()

    def _device_reset(self) -> None:
        """DEVICE_RESET: every register to its reset value; the chip is busy (NACKs) for reset_s."""
        now, epoch, pointer = self._now, self.epoch, self.pointer
        self._power_on()
        self._now, self.epoch, self.pointer = now, epoch, pointer
        self.reset_until = now + self.reset_s


# --------------------------------------------------------------------------- the bus


class EmulatedBus:
    """Stands in for smbus2.SMBus(1): same methods, same exceptions (OSError with errno), same limits.

    Fault injection: ``nack_rate`` (fraction of transactions NACKed: EREMOTEIO), ``hang(seconds)`` (the
    bus stalls: each transaction blocks through ``sleep`` until the stall ends, or for the adapter
    timeout and then fails with ETIMEDOUT). With a fake clock, pass its sleep (``FakeClock.sleep``) so
    that blocking advances it. ``on_transaction(kind, addr, reg)`` is called before each transaction
    (kind "read", "write" or "quick"; reg the register the transaction starts at, -1 if unknown):
    a test can advance a fake clock or call ``hang`` there, e.g. between a FIFO_COUNT read and the
    FIFO_R_W read that follows it.

    Counters: ``transactions`` (attempted, failed ones included), ``failures``, ``bytes_transferred``
    (register-address and data bytes of completed transactions, device-address bytes excluded) and
    ``bus_time_s`` (their time on the wire at ``speed_hz``: 9 bits a byte, address bytes included,
    plus start, repeated start and stop).
    """

    def __init__(
        self,
        chips: list[EmulatedChip] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        nack_rate: float = 0.0,
        seed: int = 0,
        bus: int | str = 1,
        sleep: Callable[[float], None] | None = None,
        timeout_s: float = ADAPTER_TIMEOUT_S,
        speed_hz: float = 100_000.0,
        epoch: float | None = None,
    ) -> None:
        self.clock = clock
        self.sleep = sleep if sleep is not None else getattr(clock, "sleep", time.sleep)
        self.nack_rate = float(nack_rate)
        self.timeout_s = float(timeout_s)
        self.speed_hz = float(speed_hz)
        self.epoch = clock() if epoch is None else float(epoch)
        self.on_transaction: Callable[[str, int, int], None] | None = None
        self.transactions = 0
        self.failures = 0
        self.bytes_transferred = 0
        self.bus_time_s = 0.0
        self._rng = np.random.default_rng(seed)
        self._hang_until = -math.inf
        self._chips: dict[int, EmulatedChip] = {}
        for chip in chips or []:
            self.add_chip(chip)
        # smbus2.SMBus attributes.
        self.fd: int | None = None
        self.funcs = I2cFunc(0)
        self.address: int | None = None
        self.force = False
        self.pec = 0
        self.open(bus)

    # ---- set-up

    def add_chip(self, chip: EmulatedChip) -> EmulatedChip:
        if chip.address in self._chips:
            raise ValueError(f"two chips at address 0x{chip.address:02x}")
        chip.epoch = self.epoch
        self._chips[chip.address] = chip
        return chip

    def remove_chip(self, address: int) -> EmulatedChip:
        """Unplug a chip (its address NACKs from now on)."""
        return self._chips.pop(address)

    def chip(self, address: int) -> EmulatedChip:
        return self._chips[address]

    @property
    def chips(self) -> dict[int, EmulatedChip]:
        return dict(self._chips)

    def hang(self, seconds: float) -> None:
        """Stall the bus for ``seconds`` from now (on ``clock``)."""
        self._hang_until = max(self._hang_until, self.clock() + float(seconds))

    # ---- smbus2.SMBus life cycle

    def open(self, bus: int | str) -> None:
        if not isinstance(bus, (int, str)):
            raise TypeError(f"Unexpected type(bus)={type(bus)}")
        self.bus = bus
        self.fd = 3  # any truthy descriptor
        self.funcs = I2cFunc.I2C | I2cFunc.SMBUS_EMUL if hasattr(I2cFunc, "SMBUS_EMUL") else I2cFunc.I2C

    def close(self) -> None:
        self.fd = None
        self.address = None

    def __enter__(self) -> EmulatedBus:
        return self

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        self.close()

    # ---- transaction machinery

    def _begin(self, kind: str, addr: int, reg: int | None) -> EmulatedChip:
        """Hook, stall, NACK, address and clock, in the order a transaction meets them."""
        if self.fd is None:
            raise _oserror(errno.EBADF)
        if not isinstance(addr, int) or not 0 <= addr <= 0x7F:
            raise _oserror(errno.EINVAL)  # ioctl(I2C_SLAVE) refuses it
        self.address = addr
        self.transactions += 1
        chip = self._chips.get(addr)
        if reg is None:
            reg = chip.pointer if chip is not None else -1
        if self.on_transaction is not None:
            self.on_transaction(kind, addr, reg & 0xFF if reg >= 0 else -1)
        try:
            self._wait_out_hang()
            if self.nack_rate > 0 and self._rng.random() < self.nack_rate:
                raise _oserror(errno.EREMOTEIO)
            if chip is None:
                raise _oserror(errno.EREMOTEIO)
            now = self.clock()
            chip.advance(now)
            if now < chip.reset_until:
                raise _oserror(errno.EREMOTEIO)
        except OSError:
            self.failures += 1
            raise
        return chip

    def _wait_out_hang(self) -> None:
        remaining = self._hang_until - self.clock()
        if remaining <= 0:
            return
        if remaining > self.timeout_s:
            self.sleep(self.timeout_s)
            raise _oserror(errno.ETIMEDOUT)
        self.sleep(remaining)

    def _count(self, messages: Sequence[int]) -> None:
        """Book a completed transaction: ``messages`` holds each message's data length."""
        self.bytes_transferred += sum(messages)
        bits = sum(9 * (1 + m) + 1 for m in messages) + 1  # a start per message, one stop
        self.bus_time_s += bits / self.speed_hz

    # ---- smbus2.SMBus methods

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self._begin("quick", i2c_addr, -1)
        self._count([0])

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        chip = self._begin("read", i2c_addr, None)
        value = chip.read(chip.pointer, 1)[0]
        self._count([1])
        return value

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        chip = self._begin("write", i2c_addr, value & 0xFF)
        chip.write(value & 0xFF, b"")
        self._count([1])

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        chip = self._begin("read", i2c_addr, register & 0xFF)
        value = chip.read(register, 1)[0]
        self._count([1, 1])
        return value

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        chip = self._begin("write", i2c_addr, register & 0xFF)
        chip.write(register, bytes([value & 0xFF]))
        self._count([2])

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """SMBus word: the first byte is the low one (the MPU-6050's registers are big-endian)."""
        chip = self._begin("read", i2c_addr, register & 0xFF)
        lo, hi = chip.read(register, 2)
        self._count([1, 2])
        return lo | hi << 8

    def write_word_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        chip = self._begin("write", i2c_addr, register & 0xFF)
        chip.write(register, bytes([value & 0xFF, (value >> 8) & 0xFF]))
        self._count([3])

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force: bool | None = None) -> list[int]:
        if length > I2C_SMBUS_BLOCK_MAX:
            raise ValueError(f"Desired block length over {I2C_SMBUS_BLOCK_MAX} bytes")
        if length < 1:
            raise _oserror(errno.EINVAL)
        chip = self._begin("read", i2c_addr, register & 0xFF)
        data = chip.read(register, length)
        self._count([1, length])
        return list(data)

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: Sequence[int], force: bool | None = None
    ) -> None:
        if len(data) > I2C_SMBUS_BLOCK_MAX:
            raise ValueError(f"Data length cannot exceed {I2C_SMBUS_BLOCK_MAX} bytes")
        chip = self._begin("write", i2c_addr, register & 0xFF)
        chip.write(register, bytes(v & 0xFF for v in data))
        self._count([1 + len(data)])

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        """Combined transaction (repeated starts, one stop). Read messages' buffers are filled in place."""
        if self.fd is None:
            raise _oserror(errno.EBADF)
        if len(i2c_msgs) > I2C_RDWR_IOCTL_MAX_MSGS or any(m.len > I2C_RDWR_MAX_MSG_LEN for m in i2c_msgs):
            raise _oserror(errno.EINVAL)
        if not i2c_msgs:
            return
        first = i2c_msgs[0]
        reg: int | None = None
        if not first.flags & I2C_M_RD and first.len > 0:
            reg = bytes(first)[0]
        kind = "read" if any(m.flags & I2C_M_RD for m in i2c_msgs) else "write"
        chip = self._begin(kind, first.addr, reg)
        chips = {first.addr: chip}
        lengths = []
        for msg in i2c_msgs:
            target = chips.get(msg.addr)
            if target is None:
                target = self._chips.get(msg.addr)
                if target is None:
                    self.failures += 1
                    raise _oserror(errno.EREMOTEIO)
                target.advance(self.clock())
                chips[msg.addr] = target
            if msg.flags & I2C_M_RD:
                data = target.read(target.pointer, msg.len)
                ctypes.memmove(msg.buf, data, msg.len)
            else:
                payload = bytes(msg)
                if payload:
                    target.write(payload[0], payload[1:])
            lengths.append(msg.len)
        self._count(lengths)
