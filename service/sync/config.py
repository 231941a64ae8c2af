"""``[sync]`` read and checked: the hub's URL, the token, the CA, and consent (docs/sync.md, "Consent").

Consent is checked before a single byte leaves the Pi: ``enabled = true`` and ``hub_name`` set (the runner
agreed to send to that hub), a ``url`` and a ``token_file``. The hub's name is then checked against
``/api/v1/hello`` before any session is sent (``run.sync``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stackcue.errors import ConfigError

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_url(url: str) -> str:
    """The hub's base URL; ValueError saying why not. ``http://`` only to this machine: the token and the
    runner's data never cross a network in clear."""
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if u.scheme not in ("https", "http") or not u.hostname:
        raise ValueError("must be https://HOST[:PORT] (the hub's address)")
    if u.scheme == "http" and u.hostname not in _LOOPBACK:
        raise ValueError("http:// only to this machine (localhost); a hub elsewhere needs https://")
    if u.query or u.fragment or u.username or u.password:
        raise ValueError("must be https://HOST[:PORT][/path], without a query, fragment or credentials")
    return url.rstrip("/")


@dataclass(frozen=True)
class SyncSettings:
    enabled: bool
    hub_name: str
    url: str
    token_file: str
    ca_file: str
    auto: bool
    timeout_s: float
    source: str  # the configuration file the keys came from, for messages

    @classmethod
    def of(cls, cfg: Any) -> SyncSettings:
        s = cfg["sync"]
        src = str(cfg.sources[-1]) if getattr(cfg, "sources", None) else "the configuration"
        return cls(
            enabled=s["enabled"],
            hub_name=s["hub_name"],
            url=s["url"],
            token_file=s["token_file"],
            ca_file=s["ca_file"],
            auto=s["auto"],
            timeout_s=float(s["timeout_s"]),
            source=src,
        )

    def refusal(self) -> str | None:
        """Why nothing may be sent (one line), or None when the runner consented and the keys are complete."""
        if not self.enabled:
            return f"sync is off ({self.source}: [sync] enabled = false): nothing sent"
        if not self.hub_name:
            return f"sync has no hub to send to ({self.source}: [sync] hub_name is empty): nothing sent"
        if not self.url:
            return f"sync needs the hub's address ({self.source}: [sync] url is empty): nothing sent"
        if not self.token_file:
            return f"sync needs this Pi's token ({self.source}: [sync] token_file is empty): nothing sent"
        return None

    def token(self) -> str:
        """The token's first line; ConfigError (one line) when the file cannot be read, is empty, or other users
        may read it (a credential)."""
        p = Path(self.token_file).expanduser()
        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"[sync] token_file {p} is not a file")
            if st.st_mode & 0o077:
                raise ConfigError(
                    f"[sync] token_file {p} may be read by other users (mode {stat.S_IMODE(st.st_mode):04o}): "
                    f"chmod 600 {p}"
                )
            lines = p.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(
                f"[sync] token_file {p} does not exist (on the hub: stackcue hub token RUNNER, then save it there)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[sync] token_file {p}: cannot read it ({getattr(exc, 'strerror', exc)})") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ConfigError(f"[sync] token_file {p} is empty")
        return token

    def ca(self) -> Path | None:
        if not self.ca_file:
            return None
        p = Path(self.ca_file).expanduser()
        if not p.is_file():
            raise ConfigError(f"[sync] ca_file {p} does not exist (the hub's ca.crt, made by `stackcue certs`)")
        return p
