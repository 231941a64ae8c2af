"""The synthetic runner: physics the pipeline relies on, truth consistency, files and the source."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stackcue.firmware_bridge.emulated.simulator import (
    SimParams,
    SimulatedSource,
    load_truth,
    simulate,
    write_simulation,
)

G = 9.81


@pytest.fixture(scope="module")
def ideal(sim_run):
    """Ideal sensor, no gaps, no turns: the truth must match the readings exactly."""
    return sim_run(minutes=4, rate_hz=200, sensor_errors=False, gaps=False, turns=False, seed=3)


@pytest.fixture(scope="module")
def full(sim_run):
    """Everything on, with a trunk sensor, 10 minutes at a low rate to stay fast."""
    return sim_run(minutes=10, rate_hz=100, trunk=True, seed=7)


def _r_body_from_sensor(info: dict, seg: str) -> Rotation:
    w, x, y, z = info["mounting"][seg]["q_body_from_sensor_wxyz"]
    return Rotation.from_quat([x, y, z, w])


def _r_world_from_pelvis(truth: dict) -> Rotation:
    """Pelvis orientation from the truth angles, heading taken as the path's (zero without turns)."""
    pitch = np.radians(truth["pelvic_tilt_deg"])
    roll = np.arcsin(np.sin(np.radians(truth["pelvic_obliquity_deg"])) / np.cos(pitch))
    return Rotation.from_euler("ZYX", np.stack([np.radians(truth["pelvic_rotation_deg"]), pitch, roll], 1))


def test_deterministic_for_a_seed() -> None:
    p = SimParams(minutes=0.5, rate_hz=100, trunk=True, seed=11)
    a, b = simulate(p), simulate(p)
    np.testing.assert_array_equal(a.block.t, b.block.t)
    np.testing.assert_array_equal(a.block.acc, b.block.acc)
    np.testing.assert_array_equal(a.block.trunk_gyr, b.block.trunk_gyr)
    np.testing.assert_array_equal(a.truth["pelvic_tilt_deg"], b.truth["pelvic_tilt_deg"])
    assert json.dumps(a.info) == json.dumps(b.info)
    c = simulate(SimParams(minutes=0.5, rate_hz=100, trunk=True, seed=12))
    assert not np.array_equal(a.block.acc[:100], c.block.acc[:100])


def test_gyro_integrates_to_truth_orientation_change(ideal) -> None:
    b, truth, info = ideal.block, ideal.truth, ideal.info
    r_ws = _r_world_from_pelvis(truth) * _r_body_from_sensor(info, "pelvis")
    starts = [info["phases"]["hinge"][0] - 0.5, info["phases"]["walk_start"][0], 60.0, 150.0]
    for t0 in starts:
        i0, i1 = np.searchsorted(truth["t"], [t0, t0 + 3.0])
        steps = 0.5 * (b.gyr[i0:i1] + b.gyr[i0 + 1 : i1 + 1]) * np.diff(truth["t"][i0 : i1 + 1])[:, None]
        r = Rotation.identity()
        for step in Rotation.from_rotvec(steps):
            r = r * step
        change = r_ws[i0].inv() * r_ws[i1]
        assert np.degrees((r.inv() * change).magnitude()) < 0.5


def test_stride_mean_acceleration_is_zero_in_steady_running(sim_run) -> None:
    """The gait itself, without the stride-to-stride speed changes (on by default; their sizes are tested in
    test_simulator_speed_changes.py)."""
    steady_gait = sim_run(
        minutes=4, rate_hz=200, sensor_errors=False, gaps=False, turns=False, seed=3, speed_changes=False
    )
    b, truth, info = steady_gait.block, steady_gait.truth, steady_gait.info
    f_world = (_r_world_from_pelvis(truth) * _r_body_from_sensor(info, "pelvis")).apply(b.acc) - [0, 0, G]
    strikes = [s[0] for s in info["foot_strikes"]]
    steady = info["phases"]["steady_running"]
    means = []
    for t0, t2 in zip(strikes, strikes[2:], strict=False):  # strike to strike on the same foot
        if any(a + 2 < t0 and t2 < c - 2 for a, c in steady):
            m = (truth["t"] >= t0) & (truth["t"] < t2)
            means.append(f_world[m].mean(axis=0))
    means = np.array(means)
    assert len(means) > 200
    assert np.abs(means[:, :2]).max() < 0.1
    assert np.abs(means[:, 2]).max() < 0.2


