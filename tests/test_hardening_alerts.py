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
    assert got == [("old-session", 1), ("old-session", 4)] + [("new-session", i) for i in (1, 2, 3)]
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
