"""`stackcue export` (service/export.py): logbook sessions out as CSV, JSON lines, exchange CSV and FIT.

The FIT file is written with fit-tool and read back with fitparse (an independent implementation, CRC
checking on), and its header and file CRC are also checked here against the FIT SDK's CRC-16 written out.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import fitparse
import pytest
from fit_tool.fit_file import FitFile
from fit_tool.validation import ProfileScope, validate_fit_file

from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import StackcueError
from stackcue.firmware_bridge.csv_format import RecordingReader
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config
from stackcue.service.export import (
    ALERT_COLUMNS,
    FIT_APPLICATION_ID,
    add_parser,
    cmd_export,
    stride_columns,
    write_alerts_csv,
    write_fit,
    write_jsonl,
    write_samples_csv,
    write_strides_csv,
)
from stackcue.service.logbook import Logbook, LogbookOutbox, LogbookSink
from stackcue.service.session_store import store_recording

START = 1735689600.0  # 2025-01-01T00:00:00Z
FIT_EPOCH = dt.datetime(1989, 12, 31, tzinfo=dt.UTC)


def _config(tmp: Path, book: Path) -> Path:
    p = tmp / "cfg.toml"
    p.write_text(f'[logbook]\npath = "{book}"\n')
    return p


@pytest.fixture(scope="module")
def stored(tmp_path_factory, sim_csv):
    """A 5-minute two-sensor recording stored by `analyze --save` (store_recording), and analyze's own output."""
    d = tmp_path_factory.mktemp("export")
    rec = sim_csv(minutes=5, rate_hz=200, trunk=True, seed=3)
    book_path = d / "logbook.sqlite"
    cfg_path = _config(d, book_path)
    cfg = load_config(cfg_path)
    out = io.StringIO()
    analyze_file(rec, cfg, jsonl=True, out=out, err=io.StringIO(), progress=False)
    sid, _ = store_recording(rec, cfg, out=io.StringIO(), err=io.StringIO(), progress=False)
    return {"dir": d, "rec": rec, "book": book_path, "cfg": cfg_path, "sid": sid, "jsonl": out.getvalue().splitlines()}


def _live_session(
    sim_run, path: Path, sid: str, minutes: float, trunk: bool, seed: int, sync: str = "yes", raw: bool = True
) -> list[dict]:
    """A session as the daemon writes it: float64 sensor blocks and the pipeline's events into LogbookSink."""
    block = sim_run(minutes=minutes, rate_hz=200, trunk=trunk, seed=seed).block
    sink = LogbookSink(path)
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": sid,
            "runner": "ann",
            "started_epoch": START,
            "clock_synchronised": sync,
            "source": {"sensor": "simulated", "rate": "200"},
        }
    )
    pipe = Pipeline(load_config().pipeline)
    events: list[dict] = []
    for i in range(0, len(block), 997):  # blocks of odd size, as a FIFO gives them
        part = block.slice(i, i + 997)
        if raw:
            sink.add_block(part)
        events += pipe.feed(part)
    events += pipe.finish()
    for e in events:
        sink.handle(e)
    sink.close()
    return events


@pytest.fixture(scope="module")
def live(tmp_path_factory, sim_run):
    """Two daemon-style sessions in one logbook: pelvis + trunk (clock synchronised), pelvis only (not)."""
    d = tmp_path_factory.mktemp("live")
    path = d / "logbook.sqlite"
    both = _live_session(sim_run, path, "20250101T000000Z-both", 4, True, 51)
    pelvis = _live_session(sim_run, path, "20250101T010000Z-pelvis", 2.5, False, 8, sync="no")
    return {"dir": d, "book": path, "both": both, "pelvis": pelvis}


# ---------------------------------------------------------------------------------------------- CSV tables


