"""Every export format, written from a stored session and read back by an independent reader.

One abstract class holds the checks (write -> read -> compare, the count the writer returns, the same
bytes twice); each format's subclass says only how to write, how to read and what must come back, and
within which resolution. A new format gets all the checks by adding a subclass.
The readers are deliberately not the writers' code: the CSV reader that `analyze` uses, `json`, and
fitparse (an implementation independent of fit-tool, CRC checking on).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any, ClassVar

import fitparse
import numpy as np
import pytest

from stackcue.dsp.pipeline import Pipeline
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import PELVIS_COLUMNS, TRUNK_COLUMNS, concat_blocks, read_recording
from stackcue.service.export import write_fit, write_jsonl, write_samples_csv
from stackcue.service.logbook import Logbook, LogbookSink

START = 1735689600.0  # 2025-01-01T00:00:00Z
SID = "20250101T000000Z-trip"


@pytest.fixture(scope="module", params=[True, False], ids=["pelvis+trunk", "pelvis-only"])
def session(request, sim_run, tmp_path_factory) -> dict[str, Any]:
    """One session stored as the daemon stores it: raw float64 blocks of odd size and the pipeline's events."""
    trunk = request.param
    run = (
        sim_run(minutes=4, rate_hz=200, trunk=True, seed=51)
        if trunk
        else sim_run(minutes=2.5, rate_hz=200, trunk=False, seed=8)
    )
    path = tmp_path_factory.mktemp("trip") / "logbook.sqlite"
    sink = LogbookSink(path)
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": SID,
            "runner": "ann",
            "started_epoch": START,
            "clock_synchronised": "yes",
            "source": {"sensor": "simulated", "rate": "200"},
        }
    )
    pipe = Pipeline()
    events: list[dict] = []
    for i in range(0, len(run.block), 997):
        part = run.block.slice(i, i + 997)
        sink.add_block(part)
        events += pipe.feed(part)
    events += pipe.finish()
    for e in events:
        sink.handle(e)
    sink.close()
    assert sum(e["type"] == "stride" for e in events) > 150
    return {"book": path, "trunk": trunk, "events": events}


class RoundTrip:
    """The checks every format gets; not collected itself (its name does not start with Test)."""

    suffix: ClassVar[str]

    def write(self, book: Logbook, sid: str, path: Path) -> int:
        """Write the session; return the count the writer reports."""
        raise NotImplementedError

    def read(self, path: Path) -> Any:
        """Read the file back with a reader that is not the writer's code."""
        raise NotImplementedError

    def count(self, got: Any) -> int:
        """The writer's count, as seen in what was read."""
        raise NotImplementedError

    def expected(self, book: Logbook, session: dict) -> Any:
        """What must come back."""
        raise NotImplementedError

    def assert_same(self, got: Any, want: Any, session: dict) -> None:
        assert got == want

    def _write(self, session: dict, path: Path) -> int:
        with Logbook(session["book"]) as book:
            return self.write(book, SID, path)

    def test_write_read_compare(self, session, tmp_path):
        path = tmp_path / f"out{self.suffix}"
        n = self._write(session, path)
        got = self.read(path)
        with Logbook(session["book"]) as book:
            want = self.expected(book, session)
        assert n == self.count(got) > 0
        self.assert_same(got, want, session)

    def test_the_same_session_gives_the_same_bytes(self, session, tmp_path):
        a, b = tmp_path / f"a{self.suffix}", tmp_path / f"b{self.suffix}"
        self._write(session, a)
        self._write(session, b)
        assert a.read_bytes() == b.read_bytes()


