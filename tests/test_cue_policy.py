"""Which alerts are cued (issue 17): faded feedback over sessions, the ceiling, snooze and "improving".

The rule (dsp/fading.py) over session summaries and over simulated sessions through the real pipeline; the
cue marks (dsp/cue_policy.py) through the real pipeline with a runner who stays out of posture; the logbook's
stored plan (schema v5) on real SQLite files; the cue clients' rule.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stackcue.dsp.cue_policy import CEILING_WINDOW_S, CuePlan, CuePolicy
from stackcue.dsp.fading import PastSession, alert_fraction, decide_stage
from stackcue.dsp.params import AlertParams, CueParams, PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline, analyse
from stackcue.errors import ConfigError
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate
from stackcue.service.config import load_config
from stackcue.service.cue_rules import CueRules
from stackcue.service.logbook import MIGRATIONS, SCHEMA_VERSION, Logbook

P = CueParams()
LONG = 20 * 60.0  # s of running: every session here counts (min_running_min is 10)


def stages_over(fractions: list[float], p: CueParams = P, running_s: float = LONG) -> list[int]:
    """The stage of each session of a series (decided from the ones before it), and of the next one."""
    hist = [PastSession(f, running_s) for f in fractions]
    return [decide_stage(hist[:k], p).stage for k in range(len(hist) + 1)]


# ---------------------------------------------------------------------- the fading rule, over summaries


def test_stages_fade_as_time_in_alert_improves_and_come_back_when_it_regresses():
    # 30 % in alert, then four good sessions (under 10 %), one more good, then worse and worse
    series = [0.30, 0.08, 0.05, 0.06, 0.04, 0.03, 0.25, 0.35, 0.40]
    assert stages_over(series) == [1, 1, 1, 2, 2, 3, 3, 2, 1, 1]
    d = decide_stage([PastSession(f, LONG) for f in series[:5]], P)
    assert d.stage == 3 and "faded to stage 3" in d.reason and [s for _, s in d.steps] == [1, 1, 2, 2, 3]
    assert "back to stage 2" in decide_stage([PastSession(f, LONG) for f in series[:7]], P).reason


def test_a_session_in_between_keeps_the_stage_and_restarts_the_count():
    # good, in between (15 %: neither under 10 % nor at 20 %), good: not two good ones in a row
    assert stages_over([0.05, 0.15, 0.05]) == [1, 1, 1, 1]
    assert stages_over([0.05, 0.05, 0.15, 0.05, 0.05]) == [1, 1, 2, 2, 2, 3]


def test_short_sessions_and_unknown_fractions_count_for_nothing():
    hist = [PastSession(0.01, 5 * 60.0), PastSession(None, LONG), PastSession(0.02, 9.9 * 60.0)]
    assert decide_stage(hist, P).stage == 1
    hist += [PastSession(0.01, LONG), PastSession(0.01, LONG)]
    assert decide_stage(hist, P).stage == 2


def test_fading_off_cues_every_alert_whatever_the_history():
    good = [PastSession(0.0, LONG)] * 6
    assert decide_stage(good, P).stage == 3
    assert decide_stage(good, replace(P, fading=False)).stage == 1
    assert decide_stage(good, P, fading=False).reason == "fading is off: every alert cued"


def test_the_rule_follows_its_settings():
    p = replace(P, fade_below_pct=20.0, fade_after_sessions=1, regress_by_pct=5.0)
    assert stages_over([0.15, 0.15, 0.26, 0.22], p) == [1, 2, 3, 2, 2]


def test_alert_fraction_joins_overlapping_kinds_and_leaves_gaps_out():
    periods = [("anterior_tilt", 100.0, 200.0), ("ribs_behind_pelvis", 150.0, 250.0), ("pelvic_drop", 300.0, None)]
    # union: 100..250 (150 s) and 300..400 (100 s), less the gap 120..130 (10 s): 240 s of 800 s running
    assert alert_fraction(periods, 400.0, [(120.0, 130.0)], 800.0) == pytest.approx(0.3)
    assert alert_fraction([], 400.0, [], 0.0) is None


# ---------------------------------------------------------------------- simulated sessions through the pipeline

SIM_MIN = 12.0


def session_params(offset_deg: float, **cue) -> PipelineParams:
    """A runner whose pelvis is ``-offset_deg`` from the coach's target: 0 stacked, -5.5 out of posture all run
    (the simulated runner tilts ~2° more running than standing: 1.3-2.7° beyond the 6° threshold)."""
    return PipelineParams(reference=ReferenceParams(mode="targets", pelvic_tilt_deg=offset_deg), cue=replace(P, **cue))


@pytest.fixture(scope="module")
def steady_run():
    """A 12-minute run without posture episodes (seed 11, 100 Hz): the posture is set by the reference."""
    return simulate(SimParams(minutes=SIM_MIN, seed=11, rate_hz=100, episodes=False))


@pytest.mark.slow
def test_simulated_sessions_that_improve_and_then_regress(steady_run):
    """Each session is run through the real pipeline at the stage its predecessors give; its own summary's
    alert_fraction is the next one's history. Out of posture, four stacked runs, then out again."""
    offsets = [-5.5, 0.0, 0.0, 0.0, 0.0, -5.5, -5.5, -5.5]
    history: list[PastSession] = []
    stages, summaries, alerts = [], [], []
    for off in offsets:
        stage = decide_stage(history, P).stage
        events = analyse([steady_run.block], session_params(off), None) if stage == 1 else None
        if events is None:
            pipe = Pipeline(session_params(off), cue_plan=CuePlan(stage=stage))
            events = pipe.feed(steady_run.block) + pipe.finish()
        summary = events[-1]
        stages.append(stage)
        summaries.append(summary["cues"])
        alerts.append([e for e in events if e["type"] == "alert"])
        history.append(PastSession(summary["cues"]["alert_fraction"], summary["running_s"]))
    fractions = [s["alert_fraction"] for s in summaries]
    assert all(f > 0.9 for f, o in zip(fractions, offsets, strict=True) if o < 0), fractions
    assert all(f < 0.02 for f, o in zip(fractions, offsets, strict=True) if o == 0), fractions
    assert stages == [1, 1, 1, 2, 2, 3, 2, 1]
    assert [s["stage"] for s in summaries] == stages
    # stage 3, out of posture by 1.3-2.7° beyond the threshold (less than the 3° band): nothing cued, for fading
    s3 = alerts[5]
    assert s3 and all(a["cue"] is False and a["cue_skipped"] == "fading" for a in s3)
    assert summaries[5]["not_cued"]["fading"] == len(s3) and summaries[5]["given"] == 0
    # stage 2: every second alert that reached the fading check is cued
    s2 = [a for a in alerts[6] if a.get("cue_skipped") not in ("improving", "snoozed")]
    assert len(s2) >= 4 and [a["cue"] for a in s2] == [i % 2 == 0 for i in range(len(s2))]
    # stage 1 (the first and the last session): every alert cued, the same alerts raised at every stage
    assert all(a["cue"] for a in alerts[0]) and all(a["cue"] for a in alerts[7])
    assert [(a["kind"], a["t"]) for a in alerts[5]] == [(a["kind"], a["t"]) for a in alerts[0]]


