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
PERSON_HEAD_WIDTH_M = 0.3
"""... and only PERSON_HEAD_WIDTH_M across and deep, around the box's vertical centre line: a head,
not the whole top of a box that a seated person's legs or a raised arm make wide. A DoA towards a
loudspeaker behind a near person passed through the top corner of her 0.4-0.5 m wide box and
matched her (live mesh world, mixed seed 12, scenes 11 and 12: the per-frame match 26 -> 64 of 64
and 8 -> 39 of 39 frames with the same DoAs and boxes). Offline with the same recorded DoAs:
detector boxes, mixed seeds 5-9: loudspeaker talkers 95.4 % either way (1581 frames), person
talkers 93.4 -> 93.3 % (1856); true boxes, mixed 5-9 + loudspeakers 5-6: 91.9 % either way
(3897), person talkers 92.1 -> 91.5 % (2421)."""


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
    """The part of a candidate its voice comes from: a person's head (PERSON_HEAD_M high,
    PERSON_HEAD_WIDTH_M across and deep), else the box."""
    if box_category(box) != "person":
        return box
    lo, hi = box.min.copy(), box.max.copy()
    lo[1] = max(lo[1], hi[1] - PERSON_HEAD_M)
    for axis in (0, 2):
        lo[axis] = max(lo[axis], box.center[axis] - PERSON_HEAD_WIDTH_M / 2)
        hi[axis] = min(hi[axis], box.center[axis] + PERSON_HEAD_WIDTH_M / 2)
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
    ray, so such a pick is never a sure one: TalkerFilter's evidence cannot tell them apart)."""
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


def _scored(angles: tuple[float, ...], boxes: list[Box3D], index: int, probability: float | None = None) -> MatchResult:
    """Candidate `index` with its rank and label, scored by `probability` (TalkerFilter's
    posterior), by default the softmax over the angles to every candidate."""
    if probability is None:
        logits = -np.asarray(angles) / TEMPERATURE_DEG
        probs = np.exp(logits - logits.max())
        probability = float(probs[index] / probs.sum())
    rank = answers.azimuth_order(boxes).index(index)
    return MatchResult(index, rank, answers.match_label(rank, len(boxes)), probability, angles)


SWITCH_S = 1.0
"""TalkerFilter's memory: between two DoAs dt apart the talker may have changed with probability
1 - exp(-dt / SWITCH_S) (spread over all candidates), so a pause of a second or more starts
almost afresh and 0.1 s frames keep ~90 % of what was heard. 0.5 / 2 s: see TalkerFilter."""
KERNEL_DEG = 4.0
FAR_DEG = 30.0
"""A sure DoA (confidence 1) is exp(-d / KERNEL_DEG) as likely under a candidate whose voice region
lies d deg further from it than the nearest candidate's, angles beyond FAR_DEG counted as FAR_DEG;
a DoA of confidence c mixes this with 1 - c of 'says nothing'. So a DoA 19 deg from one box and
38 deg from the other is evidence for the first (an absolute exp(-theta / 4 deg) made it none, and
make demo's first room stayed on the box one early sure DoA chose: 36 of 58 frames matched, 54
with the hold, 53 with this), one far from every box (a reflection behind the robot) or half way
between two is none, and one DoA, however sure, moves the belief by at most 1 / (1 - c)."""
NEW_VOICE_SWITCH = 0.5
"""A voice other than the last one named: the talker changed with at least this probability."""
SAME_BOX_M = 0.3
"""A re-detected candidate within this distance of an earlier one keeps that one's belief."""


class TalkerFilter:
    """Which candidate talks, as a forward (hidden-Markov) filter over the candidates: each DoA
    is evidence weighted by its confidence (KERNEL_DEG, FAR_DEG), belief leaks to all candidates
    with time (SWITCH_S) and at a change of voice (NEW_VOICE_SWITCH). Why: in reverberant rooms
    the pooled DoA wanders to reflections between onsets, often with high confidence, and the
    previous rule (hold the box of the last match surer than 0.7) kept whichever came first,
    right or wrong. Live mesh world streamed offline at 10 Hz (recorded DoAs of the live runs, 16
    scenes each, scored per frame): detector boxes, mixed seeds 5-9, loudspeaker talkers
    94.5 -> 95.4 % (1581 frames), person talkers 89.3 -> 93.4 % (1856); true boxes, mixed 5-9 +
    loudspeakers 5-6: 91.0 -> 91.9 % (3897), 90.3 -> 92.1 % (2421); make demo's rooms (seed 0, 4
    scenes) 97.8 -> 97.2 % (179). FAR_DEG 20 / 45: person talkers 92.0 / 91.1 % (detectors);
    SWITCH_S 3 s: 93.0 %; KERNEL_DEG 2 / 8: 93.9 / 93.3 %, loudspeaker talkers 94.6 / 95.4 %.
    Tried and dropped: absolute angles (exp(-theta / 4 deg): as good on these runs, 87.7 % in the
    demo), the capped exponent without the 1 - c floor (as good, but one sure stray DoA then
    overturns any belief), a linear pool (summing each frame's match probabilities, decaying
    over 1-100 s: 87-89 % person talkers), confidences to a power 2-8 or weighted by the pool's
    vote count (no gain)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new view, or the stream restarted)."""
        self._centres: np.ndarray | None = None
        self._belief: np.ndarray | None = None
        self._stamp = 0.0
        self._voice = ""

    def _prior(self, boxes: list[Box3D], stamp: float, voice_id: str) -> np.ndarray:
        """Belief carried to these boxes (new ones get an even share) and leaked by time and voice."""
        n = len(boxes)
        if self._belief is None or stamp < self._stamp:
            return np.full(n, 1.0 / n)
        carried = np.full(n, np.nan)
        for i, box in enumerate(boxes):
            gaps = np.linalg.norm(self._centres - box.center, axis=1)
            if gaps.min() <= SAME_BOX_M:
                carried[i] = self._belief[int(np.argmin(gaps))]
        if np.isnan(carried).all():
            return np.full(n, 1.0 / n)
        carried[np.isnan(carried)] = 1.0 / n
        carried /= carried.sum()
        switch = 1.0 - np.exp(-(stamp - self._stamp) / SWITCH_S)
        if voice_id and self._voice and voice_id != self._voice:
            switch = max(switch, NEW_VOICE_SWITCH)
        return (1.0 - switch) * carried + switch / n

    def update(self, match: MatchResult, confidence: float, boxes: list[Box3D], stamp: float,
               voice_id: str = "") -> MatchResult:
        """`match` (match_speaker of this DoA over `boxes`) as the filter's pick: the most likely
        candidate given every DoA so far (match's own box where they tie), its confidence the
        posterior probability."""
        if len(match.angles_deg) != len(boxes):
            raise ValueError(f"the match measured {len(match.angles_deg)} boxes, not these {len(boxes)}")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {confidence}")
        angles = np.minimum(np.asarray(match.angles_deg), FAR_DEG)
        likelihood = (1.0 - confidence) + confidence * np.exp(-(angles - angles.min()) / KERNEL_DEG)
        posterior = self._prior(boxes, stamp, voice_id) * likelihood
        posterior /= posterior.sum()
        self._centres = np.array([b.center for b in boxes], dtype=float)
        self._belief, self._stamp = posterior, stamp
        if voice_id:
            self._voice = voice_id
        best = int(np.argmax(posterior))
        index = match.index if posterior[match.index] >= posterior[best] * (1.0 - 1e-9) else best
        return _scored(match.angles_deg, boxes, index, float(posterior[index]))
