"""Emulated BLE IMUs: a WitMotion and a stackcue-profile sensor sampling a motion track, faults included.

What the sensor itself does: its crystal, its output rate, its GATT table, what it sends at a connection
event and how a fault damages it. The air it is heard in is :mod:`.ble_radio`; bleak's view of it is
:mod:`.ble_backends`.

Sampling. A sensor's motion-track time 0 is the air time at which it was first powered inside an air
(``Air.add`` for a powered sensor); it keeps that axis over power cycles. A sensor samples on its own crystal,
nominal rate × (1 + ``osc_error``): the first sample after a (re)start of its sampling (power-on, rate change,
MPU-6050 reconfiguration) comes one period after it, and ``sensor.t_sensor(i)`` is the track time of its i-th
sample since it was first powered (indices never reset).

The sensors:

- ``EmulatedWitMotion`` (WT901BLECL / BWT901BLE5.0). GATT as a real one dumped by bluetoothctl (esphome
  witmotion component, ``witmotion_ble.h``): 0x1801, then 0xffe5 with ffe9 (write-without-response, write)
  and ffe4 (notify), ATT MTU 247. It advertises its name only: every vendor SDK finds it by the name prefix
  "WT" with an unfiltered scan (WITMOTION/WitBluetooth_BWT901BLE5_0 ``Python/…/test.py``,
  ``Android_Java/wit-example-ble5/…/MainActivity.java``, ``IOS_swift/…/WitBluetoothManager.swift``), so the
  service UUID is assumed absent from its advertisement (``adv_service_uuids`` to change). Power-on rate
  10 Hz unless another was saved; register writes need the unlock (valid ``unlock_s``), the rate takes
  effect at once and is lost at power-off unless saved; after a save the sensor is silent for
  ``save_silence_s`` (no frames, writes ignored, pending frames lost); ``FF AA 27 reg 00`` is answered by a
  ``55 71`` frame on the notify characteristic at the next connection event. Registers other than the rate
  are a plain register file (written values read back, others 0). Angle fields: roll and pitch from the
  accelerometer's gravity direction, yaw integrated from the z gyro (the real one runs a Kalman filter).
  Up to 50 Hz one frame per notification; above, the frames of a connection event are packed
  ⌊(ATT MTU − 3) / 20⌋ per notification (esphome: "At higher update rates, we sometimes see multiple records
  combined into a single notification"; the exact packing of the vendor firmware is not published).
- ``EmulatedStackcueSensor`` follows ``docs/ble_profile.md`` and its reference firmware
  ``firmware_bridge/micropython/stackcue_sensor.py``: streams from the connection on (START/STOP toggle it),
  sends only full batches of ``samples_per_notification(mtu)`` (compact at MTU 23), restarts its counter
  (RESTART flag) at boot, at every configuration change and at every new connection, rate = nearest
  1000/(1+d) Hz in 45–1050 Hz else status 3, boot id random per power-on. Batches sent before the receiver
  subscribed are lost to it (the counter still advances). ``restart_on_connect=False`` emulates a firmware
  that keeps its counter across connections (the first batch after a reconnect then has OVERFLOW and a
  counter jump equal to the samples made while the link was down).

Faults, per sensor, drawn from ``random.Random`` seeded by (air seed, address), on data notifications only
(register replies of a WitMotion travel on the same characteristic and are hit too): ``loss`` (the receiver
never sees it), ``corrupt`` with ``corrupt_kinds``. WitMotion: ``header`` (first byte of a frame damaged),
``truncated`` (tail of the last frame cut), ``split`` (a frame's tail moved to the next notification),
``merged`` (held back and sent in front of the next one), ``stray`` (1–4 bytes other than 0x55 inserted
between frames). Own profile: ``bitflip`` (one bit anywhere in the batch: its CRC rejects it) and
``truncated``. ``dropouts=[(t_start, t_end), …]`` in air time: out of range (link lost, no advertising).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from bleak.exc import BleakGATTProtocolError, BleakGATTProtocolErrorCode

from stackcue.firmware_bridge import ble_profile as bp
from stackcue.firmware_bridge import witmotion as wm

from .motion import MotionTrack

if TYPE_CHECKING:
    from .ble_radio import Air, _Link

__all__ = ["CounterEpoch", "EmulatedStackcueSensor", "EmulatedWitMotion", "Notification", "SensorStats"]

ADV_INTERVAL_S = 0.100

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
GATT_SERVICE_UUID = "00001801-0000-1000-8000-00805f9b34fb"
SERVICE_CHANGED_UUID = "00002a05-0000-1000-8000-00805f9b34fb"

WIT_CORRUPT_KINDS = ("header", "truncated", "split", "merged", "stray")
PROFILE_CORRUPT_KINDS = ("bitflip", "truncated")


# --------------------------------------------------------------------------- records


@dataclass
class SensorStats:
    """What a sensor did; ``samples`` is refreshed to the air's present whenever ``sensor.stats`` is read."""

    notifications: int = 0  # sent by the sensor (data and replies)
    dropped: int = 0  # lost in the air (``loss``)
    corrupted: Counter[str] = field(default_factory=Counter)  # by kind
    unsubscribed: int = 0  # sent while the receiver had not enabled notifications
    delivered: int = 0  # handed to a receiver's callback
    samples: int = 0  # samples the IMU made while powered
    samples_sent: int = 0  # samples carried by notifications the sensor sent
    samples_discarded: int = 0  # made but never sent (not connected, stopped, save silence, config change)
    connects: int = 0
    disconnects: int = 0  # every end of a link: requested or lost
    link_losses: int = 0  # unsolicited: out of range, powered off, removed
    link_lost_at: list[float] = field(default_factory=list)  # air time the host noticed each loss (supervision timeout)
    writes_ignored: int = 0  # WitMotion: locked, malformed or during the save silence


