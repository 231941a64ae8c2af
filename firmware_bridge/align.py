"""Put a second sensor's samples onto the first one's timestamps.

docs/architecture.md ("The Block"): interpolation only between trunk samples at most two
periods apart; elsewhere the rows are marked invalid. Pelvis rows wait (at
most ``hold_s``) for the trunk sample after them, so a trunk that merely
arrives a read later is not counted as lost.
"""

from __future__ import annotations

import numpy as np

from .block import Block


class TrunkAligner:
    """Feed pelvis and trunk blocks as they come; take aligned two-segment blocks out."""

    def __init__(self, trunk_period: float, hold_s: float = 0.1) -> None:
        self.max_span = 2.0 * trunk_period * 1.05
        self.hold_s = hold_s
        self.p_t = np.zeros(0)
        self.p_acc = np.zeros((0, 3))
        self.p_gyr = np.zeros((0, 3))
        self.tr_t = np.zeros(0)
        self.tr_x = np.zeros((0, 6))

    def add_pelvis(self, b: Block) -> None:
        self.p_t = np.concatenate([self.p_t, b.t])
        self.p_acc = np.concatenate([self.p_acc, b.acc])
        self.p_gyr = np.concatenate([self.p_gyr, b.gyr])

    def add_trunk(self, b: Block) -> None:
        self.tr_t = np.concatenate([self.tr_t, b.t])
        self.tr_x = np.concatenate([self.tr_x, np.column_stack([b.acc, b.gyr])])

    def take(self, flush: bool = False) -> Block:
        """Aligned rows that are ready (all of them with ``flush``)."""
        if not len(self.p_t):
            return Block.empty(trunk=True)
        newest_p = self.p_t[-1]
        newest_tr = self.tr_t[-1] if len(self.tr_t) else -np.inf
        ready = (self.p_t <= newest_tr) | (self.p_t <= newest_p - self.hold_s) | flush
        n = int(np.argmin(ready)) if not ready.all() else len(ready)
        t = self.p_t[:n]
        x = np.full((n, 6), np.nan)
        valid = np.zeros(n, bool)
        if n and len(self.tr_t) >= 1:
            j = np.searchsorted(self.tr_t, t, side="right")  # tr_t[j-1] <= t < tr_t[j]
            lo = np.clip(j - 1, 0, len(self.tr_t) - 1)
            hi = np.clip(j, 0, len(self.tr_t) - 1)
            exact = self.tr_t[lo] == t
            span = self.tr_t[hi] - self.tr_t[lo]
            inside = (j >= 1) & (j < len(self.tr_t)) & (span <= self.max_span)
            ok = inside | exact
            w = np.where(span > 0, (t - self.tr_t[lo]) / np.where(span > 0, span, 1.0), 0.0)
            xi = self.tr_x[lo] + (self.tr_x[hi] - self.tr_x[lo]) * w[:, None]
            x[ok] = xi[ok]
            valid = ok
        out = Block(t.copy(), self.p_acc[:n].copy(), self.p_gyr[:n].copy(), x[:, :3].copy(), x[:, 3:].copy(), valid)
        self.p_t, self.p_acc, self.p_gyr = self.p_t[n:], self.p_acc[n:], self.p_gyr[n:]
        if len(self.tr_t) > 2:  # keep the trunk samples the next pelvis rows may still need
            keep = max(0, int(np.searchsorted(self.tr_t, t[-1] if n else -np.inf, side="right")) - 2)
            self.tr_t, self.tr_x = self.tr_t[keep:], self.tr_x[keep:]
        return out
