"""Fixtures shared by the whole suite.

A simulated run costs about a second to make and as much again to write; modules that ask for the same
run get one made once per session. Runs are keyed by every SimParams field, so a test never gets a run it
did not ask for, and each gets its own copy, so that no test can change what another one sees.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from stackcue.firmware_bridge.emulated.simulator import SimParams, SimRun, simulate, write_simulation


@pytest.fixture(autouse=True)
def _own_runtime_dir(tmp_path_factory, monkeypatch) -> None:
    """Each test its own ``$XDG_RUNTIME_DIR``: the run lock is per user and runner (service/runlock.py), so
    tests (and xdist workers) that each `stackcue run` runner "ana" must not refuse one another."""
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))


@pytest.fixture(scope="session")
def sim_run() -> Callable[..., SimRun]:
    """``sim_run(minutes=4, rate_hz=200, trunk=True, seed=51)``: a copy of the simulated run, made once per session."""
    cache: dict[tuple, SimRun] = {}

    def get(**params) -> SimRun:
        p = SimParams(**params)
        key = dataclasses.astuple(p)
        if key not in cache:
            cache[key] = simulate(p)
        return copy.deepcopy(cache[key])  # milliseconds, against a second to simulate

    return get


@pytest.fixture(scope="session")
def sim_csv(tmp_path_factory) -> Callable[..., Path]:
    """``sim_csv(**params)``: the run written as a recording with its truth files beside it, once per session.

    The files are shared: copy them before changing them (or their times), and write nothing beside them.
    The run itself is not kept: long high-rate runs would hold hundreds of MB for the whole session.
    """
    cache: dict[tuple, Path] = {}

    def get(**params) -> Path:
        key = dataclasses.astuple(SimParams(**params))
        if key not in cache:
            csv = tmp_path_factory.mktemp("sim") / "run.csv"
            write_simulation(simulate(SimParams(**params)), csv)
            cache[key] = csv
        return cache[key]

    return get
