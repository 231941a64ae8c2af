"""Cue policy end to end (issue 17): the real daemon, a real logbook, the real mosquitto and the real cue client.

* faded feedback over a series of real sessions (``stackcue run`` replaying recordings into one logbook): the
  stage each session was given at its start, from the ones before it, is stored with it, and a later
  ``analyze --session`` marks the alerts as the live run did;
* the ceiling and a snooze (a ``mute`` command from the phone) held with a runner who stays out of posture,
  with ``stackcue cue``'s client recording what it cues.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_controls import Phone
from test_cue import FakeSpeaker, settings_for
from test_mqtt import Sub, wait_until

from stackcue.dsp.cue_policy import CEILING_WINDOW_S
from stackcue.service.cue import CueClient
from stackcue.service.logbook import Logbook
from stackcue.service.report_render import build_report

pytest_plugins = ["broker"]
EXE = str(Path(sys.executable).parent / "stackcue")
ARTIFACTS = Path(__file__).parent / "artifacts"
OUT = -5.5  # the coach's tilt target 5.5° behind the runner's standing neutral: 1.3-2.7° past the threshold all run


def write_config(path: Path, broker, csv: Path, book: Path, *, speed: float, tilt_target: float, extra=()) -> Path:
    lines = ["[runner]", 'id = "fad"', "[source]", 'kind = "replay"', f'path = "{csv}"', f"speed = {speed}"]
    lines += ["[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}"]
    lines += ["[logbook]", f'path = "{book}"']
    lines += ["[reference]", 'mode = "targets"', f"pelvic_tilt_deg = {tilt_target}", *extra]
    path.write_text("\n".join(lines) + "\n")
    return path


def analyze_session(cfg: Path, sid: str) -> list[dict]:
    r = subprocess.run(
        [EXE, "analyze", "--session", sid, "--jsonl", "--config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def marks(alerts: list[dict]) -> list[tuple]:
    return [(a["id"], a["kind"], a["t"], a["cue"], a.get("cue_skipped")) for a in alerts]


@pytest.mark.slow
def test_faded_feedback_over_real_logbook_sessions(broker, sim_csv, tmp_path):
    """Out of posture, four stacked runs, then out of posture three times: the daemon gives each session the
    stage its predecessors in the logbook earn (1,1,1,2,2,3,2,1), stores it, and the report's figures and a
    re-analysis agree with it."""
    csv = sim_csv(minutes=12, rate_hz=100, seed=11, episodes=False)
    book_path = tmp_path / "logbook.sqlite"
    targets = [OUT, 0.0, 0.0, 0.0, 0.0, OUT, OUT, OUT]
    configs = []
    for i, tilt in enumerate(targets):
        cfg = write_config(tmp_path / f"run{i}.toml", broker, csv, book_path, speed=1000.0, tilt_target=tilt)
        configs.append(cfg)
        r = subprocess.run([EXE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        assert "cue: fading stage" in r.stderr
    with Logbook(book_path, readonly=True) as book:
        sessions = book.sessions(runner="fad")
        assert len(sessions) == len(targets)
        stages = [book.cue_plan(s["id"])["stage"] for s in sessions]
        assert stages == [1, 1, 1, 2, 2, 3, 2, 1]
        assert [s["summary"]["cues"]["stage"] for s in sessions] == stages
        fractions = [s["summary"]["cues"]["alert_fraction"] for s in sessions]
        assert all((f > 0.9) if t == OUT else (f < 0.02) for f, t in zip(fractions, targets, strict=True)), fractions
        plan = book.cue_plan(sessions[5]["id"])
        assert plan["fading"] is True and "faded to stage 3" in plan["reason"] and len(plan["steps"]) == 5
        live = [a["payload"] for a in book.alerts(sessions[5]["id"])]
        stage2 = [a["payload"] for a in book.alerts(sessions[6]["id"])]
    # stage 3: a runner 1.3-2.7° past the threshold is not cued (the wider band is 3°); stage 2: every second one
    assert live and all(a["cue"] is False and a["cue_skipped"] == "fading" for a in live)
    assert [a["cue"] for a in stage2] == [i % 2 == 0 for i in range(len(stage2))]
    # a re-analysis of the stored raw samples uses the stored stage: the same alerts, the same marks
    again = [e for e in analyze_session(configs[5], sessions[5]["id"]) if e["type"] == "alert"]
    assert marks(again) == marks(live)
    summary = analyze_session(configs[5], sessions[5]["id"])[-1]
    assert summary["cues"]["stage"] == 3 and summary["cues"]["not_cued"]["fading"] == len(live)
    # the coach's report: the cues given per 10 minutes, the alerts not cued and why, the stage
    with Logbook(book_path, readonly=True) as book:
        page = build_report(book, sessions[6]["id"])
    text = re.sub(r"<[^>]+>", "", page)
    given = sum(1 for a in stage2 if a["cue"])
    per_10 = 600.0 * given / sessions[6]["summary"]["running_s"]
    assert f"Cues given: {given} ({per_10:.1f} per 10 minutes of running; ceiling 6); per km: no distance" in text
    assert f"Not cued: {len(stage2) - given} (fading {len(stage2) - given})" in text
    stage_line = (
        r"Faded feedback: stage 2 of 3, every second alert cued \(a session \d+ % in alert \(≥ 20 %\): back to "
    )
    stage_line += r"stage 2\)"
    assert re.search(stage_line, text), text[text.find("Faded") : text.find("Faded") + 200]
    shot = screenshot(page, tmp_path, "report-cues.png")
    assert shot is None or shot.stat().st_size > 10_000


def screenshot(page: str, tmp_path: Path, name: str) -> Path | None:
    """The report opened in headless Chromium (as test_report does), the cues section in view; None without it."""
    chromium, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (chromium.exists() and driver_path.exists()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    html = tmp_path / "report.html"
    html.write_text(page)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(driver_path)))
    try:
        driver.get(html.as_uri())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        cues = driver.find_element(By.ID, "cues")
        assert cues.is_displayed()
        rows = driver.find_elements(By.CSS_SELECTOR, "#alerts table")[1].find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[-1].text for r in rows][:2] == ["yes", "no: fading"]
        driver.execute_script("arguments[0].scrollIntoView();", cues)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = ARTIFACTS / name
        assert driver.save_screenshot(str(out))
        return out
    finally:
        driver.quit()


@pytest.mark.slow
def test_ceiling_and_snooze_through_the_broker_with_the_cue_client(broker, sim_csv, tmp_path):
    """25 minutes out of posture, a reminder every 30 s, at most 4 cues in 10 minutes; the phone snoozes the
    cues for 5 minutes about 400 s in. The cue client cues exactly the alerts marked to be cued."""
    csv = sim_csv(minutes=25, rate_hz=100, seed=3, gaps=False, stop=False)
    book_path = tmp_path / "logbook.sqlite"
    speed = 60.0
    cfg = write_config(
        tmp_path / "run.toml",
        broker,
        csv,
        book_path,
        speed=speed,
        tilt_target=OUT,
        extra=["[alerts]", "remind_every_s = 30.0", "[cue]", "max_per_10min = 4", "fading = false"],
    )
    speaker = FakeSpeaker()
    settings = replace(settings_for(broker), runner_id="fad")  # settings_for makes runner "ana"'s
    client = CueClient(settings, {"owner": "pi", "max_age_s": 10.0}, "pi", speaker, None)
    client.start()
    assert client.subscribed.wait(10), client.status
    sub = Sub(broker, ["stackcue/fad/alert", "stackcue/fad/status"])
    phone = Phone(broker, prefix="stackcue/fad")
    proc = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.append(proc.stderr.read().decode()), daemon=True).start()
    try:
        wait_until(lambda: phone.state().get("state") == "running", 60, "a running session")
        t0 = time.monotonic()
        wait_until(lambda: (time.monotonic() - t0) * speed > 300.0, 30, "about 400 s of data")
        phone.send({"cmd": "mute", "minutes": 5, "id": "snz", "from": "phone"})
        assert phone.answer("snz")[0]["last_command"]["ok"] is True
        assert proc.wait(120) == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: any(m[1] == "offline" for m in sub.on("stackcue/fad/status")), 10, "offline")
    assert client.wait_idle(10)
    client.stop()
    sub.close()
    with Logbook(book_path, readonly=True) as book:
        (s,) = book.sessions(runner="fad")
        stored = [a["payload"] for a in book.alerts(s["id"])]
        (snooze,) = book.events(s["id"], ["snooze"])
    published = sorted(sub.json("stackcue/fad/alert"), key=lambda a: a["alert_id"])
    assert marks(published) == marks(stored) and len(stored) >= 40  # every alert delivered and stored, marked
    assert snooze["from"] == "mqtt" and snooze["minutes"] == 5.0
    snoozed = [a for a in stored if snooze["t"] < a["decided_t"] < snooze["until_t"]]
    assert len(snoozed) >= 5 and all(a["cue"] is False and a["cue_skipped"] == "snoozed" for a in snoozed)
    # the ceiling: never more than 4 cued in any 10 minutes of the run, and alerts held back by it
    cued = [a for a in stored if a["cue"]]
    for a in cued:
        assert sum(1 for b in cued if a["decided_t"] - CEILING_WINDOW_S < b["decided_t"] <= a["decided_t"]) <= 4
    assert any(a.get("cue_skipped") == "ceiling" for a in stored)
    # the cue client cued exactly the alerts marked to be cued, in order; it logged the others as not cued
    played = [c.key[2] for c in client.played if c.what.startswith("alert")]
    assert played == [a["alert_id"] for a in published if a["cue"]]
    assert len(played) == len(cued) and "Cues muted for 5 minutes." in speaker.texts  # the confirmation is said
    # the re-analysis snoozes at the stored samples: the same marks
    again = [e for e in analyze_session(cfg, s["id"]) if e["type"] == "alert"]
    assert marks(again) == marks(stored)
