"""Node parameters as `ros2 param describe/set` and `ros2 run ... -p` see them (issue 22.6, 22.8).

Every node executable: each parameter has a description, a static type, a range where it is a
number, and is read_only when a live change cannot apply (so `ros2 param set` is refused with
the reason instead of accepted and ignored). sim_bridge with a bad parameter: one line, exit 1,
no traceback (real processes).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("arg, says", [("scenario:=bogus", "scenario"), ("camera_rate_hz:=0.0", "camera_rate_hz"),
                                       ("width:=abc", "width")])
def test_sim_bridge_with_a_bad_parameter_prints_one_line_and_exits_1(arg, says):
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "sim_bridge.node", "--ros-args", "-p", arg], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert says in lines[0] and "Traceback" not in lines[0], lines


def _nodes(context):
    from jaeger_ros.ros.jaeger_node import JaegerNode
    from jaeger_ros.ros.tracker_node import TrackerNode
    from jaeger_ros.ros.turn_to_speaker import TurnToSpeaker
    from sim_bridge.node import SimBridgeNode

    return [JaegerNode(context=context, parameter_overrides=[Parameter("autostart", value=False)]),
            SimBridgeNode(context=context, parameter_overrides=[Parameter("speech_pool", value=1)]),
            TrackerNode(context=context), TurnToSpeaker(context=context)]


def test_every_parameter_is_described_statically_typed_and_ranged(context):
    from jaeger_ros.ros import foa_capture_node
    from jaeger_ros.ros.params import descriptor

    nodes = _nodes(context)
    try:
        for node in nodes:
            names = [n for n in node._parameters if n != "use_sim_time" and not n.startswith("qos_overrides.")]
            assert len(names) >= 10, node.get_name()
            for d in node.describe_parameters(names):
                assert d.description.strip() and not d.dynamic_typing, (node.get_name(), d.name)
                if d.type in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_INTEGER):
                    assert d.floating_point_range or d.integer_range, (node.get_name(), d.name)
        # foa_capture cannot start here (no audio device): its table gives the same descriptors
        for spec in foa_capture_node.PARAMETERS:
            d = descriptor(spec)
            assert d.description.strip() and d.read_only and not d.dynamic_typing
    finally:
        for node in nodes:
            node.destroy_node()


def test_a_live_change_that_cannot_apply_is_refused_with_the_reason(context):
    nodes = {n.get_name(): n for n in _nodes(context)}
    try:
        for node, name, value in [("sim_bridge", "camera_rate_hz", 5.0), ("sim_bridge", "scenario", "dual"),
                                  ("jaeger_tracker", "gate_deg", 10.0), ("turn_to_speaker", "max_angular_rps", 0.3),
                                  ("jaeger_node", "diagnostics_period_s", 2.0)]:
            result = nodes[node].set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and "read-only" in result.reason, (node, name, result.reason)
            assert "restart the node" in nodes[node].describe_parameter(name).description
        # what does apply live is accepted and used
        behaviour = nodes["turn_to_speaker"]
        assert behaviour.set_parameters([Parameter("min_confidence", value=0.7)])[0].successful
        assert behaviour.p["min_confidence"] == 0.7
        # out of range and wrong type: refused, named
        result = behaviour.set_parameters([Parameter("min_confidence", value=2.0)])[0]
        assert not result.successful and "min_confidence" in result.reason
        result = behaviour.set_parameters([Parameter("min_confidence", value="high")])[0]
        assert not result.successful and "type" in result.reason
        # an integer literal for a double at start-up is the double (as `-p camera_rate_hz:=10`)
        from sim_bridge.node import SimBridgeNode
        sim = SimBridgeNode(context=context, parameter_overrides=[Parameter("camera_rate_hz", value=10),
                                                                  Parameter("speech_pool", value=1)])
        assert sim.p["camera_rate_hz"] == 10.0 and isinstance(sim.p["camera_rate_hz"], float)
        sim.destroy_node()
    finally:
        for node in nodes.values():
            node.destroy_node()
