"""Issue 13, items 4-6: a recording is stored once, and only when real; out-of-range start times.

4. two concurrent ``analyze --save`` of one file store it once, the other says it is already stored;
5. a ``--save`` whose calibration is refused, or that is interrupted, leaves nothing behind, and the retry works;
6. start times of year 1, 1970 and 9999 are shown as unknown and exported without wall-clock time.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from stackcue.errors import CalibrationError, InputError
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service import session_store
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook
from stackcue.service.session_store import store_recording


@pytest.fixture(scope="module")
def run_csv(tmp_path_factory) -> Path:
    csv = tmp_path_factory.mktemp("hardening_sessions") / "run.csv"
    write_simulation(simulate(SimParams(minutes=1, rate_hz=100, seed=3)), csv)
    return csv


def _copy(src: Path, dst: Path, head: str = "", keep=lambda line: True) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    dst.write_text(head + "".join(line for line in lines if line.startswith(("#", "t,")) or keep(line)))
    return dst


def _store(csv: Path, book: Path, **kw) -> tuple[str, list[dict]]:
    return store_recording(csv, load_config(), out=io.StringIO(), err=io.StringIO(), logbook=str(book), **kw)


def _counts(book: Path) -> list[tuple]:
    with Logbook(book) as b:
        return [
            (s["id"], s["ended_how"], len(b.strides(s["id"])), sum(c["t"].size for c in b.raw_chunks(s["id"])))
            for s in b.sessions()
        ]


# ---------------------------------------------------------------------------------------------- item 4


def test_two_concurrent_saves_of_one_file_store_it_once(run_csv, tmp_path, monkeypatch):
    """The first save is held mid-analysis, before its writer committed anything; the second must refuse."""
    csv, book = _copy(run_csv, tmp_path / "run.csv"), tmp_path / "lb.sqlite"
    holding, go = threading.Event(), threading.Event()
    first = threading.current_thread().name + "-first"
    add_block = session_store._FlushEvery.add_block

    def held(self, block):
        if threading.current_thread().name == first and not go.is_set():
            holding.set()
            go.wait(30)
        add_block(self, block)

    monkeypatch.setattr(session_store._FlushEvery, "add_block", held)
    result: dict = {}

    def save_first() -> None:
        try:
            result["first"] = _store(csv, book)
        except BaseException as exc:  # pragma: no cover - reported below
            result["first"] = exc

    t = threading.Thread(target=save_first, name=first)
    t.start()
    assert holding.wait(30)
    try:
        with pytest.raises(InputError, match="already"):
            _store(csv, book)
    finally:
        go.set()
        t.join(60)
    sid, events = result["first"]
    (row,) = _counts(book)
    assert row[0] == sid and row[1] == "clean"
    assert row[2] == sum(e["type"] == "stride" for e in events) > 0  # every stride once
    assert row[3] == sum(1 for line in csv.read_text().splitlines() if line[:1] not in ("#", "t"))


# ---------------------------------------------------------------------------------------------- item 5


def test_a_refused_calibration_leaves_nothing_and_the_retry_works(run_csv, tmp_path):
    csv, book = tmp_path / "run.csv", tmp_path / "lb.sqlite"
    good_sid, good = _store(_copy(run_csv, tmp_path / "good.csv"), tmp_path / "good.sqlite")
    cal = next(e for e in good if e["type"] == "calibration" and e.get("ok"))
    _copy(run_csv, csv, keep=lambda line: float(line.split(",", 1)[0]) > 30)  # no calibration routine in it
    with pytest.raises(CalibrationError):
        _store(csv, book)
    assert _counts(book) == []  # no empty session marked clean
    from stackcue.dsp.calibration import Calibration

    sid, events = _store(csv, book, calibration=Calibration.from_event(cal, "test"))
    ((row_sid, how, strides, _),) = _counts(book)
    assert (row_sid, how) == (sid, "clean") and strides == sum(e["type"] == "stride" for e in events) > 0


def test_an_interrupted_save_leaves_nothing_and_the_retry_works(run_csv, tmp_path, monkeypatch):
    csv, book = _copy(run_csv, tmp_path / "run.csv"), tmp_path / "lb.sqlite"
    monkeypatch.setattr(session_store, "FLUSH_SAMPLES", 500)  # some samples are committed before the Ctrl-C
    add_block, seen = session_store._FlushEvery.add_block, []

    def interrupted(self, block):
        seen.append(len(block))
        if sum(seen) > 3000:
            raise KeyboardInterrupt
        add_block(self, block)

    monkeypatch.setattr(session_store._FlushEvery, "add_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _store(csv, book)
    assert _counts(book) == []
    monkeypatch.setattr(session_store._FlushEvery, "add_block", add_block)
    sid, events = _store(csv, book)
    ((row_sid, how, strides, samples),) = _counts(book)
    assert (row_sid, how) == (sid, "clean") and strides == sum(e["type"] == "stride" for e in events) > 0
    assert samples == sum(1 for line in csv.read_text().splitlines() if line[:1] not in ("#", "t"))


def test_a_failed_store_marked_unclean_is_replaced_by_the_retry(run_csv, tmp_path):
    """A store killed outright (no clean-up) is marked unclean at the next daemon start; a retry replaces it."""
    csv, book = _copy(run_csv, tmp_path / "run.csv"), tmp_path / "lb.sqlite"
    sid, _ = _store(csv, book)
    with Logbook(book) as b:
        b.conn.execute("UPDATE sessions SET ended_how = NULL, summary = NULL WHERE id = ?", (sid,))
        b.conn.execute("DELETE FROM strides WHERE rowid % 2 = 0")
        assert b.mark_unclean_sessions() == 1
    sid2, events = _store(csv, book)
    assert sid2 == sid
    ((_, how, strides, _),) = _counts(book)
    assert how == "clean" and strides == sum(e["type"] == "stride" for e in events)
    with pytest.raises(InputError, match="already"):  # a clean one is still refused
        _store(csv, book)


# ---------------------------------------------------------------------------------------------- item 6

ODD_STARTS = ("0001-01-01T00:00:00+00:00", "1970-01-01T00:00:10+00:00", "9999-12-31T23:59:00+00:00")


@pytest.fixture(scope="module")
def odd_book(run_csv, tmp_path_factory) -> tuple[Path, str, list[str]]:
    """A logbook with one session started in 2026 and three whose start times are out of range."""
    d = tmp_path_factory.mktemp("odd_starts")
    book = d / "lb.sqlite"
    good, _ = _store(_copy(run_csv, d / "good.csv", "# started_utc=2026-03-01T07:30:00+00:00\n"), book)
    odd = [
        _store(_copy(run_csv, d / f"odd{i}.csv", f"# started_utc={when}\n"), book)[0]
        for i, when in enumerate(ODD_STARTS)
    ]
    return book, good, odd


def test_sessions_shows_out_of_range_starts_as_unknown(odd_book):
    from stackcue.service.sessions_table import sessions_table

    book, good, odd = odd_book
    with Logbook(book) as b:
        table = sessions_table(b)
    lines = {line.split()[0]: line for line in table.splitlines() if line.split() and line.split()[0] in [good, *odd]}
    assert set(lines) == {good, *odd}
    assert "2026-03-01" in lines[good]
    assert all(lines[s].split()[1] == "unknown" for s in odd), table
    assert "unknown" in table.splitlines()[-1]  # the footnote says what it means


def test_report_compare_with_out_of_range_starts(odd_book, tmp_path):
    from stackcue.service.report_html import build_report

    book, good, odd = odd_book
    with Logbook(book) as b:
        html = build_report(b, good, compare=odd)
        assert "unknown" in html
        for sid in odd:
            assert "unknown" in build_report(b, sid, compare=[good])


@pytest.mark.parametrize("which", range(len(ODD_STARTS)))
def test_exports_of_out_of_range_starts_have_no_wall_clock_time(odd_book, tmp_path, which, capsys):
    from fit_tool.fit_file import FitFile
    from fit_tool.profile.messages.file_id_message import FileIdMessage

    from stackcue.service import export

    book, _, odd = odd_book
    sid = odd[which]
    with Logbook(book) as b:
        err = io.StringIO()
        assert export.write_fit(b, sid, tmp_path / "x.fit", err=err) > 0
        (line,) = err.getvalue().splitlines()  # one warning line
        assert "start time is unknown" in line and sid in line  # stored unknown (NULL) by the store
        fit = FitFile.from_file(str(tmp_path / "x.fit"))
        (fid,) = [r.message for r in fit.records if isinstance(r.message, FileIdMessage)]
        assert 0 <= fid.time_created // 1000 - export.FIT_EPOCH_S < 0x10000000  # FIT system time: relative
        strides = io.StringIO()
        assert export.write_strides_csv(b, sid, strides) > 0
        rows = strides.getvalue().splitlines()
        col = rows[0].split(",").index("time_utc")
        assert all(r.split(",")[col] == "" for r in rows[1:])
        export.write_alerts_csv(b, sid, io.StringIO())
        assert export.write_samples_csv(b, sid, tmp_path / "x.csv") > 0
        assert "started_utc" not in (tmp_path / "x.csv").read_text()[:2000]
        out = io.StringIO()
        export.write_jsonl(b, sid, out)
        assert '"started_utc":null' in out.getvalue().splitlines()[0]


def test_export_cli_warns_once_for_an_out_of_range_start(odd_book, tmp_path, capsys):
    from stackcue.service.cli import main

    book, _, odd = odd_book
    for fmt in ("csv", "fit", "jsonl"):
        capsys.readouterr()
        out = tmp_path / f"x.{fmt}"
        assert main(["export", odd[0], "--logbook", str(book), "-o", str(out)]) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if "start time" in line]
        assert len(warnings) == 1, fmt
    assert main(["sessions", "--logbook", str(book)]) == 0
    capsys.readouterr()
    assert main(["report", odd[2], "--compare", *odd[:2], "--logbook", str(book), "-o", str(tmp_path / "r.html")]) == 0
    assert sum("start time" in line for line in capsys.readouterr().err.splitlines()) == 1


def test_a_start_before_year_1_utc_is_stored_with_a_warning(run_csv, tmp_path):
    csv = _copy(run_csv, tmp_path / "run.csv", "# started_utc=0001-01-01T00:00:00+05:00\n")
    err = io.StringIO()
    sid, _ = store_recording(csv, load_config(), out=io.StringIO(), err=err, logbook=str(tmp_path / "lb.sqlite"))
    assert sid.startswith("00000000T000000Z-")  # no date to write in the id
    (line,) = [x for x in err.getvalue().splitlines() if "started_utc" in x]
    assert "out of range" in line and str(csv) in line
    with Logbook(tmp_path / "lb.sqlite") as b:
        from stackcue.service.sessions_table import sessions_table

        assert "unknown" in sessions_table(b)


@pytest.mark.slow
def test_two_concurrent_save_commands_store_once(run_csv, tmp_path):
    import subprocess
    import sys

    csv, book = _copy(run_csv, tmp_path / "run.csv"), tmp_path / "lb.sqlite"
    exe = str(Path(sys.executable).parent / "stackcue")
    cmd = [exe, "analyze", str(csv), "--save", "--logbook", str(book)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(rc for rc, _ in results) == [0, 2], results
    assert sum("stored as session" in e for _, e in results) == 1
    assert sum("already" in e and "Traceback" not in e for _, e in results) == 1
    ((_, how, strides, samples),) = _counts(book)
    assert how == "clean" and strides > 0
    assert samples == sum(1 for line in csv.read_text().splitlines() if line[:1] not in ("#", "t"))


# ---------------------------------------------------------------------------------------------- second pass


def _open_sessions(book: Path, runners: dict[str, str]) -> None:
    """Sessions still running (``ended_how`` NULL), one per id → runner, each with one stored stride."""
    with Logbook(book) as b:
        for sid, runner in runners.items():
            b.conn.execute(
                "INSERT INTO sessions (id, runner, started_epoch, origin) VALUES (?, ?, 1.77e9, 'live')", (sid, runner)
            )
            b.conn.execute("INSERT INTO strides (session, t_start, t_end, event) VALUES (?, 1.0, 2.5, '{}')", (sid,))


def _ended(book: Path) -> dict[str, str | None]:
    with Logbook(book) as b:
        return {s["id"]: s["ended_how"] for s in b.sessions()}


def test_a_run_start_marks_only_dead_sessions_unclean_on_a_shared_logbook(tmp_path):
    """Another runner's session whose `run` holds its lock is being written now: it must be left running."""
    from stackcue.service.runlock import acquire_run_lock, run_lock_held

    book = tmp_path / "shared.sqlite"
    _open_sessions(book, {"a-old": "ana", "b-live": "ben", "c-dead": "cai"})
    with acquire_run_lock("ben", book, "test"), Logbook(book) as b:
        assert run_lock_held("ben", book) and not run_lock_held("cai", book)
        n = b.mark_unclean_sessions("ana", held=lambda r: run_lock_held(r, book))
    assert n == 2
    assert _ended(book) == {"a-old": "unclean", "b-live": None, "c-dead": "unclean"}
    with Logbook(book) as b:
        assert b.session("a-old")["duration_s"] == 2.5
        assert b.mark_unclean_sessions("ana") == 0  # only its own runner, when nothing says who is alive
        assert b.mark_unclean_sessions("ben") == 1


