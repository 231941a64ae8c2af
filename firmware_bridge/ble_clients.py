"""BLE IMUs over bleak: a scan that tells the supported sensors apart, and one client per sensor kind.

The packet layers are :mod:`firmware_bridge.witmotion` and :mod:`firmware_bridge.ble_profile`; here is
only what goes over the radio. ``bleak`` is injectable everywhere (default: the real module; the tests
pass :mod:`firmware_bridge.emulated.ble_radio`'s ``air.bleak``), and so is the async sleep, so that a sped-up air
keeps its timing. Written against bleak 3.1.0 (read in its source: ``bleak/__init__.py``,
``backends/bluezdbus/{client,manager,scanner}.py``, ``exc.py``), with these facts relied on:

- ``BleakScanner(detection_callback)`` as an async context manager; ``AdvertisementData`` carries
  ``local_name``, ``service_uuids`` and ``rssi`` (``BLEDevice.rssi`` is gone since bleak 1.0).
  ``BleakScanner.start`` raises ``BleakBluetoothNotAvailableError`` without an adapter (bleak ≥ 2.0,
  ``manager.get_default_adapter``); without BlueZ the D-Bus call fails with ``BleakDBusError``
  (``org.freedesktop.DBus.Error.ServiceUnknown``), without a system bus at all with ``FileNotFoundError``
  (checked on this machine). :func:`adapter_problem` turns these into one line.
- ``BleakClient(BLEDevice, disconnected_callback=…, timeout=…)``: connect with the device a scan just
  returned, not with an address: an address makes ``connect`` run its own discovery, which misbehaves
  with two sensors at once (the warning in ``BleakClient``'s docstring). On BlueZ a dropped device is
  removed from BlueZ's cache (TemporaryTimeout, 30 s) and a client that already has a device path skips
  discovery, so it can never reconnect: every attempt scans again and makes a NEW ``BleakClient``
  (hbldh/bleak#676 "Unable to reconnect after unsolicited disconnect due to Bleak skipping discovery",
  #1176 "…It may have been removed from BlueZ when scanning stopped", #713; and #2002: on BlueZ,
  ``start_notify`` on a reused client after a reconnect doubled the callbacks in 3.0.2).
- Connect while not scanning (hbldh/bleak#631 "Software caused connection abort": stop the scanner,
  then connect); the source serialises scan + connect across its sensors.
- ``start_notify(uuid, callback)``: a plain function is called with ``(characteristic, bytearray)`` on
  the event loop (bleak wraps it with ``functools.partial``); notifications are handled only while the
  loop runs, so nothing here blocks it (hbldh/bleak#617, #183). Callbacks do the least: copy the bytes
  and take the host time. Writes: ``write_gatt_char(…, response=…)`` with ``response`` given explicitly
  (omitting it is deprecated since 0.21).
- MTU: on BlueZ ``mtu_size`` is 23 until ``_acquire_mtu()`` (bleak ``examples/mtu_size.py``,
  hbldh/bleak#1165); BlueZ itself asks for 517 in the exchange. The receiver does not need the value:
  a WitMotion notification is decoded as a byte stream, a stackcue batch carries its own length.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stackcue.errors import SensorSetupError

from . import ble_profile as bp
from . import witmotion as wm

KIND_WITMOTION = "witmotion"
KIND_STACKCUE = "stackcue"
KINDS = (KIND_WITMOTION, KIND_STACKCUE)

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")

Sleep = Callable[[float], Awaitable[None]]


def default_bleak() -> Any:
    """The real bleak module (imported only when a BLE source or scan is used)."""
    import bleak

    return bleak


def is_address(target: str) -> bool:
    return bool(_ADDRESS.match(target))


def classify(name: str | None, service_uuids: list[str] | tuple[str, ...] = ()) -> str | None:
    """Sensor kind of an advertisement, or None for anything else.

    stackcue sensors advertise their service UUID (docs/ble_profile.md) and a name starting "stackcue".
    WitMotion sensors advertise only their name ("WT901BLE…"): every vendor SDK finds them by the prefix
    "WT"; their 0xffe5 service on the vendor's base UUID counts too, if it is ever advertised.
    """
    uuids = {u.lower() for u in service_uuids}
    if bp.SERVICE_UUID in uuids or (name or "").lower().startswith("stackcue"):
        return KIND_STACKCUE
    if wm.SERVICE_UUID in uuids or (name or "").startswith("WT"):
        return KIND_WITMOTION
    return None


def adapter_problem(exc: BaseException, bleak: Any) -> str | None:
    """One line when ``exc`` means the machine has no usable Bluetooth (rather than a sensor problem)."""
    not_available = getattr(bleak, "BleakBluetoothNotAvailableError", None)
    if not_available is None:
        not_available = getattr(getattr(bleak, "exc", None), "BleakBluetoothNotAvailableError", ())
    if not_available and isinstance(exc, not_available):
        return (
            f"no usable Bluetooth adapter ({exc.args[0] if exc.args else exc}); plug one in or power it on "
            "(bluetoothctl power on), or check rfkill"
        )
    dbus_error = getattr(bleak, "BleakDBusError", None) or getattr(getattr(bleak, "exc", None), "BleakDBusError", ())
    if dbus_error and isinstance(exc, dbus_error) and "ServiceUnknown" in str(getattr(exc, "dbus_error", exc)):
        return (
            "BlueZ is not running (org.bluez is not on D-Bus); install and start it: "
            "sudo apt-get install bluez && sudo systemctl enable --now bluetooth"
        )
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        return (
            "no D-Bus system bus, so no BlueZ (BLE needs Linux with BlueZ); "
            "install bluez and dbus, then sudo systemctl enable --now bluetooth"
        )
    return None


async def race(aw: Awaitable[Any], seconds: float, sleep: Sleep) -> Any:
    """``asyncio.wait_for`` with the timeout on the caller's clock (``sleep``): TimeoutError when it runs out."""
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(sleep(seconds))
    try:
        done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        timer.cancel()
        raise
    if task in done:
        timer.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise TimeoutError(f"no answer within {seconds:g} s")


