"""The live world in the mesh world: scenes are built in prefetch threads that end, so the one
GL context must move between threads (EGL refuses a context still current to another thread)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyrender")

from sim_bridge.live import LiveConfig, LiveWorld  # noqa: E402
from sim_bridge.mesh import catalogue  # noqa: E402

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")


def test_mesh_live_world_builds_scenes_in_threads_and_streams():
    world = LiveWorld(LiveConfig(world="mesh", width=160, height=120, seed=3, conditions="clean"))
    try:
        first = world.scene(0)          # built in thread scene-0
        second = world.scene(1)         # built in thread scene-1, after scene-0's thread ended
        for s in (first, second):
            assert s.rgb.shape == (120, 160, 3) and s.rgb.std() > 5
            assert 2 <= len(s.boxes) <= 3 and np.all(s.depth > 0)
        world.start(0.0)
        _, chunk = world.next_chunk()
        assert chunk.shape[0] == 4 and np.all(np.isfinite(chunk))
    finally:
        world.close()


def test_unknown_world_is_refused_and_party_runs_in_both():
    with pytest.raises(ValueError, match="world must be procedural or mesh"):
        LiveConfig(world="photo", scenario="party")
    assert LiveConfig(world="mesh", scenario="party").world == "mesh"  # see test_party_mesh.py


def test_live_demo_names_the_world_and_its_engines(tmp_path):
    """`live_demo --world mesh` prints the renderer and the acoustic engine that actually runs
    (rlr where it imports, else its fallback); without --world the params file decides."""
    import importlib.util

    from jaeger_ros.ros.live_demo import world_line

    params = tmp_path / "p.yaml"
    params.write_text("sim_bridge:\n  ros__parameters:\n    world: mesh\n")
    sound = "rlr" if importlib.util.find_spec("rlr_audio_propagation") else "pyroomacoustics"
    for line in (world_line("mesh", params), world_line(None, params)):
        assert line.startswith("world: mesh (render pyrender/") and line.endswith(f"acoustics {sound})")
    params.write_text("sim_bridge:\n  ros__parameters:\n    seed: 1\n")
    assert world_line(None, params).startswith("world: procedural")


def test_silent_people_the_camera_sees_are_candidates_in_the_ground_truth():
    """A catalogue person standing 2.5 m ahead who is not a source is a candidate box of the
    live ground truth (category person, where she stands); the same person 2.5 m behind the
    camera is not (no pixel of her in the image); turned away or behind a low wall she is, with
    only her head hidden she is not."""
    from dataclasses import replace

    from jaeger_ros.core.geometry import Intrinsics, transform_points
    from sim_bridge.mesh.render_gl import render
    from sim_bridge.mesh.scene import MeshObject, sample_mesh_scene

    intr = Intrinsics.from_hfov(640, 480)
    scene = sample_mesh_scene(np.random.default_rng(1), "test", 1, intr, "silent")
    model = next(m for m in catalogue.load_catalogue()
                 if m.category == "person" and m.split == "test" and "sit" not in m.model_id.lower())
    size = np.array(model.size_m)

    def floor_point(z: float) -> np.ndarray:
        spot = transform_points(scene.world_from_camera(), np.array([0.0, 0.0, z]))
        return np.array([spot[0], 0.0, spot[2]])

    ahead, behind = floor_point(-2.5), floor_point(2.5)
    scene.objects = [o for o in scene.objects if o.category != "person"
                     and min(np.linalg.norm(o.position[[0, 2]] - p[[0, 2]]) for p in (ahead, behind)) > 0.9]
    scene.objects += [MeshObject(900, "person", "human", model.model_id, ahead, scene.camera_yaw_deg, size),
                      MeshObject(901, "person", "human", model.model_id, behind, scene.camera_yaw_deg, size)]
    boxes = scene.silent_people_boxes_camera(render(scene, intr).objects, intr)
    where = transform_points(scene.camera_from_world(), ahead + np.array([0.0, size[1] / 2, 0.0]))
    assert len(boxes) == 1 and boxes[0].label == "person", boxes
    assert np.linalg.norm(boxes[0].center - where) < 0.15, (boxes[0].center, where)

    # turned away she is still seen (the middle of her head, not her mouth, must show), over a
    # 1 m high wall of boxes 1.5 m ahead too; a board from 1.2 to 2.2 m up there hides her head
    # but not her legs: no candidate
    scene.objects[-2].yaw_deg += 180.0
    assert len(scene.silent_people_boxes_camera(render(scene, intr).objects, intr)) == 1
    for bottom, height, seen in ((0.0, 1.0, 1), (1.2, 1.0, 0)):
        wall = MeshObject(902, "box", "wood", "box", floor_point(-1.5) + [0.0, bottom, 0.0], scene.camera_yaw_deg,
                          np.array([2.0, height, 0.1]))
        objects = render(replace(scene, objects=scene.objects + [wall]), intr).objects
        assert len(scene.silent_people_boxes_camera(objects, intr)) == seen, bottom
        assert np.sum(objects == 900) > 600    # she still covers 0.2 % of the image
