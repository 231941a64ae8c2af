"""The bleak stand-in: real packets from the synthetic runner, bleak's API and BlueZ's behaviour.

Every decoded value is checked against the motion track at the sensor's true sample instants with the
existing decoders, so a wrong clock, quantisation, batching or fault shows up as a mismatch.
"""

from __future__ import annotations

import asyncio
import time
import warnings

import bleak.exc
import numpy as np
import pytest

from stackcue.firmware_bridge import ble_profile as bp
from stackcue.firmware_bridge import witmotion as wm
from stackcue.firmware_bridge.emulated.ble_radio import Air
from stackcue.firmware_bridge.emulated.ble_sensors import EmulatedStackcueSensor, EmulatedWitMotion
from stackcue.firmware_bridge.emulated.motion import MotionTrack

WIT = "C4:11:22:33:44:55"
OWN = "D0:8C:00:00:00:01"
OWN2 = "D0:8C:00:00:00:02"


@pytest.fixture(scope="module")
def runner() -> MotionTrack:
    """57 s of the synthetic runner (calibration, walk-in, running) at 1 kHz."""
    pelvis, _, _ = MotionTrack.from_simulation(0.5, trunk=False, seed=3)
    return pelvis


def wavy(seconds: float = 400.0) -> MotionTrack:
    t = np.arange(0.0, seconds, 0.002)
    acc = np.stack([2 * np.sin(t), np.cos(2 * t), 9.81 + 3 * np.sin(7 * t)], axis=1)
    gyr = np.stack([0.5 * np.sin(5 * t), 0.3 * np.cos(t), 0.2 * np.sin(0.3 * t)], axis=1)
    return MotionTrack(t, acc, gyr)


def run(coro):
    return asyncio.run(coro)


def delivered_data(sensor, uuid: str) -> list:
    return [n for n in sensor.trace if n.char_uuid == uuid and n.delivered is not None]


async def connect(air: Air, address: str, **kw):
    client = air.bleak.BleakClient(address, **kw)
    await client.connect()
    return client


# --------------------------------------------------------------------------- values and time


def test_witmotion_frames_carry_the_motion_at_the_sensors_true_instants(runner):
    async def main():
        air = Air(speed=20, seed=1)
        sensor = air.add(EmulatedWitMotion(WIT, runner, osc_error=0.01, record=True))
        dec = wm.WitDecoder()
        frames: list[wm.WitFrame] = []
        client = await connect(air, WIT)
        await client.start_notify(wm.NOTIFY_UUID, lambda _c, d: frames.extend(dec.feed(bytes(d))))
        await air.sleep(4.0)
        for cmd in wm.rate_sequence(200):
            await client.write_gatt_char(wm.WRITE_UUID, cmd, response=True)
        await air.sleep(6.0)
        await client.disconnect()
        return sensor, frames, dec

    sensor, frames, dec = run(main())
    notes = [n for n in delivered_data(sensor, wm.NOTIFY_UUID) if n.count]
    idx = np.concatenate([np.arange(n.first, n.first + n.count) for n in notes])
    assert len(frames) == len(idx) and dec.stats.bad_frames == 0 and dec.stats.skipped_bytes == 0
    t = np.array([sensor.t_sensor(int(i)) for i in idx])
    dt = np.diff(t)
    assert np.isclose(dt[:5], 1 / (10 * 1.01)).all()  # power-on rate 10 Hz on a 1 % fast crystal
    assert np.isclose(dt[-5:], 1 / (200 * 1.01)).all()  # then 200 Hz
    acc_true, gyr_true = runner.sample(t)
    acc, gyr = wm.frames_to_arrays(frames)
    acc_step = wm.ACC_SCALE_G * wm.G
    gyr_step = np.radians(wm.GYR_SCALE_DPS)
    assert np.abs(acc - acc_true).max() <= acc_step / 2 + 1e-9
    assert np.abs(gyr - gyr_true).max() <= gyr_step / 2 + 1e-9
    # a shifted instant would not fit: one sample period of running motion moves the values by many steps
    acc_late, _ = runner.sample(t + 0.005)
    assert np.abs(acc - acc_late).max() > 5 * acc_step
    # roll from the accelerometer's gravity direction
    roll = np.array([f.angle[0] for f in frames])
    assert np.abs(roll - np.degrees(np.arctan2(acc_true[:, 1], acc_true[:, 2]))).max() < 0.01


