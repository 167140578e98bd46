"""sim_bridge ROS 2 node: publishes the live simulated world (sim_bridge.live) in real time.

Topics (relative names, so a namespace moves them; /tf, /tf_static absolute): colour image (rgb8),
depth image (32FC1 metres, NaN = no return), camera_info, FOA audio chunks (jaeger_ros/FoaAudio,
stamped at their FIRST sample, frame `mic_frame`), ground truth (jaeger_ros/SimGroundTruth in the
optical frame, stamped like the frame it describes) and TF. Images, camera_info and audio are
reliable, keep last 5/20 (REP-2003 drivers such as realsense-ros and usb_cam offer reliable), so a
default subscriber gets them and a sensor-data (best-effort) one does too; each is changeable per
topic with `qos_overrides.<topic>.publisher.<policy>` parameters. Ground truth is reliable.

TF (tf2_msgs/TFMessage, REP-105 chain from sim_bridge.live.tf_links): map -> odom -> base_link
-> camera_link -> `optical_frame` (the frame_id of every image, camera_info and ground truth),
and camera_link -> `mic_frame` (the microphone: at the camera, REP-103 axes = the ambisonic axes).
The moving links (odom -> base_link, base_link -> camera_link: new each scene) go on /tf with
every frame, stamped like it; the fixed ones (map -> odom, camera_link -> optical, camera_link ->
mic) go once at start-up on /tf_static (reliable, transient local: late subscribers get them too).

Parameters: described, typed and ranged (`ros2 param describe`), all read at start-up (read-only:
`ros2 param set` is refused with the reason); a bad one stops the start-up with one line (exit 1).

Scenario "party" (sim_bridge.live.PartyWorld): a robot base that executes geometry_msgs/TwistStamped
(or Twist with cmd_vel_stamped false) on `cmd_vel_topic` (linear.x, angular.z; held for the base's
command timeout), talkers taking turns around it, and TF with a moving map -> odom (the
localiser's correction of the drifting wheel odometry odom -> base_link) and a fixed mast base_link -> camera_link (/tf_static). The
base's links also go on /tf at `odom_rate_hz`, stamped now, between camera frames: a behaviour
that steers the base reads its odometry from them without waiting for (or lagging with) frames.

Rendering in "party" runs on a worker thread: a frame's truth and TF are taken at its capture
time, its image is published with them once rendered (a frame due while the worker is still busy
is skipped and counted), so a slow render delays images, never the audio, odometry or cmd_vel.

Pacing: a 5 ms timer compares the ROS clock with the schedule: frame k is captured at
t0 + k / camera_rate_hz and published then; audio chunk j covers [t0 + j c, t0 + (j+1) c)
and is published once its last sample has been "captured" (at its end), as a sound card does.
Audio is synthesised one chunk ahead, so the ground truth of a frame already knows which
loudspeakers are talking at its stamp.
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from geometry_msgs.msg import Point, Twist, TwistStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from jaeger_ros.ros import convert as rc
from jaeger_ros.core.geometry import CAMERA_LINK_FRAME, camera_to_optical
from jaeger_ros.msg import FoaAudio, SimGroundTruth, SimSource
from sim_bridge.live import OPTICAL_FRAME, SCENARIOS, FrameLink, GroundTruth, LiveConfig, LiveWorld, PartyWorld, make_world
from jaeger_ros.ros.params import Spec, declare
from jaeger_ros.ros.runner import run_node

STATIC_TF_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
"""What tf2's static broadcaster offers: the last message kept for subscribers that join later."""


def tf_message(links: list[FrameLink], stamp: float) -> TFMessage:
    return TFMessage(transforms=[rc.transform_to_msg(link.transform, link.parent, link.child, stamp)
                                 for link in links])


def _point(p: np.ndarray) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def ground_truth_to_msg(gt: GroundTruth, frame_id: str) -> SimGroundTruth:
    header = rc.make_header(gt.time, frame_id)
    sources = [SimSource(gender=s.gender, loudspeaker=s.loudspeaker, category=c, label=s.label, active=s.active,
                         active_for_s=float(s.active_for_s), azimuth_deg=s.azimuth_deg,
                         elevation_deg=s.elevation_deg,
                         direction=rc.vector_to_msg(camera_to_optical(s.direction)),
                         position=_point(p), in_view=bool(seen), drr_db=float(drr))
               for s, p, seen, c, drr in zip(gt.sources, gt.positions_map, gt.in_view, gt.source_categories(),
                                              gt.source_drr_db())]
    return SimGroundTruth(header=header, scene_id=gt.scene_id, scenario=gt.scenario,
                          boxes=[rc.box_to_msg(b, i) for i, b in enumerate(gt.boxes)], sources=sources,
                          camera_pose=rc.pose_to_msg(gt.map_from_optical),
                          room_size=rc.vector_to_msg(gt.room_size_map), room_origin=_point(gt.room_origin_map))


