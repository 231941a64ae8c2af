"""Motion-capture marker trajectories turned into virtual IMU recordings with truth (issue 16, part 3).

The simulator only knows the physics it was written with. Real runners speed up and slow down from
stride to stride; a treadmill motion-capture trial carries that, so `analyze` can be held to it:

1. **Segment poses.** Each segment's markers are fitted, frame by frame, by the rigid template of the
   same runner's standing trial (weighted Kabsch fit; a marker missing in a frame gets weight 0, so
   short gaps need no filling). Marker sets (RBDS names; Plug-in-Gait and Hamner 2010 aliases accepted):
   pelvis ``R.ASIS L.ASIS`` + ``R.PSIS L.PSIS`` or ``SACR`` (+ iliac crests if present), sensor on the
   sacrum (mid-PSIS, else the sacral marker); trunk ``C7`` + a front marker (``CLAV``/``STRN``/``MAN``/
   ``IJ``) + a lower back marker (``T10``/``T8``/``T7``), or a front marker + both acromia
   (``RSHO LSHO``), sensor on the front marker. Files: tab-separated text or OpenSim ``.trc``.
2. **Calibration routine** from the standing trial (one under 9 s is lengthened by holding its last
   frame if ``hold_static`` is set): its first 4 s as the neutral stillness, a synthetic
   hip hinge (raised cosine, about the neutral's left axis through a hip centre 10 cm in front of and
   8 cm below the sacrum, the trunk 7° further) over the next 3 s, the rest standing; then the
   running trial is blended in over ``blend_s`` (poses interpolated, C1), as a runner starting off.
3. **Filtering.** A few virtual points rigidly attached to each segment (the sensor site and 10 cm
   along each axis) are low-passed with a 4th-order Butterworth run forwards and backwards
   (``scipy.signal.butter`` + ``filtfilt``, zero phase) at ``cutoff_hz`` (12 Hz by default:
   running pelvis and trunk motion lies under ~10 Hz apart from impacts, and marker noise is amplified
   ∝ f² by the double differentiation; 12 Hz keeps the 4th harmonic of a 3 Hz step rate), then
   interpolated by cubic splines, so any sample rate (50–1000 Hz) reads the same motion.
4. **Virtual IMU.** Specific force = the spline's second derivative of the sensor site minus gravity,
   rotated into the body and then the sensor frame; angular rate = central difference (±0.5 ms) of the
   segment frame (``scipy.spatial.transform.Rotation``). A random mounting and MPU-6050-like errors
   come from the simulator's own code (``_random_rotation``, ``_sensor``), as does the file layout
   (``write_simulation``: recording CSV + ``.truth.csv`` + ``.truth.json``).
5. **Truth** in the project's frames and signs (docs/frames-and-signs.md): the body frame is the
   segment frame turned so that, at the neutral (the mean pose of the first stillness), z is vertical
   and y is the segment's left axis made horizontal; tilt = asin(−x_b·ẑ), obliquity = asin(y_b·ẑ).
   Per true stride (two steps between minima of the sacrum's height): the stride means of tilt,
   lean and stack, and the stride-mean forward and vertical acceleration of each sensor site
   (velocity change over the stride / its duration).

``python -m stackcue.firmware_bridge.emulated.mocap`` writes a recording from marker files (a
developer's tool: kept out of the ``stackcue`` command, which is the runner's).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import butter, filtfilt, find_peaks
from scipy.spatial.transform import Rotation

from stackcue.errors import ConfigError, SourceError

from ..block import Block
from .simulator import DEG, G, SimRun, _random_rotation, _sensor, _wxyz, write_simulation

H_DIFF = 0.5e-3  # half step of the central difference that gives the gyroscope
AXIS_LEN = 0.10  # m, virtual points along each segment axis

ALIASES = {
    "RASI": "R.ASIS",
    "LASI": "L.ASIS",
    "RPSI": "R.PSIS",
    "LPSI": "L.PSIS",
    "RASIS": "R.ASIS",
    "LASIS": "L.ASIS",
    "RPSIS": "R.PSIS",
    "LPSIS": "L.PSIS",
    "V.Sacral": "SACR",  # Hamner et al. 2010 (OpenSim's running example)
    "Sternum": "STRN",
    "R.Acromium": "RSHO",
    "L.Acromium": "LSHO",
}
PELVIS = ("R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS", "R.Iliac.Crest", "L.Iliac.Crest", "SACR")
TRUNK_FRONT = ("CLAV", "STRN", "MAN", "IJ")
TRUNK_LOW = ("T10", "T8", "T7")
SHOULDERS = ("RSHO", "LSHO")


@dataclass
class Trial:
    """Marker trajectories: ``t`` (N,) s; ``markers`` name -> (N, 3) m in world axes (z up), NaN if missing."""

    t: np.ndarray
    markers: dict[str, np.ndarray]
    source: str = ""


@dataclass
class MocapParams:
    """How to turn a running trial and a standing trial into a recording."""

    rate_hz: float = 100.0
    seed: int = 0
    sensor_errors: bool = True
    timing_errors: bool = True
    identity_mounting: bool = False
    cutoff_hz: float = 12.0
    hinge_deg: float = 35.0
    blend_s: float = 3.0
    # A standing trial shorter than the routine's 9 s is lengthened by holding its last frame still
    # (documented substitute: the neutral is still the runner's own standing pose).
    hold_static: bool = False
    meta: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def read_markers(path: str | Path, *, axes: str = "x,-z,y") -> Trial:
    """Read a tab-separated marker file (``Time`` then ``<name>X/Y/Z`` columns, mm; ``#`` lines skipped).

    ``axes`` maps lab axes to world (x forward, y left, z up): RBDS's lab is X forward, Y up, Z right,
    hence ``x,-z,y``. ``.gz`` files are read as they are.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read marker file: {exc}") from None
    if text.startswith("PathFileType"):
        return _read_trc(path, text, axes)
    numbered = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln and not ln.startswith("#")]
    if len(numbered) < 3:
        raise SourceError(f"{path}: no marker data")
    first, head = numbered[0]
    header = head.split("\t")
    if header[0].strip().lower() != "time":
        raise SourceError(f"{path}:{first}: the first column must be Time, found {header[0]!r}")
    width = len(header)
    data = np.full((len(numbered) - 1, width), np.nan)
    for i, (lineno, line) in enumerate(numbered[1:]):
        for j, cell in enumerate(line.split("\t")[:width]):
            if cell.strip():
                try:
                    data[i, j] = float(cell)
                except ValueError:
                    raise SourceError(f"{path}:{lineno}: not a number in column {header[j]!r}: {cell!r}") from None
    perm, signs = _axes(axes)
    markers: dict[str, np.ndarray] = {}
    for j in range(1, width - 2):
        name = header[j]
        if name.endswith("X") and header[j + 1] == name[:-1] + "Y" and header[j + 2] == name[:-1] + "Z":
            lab = data[:, j : j + 3] / 1000.0
            markers[ALIASES.get(name[:-1], name[:-1])] = lab[:, perm] * signs
    # Source times are rounded (RBDS: to 1 ms at 150 Hz); the frames are evenly spaced.
    n = len(data)
    rate = (n - 1) / (data[-1, 0] - data[0, 0])
    t = data[0, 0] + np.arange(n) / np.round(rate)
    return Trial(t=t, markers=markers, source=str(path))