# ---------------------------------------------------------------------- ceiling, snooze, improving

OUT = -8.0  # the pelvis sits ~8° anterior of the coach's target all run: always in alert


@pytest.fixture(scope="module")
def long_run():
    """25 minutes of running (episodes on: the drift grows and shrinks over a constant offset)."""
    return simulate(SimParams(minutes=25, seed=3, rate_hz=100, gaps=False, stop=False))


def out_of_posture(**cue) -> PipelineParams:
    p = session_params(OUT, **cue)
    return replace(p, alerts=AlertParams(remind_every_s=30.0))


def cued_windows(alerts: list[dict]) -> int:
    """The most cues given in any window of CEILING_WINDOW_S (ending at a cue)."""
    ts = [a["decided_t"] for a in alerts if a["cue"]]
    return max((sum(1 for u in ts if t - CEILING_WINDOW_S < u <= t) for t in ts), default=0)


@pytest.mark.slow
def test_the_ceiling_holds_for_a_runner_who_stays_out_of_posture(long_run):
    events = analyse([long_run.block], out_of_posture(max_per_10min=4))
    alerts = [e for e in events if e["type"] == "alert"]
    cues = events[-1]["cues"]
    assert len(alerts) >= 40  # reminders every 30 s for 25 minutes: all raised and kept
    assert cued_windows(alerts) == 4
    assert cues["not_cued"]["ceiling"] >= 20 and cues["given"] + sum(cues["not_cued"].values()) == len(alerts)
    assert all(a["cue"] is (a.get("cue_skipped") is None) for a in alerts)
    # without a ceiling every alert not "improving" is cued: the marks are the policy's, not the detector's
    free = [e for e in analyse([long_run.block], out_of_posture(max_per_10min=0)) if e["type"] == "alert"]
    assert [(a["kind"], a["t"]) for a in free] == [(a["kind"], a["t"]) for a in alerts]
    assert cued_windows(free) > 4 and not any(a.get("cue_skipped") == "ceiling" for a in free)


