"""The classical baseline as an evaluation Method (see docs/architecture.md)."""
from __future__ import annotations

from jaeger_ros.core import answers
from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.classical.doa import estimate_by_gender, estimate_doa
from jaeger_ros.classical.matching import match_speaker
from jaeger_ros.data.dataset import ManifestEntry, Sample


class ClassicalMethod:
    """Signal processing on the same inputs as the model.

    A: onset-weighted intensity-vector DoA. B: the density peak of the onsets whose pitch
    says the requested gender (see doa.estimate_by_gender). C: boxes from depth alone
    (candidates.boxes_from_depth). D/E: the DoA matched to the ORACLE candidate boxes of the
    sample's metadata -- an oracle-box baseline, an upper bound for matching from sound.
    """

    name = "classical"
    tasks = frozenset("ABCDE")

    def answer(self, sample: Sample, entry: ManifestEntry) -> str:
        letter = entry.letter
        if letter == "C":
            return answers.format_boxes(boxes_from_depth(sample.depth(), sample.intrinsics))
        foa = sample.foa()
        gender = entry.target_gender
        doa = (estimate_by_gender(foa, gender, sample.sample_rate) if letter in "BE" and gender
               else estimate_doa(foa, sample.sample_rate))
        if letter in "AB":
            return answers.format_doa(doa.azimuth_deg, doa.elevation_deg)
        boxes = sample.boxes()
        if len(boxes) < 2:
            raise ValueError(f"{sample.folder}: matching needs 2-3 candidate boxes in metadata")
        return match_speaker(doa.direction, boxes).label
