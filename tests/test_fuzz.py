"""Issue 13: a property-based fuzz pass over the readers of outside data.

The CSV reader, the configuration loader, the JSON-lines outbox reader and the cue payload validator are fed
generated input, good and bad mixed. Each must either accept what is valid and only that (checked against an
independent oracle or against the declared ranges), or refuse with a StackcueError whose message is one line:
never a traceback, never an out-of-range value taken silently. ``EXAMPLES`` counts the examples run (printed
with ``pytest -s``; the whole file takes well under 20 s).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackcue.errors import StackcueError

EXAMPLES: Counter[str] = Counter()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    print(f"\nfuzz examples run: {dict(EXAMPLES)}, total {sum(EXAMPLES.values())}")


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, StackcueError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg


# ---------------------------------------------------------------------------------------------- CSV reader

PELVIS = ["t", "ax", "ay", "az", "gx", "gy", "gz"]
TRUNK = ["trunk_ax", "trunk_ay", "trunk_az", "trunk_gx", "trunk_gy", "trunk_gz"]

NUMBER = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.6g}")
BAD_TOKEN = st.sampled_from(
    ["nan", "NaN", "inf", "-inf", "Infinity", "", " ", "abc", "1_0", "\uff11", "0x10", "1e999", "-1e999", "--1", "1e"]
)
JUNK = st.text(st.characters(blacklist_characters=",\n\r\x00", blacklist_categories=("Cs",)), max_size=6)


def _valid_number(token: str, column: str = "t") -> float | None:
    """The oracle: what the exchange CSV counts as a value (docs/formats.md), independently of the reader.

    A reading beyond any sensor's range in any unit the analysis names is not one: |acceleration| > 1e5,
    |angular rate| > 1e7.
    """
    limit = {"a": 1e5, "g": 1e7}.get(column[-2], math.inf) if column != "t" else math.inf
    s = token.strip()
    if not s or not s.isascii() or "_" in s:
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) and abs(v) <= limit else None


@st.composite
def csv_files(draw) -> tuple[str, bool, list[list[float]], set[int]]:
    """A recording mixing good and bad rows: (text, has_trunk, the rows the oracle accepts, their bad lines)."""
    trunk = draw(st.booleans())
    ncols = len(PELVIS) + (len(TRUNK) if trunk else 0)
    lines = [f"# sensor={draw(st.sampled_from(['mpu6050', 'x']))}", ",".join(PELVIS + (TRUNK if trunk else []))]
    n = draw(st.integers(0, 140))
    t = draw(st.floats(-10, 10, allow_nan=False)).__round__(3)
    for _ in range(n):
        t += draw(st.sampled_from([0.005, 0.005, 0.005, 0.0, -0.01, 1.0]))
        fields = [f"{t:.6f}"] + [draw(NUMBER) for _ in range(len(PELVIS) - 1)]
        if trunk:
            fields += draw(
                st.one_of(
                    st.lists(NUMBER, min_size=6, max_size=6),
                    st.just([""] * 6),
                    st.just(["nan"] * 6),
                )
            )
        kind = draw(st.sampled_from(["good"] * 6 + ["token", "junk", "count", "blank"]))
        if kind in ("token", "junk"):
            i = draw(st.integers(0, ncols - 1))
            fields[i] = draw(BAD_TOKEN if kind == "token" else JUNK)
        elif kind == "count":
            fields = fields[: draw(st.integers(1, ncols - 1))] if draw(st.booleans()) else [*fields, "1"]
        lines.append("" if kind == "blank" else ",".join(fields))
    text = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
    # the oracle
    accepted: list[list[float]] = []
    bad: set[int] = set()
    last_t = -math.inf
    for line_no, line in enumerate(text.split("\n")[2:], 3):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        f = [x.strip() for x in s.split(",")]
        row: list[float] | None = None
        if len(f) == ncols:
            vals = [_valid_number(x, c) for x, c in zip(f[: len(PELVIS)], PELVIS, strict=True)]
            tr = f[len(PELVIS) :]
            if None not in vals:
                if not tr:
                    row = vals  # type: ignore[assignment]
                elif not any(tr) or all(x.lower() == "nan" for x in tr):
                    row = [*vals, *[math.nan] * 6]  # type: ignore[list-item]
                elif all(tr):
                    tv = [_valid_number(x, c) for x, c in zip(tr, TRUNK, strict=True)]
                    row = None if None in tv else [*vals, *tv]  # type: ignore[list-item]
        if row is not None and row[0] > last_t:
            last_t = row[0]
            accepted.append(row)
        else:
            bad.add(line_no)
    return text, trunk, accepted, bad


@FAST
@given(csv_files(), st.integers(1, 200))
def test_csv_reader_takes_exactly_the_valid_rows(case, chunk_rows):
    from stackcue.firmware_bridge.csv_format import RecordingReader

    EXAMPLES["csv"] += 1
    text, trunk, accepted, bad = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rec.csv"
        path.write_text(text, encoding="utf-8")
        try:
            reader = RecordingReader(path, chunk_rows=chunk_rows)
            blocks = list(reader)
        except Exception as exc:  # the property: only StackcueError, in one line
            _one_line(exc)
            assert not accepted, f"refused a file with {len(accepted)} valid rows: {exc}"
            return
    assert accepted, "accepted a file with no valid row"
    got = np.concatenate(
        [np.column_stack([b.t, b.acc, b.gyr] + ([b.trunk_acc, b.trunk_gyr] if trunk else [])) for b in blocks]
    )
    want = np.array(accepted)
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)
    assert {p.line for p in reader.problems} == bad
    assert np.isfinite(got[:, : len(PELVIS)]).all() and (np.diff(got[:, 0]) > 0).all()


@FAST
@given(st.binary(max_size=400), st.sampled_from([b"", b"t,ax,ay,az,gx,gy,gz\n", b"# a=b\nt,ax,ay,az,gx,gy,gz\n"]))
def test_csv_reader_on_arbitrary_bytes_is_one_line_or_valid(data, head):
    from stackcue.firmware_bridge.csv_format import RecordingReader

    EXAMPLES["csv bytes"] += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rec.csv"
        path.write_bytes(head + data)
        try:
            blocks = list(RecordingReader(path, chunk_rows=7))
        except Exception as exc:
            _one_line(exc)
            return
    for b in blocks:
        assert np.isfinite(b.t).all() and np.isfinite(b.acc).all() and np.isfinite(b.gyr).all()


# ---------------------------------------------------------------------------------------------- configuration


def _specs() -> dict[str, tuple[Any, Any, Any]]:
    from stackcue.service.settings import defaults, specs

    d = defaults()
    return {k: (d[k.split(".")[0]][k.split(".")[1]], s.range, s.choices) for k, s in specs().items()}


SPECS = _specs()


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(_toml(x) for x in v) + "]"


def _value_for(default: Any, rng: Any, choices: Any) -> st.SearchStrategy:
    anything = st.one_of(
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.lists(st.integers(-5, 300), max_size=3),
    )
    near: list[st.SearchStrategy] = [anything]
    if rng is not None:
        lo, hi = rng
        span = (hi - lo) or 1.0
        near.append(st.floats(lo - span, hi + span, allow_nan=False))
        near.append(st.sampled_from([lo, hi, lo - 1e-9 * span, hi + 1e-9 * span]))
        if isinstance(default, int):
            near.append(st.integers(int(lo) - 2, int(hi) + 2))
    if choices is not None:
        near.append(st.sampled_from([*choices, "", "other"]))
    near.append(st.just(default))
    return st.one_of(*near)


@st.composite
def configs(draw) -> tuple[str, dict[str, Any]]:
    keys = draw(st.lists(st.sampled_from(sorted(SPECS)), max_size=6, unique=True))
    chosen = {k: draw(_value_for(*SPECS[k])) for k in keys}
    if draw(st.integers(0, 9)) == 0:
        chosen[draw(st.sampled_from(["mqtt.hots", "nosuch.key", "source.speeed"]))] = 1
    by_section: dict[str, list[str]] = {}
    for k, v in chosen.items():
        sec, key = k.split(".", 1)
        by_section.setdefault(sec, []).append(f"{key} = {_toml(v)}")
    text = "".join(f"[{sec}]\n" + "\n".join(lines) + "\n" for sec, lines in by_section.items())
    if draw(st.integers(0, 14)) == 0:
        text += draw(st.sampled_from(["[broken", "x = ", "= 1", "[mqtt]\nport = 1\n[mqtt]\n", "\x00"]))
    return text, chosen


def _within(key: str, value: Any) -> bool:
    default, rng, choices = SPECS[key]
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if rng is not None and not rng[0] <= value <= rng[1]:
        return False
    return not (choices is not None and value not in choices)


@FAST
@given(configs())
def test_config_loader_refuses_in_one_line_or_holds_only_valid_values(case):
    from stackcue.service.config import load_config

    EXAMPLES["config"] += 1
    text, chosen = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "stackcue.toml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path)
        except Exception as exc:
            _one_line(exc)
            assert str(path) in str(exc), f"the message does not name the file: {exc}"
            return
    for key in SPECS:
        sec, name = key.split(".", 1)
        value = cfg.data[sec][name]
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int | float) and not isinstance(v, bool):
                assert _within(key, v) or key == "mpu6050.accept_who_am_i", f"{key} = {v!r} accepted"
    for key, v in chosen.items():
        if key in SPECS and not isinstance(v, list):
            got = cfg.data[key.split(".")[0]][key.split(".", 1)[1]]
            assert got == v or (isinstance(v, int) and got == float(v)), f"{key}: wrote {v!r}, loaded {got!r}"


@FAST
@given(st.binary(max_size=300))
def test_config_loader_on_arbitrary_bytes(data):
    from stackcue.service.config import load_config

    EXAMPLES["config bytes"] += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "stackcue.toml"
        path.write_bytes(data)
        try:
            load_config(path)
        except Exception as exc:
            _one_line(exc)


# ---------------------------------------------------------------------------------------------- outbox

JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=True), st.text(max_size=5)
)
JSON_ANY = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def alert_payloads(draw) -> dict:
    p = {
        "type": "alert",
        "kind": draw(st.sampled_from(["anterior_tilt", "pelvic_drop"])),
        "t": draw(st.floats(0, 1e4)),
        "session": draw(st.sampled_from(["S1", "S2"])),
        "alert_id": draw(st.integers(1, 5)),
        "raised_at": draw(st.floats(1.6e9, 1.8e9)),
        "sent_at": None,
        "age_s": None,
        "replayed": False,
    }
    for key in draw(st.lists(st.sampled_from(sorted(p)), max_size=2, unique=True)):
        p[key] = draw(JSON_ANY)
    return p


@st.composite
def outbox_lines(draw) -> list[str]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["add", "add", "delivered", "junk", "json"]))
        if kind == "add":
            out.append(json.dumps({"add": draw(alert_payloads())}))
        elif kind == "delivered":
            out.append(json.dumps({"delivered": [draw(st.sampled_from(["S1", "S2"])), draw(JSON_ANY)]}))
        elif kind == "json":
            out.append(json.dumps(draw(JSON_ANY)))
        else:
            out.append(draw(st.text(max_size=20)).replace("\n", " "))
    return out


def _num_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))


def _usable(p: Any) -> bool:
    """The oracle: a record the publisher can send and acknowledge (the keys and the times it reads)."""
    if not isinstance(p, dict):
        return False
    aid = p.get("alert_id")
    return (
        isinstance(p.get("session"), str)
        and isinstance(aid, int | str)
        and not isinstance(aid, bool)
        and _num_or_none(p.get("raised_at"))
        and _num_or_none(p.get("t"))
        and ("kind" not in p or isinstance(p["kind"], str))
        and ("type" not in p or p["type"] == "alert")  # a stride must never be replayed as an alert
    )


@FAST
@given(outbox_lines())
def test_outbox_reader_keeps_every_usable_alert_and_sets_the_rest_aside(lines):
    from stackcue.service.outbox import JsonlOutbox

    EXAMPLES["outbox"] += 1
    # the oracle: the file replayed in order
    want: dict = {}
    unusable: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            unusable.append(line)
            continue
        if isinstance(rec, dict) and "add" in rec and _usable(rec["add"]):
            want.setdefault((rec["add"]["session"], rec["add"]["alert_id"]), rec["add"])
        elif (
            isinstance(rec, dict)
            and "add" not in rec
            and isinstance(rec.get("delivered"), list)
            and len(rec["delivered"]) == 2
            and _usable({"session": rec["delivered"][0], "alert_id": rec["delivered"][1]})
        ):
            want.pop(tuple(rec["delivered"]), None)
        else:
            unusable.append(line)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "outbox.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            box = JsonlOutbox(path)
            pending = box.pending()
        except Exception as exc:  # the property: only StackcueError, in one line
            _one_line(exc)
            return
        for p in pending:
            assert _usable(p), f"an unusable record is pending: {p!r}"
        assert {(p["session"], p["alert_id"]) for p in pending} == set(want)  # nothing lost, nothing invented
        aside = Path(str(path) + ".rejected")
        kept = aside.read_text(encoding="utf-8", errors="replace") if aside.exists() else ""
        for line in unusable:  # set aside, not silently dropped (the reader splits at str.splitlines's breaks)
            for piece in line.encode("utf-8", "replace").decode("utf-8").splitlines():
                assert piece in kept, f"dropped without a trace: {line!r}"


# ---------------------------------------------------------------------------------------------- cue payloads

EVENT_TYPES = ["calibration", "sensor", "guide", "session", "clear", "reference"]


@st.composite
def cue_payloads(draw) -> tuple[str, Any]:
    topic = draw(st.sampled_from(["alert", "event"]))
    if topic == "alert":
        p = {"kind": "anterior_tilt", "session": "S1", "alert_id": 1, "t": 3.0, "age_s": 0.5, "sent_at": 1.7e9}
    else:
        p = {"type": draw(st.sampled_from(EVENT_TYPES)), "session": "S1", "t": 3.0, "ok": True, "state": "lost"}
        p["say"] = "Stand still."
    for key in draw(
        st.lists(st.sampled_from([*sorted(p), "reminder", "id", "step", "cue", "cue_skipped"]), max_size=3, unique=True)
    ):
        if draw(st.booleans()):
            p[key] = draw(JSON_ANY)
        else:
            p.pop(key, None)
    return topic, (p if draw(st.integers(0, 19)) else draw(JSON_ANY))


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@FAST
@given(cue_payloads())
def test_cue_payload_validator_passes_only_what_fits(case):
    from stackcue.service.cue_rules import CueRules
    from stackcue.service.payloads import validate

    EXAMPLES["cue"] += 1
    topic, p = case
    problem = validate(topic, p)
    assert problem is None or (isinstance(problem, str) and problem and "\n" not in problem)
    if problem is None:
        assert isinstance(p, dict)
        assert p.get("session") is None or isinstance(p["session"], str)
        assert p.get("t") is None or _finite(p["t"])
        if topic == "alert":
            assert isinstance(p.get("kind"), str)
            assert "age_s" not in p or (_finite(p["age_s"]) and p["age_s"] >= 0)
            for k in ("alert_id", "id"):
                assert p.get(k) is None or (isinstance(p[k], int | str) and not isinstance(p[k], bool))
            assert "cue" not in p or isinstance(p["cue"], bool)
        elif p.get("type") == "calibration":
            assert isinstance(p.get("ok"), bool)
        elif p.get("type") == "sensor":
            assert p.get("state") in ("lost", "back")
    # and the rules on the encoded message never raise, and cue nothing the validator refused
    rules = CueRules("pi", "pi", 10.0, {"alert": "a", "event": "e"}, can_say=True, can_buzz=True, clock=lambda: 1.7e9)
    d = rules.decide("a" if topic == "alert" else "e", json.dumps(p))
    assert problem is None or d.cue is None
