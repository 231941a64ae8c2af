"""Accuracy against the simulator's truth channel, through a real CSV file and `analyze`.

Tolerances (issue #3): stride-mean pelvic tilt, trunk lean and stack RMSE
≤ 1.0° over steady strides; cadence within 2 steps/min; every clear drift
episode alerted within 8 s of the stride-mean truth crossing the threshold
and cleared within 8 s of it falling back; no alert where the truth stays
clearly inside the thresholds. Random sensor mounting every run. The simulator's defaults include a real
runner's stride-to-stride speed changes (issue 16); every rate with the issue's tighter targets is in
test_accuracy_rates.py, the real-motion check in test_real_motion.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from truthcheck import ambiguous_spans, expected_episodes, rmse, stride_truth, true_cadence, true_strides

from stackcue.dsp.drift import KINDS
from stackcue.firmware_bridge.emulated.simulator import SimParams, load_truth, simulate
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config

CASES = [(100, False, 1), (100, True, 2), (200, False, 3), (200, True, 4), (500, False, 5), (500, True, 6)]
MARGIN_DEG = 1.0  # truth this close to a threshold may or may not alert
LATENCY_S = 8.0
ARTIFACTS = Path(__file__).parent / "artifacts"


# 100 Hz stays in the fast set; the higher rates take a few seconds each
PARAMS = [
    pytest.param(c, id=f"{c[0]}Hz-{'trunk' if c[1] else 'pelvis'}", marks=[pytest.mark.slow] if c[0] > 100 else [])
    for c in CASES
]


@pytest.fixture(scope="module")
def neutral_config(tmp_path_factory):
    """Every metric from the standing neutral, so the truth's thresholds are the settings themselves (the
    default reference of the tilt, the run's first minutes, is checked in tests/test_reference.py)."""
    p = tmp_path_factory.mktemp("accuracy") / "neutral.toml"
    p.write_text('[reference]\nmode = "neutral"\n')
    return load_config(p)


@pytest.fixture(scope="module", params=PARAMS)
def analysed(request, sim_csv, neutral_config):
    rate, trunk, seed = request.param
    csv = sim_csv(minutes=10, rate_hz=rate, trunk=trunk, seed=seed)
    truth, info = load_truth(csv)
    buf = io.StringIO()
    events = analyze_file(csv, neutral_config, jsonl=True, out=buf, err=io.StringIO(), progress=False)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines == json.loads(json.dumps(events))  # what was printed is what was returned
    return {"rate": rate, "trunk": trunk, "events": events, "truth": truth, "info": info}


def steady(events):
    return [e for e in events if e["type"] == "stride" and e["steady"]]


def record(case, name, value):
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "accuracy.jsonl", "a") as fh:
        fh.write(json.dumps({"case": f"{case['rate']}Hz-{'trunk' if case['trunk'] else 'pelvis'}", name: value}) + "\n")


def test_calibration_found_mounting(analysed):
    cal = next(e for e in analysed["events"] if e["type"] == "calibration")
    assert cal["ok"]
    from scipy.spatial.transform import Rotation

    for seg, d in cal["segments"].items():
        w, x, y, z = d["q_body_from_sensor_wxyz"]
        tw, tx, ty, tz = analysed["info"]["mounting"][seg]["q_body_from_sensor_wxyz"]
        est, tru = Rotation.from_quat([x, y, z, w]), Rotation.from_quat([tx, ty, tz, tw])
        err = float(np.degrees((est * tru.inv()).magnitude()))
        # accelerometer bias tilts the measured vertical by up to a few degrees; it cancels in the
        # angles relative to neutral (the RMSE test), so the absolute mounting is held loosely here
        record(analysed, f"mounting_error_deg_{seg}", round(err, 2))
        assert err < 5.0, f"{seg} mounting off by {err:.2f}°"
    if analysed["trunk"]:
        assert "trunk" in cal["segments"]


def test_stride_mean_tilt_lean_stack_rmse(analysed):
    strides = steady(analysed["events"])
    assert len(strides) > 500
    truths = [stride_truth(analysed["truth"], s) for s in strides]
    fields = ["pelvic_tilt_deg"] + (["trunk_lean_deg", "stack_deg"] if analysed["trunk"] else [])
    for f in fields:
        pairs = [(s[f], t[f]) for s, t in zip(strides, truths, strict=True) if s[f] is not None]
        assert len(pairs) > 0.8 * len(strides), f"{f} missing on too many strides"
        est, tru = zip(*pairs, strict=True)
        e = rmse(est, tru)
        record(analysed, f"rmse_{f}", round(e, 3))
        assert e <= 1.0, f"{f} RMSE {e:.2f}° > 1.0°"
    if not analysed["trunk"]:
        assert all(s["trunk_lean_deg"] is None and s["stack_deg"] is None for s in strides)


