"""Trunk lean and stack held to real running motion with a trunk (issue 16, part 3): an opt-in check.

The only public running trial with pelvis and trunk markers and a standing trial found reachable (Hamner,
Seth & Delp 2010, subject 02: opensim-org/opensim-models `Pipelines/Hamner/subject02_running.trc` and
`subject02_static.trc`, commit 20a888b9655e73fb84963d6e03eee3752cf6074b; 10 s of treadmill running at
60 Hz, `R.ASIS L.ASIS V.Sacral Sternum R.Acromium L.Acromium`) states no licence, so it is not kept in this
repository (tests/data/mocap/README.md lists what else was searched). Point ``STACKCUE_HAMNER2010_DIR`` at a
folder holding those two files (as cloned) and this test runs; without it, it is skipped and says so.

Each case: the converter (firmware_bridge/emulated/mocap.py) makes a virtual recording with a random
mounting and MPU-6050-like errors, the 5 s standing trial held at its last frame (``hold_static``);
`analyze` reads it; stride-mean tilt, trunk lean and stack over each steady stride of the run against the
marker truth. Bounds: the issue's real-motion targets, tilt ≤ 0.3° and stack ≤ 0.4°, per recording; lean
is reported by the failure message only (the issue sets no real-motion lean target). Measured 2026-12-05
(docs/accuracy.md): tilt 0.11–0.18°, lean 0.18–0.27°, stack 0.18–0.29° at 100 and 200 Hz, seeds 0–2 (the
morning's dsp/: 0.07–0.13°, 0.18–0.29°, 0.25–0.29°). A weak check: after the 3 s blend and the 5 s of
speeding up, 3 steady strides a recording.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from truthcheck import window_mean

from stackcue.firmware_bridge.emulated.mocap import MocapParams, convert, read_markers
from stackcue.firmware_bridge.emulated.simulator import write_simulation
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config

ENV = "STACKCUE_HAMNER2010_DIR"
FILES = ("subject02_running.trc", "subject02_static.trc")
TILT_DEG, STACK_DEG = 0.3, 0.4


def _data() -> Path:
    folder = os.environ.get(ENV)
    if not folder:
        pytest.skip(f"{ENV} is not set: the Hamner 2010 trial is not redistributable, so it is not kept here")
    paths = [Path(folder) / f for f in FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    assert not missing, f"{ENV}={folder}: missing {', '.join(missing)}"  # set but wrong: a failure, not a skip
    return Path(folder)


@pytest.mark.parametrize("rate", [100.0, 200.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stride_mean_tilt_lean_and_stack_on_real_running_with_a_trunk(tmp_path, rate, seed):
    folder = _data()
    run, static = (read_markers(folder / f) for f in FILES)
    sim = convert(run, static, MocapParams(rate_hz=rate, seed=seed, hold_static=True))
    csv = tmp_path / "rec.csv"
    write_simulation(sim, csv)
    events = analyze_file(csv, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert [e["ok"] for e in events if e["type"] == "calibration"] == [True]
    t_run = sim.info["phases"]["running"][0]
    strides = [e for e in events if e["type"] == "stride" and e["steady"] and e["t_start"] >= t_run]
    assert len(strides) >= 3, len(strides)
    t = sim.truth["t"]
    rmse = {}
    for key in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"):
        truth = np.array([window_mean(t, sim.truth[key], e["t_start"], e["t_end"]) for e in strides])
        rmse[key] = float(np.sqrt(np.mean((np.array([e[key] for e in strides]) - truth) ** 2)))
    said = ", ".join(f"{k} {v:.3f}°" for k, v in rmse.items())
    assert rmse["pelvic_tilt_deg"] <= TILT_DEG and rmse["stack_deg"] <= STACK_DEG, f"{rate:g} Hz seed {seed}: {said}"
