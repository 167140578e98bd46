"""The talker tracker core and its TF buffer, on synthetic geometry with known answers."""
import numpy as np
import pytest

from jaeger_ros.core.geometry import Intrinsics, pose_matrix
from jaeger_ros.tracker.talkers import Observation, TalkerTracker, TrackerConfig, in_view
from jaeger_ros.tracker.transforms import TransformBuffer, TransformError, interpolate

# camera_link (x forward, y left, z up) <- optical (x right, y down, z forward)
LINK_FROM_OPTICAL = pose_matrix(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.zeros(3))
BASE_FROM_LINK = pose_matrix(np.eye(3), [0.1, 0.0, 1.5])  # a mast 1.5 m up, 0.1 m ahead of the wheels


def yaw_pose(x: float, y: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return pose_matrix(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), [x, y, 0.0])


def robot_buffer(path, stamps) -> TransformBuffer:
    """map -> odom (static identity) -> base_link (moving) -> camera_link -> optical (static)."""
    buf = TransformBuffer(cache_s=100.0)
    buf.set_transform("map", "odom", np.eye(4), 0.0, static=True)
    buf.set_transform("base_link", "camera_link", BASE_FROM_LINK, 0.0, static=True)
    buf.set_transform("camera_link", "optical", LINK_FROM_OPTICAL, 0.0, static=True)
    for t in stamps:
        buf.set_transform("odom", "base_link", yaw_pose(*path(t)), t)
    return buf


def bearing_in_optical(source_map: np.ndarray, map_from_optical: np.ndarray) -> np.ndarray:
    p = np.linalg.inv(map_from_optical) @ np.append(source_map, 1.0)
    return p[:3] / np.linalg.norm(p[:3])


def observe(buf: TransformBuffer, stamp: float, direction_optical: np.ndarray, **kw) -> Observation:
    """What the tracker node does with a frame: the camera pose at the frame's stamp."""
    map_from_optical = buf.lookup("map", "optical", stamp)
    return Observation(stamp, map_from_optical[:3, 3], map_from_optical[:3, :3] @ direction_optical, 0.9, **kw)


def test_bearings_from_a_moving_robot_triangulate_a_fixed_source_within_10_cm():
    source = np.array([3.0, 2.5, 1.1])
    path = lambda t: (0.25 * t, -0.1 * t, 0.3 * np.sin(0.5 * t))  # drives 2 m while swaying its heading
    tf_stamps = np.arange(0.0, 8.01, 0.1)
    buf = robot_buffer(path, tf_stamps)
    rng = np.random.default_rng(3)
    tracker = TalkerTracker(TrackerConfig(bearing_sigma_deg=3.0))
    for stamp in np.arange(0.05, 7.95, 0.1):  # frames between TF samples: interpolated poses
        truth = bearing_in_optical(source, interpolate(
            buf.lookup("map", "optical", stamp - 0.05), buf.lookup("map", "optical", stamp + 0.05), 0.5))
        noisy = truth + rng.normal(0.0, np.radians(1.5), 3)
        tracker.update(observe(buf, stamp, noisy))
    (track,) = tracker.talkers()
    start_error = np.linalg.norm(source - (buf.lookup("map", "optical", 0.05)[:3, 3]
                                           + 2.0 * (buf.lookup("map", "optical", 0.05)[:3, :3]
                                                    @ bearing_in_optical(source, buf.lookup("map", "optical", 0.05)))))
    assert start_error > 0.5  # the first ray alone does not know the range
    assert np.linalg.norm(track.position - source) < 0.1
    assert np.sqrt(np.linalg.eigvalsh(track.covariance).max()) < 0.2  # the 1.5 m range prior is gone


