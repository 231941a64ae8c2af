"""The hub's store (service/hub/store.py, book.py, figures.py, service/targets.py) on SQLite and PostgreSQL.

Every test that takes ``hub_store`` runs twice: on a SQLite file and on a fresh database of a real PostgreSQL 15
server (tests/pg.py). Sessions come from a real Pi logbook (``store_recording`` of a simulated run) and travel
as the wire format's parts (service/hub/parts.py), as a sync sends them.
"""

from __future__ import annotations

import io
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service.config import load_config
from stackcue.service.hub import parts as P
from stackcue.service.hub import tables as T
from stackcue.service.hub.store import BadPart, HubError, HubStore, NotYours, alembic_config
from stackcue.service.logbook.book import Logbook
from stackcue.service.report_render import build_report
from stackcue.service.session_store import store_recording
from stackcue.service.targets import TargetsError, validate_targets

pytest_plugins = ["hub_fixtures"]


# ---------------------------------------------------------------------------------------------- a Pi's logbook
@pytest.fixture(scope="module")
def pi_book(tmp_path_factory) -> tuple[Path, list[str]]:
    """A Pi logbook with two sessions of runner "ana": a pelvis-only 4-minute run (two days earlier) and a
    7-minute run with a trunk sensor (several raw parts). Read-only for the tests: copy it to change it."""
    d = tmp_path_factory.mktemp("pi")
    book = d / "logbook.sqlite"
    cfg = load_config()
    sids = []
    for i, (minutes, trunk, seed) in enumerate(((4, False, 5), (7, True, 3))):
        csv = d / f"run{i}.csv"
        write_simulation(simulate(SimParams(minutes=minutes, rate_hz=100, trunk=trunk, seed=seed)), csv)
        text = csv.read_text()
        csv.write_text(text.replace("# runner=sim\n", "# runner=ana\n", 1))  # the recording's runner
        if i == 0:
            old = time.time() - 2 * 86400
            os.utime(csv, (old, old))
        sid, _ = store_recording(csv, cfg, out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(book))
        sids.append(sid)
    return book, sids


def runner_of(book_path: Path) -> str:
    with Logbook(book_path) as b:
        return b.sessions()[0]["runner"]


def sync(store: HubStore, book_path: Path, sid: str, runner: str | None = None, stop_after: int | None = None) -> bool:
    """Send one session as a Pi does: manifest, the missing parts, complete. ``stop_after``: put only that many
    parts, then stop (an interrupted sync)."""
    with Logbook(book_path) as book:
        m = P.manifest(book, sid)
        runner = runner or m["runner"]
        missing = set(store.missing_parts(runner, m))
        sent = 0
        for name, body in P.session_parts(book, sid):
            if name not in missing:
                continue
            if stop_after is not None and sent >= stop_after:
                return False
            store.put_part(runner, sid, name, P.sha256_hex(body), body)
            sent += 1
        return store.complete(runner, sid, m)


def pi_rows(book_path: Path, sid: str) -> dict[str, list[tuple]]:
    """The Pi's stored rows of a session, per table, in rowid order, as the wire carries them."""
    c = sqlite3.connect(book_path)
    try:
        out = {
            "sessions": c.execute(f"SELECT {', '.join(P.SESSION_COLUMNS)}, notes FROM sessions WHERE id = ?", (sid,))
        }
        for table, cols in P.TABLE_COLUMNS.items():
            out[table] = c.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE session = ? ORDER BY rowid", (sid,))
        return {k: [tuple(r) for r in v] for k, v in out.items()}
    finally:
        c.close()


def hub_rows(store: HubStore, sid: str) -> dict[str, list[tuple]]:
    """The hub's rows of a session, per table, in the hub's (part, id) order: the Pi's rowid order."""
    s = T.sessions
    out = {}
    with store.engine.connect() as conn:
        out["sessions"] = conn.execute(
            select(*[s.c[c] for c in P.SESSION_COLUMNS], s.c.notes).where(s.c.id == sid)
        ).all()
        for table, cols in P.TABLE_COLUMNS.items():
            t = T.metadata.tables[table]
            out[table] = conn.execute(
                select(*[t.c[c] for c in cols]).where(t.c.session == sid).order_by(t.c.part, t.c.id)
            ).all()
    return {
        k: [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows] for k, rows in out.items()
    }


