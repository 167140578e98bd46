"""The party world (ROS-free): layout around the robot, turn-taking, a base that turns on command,
sound that turns with the camera, ground truth and TF that agree with the true pose."""
import numpy as np
import pytest

from jaeger_ros.classical.doa import estimate_doa
from jaeger_ros.core.geometry import wrapped_azimuth_error
from sim_bridge.live import LiveConfig, LiveWorld, PartyWorld, make_world
from sim_bridge.robot import Base, BaseLimits

T0 = 1000.0


@pytest.fixture(scope="module")
def world():
    w = make_world(LiveConfig(scenario="party", width=160, height=120, seed=3))
    w.start(T0)
    return w


def chunks(world, seconds):
    return [world.next_chunk() for _ in range(int(round(seconds / (world.chunk / world.sample_rate))))]


def test_party_puts_one_talker_in_view_and_one_behind_the_robot(world):
    assert isinstance(world, PartyWorld) and isinstance(make_world(LiveConfig()), LiveWorld)
    gt = world.ground_truth(T0)
    azimuths = [s.azimuth_deg for s in gt.sources]
    assert gt.in_view[0] and abs(azimuths[0]) <= 25.0 and gt.sources[0].loudspeaker == 0
    assert not any(gt.in_view[1:]) and [s.loudspeaker for s in gt.sources[1:]] == [-1, -1]
    assert abs(azimuths[2]) >= 150.0  # behind
    assert len(gt.boxes) == 1
    distances = [np.linalg.norm(p - gt.map_from_optical[:3, 3]) for p in gt.positions_map]
    assert all(1.0 <= d <= 2.7 for d in distances)


def test_talkers_take_turns_and_the_sound_turns_with_the_robot(world):
    start = world.next_chunk_time
    audio = chunks(world, 12.0)
    gts = [world.ground_truth(start + 0.1 * k) for k in range(120)]
    active = np.array([[s.active for s in g.sources] for g in gts])
    assert active.any() and active.sum(axis=1).max() == 1  # never two at once
    assert len({int(np.flatnonzero(a)[0]) for a in active if a.any()}) >= 2
    turn = world.next_chunk_time
    world.command(0.0, 1.5, turn)  # half a second at 1.5 rad/s: the robot turns ~43 deg left
    chunks(world, 0.6)
    yaw_before = world.ground_truth(turn - 0.05).map_from_optical
    yaw_after = world.ground_truth(world.next_chunk_time - 0.05).map_from_optical
    turned = np.degrees(np.arctan2(yaw_before[0, 2], yaw_before[1, 2]) - np.arctan2(yaw_after[0, 2], yaw_after[1, 2]))
    assert (turned + 180) % 360 - 180 == pytest.approx(45.0, abs=4.0)
    # the DoA of whoever talks now, in the camera's axes, follows the truth after the turn
    after = world.next_chunk_time
    tail = np.concatenate([c for _, c in chunks(world, 6.0)], axis=1)
    window = int(world.sample_rate * 0.5)
    errors = []
    for k in range(12):
        gt = world.ground_truth(after + 0.5 * (k + 1))
        talking = [s for s in gt.sources if s.active and s.active_for_s >= 0.5]
        if talking:
            est = estimate_doa(tail[:, k * window:(k + 1) * window], world.sample_rate)
            if est.confidence > 0.5:
                errors.append(float(wrapped_azimuth_error(est.azimuth_deg, talking[0].azimuth_deg)))
    assert errors and np.median(errors) < 20.0
    del audio


def test_tf_chain_is_the_true_camera_pose_up_to_the_localisation_drift(world):
    t = world.next_chunk_time - 0.05
    links = world.transforms(t)
    assert [(l.parent, l.child, l.static) for l in links] == [
        ("map", "odom", False), ("odom", "base_link", False), ("base_link", "camera_link", True),
        ("camera_link", "camera_color_optical_frame", True)]
    chain = links[0].transform @ links[1].transform @ links[2].transform @ links[3].transform
    truth = world.ground_truth(t).map_from_optical
    assert np.linalg.norm(chain[:3, 3] - truth[:3, 3]) < 0.05
    assert np.degrees(np.arccos(np.clip((np.trace(chain[:3, :3].T @ truth[:3, :3]) - 1) / 2, -1, 1))) < 3.0


def test_base_limits_timeout_and_drifting_odometry():
    base = Base(BaseLimits(max_angular_rps=1.0, command_timeout_s=0.5, odom_scale_error=0.05), np.random.default_rng(1))
    base.command(2.0, 5.0, 0.0)  # clipped to 0.5 m/s and 1 rad/s
    base.advance(2.0)  # the command lapses after 0.5 s
    assert base.yaw == pytest.approx(0.5, abs=0.02)
    assert np.hypot(base.x, base.y) == pytest.approx(0.5 * 0.5 * np.sinc(0.25 / np.pi), abs=0.02)
    assert abs(base.odom[2] - base.yaw) > 0.01  # the wheels believe something else
    base.command(float("nan"), 1.0, 2.0)
    assert base.velocity(2.1) == (0.0, 0.0)
    with pytest.raises(ValueError):
        LiveConfig(scenario="party", talkers=5)


def test_a_command_acts_from_its_stamp_although_the_base_ran_ahead():
    """The simulator integrates the base a chunk ahead; a command received at 1.0 s when the base
    is already at 1.1 s turns it from 1.0 s, and the states before 1.0 s stay as they were."""
    limits = BaseLimits(odom_scale_error=0.0, odom_noise=0.0, command_timeout_s=5.0)
    ahead, on_time = (Base(limits, np.random.default_rng(0)) for _ in range(2))
    ahead.advance(1.1)
    before = ahead.state_at(0.5)[0].copy()
    ahead.command(0.0, 1.0, 1.0)
    on_time.advance(1.0)
    on_time.command(0.0, 1.0, 1.0)
    on_time.advance(1.1)
    assert ahead.time == pytest.approx(1.1) and ahead.yaw == pytest.approx(on_time.yaw) == pytest.approx(0.1)
    ahead.advance(1.6)
    assert ahead.state_at(1.35)[0][2] == pytest.approx(0.35, abs=1e-6)  # interpolated between kept states
    np.testing.assert_allclose(ahead.state_at(0.5)[0], before)
    assert ahead.state_at(1.6)[1][2] == pytest.approx(0.6)  # exact odometry without scale error or noise