MIC_FRAME = "mic_link"
"""The microphone's own frame (REP-103 axes = the ambisonic axes: X forward, Y left, Z up)."""

PARAMETERS: tuple[Spec, ...] = (
    Spec("scenario", "single", "single: one loudspeaker talks; dual: a male and a female voice overlap; party: "
         "talkers take turns around a robot base that executes cmd_vel", choices=SCENARIOS),
    Spec("conditions", "realistic", "sensing preset (sim_bridge/conditions.py): clean | realistic | hard | diffuse@SNR"),
    Spec("world", "procedural", "procedural shoebox rooms or mesh: furnished mesh rooms (sim_bridge/mesh)",
         choices=("procedural", "mesh")),
    Spec("talker_kind", "loudspeakers", "who talks: loudspeakers | people (every source a person, voice from the "
         "mouth) | mixed (both; single/dual)", choices=("loudspeakers", "people", "mixed")),
    Spec("out_of_view", 0.0, "single/dual: share of scenes where the robot looks away (camera and microphone "
         "turned 90-180 deg from the talkers, who are then beside or behind it)", 0.0, 1.0),
    Spec("min_loudspeakers", 2, "fewest loudspeakers per scene", 1, 8),
    Spec("max_loudspeakers", 3, "most loudspeakers per scene", 1, 8),
    Spec("split", "test", "loudspeaker shapes and sentences from this split", choices=("train", "val", "test")),
    Spec("seed", 0, "random seed of the scene sequence", 0, 2**31 - 1),
    Spec("scene_period_s", 8.0, "s, a new room, camera and loudspeakers every this long", 0.1, 3600.0),
    Spec("camera_rate_hz", 10.0, "Hz, RGB-D frame rate", 0.1, 100.0),
    Spec("chunk_s", 0.05, "s, FOA chunk length (stamped at its first sample)", 0.005, 1.0),
    Spec("width", 640, "px, image width", 16, 4096),
    Spec("height", 480, "px, image height", 16, 4096),
    Spec("hfov_deg", 90.0, "deg, horizontal field of view", 10.0, 170.0),
    Spec("speech_dir", "", "'' = espeak-ng voices; else a folder of male/female speech"),
    Spec("speech_pool", 8, "synthetic utterances per voice", 1, 1000),
    Spec("noise_rms", 1e-4, "microphone self-noise (FOA units; speech is ~0.01-0.05)", 0.0, 1.0),
    Spec("audio_channel_order", "ACN", "FOA channel order of the published audio", choices=("ACN", "FUMA")),
    Spec("audio_normalization", "SN3D", "FOA normalisation of the published audio", choices=("SN3D", "N3D")),
    Spec("optical_frame", OPTICAL_FRAME, "frame_id of images, camera_info and ground truth (TF: map -> odom -> "
         "base_link -> camera_link -> it)"),
    Spec("mic_frame", MIC_FRAME, "frame_id of the FOA chunks: the microphone (X forward, Y left, Z up), on "
         "/tf_static as camera_link -> it"),
    Spec("talkers", 3, "party: loudspeakers around the robot", 1, 8),
    Spec("max_linear_mps", 0.5, "party: base speed limit, m/s", 0.0, 5.0),
    Spec("max_angular_rps", 2.0, "party: base turn-rate limit, rad/s", 0.0, 10.0),
    Spec("odom_rate_hz", 20.0, "party: Hz of odometry on /tf between frames", 0.1, 1000.0),
    Spec("cmd_vel_topic", "cmd_vel", "party: geometry_msgs/Twist or TwistStamped input (see cmd_vel_stamped)"),
    Spec("cmd_vel_stamped", True, "party: cmd_vel is geometry_msgs/TwistStamped (false: Twist)"),
    Spec("color_topic", "camera/color/image_raw", "colour image output (rgb8)"),
    Spec("depth_topic", "camera/depth/image_raw", "depth image output (32FC1 m, registered to colour)"),
    Spec("camera_info_topic", "camera/color/camera_info", "colour camera_info output"),
    Spec("audio_topic", "audio/foa", "jaeger_ros/FoaAudio output"),
    Spec("ground_truth_topic", "sim/ground_truth", "jaeger_ros/SimGroundTruth output"),
)
"""Every parameter is read at start-up (read_only): the world is built from them once."""

