"""Issue 13, items 1-3: alerts that must not be lost or misdirected.

1. a malformed stored record (outbox line or row, saved calibration) is set aside with one line; every new alert
   still goes out; an unusable outbox path is one line, not a traceback;
2. the outbox replay at start-up sends only this runner's alerts, on this runner's topic;
3. the end line of ``stackcue run`` and the session summary say how many alerts are held for the next start.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_mqtt import Sub, alert, free_port, settings_for, started, wait_until

from stackcue.errors import CalibrationError, StorageError
from stackcue.service.analyze import analyze_file, load_calibration
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook, LogbookOutbox
from stackcue.service.mqtt_connection import MqttSettings
from stackcue.service.mqtt_publisher import MqttPublisher
from stackcue.service.outbox import JsonlOutbox, MemoryOutbox

pytest_plugins = ["broker"]
EXE = str(Path(sys.executable).parent / "stackcue")


def stored(i: int, runner: str = "runner1", session: str = "old-session", **extra) -> dict:
    """An outbox record as the publisher writes it."""
    return {
        "type": "alert",
        "t": float(i),
        "kind": "anterior_tilt",
        "value_deg": 8.0,
        "threshold_deg": 6.0,
        "id": i,
        "session": session,
        "alert_id": i,
        "raised_at": 1_700_000_000.0 + i,
        "sent_at": None,
        "age_s": None,
        "replayed": False,
        "_raised_mono": 5.0,
        "_boot_id": "another-boot",
        "_runner": runner,
        **extra,
    }


# ---------------------------------------------------------------------- item 1: malformed records


def test_malformed_jsonl_records_are_set_aside_and_every_alert_still_goes_out(broker, tmp_path, caplog):
    path = tmp_path / "outbox.jsonl"
    lines = [
        {"add": stored(1)},
        {"add": stored(2, raised_at="yesterday")},  # killed the sender thread
        {"add": stored(3, alert_id=[3])},  # unhashable: killed the reader
        {"delivered": [["x"], 1]},
        {"add": stored(4)},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    sub = Sub(broker, ["stackcue/runner1/alert"])
    with caplog.at_level(logging.WARNING):
        box = JsonlOutbox(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 3 and all(str(path) in w and "\n" not in w for w in warnings), warnings
    side = path.with_name(path.name + ".rejected")
    kept = [json.loads(x) for x in side.read_text().splitlines()]
    assert len(kept) == 3 and kept[0]["add"]["raised_at"] == "yesterday"  # not silently dropped
    assert (side.stat().st_mode & 0o777) == 0o600
    assert [p["alert_id"] for p in box.pending()] == [1, 4]
    pub = started(MqttPublisher(settings_for(broker), "new-session", box))
    for i in range(1, 4):
        pub.publish_event(alert(i))
    wait_until(lambda: len(sub.on("stackcue/runner1/alert")) >= 5, what="every alert")
    got = [(a["session"], a["alert_id"]) for a in sub.json("stackcue/runner1/alert")]
    # this session's alerts may overtake the replayed backlog (a fresh alert goes first); each in its order
    assert [g for g in got if g[0] == "old-session"] == [("old-session", 1), ("old-session", 4)]
    assert [g for g in got if g[0] == "new-session"] == [("new-session", i) for i in (1, 2, 3)]
    pub.stop()
    sub.close()
    assert JsonlOutbox(path).pending() == []


def test_jsonl_outbox_splits_records_at_newlines_only_and_keeps_rejected_bytes(tmp_path):
    """A record holding U+2028 or \\x1c (legal inside JSON text) is one record; a non-UTF-8 line is set aside
    byte for byte, not with replacement characters."""
    path = tmp_path / "outbox.jsonl"
    odd = json.dumps({"add": stored(1, note="a\u2028b\x1cc")}, ensure_ascii=False).encode()
    bad = b'{"add": "\xff\xfe"}'
    path.write_bytes(odd + b"\r\n" + bad + b"\n" + json.dumps({"add": stored(2)}).encode() + b"\n")
    box = JsonlOutbox(path)
    assert [(p["alert_id"], p.get("note")) for p in box.pending()] == [(1, "a\u2028b\x1cc"), (2, None)]
    assert path.with_name(path.name + ".rejected").read_bytes() == bad + b"\n"


@pytest.mark.parametrize("checked", [True, False])
def test_a_bad_alert_never_stops_the_sender(broker, caplog, monkeypatch, checked):
    """An outbox that does not check what it reads (memory) still cannot kill the sender; nor can a record the
    replay's check let through (``checked=False``): the bad alert is left in the outbox, the new one goes out."""
    import stackcue.service.mqtt_publisher as mp

    if not checked:
        monkeypatch.setattr(mp, "record_problem", lambda p: None)
    box = MemoryOutbox()
    box.add(stored(1, raised_at="yesterday", _boot_id="x"))
    sub = Sub(broker, ["stackcue/runner1/alert"])
    with caplog.at_level(logging.WARNING):
        pub = started(MqttPublisher(settings_for(broker), "s", box))
        pub.publish_event(alert(1))
        wait_until(lambda: len(sub.on("stackcue/runner1/alert")) >= 1, what="the new alert")
        time.sleep(0.3)
    got = sub.json("stackcue/runner1/alert")
    if checked:
        assert [a["session"] for a in got] == ["s"]
        assert [p["session"] for p in box.pending()] == ["old-session"]  # kept, not dropped
        assert any("raised_at 'yesterday'" in r.getMessage() for r in caplog.records)
    else:  # let through: it goes out with an unknown age, which no cue client takes for fresh
        assert sorted(a["session"] for a in got) == ["old-session", "s"]
        assert next(a for a in got if a["session"] == "old-session")["age_s"] is None
    assert pub._sender.is_alive()
    pub.stop()
    sub.close()


