"""Ray-cast renderer: exact planar depth, instance masks that match the boxes, real pictures."""
import numpy as np
import pytest
from PIL import Image

from jaeger_ros.core.geometry import Intrinsics, backproject, transform_points
from sim_bridge.loudspeakers import make_shape
from sim_bridge.render import RenderResult, raycast, render
from sim_bridge.room import Room
from sim_bridge.scene import Furniture, PlacedLoudspeaker, Scene, min_pixels, sample_scene

INTR = Intrinsics.from_hfov(336, 189, 90.0)
ROOM = Room((6.0, 2.8, 7.0), (0.3,) * 6)


def empty_scene(camera=(3.0, 1.5, 5.0), yaw=0.0, pitch=0.0, **kw) -> Scene:
    return Scene("t", ROOM, kw.pop("furniture", []), kw.pop("loudspeakers", []), camera, yaw, pitch, **kw)


def test_result_types_and_shapes():
    res = render(empty_scene(), INTR)
    assert isinstance(res, RenderResult)
    assert res.rgb.shape == (189, 336, 3) and res.rgb.dtype == np.uint8
    assert res.depth.shape == (189, 336) and res.depth.dtype == np.float32
    assert res.instance.shape == (189, 336) and res.instance.dtype == np.int32
    assert np.all(res.instance == 0) and np.all(res.depth > 0)


def test_facing_a_wall_gives_its_distance_at_the_image_centre():
    # Yaw 0 looks along -z: the north wall (z = 0) is 5 m ahead. Planar depth is 5 m on the
    # whole wall, not only at the centre.
    res = render(empty_scene(camera=(3.0, 1.5, 5.0)), INTR)
    assert res.depth[int(INTR.cy), int(INTR.cx)] == pytest.approx(5.0, abs=1e-4)
    # Turned 90 deg left (looking along -x), the west wall x = 0 is 3 m away.
    res = render(empty_scene(camera=(3.0, 1.5, 5.0), yaw=90.0), INTR)
    assert res.depth[int(INTR.cy), int(INTR.cx)] == pytest.approx(3.0, abs=1e-4)


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (37.0, -8.0), (-120.0, 5.0)])
def test_every_pixel_backprojects_onto_a_room_surface(yaw, pitch):
    scene = empty_scene(camera=(2.2, 1.6, 3.1), yaw=yaw, pitch=pitch)
    depth = render(scene, INTR).depth
    world = transform_points(scene.world_from_camera(), backproject(depth, INTR)).reshape(-1, 3)
    size = np.array(ROOM.size)
    off_surface = np.minimum(np.abs(world), np.abs(world - size)).min(axis=1)
    assert np.max(off_surface) < 2e-4
    assert np.all(world > -2e-4) and np.all(world < size + 2e-4)


def test_furniture_occludes_and_has_exact_depth():
    spk = PlacedLoudspeaker(make_shape(3), [3.0, 0.0, 1.5], 0.0)
    visible = render(empty_scene(loudspeakers=[spk]), INTR)
    assert np.sum(visible.instance == 1) >= min_pixels(INTR)
    # A tall cabinet 2 m in front of the camera, between it and the loudspeaker.
    cab = Furniture([3.0, 1.0, 3.0], [1.4, 2.0, 0.4], 0.0, [0.5, 0.4, 0.3], "cabinet")
    hidden = render(empty_scene(loudspeakers=[spk], furniture=[cab]), INTR)
    assert np.sum(hidden.instance == 1) == 0
    # Its front face (z = 3.2) is 1.8 m from the camera at z = 5.
    assert hidden.depth[int(INTR.cy), int(INTR.cx)] == pytest.approx(1.8, abs=1e-4)


def test_vertical_cylinder_depth():
    # Plant foliage is a vertical cylinder of radius 0.3 m centred 2.5 m ahead.
    plant = Furniture([3.0, 0.8, 2.5], [0.6, 1.6, 0.6], 0.0, [0.2, 0.5, 0.2], "plant")
    depth = render(empty_scene(furniture=[plant]), INTR).depth
    assert depth[int(INTR.cy), int(INTR.cx)] == pytest.approx(2.5 - 0.3, abs=1e-3)


def box_from_pixels(scene: Scene, res: RenderResult, i: int) -> tuple[np.ndarray, np.ndarray]:
    pts = backproject(res.depth, INTR)[res.instance == i + 1]
    return pts.min(axis=0), pts.max(axis=0)


