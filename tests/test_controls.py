"""The run's controls (issue 14): commands, the retained state, the ACL, and the real daemon obeying them.

End to end: a real mosquitto (tests/broker.py), the real ``stackcue run`` replaying a simulated run with a
second calibration routine in it, commands sent as the phone and ``stackcue ctl`` send them, and the logbook
checked afterwards for what a pause must leave out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from test_mqtt import Sub, wait_until

from stackcue.dsp.pipeline import Pipeline
from stackcue.firmware_bridge.replay import ReplaySource
from stackcue.service.controls import Command, Controls, Refusal, confirmation, parse_command, refusal_for
from stackcue.service.cue_rules import CueRules
from stackcue.service.payloads import validate
from stackcue.service.session import Session
from stackcue.service.state import StateTracker

pytest_plugins = ["broker"]
EXE = str(Path(sys.executable).parent / "stackcue")
ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ACL = (ROOT / "config" / "mosquitto" / "acl").read_text()
RECAL = {"minutes": 4, "rate_hz": 100, "trunk": True, "seed": 7, "recal_at_s": 100.0, "restrap": True}


# ---------------------------------------------------------------------- the command model


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe", "command is not UTF-8 text"),
        ("pause", "command is not JSON (Expecting value)"),
        ("[1]", "command is not a JSON object (list)"),
        ("{}", "command without cmd"),
        ('{"cmd": "jump"}', 'cmd "jump" is not one of start, pause, resume, stop, recalibrate, mute'),
        ('{"cmd": 3}', "cmd 3 is not one of start, pause, resume, stop, recalibrate, mute"),
        ('{"cmd": "pause", "id": 7}', "id 7 is not a string of 1-64 characters"),
        ('{"cmd": "pause", "id": ""}', 'id "" is not a string of 1-64 characters'),
        (json.dumps({"cmd": "pause", "id": "x" * 65}), "is not a string of 1-64 characters"),
        ('{"cmd": "pause", "from": ["phone"]}', "from list is not a string of at most 32 characters"),
        ('{"cmd": "mute"}', "mute without minutes (0 turns the cues back on)"),
        ('{"cmd": "mute", "minutes": 241}', "minutes 241 is not a number from 0 to 240"),
        ('{"cmd": "mute", "minutes": -1}', "minutes -1 is not a number from 0 to 240"),
        ('{"cmd": "mute", "minutes": true}', "minutes true is not a number from 0 to 240"),
        ('{"cmd": "mute", "minutes": "5"}', 'minutes "5" is not a number from 0 to 240'),
    ],
)
def test_a_bad_command_is_refused_in_one_line_naming_the_field(payload, reason):
    r = parse_command(payload)
    assert isinstance(r, Refusal)
    assert reason in r.reason and "\n" not in r.reason
    if isinstance(payload, str) and payload.startswith("{"):  # the payload schema says the same
        assert validate("command", json.loads(payload)) == r.reason


def test_a_good_command_keeps_its_id_and_sender_and_ignores_extra_keys():
    c = parse_command('{"cmd": "mute", "minutes": 10, "id": "a1", "from": "phone", "colour": "red"}')
    assert c == Command("mute", "a1", "phone", 10.0, "mqtt")
    assert parse_command({"cmd": "stop"}) == Command("stop")
    assert validate("command", {"cmd": "stop", "extra": 1}) is None
    # the refusal of a readable id keeps it, so the sender hears back
    r = parse_command('{"cmd": "mute", "minutes": 999, "id": "m9"}')
    assert (r.id, r.cmd) == ("m9", "mute")


def test_which_state_allows_which_command():
    table = {
        "idle": {"start": None, "pause": "no session running", "stop": "no session running", "mute": None},
        "calibrating": {"start": "already running", "pause": None, "resume": "not paused", "stop": None},
        "running": {"pause": None, "resume": "not paused", "recalibrate": None, "stop": None, "mute": None},
        "paused": {"pause": "already paused", "resume": None, "recalibrate": None, "stop": None},
        "sensor_lost": {"pause": None, "stop": None, "start": "already running"},
    }
    for state, want in table.items():
        for cmd, reason in want.items():
            assert refusal_for(cmd, state) == reason, (state, cmd)
    assert refusal_for("recalibrate", "calibrating") is not None


def test_spoken_confirmations():
    assert confirmation(Command("pause")) == "Paused."
    assert confirmation(Command("resume")) == "Resumed."
    assert confirmation(Command("stop")) == "Stopped. Run saved."
    assert confirmation(Command("start")) == "Starting. Stand tall and still."
    assert confirmation(Command("recalibrate")) == "Recalibrating. Stand tall and still."
    assert confirmation(Command("mute", minutes=10)) == "Cues muted for 10 minutes."
    assert confirmation(Command("mute", minutes=1)) == "Cues muted for 1 minute."
    assert confirmation(Command("mute", minutes=0)) == "Cues back on."


def test_the_queue_takes_payloads_names_and_gestures_from_any_thread():
    import threading

    q = Controls()
    threads = [
        threading.Thread(target=lambda i=i: q.submit(f'{{"cmd": "pause", "id": "t{i}"}}', "mqtt")) for i in range(50)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.submit("pause_resume", "button")
    q.submit("mute", "button")  # a bare mute has no minutes: refused, still queued so it is answered
    items = q.drain()
    assert sorted(i.id for i in items[:50]) == sorted(f"t{i}" for i in range(50))
    assert items[50] == Command("pause_resume", None, "button", None, "button")
    assert isinstance(items[51], Refusal)
    assert q.get() is None and q.get(0.01) is None


# ---------------------------------------------------------------------- the state payload


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_state_goes_out_at_once_on_a_change_and_at_most_once_a_second_for_strides():
    mono, wall = Clock(), Clock()
    st = StateTracker(wall=wall, clock=mono)
    first = st.update()
    assert first["state"] == "idle" and validate("state", first) is None
    assert st.update() is None  # nothing changed
    st.set(state="calibrating", session="s1")
    assert st.update()["state"] == "calibrating"
    st.on_event({"type": "calibration", "ok": True, "t": 10.0})
    st.set(state="running")
    st.data_time(12.0)
    p = st.update()
    assert p["state"] == "running" and p["calibration_age_s"] == 2.0
    sent = 0
    for i in range(50):  # 5 s of strides every 0.1 s: five updates, one a second
        mono.t += 0.1
        st.data_time(12.0 + i * 0.1)
        st.on_event({"type": "stride", "t_end": 12.0 + i * 0.1, "pelvic_tilt_deg": 3.14159, "cadence_spm": 170.0})
        sent += st.update() is not None
    assert sent == 5
    st.command("c1", "pause", True, None)  # a command's answer goes at once, throttle or not
    p = st.update()
    assert p["last_command"] == {"id": "c1", "cmd": "pause", "ok": True, "reason": None}
    assert p["last_stride"]["pelvic_tilt_deg"] == 3.14 and validate("state", p) is None
    wall.t += 10
    st.set(muted_until=wall.t + 60)
    assert st.update()["muted_until"] == wall.t + 60 and st.muted()
    wall.t += 61  # the mute ran out: the state says so (an eventful change)
    assert st.update()["muted_until"] is None and not st.muted()


def test_state_validation_names_the_field():
    good = StateTracker().payload()
    assert validate("state", good) is None
    assert validate("state", {**good, "state": "jogging"}).startswith("state 'jogging' is not one of idle")
    assert validate("state", {**good, "alerts": "2"}) == "alerts '2' is not a finite number"
    bad_cmd = {**good, "last_command": {"id": "x", "cmd": "pause", "ok": "yes"}}
    assert validate("state", bad_cmd) == "last_command ok 'yes' is not true or false"


def test_alert_cue_mark_must_be_a_boolean():
    """A cue client tests ``cue is False``: the string "false" would be cued, so it is refused with its name."""
    alert = {"kind": "anterior_tilt", "session": "S1", "alert_id": 1, "t": 3.0, "age_s": 0.5}
    assert validate("alert", {**alert, "cue": False, "cue_skipped": "ceiling"}) is None
    assert validate("alert", {**alert, "cue": "false"}) == "cue 'false' is not true or false"
    assert validate("alert", {**alert, "cue": False, "cue_skipped": 3}) == "cue_skipped 3 is not a string"


# ---------------------------------------------------------------------- mute: raised, logged, not cued


@pytest.fixture(scope="module")
def short_run(sim_csv):
    return sim_csv(minutes=4, rate_hz=200, trunk=True, seed=51)


class Keep:
    name = "keep"

    def __init__(self):
        self.events = []

    def handle(self, event):
        self.events.append(event)

    def close(self):
        pass


@pytest.mark.slow
def test_muted_alerts_are_raised_and_marked_and_the_cue_client_stays_silent(short_run):
    keep = Keep()
    s = Session(ReplaySource(short_run), Pipeline(strict_calibration=False), [keep], runner_id="ana", live=False)
    s.muted_until = time.time() + 600
    s.run()
    alerts = [e for e in keep.events if e["type"] == "alert"]
    assert len(alerts) >= 2 and all(a["muted"] is True for a in alerts)
    rules = CueRules("pi", "pi", 10.0, {"alert": "a", "event": "e"}, can_say=True, can_buzz=True)
    for a in alerts:
        d = rules.decide("a", json.dumps({**a, "session": "s", "alert_id": a["id"], "age_s": 0.0}))
        assert d.cue is None and "muted" in d.reason
    unmuted = {**alerts[0], "muted": False, "session": "s2", "alert_id": 1, "age_s": 0.0}
    assert rules.decide("a", json.dumps(unmuted)).cue is not None


# ---------------------------------------------------------------------- the real daemon


def config_for(tmp_path, broker, csv, speed, source=(), mqtt=()) -> Path:
    """A daemon's configuration: replay ``csv`` at ``speed`` (``source``/``mqtt``: more lines in those tables)."""
    lines = ["[runner]", 'id = "ana"', "[source]", 'kind = "replay"', f'path = "{csv}"', f"speed = {speed}", *source]
    lines += ["[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", *mqtt]
    lines += ["[logbook]", f'path = "{tmp_path / "logbook.sqlite"}"']
    p = tmp_path / "run.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


