"""A real PostgreSQL 15 server for the tests (Debian's binaries), never the system one.

Use from a test module or plugin with ``pytest_plugins = ["pg"]`` (tests/hub_fixtures.py does); fixtures:

* ``pg_server`` (session scope): one server per test session (per xdist worker), stopped at the end.
  ``pg_server.create_database() -> url`` makes a fresh database (``CREATE DATABASE hub_<n>``) and returns its
  ``postgresql+psycopg://`` URL; ``pg_server.log()`` is the server's log.

How. ``initdb`` in a folder from ``tempfile.mkdtemp`` (pytest's base temp folder is 0700 root), then ``postgres
-p <free port> -k <socket folder> -c listen_addresses=127.0.0.1``. PostgreSQL refuses to run as root, and the
tests run as root here and in CI: then the folder is chowned to the ``postgres`` account (made by Debian's
``postgresql`` package, which ``make setup`` installs) and every binary runs through ``runuser -u postgres --``,
as mosquitto drops to its own account in tests/broker.py. Not root: the caller's own account runs it.
Authentication is ``trust`` on 127.0.0.1 and the socket folder (a throw-away server nobody else can reach but
local users; its data are test data). Durability settings are PostgreSQL's defaults (fsync on), so figures
measured against it are honest.

Without the binaries the tests that need the server are skipped, saying what to install.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("STACKCUE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres() -> list[str]:
    """The prefix that runs a binary as the ``postgres`` account when we are root; nothing otherwise."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PgServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stackcue-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._n = itertools.count(1)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float = 120) -> None:
        r = subprocess.run(
            [*_as_postgres(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def start(self, timeout: float = 30.0) -> PgServer:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        # the log file is ours (root), written through our pipe: the server's account needs no access to it
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [
                    *_as_postgres(),
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.sock),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "max_connections=300",
                ],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
            )
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log()}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections on {self.port}:\n{self.log()}") from None
                time.sleep(0.05)

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def url(self, db: str) -> str:
        """The SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"hub_{next(self._n)}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """A fast shutdown (pg_ctl stop -m fast), SIGKILL when it does not end; the folder removed."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast", "-w", timeout=30)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(request):
    missing = [b for b in ("initdb", "postgres", "pg_ctl") if not (PG_BIN / b).exists()]
    if missing:
        pytest.skip(
            f"PostgreSQL 15 binaries {', '.join(missing)} not in {PG_BIN}: install Debian's postgresql "
            "(`make setup`), or set STACKCUE_PG_BIN"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root needs the postgres account (Debian's postgresql package makes it)")
    server = PgServer()
    try:
        server.start()
    except BaseException:
        sys.stderr.write(f"---- postgres log (port {server.port}) ----\n{server.log()}\n")
        server.stop()
        raise
    yield server
    if request.session.testsfailed:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"---- postgres log {server.log_path} (port {server.port}) ----\n{server.log()[-5000:]}\n")
    server.stop()
