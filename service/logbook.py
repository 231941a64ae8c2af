"""The session logbook: every run in one SQLite file (DESIGN.md, "Storage").

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
* ``raw_chunks``: ``session``, ``t0``, ``t1``, ``n``, ``trunk`` (0/1), ``data``: see ``encode_chunk``.
* ``events`` (v2): ``session``, ``t``, ``type``, ``event`` (JSON): every event that is not a stride, an alert
  or the session start (calibration, clear, gap, reference, calibration_suspect, guide, sensor, summary).
* v2 added to ``sessions``: ``duration_s`` (from the summary, or the newest data of an unclean session),
  ``distance_m`` (NULL: no source measures it yet), ``origin`` (``'live'``, ``'analyze'``, ``'import'``).

Times ``t*`` are on the source's clock (as in the events); ``*_epoch``/``delivered_at`` are wall-clock epoch s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stackcue.errors import LogbookError
from stackcue.firmware_bridge.block import Block

log = logging.getLogger("stackcue.logbook")

FLUSH_S = 1.0  # the live writer commits at least this often
BUSY_TIMEOUT_MS = 2000


# ---------------------------------------------------------------------------------------------- raw samples

def encode_chunk(t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, trunk_acc: np.ndarray | None = None,
                 trunk_gyr: np.ndarray | None = None, trunk_valid: np.ndarray | None = None) -> bytes:
    """Raw samples as the ``raw_chunks.data`` blob (layout 1).

    zlib of, in this order and little-endian: ``t`` as float64 (n); then each sensor column as float32 (n each,
    column after column): acc x, y, z (m/s²), gyr x, y, z (rad/s), and with a trunk also trunk_acc x, y, z,
    trunk_gyr x, y, z and trunk_valid (1.0/0.0; trunk values are NaN where invalid). The float32 columns are
    byte-shuffled before compression (all first bytes, then all second bytes, ...: the slowly changing sign
    and exponent bytes then compress well).

    Why float32 for the sensor columns: the MPU-6050's ADC gives 16 bits and float32 keeps 24, so nothing
    measured is lost and the size halves. Why float64 for ``t``: float32 seconds lose sub-millisecond
    resolution after about an hour (at 3600 s its step is 0.24 ms; at 10 h, 2 ms of a 5 ms sample period).
    """
    n = len(t)
    cols = [acc, gyr] if trunk_acc is None else [acc, gyr, trunk_acc, trunk_gyr,
                                                 np.asarray(trunk_valid, dtype=float).reshape(n, 1)]
    mat = np.ascontiguousarray(np.hstack([np.asarray(c, dtype="<f4").reshape(n, -1) for c in cols]).T)
    shuffled = mat.view(np.uint8).reshape(-1, 4).T.tobytes()
    return zlib.compress(np.asarray(t, dtype="<f8").tobytes() + shuffled, 6)


def decode_chunk(data: bytes, n: int, trunk: bool) -> dict[str, np.ndarray]:
    """The inverse of ``encode_chunk``: ``t``, ``acc``, ``gyr`` and with a trunk ``trunk_acc``, ``trunk_gyr``,
    ``trunk_valid`` (bool); sensor values as float32."""
    raw = zlib.decompress(data)
    t = np.frombuffer(raw[: 8 * n], dtype="<f8")
    k = 13 if trunk else 6
    planes = np.frombuffer(raw[8 * n:], dtype=np.uint8).reshape(4, k * n)
    mat = np.ascontiguousarray(planes.T).view("<f4").reshape(k, n).T
    out = {"t": t, "acc": mat[:, 0:3], "gyr": mat[:, 3:6]}
    if trunk:
        out.update(trunk_acc=mat[:, 6:9], trunk_gyr=mat[:, 9:12], trunk_valid=mat[:, 12] > 0.5)
    return out


# ---------------------------------------------------------------------------------------------- schema

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
    c.execute("INSERT INTO events (session, t, type, event) SELECT id, json_extract(calibration, '$.t'), "
              "'calibration', calibration FROM sessions WHERE calibration IS NOT NULL")
    c.execute("INSERT INTO events (session, t, type, event) SELECT id, json_extract(summary, '$.duration_s'), "
              "'summary', summary FROM sessions WHERE summary IS NOT NULL")


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


def _json(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, separators=(",", ":"), default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# ---------------------------------------------------------------------------------------------- the logbook

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
                    "UNION ALL SELECT max(t) FROM alerts WHERE session = ?1)", (sid,)).fetchone()[0]
                self.conn.execute("UPDATE sessions SET ended_how = 'unclean', duration_s = ?, "
                                  "ended_epoch = coalesce(ended_epoch, started_epoch + ?) WHERE id = ?",
                                  (last, last or 0.0, sid))
        return len(ids)

    _SESSION_COLS = ("id, runner, started_epoch, clock_synchronised, source, calibration, config, ended_epoch, "
                     "ended_how, summary, notes, duration_s, distance_m, origin")

    @staticmethod
    def _session_row(r: tuple) -> dict:
        return {"id": r[0], "runner": r[1], "started_epoch": r[2], "clock_synchronised": r[3],
                "source": _loads(r[4]), "calibration": _loads(r[5]), "config": _loads(r[6]), "ended_epoch": r[7],
                "ended_how": r[8], "summary": _loads(r[9]), "notes": r[10], "duration_s": r[11],
                "distance_m": r[12], "origin": r[13]}

    def sessions(self, runner: str | None = None, since_epoch: float | None = None) -> list[dict]:
        """Sessions, oldest first; optionally of one runner and started at or after ``since_epoch``."""
        rows = self.conn.execute(
            f"SELECT {self._SESSION_COLS} FROM sessions WHERE (?1 IS NULL OR runner = ?1) "
            "AND (?2 IS NULL OR started_epoch >= ?2) ORDER BY started_epoch, id", (runner, since_epoch))
        return [self._session_row(r) for r in rows]

    def session(self, session_id: str) -> dict | None:
        """One session by its id, a unique prefix of it, or ``latest``; None when nothing matches.

        An ambiguous prefix raises ``LogbookError`` naming the candidates.
        """
        if session_id == "latest":
            r = self.conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions ORDER BY started_epoch DESC, "
                                  "rowid DESC LIMIT 1").fetchone()
            return None if r is None else self._session_row(r)
        r = self.conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if r is not None:
            return self._session_row(r)
        rows = self.conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions WHERE substr(id, 1, ?) = ? "
                                 "ORDER BY started_epoch LIMIT 6", (len(session_id), session_id)).fetchall()
        if len(rows) > 1:
            names = ", ".join(r[0] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise LogbookError(f"session {session_id!r} is ambiguous: {names}")
        return self._session_row(rows[0]) if rows else None

    def strides(self, session_id: str) -> list[dict]:
        """The stride events of a session, as they were emitted, in time order."""
        return [json.loads(r[0]) for r in self.conn.execute(
            "SELECT event FROM strides WHERE session = ? ORDER BY t_start, rowid", (session_id,))]

    def alerts(self, session_id: str) -> list[dict]:
        rows = self.conn.execute("SELECT alert_id, t, kind, payload, delivered, delivered_at, queued FROM alerts "
                                 "WHERE session = ? ORDER BY alert_id", (session_id,))
        return [{"alert_id": r[0], "t": r[1], "kind": r[2], "payload": json.loads(r[3]), "delivered": bool(r[4]),
                 "delivered_at": r[5], "queued": bool(r[6])} for r in rows]

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
                "avg(CASE WHEN steady = 1 THEN stack_deg END) FROM strides GROUP BY session"):
            out[r[0]] = {"strides": r[1], "steady": r[2] or 0, "cadence_spm": r[3], "pelvic_tilt_deg": r[4],
                         "trunk_lean_deg": r[5], "stack_deg": r[6], "alerts": 0}
        for sid, n in self.conn.execute("SELECT session, count(*) FROM alerts GROUP BY session"):
            out.setdefault(sid, {"strides": 0, "steady": 0, "cadence_spm": None, "pelvic_tilt_deg": None,
                                 "trunk_lean_deg": None, "stack_deg": None})["alerts"] = n
        return out

    def has_raw(self, session_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM raw_chunks WHERE session = ? LIMIT 1", (session_id,)).fetchone() \
            is not None

    def runners(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT runner FROM sessions ORDER BY runner")]

    def delete_session(self, session_id: str) -> None:
        """Everything of one session, in one transaction (the space is reused; ``vacuum`` returns it)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for table, col in (("raw_chunks", "session"), ("strides", "session"), ("alerts", "session"),
                               ("events", "session"), ("sessions", "id")):
                self.conn.execute(f"DELETE FROM {table} WHERE {col} = ?", (session_id,))

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
                yield Block(t, acc, gyr, c["trunk_acc"].astype(float), c["trunk_gyr"].astype(float),
                            np.asarray(c["trunk_valid"], dtype=bool))
            else:
                nan = np.full((len(t), 3), np.nan)
                yield Block(t, acc, gyr, nan, nan.copy(), np.zeros(len(t), dtype=bool))

    def raw_chunks(self, session_id: str) -> Iterator[dict[str, np.ndarray]]:
        """The raw samples of a session, chunk by chunk in time order (see ``decode_chunk``)."""
        rows = self.conn.execute("SELECT data, n, trunk FROM raw_chunks WHERE session = ? ORDER BY t0, rowid",
                                 (session_id,))
        for data, n, trunk in rows:
            yield decode_chunk(data, n, bool(trunk))


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
            (session, p.get("alert_id"), p.get("t"), p.get("kind"), _json({**p, "session": session})))

    def mark_delivered(self, session: str, alert_id: int) -> None:
        self._conn().execute("UPDATE alerts SET delivered = 1, delivered_at = ? WHERE session = ? AND alert_id = ? "
                             "AND delivered = 0", (time.time(), session, alert_id))

    def pending(self) -> list[dict]:
        rows = self._conn().execute("SELECT payload FROM alerts WHERE queued = 1 AND delivered = 0 ORDER BY rowid")
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# ---------------------------------------------------------------------------------------------- the live sink

