"""Behaviour of the dsp layer against the simulator's truth (and hand-made routines) with stated tolerances.

Covers the calibration refusals and the live retry, stillness judged by spread, the reference modes,
the slipped-belt check, gaps, the drift detector's rules, contact times and pelvic drop, the
obliquity/rotation ranges, and strides around a traffic-light stop.

Measured on the module's main run (seed 25, 100 Hz, 6 min) when these tests were written:
contact time error −19 ms mean, 4.3 ms sd; pelvic drop RMSE 0.37° (0.2–0.3° off turns); obliquity
range RMSE 0.04°, rotation range RMSE 0.12°; side pairing 100 %; slipped belt flagged ~17 s into
steady running.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from truthcheck import rmse, stance_truth, window_mean, window_range

from stackcue.dsp.calibration import Calibration
from stackcue.dsp.drift import DriftDetector
from stackcue.dsp.params import AlertParams, PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import CalibrationError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate

G = 9.81
DPS = np.pi / 180.0


#: the detector's mechanics are checked from the standing neutral: the default (issue 17) measures the tilt from
#: the run's first minutes, which holds back the tilt episodes of these short runs
NEUTRAL = PipelineParams(reference=ReferenceParams(mode="neutral"))


def run_pipeline(
    block: Block, params: PipelineParams | None = None, calibration: Calibration | None = None, strict: bool = True
) -> list[dict]:
    pipe = Pipeline(params or NEUTRAL, calibration, strict_calibration=strict)
    return pipe.feed(block) + pipe.finish()


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def steady(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "stride" and e["steady"]]


def in_turn(info: dict, s: dict, margin: float = 1.0) -> bool:
    return any(s["t_start"] < t1 + margin and s["t_end"] > t0 - margin for t0, t1, _r in info["turns"])


# --------------------------------------------------------------------------- shared simulated runs


@pytest.fixture(scope="module")
def main_run(sim_run):
    # 6 min: a pelvic-drop, a posterior and an anterior tilt episode, a traffic-light stop,
    # a 2.96 s and a 0.73 s gap, two turns
    return sim_run(minutes=6, rate_hz=100, seed=25)


@pytest.fixture(scope="module")
def main_events(main_run):
    return run_pipeline(main_run.block)


# --------------------------------------------------------------------------- hand-made routines


MOUNT = Rotation.from_euler("xyz", [20.0, -110.0, 35.0], degrees=True)  # sensor_from_body
X, Y, Z = np.eye(3)


def synth(parts: list[tuple], rate: float = 100.0, bias_dps=(8.0, -8.0, 8.0), seed: int = 0) -> Block:
    """Still / rotate / still data: gravity-only accelerometer, gyro = the body rate (+ bias, noise).

    Each part is ``("still", seconds)`` or ``("move", seconds, body_axis, knots_deg)``: a rotation
    about a fixed body axis (x forward, y left, z up) through the angles ``knots_deg`` (from 0,
    raised-cosine between equally spaced knots, so the rate is continuous and zero at each knot).
    """
    rng = np.random.default_rng(seed)
    r_wb = Rotation.identity()
    t0 = 0.0
    ts, acc, gyr = [], [], []
    for part in parts:
        dur = part[1]
        n = round(dur * rate)
        u = np.arange(n) / n
        if part[0] == "still":
            axis, theta, dtheta = Y, np.zeros(n), np.zeros(n)
            end = 0.0
        else:
            axis = np.asarray(part[2], float) / np.linalg.norm(part[2])
            k = np.radians(np.asarray(part[3], float))
            m = len(k) - 1
            seg = u * m
            i = np.minimum(seg.astype(int), m - 1)
            v = seg - i
            theta = k[i] + (k[i + 1] - k[i]) * (1 - np.cos(np.pi * v)) / 2
            dtheta = (k[i + 1] - k[i]) * np.pi * np.sin(np.pi * v) / 2 * m / dur
            end = float(k[-1])
        r = r_wb * Rotation.from_rotvec(np.outer(theta, axis))  # intrinsic: body rate = axis·θ'
        ts.append(t0 + u * dur)
        acc.append(MOUNT.apply(r.inv().apply([0.0, 0.0, G])))
        gyr.append(MOUNT.apply(np.outer(dtheta, axis)))
        r_wb = r_wb * Rotation.from_rotvec(axis * end)
        t0 += dur
    t = np.concatenate(ts)
    a = np.concatenate(acc) + rng.normal(0.0, 0.04, (len(t), 3))
    g = np.concatenate(gyr) + np.asarray(bias_dps) * DPS + rng.normal(0.0, 0.06 * DPS, (len(t), 3))
    return Block(t, a, g)


BOW = ("move", 3.0, Y, [0, 35, 0])  # a good hip hinge: 35° forward and back
TWIST = ("move", 3.0, Z, [0, 35, 0])  # turning about the vertical
SMALL = ("move", 3.0, Y, [0, 10, 0])  # rounding the back: the pelvis hardly moves
NO_RETURN = ("move", 3.0, Y, [0, 35, 20])  # bows and stays 20° forward
TWO_AXES = [("move", 2.0, Y, [0, 30, 0]), ("move", 2.0, X, [0, 30, 0])]  # forward, then sideways
SWAY = ("move", 1.0, Y, [0, 2, 0])  # a 2° sway, fast enough that the stillness test sees it
STILL = ("still", 4.0)


def refusals(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "calibration" and e["ok"] is False]


def test_synthetic_routine_calibrates_to_the_mounting():
    ev = run_pipeline(synth([STILL, BOW, STILL]))
    cal = next(e for e in ev if e["type"] == "calibration")
    assert cal["ok"] and not refusals(ev)
    w, x, y, z = cal["segments"]["pelvis"]["q_body_from_sensor_wxyz"]
    err = np.degrees((Rotation.from_quat([x, y, z, w]) * MOUNT).magnitude())
    assert err < 1.0, f"mounting off by {err:.2f}°"
    assert abs(cal["segments"]["pelvis"]["hinge_deg"] - 35.0) < 1.0
    np.testing.assert_allclose(cal["segments"]["pelvis"]["gyro_bias_rad_s"], np.array([8, -8, 8]) * DPS, atol=0.1 * DPS)


@pytest.mark.parametrize(
    ("motion", "reason"),
    [
        ([TWIST], "twist, not a hinge"),
        ([NO_RETURN], "did not come back upright"),
        (TWO_AXES, "not about one axis"),
        ([SMALL], "hinge too small"),
    ],
    ids=["twist", "no-return", "two-axes", "too-small"],
)
def test_bad_hinge_is_refused_with_its_reason(motion, reason):
    block = synth([STILL, *motion, STILL])
    pipe = Pipeline(strict_calibration=True)
    events = pipe.feed(block)
    ref = refusals(events)
    assert len(ref) == 1, events
    assert reason in ref[0]["reason"]
    assert not [e for e in events if e["type"] == "calibration" and e["ok"]]
    # offline, the recording is refused with the same reason (a clear message, not a traceback)
    with pytest.raises(CalibrationError, match=reason):
        pipe.finish()


def test_sway_between_stillnesses_is_ignored():
    ev = run_pipeline(synth([STILL, SWAY, STILL, SWAY, STILL, BOW, STILL]))
    cals = of_type(ev, "calibration")
    assert len(cals) == 1 and cals[0]["ok"], cals


def test_live_retry_after_refusals():
    """Refused attempts come out as events and the runner's later good routine is accepted in the same stream."""
    block = synth([STILL, TWIST, STILL, SMALL, STILL, SWAY, STILL, *TWO_AXES, STILL, BOW, ("still", 3.0)])
    pipe = Pipeline(strict_calibration=False)
    events = []
    for i in range(0, len(block), 37):  # live: small blocks
        events += pipe.feed(block.slice(i, i + 37))
    events += pipe.finish()
    cals = of_type(events, "calibration")
    assert [c["ok"] for c in cals] == [False, False, False, True]
    for c, why in zip(cals, ["twist", "hinge too small", "not about one axis"], strict=False):
        assert why in c["reason"]
    t = [c["t"] for c in cals]
    assert t == sorted(t)
    assert t[-1] > 34.0  # the accepted one is the last routine (its bow ends at 34 s), not an earlier attempt