def test_a_delayed_frame_is_placed_with_the_pose_at_its_stamp_not_the_latest():
    turn = lambda t: (1.0, 1.0, 0.8 * t)  # turning in place at 0.8 rad/s
    buf = robot_buffer(turn, np.arange(0.0, 2.01, 0.1))
    source = np.array([4.0, 1.0, 1.5])
    frame_stamp = 1.23  # the frame was captured here; it arrives when TF already reaches 2.0
    direction = bearing_in_optical(source, buf.lookup("map", "optical", frame_stamp))
    at_stamp = observe(buf, frame_stamp, direction)
    latest = buf.lookup("map", "optical", 2.0)
    to_source = source - at_stamp.origin
    assert np.degrees(np.arccos(np.dot(at_stamp.direction, to_source / np.linalg.norm(to_source)))) < 0.5
    wrong = latest[:3, :3] @ direction
    assert np.degrees(np.arccos(np.clip(np.dot(wrong, to_source / np.linalg.norm(to_source)), -1, 1))) > 30.0


def test_lookup_after_the_newest_sample_or_without_a_path_raises():
    buf = robot_buffer(lambda t: (t, 0.0, 0.0), [0.0, 0.5, 1.0])
    assert np.allclose(buf.lookup("map", "base_link", 0.75)[:3, 3], [0.75, 0.0, 0.0])
    with pytest.raises(TransformError):
        buf.lookup("map", "optical", 1.2)
    with pytest.raises(TransformError):
        buf.lookup("map", "elsewhere", 0.5)
    tolerant = TransformBuffer(extrapolation_s=0.5)
    tolerant.set_transform("odom", "base_link", yaw_pose(1.0, 0.0, 0.0), 1.0)
    assert np.allclose(tolerant.lookup("odom", "base_link", 1.3)[:3, 3], [1.0, 0.0, 0.0])


def test_out_of_order_and_stale_observations_are_dropped_and_counted():
    tracker = TalkerTracker()
    o = np.zeros(3)
    ahead = np.array([1.0, 0.0, 0.0])
    assert tracker.update(Observation(10.0, o, ahead, 0.9), now=10.1) is not None
    assert tracker.update(Observation(9.9, o, ahead, 0.9), now=10.2) is None  # older than the last
    assert tracker.update(Observation(10.5, o, ahead, 0.9), now=12.0) is None  # 1.5 s late
    assert tracker.update(Observation(10.6, o, np.zeros(3), 0.9), now=10.7) is None
    assert tracker.dropped == {"out_of_order": 1, "stale": 1, "invalid": 1}
    assert tracker.accepted == 1
    assert sum(t.hits for t in tracker.tracks.values()) == 1


def test_silence_updates_nothing_and_tracks_need_confirmation():
    tracker = TalkerTracker(TrackerConfig(confirm_hits=3, tentative_timeout_s=1.0))
    o, d = np.zeros(3), np.array([0.0, 1.0, 0.0])
    tracker.update(Observation(0.0, o, d, 0.05))
    assert tracker.tracks == {} and tracker.dropped["silence"] == 1
    for k in range(2):
        tracker.update(Observation(0.1 * (k + 1), o, d, 0.9))
    assert tracker.talkers() == []
    tracker.update(Observation(0.3, o, d, 0.9))
    (talker,) = tracker.talkers()
    assert talker.talking(0.5, 0.6) and not talker.talking(1.0, 0.6)
    tracker.update(Observation(0.4, o, np.array([0.0, -1.0, 0.0]), 0.9))  # a lone blip elsewhere
    assert len(tracker.tracks) == 2
    assert tracker.prune(2.0) == [talker.id + 1]
    assert list(tracker.tracks) == [talker.id]


def test_ranged_observations_place_the_talker_and_different_voices_stay_apart():
    tracker = TalkerTracker(TrackerConfig(confirm_hits=1))
    o = np.zeros(3)
    male = np.array([2.0, 0.3, 1.0])
    female = np.array([2.1, 0.5, 1.0])  # almost the same bearing
    for k in range(5):
        tracker.update(Observation(0.1 * k, o, male, 0.9, position=male, voice="male", seen=True))
        tracker.update(Observation(0.1 * k + 0.05, o, female, 0.9, position=female, voice="female"))
    by_voice = {t.voice: t for t in tracker.talkers()}
    assert set(by_voice) == {"male", "female"}
    assert np.linalg.norm(by_voice["male"].position - male) < 0.02
    assert by_voice["male"].last_seen == pytest.approx(0.4) and by_voice["female"].last_seen is None