def _read_trc(path: Path, text: str, axes: str) -> Trial:
    """An OpenSim/Motion Analysis ``.trc`` file: 5 header lines (rate and units on the 3rd, marker names on
    the 4th, each followed by two empty cells), then ``Frame# Time x y z ...`` rows; mm or m."""
    lines = text.splitlines()
    if len(lines) < 8:
        raise SourceError(f"{path}: no marker data")
    keys, vals = lines[1].split("\t"), lines[2].split("\t")
    head = dict(zip([k.strip() for k in keys], [v.strip() for v in vals], strict=False))
    try:
        rate = float(head["DataRate"])
        scale = {"mm": 1e-3, "m": 1.0}[head.get("Units", "mm")]
    except (KeyError, ValueError):
        raise SourceError(f"{path}:3: needs DataRate and Units (mm or m), found {head}") from None
    names = [n.strip() for n in lines[3].split("\t")[2:] if n.strip()]
    rows = [(i + 1, ln) for i, ln in enumerate(lines[5:], start=5) if ln.strip()]
    width = 2 + 3 * len(names)
    data = np.full((len(rows), width), np.nan)
    for i, (lineno, line) in enumerate(rows):
        for j, cell in enumerate(line.split("\t")[:width]):
            if cell.strip():
                try:
                    data[i, j] = float(cell)
                except ValueError:
                    raise SourceError(f"{path}:{lineno}: not a number in column {j + 1}: {cell!r}") from None
    perm, signs = _axes(axes)
    markers = {ALIASES.get(n, n): data[:, 2 + 3 * k : 5 + 3 * k][:, perm] * signs * scale for k, n in enumerate(names)}
    t = data[0, 1] + np.arange(len(data)) / rate
    return Trial(t=t, markers=markers, source=str(path))


