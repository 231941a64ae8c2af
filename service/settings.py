"""Every configuration key, declared once; ``config/default.toml`` is generated from here.

The dsp sections are the pipeline's parameter dataclasses (``dsp.params``);
the service sections are below. Each field gives its key's default, range or
choices and the comment the runner reads in ``default.toml``. After changing
a key, regenerate the shipped file (a test checks it byte for byte)::

    python -m stackcue.service.settings > config/default.toml
"""

from __future__ import annotations

import json
import sys
from dataclasses import MISSING, dataclass, fields
from typing import Any

from stackcue.dsp.params import (
    AlertParams,
    CalibrationCheckParams,
    CalibrationParams,
    CueParams,
    GaitParams,
    OrientationParams,
    ReferenceParams,
    SteadyParams,
)
from stackcue.dsp.phrases import LANGUAGES
from stackcue.dsp.settings import Spec, setting, spec_of
from stackcue.firmware_bridge.source import LIVE_SOURCE_KINDS

_BLE_KINDS = ("auto", "witmotion", "stackcue")


@dataclass(frozen=True)
class RunnerSection:
    id: str = setting("runner1", doc="names the runner in logs and MQTT topics (letters, digits, - and _)")


@dataclass(frozen=True)
class SourceSection:
    kind: str = setting(
        "mpu6050", doc='"mpu6050" | "ble" (see [ble]) | "emulated" | "replay"', choices=LIVE_SOURCE_KINDS
    )
    path: str = setting("", doc="replay: the exchange CSV")
    speed: float = setting(1.0, 0.01, 1000.0, "replay and emulated: 1.0 = real time, 20.0 = twenty times faster")
    bus: int = setting(1, 0, 255, "mpu6050: I2C bus number (/dev/i2c-N); the Pi's header pins 3/5 are bus 1")
    emulated_minutes: float = setting(10.0, 0.5, 600.0, "emulated: length of the synthetic run, min")
    sensor_lost_s: float = setting(3.0, 0.5, 60.0, "s without samples before the runner is told the sensor is lost")


@dataclass(frozen=True)
class BleSection:
    pelvis: str = setting(
        "",
        doc='address ("C4:11:22:33:44:55") or advertised name ("WT901BLE68") of the sacrum sensor; '
        '"i2c" = the MPU-6050 of [mpu6050]',
    )
    trunk: str = setting("", doc="address or name of the sternum sensor; empty = none")
    pelvis_kind: str = setting(
        "auto", doc='"auto" (from the advertisement) | "witmotion" | "stackcue"', choices=_BLE_KINDS
    )
    trunk_kind: str = setting("auto", doc="likewise", choices=_BLE_KINDS)
    rate_hz: float = setting(
        200.0, 0.2, 1000, "Hz asked of the sensors: 200 is the WitMotion's fastest; stackcue sensors make 1000/(1+d)"
    )
    scan_s: float = setting(4.0, 1, 60, "s each (re)connect attempt scans for the sensor")
    connect_timeout_s: float = setting(10.0, 2, 60, "s, bleak's connect timeout")
    reconnect_max_s: float = setting(
        10.0, 1, 300, "s, longest wait between attempts while a sensor stays away (starts at 1 s, doubles)"
    )
    decision_delay_s: float = setting(
        1.0,
        0.2,
        4,
        "s, WitMotion samples are held at least this long to tell a lost notification from a late one "
        "(longer, up to 4 s, when arrivals are scattered; at least one beat of the sample phase against "
        "the connection events, ~1.25 s at 200 Hz)",
    )


@dataclass(frozen=True)
class MqttSection:
    host: str = setting("localhost", doc="broker host")
    port: int = setting(1883, 1, 65535, "broker port (8883 is the usual TLS port)")
    prefix: str = setting("stackcue/{runner_id}", doc="topic prefix; {runner_id} is replaced")
    username: str = setting("", doc="empty: no authentication")
    password_file: str = setting("", doc="file whose first line is the password (keep it mode 0600)")
    tls_ca: str = setting("", doc="CA certificate file: TLS when set")
    tls_cert: str = setting("", doc="client certificate (optional, with tls_key)")
    tls_key: str = setting("", doc="client key (optional)")
    keepalive_s: int = setting(30, 5, 3600, "s, MQTT keepalive")
    stride_queue_max: int = setting(
        200, 1, 100000, "strides kept while the broker is away (oldest dropped first; alerts never)"
    )
    homeassistant: bool = setting(False, doc="publish Home Assistant MQTT discovery under homeassistant/")
    outbox: str = setting("", doc="durable outbox file for undelivered alerts (empty: next to nothing, memory only)")


