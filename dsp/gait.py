"""Step boundaries from the pelvis's specific-force norm, block by block.

A linear-phase FIR low-pass (its delay is known exactly, so boundaries are
shifted back onto the real instants) turns each step into one hump; the
troughs between humps fall in mid-flight, an instant that recurs alike every
step. A trough is found at a sample that is the first minimum of the window
±half the shortest step around it; the boundary is the centroid of the trough
within that window (``StepDetector._mid_flight``), since the minimum itself
wanders on a flat flight floor. Both look at a fixed neighbourhood only, so any
block split finds the same boundaries.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .params import GaitParams

#: g above a step's minimum where the two stance flanks bound its flight (the boundary is their midpoint)
MID_FLIGHT_RISE_G = 0.5
#: the trough's depth is taken on a grid this much finer than the samples (linear between them), so that where
#: its edges cross between samples moves the centroid smoothly
_UPSAMPLE = 8
#: blocks up to this many samples are filtered with one running sum over the taps, longer ones tap by tap
_FIR_ACCUMULATE_MAX = 64


def lowpass_fir(numtaps: int, cutoff_hz: float, fs_hz: float) -> np.ndarray:
    """Hamming-windowed sinc low-pass, unit gain at DC: ``scipy.signal.firwin(numtaps, cutoff, fs=fs)``.

    Written out (tests check it equals scipy's) because importing ``scipy.signal`` costs the live
    service about 40 MB of resident memory, a lot on a Pi Zero 2 W, for these few lines.
    """
    fc = cutoff_hz / (fs_hz / 2)
    n = np.arange(numtaps) - (numtaps - 1) / 2
    h = fc * np.sinc(fc * n) * np.hamming(numtaps)
    return h / h.sum()


def fir_stream(b: np.ndarray, history: np.ndarray, x: np.ndarray) -> np.ndarray:
    """FIR output for new samples ``x`` given the previous ``len(b) - 1`` inputs.

    Summed tap by tap, in tap order, so every output is the same ordered sum of the same inputs whatever the
    block split (bit-identical live and offline); equals ``scipy.signal.lfilter(b, 1, …)``. A live block of a
    few samples takes one running sum over all taps at once (``np.add.accumulate`` adds in order, like the
    loop): the loop's one numpy call per tap was the live path's largest cost (issue 18, measured with the
    default 61 taps: 103 µs against 17 µs for a 50 ms block at 200 Hz; even at 64 samples, slower from about
    100); a long block keeps the loop, whose temporaries stay one block long.
    """
    full = np.concatenate([history, x])
    m = len(b) - 1
    if len(x) <= _FIR_ACCUMULATE_MAX:
        rows = sliding_window_view(full, len(x))[::-1]  # row k: full[m - k : m - k + len(x)]
        return np.add.accumulate(b[:, None] * rows, axis=0)[-1]
    y = np.zeros(len(x))
    for k in range(len(b)):
        y += b[k] * full[m - k : m - k + len(x)]
    return y


class StepDetector:
    """Streams ``|acc|/g`` samples; returns step-boundary minima (global index, filtered g)."""

    def __init__(self, ts: float, p: GaitParams) -> None:
        ntaps = round(p.step_filter_taps_s / ts) | 1
        self.b = lowpass_fir(ntaps, p.step_filter_hz, 1.0 / ts)
        self.ntaps = ntaps
        self.delay = (ntaps - 1) // 2
        self.boundary_max_g = p.boundary_max_g
        self.w = max(1, round(60.0 / p.max_cadence_spm / 2 / ts))
        self._coarse = np.arange(2.0 * self.w + 1)
        self._fine = np.linspace(0.0, 2.0 * self.w, 2 * _UPSAMPLE * self.w + 1)
        self.reset(0)

    def reset(self, g: int) -> None:
        """Start a new gap-free stretch at global sample ``g``."""
        self.hist: np.ndarray | None = None  # the last ntaps-1 inputs: the filter's state
        self.y = np.zeros(0)
        self.ybase = g
        self.next_eval = g + self.ntaps - 1 + self.w
        self.prev_i: int | None = None

    def feed(self, s: np.ndarray) -> tuple[list[tuple[int, float, float | None, float]], int]:
        """Filter new samples; returns the new minima and the last signal index evaluated.

        Each minimum is (global signal index, filtered value g, highest filtered
        value since the previous minimum of this stretch or None, sub-sample
        offset of the true minimum in samples from a parabola through three).
        """
        if len(s) == 0:
            return [], self.next_eval - 1 - self.delay
        if self.hist is None:  # as if the first value had always been there (lfilter_zi's steady state)
            self.hist = np.full(self.ntaps - 1, float(s[0]))
        yn = fir_stream(self.b, self.hist, s)
        self.hist = np.concatenate([self.hist, s])[-(self.ntaps - 1) :]
        self.y = np.concatenate([self.y, yn])
        last = self.ybase + len(self.y) - 1
        i0, i1 = self.next_eval, last - self.w
        found: list[tuple[int, float, float | None, float]] = []
        if i1 >= i0:
            seg = self.y[i0 - self.w - self.ybase : i1 + self.w + 1 - self.ybase]
            win = sliding_window_view(seg, 2 * self.w + 1)
            for k in np.flatnonzero(np.argmin(win, axis=1) == self.w):
                if seg[k + self.w] >= self.boundary_max_g:
                    continue  # a dip inside a stance, or standing: not mid-flight
                i = int(i0 + k)
                peak = None
                if self.prev_i is not None:
                    peak = float(self.y[self.prev_i - self.ybase : i + 1 - self.ybase].max())
                y1 = seg[k + self.w]
                at, frac = self._mid_flight(seg[k : k + 2 * self.w + 1], float(y1))
                found.append((i + at - self.delay, float(y1), peak, frac))
                self.prev_i = i
            self.next_eval = i1 + 1
        keep_from = self.next_eval - self.w - 1 - self.ybase
        if self.prev_i is not None:
            keep_from = min(keep_from, self.prev_i - self.ybase)
        if keep_from > 4096:
            self.y = self.y[keep_from:]
            self.ybase += keep_from
        return found, self.next_eval - 1 - self.delay

    def _mid_flight(self, win: np.ndarray, ymin: float) -> tuple[int, float]:
        """Where in ``win`` (the minimum at its centre, ±w samples) the boundary lies: (whole samples from the
        centre, sub-sample fraction in [-0.5, 0.5]).

        The centroid of the flight's trough: of how far the filtered norm dips below ``ymin +
        MID_FLIGHT_RISE_G``. Bounded by the steep flanks of the two stance humps, it stays put where the
        flight's floor is flat and wavy (real pelvis motion at 4.5 m/s: the minimum itself wandered ±60 ms
        within a 0.1 s floor, so stride windows alternated 0.62/0.75 s around true 0.69 s strides); a flank
        cut off by the window's edge loses only its shallow end.
        """
        x = self._fine  # the trough's edges fall between samples
        depth = np.maximum(ymin + MID_FLIGHT_RISE_G - np.interp(x, self._coarse, win), 0.0)
        mid = float(np.dot(depth, x) / depth.sum()) - self.w
        at = int(np.floor(mid + 0.5))
        return at, mid - at
