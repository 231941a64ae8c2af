"""Writing a file the user named with ``-o``: reports, exports, a runner's archive (issue 13, item 14).

``write_output(path, data)`` is the one way these commands write:

* ``-`` is standard output;
* a regular file, or a path that does not exist yet, is written whole or not at all: a temporary file in the
  same folder (owner-only, 0600: these files hold a runner's health data), then a rename over the name. A
  symlink to a regular file replaces the file it points to, not the link;
* anything else that exists (a character or block device such as ``/dev/stdout`` or ``/dev/null``, a FIFO, a
  symlink to one of them, any name under /dev or /proc) is written through, in place: renaming a file over it
  would destroy it;
* a folder is refused.

``check_output(path)`` makes the same refusals up front (a folder, a missing folder, a parent that is a file,
a folder without write permission), so a command checks its output before its work.

Failures are one line naming the path (``StorageError``); the temporary file never outlives a failure.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from stackcue.errors import InputError, StorageError

T = TypeVar("T")

PRIVATE = 0o600


def is_write_through(path: str | os.PathLike) -> bool:
    """True when ``path`` is ``-`` or names something that exists and is not a regular file (nor a folder).

    A name under /dev or /proc (``/dev/stdout`` is a link to ``/proc/self/fd/1``) is written through even when
    it leads to a regular file: that file is another process's open descriptor (a shell's ``> out.html``),
    which a rename would detach from it.
    """
    if str(path) == "-":
        return True
    try:
        st = os.stat(path)  # follows symlinks: a link to /dev/null is a device
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return False
    if not stat.S_ISREG(st.st_mode):
        return True
    names = (os.path.abspath(path), os.path.realpath(path))
    return any(n == d or n.startswith(d + "/") for n in names for d in ("/dev", "/proc"))


def check_output(path: str | os.PathLike, what: str = "", probe: bool = True) -> None:
    """Refuse, before any work, an output ``write_output`` could not write: a folder, a missing folder, a parent
    that is a file, a folder this user cannot write in. ``what`` (``--save-calibration``) starts the message.

    One check for every command's output, so an hour of analysis never ends in "cannot write". ``probe`` makes
    and removes a temporary file in the folder: permission bits do not stop root, a read-only mount or /proc do.
    """
    name = str(path)
    if name == "-":
        return
    head = f"{what} {name}" if what else name
    p = Path(path)
    if p.is_dir() or name.endswith("/"):  # Path("x.html/") is Path("x.html"): the slash says a folder was meant
        raise StorageError(f"{head}: is a folder, not a file")
    if is_write_through(p):
        if not os.access(p, os.W_OK):
            raise StorageError(f"{head}: cannot write (permission denied)")
        return
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    folder = target.parent
    if not folder.exists():
        missing = next((a for a in [folder, *folder.parents] if not a.exists() and a.parent.exists()), folder)
        if missing.parent.exists() and not missing.parent.is_dir():
            raise StorageError(f"{head}: {missing.parent} is a file, not a folder")
        raise StorageError(f"{head}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise StorageError(f"{head}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"{head}: cannot write in the folder {folder} (permission denied)")
    if probe:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise StorageError(f"{head}: cannot write in the folder {folder} ({exc.strerror or exc})") from None


def _write_data(fh_path: str | os.PathLike, data: str | bytes) -> int:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with open(fh_path, "wb") as fh:
        fh.write(raw)
    return len(raw)


def write_output(path: str | os.PathLike, data: str | bytes | Callable[[Path], T]) -> int | T:
    """Write ``data`` (text, bytes, or a function that writes a file at the path it is given) to ``path``.

    Returns the number of bytes for text and bytes, else what the function returns. See the module docstring.
    """
    name = str(path)
    if name == "-":
        if callable(data):
            raise InputError("-o - (standard output) cannot take this output; give a file name")
        try:
            if isinstance(data, bytes):
                sys.stdout.flush()
                sys.stdout.buffer.write(data)
            else:
                sys.stdout.write(data)
            sys.stdout.flush()
        except OSError as exc:
            raise StorageError(f"standard output: cannot write ({exc.strerror or exc})") from None
        return len(data)
    p = Path(path)
    check_output(p if not name.endswith("/") else name, probe=False)  # its own temporary file is the probe
    if is_write_through(p):
        try:
            return data(p) if callable(data) else _write_data(p, data)
        except BrokenPipeError:  # `-o /dev/stdout | head`: the reader has what it wanted, as with `-o -`
            raise
        except OSError as exc:
            raise StorageError(f"{p}: cannot write ({exc.strerror or exc})") from None
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        tmp = Path(tmp_name)
        os.close(fd)
        os.chmod(tmp, PRIVATE)
        result = data(tmp) if callable(data) else _write_data(tmp, data)
        os.chmod(tmp, PRIVATE)  # in case the writer made the file anew
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise StorageError(f"{p}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return result
