"""Issue 13: the fuzz pass over the logbook readers (the rest of the pass is in test_fuzz.py).

A real logbook (a short simulated recording stored through ``store_recording``, with two alerts queued in its
outbox) is copied for each example, and hypothesis damages stored values in it: rows of sessions, strides,
events, alerts and raw_chunks given text where a number is, NULL, blobs, NaN, infinities, huge or negative
numbers; JSON columns that are not JSON or of the wrong shape, or whose figures are; raw sample blobs truncated,
random, of the wrong length or with a broken zlib header. Every reader then runs: ``sessions``, ``analyze
--session`` (the text report), ``report`` (HTML), ``export`` as CSV (strides, alerts, samples), JSON lines and
FIT, ``runner export`` and the outbox replay (``LogbookOutbox.pending``).

Oracle: each command either works or ends with one line (exit 2) naming the logbook or the session; never
another exception; never a silently wrong value: no NaN or infinity written as a number, JSON lines always
valid JSON, and the out-of-range sentinels written into the logbook never shown as figures (the source, config
and calibration columns excepted: they are exported as stored). A row example runs every ``Logbook`` reader
and the outbox replay, and one command (all of them would take 0.5 s an example); the report is built without
drawing its figures. About 150 examples a test, 25 s for the file (``pytest -s`` prints the counts).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import sqlite3
import zlib
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service.cli import main
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook, LogbookOutbox
from stackcue.service.session_store import store_recording

EXAMPLES: Counter[str] = Counter()
FAST = settings(
    max_examples=150,
    deadline=None,
    # the same examples every run, so CI is reproducible; widen by hand with HYPOTHESIS_SEED / more examples
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

HUGE = 7.77e77  # out of every range; must never be shown as a figure
HUGE_INT = 2**53 + 1
SENTINELS = re.compile(r"7\.77e\+?77|7770000000|9007199254740993|900719925474099\d")
NON_FINITE = re.compile(r"(?<![A-Za-z])(nan|NaN|inf|-inf|Infinity)(?![A-Za-z])")


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    print(f"\nlogbook fuzz examples run: {dict(EXAMPLES)}, total {sum(EXAMPLES.values())}")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, str, str]:
    """The stored logbook (not to be changed: each example copies it), its session id and runner."""
    d = tmp_path_factory.mktemp("fuzz_logbook")
    csv = d / "run.csv"
    write_simulation(simulate(SimParams(minutes=0.5, rate_hz=50, seed=3, trunk=True)), csv)
    book = d / "base.sqlite"
    sid, _ = store_recording(csv, load_config(), out=io.StringIO(), err=io.StringIO(), logbook=str(book))
    with Logbook(book) as b:
        runner = b.session(sid)["runner"]
        box = LogbookOutbox(b, sid)
        for i in (1, 2):
            box.add(
                {
                    "type": "alert",
                    "session": sid,
                    "alert_id": i,
                    "id": i,
                    "t": 20.0 + i,
                    "kind": "pelvic_drop",
                    "value_deg": 9.5,
                    "threshold_deg": 8.0,
                    "raised_at": 1.77e9 + i,
                    "sent_at": None,
                }
            )
        box.close()
        b.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return book, sid, runner


@pytest.fixture(scope="module", autouse=True)
def _fast_plots():
    """The report without its figures (1 s an example otherwise): its numbers and text are what is checked here;
    test_report.py draws the figures."""
    from markupsafe import Markup

    from stackcue.service import report_render

    mp = pytest.MonkeyPatch()
    for name in ("time_figure", "hist_figure", "compare_figure"):
        mp.setattr(report_render, name, lambda *a, **k: Markup('<svg class="plot"></svg>'))
    yield
    mp.undo()


# ---------------------------------------------------------------------------------------------- damage

WRONG = st.one_of(
    st.none(),
    st.just(math.nan),
    st.sampled_from([math.inf, -math.inf, HUGE, -HUGE, HUGE_INT, -HUGE_INT, -123456.5, 0, -1]),
    st.text(max_size=8),
    st.binary(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
)
JSON_SCALAR = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "7.77e77", str(HUGE_INT), "-123456.5", '"x"', "true", "null"]),
    st.sampled_from(["[]", "{}", "[1, 2]", '{"a": NaN}']),
)

ROW_COLUMNS = (
    [
        ("sessions", c)
        for c in (
            "started_epoch",
            "ended_epoch",
            "duration_s",
            "distance_m",
            "runner",
            "ended_how",
            "clock_synchronised",
        )
    ]
    + [("strides", c) for c in ("t_start", "t_end", "cadence_spm", "pelvic_tilt_deg", "trunk_lean_deg", "stack_deg")]
    + [("strides", "steady"), ("events", "t"), ("events", "type"), ("alerts", "t"), ("alerts", "alert_id")]
)
ROW_COLUMNS += [("alerts", "kind"), ("alerts", "delivered"), ("alerts", "queued"), ("alerts", "delivered_at")]
JSON_COLUMNS = [("sessions", c) for c in ("source", "calibration", "config", "summary")] + [
    ("strides", "event"),
    ("events", "event"),
    ("alerts", "payload"),
]
FIELDS = [
    "t",
    "t_start",
    "t_end",
    "cadence_spm",
    "pelvic_tilt_deg",
    "trunk_lean_deg",
    "stack_deg",
    "steady",
    "duration_s",
    "id",
    "alert_id",
    "kind",
    "value_deg",
    "threshold_deg",
    "raised_at",
    "ok",
    "segments",
    "type",
    "alerts",
    "enabled",
]


@st.composite
def json_damage(draw) -> tuple[str, object]:
    how = draw(st.sampled_from(["not json", "shape", "field", "nested"]))
    if how == "not json":
        return how, draw(st.sampled_from(["{", "", "{'a': 1}", "nul", '{"t": }', "\x00", "[" * 3000]))
    if how == "shape":
        return how, draw(JSON_SCALAR)
    return how, (draw(st.sampled_from(FIELDS)), draw(JSON_SCALAR))


@st.composite
def row_damage(draw) -> list[tuple]:
    """Up to three damaged values: ('value', table, column, row, value) or ('json', table, column, row, damage)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.integers(0, 200))
        if draw(st.booleans()):
            table, column = draw(st.sampled_from(ROW_COLUMNS))
            out.append(("value", table, column, row, draw(WRONG)))
        else:
            table, column = draw(st.sampled_from(JSON_COLUMNS))
            out.append(("json", table, column, row, draw(json_damage())))
    return out


