"""Real rclpy nodes over Fast DDS (private random domain, localhost only).

sim_bridge -> jaeger_node -> a subscriber, scored against /sim/ground_truth; malformed and
unsynchronised input is dropped while the node keeps running; the live demo runs its nodes as
separate processes. The launch files are tested in test_launch_args.py.
"""
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from jaeger_ros.core import foa
from jaeger_ros.ros import convert as rc
from jaeger_ros.core.geometry import Intrinsics, camera_to_optical, direction_from_azel, great_circle_deg
from jaeger_ros.msg import DoaEstimate, FoaAudio, SimGroundTruth, SpeakerMatch

REPO = Path(__file__).resolve().parent.parent
OPTICAL = "camera_color_optical_frame"

try:
    from diagnostic_msgs.msg import DiagnosticArray
except ImportError:  # pragma: no cover
    DiagnosticArray = None


def spin_for(executor, seconds, until=lambda: False):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        executor.spin_once(timeout_sec=0.01)


def test_sim_bridge_to_jaeger_node_matches_ground_truth(context):
    from jaeger_ros.ros.jaeger_node import JaegerNode
    from sim_bridge.node import SimBridgeNode

    # the node first: its configure loads the loudspeaker classifier (torch, ~1-2 s), and frames the
    # simulator stamped meanwhile would arrive stale
    node = JaegerNode(context=context)
    sim = SimBridgeNode(context=context, parameter_overrides=[  # the plumbing, on noise-free scenes
        Parameter("scene_period_s", value=4.0), Parameter("seed", value=3), Parameter("speech_pool", value=3),
        Parameter("conditions", value="clean")])
    listener = rclpy.create_node("listener", context=context)
    got = {"match": [], "gt": {}, "markers": [], "tf": {}, "diag": [], "doa": []}
    listener.create_subscription(SpeakerMatch, "/jaeger/speaker_match", got["match"].append, 50)
    listener.create_subscription(DoaEstimate, "/jaeger/doa", got["doa"].append, 50)
    listener.create_subscription(MarkerArray, "/jaeger/markers", got["markers"].append, 50)
    listener.create_subscription(SimGroundTruth, "/sim/ground_truth",
                                 lambda m: got["gt"].__setitem__(Scorer.key(m.header.stamp), m), 50)

    def on_tf(msg: TFMessage) -> None:
        for t in msg.transforms:
            got["tf"][(t.header.frame_id, t.child_frame_id)] = t

    listener.create_subscription(TFMessage, "/tf", on_tf, 50)
    listener.create_subscription(TFMessage, "/tf_static", on_tf, QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
    if DiagnosticArray is not None:
        listener.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, 10)
    executor = SingleThreadedExecutor(context=context)
    for n in (sim, node, listener):
        executor.add_node(n)
    try:
        spin_for(executor, 9.0)
    finally:
        for n in (sim, node, listener):
            n.destroy_node()
    matches = got["match"]
    assert len(matches) >= 20, f"only {len(matches)} speaker_match messages; drops {dict(node.drops)}"
    # superseded: frames shed while the estimator was busy (CPU load), not bad input
    assert not {k: v for k, v in node.drops.items() if k != "superseded"}, dict(node.drops)
    scored, correct, errors = 0, 0, []
    for m in matches:
        assert m.header.frame_id == OPTICAL and m.method == "classical"
        assert [b.id for b in m.candidates] == list(range(len(m.candidates)))
        xs = [b.center.position.x for b in m.candidates]
        assert xs == sorted(xs)  # left to right
        gt = got["gt"][Scorer.key(m.header.stamp)]  # every output answers a real frame
        talking = [s for s in gt.sources if s.active_for_s >= 0.5]
        if m.doa.confidence > 0:  # optical direction agrees with the reference angles
            expect = camera_to_optical(direction_from_azel(m.doa.azimuth_deg, m.doa.elevation_deg))
            np.testing.assert_allclose([m.doa.direction.x, m.doa.direction.y, m.doa.direction.z], expect, atol=1e-6)
        if len(talking) == 1 and len(gt.boxes) == len(m.candidates):
            scored += 1
            correct += m.label == talking[0].label
            errors.append(great_circle_deg(m.doa.azimuth_deg, m.doa.elevation_deg,
                                           talking[0].azimuth_deg, talking[0].elevation_deg))
    assert scored >= 10, f"only {scored} frames with one talker and all boxes found"
    assert correct / scored >= 0.8, f"match accuracy {correct}/{scored}"
    assert np.median(errors) < 15.0
    # markers: stable ids per namespace, lifetimes set, one DoA arrow from the camera origin
    last = got["markers"][-1].markers
    boxes = [mk for mk in last if mk.ns == "jaeger_boxes"]
    assert [mk.id for mk in boxes] == list(range(len(boxes))) and all(mk.type == Marker.LINE_LIST for mk in boxes)
    assert all(mk.lifetime.nanosec > 0 or mk.lifetime.sec > 0 for mk in last)
    assert all(mk.header.frame_id == OPTICAL for mk in last)
    # a matched box always has its position label, on the message and on the marker text
    assert all(m.label for m in matches if m.index >= 0)
    talking = [mk.text for ma in got["markers"] for mk in ma.markers
               if "talking" in mk.text and mk.ns != "jaeger_legend"]  # the legend names the colours
    assert talking and all(re.fullmatch(r"bbox_\d+ loudspeaker (Left|Center|Right)( \d)? \(talking, [0-9.]+\)", t)
                           for t in talking), talking[:3]
    # candidates: the classified loudspeakers (the default), each with its category and score, and
    # the match names the matched candidate's category (the simulator's talkers are loudspeakers)
    assert all(b.category == "loudspeaker" and 0.5 <= b.score <= 1.0 for m in matches for b in m.candidates)
    assert all(m.category == "loudspeaker" for m in matches if m.index >= 0)
    assert all(m.category == "" for m in matches if m.index < 0)
    # the TF chain (/tf_static and /tf) composes to the camera pose in the ground truth
    tf = {k: rc.pose_from_msg(_as_pose(v)) for k, v in got["tf"].items()}
    chain = tf[("map", "odom")] @ tf[("odom", "base_link")] @ tf[("base_link", "camera_link")] @ \
        tf[("camera_link", OPTICAL)]
    latest_gt = max(got["gt"].values(), key=lambda m: Scorer.key(m.header.stamp))
    np.testing.assert_allclose(chain, rc.pose_from_msg(latest_gt.camera_pose), atol=1e-6)
    assert abs(tf[("odom", "base_link")][2, 3]) < 1e-9  # base_link on the floor
    if DiagnosticArray is not None:
        status = got["diag"][-1].status[0]
        assert status.name == "jaeger_node: pipeline"
        assert int(dict((kv.key, kv.value) for kv in status.values)["processed"]) > 0


