"""The sync API a runner's Pi talks to (docs/sync.md): JSON over HTTPS, ``Authorization: Bearer <token>``.

``routes(store, hub_name)`` gives Starlette routes under ``/api/v1`` that the hub's web app adds to its own
(``app`` is the API alone, for tests and benchmarks). Each request's
token names its runner (``HubStore.runner_for_token``); a runner reads and writes only its own sessions. Errors are
JSON ``{"error": "<one line>"}``: 401 no or a wrong token, 403 another runner's session, 404 nothing there, 413 a
body too big (refused while it is read: from its Content-Length before a byte is read, else as soon as the bytes
read pass the limit), 422 a body that does not decode (``parts.PartError``) or whose hash differs.

Why a limit on parts handled at once (``max_parallel``): a part is up to 8 MiB and decoding it costs a few times
that, so 50 Pis syncing together would otherwise hold gigabytes; a Pi waiting its turn costs a coroutine. The
store's calls are blocking (SQLAlchemy): they run in the thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import parts
from .parts import PartError
from .store import HubError, NotYours

log = logging.getLogger("stackcue.hub.api")

API_VERSION = 1
#: where the routes are mounted (the Pi's client asks ``{url}/api/v1/...``)
PREFIX = "/api/v1"
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/]{16,200}=*")


class ApiError(Exception):
    """An answer other than success: its HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())[:300]}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass ``limit``: by its Content-Length before reading,
    else while reading (a chunked body, or one that lies about its length)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"the body has {declared} bytes, more than {limit}")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise ApiError(413, f"the body has more than {limit} bytes")
    except ClientDisconnect:
        raise ApiError(400, "the client went away while sending") from None
    return bytes(buf)


def routes(store: Any, hub_name: str, max_parallel: int = 8) -> list[Route]:
    """The sync API over ``store`` (a ``HubStore``), answering ``/hello`` with ``hub_name``; its paths carry
    their ``PREFIX`` (service/hub/app.py adds them to its routes as they are)."""
    gate = asyncio.Semaphore(max_parallel)  # made here: Starlette runs on one event loop per app

    async def runner_of(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
            raise ApiError(401, "no bearer token (Authorization: Bearer <the Pi's token>)")
        runner = await run_in_threadpool(store.runner_for_token, token)
        if runner is None:
            raise ApiError(401, "this token is not known to the hub (issue one: stackcue hub token RUNNER)")
        return runner

    def session_id(request: Request) -> str:
        sid = request.path_params["sid"]
        if not parts.SESSION_ID.fullmatch(sid):
            raise ApiError(404, "no such session id")
        return sid

    async def owned(runner: str, sid: str) -> str | None:
        """The session's runner; 403 when it is another runner's."""
        owner = await run_in_threadpool(store.session_runner, sid)
        if owner is not None and owner != runner:
            raise ApiError(403, f"session {sid} is another runner's")
        return owner

    def handler(fn: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request, await runner_of(request))
            except ApiError as exc:
                return _error(exc.status, str(exc))
            except NotYours as exc:
                return _error(403, str(exc))
            except (PartError, HubError) as exc:  # BadPart, a manifest the store refuses, ...
                return _error(422, str(exc))
            except Exception:  # a bug or the database away: logged here, one line to the Pi
                log.exception("sync API: %s %s failed", request.method, request.url.path)
                return _error(500, "the hub failed to handle this request (see its log)")

        return wrapped

    async def hello(request: Request, runner: str) -> Response:
        return JSONResponse({"hub": hub_name, "api": API_VERSION, "runner": runner})

    async def post_manifest(request: Request, runner: str) -> Response:
        sid = session_id(request)
        m = parts.decode_manifest(await read_body(request, parts.MAX_MANIFEST_BYTES), sid, runner)
        await owned(runner, sid)
        missing = await run_in_threadpool(store.missing_parts, runner, m)
        done = False
        if not missing:  # everything there: the same manifest completed before (or all parts staged): complete
            done = await run_in_threadpool(store.complete, runner, sid, m)
        return JSONResponse({"missing": parts.ordered(missing), "complete": bool(done)})

    async def put_part(request: Request, runner: str) -> Response:
        sid = session_id(request)
        name = request.path_params["name"]
        parts.part_kind(name)
        digest = request.headers.get("x-part-sha256", "").lower()
        if not parts.SHA256_HEX.fullmatch(digest):
            raise ApiError(422, "header X-Part-Sha256 is not a SHA-256 hex digest")
        await owned(runner, sid)
        async with gate:
            body = await read_body(request, parts.MAX_PART_BYTES)
            if parts.sha256_hex(body) != digest:
                raise ApiError(422, f"part {name}: its SHA-256 is not the one in X-Part-Sha256 (damaged on the way?)")
            await run_in_threadpool(store.put_part, runner, sid, name, digest, body)
        return Response(status_code=204)

    async def post_complete(request: Request, runner: str) -> Response:
        sid = session_id(request)
        m = parts.decode_manifest(await read_body(request, parts.MAX_MANIFEST_BYTES), sid, runner)
        await owned(runner, sid)
        async with gate:  # applying a session reads every staged part: one of the heavy steps
            done = await run_in_threadpool(store.complete, runner, sid, m)
        missing = [] if done else await run_in_threadpool(store.missing_parts, runner, m)
        return JSONResponse({"complete": bool(done), "missing": parts.ordered(missing)})

    async def delete_session(request: Request, runner: str) -> Response:
        sid = session_id(request)
        owner = await owned(runner, sid)
        if owner is None or not await run_in_threadpool(store.delete_session, runner, sid):
            raise ApiError(404, f"no session {sid} on this hub")
        return Response(status_code=204)

    async def delete_all(request: Request, runner: str) -> Response:
        """Every session of the token's runner (``stackcue runner delete`` on the Pi)."""
        n = await run_in_threadpool(store.delete_runner, runner)
        return JSONResponse({"deleted": n})

    async def get_targets(request: Request, runner: str) -> Response:
        since = request.query_params.get("notes_since", "0")
        if not since.isdigit() or len(since) > 18:
            raise ApiError(422, "notes_since is not a note id (0, 1, ...)")
        targets = await run_in_threadpool(store.targets, runner)
        notes = await run_in_threadpool(store.coach_notes, runner, int(since))
        return JSONResponse({"targets": targets, "notes": notes})

    p = PREFIX
    return [
        Route(f"{p}/hello", handler(hello), methods=["GET"]),
        Route(f"{p}/sessions/{{sid}}/manifest", handler(post_manifest), methods=["POST"]),
        Route(f"{p}/sessions/{{sid}}/parts/{{name}}", handler(put_part), methods=["PUT"]),
        Route(f"{p}/sessions/{{sid}}/complete", handler(post_complete), methods=["POST"]),
        Route(f"{p}/sessions/{{sid}}", handler(delete_session), methods=["DELETE"]),
        Route(f"{p}/sessions", handler(delete_all), methods=["DELETE"]),
        Route(f"{p}/targets", handler(get_targets), methods=["GET"]),
    ]


def app(store: Any, hub_name: str, max_parallel: int = 8) -> Starlette:
    """The sync API alone (tests, benchmarks; the hub's web app adds ``routes`` to its own)."""
    return Starlette(routes=routes(store, hub_name, max_parallel))