@st.composite
def chunk_damage(draw) -> list[tuple]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["truncate", "random", "header", "length", "n", "trunk", "values", "t0"]))
        arg = draw(st.integers(0, 10**6)) if how != "random" else draw(st.binary(max_size=64))
        out.append((how, draw(st.integers(0, 50)), arg))
    return out


def _pick_rowid(c: sqlite3.Connection, table: str, k: int) -> int | None:
    n = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if not n:
        return None
    return c.execute(f"SELECT rowid FROM {table} ORDER BY rowid LIMIT 1 OFFSET ?", (k % n,)).fetchone()[0]


def _set(c: sqlite3.Connection, table: str, column: str, rowid: int, value) -> None:
    with contextlib.suppress(sqlite3.IntegrityError):  # NOT NULL columns: SQLite itself refuses
        c.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (value, rowid))


def _damage_rows(c: sqlite3.Connection, damage: list[tuple]) -> None:
    for kind, table, column, k, what in damage:
        rowid = _pick_rowid(c, table, k)
        if rowid is None:
            continue
        if kind == "value":
            _set(c, table, column, rowid, what)
            continue
        how, arg = what
        if how in ("not json", "shape"):
            _set(c, table, column, rowid, arg)
            continue
        text = c.execute(f"SELECT {column} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()[0]
        try:
            obj = json.loads(text)
        except (TypeError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        field, value = arg
        if how == "nested":
            inner = next((k for k, v in obj.items() if isinstance(v, dict)), None)
            if inner is None:
                continue
            keys = list(obj[inner]) or ["mean"]
            obj[inner][keys[len(field) % len(keys)]] = "__X__"
        else:
            obj[field] = "__X__"
        _set(c, table, column, rowid, json.dumps(obj).replace('"__X__"', value))


def _damage_chunks(c: sqlite3.Connection, damage: list[tuple]) -> None:
    for how, k, arg in damage:
        rowid = _pick_rowid(c, "raw_chunks", k)
        if rowid is None:
            continue
        data, n = c.execute("SELECT data, n FROM raw_chunks WHERE rowid = ?", (rowid,)).fetchone()
        try:
            raw = zlib.decompress(data)
        except (TypeError, zlib.error):  # damaged by an earlier step of this example
            raw = b""
        data = data if isinstance(data, bytes) and data else b"\0"
        if how == "truncate":
            value, column = data[: arg % max(1, len(data))], "data"
        elif how == "random":
            value, column = arg, "data"
        elif how == "header":
            value, column = bytes([data[0] ^ (1 + arg % 255)]) + data[1:], "data"
        elif how == "length":
            value, column = (
                zlib.compress(raw[: max(0, len(raw) - 1 - arg % max(1, len(raw)))] + b"\0" * (arg % 3)),
                "data",
            )
        elif how == "n":
            n = n if isinstance(n, int) else 0  # damaged by an earlier step of this example
            value, column = [0, -1, n + 1, n - 1, 2**40, 3.5, "x", None][arg % 8], "n"
        elif how == "trunk":
            value, column = [0, 2, -1, "1", None][arg % 5], "trunk"
        elif how == "t0":
            value, column = [HUGE, -HUGE, "x", None, 0][arg % 5], "t0"
        else:  # a sensor value or a time made NaN, inf or huge inside a valid blob
            b = bytearray(raw)
            at = (arg * 4) % max(4, len(b) - 8)
            b[at : at + 8] = [b"\x00\x00\xc0\x7f" * 2, b"\x00\x00\x80\x7f" * 2, b"\xff" * 8][arg % 3]
            value, column = zlib.compress(bytes(b)), "data"
        _set(c, "raw_chunks", column, rowid, value)


# ---------------------------------------------------------------------------------------------- readers


def _run(args: list[str], book: Path, caplog) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    caplog.clear()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*args, "--logbook", str(book)])
    for rec in caplog.records:  # warnings are one line each, naming the logbook
        msg = rec.getMessage()
        assert "\n" not in msg and "Traceback" not in msg, msg
    return rc, out.getvalue(), err.getvalue()


