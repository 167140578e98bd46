"""SpatialSceneQA-format datasets: generate sample folders from the simulator, read them back.

Layout (ours, readable by the official scorers' conventions)::

    DATA/<split>/task1_00000/   rgb.png, depth.png (8-bit, d = px/255*10 m, as the official
                                 release), depth_mm.png (uint16 millimetres, exact), mask.png,
                                 metadata.json, ir.npy | ir_male.npy + ir_female.npy,
                                 foa_ls.wav (4-ch float32, 16 kHz)
    DATA/<split>/manifests/{A,B,C,D,E}.json   {"annotation": [...]} in the official schema

task1 folders hold one talking loudspeaker (tasks A, C, D); task2 folders hold a male and a
female talker on two loudspeakers (tasks B, E). Manifest paths are relative to DATA.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import soundfile as sf
from PIL import Image

from jaeger_ros.core import answers
from jaeger_ros.core import foa as foa_io
from jaeger_ros.core.geometry import Box3D, Intrinsics, azel_from_direction, transform_points

TASK_LETTERS = ("A", "B", "C", "D", "E")
STARSS23 = "starss23"
MANIFEST_KEYS = (*TASK_LETTERS, STARSS23)
"""Manifest files of a split: one per task letter, and the real-data DoA set (task A's
question on STARSS23 recordings, answers with one decimal)."""
SPLITS = ("train", "val", "test")
DEPTH_PNG_MAX_M = 10.0  # official 8-bit depth: d = px / 255 * 10 m
PNG_LEVEL = 1
"""zlib level of the written PNGs (lossless at any level): level 6, PIL's default, took ~0.4 s of a
mesh sample's ~2.6 s at 672x378 for files 1-15 % smaller."""
DEFAULT_RESOLUTION = (672, 378)  # the model's input resolution in the reference
FORMAT = "jaeger_ros.sample/1"
WORLDS = ("procedural", "mesh")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_MANIFEST_TASK = {"A": "spatial_doa", "B": "multi_spatial_doa", "C": "visual_grounding",
                  "D": "single_source", "E": "dual_source"}
_LETTER_OF_TASK = {"spatial_doa": "A", "multi_spatial_doa": "B", "visual_grounding": "C",
                   "single_source": "D", "dual_source": "E", "starss23": "A"}


# --------------------------------------------------------------------------- manifests

@dataclass(frozen=True)
class ManifestEntry:
    """One annotation of a manifest, field for field as the official files spell them."""

    path: str
    task: str
    text: str
    gender: str | None = None
    num_speakers: int | None = None
    target_label: str | None = None
    obj_category: list[str] | None = None

    @property
    def letter(self) -> str:
        """Task letter A-E. Official task-2 DoA files name their task "multi_spatial_doa"."""
        if self.task not in _LETTER_OF_TASK:
            raise ValueError(f"unknown manifest task {self.task!r}")
        return _LETTER_OF_TASK[self.task]

    @property
    def target_gender(self) -> str | None:
        """"male"/"female" for tasks that ask for one voice, normalising "M"/"F"."""
        if self.gender is None:
            return None
        return {"m": "male", "f": "female"}.get(self.gender.lower(), self.gender.lower())

    def to_dict(self) -> dict[str, Any]:
        # Key order of the official files, per task.
        order = {
            "A": ("path", "text", "task", "gender"),
            "B": ("path", "text", "task", "gender"),
            "C": ("path", "task", "text", "obj_category"),
            "D": ("path", "num_speakers", "text", "task"),
            "E": ("path", "num_speakers", "target_label", "task", "gender", "text"),
        }[self.letter]
        return {k: getattr(self, k) for k in order if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ManifestEntry":
        missing = [k for k in ("path", "task", "text") if k not in d]
        if missing:
            raise ValueError(f"manifest entry lacks {missing}: {d}")
        return cls(path=d["path"], task=d["task"], text=d["text"], gender=d.get("gender"),
                   num_speakers=d.get("num_speakers"), target_label=d.get("target_label"),
                   obj_category=d.get("obj_category"))


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Entries of an official-schema manifest ({"annotation": [...]})."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest not found: {p}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotation"), list):
        raise ValueError(f"{p}: expected an object with an 'annotation' list")
    return [ManifestEntry.from_dict(d) for d in data["annotation"]]