def _axes(spec: str) -> tuple[list[int], np.ndarray]:
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 3 or sorted(p.lstrip("-") for p in parts) != ["x", "y", "z"]:
        raise ConfigError(f"axes={spec!r}: give three of x,y,z each once, e.g. 'x,-z,y'")
    perm = ["xyz".index(p.lstrip("-")) for p in parts]
    signs = np.array([-1.0 if p.startswith("-") else 1.0 for p in parts])
    if np.linalg.det(np.eye(3)[perm] * signs[:, None]) < 0:
        raise ConfigError(f"axes={spec!r} is a mirror image, not a rotation")
    return perm, signs


# --------------------------------------------------------------------------- segments


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _pelvis_frame(m: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(site, R_world_anat columns x fwd, y left, z up) from ASIS and PSIS (or SACR) positions, any leading shape.

    The site (the sensor) is the sacrum: mid-PSIS, or the sacral marker where there are no PSIS markers.
    """
    site = (m["R.PSIS"] + m["L.PSIS"]) / 2.0 if "R.PSIS" in m and "L.PSIS" in m else m["SACR"]
    y = _unit(m["L.ASIS"] - m["R.ASIS"])
    fwd = (m["R.ASIS"] + m["L.ASIS"]) / 2.0 - site
    x = _unit(fwd - np.sum(fwd * y, axis=-1, keepdims=True) * y)
    return site, np.stack([x, y, np.cross(x, y)], axis=-1)


def _trunk_names(names: set[str]) -> tuple[str, str] | None:
    """(front marker, lower back marker), or (front marker, "shoulders") for a sternum and both acromia."""
    front = next((n for n in TRUNK_FRONT if n in names), None)
    low = next((n for n in TRUNK_LOW if n in names), None)
    if front and low and "C7" in names:
        return front, low
    if front and set(SHOULDERS) <= names:
        return front, "shoulders"
    return None


def _trunk_frame(m: dict[str, np.ndarray], front: str, low: str) -> tuple[np.ndarray, np.ndarray]:
    """(site, R_world_anat) of the thorax: x from C7 to the front marker, z from the lower back marker up.

    Without C7 and a lower back marker (``low == "shoulders"``): y from the right to the left acromion,
    x from their midpoint towards the front marker (which lies in front of and below it). The acromia
    ride on the shoulder girdle, so this frame also turns with the shoulders' swing; the converter's
    truth and its virtual sensor share that frame, so the estimator is still checked against it.
    """
    site = m[front]
    if low == "shoulders":
        y = _unit(m["LSHO"] - m["RSHO"])
        fwd = m[front] - (m["LSHO"] + m["RSHO"]) / 2.0
        x = _unit(fwd - np.sum(fwd * y, axis=-1, keepdims=True) * y)
        return site, np.stack([x, y, np.cross(x, y)], axis=-1)
    fwd = m[front] - m["C7"]
    up = (m[front] + m["C7"]) / 2.0 - m[low]
    z = _unit(up - np.sum(up * _unit(fwd), axis=-1, keepdims=True) * _unit(fwd))
    x = _unit(fwd - np.sum(fwd * z, axis=-1, keepdims=True) * z)
    return site, np.stack([x, np.cross(z, x), z], axis=-1)


def _kabsch(template: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, rotation R (N,3,3) and translation p (N,3) with pts ≈ R·template + p; NaN points ignored."""
    w = np.all(np.isfinite(pts), axis=-1).astype(float)  # (N, M)
    if np.any(w.sum(axis=1) < 3):
        bad = int(np.argmax(w.sum(axis=1) < 3))
        raise SourceError(f"frame {bad}: fewer than 3 of the segment's markers are visible")
    x = np.nan_to_num(pts)
    ws = w.sum(axis=1, keepdims=True)
    cb = (w[..., None] * x).sum(axis=1) / ws  # (N, 3)
    ca = (w[..., None] * template[None]).sum(axis=1) / ws
    a = template[None] - ca[:, None]
    b = x - cb[:, None]
    h = np.einsum("nm,nmi,nmj->nij", w, a, b)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("nji,nkj->nik", vt, u)))
    fix = np.ones((len(h), 3))
    fix[:, 2] = d
    r = np.einsum("nji,nj,nkj->nik", vt, fix, u)
    return r, cb - np.einsum("nij,nj->ni", r, ca)


