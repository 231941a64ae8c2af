"""A runner's whole data, exported or deleted (docs/logbook.md, "Privacy": posture data is personal health data).

The export is one zip a runner can take anywhere: per session its events as JSON lines (the ``analyze --jsonl``
shapes) and, where kept, its raw samples as an exchange CSV (``stackcue import`` reads it back), plus a
manifest. Deletion removes every row of every session of the runner in the logbook and then vacuums with
``secure_delete`` so the pages that held them are overwritten, not just marked free.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from stackcue.errors import InputError

from .export import write_jsonl, write_samples_csv
from .logbook import Logbook
from .output_files import write_output


def _runner_sessions(book: Logbook, runner: str) -> list[dict]:
    sessions = book.sessions(runner=runner)
    if not sessions:
        known = ", ".join(repr(r) for r in book.runners() if r is not None) or "none"
        raise InputError(f"no sessions of runner {runner!r} in {book.path} (runners: {known})")
    return sessions


class _Stream(io.RawIOBase):
    """A write-only file with no position, so ``zipfile`` writes in streaming mode."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        return self._fh.write(b)

    def flush(self) -> None:
        self._fh.flush()


def export_runner(book: Logbook, runner: str, out: Path) -> tuple[int, int]:
    """Write the runner's zip; returns (sessions, bytes), bytes 0 when written through to a device."""
    sessions = _runner_sessions(book, runner)

    def write_zip(path: Path) -> None:
        with open(path, "wb") as raw:
            # A device (/dev/null) claims to seek but always tells 0, which breaks the zip's directory offsets:
            # anything but a regular file is written as a stream.
            _write_zip(raw if path.is_file() else _Stream(raw))

    def _write_zip(fh: BinaryIO) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as z, tempfile.TemporaryDirectory() as work:
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

    write_output(out, write_zip)  # whole or not at all, 0600 (health data); devices and FIFOs written through
    try:
        size = out.stat().st_size if out.is_file() else 0
    except OSError:
        size = 0
    return len(sessions), size


def delete_runner(book: Logbook, runner: str, *, really: bool, hubs: set[str] | frozenset[str] = frozenset()) -> str:
    """Delete (with ``really``) or describe what would go; returns the line to print.

    The deletion on the coach's hub is queued first (``hubs``: the one the runner consented to, plus any that
    acknowledged one of these sessions), in one transaction before any row goes (service/sync/deletion.py)."""
    from .sync import state

    sessions = _runner_sessions(book, runner)
    what = f"{len(sessions)} sessions of runner {runner!r} ({sessions[0]['id']} … {sessions[-1]['id']})"
    sids = [s["id"] for s in sessions]
    hubs = set(hubs) | state.hubs_holding(book.conn, sids)
    on_hubs = f" and on hub {', '.join(map(repr, sorted(hubs)))}" if hubs else ""
    if not really:
        return f"would delete {what} from {book.path}{on_hubs}; run again with --yes to delete them"
    if hubs:
        state.queue_runner_deletion(book.conn, runner, hubs, sids)
    for s in sessions:
        book.delete_session(s["id"])
    book.vacuum()
    return f"deleted {what} from {book.path}; the file was vacuumed with secure_delete"
