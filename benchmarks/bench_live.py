"""Live benchmark: sim_bridge + jaeger_node as processes over a fixed-seed stream, scored per frame.

Why beside the live demo: `make demo` prints running figures; this writes one JSON of the
published, sound-only DoA and the matching with bootstrap 95 % intervals, so live runs can be
compared. It runs jaeger_ros.ros.live_demo's main (same processes, same scoring rule,
live_demo.SCORING_RULE) with a Scorer that also keeps each scored frame: its DoA error, whether
the talker's acoustic centre is in the image (SimSource.in_view), and whether the match is right.

Run (from a source checkout with the workspace sourced):
    python benchmarks/bench_live.py --conditions realistic --duration 120 --seed 3 --json OUT.json
    [--scenario single|dual] [--method classical|jaeger] [--candidates depth|classified|detectors]
    [--world procedural|mesh]
--conditions: clean | realistic | hard | diffuse@SNR. --candidates is jaeger_node's parameter (set in a
copy of the demo's params file; default: the file's value, classified).
    python benchmarks/bench_live.py --pool-cost   # per-frame cost of the two DoA pools, no ROS
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from jaeger_ros.data.robustness import bootstrap_ci
from jaeger_ros.ros import live_demo


class FrameScorer(live_demo.Scorer):
    """live_demo.Scorer that keeps (doa error or None, in view, correct) per scored frame: it
    hands the pending matches to the base class one at a time and reads what each one added."""

    made: list["FrameScorer"] = []  # the demo builds its own scorer; this is how we find it

    def __init__(self, window_s: float) -> None:
        super().__init__(window_s)
        self.frames: list[tuple[float | None, bool, bool]] = []
        FrameScorer.made.append(self)

    def _drain(self) -> None:
        queued = list(self.pending)
        self.pending.clear()
        for i, match in enumerate(queued):
            scored, correct, errors = self.scored, self.correct, len(self.doa_errors)
            self.pending.append(match)
            super()._drain()
            if self.pending:  # its ground truth has not arrived yet: keep it and the rest, in order
                self.pending.extend(queued[i + 1:])
                return
            if self.scored > scored:
                talking = [s for s in self.last[1].sources if s.active_for_s >= self.window_s]
                target = next((s for s in talking if s.gender == match.target), talking[0] if talking else None)
                error = self.doa_errors[-1] if len(self.doa_errors) > errors else None
                self.frames.append((error, bool(target.in_view) if target is not None else True,
                                    self.correct > correct))


def _row(values: np.ndarray, stat, rng: np.random.Generator) -> dict:
    if values.size == 0:
        return {"value": None, "ci95": None, "n": 0}
    lo, hi = bootstrap_ci(values, stat, rng)
    return {"value": float(stat(values)), "ci95": [lo, hi], "n": int(values.size)}


def pool_cost(seconds: float = 8.0, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per-frame cost (ms) of the node's two sound-only DoA pools, without ROS: espeak-ng speech in
    an image-source room (RT60 ~0.5 s) plus diffuse pink noise at 10 dB, as 0.5 s windows every 0.1 s."""
    import time

    from jaeger_ros.classical import tracking
    from jaeger_ros.core import foa
    from jaeger_ros.core.geometry import rotation_y
    from sim_bridge import conditions as sensing
    from sim_bridge.acoustics import convolve_foa, foa_rir
    from sim_bridge.room import Room
    from sim_bridge.speech import SpeechBank

    rng = np.random.default_rng(seed)
    bank = SpeechBank("test", seed)
    dry = np.concatenate([bank.utterance("female", rng) for _ in range(3)])[: int(seconds * foa.SAMPLE_RATE)]
    room = Room((6.0, 2.8, 5.0), (0.2, 0.2, 0.2, 0.35, 0.2, 0.2))
    wet = convolve_foa(dry, foa_rir(room, np.array([1.6, 1.0, 1.6]), np.array([3.0, 1.4, 4.2]), rotation_y(15.0), rng=rng))
    noise = sensing.diffuse_noise("pink", wet.shape[1], rng)
    x = wet + noise * np.sqrt(sensing.active_power(wet[0]) / np.mean(noise[0] ** 2) / 10.0)
    window, step, rate = foa.SAMPLE_RATE // 2, foa.SAMPLE_RATE // 10, foa.SAMPLE_RATE
    out = {}
    for name, pool in (("onset (OnsetPool)", tracking.OnsetPool()), ("robust (RobustPool)", tracking.RobustPool())):
        times = []
        for end in range(window, x.shape[1] + 1, step):
            t0 = time.perf_counter()
            pool.update(end / rate, x[:, end - window:end], rate)
            times.append((time.perf_counter() - t0) * 1000.0)
        t = np.array(times[5:])  # the first frames fill the pool
        out[name] = {"frames": int(t.size), "median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", default="realistic")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", choices=("single", "dual"), default="single")
    parser.add_argument("--method", choices=("classical", "jaeger"), default="classical")
    parser.add_argument("--candidates", choices=("depth", "classified", "detectors"), default=None,
                        help="jaeger_node parameter candidates (default: the params file's value)")
    parser.add_argument("--world", choices=("procedural", "mesh"), default=None,
                        help="sim_bridge parameter world (default: the params file's value, procedural)")
    parser.add_argument("--json", type=Path, help="where to write the figures (required for a live run)")
    parser.add_argument("--pool-cost", action="store_true", help="only time the two DoA pools (no ROS) and exit")
    args = parser.parse_args(argv)
    if args.pool_cost:
        print(json.dumps(pool_cost(seed=args.seed), indent=2))
        return 0
    if args.json is None:
        parser.error("--json is required for a live run")

    with tempfile.TemporaryDirectory() as out:
        params = yaml.safe_load(live_demo.DEFAULT_PARAMS.read_text())
        if args.candidates is not None:
            params["jaeger_node"]["ros__parameters"]["candidates"] = args.candidates
        if args.world is not None:
            params["sim_bridge"]["ros__parameters"]["world"] = args.world
        params_file = Path(out) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params))
        candidates = params["jaeger_node"]["ros__parameters"].get("candidates", "classified")
        original = live_demo.Scorer
        live_demo.Scorer = FrameScorer  # the demo builds its scorer by this name
        try:
            status = live_demo.main(["--duration", str(args.duration), "--seed", str(args.seed), "--conditions",
                                     args.conditions, "--scenario", args.scenario, "--method", args.method,
                                     "--params", str(params_file), "--out", out])
        finally:
            live_demo.Scorer = original
        summary_path = Path(out) / "summary.json"
        if status != 0 or not summary_path.is_file():
            print("bench_live: the live run failed (see above)", file=sys.stderr)
            return 1
        summary = json.loads(summary_path.read_text())
    frames = FrameScorer.made[-1].frames
    rng = np.random.default_rng(0)
    err = np.array([f[0] for f in frames if f[0] is not None])
    out_err = np.array([f[0] for f in frames if f[0] is not None and not f[1]])
    correct = np.array([100.0 * f[2] for f in frames])
    recv = FrameScorer.made[-1].received
    lat = np.array([(r - s) * 1000.0 for r, s in recv])
    result = {
        "conditions": args.conditions, "duration_s": summary["duration_s"], "seed": args.seed,
        "scenario": args.scenario, "method": args.method, "candidates": candidates,
        "world": params["sim_bridge"]["ros__parameters"].get("world", "procedural"), "scoring_rule": live_demo.SCORING_RULE,
        "doa_error_median_deg": _row(err, np.median, rng),
        "doa_error_median_out_of_view_deg": _row(out_err, np.median, rng),
        "match_accuracy": _row(correct, np.mean, rng),
        "latency_p95_ms": _row(lat, lambda v: np.percentile(v, 95), rng),
        "rate_hz": summary["rate_hz"], "scored_frames": len(frames),
        "scene_snr_db": summary.get("scene_snr_db", {}),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
