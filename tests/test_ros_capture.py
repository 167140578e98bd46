"""A-format -> B-format matrix of the tetrahedral capture node, and its executable failing
cleanly without sounddevice or the device (a real microphone is not tested)."""
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaeger_ros.core import foa
from jaeger_ros.ros.foa_capture_node import TETRA_CAPSULES, a_to_b, parse_matrix, tetrahedral_a_to_b
from jaeger_ros.core.geometry import direction_from_azel

REPO = Path(__file__).resolve().parent.parent


def capsule_signals(direction_cam, capsules, n=4000, seed=0):
    """(N, 4) cardioid capsule outputs for a plane wave of white noise from direction_cam."""
    s = np.random.default_rng(seed).standard_normal(n)
    u = foa.camera_to_ambisonic(direction_cam)
    gains = [0.5 * (1 + np.asarray(TETRA_CAPSULES[c]) / np.sqrt(3) @ u) for c in capsules]
    return np.stack([g * s for g in gains], axis=1), s


@pytest.mark.parametrize("az,el", [(0, 0), (35, -20), (-120, 10), (90, 60), (180, -45)])
def test_plane_wave_becomes_sn3d_b_format_from_the_right_direction(az, el):
    d = direction_from_azel(az, el)
    caps = ("LFU", "RFD", "LBD", "RBU")
    a, s = capsule_signals(d, caps)
    b = a_to_b(a, tetrahedral_a_to_b(caps))
    np.testing.assert_allclose(b, foa.encode_gains(d)[:, None] * s[None], atol=1e-5)  # W = s, dipoles = u s
    est_az, est_el = foa.direction_from_foa(b)
    assert abs((est_az - az + 180) % 360 - 180) < 1.0 and abs(est_el - el) < 1.0


def test_other_channel_orders_and_bad_matrices():
    d = direction_from_azel(-30, 15)
    caps = ("RBU", "LFU", "LBD", "RFD")
    a, s = capsule_signals(d, caps)
    np.testing.assert_allclose(a_to_b(a, tetrahedral_a_to_b(caps)), foa.encode_gains(d)[:, None] * s[None], atol=1e-5)
    flat = tetrahedral_a_to_b().reshape(-1).tolist()
    np.testing.assert_array_equal(parse_matrix(flat), tetrahedral_a_to_b())
    with pytest.raises(ValueError, match="16"):
        parse_matrix(flat[:15])
    with pytest.raises(ValueError, match="singular"):
        parse_matrix([1.0] * 16)
    with pytest.raises(ValueError, match="capsule"):
        tetrahedral_a_to_b(("LFU", "RFD", "LBD", "XYZ"))
    with pytest.raises(ValueError, match="shape"):
        a_to_b(np.zeros((10, 3)), tetrahedral_a_to_b())


def test_capture_executable_without_sounddevice_or_device_exits_1_with_one_line(tmp_path):
    """Real process: with sounddevice missing (as here) the one line names the pip extra; where
    sounddevice is installed, a device that does not exist gives the one line instead."""
    try:
        import sounddevice  # noqa: F401
        missing, args = False, ["--ros-args", "-p", "device:=no such device"]
    except (ImportError, OSError):
        missing, args = True, []
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "jaeger_ros.ros.foa_capture_node", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    assert output.startswith("foa_capture: ")
    if missing:
        assert "pip install sounddevice" in output and "libportaudio2" in output
    else:
        assert "no such device" in output
