"""``stackcue export``: one logbook session as CSV tables, JSON lines, an exchange recording or a FIT activity.

The writers take an open :class:`~service.logbook.Logbook` and a session id, so the same functions serve a
runner's whole-data export (docs/logbook.md, "Privacy": a runner's data can be exported and deleted whole).

* ``write_strides_csv`` / ``write_alerts_csv``: one row a stride / an alert, for a spreadsheet. Empty cell =
  null; booleans as 1/0 (a column mean is then a share); ``time_utc`` is ISO 8601 UTC (empty when the session
  has no start time).
* ``write_jsonl``: a ``session`` line, then the stored events in the order and shape of ``stackcue analyze
  --jsonl``, so whatever reads analyze's output reads an export (including ``analyze --calibration``).
* ``write_samples_csv``: the raw samples as an exchange CSV (docs/formats.md), readable by ``stackcue analyze``.
* ``write_fit``: a FIT activity file (fit-tool; conventions in its docstring).

Files are written to ``FILE.tmp``, made owner-only (posture data is personal health data) and renamed into
place, so a failed export never leaves a half file under the asked name.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import struct
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from stackcue.dsp.drift import KINDS
from stackcue.errors import InputError, ReportError
from stackcue.firmware_bridge.csv_format import RecordingWriter

from .argtypes import logbook_options
from .logbook import Logbook
from .wallclock import known_start, start_warning

FORMATS = ("csv", "jsonl", "fit")
TABLES = ("strides", "alerts", "samples")

#: stride fields in the order of docs/formats.md; fields a newer pipeline adds follow, sorted
STRIDE_FIELDS = [
    "t_start",
    "t_end",
    "cadence_spm",
    "steady",
    "pelvic_tilt_deg",
    "pelvic_obliquity_range_deg",
    "pelvic_rotation_range_deg",
    "trunk_lean_deg",
    "stack_deg",
    "pelvic_drop_left_deg",
    "pelvic_drop_right_deg",
    "contact_time_left_s",
    "contact_time_right_s",
    "forward_axis_error_deg",
]
ALERT_COLUMNS = [
    "alert_id",
    "kind",
    "t",
    "time_utc",
    "value_deg",
    "threshold_deg",
    "reminder",
    "decided_t",
    "cleared_t",
    "delivered",
    "delivered_at_utc",
]
#: keys the MQTT publisher adds to a stored alert payload (the outbox may have written the row): not analyze's
PUBLISHER_KEYS = {"session", "alert_id", "raised_at", "sent_at", "age_s", "replayed"}

# ---------------------------------------------------------------------------------------------- FIT conventions
FIT_EPOCH_S = 631065600  # 1989-12-31T00:00:00Z in Unix seconds
FIT_PRODUCT = 1  # our product number under manufacturer "development" (255)
#: developer data id of stackcue: a fixed UUID, so tools can tell our fields from another app's
FIT_APPLICATION_ID = uuid.uuid5(uuid.NAMESPACE_URL, "https://stackcue.invalid/fit-developer-fields").bytes
FIT_APPLICATION_VERSION = 1  # layout of the developer fields below; bump when they change
#: developer field number -> (name, stride key): float32, degrees, on ``record`` messages
FIT_DEV_FIELDS = {
    0: ("pelvic_tilt", "pelvic_tilt_deg"),
    1: ("stack_angle", "stack_deg"),
    2: ("trunk_lean", "trunk_lean_deg"),
    3: ("pelvic_obliquity_range", "pelvic_obliquity_range_deg"),
}
FIT_CADENCE_SCALE = 128  # fractional_cadence is 1/128 rpm
_F32_NULL = struct.unpack("<f", b"\xff\xff\xff\xff")[0]  # float32's invalid value (a NaN with every bit set)


# ---------------------------------------------------------------------------------------------- helpers

_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _iso(epoch: float | None) -> str:
    """ISO 8601 UTC to the nearest millisecond (``isoformat`` alone truncates)."""
    if epoch is None:
        return ""
    try:
        when = _UNIX_EPOCH + dt.timedelta(milliseconds=round(epoch * 1000))
    except (OverflowError, ValueError):  # beyond year 9999 (or NaN): no date to write
        return ""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _session(book: Logbook, session_id: str) -> dict:
    from .session_store import find_session

    return find_session(book, session_id)


def _wall(session: dict, t: float | None) -> float | None:
    start = known_start(session.get("started_epoch"))  # out of range (a clock not set): no wall-clock time
    return None if start is None or t is None else float(start) + float(t)


def stride_columns(strides: list[dict]) -> list[str]:
    """The strides CSV header: the stride fields (docs/formats.md), ``time_utc`` after ``t_end``, then newer fields."""
    extra = sorted({k for s in strides for k in s} - set(STRIDE_FIELDS) - {"type"})
    return [*STRIDE_FIELDS[:2], "time_utc", *STRIDE_FIELDS[2:], *extra]


# ---------------------------------------------------------------------------------------------- CSV tables


def write_strides_csv(book: Logbook, session_id: str, fileobj: IO[str]) -> int:
    """One row a stride; returns the number of rows. ``time_utc`` is the wall-clock time of ``t_start``."""
    session = _session(book, session_id)
    strides = book.strides(session["id"])
    cols = stride_columns(strides)
    w = csv.writer(fileobj, lineterminator="\n")
    w.writerow(cols)
    for s in strides:
        w.writerow([_iso(_wall(session, s.get("t_start"))) if c == "time_utc" else _cell(s.get(c)) for c in cols])
    return len(strides)


def write_alerts_csv(book: Logbook, session_id: str, fileobj: IO[str]) -> int:
    """One row an alert (reminders included): when, how far past which threshold, when it cleared, delivered.

    ``cleared_t`` is the first ``clear`` of the same kind after the alert (empty while the drift lasted to the
    end); ``delivered`` is the MQTT PUBACK (always 0 for a session analysed from a file: nothing was sent).
    """
    session = _session(book, session_id)
    sid = session["id"]
    clears = [(c.get("kind"), float(c["t"])) for c in book.events(sid, types=("clear",)) if c.get("t") is not None]
    w = csv.writer(fileobj, lineterminator="\n")
    w.writerow(ALERT_COLUMNS)
    rows = book.alerts(sid)
    for a in rows:
        p = a["payload"]
        t = a["t"] if a["t"] is not None else p.get("t")
        cleared = next((ct for kind, ct in clears if kind == a["kind"] and t is not None and ct > t), None)
        w.writerow(
            [
                _cell(a["alert_id"]),
                _cell(a["kind"]),
                _cell(t),
                _iso(_wall(session, t)),
                _cell(p.get("value_deg")),
                _cell(p.get("threshold_deg")),
                _cell(p.get("reminder")),
                _cell(p.get("decided_t")),
                _cell(cleared),
                _cell(a["delivered"]),
                _iso(a["delivered_at"]),
            ]
        )
    return len(rows)


# ---------------------------------------------------------------------------------------------- JSON lines

#: within one time, analyze emits: the stride, its calibration_suspect / reference, then its alerts and clears
#: (in drift-kind order), then a gap that starts where the stride ended; other events after
_RANK = {"stride": 0, "calibration_suspect": 1, "reference": 2, "alert": 3, "clear": 3, "gap": 4}
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}


def _event_key(e: dict) -> tuple[float, int, int]:
    et = e.get("type")
    if et == "summary":
        t = math.inf
    elif et == "stride":
        t = e.get("t_end")
    elif et == "gap":
        t = e.get("t_start")
    else:
        t = e.get("t")
    rank = 5 if et == "reference" and e.get("set") == "start" else _RANK.get(str(et), 5)  # after its calibration
    return (math.inf if t is None else float(t), rank, _KIND_ORDER.get(e.get("kind", ""), 0))


def alert_event(stored: dict) -> dict:
    """A stored alert payload back in analyze's shape (the MQTT outbox may have stored its own form)."""
    p = {k: v for k, v in stored.items() if k not in PUBLISHER_KEYS and not k.startswith("_")}
    if "id" not in p and stored.get("alert_id") is not None:
        p["id"] = stored["alert_id"]
    return p


