"""End-to-end latency of the ROS pipeline: image stamp -> /jaeger/speaker_match received.

sim_bridge (640x480 RGB-D at 10 Hz, FOA in 50 ms chunks) and jaeger_node run as separate
processes (python -m jaeger_ros.ros.live_demo); this script reads the demo's summary and prints a
table: p50/p95 latency, delivered rate, frames published while the node ran and frames that
got no output (dropped). Target on the 2-core dev machine: p95 <= 100 ms, no dropped frames.

Usage: python benchmarks/bench_latency.py [--duration 20] [--method classical]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from jaeger_ros.ros import live_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--method", default="classical")
    parser.add_argument("--scenario", default="single")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        status = live_demo.main(["--duration", str(args.duration), "--out", tmp, "--method", args.method,
                                 "--scenario", args.scenario])
        if status != 0:
            raise SystemExit(f"live run failed ({status})")
        s = json.loads((Path(tmp) / "summary.json").read_text())
    rows = [("method", args.method), ("image size", "640x480 RGB-D"), ("camera rate", "10 Hz"),
            ("duration (s)", f"{args.duration:.0f}"), ("outputs", s["messages"]),
            ("delivered rate (Hz)", f"{s['rate_hz']:.2f}"), ("latency p50 (ms)", f"{s['latency_p50_ms']:.1f}"),
            ("latency p95 (ms)", f"{s['latency_p95_ms']:.1f}"), ("frames published", s["frames_published"]),
            ("frames dropped", s["frames_without_output"]),
            ("match accuracy (scored frames)", f"{s['correct']}/{s['scored_frames']}"),
            ("box match (all talker frames)", f"{s['box_correct']}/{s['talker_frames']}")]
    width = max(len(k) for k, _ in rows)
    print("\n| " + "metric".ljust(width) + " | value |\n|" + "-" * (width + 2) + "|-------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


if __name__ == "__main__":
    main()
