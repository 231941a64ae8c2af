"""`stackcue run` end to end: a replayed run through the daemon to a real mosquitto and a subscriber."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_mqtt import Sub, wait_until

from stackcue.dsp.pipeline import Pipeline
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.firmware_bridge.replay import ReplaySource
from stackcue.firmware_bridge.source import Source
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config
from stackcue.service.sdnotify import SdNotify
from stackcue.service.session import Session
from stackcue.service.sinks import LogSink

pytest_plugins = ["broker"]
EXE = str(Path(sys.executable).parent / "stackcue")


@pytest.fixture(scope="module")
def recording(sim_csv):
    csv = sim_csv(minutes=4, rate_hz=200, trunk=True, seed=51)
    events = analyze_file(csv, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    return csv, events


def config_for(tmp_path, broker, **source) -> Path:
    src = {"kind": "replay", **source}
    lines = ["[runner]", 'id = "ana"', "[source]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in src.items()]
    lines += ["[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}"]
    lines += ["[logbook]", f'path = "{tmp_path / "logbook.sqlite"}"']
    p = tmp_path / "run.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_subscriber_gets_exactly_the_alerts_analyze_gives(broker, recording, tmp_path):
    csv, events = recording
    expected = [(e["kind"], e["t"]) for e in events if e["type"] == "alert"]
    assert len(expected) >= 2
    sub = Sub(broker, ["stackcue/ana/#"], clean=False, client_id="phone-test")
    cfg = config_for(tmp_path, broker, path=str(csv), speed=100.0)
    r = subprocess.run([EXE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    wait_until(
        lambda: sub.on("stackcue/ana/status") and sub.on("stackcue/ana/status")[-1][1] == "offline",
        10,
        "offline status",
    )
    alerts = sub.json("stackcue/ana/alert")
    got = [(a["kind"], a["t"]) for a in alerts]
    assert got == expected  # same kinds and times, in order, none lost or doubled
    assert len({a["session"] for a in alerts}) == 1 and [a["alert_id"] for a in alerts] == list(range(1, len(got) + 1))
    session = sub.json("stackcue/ana/session")[-1]
    assert session["type"] == "summary" and session["alerts"] == len(expected) and session["ended"] == "source ended"
    kinds = {e["type"] for e in sub.json("stackcue/ana/event")}
    assert {"session", "guide", "calibration"} <= kinds
    assert "ALERT" in r.stdout
    sub.close()
    # the session landed complete in the logbook: strides and alerts equal analyze's, marked clean
    from stackcue.service.logbook import Logbook

    book = Logbook(tmp_path / "logbook.sqlite")
    (sess,) = book.sessions()
    sid = sess["id"]
    assert sess["ended_how"] == "clean" and sid == alerts[0]["session"]
    want = [e for e in events if e["type"] == "stride"]
    assert book.strides(sid) == want
    assert [(a["kind"], a["t"]) for a in book.alerts(sid)] == expected
    n_raw = sum(len(c["t"]) for c in book.raw_chunks(sid))
    assert n_raw == events[-1]["samples"]  # every sample kept for re-analysis
    book.close()


@pytest.mark.slow
def test_sigterm_mid_run_publishes_summary_and_offline_and_exits_within_two_seconds(broker, recording, tmp_path):
    csv, _ = recording
    sub = Sub(broker, ["stackcue/ana/#"])
    cfg = config_for(tmp_path, broker, path=str(csv), speed=5.0)
    p = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(
        lambda: any(e.get("type") == "calibration" for e in sub.json("stackcue/ana/event")), 30, "calibration published"
    )
    time.sleep(1.0)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=10)
    took = time.monotonic() - t0
    assert p.returncode == 0, err
    assert took < 2.0, f"took {took:.2f} s to stop"
    wait_until(lambda: sub.json("stackcue/ana/session"), 5, "summary")
    assert sub.json("stackcue/ana/session")[-1]["ended"] == "stopped"
    assert sub.on("stackcue/ana/status")[-1][1] == "offline"
    sub.close()


@pytest.mark.slow
def test_systemd_notifications(tmp_path, recording):
    csv, _ = recording
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(0.2)
    msgs: list[str] = []
    stop = threading.Event()

    def listen():  # systemd's side: read as datagrams come
        while not stop.is_set():
            try:
                msgs.append(srv.recv(4096).decode())
            except TimeoutError:
                pass

    th = threading.Thread(target=listen)
    th.start()
    notifier = SdNotify({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    src = ReplaySource(csv, speed=50.0)
    daemon = Session(
        src, Pipeline(strict_calibration=False), [LogSink(io.StringIO())], runner_id="ana", notifier=notifier
    )
    assert daemon.run() == 0
    time.sleep(0.3)
    stop.set()
    th.join()
    srv.close()
    assert msgs[0].startswith("READY=1")
    assert sum(m == "WATCHDOG=1" for m in msgs) >= 5  # 4-minute run at 50x: ~5 s, pinged every 0.1 s
    assert any(m.startswith("STATUS=coaching") for m in msgs)
    assert msgs[-1] == "STOPPING=1"


class Boom:
    name = "boom"

    def __init__(self):
        self.calls = 0

    def handle(self, event):
        self.calls += 1
        raise OSError("disk full")

    def close(self):
        pass


class Keep:
    name = "keep"

    def __init__(self):
        self.events = []

    def handle(self, event):
        self.events.append(event)

    def close(self):
        pass


def test_a_failing_sink_never_stops_the_others(recording):
    csv, events = recording
    boom, keep = Boom(), Keep()
    daemon = Session(ReplaySource(csv), Pipeline(strict_calibration=False), [boom, keep], runner_id="ana")
    assert daemon.run() == 0
    got = [e for e in keep.events if e["type"] in ("alert", "clear", "calibration", "stride")]
    want = [e for e in events if e["type"] in ("alert", "clear", "calibration", "stride")]
    assert [e["type"] for e in got] == [e["type"] for e in want]
    assert boom.calls >= 4  # retried with backoff before the sink was treated as degraded


class Flaky(Source):
    """A source that stops delivering for a while, as a pulled cable does."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.i = 0

    @property
    def status(self):
        return "pelvis sensor unreachable"

    def _read_block(self):
        self.i += 1
        self.clock.t += 0.05
        if self.i > 400:
            return None
        if 100 < self.i <= 200:
            return Block.empty()
        t = (self.i - 1) * 0.05 + np.arange(10) * 0.005  # 200 Hz, at rest
        return Block(t, np.tile([0.0, 0.0, 9.81], (10, 1)), np.zeros((10, 3)))


