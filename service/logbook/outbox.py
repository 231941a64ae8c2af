"""The MQTT publisher's durable outbox, kept in the logbook's ``alerts`` table.

In the logbook rather than a file of its own so an alert and its delivery state are one row, written by
whichever of the live sink and the outbox comes first, and a report can say which alerts reached the runner.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

from ..outbox import record_problem
from .book import Logbook
from .schema import to_json

log = logging.getLogger("stackcue.mqtt")


class LogbookOutbox:
    """The MQTT publisher's durable ``Outbox`` over the logbook's ``alerts`` table.

    ``add`` inserts or updates the alert's row (the logbook sink may have written it already) and sets
    ``queued``; ``pending`` is every queued, undelivered alert of any session, oldest first (insertion order).
    Each call commits (synchronous FULL) before returning. The publisher calls from its sender thread, the
    replay from its starting thread: each thread gets its own connection.
    """

    def __init__(self, logbook: Logbook, session: str | None = None) -> None:
        self.logbook = logbook
        self.session = session
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.logbook.connect()
        return conn

    def add(self, alert_payload: dict) -> None:
        p = alert_payload
        session = p.get("session") or self.session
        self._conn().execute(
            "INSERT INTO alerts (session, alert_id, t, kind, payload, delivered, queued) VALUES (?, ?, ?, ?, ?, 0, 1) "
            "ON CONFLICT (session, alert_id) DO UPDATE SET payload = excluded.payload, queued = 1",
            (session, p.get("alert_id"), p.get("t"), p.get("kind"), to_json({**p, "session": session})),
        )

    def mark_delivered(self, session: str, alert_id: int) -> None:
        self._conn().execute(
            "UPDATE alerts SET delivered = 1, delivered_at = ? WHERE session = ? AND alert_id = ? AND delivered = 0",
            (time.time(), session, alert_id),
        )

    def pending(self) -> list[dict]:
        """Queued, undelivered alerts, oldest first, each with its ``_runner`` (from the session row if unsaid).

        A row whose payload cannot be published (not JSON, or ``record_problem``) is set aside with a one-line
        warning: it stays in the logbook (a report still shows it) but is no longer queued for the outbox.
        """
        conn = self._conn()
        rows = conn.execute(
            "SELECT a.rowid, a.payload, s.runner FROM alerts a LEFT JOIN sessions s ON s.id = a.session "
            "WHERE a.queued = 1 AND a.delivered = 0 ORDER BY a.rowid"
        ).fetchall()
        out = []
        for rowid, payload, runner in rows:
            try:
                p = json.loads(payload)
                why = record_problem(p)
            except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
                why = f"payload is not JSON ({exc})"
            if why is None:
                if "_runner" not in p and isinstance(runner, str):
                    p["_runner"] = runner
                out.append(p)
                continue
            log.warning(
                "mqtt outbox %s: alerts row %d: %s; set aside (kept, not queued)", self.logbook.path, rowid, why
            )
            try:
                conn.execute("UPDATE alerts SET queued = 0 WHERE rowid = ?", (rowid,))
            except sqlite3.Error as exc:  # a read-only logbook: it is skipped again next time
                log.warning("mqtt outbox %s: could not set row %d aside: %s", self.logbook.path, rowid, exc)
        return out

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
