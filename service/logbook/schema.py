"""The logbook file: connection settings, tables and migrations (docs/logbook.md).

Durability: WAL journal with ``synchronous=FULL``, so a commit is on the disk (the WAL fsync'd) before it
returns and a power cut loses at most the batch not yet committed. The live writer (``LogbookSink``) commits at
least once a second, so a crash or a pulled battery loses at most about one second of the stream.

Privacy: the file is created mode 0600 (``os.open`` before SQLite sees it) and the process umask is 0o077 while
SQLite connects and switches to WAL, so the ``-wal``/``-shm`` files are owner-only too (SQLite also gives them
the database file's mode). An existing file keeps its mode (e.g. a ``stackcue`` group set up by the admin).

Schema (``PRAGMA user_version`` = index into ``MIGRATIONS``; version 2):

* ``sessions``: ``id`` (the daemon's session id), ``runner``, ``started_epoch``, ``clock_synchronised``,
  ``source``/``calibration``/``config``/``summary`` (JSON), ``ended_epoch``, ``ended_how`` (``'clean'``,
  ``'unclean'``, NULL while running or after a crash until ``mark_unclean_sessions``), ``notes``.
* ``strides``: ``session``, ``t_start``, ``t_end``, ``cadence_spm``, ``pelvic_tilt_deg``, ``trunk_lean_deg``,
  ``stack_deg``, ``steady`` (0/1) and the whole stride ``event`` as JSON.
* ``alerts``: ``session``, ``alert_id``, ``t``, ``kind``, ``payload`` (JSON), ``delivered`` (0/1),
  ``delivered_at`` (epoch s), ``queued`` (0/1: handed to the MQTT outbox). Unique on (session, alert_id): the
  logbook sink and the MQTT outbox write the same row, whichever comes first.
* ``raw_chunks``: ``session``, ``t0``, ``t1``, ``n``, ``trunk`` (0/1), ``data``: see ``codec.encode_chunk``.
* ``events`` (v2): ``session``, ``t``, ``type``, ``event`` (JSON): every event that is not a stride, an alert
  or the session start (calibration, clear, gap, reference, calibration_suspect, guide, sensor, summary), and
  the writer's own ``logbook`` event (``state: 'incomplete'``, ``reason``, ``raw_dropped``, ``events_dropped``)
  when failed writes cost a session data: such a session ends ``'unclean'``, not ``'clean'``.
* v2 added to ``sessions``: ``duration_s`` (from the summary, or the newest data of an unclean session),
  ``distance_m`` (NULL: no source measures it yet), ``origin`` (``'live'``, ``'analyze'``, ``'import'``).

Times ``t*`` are on the source's clock (as in the events); ``*_epoch``/``delivered_at`` are wall-clock epoch s.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackcue.errors import LogbookError

BUSY_TIMEOUT_MS = 2000


def _migrate_0_to_1(c: sqlite3.Connection) -> None:
    c.execute("""CREATE TABLE sessions (
        id TEXT PRIMARY KEY, runner TEXT, started_epoch REAL, clock_synchronised TEXT,
        source TEXT, calibration TEXT, config TEXT, ended_epoch REAL,
        ended_how TEXT CHECK (ended_how IN ('clean', 'unclean')), summary TEXT, notes TEXT)""")
    c.execute("""CREATE TABLE strides (
        session TEXT NOT NULL, t_start REAL NOT NULL, t_end REAL NOT NULL, cadence_spm REAL,
        pelvic_tilt_deg REAL, trunk_lean_deg REAL, stack_deg REAL, steady INTEGER, event TEXT NOT NULL)""")
    c.execute("CREATE INDEX strides_session ON strides (session, t_start)")
    c.execute("""CREATE TABLE alerts (
        session TEXT NOT NULL, alert_id INTEGER NOT NULL, t REAL, kind TEXT, payload TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0, delivered_at REAL, queued INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session, alert_id))""")
    c.execute("CREATE INDEX alerts_pending ON alerts (queued, delivered)")
    c.execute("""CREATE TABLE raw_chunks (
        session TEXT NOT NULL, t0 REAL NOT NULL, t1 REAL NOT NULL, n INTEGER NOT NULL,
        trunk INTEGER NOT NULL, data BLOB NOT NULL)""")
    c.execute("CREATE INDEX raw_chunks_session ON raw_chunks (session, t0)")


def _migrate_1_to_2(c: sqlite3.Connection) -> None:
    """Every other event (clear, gap, reference, summary, ...) kept, for reports; session duration and origin."""
    c.execute("""CREATE TABLE events (
        session TEXT NOT NULL, t REAL, type TEXT NOT NULL, event TEXT NOT NULL)""")
    c.execute("CREATE INDEX events_session ON events (session, t)")
    c.execute("ALTER TABLE sessions ADD COLUMN duration_s REAL")
    c.execute("ALTER TABLE sessions ADD COLUMN distance_m REAL")
    c.execute("ALTER TABLE sessions ADD COLUMN origin TEXT")
    c.execute("UPDATE sessions SET origin = 'live', duration_s = json_extract(summary, '$.duration_s')")
    # v1 kept the calibration and the summary on the session row only: make them events too
    c.execute(
        "INSERT INTO events (session, t, type, event) SELECT id, json_extract(calibration, '$.t'), "
        "'calibration', calibration FROM sessions WHERE calibration IS NOT NULL"
    )
    c.execute(
        "INSERT INTO events (session, t, type, event) SELECT id, json_extract(summary, '$.duration_s'), "
        "'summary', summary FROM sessions WHERE summary IS NOT NULL"
    )


#: MIGRATIONS[v] takes a file from schema version v to v + 1
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1, _migrate_1_to_2]
SCHEMA_VERSION = len(MIGRATIONS)


def explain(path: str | os.PathLike, exc: BaseException) -> str:
    """Why the logbook cannot be written, in words (SQLite says only "unable to open database file")."""
    p = Path(path)
    folder = next((d for d in (p.parent, *p.parent.parents) if d.exists()), None)
    try:
        if folder is not None:
            st = os.statvfs(folder)
            if st.f_flag & os.ST_RDONLY:
                return f"the file system holding {folder} is read-only ({exc})"
            if st.f_bavail == 0:
                return f"the disk holding {folder} is full ({exc})"
            if not os.access(folder if not p.exists() else p, os.W_OK):
                return f"no write permission on {p if p.exists() else folder} ({exc})"
    except OSError:
        pass
    return str(exc)


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def connect(path: str | os.PathLike, max_bytes: int | None = None) -> sqlite3.Connection:
    """A connection with the logbook's settings (WAL, synchronous FULL, busy timeout), schema migrated.

    Autocommit mode (``isolation_level=None``): callers open their own ``BEGIN IMMEDIATE`` transactions.
    ``max_bytes`` caps the database size (``PRAGMA max_page_count``); beyond it writes fail like a full disk.
    A connection belongs to the thread that made it.
    """
    p = Path(path)
    _create_private(p)
    old = os.umask(0o077)
    try:
        conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            if max_bytes is not None:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(1, int(max_bytes) // page)}")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
    finally:
        os.umask(old)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
        if version > SCHEMA_VERSION:
            raise LogbookError(f"logbook schema version {version} is newer than this stackcue ({SCHEMA_VERSION})")
        for v in range(version, SCHEMA_VERSION):
            MIGRATIONS[v](conn)
            conn.execute(f"PRAGMA user_version={v + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def to_json(obj: Any) -> str | None:
    """A value for a JSON column: compact, and anything unusual (a Path, a numpy scalar) as its string."""
    return None if obj is None else json.dumps(obj, separators=(",", ":"), default=str)


def from_json(text: str | None) -> Any:
    """A JSON column's value (NULL stays None)."""
    return None if text is None else json.loads(text)
