"""Live and offline share one path: any split of a recording into blocks gives the same events."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_recalibrate import RECAL, controlled

from stackcue.dsp.pipeline import Pipeline


@pytest.fixture(scope="module")
def run(sim_run):
    # short, but with the routine, running, a stop, gaps, trunk dropouts and an episode
    return sim_run(minutes=4, rate_hz=200, trunk=True, seed=31)


@pytest.fixture(scope="module")
def whole(run):
    pipe = Pipeline()
    return pipe.feed(run.block) + pipe.finish()


def split_events(block, sizes):
    pipe = Pipeline()
    out, i, k = [], 0, 0
    while i < len(block):
        n = sizes[k % len(sizes)]
        out += pipe.feed(block.slice(i, i + n))
        i, k = i + n, k + 1
    return out + pipe.finish()


def dumps(events):
    return [json.dumps(e, sort_keys=True) for e in events]


def test_the_run_exercises_what_matters(whole):
    types = {e["type"] for e in whole}
    assert {"calibration", "stride", "alert", "clear", "gap", "summary"} <= types
    assert any(not e["steady"] for e in whole if e["type"] == "stride")


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=8).filter(any))
def test_random_block_sizes_give_the_same_events(run, whole, sizes):
    assert dumps(split_events(run.block, sizes)) == dumps(whole)


@pytest.mark.parametrize("n", [pytest.param(7, marks=pytest.mark.slow), 64, 65, 4096])
def test_fixed_block_sizes_give_the_same_events(run, whole, n):
    assert dumps(split_events(run.block, [n])) == dumps(whole)


def test_one_sample_at_a_time(sim_run):
    short = sim_run(minutes=0.6, rate_hz=100, trunk=True, seed=32)
    pipe = Pipeline()
    ref = pipe.feed(short.block) + pipe.finish()
    assert any(e["type"] == "stride" for e in ref)
    assert dumps(split_events(short.block, [1])) == dumps(ref)


def test_events_come_in_time_order(whole):
    def key(e):
        return e.get("t", e.get("t_start"))

    times = [key(e) for e in whole if e["type"] != "summary"]
    assert times == sorted(times)
    assert np.all(np.diff([e["t_start"] for e in whole if e["type"] == "stride"]) > 0)


@pytest.fixture(scope="module")
def paused_run(sim_run):
    """A second routine with a re-strap, and pauses: in the period probe, while running, while re-calibrating."""
    run = sim_run(**RECAL)
    b, r = run.block, run.info["recalibration"]

    def i(t):
        return int(np.searchsorted(b.t, t))

    def pause(t0, t1):
        return [(i(t0), "pause", float(b.t[i(t0) - 1])), (i(t1), "resume", float(b.t[i(t1)]))]

    k = i(r["t_stop"] + 8.0)
    controls = [
        *pause(0.3, 0.5),
        *pause(50.0, 56.0),
        (k, "recalibrate", float(b.t[k - 1])),
        *pause(r["t_stop"] + 9.0, r["t_stop"] + 10.0),
        *pause(195.0, 230.0),  # inside the drift, and longer than the quiet time
    ]
    whole = controlled(b, controls)
    types = [e["type"] for e in whole]
    assert types.count("pause") == 8 and [e["segment"] for e in whole if e["type"] == "calibration"] == [0, 1]
    assert any(e.get("reason") == "pause" for e in whole) and any(e["type"] == "gap" for e in whole)
    return b, controls, whole


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([1], marks=pytest.mark.slow),
        pytest.param([7], marks=pytest.mark.slow),
        [64],
        [65],
        [4096],
        [3, 900, 17],
    ],
)
def test_pauses_and_recalibration_give_the_same_events_for_any_split(paused_run, sizes):
    block, controls, whole = paused_run
    if sizes == [1]:  # a sample at a time: the first minute
        end = int(np.searchsorted(block.t, 60.0))
        short = block.slice(0, end)
        first = [c for c in controls if c[0] < end]
        assert dumps(controlled(short, first, sizes)) == dumps(controlled(short, first))
        return
    assert dumps(controlled(block, controls, sizes)) == dumps(whole)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=6))
def test_random_splits_with_pauses_and_recalibration(paused_run, sizes):
    block, controls, whole = paused_run
    assert dumps(controlled(block, controls, sizes)) == dumps(whole)


@pytest.mark.parametrize(("ntaps", "fs"), [(15, 50.0), (61, 200.0), (301, 1000.0)])
def test_step_filter_equals_scipy(ntaps, fs):
    """The live path's FIR (written out to spare the Pi scipy.signal's memory) is scipy's firwin + lfilter."""
    from scipy.signal import firwin, lfilter, lfilter_zi

    from stackcue.dsp.gait import fir_stream, lowpass_fir

    b = lowpass_fir(ntaps, 6.0, fs)
    np.testing.assert_allclose(b, firwin(ntaps, 6.0, fs=fs), rtol=0, atol=1e-15)
    x = np.random.default_rng(1).normal(1.0, 0.5, 5000)
    ref, _ = lfilter(b, 1.0, x, zi=lfilter_zi(b, 1.0) * x[0])
    hist = np.full(ntaps - 1, x[0])
    np.testing.assert_allclose(fir_stream(b, hist, x), ref, rtol=0, atol=1e-12)
