"""The run's push button: a gpiozero ``Button`` on a GPIO pin, read as four gestures.

- short press → ``"pause_resume"``: reported only once the double-press window (``double_s``, default
  0.4 s) has passed after the release with no second press, so a single press answers ``double_s`` late;
- double press (two short presses, the second starting within ``double_s`` of the first's release) →
  ``"recalibrate"``, reported ``double_s`` after the second release (a third press makes it a triple);
- long press (held ``hold_s``, default 1.5 s) → ``"stop"``, reported while the button is still down
  (gpiozero's ``when_held``), so the runner hears "Stopped" without letting go. A long press is never
  also a short one, and it discards short presses pending before it.
- triple press (three short presses, each within ``double_s`` of the last release) → ``"snooze"``: the
  cues are snoozed for ``[control] button_snooze_min`` (a ``mute``), or the snooze under way ends. Three
  presses because a snooze is harmless when pressed by mistake: it is said aloud and the next triple press
  undoes it, while a stray recalibration or stop costs the run;
- four or more quick presses are no gesture: they are logged and dropped (an unintended recalibration
  while running is worse than a missed one).

Why two layers: :class:`GestureDecoder` is pure (every input carries its own time), so the timing rules are
tested exactly with made-up times; :class:`GestureButton` wires it to gpiozero's events and runs the one
timer the double-press window needs. Contact bounce is filtered twice: gpiozero's ``bounce_time`` on the
pin (lgpio's debounce on a Pi), and the decoder, which joins a release followed by a press within
``bounce_s`` into one press and drops presses shorter than ``bounce_s``: gpiozero's ``MockPin`` does not
implement ``bounce_time`` (its ``_set_bounce`` only stores the value), and pin libraries differ in what
their debounce does, so the gesture rules must not depend on it.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable

from stackcue.errors import SensorError

log = logging.getLogger("stackcue.button")

GESTURES = ("pause_resume", "stop", "recalibrate", "snooze")
#: the daemon's states (the contract's ``<prefix>/state`` values); firmware_bridge may not import service
STATES = ("idle", "calibrating", "running", "paused", "sensor_lost")
_BY_COUNT = {1: "pause_resume", 2: "recalibrate", 3: "snooze"}


class GestureDecoder:
    """Press, release and hold edges with their times → gestures; no threads, no clock of its own.

    Every method returns the gestures decided up to the time it was given (usually none, at most a
    few). :meth:`deadline` says when :meth:`tick` must next be called for a pending decision.
    """

    def __init__(self, hold_s: float = 1.5, double_s: float = 0.4, bounce_s: float = 0.02) -> None:
        # named as the settings that feed them, so the daemon can pass the message on as it is
        for name, value in (("button_hold_s", hold_s), ("button_double_s", double_s), ("bounce_s", bounce_s)):
            if not value > 0:
                raise ValueError(f"[control] {name} must be > 0 (got {value})")
        if not double_s < hold_s:
            raise ValueError(f"[control] button_double_s ({double_s}) must be shorter than button_hold_s ({hold_s})")
        if not bounce_s < double_s:
            raise ValueError(f"button bounce_s ({bounce_s}) must be shorter than button_double_s ({double_s})")
        self.hold_s, self.double_s, self.bounce_s = hold_s, double_s, bounce_s
        self._down = False
        self._down_since = 0.0  # start of the current press (bounces joined)
        self._up_since = 0.0  # the last release
        self._release_pending = False  # released less than bounce_s ago: may still be a bounce
        self._held = False  # the current press was reported as "stop": its release ends it quietly
        self._presses = 0  # short presses in the current sequence

    def press(self, t: float) -> list[str]:
        out = self._expire(t)
        if self._down:
            return out  # a repeated edge
        self._down = True
        if self._release_pending:  # released and pressed again within bounce_s: one press, bouncing
            self._release_pending = False
        else:
            self._down_since = t
        return out

    def release(self, t: float) -> list[str]:
        out = self._expire(t)
        if self._down:
            self._down = False
            self._up_since = t
            self._release_pending = True
        return out

    def held(self, t: float) -> list[str]:
        """gpiozero's ``when_held``: the button has been down ``hold_s``."""
        out = self._expire(t)
        if self._down and not self._held:
            self._held = True
            self._presses = 0
            out.append("stop")
        return out

    def tick(self, t: float) -> list[str]:
        return self._expire(t)

    def deadline(self) -> float | None:
        """When the next decision falls due (None: nothing pending until the next edge)."""
        if self._release_pending:
            return self._up_since + self.bounce_s
        if not self._down and self._presses:
            return self._up_since + self.double_s
        return None

    def _expire(self, t: float) -> list[str]:
        out: list[str] = []
        if self._release_pending and t >= self._up_since + self.bounce_s:
            self._release_pending = False
            duration = self._up_since - self._down_since
            if self._held:
                self._held = False
            elif duration >= self.hold_s:  # released just before gpiozero's hold thread fired
                self._presses = 0
                out.append("stop")
            elif duration >= self.bounce_s:
                self._presses += 1
            # else: a glitch shorter than the bounce time, not a press
        if not self._down and not self._release_pending and self._presses and t >= self._up_since + self.double_s:
            n, self._presses = self._presses, 0
            if n in _BY_COUNT:
                out.append(_BY_COUNT[n])
            else:
                log.info("button: %d quick presses are no gesture; ignored", n)
        return out


