"""Inference API for nodes and evaluation: JaegerPredictor and the JaegerMethod protocol class.

A malformed generation never raises: the result says `valid=False` and keeps the raw text.
A checkpoint that cannot be loaded raises CheckpointError (a ValueError) with a one-line
message naming the file, for a node or CLI to log as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D, Intrinsics
from jaeger_ros.model.modeling import CheckpointError, JaegerModel

__all__ = ["CheckpointError", "JaegerMethod", "JaegerPredictor", "Prediction", "checkpoint_path", "query_for"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny"
TASKS = ("A", "B", "C", "D", "E")


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
    """Mean probability of the generated tokens (greedy), 0..1."""
    azimuth_deg: float | None = None
    elevation_deg: float | None = None
    boxes: list[Box3D] = field(default_factory=list)
    """Camera-frame boxes (metres), bbox-id order."""
    match_label: str | None = None
    match_index: int | None = None
    """Rank of the matched loudspeaker among the candidates, left to right (0 = leftmost)."""

    def official_text(self) -> str:
        """The official answer string ("" when invalid), boxes in metres."""
        if not self.valid:
            return ""
        if self.task in ("A", "B"):
            return answers.format_doa(self.azimuth_deg, self.elevation_deg)
        if self.task == "C":
            return answers.format_boxes(self.boxes, "m")
        return answers.format_match(self.match_label)


class JaegerPredictor:
    """A trained JAEGER checkpoint behind a numpy-in, structured-out API."""

    def __init__(self, model: JaegerModel) -> None:
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path = "default", device: str = "cpu") -> "JaegerPredictor":
        """`path`: a checkpoint folder, or "default" for the tiny checkpoint shipped in the package.
        CheckpointError (one line naming the file) when it cannot be loaded."""
        return cls(JaegerModel.from_pretrained(checkpoint_path(path), device=device))

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
        items, tasks = [], []
        for q in queries:
            task = answers.task_key(q["task"])
            if task not in TASKS:
                raise ValueError(f"task must be one of {TASKS}, got {q['task']!r}")
            if task in ("B", "E") and q.get("target") is None:
                raise ValueError(f"task {task} asks for one voice: give target='male' or 'female'")
            inputs = self.model.builder.inputs(task, q.get("rgb"), q.get("depth"), q.get("intrinsics"),
                                               q.get("foa"), q.get("sample_rate") or 16000)
            n = q.get("num_candidates")
            text = answers.build_prompt(task, 0, gender=q.get("target"),
                                        obj_category=["speaker"] * int(n) if n else ["speaker"])
            ids, labels = self.model.builder.encode(self.model.builder.prompt(task, text), None)
            items.append((ids, labels, inputs))
            tasks.append((task, int(n) if n else None))
        batch = _to_device(self.model.builder.collate(items, padding_side="left"), self.device)
        texts, confidences = self.model.generate(batch)
        return [self.parse(task, text, conf, n) for (task, n), text, conf in zip(tasks, texts, confidences)]

    def parse(self, task: str, text: str, confidence: float, num_candidates: int | None = None) -> Prediction:
        """Structured result of a generation; never raises on the text. `match_index` of
        "Right" needs num_candidates (None without it)."""
        pred = Prediction(task=task, raw_text=text, valid=False, confidence=float(confidence))
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

    @classmethod
    def from_checkpoint(cls, path_or_default: str | Path = "default", device: str | None = None) -> "JaegerMethod":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        p = checkpoint_path(path_or_default)
        return cls(JaegerPredictor.from_pretrained(p, device=device), name=f"jaeger:{p.name}")

    def answer(self, sample: Any, entry: Any) -> str:
        """Official answer text for one manifest entry (empty when the generation is malformed)."""
        return self.answer_batch([(sample, entry)])[0]

    def answer_batch(self, pairs: Sequence[tuple[Any, Any]]) -> list[str]:
        queries = [query_for(sample, entry) for sample, entry in pairs]
        return [p.official_text() for p in self.predictor.predict_batch(queries)]


def query_for(sample: Any, entry: Any) -> dict[str, Any]:
    """predict() arguments for a dataset Sample and its manifest entry."""
    task = entry.letter
    q: dict[str, Any] = {"task": task, "target": entry.target_gender, "sample_rate": sample.sample_rate,
                         "num_candidates": len(entry.obj_category) if entry.obj_category else None}
    if task in "ABDE":
        q["foa"] = sample.foa()
    if task in "CDE":
        q.update(rgb=sample.rgb(), depth=sample.depth(), intrinsics=sample.intrinsics)
    return q
