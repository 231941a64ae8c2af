"""Issue 13, items 13-15: the cue client validates payloads, outputs are written safely, one daemon a runner."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from stackcue.service.cue_rules import CueRules

NOW = 1_700_000_000.0
A = "stackcue/ana/alert"
E = "stackcue/ana/event"


def rules() -> CueRules:
    return CueRules(
        "pi",
        "pi",
        10.0,
        {"alert": A, "event": E},
        can_say=True,
        can_buzz=True,
        clock=lambda: NOW,
        monotonic=lambda: 0.0,
    )


def alert(aid=1, **over) -> bytes:
    msg = {
        "type": "alert",
        "t": 30.0,
        "kind": "anterior_tilt",
        "id": aid,
        "session": "S1",
        "alert_id": aid,
        "sent_at": NOW - 0.01,
        "age_s": 0.02,
        "reminder": False,
        "replayed": False,
    }
    msg.update(over)
    return json.dumps(msg).encode()


# ---------------------------------------------------------------- item 13: the cue client validates payloads


def test_calibration_ok_as_a_string_is_not_an_accepted_calibration(caplog):
    r = rules()
    with caplog.at_level(logging.WARNING, logger="stackcue.cue"):
        d = r.decide(E, json.dumps({"type": "calibration", "t": 9.4, "ok": "false", "session": "S1"}))
    assert d.cue is None
    assert "ok 'false' is not true or false" in d.reason
    lines = [rec.getMessage() for rec in caplog.records if "ok 'false'" in rec.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and E in lines[0]
    # a real boolean still cues
    assert r.decide(E, json.dumps({"type": "calibration", "t": 9.5, "ok": True, "session": "S1"})).cue is not None


@pytest.mark.parametrize("age", ["Infinity", "NaN", "-Infinity", '"2"', "null", "[1]", "-5"])
def test_alert_with_an_unknowable_age_is_not_fresh(age, caplog):
    r = rules()
    payload = alert().decode().replace('"age_s": 0.02', f'"age_s": {age}')
    with caplog.at_level(logging.WARNING, logger="stackcue.cue"):
        d = r.decide(A, payload)
    assert d.cue is None, age
    assert "age_s" in d.reason
    assert any("age_s" in rec.getMessage() and "\n" not in rec.getMessage() for rec in caplog.records)
    assert r.counts["queued"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("alert_id", [1]), ("session", {"a": 1}), ("t", [1, 2]), ("kind", 7), ("reminder", "yes")],
)
def test_alert_fields_of_the_wrong_type_are_refused_in_one_line(field, value, caplog):
    r = rules()
    with caplog.at_level(logging.DEBUG, logger="stackcue.cue"):
        d = r.decide(A, alert(**{field: value}))
    assert d.cue is None and field in d.reason
    assert not any(rec.exc_info for rec in caplog.records)


def test_a_good_alert_is_still_cued():
    assert rules().decide(A, alert()).cue is not None


def test_sensor_event_with_an_unknown_state_is_not_cued():
    d = rules().decide(E, json.dumps({"type": "sensor", "t": 1.0, "state": ["lost"], "session": "S1"}))
    assert d.cue is None and "state" in d.reason


# ---------------------------------------------------------------- item 14: -o writes through devices, FIFOs, links


@pytest.fixture(scope="module")
def book(tmp_path_factory, sim_run):
    """One daemon-style session (1.5 min, pelvis only, raw samples) in a fresh logbook."""
    from stackcue.dsp.pipeline import Pipeline
    from stackcue.service.config import load_config
    from stackcue.service.logbook import LogbookSink

    path = tmp_path_factory.mktemp("files") / "logbook.sqlite"
    block = sim_run(minutes=1.5, rate_hz=200, trunk=False, seed=8).block
    sink = LogbookSink(path)
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": "20250101T000000Z-files",
            "runner": "ann",
            "started_epoch": 1735689600.0,
            "clock_synchronised": "yes",
            "source": {"sensor": "simulated", "rate": "200"},
        }
    )
    pipe = Pipeline(load_config().pipeline)
    events: list[dict] = []
    for i in range(0, len(block), 997):
        part = block.slice(i, i + 997)
        sink.add_block(part)
        events += pipe.feed(part)
    events += pipe.finish()
    for e in events:
        sink.handle(e)
    sink.close()
    return path


def _run(*argv: str) -> int:
    from stackcue.service.cli import main

    return main(list(argv))


def _export(book, out, *extra):
    return _run("export", "latest", "-o", str(out), "--logbook", str(book), *extra)


def _report(book, out):
    return _run("report", "latest", "-o", str(out), "--logbook", str(book))


def _write(command, book, out, fmt="csv"):
    """One of the commands that write ``-o``: an export, the HTML report, a runner's archive."""
    if command == "export":
        return _export(book, out, "--format", fmt)
    if command == "runner":
        return _run("runner", "export", "ann", "-o", str(out), "--logbook", str(book))
    return _report(book, out)


