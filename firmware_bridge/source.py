"""The source interface and a lazy registry of source kinds.

Modelled on python-can's bus: a subclass implements ``_read_block``; the base
owns iteration and ``close()`` (safe to call twice). The registry imports a
backend only when it is chosen, so a missing optional library (bleak on a
machine without Bluetooth) fails only for that kind.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from stackcue.dsp.accel_calibration import AccelCalibration
from stackcue.errors import SourceError

from .block import Block


class Source(ABC):
    """Yields :class:`Block` objects until the source ends.

    Subclasses must implement :meth:`_read_block`; they may override
    :meth:`_close`. ``has_trunk`` says whether blocks carry a trunk segment;
    ``meta`` holds ``key=value`` facts about the source (sensor, rate, runner);
    ``status`` and ``stats`` are what the session driver reports of it.

    A sensor's accelerometer calibration (:meth:`correct_accel`) is applied here, at the driver's edge, so
    that the logbook, recordings and every replay hold corrected samples; ``meta`` names it
    (``accel_cal_pelvis``) and ``stackcue accel-cal`` undoes it when it is asked to fit again.
    """

    has_trunk: bool = False
    meta: dict[str, str]
    accel_calibration: dict[str, AccelCalibration]

    def __init__(self) -> None:
        self.meta = {}
        self.accel_calibration = {}
        self._closed = False

    def correct_accel(self, segment: str, calibration: AccelCalibration) -> None:
        """Correct ``segment``'s ("pelvis" or "trunk") accelerometer from now on; an identity one is no-op."""
        if segment not in ("pelvis", "trunk"):
            raise ValueError(f"segment must be 'pelvis' or 'trunk', not {segment!r}")
        if calibration.identity:
            self.accel_calibration.pop(segment, None)
            self.meta.pop(f"accel_cal_{segment}", None)
            return
        self.accel_calibration[segment] = calibration
        self.meta[f"accel_cal_{segment}"] = calibration.to_meta()

    @abstractmethod
    def _read_block(self) -> Block | None:
        """Return the next block (possibly empty), or None when the source has ended."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release hardware or files; called once."""

    @property
    def status(self) -> str:
        """One line on the link's state for a runner or a log ("searching for WT901", "bus error"); "" if none."""
        return ""

    @property
    def stats(self) -> dict[str, Any] | None:
        """Counters for the session summary (per segment: frames, lost samples, retries); None if none kept."""
        return None

    def read(self) -> Block | None:
        if self._closed:
            return None
        block = self._read_block()
        if block is None or not self.accel_calibration or len(block) == 0:
            return block
        pel, tru = self.accel_calibration.get("pelvis"), self.accel_calibration.get("trunk")
        return Block(
            block.t,
            block.acc if pel is None else pel.apply(block.acc),
            block.gyr,
            block.trunk_acc if tru is None or block.trunk_acc is None else tru.apply(block.trunk_acc),
            block.trunk_gyr,
            block.trunk_valid,
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __iter__(self) -> Iterator[Block]:
        while (block := self.read()) is not None:
            yield block

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The one registry of source kinds: kind -> "module:Class", imported on first use.
SOURCE_KINDS: dict[str, str] = {
    "mpu6050": "stackcue.firmware_bridge.mpu6050_source:MPU6050Source",
    "emulated": "stackcue.firmware_bridge.mpu6050_source:EmulatedSource",  # mpu6050 on devices.EmulatedFactory
    "replay": "stackcue.firmware_bridge.replay:ReplaySource",
    "simulated": "stackcue.firmware_bridge.emulated.simulator:SimulatedSource",
    "ble": "stackcue.firmware_bridge.ble_source:BLESource",
}
#: the kinds `stackcue run` and ``[source] kind`` may choose ("simulated" is the tests' and benchmarks')
LIVE_SOURCE_KINDS: tuple[str, ...] = tuple(k for k in SOURCE_KINDS if k != "simulated")


def open_source(kind: str, **kwargs: Any) -> Source:
    """Create a source of ``kind`` with its keyword options."""
    try:
        target = SOURCE_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(SOURCE_KINDS))
        raise SourceError(f"unknown source kind {kind!r} (known: {known})") from None
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceError(f"source kind {kind!r} needs a library that is missing: {exc}") from None
    return getattr(module, cls_name)(**kwargs)
