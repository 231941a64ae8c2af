"""The alert kinds: every fact about one kind in one row.

The detector (which stride field, which direction), the terminal and HTML
reports (name, colour, the coach's wording), the cue (phrase, haptic
pattern) and the configuration check all read this table, so a new kind is
one row here. Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: a haptic pattern: (on_s, off_s) pairs on the buzzer
Pattern = tuple[tuple[float, float], ...]

SHORT, LONG, GAP = 0.15, 0.45, 0.1


@dataclass(frozen=True)
class AlertKind:
    """One kind of posture drift.

    ``sign`` +1 fires above +threshold (relative to the reference), −1 below
    −threshold; ``field`` is the stride's figure in degrees.
    """

    name: str
    field: str
    sign: int
    label: str  #: what a report calls it
    when: str  #: what it means, in the coach's words (a threshold follows)
    phrase: str  #: what the cue says to the runner
    pattern: Pattern  #: the buzz, distinct per kind
    colour: str  #: its colour in the report's plots

    @property
    def needs_trunk(self) -> bool:
        return self.field in ("trunk_lean_deg", "stack_deg")


ALERT_KINDS: dict[str, AlertKind] = {
    k.name: k
    for k in (
        AlertKind(
            "anterior_tilt",
            "pelvic_tilt_deg",
            +1,
            "anterior pelvic tilt",
            "pelvis tipped forward: stride-mean tilt above",
            "Ribs over hips. Tuck the pelvis.",
            ((SHORT, GAP), (SHORT, 0.0)),
            "#e8892b",
        ),  # two short
        AlertKind(
            "posterior_tilt",
            "pelvic_tilt_deg",
            -1,
            "posterior pelvic tilt",
            "pelvis tucked under: stride-mean tilt below",
            "Let the pelvis sit neutral.",
            ((0.6, 0.0),),
            "#8d6cc4",
        ),  # one long
        AlertKind(
            "pelvic_drop",
            "pelvic_drop_deg",
            +1,
            "pelvic drop",
            "hip drops in stance: peak drop above",
            "Level your hips.",
            ((SHORT, GAP), (LONG, 0.0)),
            "#a0522d",
        ),  # short long
        AlertKind(
            "trunk_lean",
            "trunk_lean_deg",
            +1,
            "trunk lean",
            "trunk tipped forward: stride-mean lean above",
            "Run tall.",
            ((LONG, GAP), (SHORT, 0.0)),
            "#d64545",
        ),  # long short
        AlertKind(
            "ribs_behind_pelvis",
            "stack_deg",
            -1,
            "ribs behind pelvis",
            "ribs behind the pelvis, back arched: stack below",
            "Stack your ribs.",
            ((LONG, 0.15), (LONG, 0.0)),
            "#1f9e89",
        ),  # two long
        AlertKind(
            "ribs_ahead_of_pelvis",
            "stack_deg",
            +1,
            "ribs ahead of pelvis",
            "ribs ahead of the pelvis, hunched: stack above",
            "Lift your chest. Stack up.",
            ((SHORT, GAP), (SHORT, GAP), (LONG, 0.0)),
            "#3b7dd8",
        ),  # short short long
    )
}

#: an alert kind this version does not know yet (a newer Pi, an older cue client)
GENERIC_PHRASE = "Check your form."
GENERIC_PATTERN: Pattern = ((0.3, GAP), (0.3, GAP), (0.3, 0.0))
GENERIC_COLOUR = "#888"


def label(kind: str) -> str:
    """A kind's report name; an unknown kind by its own name."""
    k = ALERT_KINDS.get(kind)
    return k.label if k else kind
