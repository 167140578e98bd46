"""Run a method over a dataset split and report the paper's Table-2 figures.

A method answers in the official strings; answers are parsed by the lenient parser (ours) or
the official one (the authors' scorers, answers.official_doa/official_match) and scored with
the official metrics, so the classical baseline and the model are judged the same way. A
sample the method fails on counts as unparsed (worst case). A sample whose files cannot be
read (missing, truncated, malformed) or a manifest entry that is malformed (a field missing,
an unknown task) is skipped, and the report lists it with the reason; the rest of its task
is scored.

Beside our figures, report.json carries the official headline (``official``): DoA as the
great-circle mean and median over the parsed outputs with the parse failures counted, as the
official merge script computes it; grounding and matching as ours (which follow the official
scorers), E also by the target's gender. predictions.jsonl holds every scored item (path,
task, prompt, raw text, parsed values, target), and official/ the same items as the shard
files the official merge scripts read (eval_results_rank_R.json, av_results_rank_R.json,
visual_results_rank_R.json). Every record keeps the raw generation as ``raw_output`` (for a
method that does not generate, e.g. classical, the answer string it produced), the raw text
as ``pred_text`` and the manifest's ``category`` ("" where the manifest has none, as the
authors' default); grounding ``pred_text`` of a method that does not generate is its boxes in
integer centimetres, as the authors' scorer divides by 100.

Sharding, as the authors' inference: each manifest's distinct sample paths are sorted and
rank R of N takes ``sorted(paths)[R::N]`` (all entries of a path go to the same rank). A
sharded run (N > 1) writes only its rank's files (official/*_rank_R.json,
predictions_rank_R.jsonl, shard_rank_R.json); :func:`merge` reads all ranks' shard files and
writes the report a single-process run writes (report.json, report.md, predictions.jsonl,
plots), identical to it. Items are scored in (path, manifest position) order either way.

Batching (``batch_size`` > 1, a method with ``answer_batch``): consecutive items of one
manifest are answered together (the model: left padding, attention mask, greedy), in the same
order; a batch the method fails on is answered again one item at a time, so the failure is
recorded against its own item.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core import metrics
from jaeger_ros.data.dataset import STARSS23, ManifestEntry, Sample, find_manifests, load_sample, \
    resolve_sample_path, sample_problem
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
SHARD_FORMAT = "jaeger_ros.eval_shard/1"


class Method(Protocol):
    """Answers manifest entries with official answer text. A method that generates text may also
    set `last_raw_text` to its raw generation for the last answer (before it was reduced to the
    official answer), which predictions.jsonl then records as `raw_text`, and `last_scores`
    (e.g. confidence, token_probability), which it records as they are."""

    name: str
    tasks: frozenset[str]

    def answer(self, sample: Sample, entry: ManifestEntry) -> str: ...


class BatchMethod(Method, Protocol):
    """A method that answers several entries at once (`evaluate(batch_size=...)`); after
    `answer_batch` it sets `last_raw_texts` and `last_scores_list`, one per answer."""

    last_raw_texts: list[str | None]
    last_scores_list: list[dict[str, float]]

    def answer_batch(self, pairs: list[tuple[Sample, ManifestEntry]]) -> list[str]: ...


_Answer = tuple[str | None, str | None, dict[str, float], str | None]
"""(prediction, raw generation, scores, failure) of one item."""


def _answer_one(method: Method, sample: Sample, entry: ManifestEntry) -> _Answer:
    try:
        prediction = method.answer(sample, entry)
    except (ValueError, RuntimeError) as e:  # reported, counted as unparsed
        return None, None, {}, f"{entry.path}: {e}"
    return prediction, getattr(method, "last_raw_text", None), dict(getattr(method, "last_scores", {})), None


def _answer_group(method: BatchMethod, group: list[tuple[Sample, ManifestEntry]]) -> list[_Answer]:
    if len(group) == 1:
        return [_answer_one(method, *group[0])]
    try:
        predictions = method.answer_batch(group)
    except (ValueError, RuntimeError):  # find the item that failed
        return [_answer_one(method, *pair) for pair in group]
    return [(p, raw, dict(sc), None) for p, raw, sc in zip(predictions, method.last_raw_texts,
                                                           method.last_scores_list)]


@dataclass
class _TaskItems:
    predictions: list[str | None] = field(default_factory=list)
    truths: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    entries: list[ManifestEntry] = field(default_factory=list)
    raw_texts: list[str | None] = field(default_factory=list)  # generations, where the method gives them
    scores: list[dict[str, float]] = field(default_factory=list)  # the method's last_scores per answer
    failures: list[str | None] = field(default_factory=list)  # why the method failed on an item, per item
    indices: list[int] = field(default_factory=list)  # manifest positions: the order after a merge

    @property
    def errors(self) -> list[str]:
        return [f for f in self.failures if f]

    def add(self, entry: ManifestEntry, index: int, prediction: str | None, raw: str | None,
            scores: dict[str, float], failure: str | None) -> None:
        self.predictions.append(prediction)
        self.raw_texts.append(raw)
        self.scores.append(scores)
        self.failures.append(failure)
        self.truths.append(entry.text)
        self.paths.append(entry.path)
        self.entries.append(entry)
        self.indices.append(index)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"index": i, "entry": e.__dict__, "prediction": p, "raw": r, "scores": sc, "failure": f}
                for i, e, p, r, sc, f in zip(self.indices, self.entries, self.predictions, self.raw_texts,
                                             self.scores, self.failures)]


def method_task(key: str) -> str:
    """The task a method answers for a manifest key: STARSS23 asks task A's question."""
    return "A" if key == STARSS23 else key