@pytest.mark.parametrize("shape_id", [0, 7, 42, 101])
def test_loudspeaker_pixels_fill_its_declared_box(shape_id):
    # Loudspeaker ~3 m ahead facing the camera, fully in frame: front, top and both sides of the
    # box are seen, so the box of the back-projected pixels must match on those faces.
    spk = PlacedLoudspeaker(make_shape(shape_id), [3.0, 0.0, 1.8], 0.0)
    scene = empty_scene(loudspeakers=[spk], camera=(3.0, 1.2, 5.0))
    res = render(scene, INTR)
    box = scene.loudspeaker_boxes_camera()[0]
    lo, hi = box_from_pixels(scene, res, 0)
    assert np.all(lo >= box.min - 0.005) and np.all(hi <= box.max + 0.005)
    pixel = 3.2 / INTR.fx * 2  # two pixels at that distance
    assert hi[2] == pytest.approx(box.max[2], abs=0.005)  # nearest face: the drivers/grille
    np.testing.assert_allclose([lo[0], hi[0], lo[1], hi[1]], [box.min[0], box.max[0], box.min[1], box.max[1]],
                               atol=pixel + 0.01)


def test_sampled_scene_pixels_lie_inside_their_boxes_and_meet_the_threshold():
    for seed in range(3):
        scene = sample_scene(np.random.default_rng(seed), "val", 3, INTR)
        res = render(scene, INTR)
        pts = backproject(res.depth, INTR)
        for i, box in enumerate(scene.loudspeaker_boxes_camera()):
            p = pts[res.instance == i + 1]
            assert len(p) >= min_pixels(INTR)
            assert np.all(p >= box.min - 0.01) and np.all(p <= box.max + 0.01)
        depth, instance = raycast(scene, INTR)
        np.testing.assert_array_equal(depth, res.depth)
        np.testing.assert_array_equal(instance, res.instance)


def test_pictures_are_shaded_and_textured(tmp_path):
    scene = sample_scene(np.random.default_rng(5), "test", 3, INTR)
    res = render(scene, INTR)
    # Loudspeakers show several colours (cabinet, drivers, trim), not one flat colour.
    for i in range(len(scene.loudspeakers)):
        colours = res.rgb[res.instance == i + 1]
        assert len(np.unique(colours // 8, axis=0)) > 10
    background = res.rgb[res.instance == 0]
    assert background.std(axis=0).min() > 10
    # Side by side rgb | depth | mask, saved and read back as a real PNG.
    d8 = np.repeat((np.clip(res.depth / 8.0, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    m8 = np.repeat((res.instance * 60).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    path = tmp_path / "render_example.png"
    Image.fromarray(np.concatenate([res.rgb, d8, m8], axis=1)).save(path)
    assert np.asarray(Image.open(path)).shape == (189, 3 * 336, 3)


def test_rendering_is_deterministic():
    scene = sample_scene(np.random.default_rng(11), "train", 2, INTR)
    a, b = render(scene, INTR), render(scene, INTR)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_camera_outside_the_room_is_rejected():
    with pytest.raises(ValueError, match="inside the room"):
        render(empty_scene(camera=(3.0, 1.5, 8.0)), INTR)


def test_screen_space_culling_does_not_change_the_picture(monkeypatch):
    # A long cabinet reaching from behind the camera to in front of it, plus sampled scenes:
    # culled and unculled (every primitive tested on every pixel) renders must agree exactly.
    cab = Furniture([3.8, 0.5, 5.0], [0.6, 1.0, 4.0], 0.0, [0.5, 0.4, 0.3], "cabinet")
    scenes = [empty_scene(furniture=[cab], pitch=-10.0)]
    scenes += [sample_scene(np.random.default_rng(seed), "train", 3, INTR) for seed in (31, 32)]
    culled = [render(s, INTR) for s in scenes]
    # The cabinet top (y = 1.0) seen 1 m ahead, 0.8 m right, 0.5 m below a level camera.
    level = render(empty_scene(furniture=[cab]), INTR)
    assert level.depth[int(round(INTR.cy + INTR.fy * 0.5)), int(round(INTR.cx + INTR.fx * 0.8))] == \
        pytest.approx(1.0, abs=0.02)
    import sim_bridge.render as render_module
    monkeypatch.setattr(render_module, "_screen_rect",
                        lambda points, wfc, intr: (0, intr.height, 0, intr.width))
    for s, fast in zip(scenes, culled):
        full = render(s, INTR)
        np.testing.assert_array_equal(fast.depth, full.depth)
        np.testing.assert_array_equal(fast.instance, full.instance)
        np.testing.assert_array_equal(fast.rgb, full.rgb)
