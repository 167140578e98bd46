"""Nearest-box speaker matching: ray-box geometry, left-to-right labels, honest confidence."""
import numpy as np
import pytest

from jaeger_ros.classical.matching import angle_to_box, match_speaker, rescored
from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D, direction_from_azel


def _boxes_given_unsorted() -> list[Box3D]:
    # given in the order centre, right, left: labels must come from azimuth, not list order
    return [Box3D([0.0, -1.0, -3.0], [0.35, 0.7, 0.35]), Box3D([1.2, -1.0, -3.2], [0.35, 0.7, 0.35]),
            Box3D([-1.1, -0.9, -2.6], [0.35, 0.7, 0.35])]


def test_rays_towards_each_box_pick_it_with_its_left_center_right_label():
    boxes = _boxes_given_unsorted()
    for i, label in enumerate(["Center", "Right", "Left"]):
        for offset in ([0.0, 0.0, 0.0], [0.1, 0.25, 0.0], [-0.12, -0.2, 0.1]):   # anywhere on the box
            m = match_speaker(boxes[i].center + np.array(offset), boxes)
            assert (m.index, m.label) == (i, label)
            assert m.angles_deg[i] == 0.0 and m.confidence > 0.95


def test_angle_to_box_is_zero_inside_and_grows_outside():
    box = Box3D([0.0, -1.0, -3.0], [0.4, 0.8, 0.4])
    corner_ray = np.array([0.19, -0.61, -2.8])              # just inside a corner of the front face
    assert angle_to_box(corner_ray, box) == 0.0
    angles = [angle_to_box(direction_from_azel(az, -18.4), box) for az in (10, 20, 40)]
    assert 0.0 < angles[0] < angles[1] < angles[2]
    assert angle_to_box(-box.center, box) == pytest.approx(180.0)   # behind the camera


def test_confidence_falls_as_the_direction_becomes_ambiguous():
    boxes = _boxes_given_unsorted()[:2]
    a, b = boxes[0].center / np.linalg.norm(boxes[0].center), boxes[1].center / np.linalg.norm(boxes[1].center)
    confidences = [match_speaker((1 - w) * a + w * b, boxes).confidence for w in (0.0, 0.3, 0.45, 0.5)]
    assert confidences[0] > confidences[1] > confidences[2] >= confidences[3]
    assert confidences[3] == pytest.approx(0.5, abs=0.05)   # half way: a coin toss, and says so


def test_every_candidate_count_gets_a_positional_label():
    boxes = _boxes_given_unsorted()
    assert match_speaker(boxes[0].center, boxes[:1]).label == "Center"
    # five boxes in a row, given right to left: the label follows azimuth, not the list order
    row = [Box3D([x, -1.0, -3.0], [0.3, 0.7, 0.3]) for x in (1.6, 0.8, 0.0, -0.8, -1.6)]
    labels = [match_speaker(b.center, row).label for b in row]
    assert labels == ["Right", "Right 2", "Center", "Left 2", "Left"]
    four = row[:4]
    assert [match_speaker(b.center, four).rank for b in four] == [3, 2, 1, 0]
    assert [match_speaker(b.center, four).label for b in four] == ["Right", "Right 2", "Left 2", "Left"]


def test_labels_follow_azimuth_where_centre_x_disagrees():
    # near box 0.5 m left at 1 m (27 deg left), far box 0.8 m left at 3 m (15 deg left):
    # x calls the far one leftmost, the release's azimuth order the near one
    near, far = Box3D([-0.5, -1.0, -1.0], [0.3, 0.7, 0.3]), Box3D([-0.8, -1.0, -3.0], [0.3, 0.7, 0.3])
    for boxes in ([near, far], [far, near]):
        got = {id(b): match_speaker(b.center, boxes) for b in boxes}
        assert (got[id(near)].rank, got[id(near)].label) == (0, "Left")
        assert (got[id(far)].rank, got[id(far)].label) == (1, "Right")


