"""Configuration: ``config/default.toml`` merged key by key with a user file.

The defaults file is the schema: a key it lacks is unknown, its value's type
is the expected type. Ranges and choices are below. Every error is one line
naming the file and the key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from stackcue.dsp.drift import KINDS
from stackcue.dsp.params import (
    AlertParams,
    CalibrationCheckParams,
    CalibrationParams,
    GaitParams,
    OrientationParams,
    PipelineParams,
    ReferenceParams,
    SteadyParams,
)
from stackcue.errors import ConfigError
from stackcue.firmware_bridge.source import LIVE_SOURCE_KINDS

#: the shipped defaults: package data of ``stackcue.config`` (a wheel install finds it as well as a clone)
DEFAULT_PATH = resources.files("stackcue.config") / "default.toml"

#: inclusive ranges of numeric keys
RANGES: dict[str, tuple[float, float]] = {
    "calibration.still_window_s": (0.2, 5.0),
    "calibration.still_gyro_std_dps": (0.1, 30.0),
    "calibration.still_acc_std_m_s2": (0.01, 3.0),
    "calibration.still_before_s": (1.0, 60.0),
    "calibration.still_after_s": (1.0, 60.0),
    "calibration.still_use_max_s": (1.0, 60.0),
    "calibration.hinge_max_s": (1.0, 30.0),
    "calibration.hinge_min_deg": (5.0, 80.0),
    "calibration.hinge_max_deg": (10.0, 120.0),
    "calibration.hinge_ignore_below_deg": (0.5, 20.0),
    "calibration.hinge_single_axis_min": (0.3, 1.0),
    "calibration.hinge_axis_min_from_vertical_deg": (0.0, 90.0),
    "calibration.hinge_return_max_deg": (1.0, 45.0),
    "calibration.search_s": (0.0, 3600.0),
    "orientation.vqf_tau_acc_s": (0.1, 60.0),
    "gait.step_filter_hz": (1.0, 20.0),
    "gait.step_filter_taps_s": (0.05, 2.0),
    "gait.min_cadence_spm": (60.0, 300.0),
    "gait.max_cadence_spm": (60.0, 360.0),
    "gait.run_min_amplitude_g": (0.05, 5.0),
    "gait.boundary_max_g": (0.1, 1.5),
    "gait.contact_threshold_g": (0.05, 3.0),
    "gait.side_min_obliquity_deg": (0.0, 20.0),
    "steady.after_start_s": (0.0, 120.0),
    "steady.before_stop_s": (0.0, 30.0),
    "steady.cadence_change_pct": (0.5, 100.0),
    "steady.cadence_history_strides": (1, 100),
    "alerts.confirm_strides": (1, 100),
    "alerts.clear_strides": (1, 100),
    "alerts.hysteresis_deg": (0.0, 20.0),
    "alerts.quiet_s": (0.0, 3600.0),
    "alerts.remind_every_s": (0.0, 3600.0),
    "alerts.anterior_tilt_deg": (0.5, 45.0),
    "alerts.posterior_tilt_deg": (0.5, 45.0),
    "alerts.pelvic_drop_deg": (0.5, 45.0),
    "alerts.trunk_lean_deg": (0.5, 60.0),
    "alerts.ribs_behind_pelvis_deg": (0.5, 60.0),
    "alerts.ribs_ahead_of_pelvis_deg": (0.5, 60.0),
    "reference.first_minutes": (0.5, 60.0),
    "reference.pelvic_tilt_deg": (-45.0, 45.0),
    "reference.trunk_lean_deg": (-45.0, 60.0),
    "reference.stack_deg": (-60.0, 60.0),
    "calibration_check.forward_axis_max_deg": (5.0, 90.0),
    "calibration_check.strides": (3, 500),
    "source.bus": (0, 255),
    "source.speed": (0.01, 1000.0),
    "source.emulated_minutes": (0.5, 600.0),
    "source.sensor_lost_s": (0.5, 60.0),
    "mqtt.port": (1, 65535),
    "mqtt.keepalive_s": (5, 3600),
    "mqtt.stride_queue_max": (1, 100000),
    "cue.speed_wpm": (80, 450),
    "logbook.flush_s": (0.2, 5.0),
    "logbook.max_mb": (0, 1_000_000),
    "cue.gpio_pin": (0, 27),
    "cue.max_age_s": (0.5, 3600.0),
    "mpu6050.rate_hz": (50, 1000),
    "mpu6050.pelvis_address": (0x03, 0x77),
    "mpu6050.trunk_address": (0x03, 0x77),
    "mpu6050.poll_s": (0.002, 0.4),
    "ble.rate_hz": (0.2, 1000),
    "ble.scan_s": (1, 60),
    "ble.connect_timeout_s": (2, 60),
    "ble.reconnect_max_s": (1, 300),
    "ble.decision_delay_s": (0.2, 4),
}

CHOICES: dict[str, tuple] = {
    "reference.mode": ("neutral", "first_minutes", "targets"),
    "mpu6050.trunk": ("auto", "on", "off"),
    "source.kind": LIVE_SOURCE_KINDS,
    "ble.pelvis_kind": ("auto", "witmotion", "stackcue"),
    "ble.trunk_kind": ("auto", "witmotion", "stackcue"),
    "cue.owner": ("pi", "phone", "none"),
    "mpu6050.accel_range_g": (2, 4, 8, 16),
    "mpu6050.gyro_range_dps": (250, 500, 1000, 2000),
}

SECTIONS = {
    "calibration": CalibrationParams,
    "orientation": OrientationParams,
    "gait": GaitParams,
    "steady": SteadyParams,
    "alerts": AlertParams,
    "reference": ReferenceParams,
    "calibration_check": CalibrationCheckParams,
}

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _read_toml(path: Path | Traversable) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _check_value(path: Path, key: str, value: Any, default: Any) -> Any:
    want = type(default)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{path}: {key} must be {_TYPE_NAMES.get(want, want.__name__)}, got {value!r}")
    if key in RANGES:
        lo, hi = RANGES[key]
        if not lo <= value <= hi:
            raise ConfigError(f"{path}: {key} = {value!r} is out of range {lo:g}..{hi:g}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{path}: {key} = {value!r} is not one of {', '.join(map(str, CHOICES[key]))}")
    if key == "mpu6050.accept_who_am_i":
        for v in value:
            if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFF):
                raise ConfigError(f"{path}: {key} must hold byte values such as 0x98, got {v!r}")
    if key == "mpu6050.rate_hz":
        from stackcue.firmware_bridge.mpu6050 import check_rate

        try:
            check_rate(float(value))
        except Exception as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
    if key == "alerts.enabled":
        for kind in value:
            if kind not in KINDS:
                raise ConfigError(f"{path}: {key} has unknown alert kind {kind!r} (known: {', '.join(KINDS)})")
    if key == "mqtt.prefix" and (any(c in value for c in "+#\0") or value.replace("{runner_id}", "").count("{")
                                 or not value.strip("/")):
        raise ConfigError(f"{path}: {key} = {value!r} must be a topic without wildcards (+, #); "
                          "{runner_id} is the only placeholder")
    if key == "runner.id" and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ConfigError(f"{path}: {key} = {value!r} must be 1-64 letters, digits, '-' or '_'")
    return value


def _merge(base: dict[str, Any], user: dict[str, Any], path: Path, prefix: str = "") -> None:
    for key, value in user.items():
        full = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(key, list(base), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown key '{full}'{hint}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{full}' must be a [section]")
            _merge(base[key], value, path, full + ".")
        else:
            base[key] = _check_value(path, full, value, base[key])


class Config:
    """The merged configuration; ``pipeline`` gives the dsp parameters."""

    def __init__(self, data: dict[str, Any], sources: list[Path]) -> None:
        self.data = data
        self.sources = sources

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def mpu6050_options(self) -> dict[str, Any]:
        """Keyword options of :class:`firmware_bridge.mpu6050_source.MPU6050Source`."""
        m = self.data["mpu6050"]
        return {"bus": self.data["source"]["bus"], "rate_hz": float(m["rate_hz"]),
                "accel_range_g": m["accel_range_g"], "gyro_range_dps": m["gyro_range_dps"],
                "pelvis_address": m["pelvis_address"], "trunk_address": m["trunk_address"], "trunk": m["trunk"],
                "accept_who_am_i": tuple(m["accept_who_am_i"]), "poll_s": m["poll_s"]}

    def mqtt_settings(self):
        from .mqtt_publisher import MqttSettings

        m = self.data["mqtt"]
        return MqttSettings(host=m["host"], port=m["port"], prefix=m["prefix"], runner_id=self.runner_id,
                            username=m["username"], password_file=m["password_file"], tls_ca=m["tls_ca"],
                            tls_cert=m["tls_cert"], tls_key=m["tls_key"], keepalive_s=m["keepalive_s"],
                            stride_queue_max=m["stride_queue_max"], homeassistant=m["homeassistant"])

    @property
    def logbook_path(self) -> Path | None:
        p = self.data["logbook"]["path"]
        return Path(p).expanduser() if p else None

    @property
    def runner_id(self) -> str:
        return self.data["runner"]["id"]

    @property
    def pipeline(self) -> PipelineParams:
        kw = {}
        for section, cls in SECTIONS.items():
            vals = {f.name: self.data[section][f.name] for f in fields(cls)}
            kw[section] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in vals.items()})
        g = kw["gait"]
        if g.min_cadence_spm >= g.max_cadence_spm:
            raise ConfigError(f"{self.sources[-1]}: gait.min_cadence_spm must be below gait.max_cadence_spm")
        return PipelineParams(**kw)


def load_config(user_path: str | Path | None = None, default_path: Path | Traversable = DEFAULT_PATH) -> Config:
    """Defaults, then the user file (if any) key by key; validated."""
    data = _read_toml(default_path)
    sources = [default_path]
    checked: dict[str, Any] = {}
    _merge(data, checked, default_path)
    for section, cls in SECTIONS.items():
        names = {f.name for f in fields(cls)}
        if set(data.get(section, {})) != names:
            raise ConfigError(f"{default_path}: [{section}] does not match the code (keys {sorted(names)})")
    if user_path is not None:
        p = Path(user_path)
        _merge(data, _read_toml(p), p)
        sources.append(p)
    cfg = Config(data, sources)
    cfg.pipeline  # noqa: B018 - cross-key checks now, not at first use
    return cfg
