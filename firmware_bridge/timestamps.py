"""Host timestamps for samples that arrive in bursts from a free-running clock.

A sensor's own sample clock is off its nominal rate by up to a few percent,
and the host sees its samples only when it reads them (jittered by the bus
and the scheduler). The period is estimated online from how many samples
have arrived against host time; each sample gets ``anchor + k · period``.
The host read time bounds a sample's arrival from above, so the anchor
follows the lower envelope of (read time − k · period). New timestamps only
slew towards the estimate (never jump), so a long run neither drifts nor
steps.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class SampleClock:
    """Timestamps for a stream of sample counts read at host times.

    ``nominal_period`` s; ``window_s`` of reads used for the period fit;
    ``max_slew`` is the largest correction per sample, as a fraction of the period.
    """

    def __init__(self, nominal_period: float, window_s: float = 60.0, max_slew: float = 0.02) -> None:
        self.nominal = nominal_period
        self.period = nominal_period
        self.window_s = window_s
        self.max_slew = max_slew
        self.reads: deque[tuple[int, float]] = deque()
        self.k = 0  # samples stamped so far in this segment
        self.t_last: float | None = None
        self.anchor: float | None = None
        self.refit_every_s = 1.0
        self._t_fit = -float("inf")

    def restart(self) -> None:
        """After lost samples (a FIFO reset): a new segment; the period estimate is kept."""
        self.reads.clear()
        self.k = 0
        self.t_last = None
        self.anchor = None
        self._t_fit = -float("inf")

    def stamp(self, n: int, t_read: float) -> np.ndarray:
        """Timestamps of ``n`` new samples, the last of which had arrived by host time ``t_read``."""
        if n <= 0:
            if n == 0 and self.t_last is not None:
                self.reads.append((self.k, t_read))
            return np.zeros(0)
        k_end = self.k + n
        self.reads.append((k_end, t_read))
        while len(self.reads) > 2 and self.reads[-1][1] - self.reads[0][1] > self.window_s:
            self.reads.popleft()
        if self.anchor is None or t_read - self._t_fit >= self.refit_every_s:
            # refit the period and the lower envelope now and then; in between, extend the envelope
            self._t_fit = t_read
            ks = np.array([r[0] for r in self.reads], float)
            ts = np.array([r[1] for r in self.reads], float)
            if len(ks) >= 3 and ks[-1] - ks[0] >= 50:
                slope = np.polyfit(ks, ts, 1)[0]
                if 0.8 * self.nominal < slope < 1.2 * self.nominal:
                    self.period = float(slope)
            self.anchor = float(np.min(ts - ks * self.period))  # lower envelope: arrival ≤ read time
        else:
            self.anchor = min(self.anchor, t_read - k_end * self.period)
        anchor = self.anchor
        target = anchor + np.arange(self.k + 1, k_end + 1) * self.period
        if self.t_last is None:
            out = target
        else:
            steps = np.arange(1, n + 1)
            cont = self.t_last + steps * self.period
            err = target[-1] - cont[-1]
            limit = self.max_slew * self.period * n
            out = cont + np.clip(err, -limit, limit) * steps / n
        self.k = k_end
        self.t_last = float(out[-1])
        return out
