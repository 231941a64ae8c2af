"""ReplaySource: fast mode hands over the whole file, paced mode keeps (scaled) real time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stackcue.errors import RecordingError
from stackcue.firmware_bridge import open_source
from stackcue.firmware_bridge.block import Block
from stackcue.firmware_bridge.csv_format import (
    PELVIS_COLUMNS,
    RowProblem,
    concat_blocks,
    read_recording,
    write_recording,
)
from stackcue.firmware_bridge.replay import ReplaySource

RATE = 64.0  # 1/64 s is exact in binary and in the writer's 6 decimals, so block edges are exact


class FakeTime:
    """A clock that only moves when slept on (or when told that work took time)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_recording(path: Path, seconds: float = 2.0, *, t0: float = 10.0, trunk: bool = True) -> Block:
    n = int(seconds * RATE)
    rng = np.random.default_rng(3)
    t = t0 + np.arange(n) / RATE
    acc, gyr = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    if trunk:
        valid = np.arange(n) % 5 != 0
        tacc, tgyr = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
        tacc[~valid] = np.nan
        tgyr[~valid] = np.nan
        block = Block(t, acc, gyr, tacc, tgyr, valid)
    else:
        block = Block(t, acc, gyr)
    write_recording(path, block, {"sensor": "mpu6050", "rate": "64"})
    return block


def test_fast_mode_gives_the_whole_recording(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    make_recording(path, 30.0)
    expected, _, _ = read_recording(path)
    with ReplaySource(path) as src:
        assert src.has_trunk and src.meta == {"sensor": "mpu6050", "rate": "64"}
        blocks = list(src)
    assert len(blocks) == 1  # 1920 rows: one reader chunk
    got = concat_blocks(blocks, True)
    np.testing.assert_array_equal(got.t, expected.t)
    np.testing.assert_array_equal(got.trunk_valid, expected.trunk_valid)


def test_open_source_registry_builds_a_replay(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    make_recording(path, trunk=False)
    with open_source("replay", path=path) as src:
        assert isinstance(src, ReplaySource) and not src.has_trunk
        assert sum(len(b) for b in src) == int(2.0 * RATE)


def test_paced_replay_sleep_schedule(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    block = make_recording(path, 2.0)
    fake = FakeTime()
    src = ReplaySource(path, speed=2.0, block_s=0.25, clock=fake.clock, sleep=fake.sleep)
    start = fake.now
    got = []
    for b in src:
        # released no earlier than its last sample's time since the first sample, / speed
        assert fake.now - start >= (b.t[-1] - block.t[0]) / 2.0 - 1e-12
        got.append(b)
    assert [len(b) for b in got] == [16] * 8  # 0.25 s of recording each
    # first block: its last sample is 15/64 s in, at speed 2; then one block every 0.125 s
    assert fake.sleeps == pytest.approx([15 / 64 / 2] + [0.125] * 7)
    np.testing.assert_array_equal(concat_blocks(got, True).t, block.t)
    src.close()


def test_paced_replay_does_not_sleep_when_behind(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    make_recording(path, 1.0)
    fake = FakeTime()
    src = ReplaySource(path, speed=1.0, block_s=0.25, clock=fake.clock, sleep=fake.sleep)
    blocks = iter(src)
    next(blocks)  # first block due at 15/64 s
    fake.now += 1.0  # the consumer was slow: every other block is already due
    rest = list(blocks)
    assert len(rest) == 3
    assert fake.sleeps == pytest.approx([15 / 64])


def test_paced_replay_waits_through_a_gap(tmp_path: Path) -> None:
    lines = [",".join(PELVIS_COLUMNS)]
    lines += [f"{i / RATE:.6f},0,0,9.81,0,0,0" for i in range(16)]
    lines += [f"{5 + i / RATE:.6f},0,0,9.81,0,0,0" for i in range(16)]  # 4.77 s gap
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(lines) + "\n")
    fake = FakeTime()
    with ReplaySource(path, speed=1.0, block_s=0.25, clock=fake.clock, sleep=fake.sleep) as src:
        sizes = [len(b) for b in src]
    assert sizes == [16, 16]  # no empty blocks for the gap, no filling in
    assert fake.sleeps == pytest.approx([15 / 64, 5 + 15 / 64 - 15 / 64])


@pytest.mark.parametrize("speed", [0, -1.0, float("nan"), float("inf")])
def test_refuses_bad_speed(tmp_path: Path, speed: float) -> None:
    path = tmp_path / "run.csv"
    make_recording(path, 0.5)
    with pytest.raises(ValueError) as info:
        ReplaySource(path, speed=speed)
    message = str(info.value)
    assert "\n" not in message
    assert message == f"replay speed must be > 0 (None: as fast as possible), got {speed}"


def test_refuses_bad_block_s(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    make_recording(path, 0.5)
    with pytest.raises(ValueError, match="block_s"):
        ReplaySource(path, speed=1.0, block_s=0)


def test_problems_and_refusals_come_from_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    rows = [f"{i / RATE:.6f},0,0,9.81,0,0,0" for i in range(100)]
    rows[40] = "oops"
    path.write_text(",".join(PELVIS_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    with ReplaySource(path) as src:
        assert sum(len(b) for b in src) == 99
        assert src.problems == [RowProblem(42, "expected 7 fields, got 1")]
    strict = ReplaySource(path, strict=True)
    with pytest.raises(RecordingError, match=r":42: expected 7 fields, got 1$"):
        list(strict)
    strict.close()
    with pytest.raises(RecordingError, match="no such file"):
        ReplaySource(tmp_path / "missing.csv")


def test_close_closes_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    make_recording(path, 2.0)
    fake = FakeTime()
    src = ReplaySource(path, speed=1.0, block_s=0.25, clock=fake.clock, sleep=fake.sleep)
    assert src.read() is not None
    src.close()
    assert src.read() is None
    assert src.reader._fh is None
    src.close()