# --------------------------------------------------------------------------- scanning


@dataclass
class Advert:
    """A supported sensor heard while scanning."""

    address: str
    name: str
    kind: str
    rssi: int
    device: Any = field(repr=False)  # the BLEDevice to connect with
    heard: int = 1


async def scan(bleak: Any, seconds: float, sleep: Sleep = asyncio.sleep) -> list[Advert]:
    """Supported sensors advertising within ``seconds``, strongest first (adapter errors propagate)."""
    found: dict[str, Advert] = {}

    def heard(device: Any, adv: Any) -> None:
        name = adv.local_name or device.name or ""
        kind = classify(name, adv.service_uuids)
        if kind is None:
            return
        a = found.get(device.address)
        if a is None:
            found[device.address] = Advert(device.address, name, kind, adv.rssi, device)
        else:
            a.heard += 1
            a.rssi, a.device = adv.rssi, device
            a.name = name or a.name

    async with bleak.BleakScanner(detection_callback=heard):
        await sleep(seconds)
    return sorted(found.values(), key=lambda a: -a.rssi)


async def find(
    bleak: Any,
    target: str,
    seconds: float,
    sleep: Sleep = asyncio.sleep,
    kind: str | None = None,
    scanning: Callable[[], None] | None = None,
) -> Advert | None:
    """The advertising sensor with address or advertised name ``target`` (None if not heard in ``seconds``).

    ``kind`` forces the sensor kind (otherwise it is told from the advertisement); ``scanning`` is called
    once the scanner runs (so a caller can tell "no adapter" from "not found" quickly).
    """
    queue: asyncio.Queue[Advert] = asyncio.Queue()
    by_address = is_address(target)

    def heard(device: Any, adv: Any) -> None:
        name = adv.local_name or device.name or ""
        if (device.address.upper() == target.upper()) if by_address else (name == target):
            k = kind or classify(name, adv.service_uuids)
            if k is not None:
                queue.put_nowait(Advert(device.address, name, k, adv.rssi, device))

    async with bleak.BleakScanner(detection_callback=heard):
        if scanning is not None:
            scanning()
        try:
            return await race(queue.get(), seconds, sleep)
        except TimeoutError:
            return None


# --------------------------------------------------------------------------- clients per kind


