"""Metric or imperial in the coach's report (``[report] units``): distances, rates per distance, pace, lengths.

Angles stay degrees and cadence steps per minute in both. The report's data stays SI (metres, seconds); only
what is written on the page changes, so two reports of one session differ in their words, never in their figures.
"""

from __future__ import annotations

from dataclasses import dataclass

M_PER_MI = 1609.344
M_PER_IN = 0.0254


@dataclass(frozen=True)
class Units:
    """How the report writes lengths: ``system`` is "metric" (km, min/km, cm) or "imperial" (mi, min/mi, in)."""

    system: str = "metric"

    @property
    def imperial(self) -> bool:
        return self.system == "imperial"

    @property
    def distance_unit(self) -> str:
        return "mi" if self.imperial else "km"

    def distance(self, metres: float) -> str:
        """``12.34 km`` or ``7.67 mi``."""
        return f"{metres / (M_PER_MI if self.imperial else 1000.0):.2f} {self.distance_unit}"

    def per_distance(self, per_km: float) -> float:
        """A count per km as a count per the report's distance unit (per mile: 1.609 times as many)."""
        return per_km * M_PER_MI / 1000.0 if self.imperial else per_km

    def pace(self, s_per_km: float) -> str:
        """``5:05 /km`` or ``8:11 /mi``."""
        s = s_per_km * M_PER_MI / 1000.0 if self.imperial else s_per_km
        m, sec = divmod(round(s), 60)
        return f"{m}:{sec:02d} /{self.distance_unit}"

    def length(self, metres: float) -> str:
        """A body length or a height: ``18 cm`` or ``7.1 in``."""
        return f"{metres / M_PER_IN:.1f} in" if self.imperial else f"{metres * 100:.0f} cm"
