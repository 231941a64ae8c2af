"""Reading and looking after the logbook: sessions, their strides, alerts, events and raw samples; notes,
deletion and vacuum.

Apart from the writer because its users (reports, exports, the CLI, the importer) read from their own thread
and process and never need the live writer's thread and queue.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stackcue.errors import LogbookError
from stackcue.firmware_bridge.block import Block

from ..wallclock import EARLIEST_EPOCH, LATEST_EPOCH, known_start
from .codec import decode_chunk
from .schema import connect, to_json

log = logging.getLogger("stackcue.logbook")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")  # an alert kind's name (dsp/alert_kinds.py; older logbooks had others)

#: what a stored figure may be; beyond it (or not a finite number) it is damage, read as unknown (None)
_TIME_MAX_S = 4e6  # source-clock s (46 days: longer than any session; a FIT file holds 49.7); durations ≥ 0
_EPOCH_MAX = 1e13  # wall-clock epoch seconds (year 318857): wallclock.py decides what it believes within it


_SHAPES: dict[str, type | tuple[type, ...]] = {
    "segments": dict,
    "type": str,
    "enabled": list,
    "kind": str,
    "cue_skipped": str,
}
_FLAGS = frozenset(("steady", "reminder", "replayed", "ok", "muted", "cue"))  # booleans of an event: nothing else fits
# counts a summary carries (a stride's "steady" is a boolean: these are checked in a summary only)
_SUMMARY_COUNTS = frozenset(
    ("steady", "reminders", "gaps", "samples", "suspect", "pauses", "calibrations", "rows_rejected", "alerts_held")
)


def _number_range(key: str) -> tuple[float, float] | None:
    """The range of a numeric field of a stored event (or session column), by its name; None: not numeric."""
    if key in ("id", "alert_id", "strides", "alerts", "steady_strides"):
        return (0, 1e12)
    if key.endswith("_deg"):
        return (-360.0, 360.0)
    if key == "cadence_spm":
        return (0.0, 400.0)
    if key in ("t", "t_start", "t_end", "decided_t"):
        return (-_TIME_MAX_S, _TIME_MAX_S)
    if key.endswith("_s"):
        return (0.0, _TIME_MAX_S)
    if key.endswith("_epoch") or key in ("raised_at", "sent_at", "delivered_at"):
        return (-_EPOCH_MAX, _EPOCH_MAX)
    if key == "distance_m":
        return (0.0, 1e7)
    return None


def _finite(x: Any) -> tuple[Any, bool]:
    """Non-finite floats (stored as JSON NaN/Infinity) anywhere in a value replaced by None."""
    if isinstance(x, float):
        return (x, True) if math.isfinite(x) else (None, False)
    if isinstance(x, dict):
        items = {k: _finite(v) for k, v in x.items()}
        return {k: v for k, (v, _) in items.items()}, all(ok for _, ok in items.values())
    if isinstance(x, list):
        items = [_finite(v) for v in x]
        return [v for v, _ in items], all(ok for _, ok in items)
    return x, True


def _clean_event(ev: dict, stats_ok: bool = False) -> tuple[dict, list[str]]:
    """A stored event with every figure out of its range or not finite read as unknown (None); the keys so read.

    Top-level figures by their name (``_number_range``); in a summary (``stats_ok``) a figure may be its
    statistics (``{"mean": ..}``), checked by the figure's range; anything else only for being finite."""
    out: dict = {}
    bad: list[str] = []
    for k, v in ev.items():
        rng = _number_range(k) if isinstance(k, str) and not k.endswith("_rad_s") else None
        if rng is not None and stats_ok and isinstance(v, dict):
            inner = {}
            for ik, iv in v.items():
                inner[ik], ok = _figure(k, iv)
                if not ok:
                    bad.append(f"{k}.{ik}")
            out[k] = inner
            continue
        if rng is not None:
            out[k], ok = _figure(k, v)
        elif stats_ok and k in _SUMMARY_COUNTS and v is not None:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1e12
            out[k] = v if ok else None
        elif k in _FLAGS and v is not None:
            ok = isinstance(v, bool)
            out[k] = v if ok else None
        elif k == "segments" and isinstance(v, dict):
            out[k], inner_bad = _clean_segments(v)
            bad.extend(inner_bad)
            continue
        elif k == "metrics" and v is not None:  # a reference event's per-metric {"from", "value"}
            out[k], inner_bad = _clean_metrics(v)
            bad.extend(inner_bad)
            continue
        elif k in _SHAPES and v is not None:
            ok = isinstance(v, _SHAPES[k])
            out[k] = v if ok else None
        else:
            out[k], ok = _finite(v)
        if not ok:
            bad.append(str(k))
    return out, bad


