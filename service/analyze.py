"""``stackcue analyze``: the live pipeline run over a recording, as fast as it can."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from stackcue.dsp.calibration import Calibration
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import CalibrationError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import RecordingReader

from .config import Config
from .report_text import human_summary

#: show a progress bar for files bigger than this (a few seconds of reading)
PROGRESS_MIN_BYTES = 20_000_000
MAX_PROBLEMS_SHOWN = 20


def load_calibration(path: str | Path) -> Calibration:
    """A saved calibration: a JSON object, or the first calibration line of a JSON-lines file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"{p}: cannot read saved calibration ({exc.strerror})") from None
    try:  # one JSON object (possibly pretty-printed), else JSON lines such as `analyze --jsonl` output
        whole = json.loads(text)
        lines = [json.dumps(whole)]
    except json.JSONDecodeError:
        lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{p}:{n}: not JSON ({exc.msg})") from None
        if isinstance(obj, dict) and obj.get("type", "calibration") == "calibration" and obj.get("ok", True):
            return Calibration.from_event(obj, f"{p}:{n}")
    raise CalibrationError(f"{p}: holds no accepted calibration")


class Progress:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, total: int, stream: IO[str], enabled: bool) -> None:
        self.total, self.stream, self.enabled = max(total, 1), stream, enabled
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        eta = (now - self.t0) * (1 - frac) / frac if frac > 0 else 0
        self.stream.write(f"\ranalysing [{bar:<30}] {frac * 100:5.1f}%  {eta:4.0f} s left ")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()


def analyze_file(
    path: str | Path,
    config: Config,
    *,
    jsonl: bool,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    strict: bool = False,
    calibration: Calibration | None = None,
    progress: bool | None = None,
    on_event: Callable[[dict], None] | None = None,
    on_block: Callable[[Block], None] | None = None,
    on_open: Callable[[dict[str, str]], None] | None = None,
) -> list[dict]:
    """Analyse one recording; prints JSON lines or a summary; returns the events.

    ``on_open`` gets the recording's metadata before anything is read; ``on_event``/``on_block`` see every
    event and every block read (``--save`` hands them to the logbook).
    """
    err = err or sys.stderr
    with RecordingReader(path, strict=strict) as reader:
        if on_open:
            on_open(reader.meta)
        show = progress if progress is not None else (err.isatty() and reader.bytes_total > PROGRESS_MIN_BYTES)
        bar = Progress(reader.bytes_total, err, bool(show))

        def blocks() -> Iterator[Block]:
            for block in reader:
                if on_block:
                    on_block(block)
                yield block
                bar.update(reader.bytes_done)

        def stamp(e: dict) -> None:
            if e["type"] == "summary":
                e["rows_rejected"] = len(reader.problems)
            if on_event:
                on_event(e)

        try:
            events = run_pipeline(blocks(), config, jsonl=jsonl, out=out, calibration=calibration, on_event=stamp)
        finally:
            bar.done()
            _report_problems(reader, err)
    if not jsonl:
        (out or sys.stdout).write(human_summary(events, Path(path).name, reader.meta) + "\n")
    return events


def run_pipeline(blocks: Iterable[Block], config: Config, *, jsonl: bool, out: IO[str] | None = None,
                 calibration: Calibration | None = None,
                 on_event: Callable[[dict], None] | None = None) -> list[dict]:
    """The live pipeline over blocks from anywhere (a file, a logbook session); JSON lines when ``jsonl``."""
    out = out or sys.stdout
    events: list[dict] = []
    pipe = Pipeline(config.pipeline, calibration)

    def emit(evs: list[dict]) -> None:
        for e in evs:
            if on_event:
                on_event(e)
            events.append(e)
            if jsonl:
                out.write(json.dumps(e, separators=(",", ":")) + "\n")

    for block in blocks:
        emit(pipe.feed(block))
    emit(pipe.finish())
    return events


def _report_problems(reader: RecordingReader, err: IO[str]) -> None:
    probs = reader.problems
    for p in probs[:MAX_PROBLEMS_SHOWN]:
        err.write(f"warning: {reader.path}:{p.line}: {p.reason} (row skipped)\n")
    if len(probs) > MAX_PROBLEMS_SHOWN:
        err.write(f"warning: {len(probs) - MAX_PROBLEMS_SHOWN} more bad rows skipped "
                  f"({len(probs)} in all; --strict refuses the file instead)\n")


def write_calibration(events: list[dict], path: str | Path) -> None:
    cal = next((e for e in events if e["type"] == "calibration" and e.get("ok")), None)
    if cal is None:
        raise CalibrationError(f"{path}: nothing to save, no calibration was accepted")
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(cal) + "\n", encoding="utf-8")
    os.replace(tmp, path)
