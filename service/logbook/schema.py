"""The logbook file: connection settings, tables and migrations (docs/logbook.md).

Durability: WAL journal with ``synchronous=FULL``, so a commit is on the disk (the WAL fsync'd) before it
returns and a power cut loses at most the batch not yet committed. The live writer (``LogbookSink``) commits at
least once a second, so a crash or a pulled battery loses at most about one second of the stream.

Privacy: the file is created mode 0600 (``os.open`` before SQLite sees it) and the process umask is 0o077 while
SQLite connects and switches to WAL, so the ``-wal``/``-shm`` files are owner-only too (SQLite also gives them
the database file's mode). An existing file that stackcue writes keeps its group bits (e.g. a ``stackcue``
group set up by the admin) but loses its world bits, with one warning line.

Only our own file: ``PRAGMA application_id`` is ``APPLICATION_ID`` in every file stackcue made or migrated;
an older stackcue's file (id 0, our tables only) is adopted and stamped; any other SQLite file, or a path that
is not a regular file (a link to /dev/null, a FIFO, a folder), is refused in one line before it is touched.
Readers (``connect(readonly=True)``) neither create, migrate (unless it is older and may be written) nor write.

Schema (``PRAGMA user_version`` = index into ``MIGRATIONS``; version 5):

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
* v3 added to ``sessions``: ``ended_reason``: ``'power lost'`` for a session closed ``'unclean'`` at the next
  start (no summary: the process died, ``mark_unclean_sessions``); NULL otherwise (an unclean session whose
  writes failed says why in its ``logbook`` event).

* v4 (``stackcue sync``, docs/sync.md): ``sync_acked`` (``hub``, ``session``, ``fingerprint`` of the session's
  rows and notes when sent, ``manifest_sha256``, ``acked_epoch``): what each hub acknowledged complete;
  ``sync_deletions`` (``hub``, ``runner``, ``session``: NULL for every session of the runner, ``queued_epoch``):
  deletions the hub has yet to hear of.

* v5 (issue 17, docs/cues.md): ``cue_plans`` (``session`` primary key, ``runner``, ``stage`` 1..3, ``fading``
  0/1, ``decided_epoch``, ``basis`` JSON: why, from which earlier sessions): the stage of faded feedback a
  session runs in, decided at its start, so its report and a later ``analyze --session`` use that stage.

``started_epoch`` is NULL (unknown) when the start was out of ``wallclock``'s range (a clock that was not set).

Times ``t*`` are on the source's clock (as in the events); ``*_epoch``/``delivered_at`` are wall-clock epoch s.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackcue.errors import LogbookError

log = logging.getLogger("stackcue.logbook")

BUSY_TIMEOUT_MS = 2000
#: ``PRAGMA application_id`` of a stackcue logbook ("StkC"): set when stackcue creates or migrates a file
APPLICATION_ID = 0x53746B43
_OUR_TABLES = frozenset(
    ("sessions", "strides", "alerts", "raw_chunks", "events", "sync_acked", "sync_deletions", "cue_plans")
)


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


def _migrate_2_to_3(c: sqlite3.Connection) -> None:
    """Why an unclean session ended: ``ended_reason`` ``'power lost'`` for a session closed at the next start.

    A column, not a third value of ``ended_how``: SQLite cannot alter that column's CHECK (the table would be
    rebuilt), and every reader that knows ``'clean'``/``'unclean'`` stays right. Sessions v2 marked unclean at
    the next start (no summary, no ``logbook`` event of failed writes) get the reason too."""
    c.execute("ALTER TABLE sessions ADD COLUMN ended_reason TEXT")
    c.execute(
        "UPDATE sessions SET ended_reason = 'power lost' WHERE ended_how = 'unclean' AND summary IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM events WHERE events.session = sessions.id AND events.type = 'logbook')"
    )


def _migrate_3_to_4(c: sqlite3.Connection) -> None:
    """What the coach's hub acknowledged, and the deletions it has yet to hear of (service/sync/, docs/sync.md).

    In the logbook, not a file beside it: ``runner delete`` queues the hub's deletion in the same file (and
    before) it deletes the rows, so a crash between the two never loses it; a copy of the logbook carries what
    was sent with it; and it is private (0600) and durable (WAL, synchronous=FULL) like the data it is about."""
    c.execute("""CREATE TABLE sync_acked (
        hub TEXT NOT NULL, session TEXT NOT NULL, fingerprint TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
        acked_epoch REAL NOT NULL, PRIMARY KEY (hub, session))""")
    c.execute("""CREATE TABLE sync_deletions (
        hub TEXT NOT NULL, runner TEXT NOT NULL, session TEXT, queued_epoch REAL NOT NULL)""")


def _migrate_4_to_5(c: sqlite3.Connection) -> None:
    """The stage of faded feedback each session runs in (``dsp.fading``), decided at its start from the runner's
    earlier sessions. A table of its own, not a ``sessions`` column: the row is written by the daemon before the
    session's own writer makes the session row, and the hub's copy of ``sessions`` keeps its columns (the
    stage reaches the hub in the summary's ``cues``). Sessions before v5 have none: they ran at stage 1."""
    c.execute("""CREATE TABLE cue_plans (
        session TEXT PRIMARY KEY, runner TEXT, stage INTEGER NOT NULL CHECK (stage BETWEEN 1 AND 3),
        fading INTEGER NOT NULL CHECK (fading IN (0, 1)), decided_epoch REAL, basis TEXT)""")


#: MIGRATIONS[v] takes a file from schema version v to v + 1
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
]
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


