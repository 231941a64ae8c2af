"""`stackcue accel-cal TUMBLE.csv`: each sensor's accelerometer offset and gain from a recorded tumble.

Done once per sensor (docs/calibration.md): tape the sensors to a box, record (`stackcue record`), set the
box down on each of its six faces for 3 s or more, stop. The fit (dsp/accel_calibration.py) is printed with
how well each pose then reads gravity, and as the ``[accel_calibration]`` lines to put in the configuration.
A recording made with a calibration already applied (its ``accel_cal_*`` line) is first taken back to what
the sensor read, so fitting again replaces the old calibration rather than stacking on it.
"""

from __future__ import annotations

import argparse
from typing import IO

import numpy as np

from stackcue.dsp import accel_calibration as ac
from stackcue.errors import CalibrationError, InputError
from stackcue.firmware_bridge.csv_format import read_recording


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "accel-cal",
        help="fit each sensor's accelerometer offset and gain from a recorded tumble (six faces, still)",
    )
    p.add_argument("recording", metavar="FILE", help="exchange CSV of the tumble (stackcue record)")
    p.add_argument(
        "--segment",
        choices=("pelvis", "trunk", "both"),
        default="both",
        help="which sensor was tumbled (default: every sensor in the recording)",
    )


def fit_recording(path: str, which: str = "both", err: IO[str] | None = None) -> dict[str, ac.AccelFit]:
    """Each segment's fit (``which``: "pelvis", "trunk" or "both" present); one-line errors naming the file."""
    from .analyze import report_problems

    block, meta, problems = read_recording(path)
    if err is not None:
        report_problems(path, problems, err)
    fits: dict[str, ac.AccelFit] = {}
    segments = (("pelvis", "trunk") if block.has_trunk else ("pelvis",)) if which == "both" else (which,)
    for seg in segments:
        if seg == "trunk" and not block.has_trunk:
            raise InputError(f"{path}: has no trunk sensor's columns (--segment pelvis fits the pelvis alone)")
        acc, gyr = (block.acc, block.gyr) if seg == "pelvis" else (block.trunk_acc, block.trunk_gyr)
        applied = meta.get(f"accel_cal_{seg}")
        if applied:
            try:
                acc = ac.AccelCalibration.from_meta(applied).undo(acc)
            except CalibrationError as exc:
                raise InputError(f"{path}: accel_cal_{seg}: {exc}") from None
        try:
            fits[seg] = ac.fit(ac.still_poses(block.t, acc, gyr))
        except CalibrationError as exc:
            hint = " (--segment pelvis if only it was tumbled)" if seg == "trunk" else ""
            raise CalibrationError(f"{path}: {seg}: {exc}{hint}") from None
    return fits


def describe(seg: str, f: ac.AccelFit) -> list[str]:
    c = f.calibration
    before = np.abs(f.error_before_m_s2)
    return [
        f"{seg}: {len(f.poses)} still poses ({' '.join(p.direction for p in f.poses)})",
        f"  |reading| - g over the poses: up to {before.max():.3f} m/s² as read, "
        f"{np.abs(f.error_after_m_s2).max():.4f} corrected (rms {f.rms_after_m_s2:.4f})",
        "  offset "
        + " ".join(f"{v:+.3f}" for v in c.offset_m_s2)
        + " m/s², gain "
        + " ".join(f"{v:.4f}" for v in c.gain),
    ]


def config_lines(fits: dict[str, ac.AccelFit]) -> list[str]:
    out = ["[accel_calibration]"]
    for seg, f in fits.items():
        c = f.calibration
        out.append(f"{seg}_offset_m_s2 = [" + ", ".join(f"{v:.4f}" for v in c.offset_m_s2) + "]")
        out.append(f"{seg}_gain = [" + ", ".join(f"{v:.5f}" for v in c.gain) + "]")
    return out


def cmd_accel_cal(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    import sys

    out, err = out or sys.stdout, err or sys.stderr
    fits = fit_recording(args.recording, args.segment, err)
    for seg, f in fits.items():
        out.write("\n".join(describe(seg, f)) + "\n")
    out.write("\nPut these lines in the configuration (they replace any [accel_calibration] there):\n")
    out.write("\n".join(config_lines(fits)) + "\n")
    return 0
