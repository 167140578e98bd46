"""People who talk in generated datasets (procedural CLI) and in the mesh world (catalogue people)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from jaeger_ros.core.geometry import Intrinsics, project, rotation_x, rotation_y, transform_points
from jaeger_ros.data.dataset import read_manifest
from sim_bridge.people import make_person


def test_generate_with_people_writes_person_metadata_and_answers(tmp_path):
    cmd = [sys.executable, "-m", "jaeger_ros.cli", "dataset", "generate", "--out", str(tmp_path), "--split", "test",
           "--num", "2", "--tasks", "A,C,E", "--resolution", "224x126", "--conditions", "clean", "--talkers", "people", "--world", "procedural"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    folders = [p.parent for p in (tmp_path / "test").rglob("metadata.json")]
    assert len(folders) >= 2
    for folder in folders:
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["talkers"] == "people"
        assert {b["category"] for b in meta["boxes"]} == {"person"}
        assert {b["label"] for b in meta["boxes"]} == {"person"}
        people = meta["scene"]["loudspeakers"]
        assert all(s["category"] == "person" for s in people)
        cam = meta["scene"]["camera"]
        world_from_cam = rotation_y(cam["yaw_deg"]) @ rotation_x(cam["pitch_deg"])
        mouths = [world_from_cam.T @ (np.array(s["acoustic_center"]) - cam["position"]) for s in people]
        for src in meta["sources"]:
            assert src["category"] == "person"
            # tasks A/B label a person by its mouth, not by its box centre (which is ~0.4 H lower)
            d = np.array(src["direction"])
            assert min(np.degrees(np.arccos(np.clip(d @ m / np.linalg.norm(m), -1, 1))) for m in mouths) < 0.01
            centre = np.array(meta["boxes"][src["loudspeaker"]]["center"])
            assert np.degrees(np.arccos(d @ centre / np.linalg.norm(centre))) > 3.0
            # the voice is the person's: find the talker's model by its box rank (left to right)
            shape_id = meta["boxes"][src["loudspeaker"]]["shape_id"]
            assert src["gender"] == make_person(shape_id).gender
    c = read_manifest(tmp_path / "test" / "manifests" / "C.json")
    assert c and all(set(e.obj_category) == {"person"} for e in c)
    assert all("Bbox(person," in e.text for e in c)  # same answer form, category person


mesh = pytest.importorskip("sim_bridge.mesh.catalogue")


@pytest.mark.skipif(not mesh.load_catalogue(), reason="sweethome3d-furniture not installed")
def test_mesh_people_talk_from_the_mouth_and_are_seen():
    pytest.importorskip("pyrender")
    from sim_bridge.mesh.render_gl import GLRenderer
    from sim_bridge.mesh.scene import sample_mesh_scene

    intr = Intrinsics.from_hfov(320, 240, 90.0)
    scene = sample_mesh_scene(np.random.default_rng(3), "val", 2, intr, talkers="people")  # val: standing people
    frame = GLRenderer.shared(intr).render(scene)
    assert [s.category for s in scene.loudspeakers] == ["person", "person"]
    assert {s.gender for s in scene.loudspeakers} == {"male", "female"}
    assert [b.label for b in scene.loudspeaker_boxes_camera()] == ["person", "person"]
    for i, spk in enumerate(scene.loudspeakers):
        w, h, d = spk.model.size_m  # the catalogue's box of the model
        mouth = spk.acoustic_center_local
        assert 0.870 * h < mouth[1] < 0.936 * h  # between chin and eyes (Drillis & Contini)
        assert abs(mouth[0]) < w / 2 and 0.0 < mouth[2] <= d / 2 + 1e-6  # on the front half of its box
        p = transform_points(scene.camera_from_world(), spk.acoustic_center)
        u, v, front = project(p, intr)
        assert front
        assert frame.instance[int(round(v)), int(round(u))] == i + 1
        assert frame.depth[int(round(v)), int(round(u))] == pytest.approx(-p[2], abs=0.1)
        assert int(np.sum(frame.instance == i + 1)) > 300


def test_a_recorded_bag_names_the_people_in_its_ground_truth(tmp_path):
    from rosbags.highlevel import AnyReader

    bag = tmp_path / "bag"
    r = subprocess.run([sys.executable, "-m", "jaeger_ros.cli", "record", "--duration", "2.5", "--out", str(bag),
                        "--resolution", "160x120", "--scenario", "dual", "--talkers", "people", "--seed", "4"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with AnyReader([bag]) as reader:  # decoded from the bag's own message definitions
        conns = [c for c in reader.connections if c.topic == "/sim/ground_truth"]
        truths = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert truths
    for msg in truths:
        assert [s.category for s in msg.sources] == ["person", "person"]
        assert {b.category for b in msg.boxes} == {"person"} and {b.label for b in msg.boxes} == {"person"}
        assert {s.gender for s in msg.sources} == {"male", "female"}


@pytest.mark.skipif(not mesh.load_catalogue(), reason="sweethome3d-furniture not installed")
def test_seated_catalogue_people_sit_on_their_stool():
    """The catalogue's seated people come without a chair: the stool put under each one carries
    the body (vertices just above its top) without swallowing it (few vertices inside it)."""
    from sim_bridge.mesh.scene import STOOL_DEPTH_M, STOOL_WIDTH_M, _seat_local, talking_people

    seated = [m for m in talking_people("train") if _seat_local(m.model_id) is not None]
    assert len(seated) >= 3
    for model in seated:
        seat, x, z = _seat_local(model.model_id)
        verts = np.concatenate([np.asarray(p.vertices) for p in mesh.load_model(model).parts])
        over = verts[(np.abs(verts[:, 0] - x) < STOOL_WIDTH_M / 2) & (np.abs(verts[:, 2] - z) < STOOL_DEPTH_M / 2)]
        assert 0.25 < seat < 0.7, model.name  # chair height, not the floor
        assert np.mean(over[:, 1] < seat - 0.02) < 0.05, model.name
        assert np.any((over[:, 1] >= seat - 0.02) & (over[:, 1] < seat + 0.03)), model.name
