"""`stackcue serve`'s MQTT account under the shipped ACL, and its Host allow-list (DNS-rebinding protection).

Fast: the app is driven in-process through its ASGI interface (no lifespan, so no broker for the Host tests);
the account tests run the real Relay against the real mosquitto with config/mosquitto/acl.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from test_mqtt import Sub, wait_until

from stackcue.service.config import load_config
from stackcue.service.web import auth
from stackcue.service.web.app import ServeOptions, allowed_hosts, create_app
from stackcue.service.web.certs import cert_names, make_certs
from stackcue.service.web.relay import Relay, serve_mqtt_settings

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["broker"]
SHIPPED_ACL = (ROOT / "config" / "mosquitto" / "acl").read_text()


def config(tmp_path: Path, broker=None, serve: tuple[str, ...] = (), mqtt: tuple[str, ...] = ()):
    lines = ["[runner]", 'id = "ana"', "[serve]", *serve, "[mqtt]", *mqtt]
    if broker is not None:
        lines += [f'host = "{broker.host}"', f"port = {broker.port}"]
    p = tmp_path / "serve.toml"
    p.write_text("\n".join(lines) + "\n")
    return load_config(str(p))


def secret(tmp_path: Path, name: str, value: str) -> Path:
    p = tmp_path / name
    p.write_text(value + "\n")
    p.chmod(0o600)
    return p


# ---------------------------------------------------------------------- the MQTT account


def test_serve_uses_the_runners_own_account_when_given_else_the_mqtt_one(tmp_path):
    pw = secret(tmp_path, "ana.pw", "x")
    own = serve_mqtt_settings(config(tmp_path, serve=(f'mqtt_password_file = "{pw}"',)))
    assert (own.username, own.password_file) == ("ana", str(pw))
    named = serve_mqtt_settings(config(tmp_path, serve=(f'mqtt_password_file = "{pw}"', 'mqtt_username = "ana-p"')))
    assert named.username == "ana-p"
    plain = serve_mqtt_settings(config(tmp_path, mqtt=('username = "stackcue-device"',)))
    assert plain.username == "stackcue-device"


class Running:
    """A Relay on its own asyncio loop thread, as uvicorn's lifespan runs it."""

    def __init__(self, cfg, tag: str) -> None:
        import dataclasses
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.relay = Relay(serve_mqtt_settings(cfg), "pi", 10.0)
        # two serve processes would differ by pid; these two share one
        self.relay.settings = dataclasses.replace(self.relay.settings, client_id=f"serve-{tag}")
        self.loop.call_soon_threadsafe(self.relay.start, self.loop)

    def close(self) -> None:
        self.relay.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_the_runners_own_account_may_command_and_another_runners_may_not(broker_factory, tmp_path):
    users = {"stackcue-device": "device-secret", "ana": "ana-secret", "bob": "bob-secret"}
    b = broker_factory(users=users, acl=SHIPPED_ACL)
    device = Sub(b, ["stackcue/ana/command"], username="stackcue-device", password="device-secret")
    ana_pw, bob_pw = secret(tmp_path, "ana.pw", "ana-secret"), secret(tmp_path, "bob.pw", "bob-secret")
    own = Running(config(tmp_path, b, serve=(f'mqtt_password_file = "{ana_pw}"',)), "ana")
    # a relay for ana's page configured with bob's account (a copied configuration, a mix-up)
    other = Running(config(tmp_path, b, serve=(f'mqtt_password_file = "{bob_pw}"', 'mqtt_username = "bob"')), "bob")
    try:
        wait_until(lambda: own.relay.connected and other.relay.connected, 10, "both relays connected")
        # bob may read (every account reads stackcue/#) but not write ana's command topic
        denied = other.relay.publish_command("pause", None)
        assert denied is not None  # QoS 1 under MQTT 3.1.1: the broker drops it silently
        wait_until(lambda: "Denied PUBLISH from serve-bob" in b.log(), 5, "the broker's denial")
        cid = own.relay.publish_command("pause", None)
        wait_until(lambda: device.on("stackcue/ana/command"), 5, "ana's command at the daemon")
        time.sleep(0.5)
        got = [json.loads(m[1]) for m in device.on("stackcue/ana/command")]
        assert [(g["id"], g["cmd"], g["from"]) for g in got] == [(cid, "pause", "phone")]
        log = b.log()
        assert "Denied PUBLISH from serve-bob" in log and "Denied PUBLISH from serve-ana" not in log
    finally:
        own.close()
        other.close()
        device.client.loop_stop()
        device.client.disconnect()


# ---------------------------------------------------------------------- the Host allow-list


class Client:
    """GET through the app's ASGI interface with a chosen Host header (what a browser sends), no server."""

    def __init__(self, app) -> None:
        self.app = app

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, str]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        asyncio.run(self.app(scope, receive, send))
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, body.decode()


@pytest.fixture
def app_for(tmp_path):
    pw = tmp_path / "web-password"
    auth.set_password(pw, "correct horse battery")

    def make(hosts: tuple[str, ...] = ()):
        cfg = config(tmp_path)
        options = ServeOptions(password_file=pw, logbook=None, https=False, session_hours=1.0, hosts=hosts)
        relay = Relay(cfg.mqtt_settings(), "pi", 10.0)  # never started: no lifespan in these tests
        return Client(create_app(cfg, options, relay))

    return make


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST"])
def test_loopback_hosts_are_answered(app_for, host):
    status, text = app_for().get("/login", headers={"host": host})
    assert status == 200, text


@pytest.mark.parametrize("host", ["evil.example:8080", "stackcue.local", "10.0.0.5", "localhost.evil.example", ""])
def test_another_host_gets_400(app_for, host):
    status, text = app_for().get("/login", headers={"host": host})
    assert status == 400 and "Invalid host header" in text


def test_configured_and_certificate_names_are_answered(app_for, tmp_path):
    files = make_certs(tmp_path / "certs", ["stackcue.local", "10.42.0.1", "fd00::1"])
    names = cert_names(files.server_crt)
    assert set(names) >= {"stackcue.local", "10.42.0.1", "[fd00::1]"}
    client = app_for(tuple([*names, "Stackcue.Home."]))
    for host in ("stackcue.local:8080", "10.42.0.1:8080", "[fd00::1]:8080", "stackcue.home"):
        assert client.get("/login", headers={"host": host})[0] == 200, host
    assert client.get("/login", headers={"host": "attacker.example"})[0] == 400
    assert allowed_hosts(["fd00::2"])[-1] == "[fd00::2]"