def _float(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def _utc(cell: str) -> float:
    assert cell.endswith("Z") and len(cell) == len("2025-01-01T00:00:00.000Z"), cell
    return dt.datetime.fromisoformat(cell.replace("Z", "+00:00")).timestamp()


def test_strides_csv_rows_equal_the_logbook(stored):
    with Logbook(stored["book"]) as book:
        s = book.session(stored["sid"])
        want = book.strides(stored["sid"])
        buf = io.StringIO()
        assert write_strides_csv(book, stored["sid"], buf) == len(want)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(rows) == len(want) > 300
    assert list(rows[0]) == stride_columns(want)
    with_trunk = 0
    for row, st in zip(rows, want, strict=True):
        for key, value in st.items():
            if key == "type":
                continue
            if isinstance(value, bool):
                assert row[key] == ("1" if value else "0")
            else:
                assert _float(row[key]) == value, key  # the stored float, digit for digit; empty for null
        assert abs(_utc(row["time_utc"]) - (s["started_epoch"] + st["t_start"])) <= 0.0005 + 1e-6
        with_trunk += st["stack_deg"] is not None
    assert with_trunk > 300  # the trunk columns really were exercised


def test_alerts_csv_rows_equal_the_logbook_with_clear_and_delivery(live):
    sid = "20250101T000000Z-both"
    with Logbook(live["book"]) as book:
        alerts = book.alerts(sid)
        clears = [e for e in book.events(sid) if e["type"] == "clear"]
        LogbookOutbox(book, sid).mark_delivered(sid, alerts[0]["alert_id"])  # the phone acknowledged the first
        buf = io.StringIO()
        assert write_alerts_csv(book, sid, buf) == len(alerts)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert list(rows[0]) == ALERT_COLUMNS
    want = [e for e in live["both"] if e["type"] == "alert"]
    assert len(rows) == len(want) >= 2 and clears
    for row, a in zip(rows, want, strict=True):
        assert (
            int(row["alert_id"]),
            row["kind"],
            float(row["t"]),
            float(row["value_deg"]),
            float(row["threshold_deg"]),
            row["reminder"],
            float(row["decided_t"]),
        ) == (a["id"], a["kind"], a["t"], a["value_deg"], a["threshold_deg"], "0", a["decided_t"])
        clear = next((c["t"] for c in clears if c["kind"] == a["kind"] and c["t"] > a["t"]), None)
        assert _float(row["cleared_t"]) == clear
        assert abs(_utc(row["time_utc"]) - (START + a["t"])) <= 0.0005 + 1e-6  # to the nearest ms
    assert [r["delivered"] for r in rows] == ["1"] + ["0"] * (len(rows) - 1)
    assert rows[0]["delivered_at_utc"] and not rows[1]["delivered_at_utc"]
    assert any(r["cleared_t"] for r in rows)


# ---------------------------------------------------------------------------------------------- JSON lines


def test_jsonl_lines_equal_analyze_jsonl_of_the_same_recording(stored):
    with Logbook(stored["book"]) as book:
        buf = io.StringIO()
        n = write_jsonl(book, stored["sid"], buf)
    lines = buf.getvalue().splitlines()
    head = json.loads(lines[0])
    assert head["type"] == "session" and head["id"] == stored["sid"] and head["ended_how"] == "clean"
    assert head["runner"] == "sim" and head["calibration"]["ok"] and head["source"]["seed"] == "3"
    got = [json.loads(x) for x in lines[1:]]
    want = [json.loads(x) for x in stored["jsonl"]]
    assert n == len(got) == len(want)
    assert [e["type"] for e in got] == [e["type"] for e in want]  # types and order
    assert {"calibration", "stride", "alert", "clear", "gap", "summary"} <= {e["type"] for e in got}
    assert [e for e in got if e["type"] == "stride"] == [e for e in want if e["type"] == "stride"]
    assert [e for e in got if e["type"] == "alert"] == [e for e in want if e["type"] == "alert"]
    assert got == want  # every event, field for field


def test_jsonl_of_a_live_session_gives_analyze_shaped_alerts_even_when_the_outbox_stored_them(live, tmp_path):
    """The MQTT outbox may write an alert's row first, with its payload form: the export gives analyze's."""
    path = tmp_path / "l.sqlite"
    sid = "20250101T000000Z-outbox"
    events = live["both"]
    sink = LogbookSink(path)
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": sid,
            "runner": "ann",
            "started_epoch": START,
            "clock_synchronised": "yes",
            "source": {},
        }
    )
    sink.flush()
    book = Logbook(path)
    box = LogbookOutbox(book, sid)
    for e in events:
        if e["type"] == "alert":  # as MqttPublisher hands them to the outbox
            box.add(
                {
                    **e,
                    "session": sid,
                    "alert_id": e["id"],
                    "raised_at": START + 70,
                    "sent_at": None,
                    "age_s": None,
                    "replayed": False,
                }
            )
    for e in events:
        sink.handle(e)
    sink.close()
    assert book.alerts(sid)[0]["payload"]["raised_at"] == START + 70  # the outbox's form is what is stored
    buf = io.StringIO()
    write_jsonl(book, sid, buf)
    got = [json.loads(x) for x in buf.getvalue().splitlines()[1:]]
    assert got == events  # order and shape as the pipeline emitted them
    book.close()


