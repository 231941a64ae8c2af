"""One sync (docs/sync.md): consent, the hub's name, deletions, the sessions not yet acknowledged, targets back.

Per session: the manifest (every part's SHA-256) goes first and the hub answers which parts it lacks, so a sync
cut midway resumes with the parts still missing; each part is sent with its hash and the hub stores it staged;
``complete`` then applies the whole session in one transaction. Sent twice, stored once: the hub keys sessions by
id and parts by hash. The Pi records the acknowledgement (``state.record_ack``) only after ``complete`` said so.

``sync`` returns how many things failed (sessions not sent, deletions or targets not done); each is one line
through ``say``. ``SyncRefused`` (the user must act) and ``SyncAway`` before anything was tried propagate.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from stackcue.errors import ConfigError, StackcueError

from ..hub import parts
from . import state
from .client import HubClient, HubSaid, SyncAway, SyncRefused
from .config import SyncSettings

log = logging.getLogger("stackcue.sync")

#: pauses before a session cut midway (hub away, a timeout) is tried again within one sync: a busy hub (50 Pis
#: at once) or a Wi-Fi blip costs a retry, not a sync
RETRY_S = (2.0, 5.0, 10.0)


def _with_retries(fn: Callable[[], tuple[str, str]], retry_s: tuple[float, ...]) -> tuple[str, str]:
    for pause in retry_s:
        try:
            return fn()
        except SyncAway as exc:
            log.info("sync: %s; tried again in %g s", exc, pause)
            time.sleep(pause)
    try:
        return fn()
    except SyncAway as exc:
        tries = f" (tried {len(retry_s) + 1} times)" if retry_s else ""
        raise SyncAway(f"{exc}{tries}") from None


@dataclass
class Outcome:
    sent: int = 0
    already: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)


def connect(cfg: Any, transport: httpx.BaseTransport | None = None) -> tuple[SyncSettings, HubClient, dict]:
    """The client after consent and the hub's name are checked: (settings, client, hello). Nothing at all is
    sent (not even the token) unless the runner consented (``SyncSettings.refusal``)."""
    s = SyncSettings.of(cfg)
    why = s.refusal()
    if why is not None:
        raise SyncRefused(why)
    client = HubClient(s, s.token(), transport=transport)
    try:
        hello = client.hello()
        if hello["hub"] != s.hub_name:
            raise SyncRefused(
                f"the hub at {s.url} is named {hello['hub']!r}, not {s.hub_name!r} ([sync] hub_name, the hub the "
                "runner agreed to): nothing sent"
            )
    except BaseException:
        client.close()
        raise
    return s, client, hello


def send_session(client: HubClient, book: Any, sid: str) -> tuple[str, str]:
    """Session ``sid`` made complete on the hub; returns (one line, manifest sha256). Only the parts the hub
    lacks are built into bytes and sent."""
    t0 = time.monotonic()
    m = parts.manifest(book, sid)
    msha = hashlib.sha256(parts.canonical(m)).hexdigest()
    answer = client.manifest(sid, m)
    if answer.get("complete"):
        return "already on the hub", msha
    missing = set(answer.get("missing") or ())
    unknown = missing - set(m["parts"])
    if unknown:
        raise HubSaid(422, f"the hub asked for parts this session does not have: {sorted(unknown)[:3]}")
    sent_bytes = 0
    for name, body in parts.session_parts(book, sid):
        if name in missing:
            digest = parts.sha256_hex(body)
            if digest != m["parts"][name]:  # the session changed while it was sent: the next sync sends it again
                raise HubSaid(409, f"part {name} changed while it was sent; it is sent again at the next sync")
            client.put_part(sid, name, digest, body)
            sent_bytes += len(body)
    done = client.complete(sid, m)
    if not done.get("complete"):
        still = ", ".join((done.get("missing") or [])[:5])
        raise HubSaid(409, f"the hub still lacks parts after they were sent ({still}); try again")
    n = len(m["parts"])
    return (
        f"sent ({len(missing)} of {n} parts, {sent_bytes / 1e6:.1f} MB, {time.monotonic() - t0:.1f} s)",
        msha,
    )


def send_deletions(client: HubClient, book: Any, hub: str, runner: str, say: Callable[[str], None]) -> int:
    """The deletions queued for ``hub``; returns how many could not be done (one line each)."""
    failed = 0
    for rowid, who, sid in state.pending_deletions(book.conn, hub):
        if who != runner:
            say(f"deletion of runner {who}'s data on hub {hub!r} waits: this Pi's token is runner {runner}'s")
            failed += 1
            continue
        try:
            if sid is None:
                n = client.delete_runner()
                say(f"runner {who}: {n} session{'s' if n != 1 else ''} deleted on hub {hub!r}")
            else:
                client.delete_session(sid)
                say(f"{sid}: deleted on hub {hub!r}")
        except HubSaid as exc:
            say(f"deletion on hub {hub!r} not done: {exc}")
            failed += 1
            continue
        state.drop_deletion(book.conn, rowid)
    return failed


def fetch_targets(client: HubClient, book: Any, hub: str, runner: str, say: Callable[[str], None]) -> int:
    """Targets and new coach's notes from the hub into the file beside the logbook; returns failures (0/1)."""
    from ..targets import validate_targets

    path = state.hub_file(book.path)
    try:
        old = state.load_hub_file(path) or {}
    except StackcueError as exc:
        say(f"{exc}; it is written anew")
        old = {}
    if old.get("hub") != hub or old.get("runner") != runner:
        old = {}
    since = old.get("notes_since", 0) if isinstance(old.get("notes_since"), int) else 0
    try:
        got = client.targets(since)
    except HubSaid as exc:
        say(f"targets and notes not fetched: {exc}")
        return 1
    targets, notes = got.get("targets"), got.get("notes")
    if not isinstance(targets, dict) or not isinstance(notes, list):
        say("targets and notes not fetched: the hub's answer is not {targets, notes}")
        return 1
    failed = 0
    new = dict(old, hub=hub, runner=runner, fetched_epoch=time.time())
    version = targets.get("version")
    if isinstance(version, int) and version != (old.get("targets") or {}).get("version"):
        try:
            overlay = validate_targets(targets.get("overlay") or {})
        except ConfigError as exc:
            say(f"targets version {version} from hub {hub!r} refused: {exc}; the previous ones stay")
            failed = 1
        else:
            new["targets"] = {
                "version": version,
                "overlay": overlay,
                "set_by": targets.get("set_by"),
                "set_at": targets.get("set_at"),
            }
            if version:
                by = f" by {targets.get('set_by')}" if targets.get("set_by") else ""
                say(f"targets version {version}{by} from hub {hub!r}: used from the next session on")
            else:
                say(f"hub {hub!r} has no targets for runner {runner!r}: the configuration alone is used")
    kept = [n for n in old.get("notes", []) if isinstance(n, dict)]
    known = {n.get("id") for n in kept}
    for n in notes:
        if not isinstance(n, dict) or not isinstance(n.get("id"), int) or n["id"] in known:
            continue
        kept.append(n)
        text = " ".join(str(n.get("text", "")).split())
        say(f"coach's note on {n.get('session')} ({n.get('author')}): {text[:200]}{'…' if len(text) > 200 else ''}")
    new["notes"] = kept
    new["notes_since"] = max([since, *(n["id"] for n in kept if isinstance(n.get("id"), int))])
    state.save_hub_file(path, new)
    return failed


