"""Every rate the README promises, with and without a trunk sensor, on runs with stride-to-stride speed changes.

Issue 16, part 4. Each case: a 6-minute simulated run (`SimParams(speed_changes=True)`: the sacrum's and the
sternum's stride-mean accelerations of a real runner, a slow speed drift; MPU-6050-like errors, a random
mounting, turns, a stop, gaps, drift episodes) fed to the pipeline in memory, compared with the simulator's
truth over the steady strides. The reference is the standing neutral (``reference.mode = "neutral"``), so
the drift episodes of the truth are what must alert.

Bounds, against the issue's targets (each the RMSE over the steady strides of the run, of the stride's figure
against the time-weighted mean of the truth over the stride's own window):
- stride-mean pelvic tilt RMSE ≤ 0.25° and p95 of |error| ≤ 0.5°: the targets (measured 0.11–0.19° and
  0.19–0.39° over seeds 1–6 at every rate);
- trunk lean RMSE ≤ 0.25° and stack (lean − tilt) RMSE ≤ 0.3°: the targets, with the sensors as they come
  (no per-device accelerometer calibration: none is needed for them at this runner's posture, 2° further
  forward running than standing; a runner 10° forward, as RBDS004 runs, breaks lean and stack for one seed
  in six without it: docs/accuracy.md, "More seeds, and the running posture"). Measured 0.12–0.22° and 0.15–0.27° over
  seeds 1–6 at every rate, seed 2 0.12–0.17° and 0.15–0.20°; before the gyro frame was taken at the sample's
  instant and the neutral left out the bow's start (tests/test_sample_instant.py) 0.14–0.31° and 0.22–0.35°,
  seed 2 at 50 Hz 0.26° and 0.32° (docs/accuracy.md);
- cadence: mean |error| ≤ 1 spm (the target, measured 0.18–0.32); the worst stride ≤ 1.5 spm from 200 Hz,
  2.5 at 100 Hz and 3.5 at 50 Hz, where a stride's boundaries fall on samples 10 and 20 ms apart;
- no alert where the truth stays clearly inside its threshold (0 false alerts), and every clear episode
  alerted within 8 s of the stride-mean truth crossing it, unless a long gap (> 2 s: running starts
  again, and 5 s of speeding up are unsteady) falls within those 8 s;
- alert latency median ≤ 2.5 s, the issue's target (measured 2.4–2.45 s over seeds 1–6: 3 confirming steady
  strides and the 1 s steadiness wait `[steady] before_stop_s`; it was 3.3–4.2 s with the 2 s wait).
"""

from __future__ import annotations

import numpy as np
import pytest
from truthcheck import ambiguous_spans, expected_episodes, stride_truth, true_cadence, true_strides

from stackcue.dsp.drift import KINDS
from stackcue.dsp.params import LONG_GAP_S, PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline

RATES = (50, 100, 200, 500, 1000)
MARGIN_DEG = 1.0
LATENCY_S = 8.0
TILT_RMSE, TILT_P95, LEAN_RMSE, STACK_RMSE = 0.25, 0.5, 0.25, 0.30
CADENCE_MEAN_SPM = 1.0
LATENCY_MEDIAN_S = 2.5
SEED = 2

PARAMS = [
    pytest.param(
        (rate, trunk), id=f"{rate}Hz-{'trunk' if trunk else 'pelvis'}", marks=[pytest.mark.slow] if rate > 100 else []
    )
    for rate in RATES
    for trunk in (False, True)
]


@pytest.fixture(scope="module", params=PARAMS)
def case(request, sim_run):
    rate, trunk = request.param
    run = sim_run(minutes=6, rate_hz=rate, trunk=trunk, seed=SEED, speed_changes=True)
    params = PipelineParams(reference=ReferenceParams(mode="neutral"))
    pipe = Pipeline(params)
    events = pipe.feed(run.block) + pipe.finish()
    return {"rate": rate, "trunk": trunk, "run": run, "events": events, "params": params}


def _steady(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "stride" and e["steady"]]


def test_stride_mean_tilt_lean_and_stack(case):
    strides = _steady(case["events"])
    assert len(strides) > 350
    truths = [stride_truth(case["run"].truth, s) for s in strides]
    fields = {"pelvic_tilt_deg": TILT_RMSE}
    if case["trunk"]:
        fields.update({"trunk_lean_deg": LEAN_RMSE, "stack_deg": STACK_RMSE})
    for f, bound in fields.items():
        err = np.array([s[f] - t[f] for s, t in zip(strides, truths, strict=True) if s[f] is not None])
        assert len(err) > 0.9 * len(strides), f"{f} missing on {len(strides) - len(err)} of {len(strides)} strides"
        rmse = float(np.sqrt(np.mean(err**2)))
        assert rmse <= bound, f"{f} RMSE {rmse:.3f}° > {bound}°"
        if f == "pelvic_tilt_deg":
            p95 = float(np.percentile(np.abs(err), 95))
            assert p95 <= TILT_P95, f"tilt p95 {p95:.3f}° > {TILT_P95}°"


def test_cadence(case):
    strides = _steady(case["events"])
    err = np.abs([s["cadence_spm"] - true_cadence(case["run"].info, s) for s in strides])
    assert float(np.mean(err)) <= CADENCE_MEAN_SPM
    worst = {50: 3.5, 100: 2.5}.get(case["rate"], 1.5)
    assert float(np.max(err)) <= worst, f"cadence off by {np.max(err):.2f} spm"


def _latencies(case) -> tuple[list[float], int]:
    """Alert latencies of the clear episodes; asserts none is missed (unless a long gap excuses it) or false."""
    events, run = case["events"], case["run"]
    alerts = [e for e in events if e["type"] == "alert" and not e["reminder"]]
    gaps = [(g["t_start"], g["t_end"]) for g in run.info["gaps"] if g["t_end"] - g["t_start"] > LONG_GAP_S]
    ts = true_strides(run.truth, run.info)
    p = case["params"].alerts
    latencies: list[float] = []
    episodes = 0
    for kind in KINDS:
        if not case["trunk"] and KINDS[kind][0] in ("trunk_lean_deg", "stack_deg"):
            continue
        thr = getattr(p, f"{kind}_deg")
        for ep in expected_episodes(ts, kind, thr, MARGIN_DEG):
            episodes += 1
            hit = [
                a for a in alerts if a["kind"] == kind and ep.t_cross - 3.0 <= a["decided_t"] <= ep.t_cross + LATENCY_S
            ]
            if hit:
                latencies.append(hit[0]["decided_t"] - ep.t_cross)
                continue
            excused = any(g0 < ep.t_cross + LATENCY_S and g1 > ep.t_cross - 1.0 for g0, g1 in gaps)
            assert excused, f"{kind} crossing at {ep.t_cross:.1f} s not alerted within {LATENCY_S} s"
        spans = ambiguous_spans(ts, kind, thr, MARGIN_DEG)
        for a in (a for a in alerts if a["kind"] == kind):
            near = any(s0 - 1.0 <= a["t"] <= s1 + LATENCY_S for s0, s1 in spans)
            assert near, f"false {kind} alert at {a['t']:.1f} s while the truth was inside the threshold"
    return latencies, episodes


def test_alerts_in_time_and_no_false_alert(case):
    latencies, episodes = _latencies(case)
    assert episodes >= 3 and len(latencies) >= episodes - 1
    med = float(np.median(latencies))
    assert med <= LATENCY_MEDIAN_S, f"median alert latency {med:.2f} s"
