"""Simulator backends: the procedural default, and every conversion the habitat backend relies
on, checked on known vectors (habitat-sim itself is not installed here)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import Intrinsics
from sim_bridge.acoustics import foa_rir
from sim_bridge.backends import BackendUnavailable, get_backend
from sim_bridge.backends.habitat import (coeffs_to_wxyz, depth_from_habitat, matrix_to_quaternion,
                                         quaternion_to_matrix, rgb_from_habitat,
                                         soundspaces_foa_to_ambix, world_from_sensor)
from sim_bridge.render import render
from sim_bridge.scene import sample_scene

INTR = Intrinsics.from_hfov(96, 54, 90.0)


def _yaw_pitch(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Rotation: pitch about x, then yaw about +y (world_from_camera of a turned, tilted camera)."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx


def test_quaternion_yaw_left_turns_forward_to_the_left():
    half = np.radians(90.0) / 2
    r = quaternion_to_matrix([np.cos(half), 0.0, np.sin(half), 0.0])  # +90 deg about +y (up)
    np.testing.assert_allclose(r @ [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], atol=1e-12)  # forward -> left
    np.testing.assert_allclose(r @ [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_quaternion_matrix_round_trip_and_coefficient_order():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        r = quaternion_to_matrix(q)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(matrix_to_quaternion(r), q, atol=1e-9)
    np.testing.assert_allclose(coeffs_to_wxyz([0.1, 0.2, 0.3, 0.9]), [0.9, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        matrix_to_quaternion(np.diag([1.0, 1.0, -1.0]))


def test_sensor_pose_places_a_point_in_front_of_the_camera():
    r = _yaw_pitch(30.0, -10.0)
    pose = world_from_sensor([1.0, 1.5, 2.0], matrix_to_quaternion(r))
    ahead = pose @ [0.0, 0.0, -2.0, 1.0]  # 2 m along the camera's -z
    np.testing.assert_allclose(ahead[:3], np.array([1.0, 1.5, 2.0]) + 2.0 * (r @ [0.0, 0.0, -1.0]), atol=1e-12)


def test_depth_and_colour_observations():
    d = np.array([[[1.5], [np.nan]], [[np.inf], [-1.0]]], dtype=np.float32)
    np.testing.assert_array_equal(depth_from_habitat(d), np.array([[1.5, 0.0], [0.0, 0.0]], np.float32))
    rgba = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    np.testing.assert_array_equal(rgb_from_habitat(rgba), rgba[..., :3])
    with pytest.raises(ValueError):
        rgb_from_habitat(rgba.astype(np.float32))


def _native(u_frame: np.ndarray) -> np.ndarray:
    """The assumed SoundSpaces native gains of a plane wave from unit direction u (x right,
    y up, z back in the native frame): ACN slots Y, Z, X carry u_y, u_z, u_x, N3D (sqrt 3)."""
    return np.array([1.0, np.sqrt(3) * u_frame[1], np.sqrt(3) * u_frame[2], np.sqrt(3) * u_frame[0]])


def test_soundspaces_straight_ahead_is_ambix_front():
    ir = _native(np.array([0.0, 0.0, -1.0]))[:, None]
    np.testing.assert_allclose(soundspaces_foa_to_ambix(ir, np.eye(3))[:, 0], [1.0, 0.0, 0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (30.0, -10.0), (-120.0, 20.0)])
def test_soundspaces_world_fixed_rir_matches_our_encoding(yaw, pitch):
    rot = _yaw_pitch(yaw, pitch)
    for u_world in np.random.default_rng(1).standard_normal((8, 3)):
        u_world /= np.linalg.norm(u_world)
        ours = soundspaces_foa_to_ambix(_native(u_world)[:, None] * [[1.0, -0.5]], rot)
        expected = foa.encode_gains(rot.T @ u_world)  # the same direction seen from the camera
        np.testing.assert_allclose(ours, expected[:, None] * [[1.0, -0.5]], atol=1e-12)


def test_soundspaces_listener_fixed_and_sn3d_options():
    u_cam = np.array([0.6, 0.0, -0.8])  # ahead and to the right in the camera frame
    rot = _yaw_pitch(75.0, 0.0)       # ignored when the native dipoles turn with the listener
    ours = soundspaces_foa_to_ambix(_native(u_cam)[:, None], rot, world_fixed=False)
    np.testing.assert_allclose(ours[:, 0], foa.encode_gains(u_cam), atol=1e-12)
    sn3d = _native(u_cam) * [1.0, 3 ** -0.5, 3 ** -0.5, 3 ** -0.5]
    np.testing.assert_allclose(soundspaces_foa_to_ambix(sn3d[:, None], rot, "SN3D", world_fixed=False)[:, 0],
                               foa.encode_gains(u_cam), atol=1e-12)
    with pytest.raises(ValueError):
        soundspaces_foa_to_ambix(np.zeros((3, 5)), rot)


def test_procedural_backend_is_the_simulator():
    scene = sample_scene(np.random.default_rng(3), "test", 2, INTR)
    backend = get_backend()
    seen, direct = backend.observe(scene, INTR), render(scene, INTR)
    np.testing.assert_array_equal(seen.rgb, direct.rgb)
    np.testing.assert_array_equal(seen.depth, direct.depth)
    np.testing.assert_array_equal(seen.instance, direct.instance)
    src = scene.loudspeakers[0].acoustic_center
    ours = backend.foa_rir(scene, src, foa.SAMPLE_RATE, np.random.default_rng(4), max_order=2, tail=False)
    ref = foa_rir(scene.room, src, scene.camera_position, scene.world_from_camera()[:3, :3], foa.SAMPLE_RATE,
                  rng=np.random.default_rng(4), max_order=2, tail=False)
    np.testing.assert_array_equal(ours, ref)


def test_backend_names():
    with pytest.raises(ValueError):
        get_backend("unreal")
    if importlib.util.find_spec("habitat_sim") is None:  # the case on this machine
        with pytest.raises(BackendUnavailable):
            get_backend("habitat", scene_path="missing.glb")
