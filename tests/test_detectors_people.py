"""Person detection on real images with the pretrained models shipped inside their wheels, and
the lift of a 2D person box to a camera-frame Box3D with depth (expected boxes from the pinhole
formulas, not from the code)."""
from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest

from jaeger_ros.core.geometry import Intrinsics
from jaeger_ros.detectors.people import PersonBox2D, PersonDetector, iou_2d, lift_to_3d, merge_people

skimage_data = pytest.importorskip("skimage.data")

# The astronaut photo (512x512): her face, eyebrows to chin and ear to ear, read off the image by hand.
ASTRONAUT_FACE = (180.0, 75.0, 265.0, 180.0)


@pytest.fixture(scope="module")
def detector():
    det = PersonDetector()
    yield det
    det.close()


def test_models_load_from_the_wheels_without_network(monkeypatch):
    """No model may be fetched at run time: with sockets disabled the detector still builds and runs."""
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    det = PersonDetector()
    try:
        assert det.detect_2d(skimage_data.astronaut())
    finally:
        det.close()
    import mediapipe
    pose_dir = Path(mediapipe.__file__).parent / "modules" / "pose_landmark"
    assert (pose_dir / "pose_landmark_full.tflite").stat().st_size > 1_000_000


def test_astronaut_is_found_over_her_face(detector):
    people = detector.detect_2d(skimage_data.astronaut())
    best = people[0]
    assert best.score > 0.8
    x0, y0, x1, y1 = ASTRONAUT_FACE
    fx0, fy0, fx1, fy1 = best.box
    # the best box holds the whole face and reaches down to her chest (at least to y = 300)
    assert fx0 <= x0 and fy0 <= y0 and fx1 >= x1 and fy1 >= 300
    assert "pose" in best.source and "face" in best.source  # both mediapipe models saw her, merged into one


def test_face_only_detector_finds_the_face_region(detector):
    det = PersonDetector(use_pose=False, use_hog=False)
    try:
        people = det.detect_2d(skimage_data.astronaut())
    finally:
        det.close()
    assert len(people) == 1
    assert iou_2d(people[0].core, ASTRONAUT_FACE) > 0.5


def test_no_person_in_a_photo_without_people(detector):
    """scikit-image's coffee cup photo has no person: pose and faces find nothing (HOG may fire,
    the 3D size check is what removes its false alarms)."""
    det = PersonDetector(use_hog=False)
    try:
        assert det.detect_2d(skimage_data.coffee()) == []
    finally:
        det.close()


def _slab_scene(intr: Intrinsics, u: tuple[int, int], v: tuple[int, int], d_person: float, d_wall: float) -> np.ndarray:
    depth = np.full((intr.height, intr.width), d_wall, np.float32)
    depth[v[0]:v[1], u[0]:u[1]] = d_person
    return depth


def test_lift_keeps_the_person_and_drops_the_wall_behind():
    intr = Intrinsics.from_hfov(640, 480, 90.0)  # fx = 320
    u, v, d = (280, 360), (60, 420), 2.0
    depth = _slab_scene(intr, u, v, d, 5.0)
    person = PersonBox2D(box=(250.0, 40.0, 390.0, 440.0), core=(300.0, 150.0, 340.0, 250.0), score=0.9, source="hog")
    box = lift_to_3d(person, depth, intr)
    assert box is not None and box.label == "person" and box.score == pytest.approx(0.9)
    # pinhole: x = (u - cx) d / fx, y = -(v - cy) d / fy; pixels u0..u1-1 span (u1-1-u0) d / fx,
    # of which the 2nd-98th percentiles (robust to stray pixels) keep 96 %
    width = 0.96 * (u[1] - 1 - u[0]) * d / intr.fx
    height = 0.96 * (v[1] - 1 - v[0]) * d / intr.fy
    assert box.size[0] == pytest.approx(width, abs=0.02)    # 0.47 m; the wall (5 m) would add metres
    assert box.size[1] == pytest.approx(height, abs=0.02)   # 2.15 m
    cx = ((u[0] + u[1] - 1) / 2 - intr.cx) * d / intr.fx
    cy = -((v[0] + v[1] - 1) / 2 - intr.cy) * d / intr.fy
    assert box.center[0] == pytest.approx(cx, abs=0.03) and box.center[1] == pytest.approx(cy, abs=0.05)
    # the front face at 2 m, a body 0.3 m deep behind it (the camera looks along -z)
    assert box.max[2] == pytest.approx(-2.0, abs=0.01) and box.size[2] == pytest.approx(0.3)


