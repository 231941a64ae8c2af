"""``stackcue scan``: which supported BLE IMUs are in range, and do they stream.

Lists WitMotion (WT901BLE…) and stackcue-profile sensors heard advertising: name, address, kind, signal
strength. Unless ``--no-connect``, each is then connected briefly, one at a time, and its data
characteristic subscribed as it is (nothing written): "streams" means notifications arrived within
``--listen`` seconds, with the sample rate they carried. Without an adapter or without BlueZ the
command says so in one line (exit status 2), never with a traceback.

Also here: :func:`ble_options`, the ``[ble]`` configuration turned into :class:`BLESource` options.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, TextIO

from stackcue.errors import ConfigError, SensorError

from .argtypes import positive_float


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sc = subparsers.add_parser("scan", help="list the supported BLE IMUs in range (WitMotion, stackcue sensors)")
    sc.add_argument(
        "--seconds", type=positive_float, default=10.0, help="how long to listen for advertisements (default 10)"
    )
    sc.add_argument(
        "--listen",
        type=positive_float,
        default=2.0,
        help="seconds to listen for notifications on each sensor found (default 2)",
    )
    sc.add_argument("--no-connect", action="store_true", help="only list what advertises; do not connect")
    sc.add_argument(
        "--emulate",
        action="store_true",
        help="scan an emulated air (two stackcue sensors on the synthetic runner) instead of the radio",
    )
    return sc


def cmd_scan(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Scan, then probe each sensor, on the devices ``--emulate`` chooses.

    ``args.devices`` (optional) injects a device factory; ``args.bleak`` a bleak namespace, ``args.speed`` its air's.
    """
    from stackcue.firmware_bridge.ble_clients import adapter_problem, probe_stream, scan
    from stackcue.firmware_bridge.devices import device_factory

    out = out or sys.stdout
    devices = getattr(args, "devices", None) or device_factory(getattr(args, "emulate", False), minutes=1.0)
    bleak = getattr(args, "bleak", None)
    if bleak is None:
        try:
            bleak = devices.bleak()
        except ImportError as exc:
            raise SensorError(f"bleak is not installed ({exc}); pip install bleak") from None
    speed = float(getattr(args, "speed", None) or devices.speed)

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / speed)

    async def run() -> list[tuple[Any, str]]:
        adverts = await scan(bleak, args.seconds, sleep)
        rows = []
        for a in adverts:
            if args.no_connect:
                rows.append((a, "not checked (--no-connect)"))
                continue
            ok, what = await probe_stream(bleak, a, args.listen, sleep, clock=lambda: time.monotonic() * speed)
            rows.append((a, f"yes, {what}" if ok else f"no: {what}"))
        return rows

    print(f"scanning {args.seconds:g} s for WitMotion and stackcue BLE sensors ...", file=out, flush=True)
    try:
        rows = asyncio.run(run())
    except Exception as exc:  # a missing adapter or BlueZ is one line; anything else too, never a traceback
        problem = adapter_problem(exc, bleak)
        if problem is not None:
            raise SensorError(problem) from None
        raise SensorError(f"scanning failed: {type(exc).__name__}: {exc}") from None
    if not rows:
        print(
            "no supported sensor in range (WitMotion WT901BLE…, stackcue…): are they switched on, charged, "
            "and not connected to a phone?",
            file=out,
        )
        return 0
    w = max(4, *(len(a.name) for a, _ in rows))
    print(f"{'NAME':<{w}}  {'ADDRESS':<17}  {'KIND':<9}  {'RSSI':>8}  STREAMS (as configured now)", file=out)
    for a, streams in rows:
        print(f"{a.name:<{w}}  {a.address:<17}  {a.kind:<9}  {a.rssi:>4} dBm  {streams}", file=out)
    n = len(rows)
    print(
        f'{n} supported sensor{"s" if n != 1 else ""}. In the configuration: [source] kind = "ble", '
        f'[ble] pelvis = "{rows[0][0].address}" (an address or a name; trunk likewise)',
        file=out,
    )
    return 0


def ble_options(cfg: Any) -> dict[str, Any]:
    """Keyword options of :class:`firmware_bridge.ble_source.BLESource` from the configuration.

    ``[ble]`` (config/default.toml documents it), ranges from ``[mpu6050]`` (the same IMU scales), and for
    ``pelvis = "i2c"`` the I2C bus and the MPU-6050's address from ``[source]``/``[mpu6050]``.
    """
    data = cfg.data if hasattr(cfg, "data") else cfg
    b = data["ble"]
    if not b["pelvis"]:
        raise ConfigError(
            '[source] kind = "ble" needs [ble] pelvis: a sensor address or name (stackcue scan lists them), or "i2c"'
        )
    m = data.get("mpu6050", {})
    opts: dict[str, Any] = {
        "pelvis": b["pelvis"],
        "trunk": b["trunk"],
        "pelvis_kind": b["pelvis_kind"],
        "trunk_kind": b["trunk_kind"],
        "rate_hz": float(b["rate_hz"]),
        "scan_s": float(b["scan_s"]),
        "connect_timeout_s": float(b["connect_timeout_s"]),
        "backoff_s": (1.0, float(b["reconnect_max_s"])),
        "decision_delay_s": float(b["decision_delay_s"]),
    }
    if "accel_range_g" in m:
        opts["accel_range_g"], opts["gyro_range_dps"] = m["accel_range_g"], m["gyro_range_dps"]
    if str(b["pelvis"]).lower() == "i2c":
        opts.update(
            bus=data.get("source", {}).get("bus", 1),
            pelvis_address=m.get("pelvis_address", 0x68),
            i2c_rate_hz=float(m.get("rate_hz", 200.0)),
            accept_who_am_i=tuple(m.get("accept_who_am_i", ())),
        )
    return opts
