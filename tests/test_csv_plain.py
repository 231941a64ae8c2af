"""The recording reader's plain-decimal parser (issue 18): the same bits as float(), and only for what it can read."""

from __future__ import annotations

import numpy as np
import pytest

from stackcue.firmware_bridge import csv_format
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import RecordingReader, RecordingWriter


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def _by_float(text: bytes, ncols: int) -> np.ndarray:
    """The reference: every field through Python's float(), an empty one as NaN."""
    rows = [[float(f) if f else np.nan for f in line.split(b",")] for line in text.splitlines()]
    return np.array(rows, dtype=np.float64).reshape(-1, ncols)


def test_plain_decimals_give_the_bits_float_gives():
    rng = np.random.default_rng(7)
    fields = [b"-0.000000", b"0.0", b"007.50", b".5", b"-.5", b"5.", b"-5.", b"12345678901234.5", b"-0.00000000000001"]
    fields += [b"999999999999999."]  # 15 digits: the largest mantissa read here
    for digits in range(1, 9):  # up to 7 digits before the point (the largest scale) and 8 after
        for scale in (1e-7, 1e-3, 1.0, 1e3, 1e6):
            for x in rng.normal(0, scale, 40):
                fields.append(f"{x:.{digits}f}".encode())
    fields = fields[: len(fields) // 13 * 13]
    text = b"\n".join(b",".join(fields[i : i + 13]) for i in range(0, len(fields), 13)) + b"\n"
    got = csv_format._parse_plain(text, 13)
    assert got is not None
    ref = _by_float(text, 13)
    assert np.array_equal(_bits(got), _bits(ref))
    assert np.signbit(got.ravel()[fields.index(b"-0.000000")])


def test_empty_trunk_groups_and_crlf_lines():
    text = b"0.005,1.0,2.0,3.0,0.1,0.2,0.3,,,,,,\r\n0.010,1.5,2.5,3.5,0.4,0.5,0.6,4.0,5.0,6.0,0.7,0.8,0.9"
    got = csv_format._parse_plain(text, 13)
    assert got is not None
    assert np.array_equal(_bits(got), _bits(_by_float(text.replace(b"\r", b""), 13)))
    assert np.isnan(got[0, 7:]).all() and not np.isnan(got[1]).any()


@pytest.mark.parametrize(
    "row",
    [
        b"1e5",  # an exponent
        b"+1.0",  # a plus sign
        b"1.2.3",  # two points
        b"--1.0",
        b"1.-0",  # a minus inside
        b" 1.0",  # a space
        b"nan",
        b"5",  # no point
        b"-.",  # no digit
        b"1234567890.1234567",  # 17 digits: past an exact mantissa
        b"1.0\r",  # a lone CR
    ],
)
def test_other_fields_are_left_to_the_general_parsers(row):
    good = b"0.1,1.0,2.0,3.0,0.1,0.2,0.3\n"
    assert csv_format._parse_plain(good, 7) is not None
    assert csv_format._parse_plain(good + row + b",1.0,2.0,3.0,0.1,0.2,0.3\n", 7) is None


@pytest.mark.parametrize("row", [b"0.2,1.0,2.0,3.0,0.1,0.2\n", b"0.2,1.0,2.0,3.0,0.1,0.2,0.3,0.4\n", b"\n"])
def test_a_line_of_another_length_is_refused_even_if_the_total_fits(row):
    good = b"0.1,1.0,2.0,3.0,0.1,0.2,0.3\n"
    other = b"0.3,1.0,2.0,3.0,0.1,0.2,0.3,0.4\n" if row.count(b",") == 5 else b"0.3,1.0,2.0,3.0,0.1,0.2\n"
    assert csv_format._parse_plain(good + row + other, 7) is None


def _recording(tmp_path, n: int = 3000):
    rng = np.random.default_rng(3)
    t = 0.005 * np.arange(n) + 12.0
    valid = rng.random(n) > 0.1
    block = Block(
        t, rng.normal(0, 5, (n, 3)), rng.normal(0, 2, (n, 3)), rng.normal(0, 5, (n, 3)), rng.normal(0, 2, (n, 3)), valid
    )
    path = tmp_path / "rec.csv"
    with RecordingWriter(path, trunk=True, meta={"rate": "200"}) as w:
        w.write(block)
    return path


def test_a_written_recording_is_read_without_loadtxt(tmp_path, monkeypatch):
    """What the writer writes goes through the plain parser alone (loadtxt was about half of `analyze`)."""
    path = _recording(tmp_path)
    body = path.read_bytes().split(b"\n", 2)[2]  # after the metadata line and the header
    ref = _by_float(body, 13)

    def refuse(*args, **kwargs):
        raise AssertionError("np.loadtxt called for plain decimals")

    monkeypatch.setattr(csv_format.np, "loadtxt", refuse)
    with RecordingReader(path, chunk_rows=1000) as reader:
        blocks = list(reader)
        assert reader.problems == []
    t = np.concatenate([b.t for b in blocks])
    trunk = np.concatenate([b.trunk_acc for b in blocks])
    assert np.array_equal(_bits(t), _bits(ref[:, 0]))
    assert np.array_equal(_bits(trunk), _bits(ref[:, 7:10]))
    assert np.array_equal(np.concatenate([b.trunk_valid for b in blocks]), ~np.isnan(ref[:, 7]))


def test_a_bad_line_in_a_plain_file_is_named(tmp_path):
    path = _recording(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[1500] = lines[1500].replace(b".", b"..", 1)  # line 1501: a field with two points
    path.write_bytes(b"\n".join(lines))
    with RecordingReader(path, chunk_rows=1000) as reader:
        rows = sum(len(b) for b in reader)
        problems = reader.problems
    assert rows == 3000 - 1
    assert [p.line for p in problems] == [1501]
    assert "non-numeric value" in problems[0].reason and "column t" in problems[0].reason
