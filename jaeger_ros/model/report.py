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

from jaeger_ros.model.data import Example, ModelInputs, SampleReader, load_examples
from jaeger_ros.model.modeling import JaegerModel
from jaeger_ros.model.predictor import checkpoint_path
from jaeger_ros.model.train import Reader, evaluate_examples, headline


ABLATIONS = ("no-foa", "no-depth-pe")


def ablate(x: ModelInputs, kind: str) -> ModelInputs:
    """A copy of one sample's inputs with one input removed (see the module docstring)."""
    if kind not in ABLATIONS:
        raise ValueError(f"unknown ablation {kind!r}; choose from {ABLATIONS}")
    out = ModelInputs(foa=x.foa, mel=x.mel, patches=x.patches, grid=x.grid, pe=x.pe)
    if kind == "no-foa" and x.foa is not None:
        out.foa = x.foa.clone()
        out.foa[1:] = 0  # W stays: the model still hears the speech, not where it is
    if kind == "no-depth-pe" and x.pe is not None:
        out.pe = torch.zeros_like(x.pe)
    return out


class AblatedReader:
    """A reader whose inputs have one input removed."""

    def __init__(self, read: Reader, kind: str) -> None:
        ablate(ModelInputs(), kind)  # an unknown kind fails here, before any sample is read
        self.read, self.kind = read, kind

    def __call__(self, ex: Example) -> ModelInputs:
        return ablate(self.read(ex), self.kind)


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "test",
                        tasks: Sequence[str] = "ABCDE", batch_size: int = 64, cache_dir: str | None = None,
                        device: str | None = None, ablations: Sequence[str] = ()) -> dict[str, Any]:
    """Per-task metric summaries (jaeger_ros.core.metrics) + headline numbers + generations;
    with ablations, their headline numbers under `_ablations`."""
    path = checkpoint_path(checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = JaegerModel.from_pretrained(path, device=device)
    examples = load_examples(data_dir, split, list(tasks))
    read = SampleReader(model.builder, cache_dir)
    skipped: list[dict[str, str]] = []
    report = evaluate_examples(model, examples, read, batch_size=batch_size, skipped=skipped)
    report["_headline"] = headline(report)
    report["_checkpoint"] = str(path)
    report["_config"] = model.config.to_dict()
    report["_skipped"] = skipped
    report["_ablations"] = {kind: headline(evaluate_examples(model, examples, AblatedReader(read, kind), batch_size,
                                                             skipped=[]))
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
    parser.add_argument("--cache", default=None, help="feature cache folder (content-keyed)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--ablate", default="", help=f"comma-separated input ablations: {','.join(ABLATIONS)}")
    args = parser.parse_args(argv)
    report = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.tasks.replace(",", ""),
                                 args.batch_size, args.cache, ablations=[a for a in args.ablate.split(",") if a])
    text = json.dumps(report, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
    if args.out:
        Path(args.out).write_text(text)
    print(ablation_table(report))


if __name__ == "__main__":
    main()
