"""The posture pipeline: one object, fed block by block, live and offline alike.

Samples → (calibration search) → VQF per segment → step boundaries →
strides (stride-synchronous posture) → steadiness → drift detection → events.
Events are plain dicts (docs/formats.md); they come out in time order, and a
recording fed as one block or as many gives the same events.

The session may pause the run (``pause``/``resume``: the samples between are never fed, and the pause is
not a data gap) and ask for the calibration routine again (``recalibrate``: a new calibration segment).
Both take the samples' times, never a clock.
"""

from __future__ import annotations

import itertools
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stackcue.errors import CalibrationError, PipelineError

from .calibration import Calibration, CalibrationSearch, UnitsCheck
from .cue_policy import CuePlan, CuePolicy
from .drift import DriftDetector
from .fading import alert_fraction
from .gait import StepDetector
from .orientation import SegmentOrientation
from .params import GAP_PERIODS, GRAVITY, LONG_GAP_S, RATE_MAX_HZ, RATE_MIN_HZ, REFERENCE_FIELDS, PipelineParams
from .stats import describe, median
from .stride import (
    FORE_AFT_REVERSED_SIN,
    GravityPool,
    SegmentStrides,
    contact_time,
    segment_strides,
    stride_forces,
    time_weights,
)

#: samples used to estimate the sample period before anything else is done: at least this many...
_PERIOD_PROBE = 64
#: ... and at least this long (s), so that a fast sensor's jittery host timestamps still give its rate within 0.1 %
_PERIOD_PROBE_S = 0.25
#: why a stride of a calibrated trunk has no trunk lean or stack (the ``trunk_missing`` event)
TRUNK_HOLE = (
    "the trunk sensor's data has holes (dropouts or lost samples): strides over them have no trunk lean or stack"
)
#: below this spread of the sample intervals (relative) a doubled interval is a dropped sample, not jitter
_COUNTABLE_SPREAD = 0.1


def estimate_period(t: np.ndarray) -> float:
    """The sample period of ``t`` (strictly increasing): a least-squares fit of time against sample number.

    Over the longest stretch without a gap (an interval above ``GAP_PERIODS`` typical ones). Where the
    intervals are regular enough to count, an isolated dropped sample counts as two periods; under heavy
    jitter (host timestamps of a fast sensor) the samples are taken as consecutive. Robust where the median
    of the intervals is not: jittered timestamps skew it by several per cent.
    """
    d = np.diff(t)
    med = float(np.median(d))
    cut = np.flatnonzero(d > GAP_PERIODS * med)
    edges = [0, *(cut + 1).tolist(), len(t)]
    lo, hi = max(itertools.pairwise(edges), key=lambda e: e[1] - e[0])
    if hi - lo < 3:
        return med
    dd = d[lo : hi - 1]
    spread = float(np.median(np.abs(dd - med))) / med
    steps = np.rint(dd / med) if spread < _COUNTABLE_SPREAD else np.ones(len(dd))
    k = np.concatenate([[0.0], np.cumsum(np.maximum(steps, 1.0))])
    tt = t[lo:hi] - t[lo]
    kc = k - k.mean()
    return float((kc * (tt - tt.mean())).sum() / (kc * kc).sum())


def _rate_problem(t: np.ndarray, rate: float) -> str:
    """Why the time stamps ``t`` (strictly increasing) giving ``rate`` are refused: bunched, or in ms or µs."""
    d = np.diff(t)
    starts = np.flatnonzero(d > 10.0 * np.median(d)) + 1  # the first sample of each bunch (a host's FIFO read)
    if rate > RATE_MAX_HZ and len(starts) >= 2:
        i0, i1 = int(starts[0]), int(starts[-1])
        overall = (i1 - i0) / float(t[i1] - t[i0])  # samples per second over whole reads
        if RATE_MIN_HZ * 0.95 <= overall <= RATE_MAX_HZ * 1.05:
            return (
                f"time stamps are bunched: samples {np.median(d) * 1e6:.0f} µs apart in groups every "
                f"{np.median(np.diff(t[starts])) * 1e3:.0f} ms, about {overall:.0f} Hz overall (a host stamping "
                "a FIFO's samples at read time?): stamp each sample with its own time (the sensor's clock, or "
                "the read time minus its place in the FIFO times the sample period)"
            )
    hint = ""
    for factor, unit in ((1e3, "milliseconds"), (1e6, "microseconds")):
        if RATE_MIN_HZ <= rate * factor <= RATE_MAX_HZ:
            hint = f" (is the t column in {unit}? it must be in seconds)"
    shown = f"{rate:.1f}" if rate >= 10.0 else f"{rate:.3g}"
    return f"sample rate {shown} Hz is outside {RATE_MIN_HZ:.0f}–{RATE_MAX_HZ:.0f} Hz{hint}"


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass
class _Pending:
    """An event waiting for its place in time order (a stride waits for its steadiness)."""

    event: dict
    values: dict | None = None  # a stride's unrounded values (final once released); None for ready events
    gap: tuple[float, float] | None = None  # a gap event: the drift detector hears of it in its place in time


@dataclass
class _StrideJob:
    """A stride whose window is known and whose posture waits for the block's batch (:meth:`Pipeline._value`)."""

    values: dict  # filled in by the batch
    mid: int  # the middle boundary's place in the window
    t: np.ndarray  # views of the buffer, valid until the block's end
    acc: np.ndarray
    q3: np.ndarray
    s: np.ndarray
    tacc: np.ndarray | None = None  # the trunk's, when its figures are taken
    tq3: np.ndarray | None = None
    q_before: np.ndarray | None = None  # the gyro quaternion of the sample before the window (stride_forces)
    tq_before: np.ndarray | None = None
    epoch: int = 0  # the stretch over which the pelvis's gyro frame is continuous (GravityPool)
    tepoch: int = 0  # the trunk's


@dataclass
class _Bout:
    """A stretch of running steps."""

    start_t: float
    last_min: int  # global index of the latest running-step boundary
    last_min_t: float
    unpaired: tuple[int, int] | None = None  # first step of a stride being formed
    unpaired_t: float = 0.0  # its start, between samples
    cadences: deque = field(default_factory=lambda: deque(maxlen=10))


