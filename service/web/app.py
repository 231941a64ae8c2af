"""The Starlette app: the login, the live page and its Server-Sent Events, commands, sessions, reports, notes.

Why Starlette on uvicorn: an ASGI toolkit with everything this needs (routing, sessions, static files, Jinja2,
streaming responses for SSE) and nothing else, small in memory (docs/serve.md has the figures), async so a dozen
open event streams cost a dozen coroutines, not threads; uvicorn without its C extras (h11, asyncio) installs as
pure Python wheels on the Pi.

The guard (``Guard``) runs before every route: a POST must come from this site's own origin (Origin, else
Referer), and everything but ``/login`` needs a login (pages redirect to it; ``/events`` and ``/api`` answer
401). Each POST handler then checks the session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf``).
The cookie is signed (itsdangerous, via Starlette's SessionMiddleware), HttpOnly, SameSite=Strict, and Secure
under HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from stackcue.errors import StackcueError

from . import auth
from .relay import COMMANDS, Relay, serve_mqtt_settings

log = logging.getLogger("stackcue.serve")

HERE = Path(__file__).resolve().parent
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
PUBLIC = frozenset({"/login"})
KEEPALIVE_S = 15.0
REPORT_TIMEOUT_S = 300.0
MUTE_MAX_MIN = 240
NOTE_MAX = 2000
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True)
class ServeOptions:
    """What the app needs besides the configuration."""

    password_file: Path
    logbook: Path | None
    https: bool
    session_hours: float
    config_file: str | None = None  # handed to `stackcue report` so it reads the same logbook settings
    hosts: tuple[str, ...] = ()  # Host names besides LOOPBACK_HOSTS (the certificate's, [serve] hosts, the bind)


#: always answered to: the page opened on the Pi itself
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts(names) -> list[str]:
    """Host header values (without port) the app answers to: loopback plus ``names``; IPv6 in brackets."""
    out = list(LOOPBACK_HOSTS)
    for name in names:
        n = str(name).strip().lower().rstrip(".")
        if ":" in n and not n.startswith("["):
            n = f"[{n}]"
        if n and n not in out:
            out.append(n)
    return out


def same_origin(request: Request) -> bool:
    """The request's Origin (or, without one, its Referer) is this site: scheme, host and port alike."""
    host = request.headers.get("host")
    if not host:
        return False
    own = f"{request.url.scheme}://{host}".lower()
    origin = request.headers.get("origin")
    if origin is None:
        ref = request.headers.get("referer")
        if not ref:
            return False
        parts = urlsplit(ref)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.lower() == own


def logged_in(session: dict) -> bool:
    return session.get("user") == "runner"


