"""Source kind ``ble``: one or two BLE IMUs (WitMotion or stackcue's profile), or a BLE trunk on an I2C pelvis.

Each segment (pelvis, trunk) is one sensor, named by its address or advertised name; the pelvis may
instead be the MPU-6050 on I2C (``pelvis="i2c"``). The radio runs on an asyncio loop in a thread of its
own (one client per BLE segment; notifications only take the host time and copy the bytes there);
``read()`` drains what has arrived, decodes it, timestamps it per segment and aligns the trunk onto the
pelvis as the I2C source does (:class:`~firmware_bridge.align.TrunkAligner`). It never blocks longer
than ``poll_s``: an empty block is a valid answer.

Timestamps are seconds since the source started, on the host's monotonic clock:

- stackcue profile: the sample counter gives every sample's index exactly (lost samples are skipped, a
  gap); the true rate and the offset come from :class:`~firmware_bridge.timestamps.SampleClock`'s
  lower-envelope fit of those indices against the host arrival times, so burst jitter does not enter.
- WitMotion: no counter. :class:`~firmware_bridge.timestamps.BurstLossDetector` finds lost frames
  from the arrival times (decided ``decision_delay_s`` later; the first segment is held a few seconds
  to estimate the sensor's true rate), then the same SampleClock stamps them. Frames the decoder
  rejects are lost frames too.

Disconnects are normal on a run (body shadowing): the link scans again and connects with a new client
(see :mod:`firmware_bridge.ble_clients` for why), with backoff while the sensor stays away; the
samples missed are a gap, never filled in; the session goes on. ``status`` says what each segment is
doing, ``stats`` what happened (for the session summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from stackcue.errors import SensorSetupError, SourceError

from . import ble_profile as bp
from . import witmotion as wm
from .align import TrunkAligner
from .ble_clients import CLIENTS, KINDS, adapter_problem, find, is_address, race
from .block import Block
from .clocks import Pacer
from .devices import DeviceFactory, HardwareFactory
from .source import Source
from .timestamps import BurstLossDetector, SampleClock

ROLES = ("pelvis", "trunk")
_ACC_CODE = {2: 0, 4: 1, 8: 2, 16: 3}
_GYR_CODE = {250: 0, 500: 1, 1000: 2, 2000: 3}


# --------------------------------------------------------------------------- the radio side (loop thread)


class _Link:
    """One BLE segment: find it, connect with a new client, configure, stream; again after every drop."""

    def __init__(self, src: BLESource, role: str, target: str, kind: str) -> None:
        self.src, self.role, self.target, self.kind = src, role, target, kind
        self.events: deque[tuple[str, float, Any]] = deque()
        self.status = f"searching for {target}"
        self.connected = False
        self.address: str | None = target.upper() if is_address(target) else None
        self.name: str | None = None if is_address(target) else target
        self.sensor_kind: str | None = kind if kind in KINDS else None
        self.rssi: int | None = None
        self.facts: dict[str, Any] = {}
        self.connects = self.disconnects = self.attempts = 0
        self.errors: Counter[str] = Counter()
        self.fatal: str | None = None
        self.first_attempt = threading.Event()

    def _data(self, payload: bytes) -> None:
        t = self.src.clock()
        self.events.append(("data", t, payload))
        if self.src.tap is not None:
            self.src.tap(self.role, t, payload)

    def _ready(self, facts: dict[str, Any]) -> None:
        self.facts = facts
        self.events.append(("start", self.src.clock(), (self.sensor_kind, facts)))

    async def run(self, stop: asyncio.Event, lock: asyncio.Lock) -> None:
        src = self.src
        delay = src.backoff_s[0]
        while not stop.is_set():
            client = None
            lost = asyncio.Event()
            dropped = False
            self.attempts += 1
            try:
                async with lock:  # scan and connect one sensor at a time (BlueZ connects badly while scanning)
                    self.status = f"searching for {self.target}"
                    advert = await find(
                        src.bleak,
                        self.target,
                        src.scan_s,
                        src.asleep,
                        kind=self.kind if self.kind in KINDS else None,
                        scanning=self.first_attempt.set,
                    )
                    if advert is None:
                        self.status = (
                            f"{self.target} not heard in {src.scan_s:g} s: is it switched on, charged "
                            "and within range (and not connected to a phone)?"
                        )
                        raise _Retry
                    self.address, self.name, self.rssi, self.sensor_kind = (
                        advert.address,
                        advert.name,
                        advert.rssi,
                        advert.kind,
                    )
                    self.status = f"connecting to {advert.name} ({advert.address}, {advert.rssi} dBm)"
                    client = src.bleak.BleakClient(
                        advert.device, disconnected_callback=lambda _c, ev=lost: ev.set(), timeout=src.connect_timeout_s
                    )
                    await race(client.connect(), src.connect_timeout_s + 2.0, src.asleep)
                sensor = CLIENTS[advert.kind](client, self._data, src.asleep, self._ready)
                opts = src.sensor_options(advert.kind)
                self.status = f"configuring {advert.name}"
                await race(sensor.start(**opts), 15.0, src.asleep)
                self.connected = True
                self.connects += 1
                delay = src.backoff_s[0]
                self.status = f"streaming from {advert.name} ({advert.address}) at {self.facts['rate_hz']:g} Hz"
                stopped = asyncio.ensure_future(stop.wait())
                gone = asyncio.ensure_future(lost.wait())
                await asyncio.wait({stopped, gone}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                gone.cancel()
                dropped = lost.is_set() and not stop.is_set()
                if dropped:
                    self.status = f"{self.name} ({self.address}) dropped the link (out of range or switched off?)"
            except _Retry:
                pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sensor or radio problem: say it, retry; never crash the session
                problem = adapter_problem(exc, src.bleak)
                if problem is not None:
                    self.status = problem
                    if self.connects == 0:
                        self.fatal = problem
                else:
                    what = f"{type(exc).__name__}: {exc}".rstrip(": ")
                    self.errors[type(exc).__name__] += 1
                    self.status = f"{self.target}: {what}" if not isinstance(exc, SensorSetupError) else str(exc)
            finally:
                self.first_attempt.set()
                if self.connected:
                    self.connected = False
                    self.disconnects += 1
                    self.events.append(("down", src.clock(), None))
                if client is not None:
                    with contextlib.suppress(Exception):
                        await race(client.disconnect(), 2.0, src.asleep)
            if stop.is_set():
                break
            wait = src.backoff_s[0] / 4 if dropped else delay  # a drop: look for it again at once
            if not dropped:
                delay = min(delay * 2, src.backoff_s[1])
                self.status += f"; retrying in {wait:g} s"
            with contextlib.suppress(TimeoutError):
                await race(stop.wait(), wait, src.asleep)


class _Retry(Exception):
    pass


# --------------------------------------------------------------------------- the host side (read thread)


class _Stream:
    """Decoded, timestamped samples of one BLE segment (runs in the thread that calls ``read``)."""

    def __init__(self, src: BLESource, link: _Link) -> None:
        self.src, self.link = src, link
        self.out_t: list[np.ndarray] = []
        self.out_x: list[np.ndarray] = []
        self.t_last = -np.inf  # newest timestamp given out (strictly increasing across reconnects)
        self.samples = 0
        self.lost = 0
        self.loss_events = 0
        self.overlap_dropped = 0
        self.dropouts: list[list[float]] = []
        self._down_at: float | None = None
        self.period: float | None = None
        self.clock: SampleClock | None = None

    def _emit(self, t: np.ndarray, acc: np.ndarray, gyr: np.ndarray) -> None:
        t = t - self.src.t0
        keep = t > self.t_last
        if not keep.all():  # only ever right after a reconnect, if the new anchor is still rough
            self.overlap_dropped += int((~keep).sum())
            t, acc, gyr = t[keep], acc[keep], gyr[keep]
        if not len(t):
            return
        if self._down_at is not None:
            self.dropouts.append([round(self._down_at, 3), round(float(t[0]), 3)])
            self._down_at = None
        self.t_last = float(t[-1])
        self.samples += len(t)
        self.out_t.append(t)
        self.out_x.append(np.column_stack([acc, gyr]))

    def take(self, now: float) -> Block:
        while self.link.events:
            kind, t, payload = self.link.events.popleft()
            if kind == "data":
                self.data(t, payload)
            elif kind == "start":
                self.start(t, payload[1])
            else:
                self.flush()
                if self._down_at is None:
                    self._down_at = self.t_last if np.isfinite(self.t_last) else t - self.src.t0
        self.tick(now)
        if not self.out_t:
            return Block.empty()
        t, x = np.concatenate(self.out_t), np.concatenate(self.out_x)
        self.out_t, self.out_x = [], []
        return Block(t, x[:, :3], x[:, 3:])

    def start(self, t: float, facts: dict[str, Any]) -> None:
        raise NotImplementedError

    def data(self, t: float, payload: bytes) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Time passes (decisions that wait for later arrivals)."""

    def lag(self) -> float:
        """How long samples are held back before they are given out (s)."""
        return 0.0

    def given(self) -> bool:
        """Whether any sample has been given out yet."""
        return self.samples > 0

    def flush(self) -> None:
        """The link is down: give out everything held."""

    def stats(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "lost_samples": self.lost,
            "loss_events": self.loss_events,
            "rate_fitted_hz": round(1.0 / self.clock.period, 4) if self.clock else None,
            "dropouts": self.dropouts,
            "overlap_dropped": self.overlap_dropped,
        }


