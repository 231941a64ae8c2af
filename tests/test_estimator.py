"""Issue 16, part 2: the gravity reference pooled over several strides in the gyro frame, and every rate.

The pooling (dsp/stride.py ``GravityPool``, state in dsp/pipeline.py) must cancel the stride-to-stride mean
accelerations of a real runner, keep the block-split property, start afresh wherever the gyro frame is not
continuous, and a trunk sensor's figures must not vanish silently at 1000 Hz.
"""

from __future__ import annotations

import numpy as np
import pytest
from truthcheck import stride_truth

from stackcue.dsp.params import GaitParams, PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.dsp.stride import GravityPool
from stackcue.firmware_bridge.block import Block


def strides_of(events: list[dict], steady: bool = True) -> list[dict]:
    return [e for e in events if e["type"] == "stride" and (e["steady"] or not steady)]


def host_times(n: int, rate_true: float, jitter_s: float, seed: int) -> np.ndarray:
    """Sample instants of a sensor at ``rate_true``, stamped by a host with normal jitter (sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.arange(n) / rate_true + rng.normal(0.0, jitter_s, n))


@pytest.mark.slow
def test_trunk_figures_at_1000_hz_with_jittery_host_times(sim_run):
    """0.3 ms host jitter at 1000 Hz (a sensor 1.2 % fast): a jittered interval under half a period is no hole.

    Before: the trunk calibrated, then every stride had trunk lean and stack "no data", without a word.
    """
    run = sim_run(minutes=1.0, rate_hz=1000, trunk=True, seed=7, timing_errors=False, gaps=False, episodes=False)
    b = run.block
    t = host_times(len(b.t), 1012.0, 0.3e-3, 3)  # a clock 1.2 % fast, too
    pipe = Pipeline(PipelineParams(reference=ReferenceParams(mode="neutral")))
    events = pipe.feed(Block(t, b.acc, b.gyr, b.trunk_acc, b.trunk_gyr, b.trunk_valid)) + pipe.finish()
    cal = [e for e in events if e["type"] == "calibration"]
    assert cal and "trunk" in cal[0]["segments"]
    steady = strides_of(events)
    assert len(steady) > 20
    with_trunk = [s for s in steady if s["trunk_lean_deg"] is not None and s["stack_deg"] is not None]
    assert len(with_trunk) == len(steady), f"{len(steady) - len(with_trunk)} of {len(steady)} without trunk"
    truth = [stride_truth(run.truth, s) for s in with_trunk]
    err = np.array([s["stack_deg"] - tr["stack_deg"] for s, tr in zip(with_trunk, truth, strict=True)])
    assert float(np.sqrt(np.mean(err**2))) < 0.5
    assert not [e for e in events if e["type"] == "trunk_missing"]


def test_strides_without_trunk_figures_say_why_once(sim_run):
    """Trunk dropouts (the simulator's, 0.5–3 s): the strides over them have no trunk lean or stack, and one
    ``trunk_missing`` event says why, at the first of them; never a silent "no data"."""
    run = sim_run(minutes=10, rate_hz=100, trunk=True, seed=2)
    assert run.info["trunk_dropouts"], "the run should hold trunk dropouts"
    pipe = Pipeline(PipelineParams(reference=ReferenceParams(mode="neutral")))
    events = pipe.feed(run.block) + pipe.finish()
    missing = [s for s in strides_of(events, steady=False) if s["trunk_lean_deg"] is None]
    assert len(missing) >= 2
    told = [e for e in events if e["type"] == "trunk_missing"]
    assert len(told) == 1, told
    assert told[0]["t"] == missing[0]["t_end"] and "dropouts" in told[0]["reason"]
    assert events.index(told[0]) == events.index(missing[0]) + 1
    # the trunk's gyro frame breaks at a dropout: the first trunk stride after one pools with nothing before it
    alone = strides_of(_events(run.block, 1), steady=False)
    pooled = strides_of(events, steady=False)
    assert [s["t_start"] for s in alone] == [s["t_start"] for s in pooled]
    after = [
        k for k in range(1, len(pooled)) if pooled[k - 1]["trunk_lean_deg"] is None and pooled[k]["trunk_lean_deg"]
    ]
    assert after
    for k in after:
        assert pooled[k]["trunk_lean_deg"] == alone[k]["trunk_lean_deg"]


def _pool_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stride sums: gravity along a slowly turning axis plus each stride's mean acceleration, the change of a
    speed that wanders about its mean (0.13 m/s² RMS forward, consecutive strides correlated −0.5)."""
    rng = np.random.default_rng(seed)
    t_end = 10.0 + 0.7 * np.arange(1, n + 1)
    turn = np.radians(0.2) * (t_end - t_end[0])  # the gyro frame turning 0.2 °/s about x
    g = np.stack([np.zeros(n), np.sin(turn), np.cos(turn)], axis=1) * 9.81
    v = rng.normal(0.0, 0.064, (n + 1, 3)) * np.array([1.0, 0.5, 0.5])  # m/s at the stride boundaries
    acc = np.diff(v, axis=0) / 0.7
    return (g + acc) * 0.7, t_end  # sums of time-weighted samples: mean × duration


def test_pool_is_bit_identical_for_any_split_of_the_strides():
    sums, t_end = _pool_inputs(60)
    epoch = np.where(np.arange(60) < 25, 1, 2)  # a break in the gyro frame after 25 strides
    whole = GravityPool(16, 16.0).pool(sums, t_end, epoch)
    for sizes in ([1], [7], [3, 11, 1, 20]):
        pool, parts, i, k = GravityPool(16, 16.0), [], 0, 0
        while i < len(sums):
            n = sizes[k % len(sizes)]
            parts.append(pool.pool(sums[i : i + n], t_end[i : i + n], epoch[i : i + n]))
            i, k = i + n, k + 1
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_pool_follows_a_turning_gyro_frame_and_cancels_the_strides_accelerations():
    sums, t_end = _pool_inputs(80)
    turn = np.radians(0.2) * (t_end - t_end[0])
    truth = np.stack([np.zeros(80), np.sin(turn), np.cos(turn)], axis=1)

    def err_deg(up: np.ndarray) -> np.ndarray:
        u = up / np.linalg.norm(up, axis=1)[:, None]
        return np.degrees(np.arccos(np.clip((u * truth).sum(axis=1), -1, 1)))[20:]

    one = err_deg(GravityPool(1, 16.0).pool(sums, t_end, np.zeros(80, int)))
    pooled = err_deg(GravityPool(16, 16.0).pool(sums, t_end, np.zeros(80, int)))
    assert np.sqrt(np.mean(one**2)) > 0.6  # one stride's mean acceleration: 0.13 m/s² ≈ 0.76°
    assert np.sqrt(np.mean(pooled**2)) < 0.3
    # a plain mean of the 16 lags the turning frame by 0.2 °/s × 5.25 s ≈ 1°: the trend line does not
    assert np.sqrt(np.mean(pooled**2)) < 0.5 * np.sqrt(np.mean(one**2))


def test_pool_uses_no_stride_of_another_epoch_or_beyond_its_span():
    sums, t_end = _pool_inputs(30)
    alone = GravityPool(1, 16.0).pool(sums, t_end, np.zeros(30, int))
    epoch = np.arange(30) // 10  # three stretches of the gyro frame
    got = GravityPool(16, 16.0).pool(sums, t_end, epoch)
    for k in (0, 10, 20):  # the first stride of a stretch is its own reference
        np.testing.assert_allclose(got[k] / np.linalg.norm(got[k]), alone[k] / np.linalg.norm(alone[k]))
    spaced = t_end + 5.0 * np.arange(30)  # strides 5.7 s apart: beyond a 5 s span every one is alone
    got = GravityPool(16, 5.0).pool(sums, spaced, np.zeros(30, int))
    np.testing.assert_allclose(
        got / np.linalg.norm(got, axis=1)[:, None], alone / np.linalg.norm(alone, axis=1)[:, None]
    )


def _events(block, strides: int) -> list[dict]:
    p = PipelineParams(reference=ReferenceParams(mode="neutral"), gait=GaitParams(gravity_strides=strides))
    pipe = Pipeline(p)
    return pipe.feed(block) + pipe.finish()


def test_the_first_strides_after_a_gap_and_while_speeding_up_pool_with_nothing_before(sim_run):
    """Where the gyro frame is not continuous (a gap), and while the runner speeds up, a stride's gravity is its
    own: its figures equal those of ``gravity_strides`` = 1 exactly; in steady running they differ."""
    run = sim_run(minutes=2, rate_hz=100, seed=5, speed_changes=True, episodes=False, turns=False, stop=False)
    b = run.block
    t = b.t.copy()
    cut = int(np.searchsorted(t, t[0] + 70.0))
    t[cut:] += 1.5  # a gap of 1.5 s in the middle of running
    block = Block(t, b.acc, b.gyr)
    pooled = strides_of(_events(block, 16), steady=False)
    alone = strides_of(_events(block, 1), steady=False)
    assert [s["t_start"] for s in pooled] == [s["t_start"] for s in alone]
    gap_end = float(t[cut])
    after = [k for k, s in enumerate(pooled) if s["t_start"] >= gap_end]
    assert after, "no stride after the gap"
    k = after[0]
    assert pooled[k]["pelvic_tilt_deg"] == alone[k]["pelvic_tilt_deg"]
    assert pooled[0]["pelvic_tilt_deg"] == alone[0]["pelvic_tilt_deg"]  # the bout's first, speeding up
    steady = [k for k, s in enumerate(pooled) if s["steady"] and s["t_end"] < gap_end]
    differ = sum(pooled[k]["pelvic_tilt_deg"] != alone[k]["pelvic_tilt_deg"] for k in steady)
    assert differ > 0.8 * len(steady)


def test_the_calibration_takes_the_accelerometers_vertical_gain_out(sim_run):
    """An accelerometer offset or scale error along the vertical scales every angle from the neutral (4 % at
    0.4 m/s²): the standing magnitude's excess over gravity is taken off, so the trunk lean's error no longer
    grows with the lean (a 20° lean episode; before: a slope of −3.6 %)."""
    run = sim_run(minutes=6, rate_hz=100, trunk=True, seed=2, speed_changes=True)
    events = _events(run.block, 16)
    cal = next(e for e in events if e["type"] == "calibration")
    for seg in ("pelvis", "trunk"):
        assert 9.0 < cal["segments"][seg]["g_rest_m_s2"] < 10.6
    steady = [s for s in strides_of(events) if s["trunk_lean_deg"] is not None]
    truth = np.array([stride_truth(run.truth, s)["trunk_lean_deg"] for s in steady])
    err = np.array([s["trunk_lean_deg"] for s in steady]) - truth
    assert truth.max() - truth.min() > 20.0
    slope = float(np.polyfit(truth, err, 1)[0])
    assert abs(slope) < 0.015, slope


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "gait.gravity_strides = 0 is out of range 1..40"), ("4.5", "gait.gravity_strides must be an integer")],
)
def test_a_bad_gravity_strides_is_one_line_naming_the_key(tmp_path, value, message):
    from stackcue.errors import ConfigError
    from stackcue.service.config import load_config

    p = tmp_path / "user.toml"
    p.write_text(f"[gait]\ngravity_strides = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert message in msg and str(p) in msg and "\n" not in msg