@pytest.mark.parametrize("command", ["export", "report", "runner"])
def test_a_symlink_to_a_device_is_written_through_not_replaced(command, book, tmp_path):
    link = tmp_path / "sink.csv"
    link.symlink_to("/dev/null")
    assert _write(command, book, link) == 0
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(("command", "fmt"), [("export", "csv"), ("export", "fit"), ("report", None), ("runner", None)])
def test_a_fifo_is_written_through(command, fmt, book, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(Path(fifo).read_bytes()), daemon=True)
    reader.start()
    rc = _write(command, book, fifo, fmt)
    reader.join(10)
    assert rc == 0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO
    assert got and len(got[0]) > 100
    if command == "runner":  # a zip written as a stream is still a whole zip
        with zipfile.ZipFile(io.BytesIO(got[0])) as z:
            assert z.testzip() is None and "manifest.json" in z.namelist()


def test_report_to_dev_stdout_and_dash(book, capfd):
    assert _report(book, "-") == 0
    out = capfd.readouterr()
    assert out.out.lstrip().lower().startswith("<!doctype html") and "wrote standard output" in out.err
    assert not Path("-").exists()


@pytest.mark.parametrize("command", ["export", "report", "runner"])
def test_regular_files_are_replaced_atomically_and_owner_only(command, book, tmp_path):
    out = tmp_path / ("a.csv" if command == "export" else "a.html")
    out.write_text("old")
    os.chmod(out, 0o644)
    assert _write(command, book, out) == 0
    assert out.read_bytes() != b"old"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # personal data, 0600 everywhere
    assert not list(tmp_path.glob(".*tmp")) and not list(tmp_path.glob("*.tmp"))
    # a link to a regular file replaces the file, and the link stays a link
    target = tmp_path / "target.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    assert _write(command, book, link) == 0
    assert link.is_symlink() and target.read_bytes() != b"old"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_output_helper(tmp_path, capsys):
    from stackcue.errors import StorageError
    from stackcue.service.output_files import write_output

    assert write_output(tmp_path / "new.txt", "héllo") == 6
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o600
    assert write_output("-", "to stdout") == 9 and capsys.readouterr().out == "to stdout"
    assert write_output("/dev/null", b"x" * 10) == 10
    assert write_output(tmp_path / "f.bin", lambda p: p.write_bytes(b"abc")) == 3
    with pytest.raises(StorageError, match="is a folder"):
        write_output(tmp_path, "x")
    with pytest.raises(StorageError, match="does not exist"):
        write_output(tmp_path / "no" / "x.txt", "x")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(StorageError, match="cannot write") as exc:
            write_output(ro / "x.txt", "x")
        assert "\n" not in str(exc.value)
    finally:
        os.chmod(ro, 0o700)