def test_constant_gyro_offset_with_sway_still_calibrates():
    """Stillness is judged by spread: 8 °/s more offset on every axis (with the simulator's sway) changes nothing."""
    run = simulate(SimParams(minutes=0.5, rate_hz=100, seed=41))
    offset = np.full(3, 8.0 * DPS)
    b = run.block
    ev = run_pipeline(Block(b.t, b.acc, b.gyr + offset), strict=False)
    cal = of_type(ev, "calibration")
    assert cal and cal[0]["ok"], cal
    seg = cal[0]["segments"]["pelvis"]
    truth_bias = np.asarray(run.info["gyro_bias_rad_s"]["pelvis"]) + offset
    err = np.abs(np.asarray(seg["gyro_bias_rad_s"]) - truth_bias) / DPS
    assert err.max() < 0.2, f"gyro bias off by {err.max():.3f} °/s"
    assert abs(seg["hinge_deg"] - run.info["hinge_deg"]["pelvis"]) < 2.0


# --------------------------------------------------------------------------- reference modes


def test_first_minutes_reference(main_run):
    params = PipelineParams(reference=ReferenceParams(mode="first_minutes", first_minutes=1.0))
    events = run_pipeline(main_run.block, params)
    refs = of_type(events, "reference")
    assert [r["set"] for r in refs] == ["start", "first_minutes"]  # what each metric is from, then the baseline
    assert all(m == {"from": "first_minutes", "value": None} for m in refs[0]["metrics"].values())
    ref = refs[1]
    before = [s for s in steady(events) if s["t_end"] <= ref["t"]]
    span = sum(s["t_end"] - s["t_start"] for s in before)
    assert 60.0 <= span < 62.0  # one minute of steady running, then the reference
    truth_med = float(
        np.median(
            [
                window_mean(main_run.truth["t"], main_run.truth["pelvic_tilt_deg"], s["t_start"], s["t_end"])
                for s in before
            ]
        )
    )
    assert abs(ref["pelvic_tilt_deg"] - truth_med) < 1.0, (ref, truth_med)
    # no alert of a metric measured from the baseline until it exists (a pelvic drop has no reference)
    assert not [e for e in events if e["type"] == "alert" and e["t"] <= ref["t"] and e["kind"] != "pelvic_drop"]
    assert ref["metrics"]["pelvic_tilt_deg"] == {"from": "first_minutes", "value": ref["pelvic_tilt_deg"]}
    alerts = of_type(events, "alert")
    assert {a["kind"] for a in alerts} >= {"pelvic_drop", "posterior_tilt", "anterior_tilt"}
    for a in alerts:
        if a["kind"] == "anterior_tilt":
            assert a["threshold_deg"] == pytest.approx(ref["pelvic_tilt_deg"] + 6.0, abs=0.011)
        if a["kind"] == "posterior_tilt":
            assert a["threshold_deg"] == pytest.approx(ref["pelvic_tilt_deg"] - 6.0, abs=0.011)


