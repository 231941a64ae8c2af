"""stackcue: posture biofeedback for runners.

The design card's folders install under this one name (``pyproject.toml``
maps them; docs/architecture.md says why): ``stackcue.dsp`` (pure
computation), ``stackcue.firmware_bridge`` (sensors, protocols and their
emulators), ``stackcue.service`` (wiring, storage, MQTT, the CLI) and
``stackcue.config`` (the default configuration, package data).
This folder holds only what all of them share: the errors.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stackcue")
except PackageNotFoundError:  # a bare checkout on sys.path, not installed
    __version__ = "0+unknown"
