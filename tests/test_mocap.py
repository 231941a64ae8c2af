"""The marker-to-IMU converter (firmware_bridge/emulated/mocap.py) on markers whose motion is known exactly.

Markers sit on rigid bodies (a pelvis and a thorax) moved by the simulator's own kinematics
(R = Rz(yaw)·Ry(pitch)·Rx(roll), body rates from ``_euler_rates_to_body``) with smooth, running-like
oscillations and a speed change; sampled at 150 Hz like the RBDS trials. With an ideal sensor and the
identity mounting, the virtual IMU must read the analytic specific force and angular rate.

Tolerances: specific force RMS error ≤ 0.05 m/s² (peak ≤ 0.15), angular rate RMS ≤ 0.3 °/s
(peak ≤ 1 °/s), tilt and lean truth within 0.05°. They leave room for the 12 Hz zero-phase low-pass
(gain 0.99999 at the 2.8 Hz step rate, but it does round off the motion's blend-in) and the cubic
splines, away from the ends where the filter's edge transients sit.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stackcue.errors import SourceError
from stackcue.firmware_bridge.emulated.mocap import MocapParams, Trial, convert, main, read_markers
from stackcue.firmware_bridge.emulated.simulator import G, _euler_rates_to_body, load_truth

RATE = 150.0
# Marker offsets in each body's frame (x fwd, y left, z up), metres, from the sensor site.
PELVIS_MARKERS = {
    "R.ASIS": [0.17, -0.12, 0.02],
    "L.ASIS": [0.17, 0.12, 0.02],
    "R.PSIS": [0.0, -0.045, 0.0],
    "L.PSIS": [0.0, 0.045, 0.0],
    "R.Iliac.Crest": [0.08, -0.15, 0.07],
}
TRUNK_MARKERS = {"CLAV": [0.0, 0.0, 0.0], "C7": [-0.14, 0.0, 0.08], "T10": [-0.12, 0.0, -0.2]}


def _motion(t: np.ndarray, seg: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) rad, their rates, site position and acceleration (world), exactly."""
    w = 2 * np.pi * 1.4  # stride rate; steps at 2.8 Hz
    k = 1.0 if seg == "pelvis" else 0.6
    pitch0 = 0.0 if seg == "pelvis" else 0.05
    ang = np.stack(
        [
            0.08 * k * np.sin(w * t),
            pitch0 + 0.05 * k * np.sin(2 * w * t + 0.3) + 0.02 * np.sin(0.5 * t),
            0.06 * k * np.sin(w * t + 1.0),
        ],
        axis=1,
    )
    rates = np.stack(
        [
            0.08 * k * w * np.cos(w * t),
            0.05 * k * 2 * w * np.cos(2 * w * t + 0.3) + 0.01 * np.cos(0.5 * t),
            0.06 * k * w * np.cos(w * t + 1.0),
        ],
        axis=1,
    )
    z0 = 1.0 if seg == "pelvis" else 1.4
    # Forward: a speed that changes from stride to stride (0.3 m/s² peaks) about a treadmill spot.
    pos = np.stack(
        [0.03 * np.sin(0.9 * t) + 0.01 * np.sin(2 * w * t), 0.02 * np.sin(w * t), z0 + 0.04 * np.cos(2 * w * t)], axis=1
    )
    acc = np.stack(
        [
            -0.03 * 0.81 * np.sin(0.9 * t) - 0.01 * (2 * w) ** 2 * np.sin(2 * w * t),
            -0.02 * w**2 * np.sin(w * t),
            -0.04 * (2 * w) ** 2 * np.cos(2 * w * t),
        ],
        axis=1,
    )
    return ang, rates, pos, acc


def _trial(t: np.ndarray, still: bool) -> Trial:
    markers = {}
    for seg, offsets in (("pelvis", PELVIS_MARKERS), ("trunk", TRUNK_MARKERS)):
        ang, _, pos, _ = _motion(np.zeros_like(t) if still else t, seg)
        if still:  # standing: level but for the trunk's own lean
            ang = np.zeros_like(ang)
            ang[:, 1] = 0.0 if seg == "pelvis" else 0.05
        r = Rotation.from_euler("ZYX", ang)
        for name, off in offsets.items():
            markers[name] = pos + r.apply(off)
    return Trial(t=t, markers=markers, source="synthetic")