def test_targets_reference_shifts_thresholds(main_run):
    params = PipelineParams(reference=ReferenceParams(mode="targets", pelvic_tilt_deg=4.0))
    pipe = Pipeline(params)
    assert pipe.drift.threshold("anterior_tilt") == pytest.approx(10.0)
    assert pipe.drift.threshold("posterior_tilt") == pytest.approx(-2.0)
    assert pipe.drift.threshold("pelvic_drop") == pytest.approx(9.0)  # a drop is not relative to a tilt target
    events = pipe.feed(main_run.block) + pipe.finish()
    (ref,) = of_type(events, "reference")  # said once, at the calibration: no baseline to wait for
    assert ref["set"] == "start" and ref["metrics"]["pelvic_tilt_deg"] == {"from": "targets", "value": 4.0}
    by_kind = {a["kind"]: a for a in of_type(events, "alert")}
    assert by_kind["posterior_tilt"]["threshold_deg"] == -2.0
    assert by_kind["anterior_tilt"]["threshold_deg"] == 10.0


# --------------------------------------------------------------------------- slipped belt


def slipped(cal: Calibration, deg: float) -> Calibration:
    """The sensor turned on the belt: body_from_sensor followed by a turn of ``deg`` about the body's z."""
    r = Rotation.from_euler("z", deg, degrees=True) * Rotation.from_matrix(cal.pelvis.body_from_sensor)
    x, y, z, w = r.as_quat()
    return replace(cal, pelvis=replace(cal.pelvis, q_body_from_sensor_wxyz=(w, x, y, z)))


