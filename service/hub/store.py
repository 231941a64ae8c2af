"""The hub's one data-access layer: accounts, squads, Pi tokens, synced sessions, targets and coach notes.

SQLAlchemy Core on SQLite (one coach: ``sqlite:///<path>``) or PostgreSQL (a club:
``postgresql+psycopg://user@host:port/db``); Alembic migrates the database at open (docs/hub.md, "Storage").

Sync is idempotent by session id: a Pi sends a manifest (part name -> SHA-256), the hub answers the parts it
does not hold, the Pi puts them (staged, checked by hash and by ``parts.decode_part``), and ``complete`` applies
every changed part in ONE transaction. Applied parts keep only their hash, so a session sent twice is stored
once and a resumed or edited one sends only what differs. Every write that decides on what it read (claiming a
session, completing it, the next targets version) runs in a transaction that locks: ``BEGIN IMMEDIATE`` on
SQLite, ``SELECT ... FOR UPDATE`` or a unique key on PostgreSQL, so two hub instances on one database agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from stackcue.errors import StackcueError

from ..config import RUNNER_ID
from ..web.auth import HASHER, MIN_PASSWORD, check_password
from . import parts as P
from . import tables as T

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger("stackcue.hub")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: a part's largest body (the wire format's limit)
MAX_PART_BYTES = P.MAX_PART_BYTES
#: PostgreSQL advisory lock held while migrating ("StkH"): two instances starting at once migrate once
_MIGRATE_LOCK = 0x53746B48
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
ROLES = ("coach", "runner")
MAX_NOTE_CHARS = 10_000
_DUMMY_HASH = HASHER.hash("not a password of anyone")  # check_login spends the same time on an unknown user


def _login_stamp(password_hash: str) -> str:
    """What a login's cookie carries of the password it was made with (HubStore.login_stamp)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


class HubError(StackcueError):
    """The hub refuses a request or cannot use its database; the message is one line."""


class NotYours(HubError):
    """A runner's credential used on another runner's session (the API answers 403)."""


class BadPart(HubError):
    """A part whose hash differs from its name's, that does not decode, or is too big (the API answers 422)."""


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's configuration built in code (no alembic.ini): the migrations folder, and the connection to use."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _now() -> float:
    return time.time()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _decode_part(sid: str, name: str, body: bytes) -> dict:
    """The part's content, checked by the wire format's own decoder (``parts.decode_part``: one checker for
    what arrives, shared with the sync API); its refusal is a ``BadPart``."""
    try:
        return P.decode_part(name, body, sid)
    except P.PartError as exc:
        raise BadPart(str(exc)) from None


_DATA_TABLES = {"strides": T.strides, "alerts": T.alerts, "events": T.events, "raw": T.raw_chunks}


def part_rows(sid: str, name: str, doc: dict) -> tuple[Table, list[dict]]:
    """The hub rows a decoded part makes: (table, rows in the Pi's order, each with ``session`` and ``part``)."""
    base, k = P.part_kind(name)
    if base == "session":
        return T.sessions, [dict(zip(doc["columns"], doc["row"], strict=True))]
    if base == "notes":
        return T.sessions, [{"notes": doc["notes"]}]
    cols = doc["columns"]
    rows = [{**dict(zip(cols, r, strict=True)), "session": sid, "part": k} for r in doc["rows"]]
    return _DATA_TABLES[base], rows


