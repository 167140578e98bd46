"""Run a method over a dataset split and report the paper's Table-2 figures.

A method answers in the official strings; answers are parsed leniently and scored with the
official metrics, so the classical baseline and the model are judged the same way. A sample
the method fails on counts as unparsed (worst case), never as skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core import metrics
from jaeger_ros.data.dataset import ManifestEntry, Sample, iter_entries, load_sample
from jaeger_ros.core.geometry import box_iou_3d, wrapped_azimuth_error

_COLUMNS = (("DoA single az", "A", "az_median", "{:.2f}°"), ("el", "A", "el_median", "{:.2f}°"),
            ("gc", "A", "gc_median", "{:.2f}°"), ("DoA overlap az", "B", "az_median", "{:.2f}°"),
            ("el", "B", "el_median", "{:.2f}°"), ("gc", "B", "gc_median", "{:.2f}°"),
            ("3D IoU", "C", "iou_mean", "{:.2f}"), ("offset (m)", "C", "offset_mean", "{:.2f}"),
            ("match 1-spk %", "D", "accuracy", "{:.1f}"), ("match 2-spk %", "E", "accuracy", "{:.1f}"))


class Method(Protocol):
    name: str
    tasks: frozenset[str]

    def answer(self, sample: Sample, entry: ManifestEntry) -> str: ...


@dataclass
class _TaskItems:
    predictions: list[str | None] = field(default_factory=list)
    truths: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def evaluate(method: Method, data_dir: str | Path, split: str = "test", tasks: Iterable[str] | None = None,
             out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Report {"method", "data", "split", "tasks": {letter: summary}} (see metrics.summarise)."""
    from tqdm import tqdm

    wanted = set(tasks) if tasks else set(method.tasks)
    entries = [(letter, e, f) for letter, e, f in iter_entries(data_dir, split, wanted & set(method.tasks))]
    if not entries:
        raise ValueError(f"no entries for tasks {sorted(wanted)} in {data_dir}/{split}")
    items: dict[str, _TaskItems] = {}
    samples: dict[Path, Sample] = {}
    for letter, entry, folder in tqdm(entries, desc=f"eval {method.name}", unit="item", disable=not progress):
        it = items.setdefault(letter, _TaskItems())
        sample = samples.get(folder) or load_sample(folder)
        samples = {folder: sample}  # keep one: entries of a folder are adjacent in a manifest
        try:
            prediction: str | None = method.answer(sample, entry)
        except (ValueError, RuntimeError) as e:  # reported, counted as unparsed
            prediction = None
            it.errors.append(f"{entry.path}: {e}")
        it.predictions.append(prediction)
        it.truths.append(entry.text)
        it.paths.append(entry.path)
    report: dict[str, Any] = {"method": method.name, "data": str(data_dir), "split": split, "tasks": {}}
    for letter in sorted(items):
        it = items[letter]
        summary = metrics.summarise(letter, it.predictions, it.truths)
        summary["n_failed"] = len(it.errors)
        report["tasks"][letter] = summary
    if out_dir is not None:
        _write_report(report, items, Path(out_dir))
    return report


def _fmt(value: Any, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def format_table(reports: list[dict[str, Any]], with_paper: bool = True) -> str:
    """Text table with the Table-2 columns, one row per report (and the paper's rows)."""
    header = ["method"] + [c[0] for c in _COLUMNS]
    rows = [[r["method"]] + [_fmt(r["tasks"].get(t, {}).get(k), p) for _, t, k, p in _COLUMNS]
            for r in reports]
    if with_paper:
        for name, row in metrics.PAPER_TABLE2.items():
            values: dict[str, dict[str, Any]] = {}
            for column, (t, k) in metrics.PAPER_TABLE2_KEYS.items():
                values.setdefault(t, {})[k] = row.get(column)
            rows.append([f"paper: {name}"] + [_fmt(values.get(t, {}).get(k), p) for _, t, k, p in _COLUMNS])
    counts = ["n: " + ", ".join(f"{t}={r['tasks'][t]['n']}" for t in sorted(r["tasks"])) for r in reports]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"{r['method']}: {c}" for r, c in zip(reports, counts)])


