"""Per-scene sound-only DoA error and match accuracy against the talker's direct-to-reverberant
ratio, from bench_live.py JSON files (their scene_detail and by_drr).

Why: a live run's median hides the rooms where hearing fails; the DRR at the microphone (the
simulator's ground truth, SimSource.drr_db) is what separates them, so the figure shows where the
classical DoA holds and where it does not.

    python benchmarks/plot_live_drr.py RUN.json [RUN.json ...] --out docs/live_vs_drr.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run_label(result: dict) -> str:
    return f"{result.get('world', 'procedural')} {result.get('talkers', 'loudspeakers')}, seed {result.get('seed')}"


def plot(results: list[dict], out: Path) -> None:
    fig, (doa_ax, match_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^v<>p"
    for k, result in enumerate(results):
        rows = [r for r in result["scene_detail"] if r["drr_db"] is not None]
        x = [r["drr_db"] for r in rows]
        doa_ax.scatter([r["drr_db"] for r in rows if r["doa_error_median_deg"] is not None],
                       [max(r["doa_error_median_deg"], 0.3) for r in rows if r["doa_error_median_deg"] is not None],
                       marker=markers[k % len(markers)], alpha=0.75, label=run_label(result))
        match_ax.scatter(x, [r["match_accuracy"] for r in rows], marker=markers[k % len(markers)], alpha=0.75,
                         label=run_label(result))
    for ax in (doa_ax, match_ax):
        for edge in (-6.0, -9.0):
            ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("talker's direct-to-reverberant ratio at the microphone (dB)")
        ax.grid(alpha=0.3)
    doa_ax.set_yscale("log")
    doa_ax.set_ylabel("scene's sound-only DoA error, median (deg, great circle)")
    doa_ax.set_title("hearing alone, per scene")
    match_ax.set_ylabel("scene's match accuracy (%)")
    match_ax.set_title("speaker matching, per scene")
    match_ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench_live.py --json outputs")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    results = []
    for path in args.runs:
        try:
            result = json.loads(path.read_text())
            result["scene_detail"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"plot_live_drr: {path}: not a bench_live result with scene_detail ({exc})", file=sys.stderr)
            return 2
        results.append(result)
    plot(results, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
