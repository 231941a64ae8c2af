"""``stackcue serve`` and ``stackcue certs`` (wired into the CLI by service/cli.py)."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from pathlib import Path

from stackcue.errors import ConfigError, InputError


def add_parsers(subparsers) -> None:
    sv = subparsers.add_parser(
        "serve",
        help="the phone's web page: live state, controls, cues, sessions and reports (docs/serve.md)",
        description="Serve the live page on [serve] bind:port. A login always; beyond loopback only over HTTPS "
        "(`stackcue certs` makes the certificate).",
    )
    sv.add_argument("--config", metavar="FILE", help="configuration file")
    sv.add_argument("--bind", metavar="ADDRESS", help="override [serve] bind")
    sv.add_argument("--port", type=int, metavar="N", help="override [serve] port")
    sv.add_argument("--set-password", action="store_true", help="set the login's password (asks twice) and exit")
    sv.add_argument(
        "--password-stdin", action="store_true", help="with --set-password: read the password from standard input"
    )
    ce = subparsers.add_parser(
        "certs",
        help="make the CA (once) and a server certificate for `stackcue serve` over HTTPS",
        description="The CA is made once and kept; each run signs a new server certificate for the given names "
        "and prints how to install the CA on Android and iOS.",
    )
    ce.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name or IP address the phone uses (repeat: --name stackcue.local --name 192.168.43.10)",
    )
    ce.add_argument("--config", metavar="FILE", help="configuration file (for [serve] cert_dir)")
    ce.add_argument("--dir", metavar="DIR", help="override [serve] cert_dir")


def _path(text: str) -> Path:
    return Path(text).expanduser()


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _read_new_password(from_stdin: bool, what: str = "the web page", option: str = "--set-password") -> str:
    """A new password: from standard input's first line, or asked twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError(f"{option} asks on a terminal; give --password-stdin to read it from a pipe")
    first = getpass.getpass(f"new password for {what}: ")
    if getpass.getpass("the same again: ") != first:
        raise InputError("the two passwords differ; nothing changed")
    return first


def tls_for(cert_dir: Path, bind: str, key: str, make: str) -> tuple[Path, Path] | None:
    """The server certificate and key in ``cert_dir``, or None on loopback; beyond loopback a certificate is a
    must (a one-line error naming ``key`` and the command ``make`` that makes one)."""
    from .certs import server_files

    tls = server_files(cert_dir)
    if tls is None and not is_loopback(bind):
        raise ConfigError(
            f"{key} = {bind!r} reaches beyond this machine, which needs HTTPS: no server certificate in "
            f"{cert_dir}; make one with `{make}`"
        )
    return tls


def _serve_hosts(sv: dict, bind: str, tls) -> list[str]:
    """The Host names serve answers to besides loopback: [serve] hosts, the certificate's names, the bind address."""
    names = list(sv["hosts"])
    if tls is not None:
        from .certs import cert_names

        try:
            names += cert_names(tls[0])
        except ValueError as e:  # not a PEM certificate: uvicorn would fail on it too, with a traceback
            raise ConfigError(
                f"{tls[0]}: not a readable certificate ({e}); make a new one with `stackcue certs`"
            ) from None
    if bind not in ("0.0.0.0", "::", ""):
        names.append(bind)
    return names


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from ..config import load_config
    from . import auth

    cfg = load_config(args.config)
    sv = cfg["serve"]
    password_file = _path(sv["password_file"])
    if args.password_stdin and not args.set_password:
        raise InputError("--password-stdin goes with --set-password")
    if args.set_password:
        auth.set_password(password_file, _read_new_password(args.password_stdin))
        print(f"stackcue serve: password set in {password_file}; earlier logins are ended")
        return 0

    from .app import ServeOptions, create_app

    bind = args.bind or sv["bind"]
    port = args.port if args.port is not None else sv["port"]
    if not 0 < port < 65536:
        raise InputError(f"--port {port} is out of range 1..65535")
    tls = tls_for(_path(sv["cert_dir"]), bind, "[serve] bind", "stackcue certs --name stackcue.local --name ADDRESS")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    options = ServeOptions(
        password_file=password_file,
        logbook=cfg.logbook_path,
        https=tls is not None,
        session_hours=sv["session_hours"],
        config_file=args.config,
        hosts=tuple(_serve_hosts(sv, bind, tls)),
    )
    app = create_app(cfg, options)
    scheme = "https" if tls else "http"
    print(f"stackcue serve: {scheme}://{bind}:{port}/ (MQTT {cfg.mqtt_settings().address})", file=sys.stderr)
    return run_uvicorn(app, bind, port, tls)


def run_uvicorn(app, host: str, port: int, tls) -> int:
    """Serve ``app`` until SIGTERM/Ctrl-C (serve's and the hub's settings: h11 on asyncio, no proxy headers)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="on",
        proxy_headers=False,  # the client address is the socket's: X-Forwarded-For cannot dodge the login limit
        server_header=False,
        access_log=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 2


def cmd_certs(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .certs import describe, make_certs

    cert_dir = _path(args.dir) if args.dir else _path(load_config(args.config)["serve"]["cert_dir"])
    print(describe(make_certs(cert_dir, args.name)))
    return 0
