"""Which alerts are cued: every alert is raised, delivered and stored; this decides its ``cue`` mark.

Lives in the pipeline (like the drift detection) so ``analyze`` and the live run mark the same alerts, and
the report can count the cues given. Each ``alert`` event gets ``"cue": true|false`` and, when false,
``"cue_skipped"``, the first of these that holds (docs/cues.md, "No nagging"; contract of issue 17):

1. ``"snoozed"``: the runner snoozed the cues (the ``mute`` command: phone, button, ``stackcue ctl``) and the
   alert was decided before the snooze ends;
2. ``"improving"``: a reminder while the drift is already shrinking: the least-squares trend of the kind's
   figure over the last ``improving_strides`` steady strides falls by ``improving_min_deg`` or more towards
   the reference (the runner is correcting; a repeat would only nag);
3. ``"fading"``: the session's stage of faded feedback (``dsp.fading``) leaves it out: at stage 2 every second
   alert, at stage 3 every alert less than ``wide_band_deg`` beyond its threshold;
4. ``"ceiling"``: ``max_per_10min`` cues were already given in the 10 minutes before it.

Times are the data's (an alert's ``decided_t``, a snooze's sample times), never a clock, so a replay of a
stored session with its stored snoozes (``CuePlan``) marks every alert as the live run did.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .drift import KINDS
from .params import CueParams

#: the reasons an alert is not cued, in the order they are checked
SKIP_REASONS = ("snoozed", "improving", "fading", "ceiling")
CEILING_WINDOW_S = 600.0


@dataclass(frozen=True)
class CuePlan:
    """What a session's cueing starts from: its fading ``stage`` (decided at its start from the runner's
    earlier sessions) and, for a replay, the live run's snoozes as (from, until) sample times in order."""

    stage: int = 1
    snoozes: tuple[tuple[float, float], ...] = ()


@dataclass
class CuePolicy:
    """Marks alerts (``mark``), hears of steady strides (``observe``) and snoozes (``snooze``)."""

    p: CueParams
    plan: CuePlan = field(default_factory=CuePlan)

    def __post_init__(self) -> None:
        if self.plan.stage not in (1, 2, 3):
            raise ValueError(f"fading stage {self.plan.stage} is not 1, 2 or 3")
        self.stage = self.plan.stage
        self._snoozes: deque[tuple[float, float]] = deque(self.plan.snoozes)
        self.snoozed_until: float | None = None
        self._cued: deque[float] = deque()  # decided_t of the cues given, within the ceiling's window
        self._eligible = 0  # alerts that reached the fading check (stage 2 cues the odd ones)
        self._recent: dict[str, deque[float]] = {}
        self.given = 0
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)

    # ------------------------------------------------------------------ inputs
    def observe(self, values: dict) -> None:
        """A steady stride's figures (before the drift detector sees it, so an alert's own stride counts)."""
        n = self.p.improving_strides
        for fld in {f for f, _ in KINDS.values()}:
            x = values.get(fld)
            if x is None:
                continue
            self._recent.setdefault(fld, deque(maxlen=n)).append(float(x))

    def snooze(self, t: float, until: float) -> None:
        """From sample time ``t`` the cues are snoozed until ``until`` (``until <= t``: cues back on)."""
        self._snoozes.append((float(t), float(until)))

    # ------------------------------------------------------------------ decision
    def mark(self, alert: dict) -> dict:
        """The alert with its ``cue`` mark (and ``cue_skipped`` when not cued); counts it for the summary."""
        dec = float(alert.get("decided_t", alert["t"]))
        reason = self._reason(alert, dec)
        if reason is None:
            self._cued.append(dec)
            self.given += 1
            alert["cue"] = True
        else:
            self.skipped[reason] += 1
            alert["cue"] = False
            alert["cue_skipped"] = reason
        return alert

    def _reason(self, alert: dict, dec: float) -> str | None:
        while self._snoozes and self._snoozes[0][0] < dec:  # a snooze made before the alert was decided
            self.snoozed_until = self._snoozes.popleft()[1]
        if self.snoozed_until is not None and dec < self.snoozed_until:
            return "snoozed"
        kind = alert.get("kind")
        if alert.get("reminder") and kind in KINDS and self.improving(kind):
            return "improving"
        if self.stage == 2:
            self._eligible += 1
            if self._eligible % 2 == 0:
                return "fading"
        elif self.stage == 3 and kind in KINDS:
            _, sign = KINDS[kind]
            value, thr = alert.get("value_deg"), alert.get("threshold_deg")
            if value is None or thr is None or sign * (value - thr) < self.p.wide_band_deg:
                return "fading"
        while self._cued and self._cued[0] <= dec - CEILING_WINDOW_S:
            self._cued.popleft()
        if self.p.max_per_10min > 0 and len(self._cued) >= self.p.max_per_10min:
            return "ceiling"
        return None

    def improving(self, kind: str) -> bool:
        """Is the kind's drift already shrinking? The fitted line through the last ``improving_strides`` steady
        strides' figure falls by at least ``improving_min_deg`` towards the reference over them."""
        fld, sign = KINDS[kind]
        xs = self._recent.get(fld)
        n = self.p.improving_strides
        if xs is None or len(xs) < n:
            return False
        slope = float(np.polyfit(np.arange(n, dtype=float), np.asarray(xs, float), 1)[0])
        return -sign * slope * (n - 1) >= self.p.improving_min_deg and -sign * slope > 0

    # ------------------------------------------------------------------ output
    def summary(self, alert_fraction: float | None) -> dict:
        """The summary's ``cues``: the stage, the cues given and the alerts not cued by reason."""
        return {
            "stage": self.stage,
            "fading": self.p.fading,
            "max_per_10min": self.p.max_per_10min,
            "given": self.given,
            "not_cued": dict(self.skipped),
            "alert_fraction": None if alert_fraction is None else round(alert_fraction, 4),
        }
