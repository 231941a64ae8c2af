"""The one place that knows how to make devices: real ones, or emulated ones.

Modelled on gpiozero's pin factory: sources, ``probe`` and ``scan`` never build a bus, a bleak module or
an emulator themselves; they ask a :class:`DeviceFactory` for an I2C bus (anything with smbus2's
methods), for bleak (the module, or a namespace with its API) and for the clock both run on. The
command picks the factory once (:func:`device_factory`), so an emulated run goes through exactly the
code a real one does. Emulators are imported only when an :class:`EmulatedFactory` makes a device:
the live path on a Pi never loads scipy or the stand-ins.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .emulated.ble_radio import Air
    from .emulated.motion import MotionTrack
    from .emulated.simulator import SimRun

#: scenes an :class:`EmulatedFactory` can put in front of its sensors
SCENES = ("runner", "still")


class DeviceFactory(ABC):
    """Makes the devices a source talks to, and the clock they run on.

    Subclasses must implement :meth:`i2c_bus` and :meth:`bleak`; they may override :meth:`describe`,
    :meth:`sensor_label` and set ``clock``, ``sleep`` (host time by default), ``speed`` (how many times
    faster than real time ``clock`` runs) and ``duration_s`` (how long the devices have anything to
    measure; None: until stopped).
    """

    clock: Callable[[], float] = staticmethod(time.monotonic)
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    speed: float = 1.0
    duration_s: float | None = None

    @abstractmethod
    def i2c_bus(self, bus: int) -> Any:
        """An I2C bus with smbus2's methods (``/dev/i2c-<bus>`` on a Pi)."""

    @abstractmethod
    def bleak(self) -> Any:
        """bleak: the module, or a namespace with its ``BleakScanner``/``BleakClient`` and exceptions."""

    def describe(self, thing: str) -> str:
        """How a message names ``thing`` made by this factory ("I2C bus 1", "emulated I2C bus 1")."""
        return thing

    def sensor_label(self, kind: str) -> str:
        """The ``sensor`` fact a recording made with this factory carries ("mpu6050", "mpu6050-emulated")."""
        return kind


class HardwareFactory(DeviceFactory):
    """The real thing: smbus2 on ``/dev/i2c-N``, bleak on BlueZ, the host's monotonic clock."""

    def i2c_bus(self, bus: int) -> Any:
        from .mpu6050 import open_i2c_bus

        return open_i2c_bus(bus)

    def bleak(self) -> Any:
        from .ble_clients import default_bleak

        return default_bleak()


