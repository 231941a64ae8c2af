"""JSON read back from disk or the network, where any byte may be hostile, and JSON others read (issue 13).

``json.loads`` can fail in ways that are not ``ValueError``: a deeply nested line raises ``RecursionError``,
and a 400-digit integer parses fine but later overflows ``math.isfinite``/``float()`` (``OverflowError``) far
from the reader. ``loads`` turns every failure into ``ValueError`` and reads integers too long for a float's
precision as floats (a huge one becomes ``inf``), so the readers' existing finite-number checks refuse it.
"""

from __future__ import annotations

import json
import math
from typing import Any

_INT_DIGITS = 18  # beyond int64 precision a stored "integer" is no count or id stackcue ever wrote


def _int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else float(text)


def loads(text: str | bytes) -> Any:
    """``json.loads`` whose only failure is ``ValueError`` (``UnicodeDecodeError`` is one)."""
    try:
        return json.loads(text, parse_int=_int)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def finite(x: Any) -> Any:
    """``x`` with every non-finite float (NaN, ±inf) turned into None, which JSON can say."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def dumps(obj: Any, default: Any = None) -> str:
    """Strict, compact JSON (never a bare ``NaN`` or ``Infinity``, which other parsers refuse): a non-finite
    number becomes null."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=default)
    except ValueError:
        return json.dumps(finite(obj), separators=(",", ":"), allow_nan=False, default=default)
