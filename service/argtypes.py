"""Argument types and options shared by the ``stackcue`` subcommands (argparse errors are one usage line)."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields

from stackcue.dsp.settings import spec_of

from .settings import SourceSection

_SOURCE_RANGES = {f.name: spec_of(f).range for f in fields(SourceSection)}
SPEED_RANGE: tuple[float, float] = _SOURCE_RANGES["speed"]  # type: ignore[assignment]  # --speed as [source] speed
EMULATED_MINUTES_RANGE: tuple[float, float] = _SOURCE_RANGES["emulated_minutes"]  # type: ignore[assignment]


def positive_float(text: str) -> float:
    v = _finite(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def logbook_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--logbook``, as every command that reads the logbook takes them."""
    p.add_argument("--config", metavar="FILE", help="configuration file (for [logbook] path)")
    p.add_argument("--logbook", metavar="FILE", help="logbook file (default: [logbook] path)")


def ranged_float(lo: float, hi: float, unit: str = ""):
    """A finite number in [lo, hi], as a configuration key with that range allows (the same bounds on the CLI)."""

    def parse(text: str) -> float:
        v = positive_float(text) if lo > 0 else _finite(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be within {lo:g}..{hi:g}{unit}: {text!r}")
        return v

    return parse


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return v


def seed(text: str) -> int:
    """A random seed: an integer 0..2**32-1 (numpy's generators refuse a negative one)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"must be within 0..{2**32 - 1}: {text!r}")
    return v
