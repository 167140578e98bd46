"""Calibrated confidences: the Platt scaling and ECE on known distributions, and the real path
`jaeger eval` (a real tiny checkpoint on the toy dataset) -> `jaeger calibrate` -> the
predictor's confidences."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jaeger_ros.cli import main
from jaeger_ros.model import calibration
from jaeger_ros.model.calibration import Calibration, expected_calibration_error, fit_platt
from test_model_train import model_config, write_toy_dataset


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true hit rate is sigmoid(0.5 logit(p) - 1): far less sure than they say."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.99, n)
    truth = 1 / (1 + np.exp(-(0.5 * np.log(p / (1 - p)) - 1.0)))
    return p, rng.random(n) < truth


def test_platt_scaling_recovers_the_true_map_and_removes_the_calibration_error():
    p, hit = _overconfident(20000, 0)
    a, b = fit_platt(p, hit)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)
    held_p, held_hit = _overconfident(5000, 1)
    cal = Calibration({"D": (a, b)})
    before = expected_calibration_error(held_p, held_hit)
    after = expected_calibration_error(np.array([cal("D", x) for x in held_p]), held_hit)
    assert before > 0.2 and after < 0.03
    assert cal("C", 0.7) == 0.7  # a task without a fit keeps its raw score


def test_ece_is_zero_for_exact_frequencies_and_counts_each_bin_by_its_share():
    assert expected_calibration_error(np.array([0.25] * 4), np.array([1, 0, 0, 0], bool)) == pytest.approx(0.0)
    # half the answers at 0.95 all wrong (gap 0.95), half at 0.15 with 1 in 2 right (gap 0.35)
    conf = np.array([0.95, 0.95, 0.15, 0.15])
    assert expected_calibration_error(conf, np.array([0, 0, 1, 0], bool)) == pytest.approx(0.5 * 0.95 + 0.5 * 0.35)
    with pytest.raises(ValueError, match="no answers"):
        expected_calibration_error(np.array([]), np.array([], bool))


def test_eval_records_scores_and_calibrate_makes_the_predictor_use_them(tmp_path, capsys):
    from jaeger_ros.model.modeling import JaegerModel
    from jaeger_ros.model.predictor import JaegerPredictor

    root = tmp_path / "toy"
    write_toy_dataset(root, "val", 3)
    write_toy_dataset(root, "test", 3, seed=1)
    ckpt = tmp_path / "ck"
    JaegerModel.build_tiny(model_config()).save_pretrained(ckpt)
    for split in ("val", "test"):
        assert main(["eval", "--checkpoint", str(ckpt), "--data", str(root), "--split", split, "--tasks", "A,D",
                     "--out", str(tmp_path / split)]) == 0
    records = [json.loads(line) for line in (tmp_path / "val" / "predictions.jsonl").read_text().splitlines()]
    assert records and all(0.0 <= r["token_probability"] <= 1.0 and r["confidence"] == r["token_probability"]
                           for r in records)  # no calibration yet: the confidence is the raw score
    plot = tmp_path / "reliability.png"
    assert main(["calibrate", "--checkpoint", str(ckpt), "--val", str(tmp_path / "val" / "predictions.jsonl"),
                 "--test", str(tmp_path / "test" / "predictions.jsonl"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "| A | 3 |" in out and "| D | 3 |" in out and plot.stat().st_size > 0
    cal = Calibration.load(ckpt)
    assert cal is not None and set(cal.platt) == {"A", "D"}
    predictor = JaegerPredictor.from_pretrained(ckpt)
    pred = predictor.parse("D", "Left", 0.8, 2)
    assert pred.token_probability == 0.8 and pred.confidence == pytest.approx(cal("D", 0.8))
    assert predictor.parse("C", "", 0.8).confidence == 0.8


def test_calibrate_refuses_predictions_without_scores_and_a_broken_file(tmp_path, capsys):
    rows = [{"key": "A", "angular_error": 3.0, "parsed": {}, "target": "x"}]
    (tmp_path / "classical.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "ck").mkdir()
    assert main(["calibrate", "--checkpoint", str(tmp_path / "ck"), "--val", str(tmp_path / "classical.jsonl")]) == 2
    assert "no A, B, D or E predictions with a token_probability" in capsys.readouterr().err
    (tmp_path / "ck" / calibration.CALIBRATION_FILE).write_text("{\"platt\": {\"A\": [1]}}")
    with pytest.raises(ValueError, match="calibration.json: not a calibration file"):
        Calibration.load(tmp_path / "ck")
