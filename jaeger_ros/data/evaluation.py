"""Run a method over a dataset split and report the paper's Table-2 figures.

A method answers in the official strings; answers are parsed leniently and scored with the
official metrics, so the classical baseline and the model are judged the same way. A sample
the method fails on counts as unparsed (worst case); a sample whose files cannot be read
(missing, truncated, malformed) is skipped, and the report lists it with the reason.

Beside our figures, report.json carries the official headline (``official``): DoA as the
great-circle mean and median over the parsed outputs with the parse failures counted, as the
official merge script computes it; grounding and matching as ours (which follow the official
scorers), E also by the target's gender. predictions.jsonl holds every scored item (path,
task, prompt, raw text, parsed values, target), and official/ the same items as the shard
files the official merge scripts read (eval_results_rank_0.json, av_results_rank_0.json,
visual_results_rank_0.json; grounding predictions in integer centimetres, as their scorer
divides by 100).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core import metrics
from jaeger_ros.data.dataset import STARSS23, TASK_LETTERS, ManifestEntry, Sample, find_manifests, load_sample, \
    read_manifest, resolve_sample_path, sample_problem
from jaeger_ros.core.geometry import box_iou_3d, great_circle_deg, wrapped_azimuth_error

# The DoA columns the paper's figures stand beside are the official headline, the great-circle
# mean over parsed outputs (gc mean*); its median and the parse failures follow it.
_COLUMNS = (("DoA single gc mean*", "A", "gc_mean_parsed", "{:.2f}°"), ("median*", "A", "gc_median_parsed", "{:.2f}°"),
            ("unparsed", "A", "n_unparsed", "{:d}"),
            ("DoA overlap gc mean*", "B", "gc_mean_parsed", "{:.2f}°"), ("median*", "B", "gc_median_parsed", "{:.2f}°"),
            ("unparsed", "B", "n_unparsed", "{:d}"),
            ("3D IoU", "C", "iou_mean", "{:.2f}"), ("offset (m)", "C", "offset_mean", "{:.2f}"),
            ("match 1-spk %", "D", "accuracy", "{:.1f}"), ("match 2-spk %", "E", "accuracy", "{:.1f}"))
_OFFICIAL_DOA_TASK = {"A": "spatial_doa", "B": "multi_spatial_doa", STARSS23: "starss23"}


class Method(Protocol):
    """Answers manifest entries with official answer text. A method that generates text may also
    set `last_raw_text` to its raw generation for the last answer (before it was reduced to the
    official answer), which predictions.jsonl then records as `raw_text`, and `last_scores`
    (e.g. confidence, token_probability), which it records as they are."""

    name: str
    tasks: frozenset[str]

    def answer(self, sample: Sample, entry: ManifestEntry) -> str: ...


@dataclass
class _TaskItems:
    predictions: list[str | None] = field(default_factory=list)
    truths: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    entries: list[ManifestEntry] = field(default_factory=list)
    raw_texts: list[str | None] = field(default_factory=list)  # generations, where the method gives them
    scores: list[dict[str, float]] = field(default_factory=list)  # the method's last_scores per answer
    errors: list[str] = field(default_factory=list)


def method_task(key: str) -> str:
    """The task a method answers for a manifest key: STARSS23 asks task A's question."""
    return "A" if key == STARSS23 else key