@dataclass(frozen=True)
class LogbookSection:
    path: str = setting(
        "~/.local/share/stackcue/logbook.sqlite",
        doc="the database; empty = no logbook. On the Pi: /var/lib/stackcue/logbook.sqlite",
    )
    raw: bool = setting(
        True, doc="also keep the raw samples (compressed), so a run can be re-analysed (~34 MB/h, 2 sensors, 200 Hz)"
    )
    flush_s: float = setting(
        1.0, 0.2, 5.0, "s, writes are committed at least this often (a pulled battery loses at most this)"
    )
    max_mb: int = setting(
        0, 0, 1_000_000, "MB, cap on the database size (0 = none); when full, the run and its cues go on"
    )


@dataclass(frozen=True)
class CueSection:
    owner: str = setting(
        "pi", doc='"pi" (stackcue cue on the Pi: earbuds or buzzer) | "phone" | "none"', choices=("pi", "phone", "none")
    )
    audio: bool = setting(True, doc="speak cues with espeak-ng through the default audio output")
    style: str = setting(
        "spoken",
        doc='"spoken" (a phrase per alert) | "sonify" (a noise layer, louder the further off) | "beep" (a beep a '
        'stride, higher the further off) | "haptic" (buzzer pulses, faster the further off; needs gpio_pin); '
        "alerts are cued in every style (docs/cues.md)",
        choices=("spoken", "sonify", "beep", "haptic"),
    )
    language: str = setting("en", doc='language of what is said: "en" | "de" | "es" | "fr"', choices=LANGUAGES)
    voice: str = setting("", doc="espeak-ng voice; empty = the language's (en, de, es, fr-fr)")
    speed_wpm: int = setting(170, 80, 450, "words per minute")
    gpio_pin: int = setting(0, 0, 27, "GPIO (BCM) pin of a buzzer or vibration motor; 0 = none")
    max_age_s: float = setting(10.0, 0.5, 3600.0, "s, an alert older than this when it arrives is logged, not cued")
    dead_band_deg: float = setting(
        3.0, 0.0, 20.0, "deg, sonify/beep/haptic: a deviation from the reference within this is silent"
    )
    full_scale_deg: float = setting(
        15.0, 1.0, 60.0, "deg, sonify/beep/haptic: the deviation at full loudness, top pitch, fastest pulses"
    )


@dataclass(frozen=True)
class CueKeys(CueParams, CueSection):
    """``[cue]``: the cue client's keys (``CueSection``), then which alerts are cued (``dsp.params.CueParams``:
    the pipeline reads those, so ``analyze`` and the live run mark the same alerts)."""


@dataclass(frozen=True)
class ReportSection:
    units: str = setting(
        "metric",
        doc='"metric" (km, min/km, cm) | "imperial" (mi, min/mi, in) in reports; angles stay degrees',
        choices=("metric", "imperial"),
    )


@dataclass(frozen=True)
class ServeSection:
    bind: str = setting(
        "127.0.0.1",
        doc="address `stackcue serve` listens on; beyond loopback (0.0.0.0, the hotspot's address) it needs "
        "the certificate `stackcue certs` makes",
    )
    port: int = setting(8080, 1, 65535, "port of the web app (https:// when cert_dir holds a server certificate)")
    cert_dir: str = setting(
        "~/.local/share/stackcue/certs",
        doc="the CA and server certificate of `stackcue certs` (HTTPS when server.crt is there); "
        "on the Pi: /var/lib/stackcue/certs",
    )
    password_file: str = setting(
        "~/.local/share/stackcue/web-password",
        doc="the login's argon2 hash, written by `stackcue serve --set-password` (mode 0600)",
    )
    session_hours: float = setting(12.0, 0.1, 720.0, "h, how long a login lasts on a phone")
    hosts: tuple[str, ...] = setting(
        (),
        doc="Host names the page answers to besides localhost, 127.0.0.1, ::1 and the certificate's names "
        '(e.g. ["stackcue.home"]); a request naming another host gets 400 (DNS rebinding)',
    )
    mqtt_username: str = setting(
        "",
        doc="the runner's own MQTT account serve relays with (the shipped ACL: username = [runner] id); "
        "empty = [runner] id",
    )
    mqtt_password_file: str = setting(
        "",
        doc="that account's password file (first line; mode 0600): serve logs in as mqtt_username with it; "
        "empty = serve uses the [mqtt] account (anonymous on the Pi's localhost listener)",
    )


