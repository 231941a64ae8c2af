"""The session logbook (service/logbook/) on real SQLite files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stackcue.firmware_bridge.block import Block
from stackcue.service.logbook import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Logbook,
    LogbookError,
    LogbookOutbox,
    LogbookSink,
    decode_chunk,
    encode_chunk,
)
from stackcue.service.logbook.schema import APPLICATION_ID

ROOT = Path(__file__).resolve().parents[1]


def _block(t0: float, n: int, rate: float = 200.0, trunk: bool = False, seed: int = 0) -> Block:
    rng = np.random.default_rng(seed)
    t = t0 + np.arange(n) / rate
    acc = rng.normal(0, 3, (n, 3)) + np.array([0, 0, 9.81])
    gyr = rng.normal(0, 0.5, (n, 3))
    if not trunk:
        return Block(t, acc, gyr)
    valid = rng.random(n) > 0.2
    ta = rng.normal(0, 2, (n, 3))
    tg = rng.normal(0, 0.3, (n, 3))
    ta[~valid] = np.nan
    tg[~valid] = np.nan
    return Block(t, acc, gyr, ta, tg, valid)


def _stride(i: int) -> dict:
    return {
        "type": "stride",
        "t_start": round(10 + 0.7 * i, 4),
        "t_end": round(10.7 + 0.7 * i, 4),
        "cadence_spm": 170.0 + i % 3,
        "steady": i % 5 != 0,
        "pelvic_tilt_deg": 12.5 + 0.01 * i,
        "trunk_lean_deg": None if i % 4 == 0 else 5.25,
        "stack_deg": None if i % 4 == 0 else -7.0,
        "contact_time_left_s": 0.245,
    }


def _session(sid: str = "20250101T000000Z-abcdef") -> dict:
    return {
        "type": "session",
        "t": 0.0,
        "state": "started",
        "session": sid,
        "runner": "ann",
        "started_epoch": 1735689600.0,
        "clock_synchronised": "yes",
        "source": {"kind": "simulated"},
    }


def test_schema_and_private_mode(tmp_path):
    path = tmp_path / "sub" / "logbook.sqlite"
    old = os.umask(0o022)
    try:
        lb = Logbook(path)
        lb.conn.execute("INSERT INTO sessions (id) VALUES ('x')")  # a write makes the -wal/-shm files
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert p.exists(), p
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert os.umask(0o022) == 0o022  # restored after connecting
        assert lb.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        tables = {r[0] for r in lb.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"sessions", "strides", "alerts", "raw_chunks", "events", "sync_acked", "sync_deletions"} <= tables
        assert "cue_plans" in tables
        cols = {r[1] for r in lb.conn.execute("PRAGMA table_info(sessions)")}
        assert cols == {
            "id",
            "runner",
            "started_epoch",
            "clock_synchronised",
            "source",
            "calibration",
            "config",
            "ended_epoch",
            "ended_how",
            "summary",
            "notes",
            "duration_s",
            "distance_m",
            "origin",
            "ended_reason",
        }
        lb.close()
    finally:
        os.umask(old)


def test_wal_and_synchronous_full_on_every_connection(tmp_path):
    lb = Logbook(tmp_path / "l.sqlite")
    for conn in (lb.conn, lb.connect()):
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    lb.close()


def test_migration_from_version_0_and_refusal_of_a_newer_file(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x)")  # a version-0 file with a table: another application's
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    with pytest.raises(LogbookError, match="is not a stackcue logbook"):
        Logbook(path)
    path.unlink()
    sqlite3.connect(path).close()  # an empty SQLite file is a new logbook
    lb = Logbook(path)
    assert lb.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert lb.sessions() == []
    lb.conn.execute("INSERT INTO strides (session, t_start, t_end, event) VALUES ('s', 1, 2, '{}')")
    lb.close()
    Logbook(path).close()  # opening again is a no-op migration

    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 7")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.close()
    with pytest.raises(LogbookError, match="newer"):
        Logbook(newer)


def _database_at_version(path: Path, version: int) -> None:
    """A logbook as a stackcue of schema ``version`` left it, with one finished session in it (v ≥ 1)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for v in range(version):
        MIGRATIONS[v](conn)
    conn.execute(f"PRAGMA user_version = {version}")
    if version >= 1:
        cal = {"type": "calibration", "t": 8.2, "ok": True, "segments": {}}
        summ = {"type": "summary", "duration_s": 200.0, "strides": 1, "alerts": 1}
        conn.execute(
            "INSERT INTO sessions (id, runner, started_epoch, calibration, summary, ended_how) "
            "VALUES ('S', 'ann', 1735689600.0, ?, ?, 'clean')",
            (json.dumps(cal), json.dumps(summ)),
        )
        if version >= 2:  # v2 wrote these itself, and its calibration and summary as events
            conn.execute("UPDATE sessions SET duration_s = 200.0, origin = 'live'")
            conn.execute(
                "INSERT INTO events (session, t, type, event) VALUES ('S', 8.2, 'calibration', ?)", (json.dumps(cal),)
            )
            conn.execute(
                "INSERT INTO events (session, t, type, event) VALUES ('S', 200, 'summary', ?)", (json.dumps(summ),)
            )
        conn.execute("INSERT INTO strides (session, t_start, t_end, event) VALUES ('S', 10, 10.7, '{\"t_start\":10}')")
        conn.execute(
            "INSERT INTO alerts (session, alert_id, t, kind, payload) VALUES ('S', 1, 95.4, 'anterior_tilt', '{}')"
        )
    conn.close()


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_migration_from_every_earlier_version_keeps_the_data(tmp_path, version):
    path = tmp_path / f"v{version}.sqlite"
    _database_at_version(path, version)
    lb = Logbook(path)
    assert lb.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert lb.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    if version >= 1:
        s = lb.session("S")
        assert (s["runner"], s["ended_how"], s["duration_s"], s["origin"]) == ("ann", "clean", 200.0, "live")
        assert [e["type"] for e in lb.events("S")] == ["calibration", "summary"]
        assert lb.strides("S") == [{"t_start": 10}]
        assert [a["t"] for a in lb.alerts("S")] == [95.4]
    lb.close()