@pytest.mark.slow
def test_run_leaves_another_live_runners_session_alone(run_csv, tmp_path):
    import subprocess
    import sys

    from stackcue.service.runlock import acquire_run_lock

    book = tmp_path / "shared.sqlite"
    _open_sessions(book, {"a-old": "ana", "b-live": "ben"})
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[runner]\nid = "ana"\n[source]\nkind = "replay"\npath = "{run_csv}"\nspeed = 1000.0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = 9\n[logbook]\npath = "{book}"\n'
    )
    exe = str(Path(sys.executable).parent / "stackcue")
    with acquire_run_lock("ben", book, "test"):
        r = subprocess.run([exe, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ended = _ended(book)
    assert ended.pop("a-old") == "unclean" and ended.pop("b-live") is None
    assert list(ended.values()) == ["clean"]  # the run's own session


def _live_run_into(book: Path, csv: Path, monkeypatch, fail_from: int, fail_until: int | None) -> str:
    """A live session (the daemon's sinks) of ``csv`` whose raw-chunk inserts raise "database or disk is full"
    from the ``fail_from``-th chunk until the ``fail_until``-th (None: to the end)."""
    import sqlite3

    from stackcue.dsp.pipeline import Pipeline
    from stackcue.firmware_bridge.replay import ReplaySource
    from stackcue.service.logbook import LogbookSink
    from stackcue.service.session import Session

    calls = [0]
    write_chunk = LogbookSink._write_chunk

    def full(self, conn, blocks):
        calls[0] += 1
        if calls[0] >= fail_from and (fail_until is None or calls[0] < fail_until):
            raise sqlite3.OperationalError("database or disk is full")
        write_chunk(self, conn, blocks)

    monkeypatch.setattr(LogbookSink, "_write_chunk", full)
    sink = LogbookSink(book, flush_s=0.02)

    session = Session(
        ReplaySource(csv, speed=150.0),  # paced: a chunk per flush, as in real time
        Pipeline(strict_calibration=False),
        [sink],
        runner_id="ana",
        block_sinks=(sink,),
        live=True,
    )
    session.run()
    assert calls[0] > min(fail_from, 3), calls  # the failure, if any, did happen part-way
    return session.session_id


@pytest.mark.parametrize("fail_until", [6, None], ids=["disk-freed-later", "disk-stays-full"])
def test_a_live_session_whose_logbook_writes_failed_is_not_marked_clean(run_csv, tmp_path, monkeypatch, fail_until):
    from stackcue.service.sessions_table import sessions_table

    book = tmp_path / "lb.sqlite"
    sid = _live_run_into(book, run_csv, monkeypatch, fail_from=3, fail_until=fail_until)
    with Logbook(book) as b:
        s = b.session(sid)
        assert s["ended_how"] == "unclean", s
        (why,) = b.events(sid, ["logbook"])
        assert why["state"] == "incomplete" and "disk is full" in why["reason"] and why["raw_dropped"] > 0
        assert "unclean" in sessions_table(b)
        assert b.strides(sid) and b.events(sid, ["summary"])  # the events were kept and written


def test_a_live_session_without_write_failures_is_clean(run_csv, tmp_path, monkeypatch):
    book = tmp_path / "lb.sqlite"
    sid = _live_run_into(book, run_csv, monkeypatch, fail_from=10**9, fail_until=None)
    with Logbook(book) as b:
        assert b.session(sid)["ended_how"] == "clean" and not b.events(sid, ["logbook"])


# ---------------------------------------------------------------------------------------------- third pass: item 6


def test_a_live_start_out_of_range_is_stored_as_unknown_with_one_warning(tmp_path, caplog):
    """The writer and the readers share one range (wallclock.py): a year-9999 start is not stored to be called
    damage or compared as a number later; it is unknown from the start, said once."""
    import logging

    from stackcue.service.logbook import LogbookSink
    from stackcue.service.sessions_table import sessions_table

    book = tmp_path / "lb.sqlite"
    with caplog.at_level(logging.WARNING, logger="stackcue.logbook"):
        sink = LogbookSink(book)
        sink.handle({"type": "session", "state": "started", "session": "Y9999", "started_epoch": 253402300740.0})
        sink.handle({"type": "summary", "duration_s": 5.0, "strides": 0})
        sink.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "Y9999" in line and "out of range" in line and "unknown" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stackcue.logbook"), Logbook(book) as b:
        assert b.conn.execute("SELECT started_epoch FROM sessions").fetchone()[0] is None
        (row,) = [x for x in sessions_table(b).splitlines() if x.startswith("Y9999")]
        assert row.split()[1] == "unknown"
    assert not caplog.records  # no damage reported on reading


def test_sessions_since_leaves_out_unknown_starts_and_counts_them(odd_book, tmp_path, capsys):
    import datetime as dt
    import shutil

    from stackcue.service.cli import main
    from stackcue.service.sessions_table import sessions_table

    src, good, odd = odd_book
    book = tmp_path / "lb.sqlite"
    shutil.copy(src, book)
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    with Logbook(book) as b:
        b.conn.execute("UPDATE sessions SET started_epoch = 253402300740.0 WHERE id = ?", (odd[2],))  # an older
        table = sessions_table(b, since_epoch=since)  # writer stored the number itself
    ids = [line.split()[0] for line in table.splitlines() if line.split()]
    assert good in ids and not set(odd) & set(ids), table
    assert table.splitlines()[-1] == "3 session(s) with an unknown start not shown (--since needs a known start)"
    assert main(["sessions", "--since", "2026-01-01", "--logbook", str(book)]) == 0
    assert "3 session(s) with an unknown start not shown" in capsys.readouterr().out
    with Logbook(book) as b:
        assert "unknown start" not in sessions_table(b)  # without --since every session is listed
