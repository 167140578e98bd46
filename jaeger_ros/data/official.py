"""Import of the official SpatialSceneQA release onto our split/task layout, without copying media.

The release's manifests name sample folders (and STARSS23 wav files) under a placeholder
``/path/to/``; ROOT is the folder that stands for it. Every manifest found maps to our layout:

    DATA/<split>/<scene>/<task1_00000>/  metadata.json (ours: the declared FOA order and
                                         normalisation, the release folder) and symbolic links
                                         to the release's files (rgb.png, depth.png, foa_ls.wav,
                                         ir*.npy, ...)
    DATA/<split>/starss23/<stem>/        metadata.json (mono files tiled to 4 channels) and
                                         foa_ls.wav -> the release's wav file
    DATA/<split>/manifests/{A..E,starss23}.json   official schema, paths relative to DATA
    DATA/import_report.json              per split and task: entries, found, missing, unreadable

Links are made whether or not their target exists, so a release completed later (for example
by the speech step below) is seen without importing again; evaluation and training skip and
count the entries whose files are missing or unreadable.

The release ships room impulse responses, not finished audio: :func:`render_speech` convolves
each folder's ``ir.npy`` (task 1) or ``ir_male.npy`` + ``ir_female.npy`` (task 2) with dry
LibriSpeech (train-clean-100 / dev-clean / test-clean for train / val / test) into
``foa_ls.wav`` as the authors' tool does: the split's folders sorted by path, task-1 folders
take the next utterance of a speaker whose sex (SPEAKERS.TXT) is the manifest's ``gender``
(task A; the next of the whole subset where no manifest names one), task-2 folders the next
male and the next female utterance (each list cyclic, utterances sorted by path), full
convolution, the two talkers summed from t = 0 (the shorter zero-padded), no normalisation,
16-bit PCM at the speech's rate. The authors' exact utterances cannot be reproduced: their
per-folder utterance lists (``*_ann_librispeech.json``) are not released, so the voices are
LibriSpeech utterances of the right sex, chosen deterministically, not the same recordings.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import soundfile as sf

from jaeger_ros.core import foa as foa_io
from jaeger_ros.data.dataset import (SPLITS, STARSS23, ManifestEntry, read_manifest, sample_problem,
                                     write_manifest)

PLACEHOLDER = "/path/to/"
"""Prefix of every path in the official manifests; ROOT replaces it."""
OFFICIAL_FORMAT = "jaeger_ros.official/1"
REPORT_NAME = "import_report.json"
MARKER = "import.json"
"""Written beside an imported split's manifests: tells an import it may replace that split."""

# (manifest key, release sub-folder, file name pattern) per split, as the release names them.
MANIFEST_FILES: tuple[tuple[str, str, str], ...] = (
    ("A", "audio-only", "hm3d_av_v2_ls_task1_{split}.json"),
    ("B", "audio-only", "hm3d_av_v2_ls_task2_{split}.json"),
    ("C", "visual-only", "visual_grounding_hm3d_av_v2_speaker_only_{split}.json"),
    ("D", "audio-visual", "hm3d_av_v2_task1_{split}.json"),
    ("E", "audio-visual", "hm3d_av_v2_task2_{split}.json"),
    (STARSS23, "audio-only", "starss23_{split}.json"),
)
LIBRISPEECH_SUBSETS = {"train": "train-clean-100", "val": "dev-clean", "test": "test-clean"}
ALWAYS_LINKED = ("rgb.png", "depth.png", "foa_ls.wav")
"""Linked even when the release folder lacks them (yet): a missing file is then reported by
name, and one written later is found."""


def find_official_manifests(manifest_dir: str | Path) -> dict[tuple[str, str], Path]:
    """(split, key) -> manifest file, for the release's folder layout (``audio-only/x.json``)
    or its flattened copy (``audio-only__x.json``)."""
    d = Path(manifest_dir)
    found = {}
    for split in SPLITS:
        for key, sub, pattern in MANIFEST_FILES:
            name = pattern.format(split=split)
            for candidate in (d / sub / name, d / f"{sub}__{name}"):
                if candidate.is_file():
                    found[(split, key)] = candidate
                    break
    return found