def _create_private(path: Path) -> bool:
    """The file made mode 0600 before SQLite sees it; True when it was made now."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def _check_regular(p: Path) -> None:
    """A device, FIFO or folder (or a link to one, e.g. to /dev/null) refused before SQLite opens it: SQLite
    would put a ``-journal`` beside its target (``/dev/null-journal``) and fail with "cannot rollback"."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise LogbookError(f"{p} is a link to {os.readlink(p)}, which does not exist") from None
        return
    if not stat.S_ISREG(st.st_mode):
        raise LogbookError(f"{p} is not a regular file")


def _check_ours(conn: sqlite3.Connection, p: Path) -> int:
    """The file's schema version when it is a stackcue logbook (or an empty file to make one); else refused.

    Ours: our ``application_id``; or (made by a stackcue before it set one) id 0, a known schema version and
    only our tables; or id 0, version 0 and no tables at all (new). Anything else is another application's
    database, which must never be migrated into a logbook (nor switched to WAL)."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]  # not SQLite at all: "file is not a database"
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("sqlite_")
    }
    if app == APPLICATION_ID:
        return version
    if app == 0 and version == 0 and not tables:
        return 0
    if app == 0 and 1 <= version <= SCHEMA_VERSION and "sessions" in tables and tables <= _OUR_TABLES:
        return version
    raise LogbookError(f"{p} is not a stackcue logbook")


def _no_world_access(p: Path) -> None:
    """A logbook stackcue writes is not readable by every user: the world bits of the file and its ``-wal``/
    ``-shm`` are removed, with one line; the group's bits are kept (an admin's ``stackcue`` group)."""
    for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")):
        try:
            mode = stat.S_IMODE(os.stat(f).st_mode)
            if mode & 0o007:
                os.chmod(f, mode & ~0o007)
                if f == p:
                    log.warning(
                        "logbook %s was readable by every user (mode %04o): now %04o (personal data; the group "
                        "keeps its access)",
                        p,
                        mode,
                        mode & ~0o007,
                    )
        except FileNotFoundError:
            continue
        except OSError as exc:  # not the file's owner: say so, and write anyway (a read-only one fails next)
            if exc.errno == errno.EROFS:
                return
            log.warning("logbook %s: cannot remove the other users' access to %s (%s)", p, f, exc)


def connect(path: str | os.PathLike, max_bytes: int | None = None, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the logbook's settings (WAL, synchronous FULL, busy timeout), schema migrated.

    Autocommit mode (``isolation_level=None``): callers open their own ``BEGIN IMMEDIATE`` transactions.
    ``max_bytes`` caps the database size (``PRAGMA max_page_count``); beyond it writes fail like a full disk.
    ``readonly``: for the coach's reading commands (``connect_readonly``): nothing created, migrated or written.
    A connection belongs to the thread that made it. Another application's SQLite file, or a path that is not
    a regular file, is refused (``LogbookError``) before anything is written to it.
    """
    p = Path(path)
    _check_regular(p)
    if readonly:
        return connect_readonly(p)
    _create_private(p)
    old = os.umask(0o077)
    try:
        conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _check_ours(conn, p)
            _no_world_access(p)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            if max_bytes is not None:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(1, int(max_bytes) // page)}")
            _migrate(conn, p)
        except BaseException:
            conn.close()
            raise
    finally:
        os.umask(old)
    return conn


def connect_readonly(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection that reads the logbook and never writes it, nor makes a file beside it.

    A logbook with its ``-wal`` and ``-shm`` (a writer has it open, or died) is read with SQLite's ``mode=ro``,
    which sees what the ``-wal`` holds and makes no file. One without (closed cleanly: everything is in the
    file) is read ``immutable=1``: ``mode=ro`` would make the ``-wal``/``-shm`` (owned by the reader: a daemon
    of another user could then not write them) and fails on a read-only file system. A writer starting while
    it reads writes to its own ``-wal``, which this reader does not see. A ``-wal`` without a ``-shm`` needs
    ``mode=ro`` to make the ``-shm``: on a read-only file system that is refused in words. A logbook of an
    older schema is migrated first when it can be written, else refused in one line (the queries need the
    new columns).
    """
    p = Path(path)
    _check_regular(p)
    if not p.exists():
        raise LogbookError(f"no logbook at {p}")
    wal, shm = Path(f"{p}-wal"), Path(f"{p}-shm")
    has_wal = wal.exists() and wal.stat().st_size > 0
    query = "mode=ro" if has_wal or shm.exists() else "immutable=1"
    conn = sqlite3.connect(
        f"{p.absolute().as_uri()}?{query}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            version = _check_ours(conn, p)
        except sqlite3.OperationalError as exc:
            if has_wal and not shm.exists():
                raise LogbookError(
                    f"cannot read {p}: its -wal file holds data not yet in the file, and reading it needs a "
                    f"-shm file beside it: {explain(p, exc)}"
                ) from None
            raise
    except BaseException:
        conn.close()
        raise
    if version == SCHEMA_VERSION:
        return conn
    conn.close()
    if version > SCHEMA_VERSION:
        raise LogbookError(f"logbook schema version {version} is newer than this stackcue ({SCHEMA_VERSION})")
    if version == 0:
        raise LogbookError(f"no logbook at {p} (the file is empty)")
    try:
        connect(p).close()  # an older stackcue's logbook: migrated once, by whoever may write it
    except (sqlite3.Error, OSError) as exc:
        raise LogbookError(
            f"{p} has schema version {version}, older than this stackcue's ({SCHEMA_VERSION}), and cannot be "
            f"migrated: {explain(p, exc)} (open it once where it can be written)"
        ) from None
    log.info("logbook %s: schema migrated from version %d to %d", p, version, SCHEMA_VERSION)
    return connect_readonly(p)


def _migrate(conn: sqlite3.Connection, p: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION and conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _check_ours(conn, p)  # another process may have migrated (or written) it meanwhile
        if version > SCHEMA_VERSION:
            raise LogbookError(f"logbook schema version {version} is newer than this stackcue ({SCHEMA_VERSION})")
        for v in range(version, SCHEMA_VERSION):
            MIGRATIONS[v](conn)
            conn.execute(f"PRAGMA user_version={v + 1}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
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
