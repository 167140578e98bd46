"""Scene import: a GLB written here (a room, a sofa, a plant, named nodes) with a semantic sidecar
loads, renders with the right categories and metric depth, and is audible with a loudspeaker
inserted. Expected values come from the boxes this test builds."""
from __future__ import annotations

import json

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("pyrender")

from jaeger_ros.core import foa  # noqa: E402
from jaeger_ros.core.geometry import Intrinsics, backproject  # noqa: E402
from sim_bridge.mesh.acoustics_rlr import MeshAcoustics  # noqa: E402
from sim_bridge.mesh.import_scene import load_scene  # noqa: E402
from sim_bridge.mesh.render_gl import GLRenderer  # noqa: E402

INTR = Intrinsics.from_hfov(160, 90, 90.0)
SOFA = (np.array([0.6, 0.0, 0.4]), np.array([2.2, 0.8, 1.3]))  # min, max corners


@pytest.fixture()
def glb(tmp_path):
    room = trimesh.creation.box(extents=[5.0, 3.0, 4.0])
    room.apply_translation([2.5, 1.5, 2.0])
    room.invert()
    sofa = trimesh.creation.box(extents=SOFA[1] - SOFA[0])
    sofa.apply_translation((SOFA[0] + SOFA[1]) / 2)
    plant = trimesh.creation.cylinder(radius=0.2, height=1.2)
    plant.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    plant.apply_translation([4.2, 0.6, 0.6])
    scene = trimesh.Scene()
    for name, mesh in (("room_shell", room), ("sofa_01", sofa), ("plant_07", plant)):
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    path = tmp_path / "home.glb"
    scene.export(str(path))
    sidecar = tmp_path / "home.json"
    sidecar.write_text(json.dumps({
        "instances": {"room_shell": {"category": "wall", "material": "plaster"},
                      "sofa_01": {"category": "sofa", "material": "fabric"},
                      "plant_07": {"category": "plant", "material": "foliage"}},
        "camera": {"position": [2.5, 1.5, 3.6], "yaw_deg": 0.0, "pitch_deg": -10.0},
        "loudspeakers": [{"source": "procedural:3", "position": [3.3, 0.0, 1.6], "yaw_deg": 0.0}]}))
    return path, sidecar


def test_glb_with_sidecar_renders_categories_and_depth(glb):
    scene = load_scene(*glb)
    frame = GLRenderer.shared(INTR).render(scene)
    cats = scene.categories()
    seen = {cats[i] for i in np.unique(frame.objects) if i}
    assert seen == {"wall", "sofa", "plant", "loudspeaker"}
    points = backproject(frame.depth, INTR)
    world = points @ scene.world_from_camera()[:3, :3].T + scene.camera_position
    sofa_id = next(i for i, c in cats.items() if c == "sofa")
    p = world[frame.objects == sofa_id]
    assert np.all((p >= SOFA[0] - 0.01) & (p <= SOFA[1] + 0.01))
    walls = world[frame.objects == next(i for i, c in cats.items() if c == "wall")]
    on_a_face = np.min(np.abs(np.concatenate([walls, [5.0, 3.0, 4.0] - walls], axis=1)), axis=1)
    assert np.mean(on_a_face < 0.01) > 0.99  # every wall pixel lies on the room box's faces
    assert (frame.instance == 1).sum() > 0 and len(scene.loudspeaker_boxes_camera()) == 1


def test_imported_scene_is_audible_from_the_inserted_loudspeaker(glb):
    scene = load_scene(*glb)
    from sim_bridge.mesh.world import MeshWorld

    rir = MeshWorld(INTR).talker_rirs(scene, [0], [None])[0]
    assert rir.shape[0] == 4 and np.all(np.isfinite(rir))
    src = scene.loudspeakers[0].acoustic_center
    k = int(round(np.linalg.norm(src - scene.camera_position) / 343.0 * 16000))
    seg = rir[:, k - 3:k + 4]  # the direct sound: time-domain intensity W * (X, Y, Z)
    est = foa.ambisonic_to_camera((seg[0][None] * seg[[foa.ACN.index(c) for c in "XYZ"]]).sum(axis=1))
    truth = scene.source_direction_camera(0)
    angle = np.degrees(np.arccos(np.clip(est @ truth / np.linalg.norm(est), -1.0, 1.0)))
    assert angle < 3.0  # the source sits 3 cm before the driver centre the truth points at
    assert MeshAcoustics().engine in ("rlr", "pyroomacoustics")


def test_bad_inputs_are_one_line_errors(glb, tmp_path):
    path, _ = glb
    with pytest.raises(ValueError, match="scene files must be"):
        load_scene(tmp_path / "x.fbx", glb[1])
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(ValueError, match="not a semantic sidecar"):
        load_scene(path, bad)
    bad.write_text(json.dumps({"loudspeakers": [{"source": "procedural:3", "position": [1, 0, 1]}]}))
    with pytest.raises(ValueError, match="placed loudspeakers need the camera"):
        load_scene(path, bad)


def test_generate_with_scene_renders_the_imported_home(glb, tmp_path, monkeypatch):
    import json as _json

    from jaeger_ros.data.dataset import generate, load_sample
    from sim_bridge.mesh import import_scene

    loads = []
    load = import_scene.load_scene
    monkeypatch.setattr(import_scene, "load_scene", lambda *a: loads.append(a) or load(*a))
    path, _ = glb  # its sidecar is home.json beside home.glb
    generate(tmp_path / "d", "test", 2, seed=1, tasks=["D"], resolution=(160, 90), progress=False,
             conditions="clean", world="mesh", scene=path)
    assert len(loads) == 1  # one process: the home checked up front is the one rendered
    sample = load_sample(tmp_path / "d" / "test" / "task1_00000")
    meta = sample.metadata
    assert meta["world"]["scene_file"] == str(path) and meta["scene"]["source_file"] == str(path)
    assert len(meta["boxes"]) == 1 and sample.instance_mask().max() == 1
    assert _json.loads((tmp_path / "d" / "test" / "manifests" / "D.json").read_text())["annotation"]
    with pytest.raises(ValueError, match="tasks B/E need 2"):
        generate(tmp_path / "e", "test", 1, tasks=["E"], world="mesh", scene=path, progress=False)
    with pytest.raises(ValueError, match="add --world mesh"):
        generate(tmp_path / "f", "test", 1, tasks=["D"], scene=path, progress=False)


def test_an_imported_home_traces_each_talker_position_once(glb):
    """Every sample of `--scene` renders the same home, so a talker's RIR is traced once per
    process and reused; a sampled room (a new scene) is traced afresh."""
    from sim_bridge.mesh.world import MeshWorld

    world = MeshWorld(INTR, scene_file=str(glb[0]))
    calls = []
    trace = world.acoustics.rirs
    world.acoustics.rirs = lambda scene, sources: calls.append(len(sources)) or trace(scene, sources)
    scene = world.sample_scene(np.random.default_rng(0), "test", 1, "a")
    first = world.talker_rirs(scene, [0], [None])[0]
    again = world.talker_rirs(world.sample_scene(np.random.default_rng(1), "test", 1, "b"), [0], [None])[0]
    assert calls == [1]
    np.testing.assert_array_equal(first, again)
    other = load_scene(*glb)  # the same home loaded again is another scene object: traced
    np.testing.assert_array_equal(world.talker_rirs(other, [0], [None])[0], first)  # rlr is repeatable
    assert calls == [1, 1]
