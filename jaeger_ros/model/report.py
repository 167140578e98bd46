"""Batched evaluation of a checkpoint on a dataset split (GPU or CPU), as a JSON report.

`jaeger eval` (jaeger_ros.data.evaluation) scores any Method one sample at a time; this module
batches generation for training-time checks and ablation tables:

    python -m jaeger_ros.model.report CHECKPOINT|default DATA [--split test] [--out report.json]
        [--ablate no-foa,no-depth-pe]

Input ablations re-score the same checkpoint with one input removed at test time (the
dipole channels X, Y, Z zeroed, so both IV kinds see no direction; or the depth PE zeroed).
They show what the trained model relies on; the paper's ablations retrain without the input.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from jaeger_ros.model.data import load_examples
from jaeger_ros.model.modeling import JaegerModel
from jaeger_ros.model.predictor import checkpoint_path
from jaeger_ros.model.train import evaluate_examples, headline, preload


ABLATIONS = ("no-foa", "no-depth-pe")


def ablate(arrays: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Copies of preloaded folders with one input removed (see the module docstring)."""
    if kind not in ABLATIONS:
        raise ValueError(f"unknown ablation {kind!r}; choose from {ABLATIONS}")
    key = "foa" if kind == "no-foa" else "pe"
    out = {}
    for folder, a in arrays.items():
        b = dict(a)
        if b.get(key) is not None:
            b[key] = b[key].copy()
            if kind == "no-foa":
                b[key][1:] = 0  # W stays: the model still hears the speech, not where it is
            else:
                b[key][:] = 0
        out[folder] = b
    return out


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "test",
                        tasks: Sequence[str] = "ABCDE", batch_size: int = 64, workers: int = 0,
                        device: str | None = None, ablations: Sequence[str] = ()) -> dict[str, Any]:
    """Per-task metric summaries (jaeger_ros.core.metrics) + headline numbers + generations;
    with ablations, their headline numbers under `_ablations`."""
    path = checkpoint_path(checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = JaegerModel.from_pretrained(path, device=device)
    examples = load_examples(data_dir, split, list(tasks))
    arrays = preload(model.builder, examples, workers, desc=f"preload {split}")
    report = evaluate_examples(model, examples, arrays, batch_size=batch_size)
    report["_headline"] = headline(report)
    report["_checkpoint"] = str(path)
    report["_config"] = model.config.to_dict()
    report["_ablations"] = {kind: headline(evaluate_examples(model, examples, ablate(arrays, kind), batch_size))
                            for kind in ablations}
    return report


def ablation_table(report: dict[str, Any]) -> str:
    """Markdown: the full model and each input ablation, one row each."""
    rows = {"full": report["_headline"], **report.get("_ablations", {})}
    keys = list(report["_headline"])
    lines = ["| inputs | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, h in rows.items():
        cells = ["–" if h.get(k) is None else f"{h[k]:.2f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--tasks", default="ABCDE")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--ablate", default="", help=f"comma-separated input ablations: {','.join(ABLATIONS)}")
    args = parser.parse_args(argv)
    report = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.tasks.replace(",", ""),
                                 args.batch_size, args.workers, ablations=[a for a in args.ablate.split(",") if a])
    text = json.dumps(report, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
    if args.out:
        Path(args.out).write_text(text)
    print(ablation_table(report))


if __name__ == "__main__":
    main()
