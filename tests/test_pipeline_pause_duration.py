"""A paused run's length: ``duration_s`` is the span (pauses included), ``paused_s`` the paused part of it, and
the figures shown for a session say both; the running time leaves the pause out."""

from __future__ import annotations

import pytest
from test_recalibrate import controlled, pause_controls

from stackcue.service.sessions_table import duration_text


@pytest.fixture(scope="module")
def run(sim_run):
    return sim_run(minutes=3, rate_hz=100, trunk=False, seed=12)


def test_duration_is_the_span_and_the_pause_is_apart_from_it(run):
    b = run.block
    plain = controlled(b, [])[-1]
    paused = controlled(b, pause_controls(b, 50.0, 95.0))[-1]
    span = float(b.t[-1] - b.t[0])
    assert plain["duration_s"] == pytest.approx(span, abs=0.1)
    assert paused["duration_s"] == pytest.approx(span, abs=0.1)  # the span: the pause is inside it
    assert paused["paused_s"] == pytest.approx(45.0, abs=0.1)
    # running time and time in alert leave the pause out: no more than the span less the pause
    assert paused["running_s"] <= paused["duration_s"] - paused["paused_s"] + 0.1
    assert paused["running_s"] < plain["running_s"] - 40.0
    for kind, s in paused["time_in_alert_s"].items():
        assert s <= paused["duration_s"] - paused["paused_s"] + 0.1, kind
    assert duration_text(paused["duration_s"], paused) == f"{_clock(paused['duration_s'])} (0:45.0 paused)"
    assert duration_text(plain["duration_s"], plain) == _clock(plain["duration_s"])


def _clock(s: float) -> str:
    from stackcue.service.report_text import clock

    return clock(s)


@pytest.mark.parametrize(
    "duration, summary, text",
    [
        (2530.0, {"paused_s": 185.0}, "42:10.0 (3:05.0 paused)"),
        (2530.0, {"paused_s": 0.0}, "42:10.0"),
        (2530.0, None, "42:10.0"),  # an unclean session has no summary
        (2530.0, {"paused_s": "x"}, "42:10.0"),  # a damaged summary shows the span only
        (None, {"paused_s": 5.0}, "-"),
    ],
)
def test_the_sessions_page_figure(duration, summary, text):
    assert duration_text(duration, summary) == text


def test_the_cli_sessions_table_shows_the_paused_part(tmp_path):
    """The phone's list said "(3:05.0 paused)"; `stackcue sessions` showed the span alone."""
    from stackcue.service.logbook import Logbook
    from stackcue.service.sessions_table import sessions_table

    book = tmp_path / "logbook.sqlite"
    with Logbook(book) as b:
        b.conn.execute(
            "INSERT INTO sessions (id, runner, started_epoch, ended_how, summary, duration_s) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("20261205T080000Z-aaaaaa", "ana", 1796457600.0, "clean", '{"paused_s": 185.0}', 2530.0),
        )
    with Logbook(book, readonly=True) as b:
        assert "42:10.0 (3:05.0 paused)" in sessions_table(b)