def feed_in_pieces(pipe: Pipeline, block, cut_times: list[float], at_cut) -> list[dict]:
    """Feed ``block`` cut at ``cut_times``; ``at_cut(i, pipe)`` runs between pieces and its events are kept."""
    t = block.t
    edges = [0, *[int(np.searchsorted(t, c)) for c in cut_times], len(t)]
    out: list[dict] = []
    for i in range(len(edges) - 1):
        out += pipe.feed(block.slice(edges[i], edges[i + 1]))
        if i < len(cut_times):
            out += at_cut(i, pipe)
    return out + pipe.finish()


@pytest.mark.slow
def test_snooze_holds_for_a_runner_who_stays_out_of_posture_and_a_replay_marks_the_same(long_run):
    t0 = float(long_run.block.t[0])
    snooze_at, snooze_s, back_at = t0 + 400.0, 300.0, t0 + 1000.0
    params = out_of_posture(max_per_10min=60)

    def controls(i: int, pipe: Pipeline) -> list[dict]:
        return pipe.snooze(None, snooze_s, "button") if i == 0 else pipe.snooze(None, 0.0, "phone")

    live = feed_in_pieces(Pipeline(params), long_run.block, [snooze_at, back_at - 200.0], controls)
    snoozes = [e for e in live if e["type"] == "snooze"]
    assert [(e["from"], e["minutes"]) for e in snoozes] == [("button", 5.0), ("phone", 0.0)]
    start, until = snoozes[0]["t"], snoozes[0]["until_t"]
    assert start < snooze_at + 1.0 and until == pytest.approx(start + snooze_s, abs=1e-3)
    alerts = [e for e in live if e["type"] == "alert"]
    inside = [a for a in alerts if start < a["decided_t"] < until]
    after = [a for a in alerts if a["decided_t"] > until]
    assert len(inside) >= 8 and all(a["cue"] is False and a["cue_skipped"] == "snoozed" for a in inside)
    assert after and any(a["cue"] for a in after) and not any(a.get("cue_skipped") == "snoozed" for a in after)
    assert not any(a.get("cue_skipped") == "snoozed" for a in alerts if a["decided_t"] <= start)
    assert live[-1]["cues"]["not_cued"]["snoozed"] == len(inside)
    # the replay of the stored session: the same snoozes, as (from, until) sample times, mark the same alerts
    plan = CuePlan(stage=1, snoozes=tuple((e["t"], e["until_t"]) for e in snoozes))
    replay = analyse_with_plan(long_run.block, params, plan)
    assert [(a["id"], a["cue"], a.get("cue_skipped")) for a in replay if a["type"] == "alert"] == [
        (a["id"], a["cue"], a.get("cue_skipped")) for a in alerts
    ]


def analyse_with_plan(block, params: PipelineParams, plan: CuePlan) -> list[dict]:
    pipe = Pipeline(params, cue_plan=plan)
    return pipe.feed(block) + pipe.finish()


