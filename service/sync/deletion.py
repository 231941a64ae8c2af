"""``stackcue runner delete`` reaching the hub (docs/sync.md, "Deletion").

The runner's sessions are deleted on the Pi as before; the deletion of every session of that runner on the
hub is queued in the logbook first (``state.queue_runner_deletion``, one transaction, before the rows go), then
sent at once when the hub answers, else at the next sync. Queued for the hub the runner consented to and any hub
that acknowledged one of those sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client import SyncAway, SyncRefused
from .config import SyncSettings


def consented_hub(cfg: Any) -> set[str]:
    """The hub ``[sync]`` names when the runner consented to it (its deletion is queued even if nothing was sent
    yet: a sync may have been under way)."""
    s = SyncSettings.of(cfg)
    return {s.hub_name} if s.enabled and s.hub_name else set()


def send_now(cfg: Any, book: Any, say: Callable[[str], None]) -> int:
    """The queued deletions sent now if the hub answers; one line each, or one saying they wait. Exit status:
    0 sent or queued, 1 the hub refused or could not be asked (token, TLS: they stay queued)."""
    from .run import connect, send_deletions

    s = SyncSettings.of(cfg)
    hubs = {r[0] for r in book.conn.execute("SELECT DISTINCT hub FROM sync_deletions")}
    for h in sorted(hubs - {s.hub_name}):
        say(f"deletion on hub {h!r} queued: [sync] hub_name is {s.hub_name!r} now; it is sent when it names {h!r}")
    if s.hub_name not in hubs:
        return 0
    why = s.refusal()
    if why is not None:
        say(f"deletion on hub {s.hub_name!r} queued until the next sync: {why}")
        return 0
    try:
        s, client, hello = connect(cfg)
    except SyncAway as exc:
        say(f"deletion on hub {s.hub_name!r} queued until the next sync: {exc}")
        return 0
    except SyncRefused as exc:
        say(f"deletion on hub {s.hub_name!r} stays queued: {exc}")
        return 1
    with client:
        try:
            failed = send_deletions(client, book, s.hub_name, hello["runner"], say)
        except SyncAway as exc:
            say(f"deletion on hub {s.hub_name!r} queued until the next sync: {exc}")
            return 0
    return 1 if failed else 0
