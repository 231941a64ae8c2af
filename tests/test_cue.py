"""The cue client: decisions (handle), espeak-ng audio checked with sox, haptic timing on gpiozero's MockFactory,
and the whole path through a real mosquitto (tests/broker.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory

from stackcue.errors import CueError
from stackcue.service.cue import CueClient
from stackcue.service.cue_outputs import Haptic, Speaker
from stackcue.service.cue_rules import ALERT_PATTERNS, PHRASES, SYSTEM_PATTERNS, CueRules
from stackcue.service.mqtt_connection import MqttSettings
from stackcue.service.mqtt_publisher import MqttPublisher

pytest_plugins = ["broker"]  # tests/broker.py: the mosquitto fixtures

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).parent / "artifacts"
NOW = 1_700_000_000.0
CUE_CFG = {"owner": "pi", "audio": True, "voice": "en", "speed_wpm": 170, "gpio_pin": 0, "max_age_s": 10.0}
TIMING_TOL_S = 0.030


class FakeSpeaker:
    """Records what would be said, with start and end times (no audio)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.texts: list[str] = []
        self.spans: list[tuple[float, float]] = []
        self.seconds = seconds

    def speak(self, text: str) -> bool:
        t0 = time.monotonic()
        time.sleep(self.seconds)
        self.texts.append(text)
        self.spans.append((t0, time.monotonic()))
        return True

    def cancel(self) -> None:
        pass

    def describe(self) -> str:
        return "fake speaker"


def client(device="pi", owner="pi", speaker=None, haptic=None, clock=lambda: NOW, **cue) -> CueClient:
    cfg = {**CUE_CFG, "owner": owner, **cue}
    return CueClient(
        MqttSettings(runner_id="ana"),
        cfg,
        device,
        speaker if speaker is not None else FakeSpeaker(),
        haptic,
        clock=clock,
    )


def alert(aid: int, kind="anterior_tilt", *, session="S1", age_s=0.02, sent_at=NOW - 0.01, reminder=False) -> dict:
    """An alert payload as MqttPublisher sends it."""
    return {
        "type": "alert",
        "t": 30.0 + aid,
        "decided_t": 32.0 + aid,
        "kind": kind,
        "value_deg": 8.2,
        "threshold_deg": 6.0,
        "id": aid,
        "reminder": reminder,
        "session": session,
        "alert_id": aid,
        "raised_at": sent_at - age_s if sent_at else None,
        "sent_at": sent_at,
        "age_s": age_s,
        "replayed": False,
    }


