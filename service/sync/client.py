"""The hub's sync API from the Pi (``service/hub/api.py`` is the other end), over HTTPS with httpx.

Every failure is one line: ``SyncAway`` when the hub cannot be reached or fails (away, a timeout, a dropped
connection, a 5xx: the next sync tries again), ``SyncRefused`` when someone must act (the token refused, the
hub's certificate not trusted, a hub of another name), ``HubSaid`` when the hub refused one request (403, 413,
422: that session is not sent, the others are).

Why no proxy from the environment (``trust_env=False``): the Pi talks to one hub it was configured for, and a
proxy set for something else must not see its token.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx

from stackcue.errors import ConfigError, NetworkError

from .config import SyncSettings

# httpx logs every request at INFO: in the daemon's log that is a line per part, of no use to a runner
logging.getLogger("httpx").setLevel(logging.WARNING)

API = "/api/v1"


class SyncAway(NetworkError):
    """The hub could not be reached, timed out or failed: nothing is lost, the next sync resumes."""


class SyncRefused(ConfigError):
    """The hub or the connection to it refuses this Pi until someone acts (token, CA, hub name, consent)."""


class HubSaid(NetworkError):
    """The hub refused one request (its status and one line)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _tls_failure(exc: BaseException) -> str | None:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
            return getattr(e, "verify_message", None) or "certificate verify failed"
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e)
        e = e.__cause__ or e.__context__
    return None


def _error_line(r: httpx.Response) -> str:
    try:
        msg = r.json().get("error")
    except (ValueError, AttributeError):
        msg = None
    if not isinstance(msg, str) or not msg:
        msg = (r.text or r.reason_phrase or "").strip()
    return " ".join(msg.split())[:300] or f"HTTP {r.status_code}"


class HubClient:
    """One connection pool to the hub at ``settings.url`` with this Pi's token. ``transport``: for tests."""

    def __init__(self, settings: SyncSettings, token: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = settings.url.rstrip("/")
        ca = settings.ca()
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "stackcue-sync"},
            timeout=httpx.Timeout(settings.timeout_s),
            verify=verify,
            trust_env=False,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, API + path, **kw)
        except httpx.TimeoutException:
            raise SyncAway(f"the hub at {self.url} did not answer in time ([sync] timeout_s)") from None
        except httpx.TransportError as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                raise SyncRefused(
                    f"TLS to the hub at {self.url} failed: {tls} (its CA in [sync] ca_file? the name in [sync] url "
                    "must be one its certificate holds)"
                ) from None
            raise SyncAway(f"the hub at {self.url} is away ({str(exc) or type(exc).__name__})") from None
        if r.status_code in ok:
            return r
        if r.status_code == 401:
            raise SyncRefused(
                f"the hub at {self.url} refused this Pi's token: {_error_line(r)} (a new one: `stackcue hub token "
                "RUNNER` on the hub, into [sync] token_file)"
            )
        if path == "/hello" and r.status_code in (404, 405):
            raise SyncRefused(f"{self.url} is not a stackcue hub (it has no {API}/hello; check [sync] url)")
        if r.status_code >= 500:
            raise SyncAway(f"the hub at {self.url} failed (HTTP {r.status_code}): {_error_line(r)}")
        raise HubSaid(r.status_code, f"the hub said {r.status_code}: {_error_line(r)}")

    # ------------------------------------------------------------------ the API
    def hello(self) -> dict:
        r = self.request("GET", "/hello")
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("hub"), str) or data.get("api") != 1:
            raise SyncRefused(f"{self.url} is not a stackcue hub speaking sync API 1 (its /api/v1/hello)")
        return data

    def manifest(self, sid: str, manifest: dict) -> dict:
        return self.request("POST", f"/sessions/{sid}/manifest", json=manifest).json()

    def put_part(self, sid: str, name: str, sha256: str, body: bytes) -> None:
        self.request(
            "PUT",
            f"/sessions/{sid}/parts/{name}",
            ok=(204,),
            content=body,
            headers={"X-Part-Sha256": sha256, "Content-Type": "application/json"},
        )

    def complete(self, sid: str, manifest: dict) -> dict:
        return self.request("POST", f"/sessions/{sid}/complete", json=manifest).json()

    def delete_session(self, sid: str) -> bool:
        """True when the hub deleted it, False when it had no such session."""
        return self.request("DELETE", f"/sessions/{sid}", ok=(204, 404)).status_code == 204

    def delete_runner(self) -> int:
        """Every session of the token's runner on the hub; how many there were."""
        return int(self.request("DELETE", "/sessions").json().get("deleted", 0))

    def targets(self, notes_since: int = 0) -> dict:
        return self.request("GET", "/targets", params={"notes_since": str(notes_since)}).json()