class EmulatedFactory(DeviceFactory):
    """Emulated MPU-6050s on an emulated bus and emulated stackcue BLE sensors, all sensing one scene.

    ``scene``: "runner" (the synthetic runner of ``minutes``, pelvis and, with ``trunk``, the trunk; the
    devices have nothing more to measure after it: ``duration_s``) or "still" (two sensors lying at rest,
    the trunk one on its side, with noise and gyro offsets: what ``probe`` is meant for). ``speed`` > 1
    runs the emulated time faster than real time (the devices and their driver share the sped-up clock;
    an injected ``clock`` must have a ``sleep``). Chip oscillators are off by ``osc_error`` (the trunk's
    by −½ of it); ``nack_rate`` of the bus transactions fail. BLE sensors: "stackcue-pelvis" and
    "stackcue-trunk", at ``BLE_ADDRESSES``.
    """

    BLE_ADDRESSES: ClassVar[dict[str, str]] = {"pelvis": "5C:C0:DE:00:00:01", "trunk": "5C:C0:DE:00:00:02"}
    STILL_NOISE = (0.04, 0.002)  # MPU-6050 at rest: about 4 mg and 0.1 °/s rms before its low-pass

    def __init__(
        self,
        scene: str = "runner",
        *,
        minutes: float = 10.0,
        trunk: bool = True,
        seed: int = 0,
        speed: float = 1.0,
        osc_error: float = 0.013,
        nack_rate: float = 0.0,
        clock: Any = None,
        pelvis_address: int = 0x68,
        trunk_address: int = 0x69,
    ) -> None:
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
        from .clocks import ScaledClock

        self.scene, self.minutes, self.trunk, self.seed = scene, minutes, trunk, seed
        self.speed, self.osc_error, self.nack_rate = float(speed), osc_error, nack_rate
        self.addresses = {"pelvis": pelvis_address, "trunk": trunk_address}
        clk = clock if clock is not None else ScaledClock(speed)
        self.clock, self.sleep = clk, clk.sleep
        self._tracks: dict[str, MotionTrack] | None = None
        self._air: Air | None = None
        self.run: SimRun | None = None
        if scene == "runner":
            self._load()
            assert self.run is not None
            self.duration_s = float(self.run.block.t[-1] - self.run.block.t[0])

    def _load(self) -> dict[str, MotionTrack]:
        """The motion each segment feels (simulated once, shared by every device of this factory)."""
        if self._tracks is None:
            from .emulated.motion import MotionTrack

            if self.scene == "runner":
                pelvis, trunk, self.run = MotionTrack.from_simulation(
                    minutes=self.minutes, trunk=self.trunk, seed=self.seed
                )
                self._tracks = {"pelvis": pelvis} if trunk is None else {"pelvis": pelvis, "trunk": trunk}
            else:
                self._tracks = {"pelvis": MotionTrack.still(noise=self.STILL_NOISE, seed=1)}
                if self.trunk:
                    self._tracks["trunk"] = MotionTrack.still(acc=(0.0, 9.80665, 0.0), noise=self.STILL_NOISE, seed=2)
        return self._tracks

    def i2c_bus(self, bus: int) -> Any:
        """A new emulated bus with one chip per segment, at the configured addresses."""
        from .emulated.mpu6050 import EmulatedBus, EmulatedChip

        if self.scene == "runner":
            chip_kw = {"pelvis": {"osc_error": self.osc_error}, "trunk": {"osc_error": -self.osc_error / 2}}
        else:  # the chips' own zero-rate offsets, and clocks off as real ones are (+1.3 %, -0.8 %)
            chip_kw = {
                "pelvis": {"osc_error": 0.013, "gyro_offset_dps": (2.1, -3.4, 0.8)},
                "trunk": {"osc_error": -0.008, "gyro_offset_dps": (-1.2, 0.6, 4.5)},
            }
        tracks = self._load()
        chips = [EmulatedChip(track, address=self.addresses[seg], **chip_kw[seg]) for seg, track in tracks.items()]
        return EmulatedBus(chips, clock=self.clock, nack_rate=self.nack_rate, seed=self.seed, bus=bus)

    @property
    def air(self) -> Air:
        """The emulated air with a stackcue-profile BLE sensor per segment (made on first use)."""
        if self._air is None:
            from .emulated.ble_radio import Air
            from .emulated.ble_sensors import EmulatedStackcueSensor

            self._air = Air(speed=self.speed, seed=self.seed, clock=self.clock)
            for seg, track in self._load().items():
                osc = self.osc_error if seg == "pelvis" else -self.osc_error / 2
                self._air.add(
                    EmulatedStackcueSensor(self.BLE_ADDRESSES[seg], track, name=f"stackcue-{seg}", osc_error=osc)
                )
        return self._air

    def bleak(self) -> Any:
        return self.air.bleak

    def describe(self, thing: str) -> str:
        return f"emulated {thing}"

    def sensor_label(self, kind: str) -> str:
        return f"{kind}-emulated"


def device_factory(emulate: bool = False, **emulation: Any) -> DeviceFactory:
    """The factory a command runs on, chosen once: the hardware, or :class:`EmulatedFactory` (``emulation``)."""
    return EmulatedFactory(**emulation) if emulate else HardwareFactory()