def enc(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


A = "stackcue/ana/alert"
E = "stackcue/ana/event"


# ---------------------------------------------------------------------- handle(): the decisions


def test_one_cue_per_alert_despite_duplicates():
    c = client()
    payload = enc(alert(1))
    decisions = [c.handle(A, payload) for _ in range(3)]
    assert decisions[0].cue is not None and decisions[0].reason == "queued"
    assert decisions[0].cue.text == PHRASES["anterior_tilt"]
    assert decisions[0].cue.pattern == ALERT_PATTERNS["anterior_tilt"]
    assert [d.cue for d in decisions[1:]] == [None, None]
    assert [d.reason for d in decisions[1:]] == ["duplicate", "duplicate"]
    assert c.counts["queued"] == 1 and c.counts["duplicate"] == 2
    # the same id in another session is another alert
    assert c.handle(A, enc(alert(1, session="S2"))).cue is not None


def test_dedupe_memory_is_bounded(monkeypatch):
    import stackcue.service.cue_rules as cue_mod

    monkeypatch.setattr(cue_mod, "DEDUPE_KEYS", 16)
    c = client()
    for i in range(100):
        assert c.handle(A, enc(alert(i))).cue is not None
    assert len(c.rules.seen) == 16
    assert c.handle(A, enc(alert(99))).reason == "duplicate"  # recent keys are remembered


def test_stale_alert_is_logged_not_cued(caplog):
    c = client()
    with caplog.at_level(logging.WARNING, logger="stackcue.cue"):
        d = c.handle(A, enc(alert(7, age_s=400.0)))
    assert d.cue is None and d.reason.startswith("stale: 400.0 s old")
    assert "max_age_s = 10" in d.reason
    assert any(
        "alert anterior_tilt #7 not cued" in r.getMessage() and "helps nobody" in r.getMessage() for r in caplog.records
    )
    assert c.counts["stale"] == 1 and c.counts["queued"] == 0


def test_staleness_adds_transit_only_when_the_clocks_are_comparable():
    c = client()
    # fresh when sent, then 300 s held by the broker (a persistent session while this client was away)
    d = c.handle(A, enc(alert(1, age_s=0.5, sent_at=NOW - 300.0)))
    assert d.cue is None and "300.0 s in transit" in d.reason
    # 8 s raise→send plus 3 s in transit: over 10 s
    assert c.handle(A, enc(alert(2, age_s=8.0, sent_at=NOW - 3.0))).reason.startswith("stale: 11.0 s old")
    # the sender's clock is an hour ahead (a Pi without RTC): negative transit, age_s alone
    assert c.handle(A, enc(alert(3, age_s=0.5, sent_at=NOW + 3600.0))).cue is not None
    # a small negative difference is jitter between two synchronised clocks: counts as 0
    assert c.handle(A, enc(alert(4, age_s=0.5, sent_at=NOW + 1.0))).cue is not None
    # absurd: the sender's clock is days behind (fake-hwclock after a long power-off): age_s alone
    assert c.handle(A, enc(alert(5, age_s=0.5, sent_at=NOW - 5 * 86400.0))).cue is not None
    # no sent_at at all, or a non-numeric one: age_s alone
    p = alert(6, age_s=0.5)
    p["sent_at"] = "yesterday"
    assert c.handle(A, enc(p)).cue is not None
    assert c.handle(A, enc(alert(8, age_s=11.0, sent_at=None))).reason.startswith("stale")


def test_queued_alert_that_waits_too_long_is_not_played(caplog):
    c = client()
    d = c.handle(A, enc(alert(1, age_s=9.99)))
    assert d.cue is not None and d.cue.deadline - time.monotonic() < 0.02
    time.sleep(0.03)
    c.start_worker()
    with caplog.at_level(logging.WARNING, logger="stackcue.cue"):
        assert c.wait_idle(5)
    c.stop()
    assert c.speaker.texts == [] and c.played == []
    assert any("waited behind other cues" in r.getMessage() for r in caplog.records)


def test_non_owner_device_is_silent_and_says_why_once(caplog):
    speaker = FakeSpeaker()
    c = client(device="pi", owner="phone", speaker=speaker)
    with caplog.at_level(logging.INFO, logger="stackcue.cue"):
        d1 = c.handle(A, enc(alert(1)))
        d2 = c.handle(A, enc(alert(2, "pelvic_drop")))
        d3 = c.handle(
            E,
            enc(
                {"type": "guide", "t": 0.0, "step": "calibrate", "say": "Stand tall.", "session": "S1", "sent_at": NOW}
            ),
        )
    assert (d1.cue, d2.cue, d3.cue) == (None, None, None)
    assert d1.reason.startswith("silent: [cue] owner = 'phone'")
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("staying silent" in m for m in msgs) == 1
    assert any("would cue alert pelvic_drop #2" in m and PHRASES["pelvic_drop"] in m for m in msgs)
    assert c.counts["silent"] == 3 and c.counts["queued"] == 0
    nobody = client(owner="none")
    assert nobody.handle(A, enc(alert(1))).reason == 'silent: [cue] owner = "none": no device cues this session'
    # the phone's own client would cue
    assert client(device="phone", owner="phone").handle(A, enc(alert(1))).cue is not None


def test_reminder_is_cued_with_the_same_phrase():
    c = client()
    first = c.handle(A, enc(alert(3, "ribs_behind_pelvis"))).cue
    again = c.handle(A, enc(alert(9, "ribs_behind_pelvis", reminder=True))).cue
    assert first is not None and again is not None
    assert again.text == first.text == PHRASES["ribs_behind_pelvis"]
    assert again.pattern == first.pattern
    assert "reminder" in again.what


def test_unknown_topics_types_and_malformed_json_are_ignored():
    c = client()
    cases = [
        ("stackcue/ana/stride", enc({"type": "stride"})),
        ("stackcue/bob/alert", enc(alert(1))),
        (A, b"{not json"),
        (A, b"\xff\xfe\x00"),
        (A, b""),
        (A, b"[1, 2]"),
        (A, b"null"),
        (A, enc({"type": "alert", "alert_id": 1, "session": "S1"})),  # no kind
        (E, b"{"),
        (E, enc({"type": "clear", "t": 3.0, "kind": "anterior_tilt", "session": "S1"})),
        (E, enc({"type": "gap", "t_start": 1.0, "t_end": 2.0})),
        (E, enc({"type": "guide", "t": 1.0, "step": "x", "session": "S1"})),  # nothing to say
        (E, enc({"type": "sensor", "t": 1.0, "state": "confused", "session": "S1"})),
        (E, enc({"type": "session", "t": 0.0, "state": "started", "session": "S1", "cue_owner": "pi"})),
        (E, enc({"no": "type"})),
    ]
    for topic, payload in cases:
        d = c.handle(topic, payload)
        assert d.cue is None, (topic, payload, d)
        assert isinstance(d.reason, str) and d.reason
    assert c.counts["queued"] == 0
    # a new alert kind from a newer daemon still reaches the runner
    d = c.handle(A, enc(alert(5, kind="shoulder_shrug")))
    assert d.cue is not None and d.cue.text == "Check your form."


def test_system_events():
    c = client(haptic=Haptic(17, pin_factory=MockFactory()))
    guide = {
        "type": "guide",
        "t": 0.0,
        "step": "calibrate",
        "say": "Stand tall and still.",
        "session": "S1",
        "sent_at": NOW,
    }
    d = c.handle(E, enc(guide))
    assert d.cue is not None and d.cue.text == "Stand tall and still." and d.cue.pattern is None
    assert c.handle(E, enc(guide)).reason == "duplicate"
    assert c.handle(E, enc({**guide, "session": "S2"})).cue is not None

    lost = {
        "type": "sensor",
        "t": 40.0,
        "state": "lost",
        "say": "Sensor lost.",
        "reason": "bus",
        "session": "S1",
        "sent_at": NOW,
    }
    d = c.handle(E, enc(lost))
    assert d.cue.text == "Sensor lost." and d.cue.pattern == SYSTEM_PATTERNS["sensor_lost"]
    assert len(SYSTEM_PATTERNS["sensor_lost"]) == 4
    assert c.handle(E, enc(lost)).reason == "duplicate"
    d = c.handle(E, enc({**lost, "state": "back", "say": "Sensor back.", "t": 45.0}))
    assert d.cue.text == "Sensor back."

    ok = c.handle(E, enc({"type": "calibration", "t": 9.4, "ok": True, "session": "S1", "sent_at": NOW})).cue
    assert ok.text is None and ok.pattern == ((0.15, 0.0),)
    refused = c.handle(
        E,
        enc(
            {"type": "calibration", "t": 5.0, "ok": False, "reason": "hinge too small", "session": "S1", "sent_at": NOW}
        ),
    ).cue
    assert refused.pattern == SYSTEM_PATTERNS["calibration_refused"]
    assert len(refused.pattern) == 3 and all(on >= 0.4 for on, _ in refused.pattern)
    # a guide event that sat an hour in the broker is not said
    assert c.handle(E, enc({**guide, "t": 1.0, "sent_at": NOW - 3600})).reason.startswith("stale")


def test_haptic_only_and_audio_only():
    haptic_only = CueClient(
        MqttSettings(runner_id="ana"), CUE_CFG, "pi", None, Haptic(17, pin_factory=MockFactory()), clock=lambda: NOW
    )
    guide = {"type": "guide", "t": 0.0, "step": "calibrate", "say": "Stand tall.", "session": "S1"}
    assert haptic_only.handle(E, enc(guide)).cue is None  # nothing to play it on
    assert haptic_only.handle(E, enc({"type": "calibration", "t": 1.0, "ok": True, "session": "S1"})).cue
    audio_only = client()
    assert audio_only.handle(E, enc({"type": "calibration", "t": 1.0, "ok": True, "session": "S1"})).cue is None


def test_rules_decide_without_devices_or_network():
    rules = CueRules(
        "pi",
        "pi",
        10.0,
        {"alert": A, "event": E},
        can_say=True,
        can_buzz=False,
        clock=lambda: NOW,
        monotonic=lambda: 100.0,
    )
    d = rules.decide(A, enc(alert(1, age_s=2.0, sent_at=NOW - 1.0)))
    assert d.reason == "queued" and d.cue.deadline == pytest.approx(107.0)  # 10 s minus 3 s old
    assert rules.decide(A, enc(alert(1, age_s=2.0, sent_at=NOW - 1.0))).reason == "duplicate"
    assert rules.counts == {"queued": 1, "duplicate": 1, "stale": 0, "silent": 0, "ignored": 0}


def test_cue_client_subscribes_to_the_topic_table():
    assert client().subscriptions == [(A, 1), (E, 1)]


def test_patterns_are_distinct_per_kind():
    pats = list(ALERT_PATTERNS.values())
    assert set(ALERT_PATTERNS) == set(PHRASES)
    assert len(set(pats)) == len(pats)
    assert SYSTEM_PATTERNS["calibration_ok"] not in pats and SYSTEM_PATTERNS["sensor_lost"] not in pats
    assert SYSTEM_PATTERNS["calibration_refused"] not in pats
    for p in [*pats, *SYSTEM_PATTERNS.values()]:
        assert sum(on + off for on, off in p) <= 2.5  # a cue must be short


def test_worker_plays_one_cue_after_another():
    speaker = FakeSpeaker(seconds=0.15)
    c = client(speaker=speaker)
    c.start_worker()
    for i, kind in enumerate(PHRASES):
        c.handle(A, enc(alert(i, kind)))
    assert c.wait_idle(10)
    c.stop()
    assert speaker.texts == list(PHRASES.values())
    for (_, end), (start, _) in zip(speaker.spans, speaker.spans[1:], strict=False):
        assert start >= end  # never two at once


def test_handle_does_not_wait_for_outputs():
    c = client(speaker=FakeSpeaker(seconds=1.0))
    c.start_worker()
    t0 = time.monotonic()
    for i in range(5):
        c.handle(A, enc(alert(i)))
    assert time.monotonic() - t0 < 0.9  # less than one cue's 1 s: none of the five waited for the speaker
    c.stop(timeout=3)


# ---------------------------------------------------------------------- audio: espeak-ng, checked with sox


def sox_stat(path: Path) -> dict[str, float]:
    r = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stderr.splitlines():
        m = re.match(r"^([A-Za-z ]+?)(?:\s*\(.*\))?:\s+(-?[\d.]+)\s*$", line)
        if m:
            out[re.sub(r"\s+", " ", m.group(1)).strip()] = float(m.group(2))
    return out


def test_every_phrase_renders_to_audible_speech_of_plausible_length(tmp_path):
    speaker = Speaker("en", 170)
    figures = {}
    for kind, phrase in PHRASES.items():
        wav = tmp_path / f"{kind}.wav"
        speaker.render(phrase, wav)
        st = sox_stat(wav)
        figures[kind] = {
            "phrase": phrase,
            "words": len(phrase.split()),
            "length_s": st["Length"],
            "rms": st["RMS amplitude"],
            "max": st["Maximum amplitude"],
        }
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "cue_audio.jsonl", "w") as fh:
        for kind, f in figures.items():
            fh.write(json.dumps({"kind": kind, **f}) + "\n")
    for kind, f in figures.items():
        assert f["rms"] > 0.02, (kind, f)  # not silent (a silent WAV reads 0.000000)
        assert 0.6 <= f["length_s"] <= 4.0, (kind, f)
    # longer phrases take longer: the one-word-pair cue is the shortest, the two-sentence ones the longest
    by_len = sorted(figures, key=lambda k: figures[k]["length_s"])
    assert figures["trunk_lean"]["length_s"] < figures["pelvic_drop"]["length_s"]
    assert figures["pelvic_drop"]["length_s"] < figures["anterior_tilt"]["length_s"]
    assert by_len[-1] in ("anterior_tilt", "ribs_ahead_of_pelvis")
    # a slower voice makes a longer file
    slow = tmp_path / "slow.wav"
    Speaker("en", 100).render(PHRASES["trunk_lean"], slow)
    assert sox_stat(slow)["Length"] > figures["trunk_lean"]["length_s"] * 1.3


