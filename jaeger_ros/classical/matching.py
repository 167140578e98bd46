"""Speaker matching: which candidate box does a direction of arrival point at."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D, box_category

TEMPERATURE_DEG = 3.0
"""Softmax temperature over angular distances: boxes 3 deg further away are e times less likely."""
PERSON_HEAD_M = 0.3
"""A person talks from her mouth: a DoA is measured against the top PERSON_HEAD_M of her box (the
head; the JAEGER camera frame's y is up), not her whole body, through whose legs or torso the
camera sees a loudspeaker behind her. Live mesh world streamed offline at 10 Hz, 16 scenes per
run: loudspeaker-talker match 85.1 -> 91.0 % (true boxes, mixed seeds 5-9 and loudspeaker seeds
5-6, 3897 frames), 85.8 -> 94.5 % (detector boxes, mixed seeds 5-9, 1581); person talkers 91.8 ->
90.3 % and 92.3 -> 89.3 %: every frame it won had a DoA within 8 deg of the talker, every frame
it lost one 8 deg or more off (a guess either way)."""


@dataclass(frozen=True)
class MatchResult:
    """index: into the boxes as given; rank: among them left to right by azimuth (0 = leftmost);
    label: answers.match_label of the rank (the official Left/Center/Right for 2-3 candidates,
    "Center" for one, "Left k"/"Right k" inside larger rows);
    confidence: softmax probability of the chosen box over angular distances."""

    index: int
    rank: int
    label: str
    confidence: float
    angles_deg: tuple[float, ...]


def _ray_hits_box(direction: np.ndarray, box: Box3D) -> bool:
    """Slab test of the ray from the camera origin along `direction`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = box.min / direction
        t2 = box.max / direction
    lo = np.where(direction == 0, np.where((box.min <= 0) & (box.max >= 0), -np.inf, np.inf), np.minimum(t1, t2))
    hi = np.where(direction == 0, np.where((box.min <= 0) & (box.max >= 0), np.inf, -np.inf), np.maximum(t1, t2))
    return bool(lo.max() <= hi.min() and hi.min() > 0)


def _centre_angle(direction: np.ndarray, box: Box3D) -> float:
    """Degrees between the unit ray and the box centre."""
    c = box.center / np.linalg.norm(box.center)
    return float(np.degrees(np.arccos(np.clip(direction @ c, -1.0, 1.0))))


def voice_region(box: Box3D) -> Box3D:
    """The part of a candidate its voice comes from: a person's head (PERSON_HEAD_M), else the box."""
    if box_category(box) != "person":
        return box
    lo, hi = box.min.copy(), box.max.copy()
    lo[1] = max(lo[1], hi[1] - PERSON_HEAD_M)
    return Box3D((lo + hi) / 2.0, hi - lo, box.label, box.score, box.extra)


def _angle_to_region(unit: np.ndarray, region: Box3D) -> float:
    return 0.0 if _ray_hits_box(unit, region) else _centre_angle(unit, region)


def angle_to_box(direction: np.ndarray, box: Box3D) -> float:
    """Degrees between the ray and the box's voice_region: 0 if the ray passes through it, else to
    its centre."""
    return _angle_to_region(np.asarray(direction, float) / np.linalg.norm(direction), voice_region(box))


def match_speaker(direction_cam: np.ndarray, boxes: list[Box3D]) -> MatchResult:
    """The candidate nearest in angle to `direction_cam` (camera frame; angle_to_box); among several
    the ray passes through (a near person's head can cover a far loudspeaker), the one whose
    centre is nearest, not the first listed (its probability stays at most 1/2 then: both fit the
    ray, so such a pick is never a sure one for pipeline.frame's hold)."""
    if not boxes:
        raise ValueError("no candidate boxes to match")
    d = np.asarray(direction_cam, dtype=float).reshape(3)
    if not np.all(np.isfinite(d)) or np.linalg.norm(d) == 0:
        raise ValueError(f"invalid direction {d}")
    unit = d / np.linalg.norm(d)
    regions = [voice_region(b) for b in boxes]
    angles = tuple(_angle_to_region(unit, r) for r in regions)
    index = min(range(len(boxes)),
                key=lambda i: (angles[i], _centre_angle(unit, regions[i]) if angles[i] == 0.0 else 0.0))
    return _scored(angles, boxes, index)


def rescored(match: MatchResult, boxes: list[Box3D], index: int) -> MatchResult:
    """`match`'s direction as a match of candidate `index` of the same `boxes`, from the angles
    `match` holds (not measured again): the box a held match keeps."""
    if len(match.angles_deg) != len(boxes):
        raise ValueError(f"the match measured {len(match.angles_deg)} boxes, not these {len(boxes)}")
    return _scored(match.angles_deg, boxes, index)


def _scored(angles: tuple[float, ...], boxes: list[Box3D], index: int) -> MatchResult:
    """Candidate `index` scored by the softmax over the angles to every candidate."""
    if not 0 <= index < len(boxes):
        raise ValueError(f"index {index} is not one of {len(boxes)} boxes")
    logits = -np.asarray(angles) / TEMPERATURE_DEG
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    rank = answers.azimuth_order(boxes).index(index)
    return MatchResult(index, rank, answers.match_label(rank, len(boxes)), float(probs[index]), angles)
