"""Issue 13 leftovers: a recording is stored once by its content; ``--save-calibration`` is checked first.

A recording's identity is the SHA-256 of its bytes (kept in the session's ``source``), not its name, time or
size: a touched, copied or hard-linked recording is refused as already stored. Real files, real SQLite.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stackcue.errors import InputError
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service import session_store
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook
from stackcue.service.session import new_session_id
from stackcue.service.session_store import content_digest, store_recording

EXE = str(Path(sys.executable).parent / "stackcue")


@pytest.fixture(scope="module")
def run_csv(tmp_path_factory) -> Path:
    csv = tmp_path_factory.mktemp("store_identity") / "run.csv"
    write_simulation(simulate(SimParams(minutes=1, rate_hz=100, seed=5)), csv)
    return csv


def _store(csv: Path, book: Path, err: io.StringIO | None = None) -> str:
    sid, _ = store_recording(csv, load_config(), out=io.StringIO(), err=err or io.StringIO(), logbook=str(book))
    return sid


def _sessions(book: Path) -> list[dict]:
    with Logbook(book) as b:
        return b.sessions()


def test_the_same_content_is_stored_once_whatever_its_name_time_or_link(run_csv, tmp_path):
    csv, book = tmp_path / "run.csv", tmp_path / "lb.sqlite"
    shutil.copyfile(run_csv, csv)
    sid = _store(csv, book)
    (row,) = _sessions(book)
    assert row["id"] == sid and row["source"]["sha256"] == content_digest(csv)
    copy, link = tmp_path / "other name.csv", tmp_path / "link.csv"
    shutil.copyfile(csv, copy)
    os.link(csv, link)
    later = time.time() + 3600.0
    os.utime(copy, (later, later))  # a copy with another modification time: another start, another id prefix
    for again in (csv, copy, link):
        with pytest.raises(InputError, match=f"already in {book} as session {sid}") as exc:
            _store(again, book)
        assert str(again) in str(exc.value) and "\n" not in str(exc.value)
    assert [s["id"] for s in _sessions(book)] == [sid]  # nothing more stored
    # other content (one sample fewer) is another recording
    lines = csv.read_text().splitlines(keepends=True)
    (tmp_path / "cut.csv").write_text("".join(lines[:-1]))
    assert _store(tmp_path / "cut.csv", book) != sid and len(_sessions(book)) == 2


def test_a_touched_recording_on_the_command_line_is_refused_in_one_line(run_csv, tmp_path):
    csv, book = tmp_path / "run.csv", tmp_path / "lb.sqlite"
    shutil.copyfile(run_csv, csv)
    cmd = [EXE, "analyze", str(csv), "--save", "--logbook", str(book)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    os.utime(csv, (time.time() + 7200.0, time.time() + 7200.0))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stdout == ""
    (line,) = again.stderr.splitlines()
    assert "already in" in line and "Traceback" not in line
    assert len(_sessions(book)) == 1


def test_a_session_stored_under_the_old_id_is_still_found(run_csv, tmp_path):
    """A logbook from before the digest: its session has the old id (start, path, size) and no ``sha256``."""
    csv, book = tmp_path / "run.csv", tmp_path / "lb.sqlite"
    shutil.copyfile(run_csv, csv)
    sid = _store(csv, book)
    (row,) = _sessions(book)
    started = row["started_epoch"]
    old_id = new_session_id(started, key=f"{csv.resolve()}|{csv.stat().st_size}")
    with Logbook(book) as b:  # rewrite it as the old scheme stored it
        src = {k: v for k, v in row["source"].items() if k != "sha256"}
        b.conn.execute("UPDATE sessions SET id = ?, source = ? WHERE id = ?", (old_id, json.dumps(src), sid))
        for table in ("events", "strides", "alerts", "raw_chunks"):
            b.conn.execute(f"UPDATE {table} SET session = ? WHERE session = ?", (old_id, sid))
        b.conn.commit()
    with pytest.raises(InputError, match=f"as session {old_id}"):
        _store(csv, book)
    assert [s["id"] for s in _sessions(book)] == [old_id]
    # the old id with another digest is other content (same path, size and start): not refused for it
    with Logbook(book) as b:
        b.conn.execute("UPDATE sessions SET source = ? WHERE id = ?", (json.dumps({**src, "sha256": "0" * 64}), old_id))
        b.conn.commit()
    assert _store(csv, book) != old_id and len(_sessions(book)) == 2


def test_a_damaged_source_in_another_session_is_no_match_and_no_error(run_csv, tmp_path):
    csv, book = tmp_path / "run.csv", tmp_path / "lb.sqlite"
    shutil.copyfile(run_csv, csv)
    digest = content_digest(csv)
    with Logbook(book) as b:
        b.conn.execute(
            "INSERT INTO sessions (id, source, origin) VALUES ('x', ?, 'analyze')", (f"{{not json {digest}",)
        )
        b.conn.commit()
    sid = _store(csv, book)
    assert sorted(s["id"] for s in _sessions(book)) == sorted(["x", sid])


def test_two_concurrent_stores_of_differently_timed_copies_store_once(run_csv, tmp_path, monkeypatch):
    """Both claim (their ids differ: another start time); the later claim sees the earlier and gives way."""
    a, b, book = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "lb.sqlite"
    shutil.copyfile(run_csv, a)
    shutil.copyfile(run_csv, b)
    os.utime(b, (time.time() + 3600.0, time.time() + 3600.0))
    Logbook(book).close()  # made beforehand: the race is over the claim, not over making the file
    real = session_store._same_content
    barrier = threading.Barrier(2, timeout=30)
    calls: dict[str, int] = {}

    def both_look_first(book_, digest, old_id):  # both look before either claims: the race the re-check closes
        name = threading.current_thread().name
        calls[name] = calls.get(name, 0) + 1
        found = real(book_, digest, old_id)
        if calls[name] == 1:
            barrier.wait()
        return found

    monkeypatch.setattr(session_store, "_same_content", both_look_first)
    results: dict[str, object] = {}

    def go(csv: Path) -> None:
        try:
            results[csv.name] = _store(csv, book)
        except BaseException as exc:
            results[csv.name] = exc

    threads = [threading.Thread(target=go, args=(p,), name=p.name) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = [r for r in results.values() if isinstance(r, InputError)]
    stored = [r for r in results.values() if isinstance(r, str)]
    assert len(refused) == 1 and len(stored) == 1, results
    assert "already" in str(refused[0])
    (row,) = _sessions(book)
    assert row["id"] == stored[0] and row["ended_how"] == "clean"


def test_an_invalid_started_utc_warns_in_one_line_then_uses_the_file_time(run_csv, tmp_path):
    csv, book = tmp_path / "run.csv", tmp_path / "lb.sqlite"
    csv.write_text("# started_utc=2026-13-45T99:00:00Z\n" + run_csv.read_text())
    mtime = 1_780_000_000.0
    os.utime(csv, (mtime, mtime))
    err = io.StringIO()
    _store(csv, book, err)
    (line,) = [x for x in err.getvalue().splitlines() if "started_utc" in x]
    assert str(csv) in line and "2026-13-45T99:00:00Z" in line and "modification time" in line
    (row,) = _sessions(book)
    assert row["clock_synchronised"] == "file time"
    assert mtime - 120.0 < row["started_epoch"] < mtime  # the file's time less the run's length (one minute)


# ---------------------------------------------------------------------------------- --save-calibration first


@pytest.mark.parametrize("case", ["folder", "under a file", "missing folder", "under /proc"])
@pytest.mark.parametrize("save", [False, True])
def test_save_calibration_is_refused_before_the_analysis(run_csv, tmp_path, capsys, monkeypatch, case, save):
    from stackcue.service import analyze, cli

    ran: list[int] = []
    real = analyze.replay_session
    monkeypatch.setattr(analyze, "replay_session", lambda *a, **k: ran.append(1) or real(*a, **k))
    folder = tmp_path / "cals"
    folder.mkdir()
    (folder / "keep.json").write_text("{}")
    (tmp_path / "f").write_text("a file")
    target = {
        "folder": folder,
        "under a file": tmp_path / "f" / "x.json",
        "missing folder": tmp_path / "nodir" / "x.json",
        "under /proc": Path("/proc/stackcue-cal.json"),  # no one, not even root, makes a file there
    }[case]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()), folder.stat().st_mtime_ns
    book = tmp_path / "lb.sqlite"
    argv = ["analyze", str(run_csv), "--save-calibration", str(target), "--logbook", str(book)]
    t0 = time.monotonic()
    rc = cli.main([*argv, "--save"] if save else argv)
    took = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    (line,) = err.splitlines()
    assert str(target) in line and "--save-calibration" in line and "Traceback" not in line
    assert ran == [] and took < 5.0  # nothing analysed
    assert not book.exists()  # nothing stored
    assert (sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()), folder.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cals", "f"]
    assert (tmp_path / "f").read_text() == "a file"


def test_save_calibration_refused_for_a_stored_session_too(run_csv, tmp_path, capsys):
    from stackcue.service import cli

    book = tmp_path / "lb.sqlite"
    _store(run_csv, book)
    (tmp_path / "f").write_text("a file")
    target = tmp_path / "f" / "x.json"
    rc = cli.main(["analyze", "--session", "latest", "--logbook", str(book), "--save-calibration", str(target)])
    (line,) = capsys.readouterr().err.splitlines()
    assert rc == 2 and str(target) in line and "is a file, not a folder" in line