def test_speaker_failures_are_reported_once(caplog, tmp_path):
    missing = Speaker(command="espeak-ng-not-installed")
    with caplog.at_level(logging.ERROR, logger="stackcue.cue"):
        assert missing.speak("Run tall.") is False
        assert missing.speak("Run tall.") is False
    assert missing.failures == 2
    assert sum("not installed" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    failing = Speaker(command="false")  # runs and exits 1, as espeak-ng does when no audio device opens
    with caplog.at_level(logging.ERROR, logger="stackcue.cue"):
        assert failing.speak("a") is False and failing.speak("b") is False
    assert sum("failed (exit 1)" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(CueError, match="not installed"):
        missing.render("x", tmp_path / "x.wav")


# ---------------------------------------------------------------------- haptic: gpiozero MockFactory


def expected_changes(pattern) -> list[tuple[float, bool]]:
    """(time since the previous change, new state) as MockPin.states records them."""
    out: list[tuple[float, bool]] = []
    prev_off = None
    for on_s, off_s in pattern:
        out.append((prev_off if prev_off is not None else 0.0, True))
        out.append((on_s, False))
        prev_off = off_s
    return out


@pytest.mark.slow
@pytest.mark.serial
def test_haptic_pattern_timing_on_a_mock_pin():
    factory = MockFactory()
    h = Haptic(18, pin_factory=factory)
    pin = factory.pin(18)
    worst = 0.0
    for name, pattern in {**ALERT_PATTERNS, **SYSTEM_PATTERNS}.items():
        pin.clear_states()
        h.play(pattern)
        got = [(s.timestamp, s.state) for s in pin.states[1:]]  # [0] is the state at clear_states
        want = expected_changes(pattern)
        assert [s for _, s in got] == [s for _, s in want], name
        for (gt, _), (wt, _) in zip(got[1:], want[1:], strict=True):  # the first edge has no reference
            worst = max(worst, abs(gt - wt))
            assert abs(gt - wt) <= TIMING_TOL_S, (name, got, want)
        assert pin.state is False or pin.state == 0
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cue_haptic.json").write_text(json.dumps({"worst_edge_error_s": worst}))
    h.close()


def test_unusable_gpio_pin_is_one_clear_line():
    factory = MockFactory()
    first = Haptic(18, pin_factory=factory)
    with pytest.raises(CueError) as ei:
        Haptic(18, pin_factory=factory)  # already in use
    msg = str(ei.value)
    assert msg.startswith("GPIO 18: ") and msg.endswith("; set [cue] gpio_pin = 0 to disable")
    assert "\n" not in msg
    first.close()
    with pytest.raises(CueError, match=r"^GPIO 99: .*; set \[cue\] gpio_pin = 0 to disable$"):
        Haptic(99, pin_factory=factory)  # no such pin


# ---------------------------------------------------------------------- end to end through mosquitto


from test_mqtt import wait_until  # noqa: E402  (one helper for every broker test)


def settings_for(broker, **kw) -> MqttSettings:
    return MqttSettings(
        host=broker.host, port=broker.port, runner_id="ana", reconnect_min_s=0.2, reconnect_max_s=1.0, **kw
    )


class RawPublisher:
    """Publishes exactly like the daemon's publisher does on the wire: JSON, QoS 1, not retained."""

    def __init__(self, broker) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311
        )
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()

    def send(self, topic: str, obj: dict) -> None:
        info = self.client.publish(topic, json.dumps(obj, separators=(",", ":")), qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def started_client(broker, speaker, haptic) -> CueClient:
    c = CueClient(settings_for(broker), CUE_CFG, "pi", speaker, haptic)
    c.start()
    assert c.subscribed.wait(10), c.status
    return c


@pytest.mark.slow
def test_end_to_end_through_a_real_broker(broker):
    speaker = FakeSpeaker(seconds=0.05)
    factory = MockFactory()
    haptic = Haptic(18, pin_factory=factory)
    pin = factory.pin(18)
    c = started_client(broker, speaker, haptic)
    assert c.status == f"connected to {broker.host}:{broker.port}"
    pub = RawPublisher(broker)
    now = time.time()
    sess = "20250101T000000Z-abc123"
    guide = {
        "type": "guide",
        "t": 0.0,
        "step": "calibrate",
        "say": "Stand tall and still.",
        "session": sess,
        "sent_at": now,
    }
    a1 = alert(1, "anterior_tilt", session=sess, sent_at=now)
    stale = alert(2, "pelvic_drop", session=sess, age_s=400.0, sent_at=now)
    a3 = alert(3, "anterior_tilt", session=sess, sent_at=time.time(), reminder=True)
    calib = {"type": "calibration", "t": 9.5, "ok": True, "session": sess, "sent_at": now}
    pub.send(E, guide)
    pub.send(E, calib)
    pub.send(A, a1)
    pub.send(A, a1)  # at least once: the same alert again
    pub.send(A, stale)
    pub.send(E, guide)  # a duplicate system event
    pub.send(A, a3)
    # and one straight from the daemon's publisher, in its own format
    real = MqttPublisher(settings_for(broker), session_id=sess)
    real.start()
    real.publish_event(
        {
            "type": "alert",
            "t": 90.0,
            "decided_t": 92.0,
            "kind": "ribs_ahead_of_pelvis",
            "value_deg": 12.0,
            "threshold_deg": 10.0,
            "id": 4,
            "reminder": False,
        }
    )
    real.publish_event({"type": "sensor", "t": 95.0, "state": "lost", "say": "Sensor lost.", "reason": "bus"})
    wait_until(lambda: c.counts["queued"] >= 6 and c.counts["duplicate"] >= 2, 10, f"cues queued ({c.counts})")
    assert c.wait_idle(20)
    real.stop()
    pub.close()
    c.stop()
    assert speaker.texts == [
        "Stand tall and still.",
        PHRASES["anterior_tilt"],
        PHRASES["anterior_tilt"],
        PHRASES["ribs_ahead_of_pelvis"],
        "Sensor lost.",
    ]
    assert [cue.what for cue in c.played] == [
        "guide calibrate",
        "calibration accepted",
        "alert anterior_tilt",
        "alert anterior_tilt (reminder)",
        "alert ribs_ahead_of_pelvis",
        "sensor lost",
    ]
    assert c.counts == {"queued": 6, "duplicate": 2, "stale": 1, "silent": 0, "ignored": 0}
    # the pin went on once per pulse of every pattern played, in order
    pulses = [
        len(p)
        for p in (
            SYSTEM_PATTERNS["calibration_ok"],
            ALERT_PATTERNS["anterior_tilt"],
            ALERT_PATTERNS["anterior_tilt"],
            ALERT_PATTERNS["ribs_ahead_of_pelvis"],
            SYSTEM_PATTERNS["sensor_lost"],
        )
    ]
    assert sum(1 for s in pin.states if s.state) == sum(pulses)


def test_persistent_session_gets_what_was_sent_while_away(broker):
    speaker = FakeSpeaker()
    c = started_client(broker, speaker, None)
    c.stop()
    pub = RawPublisher(broker)
    sess = "S-away"
    pub.send(A, alert(1, "trunk_lean", session=sess, sent_at=time.time()))  # held by the broker for us
    pub.send(A, alert(2, "pelvic_drop", session=sess, sent_at=time.time() - 60.0))  # a minute late: stale
    pub.close()
    c2 = started_client(broker, speaker, None)
    wait_until(lambda: c2.counts["queued"] + c2.counts["stale"] >= 2, 10, "held alerts delivered")
    assert c2.wait_idle(5)
    c2.stop()
    assert speaker.texts == [PHRASES["trunk_lean"]]
    assert c2.counts["stale"] == 1


def test_broker_unreachable_is_one_clear_status(caplog):
    from broker import free_port

    port = free_port()
    c = CueClient(
        MqttSettings(host="127.0.0.1", port=port, runner_id="ana", reconnect_min_s=0.2, reconnect_max_s=0.5),
        CUE_CFG,
        "pi",
        FakeSpeaker(),
        None,
    )
    with caplog.at_level(logging.WARNING, logger="stackcue.cue"):
        c.start()
        wait_until(lambda: "cannot reach" in c.status, 5, "status")
        time.sleep(1.0)  # several retries
        c.stop()
    assert c.status == f"stopped (cannot reach 127.0.0.1:{port}: connection refused (is the broker running?))"
    assert sum("cannot reach" in r.getMessage() for r in caplog.records) == 1  # not once per retry


def test_refused_by_the_broker(broker_factory):
    b = broker_factory(users={"stackcue-device": "right"})
    c = CueClient(settings_for(b), CUE_CFG, "pi", FakeSpeaker(), None)
    c.start()
    wait_until(lambda: c.status.startswith("refused"), 10, f"refused ({c.status})")
    c.stop()
    assert "the broker wants a username and password" in c.status


def test_cli_cue_exits_0_on_sigterm(broker, tmp_path):
    cfg = tmp_path / "cue.toml"
    cfg.write_text(
        f'[runner]\nid = "ana"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        "[cue]\naudio = false\ngpio_pin = 0\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackcue", "cue", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("connected to" in ln for ln in lines), 15, f"connected ({lines})")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    text = "".join(lines)
    assert "stackcue cue: listening to stackcue/ana/alert and stackcue/ana/event" in text
    assert "as stackcue-cue-ana-pi" in text
    assert f"MQTT disconnected from {broker.host}:{broker.port}" in text
    assert "Traceback" not in text


def test_a_retained_alert_is_not_cued_again_at_start(broker):
    """Alerts are never published retained; one a broker holds (another client's mistake) is not spoken at
    every start of the cue client. A live alert after it still is."""
    pub = RawPublisher(broker)
    now = time.time()
    info = pub.client.publish(A, json.dumps(alert(1, session="S-old", sent_at=now)), qos=1, retain=True)
    info.wait_for_publish(5)
    speaker = FakeSpeaker()
    c = started_client(broker, speaker, None)
    pub.send(A, alert(2, "pelvic_drop", session="S-new", sent_at=time.time()))
    wait_until(lambda: len(speaker.texts) >= 1, what="the live alert spoken")
    time.sleep(0.3)
    assert len(speaker.texts) == 1 and c.counts["queued"] == 1
    pub.client.publish(A, b"", qos=1, retain=True).wait_for_publish(5)  # clear the broker's copy
    c.stop()
    pub.close()


# ---------------------------------------------------------------------- control characters never split a log line

NASTY = "ana\nWARNING forged line\r\x1b[31mred\x00\u2028end"


def test_control_characters_in_logged_fields_are_escaped(caplog):
    """Before: a runner id, session, alert id, step or kind with a newline or an escape sequence went into the
    log raw, so one payload could forge log lines or recolour a terminal. Now each log line stays one line."""
    c = client(device="phone")  # not the owner: "would cue" lines log the label too
    owner = client()
    payloads = [
        (E, {"type": "session", "session": NASTY, "state": NASTY, "runner": NASTY, "cue_owner": NASTY, "t": 1.0}),
        (E, {"type": "guide", "session": "S1", "t": 2.0, "step": NASTY, "say": "stand still"}),
        (A, {**alert(1), "alert_id": NASTY}),
        (A, {**alert(2), "session": NASTY, "alert_id": NASTY + "2", "age_s": 99.0}),
        (A, {**alert(3), "kind": NASTY}),
        (E, {"type": NASTY, "session": "S1", "t": 3.0}),
    ]
    with caplog.at_level(logging.DEBUG, logger="stackcue.cue"):
        for who in (c, owner):
            for topic_, p in payloads:
                who.handle(topic_, enc(p))
    lines = [r.getMessage() for r in caplog.records if r.name == "stackcue.cue"]
    assert len(lines) >= 8
    forged = [m for m in lines if re.search(r"[\x00-\x1f\x7f\x80-\x9f\u2028\u2029]", m)]
    assert forged == []
    assert any("ana\\nWARNING forged line\\r\\x1b[31mred\\x00\\u2028end" in m for m in lines)