class HubStore:
    """The hub's database (see the module's docstring); one object per process, safe to share between threads
    (each call takes its own pooled connection)."""

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.engine = _engine(url)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.dialect = self.engine.dialect.name
        if migrate:
            try:
                self._migrate()
            except BaseException:
                self.engine.dispose()
                raise

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        """Alembic upgrade to head in one transaction (PostgreSQL: under an advisory lock); a no-op at head.

        Alembic's own INFO lines (plugins, "Context impl", every start) are held back; one line says when a
        migration ran."""
        chatty = logging.getLogger("alembic")
        level = chatty.level
        chatty.setLevel(logging.WARNING)
        try:
            before, after = self._upgrade()
        finally:
            chatty.setLevel(level)
        if before != after:
            log.info("hub database %s: schema migrated from %s to %s", self.url, before or "empty", after)

    def _upgrade(self) -> tuple[str | None, str | None]:
        from alembic import command  # imported here: its plugins' INFO lines are held back too
        from alembic.migration import MigrationContext
        from alembic.util.exc import CommandError

        try:
            with self._write() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
                before = MigrationContext.configure(conn).get_current_revision()
                command.upgrade(alembic_config(conn), "head")
                return before, MigrationContext.configure(conn).get_current_revision()
        except CommandError as exc:
            raise HubError(f"hub database {self.url}: {exc} (made by a newer stackcue?)") from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite (one writer; no lock upgrade that deadlocks)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(hub_write=True)
                with conn.begin():
                    yield conn
        except HubError:
            raise
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise HubError(f"hub database {self.url}: {_one_line(exc)}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except HubError:
            raise
        except SQLAlchemyError as exc:
            raise HubError(f"hub database {self.url}: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ accounts and squads
    def add_runner(self, runner_id: str, display_name: str | None = None) -> None:
        """The runner, made once; a display name given later replaces the old one."""
        _check_runner_id(runner_id)
        for _ in range(3):
            try:
                with self._write() as conn:
                    if conn.execute(select(T.runners.c.id).where(T.runners.c.id == runner_id)).first() is None:
                        conn.execute(
                            insert(T.runners).values(id=runner_id, display_name=display_name, created_epoch=_now())
                        )
                    elif display_name is not None:
                        conn.execute(
                            update(T.runners).where(T.runners.c.id == runner_id).values(display_name=display_name)
                        )
                return
            except IntegrityError:  # another instance made it meanwhile
                continue
        raise HubError(f"runner {runner_id!r} could not be added")

    def add_user(self, username: str, role: str, password: str, runner_id: str | None = None) -> None:
        """A login: a coach, or a runner tied to ``runner_id`` (made when new). A duplicate is a ``HubError``."""
        if not isinstance(username, str) or not _USERNAME.fullmatch(username):
            raise HubError(f"user name {username!r:.70} must be 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise HubError(f"role {role!r:.40} must be coach or runner")
        if (role == "runner") != (runner_id is not None):
            raise HubError("a runner user needs its runner id, and a coach has none")
        _check_password(password)
        if runner_id is not None:
            self.add_runner(runner_id)
        try:
            with self._write() as conn:
                if conn.execute(select(T.users.c.username).where(T.users.c.username == username)).first():
                    raise HubError(f"user {username!r} exists")
                conn.execute(
                    insert(T.users).values(
                        username=username,
                        role=role,
                        password_hash=HASHER.hash(password),
                        runner_id=runner_id,
                        created_epoch=_now(),
                    )
                )
        except IntegrityError:
            raise HubError(f"user {username!r} exists") from None

    def set_password(self, username: str, password: str) -> None:
        _check_password(password)
        with self._write() as conn:
            n = conn.execute(
                update(T.users).where(T.users.c.username == username).values(password_hash=HASHER.hash(password))
            ).rowcount
        if n == 0:
            raise HubError(f"no user {username!r}")

    def remove_user(self, username: str) -> None:
        """A login removed (the runner's data and a coach's notes stay). A coach who still has squads is refused:
        their squads would have nobody to see them."""
        with self._write() as conn:
            squads = sorted(r[0] for r in conn.execute(select(T.squads.c.name).where(T.squads.c.coach == username)))
            if squads:
                raise HubError(
                    f"{username!r} still coaches {', '.join(repr(s) for s in squads)}: give the squads to another "
                    "coach first"
                )
            n = conn.execute(delete(T.users).where(T.users.c.username == username)).rowcount
        if n == 0:
            raise HubError(f"no user {username!r}")

    def login_stamp(self, username: str) -> str | None:
        """What a login's cookie must still carry to be valid: changes with the password, None once the user is
        removed (the cookie is signed, not stored: this is how a new password or a removal ends every login).
        A digest of the password's argon2 hash, whose salt changes at every set_password."""
        with self._read() as conn:
            h = conn.execute(select(T.users.c.password_hash).where(T.users.c.username == username)).scalar()
        return None if h is None else _login_stamp(h)

    def check_login(self, username: str, password: str) -> dict | None:
        """``{"username", "role", "runner_id"}`` when the password is right, else None (same cost either way)."""
        with self._read() as conn:
            r = conn.execute(
                select(T.users.c.password_hash, T.users.c.role, T.users.c.runner_id).where(
                    T.users.c.username == username
                )
            ).first()
        if r is None:
            check_password(_DUMMY_HASH, password if isinstance(password, str) else "")
            return None
        if not isinstance(password, str) or not check_password(r.password_hash, password):
            return None
        return {
            "username": username,
            "role": r.role,
            "runner_id": r.runner_id,
            "stamp": _login_stamp(r.password_hash),
        }

    def add_squad(self, name: str, coach: str) -> None:
        """A coach's squad (idempotent for the same coach; another coach's squad of that name is refused)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise HubError("a squad needs a name of 1-100 characters")
        try:
            with self._write() as conn:
                role = conn.execute(select(T.users.c.role).where(T.users.c.username == coach)).scalar()
                if role != "coach":
                    raise HubError(f"{coach!r} is not a coach")
                owner = conn.execute(select(T.squads.c.coach).where(T.squads.c.name == name)).scalar()
                if owner is None:
                    conn.execute(insert(T.squads).values(name=name, coach=coach))
                elif owner != coach:
                    raise HubError(f"squad {name!r} belongs to another coach")
        except IntegrityError:
            self.add_squad(name, coach)  # made by another instance meanwhile: check whose it is

    def add_to_squad(self, squad: str, runner_id: str) -> None:
        try:
            with self._write() as conn:
                if conn.execute(select(T.squads.c.name).where(T.squads.c.name == squad)).first() is None:
                    raise HubError(f"no squad {squad!r}")
                if conn.execute(select(T.runners.c.id).where(T.runners.c.id == runner_id)).first() is None:
                    raise HubError(f"no runner {runner_id!r} (add it first)")
                m = T.squad_members
                if conn.execute(select(m.c.squad).where(m.c.squad == squad, m.c.runner_id == runner_id)).first():
                    return
                conn.execute(insert(m).values(squad=squad, runner_id=runner_id))
        except IntegrityError:
            return  # added by another instance meanwhile

    def runners_of(self, coach: str) -> list[str]:
        """Every runner in the coach's squads, sorted."""
        m, s = T.squad_members, T.squads
        with self._read() as conn:
            rows = conn.execute(
                select(m.c.runner_id).join(s, s.c.name == m.c.squad).where(s.c.coach == coach).distinct()
            )
            return sorted(r[0] for r in rows)

    def display_names(self) -> dict[str, str | None]:
        with self._read() as conn:
            return dict(conn.execute(select(T.runners.c.id, T.runners.c.display_name)).all())

    def may_see(self, username: str, runner_id: str) -> bool:
        """A runner sees only their own data; a coach only their squads' runners; anyone else nothing."""
        with self._read() as conn:
            r = conn.execute(select(T.users.c.role, T.users.c.runner_id).where(T.users.c.username == username)).first()
        if r is None:
            return False
        if r.role == "runner":
            return r.runner_id == runner_id
        return r.role == "coach" and runner_id in self.runners_of(username)

    # ------------------------------------------------------------------ Pi credentials
    def issue_token(self, runner_id: str) -> str:
        """A new Pi credential for the runner (the old one stops working); only its SHA-256 is stored."""
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()

        def run() -> None:
            with self._write() as conn:
                if conn.execute(select(T.runners.c.id).where(T.runners.c.id == runner_id)).first() is None:
                    raise HubError(f"no runner {runner_id!r} (add it first)")
                conn.execute(delete(T.tokens).where(T.tokens.c.runner_id == runner_id))
                conn.execute(insert(T.tokens).values(runner_id=runner_id, sha256=digest, issued_epoch=_now()))

        self._retry(run)  # another instance issued one for this runner at the same moment: this one wins
        return token

    def runner_for_token(self, token: str) -> str | None:
        if not isinstance(token, str) or not token or len(token) > 200:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        with self._read() as conn:
            return conn.execute(select(T.tokens.c.runner_id).where(T.tokens.c.sha256 == digest)).scalar()

    # ------------------------------------------------------------------ sync
    def _claim(self, conn: Connection, runner_id: str, sid: str, lock: bool = False) -> Any:
        """The session's upload row, made for ``runner_id`` when new; another runner's is ``NotYours``."""
        q = select(T.uploads).where(T.uploads.c.session == sid)
        if lock:
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            if conn.execute(select(T.runners.c.id).where(T.runners.c.id == runner_id)).first() is None:
                raise HubError(f"no runner {runner_id!r} on this hub")
            conn.execute(
                insert(T.uploads).values(session=sid, runner_id=runner_id, complete=False, updated_epoch=_now())
            )
            row = conn.execute(q).first()
        if row.runner_id != runner_id:
            raise NotYours(f"session {sid} belongs to another runner")
        return row

    def _retry(self, fn, *args):
        """``fn`` again when a concurrent instance made the same row first (a unique key said so)."""
        for attempt in range(5):
            try:
                return fn(*args)
            except IntegrityError:
                if attempt == 4:
                    raise HubError("the hub database kept refusing a concurrent write; try again") from None
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError  # pragma: no cover

    def missing_parts(self, runner_id: str, manifest: dict) -> list[str]:
        """The manifest's part names whose hash the hub holds neither staged nor applied for this session."""
        sid, wanted = _check_manifest(runner_id, manifest)

        def run() -> list[str]:
            with self._write() as conn:
                self._claim(conn, runner_id, sid)
                held = set(conn.execute(select(T.parts.c.name, T.parts.c.sha256).where(T.parts.c.session == sid)))
            return [n for n, h in wanted.items() if (n, h) not in held]

        return self._retry(run)

    def put_part(self, runner_id: str, sid: str, name: str, sha256: str, body: bytes) -> None:
        """Stage one part after checking its hash and decoding it (``BadPart``); the same part again is a no-op."""
        _check_session_id(sid)
        try:
            P.part_kind(name)
        except P.PartError as exc:
            raise BadPart(str(exc)) from None
        if not isinstance(sha256, str) or not P.SHA256_HEX.fullmatch(sha256):
            raise BadPart(f"part {name}: {sha256!r:.70} is not a SHA-256 in hex")
        if len(body) > MAX_PART_BYTES:
            raise BadPart(f"part {name} has {len(body)} bytes, more than {MAX_PART_BYTES}")
        body = bytes(body)
        if hashlib.sha256(body).hexdigest() != sha256:
            raise BadPart(f"part {name}: its SHA-256 is not {sha256}")
        _decode_part(sid, name, body)

        def run() -> None:
            with self._write() as conn:
                self._claim(conn, runner_id, sid)
                p = T.parts
                held = conn.execute(
                    select(p.c.name).where(p.c.session == sid, p.c.name == name, p.c.sha256 == sha256)
                ).first()
                if held is None:
                    conn.execute(
                        insert(p).values(
                            session=sid, name=name, sha256=sha256, body=body, applied=False, staged_epoch=_now()
                        )
                    )

        self._retry(run)

    def complete(self, runner_id: str, sid: str, manifest: dict) -> bool:
        """Apply every part the manifest names that differs from what is applied, in one transaction.

        False (nothing changed) while a part is missing; True when stored, also when this manifest was applied
        before. Parts no longer named (fewer raw parts, notes removed) lose their rows."""
        msid, wanted = _check_manifest(runner_id, manifest)
        if msid != sid:
            raise HubError(f"the manifest is of session {msid}, not {sid}")
        done, changed = self._retry(self._complete, runner_id, sid, wanted)
        if changed:
            from .figures import compute

            try:
                compute(self, sid)
            except Exception as exc:  # the session is stored: its figures are computed again at the next read
                log.warning("hub: session %s stored, but its headline figures failed: %s", sid, _one_line(exc))
        return done

    def _complete(self, runner_id: str, sid: str, wanted: dict[str, str]) -> tuple[bool, bool]:
        """(complete, changed now)."""
        p = T.parts
        with self._write() as conn:
            up = self._claim(conn, runner_id, sid, lock=True)
            if up.complete and up.manifest is not None and json.loads(up.manifest) == wanted:
                return True, False
            held = {
                (r.name, r.sha256): r.applied
                for r in conn.execute(select(p.c.name, p.c.sha256, p.c.applied).where(p.c.session == sid))
            }
            if any((n, h) not in held for n, h in wanted.items()):
                return False, False
            applied = {n: h for (n, h), a in held.items() if a}
            order = P.ordered(wanted)
            exists = conn.execute(select(T.sessions.c.id).where(T.sessions.c.id == sid)).first() is not None
            for name in (n for n in applied if n not in wanted):
                self._remove_part_rows(conn, sid, name)
            for name in order:
                if applied.get(name) == wanted[name]:
                    continue
                body = conn.execute(
                    select(p.c.body).where(p.c.session == sid, p.c.name == name, p.c.sha256 == wanted[name])
                ).scalar_one()
                table, rows = part_rows(sid, name, _decode_part(sid, name, body))
                if name == "session":
                    row = {c: rows[0].get(c) for c in T.SESSION_COLUMNS if c != "notes"}
                    if row.get("runner") not in (None, runner_id):
                        raise NotYours(f"session {sid} is runner {row['runner']!r}'s, not {runner_id!r}'s")
                    if exists:
                        conn.execute(update(T.sessions).where(T.sessions.c.id == sid).values(row))
                    else:
                        conn.execute(insert(T.sessions).values(row))
                        exists = True
                elif name == "notes":
                    conn.execute(update(T.sessions).where(T.sessions.c.id == sid).values(notes=rows[0]["notes"]))
                else:
                    self._remove_part_rows(conn, sid, name)
                    if rows:
                        conn.execute(insert(table), rows)
            conn.execute(update(T.sessions).where(T.sessions.c.id == sid).values(received_epoch=_now()))
            for (n, h), _ in held.items():
                if wanted.get(n) != h:
                    conn.execute(delete(p).where(p.c.session == sid, p.c.name == n, p.c.sha256 == h))
            conn.execute(update(p).where(p.c.session == sid).values(applied=True, body=None))
            conn.execute(
                update(T.uploads)
                .where(T.uploads.c.session == sid)
                .values(manifest=_canonical(wanted), complete=True, updated_epoch=_now())
            )
        return True, True

    @staticmethod
    def _remove_part_rows(conn: Connection, sid: str, name: str) -> None:
        """The rows a part brought (notes: the notes; session: nothing, its row is updated in place)."""
        base, k = P.part_kind(name)
        if base == "notes":
            conn.execute(update(T.sessions).where(T.sessions.c.id == sid).values(notes=None))
        elif base in _DATA_TABLES:
            t = _DATA_TABLES[base]
            conn.execute(delete(t).where(t.c.session == sid, t.c.part == k))

    def delete_session(self, runner_id: str, sid: str) -> bool:
        """Everything of the runner's session (rows, parts, coach notes); False when the hub has no such session;
        another runner's is ``NotYours``."""
        with self._write() as conn:
            owner = conn.execute(select(T.uploads.c.runner_id).where(T.uploads.c.session == sid)).scalar()
            if owner is None:
                return False
            if owner != runner_id:
                raise NotYours(f"session {sid} belongs to another runner")
            _delete_session_rows(conn, sid)
        return True

    def delete_runner(self, runner_id: str) -> int:
        """Every session of the runner (complete or half sent) and its coach notes; how many sessions. The
        account, its Pi token and targets stay (the runner keeps syncing)."""
        with self._write() as conn:
            sids = list(conn.execute(select(T.uploads.c.session).where(T.uploads.c.runner_id == runner_id)).scalars())
            for sid in sids:
                _delete_session_rows(conn, sid)
            conn.execute(delete(T.coach_notes).where(T.coach_notes.c.runner_id == runner_id))
        return len(sids)

    # ------------------------------------------------------------------ reading
    def book(self):
        """A Logbook-like read view (``HubBook``) for the report and exports."""
        from .book import HubBook

        return HubBook(self)

    def session_runner(self, sid: str) -> str | None:
        """The runner of a stored (complete) session, else None."""
        with self._read() as conn:
            return conn.execute(
                select(T.uploads.c.runner_id).where(T.uploads.c.session == sid, T.uploads.c.complete.is_(True))
            ).scalar()

    def squad_overview(self, coach: str) -> list[dict]:
        from .figures import squad_overview

        return squad_overview(self, coach)

    def runner_sessions(self, runner_id: str) -> list[dict]:
        from .figures import runner_sessions

        return runner_sessions(self, runner_id)

    def runner_trend(self, runner_id: str) -> list[dict]:
        from .figures import runner_trend

        return runner_trend(self, runner_id)

    # ------------------------------------------------------------------ targets and coach notes
    def targets(self, runner_id: str) -> dict:
        """The runner's targets in force: version 0 and an empty overlay when none was ever set."""
        t = T.targets
        with self._read() as conn:
            r = conn.execute(select(t).where(t.c.runner_id == runner_id).order_by(t.c.version.desc()).limit(1)).first()
        if r is None:
            return {"version": 0, "overlay": {}, "set_by": None, "set_at": None}
        return {"version": r.version, "overlay": json.loads(r.overlay), "set_by": r.set_by, "set_at": r.set_epoch}

    def set_targets(self, runner_id: str, overlay: dict, by: str) -> int:
        """Validate the overlay (``service/targets.py``) and store it as the runner's next version."""
        from ..targets import TargetsError, validate_targets

        try:
            clean = validate_targets(overlay)
        except TargetsError as exc:
            raise HubError(str(exc)) from None
        t = T.targets

        def run() -> int:
            with self._write() as conn:
                if conn.execute(select(T.runners.c.id).where(T.runners.c.id == runner_id)).first() is None:
                    raise HubError(f"no runner {runner_id!r}")
                v = conn.execute(select(func.max(t.c.version)).where(t.c.runner_id == runner_id)).scalar() or 0
                conn.execute(
                    insert(t).values(
                        runner_id=runner_id, version=v + 1, overlay=_canonical(clean), set_by=by, set_epoch=_now()
                    )
                )
            return v + 1

        return self._retry(run)

    def add_coach_note(self, sid: str, author: str, text: str) -> int:
        """A note on a stored session; its id (notes go back to the runner's Pi on the next sync)."""
        if not isinstance(text, str) or not text.strip():
            raise HubError("a note needs some text")
        if len(text) > MAX_NOTE_CHARS or "\x00" in text:
            raise HubError(f"a note may have at most {MAX_NOTE_CHARS} characters (and no NUL)")
        runner = self.session_runner(sid)
        if runner is None:
            raise HubError(f"no session {sid!r} on this hub")
        with self._write() as conn:
            res = conn.execute(
                insert(T.coach_notes).values(session=sid, runner_id=runner, author=author, at_epoch=_now(), text=text)
            )
            return int(res.inserted_primary_key[0])

    def coach_notes(self, runner_id: str, since_id: int = 0) -> list[dict]:
        n = T.coach_notes
        with self._read() as conn:
            rows = conn.execute(
                select(n).where(n.c.runner_id == runner_id, n.c.id > int(since_id)).order_by(n.c.id)
            ).all()
        return [{"id": r.id, "session": r.session, "author": r.author, "at": r.at_epoch, "text": r.text} for r in rows]


# ---------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def _check_runner_id(runner_id: Any) -> None:
    if not isinstance(runner_id, str) or not RUNNER_ID.fullmatch(runner_id):
        raise HubError(f"runner id {runner_id!r:.70} must be 1-64 letters, digits, '_' or '-'")


def _check_password(password: Any) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise HubError(f"the password must have at least {MIN_PASSWORD} characters")


def _check_session_id(sid: Any) -> None:
    if not isinstance(sid, str) or not P.SESSION_ID.fullmatch(sid):
        raise HubError(f"session id {sid!r:.70} is not a session id")


def _check_manifest(runner_id: str, manifest: Any) -> tuple[str, dict[str, str]]:
    """(session id, {part name: sha256}) of a manifest of this runner's, checked by ``parts.check_manifest``;
    another runner's is ``NotYours``, a malformed one a ``HubError``."""
    if isinstance(manifest, dict) and "runner" in manifest and manifest["runner"] != runner_id:
        raise NotYours(f"the manifest is another runner's, and this credential is {runner_id!r}'s")
    try:
        m = P.check_manifest(manifest, runner=runner_id)
    except P.PartError as exc:
        raise HubError(str(exc)) from None
    return m["session"], dict(m["parts"])


def _delete_session_rows(conn: Connection, sid: str) -> None:
    for t in T.SESSION_TABLES:
        conn.execute(delete(t).where(t.c.session == sid))
    conn.execute(delete(T.coach_notes).where(T.coach_notes.c.session == sid))
    conn.execute(delete(T.sessions).where(T.sessions.c.id == sid))
    conn.execute(delete(T.parts).where(T.parts.c.session == sid))
    conn.execute(delete(T.uploads).where(T.uploads.c.session == sid))


def _engine(url: str) -> Engine:
    """The engine for a ``sqlite:///<path>`` or ``postgresql[+psycopg]://...`` URL; anything else refused."""
    try:
        u = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise HubError(
            f"hub database {url!r:.100} is not a database URL (sqlite:///<path> or postgresql+psycopg://...)"
        ) from None
    backend = u.get_backend_name()
    if backend == "postgresql":
        if u.drivername != "postgresql+psycopg":
            u = u.set(drivername="postgresql+psycopg")
        # a hub serves many Pis and pages at once: more pooled connections than the default 5 + 10
        return create_engine(u, pool_pre_ping=True, pool_size=10, max_overflow=30)
    if backend != "sqlite" or u.drivername != "sqlite":
        raise HubError(
            f"hub database {u.render_as_string(hide_password=True)}: "
            "only sqlite:/// and postgresql+psycopg:// are supported"
        )
    if not u.database or u.database == ":memory:":
        raise HubError("hub database: a SQLite hub needs a file (sqlite:///<path>)")
    path = Path(os.path.expanduser(u.database))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # personal data: owner-only from the start
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise HubError(f"hub database {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    eng = create_engine(u.set(database=str(path)), connect_args={"timeout": 30})

    @event.listens_for(eng, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(eng, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("hub_write") else "BEGIN")

    return eng
