"""Depth-only loudspeaker candidates on an analytically ray-cast room and on simulator renders."""
import numpy as np
import pytest

from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d, rotation_x

CAMERA_HEIGHT = 1.5


def _ray_box(rays: np.ndarray, box: Box3D) -> np.ndarray:
    """Ray parameter t of the first hit of rays from the origin with an axis-aligned box (inf: miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = box.min / rays, box.max / rays
    near = np.nanmax(np.minimum(t1, t2), axis=-1)
    far = np.nanmin(np.maximum(t1, t2), axis=-1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def _room_depth(intr: Intrinsics, boxes: list[Box3D], pitch_deg: float = -12.0,
                wall_distance: float = 4.5) -> tuple[np.ndarray, list[Box3D]]:
    """Planar depth of a floor, a back wall and boxes standing on the floor, seen by a camera
    1.5 m up and pitched down; also the boxes in the camera frame (axis-aligned there only
    approximately, so the test boxes are given in the camera frame of a level camera and the
    pitch is applied to the whole scene)."""
    level_from_camera = rotation_x(pitch_deg)
    rays = intr.pixel_rays() @ level_from_camera.T                      # rays in the level frame
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 1] < 0, -CAMERA_HEIGHT / rays[..., 1], np.inf)
        t_wall = np.where(rays[..., 2] < 0, -wall_distance / rays[..., 2], np.inf)
    t = np.minimum(t_floor, t_wall)
    for box in boxes:
        t = np.minimum(t, _ray_box(rays, box))
    depth = np.where(np.isfinite(t), t, 0.0).astype(np.float32)         # camera rays have z = -1
    # the boxes' ground truth in the (pitched) camera frame: boxes around their rotated corners
    truth = [Box3D.from_points(b.corners() @ level_from_camera) for b in boxes]
    return depth, truth


def test_two_boxes_on_a_floor_before_a_wall_are_found_and_nothing_else():
    intr = Intrinsics.from_hfov(640, 480)
    level_boxes = [Box3D([-0.8, -CAMERA_HEIGHT + 0.35, -2.8], [0.35, 0.7, 0.35]),
                   Box3D([0.7, -CAMERA_HEIGHT + 0.45, -2.3], [0.3, 0.9, 0.3])]
    depth, truth = _room_depth(intr, level_boxes)
    found = boxes_from_depth(depth, intr)
    assert len(found) == 2, found                    # floor and wall gave no candidate
    for gt, pred in zip(truth, found):              # both sorted left to right
        assert box_iou_3d(gt, pred) > 0.5, (gt, pred)


def test_furniture_sized_objects_are_rejected():
    intr = Intrinsics.from_hfov(640, 480)
    table = Box3D([0.0, -CAMERA_HEIGHT + 0.375, -3.0], [1.4, 0.75, 0.8])   # too wide
    stool = Box3D([1.0, -CAMERA_HEIGHT + 0.2, -2.5], [0.35, 0.4, 0.35])    # too low
    speaker = Box3D([-1.0, -CAMERA_HEIGHT + 0.4, -2.6], [0.3, 0.8, 0.3])
    depth, truth = _room_depth(intr, [table, stool, speaker])
    found = boxes_from_depth(depth, intr)
    assert len(found) == 1 and box_iou_3d(found[0], truth[2]) > 0.3, found   # the loudspeaker only


@pytest.mark.parametrize("pitch_deg", [4.0, -12.0])
def test_a_table_top_larger_than_the_visible_floor_is_not_taken_for_the_floor(pitch_deg):
    """A wide table near the camera hides most of the floor; its top holds more points than
    the floor but has the floor under it. A loudspeaker-sized box beyond 4.5 m is ignored."""
    intr = Intrinsics.from_hfov(640, 480)
    table = Box3D([0.5, -CAMERA_HEIGHT + 0.375, -1.9], [2.4, 0.75, 1.4])
    speaker = Box3D([-1.3, -CAMERA_HEIGHT + 0.4, -2.2], [0.3, 0.8, 0.3])
    far = Box3D([0.9, -CAMERA_HEIGHT + 0.4, -5.2], [0.35, 0.8, 0.35])
    depth, truth = _room_depth(intr, [table, speaker, far], pitch_deg=pitch_deg, wall_distance=6.0)
    found = boxes_from_depth(depth, intr)
    assert len(found) == 1 and box_iou_3d(found[0], truth[1]) > 0.5, found


def test_precision_and_recall_on_rendered_scenes():
    """Real renders (furniture, clutter, occlusion): most loudspeakers are found, few extras."""
    from sim_bridge.render import render
    from sim_bridge.scene import sample_scene

    intr = Intrinsics.from_hfov(672, 378)
    true_pos = n_pred = n_true = 0
    for seed in range(100, 106):
        scene = sample_scene(np.random.default_rng(seed), "test", 2, intr)
        pred = boxes_from_depth(render(scene, intr).depth, intr)
        gts = scene.loudspeaker_boxes_camera()
        n_pred, n_true = n_pred + len(pred), n_true + len(gts)
        true_pos += sum(max([box_iou_3d(g, p) for p in pred], default=0.0) > 0.25 for g in gts)
    assert true_pos / n_true >= 0.9 and true_pos / max(n_pred, 1) >= 0.8, (true_pos, n_pred, n_true)


def test_depth_must_match_the_intrinsics():
    with pytest.raises(ValueError):
        boxes_from_depth(np.ones((10, 10), np.float32), Intrinsics.from_hfov(64, 36))


def test_a_near_flat_faced_loudspeaker_is_not_taken_for_a_wall():
    """A tower loudspeaker straight ahead 1.9 m away shows only its flat face, 0.4 m wide: that
    face holds more points than a wall needs (6 % of those below 1.3 m) but is far shorter than
    any wall (removing whole planes lost it: no candidate at all). Nothing else is a candidate."""
    intr = Intrinsics.from_hfov(640, 480)
    tower = Box3D([0.0, -CAMERA_HEIGHT + 0.5, -1.9 - 0.175], [0.4, 1.0, 0.35])
    depth, truth = _room_depth(intr, [tower])
    found = boxes_from_depth(depth, intr)
    assert len(found) == 1 and box_iou_3d(found[0], truth[0]) > 0.5, found