def test_slipped_belt_is_reported(main_run, main_events):
    saved = Calibration.from_event(of_type(main_events, "calibration")[0])
    t_steady = main_run.info["phases"]["steady_running"][0][0]
    assert not of_type(main_events, "calibration_suspect")
    ok = run_pipeline(main_run.block, calibration=saved)
    assert of_type(ok, "calibration")[0]["source"] == "saved"
    assert not of_type(ok, "calibration_suspect")
    assert np.median([s["forward_axis_error_deg"] for s in steady(ok)]) < 10.0
    bad = run_pipeline(main_run.block, calibration=slipped(saved, 60.0))
    sus = of_type(bad, "calibration_suspect")
    assert len(sus) == 1  # reported once, not every stride
    latency = sus[0]["t"] - t_steady
    print(
        f"slipped belt flagged {latency:.1f} s into steady running, forward axis off "
        f"{sus[0]['forward_axis_error_deg']}°"
    )
    assert latency < 30.0
    assert 45.0 < sus[0]["forward_axis_error_deg"] < 75.0
    assert "belt" in sus[0]["reason"]


# --------------------------------------------------------------------------- gaps


def test_gaps_are_reported_and_no_stride_spans_one(main_run, main_events):
    gaps = of_type(main_events, "gap")
    want = main_run.info["gaps"]
    assert any(g["t_end"] - g["t_start"] > 2.0 for g in want)
    assert len(gaps) == len(want)  # isolated dropped samples are not gaps
    for g, w in zip(gaps, want, strict=True):
        assert g["t_start"] == pytest.approx(w["t_start"], abs=1e-3)
        assert g["t_end"] == pytest.approx(w["t_end"], abs=1e-3)
    for s in of_type(main_events, "stride"):
        for g in gaps:
            assert s["t_end"] <= g["t_start"] or s["t_start"] >= g["t_end"], (s, g)


def test_long_gap_restarts_drift_confirmation(main_run, main_events):
    """Cut 3 s out just after the 2nd stride that confirms a drift: the alert needs 3 fresh strides."""
    alert = next(a for a in of_type(main_events, "alert") if a["kind"] == "posterior_tilt")
    confirming = [s for s in steady(main_events) if s["t_end"] <= alert["t"]][-3:]
    assert all(s["pelvic_tilt_deg"] < alert["threshold_deg"] for s in confirming)
    t_cut = confirming[1]["t_end"] + 0.02
    b = main_run.block
    keep = (b.t < t_cut) | (b.t > t_cut + 3.0)
    events = run_pipeline(Block(b.t[keep], b.acc[keep], b.gyr[keep]))
    gap = next(g for g in of_type(events, "gap") if g["t_start"] < t_cut < g["t_end"])
    late = next(a for a in of_type(events, "alert") if a["kind"] == "posterior_tilt")
    assert late["t"] > gap["t_end"]
    after = [s for s in steady(events) if s["t_start"] >= gap["t_end"] and s["t_end"] <= late["t"]]
    assert len(after) >= 3
    assert all(s["pelvic_tilt_deg"] < late["threshold_deg"] for s in after[-3:])


