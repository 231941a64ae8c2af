"""The unit of data that every source hands to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Block:
    """Consecutive samples of one source, float64, SI units, sensor axes.

    ``t`` (N,) s; ``acc`` (N, 3) m/s² specific force; ``gyr`` (N, 3) rad/s.
    A trunk sensor adds ``trunk_acc``/``trunk_gyr`` (N, 3), NaN where
    ``trunk_valid`` (N,) is False. An empty block (N == 0) is valid.
    """

    t: np.ndarray
    acc: np.ndarray
    gyr: np.ndarray
    trunk_acc: np.ndarray | None = None
    trunk_gyr: np.ndarray | None = None
    trunk_valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.t)
        if self.acc.shape != (n, 3) or self.gyr.shape != (n, 3):
            raise ValueError(f"Block: acc/gyr must have shape ({n}, 3)")
        if self.has_trunk:
            if self.trunk_acc.shape != (n, 3) or self.trunk_gyr.shape != (n, 3):  # type: ignore[union-attr]
                raise ValueError(f"Block: trunk_acc/trunk_gyr must have shape ({n}, 3)")
            if self.trunk_valid is None or self.trunk_valid.shape != (n,):
                raise ValueError(f"Block: trunk_valid must have shape ({n},)")

    def __len__(self) -> int:
        return len(self.t)

    @property
    def has_trunk(self) -> bool:
        return self.trunk_acc is not None

    def slice(self, start: int, stop: int) -> Block:
        """Rows ``start:stop`` as a new block (views, no copies)."""
        if not self.has_trunk:
            return Block(self.t[start:stop], self.acc[start:stop], self.gyr[start:stop])
        return Block(
            self.t[start:stop],
            self.acc[start:stop],
            self.gyr[start:stop],
            self.trunk_acc[start:stop],  # type: ignore[index]
            self.trunk_gyr[start:stop],  # type: ignore[index]
            self.trunk_valid[start:stop],  # type: ignore[index]
        )

    @staticmethod
    def empty(trunk: bool = False) -> Block:
        z = np.zeros((0, 3))
        if not trunk:
            return Block(np.zeros(0), z, z.copy())
        return Block(np.zeros(0), z, z.copy(), z.copy(), z.copy(), np.zeros(0, bool))