SENSOR_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
"""Images, camera_info and audio: reliable, keep last 5 (what realsense-ros and usb_cam offer), so a
default subscriber receives them and a best-effort (sensor-data) one does too; per topic
changeable with qos_overrides.<topic>.publisher.{reliability,depth,history,durability}."""


class SimBridgeNode(Node):
    def __init__(self, **kwargs) -> None:
        # state first: rclpy destroys a half-built node (bad parameter, interrupted start-up) at shutdown
        self._renderer: ThreadPoolExecutor | None = None
        self.world: LiveWorld | None = None
        super().__init__("sim_bridge", **kwargs)
        p = declare(self, PARAMETERS)
        self.p = p
        self.world = make_world(LiveConfig(
            scenario=p["scenario"], min_loudspeakers=p["min_loudspeakers"], max_loudspeakers=p["max_loudspeakers"],
            split=p["split"], seed=p["seed"], scene_period_s=p["scene_period_s"], chunk_s=p["chunk_s"],
            width=p["width"], height=p["height"], hfov_deg=p["hfov_deg"], noise_rms=p["noise_rms"],
            speech_pool=p["speech_pool"], speech_dir=p["speech_dir"] or None, talkers=p["talkers"],
            max_linear_mps=p["max_linear_mps"], max_angular_rps=p["max_angular_rps"], conditions=p["conditions"],
            world=p["world"], talker_kind=p["talker_kind"], out_of_view=p["out_of_view"]))
        overridable = QoSOverridingOptions.with_default_policies()
        self.pub_rgb = self.create_publisher(Image, p["color_topic"], SENSOR_QOS, qos_overriding_options=overridable)
        self.pub_depth = self.create_publisher(Image, p["depth_topic"], SENSOR_QOS, qos_overriding_options=overridable)
        self.pub_info = self.create_publisher(CameraInfo, p["camera_info_topic"], SENSOR_QOS,
                                              qos_overriding_options=overridable)
        self.pub_audio = self.create_publisher(FoaAudio, p["audio_topic"], QoSProfile(
            depth=20, reliability=ReliabilityPolicy.RELIABLE), qos_overriding_options=overridable)
        self.pub_gt = self.create_publisher(SimGroundTruth, p["ground_truth_topic"], 10)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", 100)
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
        if isinstance(self.world, PartyWorld):
            if p["cmd_vel_stamped"]:
                self.create_subscription(TwistStamped, p["cmd_vel_topic"], lambda m: self._on_cmd_vel(m.twist), 10)
            else:
                self.create_subscription(Twist, p["cmd_vel_topic"], self._on_cmd_vel, 10)
        self._cache: tuple[object, Image, Image] | None = None
        self._pending_audio: list[tuple[float, object]] = []
        self.get_logger().info(f"building the first scene ({p['scenario']}, seed {p['seed']})")
        self.world.scene(0)  # before the clock starts: otherwise the first frames are born stale
        start = self.get_clock().now().nanoseconds * 1e-9
        self.world.start(start)
        self.t0 = start
        # the fixed links once, latched, before any frame or audio chunk: a node's first
        # frame can already be put together with the microphone's mount
        mic = FrameLink(CAMERA_LINK_FRAME, p["mic_frame"], np.eye(4), True)  # at the camera, same axes
        self.pub_tf_static.publish(tf_message([link for link in self.world.transforms(start, p["optical_frame"])
                                               if link.static] + [mic], start))
        self.frames_published = 0
        self.chunks_published = 0
        self.odom_published = 0
        self.frames_skipped = 0
        # party: the camera moves, so frames are rendered on a worker thread (~0.1 s each) while
        # this thread keeps the audio, the odometry and cmd_vel on time
        self._renderer = ThreadPoolExecutor(1, "render") if isinstance(self.world, PartyWorld) else None
        self._rendering: tuple[float, GroundTruth, list[FrameLink], Future] | None = None
        self.timer = self.create_timer(0.005, self._tick)
        self.get_logger().info(
            f"sim_bridge live: {p['width']}x{p['height']} at {p['camera_rate_hz']} Hz, FOA chunks of "
            f"{self.world.chunk} samples at {self.world.sample_rate} Hz in {p['mic_frame']}, TF map -> odom -> "
            f"base_link -> camera_link -> {p['optical_frame']} (and camera_link -> {p['mic_frame']})")

    def destroy_node(self) -> None:
        if self._renderer is not None:
            self._renderer.shutdown(wait=True, cancel_futures=True)
            self.get_logger().info(f"{self.frames_skipped} frames skipped while the renderer was busy")
        if self.world is not None:  # no scene build may outlive the node (a native abort at exit)
            self.world.close()
        super().destroy_node()

    def _frame_msgs(self, rgb, depth) -> tuple[Image, Image]:
        """Image messages of a rendered view (a still camera: converted once, re-stamped per
        frame; the cache holds the array, so its identity cannot be reused by another one)."""
        if self._cache is None or self._cache[0] is not rgb:
            header = rc.make_header(0.0, self.p["optical_frame"])
            self._cache = (rgb, rc.numpy_to_image(rgb, "rgb8", header), rc.depth_to_image(depth, header))
        return self._cache[1], self._cache[2]

    def _on_cmd_vel(self, msg: Twist) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        if not (math.isfinite(msg.linear.x) and math.isfinite(msg.angular.z)):
            self.get_logger().warning("cmd_vel with a non-finite velocity: stopping the base",
                                      throttle_duration_sec=5.0)
        self.world.command(msg.linear.x, msg.angular.z, now)

    def _tick(self) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        # synthesise audio one chunk ahead of the capture clock; publish chunks that are complete
        while self.world.next_chunk_time <= now + self.world.chunk / self.world.sample_rate:
            self._pending_audio.append(self.world.next_chunk())
        chunk_s = self.world.chunk / self.world.sample_rate
        while self._pending_audio and self._pending_audio[0][0] + chunk_s <= now:
            t, samples = self._pending_audio.pop(0)
            header = rc.make_header(t, self.p["mic_frame"])
            self.pub_audio.publish(rc.foa_to_msg(samples, self.world.sample_rate, header,
                                                 self.p["audio_channel_order"], self.p["audio_normalization"]))
            self.chunks_published += 1
        if isinstance(self.world, PartyWorld):
            self._publish_odometry(now)
        if self._rendering is not None and self._rendering[3].done():
            t, gt, links, job = self._rendering
            self._rendering = None
            rgb, depth, _ = job.result()
            self._publish_frame(t, rgb, depth, gt, links)
        next_frame = self.t0 + self.frames_published / self.p["camera_rate_hz"]
        if next_frame <= now:
            if self._renderer is None:
                rgb, depth, _ = self.world.frame(next_frame)
                self._publish_frame(next_frame, rgb, depth, self.world.ground_truth(next_frame),
                                    self.world.transforms(next_frame, self.p["optical_frame"]))
            elif self._rendering is None:  # truth and TF now, the image when the worker has it
                self._rendering = (next_frame, self.world.ground_truth(next_frame),
                                   self.world.transforms(next_frame, self.p["optical_frame"]),
                                   self._renderer.submit(self.world.view_from, self.world.view_pose(next_frame)))
            else:
                self.frames_skipped += 1  # the renderer is still on an earlier frame
            # after a stall, skip frames that are already late rather than bursting them out
            self.frames_published = max(self.frames_published + 1,
                                        int((now - self.t0) * self.p["camera_rate_hz"]))

    def _publish_odometry(self, now: float) -> None:
        """The base's moving links (map -> odom, odom -> base_link) stamped now, at odom_rate_hz
        (the base is already integrated past now: audio runs a chunk ahead)."""
        if now < self.t0 + self.odom_published / self.p["odom_rate_hz"]:
            return
        links = [link for link in self.world.transforms(now, self.p["optical_frame"])
                 if link.child != self.p["optical_frame"] and not link.static]
        self.pub_tf.publish(tf_message(links, now))
        self.odom_published = max(self.odom_published + 1, int((now - self.t0) * self.p["odom_rate_hz"]) + 1)

    def _publish_frame(self, t: float, rgb, depth, gt: GroundTruth, links: list[FrameLink]) -> None:
        stamp = rc.seconds_to_stamp(t)
        img, dep = self._frame_msgs(rgb, depth)
        img.header.stamp = stamp
        dep.header.stamp = stamp
        info = rc.intrinsics_to_camera_info(self.world.intrinsics, rc.make_header(stamp, self.p["optical_frame"]))
        self.pub_rgb.publish(img)
        self.pub_depth.publish(dep)
        self.pub_info.publish(info)
        self.pub_gt.publish(ground_truth_to_msg(gt, self.p["optical_frame"]))
        self._publish_tf(links, t)

    def _publish_tf(self, links: list[FrameLink], t: float) -> None:
        self.pub_tf.publish(tf_message([link for link in links if not link.static], t))


def main(args: list[str] | None = None) -> None:
    run_node(SimBridgeNode, args)


if __name__ == "__main__":
    main()
