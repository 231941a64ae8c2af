"""stackcue's exceptions: one root, a sub-root per area, leaves that are also builtins.

Modelled on gpiozero's ``exc.py``. Every message is one line a user can act
on (it names the file, line, key or value); the CLI prints ``str(exc)`` and
exits with status 2, never a traceback. Catch a sub-root to handle an area
(``except StorageError``), the root to handle anything stackcue raised on
purpose.

Areas: configuration, input (files, values and choices a user gives),
sensor (the IMUs and their links), storage (the logbook and files written),
network (MQTT), output (the cue's speaker and buzzer).
"""

from __future__ import annotations


class StackcueError(Exception):
    """Root of every error stackcue raises on purpose."""


# --------------------------------------------------------------- configuration
class ConfigError(StackcueError, ValueError):
    """A configuration file or key is wrong (the message names the file and the key)."""


# --------------------------------------------------------------- input
class InputError(StackcueError, ValueError):
    """Something the user handed in cannot be used: a file, an option's value, a session id."""


class RecordingError(InputError):
    """A recording cannot be read, or (strict mode) holds a bad row."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class CalibrationError(InputError):
    """The calibration routine was missing, incomplete or not accepted; a saved calibration is unusable."""


class PipelineError(InputError):
    """Data the pipeline cannot use (rate out of range, shapes, …)."""


class ReportError(InputError):
    """A session cannot be reported or exported (no strides, a folder that does not exist)."""


# --------------------------------------------------------------- sensor
class SensorError(StackcueError, OSError):
    """A sensor, its bus or its radio link failed in a way the caller should report."""


class SourceError(SensorError):
    """A source cannot be opened or read (wrong kind, missing library, nothing on the bus)."""


class SensorSetupError(SensorError):
    """A sensor refused its configuration (output rate, control write) at connection time."""


# --------------------------------------------------------------- storage
class StorageError(StackcueError, OSError):
    """A file or the logbook cannot be read or written."""


class LogbookError(StorageError):
    """The logbook is unusable (newer schema, ambiguous session id, not a logbook)."""


# --------------------------------------------------------------- network
class NetworkError(StackcueError, ConnectionError):
    """The broker cannot be used as configured."""


class MqttSetupError(NetworkError):
    """MQTT settings that cannot work: empty host, unreadable password file, bad TLS files."""


# --------------------------------------------------------------- output
class CueError(StackcueError, OSError):
    """A cue output device cannot be used (no espeak-ng, no GPIO)."""