def _write_report(report: dict[str, Any], items: dict[str, _TaskItems], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    lines = [f"# Evaluation: {report['method']} on {report['data']} ({report['split']})", "",
             "```", format_table([report]), "```", ""]
    for letter, it in items.items():
        if it.errors:
            lines += [f"Task {letter}: {len(it.errors)} samples failed (counted as unparsed):", ""]
            lines += [f"- {e}" for e in it.errors[:20]] + [""]
    (out / "report.md").write_text("\n".join(lines))
    _plots(items, out)


def _plots(items: dict[str, _TaskItems], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for letter in [t for t in "AB" if t in items]:
        it = items[letter]
        pairs = [(answers.extract_answer(letter, p), answers.parse_doa(t))
                 for p, t in zip(it.predictions, it.truths)]
        pairs = [(p, t) for p, t in pairs if p is not None]
        if not pairs:
            continue
        pa = np.array([p.azimuth for p, _ in pairs])
        ta = np.array([t.azimuth for _, t in pairs])
        err_az = wrapped_azimuth_error(pa, ta)
        err_el = np.abs(np.array([p.elevation - t.elevation for p, t in pairs]))
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        bins = np.linspace(0, max(10.0, float(np.percentile(np.r_[err_az, err_el], 98))), 40)
        ax[0].hist(err_az, bins=bins, color="tab:blue")
        ax[0].set(title=f"Task {letter}: azimuth error", xlabel="degrees", ylabel="samples")
        ax[1].hist(err_el, bins=bins, color="tab:orange")
        ax[1].set(title=f"Task {letter}: elevation error", xlabel="degrees")
        fig.tight_layout()
        fig.savefig(out / f"doa_errors_{letter}.png", dpi=100)
        plt.close(fig)
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_subplot(projection="polar")
        ax.set_theta_zero_location("N")  # azimuth 0 = forward, positive to the left
        r = np.linspace(0.6, 1.0, len(ta))
        ax.scatter(np.radians(ta), r, s=12, label="true", color="tab:green")
        ax.scatter(np.radians(pa), r, s=12, label="predicted", color="tab:red", marker="x")
        ax.set_rticks([])
        ax.set_title(f"Task {letter}: azimuth, predicted vs true")
        ax.legend(loc="lower right")
        fig.savefig(out / f"azimuth_polar_{letter}.png", dpi=100)
        plt.close(fig)
    if "C" in items:
        it = items["C"]
        ious = []
        for p, t in zip(it.predictions, it.truths):
            pred = answers.extract_answer("C", p) if p else None
            for k, box in enumerate(answers.parse_boxes(t)):
                ious.append(box_iou_3d(pred[k], box) if pred and k < len(pred) else 0.0)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.hist(ious, bins=np.linspace(0, 1, 21), color="tab:purple")
        ax.set(title="Task C: 3D IoU per box (missing = 0)", xlabel="IoU", ylabel="boxes")
        fig.tight_layout()
        fig.savefig(out / "grounding_iou.png", dpi=100)
        plt.close(fig)
    labels = list(answers.MATCH_LABELS)
    for letter in [t for t in "DE" if t in items]:
        it = items[letter]
        conf = np.zeros((len(labels), len(labels) + 1), int)
        for p, t in zip(it.predictions, it.truths):
            col = labels.index(p) if p in labels else len(labels)
            conf[labels.index(t), col] += 1
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.imshow(conf, cmap="Blues")
        for (i, j), v in np.ndenumerate(conf):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(xticks=range(len(labels) + 1), xticklabels=labels + ["none"], yticks=range(len(labels)),
               yticklabels=labels, xlabel="predicted", ylabel="true", title=f"Task {letter}: matching")
        fig.tight_layout()
        fig.savefig(out / f"matching_confusion_{letter}.png", dpi=100)
        plt.close(fig)
