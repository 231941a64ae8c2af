"""``stackcue sync``: this Pi's ended sessions to the coach's hub, then its targets and notes back (docs/sync.md).

One line per session sent or failed, one per deletion, target or note, then a summary. Exit status: 0 all
synced; 1 something failed or the hub is away (try again later: the next sync resumes); 2 a user mistake or
something to act on (consent not given, a hub of another name, the token refused, the hub's certificate not
trusted, a bad option), as every stackcue command says it: one line, no traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..argtypes import logbook_options

EXIT_FAILED = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    sy = sub.add_parser(
        "sync", help="send this Pi's ended sessions to the coach's hub ([sync]); targets and coach's notes back"
    )
    sy.add_argument("--session", metavar="ID", help="only this session (id, unique prefix or latest)")
    logbook_options(sy)


def cmd_sync(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..session_store import open_logbook
    from .client import SyncAway
    from .config import SyncSettings
    from .run import sync

    cfg = load_config(args.config)
    why = SyncSettings.of(cfg).refusal()  # before the logbook is even opened: nothing to do without consent
    if why is not None:
        print(f"stackcue sync: {why}", file=sys.stderr)
        return 2
    with open_logbook(cfg, args.logbook, readonly=False) as book:
        try:
            out = sync(cfg, book, lambda line: print(line, flush=True), session=args.session)
        except SyncAway as exc:
            print(f"stackcue sync: {exc}; nothing sent (the next sync tries again)", file=sys.stderr)
            return EXIT_FAILED
    hub = cfg["sync"]["hub_name"]
    print(f"hub {hub!r}: {out.sent} sent, {out.already} already there, {out.failed} failed")
    return EXIT_FAILED if out.failed else 0
