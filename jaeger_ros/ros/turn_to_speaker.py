"""turn_to_speaker: turns the robot (cmd_vel) to face whoever is talking, including behind it.

Why two inputs: /jaeger/talkers (jaeger_tracker) gives a filtered place in `world_frame` for a
known talker, but a new voice needs a few frames to become a track; /jaeger/speaker_match gives
its direction at once. So the target is, each control tick:
1. the latest confident DoA (confidence >= `min_confidence`, younger than `doa_hold_s`, and the
   one before it within `agree_deg` of it: one reflection does not steer) when no talking track
   lies within `agree_deg` of it (a new voice), placed in the world through TF at the frame's
   stamp at `default_range_m`;
2. else the talking track: the one already chosen while it still talks, else the TalkerArray's
   current talker (with `target_voice` set, the newest talking track of that voice);
3. else the last target for `hold_s` after its voice stopped.
A turn in progress keeps its target until the robot faces it (refined by the talking track when
one lies within `agree_deg` of it): a DoA computed over a window in which the camera turned is
smeared towards where the camera looked before, so it must not redirect the turn.

Control: the target's bearing in `base_frame` from the newest TF, advanced by the turn the
commands sent since that TF's stamp add up to (TF lags the frames; the current command alone would
over- or under-shoot). A standing robot starts turning when the error exceeds
`dead_band_deg` and a turning one stops once it is inside half of it (hysteresis: no stop-start
chatter at the edge); it turns at `gain` x error, at least `min_angular_rps` and at most
`max_angular_rps`. A zero command is sent once whenever the robot stops.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.node import Node

from jaeger_ros.msg import SpeakerMatch, TalkerArray
from jaeger_ros.ros.runner import run_node
from jaeger_ros.ros.tracker_node import TfListener, stamp_seconds
from jaeger_ros.tracker.transforms import TransformBuffer, TransformError

VOICES = ("", "male", "female")


def wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


class TurnToSpeaker(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("turn_to_speaker", **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("target_voice", ""), ("max_angular_rps", 1.8), ("min_angular_rps", 0.3), ("gain", 3.0),
            ("dead_band_deg", 8.0), ("min_confidence", 0.5), ("doa_hold_s", 0.4), ("agree_deg", 30.0),
            ("hold_s", 1.5), ("default_range_m", 2.0), ("rate_hz", 20.0), ("cmd_vel_topic", "/cmd_vel"),
            ("match_topic", "/jaeger/speaker_match"), ("talkers_topic", "/jaeger/talkers"),
            ("world_frame", "map"), ("base_frame", "base_link"))}
        if p["target_voice"] not in VOICES:
            raise ValueError(f"target_voice must be one of {VOICES}, got {p['target_voice']!r}")
        if not 0 <= p["min_angular_rps"] <= p["max_angular_rps"] or p["max_angular_rps"] <= 0 or p["gain"] <= 0 \
                or p["dead_band_deg"] < 0 or p["rate_hz"] <= 0:
            raise ValueError("need 0 <= min_angular_rps <= max_angular_rps, max_angular_rps > 0, gain > 0, "
                             "dead_band_deg >= 0 and rate_hz > 0")
        self.p = p
        self.tf = TfListener(self, TransformBuffer(cache_s=10.0))
        self.target: np.ndarray | None = None  # world point
        self.target_time = -math.inf  # when the target's voice was last heard
        self.target_source = ""
        self.doas: deque[tuple[float, np.ndarray]] = deque(maxlen=2)  # (stamp, world point) of confident DoAs
        self.talkers: TalkerArray | None = None
        self.command = 0.0
        self.sent: deque[tuple[float, float]] = deque(maxlen=200)  # (time, angular rad/s) of each command
        self.moving = False
        self.turns = 0
        self.pub = self.create_publisher(Twist, p["cmd_vel_topic"], 10)
        self.create_subscription(SpeakerMatch, p["match_topic"], self._on_match, 20)
        self.create_subscription(TalkerArray, p["talkers_topic"], self._on_talkers, 10)
        self.create_timer(1.0 / p["rate_hz"], self._control)
        self.get_logger().info(f"turn_to_speaker: voice {p['target_voice'] or 'any'}, at most "
                               f"{p['max_angular_rps']} rad/s, dead band {p['dead_band_deg']} deg -> {p['cmd_vel_topic']}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_match(self, msg: SpeakerMatch) -> None:
        voice = self.p["target_voice"]
        if msg.doa.confidence < self.p["min_confidence"] or (voice and msg.target != voice):
            return
        d = np.array([msg.doa.direction.x, msg.doa.direction.y, msg.doa.direction.z], dtype=float)
        if not (np.all(np.isfinite(d)) and np.linalg.norm(d) > 0):
            self.get_logger().warning("ignoring a speaker_match with a non-finite or zero DoA",
                                      throttle_duration_sec=5.0)
            return
        stamp = stamp_seconds(msg.header.stamp)
        try:
            world_from_optical = self.tf.buffer.lookup(self.p["world_frame"], msg.header.frame_id, stamp)
        except TransformError as err:
            self.get_logger().warning(f"no TF for a speaker_match: {err}", throttle_duration_sec=5.0)
            return
        point = world_from_optical[:3, 3] + world_from_optical[:3, :3] @ (d / np.linalg.norm(d)) * self.p["default_range_m"]
        self.doas.append((stamp, point))

    def _on_talkers(self, msg: TalkerArray) -> None:
        self.talkers = msg

    def _talking_track(self) -> Any | None:
        if self.talkers is None:
            return None
        voice = self.p["target_voice"]
        talking = [t for t in self.talkers.talkers if t.talking and (not voice or t.voice == voice)]
        chosen = [t for t in talking if self.target_source == f"talker {t.id}"]
        if chosen:  # stay with the talker being turned to while it talks (no flapping between tracks)
            return chosen[0]
        current = [t for t in talking if t.id == self.talkers.current_id]
        if current:
            return current[0]
        return min(talking, key=lambda t: t.heard_ago_s) if talking else None

    def _base_pose(self, now: float) -> tuple[np.ndarray, float] | None:
        """(position, yaw) of the base in the world now: the newest TF advanced by the command."""
        buf = self.tf.buffer
        world, base = self.p["world_frame"], self.p["base_frame"]
        try:
            t = buf.latest_common_time(world, base)
            pose = buf.lookup(world, base, t if math.isfinite(t) else now)
        except TransformError:
            return None
        yaw = math.atan2(pose[1, 0], pose[0, 0])
        if math.isfinite(t):
            yaw += self._turned_since(t, now)
        return pose[:3, 3], yaw

    def _turned_since(self, t: float, now: float) -> float:
        """Radians commanded between t and now (the commands sent, each held until the next)."""
        total = 0.0
        for (start, rate), (end, _) in zip(self.sent, [*list(self.sent)[1:], (now, 0.0)]):
            total += rate * max(0.0, min(end, now) - max(start, t))
        return total

    def _choose_target(self, now: float, base_xy: np.ndarray) -> None:
        track = self._talking_track()
        track_point = None if track is None else np.array([track.position.x, track.position.y, track.position.z])
        agree = self.p["agree_deg"]
        if self.moving and self.target is not None:  # finish the turn: DoAs heard while turning are smeared
            track_here = track_point is not None and self._bearing_gap(base_xy, track_point, self.target) <= agree
            self.target_time = now
            if track_here:
                self.target = track_point
            return
        if len(self.doas) == 2 and now - self.doas[-1][0] <= self.p["doa_hold_s"] \
                and self._bearing_gap(base_xy, self.doas[0][1], self.doas[1][1]) <= agree:
            stamp, doa_point = self.doas[-1]
            if track_point is None or self._bearing_gap(base_xy, doa_point, track_point) > agree:
                self.target, self.target_time, self.target_source = doa_point, stamp, "doa"
                return
        if track_point is not None:
            self.target, self.target_time, self.target_source = track_point, now, f"talker {track.id}"

    @staticmethod
    def _bearing_gap(origin: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        ya = math.atan2(a[1] - origin[1], a[0] - origin[0])
        yb = math.atan2(b[1] - origin[1], b[0] - origin[0])
        return abs(math.degrees(wrap(ya - yb)))

    def _control(self) -> None:
        now = self._now()
        pose = self._base_pose(now)
        if pose is None:
            return
        position, yaw = pose
        self._choose_target(now, position)
        if self.target is None or now - self.target_time > self.p["hold_s"]:
            self._send(0.0)
            return
        error = wrap(math.atan2(self.target[1] - position[1], self.target[0] - position[0]) - yaw)
        if abs(math.degrees(error)) <= self.p["dead_band_deg"] * (0.5 if self.moving else 1.0):
            self._send(0.0)
            return
        speed = min(self.p["max_angular_rps"], max(self.p["min_angular_rps"], self.p["gain"] * abs(error)))
        self._send(math.copysign(speed, error))

    def _send(self, angular: float) -> None:
        """Publish a turn command; a stop is sent once (not repeated while standing)."""
        if angular == 0.0 and not self.moving:
            return
        if angular != 0.0 and not self.moving:
            self.turns += 1
            self.get_logger().info(f"turning to {self.target_source}")
        self.moving = angular != 0.0
        self.command = angular
        self.sent.append((self._now(), angular))
        msg = Twist()
        msg.angular.z = float(angular)
        self.pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    run_node(TurnToSpeaker, args)


if __name__ == "__main__":
    main()
