"""Replay of an exchange CSV as a source, so recordings go through the same code path as live data.

Fast mode (``speed=None``) hands over the reader's large chunks for offline analysis. Paced mode cuts
them into blocks of about ``block_s`` of recording time and releases each one no earlier than its
last sample would have arrived live (× ``speed``), to exercise the live service and the cue timing
on a bench.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from stackcue.dsp.params import RATE_MAX_HZ, RATE_MIN_HZ
from stackcue.errors import RecordingError

from .block import Block
from .csv_format import RecordingReader, RowProblem
from .source import Source

#: rows a paced replay (`run`) reads at once: small reads keep the first paced block prompt, and the parse's
#: temporaries small: with the plain-decimal parser, at 10 000 rows the RSS of `run` over a 1-hour replay rose
#: 61 -> 69 MB, at 2 000 61 -> 63 MB (issue 18)
_PACED_CHUNK_ROWS = 2_000
#: rows a fast replay (`analyze`, `import`) hands over at once: the pipeline's working arrays scale with the block,
#: and 50 000 rows took `analyze` of 60 minutes to 122 MB peak RSS, 20 000 to 80 MB, as fast (issue 18); with the
#: plain-decimal parser (csv_format.py: its positions take memory) 20 000 took 83 MB and 10 000 68 MB, as fast
_FAST_CHUNK_ROWS = 10_000
_RATE_PROBE = 64  # intervals the paced replay's rough rate check looks at
_RATE_SLACK = 0.5  # it refuses only rates beyond half the lowest / twice the highest (the pipeline is exact)


class ReplaySource(Source):
    """Replays an exchange CSV: as fast as possible (speed=None) or paced in real time × speed."""

    def __init__(
        self,
        path: str | Path,
        *,
        speed: float | None = None,
        block_s: float = 0.05,
        strict: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        super().__init__()
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"replay speed must be > 0 (None: as fast as possible), got {speed}")
        if not (block_s > 0 and math.isfinite(block_s)):
            raise ValueError(f"replay block_s must be a finite number of seconds > 0 (got {block_s})")
        self.speed = speed
        self.block_s = block_s
        self._clock = clock
        self._sleep = sleep
        chunk_rows = _FAST_CHUNK_ROWS if speed is None else _PACED_CHUNK_ROWS
        self._reader = RecordingReader(path, chunk_rows=chunk_rows, strict=strict)
        self.path = self._reader.path
        self.has_trunk = self._reader.has_trunk
        self.meta = dict(self._reader.meta)
        self._chunks: Iterator[Block] = iter(self._reader)
        self._pending: deque[Block] = deque()  # paced blocks cut from the current chunk, next first
        self._t0: float | None = None  # first sample time
        self._start: float | None = None  # clock reading when the first block was released

    @property
    def problems(self) -> list[RowProblem]:
        """Rows the reader skipped so far (line number and reason)."""
        return self._reader.problems

    @property
    def reader(self) -> RecordingReader:
        """The underlying reader (progress: ``bytes_done`` / ``bytes_total``)."""
        return self._reader

    def _read_block(self) -> Block | None:
        if self.speed is None:
            return next(self._chunks, None)
        if not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._pending = deque(self._cut(chunk))
        block = self._pending.popleft()
        self._wait_for(float(block.t[-1]))
        return block

    def _cut(self, chunk: Block) -> list[Block]:
        """Split a chunk at multiples of ``block_s`` from the first sample (gaps make no empty blocks)."""
        if self._t0 is None:
            self._t0 = float(chunk.t[0])
            self._check_rate(chunk.t[: _RATE_PROBE + 1])
        bins = np.floor((chunk.t - self._t0) / self.block_s)
        edges = np.flatnonzero(np.diff(bins)) + 1
        bounds = [0, *edges.tolist(), len(chunk)]
        return [chunk.slice(a, b) for a, b in itertools.pairwise(bounds)]

    def _check_rate(self, t: np.ndarray) -> None:
        """Refuse time stamps far off any sensor's rate (milliseconds, not seconds) before waiting on them.

        Paced, a file whose t column is in milliseconds would take a thousand times its length to reach the
        pipeline's own (exact) rate check; this rough one from the first intervals says so at the first block.
        """
        d = np.diff(t)
        d = d[d > 0]
        if len(d) < 2:
            return
        rate = 1.0 / float(np.median(d))
        if RATE_MIN_HZ * _RATE_SLACK <= rate <= RATE_MAX_HZ / _RATE_SLACK:
            return
        hint = ""
        if RATE_MIN_HZ <= rate * 1000 <= RATE_MAX_HZ:
            hint = " (is the t column in milliseconds? it must be in seconds)"
        elif RATE_MIN_HZ <= rate / 1000 <= RATE_MAX_HZ:
            hint = " (is the t column in kiloseconds? it must be in seconds)"
        raise RecordingError(
            str(self.path),
            None,
            f"the time stamps give a sample rate of {rate:.3g} Hz, outside {RATE_MIN_HZ:.0f}–{RATE_MAX_HZ:.0f} Hz"
            + hint,
        )

    def _wait_for(self, t_last: float) -> None:
        """Sleep until the sample at ``t_last`` would have arrived live, scaled by speed."""
        assert self._t0 is not None and self.speed is not None
        now = self._clock()
        if self._start is None:
            self._start = now
        delay = self._start + (t_last - self._t0) / self.speed - now
        if delay > 0:
            self._sleep(delay)

    def _close(self) -> None:
        self._reader.close()
        self._pending.clear()
