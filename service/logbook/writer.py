"""The live writer: the daemon's events and raw samples into the logbook from a thread of its own.

A thread because the pipeline must never wait on the SD card: a commit with ``synchronous=FULL`` waits for an
fsync, and a full or read-only card must cost data, not the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stackcue.errors import LogbookError

from ..wallclock import known_start
from .codec import encode_chunk
from .schema import connect, explain, to_json

log = logging.getLogger("stackcue.logbook")

FLUSH_S = 1.0  # the live writer commits at least this often


class LogbookSink:
    """The daemon's logbook sink: events (``handle``) and raw samples (``add_block``) into SQLite.

    ``handle`` and ``add_block`` only queue (any thread, never blocking on I/O); a writer thread with its own
    connection writes the queue in one short transaction at least every ``flush_s`` and on ``close``. Raw blocks
    are gathered into one chunk per flush (split where a trunk appears or vanishes). A sqlite3 error (full disk,
    read-only file system, locked file) never reaches the caller: ``status`` says it in one line (also logged
    on ``stackcue.logbook``), events are kept for the next try (at most ``backlog_max``; the oldest strides go
    first), raw samples of the failed batch are dropped and counted in ``raw_dropped``.

    The session row is made by the ``session``/``started`` event (a start out of ``wallclock``'s range, which
    every reader would show as unknown, is stored as unknown: NULL, with one warning line), updated by
    ``calibration`` (the latest accepted one, or the latest refusal while none is accepted) and closed
    ``'clean'`` by ``summary`` or by ``close()``. Raw blocks take the session of the latest session event
    written (held until there is one).
    """

    name = "logbook"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        config: dict | None = None,
        flush_s: float = FLUSH_S,
        max_bytes: int | None = None,
        backlog_max: int = 20000,
        wall: Callable[[], float] = time.time,
    ) -> None:
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
        self._mark_clean = True
        self._last_error: str | None = None  # why the latest write failed (kept in the session's end mark)
        self._conn: sqlite3.Connection | None = None
        self._warned_start: set[str] = set()
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

    def close(self, clean: bool = True) -> None:
        """Write what is queued and stop; ``clean=False`` leaves the session's end unmarked (a store that failed
        and will be deleted: it must never look like a finished session)."""
        with self._cond:
            self._mark_clean = self._mark_clean and clean
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
            self._last_error = f"cannot open the logbook: {explain(self.path, exc)}"
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
            if stop and blocks and self.status.startswith("write failed"):
                with self._cond:  # the samples are lost: the events and the end mark may still fit without them
                    events, self._events = self._events, []
                self._write(events, [], final=True)
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
                if final and self._mark_clean and self._session is not None and not self._ended:
                    conn.execute(
                        "UPDATE sessions SET ended_how = ?, ended_epoch = ? WHERE id = ? AND ended_how IS NULL",
                        (self._end_how(conn, self._session), self._wall(), self._session),
                    )
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
            self._last_error = explain(self.path, exc)
            lost = sum(len(b) for b in blocks)
            self.raw_dropped += lost
            with self._cond:
                self._events[:0] = events
                while len(self._events) > self.backlog_max:
                    self._drop_one_event()
            self._set_status(
                f"write failed ({self.path}): {explain(self.path, exc)}; retrying, "
                f"{self.raw_dropped} raw samples dropped",
                logging.ERROR,
            )
        finally:
            self.write_s += time.thread_time() - t_cpu

    def _write_event(self, conn: sqlite3.Connection, ev: dict) -> None:
        et = ev.get("type")
        if et == "session" and ev.get("state") == "started":
            self._session = str(ev.get("session"))
            self._ended = False
            self._calibrated = False
            started = known_start(ev.get("started_epoch"))
            made = conn.execute(
                "INSERT INTO sessions (id, runner, started_epoch, clock_synchronised, source, config, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    self._session,
                    ev.get("runner"),
                    started,
                    ev.get("clock_synchronised"),
                    to_json(ev.get("source")),
                    to_json(self.config),
                    ev.get("origin", "live"),
                ),
            ).rowcount
            odd = started is None and ev.get("started_epoch") is not None
            if odd and made and self._session not in self._warned_start:  # a claimed row: its claimer warned
                self._warned_start.add(self._session)  # a batch that failed is written again: one line
                log.warning(
                    "logbook: session %s: its start time %r is out of range (a clock that was not set?); "
                    "stored as unknown",
                    self._session,
                    ev.get("started_epoch"),
                )
            return
        session = self._session
        if session is None:
            self.events_dropped += 1  # an event before any session: nothing to attach it to
            return
        if et == "stride":
            conn.execute(
                "INSERT INTO strides (session, t_start, t_end, cadence_spm, pelvic_tilt_deg, "
                "trunk_lean_deg, stack_deg, steady, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session,
                    ev.get("t_start"),
                    ev.get("t_end"),
                    ev.get("cadence_spm"),
                    ev.get("pelvic_tilt_deg"),
                    ev.get("trunk_lean_deg"),
                    ev.get("stack_deg"),
                    None if ev.get("steady") is None else int(bool(ev.get("steady"))),
                    to_json(ev),
                ),
            )
        elif et == "alert":
            conn.execute(
                "INSERT INTO alerts (session, alert_id, t, kind, payload) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (session, alert_id) DO NOTHING",
                (session, ev.get("id"), ev.get("t"), ev.get("kind"), to_json(ev)),
            )
        else:
            t = ev.get("t", ev.get("t_start", ev.get("duration_s")))
            conn.execute(
                "INSERT INTO events (session, t, type, event) VALUES (?, ?, ?, ?)", (session, t, str(et), to_json(ev))
            )
            if et == "calibration" and (ev.get("ok") or not self._calibrated):
                self._calibrated = self._calibrated or bool(ev.get("ok"))
                conn.execute("UPDATE sessions SET calibration = ? WHERE id = ?", (to_json(ev), session))
            elif et == "summary":
                conn.execute(
                    "UPDATE sessions SET summary = ?, ended_epoch = ?, ended_how = ?, duration_s = ? WHERE id = ?",
                    (to_json(ev), self._wall(), self._end_how(conn, session), ev.get("duration_s"), session),
                )
                self._ended = True

    def _end_how(self, conn: sqlite3.Connection, session: str) -> str:
        """``'clean'``, or ``'unclean'`` when writes failed and cost data (raw samples, events): then a ``logbook``
        event says what is missing and why, so a report or the coach sees the session is incomplete."""
        if not (self.raw_dropped or self.events_dropped):
            return "clean"
        ev = {
            "type": "logbook",
            "state": "incomplete",
            "reason": self._last_error or "writes failed",
            "raw_dropped": self.raw_dropped,
            "events_dropped": self.events_dropped,
            "write_errors": self.errors,
        }
        conn.execute(
            "INSERT INTO events (session, t, type, event) VALUES (?, NULL, 'logbook', ?)", (session, to_json(ev))
        )
        return "unclean"

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
            data = encode_chunk(
                t,
                acc,
                gyr,
                np.concatenate([b.trunk_acc for b in blocks]),
                np.concatenate([b.trunk_gyr for b in blocks]),
                np.concatenate([b.trunk_valid for b in blocks]),
            )
        else:
            data = encode_chunk(t, acc, gyr)
        conn.execute(
            "INSERT INTO raw_chunks (session, t0, t1, n, trunk, data) VALUES (?, ?, ?, ?, ?, ?)",
            (self._session, float(t[0]), float(t[-1]), len(t), int(trunk), data),
        )
