"""systemd's notify protocol (sd_notify(3)) without a library: READY, WATCHDOG, STATUS, STOPPING.

A datagram to the socket named in $NOTIFY_SOCKET ('@' = Linux abstract
namespace). Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class SdNotify:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else None
        self.sent: list[str] = []

    @property
    def enabled(self) -> bool:
        return bool(self.addr)

    def notify(self, *fields: str) -> None:
        if not self.addr:
            return
        msg = "\n".join(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.setblocking(False)  # a listener that does not read must never stall the pipeline
                s.connect(self.addr)
                s.send(msg.encode())
            self.sent.append(msg)
        except OSError:
            pass  # systemd gone, busy or not listening: the daemon's work goes on

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
