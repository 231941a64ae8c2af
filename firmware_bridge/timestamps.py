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
from dataclasses import dataclass

import numpy as np


class SampleClock:
    """Timestamps for a stream of sample counts read at host times.

    ``nominal_period`` s; ``window_s`` of reads used for the period fit;
    ``max_slew`` is the largest correction per sample, as a fraction of the period.
    ``envelope_fit``: fit the period and the anchor to the lowest read of every second (robustly) instead
    of to all reads by least squares and their minimum (``exact_skips``: the skips come from a sample
    counter, so slopes across them are sound too). Radio delays are one-sided and come in stretches
    (a busy host, retransmissions), which tilt a least-squares fit; the lowest reads are the ones that
    arrived at once; and an index wrong by one (a loss placed wrongly) must not drag the anchor.
    """

    def __init__(
        self,
        nominal_period: float,
        window_s: float = 60.0,
        max_slew: float = 0.02,
        envelope_fit: bool = False,
        exact_skips: bool = False,
    ) -> None:
        self.nominal = nominal_period
        self.period = nominal_period
        self.window_s = window_s
        self.max_slew = max_slew
        self.reads: deque[tuple[int, float]] = deque()
        self.k = 0  # samples stamped so far in this segment
        self.t_last: float | None = None
        self.anchor: float | None = None
        self.refit_every_s = 1.0
        self.envelope_fit = envelope_fit
        self.exact_skips = exact_skips
        self.skips: deque[int] = deque()  # indices where samples were skipped (envelope fit)
        self._t_fit = -float("inf")

    def restart(self) -> None:
        """After lost samples (a FIFO reset): a new segment; the period estimate is kept."""
        self.reads.clear()
        self.skips.clear()
        self.k = 0
        self.t_last = None
        self.anchor = None
        self._t_fit = -float("inf")

    def _envelope(self, ks: np.ndarray, ts: np.ndarray) -> None:
        """Period and anchor from the lowest read (t − k·P) of each second.

        The period is the median slope between the lows of seconds 1–8 s apart with no skip between them:
        a skip decided wrongly shifts the indices after it by whole periods, and a fit across it would
        tilt (and feed back into the next decisions); slopes within loss-free stretches cannot. The
        anchor is the median low of the last ten seconds (one wrong index cannot drag every timestamp).
        """
        r = ts - ks * self.period
        sec = np.floor((ts - ts[0]) / self.refit_every_s).astype(int)
        starts = np.flatnonzero(np.diff(sec, prepend=-1))
        lows = np.array([a + int(np.argmin(r[a:b])) for a, b in zip(starts, [*starts[1:], len(r)], strict=True)])
        kb, tb = ks[lows], ts[lows]
        if len(lows) < 4 or kb[-1] - kb[0] < 50:
            self.anchor = float(np.min(ts - ks * self.period))
            return
        if self.exact_skips:  # every pair of lows (Theil–Sen): long baselines, exact indices
            if len(kb) > 100:  # ~5000 pairs are plenty (and cheap once a second)
                pick = np.linspace(0, len(kb) - 1, 100).round().astype(int)
                kb, tb = kb[pick], tb[pick]
            i, j = np.triu_indices(len(kb), 1)
            sl = (tb[j] - tb[i]) / (kb[j] - kb[i])
            slope = float(np.median(sl))
            if 0.8 * self.nominal < slope < 1.2 * self.nominal:
                self.period = slope
            self.anchor = float(np.median((tb - kb * self.period)[-10:]))
            return
        skips = np.array(self.skips, float) if self.skips else np.zeros(0)
        seg = np.searchsorted(skips, kb, side="right")  # loss-free stretch each low belongs to
        slopes = []
        for lag in range(1, 9):
            same = seg[lag:] == seg[:-lag]
            dk = kb[lag:] - kb[:-lag]
            ok = same & (dk > 0)
            slopes.append((tb[lag:] - tb[:-lag])[ok] / dk[ok])
        sl = np.concatenate(slopes)
        if len(sl) >= 3:
            slope = float(np.median(sl))
            if 0.8 * self.nominal < slope < 1.2 * self.nominal:
                self.period = slope
        self.anchor = float(np.median((tb - kb * self.period)[-10:]))

    def skip(self, n: int) -> None:
        """``n`` samples were lost (a sample counter says so): their indices pass without timestamps.

        The next sample is stamped ``n`` periods further on, so the loss shows as a gap (never filled
        in), and the period fit and the envelope keep counting true sample indices. A negative ``n``
        takes back samples skipped wrongly: the index steps back, the timestamps do not (they slew back).
        """
        if n == 0:
            return
        if self.envelope_fit:
            self.skips.append(self.k)
            while len(self.skips) > 1000:
                self.skips.popleft()
        self.k += n
        if self.t_last is not None and n > 0:
            self.t_last += n * self.period

    def stamp(self, n: int, t_read: float, bound: bool = True) -> np.ndarray:
        """Timestamps of ``n`` new samples, the last of which had arrived by host time ``t_read``.

        ``bound=False``: ``t_read`` is not trusted as a bound (the samples' indices are uncertain, e.g.
        a loss was placed just before them): they are stamped, but the read does not enter the fit.
        """
        if n <= 0:
            if n == 0 and self.t_last is not None and bound:
                self.reads.append((self.k, t_read))
            return np.zeros(0)
        k_end = self.k + n
        if not bound and self.anchor is not None and self.t_last is not None:
            out = self.t_last + np.arange(1, n + 1) * self.period
            self.k = k_end
            self.t_last = float(out[-1])
            return out
        self.reads.append((k_end, t_read))
        while len(self.reads) > 2 and self.reads[-1][1] - self.reads[0][1] > self.window_s:
            self.reads.popleft()
        if self.anchor is None or t_read - self._t_fit >= self.refit_every_s:
            # refit the period and the lower envelope now and then; in between, extend the envelope
            self._t_fit = t_read
            ks = np.array([r[0] for r in self.reads], float)
            ts = np.array([r[1] for r in self.reads], float)
            if self.envelope_fit:
                self._envelope(ks, ts)
            else:
                if len(ks) >= 3 and ks[-1] - ks[0] >= 50:
                    slope = np.polyfit(ks, ts, 1)[0]
                    if 0.8 * self.nominal < slope < 1.2 * self.nominal:
                        self.period = float(slope)
                self.anchor = float(np.min(ts - ks * self.period))  # lower envelope: arrival ≤ read time
        elif not self.envelope_fit:
            self.anchor = min(self.anchor, t_read - k_end * self.period)
        anchor = self.anchor
        target = anchor + np.arange(self.k + 1, k_end + 1) * self.period
        if self.t_last is None:
            out = target
        else:
            steps = np.arange(1, n + 1)
            cont = self.t_last + steps * self.period
            err = target[-1] - cont[-1]
            slew = self.max_slew
            if slew < 0.02 and (len(self.reads) < 2 or self.reads[-1][1] - self.reads[0][1] < 10.0):
                slew = 0.02  # a young segment: its first anchor is rough, let it settle quickly
            limit = slew * self.period * n
            out = cont + np.clip(err, -limit, limit) * steps / n
        self.k = k_end
        self.t_last = float(out[-1])
        return out


