"""Voice identity on the wire, with real rclpy nodes over Fast DDS (private random domain,
localhost): jaeger_node names the voice it hears in SpeakerMatch (real silero + Resemblyzer on a
simulator voice), and jaeger_tracker keeps one TalkerArray track per voice id, carrying it."""
from __future__ import annotations

import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from jaeger_ros.core.geometry import Intrinsics, optical_to_camera
from jaeger_ros.msg import FoaAudio, SpeakerMatch, TalkerArray
from jaeger_ros.ros import convert as rc
from sim_bridge.acoustics import convolve_foa, foa_rir
from sim_bridge.robot import planar_pose
from sim_bridge.room import Room
from sim_bridge.speech import VOICES, make_sentence, synthesize_voice, trim_silence

OPTICAL = "camera_color_optical_frame"
RATE = 16000
CHUNK = 800  # 50 ms


def spin_for(executor: SingleThreadedExecutor, seconds: float, until=lambda: False) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        executor.spin_once(timeout_sec=0.01)
    return until()


def test_jaeger_node_publishes_the_voice_id_and_gender_it_hears(context):
    """A female test-split voice (flite slt) from a place in a room, streamed in real time at
    the node's rate: once its sentence is identified the SpeakerMatch says voice_0, female."""
    from jaeger_ros.ros.jaeger_node import JaegerNode

    voice = next(v for v in VOICES if v.key == "flite:slt")
    rng = np.random.default_rng(5)
    dry = trim_silence(synthesize_voice(voice, make_sentence("test", rng), rng)[0])
    room = Room((6.0, 3.0, 5.0), (0.25, 0.25, 0.3, 0.2, 0.25, 0.25))
    wet = convolve_foa(0.3 * dry / np.abs(dry).max(), foa_rir(room, np.array([2.0, 1.5, 1.0]), np.array([3.0, 1.2, 2.5]),
                                                             np.eye(3), rng=rng))
    lead, tail = int(1.0 * RATE), int(2.0 * RATE)
    audio = np.zeros((4, lead + wet.shape[1] + tail), np.float32)
    audio[:, lead:lead + wet.shape[1]] = wet
    audio += rng.normal(0, 2e-3, audio.shape).astype(np.float32)  # above min_audio_rms: every window is heard

    node = JaegerNode(context=context, parameter_overrides=[Parameter("stale_after_s", value=3.0),
                                                            Parameter("candidates", value="depth")])
    src = rclpy.create_node("voice_source", context=context)
    pubs = [src.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data),
            src.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data),
            src.create_publisher(CameraInfo, "/camera/color/camera_info", qos_profile_sensor_data)]
    pub_audio = src.create_publisher(FoaAudio, "/audio/foa", 100)
    matches: list[SpeakerMatch] = []
    src.create_subscription(SpeakerMatch, "/jaeger/speaker_match", matches.append, 50)
    executor = SingleThreadedExecutor(context=context)
    for n in (node, src):
        executor.add_node(n)
    width, height = 160, 120
    depth = np.full((height, width), 2.5, np.float32)
    depth[height // 3: 2 * height // 3, width // 4: width // 2] = 1.8
    intr = Intrinsics.from_hfov(width, height, 90.0)
    try:
        spin_for(executor, 1.0)  # autostart configured and activated it in the constructor; discovery
        clock = src.get_clock()
        t0 = clock.now().nanoseconds * 1e-9
        sent = 0
        for end in range(int(0.5 * RATE), audio.shape[1] + 1, int(0.1 * RATE)):
            while sent < end:   # audio up to the frame's stamp, in 50 ms chunks stamped at their first sample
                pub_audio.publish(rc.foa_to_msg(audio[:, sent:sent + CHUNK], RATE, rc.make_header(t0 + sent / RATE, OPTICAL)))
                sent += CHUNK
            header = rc.make_header(t0 + end / RATE, OPTICAL)
            for pub, msg in zip(pubs, (rc.numpy_to_image(np.full((height, width, 3), 90, np.uint8), "rgb8", header),
                                       rc.depth_to_image(depth, header), rc.intrinsics_to_camera_info(intr, header))):
                pub.publish(msg)
            spin_for(executor, max(0.0, t0 + end / RATE + 0.05 - clock.now().nanoseconds * 1e-9))
        spin_for(executor, 1.0)
        named = [m for m in matches if m.voice_id]
        assert named, f"{len(matches)} matches, none named a voice"
        assert {m.voice_id for m in named} == {"voice_0"} and {m.voice_gender for m in named} == {voice.gender}
        # named only after the sentence began (identity needs speech), and no later than its end + the hold
        first = min(rc.stamp_to_seconds(m.header.stamp) for m in named) - t0
        assert lead / RATE + 1.0 <= first <= (lead + dry.size) / RATE + 1.5, first
    finally:
        executor.shutdown()
        node.destroy_node()
        src.destroy_node()


LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0, 0, 0, 1.0]])