class Guard:
    """Same-origin POSTs only; a login for everything but the public paths; security headers on every answer.

    ``open_prefixes``: paths that authenticate on their own (the hub's sync API, a bearer token, no cookie): the
    guard neither asks them for a login nor for a browser's Origin. ``logged_in`` says what a login is (serve: the
    runner; the hub: any hub user). A response that sets one of the security headers itself keeps its own (the
    hub's report may be framed by its own site).
    """

    def __init__(
        self, app, logged_in=logged_in, public: frozenset[str] = PUBLIC, open_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.logged_in = logged_in
        self.public = public
        self.open_prefixes = open_prefixes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                have = {k.lower() for k, _ in own}
                message["headers"] = own + [(k, v) for k, v in SECURITY_HEADERS if k not in have]
            await send(message)

        request = Request(scope)
        path = scope["path"]
        answer: Response | None = None
        if self.open_prefixes and path.startswith(self.open_prefixes):
            pass  # its own authentication
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS") and not same_origin(request):
            answer = PlainTextResponse("cross-site request refused", status_code=403)
        elif path not in self.public and not self.logged_in(request.session):
            if scope["method"] == "GET" and not (path == "/events" or path.startswith("/api/")):
                answer = RedirectResponse("/login", status_code=303)
            else:
                answer = PlainTextResponse("log in first", status_code=401)
        if answer is not None:
            await answer(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def make_templates(directories: Path | list[Path]) -> Jinja2Templates:
    """Autoescaped Jinja2 templates from ``directories`` (the first that has a name wins), strict about missing
    names (serve's; the hub's, whose pages extend serve's base.html)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directories),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


def web_middleware(
    hosts, secret: str, cookie: str, session_hours: float, https: bool, **guard: Any
) -> list[Middleware]:
    """The layers every page of serve and of the hub sits behind, outermost first.

    TrustedHost: a page on another site that rebinds its own name to this address (DNS rebinding) sends its own
    name as Host and gets 400 before anything else runs. Then the signed cookie (HttpOnly, SameSite=Strict,
    Secure under HTTPS), then the Guard (``guard``: its options).
    """
    return [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(hosts), www_redirect=False),
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie=cookie,
            max_age=round(session_hours * 3600),
            same_site="strict",
            https_only=https,
        ),
        Middleware(Guard, **guard),
    ]


def sse_response(queue: asyncio.Queue, close) -> StreamingResponse:
    """Server-Sent Events from ``queue`` ((name, data) pairs) with keep-alives; ``close(queue)`` when the page goes."""

    async def stream():
        try:
            yield "retry: 1000\n\n"
            while True:
                try:
                    name, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {name}\ndata: {data}\n\n"
        finally:
            close(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@dataclass(frozen=True)
class LoginResult:
    """What a login form's POST came to: ``who`` (the verifier's answer) when it succeeded, else why not."""

    status: int
    message: str = ""
    retry_after: int = 0
    who: Any = None


async def attempt_login(request: Request, limiter: auth.LoginLimiter, verify) -> LoginResult:
    """The login POST both apps share: the rate limit first (further tries are not even checked), the form's CSRF
    token, then ``verify(form)`` in a worker thread (argon2 takes a while); a success starts a new session (a new
    CSRF token, nothing carried over from before the login), the caller then fills it in."""
    addr = _client(request)
    wait = limiter.retry_after(addr)
    if wait:
        return LoginResult(
            429, f"Too many wrong passwords from this device. Try again in {math.ceil(wait)} s.", math.ceil(wait)
        )
    form = await request.form()
    if not auth.csrf_ok(request.session, form.get("csrf")):
        return LoginResult(403, "The form had expired: try again.")
    who = await run_in_threadpool(verify, form)
    if not who:
        limiter.failed(addr)
        log.warning("%s: wrong password from %s", request.app.state.name, addr)
        return LoginResult(401, "Wrong password.")
    limiter.succeeded(addr)
    request.session.clear()
    auth.csrf_token(request.session)
    return LoginResult(200, who=who)


def login_refused(page, request: Request, result: LoginResult, **ctx: Any) -> Response:
    """The login page again with the one-line reason (and Retry-After when rate limited)."""
    resp = page(request, "login.html", status=result.status, message=result.message, **ctx)
    if result.retry_after:
        resp.headers["Retry-After"] = str(result.retry_after)
    return resp


def report_in_child(cmd: list[str], stdin: str | None = None) -> tuple[int, str]:
    """A report made by ``cmd`` in a child process: (200, the page) or (status, one line why not).

    Why a child: a report needs matplotlib and numpy (tens of MB that a long-lived server would keep for good) and
    holds the GIL for seconds; in a child the memory is returned when it ends and other pages keep answering.
    """
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=REPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return 504, f"the report took longer than {REPORT_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        return 500, (done.stderr.strip().splitlines() or ["the report failed"])[-1]
    return 200, done.stdout


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def create_app(cfg, options: ServeOptions, relay: Relay | None = None) -> Starlette:
    """The app for one runner's configuration (``service.config.Config``); the relay is made from it if not given."""
    stored_hash = auth.read_hash(options.password_file)  # no password: refuse to start, one line
    secret = auth.cookie_key(options.password_file)
    if relay is None:
        relay = Relay(serve_mqtt_settings(cfg), cfg["cue"]["owner"], cfg["cue"]["max_age_s"], cfg["cue"])
    limiter = auth.LoginLimiter()
    templates = make_templates(HERE / "templates")
    runner = cfg.runner_id

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.update(runner=runner, csrf=auth.csrf_token(request.session), logged_in=logged_in(request.session))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    async def csrf_ok(request: Request, form: Any = None) -> bool:
        supplied = request.headers.get("x-csrf-token") or (form.get("csrf") if form is not None else None)
        return auth.csrf_ok(request.session, supplied)

    # ----------------------------------------------------------------- login

    async def login(request: Request) -> Response:
        if request.method == "GET":
            if logged_in(request.session):
                return RedirectResponse("/", status_code=303)
            return page(request, "login.html", message="")

        def verify(form) -> bool:
            return auth.check_password(stored_hash, str(form.get("password") or ""))

        result = await attempt_login(request, limiter, verify)
        if result.who is None:
            return login_refused(page, request, result)
        request.session.update(user="runner", since=int(time.time()))
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not await csrf_ok(request, form):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ----------------------------------------------------------------- live page, events, commands

    async def live(request: Request) -> Response:
        return page(request, "live.html", configured_owner=relay.configured_owner, mute_minutes=10)

    async def events(request: Request) -> Response:
        return sse_response(relay.open_page(), relay.close_page)

    async def command(request: Request) -> Response:
        if not await csrf_ok(request):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict) or body.get("cmd") not in COMMANDS:
            return JSONResponse({"error": f"cmd must be one of {', '.join(COMMANDS)}"}, status_code=400)
        minutes = body.get("minutes")
        if body["cmd"] == "mute":
            ok = isinstance(minutes, int | float) and not isinstance(minutes, bool) and 0 <= minutes <= MUTE_MAX_MIN
            if not ok:
                return JSONResponse({"error": f"minutes must be a number 0–{MUTE_MAX_MIN}"}, status_code=400)
        else:
            minutes = None
        cid = relay.publish_command(body["cmd"], minutes)
        if cid is None:
            return JSONResponse({"error": "the broker is not connected"}, status_code=503)
        return JSONResponse({"id": cid, "cmd": body["cmd"]}, status_code=202)

    # ----------------------------------------------------------------- sessions, reports, notes

    def _open_book():
        from ..logbook import Logbook

        if options.logbook is None or not options.logbook.exists():
            return None
        return Logbook(options.logbook)

    def _session_rows() -> list[dict]:
        from ..sessions_table import duration_text, ended_text
        from ..wallclock import known_start

        book = _open_book()
        if book is None:
            return []
        with book:
            stats = book.stats()
            rows = []
            for s in reversed(book.sessions()):
                st = stats.get(s["id"], {})
                start = known_start(s["started_epoch"])
                rows.append(
                    {
                        "id": s["id"],
                        "started": "unknown" if start is None else f"{dt.datetime.fromtimestamp(start):%a %d %b %H:%M}",
                        "duration": duration_text(s["duration_s"], s["summary"]),
                        "strides": st.get("strides", 0),
                        "alerts": st.get("alerts", 0),
                        "ended": ended_text(s),
                        "notes": (s["notes"] or "").strip().split("\n")[0][:80],
                    }
                )
            return rows

    def _find(session_id: str) -> dict | None:
        """The session with exactly this id (no prefixes, no 'latest'), or None."""
        if not SESSION_ID.fullmatch(session_id):
            return None
        book = _open_book()
        if book is None:
            return None
        with book:
            try:
                s = book.session(session_id)
            except StackcueError:
                return None
        return s if s is not None and s["id"] == session_id else None

    async def sessions(request: Request) -> Response:
        rows = await run_in_threadpool(_session_rows)
        return page(request, "sessions.html", rows=rows, logbook=str(options.logbook or "(none)"))

    def _report(session_id: str) -> tuple[int, str]:
        """The same report `stackcue report` writes, made in a child process (``report_in_child`` says why)."""
        cmd = [sys.executable, "-m", "stackcue", "report", session_id, "-o", "-", "--logbook", str(options.logbook)]
        if options.config_file:
            cmd += ["--config", options.config_file]
        return report_in_child(cmd)

    async def report(request: Request) -> Response:
        sid = request.path_params["sid"]
        if await run_in_threadpool(_find, sid) is None:
            return PlainTextResponse("no such session", status_code=404)
        status, text = await run_in_threadpool(_report, sid)
        if status != 200:
            return PlainTextResponse(f"report of {sid}: {text}", status_code=status)
        return HTMLResponse(text)

    async def notes(request: Request) -> Response:
        sid = request.path_params["sid"]
        s = await run_in_threadpool(_find, sid)
        if s is None:
            return PlainTextResponse("no such session", status_code=404)
        if request.method == "GET":
            return page(request, "notes.html", s=s, notes=(s["notes"] or "").split("\n") if s["notes"] else [])
        form = await request.form()
        if not await csrf_ok(request, form):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        added = str(form.get("note") or "").strip()[:NOTE_MAX]
        if added:

            def append() -> None:  # as `stackcue note SESSION --append TEXT` does
                book = _open_book()
                with book:
                    current = book.session(sid)["notes"]
                    book.set_notes(sid, f"{current}\n{added}" if current else added)

            await run_in_threadpool(append)
        return RedirectResponse(f"/sessions/{sid}/notes", status_code=303)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        relay.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            relay.stop()

    app = Starlette(
        routes=[
            Route("/", live),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/events", events),
            Route("/api/command", command, methods=["POST"]),
            Route("/sessions", sessions),
            Route("/sessions/{sid}", report),
            Route("/sessions/{sid}/notes", notes, methods=["GET", "POST"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=web_middleware(options.hosts, secret, "stackcue_session", options.session_hours, options.https),
        lifespan=lifespan,
    )
    app.state.relay = relay
    app.state.name = "serve"
    return app
