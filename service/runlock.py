"""One `stackcue run` a runner (issue 13, item 15): lock files held with ``fcntl.flock`` for the run's life.

Two daemons for the same runner use the same MQTT client id, so the broker throws each out when the other
connects (they reconnect in a loop), and the second's start marks the first's live session unclean in the
logbook. The second therefore refuses to start, naming the lock file and the process that holds it.

Where the locks live. The runner, not its logbook, is what two daemons fight over (the client id), so the
main lock ``stackcue-run-<runner>.lock`` is in a per-user folder that does not depend on the logbook: the
runtime directory (``$RUNTIME_DIRECTORY`` from systemd's ``RuntimeDirectory=``; else the service's
``/run/stackcue`` when it is ours, so a shell of the service's account meets the service's lock; else
``$XDG_RUNTIME_DIR``), else the private ``<tmp>/stackcue-<uid>`` (0700, ours, never through a link). A
second run of the same runner with another logbook, or none, is refused there. The service runs as the
``stackcue`` account, so one account is one set of runners; under the unit's ``PrivateTmp=`` its temp folder
is its own: a second lock of the same name in the logbook's folder (when one is configured and can be made)
also refuses a run that shares the service's logbook. Locks are taken
without waiting, per-user first; a refusal releases what was taken.

``flock`` locks belong to the open file, so the kernel releases the lock when the process dies, even by
``kill -9`` or a power cut: a stale lock file never blocks a restart (its text, the holder's pid and session,
is only information). The file is left in place at exit; removing it would race with a starting daemon.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import tempfile
from pathlib import Path

from stackcue.errors import StorageError

#: the service's ``RuntimeDirectory=`` (config/stackcue.service; kept between runs by RuntimeDirectoryPreserve)
SERVICE_RUNTIME_DIR = Path("/run/stackcue")


def user_lock_dirs() -> list[Path]:
    """The per-user folders the runner's main lock may live in, best first (module docstring)."""
    dirs = []
    svc = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if svc and os.path.isdir(svc):
        dirs.append(Path(svc))
    if _ours(SERVICE_RUNTIME_DIR) and not any(_same(d, SERVICE_RUNTIME_DIR) for d in dirs):
        dirs.append(SERVICE_RUNTIME_DIR)  # a shell of the service's account meets the service's lock there
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").split(":")[0]
    if xdg and os.path.isdir(xdg):
        dirs.append(Path(xdg))
    private = _private_temp_dir()
    if private is not None:
        dirs.append(private)
    return dirs


def _ours(d: Path) -> bool:
    """A real folder (not a link) of this user that no one else may write: only then may it hold our lock."""
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def lock_dirs(logbook_path: Path | None) -> list[Path]:
    """Every folder a run lock may live in: the per-user ones, best first, then the logbook's folder."""
    dirs = user_lock_dirs()
    if logbook_path is not None:
        dirs.append(Path(logbook_path).expanduser().parent)
    return dirs


def _private_temp_dir() -> Path | None:
    """``<tmp>/stackcue-<uid>``, 0700 and ours: in a world-writable folder another user could plant a link or
    hold the lock; a folder that is not ours (or not a folder) is not used."""
    d = Path(tempfile.gettempdir()) / f"stackcue-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(d)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return d


def lock_name(runner_id: str) -> str:
    """``stackcue-run-<runner>.lock``, the runner id made safe for a file name."""
    return f"stackcue-run-{re.sub(r'[^A-Za-z0-9._-]', '_', runner_id) or '_'}.lock"


def lock_path(runner_id: str, logbook_path: Path | None = None) -> Path:
    """The runner's main (per-user) lock when its folder is usable; the logbook's folder only when none is."""
    dirs = user_lock_dirs() or lock_dirs(logbook_path)
    return dirs[0] / lock_name(runner_id)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def acquire_run_lock(runner_id: str, logbook_path: Path | None, info: str = "") -> RunLock:
    """Take the runner's per-user lock in the first folder that can hold it, then the same lock in the logbook's
    folder (made as the logbook would make it). A folder that cannot hold a lock (read-only, missing) must not
    stop the cues, so it is passed over; a lock held by another run refuses the start."""
    name = lock_name(runner_id)
    taken: list[RunLock] = []
    error: _CannotOpen | None = None
    try:
        for d in user_lock_dirs():
            try:
                taken.append(acquire(d / name, runner_id, info))  # held elsewhere: raised, not skipped
                break
            except _CannotOpen as exc:
                error = exc
        if logbook_path is not None:
            d = Path(logbook_path).expanduser().parent
            try:
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not any(_same(t.path.parent, d) for t in taken):  # one file locked twice would refuse itself
                    taken.append(acquire(d / name, runner_id, info))
            except _CannotOpen as exc:
                error = exc
            except OSError as exc:
                error = _CannotOpen(f"{d}: cannot make the folder ({exc.strerror or exc})")
    except StorageError:
        for t in taken:
            t.release()
        raise
    if not taken:
        raise error or _CannotOpen(f"no folder can hold the run lock of runner {runner_id!r}")
    first, *more = taken
    first.more = more
    return first


class _CannotOpen(StorageError):
    """The lock file cannot be opened here (another folder may do)."""


class RunLock:
    """The held lock; ``release()`` (safe twice) or the process's end frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path  # the per-user lock when one could be taken (acquire_run_lock)
        self._fd: int | None = fd
        self.more: list[RunLock] = []  # the same runner's lock in the logbook's folder

    @property
    def paths(self) -> list[Path]:
        return [self.path, *(m.path for m in self.more)]

    def release(self) -> None:
        for m in self.more:
            m.release()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(path: Path, runner_id: str, info: str = "") -> RunLock:
    """Take the run lock at ``path`` or raise ``StorageError`` naming the lock and the process holding it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)  # a planted link is not followed
    except OSError as exc:
        raise _CannotOpen(f"{path}: cannot open the run lock ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().splitlines()
        except OSError:
            holder = []
        os.close(fd)
        who = holder[0] if holder else "a process that has not written its pid yet"
        raise StorageError(
            f"another `stackcue run` for runner {runner_id!r} is running ({who}): it holds the lock {path}; "
            "stop it first (systemctl stop stackcue) or give this run another [runner] id"
        ) from None
    try:
        os.ftruncate(fd, 0)
        text = f"pid {os.getpid()}" + (f", {info}" if info else "") + "\n"
        os.pwrite(fd, text.encode("utf-8"), 0)
    except OSError:
        pass  # the lock is what counts; the text is only information
    return RunLock(path, fd)


def run_lock_held(runner_id: str, logbook_path: Path | None) -> bool:
    """Is a `stackcue run` of ``runner_id`` alive now, i.e. is its run lock held (in any of ``lock_dirs``)?

    Looked up without taking the lock, so a daemon starting at this very moment is never refused because of the
    look: in ``/proc/locks`` (Linux) by the lock file's device and inode. Where that cannot be read, a shared
    ``flock`` is tried and dropped at once (a starting daemon could then lose that instant's race).
    """
    files = [d / lock_name(runner_id) for d in lock_dirs(logbook_path)]
    keys = set()
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        keys.add(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
    if not keys:
        return False  # no lock file: no run of this runner ever started here
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            table = fh.read()
    except OSError:
        table = None
    if table is not None:
        for line in table.splitlines():
            parts = line.split()
            if "FLOCK" in parts and any(p in keys for p in parts):
                return True
        return False
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
    return False
