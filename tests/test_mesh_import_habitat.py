"""Habitat homes in: a Replica-format scene written here (a z-up binary PLY quad mesh with a
per-face object_id, written with struct, and its info_semantic.json) and an HM3D-format pair
(a vertex-coloured semantic GLB and its semantic.txt) convert to a GLB + sidecar that loads,
renders with the expected categories, and gets a sampled camera that sees an inserted
loudspeaker. Expected categories, counts and positions come from the boxes built here."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("pyrender")

from jaeger_ros.core.geometry import Intrinsics, backproject  # noqa: E402
from sim_bridge.mesh.habitat_semantic import classify, convert_hm3d, convert_replica  # noqa: E402
from sim_bridge.mesh.import_scene import load_scene, sample_in_home  # noqa: E402
from sim_bridge.mesh.render_gl import GLRenderer  # noqa: E402

INTR = Intrinsics.from_hfov(160, 90, 90.0)
# Replica frame (z up): floor at z = 0.3, room x 1..7, y -2.5..2.5, ceiling 2.7 m above the floor.
X0, X1, Y0, Y1, Z0, H = 1.0, 7.0, -2.5, 2.5, 0.3, 2.7
SOFA_Z_UP = (np.array([1.2, 1.6, Z0]), np.array([3.0, 2.4, Z0 + 0.8]))  # against the y = 2.5 wall
# In the converted frame (y up, floor y = 0, box from x = z = 0): (x, y, z) -> (x - X0, z - Z0, -y + Y1).
SOFA = (np.array([0.2, 0.0, 0.1]), np.array([2.0, 0.8, 0.9]))
CLASSES = {1: "floor", 2: "wall", 3: "ceiling", 4: "sofa", 5: "rug", 6: "indoor-plant"}
EXPECTED = {"floor": ("floor", "parquet"), "wall": ("wall", "plaster"), "ceiling": ("ceiling", "plaster"),
            "sofa": ("sofa", "fabric"), "rug": ("rug", "carpet"), "indoor-plant": ("plant", "foliage")}


def _box_quads(lo, hi, inward: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """8 corners and 6 quads of an axis-aligned box, wound outward (or inward for a room)."""
    c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], float)
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    return c, [q[::-1] for q in quads] if inward else quads


def _replica_faces() -> tuple[np.ndarray, list[tuple[list[int], int]]]:
    verts, faces = [], []

    def add(v, quads, ids):
        base = sum(len(x) for x in verts)
        verts.append(v)
        faces.extend(([base + i for i in q], oid) for q, oid in zip(quads, ids))

    v, quads = _box_quads([X0, Y0, Z0], [X1, Y1, Z0 + H], inward=True)
    # quad order: x-lo, x-hi, y-lo, y-hi, z-lo (floor), z-hi (ceiling)
    add(v, quads, [2, 2, 2, 2, 1, 3])
    v, quads = _box_quads(*SOFA_Z_UP)
    add(v, quads, [4] * 6)
    add(np.array([[5.0, -1.5, Z0 + 0.005], [6.5, -1.5, Z0 + 0.005], [6.5, 0.5, Z0 + 0.005],
                  [5.0, 0.5, Z0 + 0.005]]), [[0, 1, 2, 3]], [5])  # a flat rug: floor-like, not blocking
    v, quads = _box_quads([6.3, 1.8, Z0], [6.7, 2.2, Z0 + 1.1])
    add(v, quads, [6] * 6)
    return np.concatenate(verts), faces


@pytest.fixture()
def replica_dir(tmp_path):
    verts, faces = _replica_faces()
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nproperty int object_id\n"
              "end_header\n").encode()
    body = b"".join(struct.pack("<fffBBB", *p, 180, 170, 160) for p in verts)
    body += b"".join(struct.pack("<B4ii", 4, *q, oid) for q, oid in faces)
    (tmp_path / "room" / "habitat").mkdir(parents=True)
    (tmp_path / "room" / "habitat" / "mesh_semantic.ply").write_bytes(header + body)
    info = {"classes": [{"id": 10 + k, "name": n} for k, n in CLASSES.items()],
            "objects": [{"id": k, "class_id": 10 + k, "class_name": n} for k, n in CLASSES.items()]}
    (tmp_path / "room" / "habitat" / "info_semantic.json").write_text(json.dumps(info))
    return tmp_path / "room"


def test_replica_converts_to_one_node_per_object_with_mapped_categories(replica_dir, tmp_path):
    sidecar = convert_replica(replica_dir, tmp_path / "home.glb")
    got = {v["habitat_class"]: (v["category"], v["material"]) for v in sidecar["instances"].values()}
    assert got == EXPECTED
    home = load_scene(tmp_path / "home.glb", tmp_path / "home.json")
    assert not home.posed and len(home.parts) == 6
    sofa = next(p for p in home.parts if p.category == "sofa")
    assert np.allclose(sofa.mesh.bounds, np.stack(SOFA), atol=1e-5)
    floor = next(p for p in home.parts if p.category == "floor")
    assert np.allclose(floor.mesh.bounds, [[0, 0, 0], [6, 0, 5]], atol=1e-5)
    assert len(sofa.mesh.faces) == 12  # 6 quads fanned into 2 triangles each


def test_sampled_camera_sees_the_inserted_loudspeaker_and_categories_render(replica_dir, tmp_path):
    convert_replica(replica_dir, tmp_path / "home.glb")
    home = load_scene(tmp_path / "home.glb", tmp_path / "home.json")
    scene = sample_in_home(home, np.random.default_rng(3), "test", 1, INTR, "s0")
    frame = GLRenderer.shared(INTR).render(scene)
    cats = scene.categories()
    seen = {cats[i] for i in np.unique(frame.objects) if i}
    assert "loudspeaker" in seen and seen <= {"loudspeaker", "stand", *(c for c, _ in EXPECTED.values())}
    assert (frame.instance == 1).sum() > 0
    cam = scene.camera_position
    assert 0.4 <= cam[0] <= 5.6 and 0.4 <= cam[2] <= 4.6 and 1.4 <= cam[1] <= 1.75  # >= 0.4 m off the walls
    spk = scene.loudspeakers[0]
    assert 1.0 <= np.linalg.norm(spk.acoustic_center - cam) <= 4.0
    fp = spk.footprint()  # on the floor, >= 0.5 m clear of the sofa and the walls
    assert fp[:, 0].min() >= 0.5 - 1e-6 and fp[:, 1].min() >= 0.5 - 1e-6
    assert fp[:, 0].max() <= 5.5 + 1e-6 and fp[:, 1].max() <= 4.5 + 1e-6
    assert not np.any((fp[:, 0] < SOFA[1][0] + 0.45) & (fp[:, 1] < SOFA[1][2] + 0.45))
    points = backproject(frame.depth, INTR)
    world = points @ scene.world_from_camera()[:3, :3].T + cam
    for category, (lo, hi) in (("sofa", SOFA), ("floor", (np.array([0, -0.01, 0]), np.array([6, 0.01, 5])))):
        ids = [i for i, c in cats.items() if c == category]
        p = world[np.isin(frame.objects, ids)]
        assert len(p) == 0 or np.all((p >= lo - 0.02) & (p <= hi + 0.02)), category


def test_sampling_in_a_home_is_deterministic_and_varies_with_the_seed(replica_dir, tmp_path):
    convert_replica(replica_dir, tmp_path / "home.glb")
    home = load_scene(tmp_path / "home.glb", tmp_path / "home.json")
    a = [sample_in_home(home, np.random.default_rng(s), "test", 1, INTR) for s in (5, 5, 6)]
    assert np.allclose(a[0].camera_position, a[1].camera_position)
    assert a[0].loudspeakers[0].to_dict() == a[1].loudspeakers[0].to_dict()
    assert not np.allclose(a[0].camera_position, a[2].camera_position)


def test_hm3d_vertex_coloured_semantic_glb_converts(tmp_path):
    table = {1: ("C44A7D", "wall"), 2: ("1F77B4", "floor"), 3: ("2CA02C", "couch"), 4: ("FF7F0E", "curtain")}
    scene = trimesh.Scene()
    room = trimesh.creation.box(extents=[5.0, 3.0, 4.0])
    room.apply_translation([2.5, 1.5, 2.0])
    bottom = room.triangles_center[:, 1] < 1e-6
    parts = {2: room.submesh([np.flatnonzero(bottom)], append=True),
             1: room.submesh([np.flatnonzero(~bottom)], append=True)}
    couch = trimesh.creation.box(extents=[1.8, 0.8, 0.9])
    couch.apply_translation([1.2, 0.4, 0.6])
    curtain = trimesh.creation.box(extents=[1.5, 2.0, 0.05])
    curtain.apply_translation([3.5, 1.2, 3.9])
    parts.update({3: couch, 4: curtain})
    for oid, mesh in parts.items():
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile(
            [*bytes.fromhex(table[oid][0]), 255], (len(mesh.vertices), 1)).astype(np.uint8))
        scene.add_geometry(mesh, node_name=f"m{oid}", geom_name=f"m{oid}")
    scene.export(str(tmp_path / "x.semantic.glb"))
    (tmp_path / "x.semantic.txt").write_text("HM3D Semantic Annotations\n" + "".join(
        f'{oid},{hexc},"{name}",0\n' for oid, (hexc, name) in table.items()))
    sidecar = convert_hm3d(tmp_path / "x.semantic.glb", tmp_path / "x.semantic.txt", tmp_path / "home.glb")
    got = sorted((v["habitat_id"], v["category"], v["material"]) for v in sidecar["instances"].values())
    assert got == [(1, "wall", "plaster"), (2, "floor", "parquet"), (3, "sofa", "fabric"), (4, "curtain", "fabric")]
    home = load_scene(tmp_path / "home.glb", tmp_path / "home.json")
    couch_part = next(p for p in home.parts if p.category == "sofa")
    assert np.allclose(couch_part.mesh.bounds, [[0.3, 0.0, 0.15], [2.1, 0.8, 1.05]], atol=1e-5)


def test_class_table_and_bad_inputs(tmp_path):
    assert classify("wall-plug") == ("fixture", "plastic") and classify("wall-cabinet") == ("cabinet", "wood")
    assert classify("floor mat") == ("rug", "carpet") and classify("ceiling light") == ("lamp", "metal")
    assert classify("tv-screen") == ("tv", "plastic") and classify("armoire") == ("armoire", "default")
    with pytest.raises(ValueError, match="no habitat/mesh_semantic.ply"):
        convert_replica(tmp_path, tmp_path / "o.glb")
    lifted = trimesh.creation.box(extents=[4.0, 0.1, 4.0])
    lifted.apply_translation([2.0, 1.0, 2.0])  # its floor at y = 1: nowhere to stand a camera
    lifted.export(str(tmp_path / "lifted.glb"))
    (tmp_path / "lifted.json").write_text(json.dumps({"instances": {}}))
    with pytest.raises(ValueError, match="no free floor at y = 0"):
        load_scene(tmp_path / "lifted.glb", tmp_path / "lifted.json")
    (tmp_path / "t.txt").write_text("HM3D Semantic Annotations\n")
    with pytest.raises(ValueError, match="HEXCOLOR"):
        convert_hm3d(tmp_path / "none.glb", tmp_path / "t.txt", tmp_path / "o.glb")


def test_cli_scene_convert_then_generate_varies_camera_per_sample(replica_dir, tmp_path, capsys):
    from jaeger_ros.cli import main
    from jaeger_ros.data.dataset import generate, load_sample

    assert main(["scene", "convert", "--replica", str(replica_dir), "--out", str(tmp_path / "home.glb")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["objects"] == 6 and out["categories"]["wall"] == 1
    assert main(["scene", "convert", "--replica", str(tmp_path / "nowhere"), "--out", str(tmp_path / "h.glb")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    generate(tmp_path / "d", "test", 2, seed=1, tasks=["D"], resolution=(160, 90), progress=False,
             conditions="clean", world="mesh", scene=tmp_path / "home.glb")
    cams = []
    for k in range(2):
        meta = load_sample(tmp_path / "d" / "test" / f"task1_{k:05d}").metadata
        # 1-3 loudspeakers per sample, as in sampled rooms (the sidecar places none)
        assert 1 <= len(meta["boxes"]) == len(meta["scene"]["loudspeakers"]) <= 3
        assert meta["scene"]["source_file"] == str(tmp_path / "home.glb")
        cams.append(meta["scene"]["camera"]["position"])
    assert not np.allclose(cams[0], cams[1])


def test_hm3d_texture_coded_semantic_glb_takes_the_texel_under_each_face(tmp_path):
    """HM3D-semantics v0.2 paints object colours into a texture: one mesh, four colour
    quadrants, each object's faces mapped into its own quadrant (UVs spread inside it)."""
    from PIL import Image

    table = {1: ("C44A7D", "wall"), 2: ("1F77B4", "floor"), 3: ("2CA02C", "sofa"), 4: ("FF7F0E", "rug")}
    room = trimesh.creation.box(extents=[4.0, 2.5, 3.0])
    room.apply_translation([2.0, 1.25, 1.5])
    sofa = trimesh.creation.box(extents=[1.6, 0.7, 0.8])
    sofa.apply_translation([1.0, 0.35, 0.5])
    rug = trimesh.creation.box(extents=[1.0, 0.01, 1.0])
    rug.apply_translation([3.0, 0.005, 2.0])
    floor_faces = room.triangles_center[:, 1] < 1e-6
    owner = np.concatenate([np.where(floor_faces, 2, 1), np.full(len(sofa.faces), 3), np.full(len(rug.faces), 4)])
    mesh = trimesh.util.concatenate([room, sofa, rug])
    mesh.unmerge_vertices()  # vertex k*3+j belongs to face k alone
    quadrant = {1: (0.25, 0.75), 2: (0.75, 0.75), 3: (0.25, 0.25), 4: (0.75, 0.25)}  # uv centres
    spread = np.array([[-0.2, -0.2], [0.2, -0.15], [0.0, 0.2]])  # every vertex inside its quadrant
    uv = np.concatenate([np.asarray(quadrant[o]) + spread for o in owner])
    img = np.zeros((64, 64, 3), np.uint8)  # row 0 is v = 1 (top of the texture)
    for oid, (u, v) in quadrant.items():
        r0, c0 = int((1 - v) * 64) - 16, int(u * 64) - 16
        img[r0:r0 + 32, c0:c0 + 32] = list(bytes.fromhex(table[oid][0]))
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(img))
    mesh.export(str(tmp_path / "t.semantic.glb"))
    (tmp_path / "t.semantic.txt").write_text("HM3D Semantic Annotations\n" + "".join(
        f'{oid},{hexc},"{name}",1\n' for oid, (hexc, name) in table.items()))
    sidecar = convert_hm3d(tmp_path / "t.semantic.glb", tmp_path / "t.semantic.txt", tmp_path / "home.glb")
    assert sorted(v["habitat_id"] for v in sidecar["instances"].values()) == [1, 2, 3, 4]
    home = load_scene(tmp_path / "home.glb", tmp_path / "home.json")
    faces = {p.category: len(p.mesh.faces) for p in home.parts}
    assert faces == {"wall": 10, "floor": 2, "sofa": 12, "rug": 12}
    assert np.allclose(next(p for p in home.parts if p.category == "sofa").mesh.bounds,
                       [[0.2, 0.0, 0.1], [1.8, 0.7, 0.9]], atol=1e-5)


def test_people_talk_inside_an_imported_home(replica_dir, tmp_path):
    from sim_bridge.mesh.scene import talking_people

    if not talking_people("test"):
        pytest.skip("no catalogue people installed (sweethome3d-furniture)")
    convert_replica(replica_dir, tmp_path / "home.glb")
    home = load_scene(tmp_path / "home.glb", tmp_path / "home.json")
    scene = sample_in_home(home, np.random.default_rng(11), "test", 2, INTR, talkers="people")
    assert [s.category for s in scene.loudspeakers] == ["person", "person"]
    assert [b.label for b in scene.loudspeaker_boxes_camera()] == ["person", "person"]
    for s in scene.loudspeakers:  # standing on the floor, 1-4 m from the camera, inside the walls
        assert s.position[1] == 0.0 and 1.0 <= np.linalg.norm(s.acoustic_center - scene.camera_position) <= 4.0
        assert np.all((s.footprint() >= 0.5 - 1e-6) & (s.footprint() <= np.array([5.5, 4.5]) + 1e-6))
