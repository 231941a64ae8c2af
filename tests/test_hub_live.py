"""Live at the track: the coach's broker relayed to the squad page (service/hub/live.py), with real mosquittos.

The coach's broker runs as shipped for it: TLS, one password per Pi, config/mosquitto/coach.acl. Each simulated
runner is its own MQTT client logging in as itself; one runner's Pi has its own mosquitto that bridges out to
the coach's broker with the shipped config/mosquitto/bridge-to-coach.conf (only the address, CA path, names and
password filled in). The hub follows them in headless Chromium; latencies go to tests/artifacts/
hub-measurements.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from test_hub_web import ARTIFACTS, PASSWORDS, HubServer, browser_login, console_errors, measured
from test_serve import wait_js

from stackcue.service.hub.live import LiveRelay
from stackcue.service.mqtt_connection import MqttSettings

pytest_plugins = ["broker", "hub_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
MOSQ = ROOT / "config" / "mosquitto"
RUNNERS = [f"r{i:02d}" for i in range(50)]
BRIDGED = RUNNERS[0]  # this runner's Pi bridges its own broker out to the coach's


def state(name: str, tilt: float, stack: float, t: float, **kw) -> dict:
    return {
        "state": name,
        "session": "20261205T090000Z-live",
        "last_stride": {"t": t, "pelvic_tilt_deg": tilt, "stack_deg": stack, "cadence_spm": 172.0},
        "alerts": 0,
        "battery_pct": 80,
        "muted_until": None,
        "updated_at": time.time(),
        **kw,
    }


class Client:
    """One runner's (or the Pi's local) MQTT connection: TLS and a password on the coach's broker."""

    def __init__(self, broker, username: str | None = None, password: str | None = None, ca: Path | None = None):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{username or 'pi'}-{os.getpid()}")
        if username:
            self.c.username_pw_set(username, password)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        self.c.connect(broker.host, broker.port, 30)
        self.c.loop_start()

    def send(self, topic: str, payload: dict, retain: bool = False) -> None:
        self.c.publish(topic, json.dumps(payload), qos=1, retain=retain)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


# ------------------------------------------------------------------------------------------------ the relay alone


