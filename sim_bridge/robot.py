"""A simulated unicycle base: velocity commands in, true pose and drifting wheel odometry out.

Why: a robot that hears a talker behind it has to turn, and everything downstream (TF at the
frame stamp, world-frame tracks, the behaviour that turns) is only tested when the camera really
moves with the base. Poses are in `map` (REP-103: x, y on the floor, yaw about z up).

Odometry integrates the commanded velocities with a constant scale error and white noise per
step, so odom -> base_link drifts away from the truth as a real base does; the simulator knows
the truth and publishes map -> odom as the correction a localiser would, refreshed every
`localization_period_s` (between refreshes the drift since the last one shows).

The simulator integrates the base a little ahead of the wall clock (audio is synthesised one
chunk ahead), so a command can arrive stamped before the base's time. The base keeps a trail of
its states (every integration step, `trail_s` long) and re-integrates from the stamp: a command
takes effect when it was received, as on a real base, not when the simulation next gets to it.
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
    trail_s: float = 10.0               # how far back the states are kept (poses at past stamps)

    def __post_init__(self) -> None:
        if min(self.max_linear_mps, self.max_angular_rps, self.command_timeout_s, self.localization_period_s,
               self.trail_s) <= 0 \
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
    trail_times: list[float] = field(default_factory=list)
    trail: list[tuple] = field(default_factory=list)  # (true x, y, yaw; odom; map_from_odom; command; localized at)

    def __post_init__(self) -> None:
        self.odom = np.array([self.x, self.y, self.yaw])
        sign = self.rng.choice([-1.0, 1.0], size=2)
        self._scale = 1.0 + sign * self.limits.odom_scale_error

    def command(self, linear_mps: float, angular_rps: float, stamp: float) -> None:
        """A velocity command (clipped to the limits; non-finite values stop the base), in force
        from `stamp`: when the base was already integrated past it, its states since are redone."""
        lim = self.limits
        if not (np.isfinite(linear_mps) and np.isfinite(angular_rps)):
            linear_mps = angular_rps = 0.0
        ahead = self.time
        if stamp < ahead and self.trail_times and self.trail_times[0] <= stamp:
            self._rewind(float(stamp))
        self._command = (float(np.clip(linear_mps, -lim.max_linear_mps, lim.max_linear_mps)),
                         float(np.clip(angular_rps, -lim.max_angular_rps, lim.max_angular_rps)), float(stamp))
        self.advance(ahead)

    def _rewind(self, t: float) -> None:
        """Back to the newest kept state at or before t, then forward to t with the command of then."""
        i = int(np.searchsorted(self.trail_times, t, side="right")) - 1
        true, odom, map_from_odom, command, localized_at = self.trail[i]
        self.time = self.trail_times[i]
        self.x, self.y, self.yaw = (float(v) for v in true)
        self.odom, self.map_from_odom = odom.copy(), map_from_odom.copy()
        self._command, self._localized_at = command, localized_at
        del self.trail_times[i:], self.trail[i:]
        self.advance(t)

    def _keep(self) -> None:
        self.trail_times.append(self.time)
        self.trail.append((np.array([self.x, self.y, self.yaw]), self.odom.copy(), self.map_from_odom.copy(),
                           self._command, self._localized_at))
        if self.time - self.trail_times[0] > 1.5 * self.limits.trail_s:  # trimmed in batches: cheap
            keep = int(np.searchsorted(self.trail_times, self.time - self.limits.trail_s))
            del self.trail_times[:keep], self.trail[:keep]

    def state_at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true x, y, yaw; odometry x, y, yaw; map_from_odom) at a past time t, interpolated
        between the kept states (the oldest or newest one outside them)."""
        times = self.trail_times
        if not times:
            return np.array([self.x, self.y, self.yaw]), self.odom.copy(), self.map_from_odom.copy()
        i = int(np.searchsorted(times, t))
        if i == 0:
            return self.trail[0][:3]
        if i >= len(times):
            return self.trail[-1][:3]
        (a0, o0, m0, *_), (a1, o1, *_) = self.trail[i - 1], self.trail[i]
        f = (t - times[i - 1]) / (times[i] - times[i - 1]) if times[i] > times[i - 1] else 1.0

        def lerp(p: np.ndarray, q: np.ndarray) -> np.ndarray:
            dyaw = np.arctan2(np.sin(q[2] - p[2]), np.cos(q[2] - p[2]))
            return np.array([p[0] + f * (q[0] - p[0]), p[1] + f * (q[1] - p[1]), p[2] + f * dyaw])
        return lerp(a0, a1), lerp(o0, o1), m0

    def velocity(self, t: float) -> tuple[float, float]:
        v, w, stamp = self._command
        return (v, w) if t - stamp <= self.limits.command_timeout_s else (0.0, 0.0)

    def advance(self, t: float, step_s: float = 0.01) -> None:
        """Integrate truth and odometry from the last time to `t` (never backwards)."""
        if not self.trail_times:
            self._keep()
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
            if self.time - self._localized_at >= self.limits.localization_period_s:
                self.map_from_odom = self.map_from_base() @ np.linalg.inv(self.odom_from_base())
                self._localized_at = self.time
            self._keep()

    def map_from_base(self) -> np.ndarray:
        """The true pose."""
        return planar_pose(self.x, self.y, self.yaw)

    def odom_from_base(self) -> np.ndarray:
        """The wheel odometry's belief."""
        return planar_pose(*self.odom)