class _WitStream(_Stream):
    """WitMotion: the byte-stream decoder, bursts, the loss detector, the sample clock."""

    BURST_S = 0.004  # notifications this close together came at one connection event

    def __init__(self, src: BLESource, link: _Link) -> None:
        super().__init__(src, link)
        self.decoder = wm.WitDecoder()
        self.detector: BurstLossDetector | None = None
        self.held: deque[np.ndarray] = deque()  # (n, 6) per burst in the detector
        self._open: list[np.ndarray] = []
        self._open_t = -np.inf
        self.started = False

    def start(self, t: float, facts: dict[str, Any]) -> None:
        self.flush()
        self.decoder.reset()
        period = 1.0 / facts["rate_hz"]
        if self.detector is None or abs(period - self.detector.nominal) > 1e-9:
            self.detector = BurstLossDetector(period, delay_s=self.src.decision_delay_s)
            self.clock = SampleClock(period, window_s=120.0, max_slew=0.002, envelope_fit=True)
        else:
            self.detector.restart()
            assert self.clock is not None
            self.clock.restart()
        self.period = period
        self.started = True

    def data(self, t: float, payload: bytes) -> None:
        if not self.started:
            return
        frames = self.decoder.feed(payload)
        if not frames:
            return
        acc, gyr = wm.frames_to_arrays(frames)
        if self._open and t - self._open_t > self.BURST_S:
            self._close_burst()
        self._open.append(np.column_stack([acc, gyr]))
        self._open_t = t

    def _close_burst(self) -> None:
        if self._open and self.detector is not None:
            x = np.concatenate(self._open)
            self.detector.add(len(x), self._open_t)
            self.held.append(x)
        self._open = []

    def tick(self, now: float, flush: bool = False) -> None:
        det, clock = self.detector, self.clock
        if det is None or clock is None:
            return
        if self._open and (flush or now - self._open_t > self.BURST_S):
            self._close_burst()
        warm = det.period is None
        for b in det.take(now, flush=flush):
            if warm:  # the warm-up's estimate starts the clock
                clock.period = det.period  # type: ignore[assignment]
                warm = False
            x = self.held.popleft()
            if b.lost:
                clock.skip(b.lost)
                self.lost += b.lost
                self.loss_events += 1 if b.lost > 0 else -1
            t = clock.stamp(b.n, b.t, bound=b.sure)
            self._emit(t, x[:, :3], x[:, 3:])
            det.period = clock.period  # fitted within loss-free stretches only: no feedback from the decisions

    def flush(self) -> None:
        self.tick(np.inf, flush=True)

    def lag(self) -> float:
        det = self.detector
        if det is None:
            return 0.0
        return det.warmup_s + det.wait if det.period is None else det.wait

    def stats(self) -> dict[str, Any]:
        d = self.decoder.stats
        return {
            **super().stats(),
            "notifications_bytes": d.bytes,
            "frames": d.frames,
            "malformed": {"bad_frames": d.bad_frames, "skipped_bytes": d.skipped_bytes, "other_frames": d.other_frames},
        }


