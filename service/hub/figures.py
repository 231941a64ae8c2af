"""The hub's headline figures: per session, per runner over four weeks, per ISO week (docs/hub.md).

A session's figures are computed once, when its sync completes, with the report's own code over ``HubBook``
(``report_data.load_run``, ``report_stats.running_s``/``union_s``), so the squad page says what the session's
report says; they are kept in ``headlines`` and the pages read one row per session: a runner with 200 sessions
is one query, not 200 reports. A session whose figures are missing (a hub that died between storing and
computing) gets them on the next read.

* ``pct_stacked``: % of running time with no posture alert active (gaps and pauses left out), as the report's
  "any alert" share;
* ``alerts_per_h`` (per hour of running), ``alerts_per_km`` (None without a distance): alerts raised, reminders
  not counted;
* ``median_tilt_deg``, ``median_stack_deg``: medians over the steady strides.

Over several sessions (four weeks, a week) the shares and rates are time-weighted (totals over totals) and the
medians are the median of the sessions' medians (the strides themselves are not read again).
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from stackcue.errors import StackcueError

from . import tables as T

if TYPE_CHECKING:
    from .store import HubStore

FOUR_WEEKS_S = 28 * 86400
FIGURES = ("pct_stacked", "alerts_per_h", "alerts_per_km", "median_tilt_deg", "median_stack_deg")
_H = T.headlines


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def session_headline(book, sid: str) -> dict:
    """One session's figures from its stored rows (``HubBook``), with the report's own functions."""
    import numpy as np

    from .. import report_stats as stats
    from ..report_data import load_run, resolve

    session = resolve(book, sid)
    row: dict[str, Any] = {
        "session": sid,
        "runner_id": session.get("runner"),
        "started_epoch": session.get("started_epoch"),
        "duration_s": session.get("duration_s"),
        "distance_m": session.get("distance_m"),
        "note": None,
    }
    try:
        run = load_run(book, session)
    except StackcueError as exc:  # no strides: nothing to figure
        return {**row, "note": str(exc)}
    running = _finite(stats.running_s(run))
    alert_s = _finite(stats.union_s(run.periods, stats.no_data(run)))
    n_alerts = sum(1 for a in run.alerts if not a.get("reminder"))
    km = (row["distance_m"] or 0) / 1000

    def median(short: str) -> float | None:
        x = run.col[short][run.steady]
        x = x[np.isfinite(x)]
        return float(np.median(x)) if len(x) else None

    return {
        **row,
        "running_s": running,
        "alert_s": alert_s,
        "alerts": n_alerts,
        "pct_stacked": None if not running else max(0.0, min(100.0, 100 * (1 - (alert_s or 0) / running))),
        "alerts_per_h": None if not running else n_alerts / (running / 3600),
        "alerts_per_km": n_alerts / km if km > 0 else None,
        "median_tilt_deg": median("tilt"),
        "median_stack_deg": median("stack"),
    }


def compute(store: HubStore, sid: str) -> None:
    """Compute and keep a stored session's figures (replacing older ones)."""
    runner = store.session_runner(sid)
    if runner is None:
        return
    row = session_headline(store.book(), sid)
    row.update(runner_id=runner, computed_epoch=time.time())
    with store._write() as conn:
        conn.execute(delete(_H).where(_H.c.session == sid))
        conn.execute(insert(_H).values(row))


def _headlines(store: HubStore, runners: list[str]) -> list[dict]:
    """The figures of every complete session of these runners, oldest first; missing ones computed now."""
    if not runners:
        return []
    with store._read() as conn:
        done = set(
            conn.execute(
                select(T.uploads.c.session).where(T.uploads.c.runner_id.in_(runners), T.uploads.c.complete.is_(True))
            ).scalars()
        )
        have = set(conn.execute(select(_H.c.session).where(_H.c.runner_id.in_(runners))).scalars())
    for sid in sorted(done - have):
        compute(store, sid)
    with store._read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(_H).where(_H.c.runner_id.in_(runners)))]
    rows = [r for r in rows if r["session"] in done]
    return sorted(rows, key=lambda r: (r["started_epoch"] is not None, r["started_epoch"] or 0.0, r["session"]))


def _public(r: dict) -> dict:
    """A session's row as the pages get it."""
    return {
        "id": r["session"],
        "started_epoch": r["started_epoch"],
        "duration_s": r["duration_s"],
        "running_s": r["running_s"],
        "distance_m": r["distance_m"],
        "alerts": r["alerts"],
        "note": r["note"],
        **{k: r[k] for k in FIGURES},
    }


def aggregate(rows: list[dict]) -> dict:
    """The four figures over several sessions: shares and rates time-weighted, medians of the medians."""
    timed = [r for r in rows if r["running_s"]]
    running = sum(r["running_s"] for r in timed)
    alert_s = sum(r["alert_s"] or 0.0 for r in timed)
    alerts = sum(r["alerts"] or 0 for r in timed)
    km = sum((r["distance_m"] or 0) / 1000 for r in timed if r["distance_m"])
    km_alerts = sum(r["alerts"] or 0 for r in timed if r["distance_m"])

    def med(key: str) -> float | None:
        xs = [r[key] for r in rows if r[key] is not None]
        return statistics.median(xs) if xs else None

    return {
        "sessions": len(rows),
        "pct_stacked": max(0.0, min(100.0, 100 * (1 - alert_s / running))) if running else None,
        "alerts_per_h": alerts / (running / 3600) if running else None,
        "alerts_per_km": km_alerts / km if km > 0 else None,
        "median_tilt_deg": med("median_tilt_deg"),
        "median_stack_deg": med("median_stack_deg"),
    }


def runner_sessions(store: HubStore, runner_id: str) -> list[dict]:
    """The runner's sessions, newest first, each with its headline figures."""
    return [_public(r) for r in reversed(_headlines(store, [runner_id]))]


def squad_overview(store: HubStore, coach: str) -> list[dict]:
    """Per runner of the coach's squads: the last session's figures and the same over the four weeks before it."""
    runners = store.runners_of(coach)
    names = store.display_names()
    by_runner: dict[str, list[dict]] = {r: [] for r in runners}
    for row in _headlines(store, runners):
        by_runner[row["runner_id"]].append(row)
    out = []
    for runner in runners:
        rows = by_runner[runner]
        last = rows[-1] if rows else None
        item: dict[str, Any] = {"runner": runner, "display_name": names.get(runner), "last": None, "previous": None}
        if last is not None:
            item["last"] = {
                "id": last["session"],
                "started_epoch": last["started_epoch"],
                "duration_s": last["duration_s"],
            }
            item.update({k: last[k] for k in FIGURES})
            start = last["started_epoch"]
            before = [
                r
                for r in rows[:-1]
                if start is not None and r["started_epoch"] is not None and start - FOUR_WEEKS_S <= r["started_epoch"]
            ]
            item["previous"] = aggregate(before) if before else None
        else:
            item.update({k: None for k in FIGURES})
        out.append(item)
    return out


def runner_trend(store: HubStore, runner_id: str) -> list[dict]:
    """Per ISO week (oldest first): ``week`` ("2026-W49"), ``sessions``, and the four figures over that week."""
    weeks: dict[str, list[dict]] = {}
    for r in _headlines(store, [runner_id]):
        if r["started_epoch"] is None:
            continue
        y, w, _ = datetime.fromtimestamp(r["started_epoch"], UTC).isocalendar()
        weeks.setdefault(f"{y}-W{w:02d}", []).append(r)
    return [{"week": wk, **aggregate(rows)} for wk, rows in sorted(weeks.items())]
