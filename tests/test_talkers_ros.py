"""jaeger_tracker and turn_to_speaker as real rclpy nodes over Fast DDS (private domain, localhost).

A simulated base (sim_bridge.robot.Base) executes /cmd_vel (on time, or late as a busy driver
does) and publishes its odometry on /tf; the tracker
gets SpeakerMatch frames whose stamps lag the TF (placed with the pose at their stamp), plus
out-of-order, stale and TF-less ones that it must drop and count.
"""
import math
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from tf2_msgs.msg import TFMessage

from jaeger_ros.core.geometry import Box3D, optical_to_camera
from jaeger_ros.msg import SpeakerMatch, Talker, TalkerArray
from jaeger_ros.ros import convert as rc
from sim_bridge.robot import Base, BaseLimits, planar_pose

REPO = Path(__file__).resolve().parent.parent
OPTICAL = "camera_color_optical_frame"
LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0, 0, 0, 1.0]])
BASE_FROM_OPTICAL = np.array([[1.0, 0, 0, 0.05], [0, 1.0, 0, 0], [0, 0, 1.0, 1.5], [0, 0, 0, 1.0]]) @ LINK_FROM_OPTICAL


def spin_for(executor, seconds, until=lambda: False):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        executor.spin_once(timeout_sec=0.01)


