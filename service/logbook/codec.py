"""The ``raw_chunks.data`` blob: raw IMU samples, shuffled and compressed.

Pure (numpy and zlib, no database) so the layout can be tested, benchmarked and decoded on its own.
"""

from __future__ import annotations

import zlib

import numpy as np


def encode_chunk(
    t: np.ndarray,
    acc: np.ndarray,
    gyr: np.ndarray,
    trunk_acc: np.ndarray | None = None,
    trunk_gyr: np.ndarray | None = None,
    trunk_valid: np.ndarray | None = None,
) -> bytes:
    """Raw samples as the ``raw_chunks.data`` blob (layout 1).

    zlib of, in this order and little-endian: ``t`` as float64 (n); then each sensor column as float32 (n each,
    column after column): acc x, y, z (m/s²), gyr x, y, z (rad/s), and with a trunk also trunk_acc x, y, z,
    trunk_gyr x, y, z and trunk_valid (1.0/0.0; trunk values are NaN where invalid). The float32 columns are
    byte-shuffled before compression (all first bytes, then all second bytes, ...: the slowly changing sign
    and exponent bytes then compress well).

    Why float32 for the sensor columns: the MPU-6050's ADC gives 16 bits and float32 keeps 24, so nothing
    measured is lost and the size halves. Why float64 for ``t``: float32 seconds lose sub-millisecond
    resolution after about an hour (at 3600 s its step is 0.24 ms; at 10 h, 2 ms of a 5 ms sample period).
    """
    n = len(t)
    cols = (
        [acc, gyr]
        if trunk_acc is None
        else [acc, gyr, trunk_acc, trunk_gyr, np.asarray(trunk_valid, dtype=float).reshape(n, 1)]
    )
    mat = np.ascontiguousarray(np.hstack([np.asarray(c, dtype="<f4").reshape(n, -1) for c in cols]).T)
    shuffled = mat.view(np.uint8).reshape(-1, 4).T.tobytes()
    return zlib.compress(np.asarray(t, dtype="<f8").tobytes() + shuffled, 6)


MAX_CHUNK_SAMPLES = 10_000_000  # far beyond any flush (hours at 1 kHz): a larger ``n`` is damage


def decode_chunk(data: bytes, n: int, trunk: bool) -> dict[str, np.ndarray]:
    """The inverse of ``encode_chunk``: ``t``, ``acc``, ``gyr`` and with a trunk ``trunk_acc``, ``trunk_gyr``,
    ``trunk_valid`` (bool); sensor values as float32.

    A blob that is not one (not zlib, truncated, of another length than ``n`` samples, times not finite or going
    back, sensor values not finite) raises ``ValueError`` saying what is wrong; never more than the expected size
    is decompressed.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"data is {type(data).__name__}, not a blob")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_CHUNK_SAMPLES:
        raise ValueError(f"n = {n!r} is not a sample count (1..{MAX_CHUNK_SAMPLES})")
    k = 13 if trunk else 6
    size = 8 * n + 4 * k * n
    try:
        z = zlib.decompressobj()
        raw = z.decompress(bytes(data), size + 1)
        complete = z.eof
    except zlib.error as exc:
        raise ValueError(f"data is not a stored chunk ({exc})") from None
    if len(raw) != size or not complete:
        what = "truncated" if not complete and len(raw) <= size else f"{len(raw)} bytes"
        raise ValueError(f"data does not hold {n} samples{' with a trunk' if trunk else ''} ({what}, not {size} bytes)")
    t = np.frombuffer(raw[: 8 * n], dtype="<f8")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise ValueError("data holds sample times that are not finite or go back")
    planes = np.frombuffer(raw[8 * n :], dtype=np.uint8).reshape(4, k * n)
    mat = np.ascontiguousarray(planes.T).view("<f4").reshape(k, n).T
    out = {"t": t, "acc": mat[:, 0:3], "gyr": mat[:, 3:6]}
    if not np.all(np.isfinite(mat[:, 0:6])):
        raise ValueError("data holds sensor values that are not finite")
    if trunk:
        valid = mat[:, 12] == 1.0
        if not np.all(valid | (mat[:, 12] == 0.0)):
            raise ValueError("data holds a trunk_valid column that is not 1.0/0.0")
        if not np.all(np.isfinite(mat[valid, 6:12])):
            raise ValueError("data holds trunk values that are not finite where the trunk is valid")
        out.update(trunk_acc=mat[:, 6:9], trunk_gyr=mat[:, 9:12], trunk_valid=valid)
    return out