def test_dev_stdout_is_written_through_even_when_it_is_a_regular_file(book, tmp_path):
    """``stackcue export -o /dev/stdout > out.csv``: the shell's file gets the data and stays the same file."""
    out = tmp_path / "out.csv"
    code = (
        "import sys; from stackcue.service.cli import main; "
        f"sys.exit(main(['export', 'latest', '--format', 'csv', '-o', '/dev/stdout', '--logbook', {str(book)!r}]))"
    )
    with open(out, "wb") as fh:
        ino = os.fstat(fh.fileno()).st_ino
        r = subprocess.run([sys.executable, "-c", code], stdout=fh, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_ino == ino  # not replaced by a rename
    assert out.read_text().startswith("t_start,")
    assert not list(tmp_path.glob(".*tmp"))


# ---------------------------------------------------------------- item 15: one `stackcue run` a runner

EXE = str(Path(sys.executable).parent / "stackcue")


def _run_config(tmp_path, rec) -> Path:
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "\n".join(
            [
                "[runner]",
                'id = "ana"',
                "[source]",
                'kind = "replay"',
                f'path = "{rec}"',
                "speed = 1.0",
                "[mqtt]",
                'host = "127.0.0.1"',
                "port = 9",  # nothing listens: the publisher keeps its alerts and retries
                "[logbook]",
                f'path = "{tmp_path / "logbook.sqlite"}"',
            ]
        )
        + "\n"
    )
    return cfg


