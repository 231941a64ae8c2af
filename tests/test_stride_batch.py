"""Issue 18: the strides of a block are valued in one batch, live and offline alike.

The batch must give each stride exactly what it gives alone (the block-split property rests on it), agree with
the per-stride formulas it replaced (np.polyfit, np.linalg.norm, einsum, one stride at a time) to rounding,
and really be one batch: a 4-minute block is valued in a handful of calls, not one per stride.
"""

from __future__ import annotations

import io
import json
import math
import random

import numpy as np
import pytest

from stackcue.dsp import pipeline as pipeline_module
from stackcue.dsp.pipeline import Pipeline
from stackcue.dsp.rotations import matrix_from_quat
from stackcue.dsp.stats import median
from stackcue.dsp.stride import segment_stride, segment_strides, time_weights

FIELDS = ("tilt", "obliquity", "heading", "tilt_mean", "forward_axis_error_deg", "up_error_deg", "fore_aft_sin")


def _window(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stride-like window: jittered times, a wandering gyro orientation, a two-step force pattern."""
    t = 3.0 + np.cumsum(0.005 + rng.normal(0, 2e-4, n))
    ang = np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0) + rng.normal(0, 0.5, 3)
    a = np.linalg.norm(ang, axis=1)
    q = np.column_stack([np.cos(a / 2), np.sin(a / 2)[:, None] * ang / a[:, None]])
    ph = 2 * np.pi * 2 * np.arange(n) / n
    acc = np.column_stack([3 * np.sin(ph), np.cos(ph / 2), 9.8 + 8 * np.cos(ph)]) + rng.normal(0, 0.3, (n, 3))
    return t, acc, q


def _reference(t, acc, q3, body_from_sensor, w) -> dict[str, np.ndarray | float]:
    """The per-stride formulas as they were before the batch (numpy's general routines, one stride)."""
    r = matrix_from_quat(q3)
    f_e = np.einsum("nij,nj->ni", r, acc)
    m = (w[:, None] * f_e).sum(axis=0) / w.sum()
    up_e = m / np.linalg.norm(m)
    up_b = (up_e @ r) @ body_from_sensor.T
    tilt = np.degrees(np.arcsin(np.clip(-up_b[:, 0], -1, 1)))
    obl = np.degrees(np.arcsin(np.clip(up_b[:, 1], -1, 1)))
    e1 = np.cross((0.0, 1.0, 0.0), up_e) if abs(up_e[1]) < 0.9 else np.cross((1.0, 0.0, 0.0), up_e)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up_e, e1)
    x_e = r @ body_from_sensor[0]
    head = np.unwrap(np.arctan2(x_e @ e2, x_e @ e1))
    tc = t - t[0]
    head_dt = np.degrees(head - np.polyval(np.polyfit(tc, head, 1, w=np.sqrt(w)), tc))
    h = np.column_stack([f_e @ e1, f_e @ e2])
    ph = np.exp(-2j * np.pi * 2 * tc / (t[-1] - t[0]))
    c = (w[:, None] * h * ph[:, None]).sum(axis=0)
    major = np.linalg.eigh(np.real(np.outer(c, np.conj(c))))[1][:, -1]
    fwd = np.array([np.cos(np.mean(head)), np.sin(np.mean(head))])
    x_h = x_e - np.outer(x_e @ up_e, up_e)
    a_f = np.einsum("ni,ni->n", f_e, x_h / np.linalg.norm(x_h, axis=1)[:, None])
    a_v = f_e @ up_e
    cf, cv = (w * a_f * ph).sum(), (w * (a_v - a_v.mean()) * ph).sum()
    up_mean = (w[:, None] * up_b).sum(axis=0)
    return {
        "tilt": tilt,
        "obliquity": obl,
        "heading": head_dt,
        "tilt_mean": float((w * tilt).sum() / w.sum()),
        "forward_axis_error_deg": float(np.degrees(np.arccos(min(1.0, abs(float(major @ fwd)))))),
        "up_error_deg": float(np.degrees(np.arccos(np.clip(up_mean[2] / np.linalg.norm(up_mean), -1, 1)))),
        "fore_aft_sin": float(np.imag(cf / cv) / abs(cf / cv)),
    }


@pytest.fixture(scope="module")
def mounting() -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))[0]


def test_a_batch_gives_each_stride_bit_for_bit_what_it_gives_alone(mounting):
    rng = np.random.default_rng(1)
    n = 141
    windows = [_window(rng, n) for _ in range(30)]
    for size in (2, 7, 30):
        order = rng.permutation(30)[:size]
        t = np.stack([windows[k][0] for k in order])
        batch = segment_strides(
            t,
            np.stack([windows[k][1] for k in order]),
            np.stack([windows[k][2] for k in order]),
            mounting,
            time_weights(t),
        )
        for row, k in enumerate(order):
            tk, ak, qk = windows[k]
            alone = segment_stride(tk, ak, qk, mounting, time_weights(tk))
            for f in FIELDS:
                assert np.array_equal(getattr(batch[row], f), getattr(alone, f)), (size, k, f)


def test_the_batch_agrees_with_the_per_stride_formulas(mounting):
    rng = np.random.default_rng(2)
    for n in (100, 141, 160):
        for _ in range(15):
            t, acc, q = _window(rng, n)
            w = time_weights(t)
            got = segment_stride(t, acc, q, mounting, w)
            ref = _reference(t, acc, q, mounting, w)
            for f in FIELDS:
                np.testing.assert_allclose(getattr(got, f), ref[f], rtol=0, atol=1e-9, err_msg=f)