def session_events(book: Logbook, session_id: str) -> list[dict]:
    """Every stored event of a session (strides, alerts and the rest) in analyze's order.

    The logbook keeps strides, alerts and other events in separate tables; analyze emits a stride, then what
    that stride decided (alerts carry the stride's ``t_end`` as ``t``), so a sort on time with that rank within
    one time gives analyze's order back. The sort is stable: ties keep the logbook's emission order.
    """
    evs: list[dict] = list(book.strides(session_id))
    evs += [alert_event(a["payload"]) for a in book.alerts(session_id)]
    evs += book.events(session_id)
    evs.sort(key=_event_key)
    return evs


def write_jsonl(book: Logbook, session_id: str, fileobj: IO[str]) -> int:
    """A ``session`` line, then every stored event as ``analyze --jsonl`` gives them; returns the event count."""
    s = _session(book, session_id)
    head = {
        "type": "session",
        "id": s["id"],
        "runner": s["runner"],
        "started_epoch": s["started_epoch"],
        "started_utc": _iso(known_start(s["started_epoch"])) or None,
        "clock_synchronised": s.get("clock_synchronised"),
        "source": s["source"],
        "calibration": s["calibration"],
        "config": s["config"],
        "ended_epoch": s.get("ended_epoch"),
        "ended_how": s["ended_how"],
        "duration_s": s.get("duration_s"),
        "origin": s.get("origin"),
        "notes": s.get("notes"),
    }
    fileobj.write(json.dumps(head, separators=(",", ":")) + "\n")
    events = session_events(book, s["id"])
    for e in events:
        fileobj.write(json.dumps(e, separators=(",", ":")) + "\n")
    return len(events)


