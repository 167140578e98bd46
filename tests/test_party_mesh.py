"""The party scenario in the mesh world (ROS-free): a furnished mesh room with the robot in its
free middle, talkers that the GL render shows where their ground truth says they stand, the
view following the base as it turns, direct sound from each talker's side, and a stream of
turns. (The shared rotation of the sound into the turning camera is tested in test_party.py.)"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyrender")

from sim_bridge.live import LiveConfig, PartyWorld, make_world, planar  # noqa: E402
from sim_bridge.mesh import catalogue  # noqa: E402
from sim_bridge.mesh.render_gl import GLRenderer  # noqa: E402
from sim_bridge.mesh.scene import MeshScene  # noqa: E402
from sim_bridge.scene import rect_distance  # noqa: E402

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")

T0 = 1000.0
W, H = 320, 240


@pytest.fixture(scope="module")
def world():
    w = make_world(LiveConfig(scenario="party", world="mesh", width=W, height=H, seed=3))
    w.start(T0)
    return w


def chunks(world, seconds):
    return [world.next_chunk() for _ in range(int(round(seconds / (world.chunk / world.sample_rate))))]


def pixel_of(gt, k: int) -> tuple[float, float, float]:
    """(u, v, depth) of source k's acoustic centre by a pinhole camera at the truth's pose."""
    p = np.linalg.inv(gt.map_from_optical) @ np.append(gt.positions_map[k], 1.0)  # optical: x right, y down, z ahead
    fx = (W / 2.0) / np.tan(np.radians(45.0))  # hfov 90 deg, square pixels
    return W / 2.0 + fx * p[0] / p[2], H / 2.0 + fx * p[1] / p[2], p[2]


def instance_near(world, t: float, k: int, uv: tuple[float, float], radius: int = 3) -> float:
    """Share of the pixels within `radius` of uv that the GL render labels as talker k."""
    frame = GLRenderer.shared(world.intrinsics).render(world._posed(planar(world.view_pose(t))), with_rgb=False)
    u, v = int(round(uv[0])), int(round(uv[1]))
    patch = frame.instance[max(v - radius, 0):v + radius + 1, max(u - radius, 0):u + radius + 1]
    return float(np.mean(patch == k + 1))


def test_mesh_party_room_has_the_robot_in_the_middle_and_talkers_around_it(world):
    assert isinstance(world, PartyWorld)
    scene = world.scene(0).scene
    assert isinstance(scene, MeshScene) and len(scene.loudspeakers) == 3
    assert all(s.source.startswith("procedural:") for s in scene.loudspeakers)
    x, y = world.base.map_from_base()[:2, 3]
    robot = np.array([[-0.6, -0.6], [0.6, -0.6], [0.6, 0.6], [-0.6, 0.6]]) + [y, x]  # world x = map y
    assert all(rect_distance(o.footprint(), robot) > 0.15 for o in scene.objects)
    assert not any(o.category == "stand" for o in scene.objects)
    gt = world.ground_truth(T0)
    azimuths = [s.azimuth_deg for s in gt.sources]
    assert gt.in_view == [True, False, False] and abs(azimuths[0]) <= 25.0 and abs(azimuths[2]) >= 150.0
    assert len(gt.boxes) == 1 and gt.categories == ["loudspeaker"] * 3
    distances = [np.linalg.norm(p - gt.map_from_optical[:3, 3]) for p in gt.positions_map]
    assert all(1.0 <= d <= 2.7 for d in distances)


def test_each_talkers_direct_sound_arrives_from_where_it_stands(world):
    """The world-aligned impulse responses (ambisonic X, Y, Z = world -z, -x, +y, i.e. map -x, -y,
    +z) carry the direct sound from the talker's side: the intensity of their first millisecond."""
    gt = world.ground_truth(T0)
    for v in world.scene(0).voices:
        rir = np.fft.irfft(v.rir_fft, axis=1)[:, :v.rir_len]
        onset = int(np.flatnonzero(np.abs(rir[0]) > 0.5 * np.abs(rir[0]).max())[0])
        direct = rir[:, max(onset - 8, 0):onset + 40]  # ACN: W, Y, Z, X
        intensity = direct[0] @ direct[[3, 1, 2]].T
        d = gt.positions_map[v.loudspeaker] - gt.map_from_optical[:3, 3]
        expected = np.array([-d[0], -d[1], d[2]])
        cos = intensity @ expected / np.linalg.norm(intensity) / np.linalg.norm(expected)
        assert np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) < 12.0


def test_the_render_shows_the_talker_where_its_truth_projects_and_follows_the_turn(world):
    rgb, depth, _ = world.frame(T0)
    assert rgb.shape == (H, W, 3) and rgb.std() > 5 and np.mean(depth > 0) > 0.95
    gt = world.ground_truth(T0)
    u, v, z = pixel_of(gt, 0)
    assert 0 <= u < W and 0 <= v < H and instance_near(world, T0, 0, (u, v)) > 0.5
    # turn left until talker 1 (100-140 deg left at start) is in view: the image changes with it
    renders = world.renders
    t = world.next_chunk_time
    for _ in range(20):
        world.command(0.0, 1.5, t)
        chunks(world, 0.2)
        t = world.next_chunk_time - 0.05
        gt = world.ground_truth(t)
        if gt.in_view[1]:
            break
    assert gt.in_view[1] and not gt.in_view[0]
    world.command(0.0, 0.0, t)
    u, v, z = pixel_of(gt, 1)
    assert 0 <= u < W and 0 <= v < H and z > 0 and instance_near(world, t, 1, (u, v)) > 0.5
    world.frame(t)
    assert world.renders > renders


def test_chunks_stream_with_one_talker_at_a_time_and_silence_between_turns(world):
    start = world.next_chunk_time
    audio = np.concatenate([c for _, c in chunks(world, 16.0)], axis=1)
    assert audio.shape[0] == 4 and np.all(np.isfinite(audio))
    window = int(world.sample_rate * 0.25)
    talking, quiet = [], []
    for k in range(64):
        ends = [world.ground_truth(start + 0.25 * (k + j)) for j in (0, 1)]
        power = float(np.mean(audio[0, k * window:(k + 1) * window] ** 2))
        assert all(sum(s.active for s in gt.sources) <= 1 for gt in ends)  # turns: never two at once
        if all(any(s.active and s.active_for_s >= 0.5 for s in gt.sources) for gt in ends):
            talking.append(power)
        elif not any(s.active for gt in ends for s in gt.sources):
            quiet.append(power)
    assert talking and quiet and np.mean(talking) > 10.0 * np.mean(quiet)
