"""A lifecycle transition that fails says why once, rolls back, and the node recovers (issue 26.1).

Real rclpy nodes over Fast DDS (private random domain, localhost only). What the node holds is
counted from outside: publishers and subscriptions through the ROS graph API, threads through
threading.active_count(); the log through the process's stderr (capfd).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import Intrinsics, direction_from_azel
from jaeger_ros.msg import FoaAudio, SpeakerMatch
from jaeger_ros.ros import convert as rc
from jaeger_ros.ros import jaeger_node as jn

OPTICAL = "camera_color_optical_frame"
# what any unconfigured lifecycle node has: rosout, parameter events, its transition events, and
# (this node) the /diagnostics publisher it owns from construction
UNCONFIGURED_PUBLISHERS = {"/rosout", "/parameter_events", "/jaeger_node/transition_event", "/diagnostics"}
OUTPUTS = ("/jaeger/doa", "/jaeger/detections", "/jaeger/speaker_match", "/jaeger/markers")
INPUTS = ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/audio/foa")
# time for the graph to learn of removed endpoints (discovery) on a 2-core machine running the
# whole suite
GRAPH_WAIT_S = 20.0


class Rig:
    def __init__(self, context) -> None:
        self.context = context
        self.executor = SingleThreadedExecutor(context=context)
        self.client = rclpy.create_node("fault_client", context=context)
        self.executor.add_node(self.client)
        self.diag: list[DiagnosticStatus] = []
        self.client.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.diag.extend(m.status), 50)
        self.matches: list[SpeakerMatch] = []
        self.client.create_subscription(SpeakerMatch, "/jaeger/speaker_match", self.matches.append, 10)
        self.node: jn.JaegerNode | None = None

    def start(self, **params: object) -> jn.JaegerNode:
        overrides = {"diagnostics_period_s": 0.2, "stale_after_s": 3.0, **params}
        self.node = jn.JaegerNode(context=self.context,
                                  parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.executor.add_node(self.node)
        return self.node

    def spin(self, seconds: float, until=lambda: False) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return until()

    def graph_view(self) -> dict[str, object]:
        """What the ROS graph shows of jaeger_node: its publishers and subscriptions by name, and
        how many endpoints any participant has on its outputs and inputs."""
        return {"listed": ("jaeger_node", "/") in self.client.get_node_names_and_namespaces(),
                "pubs": {name for name, _ in self.client.get_publisher_names_and_types_by_node("jaeger_node", "/")},
                "subs": {name for name, _ in self.client.get_subscriber_names_and_types_by_node("jaeger_node", "/")},
                "output publishers": {t: self.client.count_publishers(t) for t in OUTPUTS},
                "input subscribers": {t: self.client.count_subscribers(t) for t in INPUTS}}

    def holds_only_its_unconfigured_entities(self) -> bool:
        """None of the node's inputs or outputs in the graph (by node: nothing beyond what an
        unconfigured node has; by topic: no endpoint on its inputs or outputs). Not that the node's
        own publishers are listed: two CI runs of the whole suite saw the graph list none of them,
        /rosout included, 5 and 20 s after this test's failed activate (rmw's association of
        endpoints with a node that is created, fails and releases within milliseconds), while the
        node held only its unconfigured publishers (assert_released checks those directly)."""
        view = self.graph_view()
        return (view["pubs"] <= UNCONFIGURED_PUBLISHERS and not view["subs"]
                and not any(view["output publishers"].values()) and not any(view["input subscribers"].values()))

    def assert_released(self) -> None:
        """The node's own handles at once (release is synchronous), then the graph, which learns of
        removed endpoints through discovery: given time on a loaded machine, and shown if it fails."""
        node = self.node
        assert {p.topic_name for p in node.publishers} <= UNCONFIGURED_PUBLISHERS
        assert not [s.topic_name for s in node.subscriptions]
        assert self.spin(GRAPH_WAIT_S, self.holds_only_its_unconfigured_entities), self.graph_view()

    def close(self) -> None:
        for node in (self.node, self.client):
            if node is not None:
                node.destroy_node()


@pytest.fixture
def rig(context):
    r = Rig(context)
    yield r
    r.close()


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "[ERROR]" in line and "jaeger_node" in line]


def answers_frames(r: Rig) -> bool:
    """Publish 1.2 s of FOA and one RGB-D frame set, and wait for the SpeakerMatch answering it."""
    src = r.client
    pubs = [src.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data),
            src.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data),
            src.create_publisher(CameraInfo, "/camera/color/camera_info", qos_profile_sensor_data)]
    audio = src.create_publisher(FoaAudio, "/audio/foa", 100)
    r.spin(1.0)  # discovery
    rng = np.random.default_rng(0)
    now = time.time()
    t = now - 1.2
    while t < now:
        samples = foa.encode_gains(direction_from_azel(30.0, 0.0))[:, None] * rng.standard_normal(800)[None] * 0.05
        audio.publish(rc.foa_to_msg(samples, 16000, rc.make_header(t, OPTICAL)))
        t += 0.05
        r.spin(0.003)
    header = rc.make_header(now - 0.05, OPTICAL)
    depth = np.full((120, 160), 2.5, np.float32)
    depth[40:80, 40:80] = 1.8
    for pub, msg in zip(pubs, (rc.numpy_to_image(np.full((120, 160, 3), 90, np.uint8), "rgb8", header),
                               rc.depth_to_image(depth, header),
                               rc.intrinsics_to_camera_info(Intrinsics.from_hfov(160, 120, 90.0), header))):
        pub.publish(msg)
    return r.spin(5.0, lambda: any(abs(rc.stamp_to_seconds(m.header.stamp) - (now - 0.05)) < 1e-6
                                   for m in r.matches))


@pytest.mark.parametrize("param, value, fix, names", [
    ("audio_topic", "/camera/color/image_raw", "/audio/foa",
     ("audio_topic", "color_topic", "jaeger_ros/msg/FoaAudio", "sensor_msgs/msg/Image")),
    ("match_topic", "/diagnostics", "/jaeger/speaker_match",
     ("match_topic", "diagnostics_topic", "jaeger_ros/msg/SpeakerMatch", "diagnostic_msgs/msg/DiagnosticArray")),
])
def test_a_topic_with_two_types_fails_configure_once_leaves_nothing_and_recovers(rig, capfd, param, value, fix,
                                                                                 names):
    threads = threading.active_count()
    node = rig.start(**{param: value})  # autostart: configure is tried at construction
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED and node._phase == "unconfigured"
    errors = error_lines(capfd.readouterr().err)
    assert len(errors) == 1 and "configure failed" in errors[0], errors
    assert all(n in errors[0] for n in names), errors[0]  # both parameters and both types named
    assert threading.active_count() == threads and node.estimator is None
    rig.assert_released()
    assert rig.spin(5.0, lambda: any(s.level == DiagnosticStatus.ERROR and param in s.message for s in rig.diag))
    why = next(s.message for s in rig.diag if s.level == DiagnosticStatus.ERROR)
    assert why.startswith("unconfigured: configure failed") and value in why, why
    # the documented recovery: set the parameter, configure, activate
    assert node.set_parameters([Parameter(param, value=fix)])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
    assert threading.active_count() == threads + 1  # the worker
    assert answers_frames(rig), dict(node.drops)
    assert not error_lines(capfd.readouterr().err)


def test_an_activate_that_raises_rolls_back_to_unconfigured(rig, capfd, monkeypatch):
    """Fault injection (the one stand-in here): the synchroniser raises after it has subscribed,
    as a failing create_subscription inside activate would."""
    real = jn.subscribe_synchronized

    def failing(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("injected: subscription refused")

    monkeypatch.setattr(jn, "subscribe_synchronized", failing)
    threads = threading.active_count()
    node = rig.start()
    errors = error_lines(capfd.readouterr().err)
    assert len(errors) == 1 and "activate failed" in errors[0] and "injected" in errors[0], errors
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED and node._phase == "unconfigured"
    assert threading.active_count() == threads and node.estimator is None
    rig.assert_released()
    assert rig.spin(5.0, lambda: any(s.level == DiagnosticStatus.ERROR and "activate failed" in s.message
                                     for s in rig.diag))
    monkeypatch.setattr(jn, "subscribe_synchronized", real)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert answers_frames(rig), dict(node.drops)


def test_diagnostics_exist_before_configure(rig):
    node = rig.start(autostart=False)
    assert rig.spin(5.0, lambda: any("waiting for configure" in s.message for s in rig.diag))
    assert node.set_parameters([Parameter("diagnostics_period_s", value=2.0)])[0].successful is False


def test_start_up_without_frames_yet_and_load_shedding_are_not_warnings(rig, capfd):
    """Issue 22.10: before the first frame set arrives (a simulator builds its first scene for
    seconds) missing input is INFO in the log (still WARN on /diagnostics); `superseded` is
    normal load shedding (INFO); a real fault stays a WARN."""
    node = rig.start(no_input_warn_s=0.3)
    assert rig.spin(5.0, lambda: any(s.level == DiagnosticStatus.WARN and "no synchronised frame set" in s.message
                                     for s in rig.diag))
    node._drop("superseded", "frame 1.0 was still waiting for the estimator when frame 1.1 became ready")
    node._drop("stale", "frame stamped 9.00 s ago")
    lines = [line for line in capfd.readouterr().err.splitlines() if "jaeger_node" in line]
    assert not [line for line in lines if "[WARN]" in line and "no synchronised frame set" in line], lines
    assert any("[INFO]" in line and "no synchronised frame set" in line for line in lines), lines
    assert any("[INFO]" in line and "dropped input (superseded)" in line for line in lines), lines
    assert any("[WARN]" in line and "dropped input (stale)" in line for line in lines), lines
