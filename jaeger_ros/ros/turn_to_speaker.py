"""turn_to_speaker: turns the robot (cmd_vel) to face whoever is talking, including behind it.

Why two inputs: /jaeger/talkers (jaeger_tracker) gives a filtered place in `world_frame` for a
known talker, but a new voice needs a few frames to become a track; /jaeger/speaker_match gives
its direction at once. Both become bearings in `odom_frame` (a DoA through TF at its frame's
stamp, a track from the robot's place in odom), and jaeger_ros.tracker.turning plans the turns:
agreeing DoAs start a fixed rotation to their bearing (the talking track's when it agrees),
executed on odometry, verified by what is heard once the robot stands still. A DoA counts when its confidence is at
least `min_confidence` and the robot turned less than `max_smear_deg` over its audio window
(`window_s`, as jaeger_node's); with `target_voice` set, only that voice's DoAs and tracks.
`target` chooses WHOM to face: "" whoever talks now; "last" the talker heard last, faced even
after they fell silent (their track's bearing alone turns the robot); "voice_<n>" one voice
identity (SpeakerMatch.voice_id, Talker.voice_id): only its DoAs steer, and its track is faced
whenever it is known.

The robot's heading is the newest odom -> base_link from /tf, advanced by the commands sent since
then, predicted for when a command sent now acts: the base's delay in obeying is fitted to the
odometry of the last `delay_window_s` every second it turned (turning.actuation_delay). It
turns at `gain` x the remaining angle, at least `min_angular_rps` and at most `max_angular_rps`;
a zero command is sent once whenever it stops.
"""
from __future__ import annotations

import math
import re
from collections import deque
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from jaeger_ros.msg import SpeakerMatch, TalkerArray
from jaeger_ros.ros import convert as rc
from jaeger_ros.ros.params import Spec, declare
from jaeger_ros.ros.runner import run_node
from jaeger_ros.ros.tracker_node import TfListener, stamp_seconds
from jaeger_ros.tracker.transforms import TransformBuffer, TransformError
from jaeger_ros.tracker.turning import (ACTUATION_DELAYS, Track, TurnConfig, TurnPlanner, actuation_delay,
                                       predicted_heading, wrap)

VOICES = ("", "male", "female")
TARGET = re.compile(r"^(|last|voice_\d+)$")


def check_target(value: str) -> str:
    """`target` as given; ValueError (one line) unless "", "last" or "voice_<n>"."""
    if not TARGET.match(value):
        raise ValueError(f"target must be '', 'last' or 'voice_<n>' (e.g. voice_0), got {value!r}")
    return value


def _yaw(matrix: np.ndarray) -> float:
    return math.atan2(matrix[1, 0], matrix[0, 0])


PARAMETERS: tuple[Spec, ...] = (
    Spec("target_voice", "", "voice to face: '' any | male | female", choices=VOICES, live=True),
    Spec("target", "", "whom to face: '' whoever talks now | last (the talker heard last, also while silent) | "
         "voice_<n> (that voice identity only)", live=True),
    Spec("max_angular_rps", 0.5, "rad/s, fastest turn command (a real base: keep it low)", 0.05, 10.0),
    Spec("min_angular_rps", 0.3, "rad/s, slowest non-zero turn command (below it a base may not move)", 0.0, 10.0),
    Spec("gain", 3.0, "rad/s per rad of the turn still to go", 0.01, 100.0),
    Spec("dead_band_deg", 8.0, "deg, facing: no command inside this", 0.0, 90.0),
    Spec("min_confidence", 0.5, "a DoA steers only at or above this confidence", 0.0, 1.0, live=True),
    Spec("doa_hold_s", 0.4, "s, a DoA newer than this can start a turn before its track exists", 0.0, 10.0),
    Spec("agree_deg", 30.0, "deg, DoAs (or a DoA and the talking track) this close are one talker", 1.0, 180.0),
    Spec("agree_count", 3, "successive agreeing DoAs a new voice needs", 1, 100),
    Spec("max_heard_age_s", 1.0, "s, a talking track counts only if heard this recently", 0.01, 60.0, live=True),
    Spec("window_s", 0.5, "s, jaeger_node's audio window (a DoA heard while turning is smeared)", 0.01, 10.0),
    Spec("max_smear_deg", 5.0, "deg, DoAs heard while the robot turned more than this are ignored", 0.0, 180.0),
    Spec("delay_window_s", 4.0, "s of odometry that fit the base's delay in obeying commands", 0.1, 60.0),
    Spec("rate_hz", 20.0, "Hz, control rate", 0.5, 200.0),
    Spec("stamped", True, "publish geometry_msgs/TwistStamped (Kilted nav2/ros2_control default); false: Twist"),
    Spec("cmd_vel_topic", "cmd_vel", "velocity command output"),
    Spec("match_topic", "jaeger/speaker_match", "jaeger_ros/SpeakerMatch input"),
    Spec("talkers_topic", "jaeger/talkers", "jaeger_ros/TalkerArray input"),
    Spec("world_frame", "map", "frame of the talker tracks"),
    Spec("odom_frame", "odom", "turns are planned and executed in this frame"),
    Spec("base_frame", "base_link", "the robot base (frame_id of TwistStamped)"),
)
"""live=True ones apply at once (`ros2 param set`); the others are read at start-up (read_only)."""