@dataclass(frozen=True)
class HubSection:
    name: str = setting(
        "",
        doc="the hub's name; a runner's Pi sends only to a hub whose name equals its [sync] hub_name (consent); "
        "`stackcue hub serve` needs one",
    )
    database: str = setting(
        "sqlite:///~/.local/share/stackcue/hub.sqlite",
        doc='the store: "sqlite:///<path>" (one coach) or "postgresql+psycopg://user@host:port/db" (a club; '
        "several hubs may share it)",
    )
    host: str = setting(
        "127.0.0.1",
        doc="address `stackcue hub serve` listens on; beyond loopback it needs a certificate in cert_dir "
        "(`stackcue certs --dir`)",
    )
    port: int = setting(8090, 1, 65535, "port of the hub (https:// when cert_dir holds a server certificate)")
    cert_dir: str = setting(
        "~/.local/share/stackcue/hub-certs",
        doc="the CA and server certificate (`stackcue certs --dir DIR --name hub.example`); HTTPS when "
        "server.crt is there",
    )
    hosts: tuple[str, ...] = setting(
        (),
        doc="Host names the hub answers to besides localhost, 127.0.0.1, ::1 and the certificate's names; "
        "another host gets 400 (DNS rebinding)",
    )
    cookie_key_file: str = setting(
        "~/.local/share/stackcue/hub.cookie-key",
        doc="the key that signs the login cookie, made on first use (mode 0600); hubs behind one load "
        "balancer share it",
    )
    session_hours: float = setting(12.0, 0.1, 720.0, "h, how long a coach's or runner's login lasts")
    broker_host: str = setting(
        "", doc="the coach's broker for live state at the track (docs/hub.md); empty = no live state"
    )
    broker_port: int = setting(1883, 1, 65535, "its port (8883 is the usual TLS port)")
    broker_username: str = setting("", doc="the hub's account on that broker; empty: anonymous")
    broker_password_file: str = setting("", doc="file whose first line is that account's password (mode 0600)")
    broker_tls_ca: str = setting("", doc="CA certificate of that broker: TLS when set")


@dataclass(frozen=True)
class SyncSection:
    enabled: bool = setting(
        False,
        doc="send this Pi's ended sessions to the coach's hub; nothing leaves the Pi unless true, hub_name is set "
        "and the hub at url answers with that name (consent)",
    )
    hub_name: str = setting("", doc="the hub the runner agreed to send to (its [hub] name)")
    url: str = setting(
        "", doc="the hub's address, e.g. https://hub.example:8090 (http:// only to this machine: localhost)"
    )
    token_file: str = setting(
        "",
        doc="file holding this Pi's token (`stackcue hub token RUNNER` on the hub prints it; first line; mode 0600)",
    )
    ca_file: str = setting(
        "", doc="the hub's CA certificate when it is self-signed (`stackcue certs` on the hub); empty: the system's"
    )
    auto: bool = setting(True, doc="`stackcue run` syncs on its own when a session ends (in the background)")
    timeout_s: float = setting(
        60.0, 1.0, 600.0, "s, a request to the hub that takes longer fails (and is tried again: docs/sync.md)"
    )


@dataclass(frozen=True)
class BatterySection:
    path: str = setting(
        "auto",
        doc='the level in the state\'s battery_pct: "auto" (the first /sys/class/power_supply/* of type Battery '
        'or UPS: a UPS HAT\'s driver, a fuel gauge) | a power_supply directory | "" (none: battery_pct stays null)',
    )


