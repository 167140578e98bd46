"""Persistent talker tracks in the world frame from per-frame directions of arrival (ROS-free).

Why: a frame's answer lives in the camera; a robot that turns forgets it. Here each confident
direction of arrival, placed in `map` with the camera pose at its stamp, adds evidence to one
talker track, and the track's position is the weighted least-squares point of its evidence:

- a RANGED observation (the DoA hit a matched box, or the depth image along the DoA ray) is a
  position measurement (information I / sigma^2);
- a BEARING-ONLY observation (the voice is outside the field of view) says "the talker lies on
  the ray": its residual is the ANGLE between the ray and the talker as seen from the ray's
  origin, i.e. the distance across the ray over the range (information (I - d d^T) /
  (range x bearing sigma)^2, re-weighted with the current range a few times). Rays from poses
  the robot moved between triangulate the talker;
- a weak prior at `default_range_m` along the first ray keeps the solution defined while every
  ray comes from one spot (a robot turning in place cannot measure range by sound).

Why angles and a fresh solve: distances across rays that share an origin are all small next to
that origin, so a distance-weighted fit (or a Kalman filter linearised about a guess) slides a
heard-only talker onto the robot; an angular fit leaves the range to the evidence. Evidence fades with
`memory_s` measured from the track's newest observation, so a talker that walks is followed and
one that falls silent keeps its last place; at most `max_evidence` items are kept.

Association picks the nearest track inside an angular gate (voices that are known must agree).
A voice IDENTITY (`voice_id`, from detectors.voice_id) steers association inside the gate: the
track whose identity it is (the id most often heard on it) costs `gate_deg` less, a track of
another identity `gate_deg` more. Identity does not override geometry: on the simulator's
voices a DoA can carry the wrong id (a new voice matched to a known one early in its turn, or the
pool still pointing at the last talker), and letting the id pull a track across the room moved
talkers' tracks to other talkers (bench_talkers, 120 s, seed 0: recall 0.73, against 0.996
without voice ids); and online clustering
sometimes splits one voice into two ids, so another id is dearer, not refused (a refused one
opened a duplicate track on the same talker). A known gender that differs (from pitch: 42/42
held-out turns right) is refused. So a new voice of the same gender within the gate of a
known talker joins that track at first. A talker keeps their track, and its identity,
across silences (up to forget_s), leaving the view and robot turns because the track lives in
the world frame; one who walks away while silent gets a new track (which inherits nothing).
An observation in no track's gate starts a tentative track that becomes a talker after `confirm_hits` observations
within `tentative_timeout_s`. Tracks closer than `merge_m` merge into the older one (its id
survives); talkers unheard for `forget_s` are deleted, and so is a silent track the camera SEES
THROUGH (`clear_seen_through`: the depth image shows free space beyond its place, for
`seen_through_s`): the talker has left that spot, and a stale track there would take the id of
whoever stands near it next (live mesh world: a track of an earlier room's talker 0.6 m from
the next room's talker was that talker's nearest track until her own was confirmed). Silence
(a low-confidence DoA) updates nothing. Observations must arrive in stamp order: an older one than the last accepted, or one
older than `max_delay_s` at arrival, is dropped and counted.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from jaeger_ros.core.geometry import Intrinsics, inside_image, optical_to_camera, project, transform_points

MIN_RANGE_M = 0.5
"""Bearing weights use at least this range: no talker stands inside the robot."""


@dataclass(frozen=True)
class TrackerConfig:
    bearing_sigma_deg: float = 8.0       # DoA noise across the ray
    min_confidence: float = 0.2          # below: silence, no update
    gate_deg: float = 25.0               # a DoA belongs to a track within this angle of it
    default_range_m: float = 2.0         # where a bearing-only track starts along its ray
    range_prior_sigma_m: float = 1.5     # ... and how unsure that is
    position_sigma_m: float = 0.15       # a ranged observation's noise
    memory_s: float = 20.0               # evidence fades with this time constant
    max_evidence: int = 200
    confirm_hits: int = 3
    tentative_timeout_s: float = 2.0
    forget_s: float = 120.0
    merge_m: float = 0.5
    talking_hold_s: float = 0.6          # a track talks while heard within this long
    max_delay_s: float = 1.0             # older at arrival: stale
    seen_through_m: float = 0.5          # depth this far beyond a silent track's place: free space there ...
    seen_through_s: float = 0.5          # ... for this long deletes it

    def __post_init__(self) -> None:
        positive = ("bearing_sigma_deg", "gate_deg", "default_range_m", "range_prior_sigma_m", "position_sigma_m",
                    "tentative_timeout_s", "forget_s", "talking_hold_s", "max_delay_s", "memory_s",
                    "seen_through_m", "seen_through_s")
        bad = [name for name in positive if not getattr(self, name) > 0]
        if bad or self.confirm_hits < 1 or self.max_evidence < 1 or self.merge_m < 0 \
                or not 0 <= self.min_confidence <= 1:
            raise ValueError(f"bad tracker configuration: {', '.join(bad) or self}")


@dataclass(frozen=True)
class Observation:
    """One frame's DoA in `map`: from `origin` along unit `direction`; `position` when the frame
    also says how far (a matched box or depth along the ray)."""

    stamp: float
    origin: np.ndarray
    direction: np.ndarray
    confidence: float
    position: np.ndarray | None = None
    position_sigma_m: float | None = None
    voice: str = ""
    seen: bool = False  # the talker is in the camera's view (the position came from vision)
    voice_id: str = ""  # identity of the voice ("voice_<n>"), "" unknown


@dataclass
class Track:
    """One talker: position and covariance in `map` solved from its evidence (see module doc)."""

    id: int
    voice: str
    first_heard: float
    last_heard: float
    prior: tuple[np.ndarray, np.ndarray]  # (information 3x3, information @ point)
    evidence: list[Observation] = field(default_factory=list)
    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    covariance: np.ndarray = field(default_factory=lambda: np.eye(3))
    hits: int = 1
    confirmed: bool = False
    last_seen: float | None = None
    voice_ids: Counter[str] = field(default_factory=Counter)  # voice ids heard on it, with counts
    seen_through_since: float | None = None  # first frame of the current run that saw free space at its place

    @property
    def voice_id(self) -> str:
        """Its identity: the voice id heard most often on it ("" none)."""
        return self.voice_ids.most_common(1)[0][0] if self.voice_ids else ""

    def talking(self, now: float, hold_s: float) -> bool:
        return now - self.last_heard <= hold_s

    def solve(self, config: "TrackerConfig", iterations: int = 5) -> None:
        """Gauss-Newton on the prior, the ranged residuals and the bearing ANGLES (module doc),
        from the current position; the covariance is the inverse of the final information."""
        ev = self.evidence
        fade = np.exp(-(self.last_heard - np.array([o.stamp for o in ev])) / config.memory_s)
        ranged = np.array([o.position is not None for o in ev])
        info_r, vec_r = np.zeros((3, 3)), np.zeros(3)
        for o, w in zip((o for o, r in zip(ev, ranged) if r), fade[ranged]):
            a = w / (o.position_sigma_m or config.position_sigma_m) ** 2
            info_r += a * np.eye(3)
            vec_r += a * np.asarray(o.position, dtype=float)
        origins = np.array([o.origin for o in ev if o.position is None], dtype=float).reshape(-1, 3)
        dirs = np.array([o.direction for o in ev if o.position is None], dtype=float).reshape(-1, 3)
        across = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]
        w = fade[~ranged] / np.radians(config.bearing_sigma_deg) ** 2
        prior_info, prior_vec = self.prior
        x = self.position.copy()
        for _ in range(iterations):
            to = x - origins
            r = np.maximum(np.linalg.norm(to, axis=1), MIN_RANGE_M)
            u = to / r[:, None]
            ortho = np.eye(3)[None] - u[:, :, None] * u[:, None, :]
            jtj = np.einsum("nij,njk,nkl->nil", ortho, across, ortho) / (r ** 2)[:, None, None]
            jte = np.einsum("nij,njk,nk->ni", ortho, across, u) / r[:, None]
            info = prior_info + info_r + np.einsum("n,nij->ij", w, jtj)
            grad = prior_info @ x - prior_vec + info_r @ x - vec_r + np.einsum("n,ni->i", w, jte)
            step = np.linalg.solve(info, grad)
            norm = np.linalg.norm(step)
            x = x - step * min(1.0, 1.0 / norm) if norm > 0 else x
            if norm < 1e-4:
                break
        cov = np.linalg.inv(info)
        self.covariance = (cov + cov.T) / 2.0
        self.position = x


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise ValueError("zero or non-finite direction")
    return v / n


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(_unit(a), _unit(b)), -1.0, 1.0))))


def in_view(point_map: np.ndarray, map_from_optical: np.ndarray, intrinsics: Intrinsics,
            max_range_m: float = 8.0) -> bool:
    """Whether a map point projects inside the image of a camera at that optical-frame pose."""
    p_cam = optical_to_camera(transform_points(np.linalg.inv(map_from_optical), point_map))
    if np.linalg.norm(p_cam) > max_range_m:
        return False
    return inside_image(p_cam, intrinsics)


class TalkerTracker:
    """Tracks keyed by a stable id; `update` one observation at a time, `prune` now and then."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self._next_id = 1
        self._last_stamp = -np.inf

    # --- association ----------------------------------------------------------------------
    def _cost(self, track: Track, obs: Observation, direction: np.ndarray) -> float | None:
        """Angle (degrees, plus a small range term) from the observation to the track; None
        outside the gate or for a known, different voice (target_voice's gender). The track of the
        observation's own voice identity costs gate_deg less, another identity's gate_deg more
        (module doc)."""
        penalty = 0.0
        if obs.voice_id and track.voice_ids:
            penalty = -self.config.gate_deg if obs.voice_id == track.voice_id else self.config.gate_deg
        if obs.voice and track.voice and obs.voice != track.voice:
            return None
        to_track = track.position - obs.origin
        if np.linalg.norm(to_track) < 0.2:
            return None
        angle = angle_deg(direction, to_track)
        if angle > self.config.gate_deg:
            return None
        if obs.position is None:
            return angle + penalty
        gap = float(np.linalg.norm(np.asarray(obs.position) - track.position))
        spread = float(np.sqrt(np.trace(track.covariance) / 3.0))
        if gap > 1.0 + 2.0 * spread:  # same bearing, but clearly another talker behind or in front
            return None
        return angle + 10.0 * gap + penalty

    def _new_track(self, obs: Observation, direction: np.ndarray) -> Track:
        cfg = self.config
        point = obs.origin + direction * cfg.default_range_m
        prior_info = np.eye(3) / cfg.range_prior_sigma_m ** 2
        track = Track(self._next_id, obs.voice, obs.stamp, obs.stamp, (prior_info, prior_info @ point),
                      position=point if obs.position is None else np.asarray(obs.position, dtype=float),
                      last_seen=obs.stamp if obs.seen else None,
                      voice_ids=Counter([obs.voice_id] if obs.voice_id else []))
        track.evidence.append(replace(obs, direction=direction))
        track.solve(cfg)
        self._next_id += 1
        self.tracks[track.id] = track
        return track

    def _apply(self, track: Track, obs: Observation, direction: np.ndarray) -> None:
        cfg = self.config
        track.evidence.append(replace(obs, direction=direction))
        del track.evidence[:-cfg.max_evidence]
        track.hits += 1
        track.last_heard = max(track.last_heard, obs.stamp)
        if obs.seen:
            track.last_seen = obs.stamp
        if obs.voice_id:
            track.voice_ids[obs.voice_id] += 1
        if obs.voice and (not track.voice or obs.voice_id == track.voice_id):  # an identity's gender firms up
            track.voice = obs.voice
        if track.hits >= cfg.confirm_hits:
            track.confirmed = True
        track.solve(cfg)

    # --- public ---------------------------------------------------------------------------
    def update(self, obs: Observation, now: float | None = None) -> int | None:
        """Fold one observation in; returns the id of the track it updated or started, None
        when it was silence or dropped (see `dropped`)."""
        if obs.stamp < self._last_stamp:
            self.dropped["out_of_order"] += 1
            return None
        if now is not None and now - obs.stamp > self.config.max_delay_s:
            self.dropped["stale"] += 1
            return None
        try:
            direction = _unit(obs.direction)
        except ValueError:
            self.dropped["invalid"] += 1
            return None
        if not (np.all(np.isfinite(obs.origin)) and (obs.position is None or np.all(np.isfinite(obs.position)))):
            self.dropped["invalid"] += 1
            return None
        self._last_stamp = obs.stamp
        if obs.confidence < self.config.min_confidence:
            self.dropped["silence"] += 1
            return None
        self.accepted += 1
        costs = [(c, t.confirmed is False, t.id) for t in self.tracks.values()
                 if (c := self._cost(t, obs, direction)) is not None]
        if costs:
            track = self.tracks[min(costs)[2]]
            self._apply(track, obs, direction)
        else:
            track = self._new_track(obs, direction)
        merged = self._merge()
        return merged.get(track.id, track.id)

    def _merge(self) -> dict[int, int]:
        """Fuse tracks closer than merge_m (information-weighted) into the older id; returns
        {deleted id: surviving id}."""
        into: dict[int, int] = {}
        ids = sorted(self.tracks)
        for i, a_id in enumerate(ids):
            for b_id in ids[i + 1:]:
                a, b = self.tracks.get(a_id), self.tracks.get(b_id)
                if a is None or b is None:
                    continue
                # two voice ids this close are one talker heard under two ids (a split identity or a
                # mislabelled DoA): no two people stand within merge_m; a known other gender is kept apart
                if (a.voice and b.voice and a.voice != b.voice) or \
                        np.linalg.norm(a.position - b.position) >= self.config.merge_m:
                    continue
                a.evidence = sorted(a.evidence + b.evidence, key=lambda e: e.stamp)[-self.config.max_evidence:]
                a.hits += b.hits
                a.confirmed = a.confirmed or b.confirmed or a.hits >= self.config.confirm_hits
                a.last_heard = max(a.last_heard, b.last_heard)
                seen = [s for s in (a.last_seen, b.last_seen) if s is not None]
                a.last_seen = max(seen) if seen else None
                a.voice = a.voice or b.voice
                a.voice_ids += b.voice_ids
                a.solve(self.config)
                del self.tracks[b_id]
                into[b_id] = a_id
        return into

    def prune(self, now: float) -> list[int]:
        """Delete tentative tracks that were not confirmed in time and talkers unheard for
        forget_s; returns the deleted ids."""
        cfg = self.config
        gone = [t.id for t in self.tracks.values()
                if (not t.confirmed and now - t.first_heard > cfg.tentative_timeout_s)
                or now - t.last_heard > cfg.forget_s]
        for track_id in gone:
            del self.tracks[track_id]
        return gone

    def clear_seen_through(self, stamp: float, map_from_optical: np.ndarray, intrinsics: Intrinsics,
                           depth: np.ndarray) -> list[int]:
        """Delete the silent tracks this depth image (optical frame, metres, 0 or NaN: no
        reading) has shown free space at for seen_through_s: the nearest surfaces (10th
        percentile) in a 0.6 m square patch (0.3 m either side) around the track's pixel lie
        more than seen_through_m plus twice its range uncertainty beyond it. A surface at or before the track (the talker, or
        something hiding it), too few readings, or the track outside the view is no such
        evidence; a heard-only track with an unsure range is never seen through. Returns the ids."""
        cfg = self.config
        optical_from_map = np.linalg.inv(map_from_optical)
        gone = []
        for track in list(self.tracks.values()):
            if track.talking(stamp, cfg.talking_hold_s):
                track.seen_through_since = None
                continue
            x, y, z = transform_points(optical_from_map, track.position)
            through = False
            if z > MIN_RANGE_M:
                u, v, _ = project(optical_to_camera(np.array([x, y, z])), intrinsics)
                r = int(np.clip(intrinsics.fx * 0.3 / z, 2, 40))  # half-width: 0.3 m either side
                if 0 <= u < intrinsics.width and 0 <= v < intrinsics.height:
                    patch = depth[max(0, int(v) - r):int(v) + r + 1, max(0, int(u) - r):int(u) + r + 1]
                    valid = patch[np.isfinite(patch) & (patch > 0)]
                    ray = map_from_optical[:3, :3] @ (np.array([x, y, z]) / np.linalg.norm([x, y, z]))
                    sigma = float(np.sqrt(max(ray @ track.covariance @ ray, 0.0)))
                    through = valid.size >= 0.3 * patch.size and \
                        float(np.percentile(valid, 10)) > z + cfg.seen_through_m + 2.0 * sigma
            if not through:
                track.seen_through_since = None
                continue
            track.seen_through_since = track.seen_through_since if track.seen_through_since is not None else stamp
            if stamp - track.seen_through_since >= cfg.seen_through_s:
                del self.tracks[track.id]
                gone.append(track.id)
        return gone

    def talkers(self) -> list[Track]:
        """Confirmed tracks, by id."""
        return [self.tracks[i] for i in sorted(self.tracks) if self.tracks[i].confirmed]