# ---------------------------------------------------------------------------------------------- raw samples


def _meta_value(v: Any) -> str:
    return " ".join(str(v).split())  # one line: the reader takes '# key=value' lines


def samples_meta(session: dict, first_t: np.ndarray | None) -> dict[str, str]:
    """The exchange CSV's ``# key=value`` lines: the source's own metadata, then runner, session, start."""
    meta: dict[str, str] = {}
    src = session.get("source") if isinstance(session.get("source"), dict) else {}
    for k, v in src.items():
        key = _meta_value(k)
        if key not in ("kind", "path") and key and "=" not in key and not isinstance(v, (dict, list)) and v is not None:
            meta[key] = _meta_value(v)
    meta.setdefault("sensor", _meta_value(src.get("kind", "unknown")))
    if "rate" not in meta and first_t is not None and len(first_t) > 1:
        meta["rate"] = f"{1.0 / float(np.median(np.diff(first_t))):.0f}"
    if session.get("runner") is not None:
        meta["runner"] = _meta_value(session["runner"])
    meta["session"] = _meta_value(session["id"])
    if known_start(session.get("started_epoch")) is not None:
        meta["started_utc"] = _iso(session["started_epoch"])
    else:  # out of range (a clock not set): no wall-clock time, not even the recording's own
        meta.pop("started_utc", None)
    if session.get("clock_synchronised") is not None:
        meta["clock_synchronised"] = _meta_value(session["clock_synchronised"])
    return meta


def _require_raw(book: Logbook, sid: str) -> None:
    if not book.has_raw(sid):
        raise ReportError(f"session {sid} has no raw samples in {book.path} (kept only with [logbook] raw = true)")


def write_samples_csv(book: Logbook, session_id: str, path: str | os.PathLike) -> int:
    """The session's raw samples as an exchange CSV (``stackcue analyze`` reads it); returns the row count.

    A session may gain or lose its trunk sensor midway: ``Logbook.raw_blocks`` gives one layout throughout.
    Values were stored as float32 and are written with the exchange format's decimals (acc 1e-5 m/s², gyr
    1e-6 rad/s), which float32 resolves, so a recording that went in as CSV comes out as the same digits
    (except where float32's half-step exceeds the 5e-7 rad/s of the last gyro decimal: |gyr| ≥ 16 rad/s).
    """
    s = _session(book, session_id)
    sid = s["id"]
    _require_raw(book, sid)
    first_t = next(book.raw_chunks(sid))["t"]
    with RecordingWriter(path, book.has_trunk(sid), samples_meta(s, first_t)) as w:
        for block in book.raw_blocks(sid):
            w.write(block)
        return w.rows


# ---------------------------------------------------------------------------------------------- FIT


def _fit_s(epoch: float) -> int:
    """Unix seconds to whole FIT seconds (FIT date_time: uint32 s since 1989-12-31 UTC), rounded."""
    return round(epoch) - FIT_EPOCH_S


def _fit_cadence(spm: float) -> tuple[int, float]:
    """Steps/min to FIT's running ``cadence`` + ``fractional_cadence``: strides/min ("rpm"), 1/128 stride/min."""
    q = round(spm / 2 * FIT_CADENCE_SCALE)
    return q // FIT_CADENCE_SCALE, (q % FIT_CADENCE_SCALE) / FIT_CADENCE_SCALE


