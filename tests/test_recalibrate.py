"""Pausing and re-calibrating a run (issue 14): the pipeline's side, against the simulator's truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from truthcheck import rmse, stride_truth

from stackcue.dsp.params import PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.errors import ConfigError, PipelineError
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook, LogbookSink
from stackcue.service.report_render import build_report, write_report
from stackcue.service.report_text import clock

pytest_plugins = ["broker"]  # tests/broker.py: a real mosquitto for the daemon

RECAL = {"minutes": 4, "rate_hz": 100, "trunk": True, "seed": 7, "recal_at_s": 100.0, "restrap": True}


def controlled(block, controls, sizes=(10**9,), params=None):
    """Every event of ``block`` fed in blocks of ``sizes`` (cycled) with ``controls`` at their sample indices.

    ``controls``: (index, name, t); a pause drops the samples up to the matching resume's index, as the
    session drops what it reads while paused. Every metric from the standing neutral unless ``params`` say
    otherwise: the drifts these short runs need come before a first-minutes baseline would exist (issue 17).
    """
    pipe = Pipeline(params or PipelineParams(reference=ReferenceParams(mode="neutral")))
    out: list[dict] = []
    k = 0
    i = 0
    todo = sorted(controls, key=lambda c: c[0])
    stops = [c[0] for c in todo] + [len(block)]
    for (idx, name, t), nxt in zip([(0, None, 0.0), *todo], stops, strict=True):
        if name is not None:
            out += getattr(pipe, name)(t)
            if name == "pause":
                continue  # nothing is fed until the resume
            i = idx
        while i < nxt:
            n = sizes[k % len(sizes)]
            out += pipe.feed(block.slice(i, min(i + n, nxt)))
            i, k = i + n, k + 1
    return out + pipe.finish()


def at(block, t):
    return int(np.searchsorted(block.t, t))


def pause_controls(block, t0, t1):
    i0, i1 = at(block, t0), at(block, t1)
    return [(i0, "pause", float(block.t[i0 - 1])), (i1, "resume", float(block.t[i1]))]


@pytest.fixture(scope="module")
def run(sim_run):
    return sim_run(minutes=4, rate_hz=100, trunk=True, seed=31)


@pytest.fixture(scope="module")
def recal_run(sim_run):
    return sim_run(**RECAL)


def strides(events, segment=None):
    return [e for e in events if e["type"] == "stride" and (segment is None or e["cal_segment"] == segment)]


# ----------------------------------------------------------------------------- pause


def test_a_pause_is_counted_apart_and_is_no_gap(run):
    b = run.block
    plain = controlled(b, [])
    events = controlled(b, pause_controls(b, 40.0, 70.0))
    pauses = [e for e in events if e["type"] == "pause"]
    assert [p["state"] for p in pauses] == ["paused", "resumed"]
    t0, t1 = pauses[0]["t"], pauses[1]["t"]
    assert 39.9 < t0 < 40.0 < 70.0 <= t1 < 70.1
    assert pauses[1]["paused_s"] == pytest.approx(t1 - t0, abs=0.01)
    # no gap for the pause, and the data's gaps outside it are all still there
    gaps = [(g["t_start"], g["t_end"]) for g in events if g["type"] == "gap"]
    outside = [(g["t_start"], g["t_end"]) for g in plain if g["type"] == "gap" and not t0 <= g["t_start"] <= t1]
    assert gaps == outside and len(gaps) >= 1
    # no stride spans the pause; the run before it is unchanged up to the last strides
    assert not any(s["t_start"] < t1 and s["t_end"] > t0 for s in strides(events))
    early = [s for s in strides(plain) if s["t_end"] < t0 - 5.0]
    assert early == [s for s in strides(events) if s["t_end"] < t0 - 5.0]
    s_plain, s = plain[-1], events[-1]
    assert (s_plain["pauses"], s_plain["paused_s"]) == (0, 0.0)
    assert (s["pauses"], s["paused_s"]) == (1, pytest.approx(t1 - t0, abs=0.01))
    assert s["gaps"] == len(outside)
    assert s["running_s"] < s_plain["running_s"] - 25.0  # the 30 s paused are not running time
    assert all(e["cal_segment"] == 0 for e in strides(events))


def test_events_stay_in_time_order_around_a_pause(run):
    events = controlled(run.block, pause_controls(run.block, 60.0, 90.0))
    times = [e.get("t", e.get("t_start")) for e in events if e["type"] != "summary"]
    assert times == sorted(times)


def test_a_long_pause_ends_the_drift_and_a_short_one_carries_it_over(run):
    b = run.block
    plain = controlled(b, [])
    alert = next(e for e in plain if e["type"] == "alert")
    clear = next(e for e in plain if e["type"] == "clear" and e["kind"] == alert["kind"])
    assert clear["t"] - alert["t"] > 40.0  # room for a pause inside the drift
    mid = alert["t"] + 15.0
    # longer than quiet_s (30 s): cleared at the pause with reason "pause", as a long gap would
    long = controlled(b, pause_controls(b, mid, mid + 35.0))
    cl = [e for e in long if e["type"] == "clear" and e["kind"] == alert["kind"]]
    assert cl[0]["reason"] == "pause" and cl[0]["t"] == next(e["t"] for e in long if e["type"] == "pause")
    # shorter: the drift goes on, and the paused seconds are not time in alert
    short = controlled(b, pause_controls(b, mid, mid + 10.0))
    assert not any(e.get("reason") == "pause" for e in short)
    paused = short[-1]["paused_s"]
    lost = plain[-1]["time_in_alert_s"][alert["kind"]] - short[-1]["time_in_alert_s"][alert["kind"]]
    assert lost == pytest.approx(paused, abs=3.0)  # the clear may move by a stride or two
    assert paused > 9.0


def test_pause_and_resume_are_idempotent_and_feeding_while_paused_is_refused(run):
    b = run.block
    pipe = Pipeline()
    pipe.feed(b.slice(0, 3000))
    first = pipe.pause(float(b.t[2999]))
    assert first[-1] == {"type": "pause", "t": round(float(b.t[2999]), 4), "state": "paused"}
    assert pipe.pause(float(b.t[2999]) + 1.0) == []
    with pytest.raises(PipelineError, match=r"paused at t=.*resume before feeding"):
        pipe.feed(b.slice(3000, 3100))
    assert pipe.resume(float(b.t[3100]))[-1]["state"] == "resumed"
    assert pipe.resume(float(b.t[3100])) == []
    pipe.feed(b.slice(3100, 3200))
    # a pause time before the data already analysed is the last sample's
    assert pipe.pause(0.0)[-1]["t"] == round(float(b.t[3199]), 4)
    end = pipe.finish()  # a run stopped while paused ends clean
    assert end[-1]["pauses"] == 2


def test_a_pause_during_the_calibration_search_keeps_the_routine_from_spanning_it(run):
    b = run.block
    cal_t = next(e for e in controlled(b, []) if e["type"] == "calibration")["t"]
    # a pause in the middle of the hinge: that routine is gone; with no other routine offline refuses the run
    with pytest.raises(Exception, match=r"no calibration routine found|calibration refused"):
        controlled(b, pause_controls(b, cal_t - 5.0, cal_t - 4.0))
    # a pause just before the routine (the first stillness after it) leaves it found
    events = controlled(b, pause_controls(b, 0.5, 1.0))
    assert next(e for e in events if e["type"] == "calibration")["ok"]


# ----------------------------------------------------------------------------- simulator: a second routine


def test_the_simulator_inserts_a_second_routine_with_a_new_mounting(recal_run):
    info = recal_run.info
    r = info["recalibration"]
    assert r["restrap"][1] <= r["still1"][0] < r["hinge"][0] < r["still2"][0] < r["run_start"]
    before = Rotation.from_quat(np.roll(info["mounting"]["pelvis"]["q_body_from_sensor_wxyz"], -1))
    after = Rotation.from_quat(np.roll(info["mounting_after"]["pelvis"]["q_body_from_sensor_wxyz"], -1))
    assert (before * after.inv()).magnitude() > np.radians(20)
    # the gyro sees the re-strap: integrated over it, it turns the sensor from one mounting to the other
    b, t = recal_run.block, recal_run.block.t
    i0, i1 = at(b, r["restrap"][0] - 0.5), at(b, r["restrap"][1] + 0.5)
    bias = np.asarray(info["gyro_bias_rad_s"]["pelvis"])
    q = Rotation.identity()
    for k in range(i0, i1):
        q = q * Rotation.from_rotvec((b.gyr[k] - bias) * (t[k + 1] - t[k]))
    # sensor_end = sensor_start·q (body still): R_sb_after = q⁻¹·R_sb_before
    err = np.degrees((q.inv() * before.inv() * after).magnitude())
    assert err < 3.0, f"integrated gyro misses the re-strap by {err:.1f}°"


def test_the_simulator_refuses_a_second_routine_that_does_not_fit():
    with pytest.raises(ConfigError, match="recal_at_s=500"):
        simulate(SimParams(minutes=4, recal_at_s=500.0))
    with pytest.raises(ConfigError, match="restrap needs recal_at_s"):
        simulate(SimParams(minutes=4, restrap=True))


# ----------------------------------------------------------------------------- re-calibration


def recal_controls(run_):
    r = run_.info["recalibration"]
    i = at(run_.block, r["t_stop"] + 8.0)  # stopped and standing, before re-strapping
    return [(i, "recalibrate", float(run_.block.t[i - 1]))], float(run_.block.t[i - 1])


@pytest.mark.slow
def test_recalibration_uses_the_new_calibration(recal_run):
    controls, t_recal = recal_controls(recal_run)
    events = controlled(recal_run.block, controls)
    cals = [e for e in events if e["type"] == "calibration" and e["ok"]]
    assert [c["segment"] for c in cals] == [0, 1]
    r = recal_run.info["recalibration"]
    assert r["still2"][0] < cals[1]["t"] < r["run_start"]
    # no strides while the routine is searched for; every stride after it is of segment 1
    assert not [s for s in strides(events) if t_recal < s["t_end"] and s["t_start"] < cals[1]["t"]]
    assert all(s["cal_segment"] == (1 if s["t_start"] > cals[1]["t"] else 0) for s in strides(events))
    assert events[-1]["calibrations"] == 2
    # right against the truth, in both segments, within the accuracy tests' tolerance
    for seg in (0, 1):
        steady = [s for s in strides(events, seg) if s["steady"]]
        assert len(steady) > 100
        truths = [stride_truth(recal_run.truth, s) for s in steady]
        for f in ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg"):
            pairs = [(s[f], x[f]) for s, x in zip(steady, truths, strict=True) if s[f] is not None]
            assert len(pairs) > 0.8 * len(steady)
            e = rmse(*zip(*pairs, strict=True))
            assert e <= 1.0, f"segment {seg}: {f} RMSE {e:.2f}°"
    # the old calibration on the re-strapped sensor would be many degrees off (and raises false alerts)
    old = controlled(recal_run.block, [])
    late = [s for s in strides(old) if s["steady"] and s["t_start"] > r["run_start"]]
    truth = [stride_truth(recal_run.truth, s)["pelvic_tilt_deg"] for s in late]
    e_old = rmse([s["pelvic_tilt_deg"] for s in late], truth)
    assert e_old > 10.0
    assert old[-1]["calibrations"] == 1 and old[-1]["calibration_suspect"]


def test_recalibration_ends_the_drifts(run):
    b = run.block
    plain = controlled(b, [])
    alert = next(e for e in plain if e["type"] == "alert")
    i = at(b, alert["t"] + 10.0)
    events = controlled(b, [(i, "recalibrate", float(b.t[i - 1]))])
    clear = next(e for e in events if e["type"] == "clear")
    assert clear["reason"] == "recalibration" and clear["t"] == round(float(b.t[i - 1]), 4)


def test_a_refused_recalibration_never_falls_back_on_the_old_one(run):
    """Re-calibrating with no routine after it: no strides from then on, and even strict, no exception."""
    b = run.block
    i = at(b, 60.0)
    events = controlled(b, [(i, "recalibrate", float(b.t[i - 1]))])
    assert not [s for s in strides(events) if s["t_end"] > float(b.t[i - 1])]
    assert strides(events)  # the run before it is kept
    s = events[-1]
    assert s["calibrations"] == 1 and s["calibrated"]
    assert [e["segment"] for e in events if e["type"] == "calibration"] == [0]


def test_recalibrating_while_searching_or_paused_stays_in_its_segment(recal_run):
    b = recal_run.block
    r = recal_run.info["recalibration"]
    i = at(b, r["t_stop"] + 8.0)
    j = at(b, r["t_stop"] + 9.0)
    # twice (the second restarts the search), then a pause before the routine: still segment 1, found
    p0, p1 = at(b, r["restrap"][1] + 0.2), at(b, r["restrap"][1] + 0.6)
    controls = [
        (i, "recalibrate", float(b.t[i - 1])),
        (j, "recalibrate", float(b.t[j - 1])),
        (p0, "pause", float(b.t[p0 - 1])),
        (p1, "recalibrate", float(b.t[p0 - 1])),
        (p1, "resume", float(b.t[p1])),
    ]
    events = controlled(b, controls)
    assert [e["segment"] for e in events if e["type"] == "calibration" and e["ok"]] == [0, 1]
    # re-calibrating before the first routine is accepted stays segment 0
    k = at(b, 2.0)
    early = controlled(b, [(k, "recalibrate", float(b.t[k - 1]))])
    assert [e["segment"] for e in early if e["type"] == "calibration" and e["ok"]] == [0]


# ----------------------------------------------------------------------------- the report of such a run

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SID = "20261204T183000Z-re14"


def recal_and_pauses(run_):
    """Controls as a runner gives them: a pause at a light, re-strap and re-calibrate, a long pause mid-drift."""
    b = run_.block
    controls, _ = recal_controls(run_)
    return [*pause_controls(b, 50.0, 56.0), *controls, *pause_controls(b, 195.0, 230.0)]


@pytest.fixture(scope="module")
def stored(recal_run, tmp_path_factory):
    """The run's events stored as the daemon stores them (LogbookSink): session, then every event as it is."""
    path = tmp_path_factory.mktemp("recal") / "logbook.sqlite"
    events = controlled(recal_run.block, recal_and_pauses(recal_run), sizes=(997,))
    sink = LogbookSink(path, config=load_config().data)
    sink.handle(
        {
            "type": "session",
            "t": 0.0,
            "state": "started",
            "session": SID,
            "runner": "ann",
            "started_epoch": 1764873000.0,
            "clock_synchronised": "yes",
            "source": {"sensor": "simulated", "rate": "100"},
        }
    )
    for e in events:
        sink.handle(e)
    sink.close()
    return path, events


