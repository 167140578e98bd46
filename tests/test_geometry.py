"""Conventions from the reference: camera x right, y up, z back; azimuth positive left."""
import numpy as np
import pytest

from jaeger_ros.core import geometry as g


@pytest.mark.parametrize("direction, az, el", [
    ((0, 0, -1), 0.0, 0.0),      # forward
    ((-1, 0, 0), 90.0, 0.0),     # left
    ((1, 0, 0), -90.0, 0.0),     # right
    ((0, 0, 1), 180.0, 0.0),     # behind
    ((0, 1, 0), 0.0, 90.0),      # up
    ((0, -1, -1), 0.0, -45.0),   # below, ahead
])
def test_azimuth_elevation_convention(direction, az, el):
    a, e = g.azel_from_direction(np.array(direction, float))
    assert a == pytest.approx(az, abs=1e-9)
    assert e == pytest.approx(el, abs=1e-9)


def test_azel_round_trip_all_around():
    rng = np.random.default_rng(0)
    az = rng.uniform(-179, 179, 500)
    el = rng.uniform(-89, 89, 500)
    a, e = g.azel_from_direction(g.direction_from_azel(az, el))
    np.testing.assert_allclose(a, az, atol=1e-9)
    np.testing.assert_allclose(e, el, atol=1e-9)


def test_zero_direction_is_an_error():
    with pytest.raises(ValueError):
        g.azel_from_direction(np.zeros(3))


def test_frame_conversions():
    forward_cam = np.array([0.0, 0.0, -1.0])
    up_cam = np.array([0.0, 1.0, 0.0])
    left_cam = np.array([-1.0, 0.0, 0.0])
    np.testing.assert_allclose(g.camera_to_optical(forward_cam), [0, 0, 1])   # optical z forward
    np.testing.assert_allclose(g.camera_to_optical(up_cam), [0, -1, 0])       # optical y down
    np.testing.assert_allclose(g.camera_to_body(forward_cam), [1, 0, 0])      # body x forward
    np.testing.assert_allclose(g.camera_to_body(left_cam), [0, 1, 0])         # body y left
    np.testing.assert_allclose(g.camera_to_body(up_cam), [0, 0, 1])           # body z up
    p = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(g.optical_to_camera(g.camera_to_optical(p)), p)
    np.testing.assert_allclose(g.body_to_camera(g.camera_to_body(p)), p)
    for r in (g.OPTICAL_FROM_CAMERA, g.BODY_FROM_CAMERA):
        assert np.linalg.det(r) == pytest.approx(1.0)


def test_yaw_left_and_pitch_up():
    forward = np.array([0.0, 0.0, -1.0])
    a, _ = g.azel_from_direction(g.rotation_y(30.0) @ forward)
    assert a == pytest.approx(30.0)
    _, e = g.azel_from_direction(g.rotation_x(10.0) @ forward)
    assert e == pytest.approx(10.0)


def test_reference_intrinsics():
    intr = g.Intrinsics.from_hfov(672, 378, 90.0)
    assert intr.fx == pytest.approx(336.0)
    assert intr.vfov_deg == pytest.approx(58.72, abs=0.01)
    assert (intr.cx, intr.cy) == (336.0, 189.0)
    hd = intr.scaled(1920, 1080)
    assert hd.fx == pytest.approx(960.0) and hd.hfov_deg == pytest.approx(90.0)
    assert g.Intrinsics.from_dict(intr.to_dict()) == intr
    with pytest.raises(ValueError):
        g.Intrinsics.from_hfov(0, 10)


def test_backproject_matches_reference_formula_and_projects_back():
    intr = g.Intrinsics.from_hfov(64, 36)
    depth = np.full((36, 64), 2.0, np.float32)
    depth[0, 0] = 0.0
    depth[1, 1] = np.nan
    pts = g.backproject(depth, intr)
    u, v = 10, 20
    assert pts[v, u] == pytest.approx([(u - intr.cx) * 2 / intr.fx, -(v - intr.cy) * 2 / intr.fy, -2.0])
    assert np.isnan(pts[0, 0]).all() and np.isnan(pts[1, 1]).all()
    pu, pv, front = g.project(pts[v, u], intr)
    assert front and pu == pytest.approx(u) and pv == pytest.approx(v)
    with pytest.raises(ValueError):
        g.backproject(np.ones((10, 10)), intr)


def test_box_iou_and_offset():
    a = g.Box3D([0, 0, 0], [2, 2, 2])
    b = g.Box3D([1, 0, 0], [2, 2, 2])
    assert g.box_iou_3d(a, a) == pytest.approx(1.0)
    assert g.box_iou_3d(a, b) == pytest.approx(4 / 12)
    assert g.box_iou_3d(a, g.Box3D([5, 5, 5], [1, 1, 1])) == 0.0
    assert g.center_offset(a, b) == pytest.approx(1.0)
    c = g.Box3D.from_points(a.corners())
    np.testing.assert_allclose(c.center, a.center)
    np.testing.assert_allclose(c.size, a.size)
    with pytest.raises(ValueError):
        g.Box3D([0, 0, 0], [-1, 1, 1])


def test_angle_errors():
    assert g.wrapped_azimuth_error(179, -179) == pytest.approx(2.0)
    assert g.wrapped_azimuth_error(-90, 90) == pytest.approx(180.0)
    assert g.great_circle_deg(0, 0, 90, 0) == pytest.approx(90.0)
    # near the pole azimuth differences shrink on the sphere
    assert g.great_circle_deg(0, 89, 180, 89) == pytest.approx(2.0, abs=1e-6)