@dataclass
class Burst:
    """Samples that reached the host together: ``n`` received, the newest at host time ``t``.

    Once decided: ``lost`` samples went missing just before it; ``sure`` is False when a loss was placed
    before it (its position within a connection event is uncertain, so ``t`` is no bound for the fit).
    """

    n: int
    t: float
    lost: int = 0
    sure: bool = True


class BurstLossDetector:
    """Finds the samples lost from a stream without a sample counter (WitMotion), from arrival times alone.

    Sample i is taken at τ0 + i·P on the sensor's clock and reaches the host in a burst at a connection
    event; the newest sample of a burst has waited little (the sensor sends what it has at each event).
    So r = t_arrival − (true index of the burst's newest sample)·P has a sharp lower envelope. m lost
    samples lift every later r by m·P for good, whereas a late burst (retransmissions, a stall with the
    samples kept in the sensor's queue) lifts only itself. A burst is therefore decided ``delay_s`` after
    it arrived, from the lowest r of the bursts from it to ``delay_s`` later, against the range [lo, hi]
    of r over the last ``envelope_s`` (the sensor's sample phase lies in [hi − P, lo]): the number of
    periods it sits above the midpoint between the no-loss and the one-loss ranges is the number of
    samples lost just before it. The loss cannot be placed more finely than the connection event it
    fell in. When the host hears bursts late (scheduling
    jitter of a few periods, a busy event loop), few bursts sit near the envelope: the wait then grows
    (up to ``max_delay_s``) until about eight on-time bursts are expected in it, so late ones are not
    mistaken for a loss; it also covers one beat of the sample phase against the connection events (see
    ``_wait``). A window cut short, by a clear loss further on or by the end of the stream, holds few bursts
    that may all sit high, so a single lost sample must then be surer: a real one is counted by the later
    loss (placed late rather than invented).

    The first segment is held ``warmup_s`` to estimate P (nominal rates are off by up to a few percent,
    which over a second would look like lost samples): the median slope between the lowest arrivals
    of quarter-second bins. Afterwards the caller keeps ``period`` current from a SampleClock with
    ``envelope_fit`` (fitted within loss-free stretches only, so a wrong decision cannot feed back into
    the period); it is kept over restarts.
    """

    def __init__(
        self,
        nominal_period: float,
        delay_s: float = 0.3,
        envelope_s: float = 3.0,
        warmup_s: float = 4.0,
        max_delay_s: float = 4.0,
    ) -> None:
        self.nominal = nominal_period
        self.period: float | None = None
        self.delay_s, self.envelope_s, self.warmup_s = delay_s, envelope_s, warmup_s
        self.max_delay_s = max_delay_s
        self.wait = delay_s  # the decision delay now in force
        self.pending: deque[Burst] = deque()
        self.env: deque[tuple[float, int]] = deque()  # (t, true index after) of decided sure bursts
        self.index = 0  # true index after the last decided burst (lost samples included)
        self.lost = 0
        self.losses = 0

    def add(self, n: int, t: float) -> None:
        if n > 0:
            self.pending.append(Burst(n, t))

    def restart(self) -> None:
        """A new segment (reconnect): indices start again; the period estimate is kept. Take everything first."""
        self.pending.clear()
        self.env.clear()
        self.index = 0

    def take(self, now: float, flush: bool = False) -> list[Burst]:
        """Bursts decided by host time ``now`` (all of them with ``flush``), in order."""
        if self.period is None:
            if not self.pending or (not flush and self.pending[-1].t - self.pending[0].t < self.warmup_s):
                return []
            self.period = self._warm_up()
        return self._decide(now, flush)

    # ------------------------------------------------------------------ internals
    def _envelope(self, p: float) -> tuple[float, float] | None:
        """(lowest, highest) r = t − index·P of the recent sure bursts.

        Bursts more than P above the lowest are left out: late ones, or ones whose newest samples were
        lost (their index is right but their newest received sample is older). After a loss counted
        wrongly the recent bursts sit a period lower, so the lowest follows them.
        """
        if not self.env:
            return None
        r = [t - i * p for t, i in self.env]
        lo = min(r)
        return lo, max(x for x in r if x < lo + p)

    def _wait(self, p: float) -> float:
        """How long to wait for later bursts: long enough to expect ~8 within P/2 of the envelope, and to
        see one whole beat of the sample phase.

        The newest sample's wait at each connection event drifts by the fraction of a period left over
        from CI/P and wraps: r climbs (or falls) through a whole period once per beat CI / |CI/P − nearest
        integer| (1.25 s for 30 ms events at 200.8 Hz). A window shorter than the beat can lie wholly on the
        beat's high side, which with a little host latency on top looks like one lost sample.
        """
        if len(self.env) < 8:
            return self.delay_s
        r = [t - i * p for t, i in self.env]
        lo = min(r)
        on_time = sum(x < lo + 0.5 * p for x in r)
        t = np.array([t for t, _ in self.env])
        span = max(float(t[-1] - t[0]), 1e-3)
        ci = float(np.median(np.diff(t)))
        off = abs(ci / p - round(ci / p))
        beat = ci / off if off > 1e-9 else np.inf
        return min(self.max_delay_s, max(self.delay_s, 8.0 * span / on_time, min(beat, 0.5 * self.envelope_s)))

    def _decide(self, now: float, flush: bool) -> list[Burst]:
        p = self.period
        assert p is not None
        out: list[Burst] = []
        wait = self.wait = self._wait(p)
        while self.pending:
            b = self.pending[0]
            if not flush and now - b.t < wait:
                break
            env = self._envelope(p)
            lost = 0
            if env is not None:
                # the sensor's sample phase lies in [hi − P, lo]; a burst with m lost samples before it sits
                # m·P higher: decide at the midpoint between the no-loss range and the one-loss range
                lo, hi = env
                theta = min(lo + 0.75 * p, 0.5 * (lo + hi + p))
                ts, ns = [], []
                for c in self.pending:
                    if c.t > b.t + wait:
                        break
                    ts.append(c.t)
                    ns.append(c.n)
                rs = np.array(ts) - (self.index + np.cumsum(ns)) * p
                # later losses only lift later bursts, so the lowest r is the level now; but a clear loss
                # further on (a rise that lasts: one late burst lifts only itself) leaves only the bursts
                # before it, and if they are few they may all sit high (sample phase near its wrap, a
                # latency plateau): the shorter that stretch, the surer a single lost sample must be
                before = np.minimum.accumulate(rs)
                after = np.minimum.accumulate(rs[::-1])[::-1]
                rise = np.flatnonzero(after[1:] > before[:-1] + 1.5 * p)
                end = int(rise[0]) + 1 if len(rise) else len(rs)
                r = float(before[-1])  # the bursts after a rise sit higher: the window's lowest, as always
                doubt = 0.0
                if len(rise) or (flush and len(ts) == len(self.pending)):  # cut by a loss or by the end
                    doubt = p * max(0.0, 1.0 - (ts[end - 1] - b.t) / wait)
                lost = max(0, int(np.ceil((r - theta) / p)))
                if lost == 1 and r - theta < doubt:
                    lost = 0  # a later loss counts it if it was real: placed late rather than invented
            self.pending.popleft()
            b.lost, b.sure = lost, lost == 0
            self.index += lost + b.n
            if lost:
                self.lost += lost
                self.losses += 1
            else:
                self.env.append((b.t, self.index))
                while len(self.env) > 1 and self.env[-1][0] - self.env[0][0] > self.envelope_s:
                    self.env.popleft()
            out.append(b)
        return out

    def _warm_up(self) -> float:
        """P from the held bursts: the median slope between the lowest arrivals of short bins.

        The lowest r = t − k·P of each quarter second is a burst that came at once; slopes between such
        lows 0.25–2 s apart give P. A loss (rare at start) lifts the lows after it, which spoils only the
        slopes across it: the median ignores them. Ramps of the arrival phase (connection events beating
        against the sample clock) average out over the pairs.
        """
        held = list(self.pending)
        t = np.array([b.t for b in held])
        k = np.cumsum([b.n for b in held]).astype(float)
        r = t - k * self.nominal
        bins = np.floor((t - t[0]) / 0.25).astype(int)
        starts = np.flatnonzero(np.diff(bins, prepend=-1))
        lows = np.array([a + int(np.argmin(r[a:b])) for a, b in zip(starts, [*starts[1:], len(r)], strict=True)])
        kb, tb = k[lows], t[lows]
        slopes = np.concatenate(
            [(tb[lag:] - tb[:-lag]) / (kb[lag:] - kb[:-lag]) for lag in range(1, 9) if len(kb) > lag]
        )
        p = float(np.median(slopes)) if len(slopes) >= 3 else self.nominal
        return p if 0.8 * self.nominal < p < 1.2 * self.nominal else self.nominal
