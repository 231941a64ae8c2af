"""The exchange CSV reader: round trips, refusals with file and line, bad rows reported, chunking."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackcue.errors import RecordingError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import (
    PELVIS_COLUMNS,
    TRUNK_COLUMNS,
    RecordingReader,
    RowProblem,
    concat_blocks,
    read_recording,
    write_recording,
)

HEADER = ",".join(PELVIS_COLUMNS)
HEADER_TRUNK = ",".join(PELVIS_COLUMNS + TRUNK_COLUMNS)


def make_block(n: int, *, trunk: bool = False, invalid_every: int = 0, seed: int = 0) -> Block:
    rng = np.random.default_rng(seed)
    t = 3.0 + np.arange(n) / 200.0 + rng.uniform(0, 1e-3, n)  # jittered but increasing
    acc = rng.normal(0, 9.0, (n, 3))
    gyr = rng.normal(0, 2.0, (n, 3))
    if not trunk:
        return Block(t, acc, gyr)
    valid = np.ones(n, bool)
    if invalid_every:
        valid[::invalid_every] = False
    tacc = rng.normal(0, 9.0, (n, 3))
    tgyr = rng.normal(0, 2.0, (n, 3))
    tacc[~valid] = np.nan
    tgyr[~valid] = np.nan
    return Block(t, acc, gyr, tacc, tgyr, valid)


def assert_blocks_close(a: Block, b: Block) -> None:
    np.testing.assert_allclose(a.t, b.t, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a.acc, b.acc, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a.gyr, b.gyr, atol=1e-5, rtol=0)
    assert a.has_trunk == b.has_trunk
    if a.has_trunk:
        np.testing.assert_array_equal(a.trunk_valid, b.trunk_valid)
        np.testing.assert_allclose(a.trunk_acc, b.trunk_acc, atol=1e-5, rtol=0)  # NaN == NaN here
        np.testing.assert_allclose(a.trunk_gyr, b.trunk_gyr, atol=1e-5, rtol=0)


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def row(t: float, trunk: str | None = None) -> str:
    base = f"{t},0.1,0.2,9.81,0.01,-0.02,0.03"
    return base if trunk is None else f"{base},{trunk}"


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trunk", "invalid_every"), [(False, 0), (True, 0), (True, 3)], ids=["pelvis", "trunk", "trunk-gaps"]
)
def test_round_trip(tmp_path: Path, trunk: bool, invalid_every: int) -> None:
    block = make_block(1234, trunk=trunk, invalid_every=invalid_every)
    path = tmp_path / "run.csv"
    write_recording(path, block, {"sensor": "mpu6050", "rate": "200", "runner": "ana"})
    got, meta, problems = read_recording(path)
    assert problems == []
    assert meta == {"sensor": "mpu6050", "rate": "200", "runner": "ana"}
    assert got.t.dtype == np.float64 and got.acc.dtype == np.float64
    assert_blocks_close(got, block)
    if trunk and invalid_every:
        assert np.isnan(got.trunk_acc[~got.trunk_valid]).all()
        assert np.isfinite(got.trunk_gyr[got.trunk_valid]).all()


def test_round_trip_in_chunks_and_progress(tmp_path: Path) -> None:
    block = make_block(5000, trunk=True, invalid_every=7)
    path = tmp_path / "run.csv"
    write_recording(path, block)
    with RecordingReader(path, chunk_rows=777) as reader:
        assert reader.has_trunk and reader.columns == PELVIS_COLUMNS + TRUNK_COLUMNS
        assert 0 < reader.bytes_done < reader.bytes_total == path.stat().st_size
        blocks = list(reader)
        assert reader.rows_read == 5000 and reader.bytes_done == reader.bytes_total
    assert all(0 < len(b) <= 777 for b in blocks)
    assert_blocks_close(concat(blocks), block)


def test_crlf_bom_and_whitespace_tolerated(tmp_path: Path) -> None:
    lines = ["# sensor = mpu6050", " t , ax,ay,az,gx,gy,gz , " + ", ".join(TRUNK_COLUMNS)]
    lines += [row(i / 100, ",,,,," if i % 2 else "1,2,3,4,5,6") for i in range(200)]
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    block, meta, problems = read_recording(path)
    assert problems == [] and meta == {"sensor": "mpu6050"}
    assert len(block) == 200
    np.testing.assert_array_equal(block.trunk_valid, np.arange(200) % 2 == 0)
    np.testing.assert_allclose(block.trunk_gyr[0], [4, 5, 6])


def test_trunk_written_as_six_nans_means_no_trunk_data(tmp_path: Path) -> None:
    nans = ",".join(["nan"] * 6)
    lines = [HEADER_TRUNK] + [row(i / 100, nans if i % 3 == 0 else "1,2,3,4,5,6") for i in range(300)]
    lines.append(row(3.5, "NaN,NaN,NaN,NaN,NaN,NaN"))
    block, _, problems = read_recording(write_text(tmp_path / "r.csv", "\n".join(lines)))
    assert problems == [] and len(block) == 301
    assert block.trunk_valid.sum() == 200 and not block.trunk_valid[-1]


def test_gap_is_passed_on_not_filled(tmp_path: Path) -> None:
    lines = [HEADER] + [row(i / 100) for i in range(100)] + [row(5 + i / 100) for i in range(100)]
    block, _, problems = read_recording(write_text(tmp_path / "gap.csv", "\n".join(lines) + "\n"))
    assert problems == [] and len(block) == 200
    assert np.diff(block.t).max() == pytest.approx(4.01)


def test_comments_and_blank_lines_after_header_skipped(tmp_path: Path) -> None:
    text = f"{HEADER}\n\n{row(0.0)}\n# a note\n   \n{row(0.01)}\n"
    block, _, problems = read_recording(write_text(tmp_path / "c.csv", text))
    assert problems == [] and block.t.tolist() == [0.0, 0.01]


# -- refusals -------------------------------------------------------------------------------------


def refusal(path: Path) -> str:
    with pytest.raises(RecordingError) as info:
        read_recording(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_refuses_missing_file(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such file"


def test_refuses_directory(tmp_path: Path) -> None:
    assert refusal(tmp_path) == f"{tmp_path}: is a directory, not a recording file"


def test_refuses_empty_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "e.csv", "")
    assert refusal(path) == f"{path}: empty file"


def test_refuses_utf16(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes(f"{HEADER}\n{row(0)}\n".encode("utf-16"))
    assert refusal(path) == f"{path}: not UTF-8 text (it is UTF-16); save it as UTF-8 CSV"


def test_refuses_binary(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b"SQLite format 3\x00\x10\x00\x01\x01")
    assert refusal(path) == f"{path}: not UTF-8 text (binary data)"


def test_refuses_latin1_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "l1.csv"
    path.write_bytes(f"# sensor=mpu6050\n# note=tilt 5\xb0\n{HEADER}\n{row(0)}\n".encode("latin-1"))
    assert refusal(path) == f"{path}:2: not UTF-8 text"


def test_refuses_no_header(tmp_path: Path) -> None:
    path = write_text(tmp_path / "h.csv", "# sensor=mpu6050\n\n")
    assert refusal(path) == f"{path}: no header line '{HEADER}' (only metadata, comments or blank lines)"


def test_refuses_wrong_header(tmp_path: Path) -> None:
    path = write_text(tmp_path / "h.csv", f"# rate=200\ntime,ax,ay,az,gx,gy,gz\n{row(0)}\n")
    expected = f"'{HEADER}', optionally followed by ',{','.join(TRUNK_COLUMNS)}'"
    found = "found the header 'time,ax,ay,az,gx,gy,gz'"
    assert refusal(path) == f"{path}:2: bad header: expected {expected}; {found}"


def test_refuses_partial_trunk_header(tmp_path: Path) -> None:
    path = write_text(tmp_path / "h.csv", f"{HEADER},trunk_ax,trunk_ay,trunk_az\n{row(0, '1,2,3')}\n")
    message = refusal(path)
    assert message.startswith(f"{path}:1: bad header: expected '{HEADER}'")
    assert message.endswith(f"found the header '{HEADER},trunk_ax,trunk_ay,trunk_az'")


def test_refuses_missing_header_naming_the_data_row(tmp_path: Path) -> None:
    path = write_text(tmp_path / "h.csv", f"{row(0)}\n{row(0.01)}\n")
    message = refusal(path)
    assert message.startswith(f"{path}:1: bad header:")
    assert f"found a data row (is the header line missing?) '{row(0)}'" in message


def test_refuses_hash_line_that_is_not_metadata(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", f"# rate=200\n# recorded on the track\n{HEADER}\n{row(0)}\n")
    assert refusal(path) == (
        f"{path}:2: a '#' line before the header must be '# key=value', got '# recorded on the track'"
    )


def test_refuses_header_without_data(tmp_path: Path) -> None:
    path = write_text(tmp_path / "n.csv", f"# rate=200\n{HEADER}\n\n")
    reader = RecordingReader(path)  # opening is fine: the header is good
    with pytest.raises(RecordingError) as info:
        list(reader)
    assert str(info.value) == f"{path}: no samples: the file has a header but no data rows"


def test_refuses_file_with_only_bad_rows(tmp_path: Path) -> None:
    path = write_text(tmp_path / "n.csv", f"{HEADER}\n1,2,3\nnan,0,0,0,0,0,0\n")
    assert refusal(path) == (f"{path}: no samples: all 2 data rows are bad (first, line 2: expected 7 fields, got 3)")


# -- bad rows -------------------------------------------------------------------------------------

BAD_ROWS = {
    "0.5,1,2,3,4,5": "expected 7 fields, got 6",
    "0.5,1,2,3,4,5,6,7": "expected 7 fields, got 8",
    "0.5,1,2,3,4,abc,6": "non-numeric value 'abc' in column gy",
    "0.5,1,2,nan,4,5,6": "non-finite value in column az",
    "0.5,1,2,3,inf,5,6": "non-finite value in column gx",
    "0.5,1,2,3,4,5,1e999": "non-finite value in column gz",
    "0.5,,2,3,4,5,6": "empty value in column ax",
    "0.5,1_0,2,3,4,5,6": "non-numeric value '1_0' in column ax",
}


@pytest.mark.parametrize("bad", list(BAD_ROWS))
def test_bad_row_reported_and_rest_kept(tmp_path: Path, bad: str) -> None:
    good = [row(i / 100) for i in range(200)]
    lines = ["# rate=100", HEADER, *good[:50], bad, *good[50:]]  # the bad row is on line 53
    block, _, problems = read_recording(write_text(tmp_path / "bad.csv", "\n".join(lines) + "\n"))
    assert problems == [RowProblem(53, BAD_ROWS[bad])]
    np.testing.assert_allclose(block.t, np.arange(200) / 100)


@pytest.mark.parametrize(
    ("trunk", "reason"),
    [
        ("1,2,,4,5,6", "trunk columns partly empty"),
        ("1,2,3,4,5,nan", "non-finite value in column trunk_gz"),
        ("1,2,3,x,5,6", "non-numeric value 'x' in column trunk_gx"),
        ("nan,nan,nan,1,nan,nan", "non-finite value in column trunk_ax"),
    ],
)
def test_bad_trunk_row(tmp_path: Path, trunk: str, reason: str) -> None:
    lines = [HEADER_TRUNK] + [row(i / 100, ",,,,," if i % 4 else "1,2,3,4,5,6") for i in range(150)]
    lines.insert(101, row(0.995, trunk))  # line 102, between good t values
    block, _, problems = read_recording(write_text(tmp_path / "bad.csv", "\n".join(lines)))
    assert problems == [RowProblem(102, reason)]
    assert len(block) == 150


def test_t_not_increasing(tmp_path: Path) -> None:
    lines = [HEADER, row(0.0), row(0.01), row(0.01), row(0.005), row(0.02), row(0.5), row(0.03), row(0.51)]
    with RecordingReader(write_text(tmp_path / "t.csv", "\n".join(lines))) as reader:
        block = concat(list(reader))
        assert reader.problems == [
            RowProblem(4, "t=0.01 does not increase (previous 0.01)"),
            RowProblem(5, "t=0.005 does not increase (previous 0.01)"),
            RowProblem(8, "t=0.03 does not increase (previous 0.5)"),
        ]
        assert reader.rows_read + len(reader.problems) == 8
    assert block.t.tolist() == [0.0, 0.01, 0.02, 0.5, 0.51]


def test_t_backwards_across_chunk_boundary(tmp_path: Path) -> None:
    ts = [i / 100 for i in range(300)]
    ts[150] = 1.0  # first row of the second chunk goes back in time (previous good t is 1.49)
    lines = [HEADER] + [row(t) for t in ts]
    with RecordingReader(write_text(tmp_path / "t.csv", "\n".join(lines)), chunk_rows=150) as reader:
        blocks = list(reader)
    assert reader.problems == [RowProblem(152, "t=1 does not increase (previous 1.49)")]
    assert [len(b) for b in blocks] == [150, 149]


def test_strict_raises_at_first_bad_row(tmp_path: Path) -> None:
    lines = [HEADER] + [row(i / 100) for i in range(200)]
    lines[120] = "0.5,1,2,3"
    lines[150] = "garbage"
    path = write_text(tmp_path / "s.csv", "\n".join(lines))
    with pytest.raises(RecordingError) as info:
        read_recording(path, strict=True)
    assert str(info.value) == f"{path}:121: expected 7 fields, got 4"
    _, _, problems = read_recording(path)
    assert [p.line for p in problems] == [121, 151]


def test_nothing_lost_on_a_large_messy_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    bad = set(rng.choice(n, 40, replace=False).tolist())
    lines = [HEADER_TRUNK]
    for i in range(n):
        lines.append("1,2,oops" if i in bad else row(i / 200, "1,2,3,4,5,6" if i % 5 else ",,,,,"))
    with RecordingReader(write_text(tmp_path / "m.csv", "\n".join(lines)), chunk_rows=3000) as reader:
        block = concat(list(reader))
        assert reader.rows_read + len(reader.problems) == n
    assert [p.line for p in reader.problems] == sorted(i + 2 for i in bad)
    assert len(block) == n - 40 and (np.diff(block.t) > 0).all()


def test_close_and_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_recording(path, make_block(100))
    reader = RecordingReader(path, chunk_rows=10)
    it = iter(reader)
    next(it)
    reader.close()
    reader.close()
    assert list(it) == []


# -- chunking does not matter ---------------------------------------------------------------------

GOOD, GOOD_NO_TRUNK, GOOD_NAN_TRUNK, BLANK, COMMENT = "good", "good_nt", "good_nan", "blank", "comment"
BAD_KINDS = {
    "fields": ("1,2,3", "expected 13 fields, got 3"),
    "text": ("{t},1,2,3,4,abc,6,1,2,3,4,5,6", "non-numeric value 'abc' in column gy"),
    "nan": ("{t},1,2,NaN,4,5,6,,,,,,", "non-finite value in column az"),
    "partly": ("{t},1,2,3,4,5,6,1,,3,4,5,6", "trunk columns partly empty"),
    "back": ("{t_back},1,2,3,4,5,6,,,,,,", "t={t_back:.15g} does not increase (previous {prev:.15g})"),
}
NANS = ",".join(["nan"] * 6)
OTHER_KINDS = [GOOD_NO_TRUNK, GOOD_NAN_TRUNK, BLANK, COMMENT, *BAD_KINDS]


@st.composite
def file_kinds(draw: st.DrawFn) -> list[str]:
    """Mostly good rows with a few odd ones, so that both the fast and the per-line parser run."""
    kinds: list[str] = []
    for run, odd in draw(st.lists(st.tuples(st.integers(0, 150), st.sampled_from(OTHER_KINDS)), max_size=8)):
        kinds += [GOOD] * run + [odd]
    return [*kinds, *[GOOD] * draw(st.integers(1, 150))]


def build_file(kinds: list[str]) -> tuple[str, list[float], list[bool], list[RowProblem]]:
    """File text, the expected good t values and trunk validity, and the expected problems."""
    lines = ["# rate=200", HEADER_TRUNK]
    ts: list[float] = []
    valid: list[bool] = []
    problems: list[RowProblem] = []
    t = 0.0
    for kind in kinds:
        line_no = len(lines) + 1
        if kind in (GOOD, GOOD_NO_TRUNK, GOOD_NAN_TRUNK):
            t = round(t + 0.005, 6)
            trunk = {GOOD: "1.5,2,3e0,-4,5,6", GOOD_NO_TRUNK: ",,,,,", GOOD_NAN_TRUNK: NANS}[kind]
            lines.append(f"{t:.6f},0.1,-0.2,9.81,1e-3,0.02,-0.03,{trunk}")
            ts.append(t)
            valid.append(kind == GOOD)
        elif kind == BLANK:
            lines.append("")
        elif kind == COMMENT:
            lines.append("# lap")
        else:
            template, reason = BAD_KINDS[kind]
            t_back = round(t - 0.0025, 6) if ts else -1.0
            if kind == "back" and not ts:
                template, reason = template.replace("{t_back}", "nan"), "non-finite value in column t"
            lines.append(template.format(t=t + 0.001, t_back=t_back))
            problems.append(RowProblem(line_no, reason.format(t_back=t_back, prev=t)))
    return "\n".join(lines) + "\n", ts, valid, problems


def concat(blocks: list[Block]) -> Block:
    return concat_blocks(blocks, blocks[0].has_trunk if blocks else False)


@settings(max_examples=60, deadline=None)
@given(
    kinds=file_kinds(),
    chunk_rows=st.integers(1, 600),
)
def test_chunk_boundaries_do_not_matter(kinds: list[str], chunk_rows: int) -> None:
    text, ts, valid, problems = build_file(kinds)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_text(Path(tmp) / "h.csv", text)
        with RecordingReader(path, chunk_rows=chunk_rows) as reader:
            blocks = list(reader)
            assert reader.problems == problems
            assert reader.rows_read == len(ts)
        assert all(0 < len(b) <= chunk_rows for b in blocks)
        block = concat(blocks)
        np.testing.assert_allclose(block.t, ts, atol=1e-9)
        assert block.trunk_valid.tolist() == valid
        assert np.isnan(block.trunk_acc[~block.trunk_valid]).all()
        np.testing.assert_allclose(block.trunk_acc[block.trunk_valid], np.tile([1.5, 2, 3], (sum(valid), 1)))
        np.testing.assert_allclose(block.gyr[:, 0], 1e-3)
        assert not any(math.isnan(x) for x in block.t)


def test_t_problem_shows_enough_digits_late_in_a_fast_recording(tmp_path: Path) -> None:
    lines = [HEADER, row(3600.001), row(3600.002), row(3600.0015)]
    _, _, problems = read_recording(write_text(tmp_path / "t.csv", "\n".join(lines)))
    assert problems == [RowProblem(4, "t=3600.0015 does not increase (previous 3600.002)")]


def test_refuses_unreadable_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "locked.csv", f"{HEADER}\n{row(0)}\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert refusal(path) == f"{path}: cannot read the file: Permission denied"
    finally:
        path.chmod(0o600)


def test_refuses_old_mac_line_endings_in_one_line(tmp_path: Path) -> None:
    path = write_text(tmp_path / "mac.csv", f"{HEADER}\r{row(0)}\r{row(0.01)}\r")
    message = refusal(path)
    assert message.startswith(f"{path}:1: bad header:") and "\r" not in message