def test_at_rest_the_accelerometer_reads_gravity(ideal, full) -> None:
    for run in (ideal, full):
        t0, t1 = run.info["phases"]["still1"]
        m = (run.block.t > t0 + 0.2) & (run.block.t < t1 - 0.2)
        norm = np.linalg.norm(run.block.acc[m], axis=1)
        assert abs(norm.mean() - G) < (1e-9 if run is ideal else 0.9)  # biases and scale errors
        assert norm.std() < 0.1
    t0, t1 = ideal.info["phases"]["still1"]
    m = (ideal.truth["t"] >= t0) & (ideal.truth["t"] <= t1)
    assert abs(ideal.truth["pelvic_tilt_deg"][m].mean()) < 0.02  # the neutral is level
    assert np.abs(ideal.truth["pelvic_tilt_deg"][m]).max() < 0.35


def test_hinge_truth_is_the_commanded_pitch(full) -> None:
    t0, t1 = full.info["phases"]["hinge"]
    m = (full.truth["t"] >= t0) & (full.truth["t"] <= t1)
    peak = full.truth["pelvic_tilt_deg"][m].max()
    assert 30.0 <= peak <= 40.0
    assert peak == pytest.approx(full.info["hinge_deg"]["pelvis"], abs=0.05)
    assert full.truth["trunk_lean_deg"][m].max() == pytest.approx(full.info["hinge_deg"]["trunk"], abs=0.05)
    assert 5.0 <= full.info["hinge_deg"]["trunk"] - peak <= 10.05


def test_timestamps_strictly_increasing_and_gaps_listed(full) -> None:
    t = full.block.t
    dt = np.diff(t)
    assert (dt > 0).all()
    period = np.median(dt)
    assert period == pytest.approx(1.0 / full.info["rate_true_hz"], rel=0.01)
    big = np.nonzero(dt > 2.5 * period)[0]
    found = [(round(t[i], 6), round(t[i + 1], 6)) for i in big]
    assert found == [(g["t_start"], g["t_end"]) for g in full.info["gaps"]]
    assert len(found) >= 2  # one long gap (minutes >= 6) and at least one short one
    assert any(g["t_end"] - g["t_start"] > 2.5 for g in full.info["gaps"])


def test_trunk_nan_exactly_where_invalid(full) -> None:
    b = full.block
    assert b.trunk_valid is not None and not b.trunk_valid.all()
    invalid = ~b.trunk_valid
    np.testing.assert_array_equal(np.isnan(b.trunk_acc).any(axis=1), invalid)
    np.testing.assert_array_equal(np.isnan(b.trunk_acc).all(axis=1), invalid)
    np.testing.assert_array_equal(np.isnan(b.trunk_gyr).all(axis=1), invalid)
    assert np.isfinite(b.acc).all() and np.isfinite(b.gyr).all()
    assert len(full.info["trunk_dropouts"]) >= 2