class GestureButton:
    """A push button between a GPIO pin and ground (the pin's pull-up on): gestures → ``on_gesture(name)``.

    ``on_gesture`` runs on the button's own thread, never on gpiozero's edge or hold threads, in the order
    the gestures were decided; an exception in it is logged and the button keeps working. A single short
    press is reported ``double_s`` after its release (the double-press window must pass first).
    ``pin_factory`` None is gpiozero's ``Device.pin_factory`` (lgpio on a Pi; ``MockFactory`` in tests).
    """

    def __init__(
        self,
        pin: int,
        on_gesture: Callable[[str], None],
        *,
        hold_s: float = 1.5,
        double_s: float = 0.4,
        bounce_s: float = 0.02,
        pull_up: bool = True,
        pin_factory=None,
    ) -> None:
        self.pin = pin
        self._on_gesture = on_gesture
        self._decoder = GestureDecoder(hold_s=hold_s, double_s=double_s, bounce_s=bounce_s)
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._closed = False
        self.button = _make_button(pin, pull_up, bounce_s, hold_s, pin_factory)
        self.button.when_pressed = lambda: self._feed(self._decoder.press)
        self.button.when_released = lambda: self._feed(self._decoder.release)
        self.button.when_held = lambda: self._feed(self._decoder.held)
        self._thread = threading.Thread(target=self._run, name=f"button-gpio{pin}", daemon=True)
        self._thread.start()

    def _feed(self, edge: Callable[[float], list[str]]) -> None:
        with self._cond:
            if self._closed:
                return
            self._ready.extend(edge(time.monotonic()))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._ready:
                    due = self._decoder.deadline()
                    if due is None:
                        self._cond.wait()
                    elif (left := due - time.monotonic()) > 0:
                        self._cond.wait(left)
                    else:
                        self._ready.extend(self._decoder.tick(time.monotonic()))
                if self._closed:
                    return
                gesture = self._ready.popleft()
            log.info("button: %s", gesture)
            try:
                self._on_gesture(gesture)
            except Exception:
                log.exception("button: the %s handler failed", gesture)

    def close(self) -> None:
        """Stops the thread and frees the pin; pending gestures are dropped. Safe twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2)
        try:
            self.button.close()
        except Exception:
            pass

    def __enter__(self) -> GestureButton:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        d = self._decoder
        return (
            f"button on GPIO {self.pin} (hold {d.hold_s:g} s: stop, double within {d.double_s:g} s: recalibrate, "
            "triple: snooze the cues)"
        )


def _make_button(pin: int, pull_up: bool, bounce_s: float, hold_s: float, pin_factory):
    try:
        from gpiozero import Button
        from gpiozero.exc import BadPinFactory
    except ImportError as exc:
        raise SensorError(
            f"button on GPIO {pin}: gpiozero is not installed ({exc}); set [control] button_pin = 0 to disable"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero warns about every pin library it falls back from
            return Button(pin, pull_up=pull_up, bounce_time=bounce_s, hold_time=hold_s, pin_factory=pin_factory)
    except BadPinFactory:
        raise SensorError(
            f"button on GPIO {pin}: no GPIO pin library works here (not a Raspberry Pi, or lgpio is not "
            "installed); set [control] button_pin = 0 to disable"
        ) from None
    except Exception as exc:  # pin in use, no permission, not a GPIO ...
        reason = str(exc) or type(exc).__name__
        raise SensorError(f"button on GPIO {pin}: {reason}; set [control] button_pin = 0 to disable") from None


def gesture_command(name: str, state: str) -> str:
    """The command a gesture sends, given the daemon's state (the ``state`` field of ``<prefix>/state``).

    A short press toggles: ``pause`` while calibrating, running or sensor lost (the daemon refuses the
    last with its reason), ``resume`` while paused, and ``start`` while idle, so a runner without a phone
    can begin a run. Long press is ``stop``, double press ``recalibrate``, triple press ``snooze`` (the daemon
    makes it a ``mute``, or ends the snooze under way), whatever the state: the daemon decides whether they apply.
    """
    if name not in GESTURES:
        raise ValueError(f"unknown button gesture {name!r} (one of {', '.join(GESTURES)})")
    if state not in STATES:
        raise ValueError(f"unknown daemon state {state!r} (one of {', '.join(STATES)})")
    if name != "pause_resume":
        return name
    return {"idle": "start", "paused": "resume"}.get(state, "pause")