@dataclass(frozen=True)
class ControlSection:
    start: str = setting(
        "command",
        doc='when `stackcue run` starts a session: "command" (idle until a start command: phone, button, '
        '`stackcue ctl start`) | "now" (at once) | "running" (when running is detected); a replay starts at once',
        choices=("command", "now", "running"),
    )
    button_pin: int = setting(0, 0, 27, "GPIO (BCM) pin of the push button (to ground); 0 = none")
    button_hold_s: float = setting(1.5, 0.5, 5.0, "s, a press held this long is a long press (stop)")
    button_double_s: float = setting(0.4, 0.15, 1.0, "s, a second press within this is a double press (recalibrate)")
    mute_max_min: float = setting(240.0, 1.0, 1440.0, "min, the longest mute a command may ask for")
    button_snooze_min: float = setting(
        10.0, 1.0, 240.0, "min, a triple press snoozes the cues this long (another triple press ends the snooze)"
    )


@dataclass(frozen=True)
class Mpu6050Section:
    rate_hz: float = setting(200.0, 50, 1000, "Hz, one of 1000/(1+d): 1000, 500, 333.33, 250, 200, ... 100, ... 50")
    accel_range_g: int = setting(8, doc="g, ±2/4/8/16; running impacts exceed ±4 g", choices=(2, 4, 8, 16))
    gyro_range_dps: int = setting(1000, doc="°/s, ±250/500/1000/2000", choices=(250, 500, 1000, 2000))
    pelvis_address: int = setting(0x68, 0x03, 0x77, "I2C address of the sacrum sensor (AD0 low)", hex=True)
    trunk_address: int = setting(0x69, 0x03, 0x77, "I2C address of the sternum sensor (AD0 high)", hex=True)
    trunk: str = setting(
        "auto", doc='"auto" (use it if it answers), "on" (required) or "off"', choices=("auto", "on", "off")
    )
    accept_who_am_i: tuple[int, ...] = setting(
        (), doc="extra WHO_AM_I values to accept, e.g. [0x98] for a register-compatible clone"
    )
    poll_s: float = setting(
        0.02, 0.002, 0.4, "s, how often the FIFOs are read (the FIFO holds 85 samples: 0.42 s at 200 Hz)"
    )


@dataclass(frozen=True)
class AccelCalibrationSection:
    pelvis_offset_m_s2: tuple[float, ...] = setting(
        (0.0, 0.0, 0.0), doc="m/s², x y z: the sacrum sensor's accelerometer offset, from `stackcue accel-cal`"
    )
    pelvis_gain: tuple[float, ...] = setting((1.0, 1.0, 1.0), doc="x y z gain: corrected = (raw - offset) / gain")
    trunk_offset_m_s2: tuple[float, ...] = setting((0.0, 0.0, 0.0), doc="m/s², the sternum sensor's, likewise")
    trunk_gain: tuple[float, ...] = setting((1.0, 1.0, 1.0), doc="likewise")


@dataclass(frozen=True)
class Section:
    """One ``[name]`` table: its dataclass and the comment lines under its header."""

    name: str
    cls: type
    doc: tuple[str, ...] = ()


