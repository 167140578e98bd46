"""Talkers out of view in the live world (LiveConfig.out_of_view): the robot looks away, so the
talker is beside or behind it; the truth follows the geometry, the microphone turns with the
camera, and every other scene of the stream stays what it was."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from jaeger_ros.classical import doa_robust
from jaeger_ros.core.geometry import great_circle_deg
from sim_bridge.live import LiveConfig, LiveWorld

SMALL = dict(width=160, height=120, hfov_deg=90.0)


def _camera_direction(scene, point: np.ndarray) -> np.ndarray:
    """Unit direction of a world point in the camera frame (x right, y up, -z ahead), from the
    camera's yaw about world +y and pitch about its x axis, built here by hand."""
    yaw, pitch = np.radians(scene.camera_yaw_deg), np.radians(scene.camera_pitch_deg)
    ry = np.array([[np.cos(yaw), 0.0, np.sin(yaw)], [0.0, 1.0, 0.0], [-np.sin(yaw), 0.0, np.cos(yaw)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), -np.sin(pitch)], [0.0, np.sin(pitch), np.cos(pitch)]])
    v = (ry @ rx).T @ (np.asarray(point, float) - np.asarray(scene.camera_position, float))
    return v / np.linalg.norm(v)


def _talking(world: LiveWorld, seconds: float) -> tuple[np.ndarray, object]:
    """`seconds` of the stream from its start and the ground truth at its end."""
    chunks = [world.next_chunk()[1] for _ in range(int(round(seconds / world.config.chunk_s)))]
    return np.concatenate(chunks, axis=1), world.ground_truth(world.next_chunk_time - 1e-3)


@pytest.mark.parametrize("seed", [1, 4])
def test_a_scene_that_looks_away_has_its_talker_outside_the_image_where_geometry_and_sound_put_it(seed):
    ahead = LiveWorld(LiveConfig(seed=seed, conditions="clean", **SMALL))
    away = LiveWorld(LiveConfig(seed=seed, conditions="clean", out_of_view=1.0, **SMALL))
    try:
        _check_looks_away(ahead, away)
    finally:
        for w in (ahead, away):
            w.close()


def _check_looks_away(ahead: LiveWorld, away: LiveWorld) -> None:
    for w in (ahead, away):
        w.start(0.0)
    before, after = ahead.scene(0).scene, away.scene(0).scene
    # the same room and talkers; the camera stands where it stood, at the same pitch, turned 90-180 deg
    np.testing.assert_allclose(after.camera_position, before.camera_position)
    assert after.camera_pitch_deg == before.camera_pitch_deg
    turn = (after.camera_yaw_deg - before.camera_yaw_deg + 180.0) % 360.0 - 180.0
    assert 90.0 <= abs(turn) <= 180.0
    audio, gt = _talking(away, 3.0)
    _, gt_ahead = _talking(ahead, 3.0)
    assert gt_ahead.in_view == [True] and gt_ahead.sources[0].label  # looking at the talker: in view, labelled
    assert gt.in_view == [False] and gt.boxes == []
    src = gt.sources[0]
    voice = away.scene(0).voices[0]
    assert voice.intervals or voice.active_since is not None  # it talked in the clip
    assert src.loudspeaker == -1 and src.label == ""
    speaker = after.loudspeakers[voice.loudspeaker]
    box_centre = np.asarray(after.loudspeaker_boxes_camera()[voice.loudspeaker].center)
    np.testing.assert_allclose(src.direction, box_centre / np.linalg.norm(box_centre))  # labels: the box centre
    expected = _camera_direction(after, speaker.acoustic_center)  # where it sounds from, by hand
    az, el = np.degrees(np.arctan2(-expected[0], -expected[2])), np.degrees(np.arcsin(expected[1]))
    assert abs(az) > 45.0 + 1.0  # beyond the edge of the 90-degree image: beside or behind
    assert great_circle_deg(src.azimuth_deg, src.elevation_deg, az, el) < 6.0  # the driver sits in its box
    # the microphone turned with the camera: the sound comes from the truth's direction
    heard = doa_robust.estimate_doa(audio)
    assert great_circle_deg(heard.azimuth_deg, heard.elevation_deg, src.azimuth_deg, src.elevation_deg) < 10.0


def _scene_hashes(config: LiveConfig, scenes: int) -> list[str]:
    """Per scene: a hash of its audio chunks, frames and ground truth."""
    world = LiveWorld(config)
    world.start(100.0)
    hashes = [hashlib.sha256() for _ in range(scenes)]
    per_scene = world.scene_samples // world.chunk
    for j in range(scenes * per_scene):
        t, chunk = world.next_chunk()
        h = hashes[world.scene_index(t)]
        h.update(chunk.tobytes())
        if j % 5 == 0:
            rgb, depth, _ = world.frame(t)
            gt = world.ground_truth(t)
            h.update(rgb.tobytes() + np.ascontiguousarray(depth).tobytes())
            h.update(repr((gt.boxes, [(s.loudspeaker, s.label, s.azimuth_deg) for s in gt.sources], gt.in_view)).encode())
    world.close()
    return [h.hexdigest() for h in hashes]


def test_scenes_that_look_ahead_are_the_default_worlds_scenes_and_a_seed_repeats_its_stream():
    base = dict(seed=0, scene_period_s=0.5, **SMALL)
    default = _scene_hashes(LiveConfig(**base), 6)
    mixed = _scene_hashes(LiveConfig(out_of_view=0.5, **base), 6)
    again = _scene_hashes(LiveConfig(out_of_view=0.5, **base), 6)
    assert mixed == again
    world = LiveWorld(LiveConfig(out_of_view=0.5, **base))
    turned = [world.scene(k).order == [] for k in range(6)]  # no talker in the image
    world.close()
    assert 0 < sum(turned) < 6, turned  # this seed turns some scenes, not all
    for k in range(6):
        assert (mixed[k] == default[k]) != turned[k], k


def test_out_of_view_is_a_share_and_not_for_the_party():
    with pytest.raises(ValueError, match="out_of_view"):
        LiveConfig(out_of_view=1.5)
    with pytest.raises(ValueError, match="out_of_view"):
        LiveConfig(scenario="party", out_of_view=0.3)
    assert LiveConfig().out_of_view == 0.0
