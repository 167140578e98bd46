"""Run a method over a dataset split and report the paper's Table-2 figures.

A method answers in the official strings; answers are parsed leniently and scored with the
official metrics, so the classical baseline and the model are judged the same way. A sample
the method fails on counts as unparsed (worst case); a sample whose files cannot be read
(missing, truncated, malformed) is skipped, and the report lists it with the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core import metrics
from jaeger_ros.data.dataset import ManifestEntry, Sample, SampleError, find_manifests, load_sample, \
    read_manifest, resolve_sample_path
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
    """Report {"method", "data", "split", "tasks": {letter: summary}, "skipped": [...]} (see
    metrics.summarise). Entries whose manifest or sample files cannot be read are skipped and
    listed ({"task", "path", "error"}, the error naming the file); ValueError when nothing
    could be scored."""
    from tqdm import tqdm

    wanted = (set(tasks) if tasks else set(method.tasks)) & set(method.tasks)
    entries, skipped = _entries(data_dir, split, wanted)
    if not entries and not skipped:
        raise ValueError(f"no entries for tasks {sorted(wanted)} in {data_dir}/{split}")
    items: dict[str, _TaskItems] = {}
    readable: dict[tuple[Path, str], str | None] = {}
    for letter, entry, folder in tqdm(entries, desc=f"eval {method.name}", unit="item", disable=not progress):
        problem = _unreadable(folder, letter, readable)
        if problem is not None:
            skipped.append({"task": letter, "path": entry.path, "error": problem})
            continue
        it = items.setdefault(letter, _TaskItems())
        try:
            prediction: str | None = method.answer(load_sample(folder), entry)
        except (ValueError, RuntimeError) as e:  # reported, counted as unparsed
            prediction = None
            it.errors.append(f"{entry.path}: {e}")
        it.predictions.append(prediction)
        it.truths.append(entry.text)
        it.paths.append(entry.path)
    if not items:
        first = skipped[0]["error"] if skipped else "no entries"
        raise ValueError(f"nothing could be scored in {data_dir}/{split}: {len(skipped)} entries skipped "
                         f"(first: {first})")
    report: dict[str, Any] = {"method": method.name, "data": str(data_dir), "split": split, "tasks": {},
                              "skipped": skipped}
    for letter in sorted(items):
        it = items[letter]
        summary = metrics.summarise(letter, it.predictions, it.truths)
        summary["n_failed"] = len(it.errors)
        report["tasks"][letter] = summary
    if out_dir is not None:
        _write_report(report, items, Path(out_dir))
    return report


def _entries(data_dir: str | Path, split: str, letters: set[str]
             ) -> tuple[list[tuple[str, ManifestEntry, Path]], list[dict[str, str]]]:
    """(letter, entry, folder) of every readable manifest, and a skip record per unreadable one."""
    entries, skipped = [], []
    for letter, path in find_manifests(data_dir, split).items():
        if letter not in letters:
            continue
        try:
            manifest = read_manifest(path)
        except ValueError as e:
            skipped.append({"task": letter, "path": str(path), "error": str(e)})
            continue
        entries += [(letter, e, resolve_sample_path(data_dir, e)) for e in manifest]
    return entries, skipped


def _unreadable(folder: Path, letter: str, seen: dict[tuple[Path, str], str | None]) -> str | None:
    """Why the files a task needs in `folder` cannot be read (None when they can); each folder
    and modality is read once."""
    needs = [m for m, tasks in (("audio", "ABDE"), ("vision", "CDE")) if letter in tasks]
    for modality in needs:
        key = (folder, modality)
        if key not in seen:
            try:
                sample = load_sample(folder)
                if modality == "audio":
                    sample.foa()
                else:
                    depth, intr = sample.depth(), sample.intrinsics
                    sample.rgb()
                    sample.boxes()
                    if depth.shape != (intr.height, intr.width):
                        raise SampleError(folder, f"depth {depth.shape[1]}x{depth.shape[0]} does not match the "
                                                  f"intrinsics' {intr.width}x{intr.height}")
                seen[key] = None
            except SampleError as e:
                seen[key] = str(e)
        if seen[key] is not None:
            return seen[key]
    return None


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
    skipped = report.get("skipped", [])
    if skipped:
        lines += [f"Skipped: {len(skipped)} entries whose files could not be read (not scored):", ""]
        lines += [f"- task {s['task']}, {s['path']}: {s['error']}" for s in skipped] + [""]
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
        fig = azimuth_polar_figure(letter, ta, pa, len(it.predictions) - len(pairs))
        fig.savefig(out / f"azimuth_polar_{letter}.png", dpi=100, bbox_inches="tight")
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


def azimuth_polar_figure(letter: str, true_az: np.ndarray, pred_az: np.ndarray, n_unparsed: int = 0) -> Any:
    """Predicted vs true azimuth in the README's convention: 0 = forward at the top, positive
    to the left (counter-clockwise), -180..180. Each sample gets its own ring (sorted by true
    azimuth) and an arc along it from truth to prediction, so the arc length is the error."""
    import matplotlib.pyplot as plt

    order = np.argsort(true_az)
    ta, pa = true_az[order], pred_az[order]
    radius = np.arange(1, len(ta) + 1)
    fig = plt.figure(figsize=(6.4, 7.0))
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise: positive azimuth is to the left
    for r, t, p in zip(radius, ta, pa):
        err = (p - t + 180.0) % 360.0 - 180.0  # signed, shortest way round
        arc = np.radians(t + np.linspace(0.0, err, 32))
        ax.plot(arc, np.full_like(arc, r), color="0.55", lw=1.0)
    ax.plot([], [], color="0.55", lw=1.0, label="error (arc from true to predicted)")
    ax.scatter(np.radians(ta), radius, s=18, color="tab:green", label="true azimuth", zorder=3)
    ax.scatter(np.radians(pa), radius, s=24, color="tab:red", marker="x", label="predicted azimuth", zorder=4)
    ticks = np.arange(-150, 181, 30)
    ax.set_thetagrids(np.mod(ticks, 360), [f"{t:+d}°" if t not in (0, 180) else f"{t}°" for t in ticks])
    ax.set_ylim(0.5, len(ta) + 0.5)
    ax.set_rorigin(-0.25 * len(ta))  # a hole in the middle keeps the inner rings readable
    ax.set_rlabel_position(-112.5)
    ax.set_yticks(radius if len(ta) <= 12 else np.linspace(1, len(ta), 6).round().astype(int))
    ax.set_xlabel("angle: azimuth (degrees), 0 = forward, + = left, - = right\n"
                  "radius: sample number, sorted by true azimuth", labelpad=12)
    title = f"Task {letter}: azimuth, predicted vs true (n = {len(ta)})"
    if n_unparsed:
        title += f"\n{n_unparsed} unparsed answers not shown"
    ax.set_title(title, pad=16)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, fontsize=8, frameon=False)
    return fig
