"""sim_bridge with talker_kind:=mixed: a real rclpy node over FastDDS (random ROS_DOMAIN_ID, see
conftest.context) publishes ground truth naming people and loudspeakers."""
from __future__ import annotations

import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from jaeger_ros.msg import SimGroundTruth


def test_mixed_talkers_publish_both_categories_in_ground_truth(context):
    from sim_bridge.node import SimBridgeNode

    sim = SimBridgeNode(context=context, parameter_overrides=[
        Parameter("width", value=160), Parameter("height", value=120), Parameter("speech_pool", value=1),
        Parameter("talker_kind", value="mixed"), Parameter("scenario", value="dual"),
        Parameter("scene_period_s", value=1.0), Parameter("conditions", value="clean")])
    user = rclpy.create_node("truth_reader", context=context)
    got: list[SimGroundTruth] = []
    user.create_subscription(SimGroundTruth, "/sim/ground_truth", got.append, 50)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(sim)
    executor.add_node(user)
    try:
        end = time.monotonic() + 40.0
        while time.monotonic() < end and len({m.scene_id for m in got}) < 3:
            executor.spin_once(timeout_sec=0.01)
    finally:
        sim.destroy_node()
        user.destroy_node()
    assert len({m.scene_id for m in got}) >= 2, len(got)
    for msg in got:
        # mixed with two or more sources: at least one person and one loudspeaker in every scene
        assert {b.category for b in msg.boxes} == {"person", "loudspeaker"}
        assert len(msg.sources) == 2
        for s in msg.sources:
            assert s.category in ("person", "loudspeaker")
            assert msg.boxes[s.loudspeaker].category == s.category  # the talker's box is of its kind
            assert (msg.boxes[s.loudspeaker].label == "person") == (s.category == "person")