class _StackcueStream(_Stream):
    """stackcue profile: strict batch decoding, the counter tracker, the sample clock."""

    def __init__(self, src: BLESource, link: _Link) -> None:
        super().__init__(src, link)
        self.tracker: bp.CounterTracker | None = None
        self.malformed: Counter[str] = Counter()
        self.batches = 0
        self.restarts = 0

    def start(self, t: float, facts: dict[str, Any]) -> None:
        self.tracker = bp.CounterTracker()  # a new connection is a new segment, whatever the counter says
        self.tracker.expect(facts["boot_id"], facts["rate_mhz"])
        self._rate(facts["rate_mhz"])

    def _rate(self, rate_mhz: int) -> None:
        period = 1000.0 / rate_mhz
        if self.clock is None or abs(period - self.clock.nominal) > 1e-12:
            self.clock = SampleClock(period, window_s=300.0, max_slew=0.002, envelope_fit=True, exact_skips=True)
        else:
            self.clock.restart()
        self.period = period

    def data(self, t: float, payload: bytes) -> None:
        if self.tracker is None or self.clock is None:
            return
        try:
            batch = bp.decode_batch(payload)
        except ValueError as exc:
            self.malformed[str(exc).split(":")[0].split(" (")[0][:60]] += 1
            return
        self.batches += 1
        tr = self.tracker.update(batch)
        if tr.restart:
            self.restarts += 1
            if batch.rate_mhz is not None:
                self._rate(batch.rate_mhz)
            else:
                self.clock.restart()
        elif tr.lost:
            self.clock.skip(tr.lost)
            self.lost += tr.lost
            self.loss_events += 1
        stamps = self.clock.stamp(len(batch), t)
        if len(batch):
            self._emit(stamps, batch.acc, batch.gyr)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "batches": self.batches,
            "counter_restarts": self.restarts,
            "malformed": dict(self.malformed),
        }


