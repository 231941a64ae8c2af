"""One configuration key declared once: its default, range or choices, and doc.

A settings dataclass field made with :func:`setting` carries everything the
configuration needs to know about its key, so ``service.config`` validates
and ``config/default.toml`` is generated from the same line. Pure data.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Spec:
    """What a key allows and means; ``hex`` writes its integers as 0x.. in the TOML."""

    doc: str = ""
    range: tuple[float, float] | None = None
    choices: tuple[Any, ...] | None = None
    hex: bool = False


def setting(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    doc: str = "",
    *,
    choices: tuple[Any, ...] | None = None,
    hex: bool = False,
) -> Any:
    """A dataclass field whose metadata is the key's :class:`Spec` (``lo``..``hi`` inclusive)."""
    if (lo is None) != (hi is None):
        raise ValueError("a range needs both ends")
    rng = None if lo is None or hi is None else (lo, hi)
    spec = Spec(doc, rng, tuple(choices) if choices is not None else None, hex)
    return field(default=default, metadata={"setting": spec})


def spec_of(f: Field) -> Spec:
    """The :class:`Spec` of a field (an empty one for a plain field)."""
    return f.metadata.get("setting", Spec())
