"""`stackcue report`: the coach's HTML report of a logged session (service/report_html.py and report_*.py).

A 30-minute simulated run with a trunk sensor and a shorter pelvis-only run of the same runner are analysed into a
real logbook (``store_recording``, as ``analyze --save`` does); the report is built from it, checked for content
and self-containment, and opened in headless Chromium (Debian's chromium and chromedriver) with a screenshot kept
in tests/artifacts/report.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from stackcue.errors import StackcueError
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook, LogbookSink
from stackcue.service.report_html import add_parser, build_report, cmd_report
from stackcue.service.report_text import clock
from stackcue.service.session_store import store_recording

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
XMLNS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


@pytest.fixture(scope="module")
def book_path(tmp_path_factory) -> Path:
    """A logbook with a pelvis-only 8-minute run (two days earlier) and a 30-minute run with a trunk sensor.

    At 100 Hz (a rate the Pi records at) simulating and analysing take half as long; the report does not care.
    """
    d = tmp_path_factory.mktemp("report")
    book = d / "logbook.sqlite"
    cfg = load_config()
    short = d / "short.csv"
    write_simulation(simulate(SimParams(minutes=8, rate_hz=100, trunk=False, seed=5)), short)
    old = time.time() - 2 * 86400
    os.utime(short, (old, old))  # its start time comes from the file's time: make it the earlier run
    long = d / "long.csv"
    write_simulation(simulate(SimParams(minutes=30, rate_hz=100, trunk=True, seed=3)), long)
    for csv in (short, long):
        store_recording(csv, cfg, out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(book))
    return book


@pytest.fixture(scope="module")
def sessions(book_path) -> dict[str, dict]:
    with Logbook(book_path) as book:
        short, long = book.sessions()
    assert long["summary"]["duration_s"] > 29 * 60 and short["summary"]["duration_s"] < 10 * 60
    return {"short": short, "long": long}


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``stackcue report ARGS`` as the CLI runs it: (exit status, the one-line error or '')."""
    p = argparse.ArgumentParser(prog="stackcue")
    add_parser(p.add_subparsers(dest="command"))
    try:
        return cmd_report(p.parse_args(["report", *argv])), ""
    except StackcueError as exc:
        return 2, str(exc)


def _copy_book(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / "copy.sqlite"
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


# ---------------------------------------------------------------------------------------------- the browser


@pytest.mark.slow
def test_report_of_30_minutes_opens_in_chromium(book_path, sessions, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    long = sessions["long"]
    out = tmp_path / "report.html"
    t0 = time.monotonic()
    code, err = run_cli([long["id"][:12], "-o", str(out), "--logbook", str(book_path), "--compare", "runner"])
    took = time.monotonic() - t0
    assert code == 0, err
    assert took < 30, took

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,4000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get(out.as_uri())
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        h2 = [e.text for e in driver.find_elements(By.TAG_NAME, "h2")]
        assert h2 == [
            "Overview",
            "What changed as the runner tired",
            "Over the run",
            "Distributions",
            "Alerts",
            "Per minute",
            "Calibration and thresholds",
            "Sessions compared",
        ]
        svgs = driver.find_elements(By.CSS_SELECTOR, "svg.plot")
        assert len(svgs) == 3  # time series, distributions, sessions compared
        assert all(s.size["width"] > 800 and s.size["height"] > 300 for s in svgs)  # scaled to the page, not 0
        minutes = driver.find_elements(By.CSS_SELECTOR, "#per-minute tbody tr")
        assert 30 <= len(minutes) <= 32
        alert_rows = driver.find_elements(By.CSS_SELECTOR, "#alerts table")[1].find_elements(
            By.CSS_SELECTOR, "tbody tr"
        )
        assert len(alert_rows) == len(Logbook(book_path).alerts(long["id"]))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#compare tbody tr")) == 2
        height = driver.execute_script("return document.documentElement.scrollHeight")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 1280  # nothing wider than the window at desktop size
        driver.set_window_size(1280, min(height + 100, 12000))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "report.png"))
        driver.set_window_size(390, 2400)  # a phone: the page reflows, only plots and wide tables scroll sideways
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 400
        assert driver.save_screenshot(str(ARTIFACTS / "report-phone.png"))
    finally:
        driver.quit()
    shutil.copy(out, ARTIFACTS / "report.html")


# ---------------------------------------------------------------------------------------------- content


