"""Transport and QoS of the node executables (issue 22.2, 22.3).

- Each node process loads the package's Fast DDS profile itself unless the user gave their own
  (a variable or a profile file in the working directory), so `ros2 run` needs no environment.
  The measured rate with plain processes is benchmarks/bench_ros_run.py's job (not timed here).
- Sensor topics are reliable by default (REP-2003 drivers): a subscriber with the default QoS
  (reliable, keep last 10) receives sim_bridge's images and audio, a sensor-data (best-effort)
  one does too, and `qos_overrides` parameters change a publisher's policy (real rclpy nodes).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from jaeger_ros.msg import FoaAudio
from jaeger_ros.ros import runner

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in (*runner.PROFILE_VARIABLES, "RMW_IMPLEMENTATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_the_package_profile_is_loaded_unless_the_user_has_one(clean_env, tmp_path):
    import os

    profile = runner.large_data_profile()
    assert profile is not None and profile.name == "fastdds.xml" and "segment_size" in profile.read_text()
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile)
    mine = tmp_path / "mine.xml"
    for var in runner.PROFILE_VARIABLES:  # the user's variable: left alone
        clean_env.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
        clean_env.setenv(var, str(mine))
        assert runner.large_data_profile() is None and os.environ[var] == str(mine)
        clean_env.delenv(var)
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")  # the user's file: Fast DDS loads it
    assert runner.large_data_profile() is None and "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").unlink()
    clean_env.setenv("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp")  # not Fast DDS: nothing to load
    assert runner.large_data_profile() is None


def test_a_default_qos_subscriber_receives_images_and_audio(context):
    from sim_bridge.node import SimBridgeNode

    sim = SimBridgeNode(context=context, parameter_overrides=[
        Parameter("width", value=160), Parameter("height", value=120), Parameter("speech_pool", value=1),
        Parameter("qos_overrides./camera/color/camera_info.publisher.reliability", value="best_effort")])
    user = rclpy.create_node("image_tool", context=context)
    got = {"rgb": 0, "depth": 0, "audio": 0, "rgb_sensor": 0}
    user.create_subscription(Image, "/camera/color/image_raw", lambda m: got.__setitem__("rgb", got["rgb"] + 1), 10)
    user.create_subscription(Image, "/camera/depth/image_raw", lambda m: got.__setitem__("depth", got["depth"] + 1),
                             10)
    user.create_subscription(FoaAudio, "/audio/foa", lambda m: got.__setitem__("audio", got["audio"] + 1), 10)
    user.create_subscription(Image, "/camera/color/image_raw",
                             lambda m: got.__setitem__("rgb_sensor", got["rgb_sensor"] + 1), qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(sim)
    executor.add_node(user)
    try:
        end = time.monotonic() + 20.0
        while time.monotonic() < end and not (min(got.values()) >= 5):
            executor.spin_once(timeout_sec=0.01)
        offered = {name: user.get_publishers_info_by_topic(name)[0].qos_profile.reliability
                   for name in ("/camera/color/image_raw", "/audio/foa", "/camera/color/camera_info")}
    finally:
        sim.destroy_node()
        user.destroy_node()
    assert min(got.values()) >= 5, got
    assert offered["/camera/color/image_raw"] == ReliabilityPolicy.RELIABLE
    assert offered["/audio/foa"] == ReliabilityPolicy.RELIABLE
    assert offered["/camera/color/camera_info"] == ReliabilityPolicy.BEST_EFFORT  # qos_overrides applied