def _check_output(text: str, what: str, sentinels: bool = True) -> None:
    assert not NON_FINITE.search(text), (what, NON_FINITE.search(text), text[:2000])
    assert not sentinels or not SENTINELS.search(text), (what, SENTINELS.search(text), text[:2000])


COMMANDS = {
    "sessions": (["sessions"], None),
    "analyze": (["analyze", "--session", "{sid}"], None),
    "report": (["report", "{sid}", "-o", "{o}/r.html"], "r.html"),
    "export strides": (["export", "{sid}", "-o", "{o}/e.csv"], "e.csv"),
    "export alerts": (["export", "{sid}", "--format", "csv", "--what", "alerts", "-o", "{o}/a.csv"], "a.csv"),
    "export samples": (["export", "{sid}", "--format", "csv", "--what", "samples", "-o", "{o}/s.csv"], "s.csv"),
    "export jsonl": (["export", "{sid}", "-o", "{o}/e.jsonl"], "e.jsonl"),
    "export fit": (["export", "{sid}", "-o", "{o}/e.fit"], None),
    "runner export": (["runner", "export", "{runner}", "-o", "{o}/r.zip"], None),
}
#: a row example runs one of these (hypothesis spreads them; all of them take 0.5 s) and every Logbook read
ROW_READERS = [
    "sessions",
    "report",
    "analyze",
    "export strides",
    "export alerts",
    "export jsonl",
    "export fit",
    "runner export",
]
RAW = ["analyze", "export samples", "export fit"]


