"""Recorded bags: record speed, bag size per minute of sim, conversion samples/s.

    python benchmarks/bench_bags.py [--seconds 20] [--resolution 640x480] [--storage mcap sqlite3]

Records the live simulator (single scenario) for `--seconds` of stream time per storage, then
converts each bag with `jaeger dataset from-bag` defaults. One process; bags go to a temp dir.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from jaeger_ros.data.bag_dataset import convert_bags
from jaeger_ros.data.bag_record import record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--resolution", default="640x480")
    parser.add_argument("--storage", nargs="+", default=["mcap", "sqlite3"])
    parser.add_argument("--no-compress", action="store_true")
    args = parser.parse_args()
    w, h = (int(v) for v in args.resolution.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in args.storage:
            bag = Path(tmp) / f"bag_{storage}"
            stats = record(bag, args.seconds, storage=storage, width=w, height=h, compress=not args.no_compress,
                           progress=False)
            t = time.perf_counter()
            report = convert_bags([bag], Path(tmp) / f"data_{storage}", split="test", progress=False)
            conv_s = time.perf_counter() - t
            rows.append((storage, stats.duration_s / stats.wall_s, stats.bytes / 2**20 * 60 / stats.duration_s,
                         report.frames / conv_s, report.folders / conv_s, report.folders))
    print(f"\nbags: {args.seconds:g} s of sim, {w}x{h} RGB-D at 10 Hz + FOA 16 kHz, "
          f"{'no compression' if args.no_compress else 'zstd'}")
    print("| storage | record (x real time) | MiB per minute of sim | convert frames/s | convert samples/s | samples |")
    print("|---|---|---|---|---|---|")
    for storage, speed, mib, fps, sps, n in rows:
        print(f"| {storage} | {speed:.1f} | {mib:.0f} | {fps:.1f} | {sps:.1f} | {n} |")


if __name__ == "__main__":
    main()
