"""The Pi's side of the coach's hub (docs/sync.md): consent, the client, what the hub acknowledged, targets.

``config`` reads ``[sync]`` and says in one line why nothing may be sent; ``state`` keeps what the hub
acknowledged and the deletions it has yet to hear of (tables of the logbook) and the targets and coach notes it
sent back (a file beside the logbook); ``client`` talks to the hub's sync API (``service/hub/api.py``) over
HTTPS with httpx; ``run`` is one sync (sessions, deletions, targets); ``targets`` applies the coach's targets to
the next session; ``auto`` syncs in the background when the daemon's session ends; ``cli`` is ``stackcue sync``.
"""
