"""The classical baseline as an evaluation Method (see docs/architecture.md)."""
from __future__ import annotations

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D, azel_from_direction
from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.classical.doa import (estimate_by_gender, estimate_doa, pick_by_male_share, pick_by_pitch,
                                      talker_male_shares, talker_pitches, vote_shares)
from jaeger_ros.classical.matching import match_speaker
from jaeger_ros.data.dataset import ManifestEntry, Sample

SNAP_DEG = 10.0
"""A/B: a DoA within this of a loudspeaker box seen in depth is answered with that box's centre
(the label's point: the sound itself comes from the driver, a few degrees off it)."""


def _nearest_box(direction: np.ndarray, boxes: list[Box3D]) -> Box3D | None:
    """The box whose centre is nearest in angle to `direction`, if within SNAP_DEG."""
    d = direction / np.linalg.norm(direction)
    best = max(boxes, key=lambda b: d @ b.center / np.linalg.norm(b.center), default=None)
    if best is None or d @ best.center / np.linalg.norm(best.center) < np.cos(np.radians(SNAP_DEG)):
        return None
    return best


class ClassicalMethod:
    """Signal processing on the same inputs as the model.

    A: onset-weighted intensity-vector DoA, snapped to the centre of the nearest box found in
    depth (candidates.boxes_from_depth) within SNAP_DEG. B: the depth box whose own rising
    bins have the requested pitch relative to the other talker's (doa.talker_pitches), else the
    density peak of the onsets whose pitch says the requested gender (doa.estimate_by_gender),
    snapped likewise. C: boxes from depth alone. D: the ORACLE candidate box (the sample's
    metadata) that most onset votes point at (doa.vote_shares); E: of the two oracle boxes
    whose onsets carry the most voiced windows, the one with the larger (male) or smaller
    (female) share of low-pitched onsets (doa.talker_male_shares), or on a tie the one with
    the requested pitch relative to the other talker's -- oracle-box baselines,
    upper bounds for matching from sound. use_depth=False ("classical-audio"): A and B from the
    sound alone (no snapping; B by estimate_by_gender), to measure what the depth adds.
    doa picks the A/B estimator: "onset" (doa's onset votes), "robust" ("classical-audio-robust",
    "classical-robust": doa_robust's noise-aware direct-path-dominance votes; also robust=True),
    "dpd" / "dpd-floor" ("classical-audio-dpd", "-dpd-floor": doa_dpd's pooled direct-path
    covariance, one wave / direct + floor reflection), "dpd-flat" ("classical-audio-dpd-flat": the
    same pooling started from flattened vote weights, B by a voice-contrast density; doa_dpd doc),
    "dpd-fuse" ("classical-audio-dpd-fuse": dpd-flat pooled over the onsets' leading edges and
    combined with the flat votes' mean by inverse variance; doa_dpd doc).
    """

    tasks = frozenset("ABCDE")
    DOA = ("onset", "robust", "dpd", "dpd-floor", "dpd-flat", "dpd-fuse")

    def __init__(self, use_depth: bool = True, robust: bool = False, doa: str | None = None) -> None:
        doa = doa or ("robust" if robust else "onset")
        if doa not in self.DOA:
            raise ValueError(f"doa must be one of {self.DOA}, got {doa!r}")
        self.use_depth = use_depth
        self.name = ("classical" if use_depth else "classical-audio") + ("" if doa == "onset" else f"-{doa}")
        if doa == "robust":
            from jaeger_ros.classical import doa_robust
            self._doa, self._by_gender = doa_robust.estimate_doa, doa_robust.estimate_by_gender
        elif doa.startswith("dpd"):
            from functools import partial

            from jaeger_ros.classical import doa_dpd
            model = "floor" if doa == "dpd-floor" else "one"
            fuse = doa == "dpd-fuse"
            options = dict(model=model, seeding="flat" if doa in ("dpd-flat", "dpd-fuse") else "robust",
                           lead="edge" if fuse else "onset", fuse=fuse)
            self._doa = partial(doa_dpd.estimate_doa, **options)
            self._by_gender = partial(doa_dpd.estimate_by_gender, **options)
        else:
            self._doa, self._by_gender = estimate_doa, estimate_by_gender

    def answer(self, sample: Sample, entry: ManifestEntry) -> str:
        letter = entry.letter
        if letter == "C":
            return answers.format_boxes(boxes_from_depth(sample.depth(), sample.intrinsics))
        foa = sample.foa()
        rate = sample.sample_rate
        gender = entry.target_gender
        if letter in "AB":
            try:
                seen = boxes_from_depth(sample.depth(), sample.intrinsics) if self.use_depth else []
            except ValueError:
                seen = []
            chosen = None
            if letter == "B" and gender and len(seen) >= 2:
                k = pick_by_pitch(talker_pitches(foa, [b.center for b in seen], 2, rate), gender)
                chosen = None if k is None else seen[k]
            if chosen is None:
                doa = self._by_gender(foa, gender, rate) if letter == "B" and gender else self._doa(foa, rate)
                chosen = _nearest_box(doa.direction, seen)
                if chosen is None:
                    return answers.format_doa(doa.azimuth_deg, doa.elevation_deg)
            az, el = azel_from_direction(chosen.center)
            return answers.format_doa(float(az), float(el))
        boxes = sample.boxes()
        if len(boxes) < 2:
            raise ValueError(f"{sample.folder}: matching needs 2-3 candidate boxes in metadata")
        if letter == "E" and gender:
            centers = [b.center for b in boxes]
            k = pick_by_male_share(talker_male_shares(foa, centers, 2, rate), gender)
            if k is None:
                k = pick_by_pitch(talker_pitches(foa, centers, 2, rate), gender)
            if k is not None:
                return answers.match_label(answers.azimuth_order(boxes).index(k), len(boxes))
        shares = vote_shares(foa, [b.center for b in boxes], rate) if letter == "D" else np.zeros(1)
        if shares.any():  # else no vote is near any box: the nearest box to the DoA below
            k = int(np.argmax(shares))
            return answers.match_label(answers.azimuth_order(boxes).index(k), len(boxes))
        doa = estimate_by_gender(foa, gender, rate) if gender else estimate_doa(foa, rate)
        return match_speaker(doa.direction, boxes).label
