"""Per-sensor accelerometer calibration: a tumble's still poses give each sensor's offset and gain, and
with them a runner who runs 10° further forward than they stand gets lean and stack within the targets.

The truth is the simulator's own draw of each sensor's errors (``info["devices"]``): the run and its tumble
are the same sensors (``devices_of``, ``simulate --tumble``). What the simulator does not model (cross-axis
sensitivity, a gain that changes with temperature) this does not show; docs/calibration.md says so.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from test_accuracy_rates import LEAN_RMSE, STACK_RMSE, TILT_RMSE
from truthcheck import stride_truth

from stackcue.dsp import accel_calibration as ac
from stackcue.dsp.params import PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import CalibrationError, ConfigError
from stackcue.firmware_bridge.csv_format import read_recording, write_recording
from stackcue.firmware_bridge.emulated.simulator import (
    Device,
    SimParams,
    devices_of,
    simulate,
    simulate_tumble,
)
from stackcue.service.cli import main
from stackcue.service.config import load_config
from stackcue.service.session import BlocksSource

#: how well the fit must find the simulated sensor's errors: the MPU-6050's ±8 g step is 0.0024 m/s²
OFFSET_TOL_M_S2 = 0.01
GAIN_TOL = 0.001


def tumble_fits(run_info: dict, rate: float, seed: int) -> dict[str, ac.AccelFit]:
    devices = {k: Device.from_dict(v) for k, v in run_info["devices"].items()}
    tb = simulate_tumble(devices, rate, seed).block
    segs = {"pelvis": (tb.acc, tb.gyr), "trunk": (tb.trunk_acc, tb.trunk_gyr)}
    return {seg: ac.fit(ac.still_poses(tb.t, a, g)) for seg, (a, g) in segs.items() if seg in devices}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_tumble_finds_each_sensors_offset_and_gain(seed):
    devices = devices_of(SimParams(minutes=0.25, rate_hz=100, trunk=True, seed=seed))
    tb = simulate_tumble(devices, 100.0, seed).block
    for seg, acc, gyr in (("pelvis", tb.acc, tb.gyr), ("trunk", tb.trunk_acc, tb.trunk_gyr)):
        poses = ac.still_poses(tb.t, acc, gyr)
        assert len(poses) == 8  # six faces and two oblique attitudes, none merged, none split
        f = ac.fit(poses)
        d = devices[seg]
        assert np.abs(np.array(f.calibration.offset_m_s2) - d.acc_offset_m_s2).max() < OFFSET_TOL_M_S2
        assert np.abs(np.array(f.calibration.gain) - d.acc_gain).max() < GAIN_TOL
        assert max(np.abs(f.error_before_m_s2)) > 0.1 and f.rms_after_m_s2 < 0.005
        # corrected, every pose reads gravity
        for p in poses:
            m = f.calibration.apply(np.array([p.mean_m_s2]))
            assert abs(np.linalg.norm(m) - 9.81) < 0.01


def test_an_ideal_sensor_fits_to_no_correction():
    tb = simulate_tumble({"pelvis": None}, 200.0, 0).block
    f = ac.fit(ac.still_poses(tb.t, tb.acc, tb.gyr))
    assert np.allclose(f.calibration.offset_m_s2, 0, atol=1e-6) and np.allclose(f.calibration.gain, 1, atol=1e-7)


def test_too_few_faces_say_which_are_missing():
    devices = devices_of(SimParams(minutes=0.25, rate_hz=100, seed=4))
    tb = simulate_tumble(devices, 100.0, 4).block
    poses = [p for p in ac.still_poses(tb.t, tb.acc, tb.gyr) if p.direction not in ("-y", "+z")]
    assert ac.missing_directions(poses) == ["-y", "+z"]
    with pytest.raises(CalibrationError, match=r"missing: -y, \+z"):
        ac.fit(poses)


def test_calibration_round_trips_and_refuses_what_cannot_be_a_sensor_error():
    c = ac.AccelCalibration((0.1, -0.2, 0.35), (1.01, 0.99, 1.002))
    assert ac.AccelCalibration.from_meta(c.to_meta()) == c
    x = np.array([[1.0, 2.0, 9.0], [np.nan, np.nan, np.nan]])
    back = c.undo(c.apply(x))
    assert np.allclose(back[0], x[0]) and np.isnan(back[1]).all()
    with pytest.raises(CalibrationError, match="offset of 3 m/s²"):
        ac.AccelCalibration((3.0, 0.0, 0.0))
    with pytest.raises(CalibrationError, match=r"gain of 1\.2"):
        ac.AccelCalibration(gain=(1.0, 1.2, 1.0))
    with pytest.raises(CalibrationError, match="not 'offset="):
        ac.AccelCalibration.from_meta("offset=1,2")


def test_the_source_corrects_each_segment_and_names_it_in_its_meta():
    run = simulate(SimParams(minutes=0.25, rate_hz=100, trunk=True, seed=5))
    cal = {"pelvis": ac.AccelCalibration((0.1, 0.2, 0.3), (1.01, 1.0, 0.99)), "trunk": ac.AccelCalibration()}
    src = BlocksSource([run.block.slice(0, 500), run.block.slice(500, len(run.block))])
    for seg, c in cal.items():
        src.correct_accel(seg, c)
    got = list(src)
    acc = np.concatenate([b.acc for b in got])
    assert np.allclose(acc, cal["pelvis"].apply(run.block.acc))
    tacc = np.concatenate([b.trunk_acc for b in got])
    assert np.array_equal(tacc, run.block.trunk_acc, equal_nan=True)  # an identity correction is none
    assert src.meta["accel_cal_pelvis"] == cal["pelvis"].to_meta() and "accel_cal_trunk" not in src.meta


def test_config_takes_a_calibration_and_refuses_a_bad_one_in_one_line(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[accel_calibration]\npelvis_offset_m_s2 = [0.1, -0.2, 0]\npelvis_gain = [1.01, 0.99, 1]\n")
    cals = load_config(good).accel_calibrations()
    assert cals["pelvis"] == ac.AccelCalibration((0.1, -0.2, 0.0), (1.01, 0.99, 1.0)) and cals["trunk"].identity
    for text, fragment in (
        ("trunk_gain = [1.0, 1.0]", "trunk_gain = [1.0, 1.0]: needs three offsets and three gains"),
        ("pelvis_offset_m_s2 = [0.1, 5, 0]", "pelvis_offset_m_s2 = [0.1, 5, 0]: an offset of 5 m/s²"),
        ('pelvis_gain = [1, "x", 1]', "must be numbers"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(f"[accel_calibration]\n{text}\n")
        with pytest.raises(ConfigError) as e:
            load_config(bad)
        assert str(e.value).startswith(f"{bad}: accel_calibration.") and fragment in str(e.value)
        assert "\n" not in str(e.value)


def test_accel_cal_command_prints_the_configuration_and_refits_a_corrected_recording(tmp_path, capsys):
    tumble = tmp_path / "tumble.csv"
    assert main(["simulate", "-o", str(tumble), "--tumble", "--trunk", "--seed", "6", "--rate", "100"]) == 0
    capsys.readouterr()
    assert main(["accel-cal", str(tumble)]) == 0
    out = capsys.readouterr().out
    assert "pelvis: 8 still poses" in out and "trunk: 8 still poses" in out
    section = tomllib.loads(out[out.rindex("[accel_calibration]") :])["accel_calibration"]
    devices = devices_of(SimParams(minutes=10, rate_hz=100, trunk=True, seed=6))
    for seg in ("pelvis", "trunk"):
        assert np.abs(np.array(section[f"{seg}_offset_m_s2"]) - devices[seg].acc_offset_m_s2).max() < OFFSET_TOL_M_S2
        assert np.abs(np.array(section[f"{seg}_gain"]) - devices[seg].acc_gain).max() < GAIN_TOL
    conf = tmp_path / "stackcue.toml"
    conf.write_text(out[out.rindex("[accel_calibration]") :])
    cals = load_config(conf).accel_calibrations()

    # recorded again with that calibration applied (as `record` and `run` do): the fit is the sensor's, again
    block, meta, _ = read_recording(tumble)
    src = BlocksSource([block], meta)
    for seg, c in cals.items():
        src.correct_accel(seg, c)
    again = tmp_path / "again.csv"
    write_recording(again, next(iter(src)), src.meta)
    assert main(["accel-cal", str(again), "--segment", "pelvis"]) == 0
    out2 = capsys.readouterr().out
    refit = tomllib.loads(out2[out2.rindex("[accel_calibration]") :])["accel_calibration"]
    assert set(refit) == {"pelvis_offset_m_s2", "pelvis_gain"}
    assert np.allclose(refit["pelvis_offset_m_s2"], section["pelvis_offset_m_s2"], atol=2e-4)
    assert np.allclose(refit["pelvis_gain"], section["pelvis_gain"], atol=2e-5)


def test_accel_cal_refuses_a_recording_without_the_poses_in_one_line(tmp_path, capsys, sim_csv):
    run_csv = sim_csv(minutes=0.5, rate_hz=100, trunk=False, seed=2)
    assert main(["accel-cal", str(run_csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(run_csv) in err and "pelvis" in err and "missing:" in err
    assert main(["accel-cal", str(run_csv), "--segment", "trunk"]) == 2
    assert "has no trunk sensor's columns" in capsys.readouterr().err


def strides_error(run, correct: dict[str, ac.AccelCalibration] | None) -> dict[str, float]:
    src = BlocksSource([run.block])
    for seg, c in (correct or {}).items():
        src.correct_accel(seg, c)
    pipe = Pipeline(PipelineParams(reference=ReferenceParams(mode="neutral")))
    events = [e for b in src for e in pipe.feed(b)] + pipe.finish()
    strides = [e for e in events if e["type"] == "stride" and e["steady"]]
    truth = [stride_truth(run.truth, s) for s in strides]
    out = {}
    for f in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"):
        err = np.array([s[f] - t[f] for s, t in zip(strides, truth, strict=True) if s[f] is not None])
        assert len(err) > 300
        out[f] = float(np.sqrt(np.mean(err**2)))
    return out


#: issue 16's targets (RMSE, degrees), as the accuracy tests hold them
TARGETS = {"pelvic_tilt_deg": TILT_RMSE, "trunk_lean_deg": LEAN_RMSE, "stack_deg": STACK_RMSE}


def run_10deg(seed: int, rate: float = 100.0):
    return simulate(SimParams(minutes=6, rate_hz=rate, trunk=True, seed=seed, running_tilt_deg=10.0))


def test_a_runner_10_deg_forward_of_standing_needs_the_tumble_and_meets_the_targets_with_it():
    # seed 3: the one in six whose sensors' errors broke lean and stack (measured 0.35 / 0.38° uncorrected)
    run = run_10deg(3)
    raw = strides_error(run, None)
    assert raw["trunk_lean_deg"] > TARGETS["trunk_lean_deg"] and raw["stack_deg"] > TARGETS["stack_deg"]
    fixed = strides_error(run, {s: f.calibration for s, f in tumble_fits(run.info, 100.0, 3).items()})
    for k, target in TARGETS.items():
        assert fixed[k] <= target, (k, fixed)
    assert fixed["trunk_lean_deg"] < 0.5 * raw["trunk_lean_deg"] and fixed["stack_deg"] < 0.6 * raw["stack_deg"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("rate", [50.0, 100.0, 200.0])
def test_every_seed_meets_the_targets_10_deg_forward_with_the_tumble(seed, rate):
    run = run_10deg(seed, rate)
    fixed = strides_error(run, {s: f.calibration for s, f in tumble_fits(run.info, rate, seed).items()})
    for k, target in TARGETS.items():
        assert fixed[k] <= target, (k, fixed)
