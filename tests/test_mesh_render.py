"""The GL renderer of the mesh world against geometry computed without it: depth equals
trimesh ray-cast depth and instance masks equal the ray-cast owner of each pixel and lie in
the scene's loudspeaker boxes. Skipped where pyrender or the furniture package is missing."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyrender")
pytest.importorskip("embreex")  # trimesh's Embree ray caster (the pure-numpy one needs tens of GB here)

from jaeger_ros.core.geometry import Intrinsics, backproject, transform_points  # noqa: E402
from sim_bridge.mesh import catalogue  # noqa: E402

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")

INTR = Intrinsics.from_hfov(224, 126, 90.0)


@pytest.fixture(scope="module")
def scene_and_frame():
    from sim_bridge.mesh.render_gl import render
    from sim_bridge.mesh.scene import sample_mesh_scene

    scene = sample_mesh_scene(np.random.default_rng(11), "train", 3, INTR, "test")
    return scene, render(scene, INTR)


def _raycast(scene) -> tuple[np.ndarray, np.ndarray]:
    """Planar depth and owning instance id per pixel by casting the project's pixel rays
    (Intrinsics.pixel_rays: through u - cx, z = -1) against every triangle of the scene."""
    import trimesh

    from sim_bridge.mesh.acoustics_rlr import scene_triangles
    from sim_bridge.mesh.scene import shell_instance_ids

    from sim_bridge.mesh.render_gl import loudspeaker_local_meshes, object_local_meshes

    ids = [i + 1 for i in range(len(scene.loudspeakers))]
    shell = shell_instance_ids(scene)
    verts, faces, owner, offset = [], [], [], 0
    # scene_triangles lists the shell (floor, wall, ceiling), the objects, then the loudspeakers.
    owners = [shell["floor"], shell["wall"], shell["ceiling"]]
    for obj in scene.objects:
        owners += [obj.instance_id] * len(object_local_meshes(obj))
    for i, spk in enumerate(scene.loudspeakers):
        owners += [ids[i]] * len(loudspeaker_local_meshes(spk.source))
    parts = scene_triangles(scene)
    assert len(parts) == len(owners)
    for (v, f, _), who in zip(parts, owners):
        verts.append(v)
        faces.append(np.asarray(f) + offset)
        owner.append(np.full(len(f), who))
        offset += len(v)
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    mesh = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)
    owner = np.concatenate(owner)
    wfc = scene.world_from_camera()
    rays_cam = INTR.pixel_rays().reshape(-1, 3)
    dirs = rays_cam @ wfc[:3, :3].T
    origins = np.repeat(wfc[:3, 3][None], len(dirs), axis=0)
    locs, ray_idx, tri_idx = RayMeshIntersector(mesh).intersects_location(origins, dirs, multiple_hits=False)
    depth = np.full(len(dirs), np.inf)
    who = np.zeros(len(dirs), dtype=int)
    # pixel_rays have camera z = -1, so the ray parameter of a hit is its planar depth
    depth[ray_idx] = np.einsum("ij,ij->i", locs - origins[ray_idx], dirs[ray_idx]) / np.einsum(
        "ij,ij->i", dirs[ray_idx], dirs[ray_idx])
    who[ray_idx] = owner[tri_idx]
    return depth.reshape(INTR.height, INTR.width), who.reshape(INTR.height, INTR.width)


def test_depth_and_instances_match_ray_casting(scene_and_frame):
    scene, frame = scene_and_frame
    depth, who = _raycast(scene)
    assert np.all(np.isfinite(depth)), "a closed room: every pixel ray hits something"
    close = np.abs(frame.depth - depth) <= 0.01
    assert close.mean() >= 0.99, f"depth within 1 cm at only {close.mean():.2%} of pixels"
    agree = frame.objects == who
    assert agree.mean() >= 0.99, f"instance ids agree at only {agree.mean():.2%} of pixels"
    spk = who <= len(scene.loudspeakers)
    np.testing.assert_array_equal(frame.instance[agree & spk], who[agree & spk])


def test_instance_masks_lie_in_the_loudspeaker_boxes(scene_and_frame):
    scene, frame = scene_and_frame
    points = backproject(frame.depth, INTR)
    for i, box in enumerate(scene.loudspeaker_boxes_camera()):
        mask = frame.instance == i + 1
        assert mask.sum() > 0, f"loudspeaker {i} is not visible"
        p = points[mask]
        inside = np.all((p >= box.min - 0.01) & (p <= box.max + 0.01), axis=1)
        assert inside.mean() >= 0.99, f"loudspeaker {i}: {inside.mean():.2%} of its pixels in its box"


def test_depth_is_planar_along_minus_z(scene_and_frame):
    """The pixel at the principal point sees the point straight ahead at the rendered depth."""
    scene, frame = scene_and_frame
    v, u = int(INTR.cy), int(INTR.cx)
    d = float(frame.depth[v, u])
    world = transform_points(scene.world_from_camera(), np.array([0.0, 0.0, -d]))
    cam = transform_points(scene.camera_from_world(), world)
    np.testing.assert_allclose(cam, [0.0, 0.0, -d], atol=1e-9)
    assert 0.3 < d < 15.0


def test_alone_pixels_match_ray_casting_each_loudspeaker_alone(scene_and_frame):
    """visibility()'s pixels-alone counts (one pass for loudspeakers whose screen boxes do not
    overlap, one pass each otherwise) against ray casting each loudspeaker with nothing else in
    the scene, and exactly against a GL pass of each alone."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    from sim_bridge.mesh.render_gl import GLRenderer, loudspeaker_local_meshes

    scene, _ = scene_and_frame
    renderer = GLRenderer.shared(INTR)
    _, alone = renderer.visibility(scene)
    wfc = scene.world_from_camera()
    dirs = INTR.pixel_rays().reshape(-1, 3) @ wfc[:3, :3].T
    origins = np.repeat(wfc[:3, 3][None], len(dirs), axis=0)
    with renderer._gl():
        s, ids = renderer._scene(scene)
        for i, spk in enumerate(scene.loudspeakers):
            parts = [p.copy().apply_transform(spk.world_from_local()) for p in loudspeaker_local_meshes(spk.source)]
            hits = RayMeshIntersector(trimesh.util.concatenate(parts)).intersects_any(origins, dirs)
            assert alone[i] == pytest.approx(int(hits.sum()), rel=0.02), (i, alone[i], int(hits.sum()))
            solo = renderer._seg(s, {node: iid for node, iid in ids.items() if iid == i + 1})[0]
            assert alone[i] == int(np.sum(solo == i + 1))


def test_rendering_is_repeatable():
    """The same scene twice (new pyrender scenes and nodes each time, so a new set order) and
    after the sampler's visibility pass (whose segmentation render() reuses) gives the same
    bytes: the shell's equally distant meshes and the lights are drawn in a fixed order."""
    from sim_bridge.mesh.render_gl import GLRenderer
    from sim_bridge.mesh.scene import sample_mesh_scene

    renderer = GLRenderer.shared(INTR)
    for seed in (57, 58, 59):
        scene = sample_mesh_scene(np.random.default_rng(seed), "test", 3, INTR, "repeat")  # ends in visibility()
        frames = [renderer.render(scene), renderer.render(scene)]
        renderer.visibility(scene)
        frames.append(renderer.render(scene))
        for f in frames[1:]:
            for name in ("rgb", "depth", "objects", "instance"):
                assert getattr(f, name).tobytes() == getattr(frames[0], name).tobytes(), (seed, name)
