"""`stackcue hub serve`: the coach's web app (Starlette, Jinja2): the squad, a runner, a session, targets, live.

The pieces are serve's (service/web/app.py): the Guard (same-origin POSTs, a login for every page), the signed
SameSite=Strict cookie, the Host allow-list, the CSRF token, the login rate limit, argon2 passwords, the
Server-Sent Events stream and the report made in a child process. What the hub adds is users with roles, read
from ``HubStore``: a runner sees only their own data, a coach only the runners of their squads
(``HubStore.may_see``); anything else is answered 404, exactly as a session that does not exist, so ids cannot
be probed. The sync API (service/hub/api.py, bearer tokens) is mounted under /api/v1 and authenticates itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sys
import threading
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stackcue.errors import StackcueError

from ..config import RUNNER_ID
from ..report_render import NO_DATA, day, fmt, hms
from ..web import auth
from ..web.app import (
    SESSION_ID,
    attempt_login,
    login_refused,
    make_templates,
    report_in_child,
    sse_response,
    web_middleware,
)
from .charts import line_chart
from .live import LiveRelay

log = logging.getLogger("stackcue.hub")

HERE = Path(__file__).resolve().parent
WEB_TEMPLATES = HERE.parent / "web" / "templates"
NOTE_MAX = 4000
REPORTS_KEPT = 16  # reports kept in memory (a few hundred kB each)
#: the report may be framed by the hub's own session page (serve's headers forbid any framing)
REPORT_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "SAMEORIGIN",
}


@dataclass(frozen=True)
class HubOptions:
    """What the hub app needs besides the configuration and the store."""

    name: str
    database: str  # the store's URL, handed to the report's child process (on its stdin, never its argv)
    https: bool
    session_hours: float
    cookie_key_file: Path
    hosts: tuple[str, ...] = ()
    limiter: auth.LoginLimiter = field(default_factory=auth.LoginLimiter)


def logged_in(session: dict) -> bool:
    """A hub user: a coach, or a runner tied to their runner id."""
    return isinstance(session.get("user"), str) and session.get("role") in ("coach", "runner")


def _trend(now: Any, before: Any, better_low: bool = False, spec: str = "+.1f", unit: str = "") -> dict:
    """The change of a figure against the runner's previous four weeks: text and whether it is for the better."""
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (now, before))
    if not ok:
        return {"text": "", "cls": ""}
    d = now - before
    if abs(d) < 0.05:
        return {"text": "±0", "cls": "same"}
    good = d < 0 if better_low else d > 0
    return {"text": f"{d:{spec}}{unit}", "cls": "better" if good else "worse"}


def _abs_trend(now: Any, before: Any) -> dict:
    """For angles, closer to zero is better: the trend compares their sizes."""
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (now, before))
    if not ok:
        return {"text": "", "cls": ""}
    t = _trend(now, before, spec="+.1f", unit="°")
    if t["cls"] in ("better", "worse"):
        t["cls"] = "better" if abs(now) < abs(before) else "worse"
    return t