@pytest.fixture(scope="module")
def converted():
    static = _trial(np.arange(int(10 * RATE)) / RATE, still=True)
    run = _trial(np.arange(int(20 * RATE)) / RATE, still=False)
    sim = convert(run, static, MocapParams(rate_hz=200.0, sensor_errors=False, identity_mounting=True))
    return sim


def _window(sim):
    t = sim.truth["t"]
    t_run = sim.info["phases"]["running"][0]
    keep = (t > t_run + 1.0) & (t < t[-1] - 1.0)  # after the blend-in, away from the filter's ends
    return t, keep, t - sim.info["phases"]["blend"][0]


@pytest.mark.parametrize("seg", ["pelvis", "trunk"])
def test_known_motion_gives_known_acceleration_and_rate(converted, seg):
    sim = converted
    t, keep, t_run = _window(sim)
    ang, rates, _, acc_w = _motion(t_run[keep], seg)
    r_wb = Rotation.from_euler("ZYX", ang)
    f_true = r_wb.inv().apply(acc_w + np.array([0.0, 0.0, G]))
    w_true = _euler_rates_to_body(ang[:, 0], ang[:, 1], ang[:, 2], rates)
    if seg == "pelvis":
        acc, gyr = sim.block.acc[keep], sim.block.gyr[keep]
    else:
        acc, gyr = sim.block.trunk_acc[keep], sim.block.trunk_gyr[keep]
    # The body frame is the segment's at the neutral made level: the still trunk leans 0.05 rad, so
    # its body frame is the segment frame turned by that lean.
    if seg == "trunk":
        lean = Rotation.from_euler("y", 0.05)
        f_true, w_true = lean.apply(f_true), lean.apply(w_true)
    da, dg = acc - f_true, np.degrees(gyr - w_true)
    assert np.sqrt(np.mean(da**2)) <= 0.05 and np.abs(da).max() <= 0.15, (np.sqrt(np.mean(da**2)), np.abs(da).max())
    assert np.sqrt(np.mean(dg**2)) <= 0.3 and np.abs(dg).max() <= 1.0, (np.sqrt(np.mean(dg**2)), np.abs(dg).max())


def test_truth_angles_follow_the_known_motion(converted):
    sim = converted
    t, keep, t_run = _window(sim)
    for seg, key, base in (("pelvis", "pelvic_tilt_deg", 0.0), ("trunk", "trunk_lean_deg", 0.05)):
        ang, _, _, _ = _motion(t_run[keep], seg)
        # the body frame: the segment's turned so that it is level at the neutral
        x_b = (Rotation.from_euler("ZYX", ang) * Rotation.from_euler("y", -base)).apply([1.0, 0.0, 0.0])
        expected = np.degrees(np.arcsin(-x_b[:, 2]))
        assert np.abs(sim.truth[key][keep] - expected).max() <= 0.05
    np.testing.assert_allclose(sim.truth["stack_deg"], sim.truth["trunk_lean_deg"] - sim.truth["pelvic_tilt_deg"])