class LogbookSink:
    """The daemon's logbook sink: events (``handle``) and raw samples (``add_block``) into SQLite.

    ``handle`` and ``add_block`` only queue (any thread, never blocking on I/O); a writer thread with its own
    connection writes the queue in one short transaction at least every ``flush_s`` and on ``close``. Raw blocks
    are gathered into one chunk per flush (split where a trunk appears or vanishes). A sqlite3 error (full disk,
    read-only file system, locked file) never reaches the caller: ``status`` says it in one line (also logged
    on ``stackcue.logbook``), events are kept for the next try (at most ``backlog_max``; the oldest strides go
    first), raw samples of the failed batch are dropped and counted in ``raw_dropped``.

    The session row is made by the ``session``/``started`` event, updated by ``calibration`` (the latest
    accepted one, or the latest refusal while none is accepted) and closed ``'clean'`` by ``summary`` or by
    ``close()``. Raw blocks take the session of the latest session event written (held until there is one).
    """

    name = "logbook"

    def __init__(self, path: str | os.PathLike, *, config: dict | None = None, flush_s: float = FLUSH_S,
                 max_bytes: int | None = None, backlog_max: int = 20000,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.config = config
        self.flush_s = flush_s
        self.max_bytes = max_bytes
        self.backlog_max = backlog_max
        self._wall = wall
        self.status = "starting"
        self.errors = 0
        self.raw_dropped = 0  # raw samples lost to write errors
        self.events_dropped = 0
        self.committed_t = None  # newest raw sample time committed (source clock)
        self.commits = 0  # transactions committed
        self._cycles = 0
        self._writing = False
        self.write_s = 0.0  # thread CPU time spent writing (encoding, inserts, commits)
        self._cond = threading.Condition()
        self._events: list[dict] = []
        self._blocks: list = []
        self._session: str | None = None
        self._ended = False
        self._calibrated = False
        self._stop = False
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="logbook-writer", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- any thread
    def handle(self, event: dict) -> None:
        with self._cond:
            self._events.append(event)
            if len(self._events) > self.backlog_max:
                self._drop_one_event()

    def add_block(self, block) -> None:
        if block is None or len(block) == 0:
            return
        with self._cond:
            self._blocks.append(block)

    def flush(self, timeout: float = 5.0) -> bool:
        """Write what is queued now; True once it is committed (tests, and before a report)."""
        with self._cond:
            target = self._cycles + (2 if self._writing else 1)  # a batch being written may predate the call
            self._kick = True
            self._cond.notify_all()
            deadline = time.monotonic() + timeout
            while self._cycles < target and time.monotonic() < deadline and self._thread.is_alive():
                self._cond.wait(0.05)
            return self._cycles >= target

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(10.0)

    # -------------------------------------------------------------- writer thread
    _kick = False

    def _set_status(self, text: str, level: int = logging.INFO) -> None:
        if text != self.status:
            log.log(level, "logbook: %s", text)
        self.status = text

    def _drop_one_event(self) -> None:
        for i, ev in enumerate(self._events):
            if ev.get("type") == "stride":
                del self._events[i]
                break
        else:
            del self._events[0]
        self.events_dropped += 1

    def _open(self) -> bool:
        try:
            self._conn = connect(self.path, self.max_bytes)
        except (sqlite3.Error, OSError, LogbookError) as exc:
            self.errors += 1
            self._set_status(f"cannot open logbook {self.path}: {explain(self.path, exc)}; retrying", logging.ERROR)
            return False
        self._set_status(f"writing to {self.path}")
        return True

    def _run(self) -> None:
        self._open()
        next_flush = time.monotonic() + self.flush_s
        while True:
            with self._cond:
                while not self._stop and not self._kick and time.monotonic() < next_flush:
                    self._cond.wait(max(0.0, next_flush - time.monotonic()))
                stop, self._kick = self._stop, False
                self._writing = True
                events, self._events = self._events, []
                blocks, self._blocks = self._blocks, []
            next_flush = time.monotonic() + self.flush_s
            self._write(events, blocks, final=stop)
            with self._cond:
                self._cycles += 1
                self._writing = False
                self._cond.notify_all()
            if stop:
                break
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        if not self.status.startswith(("cannot", "write failed")):
            self._set_status("closed")

    def _write(self, events: list[dict], blocks: list, final: bool) -> None:
        if not events and not blocks and not final:
            return
        t_cpu = time.thread_time()
        if self._conn is None and not self._open():  # tried again every flush (e.g. a card mounted late)
            self.raw_dropped += sum(len(b) for b in blocks)
            with self._cond:
                self._events[:0] = events
                while len(self._events) > self.backlog_max:
                    self._drop_one_event()
            return
        conn = self._conn
        assert conn is not None
        try:
            session_before, ended_before, calibrated_before = self._session, self._ended, self._calibrated
            conn.execute("BEGIN IMMEDIATE")
            try:
                for ev in events:
                    self._write_event(conn, ev)
                held = []
                if blocks and self._session is None:
                    held = blocks  # no session yet: keep the samples for the next batch
                elif blocks:
                    self._write_blocks(conn, blocks)
                if final and self._session is not None and not self._ended:
                    conn.execute("UPDATE sessions SET ended_how = 'clean', ended_epoch = ? "
                                 "WHERE id = ? AND ended_how IS NULL", (self._wall(), self._session))
                    self._ended = True
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException:
                self._session, self._ended, self._calibrated = session_before, ended_before, calibrated_before
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            if held:
                with self._cond:
                    self._blocks[:0] = held[-2000:]
            if blocks and not held:
                self.committed_t = float(blocks[-1].t[-1])
            if self.status != f"writing to {self.path}":
                self._set_status(f"writing to {self.path}")
        except sqlite3.Error as exc:
            self.errors += 1
            lost = sum(len(b) for b in blocks)
            self.raw_dropped += lost
            with self._cond:
                self._events[:0] = events
                while len(self._events) > self.backlog_max:
                    self._drop_one_event()
            self._set_status(f"write failed ({self.path}): {explain(self.path, exc)}; retrying, "
                             f"{self.raw_dropped} raw samples dropped", logging.ERROR)
        finally:
            self.write_s += time.thread_time() - t_cpu

    def _write_event(self, conn: sqlite3.Connection, ev: dict) -> None:
        et = ev.get("type")
        if et == "session" and ev.get("state") == "started":
            self._session = str(ev.get("session"))
            self._ended = False
            self._calibrated = False
            conn.execute("INSERT INTO sessions (id, runner, started_epoch, clock_synchronised, source, config, origin) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                         (self._session, ev.get("runner"), ev.get("started_epoch"), ev.get("clock_synchronised"),
                          _json(ev.get("source")), _json(self.config), ev.get("origin", "live")))
            return
        session = self._session
        if session is None:
            self.events_dropped += 1  # an event before any session: nothing to attach it to
            return
        if et == "stride":
            conn.execute("INSERT INTO strides (session, t_start, t_end, cadence_spm, pelvic_tilt_deg, "
                         "trunk_lean_deg, stack_deg, steady, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (session, ev.get("t_start"), ev.get("t_end"), ev.get("cadence_spm"),
                          ev.get("pelvic_tilt_deg"), ev.get("trunk_lean_deg"), ev.get("stack_deg"),
                          None if ev.get("steady") is None else int(bool(ev.get("steady"))), _json(ev)))
        elif et == "alert":
            conn.execute("INSERT INTO alerts (session, alert_id, t, kind, payload) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (session, alert_id) DO NOTHING",
                         (session, ev.get("id"), ev.get("t"), ev.get("kind"), _json(ev)))
        else:
            t = ev.get("t", ev.get("t_start", ev.get("duration_s")))
            conn.execute("INSERT INTO events (session, t, type, event) VALUES (?, ?, ?, ?)",
                         (session, t, str(et), _json(ev)))
            if et == "calibration" and (ev.get("ok") or not self._calibrated):
                self._calibrated = self._calibrated or bool(ev.get("ok"))
                conn.execute("UPDATE sessions SET calibration = ? WHERE id = ?", (_json(ev), session))
            elif et == "summary":
                conn.execute("UPDATE sessions SET summary = ?, ended_epoch = ?, ended_how = 'clean', duration_s = ? "
                             "WHERE id = ?", (_json(ev), self._wall(), ev.get("duration_s"), session))
                self._ended = True

    def _write_blocks(self, conn: sqlite3.Connection, blocks: list) -> None:
        run: list = []
        for b in blocks:
            if run and b.has_trunk != run[0].has_trunk:
                self._write_chunk(conn, run)
                run = []
            run.append(b)
        if run:
            self._write_chunk(conn, run)

    def _write_chunk(self, conn: sqlite3.Connection, blocks: list) -> None:
        trunk = blocks[0].has_trunk
        t = np.concatenate([b.t for b in blocks])
        acc = np.concatenate([b.acc for b in blocks])
        gyr = np.concatenate([b.gyr for b in blocks])
        if trunk:
            data = encode_chunk(t, acc, gyr, np.concatenate([b.trunk_acc for b in blocks]),
                                np.concatenate([b.trunk_gyr for b in blocks]),
                                np.concatenate([b.trunk_valid for b in blocks]))
        else:
            data = encode_chunk(t, acc, gyr)
        conn.execute("INSERT INTO raw_chunks (session, t0, t1, n, trunk, data) VALUES (?, ?, ?, ?, ?, ?)",
                     (self._session, float(t[0]), float(t[-1]), len(t), int(trunk), data))