def release_path(root: str | Path, manifest_path: str) -> Path:
    """Where a manifest path lies: the placeholder prefix replaced by ROOT; other absolute
    paths as they are, relative ones under ROOT."""
    if manifest_path.startswith(PLACEHOLDER):
        return Path(root) / manifest_path[len(PLACEHOLDER):]
    p = Path(manifest_path)
    return p if p.is_absolute() else Path(root) / p


def local_name(split: str, key: str, source: Path) -> str:
    """Our folder for a release sample, relative to DATA: <split>/<scene>/<task folder>, or
    <split>/starss23/<wav stem>."""
    if key == STARSS23:
        return f"{split}/{STARSS23}/{source.stem}"
    return f"{split}/{source.parent.name}/{source.name}"


@dataclass
class TaskCounts:
    """Import figures of one manifest."""

    manifest: str
    entries: int = 0
    found: int = 0
    missing: int = 0
    unreadable: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "entries": self.entries, "found": self.found,
                "missing": self.missing, "unreadable": self.unreadable}


def _link_sample(out_folder: Path, source: Path, key: str, foa_order: str, foa_normalization: str) -> None:
    """Our folder for one release sample: metadata.json and links to the release's files."""
    out_folder.mkdir(parents=True, exist_ok=True)
    foa: dict[str, Any] = {"channel_order": foa_order, "normalization": foa_normalization}
    if key == STARSS23:
        foa["mono"] = "tile"
        links = {"foa_ls.wav": source}
    else:
        names = set(ALWAYS_LINKED)
        if source.is_dir():
            names |= {f.name for f in source.iterdir() if f.name != "metadata.json"}
        links = {n: source / n for n in sorted(names)}
    for name, target in links.items():
        link = out_folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.absolute())
    meta = {"format": OFFICIAL_FORMAT, "release": str(source.absolute()), "foa": foa}
    (out_folder / "metadata.json").write_text(json.dumps(meta, indent=1))


def _prepare_split(out: Path, split: str, overwrite: bool) -> None:
    """Refuse to write into a split that holds something other than an earlier import."""
    folder = out / split
    if not folder.exists() or not any(folder.iterdir()):
        return
    if not (folder / "manifests" / MARKER).is_file():
        raise FileExistsError(f"{folder} holds data that no import wrote; choose another --out")
    if not overwrite:
        raise FileExistsError(f"{folder} holds an earlier import: give --overwrite to replace it")
    shutil.rmtree(folder)


