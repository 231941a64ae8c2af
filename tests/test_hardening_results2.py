"""Issue 13, second pass, items 7, 8 and 10: units under a saved calibration, 180° mountings, bunched
timestamps, absurd samples.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stackcue.dsp.calibration import Calibration, UnitsCheck
from stackcue.dsp.params import CalibrationParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import CalibrationError, InputError, PipelineError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import write_recording
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config


def run_pipeline(block, params=None, calibration=None, strict=True) -> list[dict]:
    pipe = Pipeline(params, calibration, strict_calibration=strict)
    return pipe.feed(block) + pipe.finish()


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


@pytest.fixture(scope="module")
def unit_run(sim_run):
    return sim_run(minutes=1, rate_hz=100, seed=5)


@pytest.fixture(scope="module")
def unit_cal(unit_run) -> Calibration:
    return Calibration.from_event(of_type(run_pipeline(unit_run.block), "calibration")[0])


# --------------------------------------------------------------------------- D4, D17: units, saved calibration


@pytest.mark.parametrize(
    ("acc_scale", "gyr_scale", "pattern"),
    [
        (1 / 9.80665, 1.0, r"in g\b.*m/s²"),
        (1000 / 9.80665, 1.0, r"in mg\b.*m/s²"),
        (0.5, 1.0, r"gravity reads 4\.9"),
        (2.0, 1.0, r"gravity reads 19\.6"),
        (1.0, np.degrees(1.0), r"in °/s, not rad/s"),
        (1.0, 1000 * np.degrees(1.0), r"in m°/s, not rad/s"),
    ],
)
def test_wrong_units_are_refused_with_a_saved_calibration(unit_run, unit_cal, acc_scale, gyr_scale, pattern):
    """Before: analysed silently (or "0 strides") because the saved calibration skipped the routine's unit check."""
    b = unit_run.block
    with pytest.raises(CalibrationError, match=pattern):
        run_pipeline(Block(b.t, b.acc * acc_scale, b.gyr * gyr_scale), calibration=unit_cal)


def test_right_units_with_a_saved_calibration_are_analysed(unit_run, unit_cal):
    ev = run_pipeline(unit_run.block, calibration=unit_cal)
    assert of_type(ev, "summary")[0]["strides"] > 10


@pytest.mark.parametrize(
    ("acc_scale", "gyr_scale", "pattern"),
    [(1000 / 9.80665, 1.0, r"in mg\b"), (1.0, 1000 * np.degrees(1.0), r"in m°/s")],
)
def test_milli_units_are_named_by_the_routine_search(unit_run, acc_scale, gyr_scale, pattern):
    """Before: "no calibration routine found (stand still ≥3 s …)": the runner was told to redo the routine."""
    b = unit_run.block
    with pytest.raises(CalibrationError, match=pattern):
        run_pipeline(Block(b.t, b.acc * acc_scale, b.gyr * gyr_scale))


def test_degrees_per_second_without_offset_are_refused_once_the_runner_moves():
    """No gyro offset to show the unit at rest: the moving rates, beyond any gyro's range as rad/s, show it."""
    t = np.arange(0.0, 20.0, 0.01)
    rng = np.random.default_rng(3)
    acc = np.array([0.2, 0.1, 9.8]) + rng.normal(0.0, 0.02, (len(t), 3))
    gyr = rng.normal(0.0, 0.002, (len(t), 3))
    gyr[t >= 5.0, 2] += 1.5 * np.sin(2 * np.pi * 1.4 * t[t >= 5.0])  # moving after 5 s
    check = UnitsCheck(CalibrationParams())
    assert check.feed(t, acc, gyr) is None  # rad/s: fine
    check = UnitsCheck(CalibrationParams())
    problem = check.feed(t, acc, np.degrees(gyr))
    assert problem is not None and "in °/s, not rad/s: the gyro's median" in problem


