"""The run's controls: what a command is, which state allows it, and the one queue every input feeds.

Inputs: the MQTT command topic (``<prefix>/command``: the phone page, ``stackcue ctl``, any client the ACL lets
write it), the push button (``firmware_bridge.button``: its gestures), and code (tests). Each calls
``Controls.submit``; the daemon (``service.run_daemon``) takes commands off the queue on the thread that
drives the session, so a command never races the pipeline, and answers each in the state's ``last_command``.

Validation is here, once: a payload that does not fit is refused in one line naming the field, and the
refusal still reaches the daemon (so the sender learns it through ``last_command``: ``ok`` false, ``reason``).
"""

from __future__ import annotations

import json
import math
import queue
import threading
from dataclasses import dataclass
from typing import Any

from stackcue.dsp.phrases import mute_phrase, phrase

COMMANDS = ("start", "pause", "resume", "stop", "recalibrate", "mute")
#: the button's short press: pause or resume (or start, from idle), decided by the state when it is applied
TOGGLE = "pause_resume"
#: the button's triple press: snooze the cues for ``[control] button_snooze_min``, or end a snooze (a ``mute``)
SNOOZE = "snooze"
STATES = ("idle", "calibrating", "running", "paused", "sensor_lost")
SESSION_STATES = ("calibrating", "running", "paused", "sensor_lost")
MUTE_MAX_MIN = 240.0
ID_MAX = 64
FROM_MAX = 32

#: the spoken confirmation of each accepted command (mute's depends on its minutes: ``confirmation``)
#: the English confirmations (every language's: ``dsp.phrases``, keys ``control.<cmd>``)
SAY = {cmd: phrase("en", f"control.{cmd}") for cmd in ("start", "pause", "resume", "stop", "recalibrate")}


@dataclass(frozen=True)
class Command:
    """A valid command. ``sender`` is the payload's ``from``; ``source`` the input it came by."""

    cmd: str
    id: str | None = None
    sender: str | None = None
    minutes: float | None = None
    source: str = "mqtt"


@dataclass(frozen=True)
class Refusal:
    """A payload that is no command: ``reason`` is one line naming the field; ``id``/``cmd`` when readable."""

    reason: str
    id: str | None = None
    cmd: str | None = None
    source: str = "mqtt"


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, str | int | float | bool | None) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def parse_command(payload: bytes | str | dict, source: str = "mqtt", mute_max_min: float = MUTE_MAX_MIN):
    """A ``Command``, or a ``Refusal`` saying in one line what does not fit (contract: docs/mqtt.md).

    Extra keys are ignored (a newer sender may add some); ``minutes`` is read only for ``mute``.
    """
    if isinstance(payload, bytes | bytearray):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal("command is not UTF-8 text", source=source)
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            return Refusal(f"command is not JSON ({str(exc).split(':')[0]})", source=source)
    if not isinstance(payload, dict):
        return Refusal(f"command is not a JSON object ({type(payload).__name__})", source=source)
    cid = payload.get("id")
    if cid is not None and not (isinstance(cid, str) and 1 <= len(cid) <= ID_MAX):
        return Refusal(f"id {_show(cid)} is not a string of 1-{ID_MAX} characters", source=source)
    cmd = payload.get("cmd")
    if "cmd" not in payload:
        return Refusal("command without cmd", cid, source=source)
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        return Refusal(f"cmd {_show(cmd)} is not one of {', '.join(COMMANDS)}", cid, source=source)
    sender = payload.get("from")
    if sender is not None and not (isinstance(sender, str) and len(sender) <= FROM_MAX):
        return Refusal(f"from {_show(sender)} is not a string of at most {FROM_MAX} characters", cid, cmd, source)
    minutes = None
    if cmd == "mute":
        minutes = payload.get("minutes")
        if "minutes" not in payload:
            return Refusal("mute without minutes (0 turns the cues back on)", cid, cmd, source)
        ok = isinstance(minutes, int | float) and not isinstance(minutes, bool) and math.isfinite(minutes)
        if not ok or not 0 <= minutes <= mute_max_min:
            return Refusal(f"minutes {_show(minutes)} is not a number from 0 to {mute_max_min:g}", cid, cmd, source)
        minutes = float(minutes)
    return Command(cmd, cid, sender, minutes, source)


def refusal_for(cmd: str, state: str) -> str | None:
    """Why ``cmd`` cannot be applied in ``state`` (one line), or None when it can."""
    if cmd == "mute":
        return None
    if cmd == "start":
        return None if state == "idle" else "already running"
    if state == "idle":
        return "no session running"
    if cmd == "pause":
        return "already paused" if state == "paused" else None
    if cmd == "resume":
        return None if state == "paused" else "not paused"
    if cmd == "recalibrate":
        return "no calibration yet: finish this one first" if state == "calibrating" else None
    return None  # stop: from any session state


def resolve_toggle(state: str) -> str:
    """The button's short press in ``state``: start from idle, resume when paused, else pause."""
    return "start" if state == "idle" else "resume" if state == "paused" else "pause"


def confirmation(cmd: Command, language: str = "en") -> str:
    """The spoken line confirming an accepted command, in ``[cue] language``."""
    if cmd.cmd == "mute":
        return mute_phrase(language, cmd.minutes or 0.0)
    return phrase(language, f"control.{cmd.cmd}")


class Controls:
    """The one queue of commands (thread-safe: paho's thread, the button's, a test's; the daemon reads it).

    ``submit`` parses what it is given (a payload, a command name, a button gesture or a ``Command``) and
    queues a ``Command`` or a ``Refusal``; it never blocks and never raises for bad input.
    """

    def __init__(self, mute_max_min: float = MUTE_MAX_MIN) -> None:
        self.mute_max_min = mute_max_min
        self._q: queue.SimpleQueue[Command | Refusal] = queue.SimpleQueue()
        self.wakeup = threading.Event()  # set on every submit (the idle daemon waits on the queue itself)

    def submit(self, cmd: Command | Refusal | dict | str | bytes, source: str = "code") -> Command | Refusal:
        """Queue one command; returns what was queued. A bare name ("pause", or the button's "pause_resume",
        "stop", "recalibrate") is a command without id; a JSON text or dict is parsed as a payload."""
        if isinstance(cmd, Command | Refusal):
            item = cmd
        elif isinstance(cmd, str) and (cmd in COMMANDS or cmd in (TOGGLE, SNOOZE)):
            item = Command(cmd, None, source, None, source) if cmd != "mute" else Refusal("mute without minutes")
        else:
            item = parse_command(cmd, source, self.mute_max_min)
        self._q.put(item)
        self.wakeup.set()
        return item

    def get(self, timeout: float | None = None) -> Command | Refusal | None:
        """The next command, waiting at most ``timeout`` s (None: do not wait); None when there is none."""
        try:
            if timeout is None:
                return self._q.get_nowait()
            return self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def drain(self) -> list[Command | Refusal]:
        out = []
        while (item := self.get()) is not None:
            out.append(item)
        return out