def import_official(release: str | Path, out: str | Path, manifests: str | Path | None = None,
                    foa_order: str = foa_io.DEFAULT_ORDER,
                    foa_normalization: str = foa_io.DEFAULT_NORMALIZATION,
                    splits: Iterable[str] = SPLITS, overwrite: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Map the release's manifests onto DATA (module docstring); returns the report that is
    also written to DATA/import_report.json.

    `foa_order` / `foa_normalization`: what the release's files hold (the defaults, ACN/SN3D,
    leave the channels as the official loader uses them: channel 0 = W, 1-3 in file order).
    Every entry is kept; each is read once (all files its task needs) and counted as found,
    missing or unreadable. ValueError when no manifest is found.
    """
    from tqdm import tqdm

    foa_io.convert(np.zeros((4, 1)), foa_order, foa_normalization)  # validates both names
    release = Path(release)
    if not release.is_dir():
        raise FileNotFoundError(f"release folder not found: {release}")
    manifest_dir = Path(manifests) if manifests else release
    found = {k: v for k, v in find_official_manifests(manifest_dir).items() if k[0] in set(splits)}
    if not found:
        raise ValueError(f"no official manifest (e.g. audio-only/hm3d_av_v2_ls_task1_test.json) in {manifest_dir}")
    out = Path(out)
    for split in sorted({s for s, _ in found}):
        _prepare_split(out, split, overwrite)
    report: dict[str, Any] = {"release": str(release.absolute()), "manifests": str(manifest_dir.absolute()),
                              "foa": {"channel_order": foa_order, "normalization": foa_normalization},
                              "splits": {}}
    problems: list[dict[str, str]] = []
    linked: dict[str, Path] = {}
    verdict: dict[tuple[str, str], Any] = {}
    for (split, key), manifest in sorted(found.items()):
        counts = TaskCounts(str(manifest))
        entries = []
        for entry in tqdm(read_manifest(manifest), desc=f"import {split} {key}", unit="entry", disable=not progress):
            source = release_path(release, entry.path)
            name = local_name(split, key, source)
            if name not in linked:
                _link_sample(out / name, source, key, foa_order, foa_normalization)
                linked[name] = source
            letter = entry.letter
            if (name, letter) not in verdict:
                verdict[(name, letter)] = sample_problem(out / name, letter)
            problem = verdict[(name, letter)]
            counts.entries += 1
            if problem is None:
                counts.found += 1
            else:
                kind = "missing" if problem.missing else "unreadable"
                setattr(counts, kind, getattr(counts, kind) + 1)
                problems.append({"split": split, "task": key, "path": entry.path, "release": str(source),
                                 "kind": kind, "error": str(problem)})
            entries.append(ManifestEntry(name, entry.task, entry.text, entry.gender, entry.num_speakers,
                                         entry.target_label, entry.obj_category))
        write_manifest(out / split / "manifests" / f"{key}.json", entries)
        report["splits"].setdefault(split, {})[key] = counts.to_dict()
    for split in report["splits"]:
        (out / split / "manifests" / MARKER).write_text(json.dumps(
            {"format": OFFICIAL_FORMAT, "release": report["release"], "foa": report["foa"]}, indent=1))
    report["problems"] = problems
    (out / REPORT_NAME).write_text(json.dumps(report, indent=1))
    return report


# --------------------------------------------------------------------------- speech


def _speakers(speech_dir: Path) -> dict[str, str]:
    """LibriSpeech speaker id -> "M"/"F" from SPEAKERS.TXT (its ';' lines are comments)."""
    path = speech_dir / "SPEAKERS.TXT"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --speech-dir must be the LibriSpeech folder that "
                                f"holds SPEAKERS.TXT and {', '.join(LIBRISPEECH_SUBSETS.values())}")
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = [p.strip() for p in line.split("|")]
        if line.startswith(";") or len(parts) < 2 or parts[1] not in ("M", "F"):
            continue
        out[parts[0]] = parts[1]
    return out


def utterances(speech_dir: str | Path, split: str) -> dict[str, list[Path]]:
    """The split's LibriSpeech utterances sorted by path: "all", "M" and "F" lists."""
    root = Path(speech_dir)
    subset = root / LIBRISPEECH_SUBSETS[split]
    if not subset.is_dir():
        raise FileNotFoundError(f"LibriSpeech subset {subset} not found (split {split})")
    gender = _speakers(root)
    files = sorted(subset.rglob("*.flac"), key=lambda p: p.relative_to(subset).as_posix())
    lists: dict[str, list[Path]] = {"all": files, "M": [], "F": []}
    for f in files:
        g = gender.get(f.relative_to(subset).parts[0])
        if g:
            lists[g].append(f)
    if not files:
        raise ValueError(f"no .flac utterances under {subset}")
    return lists