# --------------------------------------------------------------------------- drift detector rules


def feed(
    det: DriftDetector, values, t0: float = 0.0, dt: float = 0.7, steady_: bool = True, field: str = "pelvic_tilt_deg"
) -> tuple[list[dict], float]:
    out, t = [], t0
    for v in values:
        t += dt
        out += det.update({"steady": steady_, field: v}, t, t + 2.0)
    return out, t


def tilt_detector(**kw) -> DriftDetector:
    return DriftDetector(AlertParams(**{"enabled": ("anterior_tilt", "posterior_tilt"), **kw}))


def test_confirmation_restart():
    det = tilt_detector()
    ev, t = feed(det, [8, 8])
    det.restart_confirmation()
    ev2, t = feed(det, [8, 8], t)
    assert ev == ev2 == []
    ev3, _ = feed(det, [8], t)
    assert [e["kind"] for e in ev3] == ["anterior_tilt"]  # 3 in a row since the restart


def test_three_in_a_row_confirm_and_an_inside_stride_resets():
    det = tilt_detector()
    assert feed(det, [8, 8, 5, 8, 8])[0] == []
    det = tilt_detector()
    ev, _ = feed(det, [8, 8, 8])
    assert len(ev) == 1 and ev[0]["threshold_deg"] == 6.0 and ev[0]["reminder"] is False


def test_hysteresis():
    det = tilt_detector(quiet_s=0.0, remind_every_s=0.0)
    ev, t = feed(det, [8, 8, 8])
    assert len(ev) == 1
    # inside the threshold but not past threshold − hysteresis (4.5°): no clear however long
    ev, t = feed(det, [5.0] * 20, t)
    assert ev == []
    ev, t = feed(det, [4.4, 4.4, 5.0, 4.4, 4.4], t)  # an interrupted run of clear strides
    assert ev == []
    ev, t = feed(det, [4.4], t)
    assert [e["type"] for e in ev] == ["clear"]


def test_quiet_time_after_a_clear():
    det = tilt_detector(quiet_s=30.0, remind_every_s=0.0)
    ev, t = feed(det, [8, 8, 8, 3, 3, 3], dt=1.0)  # alert at 3 s, clear at 6 s
    assert [e["type"] for e in ev] == ["alert", "clear"]
    ev, t = feed(det, [8, 8, 8, 3, 3, 3], t, dt=1.0)  # confirmed again at 9 s: within 30 s of the alert
    assert ev == []  # not cued, and so no clear owed either
    ev, t = feed(det, [3] * 30, t, dt=1.0)
    ev, t = feed(det, [8, 8, 8], t, dt=1.0)  # 45 s after the first alert
    assert [e["type"] for e in ev] == ["alert"]


def test_drift_reconfirmed_in_quiet_time_is_cued_when_it_outlasts_it():
    """Silence must mean posture fine: a drift back within the quiet time and still there after it is cued."""
    det = tilt_detector(quiet_s=30.0, remind_every_s=120.0)
    ev, t = feed(det, [8, 8, 8, 3, 3, 3], dt=1.0)  # alert at 3 s, clear at 6 s
    ev, t = feed(det, [8] * 20, t, dt=1.0)  # back at 9 s (quiet), 26 s at the end
    assert ev == []
    ev, t = feed(det, [8] * 10, t, dt=1.0)  # quiet time from the alert at 3 s ends at 33 s
    assert [(e["type"], e["t"], e["reminder"]) for e in ev] == [("alert", 33.0, False)]
    ev, t = feed(det, [3, 3, 3], t, dt=1.0)
    assert [e["type"] for e in ev] == ["clear"]


