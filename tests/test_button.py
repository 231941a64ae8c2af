"""The push button's gestures: the timing rules on made-up times (GestureDecoder), then the whole path on
gpiozero's MockFactory pins (GestureButton: gpiozero's Button, its hold thread, the double-press timer)."""

from __future__ import annotations

import queue
import threading
import time

import pytest
from gpiozero import Button, Device
from gpiozero.pins.mock import MockFactory

from stackcue.errors import SensorError
from stackcue.firmware_bridge.button import GestureButton, GestureDecoder, gesture_command

HOLD, DOUBLE, BOUNCE = 1.5, 0.4, 0.02  # the defaults of [control] button_hold_s / button_double_s


# ---------------------------------------------------------------------- the decoder, on made-up times


class Timeline:
    """Feeds a decoder edges at given times, ticking it at each deadline in between, like GestureButton."""

    def __init__(self, **kw) -> None:
        self.d = GestureDecoder(**kw)
        self.got: list[tuple[float, str]] = []

    def _until(self, t: float) -> None:
        while (due := self.d.deadline()) is not None and due <= t:
            self.got += [(due, g) for g in self.d.tick(due)]

    def at(self, t: float, edge: str) -> Timeline:
        self._until(t)
        self.got += [(t, g) for g in getattr(self.d, edge)(t)]
        return self

    def press(self, t0: float, t1: float) -> Timeline:
        return self.at(t0, "press").at(t1, "release")

    def end(self, t: float = 100.0) -> list[tuple[float, str]]:
        self._until(t)
        return self.got


def test_short_press_waits_out_the_double_press_window():
    tl = Timeline().press(1.0, 1.2)
    assert tl.end(1.2 + DOUBLE - 1e-6) == []  # still a possible double press
    assert tl.end() == [(pytest.approx(1.2 + DOUBLE), "pause_resume")]


def test_double_press_is_recalibrate_once():
    got = Timeline().press(1.0, 1.15).press(1.15 + DOUBLE - 0.01, 1.7).end()
    assert got == [(pytest.approx(1.7 + DOUBLE), "recalibrate")]


def test_presses_further_apart_than_the_window_are_two_singles():
    got = Timeline().press(1.0, 1.1).press(1.1 + DOUBLE + 0.01, 1.7).end()
    assert [g for _, g in got] == ["pause_resume", "pause_resume"]


def test_long_press_is_stop_while_held_and_not_also_a_short_press():
    tl = Timeline().at(1.0, "press").at(1.0 + HOLD, "held")
    assert tl.got == [(1.0 + HOLD, "stop")]  # reported before the release
    assert tl.at(4.0, "release").end() == [(1.0 + HOLD, "stop")]


def test_long_press_released_before_the_hold_thread_fired_is_still_stop():
    # gpiozero's hold thread may lose the race against the release: the press's length decides then
    got = Timeline().press(1.0, 1.0 + HOLD + 0.001).end()
    assert [g for _, g in got] == ["stop"]


def test_a_long_press_discards_a_short_press_before_it():
    got = Timeline().press(1.0, 1.1).at(1.2, "press").at(1.2 + HOLD, "held").at(3.0, "release").end()
    assert [g for _, g in got] == ["stop"]


def test_triple_press_is_a_snooze():
    got = Timeline().press(1.0, 1.1).press(1.2, 1.3).press(1.4, 1.5).end(5.0)
    assert got == [(pytest.approx(1.5 + DOUBLE), "snooze")]


def test_four_presses_are_no_gesture_and_the_next_press_counts_again():
    tl = Timeline().press(1.0, 1.1).press(1.2, 1.3).press(1.4, 1.5).press(1.6, 1.7)
    assert tl.end(5.0) == []
    assert [g for _, g in tl.press(6.0, 6.1).end()] == ["pause_resume"]


def bouncy_press(tl: Timeline, t0: float, t1: float, edges: int = 4, step: float = 0.002) -> Timeline:
    """A press whose contacts chatter `edges` times at both ends, `step` apart (well inside BOUNCE)."""
    for i in range(edges):
        tl.at(t0 + 2 * i * step, "press").at(t0 + (2 * i + 1) * step, "release")
    tl.at(t0 + 2 * edges * step, "press")
    for i in range(edges):
        tl.at(t1 + 2 * i * step, "release").at(t1 + (2 * i + 1) * step, "press")
    return tl.at(t1 + 2 * edges * step, "release")


def test_contact_bounce_is_one_press():
    got = bouncy_press(Timeline(), 1.0, 1.2).end()
    assert got == [(pytest.approx(1.2 + 8 * 0.002 + DOUBLE), "pause_resume")]


