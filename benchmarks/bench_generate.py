"""Generator throughput: samples per second per core, per task family, resolution and sensing preset.

Usage: python benchmarks/bench_generate.py [--num 8] [--tasks A,C,D,B] [--conditions realistic]
       [--resolutions 672x378,1280x720]
Prints a table; one worker process, so samples/s is per core. Wall time counts what other
processes take from this one on a shared machine; CPU time (this process and its speech
synthesis children) does not. Each run synthesises its speech pool, as a real run does once.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from jaeger_ros.data.dataset import generate


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--tasks", default="A,C,D,B")
    parser.add_argument("--conditions", default="realistic", help="comma-separated sensing presets")
    parser.add_argument("--resolutions", default="672x378,1280x720")
    args = parser.parse_args()
    resolutions = [tuple(int(v) for v in r.split("x")) for r in args.resolutions.split(",")]
    rows = []
    for cond in args.conditions.split(","):
        for task in args.tasks.split(","):
            for res in resolutions:
                with tempfile.TemporaryDirectory() as tmp:
                    generate(tmp, "test", 1, seed=99, tasks=task, resolution=res, progress=False, conditions=cond)
                    t0, c0 = time.perf_counter(), _cpu_seconds()
                    generate(tmp, "test", args.num, seed=1, tasks=task, resolution=res, progress=False,
                             conditions=cond, overwrite=True)
                    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
                rows.append((cond, task, f"{res[0]}x{res[1]}", args.num, wall / args.num * 1000, args.num / wall,
                             args.num / cpu))
    print(f"{'conditions':<11} {'task':<5} {'resolution':<11} {'n':>4} {'ms/sample':>10} {'samples/s/core':>15} "
          f"{'per CPU-s':>10}")
    for cond, task, res, n, ms, rate, cpu_rate in rows:
        print(f"{cond:<11} {task:<5} {res:<11} {n:>4} {ms:>10.0f} {rate:>15.2f} {cpu_rate:>10.2f}")


if __name__ == "__main__":
    main()
