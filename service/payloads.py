"""The schema of the JSON payloads the cue client acts on (``alert`` and ``event``, service/topics.py).

``validate(topic_name, payload)`` says in one line what does not fit, or None when the payload may be acted
on. It checks only the fields a decision reads (extra fields are allowed: a newer daemon may add some):

* every payload: ``session`` a string (or null), ``t`` a finite number (or null); ``sent_at`` is not
  checked: one that is not a number means the two wall clocks are not comparable (cue_rules, staleness);
* ``alert``: ``kind`` a non-empty string; ``alert_id``/``id`` an integer or a string; ``age_s`` a finite
  number >= 0 when present (an alert whose age cannot be known is not known to be fresh); ``reminder`` and
  ``replayed`` booleans when present;
* ``event``: ``type`` a string; a ``calibration`` event's ``ok`` a JSON boolean (``"false"``, a string, is
  not an accepted calibration); a ``sensor`` event's ``state`` ``lost`` or ``back``; ``say`` a string and
  ``step`` a string or an integer when present.

Anything that does not fit is logged by the caller in one line and not cued.
"""

from __future__ import annotations

import math
from typing import Any

MAX_TEXT = 500  # a say text or a kind longer than this is not something the daemon sends


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _show(v: Any) -> str:
    text = repr(v)
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

    ``topic_name`` is the name in ``TOPICS`` ("alert" or "event"); returns one line naming the field and the
    value, or None when the payload fits.
    """
    if not isinstance(payload, dict):
        return f"not a JSON object ({type(payload).__name__})"
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
            _check_number(payload, "age_s", nullable=False, minimum=0.0),
            _check_bool(payload, "reminder"),
            _check_bool(payload, "replayed"),
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
