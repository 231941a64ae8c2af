"""The session report on the hub, made in a child process of `stackcue hub serve` (service/web/app.py,
``report_in_child``, says why a child): reads the store's URL and the session id from standard input (a URL may
hold a password: never in argv, where ``ps`` shows it), writes the page to standard output, one line on standard
error and status 2 when it cannot. It is ``report_render.build_report`` over ``HubStore.book()``: the report the
Pi makes, from the same rows."""

from __future__ import annotations

import sys

from stackcue.errors import StackcueError


def main() -> int:
    lines = sys.stdin.read().splitlines()
    if len(lines) < 2:
        print("the hub's report child wants the database URL and the session id on stdin", file=sys.stderr)
        return 2
    url, sid = lines[0], lines[1]
    from ..report_render import build_report
    from .store import HubStore

    try:
        store = HubStore(url, migrate=False)
        try:
            with store.book() as book:
                page = build_report(book, sid)
        finally:
            store.close()
    except StackcueError as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 2
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
