"""Sync from a runner's Pi to the coach's hub (issue 15, docs/sync.md), end to end with real parts.

The hub: the sync API (service/hub/api.py) over a real ``HubStore`` on SQLite and on PostgreSQL (the
``hub_store`` fixture), served by uvicorn on a free port in a thread. The Pi: a real logbook holding a simulated
run stored by ``store_recording``, its ``[sync]`` configuration in a TOML file, and ``stackcue sync`` /
``stackcue runner delete`` / ``stackcue run`` as the runner would type them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from stackcue.service.cli import main
from stackcue.service.config import load_config
from stackcue.service.hub import api, parts
from stackcue.service.hub.store import HubStore
from stackcue.service.logbook import MIGRATIONS, Logbook
from stackcue.service.logbook.schema import SCHEMA_VERSION
from stackcue.service.session_store import store_recording
from stackcue.service.sync import run as sync_run
from stackcue.service.sync import state
from stackcue.service.sync.targets import session_config

pytest_plugins = ["broker", "hub_fixtures"]

HUB = "coach-hub"
RUNNER = "ana"
EXE = str(Path(sys.executable).parent / "stackcue")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    """The sync API over ``store`` under uvicorn in a thread; ``seen`` lists every request's method and path."""

    def __init__(
        self, store: HubStore, name: str = HUB, ssl: tuple[Path, Path] | None = None, web: Path | None = None
    ) -> None:
        self.store, self.seen = store, []
        inner = api.app(store, name) if web is None else self._web_app(store, name, web)

        async def app(scope, receive, send):  # counts what reaches the hub at all
            if scope["type"] == "http":
                self.seen.append((scope["method"], scope["path"]))
            await inner(scope, receive, send)

        self.port = free_port()
        kw = {"ssl_certfile": str(ssl[0]), "ssl_keyfile": str(ssl[1])} if ssl else {}
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **kw)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.url = f"{'https' if ssl else 'http'}://{'localhost' if ssl else '127.0.0.1'}:{self.port}"

    @staticmethod
    def _web_app(store: HubStore, name: str, tmp: Path):
        """The coach's whole web app (service/hub/app.py: login, guard, pages) with the API mounted in it."""
        from stackcue.service.hub.app import HubOptions, create_hub_app

        cfg = tmp / "hub.toml"
        cfg.write_text(f'[hub]\nname = "{name}"\n')
        options = HubOptions(name=name, database="", https=False, session_hours=1.0, cookie_key_file=tmp / "key")
        return create_hub_app(load_config(cfg), store, options)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, str, Path]:
    """A logbook holding one 2-minute two-sensor run of runner ana (copied by each test), and its recording."""
    from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation

    d = tmp_path_factory.mktemp("pi")
    csv = d / "run.csv"
    write_simulation(simulate(SimParams(minutes=2, rate_hz=50, seed=3, trunk=True)), csv)
    cfg = d / "c.toml"
    cfg.write_text(f'[runner]\nid = "{RUNNER}"\n')
    sid, _ = store_recording(csv, load_config(cfg), out=io.StringIO(), err=io.StringIO(), logbook=str(d / "lb.sqlite"))
    with sqlite3.connect(d / "lb.sqlite") as c:  # the recording names its own runner; this Pi's is ana
        c.execute("UPDATE sessions SET runner = ?", (RUNNER,))
    return d / "lb.sqlite", sid, csv


@pytest.fixture
def hub(hub_store):
    hub_store.add_runner(RUNNER)
    h = Hub(hub_store)
    yield h
    h.stop()


