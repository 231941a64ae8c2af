"""The ``stackcue`` command.

User mistakes (a bad file, a wrong key, a refused calibration) print one
line and exit with status 2; a traceback would be a bug.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dsp.errors import StackcueError

EXIT_USAGE = 2


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stackcue", description="Posture biofeedback for runners.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("analyze", help="analyse a recording (exchange CSV) with the live pipeline")
    a.add_argument("file", help="recording in the exchange CSV format")
    a.add_argument("--jsonl", action="store_true", help="print one JSON event a line instead of a summary")
    a.add_argument("--config", metavar="FILE", help="configuration file overriding config/default.toml")
    a.add_argument("--calibration", metavar="FILE",
                   help="use a saved calibration (a calibration event as JSON) instead of the routine")
    a.add_argument("--save-calibration", metavar="FILE", help="write the accepted calibration to FILE")
    a.add_argument("--strict", action="store_true", help="refuse the file at its first bad row")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on a terminal, for big files)")

    s = sub.add_parser("simulate", help="write a synthetic run (exchange CSV) and its truth files")
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="CSV to write")
    s.add_argument("--minutes", type=_positive_float, default=10.0, help="running time (default 10)")
    s.add_argument("--trunk", action="store_true", help="add a sternum sensor")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--rate", type=_positive_float, default=200.0, help="nominal sample rate in Hz (default 200)")
    s.add_argument("--cadence", type=_positive_float, default=170.0, help="steps per minute (default 170)")
    s.add_argument("--speed", type=_positive_float, default=3.3, help="running speed m/s (default 3.3)")
    s.add_argument("--no-episodes", action="store_true", help="steady posture, no drift episodes")
    s.add_argument("--ideal", action="store_true", help="ideal sensor: no bias, noise, jitter or gaps")
    return p


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import analyze_file, load_calibration, write_calibration
    from .config import load_config

    cfg = load_config(args.config)
    cal = load_calibration(args.calibration) if args.calibration else None
    events = analyze_file(args.file, cfg, jsonl=args.jsonl, strict=args.strict, calibration=cal,
                          progress=args.progress)
    if args.save_calibration:
        write_calibration(events, args.save_calibration)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from dsp.params import RATE_MAX_HZ, RATE_MIN_HZ
    from firmware_bridge.simulator import SimParams, simulate, write_simulation

    if not RATE_MIN_HZ <= args.rate <= RATE_MAX_HZ:
        raise StackcueError(f"--rate {args.rate:g} is outside {RATE_MIN_HZ:.0f}–{RATE_MAX_HZ:.0f} Hz")
    out = Path(args.output)
    if not out.parent.exists():
        raise StackcueError(f"{out}: the folder {out.parent} does not exist")
    t0 = time.monotonic()
    run = simulate(SimParams(minutes=args.minutes, rate_hz=args.rate, trunk=args.trunk, seed=args.seed,
                             cadence_spm=args.cadence, speed_m_s=args.speed, episodes=not args.no_episodes,
                             sensor_errors=not args.ideal, gaps=not args.ideal))
    try:
        truth_csv, truth_json = write_simulation(run, out)
    except OSError as exc:
        raise StackcueError(f"{out}: cannot write ({exc.strerror})") from None
    n = len(run.block)
    print(f"wrote {out} ({n} samples, {run.block.t[-1] - run.block.t[0]:.0f} s"
          f"{', pelvis + trunk' if args.trunk else ''}) and {truth_csv.name}, {truth_json.name} "
          f"in {time.monotonic() - t0:.1f} s; episodes: "
          + (", ".join(e["kind"] for e in run.info.get("episodes", [])) or "none"))
    return 0


COMMANDS = {"analyze": cmd_analyze, "simulate": cmd_simulate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except StackcueError as exc:
        print(f"stackcue {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"stackcue {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