def test_malformed_logbook_outbox_rows_are_set_aside(tmp_path, caplog):
    book = Logbook(tmp_path / "l.sqlite")
    box = LogbookOutbox(book, "s")
    box.add(stored(1))
    box.add(stored(2))
    box.add(stored(3))
    with sqlite3.connect(tmp_path / "l.sqlite") as c:
        c.execute("UPDATE alerts SET payload = '{\"session\": ' WHERE alert_id = 2")
        c.execute("UPDATE alerts SET payload = json_set(payload, '$.raised_at', 'noon') WHERE alert_id = 3")
    with caplog.at_level(logging.WARNING):
        got = box.pending()
    assert [p["alert_id"] for p in got] == [1]
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 2
    with sqlite3.connect(tmp_path / "l.sqlite") as c:  # still in the logbook, no longer queued
        rows = c.execute("SELECT alert_id, queued, delivered FROM alerts ORDER BY alert_id").fetchall()
    assert rows == [(1, 1, 0), (2, 0, 0), (3, 0, 0)]
    assert box.pending() == got


def test_outbox_path_that_is_a_folder_or_unwritable_is_one_line(tmp_path):
    with pytest.raises(StorageError) as e:
        JsonlOutbox(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(StorageError) as e:
        JsonlOutbox("/proc/stackcue-outbox.jsonl")  # a folder no one can write into (even root)
    assert "/proc/stackcue-outbox.jsonl" in str(e.value)


@pytest.mark.slow
def test_run_with_an_unusable_outbox_says_one_line_and_runs(sim_csv, tmp_path):
    csv = sim_csv(minutes=4, rate_hz=200, trunk=True, seed=51)
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[runner]\nid = "ana"\n[source]\nkind = "replay"\npath = "{csv}"\nspeed = 200.0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\noutbox = "{tmp_path}"\n[logbook]\npath = ""\n'
    )
    r = subprocess.run([EXE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if "outbox" in x]
    assert len(lines) == 2 and str(tmp_path) in lines[0], r.stderr  # the refusal, and the end line
    assert lines[1].startswith("stackcue run: session") and "not delivered and lost (no durable outbox" in lines[1]
    assert "ALERT" in r.stdout


@pytest.mark.parametrize(
    "saved",
    [
        {"type": "calibration", "segments": "pelvis"},
        {"type": "calibration", "segments": 5},
        {"type": "calibration", "segments": {"pelvis": [1, 2]}},
        {"type": "calibration", "segments": {"pelvis": {"q_body_from_sensor_wxyz": "abcd"}}},
        {"segments": {"pelvis": {"q_body_from_sensor_wxyz": [1, 0, 0, 0], "gyro_bias_rad_s": 1}}},
        {"type": "calibration", "segments": {"pelvis": {"q_body_from_sensor_wxyz": [[1], 0, 0, 0]}}},
        {"type": "calibration", "segments": ["pelvis"]},
        b"\xff\xfe{}",  # not text: a binary file given by mistake
    ],
)
def test_malformed_saved_calibration_is_one_line(tmp_path, saved):
    path = tmp_path / "cal.json"
    path.write_bytes(saved if isinstance(saved, bytes) else json.dumps(saved).encode())
    with pytest.raises(CalibrationError) as e:
        load_calibration(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------- item 2: the replay stays with its runner


def test_replay_sends_only_this_runners_alerts_on_its_own_topic(broker, tmp_path):
    path = tmp_path / "shared.sqlite"
    book = Logbook(path)
    with sqlite3.connect(path) as c:  # an alert stored before the outbox said its runner: the session row does
        c.execute("INSERT INTO sessions (id, runner, started_epoch) VALUES ('ana-old', 'ana', 1.0)")
    legacy = {k: v for k, v in stored(9, session="ana-old").items() if k != "_runner"}
    LogbookOutbox(book, "ana-old").add(legacy)
    dead = MqttSettings(host="127.0.0.1", port=free_port(), runner_id="ana", reconnect_min_s=0.2)
    ana = MqttPublisher(dead, "ana-1", LogbookOutbox(book, "ana-1"))
    ana.start()
    ana.publish_event(alert(1))
    wait_until(lambda: len(LogbookOutbox(book).pending()) == 2, what="ana's alert in the outbox")
    ana.stop(0.2)
    sub = Sub(broker, ["stackcue/+/alert"])
    ben = started(MqttPublisher(settings_for(broker, runner_id="ben"), "ben-1", LogbookOutbox(book, "ben-1")))
    ben.publish_event(alert(1))
    wait_until(lambda: len(sub.msgs) >= 1, what="ben's alert")
    time.sleep(0.5)
    assert [(m[0], json.loads(m[1])["session"]) for m in sub.msgs] == [("stackcue/ben/alert", "ben-1")]
    ben.stop()
    assert {p["session"] for p in LogbookOutbox(book).pending()} == {"ana-1", "ana-old"}  # left for ana
    ana2 = started(MqttPublisher(settings_for(broker, runner_id="ana"), "ana-2", LogbookOutbox(book, "ana-2")))
    wait_until(lambda: len(sub.msgs) >= 3, what="ana's replay")
    time.sleep(0.3)
    assert sorted((m[0], json.loads(m[1])["session"]) for m in sub.msgs[1:]) == [
        ("stackcue/ana/alert", "ana-1"),
        ("stackcue/ana/alert", "ana-old"),
    ]
    ana2.stop()
    sub.close()


# ---------------------------------------------------------------------- item 3: what is held is said


def test_publisher_counts_what_it_holds_for_the_next_start(tmp_path):
    dead = MqttSettings(host="127.0.0.1", port=free_port(), runner_id="ana", reconnect_min_s=0.2)
    pub = MqttPublisher(dead, "s", JsonlOutbox(tmp_path / "o.jsonl"))
    pub.start()
    for i in range(1, 4):
        pub.publish_event(alert(i))
    pub.stop(0.3)
    assert pub.held_alerts() == 3
    assert "3 alerts held for the next start" in pub.held_line()
    assert len(JsonlOutbox(tmp_path / "o.jsonl").pending()) == 3
    nobox = MqttPublisher(dead, "s")
    nobox.start()
    nobox.publish_event(alert(1))
    nobox.stop(0.3)
    assert "1 alert not delivered" in nobox.held_line() and "lost" in nobox.held_line()


@pytest.mark.slow
def test_run_end_line_and_summary_say_how_many_alerts_are_held(sim_csv, tmp_path):
    csv = sim_csv(minutes=4, rate_hz=200, trunk=True, seed=51)
    events = analyze_file(csv, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    n = sum(e["type"] == "alert" for e in events)
    assert n >= 2
    cfg = tmp_path / "run.toml"
    outbox = tmp_path / "outbox.jsonl"
    cfg.write_text(
        f'[runner]\nid = "ana"\n[source]\nkind = "replay"\npath = "{csv}"\nspeed = 200.0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\noutbox = "{outbox}"\n'
        f'[logbook]\npath = "{tmp_path / "logbook.sqlite"}"\n'
    )
    r = subprocess.run([EXE, "run", "--config", str(cfg), "--jsonl"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    end = [x for x in r.stderr.splitlines() if x.startswith("stackcue run: session")]
    assert len(end) == 1 and f"{n} alerts held for the next start" in end[0], r.stderr
    summary = [json.loads(x) for x in r.stdout.splitlines() if '"summary"' in x][-1]
    assert summary["alerts_held"] == n
    assert len(JsonlOutbox(outbox).pending()) == n
    r2 = subprocess.run([EXE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert f"{2 * n} alerts held for the next start" in r2.stderr  # the earlier run's too
    assert f"{2 * n} held for the next start" in r2.stdout  # the human summary line


# ---------------------------------------------------------------------- second pass: hostile stored records

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "1" + "0" * 400


def test_jsonl_outbox_sets_aside_deep_and_huge_records(tmp_path, caplog):
    path = tmp_path / "outbox.jsonl"
    lines = [
        '{"add": ' + DEEP + "}",  # RecursionError in json.loads: crashed `run` at every start
        json.dumps({"add": stored(1)}).replace('"raised_at": 1700000001.0', f'"raised_at": {HUGE}'),  # OverflowError
        json.dumps({"add": stored(2)}).replace('"alert_id": 2', '"alert_id": ' + "7" * 5000),  # no int() repr
        json.dumps({"add": stored(3)}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        box = JsonlOutbox(path)
    assert [p["alert_id"] for p in box.pending()] == [3]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 3 and all("\n" not in w and len(w) < 300 for w in warned), warned
    assert len(path.with_name(path.name + ".rejected").read_bytes().split(b"\n")) == 4  # 3 lines kept aside


def test_an_outbox_that_is_a_fifo_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "outbox.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="not a regular file") as e:
        JsonlOutbox(fifo)
    assert str(fifo) in str(e.value)


def test_two_daemons_sharing_one_outbox_lose_nothing(tmp_path):
    """docs/mqtt.md allows a shared [mqtt] outbox: one process's start-up rewrite must not drop what another
    appends meanwhile (before: about half of 2000 lost)."""
    path = tmp_path / "outbox.jsonl"
    code = (
        "import sys; from stackcue.service.outbox import JsonlOutbox\n"
        "box = JsonlOutbox(sys.argv[1], compact=False)\n"
        "for i in range(2000): box.add({'session': 'w', 'alert_id': i, 'kind': 'anterior_tilt', 't': 1.0})\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(path)])
    while writer.poll() is None:
        JsonlOutbox(path)  # another daemon starting up: rewrites the file
    assert writer.returncode == 0
    assert len(JsonlOutbox(path).pending()) == 2000


def test_stored_non_finite_values_go_out_as_strict_json_and_unknown_age_is_null(broker, tmp_path):
    box = MemoryOutbox()
    box.add(stored(1, _boot_id="another-boot", raised_at=None, value_deg=float("nan")))  # raise time unknown
    box.add(stored(2, _boot_id="another-boot", raised_at=time.time() + 3600))  # in the future: clock set back
    sub = Sub(broker, ["stackcue/runner1/alert"])
    pub = started(MqttPublisher(settings_for(broker), "new", box))
    wait_until(lambda: len(sub.on("stackcue/runner1/alert")) >= 2, what="the replay")
    assert all("NaN" not in m[1] for m in sub.on("stackcue/runner1/alert"))
    got = {a["alert_id"]: a for a in sub.json("stackcue/runner1/alert")}
    assert got[1]["value_deg"] is None and got[1]["age_s"] is None and got[2]["age_s"] is None
    pub.stop()
    sub.close()


@pytest.mark.parametrize(
    "text",
    [
        DEEP,
        '{"type": "calibration", "segments": {"pelvis": {"q_body_from_sensor_wxyz": [1, 0, 0, 0], '
        f'"gyro_bias_rad_s": [{HUGE}, 0, 0]' + "}}}",
        '{"type": "calibration", "hinge_deg": ' + "9" * 5000 + "}",
        '{"type": "calibration", "ok": "false", "segments": {}}',
        '{"type": "calibration", "segments": {"pelvis": {"q_body_from_sensor_wxyz": ["1", 0, 0, 0], '
        '"gyro_bias_rad_s": [0, 0, 0]}}}',
        '{"type": "calibration", "segments": {"pelvis": {"q_body_from_sensor_wxyz": [true, 0, 0, 0], '
        '"gyro_bias_rad_s": [0, 0, 0]}}}',
    ],
    ids=["deep", "huge_bias", "5000_digits", "ok_string", "q_string", "q_bool"],
)
def test_hostile_saved_calibrations_are_one_line(tmp_path, text):
    path = tmp_path / "cal.json"
    path.write_text(text)
    with pytest.raises(CalibrationError) as e:
        load_calibration(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 300


# ---------------------------------------------------------------- item 15: one run a runner, whatever its logbook


def _runner_config(tmp_path: Path, name: str, runner: str, rec: Path, logbook: Path | None) -> Path:
    cfg = tmp_path / f"{name}.toml"
    lines = [
        f'[runner]\nid = "{runner}"',
        f'[source]\nkind = "replay"\npath = "{rec}"\nspeed = 1.0',
        '[mqtt]\nhost = "127.0.0.1"\nport = 9',  # nothing listens: the run keeps going
    ]
    if logbook is not None:
        lines.append(f'[logbook]\npath = "{logbook}"')
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _wait_lock(path: Path, pid: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and f"pid {pid}" in path.read_text():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no lock {path} from pid {pid}")


@pytest.mark.slow
@pytest.mark.parametrize("second_logbook", ["other", "none"])
def test_a_second_run_of_a_runner_is_refused_whatever_its_logbook(sim_csv, tmp_path, second_logbook):
    """The lock is the runner's, per user, not the logbook folder's: before, a second run with another logbook
    (or none) started and fought the first over the MQTT client id."""
    from stackcue.service.runlock import lock_path

    rec = sim_csv(minutes=4, rate_hz=200, trunk=False, seed=8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first_cfg = _runner_config(tmp_path, "first", "ana", rec, tmp_path / "a" / "logbook.sqlite")
    other = tmp_path / "b" / "logbook.sqlite" if second_logbook == "other" else None
    second_cfg = _runner_config(tmp_path, "second", "ana", rec, other)
    lock = lock_path("ana", None)
    assert tmp_path / "a" not in lock.parents  # per user, not beside the logbook
    first = subprocess.Popen([EXE, "run", "--config", str(first_cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_lock(lock, first.pid, first)
        second = subprocess.run([EXE, "run", "--config", str(second_cfg)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in second.stderr, second.stderr
        assert str(lock) in err[0] and f"pid {first.pid}" in err[0] and "'ana'" in err[0]
        assert first.poll() is None  # the first is untouched
        if other is not None:
            assert not other.exists()  # refused before its logbook was opened
    finally:
        first.kill()
        first.wait(10)


def test_a_shell_of_the_service_account_meets_the_services_lock(tmp_path, monkeypatch):
    """The service (systemd's RUNTIME_DIRECTORY=/run/stackcue, PrivateTmp) and a shell of its account (its own
    XDG_RUNTIME_DIR, another logbook) took their locks in different folders and both ran the same runner."""
    from stackcue.errors import StorageError
    from stackcue.service import runlock

    svc, xdg = tmp_path / "run-stackcue", tmp_path / "xdg"
    svc.mkdir(mode=0o700)
    xdg.mkdir(mode=0o700)
    monkeypatch.setattr(runlock, "SERVICE_RUNTIME_DIR", svc)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(svc))  # the service
    service = runlock.acquire_run_lock("ana", tmp_path / "a" / "logbook.sqlite", "service")
    try:
        monkeypatch.delenv("RUNTIME_DIRECTORY")  # a shell of the same account, another logbook
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
        with pytest.raises(StorageError) as exc:
            runlock.acquire_run_lock("ana", tmp_path / "b" / "logbook.sqlite", "shell")
        assert str(svc / "stackcue-run-ana.lock") in str(exc.value)
        assert not list(xdg.iterdir()) and not (tmp_path / "b").exists()  # nothing taken, nothing made
    finally:
        service.release()
    svc.chmod(0o777)  # a folder others may write is never trusted with the lock
    shell = runlock.acquire_run_lock("ana", None, "shell")
    try:
        assert shell.path.parent == xdg
    finally:
        shell.release()


@pytest.mark.slow
def test_two_runners_each_run_with_their_own_lock_on_a_shared_logbook(sim_csv, tmp_path):
    """Different runners are different locks, even when they share one logbook (and its folder)."""
    from stackcue.service.runlock import lock_path, run_lock_held

    rec = sim_csv(minutes=4, rate_hz=200, trunk=False, seed=8)
    book = tmp_path / "shared.sqlite"
    procs = {}
    try:
        for runner in ("ana", "ben"):
            cfg = _runner_config(tmp_path, runner, runner, rec, book)
            p = procs[runner] = subprocess.Popen(
                [EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            _wait_lock(lock_path(runner, None), p.pid, p)
            _wait_lock(tmp_path / f"stackcue-run-{runner}.lock", p.pid, p)  # and the one beside the logbook
        time.sleep(1.0)
        for runner, p in procs.items():
            assert p.poll() is None, p.communicate()
            assert run_lock_held(runner, book)  # what a starting run reads (mark_unclean_sessions)
        assert not run_lock_held("cai", book)
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)
    assert not run_lock_held("ana", book) and not run_lock_held("ben", book)


# ---------------------------------------------------------------- a live alert is never stuck behind a backlog

BACKLOG = 10_000


def _backlog_outbox(path: Path, n: int, runner: str) -> JsonlOutbox:
    """A JSON-lines outbox holding ``n`` undelivered alerts of earlier sessions (the broker was down)."""
    path.write_text("".join(json.dumps({"add": stored(i, runner=runner)}) + "\n" for i in range(n)))
    return JsonlOutbox(path)


@pytest.mark.slow
def test_a_live_alert_goes_out_before_a_10000_alert_backlog(broker, tmp_path, capsys):
    """Before: the replay was sent FIFO, so an alert raised now waited behind 10 000 old ones (measured: printed
    below) and reached the runner past ``[cue] max_age_s``. Now this session's alerts go first; the backlog
    follows, all of it, on this runner's topic, each once acknowledged."""
    outbox = _backlog_outbox(tmp_path / "outbox.jsonl", BACKLOG, "ana")
    sub = Sub(broker, ["stackcue/+/alert"])
    pub = started(MqttPublisher(settings_for(broker, runner_id="ana"), "live-1", outbox))
    try:
        time.sleep(0.05)  # the replay is under way
        raised = time.monotonic()
        pub.publish_event(alert(1))

        def live() -> list:
            return [m for m in list(sub.msgs) if json.loads(m[1])["session"] == "live-1"]

        wait_until(lambda: live(), 120, "the live alert")
        latency = live()[0][3] - raised
        before = sum(1 for m in list(sub.msgs) if m[3] < live()[0][3])
        with capsys.disabled():
            print(f"\nlive alert behind a {BACKLOG} backlog: {latency * 1000:.1f} ms, after {before} old alerts")
        assert latency < 1.0, f"{latency:.2f} s"
        assert json.loads(live()[0][1])["age_s"] < 1.0
        wait_until(lambda: len(sub.msgs) >= BACKLOG + 1, 300, "the whole backlog")
        wait_until(lambda: not outbox.pending(), 240, "every delivery recorded in the outbox")
    finally:
        pub.stop()
        sub.close()
    got = [(m[0], json.loads(m[1])["session"], json.loads(m[1])["alert_id"]) for m in sub.msgs]
    assert {t for t, _, _ in got} == {"stackcue/ana/alert"}
    assert {(s, a) for _, s, a in got} == {("old-session", i) for i in range(BACKLOG)} | {("live-1", 1)}


# ---------------------------------------------------------------- stored records that are not alerts; line ends


def test_a_stored_record_that_is_not_an_alert_is_set_aside_not_replayed(broker, tmp_path, caplog):
    """Before: ``"type": "stride"`` (or anything) in an outbox record was replayed on the alert topic."""
    path = tmp_path / "outbox.jsonl"
    recs = [stored(1, runner="ana"), stored(2, runner="ana", type="stride"), stored(3, runner="ana", type=None)]
    path.write_text("".join(json.dumps({"add": r}) + "\n" for r in recs))
    with caplog.at_level(logging.WARNING, logger="stackcue.mqtt"):
        outbox = JsonlOutbox(path)
    warned = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(warned) == 2 and "type 'stride' is not 'alert'" in warned[0] and "\n" not in warned[0]
    assert len((tmp_path / "outbox.jsonl.rejected").read_text().splitlines()) == 2  # kept, not dropped
    sub = Sub(broker, ["stackcue/+/alert"])
    pub = started(MqttPublisher(settings_for(broker, runner_id="ana"), "live-1", outbox))
    pub.publish_event(alert(9))
    wait_until(lambda: len(sub.msgs) >= 2, what="the alerts")
    time.sleep(0.3)
    pub.stop()
    sub.close()
    got = sorted((json.loads(m[1])["session"], json.loads(m[1])["alert_id"]) for m in sub.msgs)
    assert got == [("live-1", 9), ("old-session", 1)]


def test_a_logbook_row_that_is_not_an_alert_is_set_aside(tmp_path, caplog):
    book = Logbook(tmp_path / "book.sqlite")
    LogbookOutbox(book, "old-session").add(stored(1, runner="ana", type="stride"))
    with caplog.at_level(logging.WARNING, logger="stackcue.mqtt"):
        assert LogbookOutbox(book).pending() == []
    assert any("type 'stride' is not 'alert'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("end", ["\r\n", "\r"])
def test_outbox_line_ends_crlf_is_read_cr_only_is_set_aside(tmp_path, caplog, end):
    """CRLF (a file edited on Windows) is read as it is meant. CR-only ends are not line ends here: the file
    is then one record that is not JSON, set aside whole with a warning that says why; nothing is lost."""
    path = tmp_path / "outbox.jsonl"
    text = "".join(json.dumps({"add": stored(i, runner="ana")}) + end for i in range(3))
    path.write_bytes(text.encode())
    with caplog.at_level(logging.WARNING, logger="stackcue.mqtt"):
        pend = JsonlOutbox(path).pending()
    rejected = tmp_path / "outbox.jsonl.rejected"
    if end == "\r\n":
        assert [p["alert_id"] for p in pend] == [0, 1, 2] and not rejected.exists()
    else:
        assert pend == []
        assert rejected.read_bytes() == text.encode() + b"\n"  # every byte kept
        msgs = [r.getMessage() for r in caplog.records]
        assert len(msgs) == 1 and "CR" in msgs[0] and "\r" not in msgs[0]