@dataclass
class _Segment:
    name: str
    names: list[str]
    template: np.ndarray  # (M, 3) markers in the anatomical frame of the standing mean
    site: np.ndarray  # sensor site in that frame


def _segments(run: Trial, static: Trial) -> list[_Segment]:
    out = []
    mean = {k: np.nanmean(v, axis=0) for k, v in static.markers.items()}
    common = set(run.markers) & set(static.markers)
    pelvis = [n for n in PELVIS if n in common]
    if not ({"R.ASIS", "L.ASIS"} <= set(pelvis) and ({"R.PSIS", "L.PSIS"} <= set(pelvis) or "SACR" in pelvis)):
        raise SourceError(
            "the pelvis needs R.ASIS, L.ASIS and R.PSIS + L.PSIS or SACR in both trials (or RASI/LASI/RPSI/LPSI)"
        )
    site, r = _pelvis_frame(mean)
    out.append(_Segment("pelvis", pelvis, (np.stack([mean[n] for n in pelvis]) - site) @ r, np.zeros(3)))
    trunk = _trunk_names(common)
    if trunk:
        names = [n for n in ("C7", *trunk) if n in common]
        names += [n for n in ("LSHO", "RSHO", "T10", "T8", "T7") if n in common and n not in names]
        site, r = _trunk_frame(mean, *trunk)
        out.append(_Segment("trunk", names, (np.stack([mean[n] for n in names]) - site) @ r, np.zeros(3)))
    return out


def _poses(trial: Trial, seg: _Segment) -> tuple[Rotation, np.ndarray]:
    """Segment pose over a trial: R_world_anat and the sensor site."""
    pts = np.stack([trial.markers[n] for n in seg.names], axis=1)
    r, p = _kabsch(seg.template, pts)
    return Rotation.from_matrix(r), p + np.einsum("nij,j->ni", r, seg.site)


# --------------------------------------------------------------------------- the run


