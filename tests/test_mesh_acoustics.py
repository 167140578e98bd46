"""Mesh-world acoustics on the real engines: SoundSpaces 2.0's rlr-audio-propagation (skipped
where it is not installed: it is optional, CC-BY-NC-4.0) and the pyroomacoustics fallback.
Expected values come from the SN3D encoding formula, the geometry and Eyring's formula."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import rotation_x, rotation_y, transform_points
from sim_bridge.acoustics import estimate_rt60
from sim_bridge.mesh import acoustics_rlr
from sim_bridge.mesh.acoustics_rlr import MeshAcoustics, engine
from sim_bridge.mesh.scene import MeshScene, Shell

FS = 16000
C = 343.0
needs_rlr = pytest.mark.skipif(not acoustics_rlr.rlr_available(), reason="rlr-audio-propagation not installed")


def _empty_room(size=(8.0, 4.5, 7.0), material="carpet", yaw=30.0, pitch=10.0, cam=(3.5, 1.5, 3.0)) -> MeshScene:
    shell = Shell("shoebox", [(0.0, 0.0, size[0], size[2])], size[1], material, material, material, 0, 0,
                  (0.8, 0.8, 0.8))
    return MeshScene("t", "test", shell, [], [], cam, yaw, pitch)


def _direct(ir: np.ndarray, distance: float) -> np.ndarray:
    """The 4 channels at the direct path's sample (distance / c after emission)."""
    k = int(round(distance / C * FS))
    w = ir[0, k - 2:k + 3]
    return ir[:, k - 2 + int(np.argmax(np.abs(w)))]


@needs_rlr
@pytest.mark.parametrize("name, cam_dir, channel, sign", [
    ("ahead", (0, 0, -1), "X", 1.0), ("left", (-1, 0, 0), "Y", 1.0),
    ("above", (0, 1, 0), "Z", 1.0), ("behind", (0, 0, 1), "X", -1.0)])
def test_rlr_source_lands_on_the_right_ambix_channel(name, cam_dir, channel, sign):
    """A source 2 m from a camera turned 30 deg and pitched 10 deg: SN3D says the dipole along
    the source's axis equals W (sign included) and the other two vanish; W = 1/r."""
    scene = _empty_room()
    r = 2.0
    src = transform_points(scene.world_from_camera(), r * np.asarray(cam_dir, float))
    ir = MeshAcoustics("rlr", ray_count=500).rirs(scene, [src])[0]
    v = _direct(ir, r)
    assert v[0] == pytest.approx(1.0 / r, rel=0.03)
    gains = {c: v[foa.ACN.index(c)] / v[0] for c in "XYZ"}
    for c in "XYZ":
        assert gains[c] == pytest.approx(sign if c == channel else 0.0, abs=0.02), (name, gains)