def fit_stride_record(st: dict, unix_ms: int) -> Any:
    """One stride as fit-tool's ``RecordMessage`` (cadence and the developer fields that are known): the first
    of each run of like strides; ``record_packer`` packs the others to the bytes fit-tool would give."""
    from fit_tool.base_type import BaseType
    from fit_tool.developer_field import DeveloperField
    from fit_tool.profile.messages.record_message import RecordMessage

    devs = []
    for num, (_name, key) in FIT_DEV_FIELDS.items():
        df = DeveloperField(developer_data_index=0, field_id=num, base_type=BaseType.FLOAT32, size=4)
        if st.get(key) is not None:
            df.set_value(0, float(st[key]))
        devs.append(df)
    r = RecordMessage(developer_fields=devs)
    r.timestamp = unix_ms
    if st.get("cadence_spm") is not None:
        r.cadence, r.fractional_cadence = _fit_cadence(float(st["cadence_spm"]))
    return r


def record_packer(definition: Any) -> Callable[[dict, int], bytes]:
    """A function packing a stride as a FIT ``record`` data message under fit-tool's ``definition`` of it.

    Knows the fields ``write_fit`` sets (timestamp, cadence, fractional_cadence, the float32 developer fields);
    a field it does not know, or a big-endian definition, is an error (a bug here, not a user mistake).
    A null is the base type's invalid value, as fit-tool writes it.
    """
    from fit_tool.endian import Endian

    if definition.endian != Endian.LITTLE:
        raise ValueError("record_packer: only little-endian definitions")
    fmt = "<B"
    getters: list[Callable[[dict, int], Any]] = []
    for fd in definition.field_definitions:
        if (fd.field_id, fd.size) == (253, 4):
            fmt += "I"
            getters.append(lambda st, fit_s: fit_s)
        elif (fd.field_id, fd.size) in ((4, 1), (53, 1)):
            fmt += "B"
            part = 0 if fd.field_id == 4 else 1

            def cadence(st: dict, fit_s: int, part: int = part) -> int:
                spm = st.get("cadence_spm")
                if spm is None:
                    return 0xFF
                whole, frac = _fit_cadence(float(spm))
                return whole if part == 0 else round(frac * FIT_CADENCE_SCALE)

            getters.append(cadence)
        else:
            raise ValueError(f"record_packer: field {fd.field_id} (size {fd.size}) is not one write_fit sets")
    for dd in definition.developer_field_definitions:
        if dd.developer_data_index != 0 or dd.field_id not in FIT_DEV_FIELDS or dd.size != 4:
            raise ValueError(f"record_packer: developer field {dd.field_id} is not one write_fit sets")
        fmt += "f"
        key = FIT_DEV_FIELDS[dd.field_id][1]
        getters.append(lambda st, fit_s, key=key: _F32_NULL if st.get(key) is None else float(st[key]))
    packer = struct.Struct(fmt)
    local = definition.local_id & 0x0F

    def pack(st: dict, fit_s: int) -> bytes:
        return packer.pack(local, *(g(st, fit_s) for g in getters))

    return pack


def clock_warning(session: dict) -> str | None:
    """Why the session's wall-clock times may be wrong, or None (a Pi without RTC or NTP starts in the past)."""
    sync = session.get("clock_synchronised")
    if sync in ("yes", True, 1):
        return None
    if sync == "file time":
        how = "the start time was guessed from the recording file's modification time"
    elif sync in ("no", False, 0):
        how = "the clock was not NTP-synchronised when it started"
    else:
        how = "the clock was not known to be NTP-synchronised when it started"
    return f"session {session['id']}: {how}; the FIT times (start {_iso(session.get('started_epoch'))}) may be off"