def test_the_logbook_keeps_the_pause_and_calibration_events_as_they_are(stored):
    path, events = stored
    with Logbook(path) as book:
        kept = book.events(SID)
        session = book.sessions()[0]
    mine = [e for e in events if e["type"] in ("pause", "calibration")]
    assert [e for e in kept if e["type"] in ("pause", "calibration")] == mine
    assert session["summary"]["calibrations"] == 2 and session["summary"]["pauses"] == 2
    assert session["calibration"]["segment"] == 1  # the row keeps the latest; the report reads the events


@pytest.mark.slow
def test_the_report_shows_the_recalibration_and_the_pauses(stored):
    path, events = stored
    with Logbook(path) as book:
        html = build_report(book, SID)
    cal1 = next(e for e in events if e["type"] == "calibration" and e.get("segment") == 1)
    line = f"re-calibrated at {clock(cal1['t'])} (segment 1, quality 1.00)"
    assert html.count(line) == 1  # in the overview
    assert f"<tr><td>{clock(cal1['t'])}</td><td>1</td>" in html  # and in the calibration section's table
    assert "2 pauses, 0:41 in all (at 0:50, 3:15), not analysed" in html
    assert '<h3 id="pauses">Pauses</h3>' in html
    assert "<tr><td>0:50.0</td><td>0:56.0</td><td>0:06</td></tr>" in html
    # the first calibration is still the one shown as "accepted at" (the session row holds the latest)
    cal0 = next(e for e in events if e["type"] == "calibration")
    assert f"Accepted at {clock(cal0['t'])} from" in html
    # on the time plots: a solid line per panel at the re-calibration, and the pauses shaded
    assert html.count(" cal 1</text>") >= 4
    assert html.count("paused</text>") == 1 and "re-calibrated (new segment)</text>" in html
    # the paused minutes are no time in alert: the long pause cleared the drift there ("pause")
    assert any(e.get("reason") == "pause" for e in events)


