"""The cue rules: what one MQTT message means for the runner, decided without devices, network or threads.

What is cued:

* alerts (``<prefix>/alert``): a short phrase per kind (``PHRASES``; a reminder says the same phrase) and/or
  a haptic pattern per kind (``ALERT_PATTERNS``, (on_s, off_s) pairs on a GPIO pin, distinct per kind);
  both come from ``stackcue.dsp.alert_kinds.ALERT_KINDS``, and a kind this version does not know still gets
  ``GENERIC_PHRASE``/``GENERIC_PATTERN``;
* ``guide`` and ``sensor`` events: their ``say`` text is spoken; ``sensor`` lost also buzzes four short,
  back one short;
* ``calibration`` events: accepted buzzes one short, refused three long (the words come with the ``guide``
  event the daemon sends right after);
* ``session`` events are logged; ``clear`` and anything else are ignored (silence means posture fine);
* an alert marked ``"muted": true`` (the runner muted the cues for a while: ``stackcue ctl mute``) is not cued;
* an alert marked ``"cue": false`` is not cued: the pipeline's cue policy left it out (``cue_skipped``:
  ``snoozed``, ``improving``, ``fading`` or ``ceiling``; ``dsp.cue_policy``). It was still raised, delivered
  and stored. A payload without ``cue`` (an older Pi) is cued.

Ownership: one cue owner a session (docs/cues.md). A device that is not ``[cue] owner`` decides as the
owner would, logs what it would cue and, once, why it stays silent.

Duplicates: delivery is at least once, so an alert is cued once per (session, alert_id) and a system event
once per (session, type, t, step/state/ok, say). The keys live in a bounded LRU (``DEDUPE_KEYS``).

Staleness (alerts; system events use the transit part only, as they carry no ``age_s``):

    age = age_s + transit        transit = now (this machine's wall clock) - sent_at (the Pi's wall clock)

``age_s`` is the raise→send time measured on the Pi's monotonic clock (or its wall clock after a reboot),
so it is trustworthy wherever it is read. ``transit`` covers the time spent in the broker (a persistent
session holds alerts while this client is away) and is used only when the two wall clocks are clearly
comparable: ``-CLOCK_SLACK_S <= transit <= MAX_TRANSIT_S`` (a small negative value counts as 0). A
negative or absurd difference means the clocks disagree (a Pi without RTC and without NTP, a phone on
another clock) and ``age_s`` is used alone. On the Pi itself both stamps come from the same clock, so the
rule is exact there. An alert older than ``[cue] max_age_s`` is logged, not cued: a cue five minutes late
helps nobody. A cue carries the monotonic deadline after which playing it is pointless, so that a cue that
waited behind others is dropped too.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from stackcue.dsp.alert_kinds import ALERT_KINDS, GENERIC_PATTERN, SHORT, Pattern
from stackcue.dsp.phrases import alert_phrase, phrase

from . import json_input
from .payloads import OneLineLogs, validate

log = logging.getLogger("stackcue.cue")
log.addFilter(OneLineLogs())  # fields from payloads never split or colour a log line

PHRASES: dict[str, str] = {k.name: k.phrase for k in ALERT_KINDS.values()}
ALERT_PATTERNS: dict[str, Pattern] = {k.name: k.pattern for k in ALERT_KINDS.values()}
SYSTEM_PATTERNS: dict[str, Pattern] = {
    "calibration_ok": ((SHORT, 0.0),),  # one short
    "calibration_refused": ((0.5, 0.25), (0.5, 0.25), (0.5, 0.0)),  # three long
    "sensor_lost": ((0.1, 0.1), (0.1, 0.1), (0.1, 0.1), (0.1, 0.0)),  # four short
    "sensor_back": ((SHORT, 0.0),),  # one short: all well again
}
SAY_LOST = phrase("en", "sensor_lost")
SAY_BACK = phrase("en", "sensor_back")

DEDUPE_KEYS = 2048
CLOCK_SLACK_S = 2.0
MAX_TRANSIT_S = 86400.0


@dataclass(frozen=True)
class Cue:
    what: str  # "alert anterior_tilt", "guide", "sensor lost", "calibration refused" ...
    text: str | None  # to speak, if a speaker is there
    pattern: Pattern | None  # to buzz, if a haptic is there
    key: tuple
    deadline: float | None = None  # time.monotonic() after which it is too late to play (alerts)


class Decision(NamedTuple):
    cue: Cue | None  # the cue to play, or None
    reason: str  # why ("queued" when there is a cue)


class Lru:
    """The last ``size`` keys seen: bounded memory for de-duplication over a long-lived client."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[tuple, None] = OrderedDict()

    def seen(self, key: tuple) -> bool:
        """True if key was seen before; remembers it either way."""
        if key in self._d:
            self._d.move_to_end(key)
            return True
        self._d[key] = None
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._d)


