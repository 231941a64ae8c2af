"""Posture drift detection: confirmation, hysteresis, quiet time, reminders.

Lives in the pipeline (not in a sink) so ``analyze`` and the live service
raise the same alerts. Only steady running strides count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .alert_kinds import ALERT_KINDS
from .params import AlertParams

#: kind -> (stride field, sign), from the one registry: sign +1 fires above +threshold, −1 below −threshold.
KINDS: dict[str, tuple[str, int]] = {k.name: (k.field, k.sign) for k in ALERT_KINDS.values()}


@dataclass
class _KindState:
    active: bool = False
    alerted: bool = False  # this activation raised an alert (so it owes a clear)
    over: int = 0
    under: int = 0
    last_alert_t: float | None = None
    since: float | None = None
    last_value: float | None = None  # the latest steady stride's value (a clear at a gap reports it)


@dataclass
class DriftDetector:
    """Feed one stride at a time; returns alert/clear events."""

    p: AlertParams
    reference: dict[str, float] = field(default_factory=dict)
    #: stride fields whose reference is still being collected (``first_minutes``): their kinds wait for it
    pending: set[str] = field(default_factory=set)
    states: dict[str, _KindState] = field(default_factory=dict)
    periods: list[tuple[str, float, float | None]] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)  # gaps a drift carried over: not time in alert
    next_id: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.p.enabled) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown alert kinds: {sorted(unknown)}")
        self.states = {k: _KindState() for k in KINDS if k in self.p.enabled}

    def threshold(self, kind: str) -> float:
        return threshold(kind, getattr(self.p, f"{kind}_deg"), self.reference)

    def restart_confirmation(self) -> None:
        """After a long gap or a stop: counting starts again; alert states stay."""
        for st in self.states.values():
            st.over = st.under = 0

    def gap(self, t0: float, t1: float, reason: str = "gap") -> list[dict]:
        """No data from ``t0`` to ``t1``: gaps (and pauses, ``reason="pause"``) count as no data.

        A gap longer than the quiet time ends every drift (a clear at ``t0`` with ``reason: gap`` for each
        one cued) and starts afresh: confirmation, quiet time and reminders. A shorter one is carried over,
        its length kept out of the time in alert and of the quiet-time and reminder clocks.
        """
        length = t1 - t0
        if length <= 0:
            return []
        if length > self.p.quiet_s:
            return self.end_all(t0, t1, reason)
        self.gaps.append((t0, t1))
        for st in self.states.values():
            if st.last_alert_t is not None:
                st.last_alert_t += length
        return []

    def end_all(self, t: float, decided_t: float, reason: str) -> list[dict]:
        """Every drift ends at ``t`` (a clear with ``reason`` for each one cued); everything starts afresh.

        After a long gap or pause, and at a re-calibration: the strides after it are not measured in the
        same way (or not by the same body), so nothing carries over.
        """
        events: list[dict] = []
        for kind, st in self.states.items():
            if st.active:
                self._close_period(kind, t)
                if st.alerted:
                    events.append(self._clear(kind, st.last_value, t, decided_t, reason=reason))
            self.states[kind] = _KindState()
        return events

    def update(self, stride: dict, t: float, decided_t: float) -> list[dict]:
        events: list[dict] = []
        if not stride.get("steady", False):
            return events
        p = self.p
        for kind, st in self.states.items():
            fld, sign = KINDS[kind]
            value = stride.get(fld)
            if value is None or fld in self.pending:
                continue
            st.last_value = value
            thr = self.threshold(kind)
            over = sign * (value - thr) > 0
            clear = sign * (value - (thr - sign * p.hysteresis_deg)) < 0
            if not st.active:
                st.over = st.over + 1 if over else 0
                if st.over >= p.confirm_strides:
                    st.active, st.under, st.since = True, 0, t
                    quiet = st.last_alert_t is not None and t - st.last_alert_t < p.quiet_s
                    st.alerted = not quiet
                    self.periods.append((kind, t, None))
                    if st.alerted:
                        events.append(self._alert(kind, value, thr, t, decided_t, reminder=False))
                        st.last_alert_t = t
                continue
            st.under = st.under + 1 if clear else 0
            if st.under >= p.clear_strides:
                st.active, st.over = False, 0
                self._close_period(kind, t)
                if st.alerted:
                    events.append(self._clear(kind, value, t, decided_t))
                st.alerted = False
            elif not st.alerted and over and st.last_alert_t is not None and t - st.last_alert_t >= p.quiet_s:
                # confirmed again within the quiet time, and still there once it has passed: cue it now
                events.append(self._alert(kind, value, thr, t, decided_t, reminder=False))
                st.alerted, st.last_alert_t = True, t
            elif (
                st.alerted
                and p.remind_every_s > 0
                and st.last_alert_t is not None
                and t - st.last_alert_t >= p.remind_every_s
                and over
            ):
                events.append(self._alert(kind, value, thr, t, decided_t, reminder=True))
                st.last_alert_t = t
        return events

    def _alert(self, kind: str, value: float, thr: float, t: float, decided_t: float, reminder: bool) -> dict:
        ev = {
            "type": "alert",
            "t": round(t, 4),
            "decided_t": round(decided_t, 4),
            "kind": kind,
            "value_deg": round(value, 2),
            "threshold_deg": round(thr, 2),
            "id": self.next_id,
            "reminder": reminder,
        }
        self.next_id += 1
        return ev

    @staticmethod
    def _clear(kind: str, value: float | None, t: float, decided_t: float, **extra: str) -> dict:
        return {
            "type": "clear",
            "t": round(t, 4),
            "decided_t": round(decided_t, 4),
            "kind": kind,
            "value_deg": None if value is None else round(value, 2),
            **extra,
        }

    def _close_period(self, kind: str, t: float) -> None:
        for i in range(len(self.periods) - 1, -1, -1):
            k, t0, t1 = self.periods[i]
            if k == kind and t1 is None:
                self.periods[i] = (k, t0, t)
                return

    def time_in_alert(self, t_end: float) -> dict[str, float]:
        return {k: round(v, 1) for k, v in time_in_alert(self.periods, t_end, self.states, self.gaps).items()}


def threshold(kind: str, setting_deg: float, reference: dict[str, float]) -> float:
    """A kind's signed threshold (deg): the reference (none for a pelvic drop) plus the setting in its direction.

    Shared with the reports, so the threshold they draw is the one the detector used.
    """
    fld, sign = KINDS[kind]
    ref = reference.get(fld, 0.0) if fld != "pelvic_drop_deg" else 0.0
    return ref + sign * float(setting_deg)


def time_in_alert(
    periods: Iterable[tuple[str, float, float | None]],
    t_end: float,
    kinds: Iterable[str] = (),
    gaps: Iterable[tuple[float, float]] = (),
) -> dict[str, float]:
    """Seconds in each alert state from ``(kind, start, end or None)`` periods; an open one lasts to ``t_end``.

    Every kind in ``kinds`` is listed, at 0 when it never fired. Time in ``gaps`` (no data: gaps, pauses, and
    the time between running bouts) is not counted, overlapping ones once.
    """
    out = dict.fromkeys(kinds, 0.0)
    merged: list[list[float]] = []  # a gap within a stop (or a pause) is left out once
    for g0, g1 in sorted(gaps):
        if merged and g0 <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], g1)
        else:
            merged.append([g0, g1])
    gaps = merged
    for k, t0, t1 in periods:
        end = t1 if t1 is not None else t_end
        lost = sum(max(0.0, min(end, g1) - max(t0, g0)) for g0, g1 in gaps)
        out[k] = out.get(k, 0.0) + (end - t0) - lost
    return out
