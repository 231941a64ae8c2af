"""Stand-ins for bleak's BlueZ backends, so bleak's own ``BleakScanner``/``BleakClient`` run on an emulated air.

``bleak_namespace(air)`` is what ``air.bleak`` holds: the *real* front ends, subclassed only to plug in
these backends and to scale their timeouts to the air's time, and bleak's real exception and data
classes; code written against bleak takes it where it takes the ``bleak`` module.

BlueZ / bleak 3.1.0 behaviour mirrored (read in ``.venv/lib/python3.11/site-packages/bleak``):

- ``backends/bluezdbus/client.py`` ``connect``: ``BleakError("Client is already connected")``; a client made
  from an address first runs ``BleakScanner.find_device_by_address(address, timeout)`` and raises
  ``BleakDeviceNotFoundError(address, "Device with address … was not found.")``; a client that already has a
  device path (made from a ``BLEDevice``, or reused after a disconnect) skips discovery and calls ``Connect``
  on it: ``BleakDeviceNotFoundError("… It may have been removed from BlueZ when scanning stopped.")`` when
  BlueZ has dropped the device object, otherwise it keeps trying until its ``timeout`` and raises
  ``TimeoutError`` (``async_timeout``) if the device never becomes connectable (out of range, powered off, or
  connected to another central, so not advertising).
- BlueZ drops a device object that is neither connected nor bonded ``TemporaryTimeout`` (30 s, main.conf)
  after it was last seen by discovery or disconnected (hbldh/bleak#676 "Unable to reconnect after
  unsolicited disconnect due to Bleak skipping discovery", #1176 "It may have been removed from BlueZ when
  scanning stopped", weliem/bluez_inc#103 "it takes 30s for Bluez to remove a device"). Hence, after an
  outage longer than that, the old client cannot reconnect, and a new scan + new client can; after a short
  outage, reusing the old client works, as it does on a real Pi (``bluez_temporary_timeout_s`` sets it).
- ``_on_disconnected``: ``is_connected`` False, ``services`` None and the ``disconnected_callback`` called —
  also after a requested ``disconnect()`` (bleak calls it from the ``Connected`` property change either way).
  An unsolicited link loss is noticed by the host a supervision timeout after the radio went silent
  (``supervision_timeout_s``, 420 ms: Linux's default LE supervision timeout 0x2a × 10 ms).
- ``mtu_size`` returns 23 with a ``UserWarning`` until ``client._backend._acquire_mtu()`` ran (as on BlueZ);
  characteristics' ``max_write_without_response_size`` is the negotiated ATT MTU − 3 (BlueZ ≥ 5.62 ``MTU``).
  The negotiated ATT MTU is min(sensor's ``att_mtu``, 517 that BlueZ asks for).
- GATT errors as ``bluezdbus/utils.py`` ``assert_gatt_reply`` maps BlueZ's: write with a type the
  characteristic lacks → ``BleakGATTProtocolError(REQUEST_NOT_SUPPORTED)`` (BlueZ answers NotSupported before
  sending); read of a non-readable one → ``READ_NOT_PERMITTED``; ``start_notify`` on one without
  notify/indicate → ``BleakDBusError("org.bluez.Error.NotSupported")``; unknown characteristic →
  ``BleakCharacteristicNotFoundError`` (bleak's front end); an operation pending when the link drops →
  ``BleakDBusError("org.bluez.Error.Failed", ["Not connected"])``; anything when not connected →
  ``BleakError("Not connected")``.
- No adapter: ``BleakBluetoothNotAvailableError("No Bluetooth adapters found.", NO_BLUETOOTH)`` from
  ``bluezdbus/manager.py`` ``get_default_adapter``; BlueZ not running (``bluez_running=False``):
  ``BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", …)`` as D-Bus answers for an absent org.bluez.
- Scanning (``bluezdbus/scanner.py``): ``seen_devices`` cleared at start, a callback per received
  advertisement (100 ms + 0–10 ms advDelay), ``service_uuids`` filtered by bluetoothd on the advertised
  UUIDs and by bleak's ``is_allowed_uuid``; ``AdvertisementData.service_uuids`` is BlueZ's ``UUIDs``
  property, which after a connection also lists the GATT services it resolved. Connected, out-of-range and
  unpowered devices do not advertise. ``scanning_mode="passive"`` needs ``bluez={"or_patterns": …}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar

import bleak
import bleak.exc
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from .ble_sensors import ADV_INTERVAL_S, CCCD_UUID

if TYPE_CHECKING:
    from .ble_radio import Air, _BlueZDevice, _Link
    from .ble_sensors import _EmulatedSensor

__all__ = ["bleak_namespace"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- bleak backends


class _ScannerBackend(BaseBleakScanner):
    """What ``BleakScannerBlueZDBus`` does, against the air."""

    _air: ClassVar[Air]

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        bluez: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        bluez = bluez or {}
        if scanning_mode == "passive" and not bluez.get("or_patterns"):
            raise BleakError("passive scanning mode requires bluez or_patterns")
        self._scanning = False

    async def start(self) -> None:
        self._air._check_adapter()
        self.seen_devices = {}
        if not self._scanning:
            self._scanning = True
            self._air._scanners.append(self)
            self._air._ensure_radio()

    async def stop(self) -> None:
        if self._scanning:
            self._air._scanner_stopping()
            self._scanning = False
            self._air._scanners.remove(self)

    def _on_advertisement(self, dev: _BlueZDevice, t: float) -> None:
        if self._service_uuids and not any(u in self._service_uuids for u in dev.advertised):
            return  # bluetoothd's discovery filter looks at the advertisement itself
        props = dict(dev.props)
        if not self.is_allowed_uuid(props["UUIDs"]):
            return
        adv = AdvertisementData(
            local_name=props.get("Name"),
            manufacturer_data={},
            service_data={},
            service_uuids=list(props["UUIDs"]),
            tx_power=None,
            rssi=props["RSSI"],
            platform_data=(dev.path, props),
        )
        device = self.create_or_update_device(
            dev.path, dev.address, props["Alias"], {"path": dev.path, "props": props}, adv
        )
        self.call_detection_callbacks(device, adv)


class _AirBleakScanner(bleak.BleakScanner):
    """bleak's ``BleakScanner`` on the air; ``discover``/``find_device_by_filter`` wait in air time."""

    _air: ClassVar[Air]
    _backend_type: ClassVar[type[BaseBleakScanner]]

    def __init__(
        self,
        detection_callback: Any = None,
        service_uuids: list[str] | None = None,
        scanning_mode: Any = "active",
        *,
        bluez: Any = None,
        cb: Any = None,
        backend: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            detection_callback,
            service_uuids,
            scanning_mode,
            bluez=bluez or {},
            cb=cb or {},
            backend=self._backend_type,
            **kwargs,
        )

    @classmethod
    async def discover(cls, timeout: float = 5.0, *, return_adv: bool = False, **kwargs: Any) -> Any:  # type: ignore[override]
        async with cls(**kwargs) as scanner:
            await cls._air.sleep(timeout)
        if return_adv:
            return scanner.discovered_devices_and_advertisement_data
        return scanner.discovered_devices

    @classmethod
    async def find_device_by_filter(
        cls,
        filterfunc: Callable[[BLEDevice, AdvertisementData], bool],  # type: ignore[override]
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> BLEDevice | None:
        async with cls(**kwargs) as scanner:
            try:
                async with asyncio.timeout(timeout / cls._air.speed):
                    async for bd, ad in scanner.advertisement_data():
                        if filterfunc(bd, ad):
                            return bd
            except TimeoutError:
                return None
        return None


class _ClientBackend(BaseBleakClient):
    """What ``BleakClientBlueZDBus`` does, against the air."""

    _air: ClassVar[Air]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: set[str] | None = None,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        if isinstance(address_or_ble_device, BLEDevice):
            details = address_or_ble_device.details if isinstance(address_or_ble_device.details, dict) else {}
            self._device_path: str | None = details.get("path")
            self._device_info: dict[str, Any] | None = details.get("props")
        else:
            self._device_path = None
            self._device_info = None
        self._requested_services = services
        self._link: _Link | None = None
        self._mtu_size: int | None = None

    @property
    def is_connected(self) -> bool:
        return self._link is not None and not self._link.closed

    @property
    def name(self) -> str:
        if self._device_info is None:
            raise BleakError("Not connected")
        return self._device_info["Alias"]

    @property
    def mtu_size(self) -> int:
        if self._mtu_size is None:
            warnings.warn(
                "Using default MTU value. Call _acquire_mtu() or set _mtu_size first to avoid this warning.",
                stacklevel=2,
            )
            return 23
        return self._mtu_size

    async def _acquire_mtu(self) -> None:
        """BlueZ's way to learn the negotiated MTU (AcquireWrite/AcquireNotify)."""
        assert self.services is not None, "Services must be acquired before acquiring MTU"
        assert self._link is not None
        self._mtu_size = self._link.mtu

    async def connect(self, pair: bool, dangerous_use_bleak_cache: bool = False, **kwargs: Any) -> None:
        if self.is_connected:
            raise BleakError("Client is already connected")
        air = self._air
        air._check_adapter()
        timeout = kwargs.get("timeout", self._timeout)
        if self._device_path is None:
            device = await air.bleak.BleakScanner.find_device_by_address(self.address, timeout=timeout)
            if device is None:
                raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found.")
            self._device_info = device.details.get("props")
            self._device_path = device.details["path"]
        dev = air._bluez_device(self._device_path)
        if dev is None:
            raise BleakDeviceNotFoundError(
                self.address,
                f"Device with address {self.address} was not found. It may have been removed from "
                "BlueZ when scanning stopped.",
            )
        # BlueZ keeps trying to connect (the device must advertise to be connectable) until bleak's timeout
        deadline = air.now() + timeout
        while True:
            sensor = air._sensors.get(dev.address)
            t = air.now()
            if sensor is not None and sensor._advertising(t):
                # connection request answered; MTU exchange and service discovery take a moment
                await air._sleep_until(min(deadline, t + air.connect_setup_s))
                if sensor._advertising(air.now()) and air.now() < deadline:
                    break
            else:
                await air._sleep_until(min(deadline, t + ADV_INTERVAL_S))
            if air.now() >= deadline:
                raise TimeoutError(f"connecting to {self.address} timed out")  # bleak: async_timeout(timeout)
        self._link = air._open_link(sensor, self, dev)
        self._device_info = dev.props
        self.services = self._build_services(sensor, self._link)

    def _build_services(self, sensor: _EmulatedSensor, link: _Link) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        base = f"{link.client._device_path}"
        for s in sensor.GATT:
            if self._requested_services is not None and s.uuid not in self._requested_services:
                continue
            spath = f"{base}/service{s.handle:04x}"
            svc = BleakGATTService((spath, {"UUID": s.uuid, "Primary": True}), s.handle, s.uuid)
            coll.add_service(svc)
            for c in s.chars:
                cpath = f"{spath}/char{c.handle:04x}"
                props = {"UUID": c.uuid, "Flags": list(c.flags), "MTU": link.mtu, "Service": spath}
                char = BleakGATTCharacteristic(
                    (cpath, props),
                    c.handle,
                    c.uuid,
                    list(c.flags),  # type: ignore[arg-type]
                    functools.partial(lambda m: m - 3, link.mtu),
                    svc,
                )
                coll.add_characteristic(char)
                if c.cccd is not None:
                    dpath = f"{cpath}/desc{c.cccd:04x}"
                    coll.add_descriptor(BleakGATTDescriptor((dpath, {"UUID": CCCD_UUID}), c.cccd, CCCD_UUID, char))
        return coll

    def _on_link_closed(self) -> None:
        """``_on_disconnected``: state first, then the callback."""
        self._link = None
        self.services = None
        self._mtu_size = None
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected_callback raised")

    async def disconnect(self) -> None:
        link = self._link
        if link is None or link.closed:
            return
        air = self._air
        fut = link.submit(lambda t: air._close_link(link, t, lost=False))
        with contextlib.suppress(BleakError):
            await fut  # type: ignore[misc]

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        if not self.is_connected:
            raise BleakError("Not connected")
        if self._device_info is not None:
            self._device_info["Paired"] = True

    async def unpair(self) -> None:
        await self.disconnect()
        if self._device_path is not None:
            dev = self._air._bluez_device(self._device_path)
            if dev is None:
                raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found.")
            self._air._bluez.pop(dev.address, None)

    def _require(self) -> _Link:
        if not self.is_connected or self._link is None:
            raise BleakError("Not connected")
        return self._link

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._require()
        if use_cached:
            return bytearray(link.values.get(characteristic.handle, b""))
        char = link.sensor._char(characteristic.handle)

        def op(t: float) -> bytes:
            value = link.sensor._read(t, char)
            link.values[char.handle] = value
            return value

        return bytearray(await link.submit(op))  # type: ignore[misc]

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._require()
        on = descriptor.characteristic_handle in link.callbacks
        if use_cached:
            return bytearray(b"\x01\x00" if on else b"\x00\x00")
        return bytearray(await link.submit(lambda t: b"\x01\x00" if on else b"\x00\x00"))  # type: ignore[misc]

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        link = self._require()
        char = link.sensor._char(characteristic.handle)
        need = "write" if response else "write-without-response"
        if need not in char.flags:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED)
        payload = bytes(data)
        limit = 512 if response else link.mtu - 3
        if len(payload) > limit:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH)
        fut = link.submit(lambda t: link.sensor._write(t, char, payload), wait=response)
        if fut is not None:
            await fut
        else:
            await asyncio.sleep(0)  # BlueZ answers a command once it is queued

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._require()
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: Callable[[bytearray], None], **kwargs: Any
    ) -> None:
        link = self._require()
        char = link.sensor._char(characteristic.handle)
        if "notify" not in char.flags and "indicate" not in char.flags:
            raise BleakDBusError("org.bluez.Error.NotSupported", ["Operation is not supported"])

        def op(t: float) -> None:  # the CCCD write reaches the sensor; from now on it is heard
            link.callbacks[char.handle] = callback

        await link.submit(op)  # type: ignore[misc]

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        link = self._require()
        link.callbacks.pop(characteristic.handle, None)
        await link.submit(lambda t: None)  # type: ignore[misc]