def _raised(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return (1.0 - np.cos(np.pi * u)) / 2.0


def _timeline(run: Trial, static: Trial, p: MocapParams) -> dict[str, Any]:
    """Poses at the marker rate over standing (with the hinge), the blend and the running trial."""
    if abs(np.median(np.diff(run.t)) - np.median(np.diff(static.t))) > 1e-6:
        raise SourceError("the standing and the running trial must share one frame rate")
    dt = float(np.median(np.diff(run.t)))
    if p.hold_static and static.t[-1] - static.t[0] < 9.0:
        static = _held(static, 9.0)
    ts = static.t - static.t[0]
    if ts[-1] < 9.0:
        raise SourceError(
            f"the standing trial lasts {ts[-1]:.1f} s; the routine needs 9 s (4 still, 3 hinge, 2 still);"
            " hold_static lengthens it by holding its last frame"
        )
    h0, h1 = 4.0, 7.0
    t_run0 = ts[-1] + dt
    segs = _segments(run, static)
    out: dict[str, Any] = {"dt": dt, "hinge": (h0, h1), "run_start": t_run0, "segments": {}}
    n_static, n_run = len(ts), len(run.t)
    t_all = np.arange(n_static + n_run) * dt
    for seg in segs:
        r_s, p_s = _poses(static, seg)
        r_r, p_r = _poses(run, seg)
        # The standing trial is moved to where the runner runs (heights kept).
        shift = np.nanmean(p_r, axis=0) - np.nanmean(p_s, axis=0)
        shift[2] = 0.0
        p_s = p_s + shift
        # Neutral: mean pose of the first stillness, made level; the hinge turns about its left axis.
        still = ts < h0
        r_n = r_s[still].mean()
        z_b = r_n.inv().apply([0.0, 0.0, 1.0])
        y_b = np.array([0.0, 1.0, 0.0]) - z_b[1] * z_b
        y_b /= np.linalg.norm(y_b)
        anat_from_body = Rotation.from_matrix(np.stack([np.cross(y_b, z_b), y_b, z_b], axis=1))
        axis_w = r_n.apply(y_b)
        p_n = p_s[still].mean(axis=0)
        pelvis_site = out["segments"]["pelvis"]["p_n"] if seg.name != "pelvis" else p_n
        hip = pelvis_site + (r_n * anat_from_body).apply([0.10, 0.0, -0.08])
        extra = 7.0 if seg.name == "trunk" else 0.0
        u = (ts - h0) / (h1 - h0)
        ang = (p.hinge_deg + extra) * DEG * np.where((u > 0) & (u < 1), (1.0 - np.cos(2 * np.pi * u)) / 2.0, 0.0)
        turn = Rotation.from_rotvec(ang[:, None] * axis_w[None])
        r_s = turn * r_s
        p_s = hip + turn.apply(p_s - hip)
        # Blend from the last standing pose into the running trial.
        w = _raised(np.arange(n_run) * dt / p.blend_s)
        last_r = r_s[-1]
        rel = (last_r.inv() * r_r).as_rotvec()
        r_blend = last_r * Rotation.from_rotvec(w[:, None] * rel)
        p_blend = (1.0 - w[:, None]) * p_s[-1] + w[:, None] * p_r
        quats = np.concatenate([r_s.as_quat(), r_blend.as_quat()])
        out["segments"][seg.name] = {
            "rot": Rotation.from_quat(quats),
            "pos": np.concatenate([p_s, p_blend]),
            "anat_from_body": anat_from_body,
            "p_n": p_n,
        }
    out["t"] = t_all
    return out


def _held(static: Trial, seconds: float) -> Trial:
    """The standing trial lengthened to ``seconds`` by holding its last frame (no jump, so no spike)."""
    dt = float(np.median(np.diff(static.t)))
    n = int(np.ceil(seconds / dt)) + 1 - len(static.t)
    t = np.concatenate([static.t, static.t[-1] + dt * np.arange(1, n + 1)])
    markers = {k: np.concatenate([v, np.repeat(v[-1:], n, axis=0)]) for k, v in static.markers.items()}
    return Trial(t=t, markers=markers, source=static.source)


def _smooth(t: np.ndarray, rot: Rotation, pos: np.ndarray, cutoff_hz: float) -> tuple[CubicSpline, CubicSpline]:
    """Splines through the low-passed site and virtual axis points (zero-phase Butterworth)."""
    rate = 1.0 / float(np.median(np.diff(t)))
    if not 0 < cutoff_hz < rate / 2:
        raise ConfigError(f"cutoff_hz={cutoff_hz} must lie between 0 and half the marker rate ({rate / 2:g} Hz)")
    b, a = butter(4, cutoff_hz / (rate / 2))
    m = rot.as_matrix()
    pts = np.concatenate([pos[:, None], pos[:, None] + AXIS_LEN * np.swapaxes(m, 1, 2)], axis=1)  # (N, 4, 3)
    pts = filtfilt(b, a, pts, axis=0)
    return CubicSpline(t, pts[:, 0]), CubicSpline(t, pts[:, 1:])


def _frames(axes: CubicSpline, site: CubicSpline, t: np.ndarray) -> Rotation:
    """R_world_anat at t: the nearest rotation to the splined axis points (polar decomposition)."""
    cols = (axes(t) - site(t)[:, None]) / AXIS_LEN  # (N, 3 axes, 3 coords)
    u, _, vt = np.linalg.svd(np.swapaxes(cols, 1, 2))
    return Rotation.from_matrix(u @ vt)


def convert(run: Trial, static: Trial, params: MocapParams | None = None) -> SimRun:
    """A virtual recording (calibration routine from ``static``, then ``run``) and its truth."""
    p = params or MocapParams()
    if not 50.0 <= p.rate_hz <= 1000.0:
        raise ConfigError(f"rate_hz={p.rate_hz} is outside 50..1000 Hz")
    line = _timeline(run, static, p)
    rng = np.random.default_rng(p.seed)
    names = list(line["segments"])
    mount = {s: (Rotation.identity() if p.identity_mounting else _random_rotation(rng)) for s in names}
    eps = float(rng.uniform(-0.015, 0.015)) if (p.sensor_errors and p.timing_errors) else 0.0
    rate_true = p.rate_hz * (1.0 + eps)
    t_end = float(line["t"][-1])
    t = np.arange(int(np.floor(t_end * rate_true)) + 1) / rate_true
    truth: dict[str, np.ndarray] = {"t": t}
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    splines: dict[str, tuple[CubicSpline, CubicSpline, Rotation]] = {}
    for s in names:
        seg = line["segments"][s]
        site, axes = _smooth(line["t"], seg["rot"], seg["pos"], p.cutoff_hz)
        afb = seg["anat_from_body"]
        r_wb = _frames(axes, site, t) * afb
        r_m = _frames(axes, site, np.clip(t - H_DIFF, 0, t_end)) * afb
        r_p = _frames(axes, site, np.clip(t + H_DIFF, 0, t_end)) * afb
        omega = (r_m.inv() * r_p).as_rotvec() / (2 * H_DIFF)
        f_world = site(t, 2) + np.array([0.0, 0.0, G])
        raw[s] = (mount[s].apply(r_wb.inv().apply(f_world)), mount[s].apply(omega))
        x_b = r_wb.apply([1.0, 0.0, 0.0])
        y_b = r_wb.apply([0.0, 1.0, 0.0])
        tilt = np.degrees(np.arcsin(np.clip(-x_b[:, 2], -1, 1)))
        if s == "pelvis":
            truth["pelvic_tilt_deg"] = tilt
            truth["pelvic_obliquity_deg"] = np.degrees(np.arcsin(np.clip(y_b[:, 2], -1, 1)))
        else:
            truth["trunk_lean_deg"] = tilt
        splines[s] = (site, axes, afb)
        # In memory only (write_simulation keeps TRUTH_COLUMNS): the site's velocity, world axes, so a
        # window's mean acceleration is its velocity change over its duration.
        vel = site(t, 1)
        for k, axis in enumerate("xyz"):
            truth[f"{s}_v{axis}_m_s"] = vel[:, k]
    if "trunk" in names:
        truth["stack_deg"] = truth["trunk_lean_deg"] - truth["pelvic_tilt_deg"]
    meas = {s: _sensor(rng, t, *raw[s], p.sensor_errors) for s in names}
    jitter = rng.normal(0.0, 0.03 / rate_true, len(t)) if (p.sensor_errors and p.timing_errors) else 0.0
    us = np.round((t + jitter) * 1e6).astype(np.int64)
    ramp = np.arange(len(us), dtype=np.int64)
    t_rec = (np.maximum.accumulate(us - ramp) + ramp) / 1e6
    acc, gyr, _ = meas["pelvis"]
    if "trunk" in names:
        block = Block(t_rec, acc, gyr, meas["trunk"][0], meas["trunk"][1], np.ones(len(t), bool))
    else:
        block = Block(t_rec, acc, gyr)
    run_start = line["run_start"]
    strides = true_strides(splines, t, truth, run_start + p.blend_s)
    info = {
        "source": {"run": run.source, "static": static.source},
        "params": {k: v for k, v in vars(p).items() if k != "meta"},
        "rate_nominal_hz": p.rate_hz,
        "rate_true_hz": rate_true,
        "segments": names,
        "mounting": {s: {"q_body_from_sensor_wxyz": _wxyz(mount[s].inv())} for s in names},
        "gyro_bias_rad_s": {
            s: [0.0, 0.0, 0.0] if meas[s][2] is None else [float(x) for x in meas[s][2].gyro_bias_rad_s] for s in names
        },
        "devices": {s: None if meas[s][2] is None else meas[s][2].to_dict() for s in names},
        "phases": {
            "still1": [0.0, line["hinge"][0]],
            "hinge": list(line["hinge"]),
            "still2": [line["hinge"][1], run_start],
            "blend": [run_start, run_start + p.blend_s],
            "running": [run_start + p.blend_s, t_end],
        },
        "true_strides": strides,
        "timestamps": "truth t = true sample instants; block t = those plus jitter (same rows)",
    }
    meta = {"sensor": "mocap-virtual", "rate": f"{p.rate_hz:g}", "runner": "mocap", "seed": str(p.seed), **p.meta}
    return SimRun(block=block, meta=meta, truth=truth, info=info)


def true_strides(
    splines: dict[str, tuple[CubicSpline, CubicSpline, Rotation]], t: np.ndarray, truth: dict, t_from: float
) -> list[dict[str, float]]:
    """Strides (two steps between minima of the sacrum's height) after ``t_from``, with their means.

    The stride-mean forward acceleration of a site is its horizontal velocity change along the
    stride's mean heading divided by the stride's duration: what one stride's mean specific force
    adds to gravity, and what tilts it. The vertical one is the same for the vertical velocity; with
    windows between height minima (vertical velocity zero at both ends) it is near zero by design,
    and it would only scale the mean specific force, not turn it.
    """
    site = splines["pelvis"][0]
    tt = np.arange(t_from, t[-1], 1e-3)  # on a 1 ms grid of its own, so every rate gets the same strides
    if len(tt) < 10:
        return []
    low, _ = find_peaks(-site(tt)[:, 2], distance=220, prominence=0.01)
    steps = tt[low]
    out = []
    for a, b in zip(steps[:-2:2], steps[2::2], strict=False):
        i0, i1 = np.searchsorted(t, [a, b])
        s: dict[str, float] = {"t_start": float(a), "t_end": float(b)}
        for key in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"):
            if key in truth:
                s[key] = float(np.trapezoid(truth[key][i0:i1], t[i0:i1]) / (t[i1 - 1] - t[i0]))
        for name, (sp, _, _) in splines.items():
            v0, v1 = sp(a, 1), sp(b, 1)
            heading = sp(b) - sp(a)
            heading[2] = 0.0
            fwd = heading / max(np.linalg.norm(heading), 1e-9) if np.linalg.norm(heading) > 0.05 else None
            if fwd is None:  # on a treadmill the site stays put: the runner faces the lab's x
                fwd = np.array([1.0, 0.0, 0.0])
            dv = (v1 - v0) / (b - a)
            s[f"{name}_fwd_acc_m_s2"] = float(dv @ fwd)
            s[f"{name}_up_acc_m_s2"] = float(dv[2])
        out.append(s)
    return out


# --------------------------------------------------------------------------- tool


def main(argv: list[str] | None = None) -> int:
    """``python -m stackcue.firmware_bridge.emulated.mocap RUN STATIC OUT.csv [--rate HZ] [--seed N]``.

    RUN and STATIC are tab-separated marker files or ``.trc`` files (optionally gzipped).
    """
    prog = "python -m stackcue.firmware_bridge.emulated.mocap"
    ap = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n")[0])
    ap.add_argument("run", help="running trial: tab-separated markers (Time, <name>X/Y/Z in mm) or a .trc file")
    ap.add_argument("static", help="standing trial of the same runner, same layout")
    ap.add_argument("out", help="recording to write (truth files beside it)")
    ap.add_argument("--rate", type=float, default=100.0, help="sample rate, 50..1000 Hz (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="mounting and sensor errors (default 0)")
    ap.add_argument("--axes", default="x,-z,y", help="lab axes as world x(fwd),y(left),z(up); RBDS: x,-z,y")
    ap.add_argument("--ideal", action="store_true", help="no sensor errors, identity mounting")
    ap.add_argument("--cutoff", type=float, default=12.0, help="marker low-pass, Hz (default 12)")
    ap.add_argument(
        "--hold-static", action="store_true", help="lengthen a standing trial under 9 s by holding its last frame"
    )
    args = ap.parse_args(argv)
    try:
        run = read_markers(args.run, axes=args.axes)
        static = read_markers(args.static, axes=args.axes)
        params = MocapParams(
            rate_hz=args.rate,
            seed=args.seed,
            sensor_errors=not args.ideal,
            identity_mounting=args.ideal,
            cutoff_hz=args.cutoff,
            hold_static=args.hold_static,
        )
        sim = convert(run, static, params)
        truth_csv, truth_json = write_simulation(sim, args.out)
    except (SourceError, ConfigError, OSError) as exc:
        print(f"mocap: {exc}", file=sys.stderr)
        return 2
    n = len(sim.info["true_strides"])
    print(json.dumps({"recording": str(args.out), "truth": [str(truth_csv), str(truth_json)], "true_strides": n}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