def pattern_text(pattern: Pattern | None) -> str:
    return " ".join(f"{on:g}/{off:g}" for on, off in pattern or ())


def _num(v: Any) -> float | None:
    try:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    except OverflowError:  # an integer beyond a float's range
        pass
    return None


class CueRules:
    """One device's decisions (module docstring). Not thread-safe: the caller serialises ``decide``.

    ``topics`` maps "alert" and "event" to the full topics they arrive on; ``can_say``/``can_buzz`` say
    which outputs this device has, so that a cue nothing could play is not queued. ``clock`` is the wall
    clock (compared with the sender's ``sent_at``), ``monotonic`` gives the cue's deadline.
    """

    def __init__(
        self,
        owner: str,
        device: str,
        max_age_s: float,
        topics: dict[str, str],
        *,
        can_say: bool,
        can_buzz: bool,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        language: str = "en",
    ) -> None:
        self.language = language  # [cue] language: the alert phrases (dsp.phrases)
        self.owner = owner
        self.device = device
        self.is_owner = owner == device
        self.max_age_s = max_age_s
        self.topics = topics
        self.can_say = can_say
        self.can_buzz = can_buzz
        self.clock = clock
        self.monotonic = monotonic
        self.counts = {"queued": 0, "duplicate": 0, "stale": 0, "silent": 0, "ignored": 0}
        self.seen = Lru(DEDUPE_KEYS)
        self._silence_told = False
        self._owner_warned: set[str] = set()

    def silent_reason(self) -> str:
        if self.owner == "none":
            return '[cue] owner = "none": no device cues this session'
        return f"[cue] owner = {self.owner!r}: the {self.owner} cues this session, not this device ({self.device})"

    def tell_silence(self) -> None:
        """Say once, at warning level, why this device stays silent."""
        if not self._silence_told:
            self._silence_told = True
            log.warning("cue: staying silent: %s", self.silent_reason())

    def decide(self, topic: str, payload: bytes | str) -> Decision:
        """What one message on ``topic`` means: a cue to play, or the reason there is none."""
        if topic not in self.topics.values():
            return self._ignore(f"unknown topic {topic}")
        try:
            msg = json_input.loads(payload)
        except ValueError:
            return self._ignore(f"malformed JSON on {topic}", logging.WARNING)
        if not isinstance(msg, dict):
            return self._ignore(f"not a JSON object on {topic}", logging.WARNING)
        problem = validate("alert" if topic == self.topics["alert"] else "event", msg)
        if problem is not None:
            return self._ignore(f"{problem} on {topic}", logging.WARNING)
        if topic == self.topics["alert"]:
            return self._alert(msg)
        return self._event(msg)

    def _ignore(self, reason: str, level: int = logging.DEBUG) -> Decision:
        self.counts["ignored"] += 1
        log.log(level, "cue: ignored: %s", reason)
        return Decision(None, reason)

    def _transit(self, msg: dict) -> float | None:
        """now - sent_at when the clocks are clearly comparable (module docstring), else None."""
        sent = _num(msg.get("sent_at"))
        if sent is None:
            return None
        d = self.clock() - sent
        if -CLOCK_SLACK_S <= d <= MAX_TRANSIT_S:
            return max(0.0, d)
        return None

    def _alert(self, msg: dict) -> Decision:
        kind = msg.get("kind")
        if not isinstance(kind, str):
            return self._ignore("alert without a kind", logging.WARNING)
        aid = msg.get("alert_id", msg.get("id"))
        key = (
            ("alert", msg.get("session"), aid) if aid is not None else ("alert", msg.get("session"), kind, msg.get("t"))
        )
        if self.seen.seen(key):
            self.counts["duplicate"] += 1
            return Decision(None, "duplicate")
        if msg.get("muted") is True:  # the runner muted the cues (a command): raised, logged, never cued
            return self._ignore(f"alert {kind} #{aid}: muted", logging.INFO)
        if msg.get("cue") is False:  # the pipeline's cue policy left it out: raised, stored, logged, never cued
            why = msg.get("cue_skipped")
            return self._ignore(f"alert {kind} #{aid}: not cued ({why if isinstance(why, str) else '?'})", logging.INFO)
        age_s = _num(msg.get("age_s"))
        transit = self._transit(msg)
        age = (max(0.0, age_s) if age_s is not None else 0.0) + (transit or 0.0)
        what = f"alert {kind}" + (" (reminder)" if msg.get("reminder") else "")
        label = f"{what} #{aid}"
        if age > self.max_age_s:
            self.counts["stale"] += 1
            how = (
                f"age_s {age_s if age_s is not None else '?'} + {transit:.1f} s in transit"
                if transit is not None
                else f"age_s {age_s if age_s is not None else '?'}, sent_at not comparable"
            )
            reason = f"stale: {age:.1f} s old ({how}), over [cue] max_age_s = {self.max_age_s:g}"
            log.warning("cue: %s not cued: %s; a cue that late helps nobody", label, reason)
            return Decision(None, reason)
        cue = Cue(
            what,
            alert_phrase(self.language, kind),
            ALERT_PATTERNS.get(kind, GENERIC_PATTERN),
            key,
            deadline=self.monotonic() + (self.max_age_s - age),
        )
        return self._to_play(cue, label)

    def _event(self, msg: dict) -> Decision:
        etype = msg.get("type")
        session = msg.get("session")
        if etype == "session":
            owner = msg.get("cue_owner")
            log.info(
                "cue: session %s %s (runner %s, cue owner %s)", session, msg.get("state"), msg.get("runner"), owner
            )
            if isinstance(owner, str) and owner != self.owner and session not in self._owner_warned:
                self._owner_warned.add(session)
                log.warning(
                    "cue: the daemon says cue owner %r for session %s but this client's [cue] owner is %r: "
                    "give both the same configuration, or the runner may hear alerts twice or not at all",
                    owner,
                    session,
                    self.owner,
                )
            return Decision(None, "session event: logged")
        if etype == "guide":
            say = msg.get("say")
            if not isinstance(say, str) or not say.strip():
                return self._ignore("guide event without text")
            key = ("guide", session, msg.get("t"), msg.get("step"), say)
            what, text, pattern = f"guide {msg.get('step')}", say, None
        elif etype == "sensor":
            state = msg.get("state")
            if state not in ("lost", "back"):
                return self._ignore(f"sensor event with state {state!r}")
            say = msg.get("say")
            text = say if isinstance(say, str) and say.strip() else phrase(self.language, f"sensor_{state}")
            key = ("sensor", session, msg.get("t"), state, text)
            what, pattern = f"sensor {state}", SYSTEM_PATTERNS[f"sensor_{state}"]
        elif etype == "calibration":
            ok = bool(msg.get("ok"))
            key = ("calibration", session, msg.get("t"), ok, None)
            what = "calibration " + ("accepted" if ok else "refused")
            text, pattern = None, SYSTEM_PATTERNS["calibration_ok" if ok else "calibration_refused"]
        else:
            return self._ignore(f"no cue for event type {etype!r}")
        if self.seen.seen(key):
            self.counts["duplicate"] += 1
            return Decision(None, "duplicate")
        transit = self._transit(msg)
        if transit is not None and transit > self.max_age_s:
            self.counts["stale"] += 1
            reason = f"stale: {transit:.1f} s in transit, over [cue] max_age_s = {self.max_age_s:g}"
            log.warning("cue: %s not cued: %s", what, reason)
            return Decision(None, reason)
        return self._to_play(Cue(what, text, pattern, key), what)

    def _to_play(self, cue: Cue, label: str) -> Decision:
        """Ownership and outputs: the cue itself, or why this device does not play it."""
        if not self.is_owner:
            self.counts["silent"] += 1
            self.tell_silence()
            desc = " + ".join(
                x
                for x in (
                    f"say {cue.text!r}" if cue.text else "",
                    f"buzz {pattern_text(cue.pattern)}" if cue.pattern else "",
                )
                if x
            )
            log.info("cue: would cue %s: %s", label, desc)
            return Decision(None, f"silent: {self.silent_reason()}")
        say = bool(cue.text and self.can_say)
        buzz = bool(cue.pattern and self.can_buzz)
        if not (say or buzz):
            return self._ignore(f"{label}: no output for it (audio off or no haptic)", logging.INFO)
        self.counts["queued"] += 1
        log.info(
            "cue: %s: %s",
            label,
            " + ".join(
                x
                for x in (f"say {cue.text!r}" if say else "", f"buzz {pattern_text(cue.pattern)}" if buzz else "")
                if x
            ),
        )
        return Decision(cue, "queued")