def test_session_lookup_by_prefix_latest_and_ambiguity(tmp_path):
    lb = Logbook(tmp_path / "l.sqlite")
    for sid, t0 in (("20250101T000000Z-aaaaaa", 1.0), ("20250101T000000Z-aabbbb", 2.0), ("20250102T000000Z-cc", 3.0)):
        lb.conn.execute("INSERT INTO sessions (id, runner, started_epoch) VALUES (?, 'ann', ?)", (sid, 1.77e9 + t0))
    assert lb.session("20250102")["id"] == "20250102T000000Z-cc"
    assert lb.session("latest")["id"] == "20250102T000000Z-cc"
    assert lb.session("20250101T000000Z-aab")["id"] == "20250101T000000Z-aabbbb"
    assert lb.session("2026") is None
    with pytest.raises(LogbookError, match="ambiguous: 20250101T000000Z-aaaaaa, 20250101T000000Z-aabbbb"):
        lb.session("20250101T000000Z-aa")
    assert [s["id"] for s in lb.sessions(since_epoch=1.77e9 + 2)] == ["20250101T000000Z-aabbbb", "20250102T000000Z-cc"]
    lb.conn.execute("INSERT INTO sessions (id, runner, started_epoch) VALUES ('odd', 'ann', 253402300740.0)")
    assert "odd" not in [s["id"] for s in lb.sessions(since_epoch=1.77e9)]  # year 9999: an unknown start
    assert lb.sessions(runner="bob") == []
    lb.close()


def test_chunk_encoding_round_trip():
    b = _block(3600.123456789, 57, trunk=True, seed=4)
    data = encode_chunk(b.t, b.acc, b.gyr, b.trunk_acc, b.trunk_gyr, b.trunk_valid)
    out = decode_chunk(data, 57, True)
    assert np.array_equal(out["t"], b.t)  # float64: exact
    assert np.array_equal(out["acc"], b.acc.astype(np.float32))
    assert np.array_equal(out["trunk_gyr"], b.trunk_gyr.astype(np.float32), equal_nan=True)
    assert np.array_equal(out["trunk_valid"], b.trunk_valid)
    one = _block(0.0, 1)
    assert np.array_equal(
        decode_chunk(encode_chunk(one.t, one.acc, one.gyr), 1, False)["gyr"], one.gyr.astype(np.float32)
    )


