"""Planning the turns of a robot that faces whoever talks (ROS-free core of turn_to_speaker).

Why a plan and not a heading loop on the camera's pose: every heading the robot can read lags
(TF comes with the frames, a DoA is computed over a window of audio), so a loop that closes on
it overshoots, reverses and chatters. Here everything is a bearing in the odometry frame, which
does not move when the robot turns:

- a turn starts when `agree_count` successive confident DoAs agree on a bearing more than
  `dead_band_deg` from the robot's heading. Its goal is that bearing, or the talking track's when
  one lies within `agree_deg` of it (filtered over many frames, the better bearing); a track
  alone never starts a turn: one stray DoA (a reflection, the front-back ambiguity) can make a
  track "talk" for a moment. The goal is fixed for the turn (refined only by the talking track
  of the same talker, whose place in the world does not depend on the turn);
- the turn is executed on odometry (the newest odom -> base_link, advanced by the commands sent
  since) and ends inside half the dead band or when the heading passed the goal;
- then it is verified: the next directions of arrival heard from a still camera, or the talking
  track heard after the turn ended, start a correction only if it is again outside the dead
  band (a track heard before then says nothing about where the robot now faces, and the tracker
  may not have published since: it drops frames heard while turning).
A DoA whose audio window was heard while the robot turned more than `max_smear_deg` is smeared
towards where the camera looked before and is ignored.

A base obeys a command some time after it was sent (transport, a busy driver). Ignored, that
delay makes every turn overshoot by speed x delay. `actuation_delay` measures it by fitting the
odometry to the commands sent, shifted in time; the heading is then predicted for when a
command sent now will act.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


def wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


@dataclass(frozen=True)
class TurnConfig:
    dead_band_deg: float = 8.0      # facing: no turn starts inside this
    gain: float = 3.0               # rad/s per rad of remaining turn
    min_angular_rps: float = 0.3
    max_angular_rps: float = 2.0
    agree_deg: float = 30.0         # DoAs, or a DoA and a track, this close are one talker
    agree_count: int = 3            # a new voice needs this many successive DoAs that agree
    doa_hold_s: float = 0.4         # a DoA older than this does not start a turn
    max_smear_deg: float = 5.0      # DoAs heard while the robot turned more than this are ignored

    def __post_init__(self) -> None:
        if not 0 <= self.min_angular_rps <= self.max_angular_rps or self.max_angular_rps <= 0 or self.gain <= 0 \
                or self.dead_band_deg < 0 or self.agree_deg <= 0 or self.max_smear_deg < 0 or self.agree_count < 1:
            raise ValueError("need 0 <= min_angular_rps <= max_angular_rps, max_angular_rps > 0, gain > 0, "
                             f"dead_band_deg >= 0, agree_deg > 0, max_smear_deg >= 0 and agree_count >= 1, got {self}")


ACTUATION_DELAYS = np.arange(0.0, 0.62, 0.02)
"""The delays (s) `actuation_delay` chooses from: up to 0.6 s, in steps of one 50 Hz tick."""


def commanded_angle(sent: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """Radians the commands `sent` ((send time, rad/s), each held until the next; nothing before
    the first) add up to from the first send until each of `times`."""
    if not sent:
        return np.zeros(np.shape(times))
    knots = np.array([t for t, _ in sent], dtype=float)
    rates = np.array([r for _, r in sent], dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(rates[:-1] * np.diff(knots))])
    times = np.asarray(times, dtype=float)
    i = np.clip(np.searchsorted(knots, times, side="right") - 1, 0, len(knots) - 1)
    return np.where(times < knots[0], 0.0, cumulative[i] + rates[i] * (times - knots[i]))


def predicted_heading(heading: float, stamp: float, sent: list[tuple[float, float]], now: float,
                      delay_s: float) -> float:
    """The heading when a command sent `now` acts, from odometry `heading` at `stamp`: the commands
    sent since `stamp - delay_s` (those the odometry does not show yet) are added."""
    ahead = commanded_angle(sent, np.array([now, stamp - delay_s]))
    return heading + float(ahead[0] - ahead[1])


def actuation_delay(sent: list[tuple[float, float]], odometry: list[tuple[float, float]],
                    candidates: np.ndarray, min_turn_rad: float = 0.3) -> float | None:
    """The delay (one of `candidates`, seconds) that best explains the odometry's heading changes
    ((stamp, yaw) samples, in time order) by the commands sent; None when the robot turned less
    than `min_turn_rad` over the samples (nothing to fit)."""
    if len(odometry) < 3 or not sent:
        return None
    stamps = np.array([t for t, _ in odometry], dtype=float)
    observed = np.diff(np.unwrap([y for _, y in odometry]))
    if np.abs(observed).sum() < min_turn_rad:
        return None
    shifted = commanded_angle(sent, stamps[None, :] - np.asarray(candidates, dtype=float)[:, None])
    cost = ((np.diff(shifted, axis=1) - observed[None, :]) ** 2).sum(axis=1)
    return float(candidates[int(np.argmin(cost))])


@dataclass(frozen=True)
class Track:
    """The talking track as the planner needs it: who, its bearing in odom from the robot, and
    when it was last heard (clock seconds)."""

    id: int
    bearing: float
    heard: float


class TurnPlanner:
    """Bearings (radians, odometry frame) in; an angular velocity per control tick out."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.doas: deque[tuple[float, float]] = deque(maxlen=config.agree_count)  # (stamp, bearing) of usable DoAs
        self.stopped_at = -math.inf  # when the last turn ended
        self.goal: float | None = None
        self.target_id: int | None = None  # the track turned to (None: a new voice's DoA)
        self.direction = 0.0      # +1 left, -1 right while turning, 0 standing
        self.turns = 0
        self.smeared = 0          # DoAs ignored as heard while turning

    @property
    def turning(self) -> bool:
        return self.direction != 0.0

    @property
    def source(self) -> str:
        return "doa" if self.target_id is None else f"talker {self.target_id}"

    def add_doa(self, stamp: float, bearing: float, turned_in_window: float) -> bool:
        """A confident DoA's bearing; `turned_in_window` (radians) is how far the robot turned
        while its audio was heard. Returns whether it was kept."""
        if abs(math.degrees(turned_in_window)) > self.config.max_smear_deg:
            self.smeared += 1
            return False
        if self.doas and stamp <= self.doas[-1][0]:
            return False  # out of order
        self.doas.append((stamp, bearing))
        return True

    def _heard(self, now: float) -> float | None:
        """The bearing `agree_count` successive recent DoAs agree on (None: no agreement)."""
        cfg = self.config
        if len(self.doas) < cfg.agree_count or now - self.doas[-1][0] > cfg.doa_hold_s:
            return None
        b = self.doas[-1][1]
        if any(abs(math.degrees(wrap(a - b))) > cfg.agree_deg for _, a in self.doas):
            return None
        return b

    def step(self, now: float, heading: float, track: Track | None, follow: bool = False) -> float:
        """The angular velocity for this tick, given the robot's heading in odom now and the
        talking track (None when nobody talks). `follow`: `track` is a chosen talker (the last
        one heard, or a given voice) to face even while silent, so its bearing alone starts a turn."""
        cfg = self.config
        if self.turning:
            if track is not None and (self.target_id == track.id or (
                    self.target_id is None and abs(math.degrees(wrap(track.bearing - self.goal))) <= cfg.agree_deg)):
                self.goal, self.target_id = track.bearing, track.id
            remaining = wrap(self.goal - heading)
            if abs(math.degrees(remaining)) <= cfg.dead_band_deg / 2.0 or remaining * self.direction < 0:
                self.direction, self.stopped_at = 0.0, now
                self.doas.clear()  # verify with what is heard from the new heading
                return 0.0
            return self.direction * min(cfg.max_angular_rps, max(cfg.min_angular_rps, cfg.gain * abs(remaining)))
        if track is not None and track.heard <= self.stopped_at and not follow:
            track = None  # heard before the turn ended: wait for the track's next update
        goal, target_id = self._heard(now), None
        if goal is None and follow and track is not None:
            goal, target_id = track.bearing, track.id
        if goal is None:
            return 0.0
        if track is not None and abs(math.degrees(wrap(goal - track.bearing))) <= cfg.agree_deg:
            goal, target_id = track.bearing, track.id
        error = wrap(goal - heading)
        if abs(math.degrees(error)) <= cfg.dead_band_deg:
            return 0.0
        self.goal, self.target_id, self.direction = goal, target_id, math.copysign(1.0, error)
        self.turns += 1
        return self.step(now, heading, track, follow)