def evaluate(method: Method, data_dir: str | Path, split: str = "test", tasks: Iterable[str] | None = None,
             out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Report {"method", "data", "split", "tasks": {key: summary}, "official": {key: headline},
    "skipped": [...]} (see metrics.summarise and the module docstring). `tasks`: manifest keys,
    letters A-E or "starss23" (default: all the method answers, STARSS23 with A). Entries whose
    manifest or sample files cannot be read are skipped and listed ({"task", "path", "error"},
    the error naming the file); ValueError when nothing could be scored."""
    from tqdm import tqdm

    answered = set(method.tasks) | ({STARSS23} if "A" in method.tasks else set())
    wanted = (set(tasks) if tasks else answered) & answered
    entries, skipped = _entries(data_dir, split, wanted)
    if not entries and not skipped:
        raise ValueError(f"no entries for tasks {sorted(wanted)} in {data_dir}/{split}")
    items: dict[str, _TaskItems] = {}
    readable: dict[tuple[Path, str], str | None] = {}
    for key, entry, folder in tqdm(entries, desc=f"eval {method.name}", unit="item", disable=not progress):
        problem = _unreadable(folder, method_task(key), readable)
        if problem is not None:
            skipped.append({"task": key, "path": entry.path, "error": problem})
            continue
        it = items.setdefault(key, _TaskItems())
        try:
            prediction: str | None = method.answer(load_sample(folder), entry)
        except (ValueError, RuntimeError) as e:  # reported, counted as unparsed
            prediction = None
            it.errors.append(f"{entry.path}: {e}")
        it.predictions.append(prediction)
        it.raw_texts.append(getattr(method, "last_raw_text", None) if prediction is not None else None)
        it.scores.append(dict(getattr(method, "last_scores", {})) if prediction is not None else {})
        it.truths.append(entry.text)
        it.paths.append(entry.path)
        it.entries.append(entry)
    if not items:
        first = skipped[0]["error"] if skipped else "no entries"
        raise ValueError(f"nothing could be scored in {data_dir}/{split}: {len(skipped)} entries skipped "
                         f"(first: {first})")
    report: dict[str, Any] = {"method": method.name, "data": str(data_dir), "split": split, "tasks": {},
                              "official": {}, "skipped": skipped}
    for key in sorted(items):
        it = items[key]
        summary = metrics.summarise(key, it.predictions, it.truths)
        summary["n_failed"] = len(it.errors)
        if key == "E":
            summary["by_gender"] = {
                g: metrics.summarise(key, [p for p, e in zip(it.predictions, it.entries) if e.target_gender == g],
                                     [t for t, e in zip(it.truths, it.entries) if e.target_gender == g])
                for g in answers.GENDERS if any(e.target_gender == g for e in it.entries)}
        report["tasks"][key] = summary
        report["official"][key] = official_headline(key, summary)
    if out_dir is not None:
        _write_report(report, items, Path(out_dir))
    return report


def official_headline(key: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The figure the official scorers report for a task, from our summary: DoA great-circle
    mean/median over parsed outputs + parse failures; grounding IoU and offset; accuracy."""
    if answers.ANSWER_KIND[answers.task_key(key)] == "doa":
        return {"gc_mean": summary["gc_mean_parsed"], "gc_median": summary["gc_median_parsed"],
                "n_parsed": summary["n"] - summary["n_unparsed"], "n_unparsed": summary["n_unparsed"]}
    if key == "C":
        return {k: summary[k] for k in ("iou_mean", "iou_median", "offset_mean", "offset_median", "n", "n_missing")}
    out = {"accuracy": summary["accuracy"], "n": summary["n"]}
    if "by_gender" in summary:
        out["by_gender"] = {g: s["accuracy"] for g, s in summary["by_gender"].items()}
    return out


def _entries(data_dir: str | Path, split: str, keys: set[str]
             ) -> tuple[list[tuple[str, ManifestEntry, Path]], list[dict[str, str]]]:
    """(manifest key, entry, folder) of every readable manifest, and a skip record per unreadable one."""
    entries, skipped = [], []
    for key, path in find_manifests(data_dir, split).items():
        if key not in keys:
            continue
        try:
            manifest = read_manifest(path)
        except ValueError as e:
            skipped.append({"task": key, "path": str(path), "error": str(e)})
            continue
        entries += [(key, e, resolve_sample_path(data_dir, e)) for e in manifest]
    return entries, skipped


def _unreadable(folder: Path, letter: str, seen: dict[tuple[Path, str], str | None]) -> str | None:
    """Why the files task `letter` needs in `folder` cannot be read (None when they can); each
    folder and modality is read once."""
    needs = [(m, probe) for m, tasks, probe in (("audio", "ABDE", "A"), ("vision", "CDE", "C")) if letter in tasks]
    for modality, probe in needs:
        key = (folder, modality)
        if key not in seen:
            problem = sample_problem(folder, probe)
            seen[key] = None if problem is None else str(problem)
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
    note = ("* official headline: great-circle error over parsed answers (unparsed ones dropped, counted "
            "in 'unparsed'); the paper's DoA figures stand beside the mean")
    return "\n".join(lines + [f"{r['method']}: {c}" for r, c in zip(reports, counts)] + [note])


def prediction_records(key: str, it: _TaskItems) -> list[dict[str, Any]]:
    """One predictions.jsonl record per scored item of a task: ours (path, task, prompt,
    raw_text, parsed, target) plus the fields the official merge/scoring scripts read."""
    records = []
    kind = answers.ANSWER_KIND[answers.task_key(key)]
    generations = it.raw_texts if len(it.raw_texts) == len(it.predictions) else [None] * len(it.predictions)
    scores = it.scores if len(it.scores) == len(it.predictions) else [{}] * len(it.predictions)
    for raw, generated, score, truth, entry in zip(it.predictions, generations, scores, it.truths, it.entries):
        gender = entry.target_gender
        prompt = answers.build_prompt(key, 0, gender=gender, obj_category=entry.obj_category or ["speaker"])
        parsed = answers.extract_answer(key, raw)
        target = answers.parse_answer(key, truth)
        rec: dict[str, Any] = {"path": entry.path, "task": entry.task, "key": key, "prompt": prompt,
                               "raw_text": generated if generated is not None else raw, "answer": raw,
                               "parsed": None, "target": truth, **score}
        if kind == "doa":
            rec["parsed"] = None if parsed is None else {"azimuth": parsed.azimuth, "elevation": parsed.elevation}
            rec.update(gt_az=target.azimuth, gt_el=target.elevation,
                       pred_az=None if parsed is None else parsed.azimuth,
                       pred_el=None if parsed is None else parsed.elevation,
                       angular_error=None if parsed is None else float(great_circle_deg(
                           parsed.azimuth, parsed.elevation, target.azimuth, target.elevation)),
                       gender=entry.gender, pred_text=raw or "", gt_text=truth)
        elif kind == "boxes":
            rec["parsed"] = None if parsed is None else [
                {"bbox_id": int(b.extra.get("bbox_id", i)), "category": b.label,
                 "center": [float(v) for v in b.center], "size": [float(v) for v in b.size]}
                for i, b in enumerate(parsed)]
            # their scorer divides predicted numbers by 100: centimetres (rounded, so a
            # 2-decimal metre value keeps its digits), ids as parsed
            rec.update(text=truth, obj_category=entry.obj_category,
                       pred_text="" if parsed is None else "\n".join(
                           f"bbox_{int(b.extra.get('bbox_id', i))}=Bbox({b.label}, "
                           + ", ".join(str(int(round(v * 100))) for v in (*b.center, *b.size)) + ")"
                           for i, b in enumerate(parsed)))
        else:
            rec["parsed"] = parsed
            rec.update(pred_text=raw or "", gt_text=truth, gender=entry.gender, num_speakers=entry.num_speakers,
                       target_label=entry.target_label)
        records.append(rec)
    return records


def _write_predictions(report: dict[str, Any], items: dict[str, _TaskItems], out: Path) -> None:
    """predictions.jsonl and the official shard files (module docstring)."""
    per_key = {key: prediction_records(key, it) for key, it in items.items()}
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for key in sorted(per_key):
            for rec in per_key[key]:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    official = out / "official"
    official.mkdir(exist_ok=True)
    doa = {_OFFICIAL_DOA_TASK[k]: v for k, v in per_key.items() if k in _OFFICIAL_DOA_TASK}
    (official / "eval_results_rank_0.json").write_text(json.dumps(
        {"config": {"method": report["method"], "data": report["data"], "split": report["split"]},
         "details": doa}, ensure_ascii=False, indent=1))
    (official / "av_results_rank_0.json").write_text(json.dumps(
        [r for k in "DE" for r in per_key.get(k, [])], ensure_ascii=False, indent=1))
    (official / "visual_results_rank_0.json").write_text(json.dumps(
        per_key.get("C", []), ensure_ascii=False, indent=1))


def _write_report(report: dict[str, Any], items: dict[str, _TaskItems], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    _write_predictions(report, items, out)
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
