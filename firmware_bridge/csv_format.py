"""The exchange CSV format (docs/formats.md): ``t,ax,ay,az,gx,gy,gz[,trunk_…]``.

Writing is here; reading (strict, with line numbers) is below the writer.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np

from stackcue.errors import RecordingError

from .block import Block

PELVIS_COLUMNS = ["t", "ax", "ay", "az", "gx", "gy", "gz"]
TRUNK_COLUMNS = ["trunk_ax", "trunk_ay", "trunk_az", "trunk_gx", "trunk_gy", "trunk_gz"]
#: a reading beyond these is no sensor's, in any unit the analysis can still name (g, mg, °/s, m°/s): 4× a
#: 16 g accelerometer's range in mg, 4× a 2000 °/s gyro's in m°/s. Such a row is rejected like a NaN row.
ACC_LIMIT = 1e5
GYR_LIMIT = 1e7
_LIMITS = {name: (ACC_LIMIT if name[-2] == "a" else GYR_LIMIT) for name in PELVIS_COLUMNS[1:] + TRUNK_COLUMNS}


def _format_rows(block: Block) -> list[str]:
    base = np.column_stack([block.t, block.acc, block.gyr])
    rows = [f"{r[0]:.6f},{r[1]:.5f},{r[2]:.5f},{r[3]:.5f},{r[4]:.6f},{r[5]:.6f},{r[6]:.6f}" for r in base]
    if not block.has_trunk:
        return rows
    trunk = np.column_stack([block.trunk_acc, block.trunk_gyr])
    out = []
    for row, tr, ok in zip(rows, trunk, block.trunk_valid, strict=True):  # type: ignore[arg-type]
        if ok:
            out.append(f"{row},{tr[0]:.5f},{tr[1]:.5f},{tr[2]:.5f},{tr[3]:.6f},{tr[4]:.6f},{tr[5]:.6f}")
        else:
            out.append(f"{row},,,,,,")
    return out


class RecordingWriter:
    """Writes an exchange CSV block by block (a live recording); ``flush()`` makes it durable."""

    def __init__(self, path: str | Path, trunk: bool, meta: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.trunk = trunk
        self.rows = 0
        self.fh = open(self.path, "w", encoding="utf-8", newline="\n")
        for key, value in (meta or {}).items():
            self.fh.write(f"# {key}={value}\n")
        self.fh.write(",".join(PELVIS_COLUMNS + (TRUNK_COLUMNS if trunk else [])) + "\n")

    def write(self, block: Block) -> None:
        if block.has_trunk != self.trunk:
            raise ValueError("block has a different number of segments than the file")
        for start in range(0, len(block), 20000):
            self.fh.write("\n".join(_format_rows(block.slice(start, start + 20000))) + "\n")
        self.rows += len(block)

    def flush(self) -> None:
        self.fh.flush()
        try:
            os.fsync(self.fh.fileno())
        except OSError as exc:  # a pipe or a device (/dev/stdout) has nothing to make durable
            if exc.errno not in (errno.EINVAL, errno.EROFS):
                raise

    def close(self) -> None:
        if not self.fh.closed:
            try:
                self.flush()
            finally:
                with contextlib.suppress(OSError):  # the flush's error (a full disk) is the one to report
                    self.fh.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_recording(path: str | Path, block: Block, meta: dict[str, str] | None = None) -> None:
    """Write ``block`` as an exchange CSV, with ``# key=value`` metadata lines first."""
    with RecordingWriter(path, block.has_trunk, meta) as w:
        if len(block):
            w.write(block)


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------
#
# Speed: a chunk of lines is first parsed as a whole and validated as a whole array: plain decimals
# (what the writer writes) by `_parse_plain`, anything else numpy's loadtxt accepts by np.loadtxt. Only
# a chunk that fails both is split in halves and retried, down to small pieces that are parsed line by
# line in Python, so a few bad rows cost little and still get exact line numbers and reasons.

