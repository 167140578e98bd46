"""Every candidate talker in an RGB-D frame, with a category and a score.

People come from the pretrained person detectors (people.py); loudspeakers, until a detector
trained on the mesh world's renders exists, from the depth blobs of
jaeger_ros.classical.candidates (loudspeaker-sized objects standing on the floor), which cannot
tell a loudspeaker from a plant of the same size: they carry BLOB_SCORE, a prior, not a
measurement. A blob that overlaps a person (a seated person is loudspeaker-sized) is the person.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.core.answers import azimuth_order
from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d
from jaeger_ros.detectors.people import PERSON, PersonDetector

LOUDSPEAKER = "loudspeaker"
CATEGORIES = (LOUDSPEAKER, PERSON)
BLOB_SCORE = 0.5
PERSON_OVERLAP_IOU = 0.1


class Candidate(NamedTuple):
    box: Box3D
    category: str
    score: float


def _inside(point: np.ndarray, box: Box3D) -> bool:
    return bool(np.all(point >= box.min) and np.all(point <= box.max))


def combine(people: list[Box3D], blobs: list[Box3D], blob_scores: list[float] | None = None) -> list[Candidate]:
    """People and loudspeaker blobs as candidates, left to right (the release's bbox order);
    a blob overlapping a person box (3D IoU > PERSON_OVERLAP_IOU, or its centre inside it) is dropped."""
    scores = [BLOB_SCORE] * len(blobs) if blob_scores is None else list(blob_scores)
    found = [Candidate(p, PERSON, float(p.score)) for p in people]
    for blob, score in zip(blobs, scores):
        if any(box_iou_3d(blob, p) > PERSON_OVERLAP_IOU or _inside(blob.center, p) for p in people):
            continue
        found.append(Candidate(Box3D(blob.center, blob.size, label=LOUDSPEAKER, score=score), LOUDSPEAKER, score))
    return [found[i] for i in azimuth_order([c.box for c in found])]


class CandidateDetector:
    """Person detector + depth-blob loudspeakers for a stream of frames (models loaded once)."""

    def __init__(self, people: PersonDetector | None = None, blob_stride: int = 3) -> None:
        self.people = people or PersonDetector()
        self.blob_stride = blob_stride

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
        persons = self.people.detect(rgb, depth, intrinsics)
        try:
            blobs = boxes_from_depth(depth, intrinsics, stride=self.blob_stride)
        except ValueError:
            blobs = []   # no floor in view: people only
        return combine(persons, blobs)


_DEFAULT: CandidateDetector | None = None


def detect_candidates(rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
    """Candidates (box, category, score) of one frame, left to right, with a shared detector."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CandidateDetector()
    return _DEFAULT(rgb, depth, intrinsics)
