"""Robustness breakdown: every DoA and matching metric by sensing condition, with bootstrap intervals.

Why: one average over a split hides where a method breaks (low SNR, a tetrahedral microphone,
an unseen voice engine, one gender). Each scored item carries the conditions its sample's
metadata.json records (sim_bridge.conditions); items are grouped by each condition and every
group's statistic gets a percentile-bootstrap 95 % interval, so a difference between two
groups can be told from resampling noise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from jaeger_ros.core import answers, metrics
from jaeger_ros.data.dataset import ManifestEntry, Sample, SampleError, iter_entries, load_sample

SNR_BINS_DB = (-np.inf, 5.0, 10.0, 15.0, 20.0, 30.0, np.inf)
BOOTSTRAP = 1000
FACTORS = ("snr", "noise", "interferer", "directivity", "capsules", "engine", "gender")


@dataclass(frozen=True)
class Item:
    """One scored answer: error (degrees, A/B; None when unparsed) or correct (D/E), and the
    conditions of its sample."""

    task: str
    path: str
    error_deg: float | None
    correct: bool | None
    snr_db: float | None
    factors: dict[str, str]


def snr_bin(snr_db: float | None) -> str:
    """'clean' without ambient noise, else the SNR_BINS_DB interval holding it, e.g. '10-15 dB'."""
    if snr_db is None:
        return "clean"
    for lo, hi in zip(SNR_BINS_DB[:-1], SNR_BINS_DB[1:]):
        if lo <= snr_db < hi:
            return f"< {hi:g} dB" if lo == -np.inf else f">= {lo:g} dB" if hi == np.inf else f"{lo:g}-{hi:g} dB"
    return "clean"


def _target_source(sample: Sample, entry: ManifestEntry) -> dict[str, Any]:
    sources = sample.sources()
    gender = entry.target_gender
    for s in sources:
        if gender and s.get("gender") == gender:
            return s
    return sources[0] if sources else {}


def item_factors(sample: Sample, entry: ManifestEntry) -> tuple[float | None, dict[str, str]]:
    """(SNR dB or None, {factor: level}) of one entry from its sample's metadata."""
    cond = sample.metadata.get("conditions") or {}
    src = _target_source(sample, entry)
    voice = src.get("voice") or {}
    snr = cond.get("snr_db")
    return snr, {"snr": snr_bin(snr), "noise": str(cond.get("noise_kind") or "none"),
                 "interferer": str(cond.get("interferer") or "none"),
                 "directivity": "directional" if cond.get("directivity") else "omni",
                 "capsules": str(cond.get("capsules", "ideal")), "engine": str(voice.get("engine", "unknown")),
                 "gender": str(src.get("gender", "unknown"))}


def score_items(method: Any, data_dir: str | Path, split: str = "test", tasks: Iterable[str] = "ABDE",
                progress: bool = False) -> list[Item]:
    """Answer and score every readable entry of the requested DoA/matching tasks."""
    from tqdm import tqdm

    wanted = set(tasks) & set("ABDE") & set(method.tasks)
    out = []
    for letter, entry, folder in tqdm(list(iter_entries(data_dir, split, wanted)), desc=f"robust {method.name}",
                                      disable=not progress):
        try:
            sample = load_sample(folder)
            snr, factors = item_factors(sample, entry)
        except SampleError:
            continue
        try:
            text: str | None = method.answer(sample, entry)
        except (ValueError, RuntimeError):
            text = None
        pred = answers.extract_answer(letter, text)
        if letter in "AB":
            truth = answers.parse_doa(entry.text)
            err = None if pred is None else float(metrics.doa_errors(pred.azimuth, pred.elevation,
                                                                     truth.azimuth, truth.elevation)[2])
            out.append(Item(letter, entry.path, err, None, snr, factors))
        else:
            out.append(Item(letter, entry.path, None, pred == entry.text, snr, factors))
    return out


def _statistic(items: list[Item]) -> tuple[np.ndarray, Callable[[np.ndarray], float]]:
    """Per-item values and the task's statistic: median great-circle error (unparsed = 180
    deg, the worst case) or accuracy in percent."""
    if items[0].task in "AB":
        return np.array([180.0 if i.error_deg is None else i.error_deg for i in items]), np.median
    return np.array([100.0 if i.correct else 0.0 for i in items]), np.mean


