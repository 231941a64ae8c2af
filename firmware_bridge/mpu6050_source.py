"""Source kinds ``mpu6050`` (real I2C) and ``emulated`` (the same source on emulated devices).

One or two MPU-6050s on one bus (pelvis 0x68, trunk 0x69) form one source:
trunk samples are aligned onto the pelvis timestamps. Times are seconds since
the source started, on the host's monotonic clock (a Pi often has no
battery-backed wall clock). The bus and the clock come from a
:class:`~firmware_bridge.devices.DeviceFactory`: the hardware, or the emulation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from stackcue.errors import SourceError

from .align import TrunkAligner
from .block import Block
from .clocks import Pacer
from .devices import DeviceFactory, EmulatedFactory, HardwareFactory
from .mpu6050 import MPU6050
from .source import Source


class MPU6050Source(Source):
    """Pelvis (and optionally trunk) MPU-6050s read every ``poll_s``.

    ``trunk``: "auto" (use 0x69 if a chip answers there), "on" or "off".
    ``devices``: where the bus, the clock and the sleep come from (default: the hardware, ``/dev/i2c-<bus>``
    and the host's clock); ``i2c``, ``clock``, ``sleep`` override them one by one (tests, benchmarks).
    The source ends after ``duration_s``, by default when the devices have nothing more to measure.
    """

    def __init__(
        self,
        *,
        bus: int = 1,
        rate_hz: float = 200,
        pelvis_address: int = 0x68,
        trunk_address: int = 0x69,
        trunk: str = "auto",
        accel_range_g: int = 8,
        gyro_range_dps: int = 1000,
        accept_who_am_i: tuple[int, ...] = (),
        poll_s: float = 0.02,
        i2c=None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        duration_s: float | None = None,
        devices: DeviceFactory | None = None,
    ) -> None:
        super().__init__()
        if trunk not in ("auto", "on", "off"):
            raise SourceError(f"trunk must be auto, on or off, got {trunk!r}")
        devices = devices if devices is not None else HardwareFactory()
        clock = clock if clock is not None else devices.clock
        sleep = sleep if sleep is not None else devices.sleep
        self.i2c = i2c if i2c is not None else devices.i2c_bus(bus)
        self.clock, self.sleep, self.poll_s = clock, sleep, poll_s
        self.duration_s = duration_s if duration_s is not None else devices.duration_s
        kw = dict(
            rate_hz=rate_hz,
            accel_range_g=accel_range_g,
            gyro_range_dps=gyro_range_dps,
            accept_who_am_i=accept_who_am_i,
            clock=clock,
            sleep=sleep,
            bus_number=bus,
        )
        self.pelvis = MPU6050(self.i2c, pelvis_address, **kw)
        self.pelvis.start()
        self.trunk: MPU6050 | None = None
        if trunk != "off":
            cand = MPU6050(self.i2c, trunk_address, **kw)
            try:
                if trunk == "auto":
                    cand.identify()
                cand.start()
                self.trunk = cand
            except SourceError:
                if trunk == "on":
                    self.pelvis.stop()
                    raise
        self.has_trunk = self.trunk is not None
        self.aligner = TrunkAligner(1.0 / self.pelvis.rate_hz) if self.trunk else None
        self.t0 = clock()
        self._pacer = Pacer(clock, sleep, poll_s, self.t0)
        self.meta = {
            "sensor": devices.sensor_label("mpu6050"),
            "rate": f"{self.pelvis.rate_hz:g}",
            "bus": str(bus),
            "pelvis_address": f"0x{pelvis_address:02x}",
        }
        if self.trunk:
            self.meta["trunk_address"] = f"0x{trunk_address:02x}"

    @property
    def status(self) -> str:
        parts = [f"pelvis {self.pelvis.status}"]
        if self.trunk:
            parts.append(f"trunk {self.trunk.status}")
        return "; ".join(parts)

    @property
    def stats(self) -> dict[str, dict]:
        """Per segment what the driver met (for the session summary): counts, lost seconds, the last errors."""
        out = {}
        for seg, d in (("pelvis", self.pelvis), ("trunk", self.trunk)):
            if d is not None:
                st = dataclasses.asdict(d.stats)
                st["lost_s"] = round(st["lost_s"], 3)
                st["errors"] = st["errors"][-5:]
                out[seg] = st
        return out

    def _read_block(self) -> Block | None:
        now = self.clock()
        if self.duration_s is not None and now - self.t0 >= self.duration_s:
            return None
        self._pacer.wait()
        p = self.pelvis.read()
        p = Block(p.t - self.t0, p.acc, p.gyr)
        if self.trunk is None or self.aligner is None:
            return p
        tr = self.trunk.read()
        self.aligner.add_pelvis(p)
        self.aligner.add_trunk(Block(tr.t - self.t0, tr.acc, tr.gyr))
        return self.aligner.take()

    def _close(self) -> None:
        for d in (self.pelvis, self.trunk):
            if d is not None:
                d.stop()
        close = getattr(self.i2c, "close", None)
        if close:
            close()


class EmulatedSource(MPU6050Source):
    """The ``emulated`` kind: :class:`MPU6050Source` on an :class:`~firmware_bridge.devices.EmulatedFactory`.

    The synthetic runner on emulated MPU-6050s, end to end; ``speed`` > 1 runs the emulated time faster
    than real time. The source ends when the simulated run does; the run, truth included, is ``self.run``.
    """

    def __init__(
        self,
        *,
        minutes: float = 10.0,
        trunk: str = "on",
        seed: int = 0,
        speed: float = 1.0,
        osc_error: float = 0.013,
        nack_rate: float = 0.0,
        clock=None,
        **kwargs,
    ) -> None:
        devices = EmulatedFactory(
            "runner",
            minutes=minutes,
            trunk=trunk != "off",
            seed=seed,
            speed=speed,
            osc_error=osc_error,
            nack_rate=nack_rate,
            clock=clock,
            pelvis_address=kwargs.get("pelvis_address", 0x68),
            trunk_address=kwargs.get("trunk_address", 0x69),
        )
        self.run = devices.run
        super().__init__(devices=devices, trunk=trunk, **kwargs)
