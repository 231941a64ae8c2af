"""`analyze` held to real running motion (issue 16, part 3).

Data: RBDS (Fukuchi, Fukuchi & Duarte 2017, PeerJ 5:e3298, doi:10.6084/m9.figshare.4543435, CC BY 4.0),
runner RBDS004 (file ``RBDS0041…`` in the source): 30 s treadmill trials at 2.5 and 3.5 m/s and the
10 s standing trial, six pelvis markers, 150 Hz (tests/data/mocap/README.md). The trials have no
trunk markers, so trunk lean and stack are not checked here.

Each case: the converter (firmware_bridge/emulated/mocap.py) makes a virtual recording (calibration
routine from the standing trial, then the run) with a random mounting and MPU-6050-like errors
(seeds 0–2); `analyze` reads it from the CSV; stride-mean pelvic tilt over each steady stride of the
run is compared with the marker truth over the same window.

Bounds: the CURRENT estimator's measured figures plus a margin (a regression bound, not the goal).
The issue's target is tilt RMSE ≤ 0.3° (stack ≤ 0.4°) once the estimator stops assuming a stride's
mean acceleration is zero; then tighten RMSE_BOUND_DEG to it. Measured (2026-12-05), steady strides,
worst of seeds 0–2: 3.5 m/s 0.73° at 100 Hz, 0.73° at 200 Hz; 2.5 m/s 0.28° at both.
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
RMSE_BOUND_DEG = {"run35": 0.80, "run25": 0.32}  # target after the estimator change: 0.3 for both
TARGET_DEG = 0.3
SEEDS = (0, 1, 2)
CASES = [(trial, rate) for trial in ("run35", "run25") for rate in (100.0, 200.0)]


@pytest.fixture(scope="module")
def static():
    return read_markers(DATA / "rbds004_static.txt.gz")


def _analyse(tmp_path: Path, trial: str, rate: float, seed: int, static, **kw) -> dict:
    run = read_markers(DATA / f"rbds004_{trial}.txt.gz")
    sim = convert(run, static, MocapParams(rate_hz=rate, seed=seed, **kw))
    csv = tmp_path / f"{trial}_{rate:g}_{seed}.csv"
    write_simulation(sim, csv)
    events = analyze_file(csv, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
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
    worst = 0.0
    for seed in SEEDS:
        r = _analyse(tmp_path, trial, rate, seed, static)
        assert r["cal"] and r["cal"][0]["ok"], r["cal"]
        # 30 s of running: ~35 true strides; the pipeline must call most of them steady.
        assert len(r["err"]) >= 15, len(r["err"])
        rmse = float(np.sqrt(np.mean(r["err"] ** 2)))
        worst = max(worst, rmse)
    assert worst <= RMSE_BOUND_DEG[trial], f"{trial} {rate:g} Hz: tilt RMSE {worst:.2f}° (target {TARGET_DEG}°)"


def test_the_error_is_the_strides_mean_forward_acceleration(tmp_path, static):
    """Ideal sensor, identity mounting: each stride's tilt error is −(its mean forward acceleration)/g.

    This describes the current estimator (one stride's mean specific force taken as gravity), as the
    issue measured (correlation −0.999). The estimator change is meant to break it: replace this test
    by the targets then.
    """
    r = _analyse(tmp_path, "run35", 100.0, 0, static, sensor_errors=False, identity_mounting=True)
    corr = float(np.corrcoef(r["err"], r["fwd_acc"])[0, 1])
    residual = r["err"] + np.degrees(r["fwd_acc"] / 9.81)
    assert corr <= -0.99, corr
    assert float(np.sqrt(np.mean(residual**2))) <= 0.15
    # ... and it is the physics, not the sensor: still well above the target without any sensor error.
    assert float(np.sqrt(np.mean(r["err"] ** 2))) > TARGET_DEG