def test_of_two_boxes_the_ray_passes_through_the_one_it_passes_nearest_the_centre_wins():
    # a person 1.2 m away spans ~30 deg; the ray through a far loudspeaker's centre also crosses her
    near = Box3D([-0.3, -0.5, -1.2], [0.7, 1.7, 0.7])
    far = Box3D([0.0, -0.3, -3.0], [0.3, 0.5, 0.3])
    for boxes in ([near, far], [far, near]):
        m = match_speaker(far.center, boxes)
        assert m.angles_deg == (0.0, 0.0) and boxes[m.index] is far


def test_a_person_talks_from_her_head_not_from_the_body_a_loudspeaker_is_seen_through():
    """A standing person 2 m ahead (box y -1.45 .. 0.25, camera frame y up) and a loudspeaker 3.5 m
    ahead on the floor behind her: the ray to the loudspeaker crosses her box at y = -1.0 * 2/3.5
    = -0.57 m, the torso. Her voice comes from her head, the top 0.3 m (y -0.05 .. 0.25, centre
    y 0.1 at z -2: elevation +2.9 deg against the loudspeaker's -15.9 deg), so that ray is the
    loudspeaker's, surely; a ray to her mouth (y 0.12) is hers."""
    person = Box3D([0.0, -0.6, -2.0], [0.6, 1.7, 0.5], label="person", extra={"category": "person"})
    speaker = Box3D([0.0, -1.0, -3.5], [0.4, 0.5, 0.4])
    for boxes in ([person, speaker], [speaker, person]):
        m = match_speaker(speaker.center, boxes)
        assert boxes[m.index] is speaker and m.confidence > 0.99
        assert angle_to_box(speaker.center, person) == pytest.approx(
            np.degrees(np.arctan2(0.1, 2.0) - np.arctan2(-1.0, 3.5)), abs=0.01)
        m = match_speaker(np.array([0.0, 0.12, -2.0]), boxes)
        assert boxes[m.index] is person and m.angles_deg[m.index] == 0.0
    # the same box as a loudspeaker-sized blob of unknown category keeps its whole extent
    assert angle_to_box(speaker.center, Box3D(person.center, person.size)) == 0.0


def test_bad_input_is_rejected():
    boxes = _boxes_given_unsorted()
    with pytest.raises(ValueError):
        match_speaker(boxes[0].center, [])
    with pytest.raises(ValueError):
        match_speaker(np.zeros(3), boxes)
    with pytest.raises(ValueError):
        match_speaker(np.array([np.nan, 0.0, -1.0]), boxes)


def test_a_held_box_is_scored_by_how_well_the_direction_fits_it():
    boxes = _boxes_given_unsorted()
    at_right = boxes[1].center
    free = match_speaker(at_right, boxes)
    held = rescored(free, boxes, 2)   # the left box, held while the DoA points right
    assert (held.index, held.label) == (2, "Left") and held.angles_deg == free.angles_deg
    assert held.confidence < 1e-3 < free.confidence   # the direction does not support it, and says so
    # the softmax over angles with a 3 deg temperature, written out from the box centres
    unit = [b.center / np.linalg.norm(b.center) for b in boxes]
    deg = [np.degrees(np.arccos(np.clip(u @ unit[1], -1.0, 1.0))) for u in unit]   # the right box: 0
    expected = np.exp(-deg[2] / 3.0) / sum(np.exp(-a / 3.0) for a in deg)
    assert held.confidence == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        rescored(free, boxes, 3)
    with pytest.raises(ValueError):
        rescored(free, boxes[:2], 1)   # angles measured for three boxes