def test_two_bouncing_presses_are_a_double_press():
    tl = bouncy_press(Timeline(), 1.0, 1.2)
    got = bouncy_press(tl, 1.4, 1.55).end()
    assert [g for _, g in got] == ["recalibrate"]


def test_a_glitch_shorter_than_the_bounce_time_is_not_a_press():
    assert Timeline().press(1.0, 1.0 + BOUNCE / 2).end() == []


def test_repeated_edges_change_nothing():
    got = Timeline().at(1.0, "press").at(1.05, "press").at(1.2, "release").at(1.2, "release").end()
    assert [g for _, g in got] == ["pause_resume"]


@pytest.mark.parametrize(
    "kw", [{"hold_s": 0}, {"double_s": -1}, {"bounce_s": 0.5}, {"double_s": 2.0}], ids=["hold0", "neg", "b", "d>h"]
)
def test_impossible_timing_is_refused_in_one_line(kw):
    with pytest.raises(ValueError, match=r"^(\[control\] )?(button_hold_s|button_double_s|bounce_s|button) ") as exc:
        GestureDecoder(**kw)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------- gesture → command


@pytest.mark.parametrize(
    "gesture, state, cmd",
    [
        ("pause_resume", "running", "pause"),
        ("pause_resume", "calibrating", "pause"),
        ("pause_resume", "sensor_lost", "pause"),
        ("pause_resume", "paused", "resume"),
        ("pause_resume", "idle", "start"),
        ("stop", "running", "stop"),
        ("stop", "paused", "stop"),
        ("recalibrate", "running", "recalibrate"),
        ("recalibrate", "idle", "recalibrate"),  # the daemon refuses it with its reason
        ("snooze", "running", "snooze"),  # the daemon makes it a mute (or ends the snooze)
    ],
)
def test_gesture_command(gesture, state, cmd):
    assert gesture_command(gesture, state) == cmd


@pytest.mark.parametrize("gesture, state", [("wave", "running"), ("stop", "jogging")])
def test_gesture_command_refuses_unknown_names(gesture, state):
    with pytest.raises(ValueError, match="unknown"):
        gesture_command(gesture, state)


# ---------------------------------------------------------------------- the button on gpiozero's mock pins

PIN = 17
# short enough for quick tests, long enough that a loaded machine cannot turn one gesture into another
M_HOLD, M_DOUBLE, M_BOUNCE = 0.6, 0.25, 0.01
PRESS_S = 0.05  # a deliberate short press, well over the bounce time


@pytest.fixture
def factory():
    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = saved


class Recorder:
    """on_gesture: keeps (monotonic time, gesture, button pressed at that moment)."""

    def __init__(self) -> None:
        self.got: list[tuple[float, str, bool]] = []
        self.button: GestureButton | None = None
        self.event = threading.Event()

    def __call__(self, name: str) -> None:
        self.got.append((time.monotonic(), name, bool(self.button and self.button.button.is_pressed)))
        self.event.set()

    def wait(self, timeout: float = 3.0) -> None:
        assert self.event.wait(timeout), "no gesture reported"
        self.event.clear()

    @property
    def names(self) -> list[str]:
        return [g for _, g, _ in self.got]


@pytest.fixture
def button(factory):
    rec = Recorder()
    b = GestureButton(PIN, rec, hold_s=M_HOLD, double_s=M_DOUBLE, bounce_s=M_BOUNCE)
    rec.button = b
    yield b, rec, factory.pin(PIN)
    b.close()


def tap(pin, seconds: float = PRESS_S) -> float:
    """A short press (the button pulls the pin to ground); returns a time no later than the release edge.

    Taken before ``drive_high``: the button stamps the edge inside that call, so a time taken after it may
    be later than the edge, and a window waited out exactly would then look short (CI saw 0.2489 s < 0.25 s).
    """
    pin.drive_low()
    time.sleep(seconds)
    released = time.monotonic()
    pin.drive_high()
    return released


def test_mock_short_press_reports_pause_resume_after_the_window(button):
    b, rec, pin = button
    released = tap(pin)
    rec.wait()
    assert rec.names == ["pause_resume"]
    latency = rec.got[0][0] - released
    assert latency >= M_DOUBLE  # waited out the double-press window
    time.sleep(M_DOUBLE)
    assert rec.names == ["pause_resume"]


def test_mock_double_press_reports_recalibrate(button):
    b, rec, pin = button
    tap(pin)
    time.sleep(PRESS_S)
    tap(pin)
    rec.wait()
    time.sleep(M_DOUBLE)
    assert rec.names == ["recalibrate"]


