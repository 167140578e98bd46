"""turn_to_speaker: turns the robot (cmd_vel) to face whoever is talking, including behind it.

Why two inputs: /jaeger/talkers (jaeger_tracker) gives a filtered place in `world_frame` for a
known talker, but a new voice needs a few frames to become a track; /jaeger/speaker_match gives
its direction at once. Both become bearings in `odom_frame` (a DoA through TF at its frame's
stamp, a track from the robot's place in odom), and jaeger_ros.tracker.turning plans the turns:
agreeing DoAs start a fixed rotation to their bearing (the talking track's when it agrees),
executed on odometry, verified by what is heard once the robot stands still. A DoA counts when its confidence is at
least `min_confidence` and the robot turned less than `max_smear_deg` over its audio window
(`window_s`, as jaeger_node's); with `target_voice` set, only that voice's DoAs and tracks.

The robot's heading is the newest odom -> base_link from /tf, advanced by the commands sent since
then, predicted for when a command sent now acts: the base's delay in obeying is fitted to the
odometry of the last `delay_window_s` every second it turned (turning.actuation_delay). It
turns at `gain` x the remaining angle, at least `min_angular_rps` and at most `max_angular_rps`;
a zero command is sent once whenever it stops.
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
from jaeger_ros.tracker.turning import (ACTUATION_DELAYS, Track, TurnConfig, TurnPlanner, actuation_delay,
                                       predicted_heading, wrap)

VOICES = ("", "male", "female")


def _yaw(matrix: np.ndarray) -> float:
    return math.atan2(matrix[1, 0], matrix[0, 0])


class TurnToSpeaker(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("turn_to_speaker", **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("target_voice", ""), ("max_angular_rps", 2.0), ("min_angular_rps", 0.3), ("gain", 3.0),
            ("dead_band_deg", 8.0), ("min_confidence", 0.5), ("doa_hold_s", 0.4), ("agree_deg", 30.0),
            ("agree_count", 3), ("max_heard_age_s", 1.0), ("window_s", 0.5), ("max_smear_deg", 5.0),
            ("delay_window_s", 4.0), ("rate_hz", 20.0), ("cmd_vel_topic", "/cmd_vel"),
            ("match_topic", "/jaeger/speaker_match"), ("talkers_topic", "/jaeger/talkers"),
            ("world_frame", "map"), ("odom_frame", "odom"), ("base_frame", "base_link"))}
        if p["target_voice"] not in VOICES:
            raise ValueError(f"target_voice must be one of {VOICES}, got {p['target_voice']!r}")
        if p["rate_hz"] <= 0 or p["window_s"] <= 0 or p["delay_window_s"] <= 0 or p["max_heard_age_s"] <= 0:
            raise ValueError("need rate_hz, window_s, delay_window_s and max_heard_age_s > 0")
        self.p = p
        self.planner = TurnPlanner(TurnConfig(
            dead_band_deg=p["dead_band_deg"], gain=p["gain"], min_angular_rps=p["min_angular_rps"],
            max_angular_rps=p["max_angular_rps"], agree_deg=p["agree_deg"], agree_count=p["agree_count"],
            doa_hold_s=p["doa_hold_s"], max_smear_deg=p["max_smear_deg"]))
        self.tf = TfListener(self, TransformBuffer(cache_s=10.0))
        self.talkers: TalkerArray | None = None
        self.chosen_id: int | None = None  # the talker turned to, kept while it talks
        self.command = 0.0
        self.sent: deque[tuple[float, float]] = deque(maxlen=400)  # (time, angular rad/s) of each command
        self.odometry: deque[tuple[float, float]] = deque()  # (stamp, heading) of each odometry sample
        self.delay = 0.1  # s from sending a command to the base obeying it (re-fitted while turning)
        self._fitted_at = -math.inf
        self.pub = self.create_publisher(Twist, p["cmd_vel_topic"], 10)
        self.create_subscription(SpeakerMatch, p["match_topic"], self._on_match, 20)
        self.create_subscription(TalkerArray, p["talkers_topic"], self._on_talkers, 10)
        self.create_timer(1.0 / p["rate_hz"], self._control)
        self.get_logger().info(f"turn_to_speaker: voice {p['target_voice'] or 'any'}, at most "
                               f"{p['max_angular_rps']} rad/s, dead band {p['dead_band_deg']} deg -> {p['cmd_vel_topic']}")

    @property
    def turns(self) -> int:
        return self.planner.turns

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
        odom, base = self.p["odom_frame"], self.p["base_frame"]
        try:
            direction = self.tf.buffer.lookup(odom, msg.header.frame_id, stamp)[:3, :3] @ d
            heading_then = _yaw(self.tf.buffer.lookup(odom, base, stamp))
        except TransformError as err:
            self.get_logger().warning(f"no TF for a speaker_match: {err}", throttle_duration_sec=5.0)
            return
        try:
            turned = heading_then - _yaw(self.tf.buffer.lookup(odom, base, stamp - self.p["window_s"]))
        except TransformError:
            turned = 0.0  # no odometry that old yet: the robot has not been seen turning
        self.planner.add_doa(stamp, math.atan2(direction[1], direction[0]), wrap(turned))

    def _on_talkers(self, msg: TalkerArray) -> None:
        self.talkers = msg

    def _talking_track(self, now: float) -> tuple[Any, float] | None:
        """(track, when it was last heard) of the talker to face: talking in the newest TalkerArray
        and heard within `max_heard_age_s` of now (the tracker publishes nothing while the robot
        turns, so the newest array may be old)."""
        if self.talkers is None:
            return None
        voice = self.p["target_voice"]
        stamp = stamp_seconds(self.talkers.header.stamp)
        talking = [t for t in self.talkers.talkers if t.talking and (not voice or t.voice == voice)
                   and now - (stamp - t.heard_ago_s) <= self.p["max_heard_age_s"]]
        chosen = [t for t in talking if t.id == self.chosen_id]  # stay with the talker turned to while it talks
        current = [t for t in talking if t.id == self.talkers.current_id]
        track = (chosen or current or sorted(talking, key=lambda t: t.heard_ago_s) or [None])[0]
        return None if track is None else (track, stamp - track.heard_ago_s)

    def _base_pose(self, now: float) -> tuple[np.ndarray, float] | None:
        """(position, heading) of the base in odom when a command sent now acts: the newest
        odometry advanced by the commands sent since, shifted by the base's delay."""
        buf = self.tf.buffer
        odom, base = self.p["odom_frame"], self.p["base_frame"]
        try:
            t = buf.latest_common_time(odom, base)
            pose = buf.lookup(odom, base, t if math.isfinite(t) else now)
        except TransformError:
            return None
        heading = _yaw(pose)
        if not math.isfinite(t):
            return pose[:3, 3], heading
        if not self.odometry or t > self.odometry[-1][0]:
            self.odometry.append((t, heading))
            while self.odometry[0][0] < t - self.p["delay_window_s"]:
                self.odometry.popleft()
        if now - self._fitted_at >= 1.0:
            self._fitted_at = now
            fitted = actuation_delay(list(self.sent), list(self.odometry), ACTUATION_DELAYS)
            self.delay = self.delay if fitted is None else fitted
        return pose[:3, 3], predicted_heading(heading, t, list(self.sent), now, self.delay)

    def _track_bearing(self, track: Any, heard: float, position: np.ndarray) -> Track | None:
        """The track's bearing in odom from the base (its place in the world through the newest
        odom <- world transform)."""
        buf = self.tf.buffer
        odom, world = self.p["odom_frame"], self.p["world_frame"]
        try:
            t = buf.latest_common_time(odom, world)
            odom_from_world = buf.lookup(odom, world, t if math.isfinite(t) else self._now())
        except TransformError:
            return None
        p = odom_from_world[:3, :3] @ [track.position.x, track.position.y, track.position.z] + odom_from_world[:3, 3]
        return Track(int(track.id), math.atan2(p[1] - position[1], p[0] - position[0]), heard)

    def _control(self) -> None:
        now = self._now()
        pose = self._base_pose(now)
        if pose is None:
            return
        position, heading = pose
        talking = self._talking_track(now)
        track = None if talking is None else self._track_bearing(*talking, position)
        was_turning = self.planner.turning
        angular = self.planner.step(now, heading, track)
        if self.planner.turning:
            self.chosen_id = self.planner.target_id
            if not was_turning:
                self.get_logger().info(f"turning {math.degrees(wrap(self.planner.goal - heading)):+.0f} deg "
                                       f"to {self.planner.source} (base delay {self.delay:.2f} s)")
        self._send(angular)

    def _send(self, angular: float) -> None:
        """Publish a turn command; a stop is sent once (not repeated while standing)."""
        if angular == 0.0 and self.command == 0.0:
            return
        self.command = angular
        self.sent.append((self._now(), angular))
        msg = Twist()
        msg.angular.z = float(angular)
        self.pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    run_node(TurnToSpeaker, args)


if __name__ == "__main__":
    main()
