"""``[report] units`` (issue 17): the coach's report in metric or imperial; angles stay degrees."""

from __future__ import annotations

import argparse
import io
import re
import sqlite3
from pathlib import Path

import pytest

from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook
from stackcue.service.report_html import add_parser, build_report, cmd_report
from stackcue.service.report_units import Units
from stackcue.service.session_store import store_recording

DISTANCE_M = 10_000.0  # no source measures distance yet: the test sets one, as a GPS or a footpod would


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("units")
    path = d / "logbook.sqlite"
    csv = d / "run.csv"
    write_simulation(simulate(SimParams(minutes=4, rate_hz=100, trunk=True, seed=4)), csv)
    store_recording(csv, load_config(), out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(path))
    with Logbook(path) as b:
        (s,) = b.sessions()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE sessions SET distance_m = ? WHERE id = ?", (DISTANCE_M, s["id"]))
    return path, s["id"]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_metric_and_imperial_reports(book):
    path, sid = book
    with Logbook(path) as b:
        metric = text(build_report(b, sid))
        imperial = text(build_report(b, sid, units="imperial"))
    assert "Distance 10.00 km" in metric and not re.search(r"\bmi(les?)?\b", metric)
    assert "Distance 6.21 mi" in imperial and "Distance 10.00 km" not in imperial
    per_km = re.search(r"([\d.]+) per km", metric)
    per_mi = re.search(r"([\d.]+) per mi\b", imperial)
    assert per_km and per_mi
    assert float(per_mi.group(1)) == pytest.approx(float(per_km.group(1)) * 1.609344, abs=0.06)
    # degrees stay degrees: the same angles in both
    assert re.findall(r"[+-]?\d+\.\d°", metric) == re.findall(r"[+-]?\d+\.\d°", imperial)


def test_the_cli_takes_the_units_from_the_configuration(book, tmp_path):
    path, sid = book
    cfg = tmp_path / "c.toml"
    cfg.write_text('[report]\nunits = "imperial"\n')
    p = argparse.ArgumentParser(prog="stackcue")
    add_parser(p.add_subparsers(dest="command"))
    out = tmp_path / "r.html"
    args = p.parse_args(["report", sid, "-o", str(out), "--logbook", str(path), "--config", str(cfg)])
    assert cmd_report(args) == 0
    assert "Distance 6.21 mi" in text(out.read_text())


def test_units_write_lengths_pace_and_rates():
    m, i = Units("metric"), Units("imperial")
    assert m.distance(21097.5) == "21.10 km" and i.distance(21097.5) == "13.11 mi"
    assert m.pace(300) == "5:00 /km" and i.pace(300) == "8:03 /mi"
    assert m.length(0.18) == "18 cm" and i.length(0.18) == "7.1 in"
    assert m.per_distance(2.0) == 2.0 and i.per_distance(2.0) == pytest.approx(3.218688)