def _read(book: Path, sid: str, runner: str, out_dir: Path, caplog, names: list[str], sentinels: bool = True) -> None:
    for name in names:
        args, written = COMMANDS[name]
        EXAMPLES[f"read: {name}"] += 1
        if written:
            (out_dir / written).unlink(missing_ok=True)
        rc, out, err = _run([a.format(o=out_dir, sid=sid, runner=runner) for a in args], book, caplog)
        assert "Traceback" not in err, (name, err)
        if rc != 0:
            assert rc == 2, (name, rc, err)
            line = err.strip().splitlines()[-1]
            assert line.startswith("stackcue "), (name, err)
            assert str(book) in line or sid in line or repr(runner) in line, (name, line)
            continue
        _check_output(out, name, sentinels)
        if written and (out_dir / written).exists():
            text = (out_dir / written).read_text(encoding="utf-8", errors="replace")
            if written == "r.html":  # the stored config is shown verbatim: figures are checked in the rest
                text = re.sub(r"<script.*?</script>|<pre.*?</pre>", "", text, flags=re.S)
            _check_output(text, name, sentinels)
            if written.endswith(".jsonl"):
                for line in text.splitlines():
                    json.loads(line, parse_constant=_bare)


def _bare(constant: str) -> None:
    pytest.fail(f"bare {constant} in a JSON line")


def _read_book(book: Path, sid: str, sentinels: bool = True) -> None:
    """Every Logbook reader, and the outbox replay: a StackcueError or values in range, nothing else."""
    from stackcue.errors import StackcueError

    EXAMPLES["read: Logbook and outbox replay"] += 1
    with Logbook(book) as b:
        try:
            rows = [*b.sessions(), b.session(sid), b.session("latest")]
            rows += [*b.strides(sid), *b.events(sid), *b.alerts(sid), *b.stats().values()]
        except StackcueError as exc:
            assert "\n" not in str(exc) and str(book) in str(exc), exc
            rows = []
        text = json.dumps(rows, default=repr)  # NaN would be written bare
        _check_output(text, "Logbook", sentinels)
        box = LogbookOutbox(b, sid)
        for p in box.pending():
            assert isinstance(p, dict) and "alert_id" in p
        box.close()


def _copy(base: tuple[Path, str, str], tmp_path: Path) -> Path:
    book = tmp_path / "lb.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{book}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base[0], book)
    return book


@pytest.mark.slow
@FAST
@given(row_damage(), st.sampled_from(ROW_READERS))
@example([("value", "alerts", "kind", 0, HUGE)], "export alerts")
@example([("json", "alerts", "payload", 0, ("not json", "[" * 3000))], "sessions")  # the outbox replay's json
@example([("value", "sessions", "duration_s", 0, 4294968.0)], "export fit")  # beyond a FIT file's 49.7 days
@example([("json", "sessions", "source", 0, ("field", ("t", "7.77e77")))], "export jsonl")
@example([("value", "sessions", "started_epoch", 0, math.inf)], "report")
@example([("value", "strides", "cadence_spm", 3, "fast")], "analyze")
@example([("json", "strides", "event", 5, ("field", ("pelvic_tilt_deg", "NaN")))], "export fit")
@example([("json", "strides", "event", 5, ("field", ("stack_deg", "7.77e77")))], "runner export")
@example([("json", "sessions", "summary", 0, ("nested", ("cadence_spm", "Infinity")))], "report")
@example([("json", "sessions", "summary", 0, ("not json", "{"))], "analyze")
@example([("json", "sessions", "summary", 0, ("field", ("steady", "7.77e77")))], "sessions")  # a count, found in CI
@example([("json", "strides", "event", 0, ("field", ("steady", "7.77e77")))], "sessions")  # a flag, found in CI
@example([("json", "sessions", "config", 0, ("shape", "[1, 2]"))], "export fit")
@example([("json", "events", "event", 0, ("not json", "nul"))], "runner export")
@example([("json", "alerts", "payload", 0, ("field", ("t", '"x"')))], "report")
@example([("value", "sessions", "duration_s", 0, -123456.5)], "analyze")
@example([("value", "sessions", "runner", 0, b"\xff\x00")], "export fit")
@example([("json", "events", "event", 0, ("nested", ("t", "7.77e77")))], "report")  # a calibration's segment
@example([("json", "events", "event", 0, ("nested", ("t", "NaN")))], "export jsonl")
@example([("json", "events", "event", 0, ("nested", ("t", "7.77e77")))], "analyze")
@example([("value", "sessions", "runner", 0, HUGE)], "sessions")  # stored as the text '7.77e+77' (a random seed)
@example([("json", "events", "event", 1, ("nested", ("t", "7.77e77")))], "sessions")  # the reference's metrics, CI
def test_damaged_rows_never_give_a_traceback_or_a_wrong_figure(base, tmp_path, caplog, damage, heavy):
    EXAMPLES["rows"] += 1
    book = _copy(base, tmp_path)
    c = sqlite3.connect(book)
    c.execute("PRAGMA ignore_check_constraints = ON")
    _damage_rows(c, damage)
    c.commit()
    c.close()
    # the source, config and calibration columns are exported as stored (not figures): no sentinel check there
    verbatim = any(d[0] == "json" and d[2] in ("source", "config", "calibration") for d in damage)
    # a number written into the runner column (TEXT affinity) is stored as its text: a name, shown as given
    verbatim = verbatim or any(d[:3] == ("value", "sessions", "runner") for d in damage)
    _read(book, base[1], base[2], tmp_path, caplog, [heavy], sentinels=not verbatim)
    _read_book(book, base[1], sentinels=not verbatim)