def _dry(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return data.mean(axis=1), int(rate)


def _ir(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {path.name} not found")
    ir = np.load(path)
    if ir.ndim == 2 and ir.shape[0] != 4 and ir.shape[1] == 4:
        ir = ir.T
    if ir.ndim != 2 or ir.shape[0] != 4:
        raise ValueError(f"{path}: impulse response must be (4, N) or (N, 4), got {ir.shape}")
    return ir


def _convolve(dry: np.ndarray, ir: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return np.stack([fftconvolve(dry, ch, mode="full") for ch in ir], axis=1)  # (N, 4)


def speech_mix(folder: Path, talkers: list[Path]) -> tuple[np.ndarray, int]:
    """(N, 4) foa_ls.wav content of one release folder: one talker on ir.npy, or a male and a
    female talker on ir_male.npy / ir_female.npy, summed from t = 0."""
    irs = [folder / "ir.npy"] if len(talkers) == 1 else [folder / "ir_male.npy", folder / "ir_female.npy"]
    wet, rates = [], set()
    for ir_path, utterance in zip(irs, talkers):
        ir = _ir(ir_path)
        dry, rate = _dry(utterance)
        wet.append(_convolve(dry, ir))
        rates.add(rate)
    if len(rates) != 1:
        raise ValueError(f"{folder}: utterances at different sample rates {sorted(rates)}")
    mix = np.zeros((max(len(w) for w in wet), 4))
    for w in wet:
        mix[:len(w)] += w
    return mix, rates.pop()


def _render_one(job: tuple[str, list[str]]) -> str | None:
    folder, talkers = Path(job[0]), [Path(t) for t in job[1]]
    try:
        mix, rate = speech_mix(folder, talkers)
        tmp = folder / f".foa_ls.wav.{os.getpid()}.tmp"
        sf.write(str(tmp), mix, rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, folder / "foa_ls.wav")
    except (OSError, ValueError, RuntimeError) as e:
        return " ".join(str(e).split()) or type(e).__name__
    return None


def speech_jobs(split_root: Path, lists: dict[str, list[Path]], genders: dict[str, str] | None = None
                ) -> list[tuple[str, list[str]]]:
    """(folder, utterances) for every task folder of a split root (<root>/<scene>/task*),
    folders sorted by path, utterances assigned cyclically (module docstring). `genders`:
    folder -> "M"/"F" from the manifests (task A's `gender`): such a task-1 folder takes the next
    utterance of a speaker of that sex (LibriSpeech SPEAKERS.TXT), so its voice agrees with the
    manifest; other task-1 folders take the next of the whole subset."""
    jobs = []
    counters: dict[tuple[str, str], int] = {}  # task-1 and task-2 folders count apart

    def take(kind: str, family: str = "task2") -> str:
        pool = lists[kind]
        if not pool:
            raise ValueError(f"no {'male' if kind == 'M' else 'female'} utterances for the {family} folders "
                             f"of {split_root}")
        n = counters.get((family, kind), 0)
        item = pool[n % len(pool)]
        counters[(family, kind)] = n + 1
        return str(item)

    for folder in sorted((p for p in split_root.glob("*/task*") if p.is_dir()), key=str):  # as the tool sorts
        if folder.name.startswith("task1"):
            jobs.append((str(folder), [take((genders or {}).get(str(folder), "all"), "task1")]))
        elif folder.name.startswith("task2"):
            jobs.append((str(folder), [take("M"), take("F")]))
    return jobs


def render_speech(release: str | Path, speech_dir: str | Path, manifests: str | Path | None = None,
                  workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Write foa_ls.wav into every HM3D task folder of the release (module docstring).
    The split roots are those the manifests' folders lie in. Returns per split the folders
    written and the ones that failed ({"folder", "error"}), without stopping at one."""
    from multiprocessing import get_context

    from tqdm import tqdm

    release = Path(release)
    manifest_dir = Path(manifests) if manifests else release
    roots: dict[str, set[Path]] = {}
    genders: dict[str, str] = {}
    for (split, key), path in find_official_manifests(manifest_dir).items():
        if key == STARSS23:
            continue
        for entry in read_manifest(path):
            folder = release_path(release, entry.path)
            roots.setdefault(split, set()).add(folder.parent.parent)
            if key == "A" and entry.gender in ("M", "F"):
                genders[str(folder)] = entry.gender
    if not roots:
        raise ValueError(f"no HM3D manifest in {manifest_dir}: cannot tell where the task folders are")
    report: dict[str, Any] = {}
    for split in sorted(roots):
        existing = sorted(r for r in roots[split] if r.is_dir())
        if not existing:
            report[split] = {"written": 0, "failed": [], "note": "no task folder found"}
            continue
        lists = utterances(speech_dir, split)
        jobs = [job for root in existing for job in speech_jobs(root, lists, genders)]
        with tqdm(total=len(jobs), desc=f"speech {split}", unit="folder", disable=not progress) as bar:
            if workers <= 1:
                results = []
                for job in jobs:
                    results.append(_render_one(job))
                    bar.update()
            else:
                with get_context("spawn").Pool(workers) as pool:
                    results = []
                    for r in pool.imap(_render_one, jobs, chunksize=4):
                        results.append(r)
                        bar.update()
        failed = [{"folder": job[0], "error": r} for job, r in zip(jobs, results) if r is not None]
        report[split] = {"written": len(jobs) - len(failed), "failed": failed,
                         "utterances": {k: len(v) for k, v in lists.items()}}
    return report