def test_a_long_block_is_valued_in_a_few_batches_and_one_stride_blocks_in_batches_of_one(sim_run, monkeypatch):
    run = sim_run(minutes=4, rate_hz=200, trunk=True, seed=31)
    calls: list[int] = []
    real = pipeline_module.segment_strides

    def counting(t, *args):
        calls.append(len(t))
        return real(t, *args)

    monkeypatch.setattr(pipeline_module, "segment_strides", counting)
    pipe = Pipeline()
    whole = pipe.feed(run.block) + pipe.finish()
    strides = sum(e["type"] == "stride" for e in whole)
    assert strides > 250
    assert sum(calls) >= strides and len(calls) < strides / 5  # pelvis and trunk: a batch per window length
    calls.clear()
    pipe = Pipeline()
    live = []
    for i in range(0, len(run.block), 10):  # 50 ms blocks, as a live FIFO read gives them
        live += pipe.feed(run.block.slice(i, i + 10))
    live += pipe.finish()
    assert set(calls) == {1}  # a block of one stride is still a batch
    assert [json.dumps(e, sort_keys=True) for e in live] == [json.dumps(e, sort_keys=True) for e in whole]


def test_median_is_numpys_bit_for_bit():
    rng = random.Random(3)
    for n in range(1, 40):
        xs = [rng.uniform(-100, 100) * 10 ** rng.randint(-8, 8) for _ in range(n)]
        got = median(xs)
        assert got == float(np.median(xs)) and type(got) is float
        assert median(tuple(xs)) == got
    assert math.isnan(median([1.0, math.nan, 2.0])) and math.isnan(median([]))


def test_reanalysis_feeds_blocks_of_at_most_its_limit_and_gives_the_same_events(sim_csv, tmp_path, monkeypatch):
    from stackcue.service import session_store
    from stackcue.service.analyze import analyze_file
    from stackcue.service.config import load_config
    from stackcue.service.logbook import Logbook

    rec = sim_csv(minutes=5, rate_hz=200, trunk=True, seed=3)
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(f'[logbook]\npath = "{tmp_path / "book.sqlite"}"\n')
    cfg = load_config(cfg_path)
    sid, _ = session_store.store_recording(rec, cfg, out=io.StringIO(), err=io.StringIO(), progress=False)
    with Logbook(tmp_path / "book.sqlite") as book:
        assert max(len(c["t"]) for c in book.raw_chunks(sid)) > 25_000  # stored in chunks bigger than the limit
        sizes: list[int] = []
        feed = Pipeline.feed
        monkeypatch.setattr(Pipeline, "feed", lambda self, block: sizes.append(len(block.t)) or feed(self, block))
        again = session_store.analyze_session(book, sid, cfg, jsonl=True, out=io.StringIO())
    assert max(sizes) <= session_store.REANALYSIS_BLOCK_ROWS == 20_000
    first = analyze_file(rec, cfg, jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    strip = [{k: v for k, v in e.items() if k != "rows_rejected"} for e in first]
    assert [e for e in again if e["type"] == "stride"] == [e for e in strip if e["type"] == "stride"]


def test_the_step_filter_of_a_short_block_is_the_tap_loop_bit_for_bit():
    """Live blocks of up to 64 samples take one running sum over the taps; it must add in the loop's order."""
    from stackcue.dsp import gait

    def tap_loop(b, history, x):
        full = np.concatenate([history, x])
        m = len(b) - 1
        y = np.zeros(len(x))
        for k in range(len(b)):
            y += b[k] * full[m - k : m - k + len(x)]
        return y

    rng = np.random.default_rng(4)
    for taps in (61, 31, 3, 1):
        b = gait.lowpass_fir(taps, 6.0, 200.0)
        for n in (1, 2, 10, 63, 64, 65, 300):
            history, x = rng.normal(1, 0.3, taps - 1), rng.normal(1, 0.3, n)
            assert np.array_equal(gait.fir_stream(b, history, x), tap_loop(b, history, x)), (taps, n)
    assert gait._FIR_ACCUMULATE_MAX == 64  # both paths above were taken


def test_analyze_reads_blocks_of_10000_rows_and_import_stores_chunks_of_about_50000(sim_csv, tmp_path):
    """The peak memory of `analyze` and `import` scales with the block and the chunk (issue 18: 60 minutes took
    122 MB and 219 MB with 50 000-row blocks and 200 000-sample flushes; 83 MB with 20 000-row blocks and the
    plain-decimal parser, 68 MB with 10 000)."""
    from stackcue.firmware_bridge.replay import ReplaySource
    from stackcue.service import session_store
    from stackcue.service.config import load_config
    from stackcue.service.logbook import Logbook

    rec = sim_csv(minutes=10, rate_hz=200, trunk=True, seed=3)
    sizes = [len(b) for b in ReplaySource(rec)]
    assert max(sizes) == 10_000 and sum(sizes) > 110_000
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(f'[logbook]\npath = "{tmp_path / "book.sqlite"}"\n')
    sid, _ = session_store.store_recording(
        rec, load_config(cfg_path), out=io.StringIO(), err=io.StringIO(), progress=False
    )
    with Logbook(tmp_path / "book.sqlite") as book:
        chunks = [len(c["t"]) for c in book.raw_chunks(sid)]
    assert sum(chunks) == sum(sizes) and max(chunks) <= 60_000 and len(chunks) >= 2
