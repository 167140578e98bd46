"""Tiny-preset ablations: the staged recipe (config/train_tiny_recipe.yaml) retrained under
one change at a time, every variant on the same data and the same wall-time budget (each
stage's max_minutes scaled so the stages sum to --minutes), each scored on the same test
split. One table: A/B great-circle medians over parsed answers (the paper's statistic) and
D/E accuracies, each with a bootstrap 95 % interval, plus C when asked for.

Variants: full (the recipe), no_foa (W channel only: D/E must fall to chance), no_depth_pe,
no_aux (no auxiliary heads; the encoder stage, which trains only them, gives its minutes to
the next stage), centred_pe (JAEGER's depth PE centred on the scene, not camera-frame),
attend (the recipe plus the llm_attend head: one LLM attention head taught to look at the
matched loudspeaker),
neural_iv (Neural IV computed in the model: it gets the steps that fit the budget).

Run: .venv/bin/python benchmarks/bench_tiny_ablations.py --data data/r13 --test data/test200
     --out runs/ablations [--minutes 8] [--variants full,no_foa,...] [--tasks A,B,D,E]
A variant whose checkpoint and report exist is not run again.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from jaeger_ros.data.robustness import bootstrap_ci
from jaeger_ros.model.train import read_log

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "config" / "train_tiny_recipe.yaml"
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_foa": {"model_overrides": {"iv": "none"}, "precompute_iv": False},
    "no_depth_pe": {"model_overrides": {"depth_pe": False, "depth_pe_absolute": False}},
    "centred_pe": {"model_overrides": {"depth_pe_absolute": False}},
    "no_aux": {"aux_weights": {}},
    "attend": {"aux_weights": {**yaml.safe_load(RECIPE.read_text())["defaults"]["aux_weights"], "llm_attend": 1.0}},
    "neural_iv": {"model_overrides": {"iv": "neural"}, "precompute_iv": False},
}


def variant_recipe(name: str, minutes: float) -> dict[str, Any]:
    """The recipe with the variant's changes in its defaults and its stages scaled to `minutes`."""
    recipe = yaml.safe_load(RECIPE.read_text())
    defaults = dict(recipe["defaults"])
    defaults["model"] = str((RECIPE.parent / defaults["model"]).resolve())
    defaults.update(VARIANTS[name])
    stages = [dict(s) for s in recipe["stages"]]
    if not defaults.get("aux_weights"):
        dropped = [s for s in stages if float(s.get("lm_weight", 1.0)) == 0.0]
        stages = [s for s in stages if s not in dropped]
        stages[0]["max_minutes"] = float(stages[0]["max_minutes"]) + sum(float(s["max_minutes"]) for s in dropped)
    scale = minutes / sum(float(s["max_minutes"]) for s in stages)
    for s in stages:
        s["max_minutes"] = round(float(s["max_minutes"]) * scale, 3)
    return {"defaults": defaults, "stages": stages}


def score(predictions: Path, seed: int = 0) -> dict[str, Any]:
    """Per task: n, the statistic and its bootstrap 95 % interval, from predictions.jsonl."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in predictions.read_text().splitlines():
        p = json.loads(line)
        rows.setdefault(p["key"], []).append(p)
    out: dict[str, Any] = {}
    for task, items in sorted(rows.items()):
        if task in "AB":
            values = np.array([p["angular_error"] for p in items if p.get("angular_error") is not None])
            stat = np.median
        elif task in "DE":
            values = np.array([100.0 * (p.get("parsed") == p.get("target")) for p in items])
            stat = np.mean
        else:
            continue
        if values.size:
            out[task] = {"n": len(items), "n_scored": int(values.size), "value": float(stat(values)),
                         "ci95": list(bootstrap_ci(values, stat, rng))}
    return out


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.out) / name
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(variant_recipe(name, args.minutes), sort_keys=False))
    jaeger = [sys.executable, "-m", "jaeger_ros.cli"]
    if not (folder / "run" / "final" / "model.safetensors").is_file():
        subprocess.run([*jaeger, "train", "--recipe", str(recipe), "--data", args.data, "--out", str(folder / "run")],
                       check=True)
    report = folder / "eval"
    if not (report / "report.json").is_file():
        subprocess.run([*jaeger, "eval", "--checkpoint", str(folder / "run" / "final"), "--data", args.test,
                        "--split", "test", "--tasks", args.tasks, "--out", str(report)], check=True)
    official = json.loads((report / "report.json").read_text())["official"]
    batch = int(variant_recipe(name, args.minutes)["defaults"].get("batch_size", 16))
    samples = sum(e["step"] for e in _last_per_stage(folder / "run")) * batch
    return {"variant": name, "scores": score(report / "predictions.jsonl"), "C": official.get("C"),
            "samples": samples}


def _last_per_stage(run: Path) -> list[dict[str, Any]]:
    """Each stage's last training log entry."""
    out = []
    for stage in sorted(run.glob("[0-9]_*")):
        rows = [r for r in read_log(stage) if "samples_per_s" in r]
        if rows:
            out.append(rows[-1])
    return out


def table(results: list[dict[str, Any]], minutes: float) -> str:
    def cell(r: dict[str, Any], task: str, unit: str) -> str:
        s = r["scores"].get(task)
        return "–" if s is None else f"{s['value']:.1f}{unit} [{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]"

    lines = [f"budget {minutes:g} min per variant; A/B: great-circle median over parsed answers; D/E: accuracy",
             "", "| variant | samples seen | A median | B median | C IoU / offset median | D | E |", "|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.get("C")
        offset = "–" if not c or c.get("offset_median") is None else f"{c['offset_median']:.2f} m"
        grounding = "–" if not c else f"{c['iou_mean']:.2f} / {offset} ({c.get('n_missing', 0)} of {c['n']} unanswered)"
        lines.append(f"| {r['variant']} | {r['samples']} | {cell(r, 'A', '°')} | {cell(r, 'B', '°')} | {grounding} | "
                     f"{cell(r, 'D', ' %')} | {cell(r, 'E', ' %')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="training data root (train/ and val/)")
    parser.add_argument("--test", required=True, help="test data root (test/)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-time budget of each variant's training")
    parser.add_argument("--variants", default="full,no_foa,no_depth_pe,no_aux")
    parser.add_argument("--tasks", default="A,B,C,D,E")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    results = [run_variant(name, args) for name in names]
    text = table(results, args.minutes)
    (Path(args.out) / "ablations.md").write_text(text + "\n")
    (Path(args.out) / "ablations.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
