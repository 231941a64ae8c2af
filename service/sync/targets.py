"""The coach's targets applied to a session (docs/sync.md, "Targets").

``stackcue sync`` stores the targets the hub sends back beside the logbook (``state.hub_file``); the daemon
reads them when a session starts (``session_config``), so they apply from the next session on, never in the
middle of one. They apply only while the runner still consents to that hub (``[sync] enabled`` and the same
``hub_name``): withdrawn consent withdraws the coach's settings too. The session's stored config records which
targets it ran with (``"targets": {"hub", "version", "set_by", "set_at"}``), so a report or the hub can tell.
"""

from __future__ import annotations

import logging
from typing import Any

from stackcue.errors import StackcueError

from ..config import Config
from . import state
from .config import SyncSettings

log = logging.getLogger("stackcue.sync")


def session_config(cfg: Any) -> tuple[Any, dict]:
    """(the configuration a new session runs with, the configuration to store with it)."""
    if cfg.logbook_path is None:
        return cfg, cfg.data
    s = SyncSettings.of(cfg)
    if not s.enabled or not s.hub_name:
        return cfg, cfg.data
    path = state.hub_file(cfg.logbook_path)
    try:
        stored = state.load_hub_file(path)
    except StackcueError as exc:
        log.warning("%s; the session runs without the coach's targets", exc)
        return cfg, cfg.data
    if not stored or stored.get("hub") != s.hub_name or stored.get("runner") != cfg.runner_id:
        return cfg, cfg.data
    t = stored.get("targets")
    if not isinstance(t, dict) or not isinstance(t.get("version"), int) or t["version"] <= 0:
        return cfg, cfg.data
    record = {"hub": s.hub_name, "version": t["version"], "set_by": t.get("set_by"), "set_at": t.get("set_at")}
    try:
        from ..targets import apply_targets

        data = apply_targets(cfg.data, t.get("overlay") or {})
        new = Config(data, [*cfg.sources, path])
        new.pipeline  # noqa: B018 - the cross-key checks against this Pi's own settings
    except StackcueError as exc:
        log.warning(
            "coach's targets version %d not used (%s); the session runs with the configuration", t["version"], exc
        )
        return cfg, {**cfg.data, "targets": {**record, "refused": str(exc)}}
    log.info("session uses the coach's targets version %d from hub %r", t["version"], s.hub_name)
    return new, {**data, "targets": record}
