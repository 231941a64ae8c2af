"""`make install` / `make uninstall` staged under a DESTDIR, and the wheel they install, run from outside the clone.

One staged install serves every test here (it builds the wheel and fills a fresh venv: ~30 s); the uninstall
test comes last because it removes what the others look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = ("stackcue.service", "stackcue-cue.service")
BIN = "/opt/stackcue/venv/bin/stackcue"
RUNNER_EDIT = 'id = "ana"'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="no make here"),
]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    # an outer `make test` must not pass its own variables (MAKEFLAGS) down to this one
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@dataclass
class Staged:
    root: Path
    wheel: Path
    first: str
    second: str


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Staged:
    base = tmp_path_factory.mktemp("install")
    root, wheels = base / "root", base / "wheel"
    first = make("install", f"DESTDIR={root}", f"WHEEL_DIR={wheels}").stdout
    config = root / "etc/stackcue/config.toml"
    # the runner's own settings, which a second install must keep
    config.write_text(config.read_text().replace('id = "runner1"', RUNNER_EDIT, 1))
    second = make("install", f"DESTDIR={root}", f"WHEEL_DIR={wheels}").stdout
    (wheel,) = wheels.glob("stackcue-*.whl")
    return Staged(root, wheel, first, second)


def mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


def test_files_land_where_the_units_expect_them(staged):
    r = staged.root
    assert os.access(r / BIN.lstrip("/"), os.X_OK)
    assert mode(r / "etc/stackcue") == 0o750 and mode(r / "etc/stackcue/config.toml") == 0o640
    assert mode(r / "var/lib/stackcue") == 0o700
    assert mode(r / "opt/stackcue/doc/README.md") == 0o644
    for name in UNITS:
        unit = r / "etc/systemd/system" / name
        assert mode(unit) == 0o644
        exec_start = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
        assert exec_start.startswith(f"ExecStart={BIN} ") and "--config /etc/stackcue/config.toml" in exec_start
    assert "systemctl" in staged.first and "skipped" in staged.first  # nothing outside DESTDIR was touched


def test_config_is_the_defaults_with_the_pis_logbook(staged):
    cfg = tomllib.loads((staged.root / "etc/stackcue/config.toml").read_text())
    assert cfg["logbook"]["path"] == "/var/lib/stackcue/logbook.sqlite"
    assert "wrote /etc/stackcue/config.toml" in staged.first


def test_second_install_changes_nothing_and_keeps_the_runners_config(staged):
    assert "nothing to do" in staged.second, staged.second
    assert "kept /etc/stackcue/config.toml" in staged.second
    assert RUNNER_EDIT in (staged.root / "etc/stackcue/config.toml").read_text()


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir(),
    reason="no systemd-analyze or system units here",
)
def test_installed_units_verify(staged):
    # --root resolves ExecStart= and the units' dependencies (sysinit.target...) inside the staging root,
    # so the system's own units are copied in beside ours
    system_units = staged.root / "usr/lib/systemd/system"
    if not system_units.exists():
        shutil.copytree("/usr/lib/systemd/system", system_units, symlinks=True)
    r = subprocess.run(
        ["systemd-analyze", "verify", f"--root={staged.root}", *UNITS], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr


def test_wheel_holds_only_the_stackcue_namespace(staged):
    names = zipfile.ZipFile(staged.wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"stackcue", "stackcue-0.1.0.dist-info"}
    for shipped in (
        "stackcue/config/default.toml",
        "stackcue/config/stackcue.service",
        "stackcue/config/mosquitto/stackcue.conf",
        "stackcue/service/cli.py",
        "stackcue/errors.py",
    ):
        assert shipped in names
    assert "stackcue/config/install.sh" not in names
    # pyproject lists the packages one by one: a module in a subfolder left out of that list is missing here
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    missing = []
    for package, folder in package_dir.items():
        for p in (REPO / folder).rglob("*.py"):
            inside = p.relative_to(REPO / folder)
            if "__pycache__" not in inside.parts and "/".join([*package.split("."), *inside.parts]) not in names:
                missing.append(str(p.relative_to(REPO)))
    assert not missing, missing


def test_installed_stackcue_runs_outside_the_clone(staged, tmp_path):
    stackcue = str(staged.root / BIN.lstrip("/"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str) -> str:
        r = subprocess.run([stackcue, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, f"stackcue {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    python = staged.root / "opt/stackcue/venv/bin/python"
    where = subprocess.run(
        [python, "-c", "import stackcue; print(stackcue.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "site-packages" in where and str(REPO) not in where
    run("simulate", "-o", "r.csv", "--minutes", "1")
    assert run("analyze", "r.csv").strip()
    # the installed Pi configuration loads (a logbook path outside the staging root is not touched by analyze)
    run("analyze", "r.csv", "--config", str(staged.root / "etc/stackcue/config.toml"))
    run("analyze", "r.csv", "--save", "--logbook", "b.sqlite")
    run("report", "latest", "--logbook", "b.sqlite", "-o", "r.html")
    assert (tmp_path / "b.sqlite").stat().st_size > 0
    assert "<html" in (tmp_path / "r.html").read_text().lower()


def test_uninstall_keeps_config_and_data_unless_purged(staged):
    r = staged.root
    out = make("uninstall", f"DESTDIR={r}").stdout
    assert not (r / "opt/stackcue").exists()
    assert not any((r / "etc/systemd/system" / name).exists() for name in UNITS)
    assert RUNNER_EDIT in (r / "etc/stackcue/config.toml").read_text() and (r / "var/lib/stackcue").is_dir()
    assert "kept /etc/stackcue" in out
    assert "nothing to remove" in make("uninstall", f"DESTDIR={r}").stdout
    make("uninstall", f"DESTDIR={r}", "PURGE=1")
    assert not (r / "etc/stackcue").exists() and not (r / "var/lib/stackcue").exists()