def write_fit(book: Logbook, session_id: str, path: str | os.PathLike, err: IO[str] | None = None) -> int:
    """A FIT activity file of the session, one ``record`` a stride; returns the number of records.

    Conventions (FIT SDK profile; "Activity file" best practice):

    * ``file_id``: type activity, manufacturer development (255), product ``FIT_PRODUCT``, serial number the
      CRC-32 of the session id (tools that de-duplicate uploads on serial + time_created then do it per
      session), time_created the session start.
    * ``developer_data_id`` index 0 with ``FIT_APPLICATION_ID``; ``field_description`` 0 ``pelvic_tilt``,
      1 ``stack_angle``, 2 ``trunk_lean``, 3 ``pelvic_obliquity_range``: float32, units "deg", native message
      ``record`` (20). float32 needs no scale or offset (readers need not honour a developer field's scale)
      and holds the events' 0.01° exactly enough (|error| < 1e-5°). A null (no trunk sensor, or the trunk
      dropped out over the stride) is float32's invalid value, which readers report as no value.
    * ``record``: ``timestamp`` = session start + the stride's mid time (``(t_start + t_end) / 2`` on the
      source clock, whose 0 is the session start), rounded to FIT's whole seconds, so two strides may share a
      second. ``cadence`` as Garmin writes it for running: strides (cycles) per minute, the "rpm" of the
      profile, i.e. steps/min ÷ 2, with ``fractional_cadence`` (1/128 rpm) for the rest: 170.5 steps/min is
      cadence 85 + fractional 0.25. Garmin Connect, Strava and the Garmin SDK's own tools then show
      steps/min again (×2); the resolution is 1/64 step/min.
    * ``event`` timer start at the session start and timer stop at its end; one ``lap`` and one ``session``
      (sport running, generic) spanning the whole session: total elapsed = total timer time = the session's
      duration (no auto-pause: the runner's stops stay in the timer, as on a watch without it); avg cadence
      the mean of the strides' cadences, max cadence their max, total_cycles the number of strides;
      ``activity`` (manual, one session, local_timestamp from this machine's time zone).
    * Header: 14 bytes with its CRC; the file CRC after the records (fit-tool's header and CRC-16). The builder
      runs in strict mode: fit-tool's wire, profile and Activity file-type rules are checked before writing, on
      every message fit-tool built: all but the records ``record_packer`` packed, which repeat the layout of a
      checked record (the first of their run) with other values.
    * A session without strides is refused (an Activity file needs a record).
    * A session whose start is unknown (none stored, or out of range: ``wallclock.known_start``) gets FIT
      "system time" instead of wall-clock time: seconds from the session start (below 0x10000000, which FIT
      readers take as relative), local_timestamp equal to it, and a warning line.
    """
    from fit_tool.base_type import BaseType
    from fit_tool.encode import EncodeOptions, encode_record_projected
    from fit_tool.fit_file_builder import FitFileBuilder
    from fit_tool.fit_file_header import FitFileHeader
    from fit_tool.profile.messages.activity_message import ActivityMessage
    from fit_tool.profile.messages.developer_data_id_message import DeveloperDataIdMessage
    from fit_tool.profile.messages.event_message import EventMessage
    from fit_tool.profile.messages.field_description_message import FieldDescriptionMessage
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.lap_message import LapMessage
    from fit_tool.profile.messages.record_message import RecordMessage
    from fit_tool.profile.messages.session_message import SessionMessage
    from fit_tool.profile.profile_type import (
        Activity,
        Event,
        EventType,
        FileType,
        LapTrigger,
        Manufacturer,
        SessionTrigger,
        Sport,
        SubSport,
    )
    from fit_tool.utils.crc import crc16

    s = _session(book, session_id)
    sid = s["id"]
    known = known_start(s.get("started_epoch"))
    warning = clock_warning(s) if known is not None else start_warning(s)
    if warning:
        (err or sys.stderr).write(f"warning: {warning}\n")
    # no believable start: FIT "system time", seconds counted from the session start (below 0x10000000)
    start = float(FIT_EPOCH_S) if known is None else known
    strides = book.strides(sid)
    if not strides:
        raise ReportError(f"session {sid} has no strides: a FIT activity needs at least one record")
    summary = s.get("summary") or {}
    end_t = max(
        [float(x) for x in (s.get("duration_s"), summary.get("duration_s")) if x is not None]
        + [float(st["t_end"]) for st in strides[-1:]]
        + [0.0]
    )
    t0_fit, t1_fit = _fit_s(start), _fit_s(start + end_t)
    ms = 1000  # fit-tool takes date_time values in Unix milliseconds

    def unix_ms(fit_s: int) -> int:
        return (fit_s + FIT_EPOCH_S) * ms

    b = FitFileBuilder(auto_define=True, strict=True)  # strict: fit-tool's wire, profile and activity-file rules
    m = FileIdMessage()
    m.type = FileType.ACTIVITY
    m.manufacturer = Manufacturer.DEVELOPMENT.value
    m.product = FIT_PRODUCT
    m.serial_number = zlib.crc32(sid.encode()) or 1
    m.time_created = unix_ms(t0_fit)
    b.add(m)
    d = DeveloperDataIdMessage()
    d.developer_data_index = 0
    d.application_id = FIT_APPLICATION_ID
    d.application_version = FIT_APPLICATION_VERSION
    b.add(d)
    for num, (name, _key) in FIT_DEV_FIELDS.items():
        f = FieldDescriptionMessage()
        f.developer_data_index = 0
        f.field_definition_number = num
        f.fit_base_type_id = BaseType.FLOAT32
        f.field_name = name
        f.units = "deg"
        f.native_mesg_num = RecordMessage.ID
        b.add(f)

    def timer(ts: int, kind: EventType) -> EventMessage:
        ev = EventMessage()
        ev.timestamp = unix_ms(ts)
        ev.event = Event.TIMER
        ev.event_type = kind
        return ev

    b.add(timer(t0_fit, EventType.START))
    cadences = [float(st["cadence_spm"]) for st in strides if st.get("cadence_spm") is not None]
    # fit-tool builds ~90 field objects per record (7.6 s and 256 MB for 60 minutes, issue 18): it builds, defines
    # and validates the first record of each run of strides with the same fields present, and the rest of the
    # run is packed here with the definition fit-tool chose for it (the same bytes, tests/test_export.py)
    packed: dict[int, list[bytes]] = {}  # index in b.records of a run's first record -> the run's other records
    shape: tuple | None = None
    pack: Callable[[dict, int], bytes] | None = None
    for st in strides:
        fit_s = _fit_s(start + (float(st["t_start"]) + float(st["t_end"])) / 2)
        now = (st.get("cadence_spm") is not None, *(st.get(key) is not None for _n, key in FIT_DEV_FIELDS.values()))
        if now == shape and pack is not None:
            packed[len(b.records) - 1].append(pack(st, fit_s))
            continue
        shape = now
        r = fit_stride_record(st, unix_ms(fit_s))
        b.add(r)
        pack = record_packer(b.definition_map[r.local_id])
        packed[len(b.records) - 1] = []
    b.add(timer(t1_fit, EventType.STOP_ALL))
    total_s = float(end_t)
    for msg in (LapMessage(), SessionMessage()):
        msg.message_index = 0
        msg.timestamp = unix_ms(t1_fit)
        msg.start_time = unix_ms(t0_fit)
        msg.total_elapsed_time = total_s
        msg.total_timer_time = total_s
        msg.sport = Sport.RUNNING
        msg.sub_sport = SubSport.GENERIC
        msg.total_cycles = len(strides)
        if cadences:
            msg.avg_cadence, msg.avg_fractional_cadence = _fit_cadence(sum(cadences) / len(cadences))
            msg.max_cadence, msg.max_fractional_cadence = _fit_cadence(max(cadences))
        if isinstance(msg, LapMessage):
            msg.event, msg.event_type, msg.lap_trigger = Event.LAP, EventType.STOP, LapTrigger.SESSION_END
        else:
            msg.event, msg.event_type, msg.trigger = Event.SESSION, EventType.STOP, SessionTrigger.ACTIVITY_END
            msg.first_lap_index, msg.num_laps = 0, 1
        b.add(msg)
    a = ActivityMessage()
    a.timestamp = unix_ms(t1_fit)
    a.total_timer_time = total_s
    a.num_sessions = 1
    a.type = Activity.MANUAL
    a.event, a.event_type = Event.ACTIVITY, EventType.STOP
    offset = dt.timedelta(0)
    if known is not None:
        offset = dt.datetime.fromtimestamp(start + end_t).astimezone().utcoffset() or offset
    a.local_timestamp = t1_fit + int(offset.total_seconds())  # local_date_time: FIT seconds, no ms
    b.add(a)
    b.validate()  # raises FitValidationError on a rule broken (a bug here, not a user mistake)
    body = bytearray()
    for i, rec in enumerate(b.records):
        body += encode_record_projected(rec, options=EncodeOptions())
        body += b"".join(packed.get(i, ()))
    # the 14-byte header with its CRC, the records, the file CRC: what FitFile.to_bytes writes
    head = FitFileHeader(records_size=len(body), gen_crc=True).to_bytes()
    Path(path).write_bytes(head + body + struct.pack("<H", crc16(body, crc=crc16(head))))
    return len(strides)


