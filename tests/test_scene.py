"""Scene sampling rules, camera conventions, exact boxes, serialisation, elevation statistics."""
import json

import numpy as np
import pytest

from jaeger_ros.core.geometry import (Intrinsics, azel_from_direction, pose_matrix, project, rotation_x, rotation_y,
                                 transform_points)
from sim_bridge import scene as sc
from sim_bridge.loudspeakers import shape_split
from sim_bridge.render import raycast, render
from sim_bridge.loudspeakers import make_shape
from sim_bridge.scene import (Furniture, PlacedLoudspeaker, Scene, min_pixels, rect_distance, sample_scene,
                              wall_distance)

INTR = Intrinsics.from_hfov(224, 126, 90.0)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    """40 scenes over all splits and 1-3 loudspeakers (small frames keep this quick)."""
    out = []
    for k in range(40):
        rng = np.random.default_rng(100 + k)
        split = ("train", "val", "test")[k % 3]
        out.append(sample_scene(rng, split, 1 + k % 3, INTR, scene_id=f"{split}/{k}"))
    return out


def test_min_pixels_scales_the_1080p_rule():
    assert min_pixels(Intrinsics.from_hfov(1920, 1080)) == 500
    assert min_pixels(Intrinsics.from_hfov(672, 378)) == 62  # 500 * 0.1225, rounded up


def test_rect_distance_and_wall_distance():
    a = sc._rect_corners(np.array([0.0, 0.0]), np.array([0.5, 0.5]), 0.0)
    b = sc._rect_corners(np.array([2.0, 0.0]), np.array([0.5, 0.5]), 0.0)
    assert rect_distance(a, b) == pytest.approx(1.0)
    c = sc._rect_corners(np.array([2.0, 0.0]), np.array([0.5, 0.5]), 45.0)  # corner points at a
    assert rect_distance(a, c) == pytest.approx(1.5 - 0.5 * np.sqrt(2))
    assert rect_distance(a, sc._rect_corners(np.array([0.6, 0.2]), np.array([0.5, 0.5]), 30.0)) == 0.0
    room = sc.Room((4.0, 2.5, 5.0), (0.3,) * 6)
    assert wall_distance(sc._rect_corners(np.array([1.0, 4.0]), np.array([0.2, 0.3]), 0.0), room) == \
        pytest.approx(0.7)


def test_camera_pose_convention():
    s = Scene("x", sc.Room((5, 3, 5), (0.3,) * 6), [], [], [1.0, 1.5, 2.0], 30.0, -10.0)
    np.testing.assert_allclose(s.world_from_camera(), pose_matrix(rotation_y(30.0) @ rotation_x(-10.0), [1, 1.5, 2]))
    np.testing.assert_allclose(s.camera_from_world() @ s.world_from_camera(), np.eye(4), atol=1e-12)
    # Positive yaw turns left: a point on the camera's left (world -x at yaw 0) has azimuth > 0.
    s0 = Scene("x", sc.Room((5, 3, 5), (0.3,) * 6), [], [PlacedLoudspeaker(make_shape(0), [0.5, 0, 0.5], 0.0)],
               [2.5, 1.5, 3.0], 0.0, 0.0)
    az, el = azel_from_direction(s0.source_direction_camera(0))
    assert az > 0 and el < 0


def test_boxes_are_exact_axis_aligned_camera_frame_bounds():
    spk = PlacedLoudspeaker(make_shape(17), [2.0, 0.0, 1.5], 33.0)
    s = Scene("x", sc.Room((5, 3, 5), (0.3,) * 6), [], [spk], [2.4, 1.6, 4.0], -8.0, -12.0)
    box = s.loudspeaker_boxes_camera()[0]
    # Dense surface samples of every part, transformed to the camera frame.
    cam_from_local = s.camera_from_world() @ spk.world_from_local()
    pts = []
    for part in spk.shape.parts:
        h = part.half_extents
        if part.kind == "box":
            g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 5)] * 3), -1).reshape(-1, 3) * h
        else:
            ang = np.linspace(0, 2 * np.pi, 721)
            g = np.concatenate([np.stack([h[0] * np.cos(ang), h[0] * np.sin(ang), np.full_like(ang, z)], 1)
                                for z in (-h[2], h[2])])
        pts.append(np.asarray(part.center) + g @ part.frame.T)
    cam = transform_points(cam_from_local, np.concatenate(pts))
    np.testing.assert_allclose(cam.min(axis=0), box.min, atol=1e-4)
    np.testing.assert_allclose(cam.max(axis=0), box.max, atol=1e-4)
    # The acoustic centre is inside the box and the source direction points at it.
    ac = transform_points(s.camera_from_world(), spk.acoustic_center)
    assert np.all(ac >= box.min) and np.all(ac <= box.max)
    np.testing.assert_allclose(s.source_direction_camera(0), ac / np.linalg.norm(ac))
    with pytest.raises(ValueError, match="index"):
        s.source_direction_camera(1)


