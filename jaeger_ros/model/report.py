"""Batched evaluation of a checkpoint on a dataset split (GPU or CPU), as a JSON report.

`jaeger eval` (jaeger_ros.evaluation) scores any Method one sample at a time; this module
batches generation for training-time checks and ablation tables:

    python -m jaeger_ros.model.report CHECKPOINT|default DATA [--split test] [--out report.json]
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
from jaeger_ros.model.predictor import DEFAULT_CHECKPOINT
from jaeger_ros.model.train import evaluate_examples, headline, preload


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "test",
                        tasks: Sequence[str] = "ABCDE", batch_size: int = 64, workers: int = 0,
                        device: str | None = None) -> dict[str, Any]:
    """Per-task metric summaries (jaeger_ros.metrics) + headline numbers + generations."""
    path = DEFAULT_CHECKPOINT if str(checkpoint) == "default" else Path(checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = JaegerModel.from_pretrained(path, device=device)
    examples = load_examples(data_dir, split, list(tasks))
    arrays = preload(model.builder, examples, workers, desc=f"preload {split}")
    report = evaluate_examples(model, examples, arrays, batch_size=batch_size)
    report["_headline"] = headline(report)
    report["_checkpoint"] = str(path)
    report["_config"] = model.config.to_dict()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--tasks", default="ABCDE")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.tasks.replace(",", ""),
                                 args.batch_size, args.workers)
    text = json.dumps(report, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps(report["_headline"], indent=1))


if __name__ == "__main__":
    main()
