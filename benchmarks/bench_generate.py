"""Generator throughput: samples per second per core, per task family and resolution.

Usage: python benchmarks/bench_generate.py [--num 8]
Prints a table; one worker process, so samples/s is per core.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from jaeger_ros.data.dataset import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for task in ("A", "C", "D", "B"):
        for res in ((672, 378), (1280, 720)):
            with tempfile.TemporaryDirectory() as tmp:
                generate(tmp, "test", 1, seed=99, tasks=task, resolution=res, progress=False)  # warm-up
                t0 = time.perf_counter()
                generate(tmp, "test", args.num, seed=1, tasks=task, resolution=res, progress=False)
                dt = time.perf_counter() - t0
            rows.append((task, f"{res[0]}x{res[1]}", args.num, dt / args.num * 1000, args.num / dt))
    print(f"{'task':<5} {'resolution':<11} {'n':>4} {'ms/sample':>10} {'samples/s/core':>15}")
    for task, res, n, ms, rate in rows:
        print(f"{task:<5} {res:<11} {n:>4} {ms:>10.0f} {rate:>15.2f}")


if __name__ == "__main__":
    main()
