"""Issue 13, the logbook file itself: only our own file is adopted, readers never write, the file is private,
a path that is not a regular file is refused, and a session cut by power loss says so (schema v3).

Real SQLite files throughout; the read-only file system is a real one (a tmpfs remounted read-only in a user
and mount namespace of its own, ``unshare -rm``), skipped where the kernel does not allow that.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stackcue.service.logbook import MIGRATIONS, SCHEMA_VERSION, Logbook, LogbookError, LogbookSink
from stackcue.service.logbook.schema import APPLICATION_ID


def _foreign(path: Path, app_id: int = 0) -> bytes:
    """Another application's SQLite file: its own table and a row; returns its bytes."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('ann', '555')")
    if app_id:
        conn.execute(f"PRAGMA application_id = {app_id}")
    conn.commit()
    conn.close()
    return path.read_bytes()


def _book_with_session(path: Path) -> None:
    with Logbook(path) as b:
        b.conn.execute("PRAGMA wal_autocheckpoint = 0")
        b.conn.execute(
            "INSERT INTO sessions (id, runner, started_epoch, ended_how, origin) "
            "VALUES ('S1', 'ann', 1.77e9, 'clean', 'live')"
        )
        b.conn.execute("INSERT INTO strides (session, t_start, t_end, event) VALUES ('S1', 1, 2, '{\"t_start\":1}')")


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------------- item 1


@pytest.mark.parametrize("app_id", [0, 0x1234])
@pytest.mark.parametrize("readonly", [False, True])
def test_another_apps_database_is_refused_and_left_alone(tmp_path, app_id, readonly):
    path = tmp_path / "other.db"
    before = _foreign(path, app_id)
    with pytest.raises(LogbookError) as exc:
        Logbook(path, readonly=readonly)
    assert str(exc.value) == f"{path} is not a stackcue logbook"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_an_application_id_of_another_app_is_refused_even_without_tables(tmp_path):
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.close()
    with pytest.raises(LogbookError, match="is not a stackcue logbook"):
        Logbook(path)