class _I2CPelvis:
    """The pelvis MPU-6050 on I2C (as in :class:`~firmware_bridge.mpu6050_source.MPU6050Source`)."""

    def __init__(self, src: BLESource, i2c: Any, bus: int, address: int, **kw: Any) -> None:
        from .mpu6050 import MPU6050

        self.src = src
        self.i2c = i2c if i2c is not None else src.devices.i2c_bus(bus)
        self.dev = MPU6050(self.i2c, address, clock=src.clock, sleep=src.sleep, bus_number=bus, **kw)
        self.dev.start()
        self.period = 1.0 / self.dev.rate_hz
        self.samples = 0

    def take(self, now: float) -> Block:
        b = self.dev.read()
        self.samples += len(b)
        return Block(b.t - self.src.t0, b.acc, b.gyr)

    def close(self) -> None:
        self.dev.stop()
        close = getattr(self.i2c, "close", None)
        if close:
            close()


# --------------------------------------------------------------------------- the source


class BLESource(Source):
    """One or two segments over BLE (or a BLE trunk on an I2C pelvis) as one source.

    ``pelvis``/``trunk``: a Bluetooth address ("C4:11:22:33:44:55") or an advertised name
    ("WT901BLE68"); ``pelvis="i2c"`` reads the pelvis MPU-6050 on I2C; an empty ``trunk`` means none.
    ``pelvis_kind``/``trunk_kind``: "auto" (told from the advertisement), "witmotion" or "stackcue".
    ``rate_hz``: the output rate asked of the sensors (WitMotion: 200 Hz is its fastest).
    ``start_wait_s``: at the start, pelvis samples wait this long at most for the trunk's first ones
    (a calibration routine without the trunk would leave it out of the whole run).
    ``devices``: where bleak, the pelvis's I2C bus, the clock and the speed come from (default: the
    hardware: the real bleak, ``/dev/i2c-<bus>``, the host's clock); ``bleak``, ``i2c``, ``clock``,
    ``sleep`` and ``speed`` override them one by one (``speed`` divides the radio thread's waits, so a
    sped-up stand-in keeps its timing). ``tap(role, host_time, payload)`` sees every
    data notification as it arrives (on the radio thread: a raw recorder, or a test that maps samples
    to the truth). The constructor waits up to ``startup_s`` for each radio to start scanning: no
    adapter or no BlueZ is a :class:`SourceError`; a sensor that is off is only a status.
    """

    def __init__(
        self,
        *,
        pelvis: str,
        trunk: str = "",
        pelvis_kind: str = "auto",
        trunk_kind: str = "auto",
        rate_hz: float = 200.0,
        accel_range_g: int = 8,
        gyro_range_dps: int = 1000,
        scan_s: float = 4.0,
        connect_timeout_s: float = 10.0,
        backoff_s: tuple[float, float] = (1.0, 10.0),
        decision_delay_s: float = 1.0,
        trunk_hold_s: float = 0.6,
        start_wait_s: float = 30.0,
        poll_s: float = 0.05,
        duration_s: float | None = None,
        startup_s: float = 5.0,
        bleak: Any = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        speed: float | None = None,
        i2c: Any = None,
        bus: int = 1,
        pelvis_address: int = 0x68,
        i2c_rate_hz: float | None = None,
        accept_who_am_i: tuple[int, ...] = (),
        tap: Callable[[str, float, bytes], None] | None = None,
        devices: DeviceFactory | None = None,
    ) -> None:
        super().__init__()
        self.tap = tap
        if not pelvis:
            raise SourceError('a BLE source needs a pelvis sensor: an address, an advertised name, or "i2c"')
        for role, kind in (("pelvis", pelvis_kind), ("trunk", trunk_kind)):
            if kind not in ("auto", *KINDS):
                raise SourceError(f"{role} sensor kind must be auto, {' or '.join(KINDS)}, got {kind!r}")
        if trunk.lower() == "i2c":
            raise SourceError("the trunk cannot be on I2C in a BLE source (use the mpu6050 source for two I2C sensors)")
        if accel_range_g not in _ACC_CODE or gyro_range_dps not in _GYR_CODE:
            raise SourceError(f"ranges must be ±{sorted(_ACC_CODE)} g and ±{sorted(_GYR_CODE)} °/s")
        if "witmotion" in (pelvis_kind, trunk_kind):
            try:
                wm.set_rate(rate_hz)
            except ValueError as exc:
                raise SourceError(str(exc)) from None
        self.devices = devices if devices is not None else HardwareFactory()
        self.bleak = bleak if bleak is not None else self.devices.bleak()
        self.clock = clock if clock is not None else self.devices.clock
        self.sleep = sleep if sleep is not None else self.devices.sleep
        self.speed = float(speed if speed is not None else self.devices.speed)
        self.rate_hz, self.accel_range_g, self.gyro_range_dps = float(rate_hz), accel_range_g, gyro_range_dps
        self.scan_s, self.connect_timeout_s, self.backoff_s = scan_s, connect_timeout_s, backoff_s
        self.decision_delay_s, self.poll_s, self.duration_s = decision_delay_s, poll_s, duration_s
        self.t0 = self.clock()
        self._pacer = Pacer(self.clock, self.sleep, self.poll_s, self.t0)
        self.links: dict[str, _Link] = {}
        self.streams: dict[str, _Stream | _I2CPelvis] = {}
        self.i2c_pelvis: _I2CPelvis | None = None
        if pelvis.lower() == "i2c":
            self.i2c_pelvis = _I2CPelvis(
                self,
                i2c,
                bus,
                pelvis_address,
                rate_hz=i2c_rate_hz or rate_hz,
                accel_range_g=accel_range_g,
                gyro_range_dps=gyro_range_dps,
                accept_who_am_i=accept_who_am_i,
            )
            self.streams["pelvis"] = self.i2c_pelvis
        else:
            self.links["pelvis"] = _Link(self, "pelvis", pelvis, pelvis_kind)
        if trunk:
            self.links["trunk"] = _Link(self, "trunk", trunk, trunk_kind)
        for role, link in self.links.items():
            self.streams[role] = self._stream_for(link, link.kind)
        self.has_trunk = "trunk" in self.links
        self.aligner: TrunkAligner | None = None
        self.trunk_hold_s, self.start_wait_s = trunk_hold_s, start_wait_s
        if self.has_trunk:
            self.aligner = TrunkAligner(1.0 / self.rate_hz, hold_s=trunk_hold_s)
        self.meta = {
            "sensor": "ble",
            "rate": f"{self.rate_hz:g}",
            "pelvis": "i2c mpu6050" if self.i2c_pelvis else pelvis,
        }
        if trunk:
            self.meta["trunk"] = trunk
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()  # bound to the loop at its first use there
        self._thread = threading.Thread(target=self._run_loop, name="stackcue-ble", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + startup_s
        for link in self.links.values():
            link.first_attempt.wait(max(0.0, deadline - time.monotonic()))
        fatal = next((link.fatal for link in self.links.values() if link.fatal), None)
        if fatal is not None:
            self.close()
            raise SourceError(fatal)

    # ------------------------------------------------------------------ wiring
    def _stream_for(self, link: _Link, kind: str) -> _Stream:
        """A stream that follows the kind the sensor turns out to be (known only once it is heard)."""
        return _AutoStream(self, link) if kind not in KINDS else _STREAMS[kind](self, link)

    def sensor_options(self, kind: str) -> dict[str, Any]:
        if kind == "witmotion":
            return {"rate_hz": self.rate_hz}
        return {
            "rate_hz": self.rate_hz,
            "acc_code": _ACC_CODE[self.accel_range_g],
            "gyr_code": _GYR_CODE[self.gyro_range_dps],
        }

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            with contextlib.suppress(Exception):  # what bleak left running (a scanner's helper task)
                rest = asyncio.all_tasks(self._loop)
                for task in rest:
                    task.cancel()
                self._loop.run_until_complete(asyncio.wait(rest, timeout=1.0)) if rest else None
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _main(self) -> None:
        lock = asyncio.Lock()
        tasks = [asyncio.ensure_future(link.run(self._stop, lock)) for link in self.links.values()]
        await self._stop.wait()
        for task in tasks:  # whatever they wait for (a scan, a connect): stop now; their finally disconnects
            task.cancel()
        await asyncio.wait(tasks, timeout=3.0)

    # ------------------------------------------------------------------ Source
    @property
    def status(self) -> str:
        parts = []
        if self.i2c_pelvis is not None:
            parts.append(f"pelvis (I2C) {self.i2c_pelvis.dev.status}")
        for role, link in self.links.items():
            parts.append(f"{role} {link.status}")
        return "; ".join(parts)

    @property
    def stats(self) -> dict[str, Any]:
        """Per segment: kind, sensor, connects, dropouts [t_last, t_first_again], samples, lost, malformed."""
        out: dict[str, Any] = {}
        for role, s in self.streams.items():
            if isinstance(s, _I2CPelvis):
                d = s.dev.stats
                out[role] = {
                    "kind": "mpu6050-i2c",
                    "samples": s.samples,
                    "bus_errors": d.bus_errors,
                    "overflows": d.overflows,
                    "lost_s": round(d.lost_s, 3),
                }
                continue
            link = s.link
            out[role] = {
                "kind": link.sensor_kind,
                "target": link.target,
                "address": link.address,
                "name": link.name,
                "rssi_dbm": link.rssi,
                "rate_hz": link.facts.get("rate_hz"),
                "connects": link.connects,
                "disconnects": link.disconnects,
                "connect_attempts": link.attempts,
                "errors": dict(link.errors),
                **s.stats(),
            }
        return out

    def _read_block(self) -> Block | None:
        now = self.clock()
        if self.duration_s is not None and now - self.t0 >= self.duration_s:
            return None
        now = self._pacer.wait()
        pelvis = self.streams["pelvis"].take(now)
        if self.aligner is None:
            return pelvis
        trunk_stream = self.streams["trunk"]
        trunk = trunk_stream.take(now)
        # pelvis rows wait for the trunk samples after them as long as the trunk's stream holds samples back
        lag = trunk_stream.lag() if isinstance(trunk_stream, _Stream) else 0.0
        if not trunk_stream.given() and now - self.t0 < self.start_wait_s:
            lag = np.inf  # at the start, wait for the trunk: a calibration without it would leave it out all run
        self.aligner.hold_s = self.trunk_hold_s + lag
        self.aligner.add_pelvis(pelvis)
        self.aligner.add_trunk(trunk)
        al = self.aligner
        if len(al.tr_t) and not len(al.p_t) and al.tr_t[0] < now - self.t0 - 5.0:
            keep = int(np.searchsorted(al.tr_t, now - self.t0 - 5.0))  # pelvis away: do not hoard the trunk
            al.tr_t, al.tr_x = al.tr_t[keep:], al.tr_x[keep:]
        return al.take()

    def _close(self) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5.0)
        if self.i2c_pelvis is not None:
            self.i2c_pelvis.close()


class _AutoStream(_Stream):
    """Becomes the stream of the kind the sensor turns out to be, at its first connection."""

    def __init__(self, src: BLESource, link: _Link) -> None:
        super().__init__(src, link)
        self.inner: _Stream | None = None

    def take(self, now: float) -> Block:
        if self.inner is None:
            if not self.link.events:
                return Block.empty()
            kind = self.link.sensor_kind
            if kind is None:
                return Block.empty()
            self.inner = _STREAMS[kind](self.src, self.link)
        return self.inner.take(now)

    def stats(self) -> dict[str, Any]:
        return self.inner.stats() if self.inner is not None else super().stats()

    def lag(self) -> float:
        return self.inner.lag() if self.inner is not None else 0.0

    def given(self) -> bool:
        return self.inner is not None and self.inner.given()


_STREAMS: dict[str, type[_Stream]] = {"witmotion": _WitStream, "stackcue": _StackcueStream}
