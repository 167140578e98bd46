"""Frames answered per second and audio gaps when the camera sends very large frames (issue 26.3).

A source PROCESS publishes a 10 Hz RGB-D stream (rgb8 + 32FC1 depth + camera_info, reliable,
what sim_bridge offers) of WIDTHxHEIGHT pixels plus contiguous 50 ms FOA chunks; jaeger_node
(classical, default max_pixels 4,000,000) runs in this process. Both load the package's Fast DDS
profile as the node executables do. After `--warmup` s it counts for `--seconds` s: frame sets
the source sent, frames answered (SpeakerMatch) per second, audio gaps the node's ring buffer
marked (chunks that arrived late or never), and the drop counters. One JSON line per size.

At 2000x2000 (= max_pixels, processed) the question is the rate the estimator sustains on the
newest frame; at 4096x4096 (refused from the header) what the transfer alone costs the audio.

Usage: python benchmarks/bench_oversized.py [--sizes 640x480 2000x2000 4096x4096] [--seconds 15]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OPTICAL = "camera_color_optical_frame"


def source(width: int, height: int, seconds: float) -> None:
    """The camera + microphone process: publishes until `seconds` have passed, prints frames sent."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from jaeger_ros.core import foa
    from jaeger_ros.core.geometry import Intrinsics, direction_from_azel
    from jaeger_ros.msg import FoaAudio
    from jaeger_ros.ros import convert as rc
    from jaeger_ros.ros.runner import large_data_profile

    large_data_profile()
    rclpy.init()
    node = rclpy.create_node("big_camera")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pubs = [node.create_publisher(Image, "/camera/color/image_raw", qos),
            node.create_publisher(Image, "/camera/depth/image_raw", qos),
            node.create_publisher(CameraInfo, "/camera/color/camera_info", qos)]
    audio = node.create_publisher(FoaAudio, "/audio/foa", QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
    header = rc.make_header(0.0, OPTICAL)
    intr = Intrinsics.from_hfov(width, height, 90.0)
    # a wall 3 m ahead, the floor 1.2 m below the camera, a box standing on it
    rows = np.arange(height, dtype=np.float32)[:, None] - intr.cy
    floor = np.where(rows > 0, 1.2 * intr.fy / np.maximum(rows, 1e-3), np.inf)
    depth = np.broadcast_to(np.minimum(3.0, floor), (height, width)).astype(np.float32).copy()
    depth[height // 3: int(0.8 * height), width // 4: width // 2] = 1.8
    rgb_msg = rc.numpy_to_image(np.full((height, width, 3), 90, np.uint8), "rgb8", header)
    depth_msg = rc.depth_to_image(depth, header)
    gains = foa.encode_gains(direction_from_azel(30.0, 0.0))
    rng = np.random.default_rng(0)
    t0 = time.time()
    frames, chunks = 0, 0
    while time.time() - t0 < seconds:
        now = time.time()
        while t0 + (chunks + 1) * 0.05 <= now:  # a chunk once its last sample is "captured"
            audio.publish(rc.foa_to_msg(gains[:, None] * rng.standard_normal(800)[None] * 0.05, 16000,
                                        rc.make_header(t0 + chunks * 0.05, OPTICAL)))
            chunks += 1
        if t0 + frames * 0.1 <= now:
            stamp = rc.seconds_to_stamp(t0 + frames * 0.1)
            rgb_msg.header.stamp = depth_msg.header.stamp = stamp
            for pub, msg in zip(pubs, (rgb_msg, depth_msg, rc.intrinsics_to_camera_info(intr, rc.make_header(
                    stamp, OPTICAL)))):
                pub.publish(msg)
            frames = max(frames + 1, int((time.time() - t0) * 10))  # late: skip, as a camera does
        time.sleep(0.002)
    print(json.dumps({"frames_sent": frames, "chunks_sent": chunks}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def measure(width: int, height: int, seconds: float, warmup: float) -> dict:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from jaeger_ros.msg import SpeakerMatch
    from jaeger_ros.ros.jaeger_node import JaegerNode

    proc = subprocess.Popen([sys.executable, __file__, "--source", f"{width}x{height}",
                             "--seconds", str(seconds + warmup + 3)], stdout=subprocess.PIPE, text=True)
    ctx = Context()
    rclpy.init(context=ctx)
    node = JaegerNode(context=ctx)
    listener = rclpy.create_node("answers", context=ctx)
    answered = []
    listener.create_subscription(SpeakerMatch, "/jaeger/speaker_match", lambda m: answered.append(time.monotonic()), 50)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    executor.add_node(listener)

    def spin(s: float) -> None:
        end = time.monotonic() + s
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)

    spin(warmup)
    start, gaps0, gap_ms0, drops0 = time.monotonic(), node.buffer.stats.gaps, node.buffer.gap_ms, dict(node.drops)
    spin(seconds)
    end = time.monotonic()
    result = {"size": f"{width}x{height}", "seconds": seconds,
              "answered_per_s": round(sum(start <= t < end for t in answered) / seconds, 2),
              "audio_gaps": node.buffer.stats.gaps - gaps0, "audio_gap_ms": round(node.buffer.gap_ms - gap_ms0, 1),
              "drops": {k: v - drops0.get(k, 0) for k, v in node.drops.items() if v - drops0.get(k, 0)}}
    node.destroy_node()
    listener.destroy_node()
    rclpy.shutdown(context=ctx)
    out, _ = proc.communicate(timeout=60)
    sent = json.loads(out.strip().splitlines()[-1])
    result["source_frames_per_s"] = round(sent["frames_sent"] / (seconds + warmup + 3), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "2000x2000", "4096x4096"])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.source:
        w, h = (int(v) for v in args.source.split("x"))
        source(w, h, args.seconds)
        return
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    from jaeger_ros.ros.runner import large_data_profile
    large_data_profile()
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        print(json.dumps(measure(w, h, args.seconds, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
