"""stackcue's exceptions: one root, one sub-root per area, leaves that are also builtins.

Every message is one line a user can act on; the CLI prints ``str(exc)`` and
exits with status 2, never a traceback.
"""

from __future__ import annotations


class StackcueError(Exception):
    """Root of every error stackcue raises on purpose."""


class ConfigError(StackcueError, ValueError):
    """A configuration file or key is wrong (the message names the key)."""


class RecordingError(StackcueError, ValueError):
    """A recording cannot be read, or (strict mode) holds a bad row."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class SourceError(StackcueError, OSError):
    """A sensor or source failed in a way the caller should report."""


class CalibrationError(StackcueError, ValueError):
    """The calibration routine was missing, incomplete or not accepted."""


class PipelineError(StackcueError, ValueError):
    """Data the pipeline cannot use (rate out of range, shapes, …)."""
