"""A session's wall-clock start, when it can be believed.

A Pi with no real-time clock and no network starts in 1970; a recording's ``started_utc`` may say year 1 or
9999. Such a start is not a time to print, sort a report by or put in a FIT file: the coach's commands show it
as unknown and export the session without wall-clock times, with one warning line (``start_warning``).

One range for everyone: the logbook's writer and ``claim_session`` store a start out of it as unknown (NULL),
the readers show it unknown, and ``sessions --since`` leaves such a session out (counted in a last line) rather
than compare a number that says nothing about when it was.
"""

from __future__ import annotations

import datetime as dt
import math

#: starts before 2000-01-01 or from 2100-01-01 UTC are taken as a clock that was not set
EARLIEST_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
LATEST_EPOCH = dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp()


def known_start(epoch: float | None) -> float | None:
    """``epoch`` (Unix seconds) when it is a believable wall-clock time, else None."""
    try:
        e = float(epoch)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return e if math.isfinite(e) and EARLIEST_EPOCH <= e < LATEST_EPOCH else None


def _year(epoch: float) -> str:
    try:
        return f"year {(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=epoch)).year}"
    except (OverflowError, ValueError):
        return "no calendar year"


def start_warning(session: dict) -> str | None:
    """One line saying the session's start is unknown and why, or None when it is known."""
    epoch = session.get("started_epoch")
    if known_start(epoch) is not None:
        return None
    sid = session.get("id", "?")
    if epoch is None:
        return f"session {sid}: its start time is unknown; shown as unknown and exported without wall-clock time"
    return (
        f"session {sid}: its start time {epoch!r} ({_year(float(epoch))}) is out of range (a clock that was not "
        "set?); shown as unknown and exported without wall-clock time"
    )