def sync(
    cfg: Any,
    book: Any,
    say: Callable[[str], None],
    *,
    session: str | None = None,
    transport: httpx.BaseTransport | None = None,
    retry_s: tuple[float, ...] = RETRY_S,
) -> Outcome:
    """One sync of ``book`` (a writable ``Logbook``) to the hub ``[sync]`` names; lines through ``say``.

    ``session``: only that one (id, prefix or ``latest``). A session cut by the hub going away or not
    answering in time is tried again after each pause of ``retry_s`` (resuming: only the missing parts), then
    the sync stops with one line. Raises ``SyncRefused``/``SyncAway`` when nothing
    could be tried at all (consent, name, token, TLS; the hub away at ``/hello``)."""
    out = Outcome()

    def line(text: str) -> None:
        out.lines.append(text)
        say(text)

    s, client, hello = connect(cfg, transport)
    hub, runner = s.hub_name, hello.get("runner")
    with client:
        try:
            out.failed += send_deletions(client, book, hub, runner, line)
            for sid in _to_send(book, hub, runner, session, line):
                fp = state.fingerprint(book.conn, sid)
                try:
                    what, msha = _with_retries(lambda sid=sid: send_session(client, book, sid), retry_s)
                except (HubSaid, parts.PartError) as exc:  # this session refused; the others go on
                    line(f"{sid}: not sent: {exc}")
                    out.failed += 1
                    continue
                if fp is not None:
                    state.record_ack(book.conn, hub, sid, fp, msha)
                out.already += what == "already on the hub"
                out.sent += what != "already on the hub"
                line(f"{sid}: {what}")
            out.failed += fetch_targets(client, book, hub, runner, line)
        except SyncAway as exc:
            line(f"{exc}; the rest waits for the next sync")
            out.failed += 1
    return out


def _to_send(book: Any, hub: str, runner: str, session: str | None, say: Callable[[str], None]) -> list[str]:
    """The ended sessions of ``runner`` the hub has not acknowledged as they are now, oldest first."""
    if session is not None:
        from ..session_store import find_session

        s = find_session(book, session)
        if s["runner"] != runner:
            raise SyncRefused(f"session {s['id']} is runner {s['runner']}'s; this Pi's token is runner {runner}'s")
        if s["ended_how"] is None:
            raise SyncRefused(f"session {s['id']} has not ended: only ended sessions are sent")
        return [s["id"]]
    done = state.acked(book.conn, hub)
    rows = book.conn.execute(
        "SELECT id, runner FROM sessions WHERE ended_how IS NOT NULL ORDER BY started_epoch, id"
    ).fetchall()
    others = sum(1 for _, who in rows if who != runner)
    if others:
        plural = "s" if others != 1 else ""
        say(f"{others} session{plural} of other runners not sent (this Pi's token is runner {runner}'s)")
    return [sid for sid, who in rows if who == runner and done.get(sid) != state.fingerprint(book.conn, sid)]


__all__ = ["Outcome", "SyncAway", "SyncRefused", "connect", "fetch_targets", "send_deletions", "send_session", "sync"]