def test_reminders():
    det = tilt_detector(remind_every_s=120.0)
    ev, t = feed(det, [8, 8, 8], dt=1.0)
    assert len(ev) == 1
    ev, t = feed(det, [8] * 118, t, dt=1.0)  # up to 121 s: 118 s after the alert
    assert ev == []
    ev, t = feed(det, [8, 8, 8], t, dt=1.0)
    assert [(e["type"], e["reminder"], e["t"]) for e in ev] == [("alert", True, 123.0)]
    assert ev[0]["id"] == 2
    det = tilt_detector(remind_every_s=0.0)
    ev, _ = feed(det, [8] * 400, dt=1.0)
    assert len(ev) == 1


def test_unsteady_strides_neither_confirm_nor_reset():
    det = tilt_detector()
    ev, t = feed(det, [8, 8])
    ev2, t = feed(det, [8, 8, 8, 0, 0, 0], t, steady_=False)
    ev3, t = feed(det, [8], t)
    assert ev == ev2 == [] and [e["type"] for e in ev3] == ["alert"]
    ev, t = feed(det, [0, 0, 0, 0], t, steady_=False)
    ev2, t = feed(det, [0, 0], t)
    assert ev == ev2 == []  # two steady inside strides only: still active
    ev, t = feed(det, [0], t)
    assert [e["type"] for e in ev] == ["clear"]


def test_posterior_thresholds_are_negative():
    det = DriftDetector(AlertParams())
    assert det.threshold("posterior_tilt") == -6.0
    assert det.threshold("ribs_behind_pelvis") == -8.0
    assert det.threshold("anterior_tilt") == 6.0
    ev, _ = feed(det, [-7, -7, -7])
    assert [(e["kind"], e["threshold_deg"]) for e in ev] == [("posterior_tilt", -6.0)]
    ev, _ = feed(DriftDetector(AlertParams()), [-5.9] * 5 + [7] * 3)
    assert [e["kind"] for e in ev] == ["anterior_tilt"]
    ev, _ = feed(DriftDetector(AlertParams()), [-9] * 3, field="stack_deg")
    assert [(e["kind"], e["threshold_deg"]) for e in ev] == [("ribs_behind_pelvis", -8.0)]


# --------------------------------------------------------------------------- contact times, drop, sides


@pytest.fixture(scope="module")
def stance_pairs(main_run, main_events):
    rows = []
    for s in steady(main_events):
        tr = stance_truth(main_run.truth, main_run.info, s)
        if tr is not None:
            rows.append((s, tr))
    return rows


def test_contact_times(stance_pairs):
    errs = np.array(
        [
            [s["contact_time_left_s"] - tr["L"][0], s["contact_time_right_s"] - tr["R"][0]]
            for s, tr in stance_pairs
            if s["contact_time_left_s"] is not None
        ]
    ).ravel()
    mean, sd = float(errs.mean()), float(errs.std())
    print(f"contact time error: mean {mean * 1000:.1f} ms, sd {sd * 1000:.1f} ms, n {len(errs)}")
    # The pipeline times stance as |f| > 0.5 g: the stance force rises from and falls to ~0 g, so the
    # threshold is crossed after the strike and before toe-off: a systematic shortening (measured
    # −15 to −20 ms at 50–500 Hz). The scatter is mostly the quantisation of the two crossings to
    # samples, T/√6 ≈ 4 ms at 100 Hz (measured 4.3 ms). Tolerances: the offset with 50 % margin,
    # the scatter at twice the quantisation limit.
    assert -30e-3 < mean < 0.0
    assert sd < 8e-3


def test_pelvic_drop_against_stance_truth(main_run, stance_pairs):
    d_all, d_straight = [], []
    for s, tr in stance_pairs:
        if s["pelvic_drop_left_deg"] is None:
            continue
        e = [s["pelvic_drop_left_deg"] - tr["L"][1], s["pelvic_drop_right_deg"] - tr["R"][1]]
        d_all += e
        if not in_turn(main_run.info, s):
            d_straight += e
    r_all, r_straight = rmse(d_all, [0] * len(d_all)), rmse(d_straight, [0] * len(d_straight))
    print(f"pelvic drop RMSE {r_all:.2f}° (off turns {r_straight:.2f}°), n {len(d_all)}")
    assert r_all <= 1.5
    # turns tilt the stride-mean specific force sideways by v²/(R·g) (~2.5° here), which the
    # stride-synchronous obliquity cannot tell from a real one (docs/accuracy.md); off turns it is tight
    assert r_straight <= 1.0


