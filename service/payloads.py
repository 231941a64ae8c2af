"""The schema of the JSON payloads stackcue acts on (``alert``, ``event``, ``command``, ``state``; service/topics.py).

``validate(topic_name, payload)`` says in one line what does not fit, or None when the payload may be acted
on. It checks only the fields a decision reads (extra fields are allowed: a newer daemon may add some):

* every payload: ``session`` a string (or null), ``t`` a finite number (or null); ``sent_at`` is not
  checked: one that is not a number means the two wall clocks are not comparable (cue_rules, staleness);
* ``alert``: ``kind`` a non-empty string; ``alert_id``/``id`` an integer or a string; ``age_s`` a finite
  number >= 0 when present (an alert whose age cannot be known is not known to be fresh); ``reminder`` and
  ``replayed`` booleans when present; ``cue`` a boolean when present (``"false"``, a string, would be cued
  by a client that tests ``is False``) and ``cue_skipped`` a string;
* ``event``: ``type`` a string; a ``calibration`` event's ``ok`` a JSON boolean (``"false"``, a string, is
  not an accepted calibration); a ``sensor`` event's ``state`` ``lost`` or ``back``; ``say`` a string and
  ``step`` a string or an integer when present; an alert's ``muted`` a boolean when present (true: not cued);
* ``command`` (what the daemon obeys): ``service.controls.parse_command``, the one validation of a command;
* ``state`` (what a page shows): ``state`` one of the daemon's states, numbers where numbers belong,
  ``last_stride``/``last_command``/``last_session`` objects (``last_command.ok`` a boolean).

Anything that does not fit is logged by the caller in one line and not cued.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

MAX_TEXT = 500  # a say text or a kind longer than this is not something the daemon sends


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with control characters as ``\\n``/``\\x1b``/``\\u2028`` escapes (a backslash stays as is):
    payload fields reach the logs, and a newline or a terminal escape in one must not forge a line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class OneLineLogs(logging.Filter):
    """Escapes control characters in each record's final message, whatever field carried them (the cue client
    logs runner ids, kinds, alert ids, steps and texts from payloads): one log line stays one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if _CONTROL.search(msg):
            record.msg, record.args = escape_controls(msg), None
        return True


def _is_num(v: Any) -> bool:
    try:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    except OverflowError:  # an integer beyond a float's range
        return False


def _show(v: Any) -> str:
    try:
        text = repr(v)
    except ValueError:  # an int of more than 4300 digits has no repr
        text = f"<{type(v).__name__} too long to show>"
    return text if len(text) <= 40 else text[:37] + "..."


def _check_number(msg: dict, key: str, *, nullable: bool = True, minimum: float | None = None) -> str | None:
    if key not in msg:
        return None
    v = msg[key]
    if v is None and nullable:
        return None
    if not _is_num(v):
        return f"{key} {_show(v)} is not a finite number"
    if minimum is not None and v < minimum:
        return f"{key} {_show(v)} is below {minimum:g}"
    return None


def _check_text(msg: dict, key: str, *, nullable: bool = True) -> str | None:
    if key not in msg:
        return None
    v = msg[key]
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        return f"{key} {_show(v)} is not a string"
    if len(v) > MAX_TEXT:
        return f"{key} is {len(v)} characters long (at most {MAX_TEXT})"
    return None


def _check_bool(msg: dict, key: str) -> str | None:
    if key in msg and not isinstance(msg[key], bool):
        return f"{key} {_show(msg[key])} is not true or false"
    return None


def _check_id(msg: dict, key: str) -> str | None:
    if key not in msg or msg[key] is None:
        return None
    v = msg[key]
    if isinstance(v, bool) or not isinstance(v, int | str):
        return f"{key} {_show(v)} is not an integer or a string"
    if isinstance(v, str) and len(v) > MAX_TEXT:
        return f"{key} is {len(v)} characters long (at most {MAX_TEXT})"
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p), None)


def validate(topic_name: str, payload: Any) -> str | None:
    """What in ``payload`` (the decoded JSON of a message on topic ``topic_name``) does not fit its schema.

    ``topic_name`` is the name in ``TOPICS`` ("alert", "event", "command" or "state"); returns one line naming
    the field and the value, or None when the payload fits.
    """
    if topic_name == "command":
        from .controls import Refusal, parse_command

        parsed = parse_command(payload) if isinstance(payload, dict) else Refusal("not a JSON object")
        return parsed.reason if isinstance(parsed, Refusal) else None
    if not isinstance(payload, dict):
        return f"not a JSON object ({type(payload).__name__})"
    if topic_name == "state":
        return _state_problem(payload)
    common = _first(
        _check_text(payload, "session"),
        _check_number(payload, "t"),
    )
    if common:
        return common
    if topic_name == "alert":
        kind = payload.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            return f"kind {_show(kind)} is not an alert kind" if "kind" in payload else "alert without a kind"
        return _first(
            _check_text(payload, "kind", nullable=False),
            _check_id(payload, "alert_id"),
            _check_id(payload, "id"),
            "alert without age_s (its age cannot be known, so it is not known to be fresh)"
            if "age_s" not in payload
            else _check_number(payload, "age_s", nullable=False, minimum=0.0),
            _check_bool(payload, "reminder"),
            _check_bool(payload, "replayed"),
            _check_bool(payload, "muted"),
            _check_bool(payload, "cue"),
            _check_text(payload, "cue_skipped"),
        )
    if topic_name == "event":
        etype = payload.get("type")
        if not isinstance(etype, str):
            return f"type {_show(etype)} is not an event type" if "type" in payload else "event without a type"
        problem = _first(_check_text(payload, "say"), _check_id(payload, "step"))
        if problem:
            return problem
        if etype == "calibration":
            if "ok" not in payload:
                return "calibration event without ok"
            return _check_bool(payload, "ok")
        if etype == "sensor" and payload.get("state") not in ("lost", "back"):
            return f"sensor state {_show(payload.get('state'))} is not 'lost' or 'back'"
        return None
    return f"no schema for topic {topic_name!r}"


def _state_problem(p: dict) -> str | None:
    """The retained state (service/state.py): the fields a page reads, with their types."""
    from .controls import STATES

    if p.get("state") not in STATES:
        return f"state {_show(p.get('state'))} is not one of {', '.join(STATES)}"
    problem = _first(
        _check_text(p, "session"),
        _check_number(p, "calibration_age_s", minimum=0.0),
        _check_number(p, "alerts", nullable=False, minimum=0.0),
        _check_number(p, "battery_pct", minimum=0.0),
        _check_number(p, "muted_until"),
        _check_number(p, "updated_at", nullable=False),
    )
    if problem:
        return problem
    for key in ("last_stride", "last_command", "last_session"):
        if p.get(key) is not None and not isinstance(p[key], dict):
            return f"{key} {_show(p[key])} is not an object"
    stride = p.get("last_stride") or {}
    for key in ("t", "pelvic_tilt_deg", "stack_deg", "cadence_spm"):
        problem = _check_number(stride, key)
        if problem:
            return f"last_stride {problem}"
    cmd = p.get("last_command")
    if cmd is not None:
        if not isinstance(cmd.get("ok"), bool):
            return f"last_command ok {_show(cmd.get('ok'))} is not true or false"
        problem = _first(_check_text(cmd, "id"), _check_text(cmd, "cmd"), _check_text(cmd, "reason"))
        if problem:
            return f"last_command {problem}"
    last = p.get("last_session")
    if last is not None:
        problem = _first(_check_text(last, "id"), _check_text(last, "ended"))
        if problem:
            return f"last_session {problem}"
    return None
