"""``stackcue analyze``: a recording replayed through the one session driver, as fast as it can."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from stackcue.dsp.calibration import Calibration
from stackcue.dsp.cue_policy import CuePlan
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import CalibrationError, PipelineError, StorageError
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import RowProblem
from stackcue.firmware_bridge.replay import ReplaySource
from stackcue.firmware_bridge.source import Source

from . import json_input
from .config import Config
from .output_files import write_output
from .report_text import human_summary
from .session import BlocksSource, Session
from .sinks import PREVIEWS, Sink, WithoutPreviews

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
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{p}: not a saved calibration (not UTF-8 text at byte {exc.start})") from None
    try:  # one JSON object (possibly pretty-printed), else JSON lines such as `analyze --jsonl` output
        whole = json_input.loads(text)
        lines = [json.dumps(whole)]
    except ValueError:
        lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json_input.loads(line)
        except ValueError as exc:
            raise CalibrationError(f"{p}:{n}: not JSON ({getattr(exc, 'msg', exc)})") from None
        if isinstance(obj, dict) and obj.get("type", "calibration") == "calibration":
            ok = obj.get("ok", True)
            if not isinstance(ok, bool):
                raise CalibrationError(f"{p}:{n}: ok {ok!r:.40} is not true or false")
            if ok:
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


def json_line(event: dict) -> str:
    """One event as strict JSON (never a bare ``NaN`` or ``Infinity``): a non-finite number becomes null."""
    return json_input.dumps(event)


class AnalysisOutput:
    """``analyze``'s own sink: the analysis events, kept and (``jsonl``) printed one JSON object a line.

    The session's bookkeeping event (``type: session``) is the logbook's and MQTT's business, not part of
    an analysis: it is neither kept nor printed. Stride previews (``stride_provisional``) are kept and
    printed only when asked for (``provisional``, ``analyze --provisional``): each one's final stride follows.
    """

    name = "analysis"

    def __init__(self, out: IO[str] | None, jsonl: bool, provisional: bool = False) -> None:
        self.out, self.jsonl, self.provisional = out or sys.stdout, jsonl, provisional
        self.events: list[dict] = []

    def handle(self, event: dict) -> None:
        if event.get("type") == "session" or (event.get("type") in PREVIEWS and not self.provisional):
            return
        self.events.append(event)
        if self.jsonl:
            self.out.write(json_line(event) + "\n")

    def close(self) -> None:
        pass


def replay_session(
    source: Source,
    config: Config,
    *,
    output: AnalysisOutput,
    sinks: Sequence[Sink] = (),
    calibration: Calibration | None = None,
    cue_plan: CuePlan | None = None,
    **session: Any,
) -> list[dict]:
    """A source replayed through the one session driver at unlimited speed; returns the analysis events.

    ``cue_plan``: a stored session's fading stage and snoozes, so its alerts get the live run's cue marks.

    The pipeline makes stride previews only when ``output`` prints them; the other sinks (the logbook) never
    see them."""
    s = Session(
        source,
        Pipeline(config.pipeline, calibration, provisional=output.provisional, cue_plan=cue_plan),
        [output, *(WithoutPreviews(sink) for sink in sinks)],
        live=False,
        runner_id=session.pop("runner_id", config.runner_id),
        **session,
    )
    if isinstance(source, ControlledBlocks):
        source.session = s
    s.run()
    return output.events


#: a stored control's time and its name: ``pause``, ``resume`` or ``recalibrate``
Control = tuple[float, str]


class ControlledBlocks(Source):
    """A stored session's raw blocks, cut where the live run was paused or re-calibrated, each control applied
    to the session just before the first sample after it: the replay's pipeline re-calibrates (and pauses)
    where the live one did, so its calibration segments are the live run's (issue 14)."""

    def __init__(self, blocks: Iterable[Block], controls: Iterable[Control]) -> None:
        super().__init__()
        self._blocks = iter(blocks)
        self._controls = list(controls)
        self._next: Block | None = None
        self.session: Session | None = None

    def _apply(self, before: float) -> None:
        while self._controls and self._controls[0][0] < before:
            _, name = self._controls.pop(0)
            if self.session is None:
                raise RuntimeError("ControlledBlocks needs its session (replay_session binds it)")
            getattr(self.session, name)()

    def _read_block(self) -> Block | None:
        block = self._next if self._next is not None else next(self._blocks, None)
        self._next = None
        if block is None:
            self._apply(np.inf)  # a pause to the end: the session ends paused, as the live one did
            return None
        if not len(block):
            return block
        self._apply(float(block.t[0]))
        if self._controls and self._controls[0][0] < float(block.t[-1]):
            k = int(np.searchsorted(block.t, self._controls[0][0], side="right"))  # 1 ≤ k < len: t[k-1] ≤ c < t[k]
            block, self._next = block.slice(0, k), block.slice(k, len(block))
        return block


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
    provisional: bool = False,
) -> list[dict]:
    """Analyse one recording; prints JSON lines (with the stride previews when ``provisional``) or a summary;
    returns the events."""
    events, source = analyze_recording(
        path,
        config,
        jsonl=jsonl,
        out=out,
        err=err,
        strict=strict,
        calibration=calibration,
        progress=progress,
        provisional=provisional,
    )
    if not jsonl:
        (out or sys.stdout).write(human_summary(events, Path(path).name, source.meta) + "\n")
    return events