def test_mock_long_press_is_stop_while_held_and_nothing_else(button):
    b, rec, pin = button
    pressed = time.monotonic()
    pin.drive_low()
    rec.wait()
    (t, name, still_down), *_ = rec.got
    assert name == "stop" and still_down  # gpiozero's when_held: reported before the release
    assert t - pressed >= M_HOLD
    time.sleep(0.2)
    pin.drive_high()
    time.sleep(M_DOUBLE + 0.1)
    assert rec.names == ["stop"]


def test_mock_triple_press_is_a_snooze_and_four_are_ignored(button, caplog):
    b, rec, pin = button
    for _ in range(3):
        tap(pin)
        time.sleep(PRESS_S)
    time.sleep(M_DOUBLE + 0.2)
    assert rec.names == ["snooze"]
    for _ in range(4):
        tap(pin)
        time.sleep(PRESS_S)
    with caplog.at_level("INFO", logger="stackcue.button"):
        time.sleep(M_DOUBLE + 0.2)
    assert rec.names == ["snooze"]
    assert "4 quick presses are no gesture" in caplog.text


def chatter(pin, level_low: bool, edges: int = 5) -> None:
    """Contacts bouncing: `edges` fast opposite edges before the pin settles at the new level."""
    settle, other = (pin.drive_low, pin.drive_high) if level_low else (pin.drive_high, pin.drive_low)
    for _ in range(edges):
        settle()
        time.sleep(0.0005)
        other()
        time.sleep(0.0005)
    settle()


def test_mock_bouncing_contacts_are_one_gesture(button):
    b, rec, pin = button
    assert pin.bounce == M_BOUNCE  # gpiozero's bounce_time reached the pin (MockPin stores it, filters nothing)
    pin.clear_states()
    chatter(pin, level_low=True)
    time.sleep(PRESS_S)
    chatter(pin, level_low=False)
    assert len(pin.states) > 15  # the mock pin really saw every edge
    rec.wait()
    time.sleep(M_DOUBLE)
    assert rec.names == ["pause_resume"]


@pytest.mark.slow  # five gestures in real time: ~2 s
def test_mock_gestures_drive_a_command_queue_through_gesture_command(factory):
    """The wiring the daemon uses (one line): gesture → command for the state at that moment → its queue."""
    commands: queue.Queue[str] = queue.Queue()
    state = {"now": "idle"}
    after = {"start": "running", "pause": "paused", "resume": "running", "recalibrate": "calibrating", "stop": "idle"}
    with GestureButton(
        PIN,
        lambda g: commands.put(gesture_command(g, state["now"])),
        hold_s=M_HOLD,
        double_s=M_DOUBLE,
        bounce_s=M_BOUNCE,
    ):
        pin = factory.pin(PIN)
        got = []

        def next_command() -> None:
            cmd = commands.get(timeout=3)
            got.append(cmd)
            state["now"] = after[cmd]  # what the daemon would do with it

        tap(pin)
        next_command()
        tap(pin)
        next_command()
        tap(pin)
        next_command()
        tap(pin)
        time.sleep(PRESS_S)
        tap(pin)
        next_command()
        pin.drive_low()
        next_command()
        pin.drive_high()
    assert got == ["start", "pause", "resume", "recalibrate", "stop"]


def test_mock_a_failing_handler_does_not_stop_the_button(factory, caplog):
    calls: list[str] = []
    first, done = threading.Event(), threading.Event()

    def handler(name: str) -> None:
        calls.append(name)
        if len(calls) == 1:
            first.set()
            raise RuntimeError("boom")
        done.set()

    with GestureButton(PIN, handler, hold_s=M_HOLD, double_s=M_DOUBLE, bounce_s=M_BOUNCE) as b:
        pin = factory.pin(PIN)
        assert b.describe().startswith("button on GPIO 17")
        tap(pin)
        assert first.wait(3)
        tap(pin)
        assert done.wait(3)
    assert calls == ["pause_resume", "pause_resume"]
    assert "the pause_resume handler failed" in caplog.text


def test_close_frees_the_pin_and_is_safe_twice(factory):
    b = GestureButton(PIN, lambda name: None, hold_s=M_HOLD, double_s=M_DOUBLE, bounce_s=M_BOUNCE)
    b.close()
    b.close()
    assert not b._thread.is_alive()
    Button(PIN).close()  # the pin is free again


def test_a_pin_in_use_is_one_line_naming_the_pin_and_the_setting(factory):
    with Button(PIN):
        with pytest.raises(SensorError) as exc:
            GestureButton(PIN, lambda name: None)
    msg = str(exc.value)
    assert msg.startswith("button on GPIO 17: ") and msg.endswith("set [control] button_pin = 0 to disable")
    assert "\n" not in msg
