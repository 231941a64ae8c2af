"""``stackcue sessions``: the logbook as a table a coach reads at a terminal."""

from __future__ import annotations

import datetime as dt

from stackcue.errors import InputError

from .logbook import Logbook
from .report_text import clock
from .wallclock import known_start

HEADER = ("session", "started", "duration", "strides", "cadence", "tilt", "lean", "stack", "alerts", "ended", "notes")
NOTES_WIDTH = 32


def parse_since(text: str) -> float:
    """``--since``: a date (2026-11-01), a date and time (2026-11-01T07:30, local time) or ``7d`` (days ago)."""
    t = text.strip()
    try:
        if t.endswith("d") and t[:-1].isdigit():
            return (dt.datetime.now() - dt.timedelta(days=int(t[:-1]))).timestamp()
        return dt.datetime.fromisoformat(t).timestamp()
    except OverflowError:  # 99999999d: before year 1
        raise InputError(f"--since {text!r}: out of the calendar's range, give fewer days or a date") from None
    except ValueError:
        raise InputError(f"--since {text!r}: give a date like 2026-11-01, 2026-11-01T07:30 or 7d") from None


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def duration_text(duration_s: float | None, summary: dict | None) -> str:
    """The session's length as the session lists show it (the CLI table, the phone's page): the span, and the
    paused part of it when any.

    ``duration_s`` is the span of the data, pauses included (docs/formats.md, summary); the running time and
    the time in alert leave pauses out, so a paused run says how much of its span was paused: "42:10 (3:05 paused)".
    """
    if duration_s is None:
        return "-"
    paused = (summary or {}).get("paused_s")
    if isinstance(paused, int | float) and not isinstance(paused, bool) and paused >= 1.0:
        return f"{clock(duration_s)} ({clock(paused)} paused)"
    return clock(duration_s)


def ended_text(s: dict) -> str:
    """How a session ended, in a word or two: 'power lost' (cut, closed at the next start), clean, unclean, or
    running (not closed yet); the CLI table and the phone's session list say the same."""
    return s.get("ended_reason") or s.get("ended_how") or "running"


def _short(notes: str | None) -> str:
    """The notes' first line, cut to fit the table (`stackcue note SESSION` shows them whole)."""
    line = (notes or "").strip().split("\n")[0]
    return line if len(line) <= NOTES_WIDTH else line[: NOTES_WIDTH - 1] + "…"


def sessions_table(book: Logbook, runner: str | None = None, since_epoch: float | None = None) -> str:
    """One line a session, oldest first; cadence, tilt, lean and stack are means over steady strides.

    ``since_epoch``: only sessions started since then; those whose start is unknown are left out (their stored
    number says nothing about when they were) and counted in a last line."""
    rows = []
    unknown = False
    stats = book.stats()
    hidden = 0
    if since_epoch is not None:  # the sessions since then leave out those of an unknown start: count them
        hidden = sum(known_start(s["started_epoch"]) is None for s in book.sessions(runner=runner))
    for s in book.sessions(runner=runner, since_epoch=since_epoch):
        st = stats.get(s["id"], {})
        start = known_start(s["started_epoch"])
        started = "unknown" if start is None else f"{dt.datetime.fromtimestamp(start):%Y-%m-%d %H:%M}"
        unknown = unknown or start is None
        if start is not None and s["clock_synchronised"] != "yes":
            started += "?"  # the clock was not known to be synchronised, or the date is the file's: may be off
        ended = ended_text(s)
        rows.append(
            (
                s["id"],
                started,
                duration_text(s["duration_s"], s["summary"]),
                str(st.get("strides", 0)),
                _num(st.get("cadence_spm"), ".0f"),
                _num(st.get("pelvic_tilt_deg"), "+.1f"),
                _num(st.get("trunk_lean_deg"), "+.1f"),
                _num(st.get("stack_deg"), "+.1f"),
                str(st.get("alerts", 0)),
                ended,
                _short(s["notes"]),
            )
        )
    hidden_line = f"{hidden} session(s) with an unknown start not shown (--since needs a known start)"
    if not rows:
        who = f" for runner {runner!r}" if runner else ""
        none = f"no sessions{who} in {book.path}" + (" since then" if since_epoch is not None else "")
        return none + (f"\n{hidden_line}" if hidden else "")
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    left = {0, 1, 9, 10}
    lines = [
        "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [HEADER, *rows]
    ]
    lines.append(
        "cadence in steps/min; tilt, lean and stack: mean degrees over steady strides; "
        "'?' after a date: the clock was not known to be synchronised"
    )
    if unknown:
        lines.append("started 'unknown': no start time, or one out of range (a clock that was not set)")
    if hidden:
        lines.append(hidden_line)
    return "\n".join(lines)