def test_side_assignment(main_run, main_events, stance_pairs):
    st = steady(main_events)
    with_side = [s for s in st if s["pelvic_drop_left_deg"] is not None]
    assert len(with_side) >= 0.95 * len(st)
    # the sides are visible in the output through which drop went where: judged on straight running
    # where the true left and right drops differ by ≥ 1° (the drop error is ~0.3° there)
    votes = []
    for s, tr in stance_pairs:
        if s["pelvic_drop_left_deg"] is None or in_turn(main_run.info, s):
            continue
        (_, dl), (_, dr) = tr["L"], tr["R"]
        if abs(dl - dr) < 1.0:
            continue
        el, er = s["pelvic_drop_left_deg"], s["pelvic_drop_right_deg"]
        votes.append(abs(el - dl) + abs(er - dr) < abs(el - dr) + abs(er - dl))
    print(f"side agreement {np.mean(votes):.3f} over {len(votes)} strides; side data on {len(with_side)}/{len(st)}")
    assert len(votes) > 100  # the pelvic-drop episode makes the sides plain
    assert np.mean(votes) >= 0.95


def test_obliquity_and_rotation_ranges(main_run, main_events):
    t = main_run.truth["t"]
    obl, rot = [], []
    for s in steady(main_events):
        a, b = s["t_start"], s["t_end"]
        obl.append((s["pelvic_obliquity_range_deg"], window_range(t, main_run.truth["pelvic_obliquity_deg"], a, b)))
        # the pipeline removes a linear trend of heading over the stride: so does the truth here
        rot.append(
            (s["pelvic_rotation_range_deg"], window_range(t, main_run.truth["pelvic_rotation_deg"], a, b, detrend=True))
        )
    r_obl, r_rot = rmse(*zip(*obl, strict=True)), rmse(*zip(*rot, strict=True))
    print(f"obliquity range RMSE {r_obl:.3f}°, rotation range RMSE {r_rot:.3f}°, n {len(obl)}")
    assert r_obl <= 1.0
    assert r_rot <= 1.0


# --------------------------------------------------------------------------- stop and restart


def test_traffic_light_stop(main_run, main_events):
    # the simulator's stop from its start ts (firmware_bridge.emulated.simulator._Runner._build_knots):
    # running decelerates over [ts, ts+3], walks, stands over [ts+8, ts+22], walks, and
    # accelerates from ts+25 back to full speed at ts+29
    ts = main_run.info["stop"][0]
    decel_end, restart = ts + 3.0, ts + 25.0
    strides = of_type(main_events, "stride")
    assert any(s["t_end"] < ts for s in strides) and any(s["t_start"] > ts + 29 for s in strides)
    for s in strides:
        assert s["t_end"] <= ts + 8.0 or s["t_start"] >= ts + 22.0, f"stride {s} while standing"
        # walking (~110 steps/min) is not running either
        assert s["t_end"] <= decel_end or s["t_start"] >= restart, f"stride {s} while walking"
        if decel_end - 2.0 < s["t_end"] <= decel_end or restart <= s["t_start"] < restart + 5.0:
            assert not s["steady"], f"stride {s} near the stop marked steady"
        # nor may a steady stride overlap the speed change, beyond its first 0.1 s (the speed then down by
        # under 0.1 m/s: the stride's mean acceleration is what [steady] max_accel_m_s2 measures, and it is
        # far below it; with the 1 s before_stop_s wait that measure decides the strides of the ramp)
        if s["t_end"] > ts + 0.1 and s["t_start"] < ts + 29.0:
            assert not s["steady"], f"stride {s} during the stop marked steady"
    # and running settles down again: steady strides are back within 10 s of full speed
    assert any(s["steady"] and s["t_start"] < ts + 39.0 for s in strides if s["t_start"] > ts)