def test_the_report_of_a_run_without_pauses_or_recalibration_shows_none(recal_run, tmp_path):
    path = tmp_path / "plain.sqlite"
    sink = LogbookSink(path, config=load_config().data)
    sink.handle({"type": "session", "t": 0.0, "state": "started", "session": SID, "runner": "ann"})
    for e in controlled(recal_run.block, []):
        sink.handle(e)
    sink.close()
    with Logbook(path) as book:
        html = build_report(book, SID)
    assert "re-calibrated" not in html and "Paused" not in html and "cal 1" not in html


@pytest.mark.slow
def test_the_report_opens_in_chromium(stored, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    path, _ = stored
    out = tmp_path / "report.html"
    with Logbook(path) as book:
        write_report(book, SID, out)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,4000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get(out.as_uri())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        facts = {
            d.find_element(By.TAG_NAME, "dt").get_attribute("textContent"): d.find_element(By.TAG_NAME, "dd").text
            for d in driver.find_elements(By.CSS_SELECTOR, "#overview dl.facts > div")
        }
        assert "re-calibrated at" in facts["Calibration"] and "segment 1" in facts["Calibration"]
        assert facts["Paused"].startswith("2 pauses")
        rows = driver.find_elements(By.CSS_SELECTOR, "#pauses + p + div.scroll tbody tr")
        assert [r.text for r in rows] == ["0:50.0 0:56.0 0:06", "3:15.0 3:50.0 0:35"]
        recal = driver.find_elements(By.CSS_SELECTOR, "#recalibrations + p + div.scroll tbody tr")
        assert len(recal) == 1 and recal[0].text.split()[1] == "1"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(height + 100, 12000))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "report-recalibrate.png"))
    finally:
        driver.quit()
    shutil.copy(out, ARTIFACTS / "report-recalibrate.html")