def write_manifest(path: str | Path, entries: Iterable[ManifestEntry]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"annotation": [e.to_dict() for e in entries]}, indent=1))


def find_manifests(data_dir: str | Path, split: str) -> dict[str, Path]:
    """Manifest key (letter or "starss23") -> manifest file of a split (those present)."""
    folder = Path(data_dir) / split / "manifests"
    if not folder.is_dir():
        raise FileNotFoundError(f"no manifests for split {split!r} in {data_dir} "
                                f"(expected {folder})")
    return {key: folder / f"{key}.json" for key in MANIFEST_KEYS if (folder / f"{key}.json").is_file()}


def resolve_sample_path(data_dir: str | Path, entry: ManifestEntry) -> Path:
    p = Path(entry.path)
    return p if p.is_absolute() else Path(data_dir) / p


# --------------------------------------------------------------------------- reading

MAX_IMAGE_PIXELS = 64_000_000
"""Largest image a sample may hold (64 MP; ours are 0.25 MP): a bigger PNG header is refused
before any pixel is decoded, so a crafted or corrupt file cannot exhaust memory."""


NOT_FOUND = "file not found"
FOLDER_NOT_FOUND = "sample folder not found"


class SampleError(ValueError):
    """A sample folder that cannot be read; the one-line message names the file and why."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = str(path)
        self.why = why

    @property
    def missing(self) -> bool:
        """The file or folder does not exist (as opposed to existing but unreadable)."""
        return self.why in (NOT_FOUND, FOLDER_NOT_FOUND)


def one_line(err: BaseException) -> str:
    """An exception's message on one line (library errors often span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def read_image(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Pixels of a PNG (converted to `mode` if given); SampleError when missing, truncated,
    undecodable or over MAX_IMAGE_PIXELS (checked from the header, before decoding)."""
    p = Path(path)
    if not p.is_file():
        raise SampleError(p, NOT_FOUND)
    try:
        with warnings.catch_warnings():  # the size is checked here, below PIL's warning threshold
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
        with img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise SampleError(p, f"{w}x{h} image is over the {MAX_IMAGE_PIXELS // 1_000_000} MP limit "
                                     f"(not decoded)")
            return np.asarray(img.convert(mode) if mode else img)
    except SampleError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise SampleError(p, f"unreadable image ({one_line(e)})") from None


class Sample:
    """Lazy view of one sample folder (ours or an official SpatialSceneQA one).

    Official folders carry no order/normalisation metadata; pass `foa_order` and
    `foa_normalization` to say what they hold (default: AmbiX, ACN/SN3D), or import them
    (jaeger_ros.data.official), which declares both in a metadata.json of ours. A metadata
    ``"foa": {"mono": "tile"}`` makes a one-channel foa_ls.wav four identical channels (the
    official loader's handling of mono STARSS23 files). Every reader raises SampleError
    naming the file it could not use.
    """

    def __init__(self, folder: str | Path, foa_order: str | None = None,
                 foa_normalization: str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SampleError(self.folder, FOLDER_NOT_FOUND)
        self.metadata_path = self.folder / "metadata.json"
        self.metadata: dict[str, Any] = self._read_metadata()
        declared = self.metadata.get("foa", {})
        if not isinstance(declared, dict):
            raise SampleError(self.metadata_path, f"'foa' must be an object, got {type(declared).__name__}")
        self.foa_order = foa_order or declared.get("channel_order", foa_io.DEFAULT_ORDER)
        self.foa_normalization = (foa_normalization
                                  or declared.get("normalization", foa_io.DEFAULT_NORMALIZATION))
        self.foa_mono = declared.get("mono")

    def _read_metadata(self) -> dict[str, Any]:
        if not self.metadata_path.is_file():
            return {}
        try:
            data = json.loads(self.metadata_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SampleError(self.metadata_path, f"not readable JSON ({one_line(e)})") from None
        if not isinstance(data, dict):
            raise SampleError(self.metadata_path, f"expected a JSON object, got a {type(data).__name__}")
        return data

    def __repr__(self) -> str:
        return f"Sample({str(self.folder)!r})"

    @property
    def sample_rate(self) -> int:
        """The rate metadata.json declares; without one, that of foa_ls.wav (16 kHz if absent)."""
        if "sample_rate" not in self.metadata:
            return self._file_rate() or foa_io.SAMPLE_RATE
        rate = self.metadata["sample_rate"]
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0:
            raise SampleError(self.metadata_path, f"sample_rate must be a positive number, got {rate!r}")
        return int(rate)

    def _file_rate(self) -> int | None:
        path = self.folder / "foa_ls.wav"
        try:
            return int(sf.info(str(path)).samplerate) if path.is_file() else None
        except (OSError, RuntimeError) as e:  # soundfile's errors are RuntimeErrors
            raise SampleError(path, one_line(e).removeprefix(f"{path}: ")) from None

    @cached_property
    def intrinsics(self) -> Intrinsics:
        """Declared in metadata.json, else the release's camera: 90 deg hfov, square pixels,
        at the depth image's size (the image the geometry is computed from)."""
        if "intrinsics" not in self.metadata:
            h, w = self.depth().shape[:2]
            return Intrinsics.from_hfov(w, h, 90.0)
        try:
            intr = Intrinsics.from_dict(self.metadata["intrinsics"])
        except (KeyError, TypeError, ValueError) as e:
            raise SampleError(self.metadata_path, f"bad intrinsics ({type(e).__name__}: {one_line(e)})") from None
        values = np.array([intr.fx, intr.fy, intr.cx, intr.cy])
        if intr.width <= 0 or intr.height <= 0 or not np.all(np.isfinite(values)) or intr.fx <= 0 or intr.fy <= 0:
            raise SampleError(self.metadata_path, f"bad intrinsics {intr.to_dict()} (need a positive size and "
                                                  f"finite, positive focal lengths)")
        return intr

    def rgb(self) -> np.ndarray:
        return read_image(self.folder / "rgb.png", "RGB")

    def depth(self) -> np.ndarray:
        """Planar depth in metres, float32; 0 where there is no return."""
        exact = self.folder / "depth_mm.png"
        if exact.is_file():
            d = read_image(exact).astype(np.float32) / 1000.0
        else:
            d = read_image(self.folder / "depth.png", "L").astype(np.float32) / 255.0 * DEPTH_PNG_MAX_M
        if d.ndim != 2:
            raise SampleError(exact if exact.is_file() else self.folder / "depth.png",
                              f"depth must be one channel, got shape {d.shape}")
        return d

    def instance_mask(self) -> np.ndarray | None:
        p = self.folder / "mask.png"
        return read_image(p).astype(np.int32) if p.is_file() else None

    def foa(self) -> np.ndarray:
        """(4, N) float32 in ACN/SN3D whatever the file holds."""
        path = self.folder / "foa_ls.wav"
        try:
            if self.foa_mono == "tile":
                if not path.is_file():
                    raise FileNotFoundError(path)
                data, rate = sf.read(str(path), dtype="float32", always_2d=True)
                data = np.ascontiguousarray(np.tile(data.T, (4, 1)) if data.shape[1] == 1 else data.T)
                if data.shape[0] != 4:
                    raise ValueError(f"expected 1 or 4 channels, found {data.shape[0]}")
            else:
                data, rate = foa_io.read_foa_wav(path)
            if "sample_rate" in self.metadata and rate != self.sample_rate:
                raise ValueError(f"{rate} Hz, metadata says {self.sample_rate}")
            return foa_io.convert(data, self.foa_order, self.foa_normalization)
        except SampleError:
            raise
        except FileNotFoundError:
            raise SampleError(path, NOT_FOUND) from None
        except (OSError, RuntimeError, ValueError) as e:  # soundfile's errors are RuntimeErrors
            raise SampleError(path, one_line(e).removeprefix(f"{path}: ")) from None

    def boxes(self) -> list[Box3D]:
        """Loudspeaker boxes in the camera frame, bbox-id order (left to right by azimuth)."""
        try:
            return [Box3D(b["center"], b["size"], b.get("label", "speaker"))
                    for b in self.metadata.get("boxes", [])]
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise SampleError(self.metadata_path, f"bad boxes ({type(e).__name__}: {one_line(e)})") from None

    def sources(self) -> list[dict[str, Any]]:
        return list(self.metadata.get("sources", []))


def load_sample(folder: str | Path, foa_order: str | None = None,
                foa_normalization: str | None = None) -> Sample:
    return Sample(folder, foa_order, foa_normalization)


def iter_entries(data_dir: str | Path, split: str,
                 tasks: Iterable[str] | None = None) -> Iterator[tuple[str, ManifestEntry, Path]]:
    """(letter, entry, sample folder) over a split's manifests. `tasks`: manifest keys (default:
    the letters A-E; "starss23" only when asked for, its entries come as task A)."""
    wanted = set(tasks) if tasks else set(TASK_LETTERS)
    for key, path in find_manifests(data_dir, split).items():
        if key in wanted:
            for entry in read_manifest(path):
                yield entry.letter if key == STARSS23 else key, entry, resolve_sample_path(data_dir, entry)


def sample_problem(folder: str | Path, letter: str) -> SampleError | None:
    """Why the files task `letter` needs in `folder` cannot be used (None when they can):
    the FOA for A/B/D/E, RGB-D and the boxes' metadata for C/D/E, fully read and decoded."""
    try:
        sample = load_sample(folder)
        if letter in "ABDE":
            sample.foa()
        if letter in "CDE":
            depth, intr = sample.depth(), sample.intrinsics
            sample.rgb()
            sample.boxes()
            if depth.shape != (intr.height, intr.width):
                raise SampleError(folder, f"depth {depth.shape[1]}x{depth.shape[0]} does not match the "
                                          f"intrinsics' {intr.width}x{intr.height}")
    except SampleError as e:
        return e
    return None


# --------------------------------------------------------------------------- generation

@dataclass(frozen=True)
class _Job:
    name: str           # folder name, e.g. "task1_00003"
    family: str         # "single" (A/C), "match" (D) or "dual" (B/E)
    index: int
    seed: int
    split: str
    letters: tuple[str, ...]


def plan_jobs(split: str, num: int, seed: int, tasks: Iterable[str]) -> list[_Job]:
    """Folders needed so that every requested task gets `num` entries (deterministic)."""
    letters = _check_tasks(tasks)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    families = [("single", tuple(t for t in "AC" if t in letters)),
                ("match", tuple(t for t in "D" if t in letters)),
                ("dual", tuple(t for t in "BE" if t in letters))]
    jobs: list[_Job] = []
    counters = {"task1": 0, "task2": 0}
    for i in range(num):
        for fam_code, (family, fam_letters) in enumerate(families):
            if not fam_letters:
                continue
            prefix = "task2" if family == "dual" else "task1"
            name = f"{prefix}_{counters[prefix]:05d}"
            counters[prefix] += 1
            job_seed = int(np.random.SeedSequence([seed, _SPLIT_CODE[split], fam_code, i])
                           .generate_state(1)[0])
            jobs.append(_Job(name, family, i, job_seed, split, fam_letters))
    return jobs


def _check_tasks(tasks: Iterable[str]) -> tuple[str, ...]:
    letters = tuple(t.strip().upper() for t in tasks if t.strip())
    bad = [t for t in letters if t not in TASK_LETTERS]
    if bad or not letters:
        raise ValueError(f"tasks must be letters from {','.join(TASK_LETTERS)}, got {list(tasks)}")
    return letters


# Per-process state of generator workers (the speech bank caches synthesised speech).
_WORKER: dict[str, Any] = {}


def _init_worker(split: str, seed: int, speech_dir: str | None, resolution: tuple[int, int],
                 conditions: str = "realistic", world: str = "procedural", scene_file: str | None = None,
                 talkers: str = "loudspeakers", home: Any = None) -> None:
    """`home`: the imported home generate already loaded from scene_file (a worker in this
    process uses it rather than loading the file again)."""
    from sim_bridge.speech import SpeechBank

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER["bank"] = SpeechBank(split, seed, speech_dir=speech_dir)
    _WORKER["intrinsics"] = Intrinsics.from_hfov(resolution[0], resolution[1], 90.0)
    _WORKER["conditions"] = conditions
    _WORKER["talkers"] = talkers
    _WORKER["world"] = None
    if world == "mesh":  # furnished mesh rooms, GL pictures, ray-traced sound (sim_bridge.mesh)
        from sim_bridge.mesh.world import MeshWorld

        _WORKER["world"] = MeshWorld(_WORKER["intrinsics"], scene_file=scene_file, home=home)


def _num_loudspeakers(family: str, rng: np.random.Generator) -> int:
    if family == "single":  # close to the official grounding mix (1: 31%, 2: 56%, 3: 13%)
        return int(rng.choice([1, 2, 3], p=[0.31, 0.56, 0.13]))
    return int(rng.choice([2, 3], p=[0.75, 0.25]))


def _make_sample(job: _Job, out_split_dir: str) -> list[tuple[str, dict[str, Any]]]:
    """Simulate, render and write one folder; return (letter, manifest dict) pairs."""
    from sim_bridge import conditions as sensing
    from sim_bridge.acoustics import convolve_foa, foa_rir, mix_sources
    from sim_bridge.people import source_directivity, talker_voices
    from sim_bridge.render import render
    from sim_bridge.scene import sample_scene

    rng = np.random.default_rng(job.seed)
    intr: Intrinsics = _WORKER["intrinsics"]
    bank = _WORKER["bank"]
    world = _WORKER.get("world")  # None: the procedural world
    if world is None:
        scene = sample_scene(rng, job.split, _num_loudspeakers(job.family, rng), intr,
                             scene_id=f"{job.split}/{job.name}", talkers=_WORKER.get("talkers", "loudspeakers"))
        frame = render(scene, intr)
    else:
        scene = world.sample_scene(rng, job.split, _num_loudspeakers(job.family, rng), f"{job.split}/{job.name}",
                                   talkers=_WORKER.get("talkers", "loudspeakers"))
        frame = world.render(scene)
    crng = np.random.default_rng([job.seed, 0xC0DE])  # conditions draw apart: clean scenes stay as they were
    cond = sensing.draw(_WORKER["conditions"], crng)

    boxes = scene.loudspeaker_boxes_camera()
    order = answers.azimuth_order(boxes)  # bbox ids left to right (descending azimuth, as the release)
    rank_of = {spk: rank for rank, spk in enumerate(order)}

    if job.family == "dual":
        talkers = rng.choice(len(boxes), size=2, replace=False)
        genders = ["male", "female"]
    else:
        talkers = [int(rng.integers(len(boxes)))]
        genders = [str(rng.choice(["male", "female"]))]
    talkers, genders = talker_voices(scene.loudspeakers, talkers, genders)  # people speak with their own voice

    camera_rot = scene.world_from_camera()[:3, :3]
    folder = Path(out_split_dir) / job.name
    folder.mkdir(parents=True, exist_ok=True)
    wet, sources = [], []
    directivities = [source_directivity(scene.loudspeakers[int(spk)]) if cond.directivity else None
                     for spk in talkers]
    mesh_rirs = (world.talker_rirs(scene, [int(spk) for spk in talkers], directivities)
                 if world is not None else None)  # one engine run for every talker
    for k, (spk, gender) in enumerate(zip(talkers, genders)):
        spk = int(spk)
        if mesh_rirs is None:
            rir = foa_rir(scene.room, scene.loudspeakers[spk].acoustic_center, scene.camera_position,
                          camera_rot, foa_io.SAMPLE_RATE, rng=rng, directivity=directivities[k],
                          capsules=cond.capsules)
        else:
            rir = mesh_rirs[k]
        ir_name = f"ir_{gender}.npy" if job.family == "dual" else "ir.npy"
        np.save(folder / ir_name, rir.astype(np.float32))
        dry, voice = bank.utterance_with_info(gender, rng)
        wet.append(convolve_foa(dry, rir))
        # The sound comes from the driver; the label points at the box centre, as the release's do.
        # A person's label points at the mouth: a body's box centre is ~0.4 H below the voice.
        point = _label_point(scene, boxes, spk)
        direction = point / np.linalg.norm(point)
        az, el = azel_from_direction(direction)
        sources.append({"gender": gender, "azimuth_deg": float(az), "elevation_deg": float(el),
                        "direction": [float(v) for v in direction],
                        "distance_m": float(np.linalg.norm(point)),
                        "loudspeaker": rank_of[spk], "category": _category(scene, spk), "ir_file": ir_name,
                        "voice": voice,
                        "off_axis_deg": _off_axis_deg(scene, spk)})
    mix = mix_sources(wet)
    mix, cond = sensing.apply_audio(mix, cond, scene, crng, bank.utterance, lambda pos: foa_rir(
        scene.room, pos, scene.camera_position, camera_rot, foa_io.SAMPLE_RATE, rng=crng, capsules=cond.capsules)
        if world is None else world.point_rir(scene, pos))
    peak = float(np.max(np.abs(mix)))
    if peak > 0:
        mix = mix * (0.5 / peak)  # one gain for all channels keeps the spatial cues
    foa_io.write_foa_wav(folder / "foa_ls.wav", mix.astype(np.float32), foa_io.SAMPLE_RATE)

    Image.fromarray(sensing.degrade_rgb(frame.rgb, cond, crng)).save(folder / "rgb.png", compress_level=PNG_LEVEL)
    depth = sensing.degrade_depth(np.nan_to_num(frame.depth, nan=0.0, posinf=0.0), frame.rgb, cond, crng)
    Image.fromarray(np.clip(np.round(depth / DEPTH_PNG_MAX_M * 255.0), 0, 255).astype(np.uint8)).save(
        folder / "depth.png", compress_level=PNG_LEVEL)
    if not cond.depth_8bit:  # release-like: only the 8-bit depth
        Image.fromarray(np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)).save(
            folder / "depth_mm.png", compress_level=PNG_LEVEL)
    mask = np.zeros_like(frame.instance, dtype=np.uint8)  # bbox id + 1, 0 = background
    for spk, rank in rank_of.items():
        mask[frame.instance == spk + 1] = rank + 1
    Image.fromarray(mask).save(folder / "mask.png", compress_level=PNG_LEVEL)

    sorted_boxes = [boxes[i] for i in order]
    metadata = {
        "format": FORMAT, "split": job.split, "name": job.name, "family": job.family,
        "sample_rate": foa_io.SAMPLE_RATE,
        "foa": {"channel_order": foa_io.DEFAULT_ORDER, "normalization": foa_io.DEFAULT_NORMALIZATION,
                "channels": list(foa_io.ACN), "axes": "x forward (-z camera), y left, z up"},
        "intrinsics": intr.to_dict(),
        "depth": {"depth.png": "uint8, d = px/255*10 m", "depth_mm.png": "uint16 millimetres",
                  "kind": "planar (camera -z)"},
        "frame": "camera: x right, y up, z backward",
        "talkers": _WORKER.get("talkers", "loudspeakers"),
        "boxes": [{"bbox_id": r, "label": b.label, "category": _category(scene, order[r]),
                   "center": b.center.tolist(), "size": b.size.tolist(),
                   "shape_id": int(getattr(scene.loudspeakers[order[r]], "shape_id", None)
                                   or scene.loudspeakers[order[r]].shape.shape_id),
                   "pixels": int(np.sum(frame.instance == order[r] + 1))}
                  for r, b in enumerate(sorted_boxes)],
        "sources": sources,
        "rt60_sabine_s": scene.room.sabine_rt60(),
        "conditions": cond.to_dict(),
        "world": world.describe(scene) if world is not None else _procedural_world(),
        "scene": scene.to_dict(),
    }
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return _manifest_entries(job, sorted_boxes, sources)