def _wait_for(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_second_run_for_the_same_runner_refuses_naming_the_lock_and_the_process(tmp_path, sim_csv):
    from stackcue.service.runlock import acquire, lock_path

    rec = sim_csv(minutes=4, rate_hz=200, trunk=False, seed=8)
    cfg = _run_config(tmp_path, rec)
    lock = lock_path("ana", tmp_path / "logbook.sqlite")
    assert lock.parent != tmp_path  # the runner's, per user (service/runlock.py); a second one beside the logbook
    first = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: lock.exists() and f"pid {first.pid}" in lock.read_text(), 30, "the first run's lock")
        second = subprocess.run([EXE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in second.stderr
        assert str(lock) in err[0] and f"pid {first.pid}" in err[0] and "'ana'" in err[0]
        assert first.poll() is None  # the first is untouched
    finally:
        first.kill()  # SIGKILL: no clean-up runs, the kernel drops the flock
        first.wait(10)
    with acquire(lock, "ana") as held:  # free again after kill -9
        assert f"pid {os.getpid()}" in held.path.read_text()


def test_run_lock_is_released_when_the_holder_dies(tmp_path):
    from stackcue.errors import StorageError
    from stackcue.service.runlock import acquire, lock_path

    lock = lock_path("a/b c", None)
    assert lock.name == "stackcue-run-a_b_c.lock"
    path = tmp_path / "x.lock"
    code = (
        "import sys, time; from pathlib import Path; from stackcue.service.runlock import acquire; "
        f"acquire(Path({str(path)!r}), 'ana', 'session S1'); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StorageError) as exc:
            acquire(path, "ana")
        msg = str(exc.value)
        assert "\n" not in msg and str(path) in msg and f"pid {holder.pid}, session S1" in msg
    finally:
        holder.kill()
        holder.wait(10)
    held = acquire(path, "ana")
    held.release()
    held.release()  # safe twice


def test_run_lock_falls_back_when_the_logbook_folder_cannot_hold_it(tmp_path, monkeypatch):
    """A logbook folder that cannot be made must not stop the cues: the lock goes to the runtime folder."""
    from stackcue.service.runlock import acquire_run_lock

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with acquire_run_lock("ana", blocker / "logbook.sqlite") as held:
        assert held.path == tmp_path / "stackcue-run-ana.lock"
    fresh = tmp_path / "new" / "deeper" / "logbook.sqlite"
    with acquire_run_lock("ana", fresh) as held:  # made as the logbook makes its folder
        assert held.paths == [tmp_path / "stackcue-run-ana.lock", fresh.parent / "stackcue-run-ana.lock"]


def test_run_lock_never_follows_a_planted_link(tmp_path, monkeypatch):
    """A link planted where the lock goes is not followed (before: its target was truncated and overwritten
    with the pid), and the temp-folder fallback is a private per-user folder, not /tmp itself."""
    from stackcue.errors import StorageError
    from stackcue.service.runlock import acquire, lock_dirs

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "stackcue-run-ana.lock"
    link.symlink_to(victim)
    with pytest.raises(StorageError):
        acquire(link, "ana")
    assert victim.read_text() == "precious"
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    last = lock_dirs(None)[-1]
    assert last.name == f"stackcue-{os.getuid()}" and stat.S_IMODE(last.stat().st_mode) == 0o700


# ---------------------------------------------------------------- second pass: payloads no parser should choke on

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "1" + "0" * 400  # a valid JSON integer beyond a float's range


@pytest.mark.parametrize(
    "payload",
    [
        DEEP,
        alert().decode().replace('"age_s": 0.02', f'"age_s": {HUGE}'),
        alert().decode().replace('"age_s": 0.02', f'"age_s": {DEEP}'),
        alert().decode().replace('"t": 30.0', '"t": ' + "9" * 5000),  # beyond int() of a string's 4300 digits
    ],
    ids=["deep", "huge_age", "deep_age", "5000_digits"],
)
def test_hostile_json_is_one_warning_not_a_traceback(payload, caplog):
    r = rules()
    with caplog.at_level(logging.DEBUG, logger="stackcue.cue"):
        d = r.decide(A, payload)
    assert d.cue is None
    assert not any(rec.exc_info for rec in caplog.records)
    warned = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warned) == 1 and "\n" not in warned[0] and len(warned[0]) < 300


def test_an_alert_without_age_s_is_not_fresh():
    msg = json.loads(alert())
    del msg["age_s"], msg["sent_at"]
    d = rules().decide(A, json.dumps(msg))
    assert d.cue is None and "age_s" in d.reason


# ---------------------------------------------------------------- second pass: outputs


def test_a_trailing_slash_names_a_folder_and_is_refused(book, tmp_path, capsys):
    out = tmp_path / "a.html"
    out.write_text("keep")
    assert _report(book, str(out) + "/") == 2
    assert "is a folder" in capsys.readouterr().err and out.read_text() == "keep"


def test_a_closed_pipe_through_dev_stdout_stops_quietly(book):
    exe = str(Path(sys.executable).parent / "stackcue")
    cmd = f"'{exe}' export latest --what samples --format csv -o /dev/stdout --logbook '{book}' | head -c 10"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert len(r.stdout) == 10 and "Broken pipe" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr


def test_simulate_and_record_outputs(tmp_path, capsys):
    """simulate's truth files never land in /dev; a recording never goes to a file named '-', never replaces
    an earlier recording, and is owner-only."""
    assert _run("simulate", "-o", "/dev/null", "--minutes", "0.5") == 2
    assert "truth files" in capsys.readouterr().err
    assert not Path("/dev/null.truth.csv").exists()
    for argv in (["record", "--emulate", "-o", "-"], ["simulate", "-o", "-"]):
        assert _run(*argv) == 2
        assert "give a file name" in capsys.readouterr().err
    assert not Path("-").exists()
    old = tmp_path / "old.csv"
    old.write_text("an earlier recording\n")
    assert _run("record", "--emulate", "-o", str(old), "--seconds", "1") == 2
    assert "exists" in capsys.readouterr().err and old.read_text() == "an earlier recording\n"
    new = tmp_path / "new.csv"
    assert _run("record", "--emulate", "-o", str(new), "--speed", "20", "--minutes", "0.5", "--seconds", "3") == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o600 and new.stat().st_size > 1000