class TestSamplesCsv(RoundTrip):
    """Raw samples as the exchange CSV: the stored float32 values to the format's last decimal."""

    suffix = ".csv"

    def write(self, book, sid, path):
        return write_samples_csv(book, sid, path)

    def read(self, path):
        block, meta, problems = read_recording(path, strict=True)
        header = next(x for x in path.read_text().splitlines() if not x.startswith("#"))
        assert not problems
        return {"block": block, "meta": meta, "header": header.split(",")}

    def count(self, got):
        return len(got["block"])

    def expected(self, book, session):
        return concat_blocks(list(book.raw_blocks(SID)), session["trunk"])

    def assert_same(self, got, want: Block, session):
        block, meta = got["block"], got["meta"]
        assert got["header"] == PELVIS_COLUMNS + (TRUNK_COLUMNS if session["trunk"] else [])
        assert (meta["session"], meta["runner"], meta["sensor"], meta["rate"]) == (SID, "ann", "simulated", "200")
        assert meta["started_utc"].startswith("2025-01-01T00:00:00")
        # half of the last written decimal: t and gyro 1e-6, acc 1e-5
        np.testing.assert_allclose(block.t, want.t, rtol=0, atol=5e-7 + 1e-12)
        np.testing.assert_allclose(block.acc, want.acc, rtol=0, atol=5e-6 + 1e-12)
        np.testing.assert_allclose(block.gyr, want.gyr, rtol=0, atol=5e-7 + 1e-12)
        assert block.has_trunk == session["trunk"]
        if session["trunk"]:
            np.testing.assert_array_equal(block.trunk_valid, want.trunk_valid)
            assert not block.trunk_valid.all()  # the dropouts travel too
            ok = want.trunk_valid
            np.testing.assert_allclose(block.trunk_acc[ok], want.trunk_acc[ok], rtol=0, atol=5e-6 + 1e-12)
            np.testing.assert_allclose(block.trunk_gyr[ok], want.trunk_gyr[ok], rtol=0, atol=5e-7 + 1e-12)


class TestJsonLines(RoundTrip):
    """JSON lines: a session head, then exactly the events the pipeline emitted, in its order."""

    suffix = ".jsonl"

    def write(self, book, sid, path):
        buf = io.StringIO()
        n = write_jsonl(book, sid, buf)
        path.write_text(buf.getvalue(), encoding="utf-8")
        return n

    def read(self, path):
        lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        return {"head": lines[0], "events": lines[1:]}

    def count(self, got):
        return len(got["events"])

    def expected(self, book, session):
        return session["events"]

    def assert_same(self, got, want, session):
        head = got["head"]
        assert (head["type"], head["id"], head["runner"], head["started_epoch"]) == ("session", SID, "ann", START)
        assert got["events"] == want  # every event, field for field, in the pipeline's order


def _fit_time(d: dt.datetime) -> float:
    return d.replace(tzinfo=dt.UTC).timestamp()


class TestFit(RoundTrip):
    """FIT: one record per stride within FIT's resolution (whole seconds, 1/128 rpm, float32 fields)."""

    suffix = ".fit"

    def write(self, book, sid, path):
        return write_fit(book, sid, path, err=io.StringIO())

    def read(self, path):
        out: dict[str, list[dict]] = {}
        for m in fitparse.FitFile(str(path), check_crc=True).get_messages():
            out.setdefault(m.name, []).append({f.name: f.value for f in m.fields})
        return out

    def count(self, got):
        return len(got["record"])

    def expected(self, book, session):
        return book.strides(SID)

    def assert_same(self, got, want, session):
        (sess,) = got["session"]
        assert sess["total_strides"] == len(want)
        for r, st in zip(got["record"], want, strict=True):
            assert abs(_fit_time(r["timestamp"]) - (START + (st["t_start"] + st["t_end"]) / 2)) <= 0.5 + 1e-6
            assert abs((r["cadence"] + r["fractional_cadence"]) * 2 - st["cadence_spm"]) <= 1 / 128 + 1e-9
            for name, key in (
                ("pelvic_tilt", "pelvic_tilt_deg"),
                ("stack_angle", "stack_deg"),
                ("trunk_lean", "trunk_lean_deg"),
                ("pelvic_obliquity_range", "pelvic_obliquity_range_deg"),
            ):
                if st[key] is None:
                    assert r[name] is None, name
                else:
                    assert r[name] == pytest.approx(st[key], abs=1e-5), name
        trunk_values = sum(r["trunk_lean"] is not None for r in got["record"])
        assert (trunk_values > 150) if session["trunk"] else (trunk_values == 0)
