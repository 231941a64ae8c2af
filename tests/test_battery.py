"""firmware_bridge/battery.py over a fake /sys/class/power_supply tree, and the state's battery_pct from it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stackcue.firmware_bridge.battery import Battery, find_supply
from stackcue.service.state import StateTracker


def supply(root: Path, name: str, kind: str, capacity: str | None = None, status: str = "Discharging") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "type").write_text(kind + "\n")
    (d / "status").write_text(status + "\n")
    if capacity is not None:
        (d / "capacity").write_text(capacity + "\n")
    return d


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_auto_finds_the_battery_among_the_supplies_and_reads_it_at_most_every_30_s(tmp_path):
    supply(tmp_path, "AC", "Mains")
    supply(tmp_path, "usb", "USB", "100")  # a USB supply's capacity is not the battery's
    bat = supply(tmp_path, "max17040_battery", "Battery", "83")
    assert find_supply(tmp_path) == bat
    clock = Clock()
    b = Battery("auto", root=tmp_path, clock=clock)
    assert b.level() == 83
    (bat / "capacity").write_text("82\n")
    clock.t = 29.0
    assert b.level() == 83  # not read again yet
    clock.t = 30.0
    assert b.level() == 82


def test_no_battery_an_empty_path_or_no_power_supply_class_is_none(tmp_path):
    supply(tmp_path, "AC", "Mains")
    assert Battery("auto", root=tmp_path).level() is None
    assert Battery("auto", root=tmp_path / "absent").level() is None
    supply(tmp_path, "BAT0", "Battery", "50")
    assert Battery("", root=tmp_path).level() is None


def test_an_explicit_directory_and_a_ups(tmp_path):
    d = supply(tmp_path, "ups", "UPS", "100", status="Full")
    assert Battery(str(d), root=tmp_path / "elsewhere").level() == 100
    assert Battery("auto", root=tmp_path).level() == 100


@pytest.mark.parametrize(
    "capacity, words",
    [("abc", "holds 'abc', not a percentage"), ("101", "holds 101, outside 0..100"), ("-1", "outside 0..100")],
)
def test_a_bad_value_is_none_with_one_log_line(tmp_path, caplog, capacity, words):
    supply(tmp_path, "BAT0", "Battery", capacity)
    clock = Clock()
    b = Battery("auto", root=tmp_path, clock=clock)
    with caplog.at_level(logging.WARNING, logger="stackcue.battery"):
        for i in range(3):
            clock.t = 30.0 * i
            assert b.level() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and words in lines[0], lines


def test_an_unreadable_capacity_is_none_with_one_log_line_and_a_later_good_value_is_read(tmp_path, caplog):
    d = supply(tmp_path, "BAT0", "Battery")
    (d / "capacity").mkdir()  # reading it fails (IsADirectoryError), as a gauge's I/O error would
    clock = Clock()
    b = Battery(str(d), clock=clock)
    with caplog.at_level(logging.WARNING, logger="stackcue.battery"):
        assert b.level() is None
        clock.t = 30.0
        assert b.level() is None
    assert len(caplog.records) == 1 and "cannot read" in caplog.records[0].getMessage()
    (d / "capacity").rmdir()
    (d / "capacity").write_text("64\n")
    clock.t = 60.0
    assert b.level() == 64


def test_the_state_carries_the_level_and_a_change_is_published_at_once(tmp_path):
    bat = supply(tmp_path, "BAT0", "Battery", "77")
    clock = Clock()
    tracker = StateTracker(clock=clock, battery=Battery("auto", root=tmp_path, clock=clock).level)
    first = tracker.update()
    assert first is not None and first["battery_pct"] == 77
    assert tracker.update() is None  # idle, nothing changed
    (bat / "capacity").write_text("76\n")
    clock.t = 31.0
    p = tracker.update()
    assert p is not None and p["battery_pct"] == 76
    assert StateTracker().payload()["battery_pct"] is None  # no battery source: null as before
