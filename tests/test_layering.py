"""The layers, read from the source: dsp imports no other stackcue package; firmware_bridge does not import service.

docs/architecture.md draws the layers; this keeps the drawing true. Imports are read with ``ast`` (including
those inside functions), so a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: folder -> the stackcue packages its modules may import
ALLOWED = {
    "dsp": {"stackcue.errors", "stackcue.dsp"},
    "firmware_bridge": {"stackcue.errors", "stackcue.dsp", "stackcue.firmware_bridge"},
    "stackcue": {"stackcue.errors", "stackcue.service", "stackcue.entry"},  # __main__ and entry start the CLI
}


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    parts = path.relative_to(root).parent.parts
    package = ".".join(parts) if parts[0] == "stackcue" else ".".join(("stackcue", *parts))
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def violations(root: Path, folder: str) -> list[str]:
    bad = []
    for path in sorted((root / folder).rglob("*.py")):
        if "micropython" in path.parts:  # runs on the sensor, not part of the package's imports
            continue
        for line, name in imports(path, root):
            if name.split(".")[0] == "stackcue" and not any(
                name == a or name.startswith(a + ".") for a in ALLOWED[folder]
            ):
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_layer_imports_only_what_it_may(folder):
    bad = violations(ROOT, folder)
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The check can fail: a dsp module importing service, lazily or relatively, is caught."""
    (tmp_path / "dsp").mkdir()
    (tmp_path / "dsp" / "probe.py").write_text("def f():\n    from stackcue.service import cli\n", encoding="utf-8")
    (tmp_path / "dsp" / "rel.py").write_text("from ..service import cli\nfrom .stride import x\n", encoding="utf-8")
    assert violations(tmp_path, "dsp") == [
        "dsp/probe.py:2 imports stackcue.service",
        "dsp/rel.py:1 imports stackcue.service",
    ]
