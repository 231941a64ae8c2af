"""`stackcue report`: one self-contained HTML file a coach can open anywhere (issue #6).

Everything is in the file: inline CSS, the plots as inline SVG drawn by matplotlib (Agg, text kept as text),
no JavaScript and no network reference, so it opens offline on a laptop or a phone and prints cleanly. Every
string that comes from the logbook is escaped by the templates. The output is deterministic for the same logbook
(SVG ids salted per figure, no dates in the SVG metadata), so two reports of one session compare equal.

The parts: report_data (the session from the logbook), report_stats (its figures, the pipeline's where it has
them), report_plots (matplotlib to SVG), report_render (the page, from templates/report/*.html). This module is
the command; it imports them when a report is made, never at import time, so ``stackcue --help`` and the live
service stay light (no numpy, matplotlib or Jinja2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from stackcue.errors import StorageError

from .argtypes import logbook_options


def build_report(book, session_id: str, compare: Sequence[str] = (), units: str = "metric") -> str:
    """The report of one session (id, unique prefix or ``latest``) as one HTML page; see report_render."""
    from .report_render import build_report as build

    return build(book, session_id, compare, units)


def write_report(
    book, session_id: str, output: str | os.PathLike, compare: Sequence[str] = (), units: str = "metric"
) -> Path:
    """Build the report and write it to ``output`` whole or not at all; see report_render."""
    from .report_render import write_report as write

    return write(book, session_id, output, compare, units)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``stackcue report``'s arguments (the CLI wires ``cmd_report`` to it)."""
    r = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a logged session for the coach",
        description="One HTML file (no network needed): posture over the run with the alerts, distributions, a "
        "per-minute table, time in each alert state, the calibration and thresholds used, and what "
        "changed as the runner tired.",
    )
    r.add_argument("session", metavar="SESSION", help="session id, a unique prefix of it, or 'latest'")
    r.add_argument("-o", "--output", metavar="FILE", help="HTML file to write (default: report-<session>.html here)")
    logbook_options(r)
    r.add_argument(
        "--compare",
        nargs="+",
        metavar="SESSION",
        default=[],
        help="sessions to set beside this one, or 'runner' for all of this runner's sessions up to it "
        "(put SESSION before --compare)",
    )
    return r


def cmd_report(args: argparse.Namespace) -> int:
    from .config import load_config
    from .report_data import resolve
    from .session_store import open_logbook

    t0 = time.monotonic()
    cfg = load_config(args.config)
    book = open_logbook(cfg, args.logbook)
    try:
        session = resolve(book, args.session)
        from .wallclock import start_warning

        if warning := start_warning(session):
            print(f"warning: {warning}", file=sys.stderr)
        if args.output and args.output.endswith("/"):  # Path() would drop the slash that says "a folder"
            raise StorageError(f"{args.output}: is a folder, not a file")
        out = Path(args.output) if args.output else Path(f"report-{session['id']}.html")
        path = write_report(book, session["id"], out, args.compare, cfg["report"]["units"])
    finally:
        book.close()
    from .output_files import is_write_through

    if str(path) == "-":
        where = "standard output"
    elif is_write_through(path):  # a device or a FIFO: it has no size of its own
        where = str(path)
    else:
        where = f"{path} ({path.stat().st_size / 1000:.0f} kB)"
    print(f"wrote {where} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0
