"""Step boundaries from the pelvis's specific-force norm, block by block.

A linear-phase FIR low-pass (its delay is known exactly, so boundaries are
shifted back onto the real instants) turns each step into one hump; the
minima between humps fall in mid-flight, an instant that recurs alike every
step. A sample is a boundary when it is the first minimum of the window
±half the shortest step around it: a rule that looks at a fixed neighbourhood
only, so any block split finds the same boundaries.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import firwin, lfilter, lfilter_zi

from .params import GaitParams


class StepDetector:
    """Streams ``|acc|/g`` samples; returns step-boundary minima (global index, filtered g)."""

    def __init__(self, ts: float, p: GaitParams) -> None:
        ntaps = round(p.step_filter_taps_s / ts) | 1
        self.b = firwin(ntaps, p.step_filter_hz, fs=1.0 / ts)
        # a = [1, 0]: scipy then runs its sample-by-sample recursion with the state carried exactly, so any
        # block split gives bit-identical output (with a = 1 it convolves per call and adds the state
        # separately, which rounds differently at block edges and can move a step boundary)
        self.a = np.array([1.0, 0.0])
        self.ntaps = ntaps
        self.delay = (ntaps - 1) // 2
        self.boundary_max_g = p.boundary_max_g
        self.w = max(1, round(60.0 / p.max_cadence_spm / 2 / ts))
        self.reset(0)

    def reset(self, g: int) -> None:
        """Start a new gap-free stretch at global sample ``g``."""
        self.zi: np.ndarray | None = None
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
        if self.zi is None:
            self.zi = lfilter_zi(self.b, self.a) * s[0]
        yn, self.zi = lfilter(self.b, self.a, s, zi=self.zi)
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
                y0, y1, y2 = seg[k + self.w - 1], seg[k + self.w], seg[k + self.w + 1]
                curv = y0 - 2 * y1 + y2
                frac = float(np.clip(0.5 * (y0 - y2) / curv, -0.5, 0.5)) if curv > 0 else 0.0
                found.append((i - self.delay, float(y1), peak, frac))
                self.prev_i = i
            self.next_eval = i1 + 1
        keep_from = self.next_eval - self.w - 1 - self.ybase
        if self.prev_i is not None:
            keep_from = min(keep_from, self.prev_i - self.ybase)
        if keep_from > 4096:
            self.y = self.y[keep_from:]
            self.ybase += keep_from
        return found, self.next_eval - 1 - self.delay