def test_sampled_scenes_obey_the_rules(scenes):
    need = min_pixels(INTR)
    for s in scenes:
        split = s.scene_id.split("/")[0]
        sx, sy, sz = s.room.size
        assert 3.5 <= sx <= 9 and 2.5 <= sy <= 3.2 and 3.5 <= sz <= 9
        assert 0.2 <= s.room.sabine_rt60() <= 0.9
        assert 3 <= len(s.furniture) <= 10
        assert 1.4 <= s.camera_position[1] <= 1.75 and s.room.contains(s.camera_position, 0.5)
        depth, instance = raycast(s, INTR)
        boxes = s.loudspeaker_boxes_camera()
        xs = sorted(b.center[0] for b in boxes)
        assert all(b - a >= 0.25 for a, b in zip(xs, xs[1:]))
        for i, spk in enumerate(s.loudspeakers):
            assert shape_split(spk.shape.shape_id) == split
            assert 1.0 <= np.linalg.norm(spk.acoustic_center - s.camera_position) <= 4.0
            fp = spk.footprint()
            assert wall_distance(fp, s.room) >= 0.5
            assert all(rect_distance(fp, f.footprint()) >= 0.5 for f in s.furniture)
            assert all(rect_distance(fp, o.footprint()) >= 0.5 for j, o in enumerate(s.loudspeakers) if j != i)
            az, el = azel_from_direction(s.source_direction_camera(i))
            assert abs(az) <= 40.0 and -25.0 <= el <= 24.0
            # Visible: enough pixels, and the acoustic centre's pixel shows this loudspeaker.
            assert np.sum(instance == i + 1) >= need
            alone = raycast(Scene("solo", s.room, [], [spk], s.camera_position, s.camera_yaw_deg,
                                  s.camera_pitch_deg), INTR)[1]
            assert np.sum(instance == i + 1) >= 0.5 * np.sum(alone == 1)  # at most half occluded
            u, v, front = project(transform_points(s.camera_from_world(), spk.acoustic_center), INTR)
            assert front and instance[int(np.round(v)), int(np.round(u))] == i + 1


def test_elevation_and_azimuth_statistics_resemble_the_official_data(scenes):
    az, el = azel_from_direction(np.array([s.source_direction_camera(i) for s in scenes
                                           for i in range(len(s.loudspeakers))]))
    assert len(el) == sum(1 + k % 3 for k in range(40))
    assert -22.0 <= np.median(el) <= -14.0  # official median -18
    assert np.percentile(el, 10) < -21.0 and np.percentile(el, 90) > -14.0  # official -24.5 and -8
    assert np.percentile(az, 10) < -20.0 and np.percentile(az, 90) > 20.0  # spread over the field of view


def test_sampling_is_deterministic_and_splits_differ():
    a = sample_scene(np.random.default_rng(3), "test", 2, INTR, "test/a")
    b = sample_scene(np.random.default_rng(3), "test", 2, INTR, "test/a")
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    c = sample_scene(np.random.default_rng(3), "train", 2, INTR, "train/a")
    assert a.to_dict()["room"] != c.to_dict()["room"] or a.camera_position.tolist() != c.camera_position.tolist()
    assert not {s.shape.shape_id for s in a.loudspeakers} & {s.shape.shape_id for s in c.loudspeakers}


def test_json_round_trip_rebuilds_and_rerenders_identically():
    s = sample_scene(np.random.default_rng(21), "val", 3, INTR, "val/x")
    d = json.loads(json.dumps(s.to_dict()))
    back = Scene.from_dict(d)
    assert back.to_dict() == d
    r1, r2 = render(s, INTR), render(back, INTR)
    np.testing.assert_array_equal(r1.rgb, r2.rgb)
    np.testing.assert_array_equal(r1.depth, r2.depth)
    np.testing.assert_array_equal(r1.instance, r2.instance)
    assert d["loudspeakers"][0]["acoustic_center"] == s.loudspeakers[0].acoustic_center.tolist()


def test_bad_arguments_and_impossible_requests(monkeypatch):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="split"):
        sample_scene(rng, "dev", 2, INTR)
    with pytest.raises(ValueError, match="num_loudspeakers"):
        sample_scene(rng, "test", 0, INTR)
    with pytest.raises(ValueError, match="kind"):
        Furniture([1, 0.5, 1], [1, 1, 1], 0.0, [0.5, 0.5, 0.5], "piano")
    monkeypatch.setattr(sc, "DISTANCE_RANGE_M", (9.0, 9.5))  # farther than any camera can see
    monkeypatch.setattr(sc, "MAX_ATTEMPTS", 5)
    with pytest.raises(RuntimeError, match="failed 5 times"):
        sample_scene(rng, "test", 1, INTR)