_FAST_BYTES = b"0123456789+-.eE,\n\r \t"  # anything else (nan, inf, junk, non-ASCII) needs the slow path
_PLAIN_BYTES = b"0123456789.-,\n"
_PLAIN_DIGITS = 15  # at most: the mantissa stays below 2**53, so it and 10**f are exact floats
_POW10 = 10.0 ** np.arange(_PLAIN_DIGITS + 1)
_PLAIN_TEXT = bytes.maketrans(b",\n", b"  ")  # fields apart by spaces, for np.fromstring
_EMPTY_TRUNK = b"," * len(TRUNK_COLUMNS) + b"\n"
_NAN_TRUNK = b",nan" * len(TRUNK_COLUMNS) + b"\n"
_SLOW_BELOW = 64  # pieces this small go straight to the per-line parser
_SNIFF_BYTES = 65536


def _parse_plain(data: bytes, ncols: int) -> np.ndarray | None:
    """``data`` as an (n, ncols) float64 array if every line is ``ncols`` plain decimals; None otherwise.

    Plain: ``-?digits.digits`` with one point, at most 15 digits; an empty field is NaN (the caller's checks
    refuse it outside a whole empty trunk group). Each field is read as the integer ``m`` of its digits and
    divided by ``10**f`` (``f`` digits after the point): both are exact doubles, so the one division is
    correctly rounded, the same bits as ``float()`` and ``np.loadtxt`` give, without their general decimal
    conversion, which was about half of ``analyze`` (issue 18: a 60-minute file is read in 1.0 s, was 1.9 s).
    Anything else (an exponent, ``nan``, spaces, a field without a point, a row of another length) returns None.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")  # a lone CR stays and is refused below
    if not data.endswith(b"\n"):
        data += b"\n"
    if data.translate(None, _PLAIN_BYTES):
        return None
    buf = np.frombuffer(data, np.uint8)
    # positions as int32 (a chunk is a few MB): these arrays are the parse's memory (issue 18: analyze's peak)
    seps = np.flatnonzero(buf <= 44).astype(np.int32)  # ',' (44) and '\n' (10): no other byte left is that low
    if len(seps) == 0 or len(seps) % ncols:
        return None
    ends_line = (buf[seps] == 10).reshape(-1, ncols)
    if not ends_line[:, -1].all() or ends_line[:, :-1].any():  # every line has exactly ncols fields
        return None
    starts = np.empty_like(seps)
    starts[0] = 0
    starts[1:] = seps[:-1] + 1
    neg = buf[starts] == 45
    full = seps > starts
    ends, starts = seps[full], starts[full]
    points = np.flatnonzero(buf == 46).astype(np.int32)
    if len(points) != len(ends) or not ((points >= starts) & (points < ends)).all():
        return None  # not one point in each non-empty field
    if data.count(b"-") != np.count_nonzero(neg):
        return None  # a minus other than first
    digits = ends - starts - 1 - neg[full]  # a field's characters less its point and its sign
    if len(digits) and (digits.min() < 1 or digits.max() > _PLAIN_DIGITS):
        return None
    del starts, digits
    try:  # the digits of each non-empty field as one integer (strtoll: no decimal rounding); empty ones vanish
        mantissa = np.fromstring(data.translate(_PLAIN_TEXT, b"."), dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if len(mantissa) != len(ends):
        return None
    values = np.full(len(seps), np.nan)
    values[full] = np.abs(mantissa) / _POW10[ends - points - 1]
    np.negative(values, out=values, where=neg)  # after abs: -0.000 is -0.0, as float() reads it
    return values.reshape(-1, ncols)


def _parse_value(name: str, value: str, out: list[float]) -> str | None:
    """Append ``value`` as a float to ``out``, or return why it is not a finite number."""
    if not value:
        return f"empty value in column {name}"
    try:
        if not value.isascii() or "_" in value:  # float() would take '1_0' and non-ASCII digits
            raise ValueError
        number = float(value)
    except ValueError:
        shown = value if len(value) <= 24 else value[:21] + "..."
        return f"non-numeric value {shown!r} in column {name}"
    if not math.isfinite(number):
        return f"non-finite value in column {name}"
    limit = _LIMITS.get(name)
    if limit is not None and abs(number) > limit:
        return f"value {number:.3g} in column {name} is beyond any sensor's range (±{limit:g})"
    out.append(number)
    return None


@dataclass
class RowProblem:
    """A data row that was skipped, with its 1-based line number and why (never dropped silently)."""

    line: int
    reason: str


def _describe(columns: list[str]) -> str:
    return ",".join(columns)


def _header_problem(text: str) -> str | None:
    """Why ``text`` is not a valid header (saying what was expected and what was found), or None."""
    names = [name.strip() for name in text.split(",")]
    if names in (PELVIS_COLUMNS, PELVIS_COLUMNS + TRUNK_COLUMNS):
        return None
    expected = f"'{_describe(PELVIS_COLUMNS)}', optionally followed by ',{_describe(TRUNK_COLUMNS)}'"
    shown = repr(text if len(text) <= 120 else text[:117] + "...")  # repr: one line, whatever it holds
    try:
        float(names[0])
        found = "a data row (is the header line missing?)"
    except ValueError:
        found = "the header"
    return f"bad header: expected {expected}; found {found} {shown}"


class RecordingReader:
    """Streams an exchange CSV as Blocks of up to ``chunk_rows`` rows.

    Opening reads the metadata and header, so a file that cannot be a recording is refused at once
    with a one-line :class:`RecordingError`. Bad data rows are skipped and listed in ``problems``
    (with ``strict=True`` the first one raises instead). Each Block holds only good rows, in file
    order, float64; a gap in time is passed on as it is.
    """

    def __init__(self, path: str | Path, *, chunk_rows: int = 50_000, strict: bool = False) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1 (got {chunk_rows})")
        self.path = str(path)
        self.chunk_rows = chunk_rows
        self.strict = strict
        self.meta: dict[str, str] = {}
        self.columns: list[str] = []
        self.has_trunk = False
        self.problems: list[RowProblem] = []
        self.rows_read = 0
        self.bytes_total = 0
        self.bytes_done = 0
        self._line_no = 0  # lines consumed so far (the last one's number)
        self._last_t = -math.inf
        self._fh: BinaryIO | None = None
        self._done = False
        self._open()

    # -- opening ---------------------------------------------------------------------------------

    def _fail(self, line: int | None, reason: str) -> NoReturn:
        self.close()
        raise RecordingError(self.path, line, reason)

    def _open(self) -> None:
        p = Path(self.path)
        if p.is_dir():
            self._fail(None, "is a directory, not a recording file")
        try:
            self._fh = open(p, "rb")  # held open while streaming; close() closes it
            self.bytes_total = os.fstat(self._fh.fileno()).st_size
            head = self._fh.read(_SNIFF_BYTES)
            self._fh.seek(0)
        except FileNotFoundError:
            self._fail(None, "no such file")
        except OSError as exc:
            self._fail(None, f"cannot read the file: {exc.strerror or exc}")
        if not head:
            self._fail(None, "empty file")
        self._sniff_text(head)
        if head.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (spreadsheets write one)
            self._fh.seek(3)
        self._read_preamble()
        self.bytes_done = self._fh.tell()

    def _sniff_text(self, head: bytes) -> None:
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            self._fail(None, "not UTF-8 text (it is UTF-16); save it as UTF-8 CSV")
        if b"\0" in head:
            self._fail(None, "not UTF-8 text (binary data)")
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3 or len(head) < _SNIFF_BYTES:  # not just a cut-off character
                self._fail(head.count(b"\n", 0, exc.start) + 1, "not UTF-8 text")

    def _read_preamble(self) -> None:
        """Metadata lines, then the header; leaves the file at the first data line."""
        assert self._fh is not None
        for raw in self._fh:
            self._line_no += 1
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                self._fail(self._line_no, "not UTF-8 text")
            if not text:
                continue
            if text.startswith("#"):
                key, eq, value = text[1:].partition("=")
                if not eq or not key.strip():
                    reason = f"a '#' line before the header must be '# key=value', got {text!r}"
                    self._fail(self._line_no, reason)
                self.meta[key.strip()] = value.strip()
                continue
            if (reason := _header_problem(text)) is not None:
                self._fail(self._line_no, reason)
            self.columns = [name.strip() for name in text.split(",")]
            self.has_trunk = len(self.columns) > len(PELVIS_COLUMNS)
            self._limits = np.array([_LIMITS.get(name, np.inf) for name in self.columns[1:]])
            return
        expected = _describe(PELVIS_COLUMNS)
        self._fail(None, f"no header line '{expected}' (only metadata, comments or blank lines)")

    # -- streaming -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Block]:
        while (block := self._next_block()) is not None:
            yield block

    def _next_block(self) -> Block | None:
        while not self._done and self._fh is not None:
            lines = list(itertools.islice(self._fh, self.chunk_rows))
            first = self._line_no + 1
            self._line_no += len(lines)
            self.bytes_done = self._fh.tell()
            if not lines:
                self._finish()
                return None
            rows = self._parse(lines, first)
            if len(rows):
                self.rows_read += len(rows)
                return self._to_block(rows)
        return None

    def _finish(self) -> None:
        self._done = True
        self.bytes_done = self.bytes_total
        self._close_file()
        if self.rows_read == 0:
            if self.problems:
                first = self.problems[0]
                reason = (
                    f"no samples: all {len(self.problems)} data rows are bad (first, line {first.line}: {first.reason})"
                )
            else:
                reason = "no samples: the file has a header but no data rows"
            self._fail(None, reason)

    def _parse(self, lines: list[bytes], first: int) -> np.ndarray:
        """Good rows of ``lines`` (numbered from ``first``) as an (n, ncols) array; problems recorded."""
        if len(lines) > _SLOW_BELOW:
            arr = self._parse_fast(lines)
            if arr is not None:
                return arr
            half = len(lines) // 2
            left = self._parse(lines[:half], first)
            right = self._parse(lines[half:], first + half)
            return np.concatenate([left, right])
        return self._parse_slow(lines, first)

    def _parse_fast(self, lines: list[bytes]) -> np.ndarray | None:
        """All lines parsed in C if every data line is clean and good; None if anything is off."""
        ncols = len(self.columns)
        data = b"".join(lines)
        if not data or data.isspace():
            return np.empty((0, ncols))
        arr = _parse_plain(data, ncols)
        if arr is None:
            arr = self._parse_loadtxt(data)
        if arr is None or arr.shape[1] != ncols or len(arr) == 0:
            return None
        t = arr[:, 0]
        if not np.isfinite(arr[:, : len(PELVIS_COLUMNS)]).all():
            return None
        if (np.abs(arr[:, 1:]) > self._limits).any():  # NaN (no trunk) compares False: fine
            return None
        if t[0] <= self._last_t or (len(t) > 1 and not (np.diff(t) > 0).all()):
            return None
        if self.has_trunk:
            trunk = arr[:, len(PELVIS_COLUMNS) :]
            empty = np.isnan(trunk[:, 0])
            if not np.isfinite(trunk[~empty]).all() or not np.isnan(trunk[empty]).all():
                return None
        self._last_t = float(t[-1])
        return arr

    def _parse_loadtxt(self, data: bytes) -> np.ndarray | None:
        """``data`` by numpy's loadtxt (exponents, ``nan`` trunk groups, spaces); None if it refuses."""
        if data.translate(None, _FAST_BYTES):  # letters, '#', non-ASCII: fine only as six-NaN trunk groups
            if not self.has_trunk or data.replace(_NAN_TRUNK, b"\n").translate(None, _FAST_BYTES):
                return None
        if self.has_trunk:
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            if not data.endswith(b"\n"):
                data += b"\n"
            data = data.replace(_EMPTY_TRUNK, _NAN_TRUNK)
        try:  # loadtxt skips empty lines and raises on a wrong field count or an empty field
            return np.loadtxt(io.BytesIO(data), delimiter=",", comments=None, ndmin=2, dtype=np.float64)
        except ValueError:
            return None

    def _parse_slow(self, lines: list[bytes], first: int) -> np.ndarray:
        """Line by line, for exact line numbers and reasons."""
        rows: list[list[float]] = []
        for line_no, raw in enumerate(lines, first):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                self._problem(line_no, "not UTF-8 text")
                continue
            if not text or text.startswith("#"):
                continue
            row, reason = self._parse_row(text)
            if reason is None and row[0] <= self._last_t:
                reason = f"t={row[0]:.15g} does not increase (previous {self._last_t:.15g})"
            if reason is not None:
                self._problem(line_no, reason)
                continue
            self._last_t = row[0]
            rows.append(row)
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(self.columns))

    def _parse_row(self, text: str) -> tuple[list[float], str | None]:
        """One row's values (NaN for an absent trunk group), or the reason it is bad."""
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != len(self.columns):
            return [], f"expected {len(self.columns)} fields, got {len(fields)}"
        n_pelvis = len(PELVIS_COLUMNS)
        row: list[float] = []
        for name, value in zip(PELVIS_COLUMNS, fields, strict=False):
            reason = _parse_value(name, value, row)
            if reason:
                return [], reason
        trunk = fields[n_pelvis:]
        if not trunk:
            return row, None
        # A trunk group written as six NaNs (numpy/pandas style) means "no trunk data", like empty.
        if not any(trunk) or all(f.lower() == "nan" for f in trunk):
            row.extend([math.nan] * len(TRUNK_COLUMNS))
            return row, None
        if not all(trunk):
            return [], "trunk columns partly empty"
        for name, value in zip(TRUNK_COLUMNS, trunk, strict=True):
            reason = _parse_value(name, value, row)
            if reason:
                return [], reason
        return row, None

    def _problem(self, line: int, reason: str) -> None:
        if self.strict:
            self._fail(line, reason)
        self.problems.append(RowProblem(line, reason))

    def _to_block(self, rows: np.ndarray) -> Block:
        t = np.ascontiguousarray(rows[:, 0])
        acc = np.ascontiguousarray(rows[:, 1:4])
        gyr = np.ascontiguousarray(rows[:, 4:7])
        if not self.has_trunk:
            return Block(t, acc, gyr)
        return Block(
            t,
            acc,
            gyr,
            np.ascontiguousarray(rows[:, 7:10]),
            np.ascontiguousarray(rows[:, 10:13]),
            ~np.isnan(rows[:, 7]),
        )

    # -- closing ---------------------------------------------------------------------------------

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        """Release the file; safe to call twice. Iteration stops afterwards."""
        self._done = True
        self._close_file()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def concat_blocks(blocks: list[Block], trunk: bool) -> Block:
    """One Block holding ``blocks`` in order (an empty one if there are none)."""
    if not blocks:
        return Block.empty(trunk)
    if len(blocks) == 1:
        return blocks[0]
    t = np.concatenate([b.t for b in blocks])
    acc = np.concatenate([b.acc for b in blocks])
    gyr = np.concatenate([b.gyr for b in blocks])
    if not trunk:
        return Block(t, acc, gyr)
    return Block(
        t,
        acc,
        gyr,
        np.concatenate([b.trunk_acc for b in blocks]),  # type: ignore[misc]
        np.concatenate([b.trunk_gyr for b in blocks]),  # type: ignore[misc]
        np.concatenate([b.trunk_valid for b in blocks]),  # type: ignore[misc]
    )


def read_recording(path: str | Path, *, strict: bool = False) -> tuple[Block, dict[str, str], list[RowProblem]]:
    """The whole recording as one Block, with its metadata and the rows that were skipped."""
    with RecordingReader(path, strict=strict) as reader:
        blocks = list(reader)
        return concat_blocks(blocks, reader.has_trunk), reader.meta, reader.problems