@pytest.fixture(scope="module")
def report(book_path, sessions) -> str:
    with Logbook(book_path) as book:
        return build_report(book, sessions["long"]["id"])


def test_self_contained_and_deterministic(book_path, sessions, report):
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", report))
    assert urls <= XMLNS, urls - XMLNS
    for bad in ("<script", "<link", " src=", "@import", "<iframe", "<img", "<object", "<embed"):
        assert bad not in report.lower(), bad
    assert not re.search(r"url\((?!#)", report)  # only references inside the page (SVG clip paths)
    assert '<meta name="viewport"' in report and "@media print" in report
    assert report.count("<svg") == 2 and "<?xml" not in report and "<metadata" not in report
    assert report.count('id="figure_1"') == 0  # no ids repeated across the inline SVGs
    ids = re.findall(r'\sid="([^"]+)"', report)
    assert len(ids) == len(set(ids))
    with Logbook(book_path) as book:
        assert build_report(book, sessions["long"]["id"]) == report  # the same logbook gives the same file


def test_header_calibration_and_thresholds(sessions, report):
    s = sessions["long"]
    cal = s["calibration"]
    assert "<h1>Run report: sim</h1>" in report
    assert "pelvis + trunk" in report and "cleanly" in report
    assert f"{clock(s['summary']['duration_s'])[:5]}" in report.replace("<", " ")  # 30:2x recorded
    for seg in ("pelvis", "trunk"):
        assert f"{seg} hinge {cal['segments'][seg]['hinge_deg']:.0f}°" in report
    assert f"accepted at {clock(cal['t'])}" in report
    # the default references (issue 17): the tilt from the run's first minutes, lean and stack from standing
    m = re.search(
        r"tilt ([-+][0-9.]+)° / ([-+][0-9.]+)°, lean \+15\.0°, stack -8\.0° / \+10\.0°, drop \+9\.0° \(", report
    )
    assert m and float(m.group(2)) - float(m.group(1)) == pytest.approx(12.0, abs=0.011), m
    assert "first minutes; lean from the standing neutral; stack from the standing neutral)" in report
    assert "file long.csv" in report and "/tmp" not in report.split("<section")[1]  # the file's name, not its path
    assert f"own first 3 minutes of steady running ({float(m.group(2)) - 6.0:+.1f}°, set at" in report
    assert "stack: the standing neutral (0°)" in report


def test_alerts_time_in_alert_and_table(book_path, sessions, report):
    s = sessions["long"]
    with Logbook(book_path) as book:
        alerts = book.alerts(s["id"])
        clears = book.events(s["id"], ["clear"])
    assert len(alerts) >= 8 and len(clears) >= 8
    section = report[report.index('<section id="alerts">') : report.index('<section id="per-minute">')]
    tia = s["summary"]["time_in_alert_s"]
    running = s["summary"]["running_s"]
    for kind, secs in tia.items():
        m = round(secs)
        assert f"{m // 60}:{m % 60:02d}</td><td>{100 * secs / running:.1f} %" in section, kind
    for a in alerts:
        assert f"<td>{clock(a['t'])}</td>" in section
    assert section.count("<tr>") == 1 + 6 + 1 + len(alerts)  # heads, six kinds, alert list
    minutes = report[report.index('<section id="per-minute">') : report.index('<section id="calibration">')]
    rows = minutes.split("<tbody>")[1].count("<tr>")
    assert 30 <= rows <= 32 and "<h2>Per minute</h2>" in minutes
    assert minutes.count('class="over"') >= 6  # minutes whose mean is past a threshold are marked


def test_what_changed_on_the_real_run(report):
    section = report[report.index('<section id="changed">') : report.index('<section id="over-the-run">')]
    assert "Comparing the first 9:" in section  # a third of ~29 min of steady running
    assert "Changes are called out when larger than 1° in an angle, 3 steps/min in cadence" in section
    assert ('<ul class="said">' in section) != ("Nothing changed" in section)
    assert "not a diagnosis" in section