_REFERENCE_SOURCES = ("neutral", "first_minutes", "targets")


def _clean_metrics(metrics: object) -> tuple[dict | None, list[str]]:
    """A reference event's ``metrics``: per figure its source and value; a damaged entry reads as unknown (None)."""
    if not isinstance(metrics, dict):
        return None, ["metrics"]
    out: dict = {}
    bad: list[str] = []
    for name, m in metrics.items():
        ok = isinstance(m, dict) and _number_range(str(name)) is not None and m.get("from") in _REFERENCE_SOURCES
        value, ok_value = _figure(str(name), m.get("value")) if ok else (None, False)  # type: ignore[union-attr]
        if ok and ok_value:
            out[name] = {**m, "value": value}
        else:
            out[name] = None
            bad.append(f"metrics.{name}")
    return out, bad


#: a calibration segment's vectors: their length and the largest magnitude a component may have
_SEGMENT_VECTORS = {"q_body_from_sensor_wxyz": (4, 1.0 + 1e-6), "gyro_bias_rad_s": (3, 35.0)}  # 2000 °/s = 34.9


def _clean_segments(segments: dict) -> tuple[dict, list[str]]:
    """A calibration's per-sensor parts; a part that is not an object, or whose rotation or gyro bias is damaged,
    is left out whole (a part without its rotation cannot be used or shown); its other figures are checked by
    name (``_clean_event``), ``quality`` within 0..1."""
    out: dict = {}
    bad: list[str] = []
    for seg, d in segments.items():
        if not isinstance(d, dict):
            bad.append(f"segments.{seg}")
            continue
        part, part_bad = _clean_event(d)
        for key, (n, lim) in _SEGMENT_VECTORS.items():
            x = part.get(key)
            if x is not None and not (
                isinstance(x, list)
                and len(x) == n
                and all(isinstance(c, int | float) and not isinstance(c, bool) and abs(c) <= lim for c in x)
            ):
                part_bad.append(key)
        q = part.get("quality")
        if q is not None and not (isinstance(q, int | float) and not isinstance(q, bool) and 0 <= q <= 1):
            part["quality"] = None
            part_bad.append("quality")
        if any(k in _SEGMENT_VECTORS for k in part_bad):
            bad.append(f"segments.{seg}")
            continue
        out[seg] = part
        bad.extend(f"segments.{seg}.{k}" for k in part_bad)
    return out, bad


def no_strides() -> dict:
    """A session's figures in ``stats()`` when it has alerts but no stored stride."""
    return {
        "strides": 0,
        "steady": 0,
        "cadence_spm": None,
        "pelvic_tilt_deg": None,
        "trunk_lean_deg": None,
        "stack_deg": None,
    }


def _figure(key: str, x: Any) -> tuple[Any, bool]:
    """A stored value checked against its field's range: (value, True) when fine, (None, False) when not."""
    rng = _number_range(key)
    if x is None:
        return None, True
    if rng is None:
        return (None, False) if isinstance(x, float) and not math.isfinite(x) else (x, True)
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None, False
    if not (math.isfinite(x) and rng[0] <= x <= rng[1]):
        return None, False
    return x, True


