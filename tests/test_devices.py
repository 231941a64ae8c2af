"""The device factory: one source class, real or emulated devices, chosen once."""

from __future__ import annotations

import pytest

from stackcue.errors import SourceError
from stackcue.firmware_bridge.clocks import ManualClock
from stackcue.firmware_bridge.devices import EmulatedFactory, HardwareFactory, device_factory
from stackcue.firmware_bridge.mpu6050_source import MPU6050Source


def test_the_choice_is_made_in_one_place():
    assert isinstance(device_factory(False, minutes=1.0), HardwareFactory)
    emulated = device_factory(True, scene="still")
    assert isinstance(emulated, EmulatedFactory) and emulated.duration_s is None
    assert emulated.describe("I2C bus 1") == "emulated I2C bus 1"
    assert HardwareFactory().describe("I2C bus 1") == "I2C bus 1"
    with pytest.raises(ValueError, match="scene"):
        EmulatedFactory("beach")


def test_hardware_without_a_bus_is_a_one_line_error():
    with pytest.raises(SourceError, match="/dev/i2c-97"):
        HardwareFactory().i2c_bus(97)


def test_the_same_source_runs_on_emulated_devices():
    """No emulated subclass needed: the factory brings the bus, the clock and the run's end."""
    devices = EmulatedFactory(minutes=0.25, seed=4, clock=ManualClock())
    with MPU6050Source(devices=devices, trunk="auto") as src:
        assert src.has_trunk and src.meta["sensor"] == "mpu6050-emulated"
        assert src.duration_s == pytest.approx(devices.duration_s)
        rows = sum(len(b) for b in src)
    assert rows == pytest.approx(200 * devices.duration_s, rel=0.03)


def test_still_chips_answer_at_the_configured_addresses():
    devices = EmulatedFactory("still", pelvis_address=0x68, trunk_address=0x69, clock=ManualClock())
    bus = devices.i2c_bus(1)
    assert {bus.read_byte_data(a, 0x75) for a in (0x68, 0x69)} == {0x68}