#: every section, in the order of ``default.toml``
SCHEMA: tuple[Section, ...] = (
    Section("runner", RunnerSection),
    Section("source", SourceSection, ("What `stackcue run` reads.",)),
    Section(
        "ble", BleSection, ('BLE IMUs, used when [source] kind = "ble". `stackcue scan` lists the sensors in range.',)
    ),
    Section("mqtt", MqttSection),
    Section(
        "logbook",
        LogbookSection,
        ("Every live run is kept (SQLite, WAL, synchronous=FULL, file mode 0600: posture data is personal).",),
    ),
    Section("cue", CueKeys, ("One cue owner a session, so the runner never hears an alert twice.",)),
    Section("report", ReportSection, ("The coach's report (`stackcue report`, the hub).",)),
    Section(
        "control",
        ControlSection,
        ("The run's controls: start, pause, resume, stop, recalibrate, mute (docs/commands.md, docs/mqtt.md).",),
    ),
    Section(
        "serve",
        ServeSection,
        ("`stackcue serve`: the phone's web page (docs/serve.md). A login always; HTTPS beyond loopback.",),
    ),
    Section(
        "hub",
        HubSection,
        ("`stackcue hub`: the coach's web app, every runner's synced sessions (docs/hub.md).",),
    ),
    Section(
        "sync",
        SyncSection,
        ("`stackcue sync`: this Pi's sessions to the coach's hub, targets and notes back (docs/sync.md).",),
    ),
    Section("battery", BatterySection, ("The Pi's battery level, read at most every 30 s (docs/mqtt.md, state).",)),
    Section(
        "mpu6050",
        Mpu6050Section,
        ("Two sensors at high rates need the Pi's I2C at 400 kHz: dtparam=i2c_arm_baudrate=400000 in config.txt.",),
    ),
    Section(
        "accel_calibration",
        AccelCalibrationSection,
        (
            "Each sensor's own accelerometer errors, measured once with `stackcue accel-cal` (docs/calibration.md)",
            "and applied to every sample as it is read (recordings and the logbook hold corrected samples).",
        ),
    ),
    Section(
        "calibration",
        CalibrationParams,
        ("The routine: stand still >= still_before_s, hip hinge, stand still >= still_after_s.",),
    ),
    Section("orientation", OrientationParams),
    Section("gait", GaitParams),
    Section("steady", SteadyParams),
    Section("alerts", AlertParams),
    Section(
        "reference",
        ReferenceParams,
        (
            'What the thresholds are measured from: "neutral" (the calibration stance: run as stacked as you stand),',
            "\"first_minutes\" (the median of this run's first steady minutes; that metric's alerts wait for it), or",
            '"targets" (coach-set values below). mode = "per_metric" takes each metric\'s own key (pelvic_tilt,',
            "trunk_lean, stack); any other mode sets all three alike. Why these defaults: docs/calibration.md.",
        ),
    ),
    Section("calibration_check", CalibrationCheckParams),
)

HEADER = """\
# stackcue default configuration.
#
# Every tunable lives here with its unit. A user file (--config FILE) overrides
# these key by key; an unknown key, a wrong type or a value out of range is
# refused with a one-line error naming the key; [lo..hi] ending a comment is
# the key's allowed range. Angles are degrees relative to the calibration
# neutral (standing tall, ribs stacked over the pelvis).
"""


def specs() -> dict[str, Spec]:
    """``"section.key"`` -> its :class:`Spec`, for every key."""
    return {f"{s.name}.{f.name}": spec_of(f) for s in SCHEMA for f in fields(s.cls)}


def defaults() -> dict[str, dict[str, Any]]:
    """The defaults as TOML would load them (lists, not tuples): the base a user file is merged over."""
    out: dict[str, dict[str, Any]] = {}
    for s in SCHEMA:
        out[s.name] = {}
        for f in fields(s.cls):
            if f.default is MISSING:
                raise TypeError(f"{s.cls.__name__}.{f.name} has no default")
            out[s.name][f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    return out


def _toml_value(value: Any, hex_ints: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"0x{value:02x}" if hex_ints else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v, hex_ints) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _bound(value: float, hex_ints: bool) -> str:
    if hex_ints and isinstance(value, int):
        return f"0x{value:02x}"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def range_text(spec: Spec) -> str:
    """The range as ``default.toml``'s comments write it: ``[lo..hi]``."""
    if spec.range is None:
        return ""
    lo, hi = spec.range
    return f"[{_bound(lo, spec.hex)}..{_bound(hi, spec.hex)}]"


def render_toml() -> str:
    """The text of ``config/default.toml``: every key, its default, its doc and its range."""
    lines = HEADER.splitlines()
    for s in SCHEMA:
        lines += ["", f"[{s.name}]", *(f"# {d}" for d in s.doc)]
        for f in fields(s.cls):
            spec = spec_of(f)
            kv = f"{f.name} = {_toml_value(f.default, spec.hex)}"
            comment = " ".join(t for t in (spec.doc, range_text(spec)) if t)
            lines.append(f"{kv:<30}  # {comment}" if comment else kv)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(render_toml().encode("utf-8"))