def _synthetic_book(path: Path, tilt, cadence, minutes: float = 20.0, summary: bool = False) -> None:
    """A session of strides whose tilt and cadence follow ``tilt(frac)``/``cadence(frac)`` over the run."""
    sink = LogbookSink(path)
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": "20250301T080000Z-synth",
            "runner": "zoe",
            "started_epoch": 1740816000.0,
            "clock_synchronised": "no",
            "source": {},
        }
    )
    sink.handle(
        {
            "type": "calibration",
            "t": 8.0,
            "ok": True,
            "source": "saved",
            "segments": {"pelvis": {"hinge_deg": None, "quality": None}},
        }
    )
    t, end = 10.0, 10.0 + minutes * 60
    while t < end:
        f = (t - 10.0) / (end - 10.0)
        sink.handle(
            {
                "type": "stride",
                "t_start": t,
                "t_end": t + 0.7,
                "cadence_spm": cadence(f),
                "steady": True,
                "pelvic_tilt_deg": tilt(f),
                "trunk_lean_deg": None,
                "stack_deg": None,
                "pelvic_obliquity_range_deg": 8.0,
                "pelvic_rotation_range_deg": 11.0,
            }
        )
        t += 0.7
    if summary:
        sink.handle({"type": "summary", "duration_s": end + 1, "strides": 1, "running_s": end - 10})
    sink.close()


def test_what_changed_sentences(tmp_path):
    _synthetic_book(tmp_path / "tired.sqlite", tilt=lambda f: 1.0 + 4.0 * f, cadence=lambda f: 172.0 - 8.0 * f)
    with Logbook(tmp_path / "tired.sqlite") as book:
        html = build_report(book, "latest")
    section = html[html.index('<section id="changed">') : html.index('<section id="over-the-run">')]
    assert "Comparing the first 6:40 of steady running" in section  # a third of 20 min
    assert "The pelvis tipped further forward (more anterior tilt) by 2.7°" in section
    assert "further from the standing neutral" in section
    assert "Cadence dropped by 5.3 steps/min (170.7 → 165.3)." in section
    assert "obliquity" not in section.split("<table")[0].lower()  # unchanged: no sentence
    assert "no trunk sensor" in html  # lean and stack panels say so instead of drawing empty axes
    assert "the clock was not synchronised" in html
    assert "saved calibration" in html

    _synthetic_book(tmp_path / "steady.sqlite", tilt=lambda f: 2.0 + 0.5 * f, cadence=lambda f: 170.0 + 2 * f)
    with Logbook(tmp_path / "steady.sqlite") as book:
        html = build_report(book, "latest")
    assert "Nothing changed by more than these amounts" in html and '<ul class="said">' not in html

    _synthetic_book(tmp_path / "short.sqlite", tilt=lambda f: 2.0, cadence=lambda f: 170.0, minutes=4)
    with Logbook(tmp_path / "short.sqlite") as book:
        assert "Too little steady running to compare" in build_report(book, "latest")


# ---------------------------------------------------------------------------------------------- edge cases


def test_pelvis_only_session_says_no_trunk_sensor(book_path, sessions):
    with Logbook(book_path) as book:
        html = build_report(book, sessions["short"]["id"])
    assert "pelvis only (no trunk sensor)" in html
    svg = html[html.index('<section id="over-the-run">') : html.index('<section id="alerts">')]
    assert svg.count(">no trunk sensor<") == 4  # lean and stack, over time and as distributions
    assert "lean<br>" not in html  # the per-minute table has no empty lean/stack columns


def test_escaping_of_logbook_strings(book_path, sessions, tmp_path):
    book_copy = _copy_book(book_path, tmp_path)
    evil = '<script>alert("x")</script> & Bo'
    with sqlite3.connect(book_copy) as c:
        c.execute(
            "UPDATE sessions SET runner = ?, notes = ? WHERE id = ?",
            (evil, "<img src=x onerror=alert(1)>\nsecond line", sessions["long"]["id"]),
        )
    with Logbook(book_copy) as book:
        html = build_report(book, sessions["long"]["id"])
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Bo" in html  # markupsafe's entity for a quote
    assert "&lt;img src=x onerror=alert(1)&gt;<br>second line" in html  # each line of the notes on its own


