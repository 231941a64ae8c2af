"""Durable stores of the alerts the MQTT publisher has not yet seen acknowledged (PUBACK).

Apart from the publisher so that a store can be chosen, tested and replaced alone: in memory (tests), a JSON
lines file (``[mqtt] outbox``), or the logbook's ``alerts`` table (``service.logbook.LogbookOutbox``). A record
is the alert payload as published plus private keys starting with ``_`` (the publisher's monotonic raise time
and boot id), keyed by (``session``, ``alert_id``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from stackcue.errors import StorageError

from . import json_input
from .payloads import _is_num, _show

log = logging.getLogger("stackcue.mqtt")


def _number_or_none(v: Any) -> bool:
    return v is None or _is_num(v)


def record_problem(p: Any) -> str | None:
    """What in a stored alert record keeps it from being published (one line), or None when it can be.

    Checks what the publisher and the subscribers' de-duplication read: ``type`` ``"alert"`` (a stride must
    never go out as an alert), ``session`` a string, ``alert_id`` an integer or a string,
    ``raised_at``/``t``/``_raised_mono`` finite numbers (or null), ``kind``/``_boot_id``/``_runner`` strings
    when present.
    """
    if not isinstance(p, dict):
        return f"not a JSON object ({type(p).__name__})"
    if "type" in p and p["type"] != "alert":  # a stride must never go out on the alert topic (no type: older)
        return f"type {_show(p.get('type'))} is not 'alert'"
    if not isinstance(p.get("session"), str):
        return f"session {_show(p.get('session'))} is not a string"
    aid = p.get("alert_id")
    if isinstance(aid, bool) or not isinstance(aid, int | str):
        return f"alert_id {_show(aid)} is not an integer or a string"
    for key in ("raised_at", "t", "_raised_mono"):
        if not _number_or_none(p.get(key)):
            return f"{key} {_show(p.get(key))} is not a finite number"
    for key in ("kind", "_boot_id", "_runner"):
        if key in p and not isinstance(p[key], str):
            return f"{key} {_show(p[key])} is not a string"
    return None


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


def _append_synced(path: Path, data: bytes) -> None:
    """Append to an owner-only file and fsync: an alert or a set-aside line survives a power cut."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlOutbox:
    """Append-only JSON lines, fsync'd: ``{"add": payload}`` then ``{"delivered": [session, alert_id]}``.

    ``pending()`` replays the file. A line that cannot be read (a torn last line after a power cut, a record
    that could not be published: ``record_problem``) is set aside with a one-line warning: on opening it is
    appended to ``<path>.rejected`` (kept, never silently dropped) and left out of the rewritten file. On
    opening, the file is rewritten with only the pending alerts (atomically: temp file, fsync, rename, fsync
    of the directory). The file is created readable by its owner only (health data). A path that cannot be
    used (a folder, a folder that cannot be written) raises ``StorageError`` in one line naming it. Records
    end with LF; a CRLF end is read (JSON allows the CR), CR-only ends make the whole file one line that is
    set aside, with a warning that says so.
    """

    def __init__(self, path: str | os.PathLike, compact: bool = True) -> None:
        self.path = Path(path)
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        self._lock = threading.Lock()
        self._rejected: list[tuple[bytes, str]] = []  # (raw line, why) read by pending(), not yet set aside
        try:
            if self.path.is_dir():
                raise IsADirectoryError(21, "is a folder, not a file")
            if self.path.exists() and not self.path.is_file():  # a FIFO would block the read for ever
                raise OSError(0, "not a regular file (a FIFO or a device?)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Two daemons may share one outbox (docs/mqtt.md): appends and the rewrite at start-up hold an
            # exclusive flock on a side file, so a rewrite never drops what the other appended meanwhile.
            self._lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            if compact and self.path.exists():
                with self._locked():
                    self._compact()
            else:  # can we write here? (fails now, in one line, rather than at each alert)
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StorageError(f"mqtt outbox {self.path}: cannot be used ({exc.strerror or exc})") from None

    def __del__(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.close(self._lock_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._locked():
            _append_synced(self.path, line)

    def add(self, alert_payload: dict) -> None:
        self._append({"add": alert_payload})

    def mark_delivered(self, session: str, alert_id: int) -> None:
        self._append({"delivered": [session, alert_id]})

    def pending(self) -> list[dict]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        items: dict[tuple[str, Any], dict] = {}
        rejected: list[tuple[bytes, str]] = []
        # Records end at "\n" only (json.dumps never writes a raw newline); str.splitlines() would also cut at
        # \x1c-\x1e or U+2028 inside a hand-edited line. Bytes are kept as read, for the side file.
        for n, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                rec = json_input.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is a ValueError
                why = (
                    "holds CR-only line ends (records end with LF; CRLF is read)"
                    if b"\r" in line.rstrip(b"\r")
                    else "is not JSON in UTF-8 (a torn write?)"
                )
                rejected.append((line, f"line {n} {why}"))
                continue
            why = None
            if isinstance(rec, dict) and "add" in rec:
                why = record_problem(rec["add"])
                if why is None:
                    p = rec["add"]
                    items.setdefault((p["session"], p["alert_id"]), p)
            elif isinstance(rec, dict) and "delivered" in rec:
                d = rec["delivered"]
                if isinstance(d, list) and len(d) == 2 and record_problem({"session": d[0], "alert_id": d[1]}) is None:
                    items.pop((d[0], d[1]), None)
                else:
                    why = f"delivered {_show(d)} is not [session, alert_id]"
            else:
                why = "neither an added nor a delivered alert"
            if why is not None:
                rejected.append((line, f"line {n}: {why}"))
        for _, why in rejected:
            log.warning("mqtt outbox %s: %s; set aside in %s", self.path, why, self.rejected_path.name)
        self._rejected = rejected
        return list(items.values())

    def _set_aside(self) -> None:
        """Append the lines ``pending()`` could not use to the side file (before the file is rewritten)."""
        if not self._rejected:
            return
        _append_synced(self.rejected_path, b"".join(line + b"\n" for line, _ in self._rejected))
        self._rejected = []

    def _compact(self) -> None:
        pend = self.pending()
        self._set_aside()
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