class Pipeline:
    """Feed :class:`firmware_bridge.Block`-like objects; collect event dicts.

    ``calibration``: a saved :class:`Calibration` used instead of the routine.
    ``strict_calibration``: raise :class:`CalibrationError` when the routine is
    not found within ``calibration.search_s`` (offline analysis); live, the
    search simply goes on.
    """

    def __init__(
        self,
        params: PipelineParams | None = None,
        calibration: Calibration | None = None,
        strict_calibration: bool = True,
        provisional: bool = False,
        cue_plan: CuePlan | None = None,
    ) -> None:
        self.p = params or PipelineParams()
        # which alerts are cued (their "cue" mark): the session's fading stage, a replay's stored snoozes
        self.cues = CuePolicy(self.p.cue, cue_plan or CuePlan())
        self.snooze_pending: tuple[float, str | None] | None = None  # asked before the first sample: (s, from)
        self.provisional = provisional  # also emit each stride's preview as soon as it is valued
        self.saved = calibration
        # a saved calibration skips the routine and its unit check: the data's units are checked on their own
        self.units = UnitsCheck(self.p.calibration) if calibration is not None else None
        self.strict_calibration = strict_calibration
        self.trunk: bool | None = None
        self.ts: float | None = None  # nominal sample period (gap detection)
        self.n = 0  # global index of the next sample
        self.t_prev: float | None = None
        self.t_first: float | None = None
        self.probe: list[tuple] = []  # blocks held until the period is known
        self.search: CalibrationSearch | None = None
        self.cal: Calibration | None = None
        self.running = False
        self.pending: deque[_Pending] = deque()
        self.bout: _Bout | None = None
        self.last_min: tuple[int, float, float] | None = None  # previous boundary: index, g, time
        self.drift = DriftDetector(self.p.alerts)
        # each metric's reference: 0 from the standing neutral, a coach's target, or this run's first minutes
        r = self.p.reference
        self.drift.reference = {k: getattr(r, k) for k in REFERENCE_FIELDS if r.source(k) == "targets"}
        self.drift.pending = {k for k in REFERENCE_FIELDS if r.source(k) == "first_minutes"}
        self.ref_strides: list[dict] = []
        self.fwd_errors: deque[float] = deque(maxlen=self.p.calibration_check.strides)
        self.up_errors: deque[float] = deque(maxlen=self.p.calibration_check.strides)
        self.trunk_up_errors: deque[float] = deque(maxlen=self.p.calibration_check.strides)
        self.fore_aft: deque[float] = deque(maxlen=self.p.calibration_check.strides)
        self.suspect = False
        self.stats: dict[str, Any] = {
            "strides": 0,
            "steady": 0,
            "alerts": 0,
            "reminders": 0,
            "gaps": 0,
            "gap_s": 0.0,
            "running_s": 0.0,
            "samples": 0,
            "suspect": 0,
            "calibrations": 0,
            "pauses": 0,
            "paused_s": 0.0,
        }
        self.segment = 0  # the calibration segment searched for or in use (0 for the first)
        self.paused_at: float | None = None  # the pause's start while paused
        self.stopped_at: float | None = None  # running stopped here (a bout's end) and has not started again
        # (global sample index, t0, t1) of pauses whose first sample after them has not been ingested yet
        self.resumes: deque[tuple[int, float, float]] = deque()
        self.recal_search = False  # the search is a re-calibration's: never raises, even when strict
        self.rows = array("d")  # steady stride values for the summary, 7 a stride (compact for hours of running)
        self.finished = False
        self.jobs: list[_StrideJob] = []  # strides of the block being run, valued together at its end
        # while a block runs, the actions that need its strides' values (and everything after them that
        # touches the output or the drift detector), in order; None outside a block: actions run at once
        self.later: list[tuple[Any, tuple]] | None = None
        # the gravity reference pooled over the last strides in each segment's gyro frame (issue 16); a new
        # epoch wherever that frame is not continuous: a gap, a pause, a calibration, a bout's end, and for the
        # trunk a stride without trunk data
        g = self.p.gait
        span = g.gravity_strides * 120.0 / g.min_cadence_spm
        self.pel_pool = GravityPool(g.gravity_strides, span)
        self.tru_pool = GravityPool(g.gravity_strides, span)
        self.epoch = 0
        self.trunk_told: set[str] = set()  # why strides had no trunk figures, as told (once per calibration segment)
        self.tbreaks = 0  # breaks of the trunk's gyro frame (a trunk sample after a hole in the trunk's data)

    # ------------------------------------------------------------------ input
    def feed(self, block: Any) -> list[dict]:
        """Process one block; returns the events now complete, in time order."""
        if self.finished:
            raise PipelineError("pipeline already finished")
        t = np.asarray(block.t, float)
        if len(t) == 0:
            return []
        if self.paused_at is not None:
            raise PipelineError(f"paused at t={self.paused_at:.3f}: resume before feeding samples")
        has_trunk = getattr(block, "trunk_acc", None) is not None
        if self.trunk is None:
            self.trunk = has_trunk
        elif self.trunk != has_trunk:
            raise PipelineError("blocks switch between one and two segments")
        acc = np.asarray(block.acc, float)
        gyr = np.asarray(block.gyr, float)
        if has_trunk:
            tacc = np.asarray(block.trunk_acc, float)
            tgyr = np.asarray(block.trunk_gyr, float)
            tvalid = np.asarray(block.trunk_valid, bool)
        else:
            tacc = tgyr = np.zeros((len(t), 3))
            tvalid = np.zeros(len(t), bool)
        if self.t_first is None:
            self.t_first = float(t[0])
        self.stats["samples"] += len(t)
        out: list[dict] = []
        if self.snooze_pending is not None:  # snoozed before the data began: from its first sample
            (seconds, source), self.snooze_pending = self.snooze_pending, None
            out.extend(self.snooze(float(t[0]), seconds, source))
        if self.ts is None:
            self.probe.append((t, acc, gyr, tacc, tgyr, tvalid))
            if sum(len(b[0]) for b in self.probe) <= _PERIOD_PROBE or t[-1] - self.t_first <= _PERIOD_PROBE_S:
                return out
            parts = [np.concatenate(x) for x in zip(*self.probe, strict=True)]
            self.probe = []
            self._set_period(parts[0])
            t, acc, gyr, tacc, tgyr, tvalid = parts
        self._ingest(t, acc, gyr, tacc, tgyr, tvalid, out)
        return out

    def _set_period(self, t: np.ndarray) -> None:
        # the same samples however the input was split: the first _PERIOD_PROBE + 1, or _PERIOD_PROBE_S if longer
        n = max(_PERIOD_PROBE + 1, int(np.searchsorted(t, t[0] + _PERIOD_PROBE_S, side="right")))
        dt = np.diff(t[:n])
        if np.any(dt <= 0):
            raise PipelineError("timestamps must increase strictly")
        ts = estimate_period(t[:n])
        rate = 1.0 / ts
        if not (RATE_MIN_HZ * 0.95 <= rate <= RATE_MAX_HZ * 1.05):
            raise PipelineError(_rate_problem(t[:n], rate))
        self.ts = ts
        self.search = CalibrationSearch(self.p.calibration, bool(self.trunk))

    def _ingest(self, t, acc, gyr, tacc, tgyr, tvalid, out: list[dict]) -> None:
        assert self.ts is not None
        prev = np.concatenate([[self.t_prev if self.t_prev is not None else t[0]], t[:-1]])
        dt = t - prev
        if np.any(dt[1:] <= 0) or (self.t_prev is not None and dt[0] <= 0):
            bad_rows = np.flatnonzero(dt <= 0) if self.t_prev is not None else np.flatnonzero(dt[1:] <= 0) + 1
            bad = int(bad_rows[0])
            raise PipelineError(f"timestamps must increase strictly (t={t[bad]:.6f} after {prev[bad]:.6f})")
        # a pause ends where the first sample after it is, however the input was split (its global index)
        resumes = {k - self.n: (t0, t1) for k, t0, t1 in self.resumes if self.n <= k < self.n + len(t)}
        while self.resumes and self.resumes[0][0] < self.n + len(t):
            self.resumes.popleft()
        gaps = set(np.flatnonzero(dt > GAP_PERIODS * self.ts).tolist())
        cuts = [0, *sorted((gaps | set(resumes)) - {0}), len(t)]
        for a, b in itertools.pairwise(cuts):
            if a == b:
                continue
            if a in resumes:
                self._restart_at(self.n)
            elif a > 0 or (self.t_prev is not None and dt[0] > GAP_PERIODS * self.ts):
                self._gap(float(prev[a]), float(t[a]), out)
            self._stretch(t[a:b], acc[a:b], gyr[a:b], tacc[a:b], tgyr[a:b], tvalid[a:b], out)
            self.t_prev = float(t[b - 1])

    # ------------------------------------------------------------------ phases
    def _stretch(self, t, acc, gyr, tacc, tgyr, tvalid, out: list[dict]) -> None:
        """A gap-free run of samples."""
        if self.units is not None:
            problem = self.units.feed(t, acc, gyr)
            if problem:
                raise CalibrationError(f"the saved calibration cannot be used: {problem}")
        g0 = self.n
        self.n += len(t)
        if self.running:
            self._run(t, acc, gyr, tacc, tgyr, tvalid, g0, out)
            return
        if self.saved is not None:
            self._start(self.saved, t, acc, gyr, tacc, tgyr, tvalid, g0, out)
            return
        assert self.search is not None
        events, cal, start = self.search.feed(t, acc, gyr, tacc, tgyr, tvalid)
        out.extend({**e, "segment": self.segment} for e in events)
        if cal is not None:
            s = self.search
            lo = start - s.base
            self._start(
                cal,
                s.t[lo:],
                s.acc[lo:],
                s.gyr[lo:],
                s.tacc[lo:] if self.trunk else np.zeros((len(s.t) - lo, 3)),
                s.tgyr[lo:] if self.trunk else np.zeros((len(s.t) - lo, 3)),
                s.tvalid[lo:] if self.trunk else np.zeros(len(s.t) - lo, bool),
                start,
                out,
            )
            self.search = None
            return
        if self.strict_calibration and self.p.calibration.search_s > 0 and not self.recal_search:
            if t[-1] - (self.t_first or 0.0) > self.p.calibration.search_s:
                raise self.search.refusal()

    def _start(self, cal: Calibration, t, acc, gyr, tacc, tgyr, tvalid, g0: int, out: list[dict]) -> None:
        assert self.ts is not None
        self.cal = cal
        if cal.source == "saved":
            no_trunk = "the saved calibration has no trunk segment: no trunk figures" if self.trunk else None
            trunk_reason = no_trunk if cal.trunk is None else None
            cal = Calibration(
                cal.pelvis, cal.trunk if self.trunk else None, t=float(t[0]), source="saved", trunk_reason=trunk_reason
            )
            self.cal = cal
        out.append({**cal.to_event(), "segment": self.segment})
        self.stats["calibrations"] += 1
        if self.stats["calibrations"] == 1:  # what each metric is measured from, from the start of the run
            out.append(self._reference_event(cal.t, self.p.reference.mode, {}, "start"))
        self.recal_search = False
        # the filter's period: mean over the stretch the routine came from, robust to drops and jitter
        ts = self.ts
        if self.search is not None and self.search.period_s is not None:
            ts = self.search.period_s
        self.ts_filter = ts
        op = self.p.orientation
        self.pel = SegmentOrientation(ts, cal.pelvis, op)
        self.tru = SegmentOrientation(ts, cal.trunk, op) if (self.trunk and cal.trunk) else None
        self.steps = StepDetector(ts, self.p.gait)
        self.steps.reset(g0)
        self._new_epoch()
        self.buf_base = g0
        self.buf: dict[str, np.ndarray] = {}
        self.running = True
        self._run(t, acc, gyr, tacc, tgyr, tvalid, g0, out)

    # ------------------------------------------------------------------ running
    def _append(self, cols: dict[str, np.ndarray]) -> None:
        if not self.buf:
            self.buf = {k: v.copy() for k, v in cols.items()}
        else:
            self.buf = {k: np.concatenate([self.buf[k], cols[k]]) for k in self.buf}

    def _trim(self, keep_from: int) -> None:
        cut = keep_from - self.buf_base
        if cut > 2048:
            self.buf = {k: v[cut:] for k, v in self.buf.items()}
            self.buf_base = keep_from

    def _do(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` now, or after the block's strides are valued if a block is running."""
        if self.later is None:
            fn(*args)
        else:
            self.later.append((fn, args))

    def _run(self, t, acc, gyr, tacc, tgyr, tvalid, g0: int, out: list[dict]) -> None:
        """A gap-free stretch while running: boundaries and strides now, their posture in one batch at the end.

        The posture of every stride the stretch closes is computed together (:func:`segment_strides`), then
        the actions held meanwhile (finalising strides, drift updates, events) run in their order: the
        events are those of computing each stride at once, for any split (a block of one stride is a batch
        of one).
        """
        self.later = []
        try:
            self._run_block(t, acc, gyr, tacc, tgyr, tvalid, g0, out)
            self._value(self.jobs)
            if self.provisional:  # the preview goes out now, before the steadiness wait (docs/formats.md)
                out.extend(self._preview(job.values, float(t[-1])) for job in self.jobs)
        finally:
            self.jobs, later, self.later = [], self.later, None
        for fn, args in later:
            fn(*args)
        # a boundary not yet found can lie as early as the detector's next candidate, and its time
        # interpolation needs the sample before it
        keep = min(self.n - 1, self.steps.next_eval - self.steps.delay - 1)
        if self.last_min is not None:
            keep = min(keep, self.last_min[0])
        if self.bout is not None and self.bout.unpaired is not None:
            keep = min(keep, self.bout.unpaired[0])
        self._trim(keep - 2)

    def _run_block(self, t, acc, gyr, tacc, tgyr, tvalid, g0: int, out: list[dict]) -> None:
        n = len(t)
        po = self.pel.update(t, acc, gyr)
        cols = {"t": t, "acc": acc, "q3": po.q3, "s": np.linalg.norm(acc, axis=1) / GRAVITY}
        if self.tru is not None:
            q3t = np.full((n, 4), np.nan)
            tbreak = np.zeros(n, bool)
            idx = np.flatnonzero(tvalid)
            if len(idx):
                # a break: the first trunk sample after a hole in the trunk's data (over GAP_PERIODS periods), or
                # after a restart; not the orientation's zero-period samples, which a host's jitter also makes
                # (at 1000 Hz, 0.3 ms of it: every stride lost its trunk figures, issue 16)
                ti = t[idx]
                before = self.tru.t_last if self.tru.t_last is not None else np.nan
                gaps = np.diff(ti, prepend=before)
                tbreak[idx] = ~(gaps <= GAP_PERIODS * self.tru.ts)
                to = self.tru.update(ti, tacc[idx], tgyr[idx])
                q3t[idx] = to.q3
            tbreaks = self.tbreaks + np.cumsum(tbreak)  # trunk breaks so far, at each sample
            self.tbreaks = int(tbreaks[-1]) if n else self.tbreaks
            cols.update({"tacc": tacc, "tq3": q3t, "tvalid": tvalid.copy(), "tbreak": tbreak, "tbreaks": tbreaks})
        self._append(cols)
        minima, upto = self.steps.feed(cols["s"])
        timeout = 1.5 * 60.0 / self.p.gait.min_cadence_spm
        for idx, yv, peak, frac in minima:
            b = self.bout
            if b is not None and self._t(idx) - b.last_min_t > timeout:
                self._end_bout(b.last_min_t, b.last_min_t + timeout, out)
            self._boundary(idx, yv, peak, frac, out)
        b = self.bout
        if b is not None and self.buf_base <= upto < self.n and self._t(upto) - b.last_min_t > timeout:
            self._end_bout(b.last_min_t, b.last_min_t + timeout, out)

    def _t(self, g: int) -> float:
        return float(self.buf["t"][g - self.buf_base])

    def _tfrac(self, g: int, frac: float) -> float:
        """Time of a boundary between samples (sub-sample interpolation)."""
        t = self.buf["t"]
        i = g - self.buf_base
        j = min(max(i + (1 if frac >= 0 else -1), 0), len(t) - 1)
        return float(t[i] + abs(frac) * (t[j] - t[i]))

    def _boundary(self, idx: int, yv: float, peak: float | None, frac: float, out: list[dict]) -> None:
        """A new mid-flight boundary: the step since the previous one is complete."""
        prev = self.last_min
        tb = self._tfrac(idx, frac)
        self.last_min = (idx, yv, tb)
        if prev is None or peak is None:
            return
        a = prev[0]
        ta = prev[2]
        dur = tb - ta
        gp = self.p.gait
        cadence = 60.0 / dur
        amplitude = peak - max(prev[1], yv)
        running = amplitude >= gp.run_min_amplitude_g and gp.min_cadence_spm <= cadence <= gp.max_cadence_spm
        if not running:
            if self.bout is not None:
                self._end_bout(self.bout.last_min_t, tb, out)
            return
        if self.bout is None:
            if self.stopped_at is not None:  # not running since: no data for the drifts, as a gap is
                self._do(self._drift_gap, out, self.stopped_at, ta, "stop")
                self.stopped_at = None
            self.bout = _Bout(start_t=ta, last_min=idx, last_min_t=tb)
        bout = self.bout
        bout.last_min, bout.last_min_t = idx, tb
        self._release(out, proven_t=tb)
        if bout.unpaired is None or bout.unpaired[1] != a:
            bout.unpaired = (a, idx)
            bout.unpaired_t = ta
            return
        first = bout.unpaired
        bout.unpaired = None
        self._stride(first[0], a, idx, bout.unpaired_t, tb, out)

    def _stride(self, a: int, b: int, c: int, ta: float, tc: float, out: list[dict]) -> None:
        """The stride from boundary ``a`` over ``b`` to ``c`` (global indices): queued; valued at the block's end."""
        assert self.cal is not None
        lo, hi = a - self.buf_base, c - self.buf_base + 1
        buf = self.buf
        t = buf["t"][lo:hi]
        # a stride while speeding up (as "steady" judges it) carries a mean acceleration no pooling cancels: it is
        # pooled with no other stride
        speeding_up = self.bout is not None and ta - self.bout.start_t < self.p.steady.after_start_s
        if speeding_up:
            self._new_epoch()
        job = _StrideJob({}, b - a, t, buf["acc"][lo:hi], buf["q3"][lo:hi], buf["s"][lo:hi], epoch=self.epoch)
        # the sample before the window (itself if the buffer starts there: after a gap or a restart VQF turned
        # nothing at the window's first sample, so either is the frame there)
        job.q_before = buf["q3"][max(lo - 1, 0)]
        if self.tru is not None and self.cal.trunk is not None:
            if buf["tvalid"][lo:hi].all() and not buf["tbreak"][lo + 1 : hi].any():
                job.tacc, job.tq3 = buf["tacc"][lo:hi], buf["tq3"][lo:hi]
                whole = lo > 0 and buf["tvalid"][lo - 1] and not buf["tbreak"][lo]
                job.tq_before = buf["tq3"][lo - 1 if whole else lo]
            else:
                job.values["trunk_missing"] = TRUNK_HOLE
            # the trunk's frame is continuous between strides of one pelvis epoch with no trunk break between
            job.tepoch = (self.epoch << 32) + int(buf["tbreaks"][hi - 1])
        if speeding_up:
            self._new_epoch()
        job.values.update(
            t_start=float(t[0]), t_end=float(t[-1]), cadence_spm=120.0 / (tc - ta), cal_segment=self.segment
        )
        self.jobs.append(job)
        self.pending.append(_Pending({"type": "stride"}, job.values))

    def _value(self, jobs: list[_StrideJob]) -> None:
        """Posture figures of the queued strides: windows of one length (with or without trunk figures) go in one
        batch; between the two halves, each stride's gravity reference is pooled with the strides before it in
        time order (:class:`GravityPool`)."""
        assert self.cal is not None
        if not jobs:
            return
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((len(job.t), job.tacc is not None), []).append(i)
        pel_f = np.zeros((len(jobs), 3))
        tru_f = np.zeros((len(jobs), 3))
        staged = []
        pel_off = self.cal.pelvis.acc_offset(GRAVITY)
        tru_off = self.cal.trunk.acc_offset(GRAVITY) if self.cal.trunk is not None else None
        for (_n, with_trunk), idx in groups.items():
            group = [jobs[i] for i in idx]
            t = np.stack([j.t for j in group])
            w = time_weights(t)
            q3 = np.stack([j.q3 for j in group])
            pf = stride_forces(np.stack([j.acc for j in group]), q3, w, pel_off, np.stack([j.q_before for j in group]))
            pel_f[idx] = pf.sum_f
            tf = None
            if with_trunk:
                tacc = np.stack([j.tacc for j in group])  # type: ignore[misc]
                tq3 = np.stack([j.tq3 for j in group])  # type: ignore[misc]
                tqb = np.stack([j.tq_before for j in group])  # type: ignore[misc]
                tf = stride_forces(tacc, tq3, w, tru_off, tqb)
                tru_f[idx] = tf.sum_f
            staged.append((idx, group, t, w, pf, tf))
        t_end = np.array([j.values["t_end"] for j in jobs])
        pel_up = self.pel_pool.pool(pel_f, t_end, np.array([j.epoch for j in jobs]))
        has_t = np.array([j.tacc is not None for j in jobs])
        tru_up = np.zeros((len(jobs), 3))
        if has_t.any():
            tepochs = np.array([j.tepoch for j in jobs])[has_t]
            tru_up[has_t] = self.tru_pool.pool(tru_f[has_t], t_end[has_t], tepochs)
        for idx, group, t, w, pf, tf in staged:
            pel = segment_strides(t, None, None, self.cal.pelvis.body_from_sensor, w, pel_up[idx], pf)
            tru = None
            if tf is not None:
                assert self.cal.trunk is not None
                tru = segment_strides(t, None, None, self.cal.trunk.body_from_sensor, w, tru_up[idx], tf)
            for k, job in enumerate(group):
                self._stride_values(job, k, t[k], w[k], pel, tru)

    def _new_epoch(self) -> None:
        """The gyro frames are not continuous from here: no stride before pools its gravity with one after."""
        self.epoch += 1

    def _stride_values(
        self, job: _StrideJob, k: int, t: np.ndarray, w: np.ndarray, pel: SegmentStrides, tru: SegmentStrides | None
    ) -> None:
        """Fill ``job.values`` from row ``k`` of the batch's pelvis (and trunk) figures."""
        mid = job.mid
        gp = self.p.gait
        obl = pel.obliquity[k]
        w1, w2 = w[: mid + 1], w[mid:]
        o1 = float((w1 * obl[: mid + 1]).sum() / w1.sum())
        o2 = float((w2 * obl[mid:]).sum() / w2.sum())
        drop_l = drop_r = ct_l = ct_r = None
        if abs(o1 - o2) >= gp.side_min_obliquity_deg:
            left_first = o1 > o2
            s = job.s
            c1 = contact_time(t[: mid + 1], s[: mid + 1], gp.contact_threshold_g)
            c2 = contact_time(t[mid:], s[mid:], gp.contact_threshold_g)
            d1 = float(obl[: mid + 1].max() if left_first else -obl[: mid + 1].min())
            d2 = float(-obl[mid:].min() if left_first else obl[mid:].max())
            drop_l, drop_r = (d1, d2) if left_first else (d2, d1)
            ct_l, ct_r = (c1, c2) if left_first else (c2, c1)
        lean = stack = trunk_up = None
        tilt = float(pel.tilt_mean[k])
        if tru is not None:
            lean = float(tru.tilt_mean[k])
            trunk_up = float(tru.up_error_deg[k])
            stack = lean - tilt
        head = pel.heading[k]
        job.values.update(
            {
                "pelvic_tilt_deg": tilt,
                "pelvic_obliquity_range_deg": float(obl.max() - obl.min()),
                "pelvic_rotation_range_deg": float(head.max() - head.min()),
                "trunk_lean_deg": lean,
                "stack_deg": stack,
                "pelvic_drop_left_deg": drop_l,
                "pelvic_drop_right_deg": drop_r,
                "pelvic_drop_deg": None if drop_l is None else max(drop_l, drop_r),  # type: ignore[type-var]
                "contact_time_left_s": ct_l,
                "contact_time_right_s": ct_r,
                "forward_axis_error_deg": float(pel.forward_axis_error_deg[k]),
                # how far the stride's mean up is from the body's z (the calibration check; not printed)
                "up_error_deg": float(pel.up_error_deg[k]),
                "fore_aft_sin": float(pel.fore_aft_sin[k]),
                "horizontal_acc": float(pel.horizontal_acc[k]),
                "trunk_up_error_deg": trunk_up,
            }
        )

    def _preview(self, v: dict, decided_t: float) -> dict:
        """A ``stride_provisional`` event: the stride's figures as soon as they are known (at ``decided_t``, the
        last sample fed), with each metric's deviation from the reference in force (None while it has none).

        The final ``stride`` follows once its steadiness is known; its figures are these (the same values)."""
        dev: dict[str, float | None] = {}
        for k in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"):
            x = v[k]
            dev[k] = None if x is None or k in self.drift.pending else _r(x - self.drift.reference.get(k, 0.0))
        return {
            "type": "stride_provisional",
            "t_start": _r(v["t_start"], 4),
            "t_end": _r(v["t_end"], 4),
            "cadence_spm": _r(v["cadence_spm"], 1),
            "pelvic_tilt_deg": _r(v["pelvic_tilt_deg"]),
            "trunk_lean_deg": _r(v["trunk_lean_deg"]),
            "stack_deg": _r(v["stack_deg"]),
            "pelvic_drop_deg": _r(v["pelvic_drop_deg"]),
            "deviation_deg": dev,
            "decided_t": _r(decided_t, 4),
        }

    def _end_bout(self, end_t: float, decided_t: float, out: list[dict]) -> None:
        """Running stopped (or a long gap): strides near the end are unsteady; counting restarts."""
        bout = self.bout
        self.bout = None
        if bout is None:
            return
        self._release(out, bout=bout, end_t=end_t, decided_t=decided_t)
        self._do(self.drift.restart_confirmation)
        self.stopped_at = end_t
        self._new_epoch()

    def _release(
        self,
        out: list[dict],
        proven_t: float | None = None,
        bout: _Bout | None = None,
        end_t: float | None = None,
        decided_t: float | None = None,
    ) -> None:
        """Finalise strides whose steadiness is known; emit everything ready in order.

        A stride is known steady-at-its-end once running has gone on for
        ``before_stop_s`` past it (a running step boundary at ``proven_t``),
        or known to end a bout (``end_t``). Both are facts of the data, not
        of when a block happened to arrive.
        """
        sp = self.p.steady
        bout = bout or self.bout
        while self.pending:
            item = self.pending[0]
            if item.values is not None:
                v = item.values
                if end_t is None:
                    if proven_t is None or proven_t < v["t_end"] + sp.before_stop_s:
                        break
                    dec = proven_t
                else:
                    dec = decided_t if decided_t is not None else end_t
                self._do(self._finalise, item, bout, end_t, dec, out)
            self.pending.popleft()
            if item.gap is not None:
                self._do(self._drift_gap, out, *item.gap)
            if item.values is None:
                self._do(out.append, item.event)

    def _drift_gap(self, out: list[dict], t0: float, t1: float, reason: str = "gap") -> None:
        out.extend(self.drift.gap(t0, t1, reason=reason))

    def _finalise(
        self, item: _Pending, bout: _Bout | None, end_t: float | None, decided_t: float, out: list[dict]
    ) -> None:
        v = item.values
        assert v is not None
        sp = self.p.steady
        steady = True
        if bout is not None:
            if v["t_start"] - bout.start_t < sp.after_start_s:
                steady = False
            hist = list(bout.cadences)[-sp.cadence_history_strides :]
            if hist:
                med = median(hist)
                if abs(v["cadence_spm"] / med - 1.0) * 100.0 > sp.cadence_change_pct:
                    steady = False
            bout.cadences.append(v["cadence_spm"])
        if v.get("horizontal_acc", 0.0) > sp.max_accel_m_s2:  # speeding up or slowing down, measured
            steady = False
        if end_t is not None and end_t - v["t_end"] < sp.before_stop_s:
            steady = False
        v["steady"] = steady
        ev = {
            "type": "stride",
            "t_start": _r(v["t_start"], 4),
            "t_end": _r(v["t_end"], 4),
            "cadence_spm": _r(v["cadence_spm"], 1),
            "steady": steady,
        }
        for k in (
            "pelvic_tilt_deg",
            "pelvic_obliquity_range_deg",
            "pelvic_rotation_range_deg",
            "trunk_lean_deg",
            "stack_deg",
            "pelvic_drop_left_deg",
            "pelvic_drop_right_deg",
        ):
            ev[k] = _r(v[k])
        ev["contact_time_left_s"] = _r(v["contact_time_left_s"], 3)
        ev["contact_time_right_s"] = _r(v["contact_time_right_s"], 3)
        ev["forward_axis_error_deg"] = _r(v["forward_axis_error_deg"], 1)
        ev["cal_segment"] = v["cal_segment"]
        out.append(ev)
        why = v.get("trunk_missing")
        if why is not None and why not in self.trunk_told:  # the runner hears why once, never a silent "no data"
            self.trunk_told.add(why)
            out.append({"type": "trunk_missing", "t": _r(v["t_end"], 4), "segment": v["cal_segment"], "reason": why})
        st = self.stats
        st["strides"] += 1
        st["running_s"] += v["t_end"] - v["t_start"]
        if not steady:
            return
        st["steady"] += 1
        self.rows.extend(
            np.nan if x is None else x
            for x in (
                v["t_end"] - v["t_start"],
                v["cadence_spm"],
                v["pelvic_tilt_deg"],
                v["trunk_lean_deg"],
                v["stack_deg"],
                v["pelvic_obliquity_range_deg"],
                v["pelvic_rotation_range_deg"],
            )
        )
        self._check_forward(v, out)
        self.cues.observe(v)
        if self.drift.pending:  # its metrics' kinds wait for the baseline; the others are watched meanwhile
            self._collect_reference(v, out)
        for e in self.drift.update(v, v["t_end"], decided_t):
            st["reminders" if e.get("reminder") else "alerts"] += 1 if e["type"] == "alert" else 0
            out.append(self.cues.mark(e) if e["type"] == "alert" else e)

    def _collect_reference(self, v: dict, out: list[dict]) -> None:
        """A steady stride of the baseline; once it spans ``first_minutes`` of running, the median of each
        metric that waits for it becomes its reference (a metric with no values then, no trunk: stays 0)."""
        self.ref_strides.append({k: v[k] for k in ("t_start", "t_end", *REFERENCE_FIELDS)})
        span = sum(s["t_end"] - s["t_start"] for s in self.ref_strides)
        if span < 60.0 * self.p.reference.first_minutes:
            return
        ref: dict[str, float] = {}
        for k in sorted(self.drift.pending, key=REFERENCE_FIELDS.index):
            vals = [s[k] for s in self.ref_strides if s[k] is not None]
            if vals:
                ref[k] = float(np.median(vals))
        self.drift.reference.update(ref)
        self.drift.pending = set()
        self.ref_strides = []
        out.append(
            self._reference_event(v["t_end"], "first_minutes", {k: _r(x) for k, x in ref.items()}, "first_minutes")
        )

    def _reference_event(self, t: float, mode: str, flat: dict, set_by: str) -> dict:
        """A ``reference`` event: each metric's source and value now (None while its baseline is collected).

        ``set`` says what made it: ``start`` (the first calibration) or ``first_minutes`` (the baseline is
        complete; ``mode`` and the flat ``<metric>_deg`` keys are kept as they were before metrics had sources).
        """
        r = self.p.reference
        metrics = {
            k: {
                "from": r.source(k),
                "value": None if k in self.drift.pending else _r(self.drift.reference.get(k, 0.0)),
            }
            for k in REFERENCE_FIELDS
        }
        return {"type": "reference", "t": _r(t, 4), "set": set_by, "mode": mode, **flat, "metrics": metrics}

    def _check_forward(self, v: dict, out: list[dict]) -> None:
        cp = self.p.calibration_check
        self.fwd_errors.append(v["forward_axis_error_deg"])
        self.up_errors.append(v["up_error_deg"])
        if v.get("trunk_up_error_deg") is not None:
            self.trunk_up_errors.append(v["trunk_up_error_deg"])
        self.fore_aft.append(v["fore_aft_sin"])
        if len(self.fwd_errors) < cp.strides:
            return
        med = median(self.fwd_errors)
        up = median(self.up_errors)
        # the trunk is checked like the pelvis, once it has as many strides with trunk figures
        tup = median(self.trunk_up_errors) if len(self.trunk_up_errors) >= cp.strides else 0.0
        back = median(self.fore_aft) > FORE_AFT_REVERSED_SIN  # braking comes after propulsion
        if not self.suspect and (med > cp.forward_axis_max_deg or max(up, tup) > cp.up_max_deg or back):
            self.suspect = True
            self.stats["suspect"] += 1
            if med > cp.forward_axis_max_deg:
                reason = (
                    "the forward axis disagrees with the running accelerations: has the belt slipped? calibrate again"
                )
            elif max(up, tup) <= cp.up_max_deg:
                reason = (
                    "the forward axis points backwards (braking follows the push-off): the sensor is turned round "
                    "against the calibration (saved from another mounting?): calibrate again"
                )
            else:
                seg, off = ("pelvis", up) if up > cp.up_max_deg else ("trunk", tup)
                reason = (
                    f"the {seg} reads {off:.0f}° off upright while running: the calibration does not fit this "
                    "mounting (saved from another mounting, or the belt slipped?): calibrate again"
                )
            ev = {"type": "calibration_suspect", "t": _r(v["t_end"], 4), "forward_axis_error_deg": _r(med, 1)}
            if up > cp.up_max_deg:
                ev["up_error_deg"] = _r(up, 1)
            if tup > cp.up_max_deg:
                ev["trunk_up_error_deg"] = _r(tup, 1)
            if back:
                ev["forward_reversed"] = True
            ev["reason"] = reason
            out.append(ev)
        elif self.suspect and med < cp.forward_axis_max_deg / 2 and max(up, tup) < cp.up_max_deg / 2 and not back:
            self.suspect = False

    def _gap(self, t0: float, t1: float, out: list[dict]) -> None:
        self.stats["gaps"] += 1
        self.stats["gap_s"] += t1 - t0
        g = self.n
        if self.running:
            if self.bout is not None and t1 - t0 > LONG_GAP_S:
                self._end_bout(self.bout.last_min_t, t0, out)
            elif self.bout is not None:
                self.bout.unpaired = None
                self.bout.last_min_t = t1 + self.steps.ntaps * self.ts_filter  # the filter warms up again
        self._restart_at(g)
        ev = {"type": "gap", "t_start": _r(t0, 4), "t_end": _r(t1, 4)}
        if self.pending:
            self.pending.append(_Pending(ev, gap=(t0, t1)))
        else:
            out.extend(self.drift.gap(t0, t1))
            out.append(ev)

    # ------------------------------------------------------------------ controls
    def pause(self, t: float) -> list[dict]:
        """The run pauses at ``t`` (the time of the last sample fed): no samples come until :meth:`resume`.

        The bout ends here (no stride spans a pause), so every stride waiting for its steadiness is decided
        now; returns those and the ``pause`` event. A second pause while paused is a no-op. A ``t`` before the
        last sample fed is taken as that sample's time (the data already analysed cannot be unsaid).
        """
        if self.finished:
            raise PipelineError("pipeline already finished")
        if self.paused_at is not None:
            return []
        t = self._not_before_data(t)
        out: list[dict] = []
        self._close_bout(t, out)
        self.paused_at = t
        self.stats["pauses"] += 1
        out.append({"type": "pause", "t": _r(t, 4), "state": "paused"})
        return out

    def resume(self, t: float) -> list[dict]:
        """The run goes on at ``t`` (no later than the first sample fed after it); returns the ``resumed`` event.

        The time since the pause is no data (not a gap): out of the running time and the time in alert, and
        a pause longer than the quiet time ends every drift, as a long gap does. A resume while not paused
        is a no-op.
        """
        if self.finished:
            raise PipelineError("pipeline already finished")
        if self.paused_at is None:
            return []
        t0, t1 = self.paused_at, max(float(t), self.paused_at)
        self.paused_at = None
        self.stats["paused_s"] += t1 - t0
        self.resumes.append((self.stats["samples"], t0, t1))
        out = self.drift.gap(t0, t1, reason="pause")
        out.append({"type": "pause", "t": _r(t1, 4), "state": "resumed", "paused_s": _r(t1 - t0, 2)})
        return out

    def snooze(self, t: float | None, seconds: float, source: str | None = None) -> list[dict]:
        """The runner snoozes the cues for ``seconds`` from ``t`` (the last sample fed; 0 s: cues back on).

        Alerts decided before the snooze ends are still raised and stored, marked ``cue: false``,
        ``cue_skipped: "snoozed"`` (``dsp.cue_policy``). Returns the ``snooze`` event, which the logbook keeps
        so a replay (``analyze --session``) snoozes at the same samples. Asked before the first sample, it
        starts there (then the event comes with that sample's events).
        """
        if self.finished:
            raise PipelineError("pipeline already finished")
        seconds = max(0.0, float(seconds))
        if self.t_prev is None and self.t_first is None:
            self.snooze_pending = (seconds, source)
            return []
        latest = self.t_prev if self.t_prev is not None else self.t_first
        t = self._not_before_data(latest if t is None else t)
        self.cues.snooze(t, t + seconds)
        ev = {"type": "snooze", "t": _r(t, 4), "until_t": _r(t + seconds, 4), "minutes": _r(seconds / 60.0, 3)}
        if source is not None:
            ev["from"] = source
        return [ev]

    def recalibrate(self, t: float) -> list[dict]:
        """Search for the calibration routine again from the next sample: a new calibration segment.

        The bout ends at ``t`` and every drift with it (the new calibration measures from a new neutral);
        no strides until the routine is accepted, and the old calibration is never fallen back on, so a
        refused routine means no figures until one is accepted (the search never raises, even when strict).
        """
        if self.finished:
            raise PipelineError("pipeline already finished")
        t = self._not_before_data(t)
        if self.paused_at is not None:
            t = max(t, self.paused_at)
        out: list[dict] = []
        if self.ts is None:  # the period is not known yet: the first search has not begun
            self.saved = None
            return out
        self._close_bout(t, out)
        out.extend(self.drift.end_all(t, t, reason="recalibration"))
        if self.running:
            self.segment += 1
        self.running = False
        self.saved = None  # a saved calibration is the first segment's only
        self.last_min = None
        self.search = CalibrationSearch(self.p.calibration, bool(self.trunk))
        self.search.base = self.search.seg_start = self.n
        self.recal_search = self.stats["calibrations"] > 0
        self.fwd_errors.clear()
        self.up_errors.clear()
        self.trunk_up_errors.clear()
        self.fore_aft.clear()
        self.suspect = False
        self.trunk_told.clear()
        return out

    def _not_before_data(self, t: float) -> float:
        t = float(t)
        if not np.isfinite(t):
            raise PipelineError(f"control time {t} is not a number")
        return t if self.t_prev is None else max(t, self.t_prev)

    def _close_bout(self, t: float, out: list[dict]) -> None:
        """End the bout at its last step (decided at ``t``) and decide every stride held."""
        if self.bout is not None:
            self._end_bout(self.bout.last_min_t, t, out)
        if self.pending:
            self._release(out, end_t=t)

    def _restart_at(self, g: int) -> None:
        """Sample ``g`` follows a gap or a pause: nothing before it pairs with what follows.

        The step detector and the orientation filters start again (no step or integration spans the hole);
        before calibration, no routine may span it.
        """
        if self.running:
            self._new_epoch()
            self.steps.reset(g)
            self.last_min = None
            self.pel.t_last = None
            if self.tru is not None:
                self.tru.t_last = None
        elif self.search is not None:
            self.search.reset_at(g)

    # ------------------------------------------------------------------ end
    def finish(self) -> list[dict]:
        """The source has ended: flush held strides and add the summary."""
        if self.finished:
            return []
        out: list[dict] = []
        if self.ts is None and self.probe:
            parts = [np.concatenate(x) for x in zip(*self.probe, strict=True)]
            self.probe = []
            if len(parts[0]) < 2:
                raise PipelineError("too few samples to analyse")
            self._set_period(parts[0])
            self._ingest(*parts, out)
        if not self.running:
            if self.search is None:
                raise PipelineError("no samples")
            if self.strict_calibration and not self.recal_search:
                raise self.search.refusal()
        if self.bout is not None:
            self._end_bout(self.bout.last_min_t, self.t_prev or self.bout.last_min_t, out)
        self._release(out, end_t=self.t_prev or 0.0)
        if self.stopped_at is not None and self.t_prev is not None:  # standing or walking after the last running
            out.extend(self.drift.gap(self.stopped_at, self.t_prev, reason="stop"))
        self.finished = True
        out.append(self.summary())
        return out

    def summary(self) -> dict:
        st = self.stats
        t_end = self.t_prev if self.t_prev is not None else (self.t_first or 0.0)
        rows = np.frombuffer(self.rows, dtype=float).reshape(-1, 7) if len(self.rows) else np.zeros((0, 7))

        def stat(col: int) -> dict | None:
            return describe(rows[:, col], nd=2)

        return {
            "type": "summary",
            "duration_s": _r(t_end - (self.t_first or 0.0), 1),
            "strides": st["strides"],
            "steady_strides": st["steady"],
            "alerts": st["alerts"],
            "reminders": st["reminders"],
            "running_s": _r(st["running_s"], 1),
            "cadence_spm": stat(1),
            "pelvic_tilt_deg": stat(2),
            "trunk_lean_deg": stat(3),
            "stack_deg": stat(4),
            "pelvic_obliquity_range_deg": stat(5),
            "pelvic_rotation_range_deg": stat(6),
            "time_in_alert_s": self.drift.time_in_alert(t_end),
            "gaps": st["gaps"],
            "gap_s": _r(st["gap_s"], 2),
            "samples": st["samples"],
            "calibration_suspect": st["suspect"] > 0,
            "calibrated": self.cal is not None,
            "calibrations": st["calibrations"],
            "pauses": st["pauses"],
            "paused_s": _r(st["paused_s"], 2),
            "cues": self.cues.summary(alert_fraction(self.drift.periods, t_end, self.drift.gaps, st["running_s"])),
        }


def analyse(blocks, params: PipelineParams | None = None, calibration: Calibration | None = None) -> list[dict]:
    """Every event of a whole recording (an iterable of blocks)."""
    pipe = Pipeline(params, calibration)
    events: list[dict] = []
    for block in blocks:
        events.extend(pipe.feed(block))
    events.extend(pipe.finish())
    return events


__all__ = ["CalibrationError", "Pipeline", "analyse"]
