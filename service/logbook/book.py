"""Reading and looking after the logbook: sessions, their strides, alerts, events and raw samples; notes,
deletion and vacuum.

Apart from the writer because its users (reports, exports, the CLI, the importer) read from their own thread
and process and never need the live writer's thread and queue.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stackcue.errors import LogbookError
from stackcue.firmware_bridge.block import Block

from .codec import decode_chunk
from .schema import connect, from_json, to_json


class Logbook:
    """One logbook file; its connection belongs to the thread that made the object (``connect()`` for others)."""

    def __init__(self, path: str | os.PathLike, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.conn = connect(self.path, max_bytes)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the same file, for another thread."""
        return connect(self.path, self.max_bytes)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Logbook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def mark_unclean_sessions(self) -> int:
        """Sessions still open (the writer died: crash, kill, power cut) become ``'unclean'``; returns how many.

        Their end time is what the data says: the start plus the newest stored sample, stride or event time.
        Call it when a daemon starts, before its own session begins: a session written by another live
        process at that moment would be marked too.
        """
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in self.conn.execute("SELECT id FROM sessions WHERE ended_how IS NULL")]
            for sid in ids:
                last = self.conn.execute(
                    "SELECT max(x) FROM (SELECT max(t1) AS x FROM raw_chunks WHERE session = ?1 "
                    "UNION ALL SELECT max(t_end) FROM strides WHERE session = ?1 "
                    "UNION ALL SELECT max(t) FROM events WHERE session = ?1 "
                    "UNION ALL SELECT max(t) FROM alerts WHERE session = ?1)",
                    (sid,),
                ).fetchone()[0]
                self.conn.execute(
                    "UPDATE sessions SET ended_how = 'unclean', duration_s = ?, "
                    "ended_epoch = coalesce(ended_epoch, started_epoch + ?) WHERE id = ?",
                    (last, last or 0.0, sid),
                )
        return len(ids)

    _SESSION_COLS = (
        "id, runner, started_epoch, clock_synchronised, source, calibration, config, ended_epoch, "
        "ended_how, summary, notes, duration_s, distance_m, origin"
    )

    @staticmethod
    def _session_row(r: tuple) -> dict:
        return {
            "id": r[0],
            "runner": r[1],
            "started_epoch": r[2],
            "clock_synchronised": r[3],
            "source": from_json(r[4]),
            "calibration": from_json(r[5]),
            "config": from_json(r[6]),
            "ended_epoch": r[7],
            "ended_how": r[8],
            "summary": from_json(r[9]),
            "notes": r[10],
            "duration_s": r[11],
            "distance_m": r[12],
            "origin": r[13],
        }

    def sessions(self, runner: str | None = None, since_epoch: float | None = None) -> list[dict]:
        """Sessions, oldest first; optionally of one runner and started at or after ``since_epoch``."""
        rows = self.conn.execute(
            f"SELECT {self._SESSION_COLS} FROM sessions WHERE (?1 IS NULL OR runner = ?1) "
            "AND (?2 IS NULL OR started_epoch >= ?2) ORDER BY started_epoch, id",
            (runner, since_epoch),
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
        if len(rows) > 1:
            names = ", ".join(r[0] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise LogbookError(f"session {session_id!r} is ambiguous: {names}")
        return self._session_row(rows[0]) if rows else None

    def strides(self, session_id: str) -> list[dict]:
        """The stride events of a session, as they were emitted, in time order."""
        return [
            json.loads(r[0])
            for r in self.conn.execute(
                "SELECT event FROM strides WHERE session = ? ORDER BY t_start, rowid", (session_id,)
            )
        ]

    def alerts(self, session_id: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT alert_id, t, kind, payload, delivered, delivered_at, queued FROM alerts "
            "WHERE session = ? ORDER BY alert_id",
            (session_id,),
        )
        return [
            {
                "alert_id": r[0],
                "t": r[1],
                "kind": r[2],
                "payload": json.loads(r[3]),
                "delivered": bool(r[4]),
                "delivered_at": r[5],
                "queued": bool(r[6]),
            }
            for r in rows
        ]

    def events(self, session_id: str, types: tuple[str, ...] | list[str] | None = None) -> list[dict]:
        """The session's other events (calibration, clear, gap, reference, summary, ...) in the order emitted."""
        rows = self.conn.execute("SELECT type, event FROM events WHERE session = ? ORDER BY rowid", (session_id,))
        return [json.loads(e) for ty, e in rows if types is None or ty in types]

    def stats(self) -> dict[str, dict]:
        """Per session: strides, steady strides, their mean cadence, tilt, lean and stack, and alerts raised.

        Computed from the stored strides, so a session that ended uncleanly (no summary) has them too.
        """
        out: dict[str, dict] = {}
        for r in self.conn.execute(
            "SELECT session, count(*), sum(steady = 1), avg(CASE WHEN steady = 1 THEN cadence_spm END), "
            "avg(CASE WHEN steady = 1 THEN pelvic_tilt_deg END), "
            "avg(CASE WHEN steady = 1 THEN trunk_lean_deg END), "
            "avg(CASE WHEN steady = 1 THEN stack_deg END) FROM strides GROUP BY session"
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
            out.setdefault(
                sid,
                {
                    "strides": 0,
                    "steady": 0,
                    "cadence_spm": None,
                    "pelvic_tilt_deg": None,
                    "trunk_lean_deg": None,
                    "stack_deg": None,
                },
            )["alerts"] = n
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
            ("sessions", "id"),
        ):
            self.conn.execute(f"DELETE FROM {table} WHERE {col} = ?", (session_id,))

    def claim_session(self, row: dict, replace_unclean: tuple[str, ...] = ()) -> dict | None:
        """Make the session row ``row`` (column → value; JSON columns as objects) unless its id exists.

        One ``BEGIN IMMEDIATE`` transaction, so of two processes claiming the same id exactly one wins:
        returns None when the row was made, else the existing session (not changed). An existing session that
        ended ``'unclean'`` and whose origin is in ``replace_unclean`` (a store that was killed) is deleted
        and replaced.
        """
        cols = ("id", "runner", "started_epoch", "clock_synchronised", "source", "config", "origin")
        values = [to_json(row.get(c)) if c in ("source", "config") else row.get(c) for c in cols]
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
        row = self.conn.execute("SELECT max(trunk) FROM raw_chunks WHERE session = ?", (session_id,)).fetchone()
        return bool(row[0])

    def raw_blocks(self, session_id: str) -> Iterator[Block]:
        """The raw samples as float64 blocks, all with trunk columns when any chunk has them (then pelvis-only
        stretches get invalid trunk rows), so a reader or the pipeline sees one layout throughout."""
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

    def raw_chunks(self, session_id: str) -> Iterator[dict[str, np.ndarray]]:
        """The raw samples of a session, chunk by chunk in time order (see ``decode_chunk``)."""
        rows = self.conn.execute(
            "SELECT data, n, trunk FROM raw_chunks WHERE session = ? ORDER BY t0, rowid", (session_id,)
        )
        for data, n, trunk in rows:
            yield decode_chunk(data, n, bool(trunk))