def test_the_cli_refuses_another_apps_database_in_one_line(tmp_path, capsys):
    from stackcue.service.cli import main

    path = tmp_path / "other.db"
    before = _foreign(path)
    for argv in (["sessions"], ["note", "latest", "hello"]):
        assert main([*argv, "--logbook", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{path} is not a stackcue logbook" in err[0], err
    assert path.read_bytes() == before


def test_a_new_logbook_and_an_older_stackcues_logbook_are_stamped(tmp_path):
    new = tmp_path / "new.sqlite"
    with Logbook(new) as b:
        assert b.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    for version in (1, 2):
        old = tmp_path / f"v{version}.sqlite"
        conn = sqlite3.connect(old, isolation_level=None)
        for v in range(version):
            MIGRATIONS[v](conn)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.close()
        with Logbook(old) as b:
            assert b.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert b.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# ---------------------------------------------------------------------------------------------- item 2


def test_readers_change_nothing_in_the_logbook_folder(tmp_path, capsys):
    """`sessions`, `report`, `export`, `analyze --session`, `runner export`: no -wal/-shm/-journal is made and the
    file's bytes and mtime stay. As a user other than root the file is 0444 and its folder 0555 as well."""
    from stackcue.service.cli import main

    folder = tmp_path / "books"
    folder.mkdir()
    path = folder / "lb.sqlite"
    live = tmp_path / "live.sqlite"
    with Logbook(live) as b:  # as a process killed mid-run leaves it: the data only in the -wal
        b.conn.execute("PRAGMA wal_autocheckpoint = 0")
        _book_with_session(live)
        for suffix in ("", "-wal", "-shm"):
            shutil.copy2(f"{live}{suffix}", f"{path}{suffix}")
    before = _files(folder)
    assert sorted(before) == ["lb.sqlite", "lb.sqlite-shm", "lb.sqlite-wal"]
    assert len(before["lb.sqlite-wal"][1]) > 0  # a writer closing it would checkpoint: the file's bytes change
    if os.geteuid() != 0:  # as root the modes stop nothing; the byte and file checks below still hold
        path.chmod(0o444)
        folder.chmod(0o555)
    try:
        for argv in (
            ["sessions"],
            ["sessions", "--since", "30d"],
            ["note", "S1"],
            ["export", "S1", "-o", str(tmp_path / "s.jsonl")],
            ["runner", "export", "ann", "-o", str(tmp_path / "ann.zip")],
        ):
            assert main([*argv, "--logbook", str(path)]) == 0, capsys.readouterr().err
            after = _files(folder)
            assert sorted(after) == sorted(before), argv
            for name in ("lb.sqlite", "lb.sqlite-wal"):  # the -shm is shared memory: readers may touch it
                assert after[name] == before[name], (argv, name)
    finally:
        folder.chmod(0o755)
        path.chmod(0o600)


def test_a_read_only_open_of_a_missing_logbook_creates_nothing(tmp_path):
    path = tmp_path / "none" / "lb.sqlite"
    with pytest.raises(LogbookError, match=f"^no logbook at {path}$"):
        Logbook(path, readonly=True)
    assert not path.parent.exists()


def test_a_reader_migrates_an_older_logbook_it_may_write(tmp_path):
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sessions (id, runner, started_epoch, ended_how) VALUES ('A', 'ann', 1.77e9, 'clean')")
    conn.close()
    with Logbook(path, readonly=True) as b:
        assert [s["id"] for s in b.sessions()] == ["A"]
        assert b.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


_RO_SCRIPT = textwrap.dedent(
    """
    import sys
    from stackcue.service.logbook import Logbook, LogbookError
    for name in sys.argv[1:]:
        try:
            with Logbook(name, readonly=True) as b:
                print(name, "sessions", len(b.sessions()), "strides", len(b.strides("S1")))
        except LogbookError as exc:
            print(name, "refused", exc)
    """
)

_MAKE_SCRIPT = textwrap.dedent(
    """
    import os, sqlite3, sys
    from stackcue.service.logbook import MIGRATIONS, Logbook
    d = sys.argv[1]
    def fill(b):
        b.conn.execute("INSERT INTO sessions (id, runner, started_epoch, ended_how) VALUES ('S1', 'a', 2e9, 'clean')")
        ev = '{"t_start":1}'
        b.conn.execute("INSERT INTO strides (session, t_start, t_end, event) VALUES ('S1', 1, 2, ?)", (ev,))
    with Logbook(d + "/clean.sqlite") as b:  # closed: everything in the file, no -wal
        fill(b)
    b = Logbook(d + "/crashed.sqlite")  # the process dies: the data only in the -wal
    b.conn.execute("PRAGMA wal_autocheckpoint = 0")
    fill(b)
    conn = sqlite3.connect(d + "/v1.sqlite", isolation_level=None)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    os._exit(0)
    """
)


def test_readers_on_a_read_only_file_system(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    py = sys.executable
    (tmp_path / "make.py").write_text(_MAKE_SCRIPT)
    (tmp_path / "read.py").write_text(_RO_SCRIPT)
    script = (
        f"mount -t tmpfs none {mnt} && {py} {tmp_path}/make.py {mnt} && ls {mnt} && mount -o remount,ro {mnt} && "
        f"{py} {tmp_path}/read.py {mnt}/clean.sqlite {mnt}/crashed.sqlite {mnt}/v1.sqlite && ls {mnt}"
    )
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "mount" in r.stderr and "Traceback" not in r.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "crashed.sqlite-wal" in lines[:6]  # the crash left its data in the -wal
    assert f"{mnt}/clean.sqlite sessions 1 strides 1" in lines
    assert f"{mnt}/crashed.sqlite sessions 1 strides 1" in lines
    (v1,) = [x for x in lines if x.startswith(f"{mnt}/v1.sqlite")]
    assert "refused" in v1 and "older" in v1 and "read-only" in v1


# ---------------------------------------------------------------------------------------------- item 3


def test_an_existing_world_readable_logbook_loses_its_world_bits(tmp_path, caplog):
    path = tmp_path / "lb.sqlite"
    _book_with_session(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="stackcue.logbook"), Logbook(path) as b:
        b.conn.execute("UPDATE sessions SET notes = 'x'")
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o640, p
    (line,) = [r.getMessage() for r in caplog.records if "0644" in r.getMessage()]
    assert str(path) in line and "0640" in line
    path.chmod(0o640)  # the group's access is kept, and nothing more is said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stackcue.logbook"), Logbook(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and not caplog.records


def test_a_reader_leaves_the_mode_alone(tmp_path):
    path = tmp_path / "lb.sqlite"
    _book_with_session(path)
    path.chmod(0o644)
    with Logbook(path, readonly=True):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---------------------------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("readonly", [False, True])
def test_a_link_to_dev_null_is_not_a_regular_file(tmp_path, readonly):
    journal = Path("/dev/null-journal")
    if journal.exists():
        pytest.skip("/dev/null-journal exists already (left by something else)")
    link = tmp_path / "lb.sqlite"
    link.symlink_to("/dev/null")
    with pytest.raises(LogbookError, match=f"^{link} is not a regular file$"):
        Logbook(link, readonly=readonly)
    assert not journal.exists()
    assert not Path("/dev/null-wal").exists()


def test_a_folder_and_a_fifo_are_not_regular_files(tmp_path):
    folder = tmp_path / "dir.sqlite"
    folder.mkdir()
    fifo = tmp_path / "fifo.sqlite"
    os.mkfifo(fifo)
    for p in (folder, fifo):
        with pytest.raises(LogbookError, match="is not a regular file"):
            Logbook(p)
    sink = LogbookSink(fifo)
    sink.close()
    assert "is not a regular file" in sink.status
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dir.sqlite", "fifo.sqlite"]


# ---------------------------------------------------------------------------------------------- item 6


def test_migration_2_to_3_says_which_unclean_sessions_lost_power(tmp_path):
    """A v2 file as stackcue v2 left it: a session marked unclean at the next start (no summary, no logbook
    event: the process died), one whose logbook writes failed (its ``logbook`` event), one clean."""
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for v in range(2):
        MIGRATIONS[v](conn)
    conn.execute("PRAGMA user_version = 2")
    conn.executemany(
        "INSERT INTO sessions (id, runner, started_epoch, ended_how, summary) VALUES (?, 'ann', 1.77e9, ?, ?)",
        [("P", "unclean", None), ("W", "unclean", json.dumps({"type": "summary"})), ("C", "clean", None)],
    )
    conn.execute("INSERT INTO events (session, t, type, event) VALUES ('W', NULL, 'logbook', '{\"state\":\"x\"}')")
    conn.close()
    with Logbook(path) as b:
        assert b.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        got = {s["id"]: (s["ended_how"], s["ended_reason"]) for s in b.sessions()}
    assert got == {"P": ("unclean", "power lost"), "W": ("unclean", None), "C": ("clean", None)}


def test_a_session_cut_by_power_loss_is_closed_as_power_lost(tmp_path, capsys):
    from stackcue.service.cli import main

    path = tmp_path / "lb.sqlite"
    with Logbook(path) as b:
        b.conn.execute("INSERT INTO sessions (id, runner, started_epoch, origin) VALUES ('CUT', 'ann', 1.77e9, 'live')")
        b.conn.execute("INSERT INTO strides (session, t_start, t_end, event) VALUES ('CUT', 1, 2.5, '{}')")
        assert b.mark_unclean_sessions("ann") == 1
        s = b.session("CUT")
        assert (s["ended_how"], s["ended_reason"], s["duration_s"]) == ("unclean", "power lost", 2.5)
    assert main(["sessions", "--logbook", str(path)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("CUT")]
    assert "power lost" in row
