"""A simulated unicycle base: velocity commands in, true pose and drifting wheel odometry out.

Why: a robot that hears a talker behind it has to turn, and everything downstream (TF at the
frame stamp, world-frame tracks, the behaviour that turns) is only tested when the camera really
moves with the base. Poses are in `map` (REP-103: x, y on the floor, yaw about z up).

Odometry integrates the commanded velocities with a constant scale error and white noise per
step, so odom -> base_link drifts away from the truth as a real base does; the simulator knows
the truth and publishes map -> odom as the correction a localiser would, refreshed every
`localization_period_s` (between refreshes the drift since the last one shows).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaeger_ros.core.geometry import pose_matrix


def planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 pose of a frame on the floor (z = 0) with heading `yaw` (radians) about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return pose_matrix(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), [x, y, 0.0])


@dataclass(frozen=True)
class BaseLimits:
    max_linear_mps: float = 0.5
    max_angular_rps: float = 2.0
    command_timeout_s: float = 0.5      # a command older than this counts as stop
    odom_scale_error: float = 0.02      # relative error of the wheel odometry (linear and angular)
    odom_noise: float = 0.01            # per sqrt(second), metres and radians
    localization_period_s: float = 0.5  # how often map -> odom catches up with the truth

    def __post_init__(self) -> None:
        if min(self.max_linear_mps, self.max_angular_rps, self.command_timeout_s, self.localization_period_s) <= 0 \
                or self.odom_scale_error < 0 or self.odom_noise < 0:
            raise ValueError(f"bad base limits {self}")


@dataclass
class Base:
    """The unicycle: `command` stores a velocity, `advance` integrates truth and odometry to a time."""

    limits: BaseLimits
    rng: np.random.Generator
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    time: float = 0.0
    odom: np.ndarray = field(default_factory=lambda: np.zeros(3))  # x, y, yaw as the wheels believe
    map_from_odom: np.ndarray = field(default_factory=lambda: np.eye(4))
    _command: tuple[float, float, float] = (0.0, 0.0, -np.inf)  # v, w, stamp
    _localized_at: float = -np.inf

    def __post_init__(self) -> None:
        self.odom = np.array([self.x, self.y, self.yaw])
        sign = self.rng.choice([-1.0, 1.0], size=2)
        self._scale = 1.0 + sign * self.limits.odom_scale_error

    def command(self, linear_mps: float, angular_rps: float, stamp: float) -> None:
        """A velocity command (clipped to the limits; non-finite values stop the base)."""
        lim = self.limits
        if not (np.isfinite(linear_mps) and np.isfinite(angular_rps)):
            linear_mps = angular_rps = 0.0
        self._command = (float(np.clip(linear_mps, -lim.max_linear_mps, lim.max_linear_mps)),
                         float(np.clip(angular_rps, -lim.max_angular_rps, lim.max_angular_rps)), float(stamp))

    def velocity(self, t: float) -> tuple[float, float]:
        v, w, stamp = self._command
        return (v, w) if t - stamp <= self.limits.command_timeout_s else (0.0, 0.0)

    def advance(self, t: float, step_s: float = 0.01) -> None:
        """Integrate truth and odometry from the last time to `t` (never backwards)."""
        while self.time < t - 1e-12:
            dt = min(step_s, t - self.time)
            v, w = self.velocity(self.time)
            mid = self.yaw + w * dt / 2.0
            self.x += v * dt * np.cos(mid)
            self.y += v * dt * np.sin(mid)
            self.yaw = float(np.arctan2(np.sin(self.yaw + w * dt), np.cos(self.yaw + w * dt)))
            noise = self.rng.normal(0.0, self.limits.odom_noise * np.sqrt(dt), 2) if (v or w) else np.zeros(2)
            ov, ow = v * self._scale[0] + noise[0] / dt * (v != 0), w * self._scale[1] + noise[1] / dt * (w != 0)
            omid = self.odom[2] + ow * dt / 2.0
            self.odom += [ov * dt * np.cos(omid), ov * dt * np.sin(omid), ow * dt]
            self.time += dt
        if t - self._localized_at >= self.limits.localization_period_s:
            self.map_from_odom = self.map_from_base() @ np.linalg.inv(self.odom_from_base())
            self._localized_at = t

    def map_from_base(self) -> np.ndarray:
        """The true pose."""
        return planar_pose(self.x, self.y, self.yaw)

    def odom_from_base(self) -> np.ndarray:
        """The wheel odometry's belief."""
        return planar_pose(*self.odom)