def _procedural_world() -> dict[str, Any]:
    from sim_bridge.mesh.world import PROCEDURAL_WORLD

    return dict(PROCEDURAL_WORLD)


def _label_point(scene: Any, boxes: list[Box3D], spk: int) -> np.ndarray:
    """Camera-frame point tasks A/B label: a loudspeaker's box centre (the release's convention),
    a person's mouth."""
    if _category(scene, spk) != "person":
        return np.asarray(boxes[spk].center, dtype=float)
    return transform_points(scene.camera_from_world(), scene.loudspeakers[spk].acoustic_center)


def _category(scene: Any, spk: int) -> str:
    """"loudspeaker" or "person": what source spk of the scene is."""
    return str(getattr(scene.loudspeakers[spk], "category", "loudspeaker"))


def _off_axis_deg(scene: Any, spk: int) -> float:
    """Angle (deg) between loudspeaker spk's facing and the direction to the camera."""
    from sim_bridge.conditions import loudspeaker_facing

    to_cam = np.asarray(scene.camera_position) - np.asarray(scene.loudspeakers[spk].acoustic_center)
    cos = loudspeaker_facing(scene.loudspeakers[spk].yaw_deg) @ to_cam / np.linalg.norm(to_cam)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _manifest_entries(job: _Job, boxes: list[Box3D],
                      sources: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    path = f"{job.split}/{job.name}"
    n = len(boxes)
    out: list[tuple[str, dict[str, Any]]] = []
    for letter in job.letters:
        if letter == "A":
            s = sources[0]
            out.append(("A", ManifestEntry(path, _MANIFEST_TASK["A"],
                                           answers.format_doa(s["azimuth_deg"], s["elevation_deg"]),
                                           gender=s["gender"][0].upper()).to_dict()))
        elif letter == "C":
            out.append(("C", ManifestEntry(path, _MANIFEST_TASK["C"], answers.format_boxes(boxes),
                                           obj_category=[b.label for b in boxes]).to_dict()))
        elif letter == "D":
            label = answers.match_label(sources[0]["loudspeaker"], n)
            out.append(("D", ManifestEntry(path, _MANIFEST_TASK["D"], label, num_speakers=n).to_dict()))
        else:  # B and E ask for one of the two voices, alternating male/female
            s = sources[job.index % 2]
            if letter == "B":
                out.append(("B", ManifestEntry(path, _MANIFEST_TASK["B"],
                                               answers.format_doa(s["azimuth_deg"], s["elevation_deg"]),
                                               gender=s["gender"][0].upper()).to_dict()))
            else:
                label = answers.match_label(s["loudspeaker"], n)
                out.append(("E", ManifestEntry(path, _MANIFEST_TASK["E"], label, gender=s["gender"],
                                               num_speakers=n,
                                               target_label=answers.target_label(s["gender"], label)
                                               ).to_dict()))
    return out


def _run_job(args: tuple[_Job, str]) -> list[tuple[str, dict[str, Any]]]:
    return _make_sample(*args)


def _collect(per_task: dict[str, list[ManifestEntry]],
             entries: list[tuple[str, dict[str, Any]]]) -> None:
    for letter, entry in entries:
        per_task[letter].append(ManifestEntry.from_dict(entry))


_TASK_FOLDER = re.compile(r"task[12]_\d{5}")


def _temp_prefix(split: str) -> str:
    return f".{split}.generating-"


def _remove_stale_temps(out_dir: Path, split: str) -> list[Path]:
    """Remove temporary folders of earlier runs for this split whose process is gone (a killed
    run); a live run's folder is left alone. Returns the folders removed."""
    removed = []
    for tmp in out_dir.glob(_temp_prefix(split) + "*"):
        pid = tmp.name[len(_temp_prefix(split)):].split("-")[0]
        if tmp.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_generated_folder(folder: Path) -> bool:
    """A task folder this generator wrote (its name pattern and our metadata format)."""
    if not (folder.is_dir() and _TASK_FOLDER.fullmatch(folder.name)):
        return False
    try:
        meta = json.loads((folder / "metadata.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _check_destination(final: Path, names: set[str], overwrite: bool) -> None:
    """Refuse a non-empty split without `overwrite`, and any name we would write that holds
    something the generator did not write."""
    if not final.exists():
        return
    if not final.is_dir():
        raise FileExistsError(f"{final} exists and is not a folder")
    if not any(final.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{final} is not empty: give --overwrite to replace the samples and manifests "
                              f"the generator wrote there (other files are kept)")
    foreign = [final / n for n in sorted(names) if (final / n).exists() and not _is_generated_folder(final / n)]
    if foreign:
        raise FileExistsError(f"{foreign[0]} was not written by the generator; move it away to generate here")


def _replace_generated(tmp: Path, final: Path) -> None:
    """Swap the generator's own files in `final` (task folders, manifests A-E) for those in
    `tmp`; everything else in `final` stays. Manifests go first and come back last, so an
    interrupted swap leaves a split that says it is incomplete (no manifest) rather than
    manifests that point at the wrong samples."""
    manifests = final / "manifests"
    for letter in TASK_LETTERS:
        (manifests / f"{letter}.json").unlink(missing_ok=True)
    for child in final.iterdir():
        if _is_generated_folder(child):
            shutil.rmtree(child)
    for child in tmp.iterdir():
        if child.name != "manifests":
            child.rename(final / child.name)
    manifests.mkdir(exist_ok=True)
    for m in (tmp / "manifests").iterdir():
        m.rename(manifests / m.name)
    (tmp / "manifests").rmdir()
    tmp.rmdir()


def generate(out_dir: str | Path, split: str, num: int, seed: int = 0,
             tasks: Iterable[str] = TASK_LETTERS, workers: int = 1,
             speech_dir: str | Path | None = None,
             resolution: tuple[int, int] = DEFAULT_RESOLUTION, progress: bool = True,
             overwrite: bool = False, conditions: str = "realistic", world: str = "procedural",
             scene: str | Path | None = None, talkers: str = "loudspeakers") -> dict[str, int]:
    """Write `num` entries per requested task for one split; returns entries per task.

    The split is written to a temporary folder beside its destination and moved in when
    complete, so a failure never leaves a half-written split behind; temporary folders of
    killed runs are removed. A non-empty split is refused unless `overwrite`, which replaces
    only the task folders and manifests the generator wrote, never other files.
    `conditions`: a sim_bridge.conditions preset (clean, realistic, hard, diffuse@SNR).
    `world`: "procedural" (shoebox rooms, ray-cast boxes, image sources) or "mesh" (furnished
    mesh rooms, pyrender, SoundSpaces 2.0's ray tracer or pyroomacoustics; sim_bridge.mesh).
    `scene`: a user's GLB/glTF/OBJ/PLY home with its semantic sidecar beside it (FILE.json, see
    sim_bridge.mesh.import_scene) rendered as posed there instead of sampled rooms (mesh world).
    `talkers`: loudspeakers (the official form), people (every source a person, who talks from
    the mouth with the voice gender of the model) or mixed (sim_bridge.people.TALKER_KINDS).
    """
    from tqdm import tqdm

    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    from sim_bridge.people import TALKER_KINDS

    if talkers not in TALKER_KINDS:
        raise ValueError(f"talkers must be one of {TALKER_KINDS}, got {talkers!r}")
    if world == "mesh":  # what the mesh world lacks here fails before anything is written
        from sim_bridge.mesh.world import check_available

        check_available()
    home = None
    if scene is not None:
        from sim_bridge.mesh.import_scene import load_scene, sidecar_of

        if world != "mesh":
            raise ValueError("--scene renders in the mesh world: add --world mesh")
        home = load_scene(scene, sidecar_of(scene))  # bad files fail here, in one line
        speakers = len(home.loudspeakers)
        if home.posed and speakers < (2 if set(_check_tasks(tasks)) & set("BE") else 1):
            raise ValueError(f"{scene}: its sidecar places {speakers} loudspeaker(s); tasks B/E need 2, the others 1")
    jobs = plan_jobs(split, num, seed, tasks)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / split
    _check_destination(final, {job.name for job in jobs}, overwrite)
    _remove_stale_temps(out_dir, split)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(split)}{os.getpid()}-", dir=out_dir))
    from sim_bridge.conditions import preset

    preset(conditions)  # an unknown preset fails before any work
    init_args = (split, seed, str(speech_dir) if speech_dir else None, tuple(resolution), conditions, world,
                 str(scene) if scene is not None else None, talkers)
    per_task: dict[str, list[ManifestEntry]] = {t: [] for t in _check_tasks(tasks)}
    try:
        work = [(job, str(tmp)) for job in jobs]
        with tqdm(total=len(jobs), desc=f"generate {split}", unit="sample", disable=not progress) as bar:
            if workers <= 1:
                _init_worker(*init_args, home=home)
                results: Iterable[list[tuple[str, dict[str, Any]]]] = map(_run_job, work)
                for entries in results:
                    _collect(per_task, entries)
                    bar.update()
            else:
                with get_context("spawn").Pool(workers, initializer=_init_worker,
                                               initargs=init_args) as pool:
                    for entries in pool.imap(_run_job, work, chunksize=1):  # keeps job order
                        _collect(per_task, entries)
                        bar.update()
        for letter, entries in per_task.items():
            write_manifest(tmp / "manifests" / f"{letter}.json", entries)
        if final.is_dir() and any(final.iterdir()):
            _replace_generated(tmp, final)
        else:
            if final.exists():
                final.rmdir()
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {letter: len(entries) for letter, entries in per_task.items()}
