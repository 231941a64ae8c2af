"""A runner's targets: the part of the configuration a coach may set from the hub (issue 15).

Targets are "thresholds, the reference mode, the cue style and the quiet times": a configuration overlay limited
to ``ALLOWED``. The hub validates one when the coach saves it (``HubStore.set_targets``), the Pi again when it
arrives (service/sync/), both with ``validate_targets``, which applies it over the defaults with the config
loader's own checks (``config._merge``: types, ranges, choices, known alert kinds) and the cross-key checks
(``Config.pipeline``: a hysteresis at or above a threshold is refused), so a target the Pi could not load is
refused at the hub, in the same words.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from stackcue.errors import ConfigError

from .config import Config, _merge, load_config


class TargetsError(ConfigError):
    """Targets that cannot be used; one line naming ``section.key``."""


#: where the messages say the values came from
SOURCE = Path("targets")


def _allowed(defaults: dict[str, Any]) -> dict[str, frozenset[str]]:
    """The keys a coach may set, per section: every ``[alerts]`` threshold (``*_deg``), ``hysteresis_deg``,
    ``quiet_s``, ``remind_every_s``, ``enabled``; every ``[reference]`` key; ``[cue]`` ``owner``, ``audio``,
    ``voice``, ``speed_wpm``, ``style``, ``language``, ``dead_band_deg``, ``full_scale_deg``, ``fading`` and
    ``max_per_10min`` (issue 17)."""
    alerts = {k for k in defaults["alerts"] if k.endswith("_deg")}
    alerts |= {"quiet_s", "remind_every_s", "enabled"}
    cue_keys = ("owner", "audio", "voice", "speed_wpm", "style", "language", "dead_band_deg", "full_scale_deg")
    cue_keys += ("fading", "max_per_10min")  # faded feedback on or off, the ceiling of cues (docs/cues.md)
    cue = {k for k in cue_keys if k in defaults["cue"]}
    return {"alerts": frozenset(alerts), "reference": frozenset(defaults["reference"]), "cue": frozenset(cue)}


_DEFAULTS = load_config().data
#: section -> the keys of it a coach may set
ALLOWED: dict[str, frozenset[str]] = _allowed(_DEFAULTS)


def validate_targets(overlay: Any) -> dict:
    """The overlay checked and normalised (``{section: {key: value}}``, ints of float keys as floats); a
    ``TargetsError`` with one line naming the key otherwise. An empty overlay (no targets) is valid."""
    if not isinstance(overlay, dict):
        raise TargetsError(f"{SOURCE}: must be a table of sections ({', '.join(sorted(ALLOWED))})")
    for section, keys in overlay.items():
        if section not in ALLOWED:
            raise TargetsError(
                f"{SOURCE}: [{section}] is not a targets section (allowed: {', '.join(sorted(ALLOWED))})"
            )
        if not isinstance(keys, dict):
            raise TargetsError(f"{SOURCE}: '{section}' must be a [section]")
        for key in keys:
            if key not in ALLOWED[section]:
                raise TargetsError(
                    f"{SOURCE}: {section}.{key} is not a target (allowed in [{section}]: "
                    f"{', '.join(sorted(ALLOWED[section]))})"
                )
    data = copy.deepcopy(_DEFAULTS)
    try:
        _merge(data, overlay, SOURCE)  # the loader's own checks: types, ranges, choices, alert kinds
        Config(data, [SOURCE]).pipeline  # noqa: B018 - its cross-key checks (hysteresis below thresholds)
    except TargetsError:
        raise
    except ConfigError as exc:
        raise TargetsError(str(exc)) from None
    return {section: {key: data[section][key] for key in keys} for section, keys in overlay.items() if keys}


def apply_targets(cfg_data: dict[str, Any], overlay: dict) -> dict[str, Any]:
    """A copy of a configuration's data with the (validated) overlay over it: what a session runs with."""
    out = copy.deepcopy(cfg_data)
    for section, keys in validate_targets(overlay).items():
        out[section].update(keys)
    return out