def test_routine_hinge_and_stride_truth(converted):
    sim = converted
    t = sim.truth["t"]
    h0, h1 = sim.info["phases"]["hinge"]
    mid = np.searchsorted(t, (h0 + h1) / 2)
    assert sim.truth["pelvic_tilt_deg"][mid] == pytest.approx(35.0, abs=0.3)  # front down: anterior, positive
    assert sim.truth["trunk_lean_deg"][mid] == pytest.approx(42.0, abs=0.3)
    still = t < h0 - 0.5
    assert np.abs(sim.truth["pelvic_tilt_deg"][still]).max() < 0.05
    strides = sim.info["true_strides"]
    assert len(strides) >= 20
    dur = np.array([s["t_end"] - s["t_start"] for s in strides])
    np.testing.assert_allclose(dur, 1 / 1.4, atol=0.02)
    # Stride-mean forward acceleration = velocity change / duration of the known 0.9 rad/s sway.
    for s in strides[2:-2]:
        a, b = s["t_start"] - sim.info["phases"]["blend"][0], s["t_end"] - sim.info["phases"]["blend"][0]
        dv = 0.03 * 0.9 * (np.cos(0.9 * b) - np.cos(0.9 * a)) + 0.01 * 2 * 2 * np.pi * 1.4 * (
            np.cos(2 * 2 * np.pi * 1.4 * b) - np.cos(2 * 2 * np.pi * 1.4 * a)
        )
        assert s["pelvis_fwd_acc_m_s2"] == pytest.approx(dv / (b - a), abs=0.005)


def test_random_mounting_and_errors_are_the_simulators(converted):
    static = _trial(np.arange(int(10 * RATE)) / RATE, still=True)
    run = _trial(np.arange(int(12 * RATE)) / RATE, still=False)
    a = convert(run, static, MocapParams(rate_hz=100.0, seed=3))
    b = convert(run, static, MocapParams(rate_hz=100.0, seed=3))
    c = convert(run, static, MocapParams(rate_hz=100.0, seed=4))
    np.testing.assert_array_equal(a.block.acc, b.block.acc)
    assert a.info["mounting"] != c.info["mounting"]
    q = np.array(a.info["mounting"]["pelvis"]["q_body_from_sensor_wxyz"])
    body = Rotation.from_quat(np.roll(q, -1)).apply(a.block.acc[:200].mean(axis=0))
    assert body[2] == pytest.approx(G, abs=0.6)  # standing: gravity on the body's z, through mounting and errors
    assert abs(len(a.block.t) / (a.block.t[-1]) - 100.0) < 2.0  # the chip's rate error is within 1.5 %


def test_gaps_in_markers_are_bridged_by_the_rigid_fit():
    static = _trial(np.arange(int(10 * RATE)) / RATE, still=True)
    run = _trial(np.arange(int(12 * RATE)) / RATE, still=False)
    full = convert(run, static, MocapParams(rate_hz=100.0, sensor_errors=False, identity_mounting=True))
    run.markers["R.ASIS"][300:330] = np.nan  # 0.2 s without one marker; three others remain
    gappy = convert(run, static, MocapParams(rate_hz=100.0, sensor_errors=False, identity_mounting=True))
    np.testing.assert_allclose(gappy.block.acc, full.block.acc, atol=1e-6)
    for name in ("L.ASIS", "R.PSIS", "L.PSIS"):
        run.markers[name][300:301] = np.nan
    with pytest.raises(SourceError, match="fewer than 3"):
        convert(run, static, MocapParams(rate_hz=100.0))


def test_read_markers_and_the_tool(tmp_path):
    src = tmp_path / "run.txt"
    src.write_text(
        "# note\nTime\tR.ASISX\tR.ASISY\tR.ASISZ\n0.0\t1000\t900\t100\n0.01\t1001\t\t100\n0.02\t1002\t901\t101\n"
    )
    trial = read_markers(src)
    np.testing.assert_allclose(trial.markers["R.ASIS"][0], [1.0, -0.1, 0.9])  # lab X,Y,Z -> x, -z, y; mm -> m
    assert np.isnan(trial.markers["R.ASIS"][1, 2])
    np.testing.assert_allclose(np.diff(trial.t), 0.01)
    bad = tmp_path / "bad.txt"
    bad.write_text("# a comment\nTime\tAX\tAY\tAZ\n0\t1\t2\t3\n0.1\t1\tx\t3\n0.2\t1\t2\t3\n")
    with pytest.raises(SourceError, match=r"bad.txt:4: not a number in column 'AY'"):
        read_markers(bad)
    # The tool: one line on a bad file, exit 2, nothing written.
    out = tmp_path / "rec.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "stackcue.firmware_bridge.emulated.mocap", str(bad), str(bad), str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not out.exists()


