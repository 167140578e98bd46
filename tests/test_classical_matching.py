"""Nearest-box speaker matching: ray-box geometry, left-to-right labels, honest confidence."""
import numpy as np
import pytest

from jaeger_ros.classical.matching import FAR_DEG, KERNEL_DEG, TalkerFilter, angle_to_box, match_speaker
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


def test_a_ray_through_the_top_corner_of_a_near_persons_box_is_not_her_voice():
    """A person 1.0-1.5 m ahead, her box 0.6 m wide and 1.25 m high (y -1.5 .. -0.25, seated on a
    chair), and a small loudspeaker 3.6 m ahead at azimuth 9.5 deg. A DoA 2 deg left of the
    loudspeaker (azimuth 11.5, elevation -21.7 deg) misses its box and enters hers 1 m ahead at
    x = -tan(11.5 deg) = -0.20 m, y = -0.40 m: inside the top 0.3 m of her box but 0.2 m from her
    centre line, beside her head (0.3 m wide). It is the loudspeaker's; the same DoA 2 deg right of
    the loudspeaker, towards her head, is hers."""
    person = Box3D([0.0, -0.875, -1.25], [0.6, 1.25, 0.5], label="person", extra={"category": "person"})
    speaker = Box3D([-0.6, -1.45, -3.6], [0.2, 0.6, 0.2])
    az, el = 9.4623, -21.6678                      # the loudspeaker's centre, by hand
    assert np.allclose(direction_from_azel(az, el) * np.linalg.norm(speaker.center), speaker.center, atol=1e-3)
    m = match_speaker(direction_from_azel(az + 2.0, el), [person, speaker])
    assert m.index == 1 and m.angles_deg[0] > 5.0, m
    assert match_speaker(direction_from_azel(az - 2.0, el), [person, speaker]).index == 0


def test_bad_input_is_rejected():
    boxes = _boxes_given_unsorted()
    with pytest.raises(ValueError):
        match_speaker(boxes[0].center, [])
    with pytest.raises(ValueError):
        match_speaker(np.zeros(3), boxes)
    with pytest.raises(ValueError):
        match_speaker(np.array([np.nan, 0.0, -1.0]), boxes)


def test_a_match_is_scored_by_the_softmax_over_its_angles():
    boxes = _boxes_given_unsorted()
    m = match_speaker(boxes[1].center, boxes)
    assert m.index == 1 and m.angles_deg[1] == 0.0
    # the softmax over angles with a 3 deg temperature, written out from the box centres
    unit = [b.center / np.linalg.norm(b.center) for b in boxes]
    deg = [np.degrees(np.arccos(np.clip(u @ unit[1], -1.0, 1.0))) for u in unit]   # the right box: 0
    assert m.confidence == pytest.approx(1.0 / sum(np.exp(-a / 3.0) for a in deg), rel=1e-6)


def _picks(f: TalkerFilter, boxes: list[Box3D], doas: list, t0: float = 10.0, voice: str = "voice_0") -> list[str]:
    """The labels the filter picks for DoAs (direction, confidence) heard 0.1 s apart."""
    return [f.update(match_speaker(d, boxes), c, boxes, t0 + 0.1 * k, voice).label for k, (d, c) in enumerate(doas)]


def _sure_left(boxes: list[Box3D]) -> TalkerFilter:
    """A filter that heard 1 s of sure DoAs from the left box (t 10.0 .. 10.9, voice_0)."""
    f = TalkerFilter()
    assert _picks(f, boxes, [(boxes[2].center, 0.95)] * 10) == ["Left"] * 10
    return f


def test_a_lone_doa_is_scored_by_the_documented_likelihood():
    """With nothing heard before, the posterior is (1 - c) + c exp(-(a - a_min) / KERNEL_DEG),
    normalised over the boxes, a the angle to each box's centre capped at FAR_DEG (this ray misses
    all three boxes; the right one lies beyond FAR_DEG)."""
    boxes = _boxes_given_unsorted()
    d = direction_from_azel(answers.box_azimuth_deg(boxes[2]) - 8.0, -19.0)
    unit = d / np.linalg.norm(d)
    theta = np.array([np.degrees(np.arccos(unit @ b.center / np.linalg.norm(b.center))) for b in boxes])
    assert theta[2] < theta[0] < FAR_DEG < theta[1]
    a = np.minimum(theta, FAR_DEG)
    for c in (0.3, 0.9):
        like = (1 - c) + c * np.exp(-(a - a.min()) / KERNEL_DEG)
        m = TalkerFilter().update(match_speaker(d, boxes), c, boxes, 1.0)
        assert m.index == 2 and m.confidence == pytest.approx(like[2] / like.sum(), rel=1e-6)


def test_a_doa_nearer_one_box_than_another_is_evidence_even_when_near_neither():
    """Unsure DoAs 19 deg from the left box and 38 deg from the right (a reverberant room's) move
    the match to the left box within a few frames after one sure DoA chose the right one."""
    boxes = [Box3D([-1.0, -0.5, -3.0], [0.3, 0.6, 0.3]), Box3D([1.0, -0.5, -3.0], [0.3, 0.6, 0.3])]
    az = [answers.box_azimuth_deg(b) for b in boxes]
    d = direction_from_azel(az[0] + 19.0 * np.sign(az[0] - az[1]), 0.0)
    m = match_speaker(d, boxes)
    assert 15.0 < m.angles_deg[0] < 25.0 < FAR_DEG < m.angles_deg[1]
    f = TalkerFilter()
    assert _picks(f, boxes, [(boxes[1].center, 0.9)], t0=10.0) == ["Right"]
    picks = _picks(f, boxes, [(d, 0.6)] * 10, t0=10.1)
    assert picks.index("Left") <= 3 and picks[picks.index("Left"):] == ["Left"] * (10 - picks.index("Left"))


