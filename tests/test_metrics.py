"""Metrics: hand-computed DoA/IoU/offset/accuracy values, unparsed handling, dispatch, and
the official test manifests scored against themselves."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from jaeger_ros.core import metrics
from jaeger_ros.core.answers import DoaAnswer
from jaeger_ros.core.geometry import Box3D

OFFICIAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "spatialsceneqa"
needs_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(),
    reason=f"official SpatialSceneQA manifests not present at {OFFICIAL} (shared data folder "
           "beside the repository)")


def test_doa_errors_hand_computed():
    az, el, gc = metrics.doa_errors([179, 10, 0, 0], [0, 0, 0, 60], [-179, 0, 0, 10], [0, 0, 30, 60])
    np.testing.assert_allclose(az, [2, 10, 0, 10])
    np.testing.assert_allclose(el, [0, 0, 30, 0])
    # On the horizon great-circle = azimuth error; at a fixed elevation it is smaller:
    # cos(gc) = sin^2(el) + cos^2(el) cos(daz).
    expected = math.degrees(math.acos(math.sin(math.radians(60)) ** 2
                                      + math.cos(math.radians(60)) ** 2 * math.cos(math.radians(10))))
    np.testing.assert_allclose(gc, [2, 10, 30, expected], atol=1e-6)
    assert expected < 5.1


def test_doa_summary_counts_unparsed_as_worst_case():
    preds = [DoaAnswer(10, 0), DoaAnswer(0, 0), None]
    truths = [DoaAnswer(0, 0), DoaAnswer(0, 10), DoaAnswer(0, -20)]
    s = metrics.doa_summary(preds, truths)
    assert s["n"] == 3 and s["n_unparsed"] == 1
    # errors: az [10, 0, 180], el [0, 10, 90 + 20], gc [10, 10, 180]
    assert s["az_median"] == 10 and s["el_median"] == 10 and s["gc_median"] == pytest.approx(10)
    assert s["az_mean"] == pytest.approx(190 / 3) and s["el_mean"] == pytest.approx(120 / 3)
    assert s["gc_mean"] == pytest.approx(200 / 3)
    # The official scorer's view drops the unparsed item.
    assert s["az_median_parsed"] == 5 and s["el_median_parsed"] == 5
    none = metrics.doa_summary([None], [DoaAnswer(0, 0)])
    assert none["az_median"] == 180 and none["el_median"] == 90 and none["az_median_parsed"] is None
    json.dumps(s)
    with pytest.raises(ValueError, match="predictions"):
        metrics.doa_summary([None], [])


def _cube(x: float, bbox_id: int | None = None, size: float = 1.0) -> Box3D:
    extra = {} if bbox_id is None else {"bbox_id": bbox_id}
    return Box3D([x, 0.0, -2.0], [size, size, size], extra=extra)


def test_grounding_summary_hand_computed():
    truths = [[_cube(0.0), _cube(3.0)], [_cube(0.0)]]
    # sample 0: box 0 shifted 0.5 m -> IoU 0.5/1.5, offset 0.5; box 1 exact. sample 1: missing.
    preds = [[_cube(0.5), _cube(3.0)], None]
    s = metrics.grounding_summary(preds, truths)
    assert s["n"] == 3 and s["n_missing"] == 1 and s["n_unparsed"] == 1 and s["n_samples"] == 2
    assert s["iou_mean"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert s["iou_median"] == pytest.approx(1 / 3)
    assert s["offset_mean"] == pytest.approx(0.25) and s["offset_median"] == pytest.approx(0.25)
    # A half-size box at the same centre: IoU = 1/8.
    half = metrics.grounding_summary([[_cube(0.0, size=0.5)]], [[_cube(0.0)]])
    assert half["iou_mean"] == pytest.approx(1 / 8) and half["offset_mean"] == 0


def test_grounding_matches_by_bbox_id_not_position():
    truths = [[_cube(0.0), _cube(3.0)]]
    swapped = [[_cube(3.0, bbox_id=1), _cube(0.0, bbox_id=0)]]
    assert metrics.grounding_summary(swapped, truths)["iou_mean"] == pytest.approx(1.0)
    only_second = [[_cube(3.0, bbox_id=1), _cube(7.0, bbox_id=5)]]
    s = metrics.grounding_summary(only_second, truths)
    assert s["iou_mean"] == pytest.approx(0.5) and s["n_missing"] == 1 and s["n_extra"] == 1
    all_missing = metrics.grounding_summary([None], [[_cube(0.0)]])
    assert all_missing["iou_mean"] == 0 and all_missing["offset_mean"] is None


def test_matching_summary():
    s = metrics.matching_summary(["Left", "Right", None, "Unknown"], ["Left", "Left", "Right", "Center"])
    assert s == {"n": 4, "n_unparsed": 2, "accuracy": 25.0}
    with pytest.raises(ValueError, match="ground-truth"):
        metrics.matching_summary(["Left"], ["left"])


def test_summarise_dispatches_and_parses_text():
    a = metrics.summarise("A", ["The azimuth: 12; elevation: -3.", "garbage"],
                          ["azimuth: 10; elevation: -3", "azimuth: 0; elevation: 0"])
    assert a["n_unparsed"] == 1 and a["az_median"] == pytest.approx((2 + 180) / 2)
    assert a == metrics.doa_summary([DoaAnswer(12, -3), None], [DoaAnswer(10, -3), DoaAnswer(0, 0)])
    star = metrics.summarise("starss23", ["azimuth: 179.5; elevation: 1.0"],
                             ["azimuth: -179.5; elevation: 1.0"])
    assert star["az_median"] == pytest.approx(1.0)
    c = metrics.summarise("visual_grounding",
                          ["bbox_0=Bbox(speaker, 0.50, 0.00, -2.00, 1.00, 1.00, 1.00)"],
                          ["bbox_0=Bbox(speaker, 0.00, 0.00, -2.00, 1.00, 1.00, 1.00)"])
    assert c["iou_mean"] == pytest.approx(1 / 3) and c["offset_mean"] == pytest.approx(0.5)
    d = metrics.summarise("D", ["the left one", "Right", None], ["Left", "Left", "Center"])
    assert d["accuracy"] == pytest.approx(100 / 3) and d["n"] == 3
    with pytest.raises(ValueError, match="unknown task"):
        metrics.summarise("Z", [], [])


def test_summary_keys_cover_report_shape_and_paper_table():
    shape = {"A": {"n", "az_median", "el_median", "gc_median", "az_mean", "el_mean"},
             "C": {"n", "iou_mean", "iou_median", "offset_mean", "offset_median"},
             "D": {"n", "accuracy"}}
    shape["B"], shape["E"] = shape["A"], shape["D"]
    samples = {"A": ("azimuth: 1; elevation: 2",), "B": ("azimuth: 1; elevation: 2",),
               "C": ("bbox_0=Bbox(speaker, 0.10, 0.00, -2.00, 0.30, 0.60, 0.30)",),
               "D": ("Left",), "E": ("Right",)}
    reports = {k: metrics.summarise(k, list(v), list(v)) for k, v in samples.items()}
    for letter, keys in shape.items():
        assert keys <= set(reports[letter]), letter
    for column, (letter, key) in metrics.PAPER_TABLE2_KEYS.items():
        assert key in reports[letter]
        assert all(column in row for row in metrics.PAPER_TABLE2.values())
    assert metrics.PAPER_TABLE2["JAEGER Neural IV"]["doa_overlap_deg"] == 13.13
    assert metrics.PAPER_TABLE2["random"]["offset_m"] == math.inf


@needs_official
def test_official_test_manifests_score_perfectly_against_themselves():
    files = {"A": "audio-only__hm3d_av_v2_ls_task1_test.json",
             "B": "audio-only__hm3d_av_v2_ls_task2_test.json",
             "C": "visual-only__visual_grounding_hm3d_av_v2_speaker_only_test.json",
             "D": "audio-visual__hm3d_av_v2_task1_test.json",
             "E": "audio-visual__hm3d_av_v2_task2_test.json",
             "starss23": "audio-only__starss23_test.json"}
    for letter, name in files.items():
        texts = [e["text"] for e in json.loads((OFFICIAL / name).read_text())["annotation"]]
        s = metrics.summarise(letter, texts, texts)
        assert len(texts) == {"A": 1000, "B": 895, "C": 1895, "D": 416, "E": 895}.get(letter, len(texts))
        if letter in ("A", "B", "starss23"):
            assert s["n"] == len(texts) and s["az_median"] == 0 and s["gc_mean"] < 1e-5
        elif letter == "C":
            assert s["n"] == 584 + 2 * 1064 + 3 * 247  # boxes in the 1/2/3-box samples
            assert s["iou_mean"] == pytest.approx(1.0) and s["offset_mean"] == 0
        else:
            assert s["accuracy"] == 100.0
            always_left = metrics.summarise(letter, ["Left"] * len(texts), texts)["accuracy"]
            assert always_left == pytest.approx(100 * texts.count("Left") / len(texts))
            assert 35 < always_left < 55  # near balanced labels: a constant answer is chance
