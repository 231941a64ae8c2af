"""``stackcue hub ...``: the coach's hub from the command line (wired into the CLI by service/cli.py).

``serve`` runs the web app; ``init`` creates or migrates the store; ``add-user``, ``add-runner``, ``add-squad``,
``squad-add`` set up who is who; ``token`` gives a runner's Pi its credential (printed once: the hub keeps only
its SHA-256). Every mistake is one line and status 2 (service/cli.py); nothing here loads Starlette or
SQLAlchemy until a subcommand runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stackcue.errors import ConfigError, InputError

ROLES = ("coach", "runner")


def add_parsers(subparsers) -> None:
    hub = subparsers.add_parser(
        "hub",
        help="the coach's hub: every runner's synced sessions, the squad live at the track (docs/hub.md)",
        description="The coach's web app and its store ([hub] in the configuration).",
    )
    sub = hub.add_subparsers(dest="hub_command", required=True, metavar="ACTION")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="FILE", help="configuration file ([hub] database, name, ...)")
        return p

    sv = with_config(sub.add_parser("serve", help="run the web app on [hub] host:port (HTTPS beyond loopback)"))
    sv.add_argument("--host", metavar="ADDRESS", help="override [hub] host")
    sv.add_argument("--port", type=int, metavar="N", help="override [hub] port")
    with_config(sub.add_parser("init", help="create the store, or migrate it to this version"))
    au = with_config(sub.add_parser("add-user", help="a coach's or a runner's login"))
    au.add_argument("username", metavar="NAME")
    au.add_argument("--role", choices=ROLES, required=True)
    au.add_argument("--runner", metavar="ID", help="with --role runner: the runner this login is")
    au.add_argument("--password-file", metavar="FILE", help="read the password from FILE's first line (else asked)")
    ar = with_config(sub.add_parser("add-runner", help="a runner (whose Pi will sync here)"))
    ar.add_argument("runner_id", metavar="ID")
    ar.add_argument("--name", help="the name the pages show")
    asq = with_config(sub.add_parser("add-squad", help="a squad, and the coach who sees it"))
    asq.add_argument("squad", metavar="NAME")
    asq.add_argument("--coach", metavar="USER", required=True)
    sa = with_config(sub.add_parser("squad-add", help="put a runner in a squad"))
    sa.add_argument("squad", metavar="SQUAD")
    sa.add_argument("runner_id", metavar="RUNNER")
    pw = with_config(sub.add_parser("password", help="a user's new password (ends the user's logins)"))
    pw.add_argument("username", metavar="NAME")
    pw.add_argument("--password-file", metavar="FILE", help="read the password from FILE's first line (else asked)")
    ru = with_config(sub.add_parser("remove-user", help="remove a login (ends it; the runner's data stays)"))
    ru.add_argument("username", metavar="NAME")
    tk = with_config(sub.add_parser("token", help="a new credential for a runner's Pi (replaces the old one)"))
    tk.add_argument("runner_id", metavar="RUNNER")


def _open_store(cfg, migrate: bool = True):
    from .store import HubStore

    return HubStore(_database(cfg), migrate=migrate)


def _database(cfg) -> str:
    """``[hub] database`` with a ``~`` in a SQLite path expanded (and its folder made, mode 0700)."""
    url = cfg["hub"]["database"]
    prefix = "sqlite:///"
    if url.startswith(prefix):
        path = Path(url[len(prefix) :]).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"[hub] database: cannot make {path.parent}: {exc.strerror or exc}") from None
        return prefix + str(path)
    return url


def _read_password(args: argparse.Namespace) -> str:
    from ..web.auth import MIN_PASSWORD
    from ..web.cli import _read_new_password

    if args.password_file:
        try:
            lines = Path(args.password_file).expanduser().read_text().splitlines()
        except OSError as exc:
            raise InputError(f"--password-file {args.password_file}: {exc.strerror or exc}") from None
        password = lines[0] if lines else ""
    elif not sys.stdin.isatty():
        raise InputError(f"{args.hub_command} asks for the password on a terminal; give --password-file FILE instead")
    else:
        password = _read_new_password(False, f"hub user {args.username}", args.hub_command)
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
    return password


def cmd_hub(args: argparse.Namespace) -> int:
    from ..config import load_config

    cfg = load_config(args.config)
    if args.hub_command == "serve":
        return _serve(cfg, args)
    if args.hub_command == "add-user" and (args.role == "runner") != bool(args.runner):
        raise InputError("--runner ID goes with --role runner (and only with it)")
    password = _read_password(args) if args.hub_command in ("add-user", "password") else ""
    store = _open_store(cfg)
    try:
        if args.hub_command == "init":
            print(f"stackcue hub: store {store.url} is ready")
        elif args.hub_command == "add-user":
            store.add_user(args.username, args.role, password, args.runner)
            print(
                f"stackcue hub: {args.role} {args.username} added" + (f" (runner {args.runner})" if args.runner else "")
            )
        elif args.hub_command == "password":
            store.set_password(args.username, password)
            print(f"stackcue hub: {args.username} has a new password; their logins have ended")
        elif args.hub_command == "remove-user":
            store.remove_user(args.username)
            print(f"stackcue hub: {args.username} removed; their logins have ended")
        elif args.hub_command == "add-runner":
            store.add_runner(args.runner_id, args.name)
            print(f"stackcue hub: runner {args.runner_id} added")
        elif args.hub_command == "add-squad":
            store.add_squad(args.squad, args.coach)
            print(f"stackcue hub: squad {args.squad} added, coached by {args.coach}")
        elif args.hub_command == "squad-add":
            store.add_to_squad(args.squad, args.runner_id)
            print(f"stackcue hub: {args.runner_id} is in squad {args.squad}")
        elif args.hub_command == "token":
            token = store.issue_token(args.runner_id)
            print(token)
            print(
                f"stackcue hub: the Pi credential of {args.runner_id}, shown this once (an earlier one no longer "
                "works); on the Pi put it in the file [sync] token_file names (mode 0600)",
                file=sys.stderr,
            )
    finally:
        store.close()
    return 0


def _serve(cfg, args: argparse.Namespace) -> int:
    from ..web.cli import _serve_hosts, run_uvicorn, tls_for
    from .app import HubOptions, create_hub_app

    h = cfg["hub"]
    if not h["name"]:
        raise ConfigError(
            "[hub] name is empty: give the hub a name (a runner's Pi syncs only to the hub its [sync] hub_name names)"
        )
    host = args.host or h["host"]
    port = args.port if args.port is not None else h["port"]
    if not 0 < port < 65536:
        raise InputError(f"--port {port} is out of range 1..65535")
    tls = tls_for(
        Path(h["cert_dir"]).expanduser(), host, "[hub] host", "stackcue certs --dir CERT_DIR --name hub.example"
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    store = _open_store(cfg)
    try:
        options = HubOptions(
            name=h["name"],
            database=_database(cfg),
            https=tls is not None,
            session_hours=h["session_hours"],
            cookie_key_file=Path(h["cookie_key_file"]).expanduser(),
            hosts=tuple(_serve_hosts(h, host, tls)),
        )
        app = create_hub_app(cfg, store, options)
        live = f"live from {h['broker_host']}:{h['broker_port']}" if h["broker_host"] else "no live link"
        scheme = "https" if tls else "http"
        print(f"stackcue hub: {options.name} on {scheme}://{host}:{port}/ (store {store.url}; {live})", file=sys.stderr)
        return run_uvicorn(app, host, port, tls)
    finally:
        store.close()