@dataclass(frozen=True)
class Notification:
    """One notification as the sensor sent it and as the receiver got it (``record=True``)."""

    t: float  # air time of the connection event
    char_uuid: str
    payload: bytes  # as the sensor sent it
    delivered: bytes | None  # what the receiver's callback got (None: lost, held back, or not subscribed)
    fate: str  # "delivered", "lost", "unsubscribed" or "corrupt:<kind>" (delivered damaged, or held back: merged)
    first: int  # absolute index of its first sample (-1 when it carries none)
    count: int  # samples it carries


@dataclass(frozen=True)
class CounterEpoch:
    """A start of the own profile's counter: counter c is then sample ``first_index + c``."""

    t: float  # air time
    first_index: int
    boot_id: int
    rate_mhz: int


@dataclass(frozen=True)
class _Char:
    uuid: str
    handle: int
    flags: tuple[str, ...]
    cccd: int | None = None


@dataclass(frozen=True)
class _Service:
    uuid: str
    handle: int
    chars: tuple[_Char, ...]


_GATT_SERVICE = _Service(GATT_SERVICE_UUID, 0x0001, (_Char(SERVICE_CHANGED_UUID, 0x0002, ("indicate",), 0x0004),))


# --------------------------------------------------------------------------- sample instants


class _Timeline:
    """Sample instants on the track's time axis: piecewise regular (rate changes, restarts, power cycles)."""

    def __init__(self) -> None:
        self._i0: list[int] = []
        self._t0: list[float] = []
        self._period: list[float] = []
        self._cap: list[int | None] = []  # samples in a closed segment; None: running

    @staticmethod
    def _n(t0: float, period: float, tau: float) -> int:
        return 0 if tau < t0 else math.floor((tau - t0) / period + 1e-9) + 1

    def stop(self, tau: float) -> None:
        if self._cap and self._cap[-1] is None:
            self._cap[-1] = self._n(self._t0[-1], self._period[-1], tau)

    def start(self, tau: float, period: float) -> None:
        """Sampling (re)starts at ``tau``: the first sample one period later."""
        self.stop(tau)
        self._i0.append(self.count(tau))
        self._t0.append(tau + period)
        self._period.append(period)
        self._cap.append(None)

    def count(self, tau: float) -> int:
        """Samples made up to and including ``tau`` (a present or later time)."""
        if not self._i0:
            return 0
        cap = self._cap[-1]
        return self._i0[-1] + (cap if cap is not None else self._n(self._t0[-1], self._period[-1], tau))

    def _seg(self, i: int) -> int:
        k = bisect.bisect_right(self._i0, i) - 1
        cap = self._cap[k] if k >= 0 else 0
        if k < 0 or (cap is not None and i >= self._i0[k] + cap):
            raise IndexError(f"sample {i} was never made")
        return k

    def t(self, i: int) -> float:
        k = self._seg(i)
        return self._t0[k] + (i - self._i0[k]) * self._period[k]

    def times(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(instants, periods) of samples a..b-1."""
        ts, ps = [], []
        i = a
        while i < b:
            k = self._seg(i)
            cap = self._cap[k]
            end = b if cap is None else min(b, self._i0[k] + cap)
            idx = np.arange(i - self._i0[k], end - self._i0[k])
            ts.append(self._t0[k] + idx * self._period[k])
            ps.append(np.full(len(idx), self._period[k]))
            i = end
        if not ts:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(ts), np.concatenate(ps)


# --------------------------------------------------------------------------- sensors


class _EmulatedSensor:
    """What both kinds share: power, sampling, range, faults, advertising, the truth."""

    GATT: ClassVar[tuple[_Service, ...]] = ()
    DATA_UUID: ClassVar[str] = ""
    CORRUPT_KINDS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        address: str,
        motion: MotionTrack,
        *,
        name: str,
        rate_hz: float,
        osc_error: float,
        rssi_dbm: float,
        att_mtu: int,
        loss: float,
        corrupt: float,
        corrupt_kinds: Sequence[str] | None,
        dropouts: Iterable[tuple[float, float]],
        powered: bool,
        record: bool,
        adv_service_uuids: Sequence[str],
        adv_interval_s: float,
    ) -> None:
        parts = address.split(":")
        if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
            raise ValueError(f"{address!r} is not a Bluetooth address (XX:XX:XX:XX:XX:XX)")
        if not -0.5 < osc_error < 0.5:
            raise ValueError(f"osc_error={osc_error} is not a plausible oscillator error")
        if not 0.0 <= loss < 1.0 or not 0.0 <= corrupt < 1.0 or loss + corrupt >= 1.0:
            raise ValueError(f"loss={loss} and corrupt={corrupt} must be fractions in [0, 1) summing below 1")
        if not 23 <= att_mtu <= 517:
            raise ValueError(f"att_mtu={att_mtu} is outside 23..517")
        kinds = tuple(self.CORRUPT_KINDS if corrupt_kinds is None else corrupt_kinds)
        unknown = [k for k in kinds if k not in self.CORRUPT_KINDS]
        if unknown or not kinds:
            raise ValueError(f"corrupt_kinds {unknown or kinds} unknown; choose among {self.CORRUPT_KINDS}")
        self.address = address.upper()
        self.motion = motion
        self.name = name
        self.osc_error = float(osc_error)
        self.rssi_dbm = float(rssi_dbm)
        self.att_mtu = int(att_mtu)
        self.loss = float(loss)
        self.corrupt = float(corrupt)
        self.corrupt_kinds = kinds
        self.dropouts: list[tuple[float, float]] = []
        for s, e in dropouts:
            if not e > s:
                raise ValueError(f"dropout ({s}, {e}) must end after it starts")
            self.dropouts.append((float(s), float(e)))
        self.dropouts.sort()
        self.record = record
        self.trace: list[Notification] = []
        self.adv_service_uuids = [u.lower() for u in adv_service_uuids]
        self.adv_interval_s = float(adv_interval_s)
        self._nominal_hz = float(rate_hz)
        self._stats = SensorStats()
        self._timeline = _Timeline()
        self._air: Air | None = None
        self._origin: float | None = None  # air time of track time 0
        self._powered = bool(powered)
        self._breaks: list[float] = []  # air times it was powered off or removed (each breaks a link)
        self._next_i = 0  # first sample not yet sent or discarded
        self._link: _Link | None = None
        self._carry = b""  # bytes held back for the next data notification (split/merged faults)
        self._fault_rng = random.Random()
        self._adv_rng = random.Random()
        self._boot_rng = random.Random()
        self._adv_next = math.inf

    # --- truth -------------------------------------------------------------------------------------

    @property
    def stats(self) -> SensorStats:
        if self._air is not None and self._origin is not None:
            self._stats.samples = self._timeline.count(self._tau(self._air.now()))
        return self._stats

    def t_sensor(self, i: int) -> float:
        """True time, on the motion track's axis, of the sensor's i-th sample since it was first powered."""
        return self._timeline.t(i)

    def t_air(self, i: int) -> float:
        """The same instant on the air's clock."""
        if self._origin is None:
            raise IndexError("the sensor has not been powered in an air yet")
        return self._origin + self._timeline.t(i)

    @property
    def rate_hz(self) -> float:
        """Nominal output rate now in force."""
        return self._nominal_hz

    @property
    def true_rate_hz(self) -> float:
        return self._nominal_hz * (1.0 + self.osc_error)

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed

    def in_range(self, t: float) -> bool:
        return not any(s <= t < e for s, e in self.dropouts)

    # --- power ----------------------------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self._powered

    @powered.setter
    def powered(self, on: bool) -> None:
        on = bool(on)
        if on == self._powered:
            return
        self._powered = on
        if self._air is None or self._air._sensors.get(self.address) is not self:
            return  # takes effect when it is added to an air
        t = self._air.now()
        if on:
            self._power_on(t)
        else:
            self._breaks.append(t)
            self._power_off(t)

    def _attach(self, air: Air, t: float) -> None:
        self._air = air
        seed = f"{air.seed}/{self.address}"
        self._fault_rng.seed(seed + "/faults")
        self._adv_rng.seed(seed + "/adv")
        self._boot_rng.seed(seed + "/boot")
        self._adv_next = t + self._adv_rng.uniform(0.0, self.adv_interval_s)
        if self._powered:
            self._power_on(t)

    def _detach(self, t: float) -> None:
        if self._powered:
            self._power_off(t)
        self._breaks.append(t)
        self._adv_next = math.inf

    def _power_on(self, t: float) -> None:
        if self._origin is None:
            self._origin = t
        self._boot(t)

    def _power_off(self, t: float) -> None:
        tau = self._tau(t)
        self._discard_to(tau)
        self._timeline.stop(tau)

    def _boot(self, t: float) -> None:
        raise NotImplementedError

    def _tau(self, t: float) -> float:
        return t - (self._origin if self._origin is not None else t)

    def _period(self, hz: float) -> float:
        return 1.0 / (hz * (1.0 + self.osc_error))

    def _discard_to(self, tau: float) -> None:
        n = self._timeline.count(tau)
        if n > self._next_i:
            self._stats.samples_discarded += n - self._next_i
            self._next_i = n

    # --- radio ----------------------------------------------------------------------------------------

    def _advertising(self, t: float) -> bool:
        return (
            self._air is not None
            and self._air._sensors.get(self.address) is self
            and self._powered
            and self.in_range(t)
            and not self.connected
        )

    def _link_lost_at(self, t0: float, t1: float) -> float | None:
        """When in (t0, t1] the link broke (out of range, power off, removed), or None."""
        times = [s for s, _ in self.dropouts if t0 < s <= t1]
        times += [s for s, e in self.dropouts if s <= t0 < e]  # already out of range
        times += [b for b in self._breaks if t0 < b <= t1]
        return min(times) if times else None

    def _sample(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(acc m/s², gyr rad/s, periods) of samples a..b-1 from the motion at their true instants."""
        t, periods = self._timeline.times(a, b)
        acc, gyr = self.motion.sample(t)
        return acc, gyr, periods

    def _on_connect(self, t: float, mtu: int) -> None:
        raise NotImplementedError

    def _on_disconnect(self, t: float) -> None:
        self._discard_to(self._tau(t))
        self._carry = b""

    def _notifications(self, t: float) -> list[tuple[str, bytes, int, int, bool]]:
        """(char uuid, payload, first sample, count, is data) the sensor sends at the connection event ``t``."""
        raise NotImplementedError

    def _write(self, t: float, char: _Char, data: bytes) -> None:
        raise NotImplementedError

    def _read(self, t: float, char: _Char) -> bytes:
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)

    def _damage(self, kind: str, payload: bytes) -> bytes | None:
        raise NotImplementedError

    def _char(self, handle: int) -> _Char:
        for s in self.GATT:
            for c in s.chars:
                if c.handle == handle:
                    return c
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.INVALID_HANDLE)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} {self.name!r} {self._nominal_hz:g} Hz>"


class EmulatedWitMotion(_EmulatedSensor):
    """A WitMotion WT901BLECL / BWT901BLE5.0 (see the module docstring for what is emulated and why)."""

    GATT = (
        _GATT_SERVICE,
        _Service(
            wm.SERVICE_UUID,
            0x000B,
            (
                _Char(wm.WRITE_UUID, 0x000C, ("write-without-response", "write")),
                _Char(wm.NOTIFY_UUID, 0x000E, ("notify",), 0x000F),
            ),
        ),
    )
    DATA_UUID = wm.NOTIFY_UUID
    CORRUPT_KINDS = WIT_CORRUPT_KINDS

    def __init__(
        self,
        address: str,
        motion: MotionTrack,
        *,
        name: str = "WT901BLE68",
        rate_hz: float = 10.0,
        osc_error: float = 0.0,
        rssi_dbm: float = -60.0,
        att_mtu: int = 247,
        loss: float = 0.0,
        corrupt: float = 0.0,
        corrupt_kinds: Sequence[str] | None = None,
        dropouts: Iterable[tuple[float, float]] = (),
        powered: bool = True,
        record: bool = False,
        save_silence_s: float = 0.2,
        unlock_s: float = 10.0,
        adv_service_uuids: Sequence[str] = (),
        adv_interval_s: float = ADV_INTERVAL_S,
    ) -> None:
        if rate_hz not in wm.RATE_CODES:
            valid = ", ".join(f"{r:g}" for r in wm.RATE_CODES)
            raise ValueError(f"WitMotion rate {rate_hz:g} Hz has no code; valid: {valid}")
        super().__init__(
            address,
            motion,
            name=name,
            rate_hz=rate_hz,
            osc_error=osc_error,
            rssi_dbm=rssi_dbm,
            att_mtu=att_mtu,
            loss=loss,
            corrupt=corrupt,
            corrupt_kinds=corrupt_kinds,
            dropouts=dropouts,
            powered=powered,
            record=record,
            adv_service_uuids=adv_service_uuids,
            adv_interval_s=adv_interval_s,
        )
        self.save_silence_s = float(save_silence_s)
        self.unlock_s = float(unlock_s)
        self.saved_rate_hz = float(rate_hz)  # what a power-on starts with (kept in flash by ``save``)
        self.registers: dict[int, int] = {}
        self._unlocked_until = -math.inf
        self._silent_until = -math.inf
        self._outbox: list[bytes] = []
        self._yaw_deg = 0.0
        self._mtu = att_mtu

    @property
    def silent_until(self) -> float:
        """Air time the silence after the last ``save`` ends (-inf if none since power-on)."""
        return self._silent_until

    @property
    def unlocked(self) -> bool:
        return self._air is not None and self._air.now() < self._unlocked_until

    def _boot(self, t: float) -> None:
        self._nominal_hz = self.saved_rate_hz
        self.registers = {wm.REG_RATE: wm.RATE_CODES[self.saved_rate_hz]}
        self._unlocked_until = self._silent_until = -math.inf
        self._outbox.clear()
        self._yaw_deg = 0.0
        tau = self._tau(t)
        self._timeline.start(tau, self._period(self._nominal_hz))
        self._next_i = self._timeline.count(tau)

    def _on_connect(self, t: float, mtu: int) -> None:
        self._mtu = mtu
        self._discard_to(self._tau(t))  # the UART stream before the link went nowhere
        self._outbox.clear()

    def _write(self, t: float, char: _Char, data: bytes) -> None:
        if t < self._silent_until or len(data) % 5 or not data:
            self._stats.writes_ignored += 1
            return
        for k in range(0, len(data), 5):
            cmd = data[k : k + 5]
            if cmd[0] != 0xFF or cmd[1] != 0xAA:
                self._stats.writes_ignored += 1
                continue
            reg, value = cmd[2], cmd[3] | (cmd[4] << 8)
            if reg == wm.READ_REGISTER:
                r = cmd[3]
                self._outbox.append(wm.encode_register_reply(r, [self.registers.get(r + j, 0) for j in range(8)]))
            elif reg == wm.REG_UNLOCK:
                if value == wm.UNLOCK_KEY:
                    self._unlocked_until = t + self.unlock_s
                else:
                    self._stats.writes_ignored += 1
            elif t >= self._unlocked_until:
                self._stats.writes_ignored += 1
            elif reg == wm.REG_SAVE:
                if value == 0:
                    self.saved_rate_hz = self._nominal_hz
                    self._silent_until = t + self.save_silence_s
                    self._outbox.clear()
                    return  # the rest of this write is not read while it writes its flash
                self._stats.writes_ignored += 1
            elif reg == wm.REG_RATE:
                hz = next((h for h, c in wm.RATE_CODES.items() if c == value), None)
                if hz is None:
                    self._stats.writes_ignored += 1
                    continue
                self.registers[reg] = value
                if hz != self._nominal_hz:
                    self._nominal_hz = hz
                    self._timeline.start(self._tau(t), self._period(hz))
            else:
                self.registers[reg] = value

    def _frames(self, a: int, b: int) -> list[bytes]:
        acc, gyr, periods = self._sample(a, b)
        roll = np.degrees(np.arctan2(acc[:, 1], acc[:, 2]))
        pitch = np.degrees(np.arctan2(-acc[:, 0], np.hypot(acc[:, 1], acc[:, 2])))
        yaw = self._yaw_deg + np.cumsum(np.degrees(gyr[:, 2]) * periods)
        if len(yaw):
            self._yaw_deg = float(yaw[-1])
        yaw = (yaw + 180.0) % 360.0 - 180.0
        return [wm.encode_frame(acc[k], gyr[k], (roll[k], pitch[k], yaw[k])) for k in range(len(acc))]

    def _notifications(self, t: float) -> list[tuple[str, bytes, int, int, bool]]:
        tau = self._tau(t)
        if t < self._silent_until:
            self._discard_to(tau)
            return []
        out: list[tuple[str, bytes, int, int, bool]] = [(self.DATA_UUID, r, -1, 0, True) for r in self._outbox]
        self._outbox.clear()
        a, b = self._next_i, self._timeline.count(tau)
        if b > a:
            frames = self._frames(a, b)
            per = 1 if self._nominal_hz <= 50.0 else max(1, (self._mtu - 3) // wm.FRAME_LEN)
            for k in range(0, len(frames), per):
                chunk = frames[k : k + per]
                out.append((self.DATA_UUID, b"".join(chunk), a + k, len(chunk), True))
            self._next_i = b
        return out

    def _damage(self, kind: str, payload: bytes) -> bytes | None:
        rng = self._fault_rng
        n = len(payload) // wm.FRAME_LEN
        if kind == "header":
            return bytes((rng.choice([b for b in range(256) if b != wm.HEADER]),)) + payload[1:]
        if kind == "truncated":
            return payload[: len(payload) - rng.randint(1, wm.FRAME_LEN - 1)]
        if kind == "split":
            cut = rng.randint(1, wm.FRAME_LEN - 1)
            self._carry = payload[len(payload) - cut :]
            return payload[: len(payload) - cut]
        if kind == "merged":
            self._carry = payload
            return None
        if kind == "stray":
            at = rng.randint(0, n) * wm.FRAME_LEN
            junk = bytes(rng.choice([b for b in range(256) if b != wm.HEADER]) for _ in range(rng.randint(1, 4)))
            return payload[:at] + junk + payload[at:]
        raise ValueError(kind)


#: MPU-6050 rates the reference firmware can make: 1000/(1+d) Hz, d = 0..19
def _divider(rate_mhz: int) -> int | None:
    if rate_mhz < 45_000 or rate_mhz > 1_050_000:
        return None
    return max(0, min(19, round(1_000_000 / rate_mhz) - 1))


class EmulatedStackcueSensor(_EmulatedSensor):
    """A stackcue DIY sensor (ESP32 + MPU-6050) running the reference firmware of ``docs/ble_profile.md``."""

    GATT = (
        _GATT_SERVICE,
        _Service(
            bp.SERVICE_UUID,
            0x000A,
            (
                _Char(bp.DATA_UUID, 0x000B, ("notify",), 0x000D),
                _Char(bp.CONTROL_UUID, 0x000E, ("read", "write", "notify"), 0x0010),
                _Char(bp.INFO_UUID, 0x0011, ("read",)),
            ),
        ),
    )
    DATA_UUID = bp.DATA_UUID
    CORRUPT_KINDS = PROFILE_CORRUPT_KINDS

    def __init__(
        self,
        address: str,
        motion: MotionTrack,
        *,
        name: str = "stackcue",
        rate_hz: float = 200.0,
        osc_error: float = 0.0,
        acc_code: int = 2,
        gyr_code: int = 2,
        rssi_dbm: float = -60.0,
        att_mtu: int = 247,
        loss: float = 0.0,
        corrupt: float = 0.0,
        corrupt_kinds: Sequence[str] | None = None,
        dropouts: Iterable[tuple[float, float]] = (),
        powered: bool = True,
        record: bool = False,
        restart_on_connect: bool = True,
        imu_kind: int = 1,
        firmware: tuple[int, int] = (1, 0),
        adv_service_uuids: Sequence[str] = (bp.SERVICE_UUID,),
        adv_interval_s: float = ADV_INTERVAL_S,
    ) -> None:
        d = _divider(round(rate_hz * 1000))
        if d is None or not math.isclose(1000.0 / (1 + d), rate_hz, rel_tol=1e-6):
            near = f"; nearest {1000.0 / (1 + d):g} Hz" if d is not None else ""
            raise ValueError(f"an MPU-6050 makes 1000/(1+d) Hz (50–1000 Hz), not {rate_hz:g} Hz{near}")
        if acc_code not in bp.ACC_RANGES or gyr_code not in bp.GYR_RANGES:
            raise ValueError(f"range codes must be 0..3, got accel {acc_code}, gyro {gyr_code}")
        super().__init__(
            address,
            motion,
            name=name,
            rate_hz=1000.0 / (1 + d),
            osc_error=osc_error,
            rssi_dbm=rssi_dbm,
            att_mtu=att_mtu,
            loss=loss,
            corrupt=corrupt,
            corrupt_kinds=corrupt_kinds,
            dropouts=dropouts,
            powered=powered,
            record=record,
            adv_service_uuids=adv_service_uuids,
            adv_interval_s=adv_interval_s,
        )
        self.restart_on_connect = restart_on_connect
        self.imu_kind = imu_kind
        self.firmware = firmware
        self._defaults = (d, acc_code, gyr_code)
        self.div, self.acc_code, self.gyr_code = d, acc_code, gyr_code
        self.streaming = True
        self.boot_id = 0
        self.counter_epochs: list[CounterEpoch] = []
        self._i_zero = 0
        self._flags = 0
        self._batch = (bp.MAX_SAMPLES, False)
        self._control_value = b""
        self._outbox: list[bytes] = []

    @property
    def rate_mhz(self) -> int:
        return 1_000_000 // (1 + self.div)

    @property
    def ranges(self) -> int:
        return self.acc_code | (self.gyr_code << 4)

    @property
    def counter(self) -> int:
        """Counter of the next sample to be sent (what a control reply carries)."""
        return (self._next_i - self._i_zero) % bp.COUNTER_MOD

    def sample_index(self, counter: int, epoch: int = -1) -> int:
        """Truth: the absolute sample index of ``counter`` in counter epoch ``epoch`` (default: the latest)."""
        return self.counter_epochs[epoch].first_index + counter

    def _boot(self, t: float) -> None:
        self.boot_id = self._boot_rng.getrandbits(16)
        self.div, self.acc_code, self.gyr_code = self._defaults
        self.streaming = True
        self._outbox.clear()
        self._control_value = b""
        self._configure(t)

    def _configure(self, t: float) -> None:
        """The firmware's ``Sensor.configure``: MPU-6050 restarted, FIFO emptied, counter 0 with RESTART."""
        tau = self._tau(t)
        self._discard_to(tau)
        self._nominal_hz = 1000.0 / (1 + self.div)
        self._timeline.start(tau, self._period(self._nominal_hz))
        self._next_i = self._i_zero = self._timeline.count(tau)
        self._flags = bp.FLAG_RESTART
        self.counter_epochs.append(CounterEpoch(t, self._i_zero, self.boot_id, self.rate_mhz))

    def _on_connect(self, t: float, mtu: int) -> None:
        self._batch = bp.samples_per_notification(mtu)
        if self.restart_on_connect:
            self._configure(t)
        else:
            n = self._timeline.count(self._tau(t))
            if n > self._next_i:  # what the FIFO could not hold while the link was down
                self._stats.samples_discarded += n - self._next_i
                self._next_i = n
                self._flags |= bp.FLAG_OVERFLOW

    def _on_disconnect(self, t: float) -> None:
        if self.restart_on_connect:
            super()._on_disconnect(t)
        else:
            self._carry = b""  # the counter keeps running: samples not sent show as a jump at the next batch

    def _raw(self, a: int, b: int) -> np.ndarray:
        acc, gyr, _ = self._sample(a, b)
        acc_lsb = bp.ACC_RANGES[self.acc_code][1] / bp.G
        gyr_lsb = bp.GYR_RANGES[self.gyr_code][1]
        raw = np.hstack([np.rint(acc * acc_lsb), np.rint(np.degrees(gyr) * gyr_lsb)])
        return np.clip(raw, -32768, 32767).astype(np.int16)

    def _notifications(self, t: float) -> list[tuple[str, bytes, int, int, bool]]:
        out: list[tuple[str, bytes, int, int, bool]] = [(bp.CONTROL_UUID, r, -1, 0, False) for r in self._outbox]
        self._outbox.clear()
        b = self._timeline.count(self._tau(t))
        if not self.streaming:
            self._discard_to(self._tau(t))
            return out
        n, compact = self._batch
        nb = (b - self._next_i) // n
        if nb:
            raw = self._raw(self._next_i, self._next_i + nb * n)
            for k in range(nb):
                first = self._next_i
                pkt = bp.encode_batch(
                    first - self._i_zero,
                    raw[k * n : (k + 1) * n],
                    rate_mhz=self.rate_mhz,
                    acc_code=self.acc_code,
                    gyr_code=self.gyr_code,
                    boot_id=self.boot_id,
                    flags=self._flags,
                    compact=compact,
                )
                self._flags = 0
                self._next_i += n
                out.append((bp.DATA_UUID, pkt, first, n, True))
        return out

    def _write(self, t: float, char: _Char, data: bytes) -> None:
        """The firmware's ``handle_control``: every write is answered on the control characteristic."""
        op, seq = (data[0], data[1]) if len(data) >= 2 else (0, 0)
        want = {bp.OP_GET_CONFIG: 2, bp.OP_SET_RATE: 6, bp.OP_SET_RANGES: 3, bp.OP_START: 2, bp.OP_STOP: 2}.get(op)
        status = bp.STATUS_OK
        if want is None:
            status = bp.STATUS_UNKNOWN_OP
        elif len(data) != want:
            status = bp.STATUS_BAD_LENGTH
        elif op == bp.OP_SET_RATE:
            d = _divider(int.from_bytes(data[2:6], "little"))
            if d is None:
                status = bp.STATUS_BAD_VALUE
            else:
                self.div = d
                self._configure(t)
        elif op == bp.OP_SET_RANGES:
            a, g = data[2] & 0x0F, data[2] >> 4
            if a > 3 or g > 3:
                status = bp.STATUS_BAD_VALUE
            else:
                self.acc_code, self.gyr_code = a, g
                self._configure(t)
        elif op in (bp.OP_START, bp.OP_STOP):
            self.streaming = op == bp.OP_START
            self._configure(t)
        reply = bp.encode_reply(op, seq, status, self.ranges, self.rate_mhz, self.boot_id, self.counter)
        self._control_value = reply
        self._outbox.append(reply)

    def _read(self, t: float, char: _Char) -> bytes:
        if char.uuid == bp.INFO_UUID:
            return bp.encode_info(
                self.imu_kind, self.ranges, bp.MAX_SAMPLES, self.rate_mhz, self.boot_id, self.firmware
            )
        if char.uuid == bp.CONTROL_UUID:
            return self._control_value
        return super()._read(t, char)

    def _damage(self, kind: str, payload: bytes) -> bytes | None:
        rng = self._fault_rng
        if kind == "bitflip":  # anywhere: header, samples or checksum (the batch's CRC catches each one)
            out = bytearray(payload)
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
            return bytes(out)
        if kind == "truncated":
            return payload[: rng.randint(1, len(payload) - 1)]
        raise ValueError(kind)
