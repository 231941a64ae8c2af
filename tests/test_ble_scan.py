"""``stackcue scan`` and the BLE source's start-up against the bleak stand-in (no radio)."""

from __future__ import annotations

import argparse
import io
import re

import numpy as np
import pytest

from stackcue.errors import SourceError, StackcueError
from stackcue.firmware_bridge.ble_clients import classify
from stackcue.firmware_bridge.emulated.ble_radio import Air
from stackcue.firmware_bridge.emulated.ble_sensors import EmulatedStackcueSensor, EmulatedWitMotion
from stackcue.firmware_bridge.emulated.motion import MotionTrack
from stackcue.firmware_bridge.source import SOURCE_KINDS, open_source
from stackcue.service.scan import add_parser, ble_options, cmd_scan


def args(air: Air, **kw) -> argparse.Namespace:
    return argparse.Namespace(
        seconds=kw.get("seconds", 10.0),
        listen=2.0,
        no_connect=kw.get("no_connect", False),
        bleak=air.bleak,
        speed=air.speed,
    )


def test_scan_lists_supported_sensors_with_rssi_and_streaming():
    air = Air(speed=20.0, seed=1)
    still = MotionTrack.still()
    air.add(EmulatedWitMotion("C4:11:22:33:44:55", still, name="WT901BLE68", rssi_dbm=-58))
    air.add(EmulatedStackcueSensor("D0:8C:00:00:00:01", still, name="stackcue-pelvis", rssi_dbm=-71))
    off = air.add(EmulatedStackcueSensor("D0:8C:00:00:00:02", still, name="stackcue-trunk"))
    off.powered = False  # switched off: not listed
    out = io.StringIO()
    assert cmd_scan(args(air), out=out) == 0
    text = out.getvalue()
    print("\n" + text)
    lines = text.splitlines()
    assert lines[1].split()[:5] == ["NAME", "ADDRESS", "KIND", "RSSI", "STREAMS"]
    wit = next(x for x in lines if x.startswith("WT901BLE68"))
    own = next(x for x in lines if x.startswith("stackcue-pelvis"))
    assert lines.index(wit) < lines.index(own)  # strongest first
    assert "C4:11:22:33:44:55" in wit and "witmotion" in wit and "yes" in wit
    assert "D0:8C:00:00:00:01" in own and "stackcue" in own and "yes" in own
    # the WitMotion streams at its factory 10 Hz, the stackcue sensor at 200 Hz: measured from arrivals (at 20x)
    rates = [float(re.search(r"~(\d+) samples/s", x).group(1)) for x in (wit, own)]
    # counted over a short window: a loaded machine reads low
    assert 9 <= rates[0] <= 11 and 180 <= rates[1] <= 210, rates
    rssi = int(wit.split()[3])
    assert -66 <= rssi <= -50
    assert "stackcue-trunk" not in text
    assert "2 supported sensors" in text


def test_scan_without_connecting_and_with_nothing_in_range():
    air = Air(speed=20.0, seed=2)
    air.add(EmulatedWitMotion("C4:11:22:33:44:56", MotionTrack.still(), name="WT901BLE69"))
    out = io.StringIO()
    assert cmd_scan(args(air, no_connect=True, seconds=3.0), out=out) == 0
    assert "not checked (--no-connect)" in out.getvalue()
    empty = io.StringIO()
    assert cmd_scan(args(Air(speed=20.0), seconds=3.0), out=empty) == 0
    assert "no supported sensor in range" in empty.getvalue()


@pytest.mark.parametrize(
    "kw,words",
    [({"adapter": False}, "no usable Bluetooth adapter"), ({"bluez_running": False}, "BlueZ is not running")],
)
def test_scan_without_adapter_or_bluez_is_one_line(kw, words):
    air = Air(speed=20.0, **kw)
    with pytest.raises(StackcueError) as ei:
        cmd_scan(args(air), out=io.StringIO())
    msg = str(ei.value)
    assert words in msg and "\n" not in msg and "Traceback" not in msg
    # the BLE source refuses the same way at start (the service prints it and exits 2)
    with pytest.raises(SourceError, match=words):
        open_source("ble", pelvis="WT901BLE68", bleak=air.bleak, clock=air.now, speed=air.speed)


def test_scan_parser_and_classification():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_parser(sub)
    a = p.parse_args(["scan", "--seconds", "4"])
    assert a.seconds == 4.0 and not a.no_connect
    with pytest.raises(SystemExit):
        p.parse_args(["scan", "--seconds", "0"])
    assert classify("WT901BLE68") == "witmotion"
    assert classify(None, ["d08c0001-f4a4-4e53-b237-6ce85239c84a"]) == "stackcue"
    assert classify("stackcue-7") == "stackcue"
    assert classify("Pixel 7", ["0000180d-0000-1000-8000-00805f9b34fb"]) is None
    assert SOURCE_KINDS["ble"] == "stackcue.firmware_bridge.ble_source:BLESource"


def test_ble_options_from_configuration(tmp_path):
    from stackcue.errors import ConfigError
    from stackcue.service.config import load_config

    p = tmp_path / "ble.toml"
    p.write_text('[source]\nkind = "ble"\n[ble]\npelvis = "i2c"\ntrunk = "stackcue-trunk"\nreconnect_max_s = 20.0\n')
    o = ble_options(load_config(p))
    assert o["pelvis"] == "i2c" and o["trunk"] == "stackcue-trunk" and o["bus"] == 1 and o["backoff_s"] == (1.0, 20.0)
    assert o["rate_hz"] == 200.0 and o["accel_range_g"] == 8 and o["pelvis_address"] == 0x68
    p.write_text('[source]\nkind = "ble"\n')
    with pytest.raises(StackcueError, match=r"\[ble\] pelvis"):
        ble_options(load_config(p))
    p.write_text('[ble]\npelvis_kind = "garmin"\n')
    with pytest.raises(ConfigError, match=r"ble\.pelvis_kind = 'garmin' is not one of auto, witmotion, stackcue"):
        load_config(p)


def test_sensor_off_is_a_status_not_a_crash_and_close_is_fast():
    import time

    air = Air(speed=10.0)
    src = open_source(
        "ble",
        pelvis="C4:11:22:33:44:99",
        bleak=air.bleak,
        clock=air.now,
        sleep=air.clock.sleep,
        speed=air.speed,
        scan_s=2.0,
    )
    t0 = time.monotonic()
    blocks = [src.read() for _ in range(30)]
    assert all(b is not None and len(b) == 0 for b in blocks)
    assert time.monotonic() - t0 > 0.3 * 30 * 0.02 / air.speed  # it waited between reads: no busy loop
    deadline = time.monotonic() + 3.0
    while "not heard" not in src.status and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "C4:11:22:33:44:99 not heard" in src.status and "switched on" in src.status
    t1 = time.monotonic()
    src.close()
    assert time.monotonic() - t1 < 1.5 and not src._thread.is_alive()
    assert np.isfinite(src.t0)