def test_own_profile_batches_decode_to_the_motion_with_counters_as_truth(runner):
    async def main():
        air = Air(speed=20, seed=2)
        sensor = air.add(EmulatedStackcueSensor(OWN, runner, name="stackcue-pelvis", osc_error=-0.02, record=True))
        got: list[bytes] = []
        client = await connect(air, OWN)
        info = bp.decode_info(await client.read_gatt_char(bp.INFO_UUID))
        await client.start_notify(bp.DATA_UUID, lambda _c, d: got.append(bytes(d)))
        await air.sleep(8.0)
        await client.disconnect()
        return sensor, info, got

    sensor, info, got = run(main())
    assert info.rate_mhz == 200_000 and info.boot_id == sensor.boot_id and info.max_batch == 19
    tracker = bp.CounterTracker()
    batches = [bp.decode_batch(p) for p in got]
    for b in batches:
        tracker.update(b)
    assert tracker.stats.lost == 0 and tracker.stats.restarts == 1 and len(batches) > 70
    assert all(len(b) == 19 and b.boot_id == sensor.boot_id and b.rate_mhz == 200_000 for b in batches)
    idx = np.concatenate([sensor.sample_index(b.counter) + np.arange(len(b)) for b in batches])
    t = np.array([sensor.t_sensor(int(i)) for i in idx])
    assert np.isclose(np.diff(t), 1 / (200 * 0.98)).all()
    acc_true, gyr_true = runner.sample(t)
    acc = np.concatenate([b.acc for b in batches])
    gyr = np.concatenate([b.gyr for b in batches])
    assert np.abs(acc - acc_true).max() <= bp.G / 4096 / 2 + 1e-9  # ±8 g: 4096 LSB/g
    assert np.abs(gyr - gyr_true).max() <= np.radians(1 / 32.8) / 2 + 1e-9  # ±1000 °/s: 32.8 LSB/(°/s)


def test_notifications_leave_at_connection_events_in_bursts_of_what_accumulated(runner):
    async def main():
        air = Air(speed=2, seed=3)
        wit = air.add(EmulatedWitMotion(WIT, runner, rate_hz=200.0, record=True))
        own = air.add(EmulatedStackcueSensor(OWN, runner, record=True))
        small = air.add(EmulatedStackcueSensor(OWN2, runner, att_mtu=23, record=True))
        arrivals: list[tuple[float, int]] = []
        clients = [await connect(air, a) for a in (WIT, OWN, OWN2)]
        t_links = [s._link.t0 for s in (wit, own, small)]
        await clients[0].start_notify(wm.NOTIFY_UUID, lambda _c, d: arrivals.append((air.now(), len(d))))
        await clients[1].start_notify(bp.DATA_UUID, lambda _c, d: None)
        await clients[2].start_notify(bp.DATA_UUID, lambda _c, d: None)
        await air.sleep(2.0)
        for c in clients:
            await c.disconnect()
        return air, (wit, own, small), t_links, arrivals

    air, (wit, own, small), t_links, arrivals = run(main())
    ci = air.connection_interval_s
    for sensor, t0 in zip((wit, own, small), t_links, strict=True):
        k = (np.array([n.t for n in sensor.trace]) - t0) / ci
        assert np.allclose(k, np.round(k), atol=1e-6)  # only at connection events
    # WitMotion at 200 Hz: every event sends the frames made since the last one, packed in one notification
    for n in delivered_data(wit, wm.NOTIFY_UUID):
        made = [i for i in range(n.first, n.first + n.count) if n.t - ci < wit.t_air(i) <= n.t]
        assert len(made) == n.count and len(n.payload) == 20 * n.count and n.count in (5, 6, 7)
    # own profile, MTU 247: full batches of 19; MTU 23: compact single samples, several per event
    assert {n.count for n in own.trace if n.char_uuid == bp.DATA_UUID} == {19}
    per_event: dict[float, int] = {}
    for n in small.trace:
        assert n.count == 1 and len(n.payload) == 20 and bp.decode_batch(n.payload).compact
        per_event[n.t] = per_event.get(n.t, 0) + 1
    assert set(per_event.values()) <= {5, 6, 7} and np.mean(list(per_event.values())) == pytest.approx(6, abs=0.2)
    # the receiver hears them at the event (plus scheduling), not spread in between
    lag = np.array([t - (t_links[0] + np.floor((t - t_links[0]) / ci + 1e-6) * ci) for t, _ in arrivals])
    assert len(lag) > 50 and np.median(lag) < ci / 4


