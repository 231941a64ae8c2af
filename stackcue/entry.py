"""The ``stackcue`` command's entry point: the CLI module's imports (numpy, scipy, paho) take 0.4–1 s on a Pi,
and a Ctrl-C or a closed pipe during them must end the command as it does later, not with a traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from stackcue.service.cli import main as cli_main
    except KeyboardInterrupt:
        name = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        print(f"stackcue {name}: interrupted".replace("  ", " "), file=sys.stderr)
        return 130
    return cli_main()
