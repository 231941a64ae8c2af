"""The wire format of a synced session: its parts, their manifest, and the checks a hub makes on them (docs/sync.md).

Used by the Pi (``session_parts``, ``manifest``: built from its logbook) and by the hub (``decode_part``,
``check_manifest``, ``ordered``: ``HubStore.put_part``/``complete`` and the sync API), so both sides agree on one
definition. A part is one canonical JSON document (``canonical``); its id is the SHA-256 hex of those bytes, so
the hub can say which parts it lacks and a sync resumes where it stopped.

Rows carry the logbook's stored column values unchanged: text as text, numbers as numbers, NULL as null, a BLOB
as ``{"b64": ...}`` and a REAL that is not finite (SQLite keeps infinities) as ``{"f": "inf"}``/``{"f": "-inf"}``
(canonical JSON has no Infinity). ``decode_part`` gives back Python values (bytes, floats) ready to insert.

Part names (``ordered`` sorts them in the order the hub applies them, which keeps the Pi's rowid order):

* ``session``: the sessions row without ``notes``; ``notes``: the runner's notes;
* ``strides``, ``alerts``, ``events``: rows in rowid order without the ``session`` column (alerts without
  ``delivered``/``delivered_at``/``queued``: delivery is the Pi's business). Rows beyond ``ROWS_BUDGET`` bytes
  go on in ``strides.1``, ``strides.2``, ... (a session of several hours);
* ``raw.<k>`` (k = 0, 1, ...): raw_chunks rows ``[t0, t1, n, trunk, {"b64": data}]`` in rowid order, at most
  ``RAW_PER_PART`` chunks and ``ROWS_BUDGET`` bytes a part. A chunk larger than ``MAX_CHUNK_BYTES`` decompressed
  (an import flushes 200 000 samples at once) is cut into chunks of the same samples re-encoded with
  ``codec.encode_chunk``: every other row travels byte for byte.

The hub is a server facing the network: ``decode_part`` and ``check_manifest`` treat every body as hostile
(size, JSON depth, canonical form, column names, types, ranges, NUL characters PostgreSQL cannot store, raw
blobs that do not decode) and raise ``PartError`` with one line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from stackcue.errors import InputError

from ..logbook.codec import decode_chunk, encode_chunk

#: the largest part body (canonical JSON bytes); the sync API refuses a larger one with 413 while reading it
MAX_PART_BYTES = 8 * 1024 * 1024
#: rows are packed into a part until their encoding reaches this (well below MAX_PART_BYTES: one more row fits)
ROWS_BUDGET = 6 * 1024 * 1024
#: raw chunks in one raw.<k> part at most
RAW_PER_PART = 64
#: a raw chunk's decompressed size at most on the wire (larger ones are cut by the Pi; the hub refuses them)
MAX_CHUNK_BYTES = 4 * 1024 * 1024
#: a manifest's body at most, and its parts at most (10 000 raw parts of 64 one-second chunks: 177 hours)
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_PARTS = 10_000

SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
RUNNER_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
PART_NAME = re.compile(r"(session|notes)|(strides|alerts|events)(?:\.([1-9][0-9]{0,5}))?|raw\.(0|[1-9][0-9]{0,5})")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# column name -> kind ("text", "real", "int", "blob"); NOT NULL columns are in _REQUIRED
SESSION_COLUMNS: dict[str, str] = {
    "id": "text",
    "runner": "text",
    "started_epoch": "real",
    "clock_synchronised": "text",
    "source": "text",
    "calibration": "text",
    "config": "text",
    "ended_epoch": "real",
    "ended_how": "text",
    "summary": "text",
    "duration_s": "real",
    "distance_m": "real",
    "origin": "text",
    "ended_reason": "text",
}
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "strides": {
        "t_start": "real",
        "t_end": "real",
        "cadence_spm": "real",
        "pelvic_tilt_deg": "real",
        "trunk_lean_deg": "real",
        "stack_deg": "real",
        "steady": "int",
        "event": "text",
    },
    "alerts": {"alert_id": "int", "t": "real", "kind": "text", "payload": "text"},
    "events": {"t": "real", "type": "text", "event": "text"},
    "raw_chunks": {"t0": "real", "t1": "real", "n": "int", "trunk": "int", "data": "blob"},
}
_REQUIRED = {
    "sessions": {"id", "ended_how"},
    "strides": {"t_start", "t_end", "event"},
    "alerts": {"alert_id", "payload"},
    "events": {"type", "event"},
    "raw_chunks": {"t0", "t1", "n", "trunk", "data"},
}
#: integer columns' ranges (the hub's columns: steady/n/trunk are 32-bit on PostgreSQL, alert_id 64-bit)
_INT_RANGE = {
    "steady": (-(2**31), 2**31 - 1),
    "n": (1, MAX_CHUNK_BYTES // 32),
    "trunk": (0, 1),
    "alert_id": (-(2**63), 2**63 - 1),
}
_TABLE_OF = {"strides": "strides", "alerts": "alerts", "events": "events", "raw": "raw_chunks"}
_REQUIRED_PARTS = ("session", "notes", "strides", "alerts", "events")


class PartError(InputError):
    """A part or manifest that cannot be built (Pi) or accepted (hub); the message is one line."""


# ------------------------------------------------------------------ canonical encoding
def canonical(obj: Any) -> bytes:
    """The one byte form of a part: sorted keys, no spaces, UTF-8, no NaN/Infinity (so its hash is its id)."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (UnicodeEncodeError, ValueError) as exc:
        raise PartError(f"cannot encode a part: {str(exc).splitlines()[0]}") from None


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def wire_value(v: Any) -> Any:
    """A stored column value as it travels: bytes as ``{"b64"}``, a non-finite REAL as ``{"f"}``, else as is."""
    if isinstance(v, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, float) and not math.isfinite(v):
        return {"f": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    return v


def rows_digest(rows: Iterable[Iterable[Any]]) -> str:
    """The SHA-256 hex of rows of stored values (bytes, floats, text, None), as the wire encodes them: the Pi's
    rows and the hub's rows of one table compare equal by this digest."""
    h = hashlib.sha256()
    for row in rows:
        h.update(canonical([wire_value(v) for v in row]))
        h.update(b"\n")
    return h.hexdigest()


def samples_digest(chunks: Iterable[dict]) -> str:
    """The SHA-256 hex of raw samples (``Logbook.raw_chunks``' dicts, in order): equal when the samples are
    equal however they were cut into chunks (a chunk too big for the wire is cut)."""
    keys = ("t", "acc", "gyr", "trunk_acc", "trunk_gyr", "trunk_valid")
    hs = {k: hashlib.sha256() for k in keys}  # one stream a column: where the chunks were cut does not count
    for c in chunks:
        for key in keys:
            if key in c:
                hs[key].update(c[key].tobytes())
    return hashlib.sha256("".join(hs[k].hexdigest() for k in keys).encode()).hexdigest()


# ------------------------------------------------------------------ the Pi: parts of a session from its logbook
def _where(sid: str) -> str:
    return f"session {sid}"


def _select(conn: sqlite3.Connection, sql: str, args: tuple, sid: str) -> list[tuple]:
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.Error as exc:  # e.g. text that is not UTF-8 in a damaged file
        raise PartError(f"{_where(sid)}: cannot read the logbook ({exc})") from None


def _pack(
    rows: Iterable[list[Any]], base: str, first: str, sid: str, per_part: int | None = None, always: bool = True
) -> Iterator[tuple[str, bytes]]:
    """Rows (stored values) packed into parts of at most ``ROWS_BUDGET`` bytes (and ``per_part`` rows): each
    row is encoded once and the part's bytes joined from them, which is its canonical form (keys ``columns`` <
    ``part`` < ``rows``), so a part costs about twice its size in memory, whatever the session's length.
    ``first``: the first part's name (``strides`` or ``raw.0``); ``always``: a part even without rows."""
    cols = list(TABLE_COLUMNS[_TABLE_OF[base]])
    head = b'{"columns":' + canonical(cols) + b',"part":' + canonical(base) + b',"rows":['
    k, out, size = 0, [], 0

    def part() -> tuple[str, bytes]:
        body = head + b",".join(out) + b"]}"
        if len(body) > MAX_PART_BYTES:
            raise PartError(f"{_where(sid)}: a {base} row is too large to send ({len(body)} bytes)")
        if k == 0:
            return first, body
        return (f"raw.{k}" if base == "raw" else f"{base}.{k}"), body

    for row in rows:
        enc = canonical([wire_value(v) for v in row])
        if out and (size + len(enc) + 1 > ROWS_BUDGET or (per_part is not None and len(out) >= per_part)):
            yield part()
            k, out, size = k + 1, [], 0
        out.append(enc)
        size += len(enc) + 1
    if out or always:
        yield part()


def _table_rows(conn: sqlite3.Connection, sid: str, table: str, page: int) -> Iterator[list[Any]]:
    """``table``'s rows of ``sid`` in rowid order, read ``page`` rows at a time (no cursor stays open while a
    part is sent)."""
    cols = ", ".join(TABLE_COLUMNS[table])
    after = -1
    while True:
        rows = _select(
            conn,
            f"SELECT rowid, {cols} FROM {table} WHERE session = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            (sid, after, page),
            sid,
        )
        for r in rows:
            after = r[0]
            yield list(r[1:])
        if len(rows) < page:
            return


def _cut_chunk(t0: Any, t1: Any, n: Any, trunk: Any, data: Any, sid: str) -> list[list[Any]]:
    """A chunk as it travels: as stored, or (larger than MAX_CHUNK_BYTES decompressed) cut into chunks of the
    same samples, re-encoded, each within it."""
    if isinstance(n, int) and trunk in (0, 1) and n * (8 + 4 * (13 if trunk else 6)) <= MAX_CHUNK_BYTES:
        return [[t0, t1, n, trunk, data]]
    try:
        c = decode_chunk(data, n, bool(trunk))
    except ValueError as exc:
        raise PartError(f"{_where(sid)}: a raw chunk at t0 = {t0!r:.20} cannot be read: {exc}") from None
    per = MAX_CHUNK_BYTES // (8 + 4 * (13 if trunk else 6))
    out = []
    for i in range(0, n, per):
        s = slice(i, i + per)
        t = c["t"][s]
        extra = (c["trunk_acc"][s], c["trunk_gyr"][s], c["trunk_valid"][s]) if trunk else ()
        out.append([float(t[0]), float(t[-1]), len(t), trunk, encode_chunk(t, c["acc"][s], c["gyr"][s], *extra)])
    return out


def _raw_rows(conn: sqlite3.Connection, sid: str) -> Iterator[list[Any]]:
    """The raw chunks in rowid order, one blob read at a time (an import's chunks are MBs each): their rowids
    first (a few thousand integers for an hour), then each row by its rowid."""
    ids = [r[0] for r in _select(conn, "SELECT rowid FROM raw_chunks WHERE session = ? ORDER BY rowid", (sid,), sid)]
    for rowid in ids:
        rows = _select(conn, "SELECT t0, t1, n, trunk, data FROM raw_chunks WHERE rowid = ?", (rowid,), sid)
        if rows:
            yield from _cut_chunk(*rows[0], sid=sid)


def _session_row(conn: sqlite3.Connection, sid: str) -> tuple:
    cols = ", ".join(SESSION_COLUMNS)
    rows = _select(conn, f"SELECT {cols}, notes FROM sessions WHERE id = ?", (sid,), sid)
    if not rows:
        raise PartError(f"no session {sid} in the logbook")
    return rows[0]


def session_parts(book: Any, sid: str) -> Iterator[tuple[str, bytes]]:
    """The parts of session ``sid`` of a ``Logbook`` (its ``conn``), as (name, canonical bytes), in ``ordered``
    order. Lazy: a part is built when asked for, so a session of hours costs one part's memory at a time."""
    conn: sqlite3.Connection = book.conn
    r = _session_row(conn, sid)
    if r[8] is None:
        raise PartError(f"{_where(sid)} has not ended: only ended sessions are sent")
    yield (
        "session",
        canonical({"part": "session", "columns": list(SESSION_COLUMNS), "row": [wire_value(v) for v in r[:-1]]}),
    )
    yield (
        "notes",
        canonical({"part": "notes", "notes": r[-1] if r[-1] is None or isinstance(r[-1], str) else str(r[-1])}),
    )
    for table in ("strides", "alerts", "events"):
        yield from _pack(_table_rows(conn, sid, table, 2000), table, table, sid)
    yield from _pack(_raw_rows(conn, sid), "raw", "raw.0", sid, per_part=RAW_PER_PART, always=False)


def manifest(book: Any, sid: str) -> dict:
    """``{"session": sid, "runner": runner, "parts": {name: sha256}}`` of session ``sid`` (every part built once,
    one at a time)."""
    r = _session_row(book.conn, sid)
    parts = {name: sha256_hex(body) for name, body in session_parts(book, sid)}
    return {"session": sid, "runner": r[1], "parts": parts}


# ------------------------------------------------------------------ the hub: checking what arrives
def part_kind(name: str) -> tuple[str, int]:
    """(base, k) of a part's name: ``("strides", 0)``, ``("strides", 2)``, ``("raw", 5)``; PartError otherwise."""
    m = PART_NAME.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise PartError(f"{str(name)[:60]!r} is not a part name")
    if m.group(1):
        return m.group(1), 0
    if m.group(2):
        return m.group(2), int(m.group(3) or 0)
    return "raw", int(m.group(4))


def ordered(names: Iterable[str]) -> list[str]:
    """Part names in the order their rows are applied: session, notes, strides..., alerts..., events..., raw.k
    (by k), so the hub's rows follow the Pi's rowid order."""
    rank = {"session": 0, "notes": 1, "strides": 2, "alerts": 3, "events": 4, "raw": 5}

    def key(name: str) -> tuple[int, int]:
        base, k = part_kind(name)
        return rank[base], k

    return sorted(names, key=key)


def check_manifest(m: Any, sid: str | None = None, runner: str | None = None) -> dict:
    """A manifest that arrived, checked (shape, names, hashes, numbering without gaps; its session id and runner
    when given); returns it. PartError with one line otherwise."""
    if not isinstance(m, dict) or set(m) != {"session", "runner", "parts"}:
        raise PartError("a manifest is an object with exactly: session, runner, parts")
    if not isinstance(m["session"], str) or not SESSION_ID.fullmatch(m["session"]):
        raise PartError(f"manifest: {str(m['session'])[:60]!r} is not a session id")
    if sid is not None and m["session"] != sid:
        raise PartError(f"manifest: session {m['session']} is not {sid}")
    if not isinstance(m["runner"], str) or not RUNNER_ID.fullmatch(m["runner"]):
        raise PartError("manifest: runner is not a runner id")
    if runner is not None and m["runner"] != runner:
        raise PartError(f"manifest: runner {m['runner']} is not this token's runner")
    parts = m["parts"]
    if not isinstance(parts, dict) or not 0 < len(parts) <= MAX_PARTS:
        raise PartError(f"manifest: parts is not an object of 1..{MAX_PARTS} names")
    seen: dict[str, list[int]] = {}
    for name, digest in parts.items():
        base, k = part_kind(name)
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise PartError(f"manifest: part {name}: not a SHA-256 hex digest")
        seen.setdefault(base, []).append(k)
    for base in _REQUIRED_PARTS:
        if base not in seen:
            raise PartError(f"manifest: part {base} is missing")
    for base, ks in seen.items():
        if sorted(ks) != list(range(len(ks))):
            raise PartError(f"manifest: the {base} parts are not numbered 0.. without gaps")
    return m


def _strict_loads(body: bytes, what: str) -> Any:
    def no_constant(c: str) -> Any:
        raise ValueError(f"{c} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=no_constant)
    except UnicodeDecodeError:
        raise PartError(f"{what} is not UTF-8") from None
    except RecursionError:
        raise PartError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise PartError(f"{what} is not JSON ({str(exc).splitlines()[0][:80]})") from None


def decode_manifest(body: bytes, sid: str | None = None, runner: str | None = None) -> dict:
    """A manifest body as it arrived (bytes), parsed and checked (``check_manifest``)."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise PartError(f"manifest: {len(body)} bytes, more than {MAX_MANIFEST_BYTES}")
    return check_manifest(_strict_loads(body, "manifest"), sid, runner)


def _value(v: Any, kind: str, col: str, where: str) -> Any:
    """A wire value of a column of ``kind`` back to the stored value; PartError naming the column."""
    if v is None:
        return None
    if kind == "text":
        if not isinstance(v, str):
            raise PartError(f"{where}: column {col} is not text")
        if "\x00" in v:
            raise PartError(f"{where}: column {col} holds a NUL character")
        return v
    if kind == "real":
        if isinstance(v, dict):
            if v in ({"f": "inf"}, {"f": "-inf"}):
                return float(v["f"])
            raise PartError(f"{where}: column {col} is not a number")
        if isinstance(v, bool) or not isinstance(v, int | float) or abs(v) > 1.7e308:
            raise PartError(f"{where}: column {col} is not a number")
        return float(v) if isinstance(v, float) else v
    if kind == "int":
        lo, hi = _INT_RANGE[col]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise PartError(f"{where}: column {col} is not an integer in {lo}..{hi}")
        return v
    # blob
    if not isinstance(v, dict) or set(v) != {"b64"} or not isinstance(v["b64"], str):
        raise PartError(f'{where}: column {col} is not {{"b64": ...}}')
    try:
        return base64.b64decode(v["b64"].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise PartError(f"{where}: column {col} is not base64") from None


def _row(values: Any, cols: dict[str, str], table: str, where: str) -> list[Any]:
    if not isinstance(values, list) or len(values) != len(cols):
        raise PartError(f"{where}: a row is not a list of {len(cols)} values")
    out = [_value(v, kind, col, where) for v, (col, kind) in zip(values, cols.items(), strict=True)]
    for (col, _), v in zip(cols.items(), out, strict=True):
        if v is None and col in _REQUIRED[table]:
            raise PartError(f"{where}: column {col} is null")
    return out


def decode_part(name: str, body: bytes, sid: str | None = None) -> dict:
    """A part as it arrived, checked against a hostile sender; returns its content with stored values:

    * ``session``: ``{"part", "table": "sessions", "columns", "row"}`` (``row[0]`` is the id: ``sid`` when given)
    * ``notes``: ``{"part", "notes"}``
    * rows: ``{"part": base, "k", "table", "columns", "rows"}`` (``table``: strides, alerts, events, raw_chunks;
      blobs as bytes). Raw chunks must decode (``codec.decode_chunk``) within ``MAX_CHUNK_BYTES``.

    The body must be the part's canonical bytes (so its SHA-256 is its id) and at most ``MAX_PART_BYTES``.
    """
    base, k = part_kind(name)
    where = f"part {name}"
    if not isinstance(body, bytes | bytearray):
        raise PartError(f"{where}: the body is not bytes")
    if len(body) > MAX_PART_BYTES:
        raise PartError(f"{where}: {len(body)} bytes, more than {MAX_PART_BYTES}")
    obj = _strict_loads(bytes(body), where)
    if canonical(obj) != bytes(body):
        raise PartError(f"{where}: not canonical JSON (sorted keys, no spaces, UTF-8)")
    if not isinstance(obj, dict) or obj.get("part") != base:
        raise PartError(f"{where}: not a {base} part")
    if base == "notes":
        if set(obj) != {"part", "notes"} or not (obj["notes"] is None or isinstance(obj["notes"], str)):
            raise PartError(f"{where}: not {{part, notes: text or null}}")
        if obj["notes"] is not None and "\x00" in obj["notes"]:
            raise PartError(f"{where}: the notes hold a NUL character")
        return obj
    if base == "session":
        if set(obj) != {"part", "columns", "row"} or obj["columns"] != list(SESSION_COLUMNS):
            raise PartError(f"{where}: not {{part, columns, row}} with the sessions columns")
        row = _row(obj["row"], SESSION_COLUMNS, "sessions", where)
        if not SESSION_ID.fullmatch(row[0]) or (sid is not None and row[0] != sid):
            raise PartError(f"{where}: id {row[0][:60]!r} is not {sid or 'a session id'}")
        if row[8] not in ("clean", "unclean"):
            raise PartError(f"{where}: column ended_how is not clean or unclean")
        return {"part": "session", "table": "sessions", "columns": list(SESSION_COLUMNS), "row": row}
    table = _TABLE_OF[base]
    cols = TABLE_COLUMNS[table]
    if set(obj) != {"part", "columns", "rows"} or obj["columns"] != list(cols):
        raise PartError(f"{where}: not {{part, columns, rows}} with the {table} columns")
    if not isinstance(obj["rows"], list):
        raise PartError(f"{where}: rows is not a list")
    if base == "raw" and not 0 < len(obj["rows"]) <= RAW_PER_PART:
        raise PartError(f"{where}: not 1..{RAW_PER_PART} raw chunks")
    rows = []
    for i, values in enumerate(obj["rows"]):
        row = _row(values, cols, table, f"{where} row {i}")
        if base == "raw":
            t0, t1, n, trunk, data = row
            if n * (8 + 4 * (13 if trunk else 6)) > MAX_CHUNK_BYTES:
                raise PartError(f"{where} row {i}: a chunk of more than {MAX_CHUNK_BYTES} bytes decompressed")
            try:
                decode_chunk(data, n, bool(trunk))
            except ValueError as exc:
                raise PartError(f"{where} row {i}: column data: {exc}") from None
        rows.append(row)
    if base == "alerts":
        ids = [r[0] for r in rows]
        if len(set(ids)) != len(ids):
            raise PartError(f"{where}: an alert_id twice")
    return {"part": base, "k": k, "table": table, "columns": list(cols), "rows": rows}
