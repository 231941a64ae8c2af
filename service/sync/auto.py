"""The daemon's own sync (``[sync] auto``): in a background thread when the daemon starts and when a session ends.

Never in the way of a run: the thread has its own logbook connection, the session loop only sets an event, and
a sync still going when the next session starts goes on beside it (a part is at most 8 MiB; the hub's answers
wait for nothing the run needs). One sync at a time: a request that arrives while one runs makes it run once
more. Everything it says goes to the log, one line each; a hub away is an info line (the next end retries).
When the daemon stops, a sync under way gets ``STOP_WAIT_S`` to finish, then it is cut.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from stackcue.errors import StackcueError

from .config import SyncSettings

log = logging.getLogger("stackcue.sync")

#: how long a stopping daemon lets a sync under way finish
STOP_WAIT_S = 5.0


class AutoSync:
    """``request()`` after a session ends; ``close()`` when the daemon stops (an unfinished sync resumes later)."""

    def __init__(self, cfg: Any, transport: Any = None) -> None:
        self.cfg = cfg
        self.transport = transport
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.runs = 0  # finished syncs (for tests and the log)
        self.idle = threading.Event()
        self.idle.set()
        self._thread = threading.Thread(target=self._loop, name="stackcue-sync", daemon=True)
        self._thread.start()

    @staticmethod
    def wanted(cfg: Any) -> bool:
        """Auto sync is on and the runner consented (else it stays off, one line said at start)."""
        s = SyncSettings.of(cfg)
        if not s.auto or cfg.logbook_path is None:
            return False
        why = s.refusal()
        if why is not None:
            if s.enabled:  # consented, but a key is missing: say it once; off is the runner's choice, silent
                log.warning("auto sync: %s", why)
            return False
        return True

    def request(self) -> None:
        self.idle.clear()
        self._wake.set()

    def close(self, wait_s: float = 0.0) -> None:
        """Stop; a sync asked for or under way gets up to ``wait_s`` to finish (then it is cut: the next one
        resumes it)."""
        if wait_s:
            self.idle.wait(wait_s)
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self._once()
            except Exception:  # a bug must not end the thread (nor the daemon): logged, retried at the next end
                log.exception("auto sync failed")
            self.runs += 1
            if not self._wake.is_set():
                self.idle.set()

    def _once(self) -> None:
        from ..logbook import Logbook
        from .client import SyncAway  # httpx loads only when a sync runs (not with sync off)
        from .run import sync

        try:
            with Logbook(self.cfg.logbook_path) as book:
                out = sync(self.cfg, book, lambda line: log.info("sync: %s", line), transport=self.transport)
            log.info("sync: %d sent, %d already there, %d failed", out.sent, out.already, out.failed)
        except SyncAway as exc:
            log.info("sync: %s; tried again when the next session ends", exc)
        except StackcueError as exc:
            log.warning("sync: %s", exc)