# ---------------------------------------------------------------------------------------------- CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``stackcue export`` on the CLI's subparsers."""
    e = subparsers.add_parser(
        "export",
        help="write one logbook session as CSV, JSON lines or a FIT activity file",
        description="Write one logbook session: --format csv (--what strides, alerts or samples: the raw "
        "samples as an exchange CSV that stackcue analyze reads), jsonl (a session line, then the "
        "events as stackcue analyze --jsonl gives them) or fit (a FIT activity: cadence, with pelvic "
        "tilt, stack angle and trunk lean as developer fields).",
    )
    e.add_argument("session", metavar="SESSION", help="session id, a unique prefix of it, or 'latest'")
    e.add_argument(
        "--format", dest="fmt", metavar="FORMAT", help="csv, jsonl or fit (default: from the output file's suffix)"
    )
    e.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="file to write ('-' for standard output, csv strides/alerts and jsonl only)",
    )
    e.add_argument("--what", metavar="TABLE", help="with --format csv: strides (default), alerts or samples")
    logbook_options(e)
    return e


def _open_logbook(args: argparse.Namespace) -> Logbook:
    from .config import load_config
    from .session_store import open_logbook

    return open_logbook(load_config(args.config), args.logbook)


def _format(args: argparse.Namespace) -> tuple[str, str]:
    fmt = (args.fmt or "").lower()
    if not fmt:
        suffix = Path(args.output).suffix.lower().lstrip(".")
        fmt = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "fit": "fit"}.get(suffix, "")
        if not fmt:
            raise InputError(f"{args.output}: give --format csv, jsonl or fit (not told by the file's suffix)")
    if fmt not in FORMATS:
        raise InputError(f"unknown format {args.fmt!r}: csv, jsonl or fit")
    what = args.what or "strides"
    if args.what and fmt != "csv":
        raise InputError(f"--what is for --format csv (a {fmt} export holds strides and alerts together)")
    if what not in TABLES:
        raise InputError(f"--what {what!r}: strides, alerts or samples")
    return fmt, what