def test_a_snooze_before_the_first_sample_starts_there(long_run):
    pipe = Pipeline(out_of_posture())
    assert pipe.snooze(None, 120.0, "mute") == []
    first = long_run.block.slice(0, 5000)
    events = pipe.feed(first)
    snooze = [e for e in events if e["type"] == "snooze"]
    assert snooze == [
        {
            "type": "snooze",
            "t": round(float(first.t[0]), 4),
            "until_t": round(float(first.t[0]) + 120.0, 4),
            "minutes": 2.0,
            "from": "mute",
        }
    ]


def alert(aid: int, t: float, value: float = 9.0, reminder: bool = False, kind: str = "anterior_tilt") -> dict:
    return {
        "type": "alert",
        "t": t,
        "decided_t": t + 2.0,
        "kind": kind,
        "value_deg": value,
        "threshold_deg": 6.0,
        "id": aid,
        "reminder": reminder,
    }


def test_a_reminder_is_not_cued_while_the_drift_is_already_shrinking():
    pol = CuePolicy(CueParams(max_per_10min=0))
    rng = np.random.default_rng(1)
    for x in 10.0 + rng.normal(0, 0.3, 8):  # steady, 4° over: a reminder is cued
        pol.observe({"pelvic_tilt_deg": x})
    assert pol.mark(alert(1, 100.0, reminder=True))["cue"] is True
    for x in np.linspace(10.0, 7.5, 8):  # falling back towards the reference: 2.5° over 8 strides
        pol.observe({"pelvic_tilt_deg": x})
    a = pol.mark(alert(2, 130.0, reminder=True))
    assert a["cue"] is False and a["cue_skipped"] == "improving"
    assert pol.mark(alert(3, 131.0, reminder=False))["cue"] is True  # a new drift's first alert is always told
    for x in np.linspace(7.5, 10.0, 8):  # growing again
        pol.observe({"pelvic_tilt_deg": x})
    assert pol.mark(alert(4, 160.0, reminder=True))["cue"] is True
    # for a kind below its reference (posterior tilt, sign -1) shrinking means rising
    for x in np.linspace(-10.0, -7.5, 8):
        pol.observe({"pelvic_tilt_deg": x})
    assert pol.mark(alert(5, 190.0, value=-10.0, reminder=True, kind="posterior_tilt"))["cue_skipped"] == "improving"


def test_stage_two_cues_every_second_alert_and_stage_three_only_beyond_the_band():
    two = CuePolicy(CueParams(max_per_10min=0), CuePlan(stage=2))
    assert [two.mark(alert(i, 100.0 * i))["cue"] for i in range(1, 6)] == [True, False, True, False, True]
    three = CuePolicy(CueParams(max_per_10min=0, wide_band_deg=3.0), CuePlan(stage=3))
    marks = [three.mark(alert(i, 100.0 * i, value=v)) for i, v in enumerate((8.9, 9.0, 12.0, 6.5), 1)]
    assert [(a["cue"], a.get("cue_skipped")) for a in marks] == [
        (False, "fading"),
        (True, None),
        (True, None),
        (False, "fading"),
    ]
    with pytest.raises(ValueError, match="fading stage 4"):
        CuePolicy(P, CuePlan(stage=4))


def test_snoozed_wins_over_the_other_reasons_and_nothing_is_counted_twice():
    pol = CuePolicy(CueParams(max_per_10min=1), CuePlan(stage=2, snoozes=((50.0, 400.0),)))
    marks = [pol.mark(alert(i, 100.0 * i)).get("cue_skipped") for i in range(1, 7)]
    # 1-3 snoozed (decided 102..302 < 400); then stage 2 cues #4, skips #5; #6 would be cued but the ceiling
    assert marks == ["snoozed", "snoozed", "snoozed", None, "fading", "ceiling"]
    assert pol.summary(0.5) == {
        "stage": 2,
        "fading": True,
        "max_per_10min": 1,
        "given": 1,
        "not_cued": {"snoozed": 3, "improving": 0, "fading": 1, "ceiling": 1},
        "alert_fraction": 0.5,
    }


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "text, msg",
    [
        ("[cue]\nmax_per_10min = 100\n", "cue.max_per_10min = 100 is out of range 0..60"),
        ("[cue]\nfading = 'yes'\n", "cue.fading must be true or false, got 'yes'"),
        ("[cue]\nwide_band_deg = -1\n", "cue.wide_band_deg = -1.0 is out of range 0..30"),
        ("[control]\nbutton_snooze_min = 0\n", "control.button_snooze_min = 0.0 is out of range 1..240"),
    ],
)
def test_a_bad_cue_policy_key_is_one_line_naming_it(tmp_path, text, msg):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(exc.value) == f"{p}: {msg}"


