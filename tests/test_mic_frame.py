"""The microphone's own frame (issue 22.5): FOA stamped `mic_link`, its mount looked up in TF.

Real rclpy nodes over Fast DDS (private random domain), the real classical estimator. A plane
wave from 30 deg left of the camera is recorded by a microphone mounted (a) aligned with the
camera, (b) turned 90 deg to the left (yaw), so that in its own axes the wave comes from 60 deg
to its right, (c) the legacy way: stamped with the image's optical frame and aligned with the
camera. jaeger_node must answer the same direction each time. The TF and the expected values
are written out by hand here (REP-103 and the optical convention), not taken from the code.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import Intrinsics, direction_from_azel
from jaeger_ros.msg import DoaEstimate, FoaAudio
from jaeger_ros.ros import convert as rc

OPTICAL = "camera_color_optical_frame"
# camera_link (x forward, y left, z up) <- optical (x right, y down, z forward), by hand
LINK_FROM_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)


def yaw(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)


def doa_heard(context, audio_frame: str, mount: np.ndarray | None, source_az_in_mic: float,
              stale_after_s: float = 3.0) -> tuple[list[DoaEstimate], dict]:
    """What jaeger_node answers for FOA from `source_az_in_mic` (the microphone's own azimuth,
    positive left) stamped `audio_frame`, with camera_link -> mic_link = `mount` (None: not in
    TF), and its drop counters."""
    from jaeger_ros.ros.jaeger_node import JaegerNode

    node = JaegerNode(context=context, parameter_overrides=[Parameter("stale_after_s", value=stale_after_s),
                                                            Parameter("vad", value=False)])  # noise, not speech
    src = rclpy.create_node("mic_rig", context=context)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    links = [rc.transform_to_msg(LINK_FROM_OPTICAL, "camera_link", OPTICAL, 0.0)]
    if mount is not None:
        links.append(rc.transform_to_msg(mount, "camera_link", "mic_link", 0.0))
    src.create_publisher(TFMessage, "/tf_static", latched).publish(TFMessage(transforms=links))
    pubs = [src.create_publisher(Image, "/camera/color/image_raw", 10),
            src.create_publisher(Image, "/camera/depth/image_raw", 10),
            src.create_publisher(CameraInfo, "/camera/color/camera_info", 10)]
    audio = src.create_publisher(FoaAudio, "/audio/foa", 100)
    got: list[DoaEstimate] = []
    src.create_subscription(DoaEstimate, "/jaeger/doa", got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(src)

    def spin(seconds: float, until=lambda: False) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            executor.spin_once(timeout_sec=0.01)

    try:
        spin(1.0)  # discovery, TF
        rng = np.random.default_rng(0)
        gains = foa.encode_gains(direction_from_azel(source_az_in_mic, 0.0))  # in the microphone's axes
        now = time.time()
        t = now - 1.5
        while t < now:
            audio.publish(rc.foa_to_msg(gains[:, None] * rng.standard_normal(800)[None] * 0.05, 16000,
                                        rc.make_header(t, audio_frame)))
            t += 0.05
            spin(0.003)
        header = rc.make_header(now - 0.05, OPTICAL)
        depth = np.full((120, 160), 2.5, np.float32)
        depth[40:80, 40:80] = 1.8  # something box-like before a wall
        for pub, msg in zip(pubs, (rc.numpy_to_image(np.full((120, 160, 3), 90, np.uint8), "rgb8", header),
                                   rc.depth_to_image(depth, header),
                                   rc.intrinsics_to_camera_info(Intrinsics.from_hfov(160, 120, 90.0), header))):
            pub.publish(msg)
        spin(5.0, lambda: bool(got) or node.drops["audio_tf"] > 0)
        return got, dict(node.drops)
    finally:
        node.destroy_node()
        src.destroy_node()


@pytest.mark.parametrize("case, audio_frame, mount, az_in_mic", [
    ("aligned", "mic_link", np.eye(4), 30.0),
    ("turned 90 deg left", "mic_link", yaw(90.0), 30.0 - 90.0),
    ("legacy optical stamp", OPTICAL, np.eye(4), 30.0),
])
def test_a_turned_microphone_gives_the_same_direction_as_an_aligned_one(context, case, audio_frame, mount,
                                                                         az_in_mic):
    got, drops = doa_heard(context, audio_frame, mount, az_in_mic)
    assert got, drops
    assert got[0].header.frame_id == OPTICAL and got[0].confidence > 0
    assert abs(got[0].azimuth_deg - 30.0) < 5.0, (case, got[0].azimuth_deg)


def test_a_microphone_missing_from_tf_is_named_not_guessed(context):
    """Audio in mic_link with no camera_link -> mic_link: the frame waits for TF, then is dropped
    as audio_tf (never answered with an unrotated direction)."""
    got, drops = doa_heard(context, "mic_link", None, 30.0 - 90.0, stale_after_s=1.0)
    assert not got and drops.get("audio_tf") == 1, drops