def create_hub_app(cfg, store, options: HubOptions, live: LiveRelay | None = None) -> Starlette:
    """The hub for one configuration (``service.config.Config``) and its open ``HubStore``.

    ``live``: the relay from the coach's broker; made from ``[hub] broker_*`` when not given and a broker is
    configured, none otherwise (the squad page then says there is no live link).
    """
    secret = auth.read_or_make_key(options.cookie_key_file)
    if live is None and cfg["hub"]["broker_host"]:
        from .live import hub_mqtt_settings

        live = LiveRelay(hub_mqtt_settings(cfg), options.name)
    templates = make_templates([HERE / "templates", WEB_TEMPLATES])  # the hub's pages on serve's skeleton
    limiter = options.limiter

    def current(session: dict) -> bool:
        """A login that still holds: the user exists and has the password they logged in with (one primary-key
        read a request; a removed user or a new password ends every login at its next request)."""
        return logged_in(session) and store.login_stamp(session["user"]) == session.get("stamp")

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        s = request.session
        ctx.update(
            hub=options.name,
            csrf=auth.csrf_token(s),
            logged_in=current(s),
            user=s.get("user"),
            role=s.get("role"),
            own_runner=s.get("runner_id"),
        )
        return templates.TemplateResponse(request, template, ctx, status_code=status)

    def not_found() -> Response:
        return PlainTextResponse("not found", status_code=404)

    def may_see(request: Request, runner_id: str | None) -> bool:
        s = request.session
        if runner_id is None or not RUNNER_ID.fullmatch(runner_id):
            return False
        if s.get("role") == "runner":
            return s.get("runner_id") == runner_id
        return store.may_see(s["user"], runner_id)

    def is_coach(request: Request) -> bool:
        return request.session.get("role") == "coach"

    async def form_with_csrf(request: Request):
        form = await request.form()
        return form if auth.csrf_ok(request.session, form.get("csrf")) else None

    # ----------------------------------------------------------------- login

    async def login(request: Request) -> Response:
        if request.method == "GET":
            if current(request.session):
                return RedirectResponse("/", status_code=303)
            request.session.clear()  # a login that no longer holds (a new password, a removed user)
            return page(request, "login.html", message="", username="")

        def verify(form) -> dict | None:
            return store.check_login(str(form.get("username") or "").strip(), str(form.get("password") or ""))

        result = await attempt_login(request, limiter, verify)
        if result.who is None:
            return login_refused(page, request, result, username="")
        who = result.who
        request.session.update(
            user=who["username"], role=who["role"], runner_id=who["runner_id"], stamp=who["stamp"], since=time.time()
        )
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        if await form_with_csrf(request) is None:
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ----------------------------------------------------------------- the squad and live

    def _squad_rows(coach: str) -> list[dict]:
        rows = []
        for r in store.squad_overview(coach):
            prev = r.get("previous") or {}
            last = r.get("last") or {}
            rows.append(
                {
                    "runner": r["runner"],
                    "name": r.get("display_name") or r["runner"],
                    "last_id": last.get("id"),
                    "last_day": day(last.get("started_epoch")) if last else "no session yet",
                    "duration": hms(last["duration_s"]) if last.get("duration_s") is not None else NO_DATA,
                    "pct_stacked": fmt(r.get("pct_stacked"), ".0f", " %"),
                    "pct_trend": _trend(r.get("pct_stacked"), prev.get("pct_stacked"), spec="+.0f", unit=" %"),
                    "per_h": fmt(r.get("alerts_per_h"), ".1f"),
                    "per_h_trend": _trend(r.get("alerts_per_h"), prev.get("alerts_per_h"), better_low=True),
                    "per_km": fmt(r.get("alerts_per_km"), ".2f"),
                    "per_km_trend": _trend(
                        r.get("alerts_per_km"), prev.get("alerts_per_km"), better_low=True, spec="+.2f"
                    ),
                    "tilt": fmt(r.get("median_tilt_deg"), "+.1f", "°"),
                    "tilt_trend": _abs_trend(r.get("median_tilt_deg"), prev.get("median_tilt_deg")),
                    "stack": fmt(r.get("median_stack_deg"), "+.1f", "°"),
                    "stack_trend": _abs_trend(r.get("median_stack_deg"), prev.get("median_stack_deg")),
                }
            )
        return rows

    async def home(request: Request) -> Response:
        s = request.session
        if s.get("role") == "runner":
            return RedirectResponse(f"/runners/{s.get('runner_id')}", status_code=303)
        rows = await run_in_threadpool(_squad_rows, s["user"])
        return page(request, "squad.html", rows=rows, live=live is not None)

    async def events(request: Request) -> Response:
        if live is None:
            return PlainTextResponse("no live link: [hub] broker_host is not set", status_code=404)
        s = request.session
        if s.get("role") == "runner":
            allowed = frozenset([s.get("runner_id")])
        else:
            allowed = frozenset(await run_in_threadpool(store.runners_of, s["user"]))
        return sse_response(live.open_page(allowed), live.close_page)

    # ----------------------------------------------------------------- a runner

    def _runner_page(runner_id: str) -> dict:
        sessions = store.runner_sessions(runner_id)
        weeks = store.runner_trend(runner_id)
        labels = [str(w.get("week", "?")) for w in weeks]
        pct = line_chart(
            labels,
            [("% stacked", [w.get("pct_stacked") for w in weeks], "#3fb950")],
            " %",
            "Running time stacked, per week",
            y_range=(0.0, 100.0),
            chart_id="chart-stacked",
        )
        angles = line_chart(
            labels,
            [
                ("tilt", [w.get("median_tilt_deg") for w in weeks], "#f0883e"),
                ("stack", [w.get("median_stack_deg") for w in weeks], "#6cb6ff"),
            ],
            "°",
            "Median tilt and stack, per week",
            chart_id="chart-angles",
        )
        rows = [
            {
                "id": x["id"],
                "day": day(x.get("started_epoch")),
                "duration": hms(x["duration_s"]) if x.get("duration_s") is not None else NO_DATA,
                "pct_stacked": fmt(x.get("pct_stacked"), ".0f", " %"),
                "per_h": fmt(x.get("alerts_per_h"), ".1f"),
                "per_km": fmt(x.get("alerts_per_km"), ".2f"),
                "tilt": fmt(x.get("median_tilt_deg"), "+.1f", "°"),
                "stack": fmt(x.get("median_stack_deg"), "+.1f", "°"),
            }
            for x in sessions
        ]
        names = store.display_names()
        return {
            "runner": runner_id,
            "display": names.get(runner_id) or runner_id,
            "rows": rows,
            "weeks": weeks,
            "charts": [pct, angles],
        }

    async def runner(request: Request) -> Response:
        rid = request.path_params["rid"]
        if not await run_in_threadpool(may_see, request, rid):
            return not_found()
        ctx = await run_in_threadpool(_runner_page, rid)
        return page(request, "runner.html", **ctx)

    # ----------------------------------------------------------------- a session

    def _session(sid: str) -> dict | None:
        with store.book() as book:
            try:
                return book.session(sid)
            except StackcueError:
                return None

    async def _visible_session(request: Request, sid: str) -> str | None:
        """The session's runner when this user may see it, else None (the caller answers 404 either way)."""
        if not SESSION_ID.fullmatch(sid):
            return None
        rid = await run_in_threadpool(store.session_runner, sid)
        if rid is None or not await run_in_threadpool(may_see, request, rid):
            return None
        return rid

    async def session(request: Request) -> Response:
        sid = request.path_params["sid"]
        rid = await _visible_session(request, sid)
        if rid is None:
            return not_found()
        s = await run_in_threadpool(_session, sid)
        if s is None:
            return not_found()
        notes = [n for n in await run_in_threadpool(store.coach_notes, rid) if n["session"] == sid]
        for n in notes:
            n["when"] = day(n["at"])
        names = await run_in_threadpool(store.display_names)
        return page(
            request,
            "session.html",
            sid=sid,
            runner=rid,
            display=names.get(rid) or rid,
            day=day(s.get("started_epoch")),
            duration=hms(s["duration_s"]) if s.get("duration_s") is not None else NO_DATA,
            runner_notes=s.get("notes") or "",
            notes=notes,
            message=request.query_params.get("error", "")[:200],
        )

    reports: OrderedDict[tuple[str, str], str] = OrderedDict()  # (sid, its stored row's digest) -> the page
    reports_lock = threading.Lock()

    def _report(sid: str) -> tuple[int, str]:
        """The session's report, made in a child process once for each stored version of the session (a sync
        that changes it, its notes say, changes its row) and kept for the next views: a child takes seconds."""
        s = _session(sid)
        if s is None:
            return 404, "no such session"
        key = (sid, hashlib.sha256(json.dumps(s, sort_keys=True, default=repr).encode()).hexdigest())
        with reports_lock:
            if key in reports:
                reports.move_to_end(key)
                return 200, reports[key]
        cmd = [sys.executable, "-m", "stackcue.service.hub.report"]
        status, text = report_in_child(cmd, stdin=f"{options.database}\n{sid}\n")
        if status == 200:
            with reports_lock:
                reports[key] = text
                while len(reports) > REPORTS_KEPT:
                    reports.popitem(last=False)
        return status, text

    async def report(request: Request) -> Response:
        sid = request.path_params["sid"]
        if await _visible_session(request, sid) is None:
            return not_found()
        status, text = await run_in_threadpool(_report, sid)
        if status != 200:
            return PlainTextResponse(f"report of {sid}: {text}", status_code=status, headers=REPORT_HEADERS)
        return HTMLResponse(text, headers=REPORT_HEADERS)

    async def add_note(request: Request) -> Response:
        sid = request.path_params["sid"]
        if await _visible_session(request, sid) is None:
            return not_found()
        form = await form_with_csrf(request)
        if form is None:
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        if not is_coach(request):
            return PlainTextResponse("only a coach adds notes here", status_code=403)
        text = str(form.get("note") or "").strip()[:NOTE_MAX]
        if text:
            await run_in_threadpool(store.add_coach_note, sid, request.session["user"], text)
        return RedirectResponse(f"/sessions/{sid}#notes", status_code=303)

    # ----------------------------------------------------------------- targets

    def _target_fields(runner_id: str, entered: dict[str, str] | None = None) -> dict:
        from ..settings import defaults, range_text, specs
        from ..targets import ALLOWED

        cur = store.targets(runner_id)
        base = defaults()
        spec = specs()
        fields = []
        for section, keys in ALLOWED.items():
            for key in (k for k in base[section] if k in keys):  # in default.toml's order
                name = f"{section}.{key}"
                default = base[section][key]
                set_value = cur["overlay"].get(section, {}).get(key)
                shown = entered.get(name, "") if entered is not None else _field_text(set_value)
                sp = spec[name]  # what default.toml's comment tells the runner, shown to the coach too
                one_of = sp.choices and not isinstance(default, list)  # a list (alerts.enabled) stays text
                choices = [_field_text(c) for c in sp.choices] if one_of else None
                fields.append(
                    {
                        "name": name,
                        "section": section,
                        "value": shown,
                        "default": _field_text(default),
                        "doc": sp.doc,
                        "range": range_text(sp),
                        "choices": choices,
                        "kind": "bool" if isinstance(default, bool) else "choice" if choices else "text",
                    }
                )
        return {"fields": fields, "current": cur, "set_at": day(cur["set_at"]) if cur["set_at"] else ""}

    async def targets(request: Request) -> Response:
        rid = request.path_params["rid"]
        if not await run_in_threadpool(may_see, request, rid):
            return not_found()
        message, status, entered = "", 200, None
        if request.method == "POST":
            form = await form_with_csrf(request)
            if form is None:
                return PlainTextResponse("missing or wrong CSRF token", status_code=403)
            if not is_coach(request):
                return PlainTextResponse("only a coach sets targets", status_code=403)
            entered = {k: str(v).strip() for k, v in form.items() if k != "csrf"}
            try:
                overlay = _overlay_from_form(entered)
                version = await run_in_threadpool(store.set_targets, rid, overlay, request.session["user"])
            except StackcueError as exc:
                message, status = str(exc).splitlines()[0], 400
            else:
                return RedirectResponse(f"/runners/{rid}/targets?saved={version}", status_code=303)
        ctx = await run_in_threadpool(_target_fields, rid, entered)
        saved = request.query_params.get("saved", "")
        return page(
            request,
            "targets.html",
            status=status,
            runner=rid,
            message=message,
            saved=saved if saved.isdigit() else "",
            **ctx,
        )

    # ----------------------------------------------------------------- the app

    @contextlib.asynccontextmanager
    async def lifespan(app):
        import asyncio

        if live is not None:
            live.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            if live is not None:
                live.stop()

    routes: list = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
        Route("/runners/{rid}", runner),
        Route("/runners/{rid}/targets", targets, methods=["GET", "POST"]),
        Route("/sessions/{sid}", session),
        Route("/sessions/{sid}/report", report),
        Route("/sessions/{sid}/notes", add_note, methods=["POST"]),
        # the hub's scripts, then serve's (events.js: the event stream both use)
        Mount("/static", app=StaticFiles(directory=HERE / "static", packages=[("stackcue.service.web", "static")])),
    ]
    routes += _api_routes(store, options.name)
    app = Starlette(
        routes=routes,
        middleware=web_middleware(
            options.hosts,
            secret,
            "stackcue_hub",
            options.session_hours,
            options.https,
            logged_in=current,
            open_prefixes=("/api/v1/",),
        ),
        lifespan=lifespan,
    )
    app.state.name = "hub"
    app.state.live = live
    return app


def _api_routes(store, name: str) -> list:
    """The sync API (service/hub/api.py): its routes carry their /api/v1 prefix and authenticate by the Pi's
    bearer token (the Guard lets /api/v1/ through without a login or a browser's Origin)."""
    from . import api

    return api.routes(store, name)


def _field_text(value: Any) -> str:
    """A target's value as the form shows it (TOML's spelling: true/false, lists comma-separated)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _overlay_from_form(entered: dict[str, str]) -> dict:
    """The form's filled-in fields as a config overlay, each value read as TOML reads it (a bare word is text)."""
    from stackcue.errors import InputError

    from ..settings import defaults

    base = defaults()
    overlay: dict[str, dict[str, Any]] = {}
    for name, text in entered.items():
        if not text or "." not in name:
            continue
        section, key = name.split(".", 1)
        default = base.get(section, {}).get(key)
        if isinstance(default, list):
            value: Any = [v.strip() for v in text.split(",") if v.strip()]
        else:
            try:
                value = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                if isinstance(default, str):
                    value = text
                else:
                    raise InputError(f"{name} = {text!r} is not a value") from None
        overlay.setdefault(section, {})[key] = value
    return overlay