def test_one_stray_doa_does_not_move_the_match_a_run_of_them_does():
    """A reflection heard once, even surely, leaves the talker's box; two sure DoAs in a row, or a
    run of unsure ones, move it -- the unsure ones later."""
    boxes = _boxes_given_unsorted()
    left, right = boxes[2].center, boxes[1].center
    assert _picks(_sure_left(boxes), boxes, [(right, 0.9), (left, 0.9), (right, 0.9)], t0=11.0) == ["Left"] * 3
    sure = _picks(_sure_left(boxes), boxes, [(right, 0.9)] * 10, t0=11.0)
    unsure = _picks(_sure_left(boxes), boxes, [(right, 0.6)] * 10, t0=11.0)
    assert sure == ["Left"] + ["Right"] * 9
    assert 2 < unsure.index("Right") < 10 and unsure[unsure.index("Right"):] == ["Right"] * (10 - unsure.index("Right"))


def test_a_pause_or_another_voice_lets_the_next_doa_decide():
    """Belief leaks with time (SWITCH_S) and at a change of voice (NEW_VOICE_SWITCH): after 3 s of
    silence an unsure DoA decides alone; a sure one of another voice moves the match at once where
    the same voice, or a voice not yet named, does not."""
    boxes = _boxes_given_unsorted()
    right = boxes[1].center
    assert _picks(_sure_left(boxes), boxes, [(right, 0.6)], t0=11.0) == ["Left"]
    assert _picks(_sure_left(boxes), boxes, [(right, 0.6)], t0=13.9) == ["Right"]
    for voice, label in (("voice_0", "Left"), ("", "Left"), ("voice_1", "Right")):
        assert _picks(_sure_left(boxes), boxes, [(right, 0.8)], t0=11.0, voice=voice) == [label], voice


def test_doas_far_from_every_box_or_between_two_do_not_move_the_match():
    """A DoA 40 deg beyond the leftmost box fits none (a strong reflection, a talker out of view);
    one half way between the centre and right boxes, unless nearly sure, speaks against the left
    box less than 1 s of sure DoAs spoke for it: neither moves the match."""
    boxes = _boxes_given_unsorted()
    far_left = direction_from_azel(answers.box_azimuth_deg(boxes[2]) + 40.0, -18.0)
    assert _picks(_sure_left(boxes), boxes, [(far_left, 0.99)] * 20, t0=11.0) == ["Left"] * 20
    halfway = boxes[0].center / np.linalg.norm(boxes[0].center) + boxes[1].center / np.linalg.norm(boxes[1].center)
    assert _picks(_sure_left(boxes), boxes, [(halfway, 0.9)], t0=11.0) == ["Left"]


def test_the_belief_follows_re_detected_boxes_and_a_reset_or_restart_forgets_it():
    """Boxes found again within SAME_BOX_M keep their belief (in any order); reset() (a new view)
    and a stamp before the last one (the stream restarted) start afresh."""
    boxes = _boxes_given_unsorted()
    right = boxes[1].center
    jittered = [Box3D(b.center + [0.05, -0.03, 0.08], b.size) for b in reversed(boxes)]
    assert _picks(_sure_left(boxes), jittered, [(right, 0.6)], t0=11.0) == ["Left"]
    f = _sure_left(boxes)
    f.reset()
    assert _picks(f, boxes, [(right, 0.6)], t0=11.0) == ["Right"]
    assert _picks(_sure_left(boxes), boxes, [(right, 0.6)], t0=5.0) == ["Right"]


def test_where_the_ray_fits_two_boxes_the_filter_keeps_match_speakers_pick():
    near = Box3D([-0.3, -0.5, -1.2], [0.7, 1.7, 0.7])
    far = Box3D([0.0, -0.3, -3.0], [0.3, 0.5, 0.3])
    for boxes in ([near, far], [far, near]):
        m = TalkerFilter().update(match_speaker(far.center, boxes), 0.9, boxes, 1.0)
        assert boxes[m.index] is far and m.confidence == pytest.approx(0.5)


def test_the_streaming_estimator_filters_its_matches_and_rejects_bad_confidence():
    """pipeline.frame's ClassicalEstimator matches through the filter."""
    from jaeger_ros.pipeline import frame
    est = frame.ClassicalEstimator(candidates="depth", vad=False)
    boxes = _boxes_given_unsorted()
    left, right = boxes[2].center, boxes[1].center
    labels = [est._match(d, 0.9, boxes, 10.0 + 0.1 * k, "voice_0").label
              for k, d in enumerate([left] * 5 + [right, left])]
    assert labels == ["Left"] * 7
    m = match_speaker(left, boxes)
    with pytest.raises(ValueError):
        TalkerFilter().update(m, 1.5, boxes, 1.0)
    with pytest.raises(ValueError):
        TalkerFilter().update(m, 0.9, boxes[:2], 1.0)   # angles measured for three boxes