def _write_atomic(out: Path, write: Callable[[Path], int]) -> int:
    """``write`` a file at ``out`` with ``output_files.write_output``: a regular file through an owner-only
    temporary file and a rename (never a half file under the asked name), a device or a FIFO written through."""
    from .output_files import write_output

    return write_output(out, write)


def cmd_export(args: argparse.Namespace) -> int:
    fmt, what = _format(args)
    to_stdout = args.output == "-"
    if to_stdout and (fmt == "fit" or what == "samples"):
        raise InputError("-o - (standard output) is for csv strides/alerts and jsonl; give a file name")
    out = Path(args.output)
    if not to_stdout and not out.parent.exists():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    book = _open_logbook(args)
    try:
        session = _session(book, args.session)
        sid = session["id"]
        warning = start_warning(session)
        if warning and fmt != "fit":  # write_fit says it itself
            print(f"warning: {warning}", file=sys.stderr)
        if what == "samples":
            _require_raw(book, sid)
        t0 = time.monotonic()
        text_writers: dict[tuple[str, str], tuple[Callable[[Logbook, str, IO[str]], int], str]] = {
            ("jsonl", "strides"): (write_jsonl, "events"),
            ("csv", "strides"): (write_strides_csv, "strides"),
            ("csv", "alerts"): (write_alerts_csv, "alerts"),
        }
        if (fmt, what) in text_writers:
            text_writer, unit = text_writers[(fmt, what)]
            if to_stdout:
                n = text_writer(book, sid, sys.stdout)
            else:

                def write_text(p: Path) -> int:
                    with open(p, "w", encoding="utf-8", newline="") as fh:
                        return text_writer(book, sid, fh)

                n = _write_atomic(out, write_text)
        elif what == "samples":
            unit = "samples"
            n = _write_atomic(out, lambda p: write_samples_csv(book, sid, p))
        else:
            unit = "records (strides)"
            n = _write_atomic(out, lambda p: write_fit(book, sid, p))
    finally:
        book.close()
    from .output_files import is_write_through

    dest = "standard output" if to_stdout else str(out)
    through = is_write_through(args.output)  # stdout, a device, a FIFO: no size, and the line goes to stderr
    size = "" if through else f", {out.stat().st_size / 1e6:.2f} MB"
    print(
        f"wrote {dest}: session {sid}, {n} {unit}{size} in {time.monotonic() - t0:.1f} s",
        file=sys.stderr if through else sys.stdout,
    )
    return 0