def bootstrap_ci(values: np.ndarray, stat: Callable[[np.ndarray], float], rng: np.random.Generator,
                 n: int = BOOTSTRAP) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of stat(values)."""
    if values.size == 0:
        raise ValueError("no values to bootstrap")
    draws = rng.integers(0, values.size, (n, values.size))
    stats = np.apply_along_axis(stat, 1, values[draws])
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def cluster_bootstrap(clusters: np.ndarray, values: np.ndarray, stat: Callable[[np.ndarray], float],
                      rng: np.random.Generator, n: int = BOOTSTRAP) -> dict[str, Any]:
    """{"value", "ci95", "n", "scenes"}: stat(values) with a percentile-bootstrap 95 % interval that
    resamples whole clusters (a live run's scenes: a scene's frames share its room and talker, so
    they are not independent). `values` may be (N, k) rows; a draw whose stat is NaN is skipped.
    With fewer than two clusters there is nothing to resample: ci95 is None."""
    clusters = np.asarray(clusters)
    if values.shape[0] == 0:
        return {"value": None, "ci95": None, "n": 0, "scenes": 0}
    ids = np.unique(clusters)
    parts = [values[clusters == c] for c in ids]
    ci = None
    if len(ids) >= 2:
        draws = np.array([stat(np.concatenate([parts[i] for i in rng.integers(0, len(ids), len(ids))]))
                          for _ in range(n)], dtype=float)
        draws = draws[np.isfinite(draws)]
        ci = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))] if draws.size else None
    return {"value": float(stat(values)), "ci95": ci, "n": int(values.shape[0]), "scenes": int(len(ids))}


DRR_BANDS_DB = (-6.0, -9.0)
"""Talker direct-to-reverberant ratios that split live frames and scenes (drr_band): >= -6 dB,
-9 to -6 dB, < -9 dB (mesh rooms: talkers 1.5-2 m away sit near -2 to -5 dB, 3 m away or facing
away -8 to -12 dB)."""


def drr_bands() -> tuple[str, ...]:
    hi, lo = DRR_BANDS_DB
    return f">= {hi:g} dB", f"{lo:g} to {hi:g} dB", f"< {lo:g} dB"


def drr_band(drr_db: float) -> str | None:
    """The DRR_BANDS_DB band of a DRR (dB; +inf: no reverberation at all), None when unknown (NaN)."""
    if np.isnan(drr_db):
        return None
    hi, lo = DRR_BANDS_DB
    names = drr_bands()
    return names[0] if drr_db >= hi else names[1] if drr_db >= lo else names[2]


def breakdown(items: list[Item], seed: int = 0) -> dict[str, Any]:
    """{task: {"all": row, factor: {level: row}}}, row = {"n", "value", "ci95"}; value is the
    median great-circle error (A/B, degrees) or the accuracy (D/E, percent)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for task in sorted({i.task for i in items}):
        mine = [i for i in items if i.task == task]

        def row(group: list[Item]) -> dict[str, Any]:
            values, stat = _statistic(group)
            return {"n": len(group), "value": float(stat(values)), "ci95": list(bootstrap_ci(values, stat, rng))}

        table: dict[str, Any] = {"all": row(mine)}
        for factor in FACTORS:
            levels = sorted({i.factors[factor] for i in mine})
            table[factor] = {lv: row([i for i in mine if i.factors[factor] == lv]) for lv in levels}
        out[task] = table
    return out


def format_breakdown(table: dict[str, Any], title: str = "") -> str:
    """One text table: task, factor, level, n, value [95 % interval]."""
    lines = [title] if title else []
    lines.append(f"{'task':<5}{'factor':<12}{'level':<14}{'n':>5}  value [95% CI]")
    for task, t in table.items():
        unit = "°" if task in "AB" else "%"
        a = t["all"]
        lines.append(f"{task:<5}{'all':<12}{'':<14}{a['n']:>5}  {a['value']:.1f}{unit} "
                     f"[{a['ci95'][0]:.1f}, {a['ci95'][1]:.1f}]")
        for factor in FACTORS:
            if len(t[factor]) < 2:
                continue
            for level, r in t[factor].items():
                lines.append(f"{'':<5}{factor:<12}{level:<14}{r['n']:>5}  {r['value']:.1f}{unit} "
                             f"[{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]")
    return "\n".join(lines)


def error_vs_snr_plot(curves: dict[str, dict[str, dict[str, Any]]], path: str | Path,
                      separate: bool = False) -> None:
    """Side-by-side panels per task: statistic against SNR (dB; 'clean' drawn at the right
    end) for each method, with the 95 % intervals as error bars. curves[method][task] maps an
    SNR label ('clean' or a number of dB) to a breakdown row. `separate`: sound-only methods
    (names with "audio") in the top row, depth-snapped ones below, so neither is read as the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for c in curves.values() for t in c})
    groups = [list(curves)]
    if separate:
        groups = [g for g in ([m for m in curves if "audio" in m], [m for m in curves if "audio" not in m]) if g]
    fig, axes = plt.subplots(len(groups), len(tasks), figsize=(4.2 * len(tasks), 3.6 * len(groups)), squeeze=False)
    for (ax, task), names in ((p, g) for row, g in zip(axes, groups) for p in zip(row, tasks)):
        for method, per_task in ((m, curves[m]) for m in names):
            pts = per_task.get(task, {})
            if not pts:
                continue  # no legend entry for a method without points here
            xs = sorted((float(k) for k in pts if k != "clean"))
            clean_x = (max(xs) + 10.0) if xs else 40.0
            keys = [f"{x:g}" for x in xs] + (["clean"] if "clean" in pts else [])
            x = xs + ([clean_x] if "clean" in pts else [])
            y = np.array([pts[k]["value"] for k in keys])
            lo = np.array([pts[k]["ci95"][0] for k in keys])
            hi = np.array([pts[k]["ci95"][1] for k in keys])
            # sound-only methods dashed, so they are not read as the depth-snapped ones
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=method,
                        linestyle="--" if "audio" in method else "-")
            if "clean" in pts:
                ax.set_xticks(x, [f"{v:g}" for v in xs] + ["clean"])
        kind = "" if not separate else " (sound only)" if "audio" in names[0] else " (depth-snapped)"
        ax.set(title=f"Task {task}{kind}", xlabel="diffuse-noise SNR (dB)",
               ylabel="median great-circle error (°)" if task in "AB" else "accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(table: dict[str, Any], out_dir: str | Path, title: str = "") -> None:
    """robustness.json and robustness.md in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(table, indent=1))
    (out / "robustness.md").write_text("```\n" + format_breakdown(table, title) + "\n```\n")
