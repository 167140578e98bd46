"""Per-scene sound-only DoA error and match accuracy against the talker's direct-to-reverberant
ratio, from bench_live.py JSON files (their scene_detail): a figure, and a table pooling the runs'
scenes by DRR band (robustness.DRR_BANDS_DB) with 95 % intervals that resample scenes.

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
import numpy as np

from jaeger_ros.data.robustness import DRR_BANDS_DB, cluster_bootstrap, drr_band, drr_bands

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LOST_DEG = 20.0
"""A scene whose sound-only DoA median is over this is counted as lost to the ear."""


def run_label(result: dict) -> str:
    return f"{result.get('world', 'procedural')} {result.get('talkers', 'loudspeakers')}, seed {result.get('seed')}"


def load(path: Path) -> dict:
    """A bench_live result whose scene_detail rows carry drr_db, match_accuracy, frames and the DoA."""
    result = json.loads(path.read_text())
    for row in result["scene_detail"]:
        numbers = [row["match_accuracy"], row["frames"], row["scene"], row["drr_db"], row["doa_error_median_deg"]]
        if not all(v is None or isinstance(v, (int, float)) for v in numbers) or row["match_accuracy"] is None:
            raise ValueError(f"scene row {row!r} is not numeric")
    return result


def pooled_table(results: list[dict], rng: np.random.Generator) -> list[dict]:
    """Per DRR band, over every run's scenes of known DRR: scenes, frames, match accuracy (frames
    pooled), the median of the scenes' DoA medians, and how many scenes are lost (> LOST_DEG)."""
    table = []
    for band in drr_bands():
        rows = [(k, r) for k, result in enumerate(results) for r in result["scene_detail"]
                if r["drr_db"] is not None and drr_band(r["drr_db"]) == band]
        ids = np.arange(len(rows))
        frames = np.array([[r["match_accuracy"] * r["frames"], r["frames"]] for _, r in rows], float).reshape(-1, 2)
        doa = np.array([r["doa_error_median_deg"] for _, r in rows if r["doa_error_median_deg"] is not None])
        table.append({
            "band": band, "scenes": len(rows), "frames": int(frames[:, 1].sum()),
            "match_accuracy": cluster_bootstrap(ids, frames, lambda v: float(v[:, 0].sum() / v[:, 1].sum()), rng),
            "doa_median_of_scene_medians_deg": cluster_bootstrap(np.arange(doa.size), doa, np.median, rng),
            "lost_scenes": int(np.sum(doa > LOST_DEG))})
    return table


def _interval(row: dict, unit: str) -> str:
    if row["value"] is None:
        return "—"
    ci = "" if row["ci95"] is None else f" [{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]"
    return f"{row['value']:.1f}{unit}{ci}"


def plot(results: list[dict], out: Path) -> None:
    fig, (doa_ax, match_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^v<>p"
    for k, result in enumerate(results):
        rows = [r for r in result["scene_detail"] if r["drr_db"] is not None]
        heard = [r for r in rows if r["doa_error_median_deg"] is not None]
        doa_ax.scatter([r["drr_db"] for r in heard], [max(r["doa_error_median_deg"], 0.3) for r in heard],
                       marker=markers[k % len(markers)], alpha=0.75, label=run_label(result))
        match_ax.scatter([r["drr_db"] for r in rows], [r["match_accuracy"] for r in rows],
                         marker=markers[k % len(markers)], alpha=0.75, label=run_label(result))
    for ax in (doa_ax, match_ax):
        for edge in DRR_BANDS_DB:
            ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("talker's direct-to-reverberant ratio at the microphone (dB)")
        ax.grid(alpha=0.3)
    doa_ax.axhline(LOST_DEG, color="tab:red", linestyle="--", linewidth=1, label=f"lost (> {LOST_DEG:g} deg)")
    doa_ax.set_yscale("log")
    doa_ax.set_ylabel("scene's sound-only DoA error, median (deg, great circle)")
    doa_ax.set_title("hearing alone, per scene")
    doa_ax.legend(fontsize=7, loc="upper right")
    match_ax.set_ylabel("scene's match accuracy (%)")
    match_ax.set_title("speaker matching, per scene")
    match_ax.legend(fontsize=7, loc="lower right")
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
            results.append(load(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"plot_live_drr: {path}: not a bench_live result with scene_detail ({exc!r})", file=sys.stderr)
            return 2
    plot(results, args.out)
    print("| talker's DRR | scenes | frames | match accuracy | sound-only DoA, median of scene medians "
          f"| scenes lost (DoA median > {LOST_DEG:g} deg) |")
    print("|---|---|---|---|---|---|")
    for row in pooled_table(results, np.random.default_rng(0)):
        print(f"| {row['band']} | {row['scenes']} | {row['frames']} | {_interval(row['match_accuracy'], ' %')} "
              f"| {_interval(row['doa_median_of_scene_medians_deg'], ' deg')} | {row['lost_scenes']} of {row['scenes']} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
