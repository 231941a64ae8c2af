"""The phone page's continuous cue styles (issue 17): where the phone owns the cue, a Web Audio graph follows the
provisional strides relayed by `stackcue serve` (a real serve, a real mosquitto, headless Chromium): the noise
layer's gain is the Pi's mapping and an AnalyserNode hears it; silent within the dead band; it ducks under a
spoken cue; beeps rise in pitch; nothing plays where the Pi owns the cue."""

from __future__ import annotations

import itertools
import math
import time

import pytest

from stackcue.dsp.sonify import SoundMap

pytest_plugins = ["broker"]

from test_serve import PREFIX, STUB_CUES, Pub, browser_login, make_driver, serve, shot, text_of, wait_js  # noqa: E402, F401


def provisional(dev: float | None, i: int = 0) -> dict:
    return {
        "type": "stride_provisional",
        "t_start": 300.0 + 0.7 * i,
        "t_end": 300.7 + 0.7 * i,
        "cadence_spm": 170.0,
        "pelvic_tilt_deg": 2.0,
        "trunk_lean_deg": 1.0,
        "stack_deg": dev,
        "pelvic_drop_deg": 4.0,
        "deviation_deg": {"pelvic_tilt_deg": 2.0, "trunk_lean_deg": 1.0, "stack_deg": dev},
        "decided_t": 301.0 + 0.7 * i,
    }


def level_now(driver, seconds: float = 0.4) -> float:
    """The analyser's level (dBFS RMS), the median of a few reads over ``seconds``."""
    vals = []
    for _ in range(5):
        time.sleep(seconds / 5)
        vals.append(driver.execute_script("return window.stackcue.sound.levelNow()"))
    return sorted(vals)[2]