def _as_pose(t):
    from geometry_msgs.msg import Pose
    p = Pose()
    p.position.x, p.position.y, p.position.z = t.transform.translation.x, t.transform.translation.y, t.transform.translation.z
    p.orientation = t.transform.rotation
    return p


class Scorer:
    @staticmethod
    def key(stamp):
        return stamp.sec * 1_000_000_000 + stamp.nanosec


def _frame(stamp, width=160, height=120, depth_value=2.5, depth_shape=None):
    intr = Intrinsics.from_hfov(width, height, 90.0)
    header = rc.make_header(stamp, OPTICAL)
    rgb = np.full((height, width, 3), 90, np.uint8)
    dh, dw = depth_shape or (height, width)
    depth = np.full((dh, dw), depth_value, np.float32)
    depth[dh // 3: 2 * dh // 3, dw // 4: dw // 2] = 1.8  # something box-like in front of a wall
    return (rc.numpy_to_image(rgb, "rgb8", header), rc.depth_to_image(depth, header),
            rc.intrinsics_to_camera_info(intr, header))


def test_malformed_and_unsynchronised_input_is_dropped_and_the_node_keeps_running(context):
    from jaeger_ros.ros.jaeger_node import JaegerNode

    node = JaegerNode(context=context, parameter_overrides=[Parameter("stale_after_s", value=3.0),
                                                            Parameter("vad", value=False)])  # noise, not speech
    src = rclpy.create_node("source", context=context)
    pub_rgb = src.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
    pub_depth = src.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data)
    pub_info = src.create_publisher(CameraInfo, "/camera/color/camera_info", qos_profile_sensor_data)
    pub_audio = src.create_publisher(FoaAudio, "/audio/foa", 50)
    matches = []
    src.create_subscription(SpeakerMatch, "/jaeger/speaker_match", matches.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(src)
    spin_for(executor, 1.0)  # discovery

    def send_frame(msgs):
        for pub, msg in zip((pub_rgb, pub_depth, pub_info), msgs):
            pub.publish(msg)
        spin_for(executor, 0.3)

    source_dir = direction_from_azel(30.0, -10.0)
    rng = np.random.default_rng(0)
    now = time.time()
    t = now - 1.2
    chunk = 800
    while t < now:  # 1.2 s of a plane wave from (30, -10), stamped at the first sample
        samples = foa.encode_gains(source_dir)[:, None] * rng.standard_normal(chunk)[None] * 0.05
        pub_audio.publish(rc.foa_to_msg(samples, 16000, rc.make_header(t, OPTICAL), "FUMA", "N3D"))
        t += chunk / 16000
        spin_for(executor, 0.005)
    bad = rc.foa_to_msg(np.zeros((4, chunk)), 16000, rc.make_header(t, OPTICAL))
    bad.channels = 3
    pub_audio.publish(bad)
    bad = rc.foa_to_msg(np.zeros((4, chunk)), 8000, rc.make_header(t, OPTICAL))
    pub_audio.publish(bad)
    bad = rc.foa_to_msg(np.full((4, chunk), np.nan), 16000, rc.make_header(t, OPTICAL))
    pub_audio.publish(bad)
    spin_for(executor, 0.3)
    assert node.drops["audio"] == 3

    stamp = now - 0.3
    send_frame(_frame(stamp, depth_shape=(60, 80)))  # depth of another size
    rgb, _, info = _frame(stamp + 0.1)
    send_frame((rgb, rc.depth_to_image(np.full((120, 160), np.nan), rgb.header), info))  # no valid depth
    assert node.drops["frame"] == 2 and not matches
    send_frame(_frame(now - 10.0))  # stale
    assert node.drops["stale"] == 3  # colour, depth and camera_info, each named
    rgb, depth, info = _frame(stamp + 0.2)
    depth.header = rc.make_header(stamp + 0.25, OPTICAL)  # beyond slop (0.02 s): never a set
    send_frame((rgb, depth, info))
    assert not matches
    send_frame(_frame(stamp + 0.3))  # well-formed and synchronised
    spin_for(executor, 1.0, until=lambda: bool(matches))
    node.destroy_node()
    src.destroy_node()
    assert len(matches) == 1, dict(node.drops)
    m = matches[0]
    assert rc.stamp_to_seconds(m.header.stamp) == pytest.approx(stamp + 0.3, abs=1e-6) and m.header.frame_id == OPTICAL
    assert great_circle_deg(m.doa.azimuth_deg, m.doa.elevation_deg, 30.0, -10.0) < 5.0
    # the optical-frame unit vector points left (-x), down (+y) and ahead (+z)
    assert m.doa.direction.x < 0 and m.doa.direction.y > 0 and m.doa.direction.z > 0


def test_live_demo_runs_nodes_as_separate_processes(tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "jaeger_ros.ros.live_demo", "--duration", "4", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["messages"] > 0 and summary["latency_p50_ms"] > 0
    assert (tmp_path / "last_frame.png").stat().st_size > 0 and (tmp_path / "topdown.png").stat().st_size > 0
    assert "rate" in proc.stdout and "match" in proc.stdout and "scoring:" in proc.stdout
    # box match scores every talker frame, the label match only those with all candidates found
    assert summary["talker_frames"] >= summary["scored_frames"] and summary["box_correct"] <= summary["talker_frames"]


def test_categories_flow_from_estimate_to_message_and_marker():
    """A person and a loudspeaker as the pipeline hands them over (detectors' labels, scores):
    the message says each category, and the markers colour them apart (loudspeaker green, person
    blue, the matched one red) and name the category in the text."""
    from jaeger_ros.core.geometry import Box3D
    from jaeger_ros.pipeline.frame import Estimate
    from jaeger_ros.ros.jaeger_node import markers_for

    person = Box3D(np.array([-0.8, 0.0, -3.0]), np.array([0.5, 1.7, 0.4]), label="person", score=0.9)
    speaker = Box3D(np.array([0.8, -0.5, -3.0]), np.array([0.3, 0.6, 0.3]), label="loudspeaker", score=0.8,
                    extra={"category": "loudspeaker"})
    header = rc.make_header(1.0, OPTICAL)
    for matched in (-1, 0, 1):
        est = Estimate([person, speaker], None, 0.0, matched, ["", "Left", "Right"][matched + 1], 0.5)
        msgs = [rc.box_to_msg(b, i) for i, b in enumerate(est.boxes)]
        assert [(m.category, round(m.score, 3)) for m in msgs] == [("person", 0.9), ("loudspeaker", 0.8)]
        assert est.category == ["", "person", "loudspeaker"][matched + 1]
        markers = markers_for(est, header, 0.5).markers
        outline = {mk.id: mk.color for mk in markers if mk.ns == "jaeger_boxes"}
        text = {mk.id: mk.text for mk in markers if mk.ns == "jaeger_labels"}
        dominant = {k: max("rgb", key=lambda ch: getattr(c, ch)) for k, c in outline.items()}
        expect = {0: "b", 1: "g"}
        if matched >= 0:
            expect[matched] = "r"
        assert dominant == expect
        assert text[0].startswith("bbox_0 person") and text[1].startswith("bbox_1 loudspeaker")
