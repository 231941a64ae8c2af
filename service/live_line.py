"""A one-line live status on a terminal (recording, probing); silent when not a terminal."""

from __future__ import annotations

import time
from typing import IO


class LiveLine:
    def __init__(self, stream: IO[str], every_s: float = 0.5) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.every_s = every_s
        self.last = 0.0
        self.width = 0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < self.every_s):
            return
        self.last = now
        self.stream.write("\r" + text.ljust(self.width))
        self.width = len(text)
        self.stream.flush()

    def end(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0
