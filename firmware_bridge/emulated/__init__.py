"""Everything that stands in for hardware: the synthetic runner, the motion it gives a sensor, and the emulators.

- :mod:`.simulator`: the synthetic runner with its truth channel (and the ``simulated`` source kind);
- :mod:`.mocap`: motion-capture marker trajectories turned into virtual recordings with truth (a tool);
- :mod:`.motion`: :class:`~.motion.MotionTrack`, what a sensor feels over time (the runner, or at rest);
- :mod:`.mpu6050`: MPU-6050 chips register by register on an I2C bus with smbus2's methods;
- :mod:`.ble_sensors`, :mod:`.ble_radio`, :mod:`.ble_backends`: emulated BLE IMUs, the air they are heard
  in, and bleak's backends on that air (so bleak's own scanner and client run on it).

Code outside this package asks :mod:`stackcue.firmware_bridge.devices` for its devices rather than
building emulators itself. Names are imported lazily (``from stackcue.firmware_bridge.emulated import
Air``): the live path must not pay for scipy or bleak it does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "SimParams": ".simulator",
    "SimRun": ".simulator",
    "SimulatedSource": ".simulator",
    "simulate": ".simulator",
    "G_STANDARD": ".motion",
    "MotionTrack": ".motion",
    "EmulatedBus": ".mpu6050",
    "EmulatedChip": ".mpu6050",
    "EmulatedStackcueSensor": ".ble_sensors",
    "EmulatedWitMotion": ".ble_sensors",
    "Air": ".ble_radio",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    try:
        module = _NAMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module, __name__), name)