def test_unclean_session_without_summary(book_path, sessions, tmp_path):
    """A session cut off by a pulled battery: no summary, the last drift never cleared."""
    book_copy = _copy_book(book_path, tmp_path)
    sid = sessions["long"]["id"]
    with sqlite3.connect(book_copy) as c:
        last_clear = c.execute("SELECT max(rowid) FROM events WHERE session = ? AND type = 'clear'", (sid,)).fetchone()[
            0
        ]
        kind = json.loads(c.execute("SELECT event FROM events WHERE rowid = ?", (last_clear,)).fetchone()[0])["kind"]
        c.execute("DELETE FROM events WHERE rowid = ? OR (session = ? AND type = 'summary')", (last_clear, sid))
        c.execute("UPDATE sessions SET summary = NULL, ended_how = 'unclean' WHERE id = ?", (sid,))
    with Logbook(book_copy) as book:
        html = build_report(book, sid)
    assert "uncleanly" in html and "the alerts and clears stored (the session has no summary)" in html
    assert "not cleared" in html
    assert f"{kind.replace('_', ' ').split()[0]}" in html
    with sqlite3.connect(book_copy) as c:  # closed by the next start: the logbook says why it ended
        c.execute("UPDATE sessions SET ended_reason = 'power lost' WHERE id = ?", (sid,))
    with Logbook(book_copy) as book:
        html = build_report(book, sid)
    assert "power lost: the recorder stopped" in html and "uncleanly" not in html


def test_compare_runner(book_path, sessions):
    with Logbook(book_path) as book:
        html = build_report(book, sessions["long"]["id"], compare=["runner"])
        earlier_only = build_report(book, sessions["short"]["id"], compare=["runner"])
    section = html[html.index('<section id="compare">') :]
    assert section.count("<tr>") == 3 and "(this run)" in section and section.count("<svg") == 1
    assert "file time" not in section
    # the earlier session compared with its runner's sessions up to it: itself only, and no plot of one point
    tail = earlier_only[earlier_only.index('<section id="compare">') :]
    assert tail.count("<tr>") == 2 and "<svg" not in tail


# ---------------------------------------------------------------------------------------------- the command


def test_cli_default_output_and_errors(book_path, sessions, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["latest", "--logbook", str(book_path)])
    assert code == 0, err
    assert (tmp_path / f"report-{sessions['long']['id']}.html").stat().st_size > 100_000

    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[logbook]\npath = "{book_path}"\n')
    assert run_cli([sessions["short"]["id"], "--config", str(cfg), "-o", "s.html"])[0] == 0
    assert (tmp_path / "s.html").exists()

    code, err = run_cli(["nosuch", "--logbook", str(book_path)])
    assert code == 2 and "no session 'nosuch'" in err and str(book_path) in err
    code, err = run_cli(["20", "--logbook", str(book_path)])  # both ids start with the year
    assert code == 2 and "ambiguous" in err and sessions["short"]["id"] in err and sessions["long"]["id"] in err
    code, err = run_cli(["latest", "--logbook", str(book_path), "-o", str(tmp_path / "no" / "r.html")])
    assert code == 2 and f"the folder {tmp_path / 'no'} does not exist" in err
    code, err = run_cli(["latest", "--logbook", str(tmp_path / "absent.sqlite")])
    assert code == 2 and "absent.sqlite does not exist" in err
    assert not (tmp_path / "absent.sqlite").exists()  # a report never creates a logbook
    code, err = run_cli(["latest", "--logbook", str(book_path), "--compare", "nosuch"])
    assert code == 2 and "no session 'nosuch'" in err

    book_copy = _copy_book(book_path, tmp_path)
    with sqlite3.connect(book_copy) as c:
        c.execute(
            "INSERT INTO sessions (id, runner, started_epoch, calibration) VALUES (?, 'sim', ?, ?)",
            (
                "29990101T000000Z-empty",
                32503680000.0,
                json.dumps({"type": "calibration", "ok": False, "reason": "hinge too small"}),
            ),
        )
    code, err = run_cli(["latest", "--logbook", str(book_copy)])
    assert code == 2 and err == (
        "session 29990101T000000Z-empty has no strides, nothing to report: the "
        "calibration was refused (hinge too small)"
    )


def test_strides_without_trunk_figures_are_counted(book_path, sessions, report):
    """The trunk's dropouts (the simulator's, 0.5–3 s) leave some strides without lean and stack: the coach reads
    how many of all, beside the gaps, not a bare "no trunk data"."""
    with Logbook(book_path) as book:
        strides = book.strides(sessions["long"]["id"])
        told = book.events(sessions["long"]["id"], ["trunk_missing"])
    missing = sum(1 for s in strides if s["trunk_lean_deg"] is None)
    assert len(told) == 1 and 2 <= missing < len(strides) // 10
    section = report[report.index('<section id="alerts">') : report.index('<section id="per-minute">')]
    assert f"Trunk lean and stack missing on {missing} of {len(strides)} strides, the first ending at" in section
