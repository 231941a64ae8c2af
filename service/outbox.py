"""Durable stores of the alerts the MQTT publisher has not yet seen acknowledged (PUBACK).

Apart from the publisher so that a store can be chosen, tested and replaced alone: in memory (tests), a JSON
lines file (``[mqtt] outbox``), or the logbook's ``alerts`` table (``service.logbook.LogbookOutbox``). A record
is the alert payload as published plus private keys starting with ``_`` (the publisher's monotonic raise time
and boot id), keyed by (``session``, ``alert_id``).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol


class Outbox(Protocol):
    """Durable store of alerts not yet acknowledged by the broker (the logbook implements it in SQLite)."""

    def add(self, alert_payload: dict) -> None: ...  # before publishing

    def mark_delivered(self, session: str, alert_id: int) -> None: ...  # on PUBACK

    def pending(self) -> list[dict]: ...  # undelivered, oldest first


class MemoryOutbox:
    """Outbox in memory (tests; a daemon without durable storage)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, Any], dict] = {}
        self._lock = threading.Lock()

    def add(self, alert_payload: dict) -> None:
        with self._lock:
            self._items.setdefault((alert_payload["session"], alert_payload["alert_id"]), dict(alert_payload))

    def mark_delivered(self, session: str, alert_id: int) -> None:
        with self._lock:
            self._items.pop((session, alert_id), None)

    def pending(self) -> list[dict]:
        with self._lock:
            return [dict(p) for p in self._items.values()]


class JsonlOutbox:
    """Append-only JSON lines, fsync'd: ``{"add": payload}`` then ``{"delivered": [session, alert_id]}``.

    ``pending()`` replays the file. A torn last line (power lost mid-write) is skipped. On opening, a file
    whose alerts were all delivered is rewritten with only the pending ones (atomically: temp file, fsync,
    rename, fsync of the directory). The file is created readable by its owner only (health data).
    """

    def __init__(self, path: str | os.PathLike, compact: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if compact and self.path.exists():
            self._compact()

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def add(self, alert_payload: dict) -> None:
        self._append({"add": alert_payload})

    def mark_delivered(self, session: str, alert_id: int) -> None:
        self._append({"delivered": [session, alert_id]})

    def pending(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        items: dict[tuple[str, Any], dict] = {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # torn write
            if not isinstance(rec, dict):
                continue
            if isinstance(rec.get("add"), dict):
                p = rec["add"]
                items.setdefault((p.get("session"), p.get("alert_id")), p)
            elif isinstance(rec.get("delivered"), list) and len(rec["delivered"]) == 2:
                items.pop((rec["delivered"][0], rec["delivered"][1]), None)
        return list(items.values())

    def _compact(self) -> None:
        pend = self.pending()
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join((json.dumps({"add": p}, separators=(",", ":")) + "\n").encode() for p in pend))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
