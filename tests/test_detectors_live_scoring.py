"""benchmarks/bench_live.py's scoring of candidates and identities, on hand-made messages whose
right answers are counted by hand: a plant claimed as a loudspeaker is a false positive, a person
found within 0.5 m horizontally (or on her widened footprint) counts, a track id that changes while one talker talks is a switch."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaeger_ros.msg import BoundingBox3D

spec = importlib.util.spec_from_file_location("bench_live", Path(__file__).parents[1] / "benchmarks" / "bench_live.py")
bench_live = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_live)


def box(x: float, z: float, category: str, size: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> BoundingBox3D:
    b = BoundingBox3D(category=category)
    b.center.position.x, b.center.position.z = x, z
    b.size.x, b.size.y, b.size.z = size
    return b


def test_candidate_counts_score_claims_against_the_true_boxes():
    truth = SimpleNamespace(boxes=[box(-1.0, 3.0, "loudspeaker"), box(1.0, 3.0, "loudspeaker"), box(0.0, 2.0, "person", (0.5, 1.7, 0.4))])
    match = SimpleNamespace(candidates=[
        box(-1.1, 3.1, "loudspeaker"),   # 0.14 m from the left loudspeaker: right
        box(0.5, 4.0, "unknown"),        # a depth blob on a plant: a claim, wrong
        box(0.3, 2.3, "person"),         # 0.42 m from the person horizontally: found
    ])
    counts = bench_live.candidate_counts(match, truth)
    assert counts == {"ls_tp": 1, "ls_claims": 2, "ls_truth": 2, "person_tp": 1, "person_truth": 1}
    # 0.94 m from her and 0.8 m beside her box (footprint half-width 0.25 + 0.5 m): missed;
    # two claims on one loudspeaker: one right (one to one)
    far = SimpleNamespace(candidates=[box(0.8, 2.5, "person"), box(1.0, 3.0, "loudspeaker"), box(1.05, 3.0, "loudspeaker")])
    assert bench_live.candidate_counts(far, truth) == {"ls_tp": 1, "ls_claims": 2, "ls_truth": 2,
                                                       "person_tp": 0, "person_truth": 1}
    # 0.6 m behind her centre, but on her box's footprint widened by 0.5 m (half-depth 0.2 + 0.5): found
    behind = SimpleNamespace(candidates=[box(0.0, 2.6, "person")])
    assert bench_live.candidate_counts(behind, truth)["person_tp"] == 1


def test_ratio_by_scene_is_the_pooled_ratio():
    scenes = np.array([1, 1, 2, 2])
    row = bench_live._ratio_by_scene(scenes, np.array([1.0, 1.0, 0.0, 2.0]), np.array([2.0, 2.0, 2.0, 2.0]),
                                     np.random.default_rng(0))
    assert row["value"] == pytest.approx(4 / 8) and row["n"] == 8 and row["scenes"] == 2
    assert 0.0 <= row["ci95"][0] <= 0.5 <= row["ci95"][1] <= 1.0


def test_id_switches_count_track_changes_per_talker_minute():
    """One talker at (1, 0, 0) talking for 60 s; tracker messages every second: track 7, then
    track 9 from 30 s on (one switch), a far track never counts. 1 switch / 1 talker-minute
    (59 s between the first and the last message)."""
    at = np.array([1.0, 0.0, 0.0])
    truth_log = [(0, 1, [(0, at, True)])]
    talkers = [(int(t * 1e9), [(7 if t < 30 else 9, at + 0.2), (3, at + 5.0)]) for t in range(60)]
    out = bench_live.id_switches(truth_log, talkers, np.random.default_rng(0))
    assert out["talkers"] == 1 and out["value"] == pytest.approx(60.0 / 59.0)


def test_frames_are_banded_by_their_talkers_drr():
    """Hand-counted frames: scene 0 at -3 dB errs 2 and 4 deg, both right; scene 2 at -7 dB errs
    6, right; scene 1 at -10 dB errs 50 then has no DoA, both wrong; scene 3 has no reverberation
    (+inf dB), errs 1, right; scene 4's DRR is unknown (NaN)."""
    F = bench_live.ScoredFrame
    frames = [F(2.0, True, True, "loudspeaker", 0, -3.0), F(4.0, True, True, "loudspeaker", 0, -3.0),
              F(6.0, True, True, "person", 2, -7.0),
              F(50.0, True, False, "loudspeaker", 1, -10.0), F(None, True, False, "loudspeaker", 1, -10.0),
              F(1.0, True, True, "loudspeaker", 3, float("inf")), F(9.0, True, False, "person", 4, float("nan"))]
    bands = bench_live.by_drr(frames, np.random.default_rng(0))
    assert list(bands) == ["unknown_drr_frames", ">= -6 dB", "-9 to -6 dB", "< -9 dB"]
    assert bands["unknown_drr_frames"] == 1
    top = bands[">= -6 dB"]
    assert top["doa_error_median_deg"]["value"] == pytest.approx(2.0)   # 1, 2, 4
    assert top["match_accuracy"]["value"] == pytest.approx(100.0) and top["match_accuracy"]["scenes"] == 2
    assert bands["-9 to -6 dB"]["doa_error_median_deg"]["value"] == pytest.approx(6.0)
    assert bands["< -9 dB"]["doa_error_median_deg"]["n"] == 1
    # one scene: nothing to resample, no interval
    assert bands["< -9 dB"]["match_accuracy"] == {"value": 0.0, "ci95": None, "n": 2, "scenes": 1}
    rows = bench_live.scene_detail(frames, {"1": 8.0})
    assert [r["scene"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[1] == {"scene": 1, "drr_db": -10.0, "snr_db": 8.0, "categories": ["loudspeaker"],
                       "doa_error_median_deg": 50.0, "match_accuracy": 0.0, "frames": 2}
    assert rows[4]["drr_db"] is None


def test_plot_live_drr_pools_runs_by_band_and_refuses_a_bad_file(tmp_path, capsys):
    """Two runs' scenes by hand: >= -6 dB, scene (100 %, 10 frames, 2 deg) and (50 %, 30 frames,
    30 deg): match (10 + 15) / 40 = 62.5 %, median of the DoA medians 16 deg, one lost; < -9 dB,
    one scene (0 %, 5 frames, 90 deg); -9 to -6 dB none."""
    spec = importlib.util.spec_from_file_location("plot_live_drr",
                                                  Path(__file__).parents[1] / "benchmarks" / "plot_live_drr.py")
    plot_live_drr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_live_drr)

    def scene(k, drr, match, frames, doa):
        return {"scene": k, "drr_db": drr, "snr_db": 20.0, "categories": ["loudspeaker"],
                "doa_error_median_deg": doa, "match_accuracy": match, "frames": frames}
    runs = [{"world": "mesh", "talkers": "mixed", "seed": 1, "scene_detail": [scene(0, -3.0, 100.0, 10, 2.0),
                                                                               scene(1, -12.0, 0.0, 5, 90.0)]},
            {"world": "mesh", "talkers": "mixed", "seed": 2, "scene_detail": [scene(0, -5.0, 50.0, 30, 30.0),
                                                                               scene(1, None, 100.0, 8, 1.0)]}]
    paths = []
    for k, run in enumerate(runs):
        paths.append(tmp_path / f"run{k}.json")
        paths[-1].write_text(json.dumps(run))
    assert plot_live_drr.main([str(p) for p in paths] + ["--out", str(tmp_path / "drr.png")]) == 0
    assert (tmp_path / "drr.png").stat().st_size > 10_000
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| >= -6 dB | 2 | 40 | 62.5 % [") and lines[2].endswith("| 16.0 deg [2.0, 30.0] | 1 of 2 |")
    assert lines[3] == "| -9 to -6 dB | 0 | 0 | — | — | 0 of 0 |"
    assert lines[4] == "| < -9 dB | 1 | 5 | 0.0 % | 90.0 deg | 1 of 1 |"
    paths[0].write_text(json.dumps({"scene_detail": [{"scene": 0}]}))
    assert plot_live_drr.main([str(paths[0]), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plot_live_drr: ")


def test_a_node_parameter_without_its_value_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_live.main(["--jaeger-param", "dereverb", "--json", str(tmp_path / "out.json")])
    assert stop.value.code == 2 and "NAME:=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_the_talkers_box_is_scored_by_where_it_is_not_by_its_label():
    """Mixed seed 10 scene 8's geometry: the talking loudspeaker at x = 0, a seated person whose
    true box (legs stretched out) is centred right of it at x = 0.3 but whose detected box is
    centred left of it at x = -0.25. Ordered left to right the labels swap; by place, matching the
    detected loudspeaker is right, matching her is wrong, matching nothing is wrong."""
    talker = box(0.0, 3.0, "loudspeaker")
    her = box(0.3, 2.9, "person", (0.5, 1.0, 1.2))
    detected = [box(-0.25, 2.8, "person"), box(0.05, 3.05, "loudspeaker")]

    def match(index: int) -> SimpleNamespace:
        return SimpleNamespace(index=index, matched_box=detected[index] if index >= 0 else BoundingBox3D())
    assert bench_live.talker_box_matched(match(1), talker)
    assert not bench_live.talker_box_matched(match(0), talker)     # 0.32 m from the talker's centre
    assert not bench_live.talker_box_matched(match(-1), talker)
    # she talks: her detected box is 0.56 m left of her centre, inside her footprint widened by
    # 0.5 m (half-width 0.25 + 0.5): hers; a box 1.3 m behind her centre (half-depth 0.6 + 0.5) is not
    assert bench_live.talker_box_matched(match(0), her)
    assert not bench_live.talker_box_matched(SimpleNamespace(index=0, matched_box=box(0.05, 4.2, "loudspeaker")), her)
