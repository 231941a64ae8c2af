"""Argument types and options shared by the ``stackcue`` subcommands (argparse errors are one usage line)."""

from __future__ import annotations

import argparse
import math


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def logbook_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--logbook``, as every command that reads the logbook takes them."""
    p.add_argument("--config", metavar="FILE", help="configuration file (for [logbook] path)")
    p.add_argument("--logbook", metavar="FILE", help="logbook file (default: [logbook] path)")
