"""Per-task metrics mirroring the official JAEGER scorers (the paper's Table 2 figures).

Differences from the official scripts, on purpose:
- DoA: the official scorers drop items whose prediction could not be parsed; our ``*_median``
  and ``*_mean`` count an unparsed prediction with the worst error it could have had (see
  :data:`UNPARSED_AZ_ERROR`), so a model cannot improve its score by answering garbage. The
  official headline, the great-circle mean and median over parsed outputs, is
  ``gc_mean_parsed`` / ``gc_median_parsed`` beside ``n_unparsed``; calc_az_el.py's separate
  azimuth/elevation figures are ``az_*_parsed`` / ``el_*_parsed``.
- Grounding: as the official scorer, boxes are matched by id, a missing box scores IoU 0 and
  is left out of the centre-offset statistics (an offset to nothing has no value);
  ``n_missing`` says how many there were.
- Matching: accuracy in percent; an unparsed or "Unknown" answer is wrong.

Every summary is a plain dict of JSON-ready numbers (None where a statistic has no items).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from jaeger_ros.core.answers import (ANSWER_KIND, MATCH_LABELS, DoaAnswer, extract_answer,
                                parse_answer, task_key)
from jaeger_ros.core.geometry import Box3D, box_iou_3d, center_offset, great_circle_deg, wrapped_azimuth_error

# Worst-case errors charged to an unparsed DoA prediction: the largest wrapped azimuth error
# and the largest angle between two directions. The elevation error is that of the pole
# farther from the truth, 90 + |true elevation|, the largest |Δel| any valid answer can have.
UNPARSED_AZ_ERROR = 180.0
UNPARSED_GC_ERROR = 180.0

# Paper Table 2 (arXiv 2602.18527). DoA columns are great-circle angular errors in degrees (the
# official headline over parsed outputs), IoU and offset (metres) are means over objects,
# matching columns are accuracy in percent.
# None = not reported ("–"); the random baseline's offset is unbounded (inf).
PAPER_TABLE2: dict[str, dict[str, float | None]] = {
    "random": {"doa_single_deg": 90.0, "doa_overlap_deg": 90.0, "iou": 0.0, "offset_m": math.inf,
               "match_1spk": 45.6, "match_2spk": 47.4},
    "Qwen2.5-Omni zero-shot": {"doa_single_deg": None, "doa_overlap_deg": None, "iou": 0.00,
                               "offset_m": 2.40, "match_1spk": 35.8, "match_2spk": 44.0},
    "BAT (binaural)": {"doa_single_deg": 2.16, "doa_overlap_deg": 19.09, "iou": None,
                       "offset_m": None, "match_1spk": None, "match_2spk": None},
    "JAEGER Classical IV": {"doa_single_deg": 2.95, "doa_overlap_deg": 16.09, "iou": 0.32,
                            "offset_m": 0.16, "match_1spk": 99.5, "match_2spk": 98.6},
    "JAEGER Neural IV": {"doa_single_deg": 2.21, "doa_overlap_deg": 13.13, "iou": 0.32,
                         "offset_m": 0.16, "match_1spk": 99.5, "match_2spk": 99.2},
}
# Where each Table 2 column sits in a summarise() report: (task letter, key). The paper gives
# one DoA number per setting; it is placed beside the official headline's great-circle mean
# over parsed outputs (the merge script's first figure); reports show its median and the parse
# failures next to it.
PAPER_TABLE2_KEYS: dict[str, tuple[str, str]] = {
    "doa_single_deg": ("A", "gc_mean_parsed"), "doa_overlap_deg": ("B", "gc_mean_parsed"),
    "iou": ("C", "iou_mean"), "offset_m": ("C", "offset_mean"),
    "match_1spk": ("D", "accuracy"), "match_2spk": ("E", "accuracy"),
}


def _stat(values: Sequence[float], fn: Any) -> float | None:
    return float(fn(np.asarray(values, dtype=float))) if len(values) else None


def doa_errors(pred_az: Any, pred_el: Any, true_az: Any, true_el: Any
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-item (azimuth, elevation, great-circle) errors in degrees.

    Azimuth error is wrapped to [0, 180] (the official scorer), elevation error is |Δel|,
    great-circle error is the angle between the two directions (stricter near the horizon,
    looser near the poles where azimuth means little).
    """
    az = wrapped_azimuth_error(pred_az, true_az)
    el = np.abs(np.asarray(pred_el, dtype=float) - np.asarray(true_el, dtype=float))
    gc = great_circle_deg(pred_az, pred_el, true_az, true_el)
    return az, el, gc


