"""Inference API for nodes and evaluation: JaegerPredictor and the JaegerMethod protocol class.

Two inference protocols: "trained" (what our checkpoints saw in training: the training system
prompt, the fixed audio window, stop at <|im_end|>) and "official" (the authors' test-time
protocol: Qwen's own system prompt, forced answer prefixes `azimuth: ` and
`bbox_0=Bbox(speaker,`, stop at <|endoftext|> or <|im_end|> (151643 / 151645 in Qwen's
vocabulary), max_new_tokens 256 for DoA and 512 otherwise, the whole audio file, the mel
frame count of Whisper's feature extractor (at most 30 s), the RGB resized BILINEAR to 672x378
before the model's BICUBIC resize, the depth back-projected with the authors' camera (hfov 90,
vfov 58.72 deg), and STARSS23 items asked the authors' "Where is the {gender} voice..." prompt
with answers to one decimal).

A malformed generation never raises: the result says `valid=False` and keeps the raw text.
A checkpoint that cannot be loaded raises CheckpointError (a ValueError) with a one-line
message naming the file, for a node or CLI to log as it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D, Intrinsics
from jaeger_ros.model.calibration import Calibration
from jaeger_ros.model.data import audio_token_count, official_intrinsics
from jaeger_ros.model.modeling import CheckpointError, JaegerModel

__all__ = ["CheckpointError", "JaegerMethod", "JaegerPredictor", "PROTOCOLS", "Prediction", "checkpoint_path",
           "query_for"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny"
TASKS = ("A", "B", "C", "D", "E")
PROTOCOLS = ("trained", "official")
OFFICIAL_SYSTEM_PROMPT = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
                          "perceiving auditory and visual inputs, as well as generating text and speech.")
OFFICIAL_PREFIX = {"A": "azimuth: ", "B": "azimuth: ", "C": "bbox_0=Bbox(speaker,"}
OFFICIAL_MAX_NEW_TOKENS = {"A": 256, "B": 256, "C": 512, "D": 512, "E": 512}


def checkpoint_path(spec: str | Path) -> Path:
    """A checkpoint folder, or "default" for the tiny checkpoint shipped in the package."""
    return DEFAULT_CHECKPOINT if str(spec) == "default" else Path(spec)


@dataclass
class Prediction:
    """One structured answer. Fields a task does not produce stay None."""

    task: str
    raw_text: str
    valid: bool
    """False when the generation could not be parsed as the task's answer."""
    confidence: float
    """P(the answer is right) where the checkpoint carries a calibration (calibration.py), else
    the token probability."""
    azimuth_deg: float | None = None
    elevation_deg: float | None = None
    boxes: list[Box3D] = field(default_factory=list)
    """Camera-frame boxes (metres), bbox-id order."""
    match_label: str | None = None
    match_index: int | None = None
    """Rank of the matched loudspeaker among the candidates, left to right (0 = leftmost)."""
    token_probability: float | None = None
    """Mean probability of the generated tokens (greedy), 0..1: the raw score."""
    decimals: int = 0
    """Decimals of the DoA answer string (1 for STARSS23 under the official protocol)."""

    def official_text(self) -> str:
        """The official answer string ("" when invalid), boxes in metres."""
        if not self.valid:
            return ""
        if self.task in ("A", "B"):
            return answers.format_doa(self.azimuth_deg, self.elevation_deg, self.decimals)
        if self.task == "C":
            return answers.format_boxes(self.boxes, "m")
        return answers.format_match(self.match_label)


