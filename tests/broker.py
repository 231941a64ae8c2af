"""A real mosquitto per test (Debian's /usr/sbin/mosquitto), never the system one.

Use from a test module with ``pytest_plugins = ["broker"]``; fixtures:

* ``broker_factory(tls=False, users=None, acl=None, extra=())`` -> a started ``Broker`` on a free port;
  ``kill()`` (SIGKILL), ``restart()`` on the same port, ``stop()``; all stopped at teardown, and the
  broker log is printed when the test failed.
* ``tls_files`` (session scope): a test CA, a server certificate for localhost/127.0.0.1 signed by it,
  and a second, untrusted CA, made with the ``openssl`` CLI.

Files. The config file and the log (mosquitto's stdout, redirected by us) live in ``tmp_path``. Since
mosquitto 2.0, started as root, drops privileges to the ``mosquitto`` user *before* it opens the
persistence database, the password file, the ACL file and even the TLS certificates (checked on Debian 12's
2.0.11: a root-only password file or cafile is refused), and pytest's base temp dir is 0700 root. So those
files go into a separate directory from ``tempfile.mkdtemp`` chowned to ``mosquitto``. chown rather than
``user root`` in the test config: the broker then runs exactly as on the Pi, so the tests catch the file
permission mistakes a deployment would hit, and no network daemon runs as root. Not root: no chown needed,
mosquitto keeps the caller's identity.

Persistence: ``persistence true`` with ``autosave_interval 1`` so that a SIGKILLed broker keeps the
persistent sessions and retained messages saved up to a second before it died (a test must wait ~1.5 s
after subscribing before killing it; a real broker loses the same window).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _broker_uid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def _give_to_broker(path: Path) -> None:
    ids = _broker_uid()
    if ids is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, *ids)


@dataclass(frozen=True)
class TlsFiles:
    ca_crt: Path
    server_crt: Path
    server_key: Path
    rogue_ca_crt: Path  # a CA the broker's certificate does not chain to


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tls_files(d: Path) -> TlsFiles:
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name, cn in (("ca", "stackcue test CA"), ("rogue", "someone else's CA")):
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            cwd=d,
        )
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        cwd=d,
    )
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key", d / "rogue.crt")


class Broker:
    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        extra: tuple[str, ...] = (),
        listeners=None,
    ) -> None:
        """``listeners(broker) -> str``: replaces the generated listener/auth lines (e.g. a rendering of
        config/mosquitto/stackcue.conf); it may use ``broker.data`` and ``broker.port``."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.data = Path(tempfile.mkdtemp(prefix="stackcue-mosq-"))
        self.port = free_port()
        self.tls = tls
        self.conf = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.stdout.log"
        self.proc: subprocess.Popen | None = None
        common = [
            "persistence true",
            f"persistence_location {self.data}/",
            "autosave_interval 1",
            f"log_dest file {self.data}/mosquitto.log",  # flushed line by line (stdout to a file is not)
            "log_dest stdout",
            "log_type all",
            "connection_messages true",
            "set_tcp_nodelay true",
        ]
        lines = [f"listener {self.port} 127.0.0.1", *common]
        if tls is not None:
            for key, src in (("cafile", tls.ca_crt), ("certfile", tls.server_crt), ("keyfile", tls.server_key)):
                dst = self.data / src.name
                shutil.copy(src, dst)
                os.chmod(dst, 0o600)
                lines.append(f"{key} {dst}")
        if users is not None:
            pwfile = self.data / "passwd"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run(
                    ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            os.chmod(pwfile, 0o600)
            lines += [f"password_file {pwfile}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (self.data / "acl").write_text(acl)
            os.chmod(self.data / "acl", 0o600)
            lines.append(f"acl_file {self.data / 'acl'}")
        lines += list(extra)
        if listeners is not None:
            lines = [*common, listeners(self), *extra]
        self.conf.write_text("\n".join(lines) + "\n")
        _give_to_broker(self.data)

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        assert not self.running
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log()}") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no last save of the persistence database."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> Broker:
        self.kill()
        return self.start()

    def log(self) -> str:
        """mosquitto's own log file (line-buffered); its stdout (start-up errors) when there is none yet."""
        for path in (self.data / "mosquitto.log", self.log_path):
            try:
                return path.read_text(errors="replace")
            except OSError:
                continue
        return ""

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.copy(self.data / "mosquitto.log", self.workdir / "mosquitto.file.log")
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def broker_factory(request, tmp_path):
    brokers: list[Broker] = []
    failed_before = request.session.testsfailed

    def make(**kw) -> Broker:
        b = Broker(tmp_path / f"broker{len(brokers)}", **kw)
        brokers.append(b)
        return b.start()

    yield make
    failed = request.session.testsfailed > failed_before
    for b in brokers:
        b.cleanup()
        if failed:
            with contextlib.suppress(Exception):
                sys.stderr.write(f"---- mosquitto log {b.log_path} (port {b.port}) ----\n{b.log()}\n")


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()
