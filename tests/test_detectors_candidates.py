"""Candidates with categories: people from the person detectors, loudspeakers from depth blobs,
on hand-made boxes, the astronaut photo and simulator renders (which hold no people)."""
from __future__ import annotations

import numpy as np
import pytest

from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d
from jaeger_ros.detectors.candidates import BLOB_SCORE, LOUDSPEAKER, CandidateDetector, combine
from jaeger_ros.detectors.people import PERSON


@pytest.fixture(scope="module")
def detector():
    """The blob fallback (no loudspeaker classifier): categories without learned scores."""
    det = CandidateDetector(loudspeakers=None)
    yield det
    det.people.close()


def test_combine_drops_blobs_on_people_and_orders_left_to_right():
    person = Box3D([0.0, -0.3, -2.5], [0.5, 1.2, 0.4], label=PERSON, score=0.9)   # a seated person, straight ahead
    on_person = Box3D([0.05, -0.5, -2.6], [0.5, 0.8, 0.45])                         # the blob of her legs and chair
    left = Box3D([-1.5, -0.6, -3.0], [0.3, 0.9, 0.3])                                # x < 0: left of the camera
    right = Box3D([1.2, -0.6, -2.0], [0.3, 0.9, 0.3])
    found = combine([person], [right, on_person, left])
    assert [c.category for c in found] == [LOUDSPEAKER, PERSON, LOUDSPEAKER]
    assert found[0].box.center[0] == -1.5 and found[2].box.center[0] == 1.2
    assert found[1].score == 0.9 and found[0].score == BLOB_SCORE and found[0].box.label == LOUDSPEAKER


def test_a_person_in_a_photo_is_a_person_candidate(detector):
    """The astronaut photo with a hand-made depth image (her at 1.5 m, a wall at 4 m, no floor
    in view, so no blobs): one person candidate."""
    from skimage import data
    intr = Intrinsics.from_hfov(512, 512, 60.0)
    depth = np.full((512, 512), 4.0, np.float32)
    depth[10:, 30:360] = 1.5
    found = detector(data.astronaut(), depth, intr)
    people = [c for c in found if c.category == PERSON]
    assert len(people) >= 1 and people[0].box.max[2] == pytest.approx(-1.5, abs=0.02)


def test_rendered_rooms_without_people(detector):
    """Six test-split renders of the procedural world (loudspeakers, furniture, plants, lamps,
    no people): no person candidate, every depth blob becomes a loudspeaker candidate unchanged,
    and the true loudspeakers are among them (the blobs' own recall, 10-11 of 12 here, is
    tests/test_candidates.py's subject)."""
    from jaeger_ros.classical.candidates import boxes_from_depth
    from sim_bridge.render import render
    from sim_bridge.scene import sample_scene
    intr = Intrinsics.from_hfov(640, 480)
    found_true = n_true = 0
    for seed in range(300, 306):
        scene = sample_scene(np.random.default_rng(seed), "test", 2, intr)
        frame = render(scene, intr)
        found = detector(frame.rgb, frame.depth, intr)
        assert all(c.category == LOUDSPEAKER for c in found)
        blobs = boxes_from_depth(frame.depth, intr)
        assert sorted(tuple(c.box.center.round(6)) for c in found) == sorted(tuple(b.center.round(6)) for b in blobs)
        truth = scene.loudspeaker_boxes_camera()
        n_true += len(truth)
        found_true += sum(max([box_iou_3d(t, c.box) for c in found], default=0.0) > 0.25 for t in truth)
    assert found_true / n_true >= 0.8