def test_two_tracks_of_one_talker_merge_into_the_older_id():
    tracker = TalkerTracker(TrackerConfig(confirm_hits=1, gate_deg=5.0))
    first = tracker.update(Observation(0.0, np.zeros(3), np.array([1.0, 0.0, 0.0]), 0.9))  # starts 2 m out
    second = tracker.update(Observation(0.1, np.array([2.0, 2.0, 0.0]), np.array([0.3, -1.0, 0.0]), 0.9))
    assert second != first and len(tracker.tracks) == 2  # 17 deg off the first track: outside the gate
    assert np.linalg.norm(tracker.tracks[first].position - tracker.tracks[second].position) > 0.5
    # the camera sees the talker at 2.3 m on the first ray: that track moves next to the other one
    tracker.update(Observation(0.2, np.zeros(3), np.array([1.0, 0.0, 0.0]), 0.9, position=np.array([2.3, 0.0, 0.0])))
    assert list(tracker.tracks) == [first]
    assert tracker.tracks[first].hits == 3
    assert np.linalg.norm(tracker.tracks[first].position - [2.3, 0.0, 0.0]) < 0.2


def test_in_view_follows_the_camera_pose():
    intr = Intrinsics.from_hfov(320, 240, 90.0)
    map_from_optical = yaw_pose(0.0, 0.0, 0.0) @ BASE_FROM_LINK @ LINK_FROM_OPTICAL
    assert in_view(np.array([3.0, 0.5, 1.4]), map_from_optical, intr)
    assert not in_view(np.array([-3.0, 0.0, 1.4]), map_from_optical, intr)  # behind
    assert not in_view(np.array([3.0, 4.0, 1.4]), map_from_optical, intr)  # 53 deg to the left


# --- turn planning (jaeger_ros.tracker.turning) --------------------------------------------------

def _fly(planner, heading: float, track=None, doas=(), talker: float | None = None, seconds: float = 4.0,
         dt: float = 0.05, delay_s: float = 0.0, predict_s: float | None = None) -> tuple[float, list[float]]:
    """Run the planner against a base that obeys each command `delay_s` late. DoAs: the given
    (time, bearing) ones, and with `talker` (a bearing) one every 0.1 s with how far the robot
    turned over its 0.5 s window; `track` is talking throughout. With `predict_s` the planner
    gets the heading predicted for that delay (turning.predicted_heading), else the odometry's.
    Returns (final heading, commands)."""
    from collections import deque

    from jaeger_ros.tracker.turning import Track, predicted_heading
    commands, queue, obeyed, sent, headings = [], deque(), 0.0, [], []
    doas = sorted(doas)
    for k in range(int(round(seconds / dt))):
        now = k * dt
        headings.append(heading)
        while doas and doas[0][0] <= now:
            planner.add_doa(*doas.pop(0), 0.0)
        if talker is not None and k % 2 == 0:
            planner.add_doa(now, talker, heading - headings[max(0, k - int(round(0.5 / dt)))])
        seen = heading if predict_s is None else predicted_heading(heading, now, sent, now, predict_s)
        w = planner.step(now, seen, None if track is None else Track(track.id, track.bearing, now))
        commands.append(w)
        sent.append((now, w))
        queue.append((now, w))
        while queue and queue[0][0] <= now - delay_s + 1e-9:
            obeyed = queue.popleft()[1]
        heading += obeyed * dt
    return heading, commands


def test_a_new_voice_behind_gets_one_turn_that_ends_facing_it():
    from jaeger_ros.tracker.turning import TurnConfig, TurnPlanner, wrap
    planner = TurnPlanner(TurnConfig(dead_band_deg=8.0, max_angular_rps=2.0))
    behind = np.radians(170.0)
    heading, commands = _fly(planner, 0.0, doas=[(0.1, behind + 0.05), (0.2, behind - 0.05), (0.3, behind)])
    assert abs(np.degrees(wrap(heading - behind))) <= 4.0 + 1e-6
    assert planner.turns == 1 and max(commands) == pytest.approx(2.0) and min(commands) >= 0.0  # the short way
    assert commands[-1] == 0.0 and planner.source == "doa"


