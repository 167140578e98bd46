"""sim_bridge ROS 2 node: publishes the live simulated world (sim_bridge.live) in real time.

Topics (every name but /tf and /tf_static a parameter): colour image (rgb8), depth image (32FC1 metres, NaN = no
return), camera_info, FOA audio chunks (jaeger_ros/FoaAudio, stamped at their FIRST sample),
ground truth (jaeger_ros/SimGroundTruth in the optical frame, stamped like the frame it
describes) and TF. Sensor topics use the sensor-data QoS (best effort, keep last 5); ground
truth is reliable.

TF (tf2_msgs/TFMessage, REP-105 chain from sim_bridge.live.tf_links): map -> odom -> base_link
-> camera_link -> `optical_frame` (the frame_id of every image, camera_info, audio chunk and
ground truth). The moving links (odom -> base_link, base_link -> camera_link: new each scene)
go on /tf with every frame, stamped like it; the fixed ones (map -> odom, camera_link ->
optical) go once on /tf_static (reliable, transient local: late subscribers get them too).

Scenario "party" (sim_bridge.live.PartyWorld): a robot base that executes geometry_msgs/Twist
on `cmd_vel_topic` (linear.x, angular.z; held for the base's command timeout), talkers taking
turns around it, and TF with a moving map -> odom (the localiser's correction of the drifting
wheel odometry odom -> base_link) and a fixed mast base_link -> camera_link (/tf_static). The
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

from geometry_msgs.msg import Point, Twist, Vector3
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from jaeger_ros.ros import convert as rc
from jaeger_ros.core.geometry import camera_to_optical
from jaeger_ros.msg import FoaAudio, SimGroundTruth, SimSource
from sim_bridge.live import OPTICAL_FRAME, FrameLink, GroundTruth, LiveConfig, PartyWorld, make_world
from jaeger_ros.ros.runner import run_node

STATIC_TF_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
"""What tf2's static broadcaster offers: the last message kept for subscribers that join later."""


def tf_message(links: list[FrameLink], stamp: float) -> TFMessage:
    return TFMessage(transforms=[rc.transform_to_msg(link.transform, link.parent, link.child, stamp)
                                 for link in links])


def ground_truth_to_msg(gt: GroundTruth, frame_id: str) -> SimGroundTruth:
    header = rc.make_header(gt.time, frame_id)
    sources = [SimSource(gender=s.gender, loudspeaker=s.loudspeaker, label=s.label, active=s.active,
                         active_for_s=float(s.active_for_s), azimuth_deg=s.azimuth_deg,
                         elevation_deg=s.elevation_deg,
                         direction=rc.vector_to_msg(camera_to_optical(s.direction)),
                         position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])), in_view=bool(seen))
               for s, p, seen in zip(gt.sources, gt.positions_map, gt.in_view)]
    return SimGroundTruth(header=header, scene_id=gt.scene_id, scenario=gt.scenario,
                          boxes=[rc.box_to_msg(b, i) for i, b in enumerate(gt.boxes)], sources=sources,
                          camera_pose=rc.pose_to_msg(gt.map_from_optical),
                          room_size=Vector3(x=float(gt.room_size_map[0]), y=float(gt.room_size_map[1]),
                                            z=float(gt.room_size_map[2])))


class SimBridgeNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim_bridge", **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("scenario", "single"), ("min_loudspeakers", 2), ("max_loudspeakers", 3), ("split", "test"),
            ("seed", 0), ("scene_period_s", 8.0), ("camera_rate_hz", 10.0), ("chunk_s", 0.05),
            ("width", 640), ("height", 480), ("hfov_deg", 90.0), ("speech_dir", ""), ("speech_pool", 8),
            ("noise_rms", 1e-4), ("audio_channel_order", "ACN"), ("audio_normalization", "SN3D"),
            ("conditions", "realistic"),
            ("optical_frame", OPTICAL_FRAME), ("talkers", 3), ("max_linear_mps", 0.5), ("max_angular_rps", 2.0),
            ("cmd_vel_topic", "/cmd_vel"), ("odom_rate_hz", 20.0),
            ("color_topic", "/camera/color/image_raw"), ("depth_topic", "/camera/depth/image_raw"),
            ("camera_info_topic", "/camera/color/camera_info"), ("audio_topic", "/audio/foa"),
            ("ground_truth_topic", "/sim/ground_truth"))}
        self.p = p
        if p["camera_rate_hz"] <= 0 or p["odom_rate_hz"] <= 0:
            raise ValueError(f"camera_rate_hz and odom_rate_hz must be positive, got {p['camera_rate_hz']}, "
                             f"{p['odom_rate_hz']}")
        self.world = make_world(LiveConfig(
            scenario=p["scenario"], min_loudspeakers=p["min_loudspeakers"], max_loudspeakers=p["max_loudspeakers"],
            split=p["split"], seed=p["seed"], scene_period_s=p["scene_period_s"], chunk_s=p["chunk_s"],
            width=p["width"], height=p["height"], hfov_deg=p["hfov_deg"], noise_rms=p["noise_rms"],
            speech_pool=p["speech_pool"], speech_dir=p["speech_dir"] or None, talkers=p["talkers"],
            max_linear_mps=p["max_linear_mps"], max_angular_rps=p["max_angular_rps"], conditions=p["conditions"]))
        sensor = qos_profile_sensor_data
        self.pub_rgb = self.create_publisher(Image, p["color_topic"], sensor)
        self.pub_depth = self.create_publisher(Image, p["depth_topic"], sensor)
        self.pub_info = self.create_publisher(CameraInfo, p["camera_info_topic"], sensor)
        self.pub_audio = self.create_publisher(FoaAudio, p["audio_topic"], sensor)
        self.pub_gt = self.create_publisher(SimGroundTruth, p["ground_truth_topic"], 10)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", 100)
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
        if isinstance(self.world, PartyWorld):
            self.create_subscription(Twist, p["cmd_vel_topic"], self._on_cmd_vel, 10)
        self._cache: tuple[object, Image, Image] | None = None
        self._static_sent = False
        self._pending_audio: list[tuple[float, object]] = []
        self.get_logger().info(f"building the first scene ({p['scenario']}, seed {p['seed']})")
        self.world.scene(0)  # before the clock starts: otherwise the first frames are born stale
        start = self.get_clock().now().nanoseconds * 1e-9
        self.world.start(start)
        self.t0 = start
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
            f"{self.world.chunk} samples at {self.world.sample_rate} Hz, TF map -> odom -> base_link -> "
            f"camera_link -> {p['optical_frame']}")

    def destroy_node(self) -> None:
        if self._renderer is not None:
            self._renderer.shutdown(wait=True, cancel_futures=True)
            self.get_logger().info(f"{self.frames_skipped} frames skipped while the renderer was busy")
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
            header = rc.make_header(t, self.p["optical_frame"])
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
        if not self._static_sent:  # fixed for the whole run: once, latched
            self.pub_tf_static.publish(tf_message([link for link in links if link.static], t))
            self._static_sent = True
        self.pub_tf.publish(tf_message([link for link in links if not link.static], t))


def main(args: list[str] | None = None) -> None:
    run_node(SimBridgeNode, args)


if __name__ == "__main__":
    main()