def static_tf(node):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    pub = node.create_publisher(TFMessage, "/tf_static", QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
    pub.publish(TFMessage(transforms=[rc.transform_to_msg(np.eye(4), "map", "odom", 0.0),
                                      rc.transform_to_msg(BASE_FROM_OPTICAL, "base_link", OPTICAL, 0.0)]))
    return pub


@pytest.mark.parametrize("obey_late_s", [0.0, 0.25])
def test_turn_to_speaker_turns_a_simulated_base_to_a_talker_behind_it(context, obey_late_s):
    """The base publishes odometry at 20 Hz and obeys each command `obey_late_s` after it was
    sent (a busy driver); the talker's voice comes as SpeakerMatch DoAs from the pose of their
    stamp, and its track as a TalkerArray: the behaviour fits the delay and still makes one turn
    that ends facing the talker."""
    from jaeger_ros.ros.turn_to_speaker import TurnToSpeaker

    # the simulated base turns at up to 2 rad/s; the node's default (0.5) suits a real base
    behaviour = TurnToSpeaker(context=context, parameter_overrides=[Parameter("max_angular_rps", value=2.0)])
    sim = rclpy.create_node("simulated_base", context=context)
    base = Base(BaseLimits(max_angular_rps=2.0, odom_scale_error=0.0, odom_noise=0.0), np.random.default_rng(0),
                0.0, 0.0, 0.0)
    clock = sim.get_clock()
    base.time = clock.now().nanoseconds * 1e-9
    commands, late = [], []

    def on_cmd(msg: TwistStamped) -> None:
        assert msg.header.frame_id == "base_link" and msg.header.stamp.sec > 0
        commands.append(msg.twist.angular.z)
        late.append((clock.now().nanoseconds * 1e-9 + obey_late_s, msg.twist.angular.z))
        obey()

    def obey() -> None:
        now = clock.now().nanoseconds * 1e-9
        while late and late[0][0] <= now:
            at, angular = late.pop(0)
            base.advance(at)
            base.command(0.0, angular, at)
        base.advance(now)

    sim.create_subscription(TwistStamped, "/cmd_vel", on_cmd, 10)
    keep = static_tf(sim)
    pub_tf = sim.create_publisher(TFMessage, "/tf", 100)
    pub_talkers = sim.create_publisher(TalkerArray, "/jaeger/talkers", 10)
    pub_match = sim.create_publisher(SpeakerMatch, "/jaeger/speaker_match", 20)
    talker = np.array([-2.0, 0.4, 1.0])  # behind the robot, a little to its left

    def tick() -> None:
        now = clock.now().nanoseconds * 1e-9
        obey()
        pub_tf.publish(TFMessage(transforms=[rc.transform_to_msg(planar_pose(*base.odom), "odom", "base_link", now)]))
        pub_match.publish(_match(now, talker, planar_pose(base.x, base.y, base.yaw) @ BASE_FROM_OPTICAL))
        msg = TalkerArray(header=rc.make_header(now, "map"), current_id=7)
        t = Talker(id=7, talking=True, last_heard=rc.seconds_to_stamp(now))
        t.position.x, t.position.y, t.position.z = (float(v) for v in talker)
        msg.talkers.append(t)
        pub_talkers.publish(msg)

    sim.create_timer(0.05, tick)
    executor = SingleThreadedExecutor(context=context)
    for n in (behaviour, sim):
        executor.add_node(n)
    try:
        target = math.atan2(talker[1], talker[0])
        assert abs(math.degrees(target - base.yaw)) > 160
        spin_for(executor, 8.0, until=lambda: len(commands) > 5 and commands[-1] == 0.0 and not late)
        spin_for(executor, 1.0)
        obey()
        error = math.degrees(math.atan2(math.sin(target - base.yaw), math.cos(target - base.yaw)))
        assert max(abs(c) for c in commands) == pytest.approx(behaviour.p["max_angular_rps"])
        assert commands[0] > 0  # the short way round: the talker is behind and to the left
        assert commands[-1] == 0.0 and abs(error) <= behaviour.p["dead_band_deg"]
        assert behaviour.turns == 1
        if obey_late_s:
            assert behaviour.delay == pytest.approx(obey_late_s, abs=0.1)
    finally:
        keep.destroy()
        executor.shutdown()
        behaviour.destroy_node()
        sim.destroy_node()


def _match(stamp: float, source_map: np.ndarray, map_from_optical: np.ndarray, confidence: float = 0.9) -> SpeakerMatch:
    """A SpeakerMatch at `stamp` whose DoA and matched box point at `source_map` from the pose
    the camera had then."""
    p = (np.linalg.inv(map_from_optical) @ np.append(source_map, 1.0))[:3]
    header = rc.make_header(stamp, OPTICAL)
    box = rc.box_to_msg(Box3D(optical_to_camera(p), np.array([0.3, 0.5, 0.3])), 0)
    doa = rc.doa_to_msg(optical_to_camera(p / np.linalg.norm(p)), confidence, header)
    return SpeakerMatch(header=header, index=0, label="Center", matched_box=box, candidates=[box], doa=doa,
                        confidence=confidence, method="classical")


def test_tracker_places_delayed_frames_with_the_pose_at_their_stamp_and_drops_bad_ones(context):
    from jaeger_ros.ros.tracker_node import TrackerNode

    from rclpy.parameter import Parameter
    # the robot turns at 1 rad/s: allow it, so that the frames are placed rather than dropped as smeared
    tracker = TrackerNode(context=context, parameter_overrides=[Parameter("max_turn_rate_rps", value=5.0)])
    sim = rclpy.create_node("turning_robot", context=context)
    keep = static_tf(sim)
    pub_tf = sim.create_publisher(TFMessage, "/tf", 100)
    pub_match = sim.create_publisher(SpeakerMatch, "/jaeger/speaker_match", 20)
    got: list[TalkerArray] = []
    sim.create_subscription(TalkerArray, "/jaeger/talkers", got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    for n in (tracker, sim):
        executor.add_node(n)
    source = np.array([1.0, 2.5, 1.1])
    try:
        spin_for(executor, 1.0)
        now = lambda: sim.get_clock().now().nanoseconds * 1e-9
        latest = now()
        pose = lambda t: planar_pose(0.0, 0.0, 1.0 * (t - latest)) @ BASE_FROM_OPTICAL  # turning at 1 rad/s
        pub_tf.publish(TFMessage(transforms=[rc.transform_to_msg(planar_pose(0.0, 0.0, t - latest), "odom",
                                                                 "base_link", t) for t in latest - np.arange(0.0, 0.85, 0.1)]))
        # frames captured 0.75 .. 0.3 s before the newest TF arrive now (the robot turned 0.3-0.75 rad since)
        for t in (latest - 0.75, latest - 0.6, latest - 0.45, latest - 0.3):
            pub_match.publish(_match(t, source, pose(t)))
        spin_for(executor, 1.0, until=lambda: len(got) >= 4)
        assert len(got) == 4 and len(got[-1].talkers) == 1
        talker = got[-1].talkers[0]
        estimate = np.array([talker.position.x, talker.position.y, talker.position.z])
        assert np.linalg.norm(estimate - source) < 0.1
        # stamps, not ages: last heard = the newest frame's stamp (published above)
        assert abs(rc.stamp_to_seconds(talker.last_heard) - (latest - 0.3)) < 1e-6
        seen_then = np.linalg.inv(pose(latest - 0.75)) @ np.append(source, 1.0)
        assert np.linalg.norm((pose(latest) @ seen_then)[:3] - source) > 0.5  # "the latest pose" would miss

        pub_match.publish(_match(latest - 0.5, source, pose(latest - 0.5)))  # older than the last accepted
        pub_match.publish(_match(now() - 2.0, source, pose(latest)))  # 2 s old on arrival
        pub_match.publish(_match(now(), source, pose(latest)))  # newer than any TF that will come
        spin_for(executor, 2.0, until=lambda: tracker.dropped["no_tf"] >= 1)
        dropped = tracker.dropped + tracker.tracker.dropped
        assert (dropped["out_of_order"], dropped["stale"], dropped["no_tf"]) == (1, 1, 1)
        assert tracker.tracker.talkers()[0].hits == 4 and len(got) == 4
    finally:
        keep.destroy()
        executor.shutdown()
        tracker.destroy_node()
        sim.destroy_node()


def test_party_parameters_are_the_ones_the_nodes_declare(context):
    from jaeger_ros.ros.tracker_node import TrackerNode
    from jaeger_ros.ros.turn_to_speaker import TurnToSpeaker

    params = yaml.safe_load((REPO / "config" / "party.yaml").read_text())
    for cls, name in ((TrackerNode, "jaeger_tracker"), (TurnToSpeaker, "turn_to_speaker")):
        node = cls(context=context)
        try:
            assert set(params[name]["ros__parameters"]) == set(node.p)
        finally:
            node.destroy_node()
    from jaeger_ros.ros.jaeger_node import SPECS, check_parameter
    for name, value in params["jaeger_node"]["ros__parameters"].items():  # e.g. doa_memory_s: known, in range
        assert name in SPECS and check_parameter(name, value) == value
    rviz = yaml.safe_load((REPO / "config" / "jaeger.rviz").read_text())["Visualization Manager"]
    topics = [d.get("Topic", {}).get("Value") for d in rviz["Displays"] if d["Class"].endswith("MarkerArray")]
    # relative in the params file; RViz (root namespace) shows it resolved
    assert "/" + params["jaeger_tracker"]["ros__parameters"]["markers_topic"] in topics


def test_turn_to_speaker_sends_a_zero_velocity_when_it_stops(context):
    """A base without a command timeout keeps the last command: stopping the node must stop it."""
    from jaeger_ros.ros.turn_to_speaker import TurnToSpeaker

    behaviour = TurnToSpeaker(context=context)
    listener = rclpy.create_node("base_driver", context=context)
    got: list[TwistStamped] = []
    listener.create_subscription(TwistStamped, "/cmd_vel", got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    for n in (behaviour, listener):
        executor.add_node(n)
    try:
        spin_for(executor, 1.0)  # discovery
        behaviour._send(0.4)  # turning
        spin_for(executor, 2.0, until=lambda: len(got) == 1)
        executor.remove_node(behaviour)
        behaviour.destroy_node()  # what Ctrl-C / SIGTERM does through the runner
        spin_for(executor, 2.0, until=lambda: len(got) == 2)
        assert [m.twist.angular.z for m in got] == [0.4, 0.0]
        assert behaviour.p["max_angular_rps"] <= 0.5  # the default for a real base
    finally:
        executor.shutdown()
        listener.destroy_node()