def doa_summary(preds: Sequence[DoaAnswer | None], truths: Sequence[DoaAnswer]) -> dict[str, Any]:
    """Median/mean azimuth, elevation and great-circle errors (degrees) over all items.

    Unparsed predictions (None) count with worst-case errors (module docstring); the
    ``*_parsed`` keys give the official scorers' view, which drops them.
    """
    _check_lengths(preds, truths)
    az_all, el_all, gc_all = [], [], []
    parsed: list[tuple[float, float, float]] = []
    for p, t in zip(preds, truths):
        if p is None:
            az_all.append(UNPARSED_AZ_ERROR)
            el_all.append(90.0 + abs(t.elevation))
            gc_all.append(UNPARSED_GC_ERROR)
            continue
        az, el, gc = (float(v) for v in doa_errors(p.azimuth, p.elevation, t.azimuth, t.elevation))
        az_all.append(az)
        el_all.append(el)
        gc_all.append(gc)
        parsed.append((az, el, gc))
    p_az, p_el, p_gc = (list(c) for c in zip(*parsed)) if parsed else ([], [], [])
    return {
        "n": len(truths), "n_unparsed": len(truths) - len(parsed),
        "az_median": _stat(az_all, np.median), "el_median": _stat(el_all, np.median),
        "gc_median": _stat(gc_all, np.median),
        "az_mean": _stat(az_all, np.mean), "el_mean": _stat(el_all, np.mean),
        "gc_mean": _stat(gc_all, np.mean),
        "az_median_parsed": _stat(p_az, np.median), "el_median_parsed": _stat(p_el, np.median),
        "gc_median_parsed": _stat(p_gc, np.median),
        "az_mean_parsed": _stat(p_az, np.mean), "el_mean_parsed": _stat(p_el, np.mean),
        "gc_mean_parsed": _stat(p_gc, np.mean),
    }


def _box_id(box: Box3D, position: int) -> int:
    # Parsed boxes carry their bbox id (answers sets extra["bbox_id"]); others use position.
    return int(box.extra.get("bbox_id", position))


def grounding_summary(preds: Sequence[Sequence[Box3D] | None],
                      truths: Sequence[Sequence[Box3D]]) -> dict[str, Any]:
    """IoU and centre offset per ground-truth object, boxes matched by bbox id.

    ``n`` counts ground-truth objects; a truth box without a predicted box of the same id
    (or an unparsed prediction, None) scores IoU 0 and is excluded from the offset
    statistics, counted in ``n_missing``. Predicted ids absent from the truth are ignored by
    the scores (as officially) and counted in ``n_extra``.
    """
    _check_lengths(preds, truths)
    ious: list[float] = []
    offsets: list[float] = []
    n_missing = n_extra = n_unparsed = 0
    for pred, truth in zip(preds, truths):
        if pred is None:
            n_unparsed += 1
        by_id: dict[int, Box3D] = {}
        for i, box in enumerate(pred or []):
            by_id.setdefault(_box_id(box, i), box)
        truth_ids = set()
        for j, t in enumerate(truth):
            tid = _box_id(t, j)
            truth_ids.add(tid)
            p = by_id.get(tid)
            if p is None:
                ious.append(0.0)
                n_missing += 1
            else:
                ious.append(box_iou_3d(p, t))
                offsets.append(center_offset(p, t))
        n_extra += len(set(by_id) - truth_ids)
    return {
        "n": len(ious), "n_samples": len(truths), "n_unparsed": n_unparsed,
        "n_missing": n_missing, "n_extra": n_extra,
        "iou_mean": _stat(ious, np.mean), "iou_median": _stat(ious, np.median),
        "offset_mean": _stat(offsets, np.mean), "offset_median": _stat(offsets, np.median),
    }


def matching_summary(preds: Sequence[str | None], truths: Sequence[str]) -> dict[str, Any]:
    """Accuracy (percent) of Left/Center/Right labels; None or any other text is wrong."""
    _check_lengths(preds, truths)
    bad = [t for t in truths if t not in MATCH_LABELS]
    if bad:
        raise ValueError(f"ground-truth matching labels must be in {MATCH_LABELS}, got {bad[:3]}")
    correct = sum(p == t for p, t in zip(preds, truths))
    unparsed = sum(p not in MATCH_LABELS for p in preds)
    return {"n": len(truths), "n_unparsed": unparsed,
            "accuracy": 100.0 * correct / len(truths) if truths else None}


def _check_lengths(preds: Sequence[Any], truths: Sequence[Any]) -> None:
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} ground truths")


def summarise(task: str, preds: Sequence[Any], truths: Sequence[Any], parser: str = "lenient",
              units: str = "m") -> dict[str, Any]:
    """One entry point for evaluation: the task's summary (keys as in the report).

    ``task``: letter A-E, ``"starss23"`` or a manifest task name. Truths may be typed
    answers or official answer strings (parsed strictly); predictions may be typed answers,
    None, or raw generations (extracted by `parser`, "lenient" or "official", boxes in
    `units`: unparsable text counts as unparsed).
    """
    key = task_key(task)
    truths_t = [parse_answer(key, t) if isinstance(t, str) else t for t in truths]
    kind = ANSWER_KIND[key]
    # A matching answer is itself a string: run the (idempotent) extractor on all of them.
    preds_t = [extract_answer(key, p, units, parser) if isinstance(p, str) else p  # type: ignore[arg-type]
               for p in preds]
    if kind == "doa":
        return doa_summary(preds_t, truths_t)
    if kind == "boxes":
        return grounding_summary(preds_t, truths_t)
    return matching_summary(preds_t, truths_t)
