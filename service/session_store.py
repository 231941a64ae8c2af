"""Recordings into the logbook (``analyze --save``, ``import``) and sessions back out (``analyze --session``).

An analysed recording is a session like a live one, driven by the same ``Session`` and written by the same
``LogbookSink`` (one writer, one format): the session row, every event and the raw samples, so it can be
re-analysed, reported and exported later. Its start time comes from the recording's ``started_utc``
metadata (``stackcue record`` writes it), else the file's modification time minus its length (an invalid
``started_utc`` says so in one warning line). The recording's identity is a SHA-256 digest of its bytes, kept
in the session's ``source`` JSON (``sha256``); its id (``session.new_session_id``) is the start time plus a
hash of that digest. So the same content is stored once whatever its name, time or link: touched, copied or
hard-linked, a second store is refused. A session stored before the digest existed is found by the old id
(start time, path and size) as well.

The session row is claimed before anything is analysed, in one transaction (``Logbook.claim_session``), so of
two stores of one file running at once exactly one stores it and the other is refused. A store that fails (a
refused calibration, Ctrl-C, a bad file) deletes what it wrote, so a retry works; one killed outright stays
unfinished until a daemon start marks it unclean, and a retry then replaces it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from stackcue.dsp.calibration import Calibration
from stackcue.dsp.cue_policy import CuePlan
from stackcue.errors import ConfigError, InputError, LogbookError, StorageError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.replay import ReplaySource

from .analyze import Control, analyze_recording, run_pipeline
from .config import Config
from .logbook import Logbook, LogbookSink, explain
from .report_text import human_summary
from .session import new_session_id
from .wallclock import known_start

#: flush the writer after this many queued samples, so a fast analysis never holds a whole file in memory; each
#: flush is one stored chunk, encoded while the analysis goes on: 200 000 took `import` of 60 minutes to 219 MB
#: peak RSS, 50 000 to 145 MB (115 MB with 20 000-row blocks), for a database 0.4 % bigger (issue 18)
FLUSH_SAMPLES = 50_000
#: the digest reads the recording in pieces this big (never the whole file in memory)
DIGEST_CHUNK = 1 << 20


def open_logbook(cfg: Config, override: str | None = None, readonly: bool = True) -> Logbook:
    """The configured logbook, for the coach's commands; a one-line error when there is none.

    Read-only unless ``readonly=False`` (commands that write: note, delete): nothing made or written."""
    path = override or cfg.logbook_path
    if path is None:
        raise ConfigError("no logbook: [logbook] path is empty in the configuration (give --logbook FILE)")
    if not Path(path).exists():
        raise StorageError(f"logbook {path} does not exist yet (a `stackcue run` or `analyze --save` makes it)")
    try:
        return Logbook(path, readonly=readonly)
    except (LogbookError, OSError) as exc:
        raise StorageError(f"logbook {path}: {exc}") from None
    except Exception as exc:  # sqlite3.DatabaseError: not a database, locked
        raise StorageError(f"logbook {path}: cannot open ({exc})") from None


def find_session(book: Logbook, session: str) -> dict:
    """A session by id, unique id prefix or ``latest``; a one-line error naming the logbook otherwise."""
    try:
        found = book.session(session)
    except LogbookError as exc:
        raise InputError(f"{exc} (in {book.path})") from None
    if found is None:
        raise InputError(f"no session {session!r} in {book.path} (`stackcue sessions` lists them)")
    return found


def _started(meta: dict[str, str], path: Path, duration_s: float, err: IO[str] | None = None) -> tuple[float, str]:
    """The recording's start: its ``started_utc``, else (with a warning when that is invalid) the file's time."""
    text = meta.get("started_utc")
    if text:
        try:
            when = dt.datetime.fromisoformat(text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp(), meta.get("clock_synchronised", "unknown")
        except ValueError:
            (err or sys.stderr).write(
                f"warning: {path}: started_utc={text!r} is not a date and time; "
                "the session starts at the file's modification time instead\n"
            )
    return path.stat().st_mtime - duration_s, "file time"


def content_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, read in pieces: the recording's identity, whatever its name or time."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while piece := fh.read(DIGEST_CHUNK):
                h.update(piece)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return h.hexdigest()


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


class _Unclosed:
    """The logbook writer as the session's event sink, closed by ``store_recording`` (which knows whether the
    store succeeded) rather than by the session."""

    name = "logbook"

    def __init__(self, sink: LogbookSink) -> None:
        self.sink = sink

    def handle(self, event: dict) -> None:
        self.sink.handle(event)

    def close(self) -> None:
        pass


def _same_content(book: Logbook, digest: str, old_id: str) -> list[str]:
    """Ids of the sessions holding this content, oldest first: its digest in ``source``, or the old-scheme id.

    A substring search then a check of the parsed JSON: a damaged ``source`` is no match and no error."""
    rows = book.conn.execute(
        "SELECT id, source FROM sessions WHERE id = ? OR instr(source, ?) > 0 ORDER BY rowid", (old_id, digest)
    ).fetchall()
    found = []
    for sid, source in rows:
        try:
            kept = json.loads(source).get("sha256")
        except (TypeError, ValueError, AttributeError):
            kept = None
        if kept == digest or (sid == old_id and kept is None):  # an old id with another digest: other content
            found.append(sid)
    return found


def _claim(book_path: str | Path, row: dict, p: Path, digest: str, old_id: str) -> str:
    """The session row made in one transaction, or a one-line refusal when the content is stored already.

    Returns the id claimed. The same content under another id (another start time: a touched copy) is found
    first and its id used, so the claim itself refuses it (or replaces it when a killed store left it
    unclean). Two stores of differently-timed copies at once can both claim; then the later row gives way."""
    try:
        with Logbook(book_path) as book:
            prior = _same_content(book, digest, old_id)
            if prior:
                row = {**row, "id": prior[0]}
            old = book.claim_session(row, replace_unclean=("analyze", "import"))
            if old is None:
                first = _same_content(book, digest, "")[0]
                if first != row["id"]:  # another store of this content claimed it just before us
                    book.delete_session(row["id"])
                    old = book.session(first) or {"id": first, "ended_how": None}
    except (LogbookError, OSError, sqlite3.Error) as exc:
        raise StorageError(f"logbook {book_path}: {explain(book_path, exc)}") from None
    sid = row["id"] if old is None else old["id"]
    if old is None:
        return sid
    if old["ended_how"] is None:
        raise InputError(
            f"{p} is already being stored in {book_path} as session {sid} by another command "
            f"(or by one that was killed: stackcue sessions --delete {sid} --yes removes it)"
        )
    raise InputError(
        f"{p} is already in {book_path} as session {sid} "
        f"(to store it again, first: stackcue sessions --delete {sid} --yes)"
    )


def _forget(book_path: str | Path, sid: str, err: IO[str] | None) -> None:
    """A store that failed is deleted; if even that fails, it stays unfinished (a daemon start marks it unclean,
    and a retry then replaces it)."""
    try:
        with Logbook(book_path) as book:
            book.delete_session(sid)
    except (LogbookError, OSError, sqlite3.Error) as exc:
        (err or sys.stderr).write(f"warning: logbook {book_path}: the partial session {sid} remains ({exc})\n")


class _FlushEvery:
    """The logbook writer as a block sink that flushes every ``FLUSH_SAMPLES``: a replay outruns any disk."""

    def __init__(self, sink: LogbookSink) -> None:
        self.sink, self.queued = sink, 0

    def add_block(self, block: Block) -> None:
        self.sink.add_block(block)
        self.queued += len(block)
        if self.queued >= FLUSH_SAMPLES:
            self.sink.flush(30.0)
            self.queued = 0


def store_recording(
    path: str | Path,
    cfg: Config,
    *,
    origin: str = "analyze",
    jsonl: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    strict: bool = False,
    calibration: Calibration | None = None,
    progress: bool | None = None,
    logbook: str | None = None,
) -> tuple[str, list[dict]]:
    """Analyse ``path`` and store it as a session; returns (session id, events).

    The analysis streams into the logbook as it goes (the writer thread batches it); a write failure (full
    disk, read-only file system) is a one-line error after the analysis, which is still printed.
    """
    p = Path(path)
    book_path = logbook or cfg.logbook_path
    if book_path is None:
        raise ConfigError("--save needs a logbook: [logbook] path is empty in the configuration")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    digest = content_digest(p)  # before anything is analysed: a second store is refused at once
    facts: dict = {}
    opened: list[LogbookSink] = []
    claimed: list[str] = []

    def prepare(source: ReplaySource) -> dict:  # the start time and the runner need the recording's metadata
        meta = source.meta
        started, how = _started(meta, p, _last_t(p), err)
        if known_start(started) is None:  # kept as it is; shown as unknown, exported without wall-clock time
            what = f"started_utc={meta['started_utc']}" if how != "file time" else "the file's modification time"
            (err or sys.stderr).write(
                f"warning: {p}: {what} is out of range (a clock that was not set?); the session's start time is "
                "unknown\n"
            )
        sid = new_session_id(started, key=f"sha256:{digest}")
        old_id = new_session_id(started, key=f"{p.resolve()}|{size}")  # the id before issue 13: old logbooks
        source.meta = {"kind": "file", "path": str(p.resolve()), **meta}
        facts.update(
            session_id=sid,
            started_epoch=started,
            clock_synchronised=how,
            origin=origin,
            runner_id=meta.get("runner") or cfg.runner_id,
        )
        row = {
            "id": sid,
            "runner": facts["runner_id"],
            "started_epoch": round(started, 3),
            "clock_synchronised": how,
            "source": {**source.meta, "sha256": digest},
            "config": cfg.data,
            "origin": origin,
        }
        sid = _claim(book_path, row, p, digest, old_id)  # of two stores of one content, one claims, one is refused
        facts["session_id"] = sid
        claimed.append(sid)
        sink = LogbookSink(book_path, config=cfg.data)  # after the claim: its writer opens the file at once
        opened.append(sink)
        return {**facts, "sinks": [_Unclosed(sink)], "block_sinks": [_FlushEvery(sink)]}

    try:
        events, source = analyze_recording(
            p,
            cfg,
            jsonl=jsonl,
            out=out,
            err=err,
            strict=strict,
            calibration=calibration,
            progress=progress,
            prepare=prepare,
        )
    except BaseException:  # refused calibration, Ctrl-C, a bad file: leave nothing behind, so a retry works
        for sink in opened:
            sink.close(clean=False)
        for sid in claimed:
            _forget(book_path, sid, err)
        raise
    for sink in opened:
        sink.close()
    sink = opened[0]
    if sink.errors or sink.raw_dropped or sink.events_dropped:
        raise StorageError(f"{p}: analysed, but the logbook write failed: {sink.status}")
    if not jsonl:
        (out or sys.stdout).write(human_summary(events, p.name, source.meta) + "\n")
    return facts["session_id"], events


#: pause events' times are rounded to 0.1 ms: half of that either way, and far less than a sample period
PAUSE_T_ROUNDING = 1e-4


def stored_controls(book: Logbook, session_id: str) -> list[Control]:
    """The live run's pauses and re-calibrations, in order, for its replay to make them at the same samples.

    ``recalibrate`` events (the daemon's, exact times) and the pipeline's ``pause`` events: a pause after
    its last sample (its time is rounded), its resume before the first sample after it. A control without a
    usable time cannot be placed: said in one warning line, and the replay goes on without it."""
    out: list[Control] = []
    for ev in book.events(session_id, ["pause", "recalibrate"]):
        t, what = ev.get("t"), ev.get("type") if ev.get("type") == "recalibrate" else ev.get("state")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            sys.stderr.write(f"warning: session {session_id}: a {what} event without a time is not replayed\n")
            continue
        if what == "recalibrate":
            out.append((float(t), "recalibrate"))
        elif what == "paused":
            out.append((float(t) + PAUSE_T_ROUNDING, "pause"))
        elif what == "resumed":
            out.append((float(t) - PAUSE_T_ROUNDING, "resume"))
    return out


def stored_cue_plan(book: Logbook, session_id: str) -> CuePlan:
    """The live run's cue plan, for its replay to mark the alerts as it did: the fading stage decided at its
    start (``cue_plans``; stage 1 for a session without one) and its snoozes (``snooze`` events, in order)."""
    plan = book.cue_plan(session_id)
    snoozes = []
    for ev in book.events(session_id, ["snooze"]):
        t, until = ev.get("t"), ev.get("until_t")
        if all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in (t, until)):
            snoozes.append((float(t), float(until)))
        else:
            sys.stderr.write(f"warning: session {session_id}: a snooze event without its times is not replayed\n")
    return CuePlan(stage=plan["stage"] if plan else 1, snoozes=tuple(snoozes))


#: rows a block of a re-analysis holds at most: `analyze --save` stores chunks of up to 150 000 rows, and the
#: pipeline's working arrays for such blocks took `analyze --session` of 60 minutes to 210 MB peak RSS (issue 18;
#: 50 000 rows: 166 MB, 20 000: 121 MB, measured); a file is read in blocks of 20 000 rows too (replay.py). Any
#: split gives the same events.
REANALYSIS_BLOCK_ROWS = 20_000


def _blocks_of_at_most(blocks: Iterable[Block], rows: int) -> Iterator[Block]:
    """``blocks`` cut into blocks of at most ``rows`` rows (views, no copies)."""
    for b in blocks:
        for i in range(0, len(b), rows):
            yield b if i == 0 and len(b) <= rows else b.slice(i, i + rows)


def analyze_session(
    book: Logbook,
    session: str,
    cfg: Config,
    *,
    jsonl: bool,
    out: IO[str] | None = None,
    calibration: Calibration | None = None,
) -> list[dict]:
    """Re-run the pipeline over a stored session's raw samples (other settings, a saved calibration).

    The live run's pauses and re-calibrations are made again at the same samples (``stored_controls``), so
    each stride is measured against the calibration segment it was measured against live."""
    s = find_session(book, session)
    if not book.has_raw(s["id"]):
        raise InputError(f"session {s['id']} has no raw samples in {book.path} ([logbook] raw was off)")
    controls = stored_controls(book, s["id"])
    events = run_pipeline(
        _blocks_of_at_most(book.raw_blocks(s["id"]), REANALYSIS_BLOCK_ROWS),
        cfg,
        jsonl=jsonl,
        out=out,
        calibration=calibration,
        controls=controls,
        cue_plan=stored_cue_plan(book, s["id"]),
    )
    if not jsonl:
        meta = {k: str(v) for k, v in (s.get("source") or {}).items() if k in ("rate", "runner", "sensor")}
        (out or sys.stdout).write(human_summary(events, f"session {s['id']}", meta) + "\n")
    return events
