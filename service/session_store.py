"""Recordings into the logbook (``analyze --save``, ``import``) and sessions back out (``analyze --session``).

An analysed recording becomes a session like a live one, written by the same ``LogbookSink`` (one writer,
one format): the session row, every event and the raw samples, so it can be re-analysed, reported and
exported later. Its start time comes from the recording's ``started_utc`` metadata (``stackcue record``
writes it), else the file's modification time minus its length; its id is that time plus a hash of the
file's path and size, so importing the same file twice is refused instead of stored twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from stackcue.dsp.calibration import Calibration
from stackcue.errors import StackcueError

from .analyze import analyze_file, run_pipeline
from .config import Config
from .logbook import Logbook, LogbookError, LogbookSink

#: flush the writer after this many queued samples, so a fast analysis never holds a whole file in memory
FLUSH_SAMPLES = 200_000


def open_logbook(cfg: Config, override: str | None = None) -> Logbook:
    """The configured logbook, for the coach's commands; a one-line error when there is none."""
    path = override or cfg.logbook_path
    if path is None:
        raise StackcueError("no logbook: [logbook] path is empty in the configuration (give --logbook FILE)")
    if not Path(path).exists():
        raise StackcueError(f"logbook {path} does not exist yet (a `stackcue run` or `analyze --save` makes it)")
    try:
        return Logbook(path)
    except (LogbookError, OSError) as exc:
        raise StackcueError(f"logbook {path}: {exc}") from None
    except Exception as exc:  # sqlite3.DatabaseError: not a database, locked
        raise StackcueError(f"logbook {path}: cannot open ({exc})") from None


def find_session(book: Logbook, session: str) -> dict:
    """A session by id, unique id prefix or ``latest``; a one-line error naming the logbook otherwise."""
    try:
        found = book.session(session)
    except LogbookError as exc:
        raise StackcueError(f"{exc} (in {book.path})") from None
    if found is None:
        raise StackcueError(f"no session {session!r} in {book.path} (`stackcue sessions` lists them)")
    return found


def _started(meta: dict[str, str], path: Path, duration_s: float) -> tuple[float, str]:
    text = meta.get("started_utc")
    if text:
        try:
            when = dt.datetime.fromisoformat(text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp(), meta.get("clock_synchronised", "unknown")
        except ValueError:
            pass
    return path.stat().st_mtime - duration_s, "file time"


def _last_t(p: Path) -> float:
    """The recording's last time stamp, from its tail (the file's mtime is when it ended)."""
    try:
        with open(p, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 4096))
            for line in reversed(fh.read().splitlines()):
                try:
                    return max(0.0, float(line.split(b",", 1)[0]))
                except ValueError:
                    continue
    except OSError:
        pass
    return 0.0


def store_recording(path: str | Path, cfg: Config, *, origin: str = "analyze", jsonl: bool = False,
                    out: IO[str] | None = None, err: IO[str] | None = None, strict: bool = False,
                    calibration: Calibration | None = None, progress: bool | None = None,
                    logbook: str | None = None) -> tuple[str, list[dict]]:
    """Analyse ``path`` and store it as a session; returns (session id, events).

    The analysis streams into the logbook as it goes (the writer thread batches it); a write failure (full
    disk, read-only file system) is a one-line error after the analysis, which is still printed.
    """
    p = Path(path)
    book_path = logbook or cfg.logbook_path
    if book_path is None:
        raise StackcueError("--save needs a logbook: [logbook] path is empty in the configuration")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise StackcueError(f"{p}: cannot read ({exc.strerror})") from None
    digest = hashlib.sha1(f"{p.resolve()}|{size}".encode()).hexdigest()[:6]
    box: dict = {"queued": 0}

    def on_open(meta: dict[str, str]) -> None:  # the start time needs the recording's metadata
        box["sid"], box["sink"] = _open_sink(book_path, cfg, meta, p, digest, origin)

    def on_block(block) -> None:
        box["sink"].add_block(block)
        box["queued"] += len(block)
        if box["queued"] >= FLUSH_SAMPLES:
            box["sink"].flush(30.0)
            box["queued"] = 0

    try:
        events = analyze_file(p, cfg, jsonl=jsonl, out=out, err=err, strict=strict, calibration=calibration,
                              progress=progress, on_event=lambda e: box["sink"].handle(e), on_block=on_block,
                              on_open=on_open)
    finally:
        if "sink" in box:
            box["sink"].close()
    sink = box["sink"]
    if sink.errors or sink.raw_dropped or sink.events_dropped:
        raise StackcueError(f"{p}: analysed, but the logbook write failed: {sink.status}")
    return box["sid"], events


def _open_sink(book_path: str, cfg: Config, meta: dict[str, str], p: Path, digest: str,
               origin: str) -> tuple[str, LogbookSink]:
    started, how = _started(meta, p, _last_t(p))
    sid = f"{dt.datetime.fromtimestamp(started, dt.UTC):%Y%m%dT%H%M%SZ}-{digest}"
    with Logbook(book_path) as book:
        if book.session(sid) is not None:
            raise StackcueError(f"{p} is already in {book_path} as session {sid} "
                                f"(to store it again, first: stackcue sessions --delete {sid} --yes)")
    sink = LogbookSink(book_path, config=cfg.data)
    sink.handle({"type": "session", "t": 0.0, "state": "started", "session": sid,
                 "runner": meta.get("runner") or cfg.runner_id, "started_epoch": round(started, 3),
                 "clock_synchronised": how, "origin": origin,
                 "source": {"kind": "file", "path": str(p.resolve()), **meta}})
    return sid, sink


def analyze_session(book: Logbook, session: str, cfg: Config, *, jsonl: bool, out: IO[str] | None = None,
                    calibration: Calibration | None = None,
                    on_event: Callable[[dict], None] | None = None) -> list[dict]:
    """Re-run the pipeline over a stored session's raw samples (other settings, a saved calibration)."""
    from .report_text import human_summary

    s = find_session(book, session)
    if not book.has_raw(s["id"]):
        raise StackcueError(f"session {s['id']} has no raw samples in {book.path} ([logbook] raw was off)")
    events = run_pipeline(book.raw_blocks(s["id"]), cfg, jsonl=jsonl, out=out, calibration=calibration,
                          on_event=on_event)
    if not jsonl:
        meta = {k: str(v) for k, v in (s.get("source") or {}).items() if k in ("rate", "runner", "sensor")}
        (out or sys.stdout).write(human_summary(events, f"session {s['id']}", meta) + "\n")
    return events
