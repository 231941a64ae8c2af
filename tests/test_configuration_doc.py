"""docs/configuration.md names every key of config/default.toml in its section's row (and no section is missing)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def section_rows(doc: str) -> dict[str, str]:
    """The Sections table: section name -> its row's text."""
    rows = {}
    for line in doc.splitlines():
        m = re.match(r"\| `\[([a-z0-9_]+)\]` \|", line)
        if m:
            assert m[1] not in rows, f"section [{m[1]}] has two rows"
            rows[m[1]] = line
    return rows


def test_every_key_of_default_toml_is_named_in_its_sections_row():
    shipped = tomllib.loads((ROOT / "config/default.toml").read_text())
    rows = section_rows((ROOT / "docs/configuration.md").read_text())
    missing_sections = sorted(set(shipped) - set(rows))
    assert not missing_sections, f"docs/configuration.md has no row for {missing_sections}"
    unknown = sorted(set(rows) - set(shipped))
    assert not unknown, f"docs/configuration.md documents sections that do not exist: {unknown}"
    missing = [f"{sec}.{key}" for sec, table in shipped.items() for key in table if f"`{key}`" not in rows[sec]]
    assert not missing, f"keys not named in docs/configuration.md: {missing}"
