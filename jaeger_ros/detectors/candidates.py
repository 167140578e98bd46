"""Every candidate talker in an RGB-D frame, with a category and a score.

People come from the pretrained person detectors (people.py); loudspeakers from the depth blobs
of jaeger_ros.classical.candidates (loudspeaker-sized objects standing on the floor), each
scored by the crop classifier of loudspeaker.py (trained on both worlds' renders;
blobs it scores below its threshold are dropped). Without its checkpoint the blobs, which
cannot tell a loudspeaker from a plant of the same size, carry BLOB_SCORE, a prior, not a
measurement. A blob that overlaps a person (a seated person is loudspeaker-sized) is the person,
and every blob is checked for a person by pose on its crop (seated people are too small in the
frame for the person detectors, and the classifier calls some of them loudspeakers; a blob it
keeps is checked on its crop as the image shows it, for on a grey background pose also finds
"people" on some loudspeakers). So is every person-sized depth blob
(PERSON_BLOB_*) that no detector explained: a person 3.5-4 m away is 110-140 px tall at
640x480, below HOG's 128 px window at the live 320 px width and too small for pose on the whole
frame, yet found by pose on her crop (mesh-world misses of the frame detectors: 7 of 30), and
so is a person 1.1-1.5 m away whose thighs and feet are below the image (PERSON_BLOB_CUT_M:
the frame's detectors and the standing-on-the-floor blob rule both miss her).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, NamedTuple

import numpy as np

from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.core.answers import azimuth_order
from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d, project
from jaeger_ros.core.threads import BACKGROUND_NICE, built_lowered, lower_this_thread
from jaeger_ros.detectors.loudspeaker import CHECKPOINT, LoudspeakerClassifier
from jaeger_ros.detectors.loudspeaker import THRESHOLD as LOUDSPEAKER_THRESHOLD
from jaeger_ros.detectors.people import PERSON, CropPoseCheck, PersonDetector

LOUDSPEAKER = "loudspeaker"
CATEGORIES = (LOUDSPEAKER, PERSON)
BLOB_SCORE = 0.5
PERSON_OVERLAP_IOU = 0.1
SEATED_MIN_SCORE = 0.8     # pose visibility on a blob's crop that makes it a person
PERSON_BLOB_HEIGHT_M = (0.6, 2.1)   # top of a person on the floor: sitting on it .. a tall adult
PERSON_BLOB_WIDTH_M = (0.2, 1.4)    # across the view: one cut by the frame's side .. legs stretched out
PERSON_BLOB_MAX_TOP_M = 2.2
PERSON_BLOB_STRIDE = 4
PERSON_BLOB_CUT_M = 1.1    # a person whose feet are below the frame shows nothing lower than this
SAME_PERSON_M = 0.5        # a blob this close (horizontally) to a found person is that person
SAME_BLOB_IOU = 0.5        # a person-sized blob this like a loudspeaker-sized one already retried is that blob


_log = logging.getLogger(__name__)


class Candidate(NamedTuple):
    box: Box3D
    category: str
    score: float


def _inside(point: np.ndarray, box: Box3D) -> bool:
    return bool(np.all(point >= box.min) and np.all(point <= box.max))


def still_there(box: Box3D, depth: np.ndarray, intrinsics: Intrinsics, margin_m: float = 0.25) -> bool:
    """Whether the depth image still shows something where `box` is: the median valid depth of
    the central half of its image footprint lies within its depth extent +- margin_m. A box
    carried over from an earlier frame (the background detectors are a few frames behind) is
    kept only while this holds, so a view that changed does not keep its old boxes."""
    u, v, front = project(box.corners(), intrinsics)
    if not front.all():
        return False
    h, w = depth.shape
    cu, cv, hu, hv = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2, (u.max() - u.min()) / 4, (v.max() - v.min()) / 4
    x0, x1 = int(np.clip(cu - hu, 0, w - 1)), int(np.clip(np.ceil(cu + hu), 1, w))
    y0, y1 = int(np.clip(cv - hv, 0, h - 1)), int(np.clip(np.ceil(cv + hv), 1, h))
    patch = depth[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    patch = patch[np.isfinite(patch) & (patch > 0)]
    if not patch.size:
        return False
    d = float(np.median(patch))
    return bool(-box.max[2] - margin_m <= d <= -box.min[2] + margin_m)


def _overlaps(blob: Box3D, other: Box3D) -> bool:
    return box_iou_3d(blob, other) > PERSON_OVERLAP_IOU or _inside(blob.center, other)


def combine(people: list[Box3D], blobs: list[Box3D], blob_scores: list[float] | None = None) -> list[Candidate]:
    """People and loudspeaker blobs as candidates, left to right (the release's bbox order);
    a blob overlapping a person box (3D IoU > PERSON_OVERLAP_IOU, or its centre inside it) is dropped."""
    scores = [BLOB_SCORE] * len(blobs) if blob_scores is None else list(blob_scores)
    found = [Candidate(p, PERSON, float(p.score)) for p in people]
    for blob, score in zip(blobs, scores):
        if any(_overlaps(blob, p) for p in people):
            continue
        found.append(Candidate(Box3D(blob.center, blob.size, label=LOUDSPEAKER, score=score), LOUDSPEAKER, score))
    return [found[i] for i in azimuth_order([c.box for c in found])]


def _classified(people: list[Box3D], blobs: list[Box3D], probs: np.ndarray | None) -> list[Candidate]:
    """combine() with the blobs the classifier keeps (all of them without a classifier)."""
    if probs is None:
        return combine(people, blobs)
    keep = [k for k, p in enumerate(probs) if p >= LOUDSPEAKER_THRESHOLD]
    return combine(people, [blobs[k] for k in keep], [float(probs[k]) for k in keep])


class CandidateDetector:
    """Person detector + depth-blob loudspeakers for a stream of frames (models loaded once).
    The default person detector is the live one: pose tracking between frames and HOG at
    320 px wide: at 640x480 and 90 degrees its smallest person is 224 px tall, a 1.7 m person at
    2.4 m (at 640 px: 4.9 m), but it costs ~40 ms instead of ~200 ms; pose and face still see
    one person and every frontal face beyond, and pose on the crops of unexplained depth blobs
    the people too small for the frame (see benchmarks/bench_detectors.py). The live node calls
    `submit`/`poll` (people in a background thread), everything else `__call__`."""

    def __init__(self, people: PersonDetector | None = None, blob_stride: int = 3,
                 loudspeakers: LoudspeakerClassifier | None | str = "default", seated: bool = True) -> None:
        # mediapipe's graph threads take the niceness of the thread that builds the models: built
        # lowered, they run below the frame path whoever calls them (the background run does)
        self.people = people or built_lowered(lambda: PersonDetector(video=True, hog_width=320))
        self.blob_stride = blob_stride
        if isinstance(loudspeakers, str):
            loudspeakers = LoudspeakerClassifier() if CHECKPOINT.is_file() else None
        self.loudspeakers = loudspeakers
        # every loudspeaker-sized blob (kept by the classifier or not) and person-sized blob that no
        # detector explained gets a pose check on its crop; only with the classifier, whose verdict
        # says how the crop is cut (isolated on grey for a rejected blob)
        self.seated = built_lowered(CropPoseCheck) if seated and loudspeakers is not None else None
        self._cond = threading.Condition()
        self._job: tuple | None = None
        self._done: list[Candidate] | None = None
        self._last: list[Candidate] = []   # the latest full result: its people are carried
        self._submitted = 0
        self._worker: threading.Thread | None = None

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
        return self._with_people(rgb, depth, intrinsics, *self._loudspeaker_blobs(rgb, depth, intrinsics))

    def _loudspeaker_blobs(self, rgb: np.ndarray, depth: np.ndarray,
                           intrinsics: Intrinsics) -> tuple[list[Box3D], np.ndarray | None]:
        """The loudspeaker-sized depth blobs and their classifier probabilities (None without it)."""
        try:
            blobs = boxes_from_depth(depth, intrinsics, stride=self.blob_stride)
        except ValueError:
            blobs = []   # no floor in view: people only
        if self.loudspeakers is None:
            return blobs, None
        return blobs, self.loudspeakers(rgb, depth, intrinsics, blobs)

    def _with_people(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, blobs: list[Box3D],
                     probs: np.ndarray | None, early: Callable[[list[Box3D]], None] | None = None) -> list[Candidate]:
        """The frame's candidates; `early` gets the frame detectors' people before the (as
        costly) pose checks on the blobs' crops."""
        persons = self.people.detect(rgb, depth, intrinsics)
        if probs is None:
            return combine(persons, blobs)
        keep = [k for k, p in enumerate(probs) if p >= LOUDSPEAKER_THRESHOLD]
        if self.seated is not None:
            if early is not None:
                early(list(persons))
            # blobs no detector explained: loudspeaker-sized ones (seated people, whether the
            # classifier keeps them or not) and person-sized ones (people too small in the
            # frame, or cut by its edges)
            kept = [blobs[k] for k in keep]
            others = [b for k, b in enumerate(blobs) if k not in keep] + self._person_blobs(depth, intrinsics)
            retried: list[Box3D] = []
            for blob, is_kept in [(b, True) for b in kept] + [(b, False) for b in others]:
                if any(_overlaps(blob, p) for p in persons + [k for k in kept if k is not blob]) or any(
                        np.hypot(*(blob.center - p.center)[[0, 2]]) < SAME_PERSON_M for p in persons):
                    continue
                score = self.seated(rgb, blob, intrinsics, depth, isolate=not is_kept)
                # on grey a person cut by the frame can lose her pose: her crop as the image shows it,
                # once per object (a blob found at both strides is one object; its two grey crops,
                # a few pixels apart, are both tried: pose finds her on one and not the other)
                if score == 0.0 and not is_kept and not any(box_iou_3d(blob, r) > SAME_BLOB_IOU for r in retried):
                    retried.append(blob)
                    score = self.seated(rgb, blob, intrinsics, depth, isolate=False)
                if score >= SEATED_MIN_SCORE:
                    persons.append(Box3D(blob.center, blob.size, label=PERSON, score=score,
                                         extra={"source": "blob+pose"}))
        return _classified(persons, blobs, probs)

    def submit(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
        """The live split: this frame's loudspeakers now (depth blobs + classifier, tens of ms)
        with the people of the last result that the depth still shows (still_there), and the
        people (0.2-0.7 s of 2 CPU cores, too much for a 10 Hz frame path) in a background
        thread; `poll` hands over the result: first with the people of the frame's detectors
        (and the earlier people the depth still shows), then the full one, about half the
        time later (the pose checks on the blobs' crops). A frame submitted while another
        waits replaces it."""
        blobs, probs = self._loudspeaker_blobs(rgb, depth, intrinsics)
        with self._cond:
            self._job = (rgb, depth, intrinsics, blobs, probs, self._submitted + 1)
            self._submitted += 1
            people = [c.box for c in self._last if c.category == PERSON]
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="candidate-detector", daemon=True)
                self._worker.start()
            self._cond.notify()
        return _classified([p for p in people if still_there(p, depth, intrinsics)], blobs, probs)

    def poll(self) -> list[Candidate] | None:
        """The candidates of the latest submitted frame found since the last poll (each result
        once: the early one, then the full one), else None."""
        with self._cond:
            done, self._done = self._done, None
        return done

    def _work(self) -> None:
        lower_this_thread(BACKGROUND_NICE)
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
                (rgb, depth, intrinsics, blobs, probs, number), self._job = self._job, None
            with self._cond:
                carried = [c.box for c in self._last if c.category == PERSON]
            try:
                found = self._with_people(rgb, depth, intrinsics, blobs, probs, lambda persons: self._early(
                    number, persons, carried, depth, intrinsics, blobs, probs))
            except ValueError as err:   # a malformed frame: its loudspeakers without people
                _log.warning("person detection failed on a frame: %s", err)
                found = _classified([], blobs, probs)
            with self._cond:
                if number == self._submitted:   # a newer frame supersedes this result
                    self._done = self._last = found

    def _early(self, number: int, persons: list[Box3D], carried: list[Box3D], depth: np.ndarray,
               intrinsics: Intrinsics, blobs: list[Box3D], probs: np.ndarray | None) -> None:
        """Hand over job `number`'s frame-detector people (with the earlier people its depth
        still shows that they do not explain) unless a newer frame was submitted: at a scene
        cut the pose checks on the crops would otherwise hold back the people already found."""
        shown = [p for p in carried if still_there(p, depth, intrinsics) and not any(_overlaps(p, q) for q in persons)]
        with self._cond:
            if number == self._submitted:
                self._done = _classified(persons + shown, blobs, probs)

    @staticmethod
    def _person_blobs(depth: np.ndarray, intrinsics: Intrinsics) -> list[Box3D]:
        try:
            return boxes_from_depth(depth, intrinsics, stride=PERSON_BLOB_STRIDE, height_range=PERSON_BLOB_HEIGHT_M,
                                    width_range=PERSON_BLOB_WIDTH_M, max_top=PERSON_BLOB_MAX_TOP_M,
                                    cut_floating=PERSON_BLOB_CUT_M)
        except ValueError:
            return []


_DEFAULT: CandidateDetector | None = None


def detect_candidates(rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Candidate]:
    """Candidates (box, category, score) of one frame, left to right, with a shared detector."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CandidateDetector()
    return _DEFAULT(rgb, depth, intrinsics)