def test_one_reflection_a_smeared_doa_or_a_stale_one_starts_no_turn():
    from jaeger_ros.tracker.turning import TurnConfig, TurnPlanner
    planner = TurnPlanner(TurnConfig(agree_deg=30.0, doa_hold_s=0.4, max_smear_deg=5.0))
    _, commands = _fly(planner, 0.0, doas=[(0.1, 1.5), (0.2, 1.5), (0.3, -1.5)], seconds=1.0)  # the last disagrees
    assert not any(commands) and planner.turns == 0
    assert not planner.add_doa(1.0, 1.5, np.radians(20.0)) and planner.smeared == 1  # heard while turning
    assert planner.step(1.0, 0.0, None) == 0.0
    for stamp in (1.1, 1.15, 1.2):
        planner.add_doa(stamp, 1.5, 0.0)
    assert planner.step(1.7, 0.0, None) == 0.0  # the newest agreeing DoA is 0.5 s old: too late to act on
    assert planner.step(1.3, 0.0, None) > 0.0 and planner.turns == 1  # fresh, the same three start a turn


def test_a_track_heard_before_the_turn_ended_does_not_start_a_correction():
    from jaeger_ros.tracker.turning import Track, TurnConfig, TurnPlanner
    planner = TurnPlanner(TurnConfig(dead_band_deg=8.0, agree_deg=30.0))
    for k in range(3):
        planner.add_doa(0.1 * k, 1.0, 0.0)
    _fly(planner, 0.0, seconds=2.0)
    assert planner.turns == 1 and not planner.turning
    t = planner.stopped_at
    fresh = Track(4, -1.0, heard=t + 0.4)
    assert planner.step(t + 0.5, 1.0, fresh) == 0.0  # a track alone starts no turn
    for k in range(3):
        planner.add_doa(t + 0.3 + 0.05 * k, -0.8, 0.0)
    old = Track(4, -1.0, heard=t - 0.3)  # the tracker's last word from before the turn
    assert planner.step(t + 0.5, 1.0, old) < 0 and planner.source == "doa" and planner.goal == pytest.approx(-0.8)
    planner.direction = 0.0
    assert planner.step(t + 0.5, 1.0, fresh) < 0 and planner.source == "talker 4" and planner.goal == -1.0


def test_a_turn_to_a_doa_is_refined_by_the_talking_track_of_that_talker():
    from jaeger_ros.tracker.turning import Track, TurnConfig, TurnPlanner, wrap
    planner = TurnPlanner(TurnConfig(agree_deg=30.0))
    track = Track(7, np.radians(-100.0), 0.0)
    for k in range(3):
        planner.add_doa(0.1 * k, np.radians(-80.0 - k), 0.0)
    assert planner.step(0.2, 0.0, None) < 0 and planner.source == "doa"
    heading, _ = _fly(planner, 0.0, track=track, seconds=3.0)
    assert planner.source == "talker 7" and abs(np.degrees(wrap(heading - track.bearing))) <= 4.0 + 1e-6