def count(store: HubStore, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


# ---------------------------------------------------------------------------------------------- schema
def test_migrations_from_empty_match_the_tables_and_reopen_is_a_no_op(hub_url):
    """An empty database is migrated to head at open; the migrated schema is tables.py's (nothing to
    autogenerate); opening it again changes nothing and keeps the data."""
    store = HubStore(hub_url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == head
        assert compare_metadata(ctx, T.metadata) == []
    store.add_runner("ana", "Ana")
    store.close()
    again = HubStore(hub_url)
    with again.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
    assert again.display_names() == {"ana": "Ana"}
    again.close()


def test_a_database_of_a_newer_stackcue_is_refused_in_one_line(hub_url):
    from sqlalchemy import text

    HubStore(hub_url).close()
    store = HubStore(hub_url, migrate=False)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    store.close()
    with pytest.raises(HubError, match=r"f00d.*newer stackcue") as exc:
        HubStore(hub_url)
    assert "\n" not in str(exc.value)


def test_a_bad_url_is_one_line(tmp_path):
    for url, words in (
        ("mysql://x@y/z", "only sqlite"),
        ("not a url", "not a database URL"),
        ("sqlite://", "needs a file"),
        (f"sqlite:///{tmp_path}/\0/x", "embedded null"),
        ("sqlite:////proc/hub.sqlite", "hub database '/proc/hub.sqlite'"),
    ):
        with pytest.raises(HubError, match=words) as exc:
            HubStore(url)
        assert "\n" not in str(exc.value)


def test_a_postgres_that_is_not_there_is_one_line():
    from pg import free_port

    with pytest.raises(HubError, match="hub database postgresql") as exc:
        HubStore(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/hub")
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------------------- sync
def test_the_same_report_and_rows_on_the_hub(hub_store, pi_book):
    """A session synced as parts: the hub's rows hash equal to the Pi's, table by table, the raw samples
    decode equal, and the report built from the hub (HubBook) is the Pi's report byte for byte."""
    book_path, sids = pi_book
    assert runner_of(book_path) == "ana"
    hub_store.add_runner("ana")
    for sid in sids:
        assert sync(hub_store, book_path, sid) is True
    hub = hub_store.book()
    with Logbook(book_path, readonly=True) as pi:
        for sid in sids:
            mine, theirs = pi_rows(book_path, sid), hub_rows(hub_store, sid)
            for table in mine:
                assert len(mine[table]) == len(theirs[table]), table
                assert P.rows_digest(mine[table]) == P.rows_digest(theirs[table]), table
            assert P.samples_digest(hub.raw_chunks(sid)) == P.samples_digest(pi.raw_chunks(sid))
            assert hub.has_raw(sid) and hub.has_trunk(sid) == pi.has_trunk(sid)
            assert hub.session(sid) == pi.session(sid)
            assert hub.strides(sid) == pi.strides(sid)
            assert hub.alerts(sid) == pi.alerts(sid)
            assert hub.events(sid) == pi.events(sid)
            assert hub.events(sid, types=("summary",)) == pi.events(sid, types=("summary",))
            assert build_report(hub, sid) == build_report(pi, sid)
        assert hub.sessions() == pi.sessions()
        assert hub.sessions(runner="ana") == pi.sessions(runner="ana") == pi.sessions()
        since = pi.sessions()[1]["started_epoch"]
        assert hub.sessions(since_epoch=since) == pi.sessions(since_epoch=since) == pi.sessions()[1:]
        assert hub.session("latest") == pi.session("latest")
        assert hub.session(sids[1][:12]) == pi.session(sids[1][:12])
        assert build_report(hub, "latest", compare=["runner"]) == build_report(pi, "latest", compare=["runner"])
        hs, ps = hub.stats(), pi.stats()
        assert hs.keys() == ps.keys()
        for sid in hs:
            for k, v in ps[sid].items():
                assert hs[sid][k] == (None if v is None else pytest.approx(v, rel=1e-12)), (sid, k)
        blocks = list(hub.raw_blocks(sids[1]))
        assert sum(len(b.t) for b in blocks) == sum(len(b.t) for b in pi.raw_blocks(sids[1]))
    with hub:
        assert hub.session("nope") is None


def test_an_ambiguous_prefix_is_a_logbook_error_on_the_hub(hub_store, pi_book):
    from stackcue.errors import LogbookError

    book_path, sids = pi_book
    hub_store.add_runner("ana")
    for sid in sids:
        sync(hub_store, book_path, sid)
    common = sids[0][: next(i for i, (a, b) in enumerate(zip(*sids, strict=False)) if a != b)]
    assert common, "session ids begin with their date: two of them share a prefix"
    with pytest.raises(LogbookError, match="ambiguous"):
        hub_store.book().session(common)


def test_sent_twice_stored_once_and_interrupted_then_resumed(hub_store, pi_book, monkeypatch):
    """An interrupted sync stores nothing visible; the resumed one sends only the missing parts; sending the
    whole session again stores nothing twice."""
    # an analysed recording keeps its samples in one chunk: cut on the wire into small ones, 4 to a part
    monkeypatch.setattr(P, "MAX_CHUNK_BYTES", 64 * 1024)
    monkeypatch.setattr(P, "RAW_PER_PART", 4)
    book_path, sids = pi_book
    sid = sids[1]
    hub_store.add_runner("ana")
    with Logbook(book_path) as book:
        m = P.manifest(book, sid)
    assert len(m["parts"]) >= 7, "the test wants several raw parts"
    assert sync(hub_store, book_path, sid, stop_after=3) is False
    assert hub_store.complete("ana", sid, m) is False
    assert hub_store.book().session(sid) is None and hub_store.session_runner(sid) is None
    missing = hub_store.missing_parts("ana", m)
    assert len(missing) == len(m["parts"]) - 3
    assert sync(hub_store, book_path, sid) is True
    counts = {t.name: count(hub_store, t) for t in (T.strides, T.alerts, T.events, T.raw_chunks, T.sessions)}
    assert counts["sessions"] == 1 and counts["strides"] > 100 and counts["raw_chunks"] > 8
    # again, whole: every part put again, complete again
    with Logbook(book_path) as book:
        for name, body in P.session_parts(book, sid):
            hub_store.put_part("ana", sid, name, P.sha256_hex(body), body)
    assert hub_store.missing_parts("ana", m) == []
    assert hub_store.complete("ana", sid, m) is True
    assert hub_store.complete("ana", sid, m) is True
    assert {t.name: count(hub_store, t) for t in (T.strides, T.alerts, T.events, T.raw_chunks, T.sessions)} == counts
    for table in ("sessions", "strides", "alerts", "events"):
        assert P.rows_digest(hub_rows(hub_store, sid)[table]) == P.rows_digest(pi_rows(book_path, sid)[table])
    with Logbook(book_path, readonly=True) as pi:
        assert P.samples_digest(hub_store.book().raw_chunks(sid)) == P.samples_digest(pi.raw_chunks(sid))
        assert build_report(hub_store.book(), sid) == build_report(pi, sid)
    with hub_store.engine.connect() as conn:  # applied parts keep their hash, not their body
        assert conn.execute(select(func.count()).where(T.parts.c.body.is_not(None))).scalar() == 0


def test_edited_notes_replace_only_the_notes(hub_store, pi_book, tmp_path):
    """The runner edits a session's notes after it was synced: the new manifest differs in its notes part
    only; the hub asks for that part alone and replaces the notes."""
    src, sids = pi_book
    book_path = tmp_path / "logbook.sqlite"
    with sqlite3.connect(src) as a, sqlite3.connect(book_path) as b:
        a.backup(b)
    sid = sids[0]
    hub_store.add_runner("ana")
    assert sync(hub_store, book_path, sid)
    with Logbook(book_path) as book:
        book.set_notes(sid, "easy run, windy")
        m = P.manifest(book, sid)
    assert hub_store.missing_parts("ana", m) == ["notes"]
    n_strides = count(hub_store, T.strides)
    assert sync(hub_store, book_path, sid)
    assert hub_store.book().session(sid)["notes"] == "easy run, windy"
    assert count(hub_store, T.strides) == n_strides
    with Logbook(book_path) as pi:
        assert build_report(hub_store.book(), sid) == build_report(pi, sid)


def test_a_wrong_hash_or_a_bad_body_is_refused(hub_store, pi_book):
    book_path, sids = pi_book
    sid = sids[0]
    hub_store.add_runner("ana")
    with Logbook(book_path) as book:
        parts = dict(P.session_parts(book, sid))
        m = P.manifest(book, sid)
    body = parts["strides"]
    with pytest.raises(BadPart, match="SHA-256"):
        hub_store.put_part("ana", sid, "strides", P.sha256_hex(body[:-1] + b" "), body)
    spaced = body.replace(b",", b", ", 1)  # its own hash, but not the canonical form
    with pytest.raises(BadPart, match="canonical"):
        hub_store.put_part("ana", sid, "strides", P.sha256_hex(spaced), spaced)
    for bad in (b"[1,2]", b'{"part":"strides"}', b"\xff"):
        with pytest.raises(BadPart) as exc:
            hub_store.put_part("ana", sid, "strides", P.sha256_hex(bad), bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(BadPart, match="not a part name"):
        hub_store.put_part("ana", sid, "../etc", P.sha256_hex(body), body)
    with pytest.raises(HubError, match="manifest"):
        hub_store.missing_parts("ana", {"session": sid, "runner": "ana", "parts": {"strides": "0" * 64}})
    assert count(hub_store, T.parts) == 0
    assert set(hub_store.missing_parts("ana", m)) == set(m["parts"])


def test_runner_b_cannot_write_complete_or_delete_runner_a_s_session(hub_store, pi_book):
    book_path, sids = pi_book
    sid = sids[0]
    hub_store.add_runner("ana")
    hub_store.add_runner("bob")
    assert sync(hub_store, book_path, sid)
    with Logbook(book_path) as book:
        m = P.manifest(book, sid)
        parts = dict(P.session_parts(book, sid))
    as_bob = {**m, "runner": "bob"}
    with pytest.raises(NotYours):
        hub_store.missing_parts("bob", as_bob)
    with pytest.raises(NotYours):
        hub_store.missing_parts("bob", m)  # ana's manifest with bob's credential
    with pytest.raises(NotYours):
        hub_store.put_part("bob", sid, "notes", m["parts"]["notes"], parts["notes"])
    with pytest.raises(NotYours):
        hub_store.complete("bob", sid, as_bob)
    with pytest.raises(NotYours):
        hub_store.delete_session("bob", sid)
    assert hub_store.session_runner(sid) == "ana"
    # a new session claimed first by bob whose session row says ana: refused at complete
    other = sids[1]
    with Logbook(book_path) as book:
        m2 = {**P.manifest(book, other), "runner": "bob"}
        for name, body in P.session_parts(book, other):
            hub_store.put_part("bob", other, name, P.sha256_hex(body), body)
    with pytest.raises(NotYours, match="ana"):
        hub_store.complete("bob", other, m2)
    assert hub_store.book().session(other) is None


def test_delete_session_and_runner(hub_store, pi_book):
    book_path, sids = pi_book
    hub_store.add_user("coach", "coach", "coach-password")
    hub_store.add_runner("ana")
    for sid in sids:
        sync(hub_store, book_path, sid)
    note = hub_store.add_coach_note(sids[0], "coach", "nice and tall")
    assert note > 0
    assert hub_store.delete_session("ana", sids[0]) is True
    assert hub_store.delete_session("ana", sids[0]) is False
    assert hub_store.book().session(sids[0]) is None
    assert hub_store.coach_notes("ana") == []
    assert hub_store.book().session(sids[1]) is not None
    hub_store.set_targets("ana", {"alerts": {"quiet_s": 20}}, by="coach")
    assert hub_store.delete_runner("ana") == 1
    assert hub_store.delete_runner("ana") == 0
    for t in (T.sessions, T.strides, T.alerts, T.events, T.raw_chunks, T.parts, T.uploads, T.headlines):
        assert count(hub_store, t) == 0, t.name
    assert hub_store.targets("ana")["version"] == 1  # the runner stays, with the coach's targets


# ---------------------------------------------------------------------------------------------- people
def test_roles_and_what_each_may_see(hub_store):
    hub_store.add_user("carla", "coach", "coach-password")
    hub_store.add_user("dan", "coach", "coach-password")
    hub_store.add_user("ana", "runner", "runner-password", runner_id="ana")
    hub_store.add_user("bob", "runner", "runner-password", runner_id="bob")
    hub_store.add_runner("cy", "Cy")
    hub_store.add_squad("tuesday", "carla")
    hub_store.add_squad("tuesday", "carla")  # idempotent
    for r in ("ana", "cy"):
        hub_store.add_to_squad("tuesday", r)
    hub_store.add_to_squad("tuesday", "ana")
    hub_store.add_squad("juniors", "dan")
    hub_store.add_to_squad("juniors", "bob")
    assert hub_store.runners_of("carla") == ["ana", "cy"]
    assert hub_store.runners_of("dan") == ["bob"]
    assert hub_store.may_see("carla", "ana") and hub_store.may_see("carla", "cy")
    assert not hub_store.may_see("carla", "bob")
    assert hub_store.may_see("ana", "ana") and not hub_store.may_see("ana", "cy")
    assert not hub_store.may_see("nobody", "ana")
    with pytest.raises(HubError, match="exists"):
        hub_store.add_user("ana", "runner", "another-password", runner_id="ana")
    with pytest.raises(HubError, match="another coach"):
        hub_store.add_squad("tuesday", "dan")
    with pytest.raises(HubError, match="not a coach"):
        hub_store.add_squad("x", "ana")
    with pytest.raises(HubError, match="no runner"):
        hub_store.add_to_squad("tuesday", "zed")
    with pytest.raises(HubError, match="role"):
        hub_store.add_user("eve", "admin", "long-password")
    with pytest.raises(HubError, match="at least 8"):
        hub_store.add_user("eve", "coach", "short")


def test_passwords_are_argon2_and_a_wrong_one_is_refused(hub_store):
    hub_store.add_user("ana", "runner", "runner-password", runner_id="ana")
    with hub_store.engine.connect() as conn:
        stored = conn.execute(select(T.users.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$") and "runner-password" not in stored
    who = hub_store.check_login("ana", "runner-password")
    assert {k: who[k] for k in ("username", "role", "runner_id")} == {
        "username": "ana",
        "role": "runner",
        "runner_id": "ana",
    }
    assert who["stamp"] == hub_store.login_stamp("ana")
    assert hub_store.check_login("ana", "wrong-password") is None
    assert hub_store.check_login("nobody", "runner-password") is None
    hub_store.set_password("ana", "a-new-password")
    assert hub_store.check_login("ana", "runner-password") is None
    assert hub_store.check_login("ana", "a-new-password")["role"] == "runner"
    with pytest.raises(HubError, match="no user"):
        hub_store.set_password("nobody", "a-new-password")
    assert hub_store.login_stamp("ana") != who["stamp"]  # a new password: the logins made with the old one end


def test_a_removed_user_has_no_login_and_a_coach_with_squads_is_kept(hub_store):
    hub_store.add_user("coach1", "coach", "coach-password")
    hub_store.add_user("ana", "runner", "runner-password", runner_id="ana")
    hub_store.add_squad("track", "coach1")
    hub_store.add_to_squad("track", "ana")
    assert hub_store.login_stamp("ana") is not None
    hub_store.remove_user("ana")
    assert hub_store.login_stamp("ana") is None and hub_store.check_login("ana", "runner-password") is None
    assert hub_store.runners_of("coach1") == ["ana"]  # the runner's data stays: only the login went
    with pytest.raises(HubError, match="still coaches 'track'"):
        hub_store.remove_user("coach1")
    assert hub_store.check_login("coach1", "coach-password") is not None
    with pytest.raises(HubError, match="no user 'ana'"):
        hub_store.remove_user("ana")


def test_tokens_are_shown_once_stored_hashed_and_replaced(hub_store):
    hub_store.add_runner("ana")
    hub_store.add_runner("bob")
    t1 = hub_store.issue_token("ana")
    tb = hub_store.issue_token("bob")
    assert len(t1) >= 43 and t1 != tb
    with hub_store.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(select(T.tokens.c.sha256))]
    assert t1 not in stored and len(stored[0]) == 64
    assert hub_store.runner_for_token(t1) == "ana" and hub_store.runner_for_token(tb) == "bob"
    t2 = hub_store.issue_token("ana")
    assert hub_store.runner_for_token(t1) is None and hub_store.runner_for_token(t2) == "ana"
    for bad in ("", "x" * 500, t2[:-1], None):
        assert hub_store.runner_for_token(bad) is None
    with pytest.raises(HubError, match="no runner"):
        hub_store.issue_token("zed")


# ---------------------------------------------------------------------------------------------- targets, notes
def test_targets_are_validated_like_the_config_and_versioned(hub_store):
    hub_store.add_user("carla", "coach", "coach-password")
    hub_store.add_runner("ana")
    assert hub_store.targets("ana") == {"version": 0, "overlay": {}, "set_by": None, "set_at": None}
    v1 = hub_store.set_targets("ana", {"alerts": {"anterior_tilt_deg": 5, "quiet_s": 20}}, by="carla")
    v2 = hub_store.set_targets("ana", {"reference": {"mode": "first_minutes"}, "cue": {"voice": "de"}}, by="carla")
    assert (v1, v2) == (1, 2)
    t = hub_store.targets("ana")
    assert t["version"] == 2 and t["set_by"] == "carla" and t["set_at"] > 0
    assert t["overlay"] == {"reference": {"mode": "first_minutes"}, "cue": {"voice": "de"}}
    for overlay, words in (
        ({"alerts": {"anterior_tilt_deg": "x"}}, "alerts.anterior_tilt_deg must be a number"),
        ({"alerts": {"anterior_tilt_deg": 1000}}, "alerts.anterior_tilt_deg = 1000.0 is out of range"),
        ({"alerts": {"confirm_strides": 2}}, "alerts.confirm_strides is not a target"),
        ({"mqtt": {"host": "x"}}, r"\[mqtt\] is not a targets section"),
        ({"alerts": {"hysteresis_deg": 7}}, "alerts.hysteresis_deg = 7 must be below alerts.anterior_tilt_deg"),
        ({"alerts": {"enabled": ["nope"]}}, "unknown alert kind 'nope'"),
        ({"reference": {"mode": "sideways"}}, "reference.mode = 'sideways' is not one of"),
    ):
        with pytest.raises(HubError, match=words) as exc:
            hub_store.set_targets("ana", overlay, by="carla")
        assert "\n" not in str(exc.value)
    assert hub_store.targets("ana")["version"] == 2
    with pytest.raises(HubError, match="no runner"):
        hub_store.set_targets("zed", {}, by="carla")


def test_validate_targets_normalises_and_refuses_in_one_line():
    assert validate_targets({}) == {}
    assert validate_targets({"alerts": {"anterior_tilt_deg": 5}}) == {"alerts": {"anterior_tilt_deg": 5.0}}
    for bad in ([], {"alerts": 3}, {"cue": {"gpio_pin": 4}}):
        with pytest.raises(TargetsError) as exc:
            validate_targets(bad)
        assert str(exc.value).startswith("targets: ") and "\n" not in str(exc.value)


def test_coach_notes_go_by_runner_and_since(hub_store, pi_book):
    book_path, sids = pi_book
    hub_store.add_runner("ana")
    sync(hub_store, book_path, sids[0])
    a = hub_store.add_coach_note(sids[0], "carla", "hips higher")
    b = hub_store.add_coach_note(sids[0], "carla", "good cadence")
    assert b > a
    notes = hub_store.coach_notes("ana")
    assert [n["text"] for n in notes] == ["hips higher", "good cadence"]
    assert notes[0]["session"] == sids[0] and notes[0]["author"] == "carla"
    assert [n["id"] for n in hub_store.coach_notes("ana", since_id=a)] == [b]
    assert hub_store.coach_notes("bob") == []
    with pytest.raises(HubError, match="no session"):
        hub_store.add_coach_note("nope", "carla", "x")
    with pytest.raises(HubError, match="text"):
        hub_store.add_coach_note(sids[0], "carla", "  ")


# ---------------------------------------------------------------------------------------------- two instances
def test_two_instances_on_one_postgres_see_each_other_s_writes(two_hubs_pg, pi_book):
    a, b = two_hubs_pg
    book_path, sids = pi_book
    a.add_user("carla", "coach", "coach-password")
    b.add_runner("ana")
    a.add_squad("tuesday", "carla")
    b.add_to_squad("tuesday", "ana")
    assert a.runners_of("carla") == b.runners_of("carla") == ["ana"]
    token = b.issue_token("ana")
    assert a.runner_for_token(token) == "ana"
    assert sync(a, book_path, sids[0])
    assert b.book().session(sids[0]) is not None and b.session_runner(sids[0]) == "ana"
    with Logbook(book_path, readonly=True) as pi:
        assert build_report(b.book(), sids[0]) == build_report(pi, sids[0])
    # half sent to one instance, resumed on the other
    assert sync(b, book_path, sids[1], stop_after=2) is False
    assert sync(a, book_path, sids[1]) is True
    assert [s["id"] for s in b.book().sessions()] == sids
    assert b.set_targets("ana", {"alerts": {"quiet_s": 10}}, by="carla") == 1
    assert a.set_targets("ana", {"alerts": {"quiet_s": 20}}, by="carla") == 2
    assert b.targets("ana")["overlay"] == {"alerts": {"quiet_s": 20.0}}
    n = a.add_coach_note(sids[0], "carla", "tall hips")
    assert [x["id"] for x in b.coach_notes("ana")] == [n]
    assert [r["id"] for r in b.runner_sessions("ana")] == sids[::-1]
    assert b.delete_session("ana", sids[0]) and a.book().session(sids[0]) is None


def test_the_same_session_completed_on_two_instances_at_once_is_stored_once(two_hubs_pg, pi_book):
    """Two hub instances (two Pis' retries behind a load balancer) get the same session at the same moment:
    one complete copy, no row twice, and the same targets version is never handed out twice."""
    a, b = two_hubs_pg
    book_path, sids = pi_book
    a.add_runner("ana")
    sid = sids[1]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(store: HubStore) -> None:
        try:
            barrier.wait()
            assert sync(store, book_path, sid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def targets(store: HubStore, quiet: float) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                store.set_targets("ana", {"alerts": {"quiet_s": quiet}}, by="carla")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(a,)),
        threading.Thread(target=run, args=(b,)),
        threading.Thread(target=targets, args=(a, 10.0)),
        threading.Thread(target=targets, args=(b, 20.0)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    mine, theirs = pi_rows(book_path, sid), hub_rows(a, sid)
    for table in mine:
        assert P.rows_digest(mine[table]) == P.rows_digest(theirs[table]), table
    assert count(a, T.sessions) == 1
    with a.engine.connect() as conn:
        versions = sorted(conn.execute(select(T.targets.c.version)).scalars())
    assert versions == list(range(1, 11))


# ---------------------------------------------------------------------------------------------- figures
def test_headline_figures_are_the_report_s(hub_store, pi_book):
    """The squad page's figures of a session are the report's own (computed with its functions over the Pi's
    logbook they agree), the four weeks before the last session are aggregated, weeks are ISO weeks."""
    from stackcue.service.hub.figures import FIGURES, session_headline

    book_path, sids = pi_book
    hub_store.add_user("carla", "coach", "coach-password")
    hub_store.add_runner("ana", "Ana")
    hub_store.add_runner("bob")
    hub_store.add_squad("tuesday", "carla")
    for r in ("ana", "bob"):
        hub_store.add_to_squad("tuesday", r)
    for sid in sids:
        sync(hub_store, book_path, sid)
    rows = hub_store.runner_sessions("ana")
    assert [r["id"] for r in rows] == sids[::-1]
    with Logbook(book_path, readonly=True) as pi:
        for r in rows:
            want = session_headline(pi, r["id"])
            for k in (*FIGURES, "running_s", "alerts"):
                assert r[k] == want[k], k
            assert 0 <= r["pct_stacked"] <= 100
            assert r["alerts_per_h"] == pytest.approx(r["alerts"] / (r["running_s"] / 3600))
            assert r["alerts_per_km"] is None  # no source measures distance yet
            assert -30 < r["median_tilt_deg"] < 30
    assert rows[0]["median_stack_deg"] is not None and rows[1]["median_stack_deg"] is None  # trunk, pelvis only
    overview = hub_store.squad_overview("carla")
    assert [o["runner"] for o in overview] == ["ana", "bob"]
    ana, bob = overview
    assert ana["display_name"] == "Ana" and ana["last"]["id"] == sids[1]
    assert ana["pct_stacked"] == rows[0]["pct_stacked"]
    assert ana["previous"]["sessions"] == 1
    assert ana["previous"]["pct_stacked"] == pytest.approx(rows[1]["pct_stacked"])
    assert ana["previous"]["median_tilt_deg"] == rows[1]["median_tilt_deg"]
    assert bob["last"] is None and bob["pct_stacked"] is None and bob["previous"] is None
    trend = hub_store.runner_trend("ana")
    assert sum(w["sessions"] for w in trend) == 2 and all(w["week"][4:6] == "-W" for w in trend)
    assert hub_store.squad_overview("nobody") == []


def clone_sessions(store: HubStore, book_path: Path, sid: str, n: int) -> list[str]:
    """``n`` copies of a synced session (new ids, one every 1.5 days back), sent as parts without raw samples:
    a runner with a long history, quickly."""
    import json

    with Logbook(book_path) as book:
        parts = {name: body for name, body in P.session_parts(book, sid) if not name.startswith("raw.")}
    session = json.loads(parts["session"])
    out = []
    for i in range(n):
        new = f"{sid[:-6]}{i:06d}"
        row = list(session["row"])
        row[0], row[2] = new, row[2] - i * 1.5 * 86400
        mine = {**parts, "session": P.canonical({**session, "row": row})}
        m = {"session": new, "runner": "ana", "parts": {k: P.sha256_hex(v) for k, v in mine.items()}}
        for name in store.missing_parts("ana", m):
            store.put_part("ana", new, name, m["parts"][name], mine[name])
        assert store.complete("ana", new, m)
        out.append(new)
    return out


def test_a_runner_with_200_sessions_reads_in_under_a_second(hub_store, pi_book):
    """The runner page's data (sessions with figures, weekly trend) and the squad page's for a runner with 200
    sessions: one query each, well under the page's 1 s budget."""
    book_path, sids = pi_book
    hub_store.add_user("carla", "coach", "coach-password")
    hub_store.add_runner("ana")
    hub_store.add_squad("tuesday", "carla")
    hub_store.add_to_squad("tuesday", "ana")
    t0 = time.perf_counter()
    clone_sessions(hub_store, book_path, sids[0], 200)
    stored = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = hub_store.runner_sessions("ana")
    trend = hub_store.runner_trend("ana")
    overview = hub_store.squad_overview("carla")
    took = time.perf_counter() - t0
    print(
        f"\n[{hub_store.dialect}] 200 sessions stored in {stored:.1f} s; runner_sessions + runner_trend + "
        f"squad_overview in {took * 1000:.0f} ms"
    )
    assert len(rows) == 200 and sum(w["sessions"] for w in trend) == 200
    assert overview[0]["previous"]["sessions"] == 18  # 4 weeks / 1.5 days
    assert took < 1.0


def test_damaged_rows_read_alike_on_the_pi_and_the_hub(hub_store, pi_book, tmp_path, caplog):
    """The hub reads rows through the logbook's own checks: a stride whose event is not JSON is set aside and a
    figure out of range read as unknown, on the hub as on the Pi, each with its warning line."""
    src, sids = pi_book
    book_path = tmp_path / "logbook.sqlite"
    with sqlite3.connect(src) as a, sqlite3.connect(book_path) as b:
        a.backup(b)
    sid = sids[0]
    with sqlite3.connect(book_path) as c:
        rowids = [r[0] for r in c.execute("SELECT rowid FROM strides WHERE session = ? ORDER BY rowid", (sid,))]
        c.execute("UPDATE strides SET event = 'not json' WHERE rowid = ?", (rowids[10],))
        c.execute("UPDATE strides SET event = json_set(event, '$.cadence_spm', 9999) WHERE rowid = ?", (rowids[20],))
    hub_store.add_runner("ana")
    assert sync(hub_store, book_path, sid)
    with Logbook(book_path, readonly=True) as pi:
        caplog.clear()
        on_pi = pi.strides(sid)
        pi_warnings = [r.getMessage() for r in caplog.records]
        caplog.clear()
        on_hub = hub_store.book().strides(sid)
        hub_warnings = [r.getMessage() for r in caplog.records]
        assert on_hub == on_pi and len(on_pi) == len(rowids) - 1
        assert sum(1 for s in on_hub if s.get("cadence_spm") is None) >= 1
        assert build_report(hub_store.book(), sid) == build_report(pi, sid)
    assert any("set aside" in w for w in pi_warnings) and any("set aside" in w for w in hub_warnings)
    assert all(w.startswith(f"logbook hub {hub_store.url}") for w in hub_warnings)


def test_figures_missing_after_a_crash_are_computed_at_the_next_read(hub_store, pi_book):
    book_path, sids = pi_book
    hub_store.add_runner("ana")
    sync(hub_store, book_path, sids[0])
    first = hub_store.runner_sessions("ana")
    with hub_store.engine.begin() as conn:
        conn.execute(T.headlines.delete())
    assert hub_store.runner_sessions("ana") == first and count(hub_store, T.headlines) == 1