@pytest.mark.slow
@FAST
@given(chunk_damage(), st.sampled_from(RAW))
@example([("truncate", 0, 10)], "analyze")
@example([("header", 0, 0)], "export samples")
@example([("length", 0, 5)], "export fit")
@example([("n", 0, 4)], "analyze")
@example([("values", 0, 1)], "export samples")
@example([("values", 0, 286262)], "export samples")  # NaN in a valid trunk row
@example([("random", 0, b"x\x9c")], "export fit")
def test_damaged_raw_samples_never_give_a_traceback(base, tmp_path, caplog, damage, reader):
    EXAMPLES["raw chunks"] += 1
    book = _copy(base, tmp_path)
    c = sqlite3.connect(book)
    _damage_chunks(c, damage)
    c.commit()
    c.close()
    _read(book, base[1], base[2], tmp_path, caplog, [reader])


def test_a_damaged_raw_chunk_is_one_line_naming_the_logbook_session_row_and_column(base, tmp_path, capsys):
    book = _copy(base, tmp_path)
    with sqlite3.connect(book) as c:
        c.execute("UPDATE raw_chunks SET data = substr(data, 1, 40)")
    assert main(["analyze", "--session", base[1], "--logbook", str(book)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(book) in line and base[1] in line and "raw_chunks row" in line and "column data" in line, line


def test_a_nan_or_huge_stride_figure_is_read_as_unknown(base, tmp_path, caplog):
    book = _copy(base, tmp_path)
    with sqlite3.connect(book) as c:
        rowid = c.execute("SELECT min(rowid) FROM strides").fetchone()[0]
        ev = json.loads(c.execute("SELECT event FROM strides WHERE rowid = ?", (rowid,)).fetchone()[0])
        ev["pelvic_tilt_deg"], ev["stack_deg"] = "__N__", "__H__"
        text = json.dumps(ev).replace('"__N__"', "NaN").replace('"__H__"', "7.77e77")
        c.execute("UPDATE strides SET event = ?, pelvic_tilt_deg = 'tilted' WHERE rowid = ?", (text, rowid))
    with Logbook(book) as b:
        first = b.strides(base[1])[0]
        assert first["pelvic_tilt_deg"] is None and first["stack_deg"] is None
        assert b.stats()[base[1]]["pelvic_tilt_deg"] is not None  # the text in the column is left out, not 0
    assert any("read as unknown" in r.getMessage() and str(book) in r.getMessage() for r in caplog.records)
