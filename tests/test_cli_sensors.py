"""`stackcue probe` and `stackcue record` as a user runs them here: on the emulator."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackcue.firmware_bridge.csv_format import read_recording
from stackcue.service.cli import main

EXE = str(Path(sys.executable).parent / "stackcue")


@pytest.mark.slow
def test_probe_emulated_gives_a_verdict(capsys):
    code = main(["probe", "--emulate", "--seconds", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "0x68: MPU-6050" in out and "0x69: MPU-6050" in out
    # the emulated chips' oscillator errors (+1.3 %, -0.8 %), measured on the real clock of a busy machine
    clocks = [float(x) for x in re.findall(r"clock ([+-][0-9.]+) %", out)]
    assert len(clocks) == 2 and abs(clocks[0] - 1.3) < 0.3 and abs(clocks[1] + 0.8) < 0.3, clocks
    assert out.count("verdict     OK") == 2


@pytest.mark.skipif(os.path.exists("/dev/i2c-1"), reason="this machine has an I2C bus")
def test_probe_without_i2c_is_one_clear_line(capsys):
    code = main(["probe"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "no I2C bus: /dev/i2c-1 does not exist" in err and "raspi-config" in err


def test_record_emulated_for_some_seconds(tmp_path, capsys):
    out = tmp_path / "rec.csv"
    # the emulated FIFO holds 0.4 s of emulated time: at 40x a 10 ms stall of a loaded CI machine overflowed it
    code = main(["record", "-o", str(out), "--emulate", "--speed", "5", "--minutes", "1", "--seconds", "8"])
    assert code == 0
    block, meta, problems = read_recording(out)
    assert not problems and block.has_trunk
    assert 7.9 < block.t[-1] <= 8.0 and meta["sensor"] == "mpu6050-emulated" and meta["rate"] == "200"
    assert "clock_synchronised" in meta and "started_utc" in meta
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
@pytest.mark.serial
def test_record_ends_cleanly_on_ctrl_c_or_sigterm(tmp_path, sig):
    out = tmp_path / "rec.csv"
    p = subprocess.Popen(
        [EXE, "record", "-o", str(out), "--emulate", "--speed", "5", "--minutes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.2)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=10)
    assert p.returncode == 0, stderr
    assert "stopped by the user" in stdout and "Traceback" not in stderr
    block, _, problems = read_recording(out)
    assert not problems and len(block) > 1000  # complete rows only, nothing half-written