class _AirBleakClient(bleak.BleakClient):
    """bleak's ``BleakClient`` on the air."""

    _air: ClassVar[Air]
    _backend_type: ClassVar[type[BaseBleakClient]]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Any = None,
        services: Iterable[str] | None = None,
        *,
        timeout: float = 30,
        pair: bool = False,
        bluez: Any = None,
        winrt: Any = None,
        backend: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback,
            services,
            timeout=timeout,
            pair=pair,
            bluez=bluez or {},
            winrt=winrt or {},
            backend=self._backend_type,
            **kwargs,
        )


def bleak_namespace(air: Air) -> SimpleNamespace:
    """A stand-in for the ``bleak`` module bound to ``air``: its scanner and client, bleak's exceptions and data."""
    scanner_backend = type("AirScannerBackend", (_ScannerBackend,), {"_air": air})
    client_backend = type("AirClientBackend", (_ClientBackend,), {"_air": air})
    scanner = type(
        "BleakScanner", (_AirBleakScanner,), {"_air": air, "_backend_type": scanner_backend, "__module__": __name__}
    )
    client = type(
        "BleakClient", (_AirBleakClient,), {"_air": air, "_backend_type": client_backend, "__module__": __name__}
    )
    return SimpleNamespace(
        BleakScanner=scanner,
        BleakClient=client,
        BLEDevice=BLEDevice,
        AdvertisementData=AdvertisementData,
        BleakGATTCharacteristic=BleakGATTCharacteristic,
        BleakGATTServiceCollection=BleakGATTServiceCollection,
        BleakError=BleakError,
        BleakDeviceNotFoundError=BleakDeviceNotFoundError,
        BleakDBusError=BleakDBusError,
        BleakCharacteristicNotFoundError=BleakCharacteristicNotFoundError,
        BleakGATTProtocolError=BleakGATTProtocolError,
        BleakBluetoothNotAvailableError=BleakBluetoothNotAvailableError,
        exc=bleak.exc,
    )