def test_cadence_within_two_steps_per_minute(analysed):
    strides = steady(analysed["events"])
    errs = [s["cadence_spm"] - true_cadence(analysed["info"], s) for s in strides]
    worst = float(np.max(np.abs(errs)))
    record(analysed, "cadence_max_abs_err_spm", round(worst, 2))
    assert np.mean(np.abs(errs)) < 1.0
    assert worst <= 2.0, f"cadence off by {worst:.2f} spm"


def test_every_drift_alerted_and_cleared_in_time(analysed):
    events, truth, info = analysed["events"], analysed["truth"], analysed["info"]
    alerts = [e for e in events if e["type"] == "alert" and not e["reminder"]]
    clears = [e for e in events if e["type"] == "clear"]
    ts = true_strides(truth, info)
    p = load_config().pipeline.alerts
    kinds = [k for k in KINDS if analysed["trunk"] or KINDS[k][0] not in ("trunk_lean_deg", "stack_deg")]
    n_expected = 0
    latencies = []
    for kind in kinds:
        thr = getattr(p, f"{kind}_deg")
        eps = expected_episodes(ts, kind, thr, MARGIN_DEG)
        n_expected += len(eps)
        for ep in eps:
            hit = [
                a for a in alerts if a["kind"] == kind and ep.t_cross - 3.0 <= a["decided_t"] <= ep.t_cross + LATENCY_S
            ]
            assert hit, f"{kind} crossing at {ep.t_cross:.1f} s not alerted within {LATENCY_S} s"
            latencies.append(hit[0]["decided_t"] - ep.t_cross)
            back = [
                c for c in clears if c["kind"] == kind and ep.t_back - 3.0 <= c["decided_t"] <= ep.t_back + LATENCY_S
            ]
            assert back, f"{kind} back inside at {ep.t_back:.1f} s not cleared within {LATENCY_S} s"
        # no alert of this kind where the truth was clearly inside the threshold
        spans = ambiguous_spans(ts, kind, thr, MARGIN_DEG)
        for a in (a for a in alerts if a["kind"] == kind):
            near = any(s0 - 1.0 <= a["t"] <= s1 + LATENCY_S for s0, s1 in spans)
            assert near, f"false {kind} alert at {a['t']:.1f} s while the truth was inside the threshold"
    record(analysed, "episodes", n_expected)
    record(analysed, "alert_latency_s", [round(x, 2) for x in latencies])
    assert n_expected >= (4 if analysed["trunk"] else 3), "the simulated run should hold drift episodes"


def test_no_stride_or_alert_from_standing_or_walking(analysed):
    truth = analysed["truth"]
    for e in analysed["events"]:
        if e["type"] == "stride":
            i0, i1 = np.searchsorted(truth["t"], [e["t_start"], e["t_end"]])
            running = np.mean(truth["mode"][i0:i1] == 2)
            assert np.mean(truth["mode"][i0:i1] == 0) < 0.5, f"stride at {e['t_start']} while standing"
            if e["steady"]:
                assert running > 0.99, f"steady stride at {e['t_start']} while not running"
    stop = analysed["info"].get("stop")
    if stop:
        assert not [e for e in analysed["events"] if e["type"] == "alert" and stop[0] + 3 < e["t"] < stop[1] - 3]


@pytest.mark.parametrize("trunk", [False, True])
def test_ideal_sensor_mounting_is_exact(tmp_path, trunk):
    """Without sensor errors the routine recovers the strapping to a fraction of a degree."""
    from scipy.spatial.transform import Rotation

    from stackcue.dsp.pipeline import Pipeline

    run = simulate(
        SimParams(minutes=0.5, rate_hz=200, trunk=trunk, seed=21, sensor_errors=False, gaps=False, episodes=False)
    )
    pipe = Pipeline(strict_calibration=False)
    events = pipe.feed(run.block) + pipe.finish()
    cal = next(e for e in events if e["type"] == "calibration")
    for seg in ["pelvis", "trunk"] if trunk else ["pelvis"]:
        w, x, y, z = cal["segments"][seg]["q_body_from_sensor_wxyz"]
        tw, tx, ty, tz = run.info["mounting"][seg]["q_body_from_sensor_wxyz"]
        est, tru = Rotation.from_quat([x, y, z, w]), Rotation.from_quat([tx, ty, tz, tw])
        z_err = np.degrees(np.arccos(np.clip(est.inv().apply([0, 0, 1]) @ tru.inv().apply([0, 0, 1]), -1, 1)))
        err = np.degrees((est * tru.inv()).magnitude())
        assert z_err < 0.3, f"{seg} vertical off by {z_err:.2f}°"
        assert err < 2.0, f"{seg} mounting off by {err:.2f}°"
        assert abs(cal["segments"][seg]["hinge_deg"] - run.info["hinge_deg"][seg]) < 1.0
