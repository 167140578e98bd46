"""Every candidate talker in an RGB-D frame, with a category and a score.

People come from the pretrained person detectors (people.py); loudspeakers from the depth blobs
of jaeger_ros.classical.candidates (loudspeaker-sized objects standing on the floor), each
scored by the crop classifier of loudspeaker.py (trained on both worlds' renders;
blobs it scores below its threshold are dropped). Without its checkpoint the blobs, which
cannot tell a loudspeaker from a plant of the same size, carry BLOB_SCORE, a prior, not a
measurement. A blob that overlaps a person (a seated person is loudspeaker-sized) is the person,
and a blob the classifier rejects is checked for a person by pose on its crop (seated people
are too small in the frame for the person detectors).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.core.answers import azimuth_order
from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d
from jaeger_ros.detectors.loudspeaker import CHECKPOINT, LoudspeakerClassifier
from jaeger_ros.detectors.loudspeaker import THRESHOLD as LOUDSPEAKER_THRESHOLD
from jaeger_ros.detectors.people import PERSON, CropPoseCheck, PersonDetector

LOUDSPEAKER = "loudspeaker"
CATEGORIES = (LOUDSPEAKER, PERSON)
BLOB_SCORE = 0.5
PERSON_OVERLAP_IOU = 0.1
SEATED_MIN_SCORE = 0.8     # pose visibility on a rejected blob's crop that makes it a person


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
    """Person detector + depth-blob loudspeakers for a stream of frames (models loaded once).
    The default person detector is the live one: pose tracking between frames and HOG at
    320 px wide: at 640x480 and 90 degrees its smallest person is 224 px tall, a 1.7 m person at
    2.4 m (at 640 px: 4.9 m), but it costs ~40 ms instead of ~200 ms; pose and face still see
    one person and every frontal face beyond (see benchmarks/bench_detectors.py)."""

    def __init__(self, people: PersonDetector | None = None, blob_stride: int = 3,
                 loudspeakers: LoudspeakerClassifier | None | str = "default", seated: bool = True) -> None:
        self.people = people or PersonDetector(video=True, hog_width=320)
        self.blob_stride = blob_stride
        if isinstance(loudspeakers, str):
            loudspeakers = LoudspeakerClassifier() if CHECKPOINT.is_file() else None
        self.loudspeakers = loudspeakers
        # blobs the classifier rejects get a pose check on their crop (needs the classifier)
        self.seated = CropPoseCheck() if seated and loudspeakers is not None else None

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
        persons = self.people.detect(rgb, depth, intrinsics)
        try:
            blobs = boxes_from_depth(depth, intrinsics, stride=self.blob_stride)
        except ValueError:
            blobs = []   # no floor in view: people only
        if self.loudspeakers is None or not blobs:
            return combine(persons, blobs)
        probs = self.loudspeakers(rgb, depth, intrinsics, blobs)
        keep = [k for k, p in enumerate(probs) if p >= LOUDSPEAKER_THRESHOLD]
        if self.seated is not None:   # a rejected blob may be a seated person too small for the frame's detectors
            for k, blob in enumerate(blobs):
                on_person = any(box_iou_3d(blob, p) > PERSON_OVERLAP_IOU or _inside(blob.center, p) for p in persons)
                if k in keep or on_person:
                    continue
                score = self.seated(rgb, blob, intrinsics)
                if score >= SEATED_MIN_SCORE:
                    persons.append(Box3D(blob.center, blob.size, label=PERSON, score=score,
                                         extra={"source": "blob+pose"}))
        return combine(persons, [blobs[k] for k in keep], [float(probs[k]) for k in keep])


_DEFAULT: CandidateDetector | None = None


def detect_candidates(rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
    """Candidates (box, category, score) of one frame, left to right, with a shared detector."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CandidateDetector()
    return _DEFAULT(rgb, depth, intrinsics)
