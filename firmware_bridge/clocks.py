"""Clocks a source can run on: the host's, a sped-up one for demos, a manual one for tests."""

from __future__ import annotations

import time
from collections.abc import Callable


class ScaledClock:
    """Monotonic time running ``speed`` times faster, with a sleep to match (emulated demos)."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._m0 = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self._m0) * self.speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)


class ManualClock:
    """Time that moves only when slept on or advanced: deterministic, instant tests."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.t += float(seconds)

    advance = sleep


class Pacer:
    """Wakes a polling source every ``period`` s from ``start`` on; when it falls behind it does not try to
    catch up in a burst. ``wait()`` returns the clock's reading after the wait."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None], period: float, start: float) -> None:
        self.clock, self.sleep, self.period = clock, sleep, period
        self._next = start

    def wait(self) -> float:
        now = self.clock()
        self._next += self.period
        if self._next > now:
            self.sleep(self._next - now)
            return self.clock()
        self._next = now
        return now
