"""Two robots side by side (issue 22.7): sim_bridge + jaeger_node under /robot1 and /robot2.

Real rclpy nodes over Fast DDS (private random domain, localhost only). Topic names are relative,
so a namespace moves every one of them (/tf, /tf_static and /diagnostics stay global). Each
jaeger_node must answer only the frames of its own simulator: the stamps of its SpeakerMatch
messages are stamps of its own simulator's ground truth and never of the other one's.
"""
from __future__ import annotations

import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from jaeger_ros.msg import SimGroundTruth, SpeakerMatch
ROBOTS = ("robot1", "robot2")


def key(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def test_two_namespaced_pairs_run_side_by_side_without_crossing(context):
    from jaeger_ros.ros.jaeger_node import JaegerNode
    from sim_bridge.node import SimBridgeNode

    nodes = []
    for i, ns in enumerate(ROBOTS):
        nodes.append(SimBridgeNode(context=context, namespace=ns, parameter_overrides=[
            Parameter("seed", value=i + 1), Parameter("width", value=160), Parameter("height", value=120),
            Parameter("speech_pool", value=1), Parameter("conditions", value="clean")]))
        nodes.append(JaegerNode(context=context, namespace=ns, parameter_overrides=[
            Parameter("stale_after_s", value=3.0)]))
    listener = rclpy.create_node("two_robots", context=context)
    truth = {ns: set() for ns in ROBOTS}
    answers = {ns: [] for ns in ROBOTS}
    for ns in ROBOTS:
        listener.create_subscription(SimGroundTruth, f"/{ns}/sim/ground_truth",
                                     lambda m, ns=ns: truth[ns].add(key(m.header.stamp)), 50)
        listener.create_subscription(SpeakerMatch, f"/{ns}/jaeger/speaker_match",
                                     lambda m, ns=ns: answers[ns].append(key(m.header.stamp)), 50)
    executor = SingleThreadedExecutor(context=context)
    for n in (*nodes, listener):
        executor.add_node(n)
    try:
        end = time.monotonic() + 30.0
        while time.monotonic() < end and not all(len(a) >= 5 for a in answers.values()):
            executor.spin_once(timeout_sec=0.01)
        topics = {name for name, _ in listener.get_topic_names_and_types()}
    finally:
        for n in (*nodes, listener):
            n.destroy_node()
    for ns in ROBOTS:
        for topic in ("camera/color/image_raw", "camera/depth/image_raw", "camera/color/camera_info", "audio/foa",
                      "jaeger/speaker_match", "jaeger/doa"):
            assert f"/{ns}/{topic}" in topics
    assert "/camera/color/image_raw" not in topics and "/jaeger/speaker_match" not in topics
    assert {"/tf", "/tf_static", "/diagnostics"} <= topics
    one, two = ROBOTS
    assert len(answers[one]) >= 5 and len(answers[two]) >= 5, {ns: len(a) for ns, a in answers.items()}
    assert not truth[one] & truth[two]  # two simulators, two clocks of frames
    for ns, other in ((one, two), (two, one)):
        assert set(answers[ns]) <= truth[ns] and not set(answers[ns]) & truth[other], ns