@needs_rlr
def test_rlr_direct_path_direction_matches_geometry():
    """>= 95 % of line-of-sight sources in a furnished room: the direct path's intensity
    (W times the dipoles over the arrival) points at the source within 1 degree."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    from jaeger_ros.core.geometry import Intrinsics
    from sim_bridge.mesh.scene import sample_mesh_scene

    pytest.importorskip("embreex")
    scene = sample_mesh_scene(np.random.default_rng(5), "val", 2, Intrinsics.from_hfov(224, 126), "t")
    parts = acoustics_rlr.scene_triangles(scene)
    verts, faces, off = [], [], 0
    for v, f, _ in parts:
        verts.append(v)
        faces.append(np.asarray(f) + off)
        off += len(v)
    caster = RayMeshIntersector(trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False))
    rng = np.random.default_rng(0)
    cam = scene.camera_position
    lo, hi = np.zeros(3), scene.shell.size
    sources = []
    while len(sources) < 40:
        p = rng.uniform(lo + [0.3, 0.3, 0.3], hi - [0.3, 0.6, 0.3])
        d = p - cam
        dist = np.linalg.norm(d)
        if not (1.0 <= dist <= 4.5 and scene.shell.contains_xz(p[[0, 2]])):
            continue
        hit = caster.intersects_location(cam[None], (d / dist)[None], multiple_hits=False)[0]
        if len(hit) and np.linalg.norm(hit[0] - cam) < dist + 0.05:
            continue  # something (or a wall) is in the way: not line of sight
        sources.append(p)
    irs = MeshAcoustics("rlr", ray_count=1000).rirs(scene, sources)
    errors = []
    cam_from_world = scene.camera_from_world()
    for p, ir in zip(sources, irs):
        truth = transform_points(cam_from_world, p)
        k = int(round(np.linalg.norm(truth) / C * FS))
        seg = ir[:, k - 3:k + 4]
        intensity = (seg[0][None] * seg[[foa.ACN.index(c) for c in "XYZ"]]).sum(axis=1)  # ambisonic X, Y, Z
        est = foa.ambisonic_to_camera(intensity)
        cos = est @ truth / (np.linalg.norm(est) * np.linalg.norm(truth))
        errors.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    errors = np.asarray(errors)
    assert np.mean(errors <= 1.0) >= 0.95, np.sort(errors)[-5:]


def _flat_material_db(tmp_path, alpha: float) -> str:
    db = {"materials": [{"name": "flat", "labels": ["flat"], "absorption": [125, alpha, 4000, alpha],
                         "scattering": [125, 0.5, 4000, 0.5], "transmission": [125, 0.0, 4000, 0.0],
                         "damping": [125, 0.0, 4000, 0.0], "density": 1000.0, "speed": 2000.0}]}
    path = tmp_path / "flat.json"
    path.write_text(json.dumps(db))
    return str(path)


@needs_rlr
def test_rlr_rt60_of_an_empty_room_follows_eyring(tmp_path):
    size, alpha = (6.0, 3.0, 5.0), 0.2
    scene = _empty_room(size, "flat", cam=(2.2, 1.4, 2.1))
    src = np.array([4.1, 1.2, 3.4])
    ir = MeshAcoustics("rlr", ray_count=6000, materials=_flat_material_db(tmp_path, alpha)).rirs(scene, [src])[0]
    v = np.prod(size)
    s = 2 * (size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
    eyring = 24.0 * np.log(10.0) * v / (C * -s * np.log(1.0 - alpha))  # 0.53 s
    assert estimate_rt60(ir[0], FS) == pytest.approx(eyring, rel=0.15)


def test_fallback_when_rlr_is_missing(monkeypatch):
    """Without rlr (its import made to fail, the one thing that cannot be uninstalled for a test)
    the same scene renders with pyroomacoustics, in the same AmbiX conventions."""
    monkeypatch.setitem(sys.modules, "rlr_audio_propagation", None)
    assert engine("rlr") == "pyroomacoustics"
    acoustics = MeshAcoustics("rlr")
    assert acoustics.describe()["engine"] == "pyroomacoustics"
    scene = _empty_room(yaw=0.0, pitch=0.0)
    for cam_dir, channel in (((0, 0, -1), "X"), ((-1, 0, 0), "Y"), ((0, 1, 0), "Z")):
        src = transform_points(scene.world_from_camera(), 1.5 * np.asarray(cam_dir, float))
        v = _direct(acoustics.rirs(scene, [src])[0], 1.5)
        assert v[0] == pytest.approx(1.0 / 1.5, rel=0.1)
        for c in "XYZ":
            assert v[foa.ACN.index(c)] / v[0] == pytest.approx(1.0 if c == channel else 0.0, abs=0.05)


def test_world_fixed_dipoles_are_turned_into_camera_axes():
    """to_ambix alone: a world-frame +x plane wave seen by a camera yawed +90 deg (looking along
    world -x) is straight ahead; N3D sqrt(3) dipoles become SN3D, W sqrt(4 pi) becomes 1."""
    wfc = rotation_y(90.0) @ rotation_x(0.0)
    native = np.array([[1.0], [0.0], [0.0], [-np.sqrt(3.0)]]) / np.sqrt(4 * np.pi)  # ACN: W, y, z, x
    out = acoustics_rlr.to_ambix(native, wfc, "rlr")[:, 0]
    np.testing.assert_allclose(out, [1.0, 0.0, 0.0, 1.0], atol=1e-12)


def test_directivity_on_the_direct_sound_and_power_averaged_later():
    """A loudspeaker facing away from the camera: its direct sound keeps the omni low band
    (exponent 0) and falls to the 0.1 floor in the top band; the later sound is scaled by the
    RMS gain over the sphere, sqrt(0.01 x0 + (1 - x0^7) / 7) with x0 = 0.1^(1/3) (cos theta is
    uniform on a sphere, so x = (1 + cos) / 2 is uniform on [0, 1])."""
    from sim_bridge.acoustics import Directivity
    from sim_bridge.mesh.world import apply_directivity

    src, rcv = np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 3.43])  # 10 ms apart
    d = Directivity(facing=np.array([0.0, 0.0, -1.0]))                 # away from the receiver
    rir = np.zeros((4, 8192))
    rir[:, 160] = 1.0                                                  # the direct sound
    rir[:, 3000] = 1.0                                                 # a late reflection
    out = apply_directivity(rir, src, rcv, d, FS)
    freqs = np.fft.rfftfreq(1024, 1.0 / FS)
    direct = np.abs(np.fft.rfft(out[0, :1024]))
    late = np.abs(np.fft.rfft(out[0, 3000 - 512:3000 + 512]))
    x0 = 0.1 ** (1.0 / 3.0)
    rms_top = np.sqrt(0.01 * x0 + (1.0 - x0 ** 7) / 7.0)
    low, top = (freqs > 100) & (freqs < 300), (freqs > 6000) & (freqs < 7500)
    assert np.median(direct[low]) == pytest.approx(1.0, abs=0.03)
    assert np.median(direct[top]) == pytest.approx(0.1, abs=0.01)
    assert np.median(late[low]) == pytest.approx(1.0, abs=0.03)
    assert np.median(late[top]) == pytest.approx(rms_top, rel=0.05)


@needs_rlr
def test_rlr_in_a_worker_process_gives_the_same_sound_and_says_why_it_failed(tmp_path):
    """worker_nice runs rlr in a process of its own (it holds the GIL while it simulates): the
    same direct sound as in this process, at the source's geometric direction, from a process
    whose niceness is the one asked for; a job that fails there raises here with the reason,
    and the worker goes on."""
    import subprocess
    room = _empty_room()
    src = transform_points(room.world_from_camera(), np.array([1.0, 0.3, -2.5]))
    here = MeshAcoustics("rlr").rirs(room, [src])[0]
    away = MeshAcoustics("rlr", worker_nice=7)
    try:
        there = away.rirs(room, [src])[0]
        worker = acoustics_rlr._WORKERS[7]._proc.pid
        nice = int(subprocess.run(["ps", "-o", "ni=", "-p", str(worker)], capture_output=True, text=True).stdout)
        distance = float(np.linalg.norm(np.array([1.0, 0.3, -2.5])))
        a, b = _direct(here, distance), _direct(there, distance)
        assert np.allclose(a, b, rtol=1e-3, atol=1e-6)
        assert nice == min(int(subprocess.run(["ps", "-o", "ni=", "-p", str(__import__("os").getpid())],
                                              capture_output=True, text=True).stdout) + 7, 19)
        bad = MeshAcoustics("rlr", worker_nice=7, materials=tmp_path / "missing.json")
        with pytest.raises(RuntimeError, match="rlr worker"):
            bad.rirs(room, [src])
        assert np.allclose(_direct(away.rirs(room, [src])[0], distance), a, rtol=1e-3, atol=1e-6)
    finally:
        away.close()
    assert 7 not in acoustics_rlr._WORKERS