class Pi:
    """A runner's Pi: its logbook (a copy of ``stored``), its token file and configuration."""

    def __init__(self, tmp: Path, stored, url: str, token: str, **sync) -> None:
        self.dir = tmp
        self.book_path = tmp / "logbook.sqlite"
        shutil.copy(stored[0], self.book_path)
        self.sid = stored[1]
        self.token_file = tmp / "token"
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)
        self.config(url=url, **sync)

    def config(self, **sync) -> Path:
        keys = {"enabled": True, "hub_name": HUB, "token_file": str(self.token_file), **sync}
        lines = ["[runner]", f'id = "{RUNNER}"', "[logbook]", f'path = "{self.book_path}"', "[sync]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        self.cfg_path = self.dir / "pi.toml"
        self.cfg_path.write_text("\n".join(lines) + "\n")
        self.cfg = load_config(self.cfg_path)
        return self.cfg_path

    def sync(self, transport=None, retry_s=()) -> sync_run.Outcome:
        with Logbook(self.book_path) as book:
            return sync_run.sync(self.cfg, book, lambda line: None, transport=transport, retry_s=retry_s)

    def cli(self, capsys, *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--config", str(self.cfg_path)])
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def pi(tmp_path, stored, hub):
    return Pi(tmp_path, stored, hub.url, hub.store.issue_token(RUNNER))


class CutAfter(httpx.BaseTransport):
    """A connection that breaks after ``k`` requests (the Pi's Wi-Fi lost mid-sync), for ``n_lost`` requests."""

    def __init__(self, k: int, n_lost: int = 10**9) -> None:
        self.k, self.lost, self.n, self.inner = k, n_lost, 0, httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.n += 1
        if self.k < self.n <= self.k + self.lost:
            raise httpx.ConnectError("network unreachable", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _rows(conn_or_engine, table: str, sid: str) -> list[tuple]:
    cols = ", ".join(parts.TABLE_COLUMNS[table])
    if isinstance(conn_or_engine, sqlite3.Connection):
        q = f"SELECT {cols} FROM {table} WHERE session = ? ORDER BY rowid"
        return conn_or_engine.execute(q, (sid,)).fetchall()
    with conn_or_engine.connect() as c:
        return [
            tuple(r) for r in c.execute(text(f"SELECT {cols} FROM {table} WHERE session = :s ORDER BY id"), {"s": sid})
        ]


def _same_copy(pi: Pi, store: HubStore) -> None:
    """The hub's copy equals the Pi's, by hash: strides, alerts and events rows as stored, and the samples."""
    with Logbook(pi.book_path, readonly=True) as book:
        for table in ("strides", "alerts", "events", "raw_chunks"):
            mine, theirs = _rows(book.conn, table, pi.sid), _rows(store.engine, table, pi.sid)
            assert len(theirs) == len(mine) > 0, table
            assert parts.rows_digest(theirs) == parts.rows_digest(mine), table
        with store.book() as hb:
            assert parts.samples_digest(hb.raw_chunks(pi.sid)) == parts.samples_digest(book.raw_chunks(pi.sid))
            assert hb.strides(pi.sid) == book.strides(pi.sid)
            assert hb.session(pi.sid)["runner"] == RUNNER


# ------------------------------------------------------------------ the issue's "What it must show"
def test_interrupted_midway_and_resumed_gives_one_complete_copy(pi, hub):
    m_parts = None
    with Logbook(pi.book_path, readonly=True) as book:
        m_parts = parts.manifest(book, pi.sid)["parts"]
    assert len(m_parts) >= 6
    # hello, manifest, 3 parts, then the network goes: the hub has staged parts, no session
    out = pi.sync(transport=CutAfter(5))
    assert out.failed == 1 and out.sent == 0 and "away" in out.lines[-1]
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is None
    hub.seen.clear()
    out = pi.sync()
    assert (out.sent, out.failed) == (1, 0), out.lines
    puts = [p for m, p in hub.seen if m == "PUT"]
    assert len(puts) == len(m_parts) - 3  # resumed: only the parts the hub lacked
    assert f"sent ({len(m_parts) - 3} of {len(m_parts)} parts" in out.lines[-2]
    _same_copy(pi, hub.store)


def test_a_blip_mid_sync_is_retried_within_the_sync(pi, hub):
    """Two requests lost after the third part: the same sync tries the session again and resumes it."""
    out = pi.sync(transport=CutAfter(5, n_lost=2), retry_s=(0.05, 0.05, 0.05))
    assert (out.sent, out.failed) == (1, 0), out.lines
    puts = [p for m, p in hub.seen if m == "PUT"]
    assert len(puts) == len(set(puts))  # no part sent twice
    _same_copy(pi, hub.store)


def test_sync_through_the_coachs_web_app(hub_store, tmp_path, stored, capsys):
    """The API as the hub serves it (mounted in service/hub/app.py, behind its login guard): bearer tokens get
    through without a cookie, a session goes and is deleted, and the pages still want a login."""
    hub_store.add_runner(RUNNER)
    hub = Hub(hub_store, web=tmp_path)
    try:
        (tmp_path / "pi").mkdir()
        pi = Pi(tmp_path / "pi", stored, hub.url, hub_store.issue_token(RUNNER))
        code, out, err = pi.cli(capsys, "sync")
        assert code == 0 and "1 sent" in out, err
        _same_copy(pi, hub_store)
        code, out, err = pi.cli(capsys, "runner", "delete", RUNNER, "--yes")
        assert code == 0 and "1 session deleted on hub" in out, err
        with httpx.Client(trust_env=False) as c:
            assert c.get(f"{hub.url}/api/v1/hello").status_code == 401
            assert c.get(f"{hub.url}/", follow_redirects=False).status_code in (302, 303, 307, 401)
    finally:
        hub.stop()


def test_sent_twice_is_stored_once(pi, hub, capsys, tmp_path, stored):
    code, out, err = pi.cli(capsys, "sync")
    assert code == 0, err
    assert f"{pi.sid}: sent" in out and "1 sent, 0 already there, 0 failed" in out
    code, out, _ = pi.cli(capsys, "sync")  # acknowledged: nothing to send, no part asked for
    assert code == 0 and "0 sent, 0 already there" in out
    with sqlite3.connect(pi.book_path) as c:  # the Pi forgot the acknowledgement: the hub says it has it
        c.execute("DELETE FROM sync_acked")
    hub.seen.clear()
    code, out, _ = pi.cli(capsys, "sync")
    assert code == 0 and f"{pi.sid}: already on the hub" in out
    assert not [p for m, p in hub.seen if m == "PUT"]
    _same_copy(pi, hub.store)  # one copy: as many rows as the Pi has, not twice
    # the runner edits the notes: only that part goes again, and the hub's copy follows
    with Logbook(pi.book_path) as b:
        b.set_notes(pi.sid, "legs heavy after 10 km")
    hub.seen.clear()
    code, out, _ = pi.cli(capsys, "sync")
    assert code == 0 and "sent (1 of" in out
    assert [p for m, p in hub.seen if m == "PUT"] == [f"/api/v1/sessions/{pi.sid}/parts/notes"]
    with hub.store.book() as hb:
        assert hb.session(pi.sid)["notes"] == "legs heavy after 10 km"
    _same_copy(pi, hub.store)


def test_a_runner_cannot_write_read_or_delete_another_runners_sessions(pi, hub, stored):
    assert pi.sync().sent == 1  # ana's session on the hub
    hub.store.add_runner("bob")
    bob = {"Authorization": f"Bearer {hub.store.issue_token('bob')}"}
    with Logbook(pi.book_path, readonly=True) as book:
        m = parts.manifest(book, pi.sid)
        body = dict(parts.session_parts(book, pi.sid))["notes"]
    base = f"{hub.url}/api/v1/sessions/{pi.sid}"
    with httpx.Client(headers=bob, trust_env=False) as c:
        bob_m = {**m, "runner": "bob"}
        for r in (
            c.post(f"{base}/manifest", json=bob_m),  # read which parts the hub holds
            c.post(f"{base}/complete", json=bob_m),
            c.put(f"{base}/parts/notes", content=body, headers={"X-Part-Sha256": parts.sha256_hex(body)}),
            c.delete(base),
        ):
            assert r.status_code == 403, (r.request.method, r.text)
            assert "another runner" in r.json()["error"] and "\n" not in r.json()["error"]
        r = c.post(f"{base}/manifest", json=m)  # ana's own manifest with bob's token
        assert r.status_code in (403, 422) and "runner" in r.json()["error"]
        assert c.delete(f"{hub.url}/api/v1/sessions").json() == {"deleted": 0}  # bob's own: none
    _same_copy(pi, hub.store)  # ana's copy untouched


def test_a_wrong_token_is_refused_401_and_in_one_line(pi, hub, capsys):
    with httpx.Client(trust_env=False) as c:
        for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": "Basic YW5hOnB3"}):
            r = c.get(f"{hub.url}/api/v1/hello", headers=headers)
            assert r.status_code == 401 and "token" in r.json()["error"]
    pi.token_file.write_text("A" * 43 + "\n")
    code, out, err = pi.cli(capsys, "sync")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "refused this Pi's token" in err and "Traceback" not in err
    assert [m for m, _ in hub.seen] == ["GET"] * 4  # three probes and the Pi's hello: nothing else


@pytest.mark.parametrize(
    "keys, why",
    [
        ({"enabled": False}, "sync is off"),
        ({"hub_name": ""}, "hub_name is empty"),
        ({"url": ""}, "url is empty"),
    ],
)
def test_without_consent_nothing_is_sent(pi, hub, capsys, keys, why):
    pi.config(**{"url": hub.url, **keys})
    code, out, err = pi.cli(capsys, "sync")
    assert code == 2 and why in err and "nothing sent" in err and err.count("\n") == 1
    code, out, err = pi.cli(capsys, "runner", "delete", RUNNER, "--yes")  # deleting sends nothing either
    assert code == 0
    assert hub.seen == []  # the hub saw no request at all, not even a hello


def test_a_hub_of_another_name_is_refused(pi, hub, capsys):
    pi.config(url=hub.url, hub_name="club-hub")
    code, out, err = pi.cli(capsys, "sync")
    assert code == 2 and "named 'coach-hub', not 'club-hub'" in err and "nothing sent" in err
    assert hub.seen == [("GET", "/api/v1/hello")]


def test_runner_delete_reaches_the_hub_and_waits_while_it_is_away(pi, hub, capsys, tmp_path, stored):
    assert pi.sync().sent == 1
    code, out, err = pi.cli(capsys, "runner", "delete", RUNNER)  # without --yes: says what would go
    assert code == 0 and "and on hub 'coach-hub'" in out
    code, out, err = pi.cli(capsys, "runner", "delete", RUNNER, "--yes")
    assert code == 0, err
    assert f"runner {RUNNER}: 1 session deleted on hub 'coach-hub'" in out
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is None
    # a second Pi, the hub away when the runner deletes: queued, then sent at the next sync
    (tmp_path / "pi2").mkdir()
    pi2 = Pi(tmp_path / "pi2", stored, hub.url, hub.store.issue_token(RUNNER))
    assert pi2.sync().sent == 1
    pi2.config(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    code, out, err = pi2.cli(capsys, "runner", "delete", RUNNER, "--yes")
    assert code == 0 and "queued until the next sync" in out and "away" in out
    with Logbook(pi2.book_path, readonly=True) as b:
        assert b.sessions() == [] and state.pending_deletions(b.conn, HUB) != []
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is not None
    pi2.config(url=hub.url)
    code, out, err = pi2.cli(capsys, "sync")
    assert code == 0 and f"runner {RUNNER}: 1 session deleted on hub 'coach-hub'" in out
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is None
    with Logbook(pi2.book_path, readonly=True) as b:
        assert state.pending_deletions(b.conn, HUB) == []


def test_sessions_delete_of_one_session_reaches_the_hub(pi, hub, capsys):
    assert pi.sync().sent == 1
    code, out, _ = pi.cli(capsys, "sessions", "--delete", pi.sid)  # without --yes: says what would go
    assert code == 0 and "and on hub 'coach-hub'" in out
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is not None
    code, out, err = pi.cli(capsys, "sessions", "--delete", pi.sid, "--yes")
    assert code == 0, err
    assert f"deleted session {pi.sid}" in out and f"{pi.sid}: deleted on hub 'coach-hub'" in out
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is None
    with Logbook(pi.book_path, readonly=True) as b:
        assert b.sessions() == [] and state.pending_deletions(b.conn, HUB) == []


def test_coach_notes_and_targets_arrive_and_the_next_session_uses_them(pi, hub, capsys):
    assert pi.sync().sent == 1
    cfg0, stored0 = session_config(pi.cfg)
    assert cfg0 is pi.cfg and "targets" not in stored0  # no targets yet
    v = hub.store.set_targets(
        RUNNER, {"alerts": {"anterior_tilt_deg": 6.5}, "reference": {"mode": "first_minutes"}}, by="coach1"
    )
    hub.store.add_user("coach1", "coach", "a long password")
    hub.store.add_coach_note(pi.sid, "coach1", "Good cadence.\nWatch the last 10 minutes.")
    code, out, err = pi.cli(capsys, "sync")
    assert code == 0, err
    assert f"targets version {v} by coach1 from hub 'coach-hub': used from the next session on" in out
    assert f"coach's note on {pi.sid} (coach1): Good cadence. Watch the last 10 minutes." in out
    code, out, _ = pi.cli(capsys, "sync")  # told once
    assert "coach's note" not in out and "targets version" not in out
    hub_json = state.hub_file(pi.book_path)
    assert oct(hub_json.stat().st_mode & 0o777) == "0o600"
    kept = json.loads(hub_json.read_text())
    assert kept["targets"]["version"] == v and [n["text"] for n in kept["notes"]] == [
        "Good cadence.\nWatch the last 10 minutes."
    ]
    cfg1, stored1 = session_config(pi.cfg)
    assert cfg1["alerts"]["anterior_tilt_deg"] == 6.5 and cfg1.pipeline.alerts.anterior_tilt_deg == 6.5
    assert cfg1["reference"]["mode"] == "first_minutes"
    assert stored1["targets"] == {"hub": HUB, "version": v, "set_by": "coach1", "set_at": kept["targets"]["set_at"]}
    pi.config(url=hub.url, enabled=False)  # consent withdrawn: the coach's targets no longer apply
    assert session_config(pi.cfg)[0]["alerts"]["anterior_tilt_deg"] != 6.5


def test_targets_the_pi_cannot_use_are_refused_in_one_line(pi, hub, capsys):
    with hub.store.engine.begin() as c:  # a hub of another version stored a key this Pi does not know
        c.execute(text("DELETE FROM targets"))
    hub.store.set_targets(RUNNER, {"alerts": {"anterior_tilt_deg": 7.0}}, by="coach1")
    real = hub.store.targets

    def future(runner):
        t = real(runner)
        t["overlay"] = {"alerts": {"anterior_tilt_deg": 7.0, "new_key_deg": 3.0}}
        return t

    hub.store.targets = future
    code, out, err = pi.cli(capsys, "sync")
    assert code == 1
    assert "refused: targets: alerts.new_key_deg is not a target" in out and "the previous ones stay" in out
    assert session_config(pi.cfg)[0] is pi.cfg


def test_auto_sync_runs_in_the_background_and_only_with_consent(pi, hub):
    from stackcue.service.sync.auto import AutoSync

    pi.config(url=hub.url, enabled=False)
    assert not AutoSync.wanted(pi.cfg)
    pi.config(url=hub.url, auto=False)
    assert not AutoSync.wanted(pi.cfg)
    pi.config(url=hub.url)
    assert AutoSync.wanted(pi.cfg)
    auto = AutoSync(pi.cfg)
    try:
        auto.request()  # returns at once: the sync runs on its own thread
        assert auto.idle.wait(30) and auto.runs == 1
    finally:
        auto.close()
    _same_copy(pi, hub.store)


@pytest.mark.slow
def test_the_daemon_syncs_when_a_session_ends_with_the_targets_it_used(hub, tmp_path, stored, broker, capsys):
    """`stackcue run` (replay): the session runs with the targets the last sync brought, records their version in
    its stored config, and reaches the hub on its own when it ends."""
    pi = Pi(tmp_path, stored, hub.url, hub.store.issue_token(RUNNER))
    hub.store.add_user("coach1", "coach", "a long password")
    v = hub.store.set_targets(RUNNER, {"alerts": {"anterior_tilt_deg": 6.5}}, by="coach1")
    assert pi.sync().sent == 1  # the targets arrive with this sync: used from the next session on
    lines = pi.cfg_path.read_text().splitlines()
    lines[lines.index("[runner]") : lines.index("[runner]") + 2] = [
        "[runner]",
        f'id = "{RUNNER}"',
        "[source]",
        'kind = "replay"',
        f'path = "{stored[2]}"',
        "speed = 100.0",
        "[mqtt]",
        f'host = "{broker.host}"',
        f"port = {broker.port}",
    ]
    pi.cfg_path.write_text("\n".join(lines) + "\n")
    r = subprocess.run([EXE, "run", "--config", str(pi.cfg_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sync: 1 sent, 0 already there, 0 failed" in r.stderr, r.stderr
    assert "HTTP Request" not in r.stderr  # httpx's line per request is not the runner's business
    with Logbook(pi.book_path, readonly=True) as b:
        new = [s for s in b.sessions() if s["id"] != pi.sid]
    assert len(new) == 1 and new[0]["origin"] == "live"
    assert new[0]["config"]["targets"]["version"] == v and new[0]["config"]["alerts"]["anterior_tilt_deg"] == 6.5
    with hub.store.book() as hb:
        on_hub = hb.session(new[0]["id"])
    assert on_hub is not None and on_hub["config"]["targets"]["version"] == v


# ------------------------------------------------------------------ the ways it fails: one line each
def test_a_session_the_hub_refuses_is_one_line_and_the_others_go(pi, hub, capsys):
    with Logbook(pi.book_path) as b:  # a second session, and the first one with notes PostgreSQL cannot store
        b.conn.execute(
            "INSERT INTO sessions (id, runner, started_epoch, ended_how, origin) "
            "VALUES ('20260101T000000Z-aaaaaa', ?, 1.77e9, 'clean', 'live')",
            (RUNNER,),
        )
        b.set_notes(pi.sid, "bad\x00byte")
    code, out, err = pi.cli(capsys, "sync")
    assert code == 1, err
    assert f"{pi.sid}: not sent: the hub said 422: part notes: the notes hold a NUL character" in out
    assert "20260101T000000Z-aaaaaa: sent" in out and "1 sent, 0 already there, 1 failed" in out
    code, out, err = pi.cli(capsys, "sync", "--session", "20260101")  # acknowledged: nothing to send
    assert code == 0 and "20260101T000000Z-aaaaaa: already on the hub" in out
    with Logbook(pi.book_path) as b:
        b.conn.execute("UPDATE sessions SET runner = 'bob' WHERE id = '20260101T000000Z-aaaaaa'")
    code, out, err = pi.cli(capsys, "sync", "--session", "20260101")
    assert code == 2 and "is runner bob's; this Pi's token is runner ana's" in err and err.count("\n") == 1


def test_hub_away_and_a_hub_that_never_answers(pi, hub, capsys):
    pi.config(url=f"http://127.0.0.1:{free_port()}")
    code, out, err = pi.cli(capsys, "sync")
    assert code == 1 and "is away" in err and err.count("\n") == 1 and "Traceback" not in err
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        pi.config(url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.0)
        t0 = time.monotonic()
        code, out, err = pi.cli(capsys, "sync")
    assert code == 1 and "did not answer in time" in err and time.monotonic() - t0 < 10


def test_tls_with_the_coachs_own_ca(tmp_path, stored, capsys):
    from stackcue.service.web.certs import make_certs

    files = make_certs(tmp_path / "certs", ["localhost"])
    store = HubStore(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    store.add_runner(RUNNER)
    hub = Hub(store, ssl=(files.server_crt, files.server_key))
    try:
        (tmp_path / "pi").mkdir()
        pi = Pi(tmp_path / "pi", stored, hub.url, store.issue_token(RUNNER))
        code, out, err = pi.cli(capsys, "sync")  # the coach's CA not given: refused, in one line
        assert code == 2 and "TLS to the hub" in err and "ca_file" in err and err.count("\n") == 1
        pi.config(url=hub.url, ca_file=str(files.ca_crt))
        code, out, err = pi.cli(capsys, "sync")
        assert code == 0 and "1 sent" in out, err
        with pytest.raises(Exception, match="http:// only to this machine"):
            pi.config(url="http://hub.example:8090")
    finally:
        hub.stop()
        store.close()


def test_api_refuses_what_a_hostile_pi_sends(pi, hub):
    tok = {"Authorization": f"Bearer {hub.store.issue_token(RUNNER)}"}
    with Logbook(pi.book_path, readonly=True) as book:
        m = parts.manifest(book, pi.sid)
        notes = dict(parts.session_parts(book, pi.sid))["notes"]
    base = f"{hub.url}/api/v1/sessions/{pi.sid}"
    with httpx.Client(headers=tok, trust_env=False) as c:
        r = c.put(f"{base}/parts/notes", content=notes, headers={"X-Part-Sha256": "0" * 64})
        assert r.status_code == 422 and "SHA-256" in r.json()["error"]
        bad = b'{"notes":5,"part":"notes"}'
        r = c.put(f"{base}/parts/notes", content=bad, headers={"X-Part-Sha256": parts.sha256_hex(bad)})
        assert r.status_code == 422 and "notes" in r.json()["error"]
        r = c.put(f"{base}/parts/..%2Fx", content=notes, headers={"X-Part-Sha256": parts.sha256_hex(notes)})
        assert r.status_code in (404, 422)
        r = c.post(f"{base}/manifest", content=b"[1, 2")
        assert r.status_code == 422 and "not JSON" in r.json()["error"]
        r = c.post(f"{hub.url}/api/v1/sessions/x%00y/manifest", json=m)
        assert r.status_code == 404
        r = c.delete(f"{hub.url}/api/v1/sessions/20260101T000000Z-abcdef")
        assert r.status_code == 404 and r.json()["error"]
        r = c.get(f"{hub.url}/api/v1/targets", params={"notes_since": "-1"})
        assert r.status_code == 422
    # 413 from the declared length, before the body is read: the hub answers while the Pi has sent nothing
    with socket.create_connection(("127.0.0.1", hub.port)) as s:
        s.sendall(
            f"PUT /api/v1/sessions/{pi.sid}/parts/raw.0 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {tok['Authorization']}\r\n"
            f"X-Part-Sha256: {'0' * 64}\r\nContent-Length: {parts.MAX_PART_BYTES + 1}\r\n\r\n".encode()
        )
        s.settimeout(5)
        head = b""
        while not head.endswith(b"}"):  # the JSON error may come in a second packet
            got = s.recv(4096)
            if not got:
                break
            head += got
        head = head.decode()
    assert head.startswith("HTTP/1.1 413") and "more than" in head

    # 413 while reading a chunked body that passes the limit (no length declared)
    def chunks():
        for _ in range(parts.MAX_PART_BYTES // 65536 + 2):
            yield b" " * 65536

    with httpx.Client(headers=tok, trust_env=False) as c:
        try:
            r = c.put(f"{base}/parts/raw.0", content=chunks(), headers={"X-Part-Sha256": "0" * 64})
            assert r.status_code == 413
        except httpx.TransportError:  # the hub closed the connection after its answer, mid-upload: refused too
            pass
    with hub.store.book() as hb:
        assert hb.session(pi.sid) is None


def test_logbook_v3_is_migrated_to_the_current_version_with_its_sessions(tmp_path):
    path = tmp_path / "v3.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for v in range(3):
        MIGRATIONS[v](conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO sessions (id, runner, ended_how) VALUES ('S', 'ana', 'clean')")
    conn.close()
    os.chmod(path, 0o600)
    with Logbook(path) as b:
        assert b.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
        assert [s["id"] for s in b.sessions()] == ["S"]
        assert state.acked(b.conn, HUB) == {} and state.pending_deletions(b.conn, HUB) == []


def test_sync_cli_refuses_a_token_file_others_can_read(pi, hub, capsys):
    pi.token_file.chmod(0o644)
    code, out, err = pi.cli(capsys, "sync")
    assert code == 2 and "chmod 600" in err and err.count("\n") == 1
    assert hub.seen == []
