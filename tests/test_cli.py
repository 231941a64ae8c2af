"""The `stackcue` command as a user meets it: real files, real output, one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from truthcheck import rmse, stride_truth

from stackcue.firmware_bridge.csv_format import read_recording, write_recording
from stackcue.firmware_bridge.emulated.simulator import load_truth
from stackcue.service.cli import main


@pytest.fixture(scope="module")
def sim(sim_csv):
    return sim_csv(minutes=3, rate_hz=200, trunk=True, seed=41)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *fragments):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_simulate_writes_csv_and_truth(tmp_path, capsys):
    out = tmp_path / "s.csv"
    code, text, _ = run_cli(capsys, "simulate", "-o", out, "--minutes", "1", "--seed", "3", "--rate", "100")
    assert code == 0 and "wrote" in text
    block, meta, problems = read_recording(out)
    assert not problems and meta["rate"] == "100"
    assert abs(np.median(np.diff(block.t)) - 0.01) < 0.0003
    truth, info = load_truth(out)
    assert len(truth["t"]) == len(block) and info["seed"] == 3
    assert info["speed_changes"]["fwd_rms_m_s2"] > 0  # the default: a real runner's stride-to-stride changes


def test_simulate_without_speed_changes(tmp_path, capsys):
    out = tmp_path / "s.csv"
    code, text, _ = run_cli(capsys, "simulate", "-o", out, "--minutes", "0.5", "--no-speed-changes")
    assert code == 0 and "wrote" in text
    truth, info = load_truth(out)
    assert "speed_changes" not in info
    speed = truth["speed_m_s"]
    assert np.max(speed) <= 3.3 + 1e-9 and np.mean(np.abs(speed - 3.3) < 1e-9) > 0.3  # calibration, ramps aside


def test_analyze_summary_for_a_person(sim, capsys):
    code, out, err = run_cli(capsys, "analyze", sim)
    assert code == 0, err
    assert "Calibration accepted" in out and "pelvis (hinge" in out and "trunk (hinge" in out
    assert "Pelvic tilt" in out and "Stack angle" in out and "Cadence" in out
    assert "Time in alert" in out


def test_analyze_jsonl_contract(sim, capsys):
    code, out, _ = run_cli(capsys, "analyze", sim, "--jsonl")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "calibration" and events[0]["ok"] is True
    seg = events[0]["segments"]["pelvis"]
    assert len(seg["q_body_from_sensor_wxyz"]) == 4 and len(seg["gyro_bias_rad_s"]) == 3
    assert 25 < seg["hinge_deg"] < 50 and 0 < seg["quality"] <= 1
    assert events[-1]["type"] == "summary" and events[-1]["strides"] > 100
    stride = next(e for e in events if e["type"] == "stride")
    for key in (
        "t_start",
        "t_end",
        "cadence_spm",
        "pelvic_tilt_deg",
        "pelvic_obliquity_range_deg",
        "pelvic_rotation_range_deg",
        "trunk_lean_deg",
        "stack_deg",
        "pelvic_drop_left_deg",
        "pelvic_drop_right_deg",
        "steady",
    ):
        assert key in stride
    for e in events:
        if e["type"] == "alert":
            assert {"t", "kind", "value_deg", "threshold_deg"} <= set(e)


def test_progress_bar_on_request(sim, capsys):
    code, _, err = run_cli(capsys, "analyze", sim, "--jsonl", "--progress")
    assert code == 0
    assert "analysing [" in err


def without_routine(src: Path, dst: Path, cut_s: float) -> None:
    block, meta, _ = read_recording(src)
    i = int(np.searchsorted(block.t, block.t[0] + cut_s))
    write_recording(dst, block.slice(i, len(block)), meta)


def test_refuses_a_recording_without_the_routine(sim, tmp_path, capsys):
    dst = tmp_path / "norout.csv"
    without_routine(sim, dst, 20.0)
    code, _out, err = run_cli(capsys, "analyze", dst, "--jsonl")
    one_line_error(code, err, "no calibration routine found", "stand still")


def test_refuses_a_too_small_hinge(sim, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[calibration]\nhinge_min_deg = 60.0\nsearch_s = 30.0\n")
    code, _, err = run_cli(capsys, "analyze", sim, "--config", cfg)
    one_line_error(code, err, "calibration refused: hinge too small", "needs 60°")


def test_saved_calibration_replaces_the_routine(sim, tmp_path, capsys):
    cal = tmp_path / "cal.json"
    code, _, _ = run_cli(capsys, "analyze", sim, "--jsonl", "--save-calibration", cal)
    assert code == 0 and json.loads(cal.read_text())["type"] == "calibration"
    dst = tmp_path / "norout.csv"
    without_routine(sim, dst, 20.0)
    code, out, err = run_cli(capsys, "analyze", dst, "--jsonl", "--calibration", cal)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "calibration" and events[0]["source"] == "saved"
    truth, _ = load_truth(sim)
    strides = [e for e in events if e["type"] == "stride" and e["steady"]]
    est = [s["pelvic_tilt_deg"] for s in strides]
    tru = [stride_truth(truth, s)["pelvic_tilt_deg"] for s in strides]
    assert len(strides) > 100 and rmse(est, tru) < 1.0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not JSON"),
        ('{"type": "stride"}', "holds no accepted calibration"),
        ('{"type": "calibration", "segments": {}}', "segments.pelvis is missing"),
        (
            '{"type": "calibration", "segments": {"pelvis": {"q_body_from_sensor_wxyz": [1, 0, 0, 0.5], '
            '"gyro_bias_rad_s": [0, 0, 0]}}}',
            "not a unit quaternion",
        ),
    ],
)
def test_bad_saved_calibration(sim, tmp_path, capsys, content, fragment):
    cal = tmp_path / "cal.json"
    cal.write_text(content)
    code, _, err = run_cli(capsys, "analyze", sim, "--calibration", cal)
    one_line_error(code, err, fragment, str(cal))


def test_malformed_rows_are_reported_and_the_rest_analysed(sim, tmp_path, capsys):
    lines = sim.read_text().splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("t,"))
    bad = {
        header + 5001: "12.5,abc,0,9.81,0,0,0",  # too few fields (and non-numeric)
        header + 7001: lines[header + 7001].replace(",", ",x", 1),  # non-numeric
        header + 9001: "1.0" + lines[header + 9001][lines[header + 9001].index(",") :],  # t goes back
    }
    for i, text in bad.items():
        lines[i] = text
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "analyze", broken, "--jsonl")
    assert code == 0
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 3
    for i in bad:
        assert any(f"broken.csv:{i + 1}:" in w and "row skipped" in w for w in warnings), (i, warnings)
    summary = json.loads(out.splitlines()[-1])
    assert summary["rows_rejected"] == 3
    code, _, err = run_cli(capsys, "analyze", broken, "--strict")
    one_line_error(code, err, f"broken.csv:{header + 5001 + 1}:", "expected 13 fields, got 7")


def test_unreadable_inputs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "analyze", tmp_path / "missing.csv")
    one_line_error(code, err, "missing.csv", "no such file")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,x,y,z\n1,2,3,4\n")
    code, _, err = run_cli(capsys, "analyze", bad)
    one_line_error(code, err, "bad.csv:1", "bad header")


def test_rate_outside_the_supported_range(tmp_path, capsys):
    t = np.arange(0, 30, 1 / 20.0)
    from stackcue.firmware_bridge.block import Block

    z = np.zeros((len(t), 3))
    acc = z.copy()
    acc[:, 2] = 9.81
    path = tmp_path / "slow.csv"
    write_recording(path, Block(t, acc, z))
    code, _, err = run_cli(capsys, "analyze", path)
    one_line_error(code, err, "sample rate 20.0 Hz is outside 50–1000 Hz")
    code, _, err = run_cli(capsys, "simulate", "-o", tmp_path / "x.csv", "--rate", "30")
    one_line_error(code, err, "--rate 30 is outside 50–1000 Hz")


def test_the_installed_command_runs(sim):
    exe = Path(sys.executable).parent / "stackcue"
    r = subprocess.run([str(exe), "analyze", str(sim), "--jsonl"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["type"] == "summary"


def test_summary_counts_the_strides_without_trunk_figures(sim_csv, capsys):
    """The trunk's dropouts take trunk lean and stack from a few strides: the summary says how many of all, not
    "none from 4:18" (which read as none for the rest of the run)."""
    csv = sim_csv(minutes=10, rate_hz=100, trunk=True, seed=2)
    code, out, _ = run_cli(capsys, "analyze", csv, "--jsonl")
    assert code == 0
    events = [json.loads(x) for x in out.splitlines()]
    strides = [e for e in events if e["type"] == "stride"]
    missing = sum(1 for s in strides if s["trunk_lean_deg"] is None)
    assert 2 <= missing < len(strides) // 2
    code, out, _ = run_cli(capsys, "analyze", csv)
    line = next(x for x in out.splitlines() if "trunk" in x.lower() and "missing" in x)
    assert line.startswith(f"Trunk lean and stack missing on {missing} of {len(strides)} strides, the first ending at")
    assert "dropouts" in line