class RelayOnLoop:
    """A LiveRelay on its own asyncio loop thread, as uvicorn's lifespan runs it."""

    def __init__(self, broker) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.relay = LiveRelay(MqttSettings(host=broker.host, port=broker.port, runner_id="hub"), "club")
        self.loop.call_soon_threadsafe(self.relay.start, self.loop)

    def page(self, allowed) -> asyncio.Queue:
        return asyncio.run_coroutine_threadsafe(self._open(frozenset(allowed)), self.loop).result(5)

    async def _open(self, allowed):
        return self.relay.open_page(allowed)

    def drain(self, q: asyncio.Queue, wait_s: float) -> list[tuple[str, dict]]:
        async def get_all():
            out = []
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    name, data = await asyncio.wait_for(q.get(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
                out.append((name, json.loads(data)))
            return out

        return asyncio.run_coroutine_threadsafe(get_all(), self.loop).result(wait_s + 5)

    def close(self) -> None:
        self.relay.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.slow
def test_each_page_gets_only_its_own_runners(broker):
    r = RelayOnLoop(broker)
    pub = Client(broker)
    try:
        deadline = time.monotonic() + 5
        while not r.relay.connected:
            assert time.monotonic() < deadline, r.relay.link.text
            time.sleep(0.02)
        time.sleep(0.2)  # subscribed
        coach1, coach2 = r.page({"ana", "bob"}), r.page({"cat"})
        pub.send("stackcue/ana/state", state("running", 3.0, -1.0, 10.0), retain=True)
        pub.send("stackcue/cat/state", state("paused", 1.0, 0.5, 11.0))
        pub.send("stackcue/ana/alert", {"kind": "anterior_tilt", "value_deg": 8.2, "raised_at": time.time()})
        pub.send("stackcue/dan/alert", {"kind": "trunk_lean", "value_deg": 16.0})
        pub.send("stackcue/ana/stride", {"pelvic_tilt_deg": 99.0})  # not relayed: not a live topic
        pub.c.publish("stackcue/ana/state", b"not json", qos=1)
        one, two = r.drain(coach1, 1.5), r.drain(coach2, 0.3)
        assert [(n, m.get("runner")) for n, m in one if n != "broker"] == [("state", "ana"), ("alert", "ana")]
        assert [(n, m.get("runner")) for n, m in two if n != "broker"] == [("state", "cat")]
        st = dict(one)["state"]
        assert (st["state"], st["tilt_deg"], st["stack_deg"], st["recent"]) == ("running", 3.0, -1.0, [[3.0, -1.0]])
        assert dict(one)["alert"]["label"] and dict(one)["alert"]["value_deg"] == 8.2
        # a page opened later gets its runners' last state and recent alerts at once, and no one else's
        late = r.drain(r.page({"ana"}), 0.3)
        assert [(n, m.get("runner")) for n, m in late] == [("broker", None), ("state", "ana"), ("alert", "ana")]
        assert late[2][1]["old"] is True
    finally:
        pub.close()
        r.close()


# ------------------------------------------------------------------------------------------------ the squad live


def render_bridge(runner: str, coach_port: int, cafile: Path, password: str) -> list[str]:
    """config/mosquitto/bridge-to-coach.conf as a Pi installs it: its runner, the coach's address, CA, password."""
    lines = []
    for line in (MOSQ / "bridge-to-coach.conf").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "address":
            value = f"127.0.0.1:{coach_port}"
        elif key == "bridge_cafile":
            value = str(cafile)
        elif key == "remote_password":
            assert value == "CHANGE-ME"
            value = password
        else:
            value = value.replace("ana", runner)
        lines.append(f"{key} {value}")
    return lines


@pytest.fixture
def coach_broker(broker_factory, tls_files):
    users = {"stackcue-hub": "hub-secret", **{r: f"pw-{r}" for r in RUNNERS}}
    return broker_factory(tls=tls_files, users=users, acl=(MOSQ / "coach.acl").read_text())


@pytest.mark.slow
@pytest.mark.serial
@pytest.mark.parametrize("hub_url", ["sqlite"], indirect=True)
def test_the_squad_page_follows_50_live_runners(hub_store, hub_url, coach_broker, broker_factory, tls_files, tmp_path):
    from broker import _give_to_broker
    from test_serve import make_driver

    # the runner's Pi: its own broker, bridging out with the shipped config
    bridge_dir = Path(tempfile.mkdtemp(prefix="stackcue-bridge-"))
    shutil.copy(tls_files.ca_crt, bridge_dir / "coach-ca.crt")
    _give_to_broker(bridge_dir)
    pi = broker_factory(
        extra=tuple(render_bridge(BRIDGED, coach_broker.port, bridge_dir / "coach-ca.crt", f"pw-{BRIDGED}"))
    )

    hub_store.add_user("coach1", "coach", PASSWORDS["coach1"])
    hub_store.add_user("coach2", "coach", PASSWORDS["coach2"])
    hub_store.add_squad("track", "coach1")
    hub_store.add_squad("road", "coach2")
    for r in RUNNERS:
        hub_store.add_runner(r)
        hub_store.add_to_squad("track", r)
    hub_store.add_runner("zz")
    hub_store.add_to_squad("road", "zz")
    pw = tmp_path / "hub-broker-pw"
    pw.write_text("hub-secret\n")
    h = HubServer(
        tmp_path / "hub",
        hub_store,
        hub_url,
        f'broker_host = "127.0.0.1"\nbroker_port = {coach_broker.port}\nbroker_username = "stackcue-hub"\n'
        f'broker_password_file = "{pw}"\nbroker_tls_ca = "{tls_files.ca_crt}"\n',
    )
    clients = {r: Client(coach_broker, r, f"pw-{r}", tls_files.ca_crt) for r in RUNNERS[1:]}
    clients[BRIDGED] = Client(pi)  # on the Pi, as the daemon: its localhost broker
    desk = make_driver((1280, 1800), phone=False)
    try:
        browser_login(desk, h, "coach1")
        wait_js(desk, "return document.getElementById('conn').dataset.state === 'connected'", 10, "the live link")
        rng = random.Random(7)
        latencies: list[float] = []
        for rnd in range(4):
            sent: dict[str, tuple[float, float]] = {}
            for i, r in enumerate(RUNNERS):
                st = state(
                    "paused" if (rnd == 3 and i % 10 == 0) else "running",
                    rng.gauss(3, 2),
                    rng.gauss(-1, 2),
                    rnd * 10.0 + i,
                )
                sent[r] = (st["updated_at"], time.time())
                clients[r].send(f"stackcue/{r}/state", st, retain=True)
                time.sleep(0.01)  # fifty Pis, each at its own moment
            want = json.dumps({r: v[0] for r, v in sent.items()})
            seen = wait_js(
                desk,
                f"const s = window.stackcueSquad.seen, want = {want};"
                "return Object.keys(want).every(r => s[r] && s[r].updated_at === want[r]) && s",
                15,
                f"round {rnd}: every runner's new state",
            )
            if rnd > 0:  # round 0 also waits for the bridge's first connection
                latencies += [seen[r]["at"] / 1000 - sent[r][1] for r in RUNNERS]
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        figures = {
            "runners": len(RUNNERS),
            "states": len(latencies),
            "median_s": round(statistics.median(latencies), 3),
            "p95_s": round(p95, 3),
            "max_s": round(latencies[-1], 3),
        }
        measured("squad_live_50_runners", figures)
        print(f"squad page, 50 live runners: {figures}")
        assert p95 <= 2.0, figures
        assert desk.find_element("id", f"live-{RUNNERS[10]}").text.startswith("Paused")

        # an alert through the bridge, as it happens; the runner of another coach never reaches this page
        clients[BRIDGED].send(
            f"stackcue/{BRIDGED}/alert", {"kind": "anterior_tilt", "value_deg": 8.4, "raised_at": time.time()}
        )
        wait_js(desk, f"return document.getElementById('live-{BRIDGED}').textContent.includes('⚠')", 5, "the alert")
        assert desk.execute_script("return document.querySelector('tr.flash') !== null")
        assert desk.execute_script("return !('zz' in window.stackcueSquad.seen)")
        # one Pi cannot pass for another runner: the coach's ACL drops it
        forged = state("running", 40.0, 40.0, 1e6)
        clients[RUNNERS[2]].send(f"stackcue/{RUNNERS[3]}/state", forged)
        time.sleep(1.0)
        assert (
            desk.execute_script(f"return window.stackcueSquad.seen['{RUNNERS[3]}'].updated_at") != forged["updated_at"]
        )
        shot = ARTIFACTS / "hub-squad-live.png"
        assert desk.save_screenshot(str(shot))

        # the coach's broker goes away: the page says so, and follows again when it is back
        coach_broker.kill()
        wait_js(desk, "return document.getElementById('conn').dataset.state === 'disconnected'", 10, "the link lost")
        assert "reconnecting" in desk.find_element("id", "conntext").text
        assert desk.save_screenshot(str(ARTIFACTS / "hub-squad-link-lost.png"))
        coach_broker.start()
        wait_js(desk, "return document.getElementById('conn').dataset.state === 'connected'", 15, "the link back")
        again = Client(coach_broker, RUNNERS[5], f"pw-{RUNNERS[5]}", tls_files.ca_crt)
        st = state("running", 1.5, 0.5, 99.0)
        again.send(f"stackcue/{RUNNERS[5]}/state", st)
        wait_js(desk, f"return window.stackcueSquad.seen['{RUNNERS[5]}'].updated_at === {st['updated_at']}", 5, "after")
        again.close()
        assert console_errors(desk) == []
    finally:
        desk.quit()
        h.stop()
        for c in clients.values():
            c.close()
        shutil.rmtree(bridge_dir, ignore_errors=True)