def test_the_terminal_summary_says_where_it_recalibrated_and_the_pauses(stored):
    from stackcue.service.report_text import human_summary

    _, events = stored
    text = human_summary(events, "run.csv", {})
    cal1 = next(e for e in events if e["type"] == "calibration" and e.get("segment") == 1)
    assert f"Re-calibrated at {clock(cal1['t'])} (segment 1, quality 1.00)" in text.splitlines()
    assert "Paused: 2 times, 0:41.0 in all (not analysed)" in text.splitlines()
    assert text.count("Calibration accepted at") == 1


# ----------------------------------------------------------------------------- the session analysed again


@pytest.mark.slow
def test_a_recalibrated_live_session_analysed_again_keeps_its_segments(recal_run, broker, tmp_path):
    """The daemon (real MQTT broker, real logbook) re-calibrates on a command mid-run; ``analyze --session``
    replays the raw samples and must re-calibrate at the same sample: same segments, same tilt, the truth."""
    import io
    import signal

    from stackcue.firmware_bridge.source import Source
    from stackcue.service.run_daemon import Daemon
    from stackcue.service.session_store import analyze_session

    book_path = tmp_path / "logbook.sqlite"
    cfg_path = tmp_path / "run.toml"
    lines = ["[runner]", 'id = "ann"', "[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}"]
    cfg_path.write_text("\n".join([*lines, "[logbook]", f'path = "{book_path}"', ""]))
    cfg = load_config(cfg_path)
    b, r = recal_run.block, recal_run.info["recalibration"]
    i_recal = at(b, r["t_stop"] + 8.0)  # stopped and standing, before re-strapping
    # a pause at a light, then the re-calibration; and a long pause mid-run in the new segment
    asks = {at(b, 50.0): "pause", at(b, 56.0): "resume", i_recal: "recalibrate", at(b, 195.0): "pause"}
    asks[at(b, 230.0)] = "resume"
    daemon: Daemon | None = None

    class Sensors(Source):
        """The run in 50 ms blocks; the runner's commands (as over MQTT) at their samples."""

        def __init__(self) -> None:
            super().__init__()
            self.meta = {"sensor": "simulated", "rate": "100"}
            self.i = 0

        def _read_block(self):
            if self.i >= len(b):
                return None
            j = min(self.i + 5, len(b))
            for k, cmd in asks.items():
                if self.i <= k < j:
                    daemon.controls.submit(f'{{"cmd": "{cmd}", "id": "{cmd}{k}"}}', "mqtt")
            block, self.i = b.slice(self.i, j), j
            return block

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon = Daemon(cfg, lambda: None, replay=True, first_source=Sensors())
        assert daemon.run() == 0
    finally:
        for s, h in saved.items():
            signal.signal(s, h)

    with Logbook(book_path) as book:
        (session,) = book.sessions()
        sid = session["id"]
        live = book.strides(sid)
        (recal,) = book.events(sid, ["recalibrate"])
        assert recal["t"] == float(b.t[recalibrate_index(b, recal["t"]) - 1])  # an exact sample time
        assert [c["segment"] for c in book.events(sid, ["calibration"]) if c["ok"]] == [0, 1]
        live_summary = book.events(sid, ["summary"])[-1]
        again = analyze_session(book, sid, cfg, jsonl=True, out=io.StringIO())
    summary = again[-1]
    assert live_summary["pauses"] == summary["pauses"] == 2 and live_summary["calibrations"] == 2
    assert summary["paused_s"] == pytest.approx(live_summary["paused_s"], abs=0.01)
    assert summary["gaps"] == live_summary["gaps"]  # a pause replayed as a pause, not as a gap
    replay = strides(again)
    assert [c["segment"] for c in again if c["type"] == "calibration" and c["ok"]] == [0, 1]
    assert {s["cal_segment"] for s in live} == {0, 1}
    assert [round(s["t_start"], 3) for s in replay] == [round(s["t_start"], 3) for s in live]
    for x, y in zip(replay, live, strict=True):
        assert x["cal_segment"] == y["cal_segment"], x["t_start"]
        if x["pelvic_tilt_deg"] is not None or y["pelvic_tilt_deg"] is not None:
            assert abs(x["pelvic_tilt_deg"] - y["pelvic_tilt_deg"]) <= 0.3, x["t_start"]
    # after the re-strap, right against the truth (the accuracy tests' tolerance), as the live run was
    late = [s for s in replay if s["steady"] and s["cal_segment"] == 1]
    assert len(late) > 50  # the 35 s paused are no strides
    truth = [stride_truth(recal_run.truth, s)["pelvic_tilt_deg"] for s in late]
    e = rmse([s["pelvic_tilt_deg"] for s in late], truth)
    assert e <= 1.0, f"re-analysed segment 1: pelvic tilt RMSE {e:.2f}°"


def recalibrate_index(block, t: float) -> int:
    """The index after the sample at ``t``."""
    return int(np.searchsorted(block.t, t, side="right"))
