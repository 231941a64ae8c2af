"""The CSV exchange format of DESIGN.md: ``t,ax,ay,az,gx,gy,gz[,trunk_…]``.

Writing is here; reading (strict, with line numbers) is below the writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .block import Block

PELVIS_COLUMNS = ["t", "ax", "ay", "az", "gx", "gy", "gz"]
TRUNK_COLUMNS = ["trunk_ax", "trunk_ay", "trunk_az", "trunk_gx", "trunk_gy", "trunk_gz"]


def _format_rows(block: Block) -> list[str]:
    base = np.column_stack([block.t, block.acc, block.gyr])
    rows = [
        f"{r[0]:.6f},{r[1]:.5f},{r[2]:.5f},{r[3]:.5f},{r[4]:.6f},{r[5]:.6f},{r[6]:.6f}" for r in base
    ]
    if not block.has_trunk:
        return rows
    trunk = np.column_stack([block.trunk_acc, block.trunk_gyr])
    out = []
    for row, tr, ok in zip(rows, trunk, block.trunk_valid, strict=True):  # type: ignore[arg-type]
        if ok:
            out.append(f"{row},{tr[0]:.5f},{tr[1]:.5f},{tr[2]:.5f},{tr[3]:.6f},{tr[4]:.6f},{tr[5]:.6f}")
        else:
            out.append(f"{row},,,,,,")
    return out


def write_recording(path: str | Path, block: Block, meta: dict[str, str] | None = None) -> None:
    """Write ``block`` as an exchange CSV, with ``# key=value`` metadata lines first."""
    columns = PELVIS_COLUMNS + (TRUNK_COLUMNS if block.has_trunk else [])
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for key, value in (meta or {}).items():
            fh.write(f"# {key}={value}\n")
        fh.write(",".join(columns) + "\n")
        chunk = 20000
        for start in range(0, len(block), chunk):
            fh.write("\n".join(_format_rows(block.slice(start, start + chunk))) + "\n")