# --------------------------------------------------------------------------- D5, D13: 180° and trunk mountings


def turned(cal: Calibration, segment: str, axis: str, deg: float) -> Calibration:
    """One segment's calibration followed by a turn of ``deg`` about a body axis (another mounting)."""
    seg = getattr(cal, segment)
    r = Rotation.from_euler(axis, deg, degrees=True) * Rotation.from_matrix(seg.body_from_sensor)
    x, y, z, w = r.as_quat()
    return replace(cal, **{segment: replace(seg, q_body_from_sensor_wxyz=(w, x, y, z))})


@pytest.fixture(scope="module")
def two_run(sim_run):
    return sim_run(minutes=2, rate_hz=100, trunk=True, seed=31)


@pytest.fixture(scope="module")
def two_cal(two_run) -> Calibration:
    return Calibration.from_event(of_type(run_pipeline(two_run.block), "calibration")[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("segment", "axis", "deg"),
    [("pelvis", "y", 180.0), ("pelvis", "x", 180.0), ("trunk", "y", 90.0), ("trunk", "y", 180.0), ("trunk", "y", 40.0)],
)
def test_upside_down_or_trunk_mounting_mismatch_is_reported_within_a_minute(two_run, two_cal, segment, axis, deg):
    """Before: a body z pointing down read upright (arcsin of its x, y), and the trunk was not checked at all."""
    assert not of_type(run_pipeline(two_run.block, calibration=two_cal), "calibration_suspect")
    ev = run_pipeline(two_run.block, calibration=turned(two_cal, segment, axis, deg))
    sus = of_type(ev, "calibration_suspect")
    assert len(sus) == 1, sus
    assert sus[0]["t"] - two_run.info["phases"]["steady_running"][0][0] < 60.0
    assert f"the {segment} reads" in sus[0]["reason"]
    assert of_type(ev, "summary")[0]["calibration_suspect"] is True


# --------------------------------------------------------------------------- D10, D18: bunched and scaled time stamps


def bunched(t: np.ndarray, read_every_s: float) -> np.ndarray:
    """Each sample stamped when the host read the FIFO, 10 µs apart within a read (strictly increasing)."""
    read = np.ceil((t - t[0]) / read_every_s) * read_every_s + t[0] + 0.002
    out = read.copy()
    _, idx, counts = np.unique(read, return_index=True, return_counts=True)
    for i, c in zip(idx, counts, strict=True):
        out[i : i + c] = read[i] - (c - 1 - np.arange(c)) * 1e-5
    return out


@pytest.mark.parametrize(("rate", "every"), [(200.0, 0.02), (1000.0, 0.02), (100.0, 0.1)])
def test_bunched_host_time_stamps_are_refused_naming_them(rate, every):
    """Before: "sample rate 100000.0 Hz is outside 50–1000 Hz"."""
    t = bunched(np.arange(0.0, 5.0, 1.0 / rate), every)
    n = len(t)
    pipe = Pipeline(strict_calibration=False)
    with pytest.raises(PipelineError, match=r"bunched") as exc:
        pipe.feed(Block(t, np.tile([0.0, 0.0, 9.81], (n, 1)), np.zeros((n, 3))))
    assert f"{rate:.0f} Hz" in str(exc.value)  # the rate the samples really came at


@pytest.mark.parametrize(("scale", "word"), [(1e3, "milliseconds"), (1e6, "microseconds")])
def test_analyze_of_scaled_time_stamps_names_the_file_and_the_unit(tmp_path, unit_run, scale, word):
    b = unit_run.block
    f = tmp_path / "scaled.csv"
    write_recording(f, Block(b.t * scale, b.acc, b.gyr))
    with pytest.raises(InputError) as exc:
        analyze_file(f, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO())
    assert "scaled.csv" in str(exc.value) and word in str(exc.value)


# --------------------------------------------------------------------------- D20: an absurd sample


@pytest.mark.parametrize(("col", "value"), [(1, "1e300"), (5, "-1e300"), (3, "2e5"), (6, "5e7"), (9, "1e300")])
def test_a_sample_beyond_any_sensors_range_is_rejected_with_its_line(tmp_path, recwarn, col, value):
    """Before: accepted (rows_rejected 0), numpy overflow warnings printed, the strides around it corrupted."""
    from stackcue.firmware_bridge.csv_format import PELVIS_COLUMNS, TRUNK_COLUMNS, read_recording

    lines = [",".join(PELVIS_COLUMNS + TRUNK_COLUMNS)]
    for i in range(300):
        vals = [f"{i / 100:.2f}", "0.1", "0.2", "9.8", "0.01", "0.02", "0.03", "0.1", "0.2", "9.8", "0", "0", "0"]
        if i == 150:
            vals[col] = value
        lines.append(",".join(vals))
    f = tmp_path / "absurd.csv"
    f.write_text("\n".join(lines) + "\n")
    block, _, problems = read_recording(f)
    assert len(block) == 299
    assert [p.line for p in problems] == [152]
    assert "beyond" in problems[0].reason
    with pytest.raises(InputError, match=r"absurd\.csv:152:.*beyond"):
        read_recording(f, strict=True)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# --------------------------------------------------------------------------- D16: time in alert after running stops


@pytest.mark.slow
def test_time_in_alert_counts_only_running_time(unit_run):
    """An alert open when the runner stops: before, it counted on to the end of the recording ("106.2 %")."""
    from stackcue.dsp.params import AlertParams, PipelineParams, ReferenceParams

    # from the standing neutral: the short run never completes a first-minutes tilt baseline
    params = PipelineParams(
        alerts=AlertParams(anterior_tilt_deg=0.5, hysteresis_deg=0.2), reference=ReferenceParams(mode="neutral")
    )
    b = unit_run.block
    tail = b.t[-1] - unit_run.info["phases"]["running"][-1][-1]
    assert tail > 5.0  # the recording goes on after running has stopped
    ev = run_pipeline(b, params=params)
    summ = of_type(ev, "summary")[0]
    assert of_type(ev, "alert"), "the low threshold must raise an alert"
    assert summ["time_in_alert_s"]["anterior_tilt"] <= summ["running_s"] + 5.0


def test_overlapping_no_data_is_left_out_of_time_in_alert_once():
    """A gap within a stop (or a pause) is not subtracted twice."""
    from stackcue.dsp.drift import time_in_alert

    got = time_in_alert([("anterior_tilt", 0.0, 100.0)], 100.0, gaps=[(10.0, 30.0), (20.0, 40.0), (35.0, 36.0)])
    assert got["anterior_tilt"] == pytest.approx(70.0)


@pytest.mark.slow
def test_a_mounting_turned_round_is_reported_within_a_minute(two_run, two_cal):
    """A pelvis calibration turned 180° about the vertical: gravity is where it should be, tilt and obliquity
    change sign. Before: no ``calibration_suspect``, "posterior pelvic tilt" cued to a runner tipping forward."""
    ev = run_pipeline(two_run.block, calibration=turned(two_cal, "pelvis", "z", 180.0))
    sus = of_type(ev, "calibration_suspect")
    assert len(sus) == 1, sus
    assert sus[0]["forward_reversed"] is True and "points backwards" in sus[0]["reason"]
    assert sus[0]["t"] - two_run.info["phases"]["steady_running"][0][0] < 60.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_good_runs_raise_no_calibration_suspect(sim_run, seed):
    """The checks above never fire on a good run: routine calibrated, pelvis and trunk, any seed."""
    run = sim_run(minutes=3, rate_hz=100, trunk=True, seed=seed)
    ev = run_pipeline(run.block)
    assert of_type(ev, "summary")[0]["steady_strides"] > 100
    assert not of_type(ev, "calibration_suspect")