def test_the_cue_keys_reach_the_pipeline_and_the_coach_may_set_fading(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[cue]\nfading = false\nmax_per_10min = 3\n")
    cue = load_config(p).pipeline.cue
    assert (cue.fading, cue.max_per_10min) == (False, 3)
    from stackcue.service.targets import validate_targets

    assert validate_targets({"cue": {"fading": False, "max_per_10min": 2}}) == {
        "cue": {"fading": False, "max_per_10min": 2}
    }


# ---------------------------------------------------------------------- the cue clients


def test_the_cue_rules_cue_only_alerts_not_marked_false(caplog):
    rules = CueRules("pi", "pi", 10.0, {"alert": "a", "event": "e"}, can_say=True, can_buzz=True)
    base = {"type": "alert", "t": 1.0, "kind": "anterior_tilt", "session": "s", "age_s": 0.0}
    with caplog.at_level("INFO"):
        no = rules.decide("a", json.dumps({**base, "alert_id": 1, "cue": False, "cue_skipped": "ceiling"}))
    assert no.cue is None and "not cued (ceiling)" in no.reason
    assert rules.decide("a", json.dumps({**base, "alert_id": 2, "cue": True})).cue is not None
    assert rules.decide("a", json.dumps({**base, "alert_id": 3})).cue is not None  # an older Pi: no mark


# ---------------------------------------------------------------------- the logbook (schema v5)


def test_the_stage_is_stored_with_the_session_and_an_older_logbook_is_migrated(tmp_path):
    path = tmp_path / "v4.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for v in range(4):
        MIGRATIONS[v](conn)
    conn.execute("PRAGMA user_version = 4")
    summ = {"type": "summary", "running_s": 1200.0, "time_in_alert_s": {"anterior_tilt": 240.0, "pelvic_drop": 60.0}}
    conn.execute(
        "INSERT INTO sessions (id, runner, started_epoch, summary, ended_how) VALUES ('A', 'ann', 1.7e9, ?, 'clean')",
        (json.dumps(summ),),
    )
    conn.close()
    with Logbook(path) as book:
        assert SCHEMA_VERSION == 5 and book.conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert book.cue_plan("A") is None  # ran before faded feedback: stage 1
        new = {**summ, "cues": {"alert_fraction": 0.05}}
        book.conn.execute(
            "INSERT INTO sessions (id, runner, started_epoch, summary) VALUES ('B', 'ann', 1.8e9, ?)",
            (json.dumps(new),),
        )
        book.conn.execute("INSERT INTO sessions (id, runner, started_epoch) VALUES ('C', 'ann', 1.9e9)")  # no summary
        # an older summary's time in alert summed over the kinds (300 s of 1200 s); a newer one's own fraction
        assert book.fading_history("ann") == [
            {"id": "A", "alert_fraction": 0.25, "running_s": 1200.0},
            {"id": "B", "alert_fraction": 0.05, "running_s": 1200.0},
        ]
        assert book.fading_history("bob") == []
        d = decide_stage([PastSession(0.05, LONG)] * 2, P)
        book.set_cue_plan("C", "ann", d.as_dict(), 1.9e9)
        plan = book.cue_plan("C")
        assert plan["stage"] == 2 and plan["fading"] is True and "faded to stage 2" in plan["reason"]
        book.delete_session("C")
        assert book.cue_plan("C") is None
        assert book.conn.execute("SELECT count(*) FROM cue_plans").fetchone()[0] == 0


def test_a_damaged_stored_stage_reads_as_none_with_a_warning(tmp_path, caplog):
    with Logbook(tmp_path / "l.sqlite") as book:
        book.conn.execute("INSERT INTO cue_plans (session, stage, fading, basis) VALUES ('X', 2, 1, 'not json')")
        with caplog.at_level("WARNING"):
            assert book.cue_plan("X") == {"stage": 2, "fading": True}
        assert "column basis" in caplog.text
        with pytest.raises(sqlite3.IntegrityError):  # the schema refuses a stage outside 1..3
            book.conn.execute("INSERT INTO cue_plans (session, stage, fading) VALUES ('Y', 7, 1)")


ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- analyze's summary and the report


def test_analyze_summary_and_the_report_of_an_imported_session_say_the_cues(sim_csv, tmp_path):
    """An imported recording ran at stage 1 with no stored stage: the report says so, shows the cues per
    10 minutes and that no distance is measured; analyze's summary marks the alerts not cued."""
    import io
    import re

    from stackcue.service.report_render import build_report
    from stackcue.service.report_text import human_summary
    from stackcue.service.session_store import store_recording

    csv = sim_csv(minutes=8, rate_hz=100, seed=5)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text("[cue]\nmax_per_10min = 1\n")
    cfg = load_config(cfg_path)
    book_path = tmp_path / "logbook.sqlite"
    sid, events = store_recording(
        csv, cfg, out=io.StringIO(), err=io.StringIO(), progress=False, logbook=str(book_path)
    )
    alerts = [e for e in events if e["type"] == "alert"]
    assert len(alerts) >= 2 and any(a["cue"] is False for a in alerts)
    text = human_summary(events, "run.csv", {})
    given = sum(1 for a in alerts if a["cue"])
    assert f"Cues: {given} given, {len(alerts) - given} not cued (ceiling {len(alerts) - given})" in text
    assert "(not cued: ceiling)" in text
    with Logbook(book_path, readonly=True) as book:
        assert book.cue_plan(sid) is None
        page = re.sub(r"<[^>]+>", "", build_report(book, sid))
        running = book.session(sid)["summary"]["running_s"]
    assert f"Cues given: {given} ({600 * given / running:.1f} per 10 minutes of running; ceiling 1); per km: no" in page
    assert "Faded feedback: stage 1 of 3, every alert cued (as its summary says)." in page


# ---------------------------------------------------------------------- the daemon's side


def test_the_buttons_triple_press_snoozes_and_the_next_one_ends_the_snooze(tmp_path):
    import time

    from stackcue.service.controls import Controls
    from stackcue.service.run_daemon import Daemon

    p = tmp_path / "c.toml"
    p.write_text(f'[logbook]\npath = "{tmp_path / "l.sqlite"}"\n[mqtt]\nport = 1\n[control]\nbutton_snooze_min = 7\n')
    daemon = Daemon(load_config(p), open_source=lambda: None, replay=False)
    try:
        queued = Controls().submit("snooze", "button")  # the button's gesture name, as GestureButton hands it on
        assert queued.cmd == "snooze" and queued.source == "button"
        daemon.apply(queued)
        assert 7 * 60 - 5 < daemon.muted_until - time.time() <= 7 * 60 + 0.01  # rounded to the ms
        assert daemon.tracker.fields["last_command"]["cmd"] == "mute"
        daemon.apply(Controls().submit("snooze", "button"))
        assert daemon.muted_until is None
        # the stage of a new session from the logbook's earlier sessions of this runner (none: stage 1)
        assert daemon._fading(daemon.cfg).stage == 1
        summ = {"type": "summary", "running_s": 1200.0, "cues": {"alert_fraction": 0.01}}
        for i in range(2):
            daemon.book.conn.execute(
                "INSERT INTO sessions (id, runner, started_epoch, summary) VALUES (?, 'runner1', ?, ?)",
                (f"S{i}", 1.7e9 + i, json.dumps(summ)),
            )
        assert daemon._fading(daemon.cfg).stage == 2
    finally:
        daemon.book.close()
