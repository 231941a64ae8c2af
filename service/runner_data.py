"""A runner's whole data, exported or deleted (docs/logbook.md, "Privacy": posture data is personal health data).

The export is one zip a runner can take anywhere: per session its events as JSON lines (the ``analyze --jsonl``
shapes) and, where kept, its raw samples as an exchange CSV (``stackcue import`` reads it back), plus a
manifest. Deletion removes every row of every session of the runner in the logbook and then vacuums with
``secure_delete`` so the pages that held them are overwritten, not just marked free.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

from stackcue.errors import InputError, StackcueError, StorageError

from .export import write_jsonl, write_samples_csv
from .logbook import Logbook


def _runner_sessions(book: Logbook, runner: str) -> list[dict]:
    sessions = book.sessions(runner=runner)
    if not sessions:
        known = ", ".join(repr(r) for r in book.runners() if r is not None) or "none"
        raise InputError(f"no sessions of runner {runner!r} in {book.path} (runners: {known})")
    return sessions


def export_runner(book: Logbook, runner: str, out: Path) -> tuple[int, int]:
    """Write the runner's zip; returns (sessions, bytes). Written to a temporary file first, then renamed."""
    sessions = _runner_sessions(book, runner)
    if not out.parent.exists():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".stackcue-export-", suffix=".zip", dir=out.parent)
    except OSError as exc:
        raise StorageError(f"{out}: cannot write in {out.parent} ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z, tempfile.TemporaryDirectory() as work:
            manifest = {"runner": runner, "logbook": str(book.path), "sessions": []}
            for s in sessions:
                buf = io.StringIO()
                write_jsonl(book, s["id"], buf)
                z.writestr(f"{s['id']}/events.jsonl", buf.getvalue())
                entry = {
                    "id": s["id"],
                    "started_epoch": s["started_epoch"],
                    "duration_s": s["duration_s"],
                    "source": s["source"],
                    "origin": s["origin"],
                    "ended_how": s["ended_how"],
                    "notes": s["notes"],
                    "events": f"{s['id']}/events.jsonl",
                }
                if book.has_raw(s["id"]):
                    csv_path = Path(work) / "samples.csv"
                    write_samples_csv(book, s["id"], csv_path)
                    z.write(csv_path, f"{s['id']}/samples.csv")
                    csv_path.unlink()
                    entry["samples"] = f"{s['id']}/samples.csv"
                manifest["sessions"].append(entry)
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
        os.chmod(tmp, 0o600)  # health data: as private as the logbook
        os.replace(tmp, out)
    except StackcueError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:  # a full disk, a file system gone read-only: nothing half-written is left
        tmp.unlink(missing_ok=True)
        raise StorageError(f"{out}: cannot write ({exc.strerror or exc}); nothing was written") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(sessions), out.stat().st_size


def delete_runner(book: Logbook, runner: str, *, really: bool) -> str:
    """Delete (with ``really``) or describe what would go; returns the line to print."""
    sessions = _runner_sessions(book, runner)
    what = f"{len(sessions)} sessions of runner {runner!r} ({sessions[0]['id']} … {sessions[-1]['id']})"
    if not really:
        return f"would delete {what} from {book.path}; run again with --yes to delete them"
    for s in sessions:
        book.delete_session(s["id"])
    book.vacuum()
    return f"deleted {what} from {book.path}; the file was vacuumed with secure_delete"