class SensorClient:
    """One connected sensor: ``start()`` configures it and turns the stream on.

    ``on_data(payload)`` gets every data notification once the stream is configured (never before:
    samples at an old rate would be timestamped wrongly). It runs on the event loop: it must be quick.
    """

    kind = ""
    data_uuid = ""

    def __init__(
        self,
        client: Any,
        on_data: Callable[[bytes], None],
        sleep: Sleep = asyncio.sleep,
        on_ready: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.client = client
        self.on_data = on_data
        self.sleep = sleep
        self.on_ready = on_ready
        self.streaming = False

    def _ready(self, facts: dict[str, Any]) -> dict[str, Any]:
        """Announce the configuration, then let the data through (so nothing arrives before the facts)."""
        if self.on_ready is not None:
            self.on_ready(facts)
        self.streaming = True
        return facts

    async def start(self, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _response(self, uuid: str) -> bool:
        """Write with response where the characteristic offers it (the more reliable write)."""
        char = self.client.services.get_characteristic(uuid)
        return char is None or "write" in char.properties


class WitMotionClient(SensorClient):
    """WT901BLECL / BWT901BLE5.0: notify on 0xffe4, register commands on 0xffe9.

    ``start`` reads the output rate (register 0x03) and, when it is not the one wanted, unlocks, writes
    it and saves it, awaiting every write with pauses between (the vendor's Python sample does not await
    the unlock and the save, so its rate change is neither accepted nor kept), waits out the silence
    after a save, and reads the rate back.
    """

    kind = KIND_WITMOTION
    data_uuid = wm.NOTIFY_UUID
    WRITE_PAUSE_S = 0.1
    SAVE_QUIET_S = 0.5
    REPLY_TIMEOUT_S = 0.6

    def __init__(
        self,
        client: Any,
        on_data: Callable[[bytes], None],
        sleep: Sleep = asyncio.sleep,
        on_ready: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(client, on_data, sleep, on_ready)
        self._probe: wm.WitDecoder | None = None

    def _notified(self, _char: Any, data: bytearray) -> None:
        if self.streaming:
            self.on_data(bytes(data))
        elif self._probe is not None:
            self._probe.feed(bytes(data))

    async def read_rate(self, tries: int = 3) -> float | None:
        """The output rate register as the sensor answers it (None if it does not)."""
        response = self._response(wm.WRITE_UUID)
        for _ in range(tries):
            self._probe = wm.WitDecoder()
            await self.client.write_gatt_char(wm.WRITE_UUID, wm.read_register(wm.REG_RATE), response=response)
            waited = 0.0
            while waited < self.REPLY_TIMEOUT_S:
                await self.sleep(0.05)
                waited += 0.05
                reply = next((r for r in self._probe.replies if r.reg == wm.REG_RATE), None)
                if reply is not None:
                    return reply.rate_hz
        return None

    async def start(self, rate_hz: float = wm.MAX_RATE_HZ, **_: Any) -> dict[str, Any]:
        commands = wm.rate_sequence(rate_hz)  # ValueError for a rate without a code, before touching the sensor
        await self.client.start_notify(wm.NOTIFY_UUID, self._notified)
        before = await self.read_rate()
        changed = False
        if before != rate_hz:
            response = self._response(wm.WRITE_UUID)
            for cmd in commands:  # unlock, rate, save: each awaited, in order, with a pause
                await self.client.write_gatt_char(wm.WRITE_UUID, cmd, response=response)
                await self.sleep(self.WRITE_PAUSE_S)
            await self.sleep(self.SAVE_QUIET_S)  # writing its flash, the sensor sends nothing useful
            changed = True
            now = await self.read_rate()
            if now is not None and now != rate_hz:
                raise SensorSetupError(
                    f"WitMotion sensor kept its output rate at {now:g} Hz after writing {rate_hz:g} Hz"
                )
        else:
            now = before
        self._probe = None
        return self._ready(
            {
                "rate_hz": float(now if now is not None else rate_hz),
                "rate_confirmed": now is not None,
                "rate_before_hz": before,
                "rate_written": changed,
            }
        )


class StackcueClient(SensorClient):
    """stackcue's own profile (docs/ble_profile.md): info read, control writes answered on notify, data."""

    kind = KIND_STACKCUE
    data_uuid = bp.DATA_UUID
    REPLY_TIMEOUT_S = 2.0

    def __init__(
        self,
        client: Any,
        on_data: Callable[[bytes], None],
        sleep: Sleep = asyncio.sleep,
        on_ready: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(client, on_data, sleep, on_ready)
        self._replies: list[bp.ControlReply] = []
        self._seq = 0

    def _data(self, _char: Any, data: bytearray) -> None:
        if self.streaming:
            self.on_data(bytes(data))

    def _control(self, _char: Any, data: bytearray) -> None:
        with contextlib.suppress(ValueError):
            self._replies.append(bp.decode_reply(bytes(data)))

    async def request(self, make: Callable[[int], bytes]) -> bp.ControlReply:
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        await self.client.write_gatt_char(bp.CONTROL_UUID, make(seq), response=True)
        waited = 0.0
        while waited < self.REPLY_TIMEOUT_S:
            reply = next((r for r in self._replies if r.seq == seq), None)
            if reply is not None:
                if not reply.ok:
                    said = bp.STATUS_TEXT.get(reply.status, reply.status)
                    raise SensorSetupError(f"stackcue sensor answered '{said}'")
                return reply
            await self.sleep(0.02)
            waited += 0.02
        raise SensorSetupError(f"stackcue sensor did not answer a control write within {self.REPLY_TIMEOUT_S:g} s")

    async def start(self, rate_hz: float = 200.0, acc_code: int = 2, gyr_code: int = 2, **_: Any) -> dict[str, Any]:
        info = bp.decode_info(bytes(await self.client.read_gatt_char(bp.INFO_UUID)))
        await self.client.start_notify(bp.CONTROL_UUID, self._control)
        rate_mhz, boot_id, acc, gyr = info.rate_mhz, info.boot_id, info.acc_code, info.gyr_code
        if (acc, gyr) != (acc_code, gyr_code):
            r = await self.request(lambda s: bp.set_ranges_request(s, acc_code, gyr_code))
            rate_mhz, boot_id, acc, gyr = r.rate_mhz, r.boot_id, r.acc_code, r.gyr_code
        if abs(rate_mhz - rate_hz * 1000) > 0.5:
            r = await self.request(lambda s: bp.set_rate_request(s, rate_hz))
            rate_mhz, boot_id, acc, gyr = r.rate_mhz, r.boot_id, r.acc_code, r.gyr_code
        facts = self._ready(
            {
                "rate_hz": rate_mhz / 1000.0,
                "rate_mhz": rate_mhz,
                "boot_id": boot_id,
                "acc_code": acc,
                "gyr_code": gyr,
                "imu": bp.IMU_KINDS.get(info.imu_kind, str(info.imu_kind)),
                "firmware": f"{info.firmware[0]}.{info.firmware[1]}",
            }
        )
        await self.client.start_notify(bp.DATA_UUID, self._data)
        return facts


CLIENTS: dict[str, type[SensorClient]] = {KIND_WITMOTION: WitMotionClient, KIND_STACKCUE: StackcueClient}


async def probe_stream(
    bleak: Any,
    advert: Advert,
    seconds: float = 2.0,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    """Connect briefly, subscribe to the data characteristic *as it is* (nothing written) and count.

    (streams?, what was seen). Nothing is configured, so a WitMotion at its saved rate streams at that
    rate; samples are counted from what arrives (WitMotion frames, stackcue batch sizes). The rate is
    the samples after the first notification over the time from the first to the last (``clock``), not
    all samples over the listening window: at 200 Hz one batch more or less in a 2 s window would be
    ±10 samples/s.
    """
    samples = 0
    arrivals: list[tuple[float, int]] = []  # (time, samples so far) at each notification

    def on_notify(_char: Any, data: bytearray) -> None:
        nonlocal samples
        if advert.kind == KIND_WITMOTION:
            samples += bytes(data).count(bytes((wm.HEADER, wm.KIND_DATA)))
        else:
            with contextlib.suppress(ValueError):
                samples += len(bp.decode_batch(bytes(data)))
        arrivals.append((clock(), samples))

    client = bleak.BleakClient(advert.device, timeout=10.0)
    try:
        await race(client.connect(), 12.0, sleep)
        uuid = CLIENTS[advert.kind].data_uuid
        await client.start_notify(uuid, on_notify)
        await sleep(seconds)
    except Exception as exc:  # a probe reports, never raises: the scan goes on
        return False, f"could not connect: {type(exc).__name__}: {exc}".rstrip(": ")
    finally:
        with contextlib.suppress(Exception):
            await race(client.disconnect(), 2.0, sleep)
    if not arrivals:
        return False, f"connected, no notifications in {seconds:g} s"
    (t0, n0), (t1, n1) = arrivals[0], arrivals[-1]
    rate = (n1 - n0) / (t1 - t0) if len(arrivals) >= 3 and t1 - t0 >= 0.25 * seconds else samples / seconds
    return True, f"~{rate:.0f} samples/s"
