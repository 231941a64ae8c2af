"""The Pi's battery level from Linux's power_supply class, for the state's ``battery_pct``.

A UPS HAT with a kernel driver, or a fuel gauge (MAX17040, BQ27xxx...), shows up as a directory under
``/sys/class/power_supply/`` (Documentation/ABI/testing/sysfs-class-power): ``type`` says "Battery" (or "UPS"),
``capacity`` holds the charge in percent (0..100) and ``status`` "Charging", "Discharging", "Full"...
Without one (a plain power bank) the level is unknown: None, as before.

The files are read at most every ``every_s`` (the level moves slowly and a gauge on I2C is slow to ask); a
fault (unreadable, not a number, above 100) gives None and one log line per kind of fault, never an exception:
the run goes on without a battery level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("stackcue.battery")

SYSFS = Path("/sys/class/power_supply")
EVERY_S = 30.0
BATTERY_TYPES = ("Battery", "UPS")


def find_supply(root: Path = SYSFS) -> Path | None:
    """The first power supply under ``root`` whose ``type`` is Battery (or UPS) and that has a ``capacity``."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return None
    for d in entries:
        try:
            kind = (d / "type").read_text().strip()
        except OSError:
            continue
        if kind in BATTERY_TYPES and (d / "capacity").exists():
            return d
    return None


class Battery:
    """``level()``: the battery's charge in percent (0..100), or None; sysfs read at most every ``every_s``."""

    def __init__(
        self,
        path: str = "auto",
        root: Path = SYSFS,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``path``: "auto" (the first Battery under ``root``), a power_supply directory, or "" (no battery)."""
        self.path = path
        self.root = root
        self.every_s = every_s
        self.clock = clock
        self._read_at: float | None = None
        self._level: int | None = None
        self._warned: set[str] = set()

    def level(self) -> int | None:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.every_s:
            self._read_at = now
            self._level = self._read()
        return self._level

    def _supply(self) -> Path | None:
        if not self.path:
            return None
        if self.path == "auto":
            return find_supply(self.root)
        return Path(self.path).expanduser()

    def _read(self) -> int | None:
        d = self._supply()
        if d is None:
            return None
        f = d / "capacity"
        try:
            text = f.read_text().strip()
        except OSError as e:
            return self._fault("unreadable", f"battery: cannot read {f}: {e.strerror or e}; battery level unknown")
        try:
            pct = int(text)
        except ValueError:
            return self._fault("number", f"battery: {f} holds {text[:20]!r}, not a percentage; battery level unknown")
        if not 0 <= pct <= 100:
            return self._fault("range", f"battery: {f} holds {pct}, outside 0..100; battery level unknown")
        return pct

    def _fault(self, kind: str, line: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(line)
        return None


__all__ = ["Battery", "find_supply"]
