"""Configuration: the declared defaults merged key by key with a user file.

Every key is declared once, in ``service.settings`` (the dsp sections in
``dsp.params``): its default, whose type is the expected type, its range or
choices. ``config/default.toml`` is generated from the same declarations. A
key they lack is unknown. Every error is one line naming the file and the key.
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

from stackcue.dsp.alert_kinds import ALERT_KINDS
from stackcue.dsp.params import PipelineParams
from stackcue.errors import ConfigError

from .settings import defaults, specs

#: the shipped defaults: package data of ``stackcue.config`` (a wheel install finds it as well as a clone)
DEFAULT_PATH = resources.files("stackcue.config") / "default.toml"

#: inclusive ranges of numeric keys, from the declarations
RANGES: dict[str, tuple[float, float]] = {k: s.range for k, s in specs().items() if s.range is not None}

#: allowed values of keys that have a fixed set, from the declarations
CHOICES: dict[str, tuple] = {k: s.choices for k, s in specs().items() if s.choices is not None}

#: the pipeline's sections: ``PipelineParams``'s fields
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(PipelineParams)}  # type: ignore[misc]

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


#: what a runner id may be: it is a topic level and a file name ([runner] id; the hub checks the same)
RUNNER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    if key.startswith("accel_calibration."):
        from stackcue.dsp.accel_calibration import check

        problem = check(value, (1.0, 1.0, 1.0)) if key.endswith("offset_m_s2") else check((0.0, 0.0, 0.0), value)
        if problem:
            raise ConfigError(f"{path}: {key} = {value!r}: {problem}")
    if key == "mpu6050.rate_hz":
        from stackcue.firmware_bridge.mpu6050 import check_rate

        try:
            check_rate(float(value))
        except Exception as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
    if key == "alerts.enabled":
        for kind in value:
            if kind not in ALERT_KINDS:
                raise ConfigError(f"{path}: {key} has unknown alert kind {kind!r} (known: {', '.join(ALERT_KINDS)})")
    if key == "mqtt.prefix" and (
        any(c in value for c in "+#\0") or value.replace("{runner_id}", "").count("{") or not value.strip("/")
    ):
        raise ConfigError(
            f"{path}: {key} = {value!r} must be a topic without wildcards (+, #); {{runner_id}} is the only placeholder"
        )
    if key == "runner.id" and not RUNNER_ID.fullmatch(value):
        raise ConfigError(f"{path}: {key} = {value!r} must be 1-64 letters, digits, '-' or '_'")
    # a hub's name: the hub says it ([hub] name), the Pi's consent names it ([sync] hub_name): one rule for both
    if key in ("hub.name", "sync.hub_name") and value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}", value):
        raise ConfigError(f"{path}: {key} = {value!r} must be 1-64 letters, digits, spaces, '.', '-' or '_'")
    if key == "sync.url" and value:
        from .sync.config import check_url

        try:
            check_url(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: {key} = {value!r}: {exc}") from None
    if key == "hub.database" and not re.match(r"(sqlite:///.|postgresql(\+psycopg)?://.)", value):
        raise ConfigError(
            f"{path}: {key} = {value!r} must be sqlite:///<path> or postgresql+psycopg://user@host:port/db"
        )
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

    def __init__(self, data: dict[str, Any], sources: list[Path | Traversable]) -> None:
        self.data = data
        self.sources = sources

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def mpu6050_options(self) -> dict[str, Any]:
        """Keyword options of :class:`firmware_bridge.mpu6050_source.MPU6050Source`."""
        m = self.data["mpu6050"]
        return {
            "bus": self.data["source"]["bus"],
            "rate_hz": float(m["rate_hz"]),
            "accel_range_g": m["accel_range_g"],
            "gyro_range_dps": m["gyro_range_dps"],
            "pelvis_address": m["pelvis_address"],
            "trunk_address": m["trunk_address"],
            "trunk": m["trunk"],
            "accept_who_am_i": tuple(m["accept_who_am_i"]),
            "poll_s": m["poll_s"],
        }

    def accel_calibrations(self) -> dict[str, Any]:
        """Each segment's :class:`~stackcue.dsp.accel_calibration.AccelCalibration` ([accel_calibration])."""
        from stackcue.dsp.accel_calibration import AccelCalibration

        a = self.data["accel_calibration"]
        return {
            seg: AccelCalibration(
                tuple(float(v) for v in a[f"{seg}_offset_m_s2"]),  # type: ignore[arg-type]
                tuple(float(v) for v in a[f"{seg}_gain"]),  # type: ignore[arg-type]
            )
            for seg in ("pelvis", "trunk")
        }

    def mqtt_settings(self):
        from .mqtt_connection import MqttSettings

        m = self.data["mqtt"]
        return MqttSettings(
            host=m["host"],
            port=m["port"],
            prefix=m["prefix"],
            runner_id=self.runner_id,
            username=m["username"],
            password_file=m["password_file"],
            tls_ca=m["tls_ca"],
            tls_cert=m["tls_cert"],
            tls_key=m["tls_key"],
            keepalive_s=m["keepalive_s"],
            stride_queue_max=m["stride_queue_max"],
            homeassistant=m["homeassistant"],
        )

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
        c = kw["calibration"]
        if c.hinge_min_deg >= c.hinge_max_deg:  # no hinge could be accepted: every calibration refused
            raise ConfigError(
                f"{self.sources[-1]}: calibration.hinge_min_deg = {c.hinge_min_deg:g} must be below "
                f"calibration.hinge_max_deg = {c.hinge_max_deg:g}"
            )
        cue = self.data["cue"]  # checked here too: the coach's targets are validated through this property
        if cue["full_scale_deg"] <= cue["dead_band_deg"]:  # no deviation could be louder than the dead band's edge
            raise ConfigError(
                f"{self.sources[-1]}: cue.full_scale_deg = {cue['full_scale_deg']:g} must be above "
                f"cue.dead_band_deg = {cue['dead_band_deg']:g}"
            )
        a = kw["alerts"]
        for kind in a.enabled:  # a hysteresis at or above a threshold: the alert could never clear
            threshold = getattr(a, f"{kind}_deg", None)
            if threshold is not None and a.hysteresis_deg >= threshold:
                raise ConfigError(
                    f"{self.sources[-1]}: alerts.hysteresis_deg = {a.hysteresis_deg:g} must be below "
                    f"alerts.{kind}_deg = {threshold:g} (else that alert could never clear)"
                )
        return PipelineParams(**kw)


