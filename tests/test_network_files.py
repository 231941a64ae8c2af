"""config/network: the NetworkManager profiles, the avahi record and install-network.sh, staged under a DESTDIR.

The script never runs for real here: every run goes through `run_script`, which insists on DESTDIR or
--dry-run, and puts stand-ins for nmcli, hostnamectl, systemctl, apt-get and dpkg-query first on PATH that
record a call and fail, so that even a bug in the script could not change this machine's network. Each
test also checks that /etc is as it was.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NET = REPO / "config/network"
SCRIPT = NET / "install-network.sh"
NM_DIR = "etc/NetworkManager/system-connections"
PROFILES = ("stackcue-hotspot", "stackcue-ap")
SYSTEM_COMMANDS = ("nmcli", "hostnamectl", "systemctl", "apt-get", "dpkg-query")
# the files the script would write on a real install, and the ones it would edit
WATCHED = [Path("/", NM_DIR, f"{p}.nmconnection") for p in PROFILES] + [
    Path("/etc/avahi/services/stackcue.service"),
    Path("/etc/hostname"),
    Path("/etc/hosts"),
]

SSID, PSK, AP_PSK = "Ana’s iPhone", " sec\\ret;p&ss@PSK@ ", "ap-secret-1"
ARGS = ["--ssid", SSID, "--psk", PSK, "--ap-psk", AP_PSK]


def snapshot() -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.exists() else None for p in WATCHED}


@pytest.fixture
def run_script(tmp_path):
    """run_script(*args, destdir=PATH | None) → CompletedProcess; fails the test if a system command ran."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    called = tmp_path / "called"
    for name in SYSTEM_COMMANDS:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {called}\nexit 97\n')
        stub.chmod(0o755)
    before = snapshot()

    def run(*args: str, destdir: Path | None = None) -> subprocess.CompletedProcess[str]:
        assert destdir is not None or "--dry-run" in args, "never run install-network.sh for real in a test"
        env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
        env["PATH"] = f"{stubs}:{env['PATH']}"
        if destdir is not None:
            env["DESTDIR"] = str(destdir)
        r = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)
        assert not called.exists(), f"a system command ran: {called.read_text()}"
        for secret in (PSK, AP_PSK):
            assert secret not in r.stdout + r.stderr  # passphrases are never printed
        return r

    yield run
    assert snapshot() == before, "the script changed this machine's files"