# ---------------------------------------------------------------------------------------------- raw samples


def test_samples_round_trip_of_a_saved_recording_is_exact(stored, tmp_path):
    """A recording stored from CSV comes back as the same digits, so re-analysis gives the same events.

    Stored float32 resolves the exchange format's decimals (1e-5 m/s² below 78 m/s², 1e-6 rad/s below
    16 rad/s), so no tolerance is needed here.
    """
    out = tmp_path / "again.csv"
    with Logbook(stored["book"]) as book:
        n = write_samples_csv(book, stored["sid"], out)
        stored_strides = book.strides(stored["sid"])
    original = [x for x in stored["rec"].read_text().splitlines() if not x.startswith("#")]
    exported = out.read_text().splitlines()
    meta = dict(x[2:].split("=", 1) for x in exported if x.startswith("# "))
    assert meta["session"] == stored["sid"] and meta["runner"] == "sim" and meta["rate"] == "200"
    assert meta["sensor"] == "simulated" and "path" not in meta
    assert [x for x in exported if not x.startswith("#")] == original and n == len(original) - 1
    events = analyze_file(out, load_config(), jsonl=False, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert [e for e in events if e["type"] == "stride"] == stored_strides
    want = [json.loads(x) for x in stored["jsonl"]]
    assert events == want


def test_samples_of_a_live_session_reanalysed_give_the_stored_strides(live, tmp_path):
    """Live samples were float64 when analysed and float32 when stored, then written with the exchange
    format's decimals: a stride mean sitting on a rounding edge may move by one unit of the event's last
    digit (0.01° for angles, 0.1 step/min, 1e-4 s, 1 ms of contact). That is the tolerance, and it is
    needed (see the check that some field did move, or not, below); counts, steadiness and alerts are exact.
    """
    tol = {
        "t_start": 1e-4,
        "t_end": 1e-4,
        "cadence_spm": 0.1,
        "contact_time_left_s": 1e-3,
        "contact_time_right_s": 1e-3,
        "forward_axis_error_deg": 0.1,
    }
    out = tmp_path / "live.csv"
    sid = "20250101T000000Z-both"
    with Logbook(live["book"]) as book:
        write_samples_csv(book, sid, out)
        stored_strides = book.strides(sid)
    again = analyze_file(out, load_config(), jsonl=False, out=io.StringIO(), err=io.StringIO(), progress=False)
    strides = [e for e in again if e["type"] == "stride"]
    assert len(strides) == len(stored_strides) > 250
    moved = 0
    for a, b in zip(strides, stored_strides, strict=True):
        assert a.keys() == b.keys()
        for k, v in b.items():
            if isinstance(v, float) and not isinstance(v, bool):
                assert a[k] is not None and abs(a[k] - v) <= tol.get(k, 0.01) + 1e-9, (k, a[k], v)
                moved += a[k] != v
            else:
                assert a[k] == v, k
    assert moved < len(strides)  # nearly everything is equal to the digit
    assert [(e["kind"], e["t"]) for e in again if e["type"] == "alert"] == [
        (e["kind"], e["t"]) for e in live["both"] if e["type"] == "alert"
    ]


def test_exported_samples_import_as_a_new_session_with_the_same_strides(stored, tmp_path):
    out = tmp_path / "export.csv"
    with Logbook(stored["book"]) as book:
        write_samples_csv(book, stored["sid"], out)
        want = book.strides(stored["sid"])
    book_path = tmp_path / "other.sqlite"
    cfg = load_config(_config(tmp_path, book_path))
    sid, _ = store_recording(out, cfg, origin="import", out=io.StringIO(), err=io.StringIO(), progress=False)
    with Logbook(book_path) as other:
        s = other.session(sid)
        assert other.strides(sid) == want
    assert s["runner"] == "sim" and s["started_epoch"] == pytest.approx(
        Logbook(stored["book"]).session(stored["sid"])["started_epoch"], abs=0.001
    )  # the start travels in the started_utc line


# ---------------------------------------------------------------------------------------------- FIT


def _crc16(data: bytes, crc: int = 0) -> int:
    """The FIT SDK's CRC-16 (FitCRC_Get16), written out here so the check depends on neither library."""
    table = [
        0x0000,
        0xCC01,
        0xD801,
        0x1400,
        0xF001,
        0x3C00,
        0x2800,
        0xE401,
        0xA001,
        0x6C00,
        0x7800,
        0xB401,
        0x5000,
        0x9C01,
        0x8801,
        0x4400,
    ]
    for byte in data:
        tmp = table[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ table[byte & 0xF]
        tmp = table[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ table[(byte >> 4) & 0xF]
    return crc


def _fit_time(d: dt.datetime) -> float:
    return d.replace(tzinfo=dt.UTC).timestamp()


def _read_fit(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in fitparse.FitFile(str(path), check_crc=True).get_messages():
        out.setdefault(m.name, []).append({f.name: f.value for f in m.fields})
    return out


def test_fit_header_and_crc_follow_the_sdk(stored, tmp_path):
    path = tmp_path / "run.fit"
    with Logbook(stored["book"]) as book:
        write_fit(book, stored["sid"], path, err=io.StringIO())
    data = path.read_bytes()
    assert data[0] == 14 and data[8:12] == b".FIT"  # 14-byte header
    assert int.from_bytes(data[4:8], "little") == len(data) - 14 - 2  # data size: records, no header or CRC
    assert data[1] >> 4 in (1, 2)  # protocol version
    assert int.from_bytes(data[12:14], "little") == _crc16(data[:12])  # header CRC
    assert int.from_bytes(data[-2:], "little") == _crc16(data[:-2])  # file CRC over header and records
    assert _crc16(data) == 0
    _read_fit(path)  # fitparse checks both CRCs too
    report = validate_fit_file(FitFile.from_bytes(data), profile_scope=ProfileScope.FULL)
    assert report and not report.findings  # fit-tool's rules, at their strictest, find nothing either
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    (tmp_path / "bad.fit").write_bytes(bytes(bad))
    with pytest.raises(fitparse.FitParseError):  # and would notice a damaged file
        _read_fit(tmp_path / "bad.fit")


def test_fit_read_back_with_fitparse_gives_the_strides(stored, tmp_path):
    """Cadence within FIT's 1/128 rpm (half a step: ±1/128 step/min after rounding); the developer fields are
    float32 (within 1e-5° of the stored 0.01°-rounded values); timestamps whole seconds (±0.5 s)."""
    path = tmp_path / "run.fit"
    err = io.StringIO()
    with Logbook(stored["book"]) as book:
        s = book.session(stored["sid"])
        strides = book.strides(stored["sid"])
        assert write_fit(book, stored["sid"], path, err=err) == len(strides)
    assert "modification time" in err.getvalue()  # its start was guessed from the file: said on stderr
    fit = _read_fit(path)
    (fid,) = fit["file_id"]
    assert (fid["type"], fid["manufacturer"], fid["product"]) == ("activity", "development", 1)
    assert _fit_time(fid["time_created"]) == round(s["started_epoch"])
    (dev,) = fit["developer_data_id"]
    assert bytes(dev["application_id"]) == FIT_APPLICATION_ID and dev["developer_data_index"] == 0
    descs = {
        d["field_definition_number"]: (d["field_name"], d["units"], d["fit_base_type_id"], d["native_mesg_num"])
        for d in fit["field_description"]
    }
    assert descs == {
        0: ("pelvic_tilt", "deg", "float32", "record"),
        1: ("stack_angle", "deg", "float32", "record"),
        2: ("trunk_lean", "deg", "float32", "record"),
        3: ("pelvic_obliquity_range", "deg", "float32", "record"),
    }

    records = fit["record"]
    assert len(records) == len(strides) > 300
    times = [_fit_time(r["timestamp"]) for r in records]
    assert times == sorted(times)
    for r, st, t in zip(records, strides, times, strict=True):
        assert abs(t - (s["started_epoch"] + (st["t_start"] + st["t_end"]) / 2)) <= 0.5 + 1e-6
        assert abs((r["cadence"] + r["fractional_cadence"]) * 2 - st["cadence_spm"]) <= 1 / 128 + 1e-9
        for name, key in (
            ("pelvic_tilt", "pelvic_tilt_deg"),
            ("stack_angle", "stack_deg"),
            ("trunk_lean", "trunk_lean_deg"),
            ("pelvic_obliquity_range", "pelvic_obliquity_range_deg"),
        ):
            if st[key] is None:
                assert r[name] is None
            else:
                assert r[name] == pytest.approx(st[key], abs=1e-5), name

    events = fit["event"]
    assert [(e["event"], e["event_type"]) for e in events] == [("timer", "start"), ("timer", "stop_all")]
    assert _fit_time(events[0]["timestamp"]) <= times[0] and times[-1] <= _fit_time(events[1]["timestamp"])
    (sess,) = fit["session"]
    duration = s["duration_s"]
    assert (sess["sport"], sess["num_laps"], sess["total_strides"]) == ("running", 1, len(strides))
    assert sess["total_elapsed_time"] == pytest.approx(duration, abs=0.001)
    assert sess["total_timer_time"] == pytest.approx(duration, abs=0.001)
    assert _fit_time(sess["start_time"]) == round(s["started_epoch"])
    mean = sum(st["cadence_spm"] for st in strides) / len(strides)
    assert abs((sess["avg_running_cadence"] + sess["avg_fractional_cadence"]) * 2 - mean) <= 1 / 128 + 1e-9
    top = max(st["cadence_spm"] for st in strides)
    assert abs((sess["max_running_cadence"] + sess["max_fractional_cadence"]) * 2 - top) <= 1 / 128 + 1e-9
    (lap,) = fit["lap"]
    assert lap["total_elapsed_time"] == sess["total_elapsed_time"] and lap["total_strides"] == len(strides)
    (act,) = fit["activity"]
    assert act["num_sessions"] == 1 and act["total_timer_time"] == pytest.approx(duration, abs=0.001)


def test_record_packer_gives_the_bytes_fit_tool_gives(stored):
    """write_fit packs all but the first record of each run of like strides itself (fit-tool's 90 field objects
    a record cost 7.6 s for 60 minutes, issue 18): for every shape of stride (nulls anywhere) and many values,
    the packed message is byte for byte fit-tool's own encoding under the definition fit-tool made."""
    import itertools
    import random

    from fit_tool.encode import EncodeOptions, encode_record_projected
    from fit_tool.fit_file_builder import FitFileBuilder

    from stackcue.service.export import FIT_DEV_FIELDS, fit_stride_record, record_packer

    with Logbook(stored["book"]) as book:
        real = book.strides(stored["sid"])
    rng = random.Random(7)
    keys = ["cadence_spm", *(key for _n, key in FIT_DEV_FIELDS.values())]
    checked = 0
    for present in itertools.product([True, False], repeat=len(keys)):
        for k in range(12):
            st = dict(real[(k * 37) % len(real)])
            if k % 2:  # beyond the session's values: extremes and odd fractions
                st["cadence_spm"] = rng.choice([0.0, 60.0, 170.5, 199.99, 255.0 * 2, rng.uniform(100, 250)])
                for key in keys[1:]:
                    st[key] = rng.choice([0.0, -0.0, -89.99, 45.125, rng.uniform(-90, 90), 1e-7])
            for key, on in zip(keys, present, strict=True):
                if not on:
                    st[key] = None
            fit_s = 1_100_000_000 + k * 7
            r = fit_stride_record(st, (fit_s + 631065600) * 1000)
            b = FitFileBuilder(auto_define=True, strict=True)
            b.add(r)
            want = encode_record_projected(b.records[-1], options=EncodeOptions())
            assert record_packer(b.definition_map[r.local_id])(st, fit_s) == want, (present, st)
            checked += 1
    assert checked == 2 ** len(keys) * 12


def test_fit_of_a_pelvis_only_session_has_null_trunk_fields_and_says_the_clock_was_not_synchronised(live, tmp_path):
    path = tmp_path / "p.fit"
    err = io.StringIO()
    with Logbook(live["book"]) as book:
        strides = book.strides("20250101T010000Z-pelvis")
        write_fit(book, "20250101T010000Z-pelvis", path, err=err)
        quiet = io.StringIO()
        write_fit(book, "20250101T000000Z-both", tmp_path / "b.fit", err=quiet)
    assert "not NTP-synchronised" in err.getvalue() and err.getvalue().count("\n") == 1
    assert quiet.getvalue() == ""
    records = _read_fit(path)["record"]
    assert len(records) == len(strides) > 150
    assert all(r["stack_angle"] is None and r["trunk_lean"] is None for r in records)
    assert all(
        r["pelvic_tilt"] == pytest.approx(st["pelvic_tilt_deg"], abs=1e-5)
        for r, st in zip(records, strides, strict=True)
    )
    assert _fit_time(records[0]["timestamp"]) == round(START + (strides[0]["t_start"] + strides[0]["t_end"]) / 2)


# ---------------------------------------------------------------------------------------------- the command


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="stackcue")
    add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["export", *argv])


def _one_line_error(*argv: str) -> str:
    with pytest.raises(StackcueError) as exc:
        cmd_export(_args(*argv))
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_command_writes_each_format(stored, tmp_path, capsys):
    book = str(stored["book"])
    prefix = stored["sid"][:12]
    for argv, check in (
        (
            ["latest", "--format", "fit", "-o", str(tmp_path / "a.fit"), "--logbook", book],
            lambda p: len(_read_fit(p)["record"]) > 300,
        ),
        (
            [prefix, "-o", str(tmp_path / "a.jsonl"), "--config", str(stored["cfg"])],  # format from the suffix
            lambda p: json.loads(p.read_text().splitlines()[0])["type"] == "session",
        ),
        (
            [stored["sid"], "--format", "csv", "--what", "alerts", "-o", str(tmp_path / "a.txt"), "--logbook", book],
            lambda p: p.read_text().startswith("alert_id,kind,t,"),
        ),
        (
            ["latest", "--format", "csv", "--what", "samples", "-o", str(tmp_path / "s.csv"), "--logbook", book],
            lambda p: RecordingReader(p).meta["session"] == stored["sid"],
        ),
    ):
        assert cmd_export(_args(*argv)) == 0
        out = Path(argv[argv.index("-o") + 1])
        assert check(out), argv
        assert os.stat(out).st_mode & 0o077 == 0  # personal data: owner-only
        assert not Path(str(out) + ".tmp").exists()
        assert f"wrote {out}: session {stored['sid']}" in capsys.readouterr().out
    assert cmd_export(_args("latest", "--format", "csv", "-o", "-", "--logbook", book)) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("t_start,t_end,time_utc,") and "wrote standard output" in captured.err


def test_command_mistakes_are_one_line(stored, live, tmp_path, sim_run):
    book = str(stored["book"])
    out = str(tmp_path / "x.csv")
    assert f"no session 'nope' in {book}" in _one_line_error("nope", "-o", out, "--logbook", book)
    msg = _one_line_error("20250101T0", "-o", out, "--logbook", str(live["book"]))
    assert "ambiguous" in msg and "20250101T000000Z-both" in msg and "20250101T010000Z-pelvis" in msg
    assert "does not exist" in _one_line_error("latest", "-o", str(tmp_path / "no" / "x.csv"), "--logbook", book)
    assert "unknown format 'xml'" in _one_line_error("latest", "--format", "xml", "-o", out, "--logbook", book)
    assert "--format" in _one_line_error("latest", "-o", str(tmp_path / "x.dat"), "--logbook", book)
    assert "--what" in _one_line_error("latest", "--format", "jsonl", "--what", "alerts", "-o", out, "--logbook", book)
    assert "--what 'laps'" in _one_line_error("latest", "--what", "laps", "-o", out, "--logbook", book)
    assert "standard output" in _one_line_error("latest", "--format", "fit", "-o", "-", "--logbook", book)
    missing = str(tmp_path / "none.sqlite")
    assert missing in _one_line_error("latest", "-o", out, "--logbook", missing)
    assert not Path(missing).exists()  # looking did not create an empty logbook

    empty = tmp_path / "empty.sqlite"
    sink = LogbookSink(empty)  # a run that stopped before the first stride
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": "20250101T000000Z-empty",
            "runner": "ann",
            "started_epoch": START,
            "clock_synchronised": "yes",
            "source": {},
        }
    )
    sink.close()
    msg = _one_line_error("latest", "-o", str(tmp_path / "e.fit"), "--logbook", str(empty))
    assert "20250101T000000Z-empty has no strides" in msg and not (tmp_path / "e.fit").exists()

    no_raw = tmp_path / "noraw.sqlite"
    _live_session(sim_run, no_raw, "20250101T000000Z-noraw", 1.5, False, 4, raw=False)
    msg = _one_line_error("latest", "--format", "csv", "--what", "samples", "-o", out, "--logbook", str(no_raw))
    assert "20250101T000000Z-noraw has no raw samples" in msg and str(no_raw) in msg
    assert not Path(out).exists() and not Path(out + ".tmp").exists()
