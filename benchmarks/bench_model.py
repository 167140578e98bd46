"""JAEGER tiny model on this machine: inference latency per task (p50/p95), batched generation
(samples/s at batch 1 vs --eval-batch, as `jaeger eval --batch-size`), training samples/s,
peak memory.

Usage: python benchmarks/bench_model.py [--checkpoint default] [--runs 10] [--train-steps 5]
       [--eval-batch 4] [--eval-samples 8]
Inputs are random arrays of the dataset's shapes (672x378 RGB-D, 4 s of FOA): latency does not
depend on their content beyond the generated answer's length, which is the task's own.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch

from jaeger_ros.core.geometry import Intrinsics
from jaeger_ros.model.modeling import JaegerModel, describe
from jaeger_ros.model.predictor import JaegerPredictor, checkpoint_path

ANSWER = {"A": "azimuth: -12; elevation: -20", "B": "azimuth: 30; elevation: -15",
          "C": "bbox_0=Bbox(speaker, 14, -48, -115, 33, 88, 32)\nbbox_1=Bbox(speaker, 60, -50, -200, 35, 70, 36)",
          "D": "Left", "E": "Right"}


def query(task: str, rng: np.random.Generator) -> dict:
    intr = Intrinsics.from_hfov(672, 378, 90.0)
    return dict(rgb=rng.integers(0, 255, (378, 672, 3), dtype=np.uint8),
                depth=rng.uniform(0.5, 6.0, (378, 672)).astype(np.float32), intrinsics=intr,
                foa=(rng.normal(size=(4, 64000)) * 0.1).astype(np.float32), sample_rate=16000, task=task,
                target="male" if task in "BE" else None, num_candidates=2 if task == "C" else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--eval-batch", type=int, default=4, help="batched generation: items per batch")
    parser.add_argument("--eval-samples", type=int, default=8, help="batched generation: items per task")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = checkpoint_path(args.checkpoint)
    predictor = JaegerPredictor.from_pretrained(path)
    model = predictor.model
    rng = np.random.default_rng(0)
    print(f"checkpoint {path}  iv={model.config.iv}  depth_pe={model.config.depth_pe}  "
          f"params {describe(model)['total'] / 1e6:.2f} M  threads {args.threads}")
    print(f"{'task':<5} {'runs':>5} {'p50 ms':>9} {'p95 ms':>9} {'answer tokens':>14}")
    for task in "ABCDE":
        q = query(task, rng)
        predictor.predict(**q)  # warm-up
        times, n_tok = [], 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            pred = predictor.predict(**q)
            times.append((time.perf_counter() - t0) * 1000)
            n_tok = len(model.tokenizer(pred.raw_text, add_special_tokens=False)["input_ids"])
        print(f"{task:<5} {args.runs:>5} {np.percentile(times, 50):>9.1f} {np.percentile(times, 95):>9.1f} {n_tok:>14}")

    _batched_generation(predictor, args.eval_samples, args.eval_batch, rng)

    train_model = JaegerModel.build_tiny(model.config, model.tokenizer).train()
    b = train_model.builder
    opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
    items = []
    for i in range(args.batch_size):
        task = "ABCDE"[i % 5]
        q = query(task, rng)
        x = b.inputs(task, q["rgb"], q["depth"], q["intrinsics"], q["foa"], 16000)
        items.append((*b.encode(b.prompt(task, "Where?"), b.target(task, _official(task))), x))
    batch = b.collate(items)
    times = []
    for _ in range(args.train_steps + 1):
        t0 = time.perf_counter()
        train_model(batch).loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    rate = args.batch_size / float(np.median(times[1:]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"training: batch {args.batch_size}, {rate:.2f} samples/s (median of {args.train_steps} steps)")
    print(f"peak resident memory: {peak_mb:.0f} MB")


def _batched_generation(predictor: JaegerPredictor, n: int, batch: int, rng: np.random.Generator) -> None:
    """The same n queries per task answered one at a time and `batch` at a time (left padding,
    greedy); samples/s of each, the speed-up, and how many answers differ (expected 0)."""
    print(f"batched generation: {n} items per task, batch 1 vs {batch}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'task':<5} {'b1 samples/s':>13} {f'b{batch} samples/s':>13} {'speed-up':>9} {'differ':>7}")
    total = [0.0, 0.0]
    for task in "ABCDE":
        queries = [query(task, rng) for _ in range(n)]
        predictor.predict_batch(queries[:batch])  # warm-up
        rates, texts = [], []
        for size in (1, batch):
            t0 = time.perf_counter()
            out = [p for i in range(0, n, size) for p in predictor.predict_batch(queries[i:i + size])]
            rates.append(n / (time.perf_counter() - t0))
            texts.append([p.raw_text for p in out])
        differ = sum(a != b for a, b in zip(*texts))
        total = [t + n / r for t, r in zip(total, rates)]
        print(f"{task:<5} {rates[0]:>13.2f} {rates[1]:>13.2f} {rates[1] / rates[0]:>8.2f}x {differ:>7d}")
    print(f"{'all':<5} {5 * n / total[0]:>13.2f} {5 * n / total[1]:>13.2f} {total[0] / total[1]:>8.2f}x")


def _official(task: str) -> str:
    """ANSWER in the official units (task C in metres)."""
    if task != "C":
        return ANSWER[task]
    from jaeger_ros.core import answers

    return answers.format_boxes(answers.parse_boxes(ANSWER["C"], "cm"), "m")


if __name__ == "__main__":
    main()