@pytest.mark.slow
def test_phone_web_audio_follows_the_provisional_strides(serve, broker):  # noqa: F811
    from selenium.webdriver.common.by import By

    s = serve(owner="phone", extra='style = "sonify"')
    driver = make_driver()
    pub = Pub(broker)
    try:
        browser_login(driver, s)
        wait_js(driver, "return document.getElementById('conn').dataset.state === 'connected'", 10, "connected")
        wait_js(driver, "return window.stackcue.sound.style === 'sonify'", 5, "the style from serve")
        driver.execute_script(STUB_CUES)  # speech and vibration recorded, Web Audio real
        driver.find_element(By.ID, "btn-cues").click()
        graph = driver.execute_script("return window.stackcue.sound.graph.map(n => n.constructor.name)")
        assert graph == ["AudioBufferSourceNode", "GainNode", "GainNode", "AnalyserNode"], graph
        wait_js(driver, "return window.stackcue.sound.ctx.state === 'running'", 5, "the audio context running")
        assert "Style: sonify" in text_of(driver, "cueowner")
        smap = SoundMap()
        heard = {}
        for i, dev in enumerate((0.0, 2.5, -6.0, 9.0, -13.0)):
            pub.send(f"{PREFIX}/stride_provisional", provisional(dev, i), qos=0)
            wait_js(driver, f"return window.stackcue.sound.deviation === {dev}", 3, f"deviation {dev}")
            target = driver.execute_script("return window.stackcue.sound.target")
            assert target == pytest.approx(smap.gain(dev), rel=1e-6)
            heard[dev] = level_now(driver)
        for dev, db in heard.items():
            want = smap.level_dbfs(dev)
            if want is None:
                assert db <= -80, (dev, db)  # silent inside the dead band
            else:
                assert abs(db - want) < 2.0, (dev, db, want)
        shot(driver, "cue-sonify")
        # a cue spoken over the layer: it ducks by 20 dB, and comes back after
        pub.send(f"{PREFIX}/stride_provisional", provisional(-13.0, 6), qos=0)
        pub.send(
            f"{PREFIX}/alert",
            {"type": "alert", "t": 9.0, "kind": "ribs_behind_pelvis", "id": 1, "alert_id": 1, "session": "S",
             "value_deg": -13.0, "threshold_deg": -8.0, "sent_at": time.time(), "age_s": 0.0},
        )  # fmt: skip
        wait_js(driver, "return window.stackcue.sound.ducked === true", 3, "ducked while speaking")
        ducked = level_now(driver, 0.3)
        assert abs((heard[-13.0] - ducked) - 20.0) < 2.5, (heard[-13.0], ducked)
        wait_js(driver, "return window.stackcue.sound.ducked === false", 5, "back after the cue")
        # no stride for 2.5 s (the runner stopped): silent, not stuck on the last level
        pub.send(f"{PREFIX}/stride_provisional", provisional(9.0, 7), qos=0)
        wait_js(driver, "return window.stackcue.sound.target > 0", 3, "sounding")
        wait_js(driver, "return window.stackcue.sound.target === 0", 4, "silent once the strides stop")
        assert level_now(driver) <= -80
        # the coach's targets switch the style at the next session: beeps, higher the further off
        pub.send(
            f"{PREFIX}/event",
            {"type": "session", "state": "started", "session": "S2", "cue_owner": "phone", "cue_style": "beep"},
        )
        wait_js(driver, "return window.stackcue.sound.style === 'beep'", 3, "style beep")
        hz = []
        for i, dev in enumerate((5.0, 9.0, 14.0, 1.0)):
            before = driver.execute_script("return window.stackcue.sound.beeps")
            pub.send(f"{PREFIX}/stride_provisional", provisional(dev, 10 + i), qos=0)
            wait_js(driver, f"return window.stackcue.sound.deviation === {dev}", 3, f"deviation {dev}")
            after = driver.execute_script("return window.stackcue.sound.beeps")
            if smap.beep_hz(dev) is None:
                assert after == before  # no beep inside the dead band
            else:
                assert after == before + 1
                hz.append(driver.execute_script("return window.stackcue.sound.lastHz"))
        assert hz == pytest.approx([smap.beep_hz(d) for d in (5.0, 9.0, 14.0)], rel=1e-6)
        assert hz[0] < hz[1] < hz[2]
        # haptic: vibration pulses, faster the further off (navigator.vibrate, recorded)
        pub.send(
            f"{PREFIX}/event",
            {"type": "session", "state": "started", "session": "S2b", "cue_owner": "phone", "cue_style": "haptic"},
        )
        wait_js(driver, "return window.stackcue.sound.style === 'haptic'", 3, "style haptic")
        driver.execute_script("window.__vibrated = []")
        pub.send(f"{PREFIX}/stride_provisional", provisional(14.0, 15), qos=0)
        wait_js(driver, "return window.__vibrated.length >= 3", 3, "pulses")
        period = driver.execute_script("return window.stackcue.sound.period")
        assert period == pytest.approx(smap.pulse_period_s(14.0))
        pulses = driver.execute_script("return window.__vibrated.map(v => [v[0], v[1]])")
        assert all(p == round(smap.pulse_on_s * 1000) for p, _ in pulses)
        gaps = [(b - a) / 1000 for (_, a), (_, b) in itertools.pairwise(pulses)]
        assert all(abs(g - period) < 0.1 for g in gaps), gaps
        # the Pi owns the next session: the phone plays nothing
        pub.send(f"{PREFIX}/event", {"type": "session", "state": "started", "session": "S3", "cue_owner": "pi"})
        wait_js(driver, "return window.stackcue.owner === 'pi'", 3, "owner pi")
        beeps = driver.execute_script("return window.stackcue.sound.beeps")
        pub.send(f"{PREFIX}/stride_provisional", provisional(12.0, 20), qos=0)
        time.sleep(0.5)
        assert driver.execute_script("return window.stackcue.sound.beeps") == beeps
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
    finally:
        pub.close()
        driver.quit()
    assert math.isfinite(heard[9.0])