def test_tool_writes_a_recording_analyze_reads(tmp_path, capsys):
    from stackcue.firmware_bridge.csv_format import read_recording

    def write(path, trial):
        names = list(trial.markers)
        cols = ["Time"] + [n + a for n in names for a in "XYZ"]
        lab = {n: np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1) * 1000.0 for n, v in trial.markers.items()}
        rows = np.column_stack([trial.t] + [lab[n] for n in names])
        path.write_text("\t".join(cols) + "\n" + "\n".join("\t".join(f"{x:.3f}" for x in r) for r in rows) + "\n")

    write(tmp_path / "static.txt", _trial(np.arange(int(10 * RATE)) / RATE, still=True))
    write(tmp_path / "run.txt", _trial(np.arange(int(12 * RATE)) / RATE, still=False))
    out = tmp_path / "rec.csv"
    assert main([str(tmp_path / "run.txt"), str(tmp_path / "static.txt"), str(out), "--rate", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    block, meta, problems = read_recording(out)
    assert not problems and block.has_trunk and meta["rate"] == "50"
    truth, info = load_truth(out)
    assert report["true_strides"] == len(info["true_strides"]) > 5
    assert {"pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"} <= set(truth)


# Hamner et al. 2010's marker set (OpenSim's running example): a sacral marker instead of the PSIS, and a
# sternum with both acromia instead of C7 and a lower back marker.
SACR_PELVIS = {"R.ASIS": [0.17, -0.12, 0.02], "L.ASIS": [0.17, 0.12, 0.02], "SACR": [0.0, 0.0, 0.0]}
SHOULDER_TRUNK = {"STRN": [0.0, 0.0, 0.0], "RSHO": [-0.06, -0.18, 0.06], "LSHO": [-0.06, 0.18, 0.06]}


def _trial_with(t: np.ndarray, still: bool, sets: tuple[dict, dict]) -> Trial:
    markers = {}
    for seg, offsets in zip(("pelvis", "trunk"), sets, strict=True):
        ang, _, pos, _ = _motion(np.zeros_like(t) if still else t, seg)
        if still:
            ang = np.zeros_like(ang)
            ang[:, 1] = 0.0 if seg == "pelvis" else 0.05
        r = Rotation.from_euler("ZYX", ang)
        for name, off in offsets.items():
            markers[name] = pos + r.apply(off)
    return Trial(t=t, markers=markers, source="synthetic")


def test_sacral_marker_and_acromia_give_the_same_virtual_imu_and_a_short_standing_trial_is_held():
    """SACR replaces the mid-PSIS as the pelvis site; STRN + RSHO + LSHO make the thorax frame. The standing
    trial lasts 5 s (Hamner's): held at its last frame up to the routine's 9 s with ``hold_static``."""
    sets = (SACR_PELVIS, SHOULDER_TRUNK)
    static = _trial_with(np.arange(int(5 * RATE)) / RATE, True, sets)
    run = _trial_with(np.arange(int(20 * RATE)) / RATE, False, sets)
    with pytest.raises(SourceError, match=r"lasts 5.0 s.*hold_static"):
        convert(run, static, MocapParams(rate_hz=200.0, sensor_errors=False, identity_mounting=True))
    sim = convert(
        run, static, MocapParams(rate_hz=200.0, sensor_errors=False, identity_mounting=True, hold_static=True)
    )
    assert sim.info["segments"] == ["pelvis", "trunk"]
    t, keep, t_run = _window(sim)
    for seg, acc, gyr, key in (
        ("pelvis", sim.block.acc, sim.block.gyr, "pelvic_tilt_deg"),
        ("trunk", sim.block.trunk_acc, sim.block.trunk_gyr, "trunk_lean_deg"),
    ):
        ang, rates, _, acc_w = _motion(t_run[keep], seg)
        r_wb = Rotation.from_euler("ZYX", ang)
        f_true = r_wb.inv().apply(acc_w + np.array([0.0, 0.0, G]))
        w_true = _euler_rates_to_body(ang[:, 0], ang[:, 1], ang[:, 2], rates)
        base = 0.05 if seg == "trunk" else 0.0
        lean = Rotation.from_euler("y", base)
        f_true, w_true = lean.apply(f_true), lean.apply(w_true)
        da, dg = acc[keep] - f_true, np.degrees(gyr[keep] - w_true)
        assert np.sqrt(np.mean(da**2)) <= 0.05 and np.abs(da).max() <= 0.15, (seg, np.abs(da).max())
        assert np.sqrt(np.mean(dg**2)) <= 0.3 and np.abs(dg).max() <= 1.0, (seg, np.abs(dg).max())
        x_b = (r_wb * Rotation.from_euler("y", -base)).apply([1.0, 0.0, 0.0])
        assert np.abs(sim.truth[key][keep] - np.degrees(np.arcsin(-x_b[:, 2]))).max() <= 0.05
    h0, h1 = sim.info["phases"]["hinge"]
    assert sim.truth["trunk_lean_deg"][np.searchsorted(t, (h0 + h1) / 2)] == pytest.approx(42.0, abs=0.3)


def test_trc_files_are_read_with_their_rate_units_and_aliases(tmp_path):
    names = ["R.ASIS", "V.Sacral", "Sternum", "R.Acromium"]
    head = [
        "PathFileType\t4\t(X/Y/Z)\trun.trc",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        "60\t60\t3\t4\tmm\t60\t1\t3",
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
        "\t\t" + "\t".join(f"{a}{i + 1}" for i in range(4) for a in "XYZ"),
        "",
    ]
    rows = [
        f"{k + 1}\t{k / 60:.6f}\t" + "\t".join(f"{1000 + k}\t{900 + j}\t{100 * j}" for j in range(4)) for k in range(3)
    ]
    src = tmp_path / "run.trc"
    src.write_text("\n".join(head + rows) + "\n")
    trial = read_markers(src)
    assert set(trial.markers) == {"R.ASIS", "SACR", "STRN", "RSHO"}
    np.testing.assert_allclose(trial.markers["SACR"][2], [1.002, -0.1, 0.901])  # X,Y,Z (Y up, Z right) -> x,-z,y
    np.testing.assert_allclose(np.diff(trial.t), 1 / 60)
    bad = tmp_path / "bad.trc"
    bad.write_text("\n".join(head + rows[:2] + [rows[2].replace("1002", "1o02", 1)]) + "\n")
    with pytest.raises(SourceError, match=r"bad.trc:9: not a number in column 3: '1o02'"):
        read_markers(bad)
    nounits = tmp_path / "nounits.trc"
    nounits.write_text("\n".join([*head[:2], "60\t60\t3\t4\tinch\t60\t1\t3", *head[3:], *rows]) + "\n")
    with pytest.raises(SourceError, match=r"nounits.trc:3: needs DataRate and Units"):
        read_markers(nounits)


def test_tool_takes_a_short_standing_trial_only_when_told_to_hold_it(tmp_path, capsys):
    def write(path, trial):
        names = list(trial.markers)
        cols = ["Time"] + [n + a for n in names for a in "XYZ"]
        lab = {n: np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1) * 1000.0 for n, v in trial.markers.items()}
        rows = np.column_stack([trial.t] + [lab[n] for n in names])
        path.write_text("\t".join(cols) + "\n" + "\n".join("\t".join(f"{x:.3f}" for x in r) for r in rows) + "\n")

    sets = (SACR_PELVIS, SHOULDER_TRUNK)
    write(tmp_path / "static.txt", _trial_with(np.arange(int(5 * RATE)) / RATE, True, sets))
    write(tmp_path / "run.txt", _trial_with(np.arange(int(12 * RATE)) / RATE, False, sets))
    out = tmp_path / "rec.csv"
    args = [str(tmp_path / "run.txt"), str(tmp_path / "static.txt"), str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lasts 5.0 s" in err and "hold_static" in err and not out.exists()
    assert main([*args, "--hold-static"]) == 0
    truth, info = load_truth(out)
    assert {"pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"} <= set(truth) and len(info["true_strides"]) > 5
