"""What the Pi remembers of the hub (docs/sync.md): acknowledged sessions, deletions to send, targets and notes.

Acknowledgements and deletions are tables of the logbook (schema v4, ``logbook/schema.py`` says why); the
targets and the coach's notes the hub sent back are a JSON file beside the logbook (``<logbook stem>.hub.json``,
mode 0600, replaced whole), read by the daemon when a session starts.

A session is sent again when its ``fingerprint`` changed since the hub acknowledged it: the session row with its
notes and the number of rows of each table (cheap, no part is built); the manifest then tells which parts differ
(usually only ``notes``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from stackcue.errors import StorageError

from ..hub.parts import SESSION_COLUMNS, canonical, wire_value


def fingerprint(conn: sqlite3.Connection, sid: str) -> str | None:
    """A digest of what would be sent of session ``sid`` (None: no such session)."""
    cols = ", ".join(SESSION_COLUMNS)
    row = conn.execute(f"SELECT {cols}, notes FROM sessions WHERE id = ?", (sid,)).fetchone()
    if row is None:
        return None
    counts = [
        conn.execute(f"SELECT count(*), max(rowid) FROM {t} WHERE session = ?", (sid,)).fetchone()
        for t in ("strides", "alerts", "events", "raw_chunks")
    ]
    return hashlib.sha256(canonical([[wire_value(v) for v in row], [list(c) for c in counts]])).hexdigest()


def acked(conn: sqlite3.Connection, hub: str) -> dict[str, str]:
    """session id -> the fingerprint the hub acknowledged."""
    return dict(conn.execute("SELECT session, fingerprint FROM sync_acked WHERE hub = ?", (hub,)))


def record_ack(conn: sqlite3.Connection, hub: str, sid: str, fp: str, manifest_sha256: str) -> None:
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR REPLACE INTO sync_acked (hub, session, fingerprint, manifest_sha256, acked_epoch) "
            "VALUES (?, ?, ?, ?, ?)",
            (hub, sid, fp, manifest_sha256, time.time()),
        )


def hubs_holding(conn: sqlite3.Connection, sids: list[str]) -> set[str]:
    """The hubs that acknowledged any of these sessions."""
    out: set[str] = set()
    for i in range(0, len(sids), 500):
        chunk = sids[i : i + 500]
        q = f"SELECT DISTINCT hub FROM sync_acked WHERE session IN ({', '.join('?' * len(chunk))})"
        out |= {r[0] for r in conn.execute(q, chunk)}
    return out


def queue_runner_deletion(conn: sqlite3.Connection, runner: str, hubs: set[str], sids: list[str]) -> None:
    """Queue "delete every session of ``runner``" for each hub, and forget their acknowledgements, in one
    transaction: called before the rows themselves are deleted, so the hub's deletion is never lost."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for hub in sorted(hubs):
            if conn.execute(
                "SELECT 1 FROM sync_deletions WHERE hub = ? AND runner = ? AND session IS NULL", (hub, runner)
            ).fetchone():
                continue
            conn.execute(
                "INSERT INTO sync_deletions (hub, runner, session, queued_epoch) VALUES (?, ?, NULL, ?)",
                (hub, runner, time.time()),
            )
        for i in range(0, len(sids), 500):
            chunk = sids[i : i + 500]
            conn.execute(f"DELETE FROM sync_acked WHERE session IN ({', '.join('?' * len(chunk))})", chunk)


def queue_session_deletion(conn: sqlite3.Connection, runner: str, hubs: set[str], sid: str) -> None:
    """Queue "delete session ``sid``" for each hub and forget its acknowledgement, in one transaction, before
    the session's rows go (as ``queue_runner_deletion`` for a whole runner)."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for hub in sorted(hubs):
            if not conn.execute(
                "SELECT 1 FROM sync_deletions WHERE hub = ? AND runner = ? AND (session IS NULL OR session = ?)",
                (hub, runner, sid),
            ).fetchone():
                conn.execute(
                    "INSERT INTO sync_deletions (hub, runner, session, queued_epoch) VALUES (?, ?, ?, ?)",
                    (hub, runner, sid, time.time()),
                )
        conn.execute("DELETE FROM sync_acked WHERE session = ?", (sid,))


def pending_deletions(conn: sqlite3.Connection, hub: str) -> list[tuple[int, str, str | None]]:
    """(rowid, runner, session or None for all of the runner's) queued for ``hub``, oldest first."""
    return list(conn.execute("SELECT rowid, runner, session FROM sync_deletions WHERE hub = ? ORDER BY rowid", (hub,)))


def drop_deletion(conn: sqlite3.Connection, rowid: int) -> None:
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM sync_deletions WHERE rowid = ?", (rowid,))


# ------------------------------------------------------------------ targets and coach notes, beside the logbook
def hub_file(logbook_path: str | os.PathLike) -> Path:
    """``/var/lib/stackcue/logbook.sqlite`` -> ``/var/lib/stackcue/logbook.hub.json``."""
    p = Path(logbook_path).expanduser()
    return p.with_name(p.stem + ".hub.json")


def load_hub_file(path: Path) -> dict[str, Any] | None:
    """The stored targets and notes, or None when there is no file (or it is damaged: then one line says so
    through the caller, which treats it as none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"{path}: cannot read the hub's targets and notes ({exc})") from None
    if not isinstance(data, dict):
        raise StorageError(f"{path}: not the hub's targets and notes (a JSON object)")
    return data


def save_hub_file(path: Path, data: dict[str, Any]) -> None:
    """Written whole or not at all (a temporary file renamed over it), owner-only: coach's notes are personal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hub-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"{path}: cannot write the hub's targets and notes ({exc.strerror})") from None
