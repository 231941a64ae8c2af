"""Quaternion ↔ rotation-matrix conversions for the live path.

The pipeline needs only two: a batch of VQF quaternions as matrices (applied
with one matmul, faster than building a ``Rotation`` per stride) and the
calibration's matrix as a quaternion. Importing ``scipy.spatial.transform``
pulls in scipy.sparse, scipy.linalg and the k-d tree, ~37 MB of a Pi Zero's
memory for two formulas, so they are written here and the tests check them
against scipy's ``Rotation`` (as the step filter is checked against
``scipy.signal``). Quaternions are scalar-first (w, x, y, z) like VQF's.
"""

from __future__ import annotations

import numpy as np


def matrix_from_quat(q_wxyz: np.ndarray) -> np.ndarray:
    """(…, 4) quaternions, normalised here, to (…, 3, 3) matrices that rotate column vectors."""
    q = np.asarray(q_wxyz, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    m = np.empty((*q.shape[:-1], 3, 3))
    m[..., 0, 0] = 1 - 2 * (yy + zz)
    m[..., 0, 1] = 2 * (xy - wz)
    m[..., 0, 2] = 2 * (xz + wy)
    m[..., 1, 0] = 2 * (xy + wz)
    m[..., 1, 1] = 1 - 2 * (xx + zz)
    m[..., 1, 2] = 2 * (yz - wx)
    m[..., 2, 0] = 2 * (xz - wy)
    m[..., 2, 1] = 2 * (yz + wx)
    m[..., 2, 2] = 1 - 2 * (xx + yy)
    return m


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """A 3×3 rotation matrix to its unit quaternion (w, x, y, z) with w ≥ 0.

    Shepperd's method: start from the largest of w², x², y², z² so that no
    division is by a small number, whatever the rotation.
    """
    m = np.asarray(m, dtype=float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    k = int(np.argmax([tr, m[0, 0], m[1, 1], m[2, 2]]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q