class JaegerPredictor:
    """A trained JAEGER checkpoint behind a numpy-in, structured-out API."""

    def __init__(self, model: JaegerModel, protocol: str = "trained", calibration: Calibration | None = None) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.model = model.eval()
        self.protocol = protocol
        self.calibration = calibration

    @classmethod
    def from_pretrained(cls, path: str | Path = "default", device: str = "cpu",
                        protocol: str | None = None) -> "JaegerPredictor":
        """`path`: a checkpoint folder, "default" for the tiny checkpoint shipped in the package,
        or "official:CKPT_DIR[@QWEN_DIR]" for a released checkpoint (see from_official).
        `protocol` defaults to "trained" for ours and "official" for a release.
        CheckpointError (one line naming the file) when it cannot be loaded."""
        if str(path).startswith("official:"):
            from jaeger_ros.model.release import parse_spec

            qwen_dir, ckpt = parse_spec(str(path))
            return cls.from_official(qwen_dir, ckpt, device=device, protocol=protocol or "official")
        folder = checkpoint_path(path)
        return cls(JaegerModel.from_pretrained(folder, device=device), protocol or "trained", Calibration.load(folder))

    @classmethod
    def from_official(cls, qwen_dir: str | Path, jaeger_ckpt: str | Path, device: str = "cpu",
                      protocol: str = "official", dtype: str = "bfloat16") -> "JaegerPredictor":
        """An authors' released checkpoint (their model.safetensors, or its folder) on a local
        Qwen2.5-Omni-7B folder, with their input handling (jaeger_ros.model.release)."""
        from jaeger_ros.model.release import load_release

        return cls(load_release(qwen_dir, jaeger_ckpt, dtype=dtype, device=device), protocol)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, rgb: np.ndarray | None, depth: np.ndarray | None, intrinsics: Intrinsics | None,
                foa: np.ndarray | None, sample_rate: int, task: str, target: str | None = None,
                num_candidates: int | None = None) -> Prediction:
        """Answer one question. `target`: the voice asked for in tasks B/E ("male"/"female");
        `num_candidates`: loudspeakers in view (named in the task-C prompt; gives the
        match index of "Right")."""
        return self.predict_batch([dict(rgb=rgb, depth=depth, intrinsics=intrinsics, foa=foa,
                                        sample_rate=sample_rate, task=task, target=target,
                                        num_candidates=num_candidates)])[0]

    def predict_batch(self, queries: Sequence[dict[str, Any]]) -> list[Prediction]:
        official = self.protocol == "official"
        b = self.model.builder
        items, tasks = [], []
        for q in queries:
            asked = answers.task_key(q["task"])
            # STARSS23 is task A's question on real recordings; the official protocol asks it
            # the authors' STARSS23 prompt (a voice by gender) and answers to one decimal
            starss = asked == "starss23" and official
            task = "A" if asked == "starss23" else asked
            if task not in TASKS:
                raise ValueError(f"task must be one of {TASKS} or starss23, got {q['task']!r}")
            if (task in ("B", "E") or starss) and q.get("target") is None:
                raise ValueError(f"task {asked} asks for one voice: give target='male' or 'female'")
            intrinsics = q.get("intrinsics")
            if official and q.get("depth") is not None:
                depth = np.asarray(q["depth"])
                intrinsics = official_intrinsics(depth.shape[1], depth.shape[0])
            inputs = b.inputs(task, q.get("rgb"), q.get("depth"), intrinsics, q.get("foa"),
                              q.get("sample_rate") or 16000, whole_audio=official, official=official)
            n = q.get("num_candidates")
            text = answers.build_prompt("starss23" if starss else task, 0, gender=q.get("target"),
                                        obj_category=["speaker"] * int(n) if n else ["speaker"])
            if official:
                n_audio = audio_token_count(inputs.mel.shape[1]) if inputs.mel is not None else None
                prompt = b.prompt(task, text, n_audio, system=OFFICIAL_SYSTEM_PROMPT) + OFFICIAL_PREFIX.get(task, "")
            else:
                prompt = b.prompt(task, text)
            ids, labels = b.encode(prompt, None)
            items.append((ids, labels, inputs))
            tasks.append(("starss23" if starss else task, int(n) if n else None))
        if not official:
            batch = _to_device(b.collate(items, padding_side="left"), self.device)
            texts, confidences = self.model.generate(batch)
            return [self.parse(task, text, conf, n) for (task, n), text, conf in zip(tasks, texts, confidences)]
        out = []
        stops = [self.model.token_ids["pad"], self.model.token_ids["im_end"]]  # <|endoftext|>, <|im_end|>
        for item, (task, n) in zip(items, tasks):  # whole files differ in length: one at a time
            batch = _to_device(b.collate([item], padding_side="left"), self.device)
            letter = "A" if task == "starss23" else task
            (text,), (conf,) = self.model.generate(batch, OFFICIAL_MAX_NEW_TOKENS[letter], eos_ids=stops)
            out.append(self.parse(task, OFFICIAL_PREFIX.get(letter, "") + text.strip(), conf, n))
        return out

    def parse(self, task: str, text: str, confidence: float, num_candidates: int | None = None) -> Prediction:
        """Structured result of a generation; never raises on the text. `match_index` of
        "Right" needs num_candidates (None without it). task "starss23": a DoA with one decimal."""
        decimals = 1 if task == "starss23" else 0
        task = "A" if task == "starss23" else task
        calibrated = self.calibration(task, confidence) if self.calibration is not None else float(confidence)
        pred = Prediction(task=task, raw_text=text, valid=False, confidence=calibrated,
                          token_probability=float(confidence), decimals=decimals)
        units = self.model.config.box_units
        typed = answers.extract_answer(task, text, units=units if task == "C" else "m")
        if typed is None:
            return pred
        if task in ("A", "B"):
            pred.azimuth_deg, pred.elevation_deg = typed.azimuth, typed.elevation
        elif task == "C":
            pred.boxes = list(typed)
        else:
            pred.match_label = typed
            ranks = {"Left": 0, "Center": 1, "Right": num_candidates - 1 if num_candidates else None}
            pred.match_index = ranks[typed]
        pred.valid = True
        return pred


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class JaegerMethod:
    """The Method protocol (jaeger_ros.data.evaluation) over a JAEGER checkpoint."""

    tasks = frozenset(TASKS)

    def __init__(self, predictor: JaegerPredictor, name: str = "jaeger") -> None:
        self.predictor = predictor
        self.name = name
        self.last_raw_texts: list[str | None] = []
        self.last_scores_list: list[dict[str, float]] = []

    @property
    def last_raw_text(self) -> str | None:
        """The last answer's raw generation (the Method protocol's single-answer view)."""
        return self.last_raw_texts[-1] if self.last_raw_texts else None

    @property
    def last_scores(self) -> dict[str, float]:
        """The last answer's confidence and token probability."""
        return self.last_scores_list[-1] if self.last_scores_list else {}

    @classmethod
    def from_checkpoint(cls, path_or_default: str | Path = "default", device: str | None = None,
                        protocol: str | None = None) -> "JaegerMethod":
        """A checkpoint folder, "default", or "official:CKPT_DIR[@QWEN_DIR]"."""
        # under torchrun / accelerate launch each rank takes its own GPU
        device = device or (f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
        spec = str(path_or_default)
        p = spec if spec.startswith("official:") else checkpoint_path(path_or_default)
        name = f"jaeger:{Path(spec.removeprefix('official:').partition('@')[0]).name}"
        return cls(JaegerPredictor.from_pretrained(p, device=device, protocol=protocol), name=name)

    def answer(self, sample: Any, entry: Any) -> str:
        """Official answer text for one manifest entry (empty when the generation is malformed)."""
        return self.answer_batch([(sample, entry)])[0]

    def answer_batch(self, pairs: Sequence[tuple[Any, Any]]) -> list[str]:
        """Official answers, generated as one left-padded batch (trained protocol; the official
        protocol's whole files go one at a time). `last_raw_texts` / `last_scores_list` keep
        each raw generation and its confidence and token probability (`last_raw_text` /
        `last_scores` read the last one)."""
        queries = [query_for(sample, entry) for sample, entry in pairs]
        predictions = self.predictor.predict_batch(queries)
        self.last_raw_texts = [p.raw_text for p in predictions]
        self.last_scores_list = [{"confidence": p.confidence, "token_probability": float(p.token_probability or 0.0)}
                                 for p in predictions]
        return [p.official_text() for p in predictions]


def query_for(sample: Any, entry: Any) -> dict[str, Any]:
    """predict() arguments for a dataset Sample and its manifest entry."""
    task = entry.letter
    q: dict[str, Any] = {"task": "starss23" if entry.task == "starss23" else task, "target": entry.target_gender,
                         "sample_rate": sample.sample_rate,
                         "num_candidates": len(entry.obj_category) if entry.obj_category else None}
    if task in "ABDE":
        q["foa"] = sample.foa()
    if task in "CDE":
        q.update(rgb=sample.rgb(), depth=sample.depth(), intrinsics=sample.intrinsics)
    return q
