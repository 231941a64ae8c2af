"""The systemd units: what the daemon's notify protocol and the design rely on."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parent.parent / "config"


def unit(name: str) -> configparser.ConfigParser:
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read(CONFIG / name)
    return p


def test_service_unit():
    s = unit("stackcue.service")["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    assert s["User"] != "root" and "i2c" in s["SupplementaryGroups"].split()
    assert s["UMask"] == "0077"
    assert "stackcue run" in s["ExecStart"]


def test_cue_unit():
    s = unit("stackcue-cue.service")["Service"]
    assert "stackcue cue" in s["ExecStart"] and s["User"] != "root"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("name", ["stackcue.service", "stackcue-cue.service"])
def test_units_parse(name, tmp_path):
    # systemd-analyze checks syntax and known keys; the ExecStart binary is not on this machine, so only
    # complaints other than a missing executable or user count
    r = subprocess.run(["systemd-analyze", "verify", str(CONFIG / name)], capture_output=True, text=True)
    bad = [
        ln
        for ln in r.stderr.splitlines()
        if ln.strip()
        and "not executable" not in ln
        and "No such file" not in ln
        and "Failed to" not in ln
        and "Unknown user" not in ln
        and "/opt/stackcue" not in ln
        and "Documentation" not in ln
        and "mosquitto.service" not in ln
    ]
    assert not bad, bad