def launcher_shard() -> tuple[int, int]:
    """(rank, world size) as torchrun and accelerate launch set them (RANK, WORLD_SIZE); (0, 1)
    outside a launcher."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
                         "must be integers") from None
    return check_shard(rank, world)


def check_shard(rank: int, world: int) -> tuple[int, int]:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard {rank}/{world}: need 0 <= rank < world size")
    return rank, world


def shard_entries(entries: list[tuple[str, int, ManifestEntry, Path]], rank: int, world: int
                  ) -> list[tuple[str, int, ManifestEntry, Path]]:
    """This rank's entries: per manifest, the distinct paths sorted, ``[rank::world]`` of them
    (the authors' rule); entries in (path, manifest position) order."""
    out = []
    for key in dict.fromkeys(k for k, *_ in entries):
        mine = [e for e in entries if e[0] == key]
        paths = sorted({e[2].path for e in mine})[rank::world]
        keep = set(paths)
        out += sorted((e for e in mine if e[2].path in keep), key=lambda e: (e[2].path, e[1]))
    return out


def evaluate(method: Method, data_dir: str | Path, split: str = "test", tasks: Iterable[str] | None = None,
             out_dir: str | Path | None = None, progress: bool = True, shard: tuple[int, int] = (0, 1),
             parser: str = "lenient", batch_size: int = 1) -> dict[str, Any]:
    """Report {"method", "data", "split", "parser", "tasks": {key: summary}, "official": {key:
    headline}, "skipped": [...]} (see metrics.summarise and the module docstring). `tasks`:
    manifest keys, letters A-E or "starss23" (default: all the method answers, STARSS23 with A).
    Malformed manifests and entries, and entries whose sample files cannot be read, are skipped
    and listed ({"task", "path", "error"}, plus "entry" = position for a malformed entry); the
    error names the file. `shard` = (rank, world size): this rank's part only, written as shard
    files for :func:`merge` (rank 0 lists the malformed manifests and entries). `parser`:
    "lenient" or "official" (answers.PARSERS). `batch_size`: items answered together by a
    method with `answer_batch` (the answers equal one-at-a-time answers; see the module
    docstring). ValueError when nothing could be scored (single process)."""
    from tqdm import tqdm

    rank, world = check_shard(*shard)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    batch_size = batch_size if hasattr(method, "answer_batch") else 1
    if parser not in answers.PARSERS:
        raise ValueError(f"parser must be one of {answers.PARSERS}, got {parser!r}")
    answered = set(method.tasks) | ({STARSS23} if "A" in method.tasks else set())
    wanted = (set(tasks) if tasks else answered) & answered
    entries, skipped = _entries(data_dir, split, wanted)
    if not entries and not skipped:
        raise ValueError(f"no entries for tasks {sorted(wanted)} in {data_dir}/{split}")
    entries = shard_entries(entries, rank, world)
    if rank != 0:
        skipped = []
    items: dict[str, _TaskItems] = {}
    readable: dict[tuple[Path, str], str | None] = {}
    desc = f"eval {method.name}" + (f" rank {rank}/{world}" if world > 1 else "")
    group: list[tuple[str, int, ManifestEntry, Sample]] = []  # readable items of one manifest, not yet answered

    def answer_group() -> None:
        pairs = [(sample, entry) for _, _, entry, sample in group]
        answered = _answer_group(method, pairs)
        for (key, index, entry, _), (prediction, raw, scores, failure) in zip(group, answered):
            items.setdefault(key, _TaskItems()).add(entry, index, prediction, raw if prediction is not None else None,
                                                    scores if prediction is not None else {}, failure)
        group.clear()

    for key, index, entry, folder in tqdm(entries, desc=desc, unit="item", disable=not progress):
        problem = _unreadable(folder, method_task(key), readable)
        if problem is not None:
            skipped.append({"task": key, "path": entry.path, "error": problem})
            continue
        if group and group[0][0] != key:
            answer_group()
        try:
            sample = load_sample(folder)
        except (ValueError, RuntimeError) as e:  # counted as unparsed, in its place among the items
            if group:
                answer_group()
            items.setdefault(key, _TaskItems()).add(entry, index, None, None, {}, f"{entry.path}: {e}")
            continue
        group.append((key, index, entry, sample))
        if len(group) == batch_size:
            answer_group()
    if group:
        answer_group()
    meta = {"method": method.name, "data": str(data_dir), "split": split, "parser": parser}
    if world > 1:
        if out_dir is not None:
            _write_shard(meta, items, skipped, rank, world, Path(out_dir))
        return _build_report(meta, items, skipped) if items else {**meta, "tasks": {}, "official": {},
                                                                  "skipped": skipped}
    if not items:
        first = skipped[0]["error"] if skipped else "no entries"
        raise ValueError(f"nothing could be scored in {data_dir}/{split}: {len(skipped)} entries skipped "
                         f"(first: {first})")
    report = _build_report(meta, items, skipped)
    if out_dir is not None:
        _write_report(report, items, Path(out_dir))
    return report


def _scored(key: str, it: _TaskItems, parser: str) -> list[str | None]:
    """The text each item is scored on: its official answer (lenient parser), or, as the
    authors' scorers read the records, the raw generation (official parser; grounding from
    the centimetre pred_text)."""
    if parser == "lenient":
        return list(it.predictions)
    return [rec["pred_text"] if rec["prediction"] is not None else None for rec in _raw_views(key, it)]


def _summary(key: str, preds: list[str | None], truths: list[str], parser: str) -> dict[str, Any]:
    units = "cm" if parser == "official" and key == "C" else "m"
    return metrics.summarise(key, preds, truths, parser=parser, units=units)


def _build_report(meta: dict[str, Any], items: dict[str, _TaskItems], skipped: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    parser = meta["parser"]
    report: dict[str, Any] = {**meta, "tasks": {}, "official": {},
                              "skipped": sorted(skipped, key=lambda s: (s["task"], s["path"], s.get("entry", -1)))}
    for key in sorted(items):
        it = items[key]
        preds = _scored(key, it, parser)
        summary = _summary(key, preds, it.truths, parser)
        summary["n_failed"] = len(it.errors)
        if key == "E":
            summary["by_gender"] = {
                g: _summary(key, [p for p, e in zip(preds, it.entries) if e.target_gender == g],
                            [t for t, e in zip(it.truths, it.entries) if e.target_gender == g], parser)
                for g in answers.GENDERS if any(e.target_gender == g for e in it.entries)}
        report["tasks"][key] = summary
        report["official"][key] = official_headline(key, summary)
    return report


def _write_shard(meta: dict[str, Any], items: dict[str, _TaskItems], skipped: list[dict[str, Any]],
                 rank: int, world: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_predictions(meta, items, out, rank, shard=True)
    state = {"format": SHARD_FORMAT, **meta, "rank": rank, "world_size": world, "skipped": skipped,
             "items": {k: it.to_json() for k, it in items.items()}}
    (out / f"shard_rank_{rank}.json").write_text(json.dumps(state, ensure_ascii=False, indent=1))


def merge(out_dir: str | Path) -> dict[str, Any]:
    """Merge the shard files of a sharded run in `out_dir` (all ranks 0..N-1 of one run) into
    the report, predictions.jsonl and plots a single-process run writes there; the official
    rank files stay as they are (the authors' merge scripts read all ranks)."""
    out = Path(out_dir)
    files = sorted(out.glob("shard_rank_*.json"))
    if not files:
        raise FileNotFoundError(f"no shard_rank_*.json in {out}: run `jaeger eval --shard K/N --out {out}` first")
    shards = []
    for f in files:
        try:
            state = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from None
        if not isinstance(state, dict) or state.get("format") != SHARD_FORMAT:
            raise ValueError(f"{f}: not a shard file of `jaeger eval`")
        shards.append(state)
    keys = ("method", "data", "split", "parser", "world_size")
    runs = {tuple(s[k] for k in keys) for s in shards}
    if len(runs) != 1:
        raise ValueError(f"{out}: shard files of different runs ({sorted(map(str, runs))[:2]})")
    world = shards[0]["world_size"]
    ranks = sorted(s["rank"] for s in shards)
    if ranks != list(range(world)):
        raise ValueError(f"{out}: ranks {sorted(set(range(world)) - set(ranks))} of {world} missing")
    items: dict[str, _TaskItems] = {}
    skipped: list[dict[str, Any]] = []
    rows: dict[str, list[dict[str, Any]]] = {}
    for s in shards:
        skipped += s["skipped"]
        for key, recs in s["items"].items():
            rows.setdefault(key, []).extend(recs)
    for key, recs in rows.items():
        it = items.setdefault(key, _TaskItems())
        for r in sorted(recs, key=lambda r: (r["entry"]["path"], r["index"])):
            it.add(ManifestEntry(**r["entry"]), r["index"], r["prediction"], r["raw"], r["scores"], r["failure"])
    meta = {k: shards[0][k] for k in keys[:-1]}
    if not items:
        raise ValueError(f"nothing could be scored in the shards of {out}: {len(skipped)} entries skipped")
    report = _build_report(meta, items, skipped)
    _write_report(report, items, out, official_files=False)
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
             ) -> tuple[list[tuple[str, int, ManifestEntry, Path]], list[dict[str, Any]]]:
    """(manifest key, position, entry, folder) of every well-formed entry of the readable
    manifests, and a skip record per unreadable manifest or malformed entry."""
    entries, skipped = [], []
    for key, path in find_manifests(data_dir, split).items():
        if key not in keys:
            continue
        try:
            raw = _manifest_annotations(path)
        except ValueError as e:
            skipped.append({"task": key, "path": str(path), "error": str(e)})
            continue
        for index, d in enumerate(raw):
            try:
                entry = ManifestEntry.from_dict(d) if isinstance(d, dict) else None
                if entry is None:
                    raise ValueError(f"expected an object, got {type(d).__name__}")
                _ = entry.letter  # an unknown task is malformed too
                if not isinstance(entry.path, str) or not isinstance(entry.text, str):
                    raise ValueError("'path' and 'text' must be strings")
            except (ValueError, TypeError) as e:
                where = d.get("path") if isinstance(d, dict) and isinstance(d.get("path"), str) else None
                skipped.append({"task": key, "path": where or f"{path}[{index}]", "entry": index,
                                "error": f"{path}: entry {index}: {_short(e)}"})
                continue
            entries.append((key, index, entry, resolve_sample_path(data_dir, entry)))
    return entries, skipped


def _short(err: BaseException) -> str:
    """An entry error on one line, without the whole entry it may quote."""
    text = " ".join(str(err).split())
    return text.split(": {", 1)[0] if "lacks" in text else text


def _manifest_annotations(path: Path) -> list[Any]:
    """The raw annotation list of a manifest (entries are checked one by one)."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotation"), list):
        raise ValueError(f"{path}: expected an object with an 'annotation' list")
    return data["annotation"]


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


def _cm_boxes(boxes: list[Any]) -> str:
    """Boxes as the authors' scorer reads them (it divides by 100): integer centimetres, rounded
    so a 2-decimal metre value keeps its digits, ids as parsed."""
    return "\n".join(f"bbox_{int(b.extra.get('bbox_id', i))}=Bbox({b.label}, "
                     + ", ".join(str(int(round(v * 100))) for v in (*b.center, *b.size)) + ")"
                     for i, b in enumerate(boxes))


def _raw_views(key: str, it: _TaskItems) -> list[dict[str, Any]]:
    """Per item: the answer, the raw output (the generation, or the answer of a method that
    does not generate; "" when the method failed) and pred_text as the authors' records hold
    it (the raw output; grounding of a method without a generation: its boxes in cm)."""
    n = len(it.predictions)
    generations = it.raw_texts if len(it.raw_texts) == n else [None] * n
    views = []
    for answer, generated in zip(it.predictions, generations):
        raw = generated if generated is not None else (answer or "")
        pred_text = raw
        if key == "C" and generated is None:
            boxes = answers.extract_answer("C", answer) if answer else None
            pred_text = _cm_boxes(boxes) if boxes else ""
        views.append({"prediction": answer, "raw_output": raw, "pred_text": pred_text})
    return views


def prediction_records(key: str, it: _TaskItems, parser: str = "lenient") -> list[dict[str, Any]]:
    """One predictions.jsonl record per scored item of a task: ours (path, task, prompt,
    raw_text, answer, parsed by `parser`, target) plus the fields the official merge/scoring
    scripts read (raw_output, pred_text, category, ...)."""
    records = []
    kind = answers.ANSWER_KIND[answers.task_key(key)]
    n = len(it.predictions)
    scores = it.scores if len(it.scores) == n else [{}] * n
    scored = _scored(key, it, parser)
    for view, text, score, truth, entry in zip(_raw_views(key, it), scored, scores, it.truths, it.entries):
        raw = view["prediction"]
        gender = entry.target_gender
        prompt = answers.build_prompt(key, 0, gender=gender,
                                      obj_category=entry.obj_category or ["speaker"])
        units = "cm" if parser == "official" and kind == "boxes" else "m"
        parsed = answers.extract_answer(key, text, units, parser)
        target = answers.parse_answer(key, truth)
        rec: dict[str, Any] = {"path": entry.path, "task": entry.task, "key": key, "prompt": prompt,
                               "raw_text": view["raw_output"] if raw is not None else raw, "answer": raw,
                               "parsed": None, "target": truth, "raw_output": view["raw_output"],
                               "pred_text": view["pred_text"], "category": "", **score}
        if kind == "doa":
            rec["parsed"] = None if parsed is None else {"azimuth": parsed.azimuth, "elevation": parsed.elevation}
            rec.update(gt_az=target.azimuth, gt_el=target.elevation,
                       pred_az=None if parsed is None else parsed.azimuth,
                       pred_el=None if parsed is None else parsed.elevation,
                       angular_error=None if parsed is None else float(great_circle_deg(
                           parsed.azimuth, parsed.elevation, target.azimuth, target.elevation)),
                       gender=entry.gender, gt_text=truth)
        elif kind == "boxes":
            rec["parsed"] = None if parsed is None else [
                {"bbox_id": int(b.extra.get("bbox_id", i)), "category": b.label,
                 "center": [float(v) for v in b.center], "size": [float(v) for v in b.size]}
                for i, b in enumerate(parsed)]
            rec.update(text=truth, obj_category=entry.obj_category)
        else:
            rec["parsed"] = parsed
            rec.update(gt_text=truth, gender=entry.gender, num_speakers=entry.num_speakers,
                       target_label=entry.target_label)
        records.append(rec)
    return records


def _write_predictions(meta: dict[str, Any], items: dict[str, _TaskItems], out: Path, rank: int = 0,
                       shard: bool = False, official_files: bool = True) -> None:
    """predictions.jsonl (predictions_rank_R.jsonl for a shard) and, with `official_files`, the
    official files of rank `rank` (module docstring)."""
    per_key = {key: prediction_records(key, it, meta["parser"]) for key, it in items.items()}
    name = f"predictions_rank_{rank}.jsonl" if shard else "predictions.jsonl"
    with open(out / name, "w", encoding="utf-8") as f:
        for key in sorted(per_key):
            for rec in per_key[key]:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if not official_files:
        return
    official = out / "official"
    official.mkdir(exist_ok=True)
    doa = {_OFFICIAL_DOA_TASK[k]: v for k, v in per_key.items() if k in _OFFICIAL_DOA_TASK}
    (official / f"eval_results_rank_{rank}.json").write_text(json.dumps(
        {"config": {"method": meta["method"], "data": meta["data"], "split": meta["split"]},
         "details": doa}, ensure_ascii=False, indent=1))
    (official / f"av_results_rank_{rank}.json").write_text(json.dumps(
        [r for k in "DE" for r in per_key.get(k, [])], ensure_ascii=False, indent=1))
    (official / f"visual_results_rank_{rank}.json").write_text(json.dumps(
        per_key.get("C", []), ensure_ascii=False, indent=1))


def _write_report(report: dict[str, Any], items: dict[str, _TaskItems], out: Path,
                  official_files: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    _write_predictions(report, items, out, official_files=official_files)
    lines = [f"# Evaluation: {report['method']} on {report['data']} ({report['split']})", "",
             f"Answers parsed by the {report['parser']} parser.", "",
             "```", format_table([report]), "```", ""]
    for letter, it in items.items():
        if it.errors:
            lines += [f"Task {letter}: {len(it.errors)} samples failed (counted as unparsed):", ""]
            lines += [f"- {e}" for e in it.errors[:20]] + [""]
    skipped = report.get("skipped", [])
    if skipped:
        lines += [f"Skipped: {len(skipped)} entries whose files could not be read or whose manifest entry "
                  f"is malformed (not scored):", ""]
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