def test_sensor_lost_and_back_are_told(tmp_path):
    from stackcue.firmware_bridge.clocks import ManualClock

    clock = ManualClock()
    keep = Keep()
    daemon = Session(Flaky(clock), Pipeline(strict_calibration=False), [keep], runner_id="ana", clock=clock)
    daemon.run()
    sensor = [e for e in keep.events if e["type"] == "sensor"]
    assert [e["state"] for e in sensor] == ["lost", "back"]
    assert sensor[0]["say"] == "Sensor lost." and "unreachable" in sensor[0]["reason"]


def test_bad_source_config_is_one_line(tmp_path, capsys):
    from stackcue.service.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nkind = "replay"\n')
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'stackcue run: [source] kind = "replay" needs [source] path (or --path)'
    os.environ.pop("NOTIFY_SOCKET", None)


def test_a_listener_that_does_not_read_never_blocks_the_daemon(tmp_path):
    path = str(tmp_path / "deaf.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)  # bound, never read: its queue fills
    n = SdNotify({"NOTIFY_SOCKET": path})
    t0 = time.monotonic()
    for _ in range(2000):
        n.watchdog()
    assert time.monotonic() - t0 < 2.0
    srv.close()


@pytest.mark.slow
def test_broker_away_for_twenty_seconds_loses_nothing(broker, tmp_path_factory, tmp_path):
    """The issue's scenario in full: mosquitto killed for 20 s mid-run and restarted on the same port."""
    d = tmp_path_factory.mktemp("outage")
    csv = d / "run.csv"
    write_simulation(simulate(SimParams(minutes=7, rate_hz=100, trunk=True, seed=52)), csv)
    cfg = config_for(tmp_path, broker, path=str(csv), speed=12.0)
    # thresholds from the standing neutral, so that an alert comes before the outage (a first-minutes tilt
    # baseline would hold tilt alerts for the first 3 minutes)
    cfg.write_text(cfg.read_text() + '[reference]\nmode = "neutral"\n')
    events = analyze_file(csv, load_config(cfg), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    expected = [(e["kind"], e["t"]) for e in events if e["type"] == "alert"]
    assert len(expected) >= 3  # at 12x: one before the outage (t 36 s), one during (t 185 s), one after
    sub = Sub(broker, ["stackcue/ana/alert", "stackcue/ana/session"], clean=False, client_id="phone-outage")
    time.sleep(1.5)  # the broker saves the subscriber's session (autosave 1 s) before it is killed
    p = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6.0)
    broker.kill()
    time.sleep(20.0)
    broker.restart()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    wait_until(lambda: sub.json("stackcue/ana/session"), 15, "summary after the outage")
    alerts = sub.json("stackcue/ana/alert")
    seen, unique = set(), []
    for a in alerts:  # at least once: the subscriber de-duplicates on (session, alert_id)
        key = (a["session"], a["alert_id"])
        if key not in seen:
            seen.add(key)
            unique.append(a)
    got = [(a["kind"], a["t"]) for a in unique]
    assert sorted(got, key=lambda k: k[1]) == expected  # none lost, original times
    for i, a in enumerate(unique):  # a fresh alert overtakes only ones already too old to be cued ([cue] max_age_s)
        for b in unique[i + 1 :]:
            if b["t"] < a["t"]:
                assert b["age_s"] > 10.0, (a, b)
    held = [a for a in unique if a["age_s"] > 1.0]
    assert held, "some alerts should have waited for the broker"
    assert all(a["raised_at"] <= a["sent_at"] for a in unique)
    summary = sub.json("stackcue/ana/session")[-1]
    want = next(e for e in events if e["type"] == "summary")
    assert summary["strides"] == want["strides"]  # the run itself was undisturbed
    sub.close()


@pytest.mark.slow
def test_the_summary_carries_the_source_statistics():
    """What the sensors met (bus errors, retries, lost time) lands in the session's summary."""
    from stackcue.firmware_bridge.clocks import ManualClock
    from stackcue.firmware_bridge.mpu6050_source import EmulatedSource

    clock = ManualClock()
    source = EmulatedSource(minutes=0.5, trunk="on", seed=3, nack_rate=0.02, clock=clock)
    keep = Keep()
    daemon = Session(source, Pipeline(strict_calibration=False), [keep], runner_id="ana", clock=clock)
    assert daemon.run() == 0
    summary = next(e for e in keep.events if e["type"] == "summary")
    stats = summary["source_stats"]
    assert set(stats) == {"pelvis", "trunk"}
    assert stats["pelvis"]["frames"] > 0.9 * 200 * 30 and stats["pelvis"]["retries"] > 0
    json.dumps(summary)  # plain data: every sink can take it


def test_a_run_whose_source_ends_before_any_calibration_exits_3(broker, recording, tmp_path):
    """Nothing was coached and no one stopped it: a failure the caller (systemd, a script) can see."""
    csv, _ = recording
    short = tmp_path / "short.csv"
    with open(csv) as src, open(short, "w") as dst:  # the header and 5 s: the routine cannot finish
        for i, line in enumerate(src):
            if i > 1000 and not line.startswith("#"):
                break
            dst.write(line)
    sub = Sub(broker, ["stackcue/ana/session"])
    cfg = config_for(tmp_path, broker, path=str(short), speed=100.0)
    r = subprocess.run([EXE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "stackcue run: the source ended before a calibration was accepted; nothing coached"
    )
    wait_until(lambda: any(p.get("calibrated") is False for p in sub.json("stackcue/ana/session")), 10, "summary")
    sub.close()
