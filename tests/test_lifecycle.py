"""jaeger_node as a managed node: real rclpy nodes over Fast DDS (private random domain).

Transitions through the lifecycle services (what `ros2 lifecycle set` calls), a configure
that fails on a bad checkpoint and succeeds once it is fixed, runtime parameter checks, the
no-input warning on /diagnostics, and the label contract of a matched box.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from jaeger_ros.core.geometry import Box3D
from jaeger_ros.msg import FoaAudio
from jaeger_ros.ros import convert as rc
from jaeger_ros.pipeline.frame import Estimate, labelled
from jaeger_ros.ros.jaeger_node import JaegerNode

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def rig(context):
    """An executor with a client node; nodes added to it are destroyed afterwards."""
    executor = SingleThreadedExecutor(context=context)
    client = rclpy.create_node("lifecycle_client", context=context)
    executor.add_node(client)
    nodes = [client]

    def add(node):
        executor.add_node(node)
        nodes.append(node)
        return node

    yield executor, client, add
    for node in reversed(nodes):
        node.destroy_node()


def call(executor, client, srv_type, name, request, timeout=10.0):
    cli = client.create_client(srv_type, name)
    end = time.monotonic() + timeout
    while not cli.service_is_ready():
        assert time.monotonic() < end, f"{name} never appeared"
        executor.spin_once(timeout_sec=0.05)
    future = cli.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), f"{name} did not answer"
    return future.result()


def change(executor, client, transition_id):
    return call(executor, client, ChangeState, "/jaeger_node/change_state",
                ChangeState.Request(transition=Transition(id=transition_id))).success


def state(executor, client):
    return call(executor, client, GetState, "/jaeger_node/get_state", GetState.Request()).current_state.id


def test_without_autostart_the_node_waits_and_follows_the_lifecycle_services(rig):
    executor, client, add = rig
    node = add(JaegerNode(context=client.context, parameter_overrides=[Parameter("autostart", value=False)]))
    assert state(executor, client) == State.PRIMARY_STATE_UNCONFIGURED
    assert node.estimator is None and client.count_publishers("/jaeger/speaker_match") == 0

    assert change(executor, client, Transition.TRANSITION_CONFIGURE)
    assert state(executor, client) == State.PRIMARY_STATE_INACTIVE
    assert node.estimator is not None and node.estimator.name == "classical"
    assert node.count_subscribers("/audio/foa") == 0  # inactive: not listening yet

    assert change(executor, client, Transition.TRANSITION_ACTIVATE)
    assert state(executor, client) == State.PRIMARY_STATE_ACTIVE
    assert node.count_subscribers("/audio/foa") == 1 and node.count_subscribers("/camera/depth/image_raw") == 1

    assert change(executor, client, Transition.TRANSITION_DEACTIVATE)
    assert node.count_subscribers("/audio/foa") == 0
    assert change(executor, client, Transition.TRANSITION_CLEANUP)
    assert state(executor, client) == State.PRIMARY_STATE_UNCONFIGURED
    assert node.estimator is None and node.buffer is None
    assert node.count_publishers("/jaeger/speaker_match") == 0


def test_bad_checkpoint_fails_configure_and_a_fixed_one_configures(rig, tmp_path):
    executor, client, add = rig
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "jaeger_config.json").write_text("{not json")
    node = add(JaegerNode(context=client.context, parameter_overrides=[
        Parameter("method", value="jaeger"), Parameter("checkpoint", value=str(tmp_path / "missing"))]))
    assert state(executor, client) == State.PRIMARY_STATE_UNCONFIGURED  # autostart tried and failed
    assert node.estimator is None
    for bad in (str(broken), "relative/missing"):
        assert node.set_parameters([Parameter("checkpoint", value=bad)])[0].successful  # unconfigured: accepted
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert state(executor, client) == State.PRIMARY_STATE_UNCONFIGURED
    assert node.set_parameters([Parameter("checkpoint", value="")])[0].successful  # the packaged checkpoint
    assert change(executor, client, Transition.TRANSITION_CONFIGURE)
    assert node.estimator is not None and node.estimator.name == "jaeger"


def test_bad_checkpoint_is_one_log_line_and_the_process_keeps_running(tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               RCUTILS_LOGGING_BUFFERED_STREAM="0")
    log = tmp_path / "node.log"
    missing = tmp_path / "no_such_checkpoint"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jaeger_ros.ros.jaeger_node", "--ros-args", "-p",
                                 "method:=jaeger", "-p", f"checkpoint:={missing}"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 90
        while "configure failed" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.05)
        assert proc.poll() is None  # unconfigured, still up
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    output = log.read_text()
    failed = [line for line in output.splitlines() if "configure failed" in line]
    assert len(failed) == 1 and str(missing) in failed[0] and "ERROR" in failed[0], output
    assert "Traceback" not in output and proc.returncode == 0, output


def test_parameters_are_checked_applied_live_or_held_for_configure(rig):
    executor, client, add = rig
    node = add(JaegerNode(context=client.context, parameter_overrides=[Parameter("rate_hz", value=10)]))
    assert node.p["rate_hz"] == 10.0 and isinstance(node.p["rate_hz"], float)  # an integer where a float is meant

    def set_one(name, value):
        return node.set_parameters([Parameter(name, value=value)])[0]

    # static typing: a live change cannot turn a double into an integer or a string
    for name, value, reason in [("rate_hz", 0.0, "rate_hz"), ("rate_hz", 1e6, "rate_hz"), ("rate_hz", "fast", "type"),
                                ("rate_hz", 4, "type"), ("window_s", 4.0, "audio_buffer_s"), ("window_s", -1.0, "window_s"),
                                ("target_voice", "child", "target_voice"), ("queue_size", 0, "queue_size"),
                                ("min_audio_rms", float("nan"), "min_audio_rms")]:
        result = set_one(name, value)
        assert not result.successful and reason in result.reason, (name, value, result.reason)
    assert node.p["rate_hz"] == 10.0 and node.get_parameter("rate_hz").type_ == Parameter.Type.DOUBLE

    assert set_one("rate_hz", 4.0).successful and node.p["rate_hz"] == 4.0
    assert node._process_timer.timer_period_ns == int(0.5e9 / 4.0)  # the processing timer follows rate_hz
    assert set_one("target_voice", "female").successful and node.p["target_voice"] == "female"

    for name, value in [("method", "jaeger"), ("audio_topic", "/other/foa"), ("sample_rate", 48000)]:
        result = set_one(name, value)
        assert not result.successful and "deactivate + cleanup + configure" in result.reason
    assert set_one("audio_topic", "not a topic!").successful is False

    node.trigger_deactivate()
    node.trigger_cleanup()
    assert set_one("audio_topic", "/other/foa").successful  # unconfigured: held for the next configure
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate()
    assert node.count_subscribers("/other/foa") == 1 and node.count_subscribers("/audio/foa") == 0


def test_no_input_warning_names_the_topics_on_diagnostics(rig):
    executor, client, add = rig
    node = add(JaegerNode(context=client.context, parameter_overrides=[
        Parameter("no_input_warn_s", value=0.3), Parameter("diagnostics_period_s", value=0.2)]))
    statuses = []
    client.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)

    def spin_until(predicate, timeout=10.0):
        end = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < end, [s.message for s in statuses[-3:]]
            executor.spin_once(timeout_sec=0.05)

    spin_until(lambda: any(s.level == DiagnosticStatus.WARN and "never delivered" in s.message for s in statuses))
    warning = next(s.message for s in statuses if "never delivered" in s.message)
    for topic in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/audio/foa"):
        assert f"{topic} (never delivered)" in warning
    assert "no synchronised frame set" in warning and "no audio" in warning

    pub = client.create_publisher(FoaAudio, "/audio/foa", 10)
    statuses.clear()

    def audio_flows():
        pub.publish(rc.foa_to_msg(np.zeros((4, 800), np.float32), 16000, rc.make_header(time.time(), "optical")))
        return any("/audio/foa (last" in s.message for s in statuses)

    spin_until(audio_flows)
    report = node.input_report()
    assert "no audio" not in report and "/camera/color/image_raw (never delivered)" in report


def test_a_matched_box_always_has_a_label():
    boxes = [Box3D(np.array([x, 0.0, 2.0]), np.array([0.3, 0.5, 0.3])) for x in (-1.0, 0.0, 1.0)]
    unlabelled = Estimate(boxes, np.array([0.0, 0.0, 1.0]), 0.9, 2, "", 0.8)
    assert labelled(unlabelled).label == "Right"
    assert labelled(Estimate(boxes[:2], None, 0.0, 0, "", 0.5)).label == "Left"
    kept = Estimate(boxes, None, 0.0, 1, "Center", 0.5)
    assert labelled(kept) is kept
    unmatched = Estimate(boxes, None, 0.0, -1, "", 0.0)
    assert labelled(unmatched).label == ""
