"""Calibrated confidences: the probability that an answer is right, for a robot to act on.

Why: the model's raw confidence is the mean probability of its generated tokens, which says
how sure the decoder was of its own text, not how often such answers are right (a tiny model
that always writes "Left" for a voice on the left is sure and right 2 times in 3). A Platt
scaling per task, fitted on a validation split's predictions.jsonl, maps that score to the
frequency of correct answers; the checkpoint folder keeps it (calibration.json) and the
predictor applies it, so the node's confidences mean what they say.

"Correct" is: A/B within DOA_CORRECT_DEG great-circle of the truth, D/E the right label; an
answer that did not parse is wrong. C (boxes) keeps the raw score. Calibration is measured by
the expected calibration error (ECE, 10 equal-width bins) on a different split.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
DOA_CORRECT_DEG = 10.0
"""A direction answer counts as right within this great-circle error."""
CALIBRATED_TASKS = "ABDE"
_EPS = 1e-4
"""Scores are clipped to [_EPS, 1 - _EPS] before the logit: a decoder that is "certain" is
not told apart from one that is 99.99 % sure."""


def is_correct(record: dict[str, Any], doa_correct_deg: float = DOA_CORRECT_DEG) -> bool:
    """Whether one predictions.jsonl record is right (see the module docstring)."""
    if record["key"] in "AB":
        err = record.get("angular_error")
        return err is not None and float(err) <= doa_correct_deg
    return record.get("parsed") is not None and record.get("parsed") == record.get("target")


def read_scores(predictions: str | Path, doa_correct_deg: float = DOA_CORRECT_DEG
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per calibrated task: (raw token probabilities, correct flags) of a predictions.jsonl that
    recorded them (`jaeger eval` with a checkpoint)."""
    out: dict[str, tuple[list[float], list[bool]]] = {}
    path = Path(predictions)
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("key") not in CALIBRATED_TASKS:
            continue
        p = rec.get("token_probability")
        if p is None:  # a failed item has no score: it cannot say how sure it was
            continue
        probs, flags = out.setdefault(rec["key"], ([], []))
        probs.append(float(p))
        flags.append(is_correct(rec, doa_correct_deg))
    if not out:
        raise ValueError(f"{path}: no A, B, D or E predictions with a token_probability "
                         "(evaluate a JAEGER checkpoint with `jaeger eval --checkpoint`)")
    return {k: (np.asarray(p, dtype=np.float64), np.asarray(c, dtype=bool)) for k, (p, c) in sorted(out.items())}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width confidence bins of (share of answers) x |accuracy - mean confidence|."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        raise ValueError("no answers to measure calibration on")
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _log_loss(design: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    z = design @ w
    return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w)


