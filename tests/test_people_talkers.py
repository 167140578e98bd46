"""People who talk (issue 24): the mouth is the source, people render, ground truth names them.

Expected values come from anatomy bounds (Drillis & Contini: chin 0.870 H, eyes 0.936 H), from
the models' own boxes and from geometry (camera transforms), never from the code under test.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from jaeger_ros.core.geometry import Intrinsics, box_category, project, transform_points
from sim_bridge.acoustics import foa_rir
from sim_bridge.loudspeakers import make_shape
from sim_bridge.people import (NUM_PEOPLE, VoiceDirectivity, figure, make_person, person_ids, source_directivity,
                               talker_voices)
from sim_bridge.render import render
from sim_bridge.room import Room
from sim_bridge.scene import PlacedLoudspeaker, Scene, sample_scene

INTR = Intrinsics.from_hfov(320, 240, 90.0)


def _head_front(shape) -> float:
    """Front (+z) face of the largest skin box above the shoulders: the head."""
    h = max(p.center[1] + p.size[1] / 2 for p in shape.body_parts)
    heads = [p for p in shape.parts if p.texture == "skin" and p.kind == "box" and p.center[1] > 0.75 * h]
    head = max(heads, key=lambda p: p.size[0] * p.size[1] * p.size[2])
    return head.center[2] + head.size[2] / 2


@pytest.mark.parametrize("pid", range(0, NUM_PEOPLE, 7))
def test_the_acoustic_centre_is_the_mouth_between_chin_and_eyes(pid):
    fig, posture, gender = figure(pid)
    shape = make_person(pid)
    mouth = shape.acoustic_center_local
    top = max(p.center[1] + p.size[1] / 2 for p in shape.body_parts if p.role != "hair")  # crown of the head
    # standing: crown = H; seated: crown = seat + (1 - 0.53) H (hip on the seat)
    stand_top = fig.height if posture == "standing" else fig.seat + (1 - 0.53) * fig.height
    assert top == pytest.approx(stand_top, abs=1e-6)
    drop = top - mouth[1]  # below the crown, in units of standing height
    assert (1 - 0.936) * fig.height < drop < (1 - 0.870) * fig.height
    assert mouth[0] == pytest.approx(0.0, abs=1e-9)  # on the body's centre line
    assert mouth[2] == pytest.approx(_head_front(shape) + 0.004, abs=1e-6)  # on the face, lips 4 mm proud
    assert shape.category == "person" and gender in ("male", "female") and shape.gender == gender
    assert shape.style == posture


def test_people_are_split_and_every_split_has_both_genders_and_postures():
    seen = set()
    for split in ("train", "val", "test"):
        ids = person_ids(split)
        assert not seen & set(ids)
        seen |= set(ids)
        assert {figure(i)[2] for i in ids} == {"male", "female"}
    assert seen == set(range(NUM_PEOPLE))
    assert {figure(i)[1] for i in person_ids("train")} == {"standing", "sitting"}


def _scene_with(person_id: int, distance: float = 2.5) -> Scene:
    """An empty 6 x 3 x 6 m room, camera at 1.5 m looking along -z, a person facing it at
    `distance` m and a loudspeaker 1 m to its left."""
    room = Room((6.0, 3.0, 6.0), (0.3,) * 6)
    cam = np.array([3.0, 1.5, 5.0])
    person = PlacedLoudspeaker(make_person(person_id), [3.0, 0.0, cam[2] - distance], 0.0)
    speaker = PlacedLoudspeaker(make_shape(0), [2.0, 0.0, cam[2] - distance], 0.0)
    return Scene("people", room, [], [person, speaker], cam, 0.0, 0.0)


@pytest.mark.parametrize("pid", [next(i for i in range(NUM_PEOPLE) if figure(i)[1] == p) for p in ("standing", "sitting")])
def test_a_person_renders_in_rgb_and_depth_with_the_mouth_in_view(pid):
    scene = _scene_with(pid)
    frame = render(scene, INTR)
    alone = render(replace(scene, loudspeakers=[scene.loudspeakers[1]]), INTR)
    mask = frame.instance == 1
    assert mask.sum() > 1500  # a person 2.5 m away fills a good part of a 320x240 frame
    changed = np.any(frame.rgb != alone.rgb, axis=2) & mask
    assert changed.sum() >= 0.95 * mask.sum()  # the person is drawn where its instance says
    parts = scene.loudspeakers[0].shape.body_parts  # the person faces the camera 2.5 m away: its
    near = 2.5 - max(q.center[2] + q.size[2] / 2 for q in parts)  # planar depth spans its box
    far = 2.5 - min(q.center[2] - q.size[2] / 2 for q in parts)
    assert np.all((frame.depth[mask] > near - 0.005) & (frame.depth[mask] < far + 0.005))
    assert np.mean(frame.depth[mask] < alone.depth[mask] - 0.5) > 0.8  # well in front of what it hides
    # the mouth, by the camera model: its pixel is the person's, at its depth
    mouth_world = scene.loudspeakers[0].acoustic_center
    p = transform_points(scene.camera_from_world(), mouth_world)
    u, v, front = project(p, INTR)
    assert front
    ui, vi = int(round(u)), int(round(v))
    assert frame.instance[vi, ui] == 1
    assert frame.depth[vi, ui] == pytest.approx(-p[2], abs=0.02)
    # skin at the face: warm (red above blue) where the head is
    assert frame.rgb[vi - 2, ui, 0] > frame.rgb[vi - 2, ui, 2]
    # a seated person's stool is drawn but is not the person
    if figure(pid)[1] == "sitting":
        stool = (frame.instance == 0) & (alone.instance == 0) & np.any(frame.rgb != alone.rgb, axis=2)
        assert stool.sum() > 50


def test_ground_truth_boxes_name_the_person_and_enclose_it():
    scene = _scene_with(next(i for i in range(NUM_PEOPLE) if figure(i)[1] == "standing"))
    boxes = scene.loudspeaker_boxes_camera()
    assert [box_category(b) for b in boxes] == ["person", "loudspeaker"]
    assert [b.label for b in boxes] == ["person", "speaker"]
    fig = figure(scene.loudspeakers[0].shape.shape_id)[0]
    # camera at 1.5 m, pitch 0: the floor is 1.5 m below, the crown (+ hair) at H - 1.5 m
    assert boxes[0].center[1] - boxes[0].size[1] / 2 == pytest.approx(-1.5, abs=1e-6)
    assert fig.height - 1.5 < boxes[0].center[1] + boxes[0].size[1] / 2 < fig.height - 1.5 + 0.05
    assert scene.to_dict()["loudspeakers"][0]["category"] == "person"
    again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
    assert again.loudspeakers[0].category == "person"
    assert np.allclose(again.loudspeakers[0].acoustic_center, scene.loudspeakers[0].acoustic_center)


@pytest.mark.parametrize("mode, want", [("people", {"person"}), ("mixed", {"person", "loudspeaker"}),
                                        ("loudspeakers", {"loudspeaker"})])
def test_sampled_scenes_have_the_asked_talkers(mode, want):
    scene = sample_scene(np.random.default_rng(5), "test", 3, INTR, talkers=mode)
    assert {s.category for s in scene.loudspeakers} == want
    people = [s for s in scene.loudspeakers if s.category == "person"]
    for s in people:  # social distance: the mouth at least 1.2 m from the camera
        assert np.linalg.norm(s.acoustic_center - scene.camera_position) >= 1.2
    if len(people) >= 2:  # genders alternate, so a male + female pair can always be voiced
        assert {s.shape.gender for s in people} == {"male", "female"}


def test_loudspeaker_scenes_are_drawn_as_before_people_existed():
    a = sample_scene(np.random.default_rng(11), "train", 2, INTR)
    b = sample_scene(np.random.default_rng(11), "train", 2, INTR, talkers="loudspeakers")
    assert a.to_dict() == b.to_dict()
    with pytest.raises(ValueError, match="talkers"):
        sample_scene(np.random.default_rng(11), "train", 2, INTR, talkers="robots")


def test_a_person_talks_with_the_voice_gender_of_its_model():
    scene = _scene_with(next(i for i in range(NUM_PEOPLE) if figure(i)[2] == "female"))
    assert talker_voices(scene.loudspeakers, [0], ["male"]) == ([0], ["female"])
    assert talker_voices(scene.loudspeakers, [1], ["male"]) == ([1], ["male"])  # a loudspeaker plays any voice
    # dual: the female person must take the female voice, the loudspeaker the male one
    assert talker_voices(scene.loudspeakers, [0, 1], ["male", "female"]) == ([1, 0], ["male", "female"])


def _band_energy_db(x: np.ndarray, lo: float, hi: float, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x, 1 << 14)) ** 2
    f = np.fft.rfftfreq(1 << 14, 1.0 / sr)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum()))


def test_a_voice_is_quieter_behind_the_head_mostly_at_high_frequencies():
    """Direct sound only (no reflections): a talker facing the microphone vs facing away, 2 m apart.
    Expected front/back differences (Chu & Warnock 2002; Monson et al. 2012): a few dB at low
    frequencies, 6-10 dB above 2 kHz."""
    room = Room((8.0, 3.0, 8.0), (0.9,) * 6)
    src, mic = np.array([4.0, 1.6, 3.0]), np.array([4.0, 1.6, 5.0])
    rirs = {}
    for name, yaw in (("front", 0.0), ("back", 180.0)):
        source = PlacedLoudspeaker(make_person(0), [4.0, 0.0, 3.0], yaw)
        d = source_directivity(source)
        assert isinstance(d, VoiceDirectivity)
        rirs[name] = foa_rir(room, src, mic, np.eye(3), 16000, np.random.default_rng(0), max_order=0, tail=False,
                             directivity=d)[0]
    high = _band_energy_db(rirs["front"], 3000, 7000) - _band_energy_db(rirs["back"], 3000, 7000)
    low = _band_energy_db(rirs["front"], 100, 300) - _band_energy_db(rirs["back"], 100, 300)
    assert 6.0 <= high <= 10.0
    assert 0.0 <= low <= 3.0
    assert low < high
    # a loudspeaker keeps its own (box) directivity
    assert not isinstance(source_directivity(PlacedLoudspeaker(make_shape(0), [0, 0, 0], 0.0)), VoiceDirectivity)
