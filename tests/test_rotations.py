"""The live path's quaternion/matrix formulas (written out to spare the Pi scipy's memory) against scipy's Rotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stackcue.dsp.rotations import matrix_from_quat, quat_from_matrix


def _wxyz(r: Rotation) -> np.ndarray:
    x, y, z, w = r.as_quat()
    return np.array([w, x, y, z])


def test_matrices_of_a_batch_equal_scipys():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(500, 4)) * rng.uniform(0.5, 2.0, size=(500, 1))  # not normalised: both normalise
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(matrix_from_quat(q), ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(matrix_from_quat(q[7]), ref[7], rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "rotvec",
    [
        [0.0, 0.0, 0.0],  # identity: the trace branch
        [np.pi, 0.0, 0.0],  # half turns: each of the x, y, z branches
        [0.0, np.pi, 0.0],
        [0.0, 0.0, np.pi],
        [2.9, -1.1, 0.4],  # near a half turn about a slanted axis
        [0.3, 0.2, -0.1],
    ],
)
def test_quaternion_of_a_matrix_equals_scipys_on_every_branch(rotvec):
    r = Rotation.from_rotvec(rotvec)
    q = quat_from_matrix(r.as_matrix())
    ref = _wxyz(r)
    ref = -ref if ref[0] < 0 else ref
    if abs(ref[0]) < 1e-12:  # a half turn: q and -q are the same rotation, both have w = 0
        ref = ref if np.dot(ref, q) > 0 else -ref
    np.testing.assert_allclose(q, ref, rtol=0, atol=1e-12)
    assert q[0] >= 0


def test_round_trip_over_random_rotations():
    for r in Rotation.random(300, random_state=3):
        m = r.as_matrix()
        np.testing.assert_allclose(matrix_from_quat(quat_from_matrix(m)), m, rtol=0, atol=1e-13)


def test_the_live_path_imports_no_scipy():
    """scipy.signal and scipy.spatial cost ~77 MB of a Pi Zero's memory: `stackcue run`'s modules must not load them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import stackcue.service.cli, stackcue.service.session, stackcue.service.logbook\n"
        "import stackcue.service.mqtt_publisher, stackcue.dsp.pipeline, stackcue.firmware_bridge.replay\n"
        "import stackcue.firmware_bridge.mpu6050_source, stackcue.firmware_bridge.ble_source\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