def test_truth_rows_and_timeline(full) -> None:
    n = len(full.block)
    assert all(len(v) == n for v in full.truth.values())
    tr = full.truth
    np.testing.assert_allclose(tr["stack_deg"], tr["trunk_lean_deg"] - tr["pelvic_tilt_deg"])
    assert np.abs(tr["t"] - full.block.t).max() < 0.5 / full.info["rate_nominal_hz"]
    # All five kinds in a 10-minute trunk run, spaced, in steady running, clear of the stop and turns.
    episodes = full.info["episodes"]
    assert sorted(e["kind"] for e in episodes) == sorted(
        ["anterior_tilt", "ribs_behind_pelvis", "posterior_tilt", "trunk_lean", "pelvic_drop"]
    )
    busy = [full.info["stop"]] + [x[:2] for x in full.info["turns"]]
    for a, b in itertools.pairwise(episodes):
        assert b["t_start"] - a["t_end"] >= 60.0 - 1e-6
    for e in episodes:
        assert any(s0 < e["t_start"] and e["t_end"] < s1 for s0, s1 in full.info["phases"]["steady_running"])
        assert all(e["t_end"] <= s0 or e["t_start"] >= s1 for s0, s1 in busy)
    # Relaxed anterior tilt while standing at the lights, in stand mode.
    s0 = full.info["stop"][0]
    m = (tr["t"] > s0 + 12) & (tr["t"] < s0 + 18)
    assert tr["pelvic_tilt_deg"][m].mean() == pytest.approx(8.0, abs=0.5)
    assert (tr["mode"][m] == 0).all()
    # Steady baseline running: stride-mean tilt stays well inside the ±6° tilt alerts.
    quiet = list(full.info["phases"]["steady_running"])
    strikes = [s[0] for s in full.info["foot_strikes"]]
    stride_means = []
    for t0, t2 in zip(strikes, strikes[2:], strict=False):
        m = (tr["t"] >= t0) & (tr["t"] < t2)
        if m.sum() < 0.9 * (t2 - t0) * full.info["rate_true_hz"]:  # a gap in the stride
            continue
        if any(a < t0 and t2 < b for a, b in quiet) and all(
            t2 < e["t_start"] - 1 or t0 > e["t_end"] + 1 for e in episodes
        ):
            stride_means.append(tr["pelvic_tilt_deg"][m].mean())
    assert len(stride_means) > 100 and np.abs(stride_means).max() < 4.5
    # Strikes alternate sides; contact times of running steps are plausible.
    pairs = itertools.pairwise(full.info["foot_strikes"])
    assert all(a[1] != b[1] for a, b in pairs if b[0] - a[0] < 1.0)  # a stop may restart on either foot
    running = [c for t, _, c in full.info["contact_times_s"] if 100 < t < 200]
    assert 0.18 < min(running) and max(running) < 0.3


def test_episode_count_without_trunk() -> None:
    run = simulate(SimParams(minutes=10, rate_hz=50, seed=1))
    assert len(run.info["episodes"]) == 4
    assert "trunk_lean_deg" not in run.truth and run.block.trunk_acc is None
    short = simulate(SimParams(minutes=3, rate_hz=50, seed=1))
    assert len(short.info["episodes"]) >= 1 and short.info["stop"] is None


def test_write_load_round_trip(tmp_path, full) -> None:
    csv = tmp_path / "run.csv"
    truth_csv, truth_json = write_simulation(full, csv)
    assert truth_csv == tmp_path / "run.truth.csv" and truth_json == tmp_path / "run.truth.json"
    assert csv.read_text().startswith("# sensor=simulated\n# rate=100\n")
    truth, info = load_truth(csv)
    assert list(truth) == [
        "t",
        "pelvic_tilt_deg",
        "pelvic_obliquity_deg",
        "pelvic_rotation_deg",
        "trunk_lean_deg",
        "stack_deg",
        "speed_m_s",
        "cadence_spm",
        "mode",
    ]
    for key, values in full.truth.items():
        assert truth[key].dtype == float
        np.testing.assert_allclose(truth[key], values, atol=1e-3)
    assert info == json.loads(json.dumps(full.info))
    assert load_truth(truth_csv)[1] == info


def test_simulated_source_blocks_rebuild_the_run() -> None:
    src = SimulatedSource(minutes=0.5, rate_hz=100, trunk=True, block_s=0.2, seed=5)
    assert src.has_trunk and src.meta["sensor"] == "simulated"
    blocks = list(src)
    assert all(b.t[-1] - b.t[0] < 0.2 for b in blocks if len(b))
    np.testing.assert_array_equal(np.concatenate([b.t for b in blocks]), src.run.block.t)
    np.testing.assert_array_equal(np.concatenate([b.trunk_valid for b in blocks]), src.run.block.trunk_valid)
    assert src.read() is None


def test_simulated_source_paced() -> None:
    src = SimulatedSource(minutes=0.5, rate_hz=50, speed=200.0, block_s=0.5, gaps=False)
    start = time.monotonic()
    n = sum(len(b) for b in src)
    elapsed = time.monotonic() - start
    assert n == len(src.run.block)
    assert elapsed == pytest.approx((src.run.block.t[-1] - src.run.block.t[0]) / 200.0, abs=0.1)


@pytest.mark.slow
def test_long_run_is_fast() -> None:
    start = time.perf_counter()
    run = simulate(SimParams(minutes=60, rate_hz=200, trunk=True))
    elapsed = time.perf_counter() - start
    assert len(run.block) > 60 * 60 * 200 * 0.95
    assert elapsed < 30.0