class StoredRows:
    """The logbook's row checks, apart from any query: ``Logbook`` (SQLite) and the hub's ``HubBook``
    (service/hub/book.py, SQLAlchemy) read their rows through these, so both read a stored session alike.

    A subclass sets ``path`` (named in warnings and errors) and hands over the rows its own queries fetched, as
    the tuples ``Logbook``'s queries give (``rowid`` there is any growing row id)."""

    path: Any

    _SESSION_COLS = (
        "id, runner, started_epoch, clock_synchronised, source, calibration, config, ended_epoch, "
        "ended_how, summary, notes, duration_s, distance_m, origin, ended_reason"
    )

    def _damaged(self, where: str, what: str) -> LogbookError:
        return LogbookError(f"logbook {self.path}: {where}: {what}")

    def _warn(self, where: str, what: str) -> None:
        """One warning line, once per logbook object (a row is read many times by one command)."""
        warned = self.__dict__.setdefault("_warned", set())
        if (where, what) not in warned:
            warned.add((where, what))
            log.warning("logbook %s: %s: %s", self.path, where, what)

    def _json_object(self, text: Any, where: str, column: str, warn: bool = True, clean: bool = True) -> dict | None:
        """A JSON column that must hold an object: None when NULL; damage read as None with a warning."""
        if text is None:
            return None
        try:
            value = json.loads(text)
            why = None if isinstance(value, dict) else f"holds a JSON {type(value).__name__}, not an object"
        except (TypeError, ValueError, RecursionError) as exc:
            value, why = None, f"is not JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        if why is not None:
            if warn:
                self._warn(where, f"column {column} {why}; read as unknown")
            return None
        if not clean:
            return value
        if column == "summary":
            value, bad = _clean_event(value, stats_ok=True)
        elif column == "calibration":  # the latest calibration event: its segments read as the events' are
            value, bad = _clean_event(value)
        else:  # the config's sections are not figures: only NaN and infinities are damage there
            value, ok = _finite(value)
            bad = [] if ok else ["a value"]
        if bad and warn:
            self._warn(where, f"column {column}: {', '.join(bad[:5])} out of range or not a number; read as unknown")
        return value

    def _session_row(self, r: tuple) -> dict:
        sid = r[0]
        if not isinstance(sid, str):
            raise self._damaged(f"a sessions row (id {sid!r})", "the id is not text")
        where = f"session {sid}"
        row: dict[str, Any] = {"id": sid}
        for i, key in (
            (1, "runner"),
            (3, "clock_synchronised"),
            (8, "ended_how"),
            (10, "notes"),
            (13, "origin"),
            (14, "ended_reason"),
        ):
            v = r[i]
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            if v is not None and not isinstance(v, str):  # a number where a name is: damage, not a name
                self._warn(where, f"column {key} = {v!r:.40} is not text; read as unknown")
                v = None
            row[key] = v
        if row["ended_how"] not in (None, "clean", "unclean"):
            self._warn(where, f"column ended_how {row['ended_how']!r} is not clean or unclean; read as unclean")
            row["ended_how"] = "unclean"
        for i, key in ((2, "started_epoch"), (7, "ended_epoch"), (11, "duration_s"), (12, "distance_m")):
            row[key], ok = _figure(key, r[i])
            if not ok:
                self._warn(where, f"column {key} = {r[i]!r:.40} is out of range or not a number; read as unknown")
        for i, key in ((4, "source"), (5, "calibration"), (6, "config"), (9, "summary")):
            row[key] = self._json_object(r[i], where, key)
        return {k: row[k] for k in self._SESSION_KEYS}

    _SESSION_KEYS = (
        "id",
        "runner",
        "started_epoch",
        "clock_synchronised",
        "source",
        "calibration",
        "config",
        "ended_epoch",
        "ended_how",
        "summary",
        "notes",
        "duration_s",
        "distance_m",
        "origin",
        "ended_reason",
    )

    def _stored_events(self, session_id: str, table: str, rows) -> list[tuple[int, dict]]:
        """(rowid, event) of rows whose JSON is an object; the others set aside with one warning line naming the
        logbook, the session, the table, the rows and the column; figures out of range read as unknown."""
        out, bad, unknown = [], [], []
        column = "payload" if table == "alerts" else "event"
        for rowid, text in rows:
            ev = self._json_object(text, "", column, warn=False, clean=False)
            if ev is None:
                bad.append(rowid)
                continue
            ev, wrong = _clean_event(ev, stats_ok=ev.get("type") == "summary")
            t0, t1 = ev.get("t_start"), ev.get("t_end")
            if (
                {"t", "t_start", "t_end"} & set(wrong)  # an event at a damaged time cannot be placed
                or (t0 is not None and t1 is not None and t1 < t0)
                or (table == "strides" and t0 is None)
            ):
                bad.append(rowid)
                continue
            if wrong:
                unknown.append(f"{rowid} ({', '.join(wrong[:3])})")
            out.append((rowid, ev))
        if bad:
            rows_text = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            why = "not a JSON object, or its times damaged"
            self._warn(f"session {session_id}", f"{table} row(s) {rows_text}: column {column} {why}; set aside")
        if unknown:
            rows_text = "; ".join(unknown[:3]) + ("; ..." if len(unknown) > 3 else "")
            self._warn(
                f"session {session_id}", f"{table} row(s) {rows_text}: out of range or not a number; read as unknown"
            )
        return out

    def _by_prefix(self, session_id: str, rows: list) -> dict | None:
        """The one session row (of up to 6, by start) whose id begins with ``session_id``; ambiguity an error."""
        if len(rows) > 1:
            names = ", ".join(r[0] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise LogbookError(f"session {session_id!r} is ambiguous: {names}")
        return self._session_row(rows[0]) if rows else None

    def _strides_of(self, session_id: str, rows) -> list[dict]:
        """(rowid, event) rows of a session's strides, checked (``_stored_events``), in time order."""
        evs = self._stored_events(session_id, "strides", rows)
        return [ev for _, ev in sorted(evs, key=lambda x: (x[1]["t_start"], x[0]))]

    def _alerts_of(self, session_id: str, rows) -> list[dict]:
        """Rows (rowid, alert_id, t, kind, payload, delivered, delivered_at, queued) in (alert_id, rowid) order,
        checked: a payload that cannot be read or placed in time is set aside, a kind that is none read as unknown."""
        payloads = dict(self._stored_events(session_id, "alerts", [(r[0], r[4]) for r in rows]))
        out = []
        for r in rows:
            if r[0] not in payloads:
                continue
            p = payloads[r[0]]
            kind = next((k for k in (r[3], p.get("kind")) if isinstance(k, str) and _KIND.fullmatch(k)), None)
            if kind != r[3]:
                self._warn(f"session {session_id}", f"alerts row {r[0]}: column kind {r[3]!r:.40} is no alert kind")
            if p.get("kind") != kind:
                p["kind"] = kind
            t = _figure("t", r[2])[0]
            if p.get("t") is None:
                if t is None:
                    self._warn(f"session {session_id}", f"alerts row {r[0]}: no valid time; set aside")
                    continue
                p["t"] = t
            out.append(
                {
                    "alert_id": _figure("alert_id", r[1])[0],
                    "t": t,
                    "kind": kind,
                    "payload": p,
                    "delivered": r[5] == 1,
                    "delivered_at": _figure("delivered_at", r[6])[0],
                    "queued": r[7] == 1,
                }
            )
        return out

    def _chunks_of(self, session_id: str, rows) -> Iterator[dict[str, np.ndarray]]:
        """Rows (rowid, data, n, trunk) in (t0, rowid) order decoded (``decode_chunk``); damage is an error."""
        last = -math.inf
        for rowid, data, n, trunk in rows:
            where = f"session {session_id}: raw_chunks row {rowid}"
            if trunk not in (0, 1):
                raise self._damaged(where, f"column trunk = {trunk!r:.40} is not 0 or 1")
            try:
                chunk = decode_chunk(data, n, bool(trunk))
            except ValueError as exc:
                raise self._damaged(where, f"column data: {exc}") from None
            if chunk["t"][0] < last:
                raise self._damaged(where, "its samples start before the previous chunk's end")
            last = float(chunk["t"][-1])
            yield chunk

    def _blocks_of(self, session_id: str) -> Iterator[Block]:
        """``raw_blocks`` from the subclass's ``has_trunk`` and ``raw_chunks``."""
        trunk = self.has_trunk(session_id)
        for c in self.raw_chunks(session_id):
            t, acc, gyr = c["t"], c["acc"].astype(float), c["gyr"].astype(float)
            if not trunk:
                yield Block(t, acc, gyr)
            elif "trunk_acc" in c:
                yield Block(
                    t,
                    acc,
                    gyr,
                    c["trunk_acc"].astype(float),
                    c["trunk_gyr"].astype(float),
                    np.asarray(c["trunk_valid"], dtype=bool),
                )
            else:
                nan = np.full((len(t), 3), np.nan)
                yield Block(t, acc, gyr, nan, nan.copy(), np.zeros(len(t), dtype=bool))


class Logbook(StoredRows):
    """One logbook file; its connection belongs to the thread that made the object (``connect()`` for others).

    ``readonly``: for commands that only read (``sessions``, ``report``, exports): the file is neither made,
    migrated (unless it is older and may be written) nor written, and nothing is made beside it
    (``schema.connect_readonly``); a missing file is a ``LogbookError`` "no logbook at ...".
    """

    def __init__(self, path: str | os.PathLike, max_bytes: int | None = None, readonly: bool = False) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.readonly = readonly
        self.conn = connect(self.path, max_bytes, readonly=readonly)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the same file, for another thread."""
        return connect(self.path, self.max_bytes, readonly=self.readonly)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Logbook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def mark_unclean_sessions(self, runner: str | None = None, held: Callable[[str | None], bool] | None = None) -> int:
        """Sessions still open (the writer died: crash, kill, power cut) become ``'unclean'`` with the reason
        ``'power lost'`` (``ended_reason``); returns how many.

        Their end time is what the data says: the start plus the newest stored sample, stride or event time.
        Call it when a daemon of ``runner`` starts, holding that runner's run lock, before its own session
        begins: that runner's open sessions are then certainly dead. Another runner's open session may be
        written by its own live daemon right now (a shared logbook): it is marked only when ``held(its runner)``
        says no run of it is alive, and left alone when ``held`` is not given. ``runner=None`` marks every
        open session (a logbook no daemon writes).
        """
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            ids = [
                sid
                for sid, who in self.conn.execute("SELECT id, runner FROM sessions WHERE ended_how IS NULL")
                if runner is None or who == runner or (held is not None and not held(who))
            ]
            for sid in ids:
                last = self.conn.execute(
                    "SELECT max(x) FROM (SELECT max(t1) AS x FROM raw_chunks WHERE session = ?1 "
                    "UNION ALL SELECT max(t_end) FROM strides WHERE session = ?1 "
                    "UNION ALL SELECT max(t) FROM events WHERE session = ?1 "
                    "UNION ALL SELECT max(t) FROM alerts WHERE session = ?1)",
                    (sid,),
                ).fetchone()[0]
                self.conn.execute(
                    "UPDATE sessions SET ended_how = 'unclean', ended_reason = 'power lost', duration_s = ?, "
                    "ended_epoch = coalesce(ended_epoch, started_epoch + ?) WHERE id = ?",
                    (last, last or 0.0, sid),
                )
        return len(ids)

    def sessions(self, runner: str | None = None, since_epoch: float | None = None) -> list[dict]:
        """Sessions, oldest first; optionally of one runner and started at or after ``since_epoch``.

        With ``since_epoch``, a session whose start is unknown (NULL, or out of ``wallclock``'s range: a clock
        that was not set) is not listed: its stored number says nothing about when it was."""
        rows = self.conn.execute(
            f"SELECT {self._SESSION_COLS} FROM sessions WHERE (?1 IS NULL OR runner = ?1) "
            "AND (?2 IS NULL OR (started_epoch >= max(?2, ?3) AND started_epoch < ?4)) ORDER BY started_epoch, id",
            (runner, since_epoch, EARLIEST_EPOCH, LATEST_EPOCH),
        )
        return [self._session_row(r) for r in rows]

    def session(self, session_id: str) -> dict | None:
        """One session by its id, a unique prefix of it, or ``latest``; None when nothing matches.

        An ambiguous prefix raises ``LogbookError`` naming the candidates.
        """
        if session_id == "latest":
            r = self.conn.execute(
                f"SELECT {self._SESSION_COLS} FROM sessions ORDER BY started_epoch DESC, rowid DESC LIMIT 1"
            ).fetchone()
            return None if r is None else self._session_row(r)
        r = self.conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if r is not None:
            return self._session_row(r)
        rows = self.conn.execute(
            f"SELECT {self._SESSION_COLS} FROM sessions WHERE substr(id, 1, ?) = ? ORDER BY started_epoch LIMIT 6",
            (len(session_id), session_id),
        ).fetchall()
        return self._by_prefix(session_id, rows)

    def strides(self, session_id: str) -> list[dict]:
        """The stride events of a session, as they were emitted, in time order.

        A damaged row is set aside and a figure out of its range read as unknown (None), each with one warning
        line (``_stored_events``)."""
        rows = self.conn.execute(
            "SELECT rowid, event FROM strides WHERE session = ? ORDER BY rowid", (session_id,)
        ).fetchall()
        return self._strides_of(session_id, rows)

    def alerts(self, session_id: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT rowid, alert_id, t, kind, payload, delivered, delivered_at, queued FROM alerts "
            "WHERE session = ? ORDER BY alert_id, rowid",
            (session_id,),
        ).fetchall()
        return self._alerts_of(session_id, rows)

    def events(self, session_id: str, types: tuple[str, ...] | list[str] | None = None) -> list[dict]:
        """The session's other events (calibration, clear, gap, reference, summary, ...) in the order emitted.

        A damaged row is set aside with one warning line; figures out of range read as unknown (None)."""
        rows = self.conn.execute(
            "SELECT rowid, event FROM events WHERE session = ? AND (?2 IS NULL OR type IN "
            "(SELECT value FROM json_each(?2))) ORDER BY rowid",
            (session_id, None if types is None else json.dumps(list(types))),
        ).fetchall()
        return [ev for _, ev in self._stored_events(session_id, "events", rows)]

    def stats(self) -> dict[str, dict]:
        """Per session: strides, steady strides, their mean cadence, tilt, lean and stack, and alerts raised.

        Computed from the stored strides, so a session that ended uncleanly (no summary) has them too.
        """
        out: dict[str, dict] = {}

        def fig(col: str, lo: float, hi: float) -> str:  # a column's figure only when it is a number in range
            return (
                f"avg(CASE WHEN steady = 1 AND typeof({col}) IN ('integer', 'real') "
                f"AND {col} BETWEEN {lo} AND {hi} THEN {col} END)"
            )

        for r in self.conn.execute(
            "SELECT session, count(*), sum(steady = 1), "
            f"{fig('cadence_spm', 0, 400)}, {fig('pelvic_tilt_deg', -360, 360)}, "
            f"{fig('trunk_lean_deg', -360, 360)}, {fig('stack_deg', -360, 360)} FROM strides GROUP BY session"
        ):
            out[r[0]] = {
                "strides": r[1],
                "steady": r[2] or 0,
                "cadence_spm": r[3],
                "pelvic_tilt_deg": r[4],
                "trunk_lean_deg": r[5],
                "stack_deg": r[6],
                "alerts": 0,
            }
        for sid, n in self.conn.execute("SELECT session, count(*) FROM alerts GROUP BY session"):
            out.setdefault(sid, no_strides())["alerts"] = n
        return out

    def has_raw(self, session_id: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM raw_chunks WHERE session = ? LIMIT 1", (session_id,)).fetchone()
            is not None
        )

    def runners(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT runner FROM sessions ORDER BY runner")]

    def delete_session(self, session_id: str) -> None:
        """Everything of one session, in one transaction (the space is reused; ``vacuum`` returns it)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self._delete_rows(session_id)

    def _delete_rows(self, session_id: str) -> None:
        for table, col in (
            ("raw_chunks", "session"),
            ("strides", "session"),
            ("alerts", "session"),
            ("events", "session"),
            ("cue_plans", "session"),
            ("sessions", "id"),
        ):
            self.conn.execute(f"DELETE FROM {table} WHERE {col} = ?", (session_id,))

    def claim_session(self, row: dict, replace_unclean: tuple[str, ...] = ()) -> dict | None:
        """Make the session row ``row`` (column → value; JSON columns as objects) unless its id exists.

        One ``BEGIN IMMEDIATE`` transaction, so of two processes claiming the same id exactly one wins:
        returns None when the row was made, else the existing session (not changed). An existing session that
        ended ``'unclean'`` and whose origin is in ``replace_unclean`` (a store that was killed) is deleted
        and replaced. A start out of ``wallclock``'s range is stored as unknown (NULL): the caller warns.
        """
        cols = ("id", "runner", "started_epoch", "clock_synchronised", "source", "config", "origin")
        values = [to_json(row.get(c)) if c in ("source", "config") else row.get(c) for c in cols]
        values[2] = known_start(values[2])  # out of wallclock's range: stored unknown, as the live writer does
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            r = self.conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions WHERE id = ?", (row["id"],)).fetchone()
            if r is not None:
                old = self._session_row(r)
                if old["ended_how"] != "unclean" or old["origin"] not in replace_unclean:
                    return old
                self._delete_rows(row["id"])
            self.conn.execute(f"INSERT INTO sessions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values)
        return None

    def set_cue_plan(self, session_id: str, runner: str, decision: dict, decided_epoch: float) -> None:
        """The fading stage a session runs in (``dsp.fading.Decision.as_dict()``), stored at its start."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO cue_plans (session, runner, stage, fading, decided_epoch, basis) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    runner,
                    int(decision["stage"]),
                    int(bool(decision["fading"])),
                    decided_epoch,
                    to_json(decision),
                ),
            )

    def cue_plan(self, session_id: str) -> dict | None:
        """A session's stored fading decision (``stage``, ``fading``, ``reason``, ``steps``); None when it has
        none (a session before schema v5, an import, an analysis). Damage is read as none, with a warning."""
        r = self.conn.execute("SELECT stage, fading, basis FROM cue_plans WHERE session = ?", (session_id,)).fetchone()
        if r is None:
            return None
        stage, fading, basis = r
        if not (isinstance(stage, int) and 1 <= stage <= 3) or fading not in (0, 1):
            self._warn(f"session {session_id}", f"cue_plans row: stage {stage!r:.20} or fading {fading!r:.20} damaged")
            return None
        out = self._json_object(basis, f"session {session_id}", "basis", clean=False) or {}
        out.update(stage=stage, fading=bool(fading))
        return out

    def fading_history(self, runner: str, before_epoch: float | None = None) -> list[dict]:
        """The runner's sessions with a summary, oldest first (started before ``before_epoch`` when given): each
        ``id``, ``alert_fraction`` (time in any alert over running time: the summary's ``cues``, or for an older
        summary its time in alert summed over the kinds, at most 1) and ``running_s``: ``dsp.fading``'s input."""
        out = []
        for s in self.sessions(runner=runner):
            summary = s.get("summary")
            if not isinstance(summary, dict):
                continue
            if before_epoch is not None and (s["started_epoch"] is None or s["started_epoch"] >= before_epoch):
                continue
            running = summary.get("running_s")
            if not isinstance(running, int | float) or isinstance(running, bool) or running <= 0:
                continue
            cues = summary.get("cues") if isinstance(summary.get("cues"), dict) else {}
            frac = cues.get("alert_fraction")
            if not isinstance(frac, int | float) or isinstance(frac, bool) or not 0 <= frac <= 1:
                tia = summary.get("time_in_alert_s")
                parts = [v for v in tia.values() if isinstance(v, int | float)] if isinstance(tia, dict) else []
                frac = min(1.0, sum(parts) / running) if parts else None
            out.append({"id": s["id"], "alert_fraction": frac, "running_s": float(running)})
        return out

    def set_notes(self, session_id: str, notes: str | None) -> None:
        """The session's free-text notes (what the run was, how it felt); None removes them."""
        with self.conn:
            self.conn.execute("UPDATE sessions SET notes = ? WHERE id = ?", (notes, session_id))

    def vacuum(self) -> None:
        """Give deleted pages back and overwrite them (a runner's data deleted must not stay in free pages)."""
        self.conn.execute("PRAGMA secure_delete=ON")
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def has_trunk(self, session_id: str) -> bool:
        """Did any stored chunk of the session carry a trunk sensor?"""
        row = self.conn.execute(
            "SELECT 1 FROM raw_chunks WHERE session = ? AND trunk = 1 LIMIT 1", (session_id,)
        ).fetchone()
        return row is not None

    def raw_blocks(self, session_id: str) -> Iterator[Block]:
        """The raw samples as float64 blocks, all with trunk columns when any chunk has them (then pelvis-only
        stretches get invalid trunk rows), so a reader or the pipeline sees one layout throughout."""
        yield from self._blocks_of(session_id)

    def raw_chunks(self, session_id: str) -> Iterator[dict[str, np.ndarray]]:
        """The raw samples of a session, chunk by chunk in time order (see ``decode_chunk``)."""
        rows = self.conn.execute(
            "SELECT rowid, data, n, trunk FROM raw_chunks WHERE session = ? ORDER BY t0, rowid", (session_id,)
        )
        yield from self._chunks_of(session_id, rows)
