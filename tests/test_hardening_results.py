"""Issue 13, items 7–10: results that must not be silently wrong.

Wrong units refused, a run without strides said so, a calibration from another mounting reported, an absurd
one refused, ``--jsonl`` always valid JSON, gaps not counted as time in alert, and the sample rate of a fast
sensor with jittery host timestamps estimated robustly.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stackcue.dsp.calibration import Calibration
from stackcue.dsp.drift import DriftDetector
from stackcue.dsp.params import AlertParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import CalibrationError, ReportError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import write_recording
from stackcue.service import report_stats
from stackcue.service.analyze import AnalysisOutput, analyze_file, load_calibration
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook
from stackcue.service.report_html import build_report
from stackcue.service.session_store import store_recording


def run_pipeline(block, params=None, calibration=None, strict=True) -> list[dict]:
    pipe = Pipeline(params, calibration, strict_calibration=strict)
    return pipe.feed(block) + pipe.finish()


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


# --------------------------------------------------------------------------- item 8


def saved_event(bias=(0.01, -0.02, 0.0), **extra) -> dict:
    seg = {"q_body_from_sensor_wxyz": [1.0, 0.0, 0.0, 0.0], "gyro_bias_rad_s": list(bias), **extra}
    return {"type": "calibration", "ok": True, "segments": {"pelvis": seg}}


@pytest.mark.parametrize(
    ("bias", "extra", "word"),
    [
        ((1e300, 0.0, 0.0), {}, "gyro_bias_rad_s"),
        ((0.0, -50.0, 0.0), {}, "gyro_bias_rad_s"),
        ((0.0, 0.0, 0.0), {"hinge_deg": "x"}, "hinge_deg"),
        ((0.0, 0.0, 0.0), {"quality": float("inf")}, "quality"),
    ],
)
def test_absurd_saved_calibration_is_refused_on_load(tmp_path, bias, extra, word):
    f = tmp_path / "cal.json"
    f.write_text(json.dumps(saved_event(bias, **extra)), encoding="utf-8")
    with pytest.raises(CalibrationError, match=word) as exc:
        load_calibration(f)
    assert str(f) in str(exc.value) and "\n" not in str(exc.value)


def test_saved_calibration_with_segments_not_an_object_is_refused_in_one_line():
    with pytest.raises(CalibrationError, match="segments must be an object"):
        Calibration.from_event({"type": "calibration", "segments": 5})


def test_a_plausible_saved_calibration_still_loads():
    cal = Calibration.from_event(saved_event((0.3, -0.2, 0.1), hinge_deg=35.0, quality=0.98))
    assert cal.pelvis.gyro_bias_rad_s == (0.3, -0.2, 0.1)


def test_jsonl_output_is_always_valid_json():
    buf = io.StringIO()
    out = AnalysisOutput(buf, jsonl=True)
    out.handle({"type": "stride", "pelvic_tilt_deg": float("nan"), "x": [float("inf"), 1.5], "d": {"y": -math.inf}})
    out.handle({"type": "summary", "duration_s": 1.0})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2

    def strict(s: str):
        raise ValueError(f"bare {s} in JSON output")

    first = json.loads(lines[0], parse_constant=strict)
    assert first == {"type": "stride", "pelvic_tilt_deg": None, "x": [None, 1.5], "d": {"y": None}}
    assert json.loads(lines[1], parse_constant=strict) == {"type": "summary", "duration_s": 1.0}


def turned(cal: Calibration, axis: str, deg: float) -> Calibration:
    """The pelvis calibration followed by a turn of ``deg`` about a body axis (another mounting)."""
    r = Rotation.from_euler(axis, deg, degrees=True) * Rotation.from_matrix(cal.pelvis.body_from_sensor)
    x, y, z, w = r.as_quat()
    return replace(cal, pelvis=replace(cal.pelvis, q_body_from_sensor_wxyz=(w, x, y, z)))


@pytest.fixture(scope="module")
def trunk_run(sim_run):
    return sim_run(minutes=2, rate_hz=100, trunk=True, seed=31)


@pytest.fixture(scope="module")
def trunk_events(trunk_run):
    return run_pipeline(trunk_run.block)


@pytest.mark.slow
@pytest.mark.parametrize(("axis", "deg"), [("y", 49.0), ("y", -40.0), ("x", 45.0)])
def test_calibration_from_another_mounting_is_reported_within_a_minute(trunk_run, trunk_events, axis, deg):
    """A tilt of the saved mounting leaves the forward axis right: the gravity direction must catch it."""
    own = Calibration.from_event(of_type(trunk_events, "calibration")[0])
    assert not of_type(trunk_events, "calibration_suspect")
    assert not of_type(run_pipeline(trunk_run.block, calibration=own), "calibration_suspect")
    ev = run_pipeline(trunk_run.block, calibration=turned(own, axis, deg))
    sus = of_type(ev, "calibration_suspect")
    assert len(sus) == 1, sus
    t_run = trunk_run.info["phases"]["steady_running"][0][0]
    assert sus[0]["t"] - t_run < 60.0
    assert "mounting" in sus[0]["reason"]
    assert of_type(ev, "summary")[0]["calibration_suspect"] is True


@pytest.mark.slow
def test_saved_calibration_without_trunk_says_the_trunk_is_dropped(trunk_run, trunk_events):
    own = Calibration.from_event(of_type(trunk_events, "calibration")[0])
    ev = run_pipeline(trunk_run.block, calibration=replace(own, trunk=None))
    cal = of_type(ev, "calibration")[0]
    assert "trunk" not in cal["segments"]
    assert "no trunk" in cal["trunk_reason"]


# --------------------------------------------------------------------------- item 7


@pytest.fixture(scope="module")
def short_run(sim_run):
    return sim_run(minutes=1, rate_hz=100, seed=5)


def test_acceleration_in_g_is_refused_naming_the_unit(short_run):
    b = short_run.block
    with pytest.raises(CalibrationError, match=r"in g\b.*m/s²") as exc:
        run_pipeline(Block(b.t, b.acc / 9.80665, b.gyr))
    assert "1.00" in str(exc.value)  # the gravity magnitude it read at rest


def test_a_wrong_accelerometer_scale_is_refused_naming_the_magnitude(short_run):
    b = short_run.block
    with pytest.raises(CalibrationError, match=r"gravity reads 4\.9"):
        run_pipeline(Block(b.t, b.acc / 2.0, b.gyr))


def test_angular_rate_in_degrees_per_second_is_refused_naming_the_unit(short_run):
    b = short_run.block
    with pytest.raises(CalibrationError, match="°/s") as exc:
        run_pipeline(Block(b.t, b.acc, np.degrees(b.gyr)))
    assert "rad/s" in str(exc.value)


def test_angular_rate_in_degrees_per_second_is_named_even_when_never_still():
    """A swaying runner: the gyro in °/s never reads still, the accelerometer does."""
    rng = np.random.default_rng(1)
    t = np.arange(0, 40, 0.01)
    acc = np.array([0.3, -0.2, 9.8]) + rng.normal(0, 0.05, (len(t), 3))
    gyr = np.degrees(0.02 * np.sin(2 * np.pi * 0.7 * t)[:, None] + rng.normal(0, 0.002, (len(t), 3)) + 0.05)
    with pytest.raises(CalibrationError, match="°/s"):
        run_pipeline(Block(t, acc, gyr))


def test_units_right_still_calibrate(short_run):
    cal = of_type(run_pipeline(short_run.block), "calibration")
    assert cal and cal[0]["ok"]


def test_run_without_strides_says_so(tmp_path, short_run):
    b = short_run.block
    stand = b.t < short_run.info["phases"]["walk_start"][0]  # the routine, then nothing
    f = tmp_path / "standing.csv"
    write_recording(f, Block(b.t[stand], b.acc[stand], b.gyr[stand]))
    out = io.StringIO()
    events = analyze_file(f, load_config(), jsonl=False, out=out, err=io.StringIO())
    assert of_type(events, "summary")[0]["strides"] == 0
    text = out.getvalue()
    assert "within the thresholds" not in text
    assert "no running strides were found" in text
    book = tmp_path / "book.sqlite"
    store_recording(f, load_config(), out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(book))
    with Logbook(book) as lb, pytest.raises(ReportError, match="has no strides, nothing to report: no running"):
        build_report(lb, lb.sessions()[0]["id"])  # the HTML report refuses it in one line


@pytest.mark.slow
def test_html_report_without_steady_strides_says_so(tmp_path, short_run):
    """Strides, but none steady (alerts come only from steady ones): not "within the thresholds"."""
    b = short_run.block
    keep = b.t < short_run.info["phases"]["running"][0][0] + 6.0  # a few seconds of running, never steady
    f = tmp_path / "short.csv"
    write_recording(f, Block(b.t[keep], b.acc[keep], b.gyr[keep]))
    out = io.StringIO()
    events = analyze_file(f, load_config(), jsonl=False, out=out, err=io.StringIO())
    summ = of_type(events, "summary")[0]
    assert summ["strides"] > 0 and summ["steady_strides"] == 0
    assert "within the thresholds" not in out.getvalue()
    assert "no steady running strides" in out.getvalue()
    book = tmp_path / "book.sqlite"
    store_recording(f, load_config(), out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(book))
    with Logbook(book) as lb:
        html = build_report(lb, lb.sessions()[0]["id"])
    assert "within the thresholds" not in html
    assert "no steady running strides" in html


# --------------------------------------------------------------------------- item 10


def host_times(n: int, rate_true: float, jitter_s: float, seed: int) -> np.ndarray:
    """Sample instants of a sensor really running at ``rate_true``, stamped by a host with normal jitter."""
    rng = np.random.default_rng(seed)
    return np.sort(np.arange(n) / rate_true + rng.normal(0.0, jitter_s, n))


@pytest.mark.parametrize("seed", range(12))
def test_sample_rate_of_a_fast_sensor_with_jittery_host_times_is_found_within_half_a_percent(seed):
    t = host_times(3000, 1012.0, 0.3e-3, seed)
    t += 100.0 - t[0]  # not starting at zero
    n = len(t)
    block = Block(t, np.tile([0.0, 0.0, 9.81], (n, 1)), np.zeros((n, 3)))
    pipe = Pipeline(strict_calibration=False)
    pipe.feed(block)
    assert pipe.ts is not None
    assert 1.0 / pipe.ts == pytest.approx(1012.0, rel=0.005)


@pytest.mark.parametrize("rate", [50.0, 100.0, 200.0, 1000.0])
def test_sample_rate_with_a_dropped_sample_in_the_probe(rate):
    """An isolated dropped sample (not a gap) must not bias the estimate."""
    t = np.arange(2000) / rate
    t = np.delete(t, [5, 40])
    n = len(t)
    pipe = Pipeline(strict_calibration=False)
    pipe.feed(Block(t, np.tile([0.0, 0.0, 9.81], (n, 1)), np.zeros((n, 3))))
    assert 1.0 / pipe.ts == pytest.approx(rate, rel=0.001)


@pytest.mark.slow
def test_a_1000_hz_sensor_running_fast_with_host_jitter_is_analysed(sim_run):
    """1.2 % fast, 0.3 ms host jitter: accepted, calibrated, strides found (before: "sample rate 1074.7 Hz")."""
    run = sim_run(minutes=0.5, rate_hz=1000, seed=7, timing_errors=False, gaps=False)
    b = run.block
    t = host_times(len(b.t), 1012.0, 0.3e-3, 3)  # the same samples, taken 1.2 % faster
    pipe = Pipeline()
    events = pipe.feed(Block(t, b.acc, b.gyr)) + pipe.finish()
    assert of_type(events, "calibration")[0]["ok"]
    assert of_type(events, "summary")[0]["strides"] > 10
    assert 1.0 / pipe.ts_filter == pytest.approx(1012.0, rel=0.001)  # the period the filters run on


# --------------------------------------------------------------------------- item 9


def feed(det: DriftDetector, values, t0: float = 0.0, dt: float = 1.0) -> tuple[list[dict], float]:
    out, t = [], t0
    for v in values:
        t += dt
        out += det.update({"steady": True, "pelvic_tilt_deg": v}, t, t + 2.0)
    return out, t


def tilt_detector(**kw) -> DriftDetector:
    return DriftDetector(AlertParams(**{"enabled": ("anterior_tilt", "posterior_tilt"), **kw}))


def test_gap_shorter_than_quiet_time_is_not_time_in_alert_and_delays_no_reminder():
    det = tilt_detector(quiet_s=30.0, remind_every_s=120.0)
    ev, t = feed(det, [8] * 50)  # alert at 3 s
    assert [e["type"] for e in ev] == ["alert"]
    assert det.gap(t, t + 25.0) == []  # 50 → 75 s: the drift carries over a short gap
    ev, t = feed(det, [8] * 60, t + 25.0)  # 76..135 s: 123 s after the alert, but 25 s of it a gap
    assert ev == []  # before: a reminder at 123 s, right after the gap
    ev, t = feed(det, [8] * 20, t)  # 136..155 s: 120 s of data after the alert at 148 s
    assert [(e["reminder"], e["t"]) for e in ev] == [(True, 148.0)]
    assert det.time_in_alert(t)["anterior_tilt"] == pytest.approx(t - 3.0 - 25.0)


def test_drift_does_not_carry_across_a_gap_longer_than_the_quiet_time():
    det = tilt_detector(quiet_s=30.0, remind_every_s=120.0)
    ev, t = feed(det, [8] * 10)  # alert at 3 s
    assert [e["type"] for e in ev] == ["alert"]
    ended = det.gap(t, t + 3600.0)
    assert [(e["type"], e["kind"], e["t"], e["reason"]) for e in ended] == [("clear", "anterior_tilt", 10.0, "gap")]
    assert det.time_in_alert(t + 3600.0 + 60.0)["anterior_tilt"] == pytest.approx(7.0)
    ev, t = feed(det, [8, 8], t + 3600.0)
    assert ev == []  # confirmation starts again after the gap
    ev, t = feed(det, [8], t)
    assert [(e["type"], e["reminder"]) for e in ev] == [("alert", False)]  # a new drift, cued


@pytest.fixture(scope="module")
def drift_run(sim_run):
    return sim_run(minutes=6, rate_hz=100, seed=25)


@pytest.fixture(scope="module")
def drift_events(drift_run):
    return run_pipeline(drift_run.block)


def with_gap(block: Block, at: float, length: float) -> Block:
    t = block.t.copy()
    t[t > at] += length
    return Block(t, block.acc, block.gyr)


@pytest.mark.slow
def test_time_in_alert_in_the_summary_leaves_out_a_long_gap(drift_run, drift_events):
    alert = of_type(drift_events, "alert")[0]
    at = alert["t"] + 5.0
    ev = run_pipeline(with_gap(drift_run.block, at, 3600.0 * 277))
    summ = of_type(ev, "summary")[0]
    assert summ["gap_s"] > 3600.0 * 277
    assert sum(summ["time_in_alert_s"].values()) <= summ["duration_s"] - summ["gap_s"]
    clears = [e for e in of_type(ev, "clear") if e.get("reason") == "gap"]
    assert [c["kind"] for c in clears] == [alert["kind"]]
    assert abs(clears[0]["t"] - at) < 1.0
    times = [e.get("t", e.get("t_start")) for e in ev if e["type"] != "summary"]
    assert times == sorted(times)  # still in time order


@pytest.mark.slow
def test_time_in_alert_in_the_summary_leaves_out_a_short_gap(drift_run, drift_events):
    alert = of_type(drift_events, "alert")[0]
    clear = next(c for c in of_type(drift_events, "clear") if c["kind"] == alert["kind"])
    assert clear["t"] - alert["t"] > 20.0
    base = of_type(drift_events, "summary")[0]["time_in_alert_s"][alert["kind"]]
    ev = run_pipeline(with_gap(drift_run.block, alert["t"] + 5.0, 20.0))
    tia = of_type(ev, "summary")[0]["time_in_alert_s"][alert["kind"]]
    assert not [e for e in of_type(ev, "clear") if e.get("reason") == "gap"]
    assert abs(tia - base) < 5.0  # before: about 20 s more


def test_report_time_with_any_alert_leaves_out_gaps():
    """The HTML report's "with any alert active" (before: 848953 % of the running time after a long gap)."""
    periods = [("anterior_tilt", 0.0, 100.0, True), ("pelvic_drop", 50.0, 1_000_000.0, False)]
    assert report_stats.union_s(periods) == 1_000_000.0
    assert report_stats.union_s(periods, [(10.0, 40.0), (200.0, 999_900.0)]) == pytest.approx(
        1_000_000.0 - 30.0 - 999_700.0
    )