def _match(stamp: float, source_map: np.ndarray, map_from_optical: np.ndarray, voice_id: str, gender: str) -> SpeakerMatch:
    """A bearing-only SpeakerMatch (no box) towards `source_map` from the camera pose then."""
    p = (np.linalg.inv(map_from_optical) @ np.append(source_map, 1.0))[:3]
    header = rc.make_header(stamp, OPTICAL)
    doa = rc.doa_to_msg(optical_to_camera(p / np.linalg.norm(p)), 0.9, header)
    return SpeakerMatch(header=header, index=-1, doa=doa, confidence=0.0, method="classical",
                        voice_id=voice_id, voice_gender=gender)


def test_tracker_node_keeps_one_track_per_voice_id_and_publishes_it(context):
    """Two voices from two places; then, after a silence, the robot has turned 90 degrees and
    voice_0 speaks again: still two tracks, voice_0's the same track at the same place;
    TalkerArray and its markers carry the ids and genders."""
    from jaeger_ros.ros.tracker_node import TrackerNode
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    tracker = TrackerNode(context=context)
    sim = rclpy.create_node("voices_robot", context=context)
    static = sim.create_publisher(TFMessage, "/tf_static", QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
    base_from_optical = np.array([[1.0, 0, 0, 0.05], [0, 1.0, 0, 0], [0, 0, 1.0, 1.5], [0, 0, 0, 1.0]]) @ LINK_FROM_OPTICAL
    static.publish(TFMessage(transforms=[rc.transform_to_msg(np.eye(4), "map", "odom", 0.0),
                                         rc.transform_to_msg(base_from_optical, "base_link", OPTICAL, 0.0)]))
    pub_tf = sim.create_publisher(TFMessage, "/tf", 100)
    pub = sim.create_publisher(SpeakerMatch, "/jaeger/speaker_match", 50)
    got: list[TalkerArray] = []
    labels: list[MarkerArray] = []
    sim.create_subscription(TalkerArray, "/jaeger/talkers", got.append, 50)
    sim.create_subscription(MarkerArray, "/jaeger/talker_markers", labels.append, 50)
    executor = SingleThreadedExecutor(context=context)
    for n in (tracker, sim):
        executor.add_node(n)
    now = lambda: sim.get_clock().now().nanoseconds * 1e-9
    a, b = np.array([3.0, 1.0, 1.5]), np.array([2.0, -2.0, 1.5])
    try:
        spin_for(executor, 1.0)

        def hear(source: np.ndarray, yaw: float, voice_id: str, gender: str, frames: int = 5) -> None:
            for _ in range(frames):
                t = now()
                pub_tf.publish(TFMessage(transforms=[rc.transform_to_msg(planar_pose(0.0, 0.0, yaw), "odom", "base_link", t)]))
                spin_for(executor, 0.02)
                pub.publish(_match(t, source, planar_pose(0.0, 0.0, yaw) @ base_from_optical, voice_id, gender))
                spin_for(executor, 0.1)

        hear(a, 0.0, "voice_0", "male")
        hear(b, 0.0, "voice_1", "female")
        spin_for(executor, 1.0)   # 1 s of silence
        hear(a, np.pi / 2, "voice_0", "male", frames=10)  # the robot turned 90 deg; the first ~0.5 s: smeared, dropped
        spin_for(executor, 1.0)
        last = got[-1]
        assert sorted((t.voice_id, t.voice) for t in last.talkers) == [("voice_0", "male"), ("voice_1", "female")]
        first_ids = {t.voice_id: t.id for t in got[-1].talkers}
        early = next(m for m in got if any(t.voice_id == "voice_0" for t in m.talkers))
        assert {t.voice_id: t.id for t in early.talkers}["voice_0"] == first_ids["voice_0"]  # the same track
        mine = next(t for t in last.talkers if t.voice_id == "voice_0")
        place = np.array([mine.position.x, mine.position.y, mine.position.z])
        bearing = np.degrees(np.arccos(np.dot(place[:2], a[:2]) / np.linalg.norm(place[:2]) / np.linalg.norm(a[:2])))
        assert bearing < 5.0, bearing   # still where it is (a heard-only track's range is the prior's)
        assert mine.observations > 5    # heard from both headings
        texts = {m.text for m in labels[-1].markers if m.ns == "talker_labels"}
        assert any("voice_0 male" in s for s in texts) and any("voice_1 female" in s for s in texts), texts
    finally:
        executor.shutdown()
        tracker.destroy_node()
        sim.destroy_node()