def analyze_recording(
    path: str | Path,
    config: Config,
    *,
    jsonl: bool,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    strict: bool = False,
    calibration: Calibration | None = None,
    progress: bool | None = None,
    sinks: Sequence[Sink] = (),
    block_sinks: Sequence[Any] = (),
    prepare: Callable[[ReplaySource], dict[str, Any]] | None = None,
    provisional: bool = False,
) -> tuple[list[dict], ReplaySource]:
    """A recording through the session driver, with a progress bar and its rejected rows reported.

    ``prepare`` sees the opened recording (its metadata) before anything is analysed and returns the
    session's facts (id, start, runner, origin; ``sinks`` and ``block_sinks`` it opened); ``sinks`` get the
    session's events too and ``block_sinks`` its raw blocks (the logbook).
    """
    err = err or sys.stderr
    source = ReplaySource(path, strict=strict)
    try:
        facts = dict(prepare(source)) if prepare else {}
    except BaseException:
        source.close()
        raise
    sinks = [*sinks, *facts.pop("sinks", ())]
    block_sinks = [*block_sinks, *facts.pop("block_sinks", ())]
    reader = source.reader
    show = progress if progress is not None else (err.isatty() and reader.bytes_total > PROGRESS_MIN_BYTES)
    bar = Progress(reader.bytes_total, err, bool(show))

    def rows_rejected(summary: dict) -> None:
        summary["rows_rejected"] = len(reader.problems)

    try:
        events = replay_session(
            source,
            config,
            output=AnalysisOutput(out, jsonl, provisional),
            sinks=sinks,
            block_sinks=block_sinks,
            calibration=calibration,
            on_summary=rows_rejected,
            on_block=lambda _b: bar.update(reader.bytes_done),
            **facts,
        )
    except PipelineError as exc:  # the recording's time stamps (rate, order): name the file
        raise PipelineError(f"{path}: {exc}") from None
    finally:
        bar.done()
        report_problems(reader.path, reader.problems, err)
    return events, source


def run_pipeline(
    blocks: Iterable[Block],
    config: Config,
    *,
    jsonl: bool,
    out: IO[str] | None = None,
    calibration: Calibration | None = None,
    sinks: Sequence[Sink] = (),
    controls: Sequence[Control] = (),
    cue_plan: CuePlan | None = None,
) -> list[dict]:
    """Blocks from anywhere (a logbook session, arrays) through the session driver; JSON lines when ``jsonl``.

    ``controls``: (time, ``pause``/``resume``/``recalibrate``) in the order given, each applied before the first
    sample after its time (a stored session's, see ``session_store.stored_controls``)."""
    source = ControlledBlocks(blocks, controls) if controls else BlocksSource(blocks)
    return replay_session(
        source, config, output=AnalysisOutput(out, jsonl), sinks=sinks, calibration=calibration, cue_plan=cue_plan
    )


def report_problems(path: str, probs: list[RowProblem], err: IO[str]) -> None:
    """The rows a reader skipped, on ``err``: never dropped without a word."""
    for p in probs[:MAX_PROBLEMS_SHOWN]:
        err.write(f"warning: {path}:{p.line}: {p.reason} (row skipped)\n")
    if len(probs) > MAX_PROBLEMS_SHOWN:
        err.write(
            f"warning: {len(probs) - MAX_PROBLEMS_SHOWN} more bad rows skipped "
            f"({len(probs)} in all; --strict refuses the file instead)\n"
        )


def write_calibration(events: list[dict], path: str | Path) -> None:
    cal = next((e for e in events if e["type"] == "calibration" and e.get("ok")), None)
    if cal is None:
        raise CalibrationError(f"{path}: nothing to save, no calibration was accepted")
    try:
        write_output(path, json.dumps(cal) + "\n")
    except StorageError as exc:
        raise StorageError(f"cannot save the calibration: {exc}") from None