@pytest.mark.slow
@pytest.mark.serial
def test_streaming_at_speed_20_delivers_every_sample(runner):
    async def main():
        air = Air(speed=20, seed=4)
        sensors = [air.add(EmulatedWitMotion(WIT, runner, rate_hz=200.0)), air.add(EmulatedStackcueSensor(OWN, runner))]
        counts = [0, 0]
        c0, c1 = await connect(air, WIT), await connect(air, OWN)
        t0, w0 = air.now(), time.perf_counter()
        await c0.start_notify(wm.NOTIFY_UUID, lambda _c, d: counts.__setitem__(0, counts[0] + len(d) // 20))
        await c1.start_notify(bp.DATA_UUID, lambda _c, d: counts.__setitem__(1, counts[1] + len(bp.decode_batch(d))))
        await air.sleep(30.0)
        return air.now() - t0, time.perf_counter() - w0, counts, sensors

    air_s, _wall_s, counts, sensors = run(main())  # pace is a benchmark's business, not a test's
    assert counts[0] == pytest.approx(200 * air_s, rel=0.01) and counts[1] == pytest.approx(200 * air_s, rel=0.01)
    assert all(s.stats.samples_sent >= 200 * 29 for s in sensors)


# --------------------------------------------------------------------------- WitMotion registers


def test_witmotion_rate_change_needs_the_unlock_and_the_save_to_survive_a_power_cycle():
    motion = wavy()

    async def main():
        air = Air(speed=20, seed=5)
        sensor = air.add(EmulatedWitMotion(WIT, motion, record=True))
        dec = wm.WitDecoder()
        client = await connect(air, WIT)
        await client.start_notify(wm.NOTIFY_UUID, lambda _c, d: dec.feed(bytes(d)))

        async def read_rate() -> float | None:
            n = len(dec.replies)
            await client.write_gatt_char(wm.WRITE_UUID, wm.read_register(wm.REG_RATE), response=False)
            await air.sleep(0.2)
            assert len(dec.replies) == n + 1
            return dec.replies[-1].rate_hz

        out = {"power_on": await read_rate()}
        await client.write_gatt_char(wm.WRITE_UUID, wm.set_rate(100), response=False)  # locked: ignored
        await air.sleep(0.1)
        out["locked"] = (await read_rate(), sensor.rate_hz, sensor.stats.writes_ignored)
        await client.write_gatt_char(wm.WRITE_UUID, wm.unlock(), response=False)
        await client.write_gatt_char(wm.WRITE_UUID, wm.set_rate(100), response=False)
        await air.sleep(0.1)
        out["unlocked"] = (await read_rate(), sensor.rate_hz)
        sensor.powered = False  # not saved: lost
        sensor.powered = True
        await air.sleep(1.0)
        out["cycled_unsaved"] = sensor.rate_hz
        client = await connect(air, WIT)
        await client.start_notify(wm.NOTIFY_UUID, lambda _c, d: dec.feed(bytes(d)))
        for cmd in wm.rate_sequence(50):
            await client.write_gatt_char(wm.WRITE_UUID, cmd, response=False)
        await client.write_gatt_char(wm.WRITE_UUID, wm.read_register(wm.REG_RATE), response=False)  # in the silence
        await air.sleep(1.0)
        out["during_silence_replies"] = [r for r in dec.replies if r is not None]
        t_save = sensor.silent_until - sensor.save_silence_s
        silent = [n for n in sensor.trace if t_save < n.t < sensor.silent_until]
        out["silent_notes"] = len(silent)
        out["around_silence"] = len([n for n in sensor.trace if t_save - 0.2 < n.t < sensor.silent_until + 0.2])
        out["saved"] = await read_rate()
        sensor.powered = False
        sensor.powered = True
        await air.sleep(1.0)
        out["cycled_saved"] = sensor.rate_hz
        return out, dec

    out, dec = run(main())
    assert out["power_on"] == 10.0
    assert out["locked"][:2] == (10.0, 10.0) and out["locked"][2] >= 1
    assert out["unlocked"] == (100.0, 100.0)
    assert out["cycled_unsaved"] == 10.0
    assert out["silent_notes"] == 0  # nothing, not even the register read's answer, during the save
    assert out["around_silence"] >= 10  # 50 Hz frames before and after it
    assert out["saved"] == 50.0 and out["cycled_saved"] == 50.0
    assert dec.stats.bad_frames == 0


# --------------------------------------------------------------------------- own profile control


def test_own_profile_control_writes_are_answered_and_restart_the_counter():
    motion = wavy()

    async def main():
        air = Air(speed=20, seed=6)
        sensor = air.add(EmulatedStackcueSensor(OWN, motion, record=True))
        replies: list[bp.ControlReply] = []
        data: list[bp.Batch] = []
        client = await connect(air, OWN)
        await client.start_notify(bp.CONTROL_UUID, lambda _c, d: replies.append(bp.decode_reply(d)))
        await client.start_notify(bp.DATA_UUID, lambda _c, d: data.append(bp.decode_batch(d)))
        boot = sensor.boot_id
        for req in (
            bp.set_rate_request(1, 333.0),
            bp.set_rate_request(2, 2000.0),
            bp.set_ranges_request(3, 3, 3),
            bytes((0x09, 4)),
            bytes((bp.OP_SET_RATE, 5, 1)),
        ):
            await client.write_gatt_char(bp.CONTROL_UUID, req)
        await air.sleep(1.0)
        n_before_stop = len(data)
        await client.write_gatt_char(bp.CONTROL_UUID, bp.encode_request(bp.OP_STOP, 6))
        await air.sleep(0.5)
        n_stopped = len(data)
        await air.sleep(1.0)
        stopped_quiet = len(data) == n_stopped
        await client.write_gatt_char(bp.CONTROL_UUID, bp.encode_request(bp.OP_START, 7))
        await air.sleep(1.0)
        last_value = bp.decode_reply(await client.read_gatt_char(bp.CONTROL_UUID))
        await client.disconnect()
        sensor.powered = False
        sensor.powered = True
        return sensor, boot, replies, data, n_before_stop, stopped_quiet, last_value

    sensor, boot, replies, data, n_before_stop, stopped_quiet, last_value = run(main())
    by_seq = {r.seq: r for r in replies}
    r1 = by_seq[1]
    assert r1.ok and r1.rate_mhz == 333_333 and r1.next_counter == 0 and r1.boot_id == boot  # nearest 1000/(1+d)
    assert by_seq[2].status == bp.STATUS_BAD_VALUE and by_seq[2].rate_mhz == 333_333
    assert by_seq[3].ok and (by_seq[3].acc_code, by_seq[3].gyr_code) == (3, 3)
    assert by_seq[4].status == bp.STATUS_UNKNOWN_OP and by_seq[5].status == bp.STATUS_BAD_LENGTH
    assert last_value.seq == 7 and last_value.ok
    assert stopped_quiet and n_before_stop > 0
    after = [b for b in data if b.restart]
    assert after and all(b.counter == 0 for b in after)
    assert data[-1].rate_mhz == 333_333 and (data[-1].acc_code, data[-1].gyr_code) == (3, 3)
    assert sensor.boot_id != boot and sensor.rate_mhz == 200_000  # a power cycle: new boot id, firmware defaults
    assert len(sensor.counter_epochs) >= 6


# --------------------------------------------------------------------------- faults


def test_loss_is_the_configured_fraction_and_the_counter_shows_every_lost_sample():
    motion = wavy()

    async def main():
        air = Air(speed=50, seed=7)
        sensor = air.add(EmulatedStackcueSensor(OWN, motion, loss=0.2, record=True))
        tracker = bp.CounterTracker()
        client = await connect(air, OWN)
        await client.start_notify(bp.DATA_UUID, lambda _c, d: tracker.update(bp.decode_batch(d)))
        await air.sleep(90.0)
        await client.disconnect()
        return sensor, tracker

    sensor, tracker = run(main())
    st = sensor.stats
    n = st.notifications
    assert n > 800
    assert abs(st.dropped - 0.2 * n) < 4 * np.sqrt(n * 0.2 * 0.8)
    assert st.delivered + st.dropped + st.unsubscribed == n
    heard = [n.t for n in sensor.trace if n.fate == "delivered"]
    between = [n for n in sensor.trace if n.fate == "lost" and heard[0] < n.t < heard[-1]]
    assert tracker.stats.lost == 19 * len(between) and tracker.stats.gaps > 0.8 * len(between) / 1.25
    assert tracker.stats.restarts == 1


def test_witmotion_damage_is_rejected_and_counted_without_losing_sync():
    motion = wavy()

    async def stream(kinds: tuple[str, ...], corrupt: float, seed: int):
        air = Air(speed=50, seed=seed)
        sensor = air.add(
            EmulatedWitMotion(WIT, motion, rate_hz=50.0, corrupt=corrupt, corrupt_kinds=kinds, record=True)
        )
        dec = wm.WitDecoder()
        frames: list[wm.WitFrame] = []
        client = await connect(air, WIT)
        await client.start_notify(wm.NOTIFY_UUID, lambda _c, d: frames.extend(dec.feed(bytes(d))))
        await air.sleep(40.0)
        await client.disconnect()
        return sensor, dec, frames

    def match(sensor, frames):
        sent = {}
        for n in sensor.trace:
            for k in range(n.count):
                sent[n.payload[20 * k : 20 * k + 20]] = n.first + k
        idx = [sent.get(wm.encode_frame(f.acc, f.gyr, f.angle), -1) for f in frames]
        good = [i for i in idx if i >= 0]
        return good, len(idx) - len(good), len(sent)

    # alignment faults: frames split, run together, stray bytes: nothing is lost
    sensor, dec, frames = run(stream(("split", "merged", "stray"), 0.3, 8))
    good, garbage, n_sent = match(sensor, frames)
    st = sensor.stats
    assert sum(st.corrupted.values()) > 300 and set(st.corrupted) == {"split", "merged", "stray"}
    assert garbage == 0 and good == sorted(good) and len(set(good)) == len(good)
    assert n_sent - len(good) <= 2  # at most what was still held back when the link closed
    assert dec.stats.skipped_bytes > 0 and dec.stats.bad_frames == 0

    # damaging faults: the damaged frames are rejected, counted, and decoding resumes at the next frame
    sensor, dec, frames = run(stream(("header", "truncated"), 0.1, 9))
    good, garbage, n_sent = match(sensor, frames)
    st = sensor.stats
    assert st.corrupted["header"] > 50 and st.corrupted["truncated"] > 50
    assert good == sorted(good) and garbage == 0
    assert abs((n_sent - len(good)) - (st.corrupted["header"] + st.corrupted["truncated"])) <= 0.05 * n_sent * 0.1 + 3
    assert dec.stats.bad_frames >= 0.9 * st.corrupted["truncated"]
    assert dec.stats.skipped_bytes >= 20 * 0.9 * st.corrupted["header"]


def test_own_profile_damage_is_always_rejected_by_the_strict_decoder():
    motion = wavy()

    async def main():
        air = Air(speed=50, seed=10)
        sensor = air.add(EmulatedStackcueSensor(OWN, motion, corrupt=0.15, record=True))
        tracker = bp.CounterTracker()
        rejected = []

        def on_data(_c, d):
            try:
                tracker.update(bp.decode_batch(d))
            except ValueError as e:
                rejected.append(str(e))

        client = await connect(air, OWN)
        await client.start_notify(bp.DATA_UUID, on_data)
        await air.sleep(60.0)
        await client.disconnect()
        return sensor, tracker, rejected

    sensor, tracker, rejected = run(main())
    st = sensor.stats
    damaged = [n for n in sensor.trace if n.fate.startswith("corrupt")]
    assert len(rejected) == len(damaged) == sum(st.corrupted.values()) > 60
    assert set(st.corrupted) == {"bitflip", "truncated"}
    heard = [n.t for n in sensor.trace if n.fate == "delivered"]
    assert tracker.stats.lost == 19 * sum(1 for n in damaged if heard[0] < n.t < heard[-1])


# --------------------------------------------------------------------------- out of range, power, BlueZ


def test_dropout_fires_the_callback_old_client_cannot_reconnect_new_one_after_a_scan_can():
    motion = wavy()
    t_start, length = 3.0, 35.0  # longer than BlueZ's 30 s TemporaryTimeout

    async def main():
        air = Air(speed=40, seed=11)
        s1 = air.add(EmulatedStackcueSensor(OWN, motion, dropouts=[(t_start, t_start + length)], record=True))
        s2 = air.add(
            EmulatedStackcueSensor(
                OWN2, motion, dropouts=[(t_start, t_start + length)], restart_on_connect=False, record=True
            )
        )
        events: list[tuple[str, float, bool]] = []
        batches: dict[str, list[tuple[float, bp.Batch]]] = {OWN: [], OWN2: []}

        def on_disc(c):
            events.append((c.address, air.now(), c.is_connected))

        async def subscribe(c):
            got = batches[c.address]
            await c.start_notify(bp.DATA_UUID, lambda _ch, d: got.append((air.now(), bp.decode_batch(d))))

        old = {a: await connect(air, a, disconnected_callback=on_disc, timeout=5.0) for a in (OWN, OWN2)}
        for c in old.values():
            await subscribe(c)
        await air.sleep(t_start + 1.0 - air.now())
        res = {"events": list(events), "connected": [c.is_connected for c in old.values()]}
        res["scan_during"] = await air.bleak.BleakScanner.discover(timeout=1.0, return_adv=True)
        try:
            await old[OWN].connect(timeout=2.0)
            res["old_during"] = None
        except TimeoutError as e:  # BlueZ still knows it, but it does not answer
            res["old_during"] = e
        await air.sleep(t_start + length + 0.05 - air.now())
        try:
            await old[OWN].connect()
            res["old_after"] = None
        except bleak.exc.BleakDeviceNotFoundError as e:
            res["old_after"] = e
        found = await air.bleak.BleakScanner.discover(timeout=1.0, return_adv=True)
        res["scan_after"] = found
        new = [air.bleak.BleakClient(found[a][0]) for a in (OWN, OWN2)]
        for c in new:
            await c.connect()
            await subscribe(c)
        res["t_back"] = air.now()
        await air.sleep(2.0)
        for c in new:
            await c.disconnect()
        return res, s1, s2, batches

    res, s1, s2, batches = run(main())
    assert {a for a, _, _ in res["events"]} == {OWN, OWN2}
    for s in (s1, s2):  # stamped on the air's clock: the supervision timeout after the dropout began
        assert len(s.stats.link_lost_at) == 1 and t_start + 0.42 <= s.stats.link_lost_at[0] <= t_start + 0.42 + 0.031
    for address, t, connected in res["events"]:  # the callbacks run then or, on a loaded machine, a little later
        assert not connected and t >= (s1 if address == OWN else s2).stats.link_lost_at[0]
    assert res["connected"] == [False, False]
    assert OWN not in res["scan_during"] and OWN2 not in res["scan_during"]
    assert isinstance(res["old_during"], TimeoutError)
    assert isinstance(res["old_after"], bleak.exc.BleakDeviceNotFoundError)
    assert "removed from BlueZ" in str(res["old_after"])
    assert OWN in res["scan_after"] and OWN2 in res["scan_after"]
    rate = 200.0
    # the doc's firmware restarts its counter at the new connection: the truth shows what was lost
    before = [b for t, b in batches[OWN] if t < t_start + 1]
    after = [b for t, b in batches[OWN] if t > t_start + length]
    assert after and after[0].counter < 40  # a fresh counter (its first batches went before the subscription)
    last = s1.sample_index(before[-1].counter, epoch=0) + 18
    first = s1.sample_index(after[0].counter, epoch=-1)
    assert (first - last - 1) / rate >= length
    # a firmware that keeps its counter: the counter jump is exactly the samples made while away
    tracker = bp.CounterTracker()
    tracked = [(t, b, tracker.update(b)) for t, b in batches[OWN2]]
    gap = [(t, b, tr) for t, b, tr in tracked if tr.lost > 0]
    assert len(gap) == 1 and gap[0][1].overflow and not gap[0][2].restart
    lost = gap[0][2].lost
    i_before = max(s2.sample_index(b.counter) + len(b) - 1 for t, b, _ in tracked if t < t_start + 1)
    i_after = s2.sample_index(gap[0][1].counter)
    assert lost == i_after - i_before - 1
    t_gap = s2.t_air(i_after) - s2.t_air(i_before)
    assert lost == pytest.approx(t_gap * rate - 1, abs=1e-6)
    assert length * rate <= lost <= (res["t_back"] + 0.2 - t_start) * rate


def test_short_outage_the_old_client_reconnects_as_on_bluez():
    motion = wavy()

    async def main():
        air = Air(speed=8, seed=12)  # slow enough that a loaded machine keeps up with the 30 ms events
        air.add(EmulatedWitMotion(WIT, motion, dropouts=[(2.0, 4.0)]))
        lost = []
        client = await connect(air, WIT, disconnected_callback=lambda c: lost.append(air.now()))
        await air.sleep(4.5 - air.now())
        await client.connect()  # BlueZ still has the device object (within TemporaryTimeout)
        return lost, client.is_connected

    lost, connected = run(main())
    assert len(lost) == 1 and connected


def test_powered_off_or_removed_sensor_is_gone():
    motion = wavy()

    async def main():
        air = Air(speed=20, seed=13)
        sensor = air.add(EmulatedWitMotion(WIT, motion))
        air.add(EmulatedStackcueSensor(OWN, motion))
        lost = []
        client = await connect(air, WIT, disconnected_callback=lambda c: lost.append(air.now()))
        t_off = air.now()
        sensor.powered = False
        await air.sleep(1.0)
        res = {"lost": [t - t_off for t in lost], "scan": set(await air.bleak.BleakScanner.discover(timeout=1.0))}
        res["t_off"], res["lost_at"] = t_off, list(sensor.stats.link_lost_at)
        w0, t0 = time.perf_counter(), air.now()
        try:
            await air.bleak.BleakClient(WIT.lower(), timeout=3.0).connect()
        except bleak.exc.BleakDeviceNotFoundError as e:
            res["by_address"] = (e, air.now() - t0, time.perf_counter() - w0)
        air.remove(OWN)
        res["scan_removed"] = {d.address for d in await air.bleak.BleakScanner.discover(timeout=1.0)}
        res["still_connected"] = client.is_connected
        return res

    res = run(main())
    # The radio stamps the loss on the air's clock; the callback runs when the event loop gets to it, later under load.
    (noticed,) = [t - res["t_off"] for t in res["lost_at"]]
    assert 0.42 <= noticed <= 0.42 + 0.03 + 1e-3  # the supervision timeout after the last connection event heard
    assert len(res["lost"]) == 1 and res["lost"][0] >= noticed
    assert not any(getattr(d, "address", d) == WIT for d in res["scan"])
    e, waited_air, waited_wall = res["by_address"]
    assert "was not found" in str(e) and e.identifier == WIT.lower()
    assert 3.0 <= waited_air < 3.5 and waited_wall < 0.5  # the client's timeout, in air time
    assert OWN not in res["scan_removed"] and not res["still_connected"]


def test_no_adapter_or_no_bluez_raise_what_bleak_raises():
    async def main(air: Air):
        errors = []
        for attempt in (
            air.bleak.BleakScanner.discover(timeout=1.0),
            air.bleak.BleakClient(OWN).connect(),
            air.bleak.BleakScanner.find_device_by_name("stackcue"),
        ):
            try:
                await attempt
            except bleak.exc.BleakError as e:
                errors.append(e)
        return errors

    errors = run(main(Air(adapter=False)))
    assert len(errors) == 3
    assert all(isinstance(e, bleak.exc.BleakBluetoothNotAvailableError) for e in errors)
    assert errors[0].args[0] == "No Bluetooth adapters found."
    assert errors[0].reason is bleak.exc.BleakBluetoothNotAvailableReason.NO_BLUETOOTH
    errors = run(main(Air(bluez_running=False)))
    assert len(errors) == 3 and all(isinstance(e, bleak.exc.BleakDBusError) for e in errors)
    assert errors[0].dbus_error == "org.freedesktop.DBus.Error.ServiceUnknown"


# --------------------------------------------------------------------------- bleak's API


def test_bleak_api_scanner_and_client_behave_like_bleak():
    motion = wavy()

    async def main():
        air = Air(speed=20, seed=14)
        air.add(EmulatedWitMotion(WIT, motion, rssi_dbm=-70))
        air.add(EmulatedStackcueSensor(OWN, motion, name="stackcue-pelvis", rssi_dbm=-50))
        B = air.bleak
        seen: list[tuple[str, int]] = []
        filt = B.BleakScanner(lambda d, ad: seen.append((d.address, ad.rssi)), [bp.SERVICE_UUID])
        async with filt:
            await air.sleep(1.0)
        res = {"seen": seen, "filtered": set(filt.discovered_devices_and_advertisement_data)}
        res["adv"] = await B.BleakScanner.discover(timeout=0.5, return_adv=True)
        res["by_name"] = await B.BleakScanner.find_device_by_name("WT901BLE68", timeout=2.0)
        res["none"] = await B.BleakScanner.find_device_by_address("11:22:33:44:55:66", timeout=0.5)
        async_got: list[int] = []

        async def acb(sender, data: bytearray):
            async_got.append(len(data))

        errors = {}
        async with B.BleakClient(res["by_name"], timeout=5.0) as client:
            res["client"] = (client.name, client.address, client.is_connected)
            svc = client.services.get_service(wm.SERVICE_UUID)
            res["chars"] = sorted(c.uuid for c in svc.characteristics)
            res["mtu_char"] = client.services.get_characteristic(wm.WRITE_UUID).max_write_without_response_size
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                res["mtu_default"] = (client.mtu_size, len(w))
            await client._backend._acquire_mtu()
            res["mtu"] = client.mtu_size
            await client.start_notify(wm.NOTIFY_UUID, acb)
            for name, coro in (
                ("twice", client.connect()),
                ("unknown", client.start_notify("0000abcd-0000-1000-8000-00805f9b34fb", acb)),
                ("write_notify", client.write_gatt_char(wm.NOTIFY_UUID, b"\x00", response=True)),
                ("notify_write", client.start_notify(wm.WRITE_UUID, acb)),
                ("read", client.read_gatt_char(wm.NOTIFY_UUID)),
            ):
                try:
                    await coro
                except Exception as e:
                    errors[name] = e
            await air.sleep(1.0)
        res["after"] = client.is_connected
        try:
            client.services  # noqa: B018
        except bleak.exc.BleakError as e:
            errors["services"] = e
        res["after_gatt"] = await B.BleakScanner.discover(timeout=0.5, return_adv=True)
        res["after_gatt_filtered"] = await B.BleakScanner.discover(timeout=0.5, service_uuids=[wm.SERVICE_UUID])
        own = B.BleakClient(OWN)
        await own.connect()
        try:
            await own.write_gatt_char(bp.CONTROL_UUID, bp.encode_request(bp.OP_GET_CONFIG, 1), response=False)
        except bleak.exc.BleakGATTProtocolError as e:
            errors["no_command"] = e
        await own.disconnect()
        return res, errors, async_got

    res, errors, async_got = run(main())
    assert {a for a, _ in res["seen"]} == {OWN} and res["filtered"] == {OWN}
    assert all(-60 <= r <= -40 for _, r in res["seen"]) and len(res["seen"]) >= 5  # ~100 ms advertising
    dev, ad = res["adv"][WIT]
    assert isinstance(dev, bleak.BLEDevice) and isinstance(ad, bleak.AdvertisementData)
    assert ad.local_name == "WT901BLE68" and ad.service_uuids == [] and -80 <= ad.rssi <= -60
    assert res["adv"][OWN][1].service_uuids == [bp.SERVICE_UUID]
    assert res["by_name"].address == WIT and res["none"] is None
    assert res["client"] == ("WT901BLE68", WIT, True)
    assert res["chars"] == sorted([wm.WRITE_UUID, wm.NOTIFY_UUID]) and res["mtu_char"] == 244
    assert res["mtu_default"] == (23, 1) and res["mtu"] == 247
    assert str(errors["twice"]) == "Client is already connected"
    assert isinstance(errors["unknown"], bleak.exc.BleakCharacteristicNotFoundError)
    assert errors["write_notify"].code == bleak.exc.BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED
    assert isinstance(errors["notify_write"], bleak.exc.BleakDBusError)
    assert errors["read"].code == bleak.exc.BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
    assert str(errors["services"]) == "Service Discovery has not been performed yet"
    assert errors["no_command"].code == bleak.exc.BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED
    assert not res["after"] and len(async_got) >= 8 and set(async_got) == {20}  # async callbacks run too
    # after a connection BlueZ lists the resolved GATT services with the advertisement (its UUIDs property),
    # but its discovery filter looks at the advertisement itself
    assert wm.SERVICE_UUID in res["after_gatt"][WIT][1].service_uuids
    assert res["after_gatt_filtered"] == []