class TurnToSpeaker(Node):
    def __init__(self, **kwargs) -> None:
        self.command = 0.0  # first: rclpy destroys a half-built node, and destroy_node sends a stop
        super().__init__("turn_to_speaker", **kwargs)
        p = declare(self, PARAMETERS)
        check_target(p["target"])
        self.p = p
        self.add_on_set_parameters_callback(self._check_change)
        self.add_post_set_parameters_callback(
            lambda params: self.p.update({q.name: q.value for q in params if q.name in self.p}))
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
        self.pub = self.create_publisher(TwistStamped if p["stamped"] else Twist, p["cmd_vel_topic"], 10)
        self.create_subscription(SpeakerMatch, p["match_topic"], self._on_match, 20)
        self.create_subscription(TalkerArray, p["talkers_topic"], self._on_talkers, 10)
        self.create_timer(1.0 / p["rate_hz"], self._control)
        self.get_logger().info(f"turn_to_speaker: voice {p['target_voice'] or 'any'}, at most "
                               f"{p['max_angular_rps']} rad/s, dead band {p['dead_band_deg']} deg -> {p['cmd_vel_topic']}")

    @staticmethod
    def _check_change(params: list[Any]) -> SetParametersResult:
        for q in params:
            if q.name == "target":
                try:
                    check_target(q.value)
                except ValueError as err:
                    return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    @property
    def turns(self) -> int:
        return self.planner.turns

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_match(self, msg: SpeakerMatch) -> None:
        voice, target = self.p["target_voice"], self.p["target"]
        if msg.doa.confidence < self.p["min_confidence"] or (voice and msg.target != voice):
            return
        if target.startswith("voice_") and msg.voice_id != target:
            return  # another voice, or speech not yet identified
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
        """(track, when it was last heard) of the talker to face: with `target` "last" the track
        heard last, with a voice id that voice's track, talking or not; else talking in the newest
        TalkerArray and heard within `max_heard_age_s` of now (the tracker publishes nothing while
        the robot turns, so the newest array may be old)."""
        if self.talkers is None:
            return None
        voice, target = self.p["target_voice"], self.p["target"]
        tracks = [t for t in self.talkers.talkers if not voice or t.voice == voice]
        if target == "last":
            heard = sorted(tracks, key=lambda t: -stamp_seconds(t.last_heard))[:1]
            return (heard[0], stamp_seconds(heard[0].last_heard)) if heard else None
        if target:
            named = [t for t in tracks if t.voice_id == target]
            return (named[0], stamp_seconds(named[0].last_heard)) if named else None
        talking = [t for t in tracks if t.talking and now - stamp_seconds(t.last_heard) <= self.p["max_heard_age_s"]]
        chosen = [t for t in talking if t.id == self.chosen_id]  # stay with the talker turned to while it talks
        current = [t for t in talking if t.id == self.talkers.current_id]
        track = (chosen or current or sorted(talking, key=lambda t: -stamp_seconds(t.last_heard)) or [None])[0]
        return None if track is None else (track, stamp_seconds(track.last_heard))

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
        angular = self.planner.step(now, heading, track, follow=bool(self.p["target"]))
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
        now = self._now()
        self.sent.append((now, angular))
        twist = Twist()
        twist.angular.z = float(angular)
        self.pub.publish(TwistStamped(header=rc.make_header(now, self.p["base_frame"]), twist=twist)
                         if self.p["stamped"] else twist)

    def destroy_node(self) -> None:
        """A zero command before going: a base without a command timeout would keep turning."""
        try:
            self._send(0.0)
        except Exception as err:  # the context may already be gone (killed): nothing left to tell the base
            self.get_logger().warning(f"could not send the final zero velocity: {err}")
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(TurnToSpeaker, args)


if __name__ == "__main__":
    main()
