"""Every MQTT topic stackcue publishes or subscribes to: the one table (docs/mqtt.md).

The publisher and the cue client build their topic names, QoS and retain flags from ``TOPICS``, and
tests/test_mqtt.py checks it against what a publisher actually sends, so the table cannot drift from the code.
A broker's ACL (config/mosquitto/acl) must let the device write ``stackcue/#`` and, with Home Assistant
discovery on, ``homeassistant/#``; ``command`` is the one topic the daemon subscribes to, and only the runner's own
MQTT user (username = runner id) may write it besides the device.

Topics with ``under_prefix`` sit under ``[mqtt] prefix`` (default ``stackcue/<runner_id>``); the others are
absolute (Home Assistant discovery, whose ``{uid}`` is ``stackcue_<runner>_<sensor>``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str  # suffix under the prefix, or the absolute topic pattern
    qos: int
    retained: bool
    publisher: str
    subscribers: tuple[str, ...]
    payload: str
    purpose: str
    under_prefix: bool = True


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(
            "status",
            1,
            True,
            "daemon",
            ("home assistant",),
            '"online" on connect; "offline" at stop and as the last will',
            "is the device up (Home Assistant availability)",
        ),
        Topic(
            "alert",
            1,
            False,
            "daemon",
            ("cue", "phone"),
            "JSON: the alert event plus session, alert_id, raised_at, sent_at (epoch s), age_s (raise to send, "
            "Pi monotonic s), replayed (from the durable outbox after a restart)",
            "a posture alert to cue; at least once, de-duplicated on (session, alert_id)",
        ),
        Topic(
            "stride",
            0,
            False,
            "daemon",
            ("home assistant",),
            "JSON: the stride event (at most stride_queue_max kept while the broker is away)",
            "per-stride telemetry",
        ),
        Topic(
            "stride_provisional",
            0,
            False,
            "daemon",
            ("phone", "cue"),  # the cue client follows it with the continuous styles (sonify, beep, haptic)
            "JSON: the stride_provisional event (a stride's figures and deviations as soon as it is valued, "
            "about 0.3 s after it ends; the final stride follows 2-3 s later); never queued while the broker is "
            "away, never stored",
            "continuous feedback (sonify, beep): a preview of each stride",
        ),
        Topic(
            "session",
            1,
            True,
            "daemon",
            ("phone",),
            "JSON: the summary event plus session",
            "summary of the current or last run",
        ),
        Topic(
            "alert_state",
            1,
            True,
            "daemon",
            ("home assistant",),
            '"ON" while any alert kind is active, "OFF" once all cleared',
            "the posture-alert binary sensor",
        ),
        Topic(
            "event",
            1,
            False,
            "daemon",
            ("cue", "phone"),
            "JSON: system events (session start with the cue owner, calibration steps and result, "
            "calibration_suspect, trunk_missing, reference, snooze, guide, sensor lost/back, clear) plus session and "
            "sent_at",
            "what the runner must hear about the system itself",
        ),
        Topic(
            "state",
            1,
            True,
            "daemon",
            ("phone", "web"),
            "JSON: state (idle, calibrating, running, paused, sensor_lost), session, calibration_age_s, "
            "last_stride, alerts, battery_pct, muted_until, updated_at, last_command, last_session",
            "what the run is doing now, for a page opened mid-run; on every change, at most 1 Hz while running",
        ),
        Topic(
            "command",
            1,
            False,
            "the runner's own user: stackcue ctl, the web app, the phone",
            ("daemon",),
            'JSON: {"cmd": start|pause|resume|stop|recalibrate|mute, "minutes": 0-240 (mute), "id", "from"}',
            "control the run; answered in the state's last_command and by a spoken guide event",
        ),
        Topic(
            "homeassistant/sensor/{uid}/config",
            1,
            True,
            "daemon (homeassistant = true)",
            ("home assistant",),
            "JSON: Home Assistant MQTT discovery config of the tilt, stack and cadence sensors",
            "Home Assistant builds its entities without custom code",
            under_prefix=False,
        ),
        Topic(
            "homeassistant/binary_sensor/{uid}/config",
            1,
            True,
            "daemon (homeassistant = true)",
            ("home assistant",),
            "JSON: Home Assistant MQTT discovery config of the posture-alert binary sensor",
            "Home Assistant builds its entities without custom code",
            under_prefix=False,
        ),
    )
}

HA_SENSOR = "homeassistant/sensor/{uid}/config"
HA_BINARY_SENSOR = "homeassistant/binary_sensor/{uid}/config"


def topic(prefix: str, name: str, **fields: str) -> str:
    """The full topic of ``TOPICS[name]``: ``<prefix>/<name>``, or the absolute pattern filled with ``fields``."""
    t = TOPICS[name]
    return f"{prefix.rstrip('/')}/{t.name}" if t.under_prefix else t.name.format(**fields)


def subscribed_by(who: str) -> tuple[Topic, ...]:
    """The topics ``who`` ("cue", "phone", ...) subscribes to, in table order."""
    return tuple(t for t in TOPICS.values() if who in t.subscribers)