def keyfile(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#",))
    cp.optionxform = str  # keys are case-sensitive in a keyfile
    cp.read_string(text)
    return cp


def mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


# ---------------------------------------------------------------------- the templates


def test_the_profiles_are_keyfiles_with_what_networkmanager_needs():
    hotspot = keyfile((NET / "stackcue-hotspot.nmconnection").read_text())
    ap = keyfile((NET / "stackcue-ap.nmconnection").read_text())
    for cp, name in ((hotspot, "stackcue-hotspot"), (ap, "stackcue-ap")):
        c = cp["connection"]
        assert c["id"] == name and c["type"] == "wifi" and c["autoconnect"] == "true"
        assert len(c["uuid"]) == 36
        assert cp["wifi-security"]["key-mgmt"] == "wpa-psk"
    assert hotspot["wifi"]["mode"] == "infrastructure" and hotspot["ipv4"]["method"] == "auto"
    assert (hotspot["wifi"]["ssid"], hotspot["wifi-security"]["psk"]) == ("@SSID@", "@PSK@")
    assert ap["wifi"]["mode"] == "ap" and ap["wifi"]["band"] == "bg" and ap["ipv4"]["method"] == "shared"
    assert (ap["wifi"]["ssid"], ap["wifi-security"]["psk"]) == ("@AP_SSID@", "@AP_PSK@")
    assert ap["ipv4"]["address1"] == "10.42.0.1/24"
    # below a home Wi-Fi at NetworkManager's default 0; the access point is the last resort
    ap_prio, hotspot_prio = (int(cp["connection"]["autoconnect-priority"]) for cp in (ap, hotspot))
    assert ap_prio < hotspot_prio < 0
    assert hotspot["connection"]["uuid"] != ap["connection"]["uuid"]


# ---------------------------------------------------------------------- a staged install


def test_a_staged_install_fills_the_profiles_with_mode_0600_and_touches_nothing_else(run_script, tmp_path):
    root = tmp_path / "root"
    r = run_script(*ARGS, destdir=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped (DESTDIR set): nmcli connection reload" in r.stdout
    assert "skipped (DESTDIR set): hostnamectl set-hostname stackcue" in r.stdout
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        "etc/NetworkManager/system-connections/stackcue-ap.nmconnection",
        "etc/NetworkManager/system-connections/stackcue-hotspot.nmconnection",
        "etc/avahi/services/stackcue.service",
    ]
    for name in PROFILES:
        path = root / NM_DIR / f"{name}.nmconnection"
        assert mode(path) == 0o600
        body = "\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))
        assert "@SSID@" not in body and "@AP_SSID@" not in body and "@AP_PSK@" not in body
    hotspot = keyfile((root / NM_DIR / "stackcue-hotspot.nmconnection").read_text())
    # NetworkManager's rule: an SSID that is not printable ASCII is written as its bytes
    assert hotspot["wifi"]["ssid"] == "".join(f"{b};" for b in SSID.encode())
    # GKeyFile's escapes (\s, \\), the trailing space kept (configparser would strip it), the fill ran once
    lines = (root / NM_DIR / "stackcue-hotspot.nmconnection").read_text().splitlines()
    assert "psk=\\ssec\\\\ret;p&ss@PSK@ " in lines
    ap = keyfile((root / NM_DIR / "stackcue-ap.nmconnection").read_text())
    assert (ap["wifi"]["ssid"], ap["wifi-security"]["psk"]) == ("stackcue", AP_PSK)
    assert mode(root / "etc/avahi/services/stackcue.service") == 0o644

    again = run_script(*ARGS, destdir=root)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    (root / NM_DIR / "stackcue-ap.nmconnection").chmod(0o644)
    fixed = run_script(*ARGS, destdir=root)
    assert "updated /etc/NetworkManager/system-connections/stackcue-ap.nmconnection (mode 0600)" in fixed.stdout
    assert mode(root / NM_DIR / "stackcue-ap.nmconnection") == 0o600


READ_WITH_LIBNM = r"""
import json, sys, gi
gi.require_version("NM", "1.0")
from gi.repository import GLib, NM
out = {}
for path in sys.argv[1:]:
    kf = GLib.KeyFile()
    kf.load_from_file(path, GLib.KeyFileFlags.NONE)
    con = NM.keyfile_read(kf, "/etc/NetworkManager/system-connections", NM.KeyfileHandlerFlags.NONE, None, None)
    con.verify()  # raises on a profile NetworkManager would refuse
    c, w = con.get_setting_connection(), con.get_setting_wireless()
    out[c.get_id()] = {
        "priority": c.get_autoconnect_priority(), "mode": w.get_mode(),
        "ssid": bytes(w.get_ssid().get_data()).decode(), "psk": con.get_setting_wireless_security().get_psk(),
        "ipv4": con.get_setting_ip4_config().get_method(),
    }
print(json.dumps(out))
"""


def libnm_python() -> str | None:
    """A Python with PyGObject and libnm's typelib (Debian: python3-gi, gir1.2-nm-1.0), or None."""
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if python and Path(python).exists():
            probe = 'import gi; gi.require_version("NM", "1.0"); from gi.repository import NM'
            if subprocess.run([python, "-c", probe], capture_output=True, timeout=30).returncode == 0:
                return python
    return None


def test_networkmanagers_own_keyfile_reader_accepts_the_profiles(run_script, tmp_path):
    python = libnm_python()
    if python is None:
        pytest.skip("no libnm here (apt-get install gir1.2-nm-1.0 python3-gi)")
    root = tmp_path / "root"
    assert run_script(*ARGS, "--ap-ssid", "run;club\\1", destdir=root).returncode == 0
    paths = [str(root / NM_DIR / f"{p}.nmconnection") for p in PROFILES]
    r = subprocess.run([python, "-c", READ_WITH_LIBNM, *paths], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["stackcue-hotspot"] == {
        "priority": -10,
        "mode": "infrastructure",
        "ssid": SSID,
        "psk": PSK,
        "ipv4": "auto",
    }
    assert got["stackcue-ap"] == {
        "priority": -100,
        "mode": "ap",
        "ssid": "run;club\\1",
        "psk": AP_PSK,
        "ipv4": "shared",
    }


def test_the_avahi_record_is_https_on_the_port(run_script, tmp_path):
    ET.parse(NET / "stackcue-avahi.service")  # the template itself is well-formed
    root = tmp_path / "root"
    assert run_script(*ARGS, "--port", "9443", destdir=root).returncode == 0
    group = ET.parse(root / "etc/avahi/services/stackcue.service").getroot()
    assert group.tag == "service-group"
    assert group.find("name").text == "stackcue on %h" and group.find("name").get("replace-wildcards") == "yes"
    (service,) = group.findall("service")
    assert service.find("type").text == "_https._tcp" and service.find("port").text == "9443"


def advertised_port(root: Path) -> str:
    return ET.parse(root / "etc/avahi/services/stackcue.service").find("service/port").text


def test_the_advertised_port_is_serves_port_from_the_configuration(run_script, tmp_path):
    # no configuration: the shipped [serve] port, the one `stackcue serve` listens on by default
    shipped = tomllib.loads((REPO / "config/default.toml").read_text())["serve"]["port"]
    default = tmp_path / "default"
    r = run_script(*ARGS, destdir=default)
    assert r.returncode == 0, r.stderr
    assert advertised_port(default) == str(shipped) and f"port {shipped} from the default [serve] port" in r.stdout
    # the Pi's own configuration, as make install wrote it and the runner edited it
    pi = tmp_path / "pi"
    etc = pi / "etc/stackcue"
    etc.mkdir(parents=True)
    lines = (REPO / "config/default.toml").read_text().splitlines()
    sec = lines.index("[serve]")
    at = next(i for i in range(sec, len(lines)) if lines[i].startswith("port ="))
    lines[at] = "port=9443   # the runner's"
    (etc / "config.toml").write_text("\n".join(lines) + "\n")
    assert tomllib.loads((etc / "config.toml").read_text())["serve"]["port"] == 9443
    assert tomllib.loads((etc / "config.toml").read_text())["mqtt"]["port"] == 1883  # another table's port
    r = run_script(*ARGS, destdir=pi)
    assert r.returncode == 0, r.stderr
    assert advertised_port(pi) == "9443"
    # --config names another file; --port wins over both
    other = tmp_path / "other.toml"
    other.write_text('[mqtt]\nport = 1883\n[serve]\nbind = "0.0.0.0"\nport = 8444\n')
    elsewhere = tmp_path / "elsewhere"
    assert run_script(*ARGS, "--config", str(other), destdir=elsewhere).returncode == 0
    assert advertised_port(elsewhere) == "8444"
    assert run_script(*ARGS, "--port", "9000", destdir=pi).returncode == 0
    assert advertised_port(pi) == "9000"
    # a bad port in the file, or no file: one line naming it, nothing changed
    bad = tmp_path / "bad.toml"
    bad.write_text("[serve]\nport = 99999\n")
    r = run_script(*ARGS, "--config", str(bad), destdir=tmp_path / "refused")
    assert (
        r.returncode == 2
        and r.stderr == f"install-network.sh: {bad}: [serve] port: '99999' is not a TCP port (1 to 65535)\n"
    )
    r = run_script(*ARGS, "--config", str(tmp_path / "none.toml"), destdir=tmp_path / "refused")
    assert r.returncode == 2 and "--config: cannot read" in r.stderr
    assert not (tmp_path / "refused").exists()


# ---------------------------------------------------------------------- dry run and refusals


def test_dry_run_prints_the_plan_and_changes_nothing(run_script, tmp_path):
    root = tmp_path / "root"
    r = run_script("--dry-run", *ARGS, destdir=root)
    assert r.returncode == 0, r.stderr
    assert "would have installed /etc/NetworkManager/system-connections/stackcue-hotspot.nmconnection" in r.stdout
    assert "dry run, nothing changed" in r.stdout
    assert not root.exists()
    # and against this machine itself (the fixture checks /etc and that no system command ran)
    r = run_script("--dry-run", *ARGS)
    assert r.returncode == 0, r.stderr
    assert "would run: nmcli connection reload" in r.stdout
    assert "would run: systemctl try-restart avahi-daemon" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--ssid", "x", "--psk", "short", "--ap-psk", AP_PSK],
            "--psk: a WPA passphrase has 8 to 63 characters (got 5)",
        ),
        (
            ["--ssid", "x", "--psk", PSK, "--ap-psk", "1234567"],
            "--ap-psk: a WPA passphrase has 8 to 63 characters (got 7)",
        ),
        (
            ["--ssid", "x", "--psk", "p" * 64, "--ap-psk", AP_PSK],
            "--psk: a WPA passphrase has 8 to 63 characters (got 64)",
        ),
        (["--ssid", "x", "--psk", "pässword1", "--ap-psk", AP_PSK], "--psk: a WPA passphrase is printable ASCII only"),
        (["--ssid", "s" * 33, "--psk", PSK, "--ap-psk", AP_PSK], "--ssid: an SSID has at most 32 bytes (got 33)"),
        (["--psk", PSK, "--ap-psk", AP_PSK], "--ssid is required"),
        ([*ARGS, "--hostname", "Stack_Cue"], "--hostname: 'Stack_Cue' is not a host name"),
        ([*ARGS, "--port", "70000"], "--port: '70000' is not a TCP port"),
        ([*ARGS, "--port", "x"], "--port: 'x' is not a TCP port"),
        ([*ARGS, "--ssid"], "--ssid needs a value"),
        ([*ARGS, "--wifi", "x"], "unknown argument '--wifi'"),
    ],
    ids=[
        "short-psk",
        "short-ap-psk",
        "long-psk",
        "non-ascii",
        "long-ssid",
        "no-ssid",
        "host",
        "port",
        "port-word",
        "no-value",
        "unknown",
    ],
)
def test_a_bad_argument_is_refused_in_one_line_before_anything_changes(run_script, tmp_path, args, message):
    root = tmp_path / "root"
    r = run_script(*args, destdir=root)
    assert r.returncode == 2
    assert r.stderr.startswith(f"install-network.sh: {message}") and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == "" and not root.exists()


def test_a_raw_64_hex_digit_psk_is_accepted(run_script, tmp_path):
    r = run_script("--ssid", "x", "--psk", "ab" * 32, "--ap-psk", AP_PSK, destdir=tmp_path / "root")
    assert r.returncode == 0, r.stderr
