"""`analyze` held to real running motion (issue 16, part 3).

Data: RBDS (Fukuchi, Fukuchi & Duarte 2017, PeerJ 5:e3298, doi:10.6084/m9.figshare.4543435, CC BY 4.0),
runner RBDS004 (file ``RBDS0041…`` in the source): 30 s treadmill trials at 2.5, 3.5 and 4.5 m/s and
the 10 s standing trial, six pelvis markers, 150 Hz (tests/data/mocap/README.md). The trials have no
trunk markers, so trunk lean and stack are not checked here (tests/test_real_motion_trunk.py, opt-in).

Each case: the converter (firmware_bridge/emulated/mocap.py) makes a virtual recording (calibration
routine from the standing trial, then the run) with a random mounting and MPU-6050-like errors
(seeds 0–2); `analyze` reads it from the CSV; stride-mean pelvic tilt over each steady stride of the
run is compared with the marker truth over the same window.

Bounds: the issue's target, tilt RMSE ≤ 0.3° over the virtual recordings of a trial (the strides of seeds
0–2 together), and ≤ 0.33° for each seed alone. Measured (2026-12-05, per seed, steady strides), with the
gravity reference fitted over 16 strides in the gyro frame (`gait.gravity_strides`), step boundaries at
the flight troughs' centroids and each stride's samples at their own instants: 2.5 m/s 0.14–0.17°,
3.5 m/s 0.17–0.28°, 4.5 m/s 0.22–0.26° at 100 and 200 Hz. Before the pooled reference (one stride's mean
specific force taken as gravity): 0.26–0.28°, 0.41–0.73°; 4.5 m/s read 0.72–0.98° until the step
boundaries stopped wandering on its flat flight floor (tests/test_gait.py). Seeds 3–5 are not all inside:
at 3.5 m/s and 100 Hz they read 0.34–0.40° (pooled over seeds 0–5: 0.30°), as the estimator's floor there
(0.27° with an ideal sensor) leaves no room for the accelerometer's gain errors (docs/accuracy.md, "More
seeds, and the running posture").
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from truthcheck import window_mean

from stackcue.firmware_bridge.emulated.mocap import MocapParams, convert, read_markers
from stackcue.firmware_bridge.emulated.simulator import write_simulation
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config

DATA = Path(__file__).parent / "data" / "mocap"
TARGET_DEG = 0.3  # RMSE over the strides of every seed
SEED_BOUND_DEG = 0.33  # RMSE of each seed's recording
SEEDS = (0, 1, 2)
CASES = [(trial, rate) for trial in ("run35", "run25", "run45") for rate in (100.0, 200.0)]


@pytest.fixture(scope="module")
def static():
    return read_markers(DATA / "rbds004_static.txt.gz")


def _analyse(tmp_path: Path, trial: str, rate: float, seed: int, static, cfg=None, **kw) -> dict:
    run = read_markers(DATA / f"rbds004_{trial}.txt.gz")
    sim = convert(run, static, MocapParams(rate_hz=rate, seed=seed, **kw))
    csv = tmp_path / f"{trial}_{rate:g}_{seed}.csv"
    write_simulation(sim, csv)
    events = analyze_file(csv, cfg or load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    t_run = sim.info["phases"]["running"][0]
    cal = [e for e in events if e["type"] == "calibration"]
    strides = [e for e in events if e["type"] == "stride" and e["steady"] and e["t_start"] >= t_run]
    t = sim.truth["t"]
    truth = np.array([window_mean(t, sim.truth["pelvic_tilt_deg"], e["t_start"], e["t_end"]) for e in strides])
    est = np.array([e["pelvic_tilt_deg"] for e in strides])
    vx = sim.truth["pelvis_vx_m_s"]
    fwd = np.array(
        [(np.interp(e["t_end"], t, vx) - np.interp(e["t_start"], t, vx)) / (e["t_end"] - e["t_start"]) for e in strides]
    )
    return {"cal": cal, "err": est - truth, "fwd_acc": fwd, "n_run_strides": len(sim.info["true_strides"])}


@pytest.mark.parametrize(
    "trial,rate",
    [pytest.param(*c, id=f"{c[0]}-{c[1]:g}Hz", marks=[pytest.mark.slow] if c[1] > 100 else []) for c in CASES],
)
def test_stride_mean_tilt_on_real_running(tmp_path, static, trial, rate):
    errs = []
    for seed in SEEDS:
        r = _analyse(tmp_path, trial, rate, seed, static)
        assert r["cal"] and r["cal"][0]["ok"], r["cal"]
        # 30 s of running: ~35 true strides; the pipeline must call most of them steady.
        assert len(r["err"]) >= 15, len(r["err"])
        rmse = float(np.sqrt(np.mean(r["err"] ** 2)))
        assert rmse <= SEED_BOUND_DEG, f"{trial} {rate:g} Hz seed {seed}: tilt RMSE {rmse:.3f}°"
        errs.append(r["err"])
    rmse = float(np.sqrt(np.mean(np.concatenate(errs) ** 2)))
    assert rmse <= TARGET_DEG, f"{trial} {rate:g} Hz: tilt RMSE {rmse:.3f}° over seeds {SEEDS}"


@pytest.mark.parametrize("strides", [1, 16])
def test_the_error_follows_the_strides_mean_forward_acceleration_only_without_pooling(tmp_path, static, strides):
    """Ideal sensor, identity mounting. One stride's mean specific force taken as gravity (``gravity_strides``
    = 1, the estimator before issue 16 part 2): each stride's tilt error is −(its mean forward acceleration)/g
    (correlation −0.999, slope 1.00, as the issue measured) and above the target. Fitted over 16 strides in the
    gyro frame (the default): only the stride's own share in the fit is left (slope ≤ 0.35) and the error is
    within the target.
    """
    cfg = load_config(_gait_config(tmp_path, strides))
    r = _analyse(tmp_path, "run35", 100.0, 0, static, cfg=cfg, sensor_errors=False, identity_mounting=True)
    corr = float(np.corrcoef(r["err"], r["fwd_acc"])[0, 1])
    rmse = float(np.sqrt(np.mean(r["err"] ** 2)))
    if strides == 1:
        residual = r["err"] + np.degrees(r["fwd_acc"] / 9.81)
        assert corr <= -0.99, corr
        assert float(np.sqrt(np.mean(residual**2))) <= 0.15
        assert rmse > TARGET_DEG  # the physics, not the sensor
    else:
        # what is left of it: this stride's own weight in the line fitted over 16 (its leverage at the line's
        # end is 1/16 + 7.5²/340 = 0.23); measured slope 0.24 against 1.00 with one stride
        slope = float(np.polyfit(-np.degrees(r["fwd_acc"] / 9.81), r["err"], 1)[0])
        assert slope <= 0.35, (slope, corr)
        assert rmse <= TARGET_DEG, rmse


def _gait_config(tmp_path: Path, strides: int) -> Path:
    user = tmp_path / f"gait_{strides}.toml"
    user.write_text(f"[gait]\ngravity_strides = {strides}\n")
    return user