def test_a_session_lands_complete(tmp_path):
    path = tmp_path / "l.sqlite"
    sid = "20250101T000000Z-abcdef"
    sink = LogbookSink(path, config={"drift": {"tilt_deg": 5}}, wall=lambda: 1735690000.0)
    blocks = [_block(0.0, 7), _block(0.035, 0)] + [_block(0.035 + 0.05 * k, 10, seed=k) for k in range(30)]
    sink.add_block(blocks[0])  # before the session event has been written: held, then attached
    sink.handle(_session(sid))
    sink.handle({"type": "calibration", "t": 5.0, "ok": False, "reason": "moved: stand still"})
    sink.handle({"type": "calibration", "t": 9.0, "ok": True, "source": "routine", "segments": {"pelvis": {}}})
    sink.handle({"type": "calibration_suspect", "t": 9.5})  # unknown to the logbook: ignored
    fed = [_stride(i) for i in range(250)]
    for i, ev in enumerate(fed):
        sink.handle(ev)
        if i % 40 == 0:
            sink.add_block(blocks[1 + i // 40])
        if i == 100:
            sink.handle(
                {
                    "type": "alert",
                    "t": 80.0,
                    "decided_t": 79.0,
                    "kind": "pelvic_tilt",
                    "value_deg": 18.2,
                    "threshold_deg": 17.0,
                    "id": 1,
                    "reminder": False,
                }
            )
            assert sink.flush()
    for b in blocks[8:]:
        sink.add_block(b)
    trunk_block = _block(2.0, 40, trunk=True, seed=9)
    sink.add_block(trunk_block)
    sink.handle({"type": "summary", "duration_s": 200.0, "strides": 250, "alerts": 1, "session": sid})
    sink.close()
    assert sink.status == "closed" and sink.errors == 0

    lb = Logbook(path)
    [s] = lb.sessions()
    assert s["id"] == sid and s["runner"] == "ann" and s["clock_synchronised"] == "yes"
    assert s["source"] == {"kind": "simulated"} and s["config"] == {"drift": {"tilt_deg": 5}}
    assert s["calibration"]["ok"] is True and s["summary"]["strides"] == 250
    assert s["ended_how"] == "clean" and s["ended_epoch"] == 1735690000.0
    assert lb.strides(sid) == fed
    row = lb.conn.execute(
        "SELECT cadence_spm, pelvic_tilt_deg, trunk_lean_deg, stack_deg, steady FROM strides "
        "WHERE session = ? AND t_start = ?",
        (sid, fed[1]["t_start"]),
    ).fetchone()
    assert row == (171.0, 12.51, 5.25, -7.0, 1)
    [a] = lb.alerts(sid)
    assert a["alert_id"] == 1 and a["kind"] == "pelvic_tilt" and not a["delivered"] and not a["queued"]
    chunks = list(lb.raw_chunks(sid))
    pelvis = [c for c in chunks if "trunk_acc" not in c]
    t = np.concatenate([c["t"] for c in pelvis])
    want = [b for b in blocks if len(b)]
    assert np.array_equal(t, np.concatenate([b.t for b in want]))
    assert np.array_equal(
        np.concatenate([c["acc"] for c in pelvis]), np.concatenate([b.acc for b in want]).astype(np.float32)
    )
    [tr] = [c for c in chunks if "trunk_acc" in c]
    assert np.array_equal(tr["trunk_valid"], trunk_block.trunk_valid)
    assert lb.mark_unclean_sessions() == 0
    lb.close()


def test_outbox_add_deliver_pending(tmp_path):
    lb = Logbook(tmp_path / "l.sqlite")
    box = LogbookOutbox(lb, "A")

    def alert(session, i):
        return {
            "type": "alert",
            "session": session,
            "alert_id": i,
            "id": i,
            "t": 10.0 * i,
            "kind": "pelvic_tilt",
            "raised_at": 1.7e9 + i,
            "sent_at": None,
            "_raised_mono": 5.0 + i,
            "_boot_id": "b",
        }

    box.add(alert("A", 1))
    box.add(alert("A", 2))
    box.add(alert("A", 2))  # at least once: adding twice keeps one
    LogbookOutbox(lb, "B").add(alert("B", 1))
    box.add(alert("A", 3))
    assert [(p["session"], p["alert_id"]) for p in box.pending()] == [("A", 1), ("A", 2), ("B", 1), ("A", 3)]
    assert box.pending()[0]["_raised_mono"] == 6.0  # private keys kept for the replay's age_s
    box.mark_delivered("A", 2)
    box.mark_delivered("A", 99)  # unknown: ignored
    result: list = []
    th = threading.Thread(target=lambda: result.append(LogbookOutbox(lb).pending()))  # another thread, own conn
    th.start()
    th.join()
    assert [(p["session"], p["alert_id"]) for p in result[0]] == [("A", 1), ("B", 1), ("A", 3)]
    [a2] = [a for a in lb.alerts("A") if a["alert_id"] == 2]
    assert a2["delivered"] and a2["delivered_at"] > 1.7e9

    # the logbook sink writes the same alert rows; only those handed to the outbox are pending
    sink = LogbookSink(lb.path)
    sink.handle(_session("C"))
    sink.handle({"type": "alert", "t": 1.0, "kind": "stack", "id": 1})
    sink.handle({"type": "alert", "t": 2.0, "kind": "stack", "id": 2})
    sink.close()
    box_c = LogbookOutbox(lb, "C")
    assert [p["session"] for p in box_c.pending()] == ["A", "B", "A"]
    box_c.add({**alert("C", 2), "kind": "stack"})
    assert [(p["session"], p["alert_id"]) for p in box_c.pending()][-1] == ("C", 2)
    box_c.mark_delivered("C", 2)
    assert [a["delivered"] for a in lb.alerts("C")] == [False, True]
    box.close()
    lb.close()


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from stackcue.firmware_bridge.block import Block
    from stackcue.service.logbook import LogbookSink
    sink = LogbookSink({path!r})
    sink.handle({{"type": "session", "state": "started", "session": "S", "runner": "r", "started_epoch": time.time(),
                 "source": {{}}}})
    rng = np.random.default_rng(1)
    print("ready", flush=True)
    start = time.monotonic()
    k = 0
    while True:
        n = 10
        t = k * 0.05 + np.arange(n) / 200.0
        sink.add_block(Block(t, rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.normal(size=(n, 3)),
                             rng.normal(size=(n, 3)), np.ones(n, bool)))
        print("B", repr(float(t[-1])), flush=True)
        if k % 8 == 7:
            sink.handle({{"type": "stride", "t_start": round(k * 0.05 - 0.4, 4), "t_end": round(k * 0.05, 4),
                         "cadence_spm": 170.0, "steady": True, "pelvic_tilt_deg": 10.0}})
            print("S", repr(round(k * 0.05, 4)), flush=True)
        k += 1
        time.sleep(max(0.0, start + k * 0.05 - time.monotonic()))
""")


@pytest.mark.parametrize("rep", range(3))
@pytest.mark.slow
def test_kill_9_mid_stream_loses_at_most_about_a_second(tmp_path, rep):
    path = tmp_path / "l.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.3 + 0.35 * rep)  # ~1.5 s, at different phases of the 1 s flush
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out = proc.stdout.read()
        proc.wait()
    # the kill can land inside a print (its pieces reach the pipe one by one): a cut "B" still means
    # that block was handed to the sink
    whole, _, cut = out.rpartition("\n")
    lines = [ln.split() for ln in whole.splitlines()]
    handed_t = max(float(v) for kind, v in lines if kind == "B") + (0.05 if cut.startswith("B") else 0.0)
    handed_strides = [float(v) for kind, v in lines if kind == "S"]
    assert handed_t > 1.2

    lb = Logbook(path)
    assert lb.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got_t = lb.conn.execute("SELECT max(t1) FROM raw_chunks WHERE session = 'S'").fetchone()[0]
    assert got_t is not None and handed_t - got_t <= 1.2, (handed_t, got_t)
    print(f"lost {handed_t - got_t:.3f} s")
    t = np.concatenate([c["t"] for c in lb.raw_chunks("S")])
    assert np.allclose(np.diff(t), 0.005) and t[0] == 0.0  # what is there is a complete prefix
    strides = [s["t_end"] for s in lb.strides("S")]
    assert strides == handed_strides[: len(strides)]
    assert all(te > handed_t - 1.2 for te in handed_strides[len(strides) :])
    assert lb.session("S")["ended_how"] is None
    assert lb.mark_unclean_sessions() == 1
    s = lb.session("S")
    assert s["ended_how"] == "unclean"
    assert s["duration_s"] == pytest.approx(got_t) and s["ended_epoch"] == pytest.approx(s["started_epoch"] + got_t)
    lb.close()


def test_full_disk_is_reported_not_raised(tmp_path):
    """A full disk, simulated by capping the database size (PRAGMA max_page_count through ``max_bytes``)."""
    path = tmp_path / "l.sqlite"
    sink = LogbookSink(path, max_bytes=96 * 1024, flush_s=0.05)
    sink.handle(_session("S"))
    assert sink.flush()
    assert sink.status.startswith("writing")
    k = 0
    deadline = time.monotonic() + 10
    while not sink.status.startswith("write failed") and time.monotonic() < deadline:
        sink.add_block(_block(k * 0.5, 100, trunk=True, seed=k))  # the caller carries on regardless
        sink.handle(_stride(k))
        k += 1
        time.sleep(0.005)
    assert sink.status.startswith("write failed") and "full" in sink.status and "\n" not in sink.status
    assert sink.raw_dropped > 0 and sink.errors >= 1
    for i in range(50):  # still accepted, never raising
        sink.add_block(_block(1000 + i, 10))
        sink.handle(_stride(1000 + i))
    sink.close()
    lb = Logbook(path)
    assert lb.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert lb.session("S") is not None  # what was committed before the disk filled is there
    lb.close()


def test_unwritable_logbook_is_a_status_line(tmp_path):
    (tmp_path / "dir").mkdir()
    sink = LogbookSink(tmp_path / "dir")  # a directory, not a database file
    sink.handle(_session("S"))
    sink.add_block(_block(0, 10))
    sink.flush(timeout=2)
    sink.close()
    assert sink.status.startswith("cannot open logbook"), sink.status
    assert "\n" not in sink.status
    json.dumps(sink.status)
