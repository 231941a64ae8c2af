"""The emulated radio: the air that emulated BLE sensors are heard in, and BlueZ's view of it.

Together with :mod:`.ble_sensors` and :mod:`.ble_backends`, a stand-in for bleak 3.1 on BlueZ: emulated
BLE IMUs streaming a synthetic runner, for tests and demos without a radio.

``Air`` is the radio space: it holds emulated sensors and hands out ``air.bleak``, a namespace with the
*real* bleak ``BleakScanner``/``BleakClient`` front ends (subclassed only to plug in a backend and to scale
their timeouts to the air's time) and bleak's real exception and data classes. So constructor arguments,
``async with``, callback wrapping (sync or async), ``services``/``get_characteristic``, characteristic
resolution and its errors are bleak's own code; :mod:`.ble_backends` emulates what BlueZ does underneath.

Time. ``air.now()`` is the air's clock (``ScaledClock(speed)`` unless one is injected; an injected clock must
run ``speed`` times faster than real time, e.g. a shared ``ScaledClock``), and every wait in here is
``asyncio.sleep(air_seconds / speed)``. Notifications leave only at connection events, every
``connection_interval_s`` (30 ms) from the moment the link came up, and the callbacks run inside the
connection's task on the event loop that connected (BlueZ delivers them through D-Bus on that loop too).

Here too: BlueZ's device cache (a device object dropped ``bluez_temporary_timeout_s`` after it was last
seen or disconnected), advertising events, links with their connection events and supervision timeout,
and on every data notification the air's faults (loss, corruption: see :mod:`.ble_sensors`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError

from stackcue.firmware_bridge.clocks import ScaledClock

from .ble_backends import bleak_namespace
from .ble_sensors import ADV_INTERVAL_S, Notification

if TYPE_CHECKING:
    from .ble_backends import _ClientBackend, _ScannerBackend
    from .ble_sensors import _EmulatedSensor

__all__ = ["Air"]

logger = logging.getLogger(__name__)

CONNECTION_INTERVAL_S = 0.030  # what BlueZ typically gets (kernel default min/max 30–50 ms)
SUPERVISION_TIMEOUT_S = 0.42  # Linux default le_supv_timeout 0x002a (× 10 ms)
BLUEZ_TEMPORARY_TIMEOUT_S = 30.0  # main.conf TemporaryTimeout
BLUEZ_ATT_MTU = 517  # what BlueZ asks for in the MTU exchange
ADV_DELAY_S = 0.010  # the spec's random advDelay 0..10 ms
CONNECT_SETUP_S = 0.25  # connection, MTU exchange and service discovery
RSSI_NOISE_DB = 2.0
ADAPTER_PATH = "/org/bluez/hci0"


# --------------------------------------------------------------------------- BlueZ's view


@dataclass
class _BlueZDevice:
    """A device object in BlueZ: known until TemporaryTimeout after it was last seen or disconnected."""

    address: str
    path: str
    props: dict[str, Any]
    advertised: list[str]
    last_seen: float
    connected: bool = False
    disconnected_at: float = -math.inf


@dataclass
class _Link:
    """One LE connection between a client backend and a sensor."""

    sensor: _EmulatedSensor
    client: _ClientBackend
    t0: float
    mtu: int
    loop: asyncio.AbstractEventLoop
    callbacks: dict[int, Callable[[bytearray], None]] = field(default_factory=dict)
    values: dict[int, bytes] = field(default_factory=dict)
    ops: list[tuple[Callable[[float], Any], asyncio.Future[Any] | None]] = field(default_factory=list)
    closed: bool = False
    task: asyncio.Task[None] | None = None

    def submit(self, fn: Callable[[float], Any], wait: bool = True) -> asyncio.Future[Any] | None:
        """Queue an ATT operation for the next connection event (its reply comes back then)."""
        fut = self.loop.create_future() if wait else None
        self.ops.append((fn, fut))
        return fut


class Air:
    """The radio space: emulated sensors, BlueZ's device cache, and a bleak namespace bound to them.

    ``speed``: air seconds per real second; ``seed``: faults, RSSI noise, advertising jitter and boot ids;
    ``adapter=False``: a machine without a Bluetooth adapter (``bluez_running=False``: without BlueZ).
    """

    def __init__(
        self,
        speed: float = 1.0,
        seed: int = 0,
        adapter: bool = True,
        *,
        clock: Callable[[], float] | None = None,
        bluez_running: bool = True,
        connection_interval_s: float = CONNECTION_INTERVAL_S,
        supervision_timeout_s: float = SUPERVISION_TIMEOUT_S,
        bluez_temporary_timeout_s: float = BLUEZ_TEMPORARY_TIMEOUT_S,
        host_att_mtu: int = BLUEZ_ATT_MTU,
        connect_setup_s: float = CONNECT_SETUP_S,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if not 0.0075 <= connection_interval_s <= 4.0:
            raise ValueError(f"connection_interval_s={connection_interval_s} is outside BLE's 7.5 ms..4 s")
        self.speed = float(speed)
        self.seed = seed
        self.adapter = adapter
        self.bluez_running = bluez_running
        self.clock: Callable[[], float] = clock if clock is not None else ScaledClock(speed)
        self.connection_interval_s = float(connection_interval_s)
        self.supervision_timeout_s = float(supervision_timeout_s)
        self.bluez_temporary_timeout_s = float(bluez_temporary_timeout_s)
        self.host_att_mtu = int(host_att_mtu)
        self.connect_setup_s = float(connect_setup_s)
        self._sensors: dict[str, _EmulatedSensor] = {}
        self._bluez: dict[str, _BlueZDevice] = {}
        self._scanners: list[_ScannerBackend] = []
        self._radio_task: asyncio.Task[None] | None = None
        self._rng = random.Random(f"{seed}/air")

        self.bleak = bleak_namespace(self)

    # --- time ------------------------------------------------------------------------------------------

    def now(self) -> float:
        return float(self.clock())

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of air time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def _sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()) / self.speed)

    # --- sensors ---------------------------------------------------------------------------------------

    def add(self, sensor: _EmulatedSensor) -> _EmulatedSensor:
        if sensor.address in self._sensors:
            raise ValueError(f"{sensor.address} is already in the air")
        if sensor._air is not None and sensor._air is not self:
            raise ValueError(f"{sensor.address} belongs to another air")
        self._sensors[sensor.address] = sensor
        sensor._attach(self, self.now())
        return sensor

    def remove(self, address: str) -> _EmulatedSensor:
        """The sensor is gone for good (a link to it breaks; it is no longer advertised)."""
        sensor = self._sensors.pop(address.upper())
        sensor._detach(self.now())
        return sensor

    def sensor(self, address: str) -> _EmulatedSensor:
        return self._sensors[address.upper()]

    @property
    def sensors(self) -> list[_EmulatedSensor]:
        return list(self._sensors.values())

    # --- BlueZ -----------------------------------------------------------------------------------------

    def _check_adapter(self) -> None:
        if not self.bluez_running:
            raise BleakDBusError(
                "org.freedesktop.DBus.Error.ServiceUnknown",
                ["The name org.bluez was not provided by any .service files"],
            )
        if not self.adapter:
            raise BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            )

    def _bluez_device(self, path: str) -> _BlueZDevice | None:
        """BlueZ's device object at ``path``, dropped once TemporaryTimeout passed (lazily, as a timer would)."""
        dev = next((d for d in self._bluez.values() if d.path == path), None)
        if dev is None or dev.connected:
            return dev
        if self.now() > max(dev.last_seen, dev.disconnected_at) + self.bluez_temporary_timeout_s:
            del self._bluez[dev.address]
            for sc in self._scanners:
                sc.seen_devices.pop(dev.path, None)
            return None
        return dev

    def _advertise(self, sensor: _EmulatedSensor, t: float) -> None:
        path = f"{ADAPTER_PATH}/dev_{sensor.address.replace(':', '_')}"
        dev = self._bluez_device(path)
        if dev is None:
            dev = self._bluez[sensor.address] = _BlueZDevice(sensor.address, path, {}, [], t)
        dev.last_seen = t
        dev.advertised = list(sensor.adv_service_uuids)
        uuids = list(dict.fromkeys([*sensor.adv_service_uuids, *dev.props.get("UUIDs", [])]))
        rssi = round(sensor.rssi_dbm + sensor._adv_rng.gauss(0.0, RSSI_NOISE_DB))
        dev.props = {
            "Address": sensor.address,
            "AddressType": "public",
            "Name": sensor.name,
            "Alias": sensor.name,
            "Paired": False,
            "Bonded": False,
            "Trusted": False,
            "Blocked": False,
            "LegacyPairing": False,
            "Connected": False,
            "ServicesResolved": False,
            "UUIDs": uuids,
            "RSSI": rssi,
            "Adapter": ADAPTER_PATH,
            "ManufacturerData": {},
            "ServiceData": {},
        }
        for sc in list(self._scanners):
            sc._on_advertisement(dev, t)

    def _ensure_radio(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._radio_task
        if task is None or task.done() or task.get_loop() is not loop:
            self._radio_task = loop.create_task(self._radio())

    async def _radio(self) -> None:
        """Advertising events of every advertising sensor, heard by the running scanners."""
        listening_from = self.now()
        for s in self._sensors.values():  # nobody listened before: pick up the rhythm now
            if s._adv_next < listening_from:
                s._adv_next = listening_from + s._adv_rng.uniform(0.0, s.adv_interval_s)
        while self._scanners:
            now = self.now()
            due = min((s._adv_next for s in self._sensors.values()), default=now + ADV_INTERVAL_S)
            if due > now:
                await self._sleep_until(min(due, now + ADV_INTERVAL_S))
                continue
            self._deliver_advertising(now)
            await asyncio.sleep(0)

    def _deliver_advertising(self, now: float) -> None:
        """Every advertising event due by ``now``, stamped with its own instant however late the loop got here."""
        for s in list(self._sensors.values()):
            while s._adv_next <= now:
                t = s._adv_next
                s._adv_next += s.adv_interval_s + s._adv_rng.uniform(0.0, ADV_DELAY_S)
                if s._advertising(t):
                    self._advertise(s, t)

    def _scanner_stopping(self) -> None:
        """A scanner hears what was on the air until it stopped, even if the radio task has not run since."""
        if self._radio_task is not None and not self._radio_task.done():
            self._deliver_advertising(self.now())

    # --- links -----------------------------------------------------------------------------------------

    def _open_link(self, sensor: _EmulatedSensor, client: _ClientBackend, dev: _BlueZDevice) -> _Link:
        t = self.now()
        mtu = min(sensor.att_mtu, self.host_att_mtu)
        link = _Link(sensor, client, t, mtu, asyncio.get_running_loop())
        sensor._link = link
        sensor._carry = b""
        sensor._stats.connects += 1
        sensor._on_connect(t, mtu)
        dev.connected = True
        gatt = [s.uuid for s in sensor.GATT]
        dev.props = {
            **dev.props,
            "Connected": True,
            "ServicesResolved": True,
            "UUIDs": list(dict.fromkeys([*dev.props.get("UUIDs", []), *gatt])),
        }
        link.task = link.loop.create_task(self._run_link(link))
        return link

    def _close_link(self, link: _Link, t: float, lost: bool) -> None:
        if link.closed:
            return
        link.closed = True
        sensor = link.sensor
        if sensor._link is link:
            sensor._link = None
        sensor._stats.disconnects += 1
        sensor._stats.link_losses += int(lost)
        if lost:
            sensor._stats.link_lost_at.append(t)
        sensor._on_disconnect(t)
        dev = self._bluez.get(sensor.address)
        if dev is not None:
            dev.connected = False
            dev.disconnected_at = t
            dev.props = {**dev.props, "Connected": False, "ServicesResolved": False}
        err = BleakDBusError("org.bluez.Error.Failed", ["Not connected"])
        for _, fut in link.ops:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        link.ops.clear()
        if link.task is not None and link.task is not asyncio.current_task() and not link.task.done():
            link.task.cancel()
        link.client._on_link_closed()

    async def _run_link(self, link: _Link) -> None:
        """Connection events every ``connection_interval_s`` from the link's start."""
        k, prev = 0, link.t0
        try:
            while not link.closed:
                k += 1
                te = link.t0 + k * self.connection_interval_s
                await self._sleep_until(te)
                if link.closed:
                    return
                lost = link.sensor._link_lost_at(prev, te)
                if lost is not None:  # the radio went silent: the host notices a supervision timeout later
                    await self._sleep_until(lost + self.supervision_timeout_s)
                    self._close_link(link, lost + self.supervision_timeout_s, lost=True)
                    return
                self._connection_event(link, te)
                prev = te
        except asyncio.CancelledError:
            link.closed = True
            if link.sensor._link is link:
                link.sensor._link = None
            raise

    def _connection_event(self, link: _Link, te: float) -> None:
        sensor = link.sensor
        for uuid, payload, first, count, is_data in sensor._notifications(te):
            self._transmit(link, te, uuid, payload, first, count, is_data)
            if link.closed:
                return
        ops, link.ops = link.ops, []
        for fn, fut in ops:
            if fut is not None and fut.done():
                continue
            try:
                result = fn(te)
            except Exception as e:  # the ATT error goes back to the caller
                if fut is not None:
                    fut.set_exception(e)
                continue
            if fut is not None:
                fut.set_result(result)
            if link.closed:
                return

    def _transmit(
        self, link: _Link, te: float, uuid: str, payload: bytes, first: int, count: int, is_data: bool
    ) -> None:
        sensor = link.sensor
        st = sensor._stats
        st.notifications += 1
        st.samples_sent += count
        out: bytes | None = payload
        fate = "delivered"
        if is_data:
            prefix, sensor._carry = sensor._carry, b""  # held back from the previous one (split/merged)
            out = prefix + payload
            rng = sensor._fault_rng
            u = rng.random()
            if u < sensor.loss:
                fate, out = "lost", None
                st.dropped += 1
            elif u < sensor.loss + sensor.corrupt:
                kind = rng.choice(sensor.corrupt_kinds)
                damaged = sensor._damage(kind, payload)  # on the sensor's own frames; may hold bytes back
                if damaged is None:
                    sensor._carry = prefix + sensor._carry
                out = None if damaged is None else prefix + damaged
                fate = f"corrupt:{kind}"
                st.corrupted[kind] += 1
        char = next(c for s in sensor.GATT for c in s.chars if c.uuid == uuid)
        callback = link.callbacks.get(char.handle)
        if out is not None and callback is None:
            fate, out = "unsubscribed", None
            st.unsubscribed += 1
        if sensor.record:
            sensor.trace.append(Notification(te, uuid, payload, out, fate, first, count))
        if out is None or callback is None:
            return
        link.values[char.handle] = out
        st.delivered += 1
        try:
            callback(bytearray(out))
        except Exception:  # as dbus-fast does for a failing message handler: log, keep the link
            logger.exception("notification callback for %s raised", uuid)
