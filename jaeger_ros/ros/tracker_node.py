"""jaeger_tracker: world-frame talker tracks from /jaeger/speaker_match, depth and TF.

Each SpeakerMatch (DoA + confidence, matched box, candidates; stamped with its image, in the
optical frame) becomes one observation in `world_frame` through the camera pose AT ITS STAMP,
read from /tf and /tf_static by a small buffer (jaeger_ros.tracker.transforms; tf2_ros has no
Python wheel here). A frame newer than the newest TF waits up to `tf_wait_s` for it, then is
dropped and counted. What the observation says about range:

- the DoA passes within `match_gate_deg` of the matched box: the point of the DoA ray inside the
  box (seen by the camera);
- else the DoA falls inside the image: the median depth around its pixel in the depth image of
  the same stamp (seen);
- else: a bearing only (heard, out of view), triangulated as the robot moves.

The same depth image deletes silent tracks whose place it shows empty (TalkerTracker.clear_seen_through).

A frame whose audio window (`window_s`, as jaeger_node's) was heard while the camera turned faster
than `max_turn_rate_rps` is dropped and counted ("turning"): its DoA is smeared over the turn.

Outputs: jaeger_ros/TalkerArray on `talkers_topic` (every confirmed track: position and
covariance in `world_frame`, voice identity (SpeakerMatch.voice_id: one track per identity) and
gender, heard/seen ages, talking, visible in the current view,
azimuth and distance from `base_frame`) after every frame, and markers on `markers_topic`
(positions, 2-sigma covariance ellipsoids, id/voice labels; talking tracks red). Out-of-order,
stale (older than `max_delay_s` on arrival), malformed and TF-less frames are dropped, counted
and reported on /diagnostics.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from jaeger_ros.core.geometry import Intrinsics
from jaeger_ros.core.msg_arrays import camera_info_to_intrinsics, depth_from_image
from jaeger_ros.msg import SpeakerMatch, Talker, TalkerArray
from jaeger_ros.ros import convert as rc
from jaeger_ros.ros.params import Spec, declare
from jaeger_ros.ros.runner import run_node
from jaeger_ros.tracker.talkers import Observation, TalkerTracker, TrackerConfig, angle_deg, in_view
from jaeger_ros.tracker.transforms import TransformBuffer, TransformError

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # pragma: no cover - ros-diagnostic-msgs is in requirements
    DiagnosticArray = None

STATIC_TF_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


def stamp_seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class TfListener:
    """Feeds /tf and /tf_static into a TransformBuffer (what tf2_ros.TransformListener does)."""

    def __init__(self, node: Node, buffer: TransformBuffer) -> None:
        self.buffer = buffer
        self.rejected = 0
        self._node = node
        node.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), 100)
        node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), STATIC_TF_QOS)

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        for tf in msg.transforms:
            t, q = tf.transform.translation, tf.transform.rotation
            matrix = np.eye(4)
            try:
                matrix[:3, :3] = rc.matrix_from_quaternion([q.x, q.y, q.z, q.w])
                matrix[:3, 3] = [t.x, t.y, t.z]
                self.buffer.set_transform(tf.header.frame_id, tf.child_frame_id, matrix,
                                          stamp_seconds(tf.header.stamp), static)
            except (ValueError, ZeroDivisionError, FloatingPointError) as err:
                self.rejected += 1
                self._node.get_logger().warning(f"dropping a TF transform: {err}", throttle_duration_sec=5.0)


def _color(r: float, g: float, b: float, a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=r, g=g, b=b, a=a)


PARAMETERS: tuple[Spec, ...] = (
    Spec("match_topic", "jaeger/speaker_match", "jaeger_ros/SpeakerMatch input"),
    Spec("depth_topic", "camera/depth/image_raw", "depth image input (ranges the matched boxes)"),
    Spec("camera_info_topic", "camera/color/camera_info", "colour camera_info input"),
    Spec("talkers_topic", "jaeger/talkers", "jaeger_ros/TalkerArray output"),
    Spec("markers_topic", "jaeger/talker_markers", "MarkerArray output"),
    Spec("diagnostics_topic", "/diagnostics", "DiagnosticArray output (absolute: one /diagnostics per robot)"),
    Spec("world_frame", "map", "frame of the talker tracks"),
    Spec("base_frame", "base_link", "the robot base (its turn rate gates smeared DoAs)"),
    Spec("tf_wait_s", 0.5, "s, a frame newer than TF waits this long for it, then is dropped", 0.0, 10.0),
    Spec("match_gate_deg", 12.0, "deg, the DoA must pass this close to the matched box to take its place", 0.1, 180.0),
    Spec("bearing_sigma_deg", 8.0, "deg, DoA noise assumed across the ray", 0.1, 90.0),
    Spec("min_confidence", 0.3, "below: silence, no update", 0.0, 1.0),
    Spec("gate_deg", 25.0, "deg, a DoA belongs to a track within this angle of it", 0.1, 180.0),
    Spec("default_range_m", 2.0, "m, a heard-only talker starts this far along its ray", 0.1, 100.0),
    Spec("confirm_hits", 3, "observations before a track is published", 1, 1000),
    Spec("forget_s", 120.0, "s, a talker unheard this long is deleted", 0.1, 86400.0),
    Spec("merge_m", 0.5, "m, tracks closer than this merge (the older id stays)", 0.0, 10.0),
    Spec("talking_hold_s", 0.6, "s, a track stays talking this long after it was last heard", 0.0, 60.0),
    Spec("max_delay_s", 1.0, "s, frames older than this on arrival are dropped", 0.01, 60.0),
    Spec("memory_s", 20.0, "s, evidence fades with this time constant", 0.1, 3600.0),
    Spec("seen_through_m", 0.5, "m, depth this far beyond a silent track's place is free space there", 0.05, 10.0),
    Spec("seen_through_s", 0.5, "s, a silent track seen through this long is deleted (the talker left)", 0.0, 3600.0,
         low_open=True),
    Spec("diagnostics_period_s", 1.0, "s between /diagnostics messages", 0.05, 60.0),
    Spec("window_s", 0.5, "s, jaeger_node's audio window (for the turn-rate check)", 0.01, 10.0),
    Spec("max_turn_rate_rps", 0.4, "rad/s, frames heard while the camera turned faster are dropped", 0.01, 100.0),
)
"""Every parameter is read at start-up (read_only): the tracker is built from them once."""


class TrackerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("jaeger_tracker", **kwargs)
        p = declare(self, PARAMETERS)
        self.p = p
        self.tracker = TalkerTracker(TrackerConfig(
            bearing_sigma_deg=p["bearing_sigma_deg"], min_confidence=p["min_confidence"], gate_deg=p["gate_deg"],
            default_range_m=p["default_range_m"], confirm_hits=p["confirm_hits"], forget_s=p["forget_s"],
            merge_m=p["merge_m"], talking_hold_s=p["talking_hold_s"], max_delay_s=p["max_delay_s"],
            memory_s=p["memory_s"], seen_through_m=p["seen_through_m"], seen_through_s=p["seen_through_s"]))
        self.tf = TfListener(self, TransformBuffer(cache_s=max(10.0, 4 * p["max_delay_s"])))
        self.intrinsics: Intrinsics | None = None
        self.depths: deque[tuple[float, np.ndarray]] = deque(maxlen=30)
        self.pending: deque[SpeakerMatch] = deque(maxlen=50)
        self.dropped: Counter[str] = Counter()
        self.processed = 0
        self.create_subscription(SpeakerMatch, p["match_topic"], self._on_match, 20)
        self.create_subscription(Image, p["depth_topic"], self._on_depth, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_info, qos_profile_sensor_data)
        self.pub = self.create_publisher(TalkerArray, p["talkers_topic"], 10)
        self.pub_markers = self.create_publisher(MarkerArray, p["markers_topic"], 10)
        self.pub_diag = (self.create_publisher(DiagnosticArray, p["diagnostics_topic"], 10)
                         if DiagnosticArray is not None else None)
        self.create_timer(0.05, self._drain)
        self.create_timer(p["diagnostics_period_s"], self._diagnostics)
        self.get_logger().info(f"jaeger_tracker: {p['match_topic']} + TF -> {p['talkers_topic']} in {p['world_frame']}")

    # --- inputs ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            self.intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as err:
            self.dropped["bad_camera_info"] += 1
            self.get_logger().warning(f"dropping camera_info: {err}", throttle_duration_sec=5.0)

    def _on_depth(self, msg: Image) -> None:
        try:
            self.depths.append((stamp_seconds(msg.header.stamp), depth_from_image(msg)))
        except ValueError as err:
            self.dropped["bad_depth"] += 1
            self.get_logger().warning(f"dropping a depth image: {err}", throttle_duration_sec=5.0)

    def _on_match(self, msg: SpeakerMatch) -> None:
        self.pending.append(msg)
        self._drain()

    def _drain(self) -> None:
        """Process waiting frames in arrival order once TF covers their stamps."""
        while self.pending:
            msg = self.pending[0]
            stamp = stamp_seconds(msg.header.stamp)
            if self._now() - stamp > self.p["max_delay_s"]:
                self.pending.popleft()
                self.dropped["stale"] += 1
                self.get_logger().warning(f"dropping a frame {self._now() - stamp:.2f} s old", throttle_duration_sec=5.0)
                continue
            try:
                map_from_optical = self.tf.buffer.lookup(self.p["world_frame"], msg.header.frame_id, stamp)
            except TransformError as err:
                if self._now() - stamp <= self.p["tf_wait_s"]:
                    return  # TF for this stamp may still come
                self.pending.popleft()
                self.dropped["no_tf"] += 1
                self.get_logger().warning(f"dropping a frame at {stamp:.3f}: {err}", throttle_duration_sec=5.0)
                continue
            self.pending.popleft()
            if self._turn_rate(msg.header.frame_id, stamp, map_from_optical) > self.p["max_turn_rate_rps"]:
                self.dropped["turning"] += 1  # the audio window was heard from a turning camera: smeared
                continue
            self._process(msg, stamp, map_from_optical)

    def _turn_rate(self, frame: str, stamp: float, map_from_optical: np.ndarray) -> float:
        """How fast (rad/s) the camera turned over the DoA's window (`window_s` before the stamp)."""
        try:
            before = self.tf.buffer.lookup(self.p["world_frame"], frame, stamp - self.p["window_s"])
        except TransformError:
            return 0.0
        cos = (np.trace(before[:3, :3].T @ map_from_optical[:3, :3]) - 1.0) / 2.0
        return float(np.arccos(np.clip(cos, -1.0, 1.0)) / self.p["window_s"])

    # --- one frame ------------------------------------------------------------------------
    def _depth_at(self, stamp: float) -> np.ndarray | None:
        for t, depth in reversed(self.depths):
            if abs(t - stamp) < 1e-3:
                return depth
        return None

    def _range_point(self, msg: SpeakerMatch, d: np.ndarray, stamp: float) -> tuple[np.ndarray, float] | None:
        """(point on the DoA ray in the optical frame, its sigma) from the matched box or the
        depth image; None when neither says how far."""
        if 0 <= msg.index < len(msg.candidates):
            box = msg.candidates[msg.index]  # centre and size along the optical axes of the header frame
            c = np.array([box.center.position.x, box.center.position.y, box.center.position.z], dtype=float)
            half = np.abs([box.size.x, box.size.y, box.size.z]) / 2.0
            if c[2] > 0 and angle_deg(d, c) <= self.p["match_gate_deg"] and d[2] > 1e-3:
                point = np.clip(d * (c[2] / d[2]), c - half, c + half)
                point[2] = c[2]
                return point, 0.15
        intr, depth = self.intrinsics, self._depth_at(stamp)
        if intr is None or depth is None or d[2] <= 1e-3 or depth.shape != (intr.height, intr.width):
            return None
        u, v = intr.cx + intr.fx * d[0] / d[2], intr.cy + intr.fy * d[1] / d[2]
        if not (0 <= u < intr.width and 0 <= v < intr.height):
            return None
        r = max(2, intr.width // 80)
        patch = depth[max(0, int(v) - r):int(v) + r + 1, max(0, int(u) - r):int(u) + r + 1]
        valid = patch[np.isfinite(patch) & (patch > 0)]
        if valid.size == 0:
            return None
        z = float(np.median(valid))
        return d * (z / d[2]), 0.1 + 0.05 * z

    def _process(self, msg: SpeakerMatch, stamp: float, map_from_optical: np.ndarray) -> None:
        doa = msg.doa.direction
        d = np.array([doa.x, doa.y, doa.z], dtype=float)
        if not (np.all(np.isfinite(d)) and np.linalg.norm(d) > 0 and math.isfinite(msg.doa.confidence)):
            self.dropped["bad_doa"] += 1
            self.get_logger().warning("dropping a speaker_match with a non-finite or zero DoA",
                                      throttle_duration_sec=5.0)
            return
        d /= np.linalg.norm(d)
        ranged = self._range_point(msg, d, stamp)
        rot, origin = map_from_optical[:3, :3], map_from_optical[:3, 3]
        obs = Observation(stamp, origin, rot @ d, float(msg.doa.confidence),
                          position=None if ranged is None else rot @ ranged[0] + origin,
                          position_sigma_m=None if ranged is None else ranged[1],
                          voice=msg.target if msg.target in ("male", "female") else msg.voice_gender,
                          seen=ranged is not None, voice_id=msg.voice_id)
        rejected = sum(self.tracker.dropped.values()) - self.tracker.dropped["silence"]
        self.tracker.update(obs, now=self._now())
        if sum(self.tracker.dropped.values()) - self.tracker.dropped["silence"] > rejected:
            return  # out of order, stale or invalid: counted by the tracker, nothing new to say
        self.tracker.prune(stamp)
        depth = self._depth_at(stamp)
        if self.intrinsics is not None and depth is not None and depth.shape == (self.intrinsics.height,
                                                                                 self.intrinsics.width):
            self.tracker.clear_seen_through(stamp, map_from_optical, self.intrinsics, depth)
        self.processed += 1
        self._publish(msg.header.stamp, stamp, map_from_optical)

    # --- outputs --------------------------------------------------------------------------
    def _publish(self, stamp_msg: Any, stamp: float, map_from_optical: np.ndarray) -> None:
        world = self.p["world_frame"]
        try:
            base_from_map = np.linalg.inv(self.tf.buffer.lookup(world, self.p["base_frame"], stamp))
        except TransformError:
            base_from_map = None
        hold = self.tracker.config.talking_hold_s
        out = TalkerArray(header=rc.make_header(stamp_msg, world), current_id=-1)
        talking = []
        for t in self.tracker.talkers():
            msg = Talker(id=t.id, voice=t.voice, voice_id=t.voice_id, last_heard=rc.seconds_to_stamp(t.last_heard),
                         talking=t.talking(stamp, hold), observations=t.hits,
                         visible=self.intrinsics is not None and in_view(t.position, map_from_optical, self.intrinsics))
            if t.last_seen is not None:  # else zero: never seen
                msg.last_seen = rc.seconds_to_stamp(t.last_seen)
            msg.position.x, msg.position.y, msg.position.z = (float(v) for v in t.position)
            msg.covariance = [float(v) for v in t.covariance.ravel()]
            if base_from_map is not None:
                rel = base_from_map[:3, :3] @ t.position + base_from_map[:3, 3]
                msg.azimuth_deg = math.degrees(math.atan2(rel[1], rel[0]))
                msg.distance_m = math.hypot(rel[0], rel[1])
            if msg.talking:
                talking.append((t.last_heard, t.id))
            out.talkers.append(msg)
        if talking:
            out.current_id = max(talking)[1]
        self.pub.publish(out)
        self.pub_markers.publish(self._markers(out))

    def _markers(self, talkers: TalkerArray) -> MarkerArray:
        """Per track: a sphere at its position, its 2-sigma covariance ellipsoid and an id/voice
        label; red while talking. A DELETEALL first drops the markers of deleted tracks."""
        header = talkers.header
        markers = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
        for t in talkers.talkers:
            colour = _color(0.95, 0.2, 0.15) if t.talking else _color(0.2, 0.5, 0.95)
            dot = Marker(header=header, ns="talkers", id=int(t.id), type=Marker.SPHERE, action=Marker.ADD, color=colour)
            dot.pose.position = t.position
            dot.pose.orientation.w = 1.0
            dot.scale.x = dot.scale.y = dot.scale.z = 0.2
            cov = np.asarray(t.covariance, dtype=float).reshape(3, 3)
            vals, vecs = np.linalg.eigh((cov + cov.T) / 2.0)
            if np.linalg.det(vecs) < 0:
                vecs[:, 0] = -vecs[:, 0]
            q = rc.quaternion_from_matrix(vecs)
            ellipse = Marker(header=header, ns="talker_covariance", id=int(t.id), type=Marker.SPHERE,
                             action=Marker.ADD, color=_color(colour.r, colour.g, colour.b, 0.25))
            ellipse.pose.position = t.position
            ellipse.pose.orientation.x, ellipse.pose.orientation.y, ellipse.pose.orientation.z, \
                ellipse.pose.orientation.w = (float(v) for v in q)
            ellipse.scale.x, ellipse.scale.y, ellipse.scale.z = (float(max(0.02, 4.0 * math.sqrt(max(v, 0.0))))
                                                                 for v in vals)
            label = Marker(header=header, ns="talker_labels", id=int(t.id), type=Marker.TEXT_VIEW_FACING,
                           action=Marker.ADD, color=_color(1.0, 1.0, 1.0),
                           text=f"#{t.id} {t.voice_id or 'voice ?'} {t.voice}".rstrip() + (" talking" if t.talking else ""))
            label.pose.position.x, label.pose.position.y = t.position.x, t.position.y
            label.pose.position.z = t.position.z + 0.35
            label.pose.orientation.w = 1.0
            label.scale.z = 0.2
            markers.markers += [dot, ellipse, label]
        return markers

    def _diagnostics(self) -> None:
        if self.pub_diag is None:
            return
        dropped = self.dropped + self.tracker.dropped
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name="jaeger_tracker", hardware_id="jaeger_ros",
                                  message=f"{len(self.tracker.talkers())} talkers")
        values = {"frames": self.processed, "tracks": len(self.tracker.tracks), "tf_rejected": self.tf.rejected,
                  **{f"dropped_{k}": v for k, v in sorted(dropped.items())}}
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        self.pub_diag.publish(DiagnosticArray(header=rc.make_header(self._now(), ""), status=[status]))


def main(args: list[str] | None = None) -> None:
    run_node(TrackerNode, args)


if __name__ == "__main__":
    main()