def test_weak_directions_keep_the_box_of_the_last_confident_one():
    """The streaming estimator's match (pipeline.frame): a DoA below HOLD_CONFIDENCE does not move
    the match off the box a confident DoA chose, unless the hold expired, the voice changed or the
    box is gone; a confident DoA moves it at once."""
    from jaeger_ros.pipeline import frame
    est = frame.ClassicalEstimator(candidates="depth", vad=False)
    boxes = _boxes_given_unsorted()
    left, right = boxes[2].center, boxes[1].center
    assert est._match(left, 0.95, boxes, 10.0, "voice_0").label == "Left"
    weak = est._match(right, 0.4, boxes, 11.0, "voice_0")
    assert weak.label == "Left" and weak.confidence < 1e-3
    assert est._match(right, 0.4, boxes, 11.0, "").label == "Left"            # an unknown voice is no other voice
    assert est._match(right, 0.4, boxes, 11.0, "voice_1").label == "Right"    # another voice: no hold
    assert est._match(right, 0.4, boxes, 10.0 + frame.HOLD_S + 0.1, "voice_0").label == "Right"  # expired
    assert est._match(right, 0.4, boxes, 9.0, "voice_0").label == "Right"     # before the sure match: a restart
    moved = [boxes[0], boxes[1], Box3D(boxes[2].center + [0.0, 0.0, -0.5], boxes[2].size)]  # the left box 0.5 m back
    assert est._match(right, 0.4, moved, 11.0, "voice_0").label == "Right"
    assert est._match(right, 0.9, boxes, 12.0, "voice_0").label == "Right"     # confident: moves at once
    assert est._match(left, 0.4, boxes, 12.5, "voice_0").label == "Right"      # ... and is held from there
    # a confident DoA half way between two boxes, or 40 deg left of every box, is not a sure match either
    halfway = boxes[0].center / np.linalg.norm(boxes[0].center) + boxes[2].center / np.linalg.norm(boxes[2].center)
    assert est._match(halfway, 0.99, boxes, 13.0, "voice_0").label == "Right"
    far_left = direction_from_azel(answers.box_azimuth_deg(boxes[2]) + 40.0, -18.0)
    assert est._match(far_left, 0.99, boxes, 13.0, "voice_0").label == "Right"
    assert est._match(left, 0.99, boxes, 13.0, "voice_0").label == "Left"


def test_a_fairly_sure_doa_on_another_box_and_away_from_the_held_one_ends_the_hold():
    """A new talker whose first DoAs fall short of HOLD_CONFIDENCE (the voice still named as the
    previous turn's) is matched to its own box once the DoA fits it (HOLD_RELEASE_*) clearly better
    than the held box; a weaker DoA, or one near the held box, keeps the hold."""
    from jaeger_ros.pipeline import frame
    est = frame.ClassicalEstimator(candidates="depth", vad=False)
    boxes = _boxes_given_unsorted()          # left and right boxes 42 deg apart, the centre between
    left, right = boxes[2].center, boxes[1].center
    assert est._match(left, 0.95, boxes, 10.0, "voice_0").label == "Left"
    near_centre = direction_from_azel(answers.box_azimuth_deg(boxes[0]) + 5.0, -18.0)   # 17 deg from the left box
    assert est._match(near_centre, 0.6, boxes, 10.5, "voice_0").label == "Left"
    assert est._match(right, 0.45, boxes, 11.0, "voice_0").label == "Left"
    released = est._match(right, 0.6, boxes, 11.5, "voice_0")
    assert released.label == "Right" and released.confidence > 0.99
    assert est._match(left, 0.4, boxes, 11.8, "voice_0").label == "Right"   # the hold moved with it
    # a DoA 15 deg beyond the left box (a talker heard off its driver), 57 deg from the held right box
    beyond_left = direction_from_azel(answers.box_azimuth_deg(boxes[2]) + 15.0, -18.0)
    assert est._match(right, 0.95, boxes, 12.0, "voice_0").label == "Right"
    assert est._match(beyond_left, 0.6, boxes, 12.5, "voice_0").label == "Left"


def test_a_hold_taken_before_the_voice_was_known_takes_the_first_voice_named():
    """A sure match stored while the voice id was still unknown ("") holds for the first voice
    named within the hold, not for any voice."""
    from jaeger_ros.pipeline import frame
    est = frame.ClassicalEstimator(candidates="depth", vad=False)
    boxes = _boxes_given_unsorted()
    left, right = boxes[2].center, boxes[1].center
    assert est._match(left, 0.95, boxes, 10.0, "").label == "Left"
    assert est._match(right, 0.4, boxes, 11.0, "voice_0").label == "Left"    # named now: held for voice_0
    assert est._match(right, 0.4, boxes, 11.5, "voice_1").label == "Right"   # another voice: no hold
    assert est._match(right, 0.4, boxes, 12.0, "").label == "Left"           # an unknown voice is no other voice
    assert est._match(right, 0.4, boxes, 12.5, "voice_0").label == "Left"