def fit_platt(confidence: np.ndarray, correct: np.ndarray, l2: float = 1.0, iterations: int = 100
              ) -> tuple[float, float]:
    """(a, b) of p' = sigmoid(a * logit(p) + b), by damped Newton steps on the log-loss. The
    L2 (on a and b, as if one answer at p' = 1/2 were added) keeps a fit on a small validation
    split from running off when the scores separate it or say nothing: a score that carries no
    information about being right is mapped towards the split's hit rate, not to 0 or 1."""
    x = _logit(np.asarray(confidence, dtype=np.float64))
    y = np.asarray(correct, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no answers to fit a calibration on")
    design = np.stack([x, np.ones_like(x)], axis=1)
    w = np.array([1.0, 0.0])
    loss = _log_loss(design, y, w, l2)
    for _ in range(iterations):
        p = _sigmoid(design @ w)
        grad = design.T @ (p - y) + l2 * w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        while _log_loss(design, y, w - step, l2) > loss and np.abs(step).max() > 1e-12:
            step = step / 2
        w = w - step
        new = _log_loss(design, y, w, l2)
        if loss - new < 1e-12:
            break
        loss = new
    return float(w[0]), float(w[1])


@dataclass
class Calibration:
    """Per-task Platt scaling of a checkpoint's token probability (tasks absent stay raw)."""

    platt: dict[str, tuple[float, float]] = field(default_factory=dict)
    doa_correct_deg: float = DOA_CORRECT_DEG
    fitted_on: str = ""

    def __call__(self, task: str, token_probability: float) -> float:
        if task not in self.platt:
            return float(token_probability)
        a, b = self.platt[task]
        return float(_sigmoid(a * _logit(np.asarray(token_probability)) + b))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_FILE
        path.write_text(json.dumps({"platt": {k: list(v) for k, v in self.platt.items()},
                                    "doa_correct_deg": self.doa_correct_deg, "fitted_on": self.fitted_on,
                                    "meaning": "P(answer right): A/B within doa_correct_deg, D/E the right label"},
                                   indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "Calibration | None":
        """The checkpoint folder's calibration, None when it has none; ValueError naming the
        file when it is malformed."""
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            platt = {str(k): (float(v[0]), float(v[1])) for k, v in d["platt"].items()}
            return cls(platt, float(d.get("doa_correct_deg", DOA_CORRECT_DEG)), str(d.get("fitted_on", "")))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: not a calibration file ({e})") from None


def fit(val_predictions: str | Path, doa_correct_deg: float = DOA_CORRECT_DEG) -> Calibration:
    """A Platt scaling per task from a validation split's predictions.jsonl."""
    scores = read_scores(val_predictions, doa_correct_deg)
    return Calibration({k: fit_platt(p, c) for k, (p, c) in scores.items()}, doa_correct_deg, str(val_predictions))


def measure(calibration: Calibration, scores: dict[str, tuple[np.ndarray, np.ndarray]], seed: int = 0
            ) -> list[dict[str, Any]]:
    """Per task of a (test) split's read_scores: n, accuracy, ECE of the raw and the calibrated
    confidence, each with a bootstrap 95 % interval over answers."""
    from jaeger_ros.data.robustness import bootstrap_ci

    rng = np.random.default_rng(seed)
    rows = []
    for task, (raw, correct) in scores.items():
        cal = np.array([calibration(task, p) for p in raw])
        row: dict[str, Any] = {"task": task, "n": int(raw.size), "accuracy": float(correct.mean())}
        for name, conf in (("raw", raw), ("calibrated", cal)):
            row[f"ece_{name}"] = expected_calibration_error(conf, correct)
            row[f"ece_{name}_ci95"] = list(bootstrap_ci(  # answers resampled with their flags
                np.arange(raw.size), lambda i, c=conf: expected_calibration_error(c[i], correct[i]), rng))
            row[f"mean_{name}"] = float(conf.mean())
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], doa_correct_deg: float) -> str:
    lines = [f"right = A/B within {doa_correct_deg:g}° great-circle, D/E the right label; ECE over 10 bins, "
             "bootstrap 95 %", "",
             "| task | n | accuracy | mean raw conf. | ECE raw | mean calibrated conf. | ECE calibrated |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['n']} | {100 * r['accuracy']:.1f} % | {r['mean_raw']:.2f} | "
                     f"{r['ece_raw']:.3f} [{r['ece_raw_ci95'][0]:.3f}, {r['ece_raw_ci95'][1]:.3f}] | "
                     f"{r['mean_calibrated']:.2f} | {r['ece_calibrated']:.3f} "
                     f"[{r['ece_calibrated_ci95'][0]:.3f}, {r['ece_calibrated_ci95'][1]:.3f}] |")
    return "\n".join(lines)


def reliability_figure(calibration: Calibration, scores: dict[str, tuple[np.ndarray, np.ndarray]],
                       bins: int = 10) -> Any:
    """Accuracy against confidence per task (read_scores), raw and calibrated, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.4), squeeze=False)
    edges = np.linspace(0, 1, bins + 1)
    for ax, (task, (raw, correct)) in zip(axes[0], scores.items()):
        cal = np.array([calibration(task, p) for p in raw])
        for conf, name, marker in ((raw, "raw", "o"), (cal, "calibrated", "s")):
            which = np.minimum((conf * bins).astype(int), bins - 1)
            xs = [conf[which == b].mean() for b in range(bins) if (which == b).any()]
            ys = [correct[which == b].mean() for b in range(bins) if (which == b).any()]
            ax.plot(xs, ys, marker=marker, label=f"{name} (ECE {expected_calibration_error(conf, correct):.3f})")
        ax.plot(edges, edges, "k:", lw=1, label="perfect")
        ax.set(title=f"task {task} (n={raw.size})", xlabel="confidence", ylabel="share right", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