class Phone:
    """A client that sends commands (as the phone page or another account would) and records the state."""

    def __init__(self, broker, prefix="stackcue/ana", username=None, password=None, client_id=None):
        self.prefix = prefix
        topics = [f"{prefix}/state", f"{prefix}/event", f"{prefix}/status"]
        self.sub = Sub(broker, topics, username=username, password=password)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"ph-{uuid.uuid4().hex[:6]}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, payload, retain=False) -> float:
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        self.client.publish(f"{self.prefix}/command", data, qos=1, retain=retain).wait_for_publish(5)
        return time.monotonic()

    def states(self) -> list[dict]:
        return self.sub.json(f"{self.prefix}/state")

    def state(self) -> dict:
        s = self.states()
        return s[-1] if s else {}

    def answer(self, cid: str, timeout=5.0) -> tuple[dict, float]:
        """The first state answering command ``cid``, and when it arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for topic, data, _, at in list(self.sub.msgs):
                if topic.endswith("/state") and (json.loads(data).get("last_command") or {}).get("id") == cid:
                    return json.loads(data), at
            time.sleep(0.005)
        raise AssertionError(f"no answer to {cid}; last state {self.state()}")

    def says(self) -> list[str]:
        return [e["say"] for e in self.sub.json(f"{self.prefix}/event") if e.get("type") == "guide"]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
        self.sub.close()


def ctl(cfg, *args) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, "ctl", *args, "--config", str(cfg)], capture_output=True, text=True, timeout=30)


@pytest.mark.slow
@pytest.mark.serial
def test_the_daemon_obeys_pause_resume_mute_recalibrate_stop_and_start(broker, sim_csv, tmp_path):
    from stackcue.firmware_bridge.emulated.simulator import load_truth
    from stackcue.service.logbook import Logbook

    csv = sim_csv(**RECAL)
    info = load_truth(csv)[1]
    speed = 8.0
    cfg = config_for(tmp_path, broker, csv, speed)
    phone = Phone(broker)
    p = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: phone.state().get("state") == "running", 30, "running (calibrated)")
        sid = phone.state()["session"]
        starts = [m for m in phone.sub.msgs if m[0].endswith("/event") and '"type":"session"' in m[1]]
        t_start = starts[0][3]  # the replay's first sample left at about this time

        def data_t() -> float:
            return (time.monotonic() - t_start) * speed

        # pause within a second; the state and a spoken line say so
        wait_until(lambda: data_t() > 30.0, 30, "data time 30 s")
        sent = phone.send({"cmd": "pause", "id": "p1", "from": "phone"})
        st, at = phone.answer("p1")
        pause_latency = at - sent
        assert st["last_command"] == {"id": "p1", "cmd": "pause", "ok": True, "reason": None}
        wait_until(lambda: phone.state().get("state") == "paused", 1.0, "state paused")
        assert pause_latency < 1.0, pause_latency
        wait_until(lambda: "Paused." in phone.says(), 2, "Paused. spoken")
        # refused in one line each, answered in the state, nothing changes
        phone.send(b"\xff not json")
        phone.send({"cmd": "jump", "id": "j1"})
        phone.send({"cmd": "mute", "minutes": 999, "id": "m9"})
        phone.send({"cmd": "pause", "id": "p2"})
        assert phone.answer("j1")[0]["last_command"]["reason"].startswith('cmd "jump" is not one of')
        assert phone.answer("m9")[0]["last_command"]["reason"] == "minutes 999 is not a number from 0 to 240"
        assert phone.answer("p2")[0]["last_command"] == {
            "id": "p2",
            "cmd": "pause",
            "ok": False,
            "reason": "already paused",
        }
        time.sleep(1.0)
        # resume through the CLI, which waits for the answer; a second resume is refused (exit 1)
        r = ctl(cfg, "resume")
        assert r.returncode == 0 and r.stdout.strip() == "resume: accepted (state running)", r.stderr
        r = ctl(cfg, "resume")
        assert r.returncode == 1 and r.stderr.strip() == "stackcue ctl: resume refused: not paused"
        wait_until(lambda: "Resumed." in phone.says(), 2, "Resumed. spoken")
        # mute for 5 minutes, then back on
        phone.send({"cmd": "mute", "minutes": 5, "id": "mu1"})
        st = phone.answer("mu1")[0]
        assert 290 < st["muted_until"] - time.time() < 301
        r = ctl(cfg, "mute", "--minutes", "0")
        assert r.returncode == 0, r.stderr
        assert phone.state()["muted_until"] is None
        assert {"Cues muted for 5 minutes.", "Cues back on."} <= set(phone.says())
        # recalibrate while the runner stands before re-strapping: a new calibration segment
        t_recal = info["recalibration"]["t_stop"] + 5.5
        wait_until(lambda: data_t() > t_recal, 60, f"data time {t_recal:.0f} s")
        phone.send({"cmd": "recalibrate", "id": "rc1"})
        assert phone.answer("rc1")[0]["last_command"]["ok"] is True
        wait_until(lambda: phone.state().get("state") == "calibrating", 2, "calibrating again")
        wait_until(lambda: phone.state().get("state") == "running", 30, "running on the new calibration")
        time.sleep(1.0)
        # stop: the session ends clean, the daemon waits (a replay stopped by command does not exit)
        r = ctl(cfg, "stop")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: phone.state().get("state") == "idle", 5, "idle")
        assert phone.state()["last_session"] == {"id": sid, "ended": "stopped"}
        assert p.poll() is None
        assert ctl(cfg, "pause").stderr.strip() == "stackcue ctl: pause refused: no session running"
        # start from idle: a new session (the replay from its beginning)
        phone.send({"cmd": "start", "id": "s1", "from": "phone"})
        st = phone.answer("s1")[0]
        wait_until(lambda: phone.state().get("session") not in (None, sid), 2, "a new session")
        assert phone.state()["state"] == "calibrating"
        wait_until(lambda: "Starting. Stand tall and still." in phone.says(), 2, "Starting. spoken")
        assert ctl(cfg, "start").stderr.strip() == "stackcue ctl: start refused: already running"
        sid2 = phone.state()["session"]
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    wait_until(lambda: phone.sub.on("stackcue/ana/status")[-1][1] == "offline", 5, "offline")
    final = phone.state()
    assert final["state"] == "idle" and final["last_session"] == {"id": sid2, "ended": "stopped"}
    assert all(validate("state", s) is None for s in phone.states())
    says = phone.says()
    assert "Stopped. Run saved." in says and "Recalibrating. Stand tall and still." in says
    refusals = [ln for ln in err.splitlines() if "refused" in ln]
    assert len(refusals) == 7, refusals  # 4 bad payloads; resume, pause and start by ctl: one line each
    assert "Traceback" not in err
    phone.close()

    book = Logbook(tmp_path / "logbook.sqlite")
    sessions = {s["id"]: s for s in book.sessions()}
    assert sessions[sid]["ended_how"] == "clean" and sessions[sid2]["ended_how"] == "clean"
    pauses = book.events(sid, ["pause"])
    assert [e["state"] for e in pauses] == ["paused", "resumed"]
    t0, t1 = pauses[0]["t"] + 1e-3, pauses[1]["t"] - 1e-3  # the events' times are rounded to 0.1 ms
    assert t1 - t0 > 1.0 * speed  # the pause lasted at least the 1 s wait (and the refusals)
    strides = book.strides(sid)
    assert strides and not [s for s in strides if s["t_end"] > t0 and s["t_start"] < t1], "no stride in the pause"
    raw_t = [t for c in book.raw_chunks(sid) for t in c["t"].tolist()]
    assert not [t for t in raw_t if t0 < t < t1], "no raw sample kept while paused"
    assert [t for t in raw_t if t > t1]  # and kept again after it
    summary = book.events(sid, ["summary"])[-1]
    assert summary["pauses"] == 1 and summary["paused_s"] == pytest.approx(t1 - t0, abs=0.05)
    cals = [e for e in book.events(sid, ["calibration"]) if e.get("ok")]
    assert [c["segment"] for c in cals] == [0, 1]
    after = [s for s in strides if s["t_start"] > cals[1]["t"]]
    assert after and all(s["cal_segment"] == 1 for s in after)
    print(f"pause latency (publish to state paused): {pause_latency * 1000:.0f} ms")
    book.close()


@pytest.mark.slow
def test_only_the_runners_own_account_may_command_with_the_shipped_acl(broker_factory, short_run, tmp_path):
    users = {"stackcue-device": "device-secret", "ana": "ana-secret", "phone1": "phone-secret"}
    b = broker_factory(users=users, acl=SHIPPED_ACL)
    pw = tmp_path / "device.pw"
    pw.write_text("device-secret\n")
    cfg = config_for(tmp_path, b, short_run, 5.0, mqtt=['username = "stackcue-device"', f'password_file = "{pw}"'])
    p = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other = Phone(b, username="phone1", password="phone-secret", client_id="phone1-writer")
    own = Phone(b, username="ana", password="ana-secret", client_id="ana-writer")
    try:
        try:
            wait_until(lambda: own.state().get("session"), 30, "a session")
        except AssertionError:
            p.kill()
            raise AssertionError(f"no session; state {own.state()}; daemon: {p.communicate()[1][-3000:]}") from None
        other.send({"cmd": "pause", "id": "x1"})
        time.sleep(1.5)
        assert all((s.get("last_command") or {}).get("id") != "x1" for s in own.states())
        assert own.state()["state"] in ("calibrating", "running")
        assert "Denied PUBLISH from phone1-writer" in b.log()
        sent = own.send({"cmd": "pause", "id": "a1"})
        st, at = own.answer("a1")
        assert st["last_command"]["ok"] is True and at - sent < 1.0
        wait_until(lambda: own.state().get("state") == "paused", 1, "paused by the runner's own account")
        # nobody but the device may write the state either
        other.client.publish("stackcue/ana/state", json.dumps({"state": "idle"}), qos=1, retain=True).wait_for_publish(
            5
        )
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    late = Sub(b, ["stackcue/ana/state"], username="ana", password="ana-secret")
    wait_until(lambda: late.json("stackcue/ana/state"), 5, "retained state")
    assert late.json("stackcue/ana/state")[-1]["last_command"]["id"] == "a1"
    late.close()
    own.close()
    other.close()


def test_ctl_without_a_daemon_says_no_answer_and_exits_2(broker, tmp_path, short_run):
    cfg = config_for(tmp_path, broker, short_run, 1.0)
    r = subprocess.run([EXE, "ctl", "pause", "--wait", "0.5", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "stackcue ctl: pause: no answer from the daemon within 0.5 s"
    r = subprocess.run([EXE, "ctl", "stop", "--minutes", "3", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "stackcue ctl: --minutes is for mute, not stop"
    r = subprocess.run([EXE, "ctl", "mute", "--minutes", "500", "--config", str(cfg)], capture_output=True, text=True)
    assert (
        r.returncode == 1
        and r.stderr.strip() == "stackcue ctl: mute refused: minutes 500 is not a number from 0 to 240"
    )


@pytest.mark.slow
def test_idle_until_a_start_command_and_the_last_session_after_a_kill(broker, short_run, tmp_path):
    """``[control] start = "command"`` with a live kind waits, sensors closed; a killed run is reported next time."""
    cfg = config_for(tmp_path, broker, short_run, 1.0, source=["emulated_minutes = 1.0"])
    cfg.write_text(cfg.read_text().replace('kind = "replay"', 'kind = "emulated"'))
    phone = Phone(broker)
    p = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: phone.state().get("state") == "idle", 15, "idle")
        time.sleep(1.0)
        assert phone.state()["state"] == "idle" and phone.state()["session"] is None
        r = ctl(cfg, "start")
        assert r.returncode == 0 and "accepted" in r.stdout, r.stderr
        wait_until(lambda: phone.state().get("session"), 30, "a session (the emulator simulates its run first)")
        sid = phone.state()["session"]
        time.sleep(1.5)
        p.send_signal(signal.SIGKILL)  # power lost
        p.wait(10)
        q = subprocess.Popen(
            [EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_until(lambda: (phone.state().get("last_session") or {}).get("id") == sid, 15, "last session told")
            assert phone.state()["last_session"]["ended"] == "power lost"
            assert phone.state()["state"] == "idle"
            q.send_signal(signal.SIGTERM)
            q.communicate(timeout=10)
            assert q.returncode == 0
        finally:
            if q.poll() is None:
                q.kill()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    phone.close()


@pytest.mark.slow
def test_a_session_paused_by_its_tick_drops_the_samples_and_keeps_them_out(short_run):
    """The driver's side of a pause, fast and offline: ``on_tick`` pauses and resumes between blocks, even
    during the calibration search; samples read meanwhile reach neither the pipeline nor the block sinks."""

    class Blocks:
        def __init__(self):
            self.t = []

        def add_block(self, block):
            self.t.extend(block.t.tolist())

    from stackcue.firmware_bridge.clocks import ManualClock

    keep, raw, n, clock = Keep(), Blocks(), [0], ManualClock()
    s = None

    def tick():
        n[0] += 1
        if n[0] in (3, 2000):
            s.pause()
        elif n[0] in (5, 2400):
            s.resume()

    s = Session(
        ReplaySource(short_run, speed=1.0, block_s=0.05, clock=clock, sleep=clock.sleep),
        Pipeline(strict_calibration=False),
        [keep],
        runner_id="ana",
        live=False,
        block_sinks=[raw],
        on_tick=tick,
    )
    assert s.run() == 0
    pauses = [e for e in keep.events if e["type"] == "pause"]
    assert [e["state"] for e in pauses] == ["paused", "resumed"] * 2
    assert s.dropped > 0 and s.calibrated
    t0, t1 = pauses[2]["t"] + 1e-3, pauses[3]["t"] - 1e-3
    assert t1 - t0 > 15.0  # 400 blocks of 0.05 s
    assert not [t for t in raw.t if t0 < t < t1]
    strides = [e for e in keep.events if e["type"] == "stride"]
    assert strides and not [x for x in strides if x["t_end"] > t0 and x["t_start"] < t1]
    summary = keep.events[-1]
    assert summary["pauses"] == 2 and summary["paused_s"] == pytest.approx(
        t1 - t0 + pauses[1]["t"] - pauses[0]["t"], abs=0.01
    )


def test_the_daemon_feeds_the_buttons_gestures_into_its_queue(tmp_path):
    """``[control] button_pin``: gpiozero's mock pins stand in for the GPIO; a short press from idle starts,
    a long press is stop (refused while idle, answered in the state)."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from stackcue.service.config import load_config
    from stackcue.service.run_daemon import Daemon

    cfg_path = tmp_path / "b.toml"
    cfg_path.write_text(
        '[runner]\nid = "ana"\n[logbook]\npath = ""\n'
        "[control]\nbutton_pin = 17\nbutton_hold_s = 0.6\nbutton_double_s = 0.25\n"
    )
    saved, Device.pin_factory = Device.pin_factory, MockFactory()
    try:
        d = Daemon(load_config(cfg_path), lambda: None, replay=False)
        d._start_button()
        assert d.button is not None
        pin = Device.pin_factory.pin(17)
        pin.drive_low()
        time.sleep(0.08)
        pin.drive_high()
        item = d.controls.get(timeout=3)
        assert item == Command("pause_resume", None, "button", None, "button")
        start = d.apply(item)
        assert start is not None and start.cmd == "start" and start.source == "button"
        assert d.tracker.payload()["last_command"] == {"id": None, "cmd": "start", "ok": True, "reason": None}
        pin.drive_low()
        item = d.controls.get(timeout=3)
        pin.drive_high()
        assert item.cmd == "stop" and d.apply(item) is None
        assert d.tracker.payload()["last_command"]["reason"] == "no session running"
        d.button.close()
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = saved


def test_running_is_detected_once_running_begins_and_not_during_the_routine(sim_run):
    """``[control] start = "running"``: still, hinge, still and the walk off start nothing; running does."""
    from stackcue.service.run_daemon import RunningDetector

    r = sim_run(minutes=1, rate_hz=100, seed=3)
    running_from = r.info["phases"]["running"][0][0]
    det, b, fired = RunningDetector(), r.block, None
    for i in range(0, len(b.t), 10):  # 0.1 s blocks, as a FIFO read gives them
        if det.feed(b.t[i : i + 10], b.acc[i : i + 10]):
            fired = float(b.t[min(i + 9, len(b.t) - 1)])
            break
    assert fired is not None and running_from < fired < running_from + 6.0