def _check_reference_keys(path: Path, user_ref: Any, mode: str) -> None:
    """A metric's own reference key is read only with ``mode = "per_metric"``: given with another mode it would
    be silently ignored, so it is refused in one line."""
    if mode == "per_metric" or not isinstance(user_ref, dict):
        return
    for key in ("pelvic_tilt", "trunk_lean", "stack"):
        if key in user_ref:
            raise ConfigError(
                f'{path}: reference.{key} is read only with reference.mode = "per_metric" (mode is {mode!r}, '
                "which sets every metric alike): remove one of them"
            )


def load_config(user_path: str | Path | None = None) -> Config:
    """The shipped defaults, then the user file (if any) key by key; validated.

    The defaults are read from the package data (``DEFAULT_PATH``) and checked key by key against the
    declarations like a user file, so an installed ``default.toml`` that was edited by hand is caught with
    a one-line error instead of silently changing every runner's settings.
    """
    data = defaults()
    _merge(data, _read_toml(DEFAULT_PATH), DEFAULT_PATH)
    sources: list[Path | Traversable] = [DEFAULT_PATH]
    if user_path is not None:
        p = Path(user_path)
        user = _read_toml(p)
        _merge(data, user, p)
        sources.append(p)
        _check_reference_keys(p, user.get("reference", {}), data["reference"]["mode"])
    cfg = Config(data, sources)
    cfg.pipeline  # noqa: B018 - cross-key checks now, not at first use
    m = data["mpu6050"]
    if m["pelvis_address"] == m["trunk_address"]:  # one chip would be read as two sensors
        raise ConfigError(
            f"{sources[-1]}: mpu6050.trunk_address = {m['trunk_address']:#04x} must differ from "
            f"mpu6050.pelvis_address = {m['pelvis_address']:#04x}"
        )
    return cfg
