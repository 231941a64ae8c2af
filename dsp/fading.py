"""Faded feedback: which stage of the cue schedule a session runs in, from the runner's earlier sessions.

Motor-learning research finds that feedback given on every attempt helps while it is given but that less
of it, faded as the learner improves, is retained better once it stops (docs/cues.md, "Faded feedback",
has the sources). So the more of a run a runner spends in posture, the fewer cues the next run gives:

* stage 1: every alert is cued;
* stage 2: every second alert is cued (50 %);
* stage 3: only an alert beyond a wider band (its threshold plus ``wide_band_deg``) is cued.

The rule, replayed over the runner's earlier sessions in order from stage 1: a session whose time in
alert is under ``fade_below_pct`` % of its running time is a good one; ``fade_after_sessions`` good ones in
a row fade the feedback one stage (1 → 2 → 3); a session in alert at least ``fade_below_pct +
regress_by_pct`` % of its running time brings one stage back (3 → 2 → 1) at once; one in between keeps the
stage and starts the count of good ones again. A session with less than ``min_running_min`` of running
counts for nothing (a jog to the shop says little about posture).

Pure: the history comes in, the stage goes out; the service reads the logbook and stores the decision
with the session (service/logbook/), so the report and a later ``analyze --session`` use the same stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .drift import time_in_alert
from .params import CueParams

#: the stages, by number: what each cues
STAGES: dict[int, str] = {
    1: "every alert cued",
    2: "every second alert cued",
    3: "only alerts beyond the wider band cued",
}
FIRST_STAGE = 1
LAST_STAGE = max(STAGES)


@dataclass(frozen=True)
class PastSession:
    """What the rule needs of an earlier session: its time in alert as a share of its running time (0..1,
    None when unknown) and its running time (s)."""

    alert_fraction: float | None
    running_s: float


@dataclass(frozen=True)
class Decision:
    """A session's stage and why: ``steps`` lists, per counted earlier session, (fraction, stage after it)."""

    stage: int
    fading: bool
    reason: str
    steps: tuple[tuple[float, int], ...] = ()

    def as_dict(self) -> dict:
        return {
            "stage": self.stage,
            "fading": self.fading,
            "reason": self.reason,
            "steps": [[round(f, 4), s] for f, s in self.steps],
        }


def decide_stage(history: Sequence[PastSession], p: CueParams, fading: bool | None = None) -> Decision:
    """The stage of the next session from the runner's earlier ones (oldest first), by the module's rule.

    ``fading`` (default ``p.fading``) false: stage 1, whatever the history (the runner or the coach turned it off).
    """
    on = p.fading if fading is None else fading
    if not on:
        return Decision(FIRST_STAGE, False, "fading is off: every alert cued")
    stage, good, steps = FIRST_STAGE, 0, []
    low = p.fade_below_pct / 100.0
    high = (p.fade_below_pct + p.regress_by_pct) / 100.0
    reason = "no earlier session counted yet: every alert cued"
    for s in history:
        f = s.alert_fraction
        if f is None or s.running_s < 60.0 * p.min_running_min:
            continue
        if f < low and stage == LAST_STAGE:
            good = 0
            reason = f"the last session was {f * 100:.0f} % in alert: stage {stage}, the least feedback, kept"
        elif f < low:
            good += 1
            if good >= p.fade_after_sessions:
                stage += 1
                reason = f"{good} sessions in a row under {p.fade_below_pct:g} % in alert: faded to stage {stage}"
                good = 0
            else:
                reason = f"{good} of {p.fade_after_sessions} sessions under {p.fade_below_pct:g} % in alert"
        elif f >= high:
            good = 0
            if stage > FIRST_STAGE:
                stage -= 1
                reason = f"a session {f * 100:.0f} % in alert (≥ {high * 100:g} %): back to stage {stage}"
            else:
                reason = f"the last session was {f * 100:.0f} % in alert: every alert cued"
        else:
            good = 0
            reason = f"the last session was {f * 100:.0f} % in alert: stage {stage} kept"
        steps.append((f, stage))
    return Decision(stage, True, reason, tuple(steps))


def alert_fraction(
    periods: Iterable[tuple[str, float, float | None]],
    t_end: float,
    gaps: Iterable[tuple[float, float]],
    running_s: float,
) -> float | None:
    """The share of the running time spent in any alert (0..1): the drift periods of every kind joined (two
    kinds at once count once), gaps and pauses left out; None without running."""
    if running_s <= 0:
        return None
    spans = sorted((t0, t_end if t1 is None else t1) for _, t0, t1 in periods)
    merged: list[tuple[str, float, float | None]] = []
    for t0, t1 in spans:
        if merged and t0 <= (merged[-1][2] or t0):
            last = merged[-1]
            merged[-1] = ("any", last[1], max(last[2] or t1, t1))
        else:
            merged.append(("any", t0, t1))
    total = time_in_alert(merged, t_end, (), gaps).get("any", 0.0)
    return max(0.0, min(1.0, total / running_s))