def test_the_base_delay_is_fitted_from_odometry_and_predicting_it_stops_the_overshoot():
    from jaeger_ros.tracker.turning import (ACTUATION_DELAYS, Track, TurnConfig, TurnPlanner, actuation_delay,
                                           commanded_angle, wrap)
    sent = [(0.0, 0.0), (1.0, 1.5), (2.0, 0.0), (3.0, -1.0), (3.4, 0.0)]
    times = np.arange(0.0, 4.5, 0.05)
    true_delay = 0.24
    odometry = [(float(t), float(a)) for t, a in zip(times, commanded_angle(sent, times - true_delay))]
    assert actuation_delay(sent, odometry, ACTUATION_DELAYS) == pytest.approx(true_delay)
    assert actuation_delay(sent, [(t, 0.3) for t, _ in odometry], ACTUATION_DELAYS) is None  # it never turned
    # a planner that believes the base obeys at once overshoots a 0.25 s late base and turns back;
    # predicting the heading for the fitted delay ends the turn once, inside the dead band
    goal = np.radians(120.0)
    talker = Track(3, goal, 0.0)
    naive = TurnPlanner(TurnConfig(dead_band_deg=8.0))
    _fly(naive, 0.0, track=talker, talker=goal, delay_s=0.25)
    assert naive.turns >= 2
    planner = TurnPlanner(TurnConfig(dead_band_deg=8.0))
    heading, commands = _fly(planner, 0.0, track=talker, talker=goal, delay_s=0.25, predict_s=0.25)
    assert planner.turns == 1 and abs(np.degrees(wrap(heading - goal))) <= 4.0 + 1e-6 and commands[-1] == 0.0


def _seen_through_setup():
    """A camera 1.5 m up at the origin looking along map x; one confirmed, silent talker 2 m ahead."""
    map_from_optical = pose_matrix(LINK_FROM_OPTICAL[:3, :3], [0.0, 0.0, 1.5])
    tracker = TalkerTracker()
    talker = np.array([2.0, 0.0, 1.5])
    for stamp in (0.0, 0.1, 0.2):   # three ranged observations: a confirmed track with a sure range
        tracker.update(Observation(stamp, np.array([0.0, 0.0, 1.5]), np.array([1.0, 0.0, 0.0]), 0.9,
                                   position=talker, position_sigma_m=0.1))
    return tracker, map_from_optical, Intrinsics.from_hfov(64, 48, 90.0)


def test_a_silent_track_the_camera_sees_through_is_deleted_and_only_that():
    tracker, map_from_optical, intr = _seen_through_setup()
    (track,) = tracker.talkers()
    wall = np.full((48, 64), 5.0, np.float32)       # free space to a wall 5 m away: she has left
    her = wall.copy()
    her[14:34, 27:37] = 1.9                         # her front 1.9 m away (the track holds 2.0 m)
    behind = wall.copy()
    behind[10:40, 20:44] = 1.0                      # something between her and the camera
    holes = np.zeros((48, 64), np.float32)          # no depth reading at all
    for depth in (her, behind, holes):
        for stamp in np.arange(1.0, 3.0, 0.1):
            assert tracker.clear_seen_through(stamp, map_from_optical, intr, depth) == []
    assert tracker.clear_seen_through(3.0, map_from_optical, intr, wall) == []   # not yet seen_through_s
    away = pose_matrix(yaw_pose(0, 0, np.pi)[:3, :3] @ LINK_FROM_OPTICAL[:3, :3], [0.0, 0.0, 1.5])
    assert tracker.clear_seen_through(3.3, away, intr, wall) == []               # out of view: no evidence
    assert tracker.clear_seen_through(3.4, map_from_optical, intr, wall) == []   # the run starts again
    assert tracker.clear_seen_through(3.9, map_from_optical, intr, wall) == [track.id]
    assert tracker.talkers() == []


def test_a_talking_track_or_one_with_an_unsure_range_is_never_seen_through():
    tracker, map_from_optical, intr = _seen_through_setup()
    wall = np.full((48, 64), 5.0, np.float32)
    assert tracker.clear_seen_through(0.3, map_from_optical, intr, wall) == []   # heard 0.1 s ago: talking
    assert tracker.clear_seen_through(0.5, map_from_optical, intr, wall) == []
    assert len(tracker.talkers()) == 1
    heard = TalkerTracker()   # bearing-only: the 1.5 m range prior along the ray, no depth evidence against it
    for stamp in (0.0, 0.1, 0.2):
        heard.update(Observation(stamp, np.array([0.0, 0.0, 1.5]), np.array([1.0, 0.0, 0.0]), 0.9))
    for stamp in np.arange(1.0, 3.0, 0.1):
        assert heard.clear_seen_through(stamp, map_from_optical, intr, wall) == []