def test_lift_rejects_a_box_on_a_bare_wall():
    """A HOG false alarm on a wall: 140x400 px at 5 m is 2.2 m wide, 6.2 m high -- not a person."""
    intr = Intrinsics.from_hfov(640, 480, 90.0)
    depth = np.full((480, 640), 5.0, np.float32)
    false_alarm = PersonBox2D(box=(250.0, 40.0, 390.0, 440.0), core=(300.0, 150.0, 340.0, 250.0), score=0.7, source="hog")
    assert lift_to_3d(false_alarm, depth, intr) is None
    depth[:] = np.nan  # no valid depth at all
    assert lift_to_3d(false_alarm, depth, intr) is None


def test_astronaut_lifted_with_a_depth_image(detector):
    """The photo with a depth image made by hand: her silhouette (x 30-360, below y = 10) at
    1.5 m before a wall at 4 m. The best box is hers: its front at 1.5 m, her face inside it."""
    img = skimage_data.astronaut()
    intr = Intrinsics.from_hfov(512, 512, 60.0)
    depth = _slab_scene(intr, (30, 360), (10, 512), 1.5, 4.0)
    boxes = detector.detect(img, depth, intr)
    assert boxes
    best = max(boxes, key=lambda b: b.score)
    assert best.label == "person" and best.max[2] == pytest.approx(-1.5, abs=0.02)
    # her face (hand-picked pixels) projects inside the box's x range
    fx_lo = (ASTRONAUT_FACE[0] - intr.cx) * 1.5 / intr.fx
    fx_hi = (ASTRONAUT_FACE[2] - intr.cx) * 1.5 / intr.fx
    assert best.min[0] <= fx_lo and best.max[0] >= fx_hi


def test_merge_counts_one_person_once():
    body = PersonBox2D((100.0, 50.0, 200.0, 400.0), (140.0, 120.0, 160.0, 200.0), 0.6, "hog")
    face = PersonBox2D((90.0, 40.0, 210.0, 450.0), (130.0, 60.0, 170.0, 100.0), 0.5, "face")
    other = PersonBox2D((400.0, 50.0, 480.0, 400.0), (430.0, 120.0, 450.0, 200.0), 0.7, "hog")
    merged = merge_people([body, other, face])
    assert len(merged) == 2
    assert merged[0].source == "hog+face" and merged[0].score == pytest.approx(1 - 0.4 * 0.5)
    assert merged[1] == other


def test_bad_input_raises(detector):
    with pytest.raises(ValueError):
        detector.detect_2d(np.zeros((10, 10)))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((48, 64, 3), np.uint8), np.zeros((10, 10)), Intrinsics.from_hfov(64, 48))


def _mesh_world_missing() -> str:
    """Why the mesh world cannot render here ("" when it can)."""
    if importlib.util.find_spec("pyrender") is None:
        return "pyrender is not installed"
    from sim_bridge.mesh import catalogue
    if not catalogue.load_catalogue():
        return "the sweethome3d-furniture models are not installed"
    return ""


def test_rendered_person_from_the_mesh_world(detector):
    """A standing catalogue person of the test split (never seen by anything here), placed on
    the floor 2.0 m straight ahead of a sampled mesh-world camera, facing it, with the furniture
    near her and the other people removed: a person box is found where she stands."""
    reason = _mesh_world_missing()
    if reason:
        pytest.skip(reason)
    from jaeger_ros.core.geometry import transform_points
    from sim_bridge.mesh import catalogue
    from sim_bridge.mesh.render_gl import render
    from sim_bridge.mesh.scene import MeshObject, sample_mesh_scene

    intr = Intrinsics.from_hfov(640, 480)
    scene = sample_mesh_scene(np.random.default_rng(3), "test", 1, intr, "person-test")
    model = next(m for m in catalogue.load_catalogue()
                 if m.category == "person" and m.split == "test" and m.size_m[1] > 1.5)
    ahead = transform_points(scene.world_from_camera(), np.array([0.0, 0.0, -2.0]))
    feet = np.array([ahead[0], 0.0, ahead[2]])
    scene.objects = [o for o in scene.objects
                     if o.category != "person" and np.linalg.norm(o.position[[0, 2]] - feet[[0, 2]]) > 0.9]
    scene.objects.append(MeshObject(1 + max([o.instance_id for o in scene.objects], default=100), "person", "human",
                                    model.model_id, feet, scene.camera_yaw_deg, np.array(model.size_m)))
    frame = render(scene, intr)
    boxes = detector.detect(frame.rgb, frame.depth, intr)
    # where she stands, in the camera frame (the camera is pitched, so take it from the world point)
    at = transform_points(scene.camera_from_world(), feet + np.array([0.0, model.size_m[1] / 2, 0.0]))
    near = [b for b in boxes if abs(b.center[0] - at[0]) < 0.35 and abs(b.center[2] - at[2]) < 0.45]
    assert near, f"no person box near {at.round(2)}: {[b.center.round(2) for b in boxes]}"
    assert near[0].label == "person" and near[0].size[1] >= 0.8
