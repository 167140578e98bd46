"""Official SpatialSceneQA answer strings: format, strict parse, lenient extraction, prompts.

The official scorers parse free text with an LLM; this project instead writes the exact
strings of the official manifests and parses them with plain regular expressions, so a
manifest entry survives parse -> format byte for byte (tests check every official entry).

Tasks (letter -> manifest ``task``): A ``spatial_doa``, B ``multi_spatial_doa`` (the
reference table also calls B ``spatial_doa``; both are accepted when reading, B is written
``multi_spatial_doa`` as the official task-2 files do), C ``visual_grounding``,
D ``single_source``, E ``dual_source``, and the real-data DoA set ``starss23``.

Typed answers: DoA -> :class:`DoaAnswer`; grounding -> ``list[Box3D]`` in bbox-id order
(each box's ``extra["bbox_id"]`` holds its id); matching -> the label string
``"Left"``/``"Center"``/``"Right"``.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Mapping, Sequence, Union

import numpy as np

from jaeger_ros.core.geometry import Box3D

TASKS: dict[str, str] = {
    "A": "spatial_doa",
    "B": "multi_spatial_doa",
    "C": "visual_grounding",
    "D": "single_source",
    "E": "dual_source",
    "starss23": "starss23",
}
# Manifest `task` values accepted per task key when reading. "spatial_doa" on a task-2
# folder is B (only the sample path tells; the dataset reader decides), so by name alone
# it resolves to A - harmless here, because A and B share one answer format.
TASK_NAMES_ACCEPTED: dict[str, tuple[str, ...]] = {
    "A": ("spatial_doa",),
    "B": ("multi_spatial_doa", "spatial_doa"),
    "C": ("visual_grounding",),
    "D": ("single_source",),
    "E": ("dual_source",),
    "starss23": ("starss23",),
}
AnswerKind = Literal["doa", "boxes", "match"]
ANSWER_KIND: dict[str, AnswerKind] = {"A": "doa", "B": "doa", "starss23": "doa",
                                      "C": "boxes", "D": "match", "E": "match"}
# Decimal places of the official DoA strings: HM3D tasks are integers, STARSS23 one decimal.
DOA_DECIMALS: dict[str, int] = {"A": 0, "B": 0, "starss23": 1}

MATCH_LABELS: tuple[str, str, str] = ("Left", "Center", "Right")
"""The official matching answers (2 or 3 candidates); match_label extends them to any count."""
GENDERS: tuple[str, str] = ("male", "female")

CHAT_TEMPLATE = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")

BoxUnits = Literal["m", "cm"]
TypedAnswer = Union["DoaAnswer", list[Box3D], str]

_DATA_DIR = Path(__file__).resolve().parent
_NUM = r"[+-]?\d+(?:\.\d+)?"
_DOA_RE = re.compile(rf"azimuth: ({_NUM}); elevation: ({_NUM})")
_BOX_RE = re.compile(rf"bbox_(\d+)=Bbox\(([^,()\n]+), ({_NUM}), ({_NUM}), ({_NUM}), "
                     rf"({_NUM}), ({_NUM}), ({_NUM})\)")


class AnswerParseError(ValueError):
    """An answer string that does not follow the official format of its task."""


def task_key(task: str) -> str:
    """Task letter (``"A"``..``"E"``) or ``"starss23"`` for a letter or manifest task name."""
    t = str(task).strip()
    if t.upper() in TASKS and len(t) == 1:
        return t.upper()
    if t in TASKS:
        return t
    for key, names in TASK_NAMES_ACCEPTED.items():
        if t in names:
            return key
    raise ValueError(f"unknown task {task!r}: expected one of {list(TASKS)} or a manifest task "
                     f"name {sorted({n for v in TASK_NAMES_ACCEPTED.values() for n in v})}")


# ----------------------------------------------------------------------------- DoA


@dataclass(frozen=True)
class DoaAnswer:
    """A direction of arrival in degrees and the decimals its answer string carries.

    Parsed values are the exact decimal values of the text (``-0.0`` keeps its sign), so
    ``format_doa`` of a parsed answer gives back the text.
    """

    azimuth: float
    elevation: float
    decimals: int = 0

    def __post_init__(self) -> None:
        az, el = float(self.azimuth), float(self.elevation)
        _check_doa_range(az, el)
        if not isinstance(self.decimals, (int, np.integer)) or self.decimals < 0:
            raise ValueError(f"decimals must be a non-negative integer, got {self.decimals!r}")
        object.__setattr__(self, "azimuth", az)
        object.__setattr__(self, "elevation", el)
        object.__setattr__(self, "decimals", int(self.decimals))

    @property
    def text(self) -> str:
        return format_doa(self.azimuth, self.elevation, self.decimals)


def _format_angle(value: float, decimals: int) -> str:
    # Integer answers come from int rounding in the official data (0 occurs 58 times in the
    # HM3D manifests, "-0" never); decimal answers from %.Nf, which keeps "-0.0" (STARSS23).
    if decimals == 0:
        return str(int(round(value)))
    return f"{value:.{decimals}f}"


def format_doa(azimuth: float, elevation: float, decimals: int = 0) -> str:
    """``"azimuth: -7; elevation: -22"`` (decimals=0, tasks A/B) or ``"azimuth: -13.9; ...``
    (decimals=1, STARSS23). Azimuth must lie in [-180, 180], elevation in [-90, 90]."""
    az, el = float(azimuth), float(elevation)
    _check_doa_range(az, el)
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    return f"azimuth: {_format_angle(az, decimals)}; elevation: {_format_angle(el, decimals)}"


def _check_doa_range(az: float, el: float) -> None:
    if not (math.isfinite(az) and math.isfinite(el)):
        raise ValueError(f"DoA must be finite, got azimuth {az}, elevation {el}")
    if not -180.0 <= az <= 180.0:
        raise ValueError(f"azimuth {az} outside [-180, 180] degrees")
    if not -90.0 <= el <= 90.0:
        raise ValueError(f"elevation {el} outside [-90, 90] degrees")


def _decimals_of(number: str) -> int:
    return len(number.split(".")[1]) if "." in number else 0


def parse_doa(text: str) -> DoaAnswer:
    """Strict parse of an official DoA string; both angles must carry the same decimals."""
    m = _DOA_RE.fullmatch(text)
    if m is None:
        raise AnswerParseError(f"not a DoA answer 'azimuth: <deg>; elevation: <deg>': {text!r}")
    a, e = m.groups()
    if _decimals_of(a) != _decimals_of(e):
        raise AnswerParseError(f"azimuth and elevation carry different decimals: {text!r}")
    try:
        return DoaAnswer(float(a), float(e), _decimals_of(a))
    except ValueError as err:
        raise AnswerParseError(f"{err}: {text!r}") from None


# Keyword, then up to 40 characters without digits/signs (": ", " is about ", " = "), then
# a number; the gap may not name the other angle. "−" (U+2212) is normalised to "-".
_LENIENT_ANGLE = r"{key}(?P<gap>[^0-9+\-\n]{{0,40}}?)(?P<num>[+-]?\d+(?:\.\d*)?)"


def _lenient_angle(text: str, key: str, other: str) -> float | None:
    for m in re.finditer(_LENIENT_ANGLE.format(key=key), text, flags=re.IGNORECASE):
        if other not in m.group("gap").lower():
            return float(m.group("num"))
    return None


def _extract_doa(text: str, decimals: int) -> DoaAnswer | None:
    t = text.replace("\u2212", "-")
    az = _lenient_angle(t, "azimuth", "elev")
    el = _lenient_angle(t, "elevation", "azim")
    if az is None or el is None:
        return None
    try:
        return DoaAnswer(az, el, decimals)
    except ValueError:  # out of range: an invalid answer, reported as unparsed
        return None


# ----------------------------------------------------------------------------- grounding


def _format_coord(value: float, units: BoxUnits) -> str:
    # "cm" reproduces the official model's training target, int(x * 100) (truncation
    # toward zero, as the official dataset.py does); "m" is the manifests' %.2f.
    return str(int(value * 100)) if units == "cm" else f"{value:.2f}"


def format_boxes(boxes: Sequence[Box3D], units: BoxUnits = "m") -> str:
    """``bbox_i=Bbox(label, x, y, z, sx, sy, sz)`` lines joined by ``\\n``; ``i`` is the list
    position (pass boxes left to right). ``units="m"``: 2 decimals (the manifests);
    ``"cm"``: integer centimetres (what the official model is trained to emit)."""
    if units not in ("m", "cm"):
        raise ValueError(f"units must be 'm' or 'cm', got {units!r}")
    lines = []
    for i, box in enumerate(boxes):
        label = str(box.label)
        if not label.strip() or re.search(r"[,()\n]", label) or label != label.strip():
            raise ValueError(f"box label {label!r} cannot be written in a Bbox(...) answer")
        values = ", ".join(_format_coord(float(v), units) for v in (*box.center, *box.size))
        lines.append(f"bbox_{i}=Bbox({label}, {values})")
    return "\n".join(lines)


def _box_from_match(groups: Sequence[str], bbox_id: int, scale: float) -> Box3D:
    label, *nums = groups
    v = [float(n) * scale for n in nums]
    return Box3D(np.array(v[:3]), np.array(v[3:]), label=label.strip(), extra={"bbox_id": bbox_id})


def parse_boxes(text: str, units: BoxUnits = "m") -> list[Box3D]:
    """Strict parse of a grounding answer: one ``bbox_i=Bbox(...)`` per line, ids 0..n-1 in
    order, non-negative sizes. Returned boxes are in metres, bbox-id order."""
    if units not in ("m", "cm"):
        raise ValueError(f"units must be 'm' or 'cm', got {units!r}")
    scale = 0.01 if units == "cm" else 1.0
    boxes = []
    for i, line in enumerate(text.split("\n")):
        m = _BOX_RE.fullmatch(line)
        if m is None:
            raise AnswerParseError(f"line {i} is not 'bbox_i=Bbox(label, x, y, z, sx, sy, sz)': {line!r}")
        if int(m.group(1)) != i:
            raise AnswerParseError(f"line {i} has id bbox_{m.group(1)}; ids must be 0..n-1 in order")
        if units == "cm" and any("." in n for n in m.groups()[2:]):
            raise AnswerParseError(f"centimetre boxes must be integers: {line!r}")
        try:
            boxes.append(_box_from_match(m.groups()[1:], i, scale))
        except ValueError as err:
            raise AnswerParseError(f"line {i}: {err}: {line!r}") from None
    return boxes


_LENIENT_BOX_RE = re.compile(
    rf"bbox[_ ]?(\d+)\s*=\s*Bbox\s*[(,]\s*([A-Za-z][\w ]*?)\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,"
    rf"\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})", re.IGNORECASE)


def _extract_boxes(text: str, units: BoxUnits) -> list[Box3D] | None:
    scale = 0.01 if units == "cm" else 1.0
    found: dict[int, Box3D] = {}
    for m in _LENIENT_BOX_RE.finditer(text.replace("\u2212", "-")):
        bbox_id = int(m.group(1))
        if bbox_id in found:
            continue  # a repeated id keeps its first box, as an id-keyed scorer would see it
        try:
            found[bbox_id] = _box_from_match(m.groups()[1:], bbox_id, scale)
        except ValueError:
            continue  # negative size: that box is missing, the others still count
    return [found[k] for k in sorted(found)] if found else None


# ----------------------------------------------------------------------------- matching


def box_azimuth_deg(box_or_center: Box3D | Sequence[float]) -> float:
    """Azimuth (degrees, positive left) of a box centre seen from the camera origin,
    az = atan2(-x, -z) in the camera frame (x right, y up, z backward)."""
    c = box_or_center.center if isinstance(box_or_center, Box3D) else np.asarray(box_or_center, dtype=float)
    return float(np.degrees(np.arctan2(-c[0], -c[2])))


def azimuth_order(boxes: Sequence[Box3D] | Sequence[Sequence[float]]) -> list[int]:
    """Indices of `boxes` (or box centres) left to right: by descending centre azimuth, the
    order of the release's bbox ids and of Left/Center/Right (centre x disagrees with it when
    boxes lie at different depths). Equal azimuths keep their given order."""
    az = [box_azimuth_deg(b) for b in boxes]
    return sorted(range(len(az)), key=lambda i: -az[i])


def match_label(rank: int, n_candidates: int) -> str:
    """Label of the candidate at ``rank`` (0 = leftmost, candidates in :func:`azimuth_order`).

    One rule for every candidate count n >= 1, chosen so that 2 and 3 candidates give exactly
    the official labels (Left/Right, Left/Center/Right) that the manifests hold:
    the exact middle rank (n odd) is ``"Center"``; the leftmost is ``"Left"`` and the rightmost
    ``"Right"``; any other rank is named by its place counted from the nearer end, ``"Left k"``
    or ``"Right k"`` (k-th from that end, k >= 2). So 1 candidate is ``"Center"`` (the official
    code has no label for it), 4 are Left, Left 2, Right 2, Right and 5 are Left, Left 2, Center,
    Right 2, Right. Labels are unique within a count, so :func:`rank_from_label` inverts it.
    Only Left/Center/Right are answer strings (:func:`format_match`): the official tasks never
    ask about another count.
    """
    if n_candidates < 1:
        raise ValueError(f"speaker matching needs at least 1 candidate, got {n_candidates}")
    if not 0 <= rank < n_candidates:
        raise ValueError(f"rank {rank} outside 0..{n_candidates - 1}")
    twice_offset = 2 * rank - (n_candidates - 1)  # twice the signed distance from the middle
    if twice_offset == 0:
        return "Center"
    side, place = ("Left", rank + 1) if twice_offset < 0 else ("Right", n_candidates - rank)
    return side if place == 1 else f"{side} {place}"


def rank_from_label(label: str, n_candidates: int) -> int:
    """Inverse of :func:`match_label`; ``"Center"`` with 2 candidates is an error."""
    labels = [match_label(r, n_candidates) for r in range(max(n_candidates, 1))]  # n < 1 raises
    if label not in labels:
        raise ValueError(f"label {label!r} is not valid with {n_candidates} candidates {labels}")
    return labels.index(label)


def format_match(label: str) -> str:
    """The matching answer string: the bare label, validated so no writer emits "left"."""
    if label not in MATCH_LABELS:
        raise ValueError(f"matching label must be one of {MATCH_LABELS}, got {label!r}")
    return label


def parse_match(text: str) -> str:
    """Strict parse of a matching answer (exactly ``Left``, ``Center`` or ``Right``)."""
    if text not in MATCH_LABELS:
        raise AnswerParseError(f"matching answer must be one of {MATCH_LABELS}: {text!r}")
    return text


_LENIENT_MATCH = {"left": "Left", "center": "Center", "centre": "Center", "middle": "Center",
                  "right": "Right"}


def _extract_match(text: str) -> str | None:
    words = {_LENIENT_MATCH[w.lower()] for w in re.findall(r"[A-Za-z]+", text)
             if w.lower() in _LENIENT_MATCH}
    return words.pop() if len(words) == 1 else None  # none or ambiguous -> unparsed


def normalize_gender(gender: str) -> str:
    """``"M"``/``"male"`` -> ``"male"``, ``"F"``/``"female"`` -> ``"female"`` (any case):
    task-B manifests write M/F, task-E manifests male/female."""
    g = str(gender).strip().lower()
    g = {"m": "male", "f": "female"}.get(g, g)
    if g not in GENDERS:
        raise ValueError(f"gender must be M/F/male/female, got {gender!r}")
    return g


def target_label(gender: str, label: str) -> str:
    """Task-E ``target_label`` field, e.g. ``"female: Left"``."""
    return f"{normalize_gender(gender)}: {format_match(label)}"


def parse_target_label(text: str) -> tuple[str, str]:
    """``"female: Left"`` -> ``("female", "Left")``."""
    m = re.fullmatch(r"(male|female): (Left|Center|Right)", text)
    if m is None:
        raise AnswerParseError(f"target_label must be '<male|female>: <Left|Center|Right>': {text!r}")
    return m.group(1), m.group(2)


# ----------------------------------------------------------------------------- official parser

PARSERS = ("official", "lenient")
"""Answer parsers: "official" behaves like the authors' scorers, "lenient" is ours."""

# The authors' DoA scorer: the word (any case), then one or more ':' or whitespace characters,
# then an optional sign, digits with at most one '.', where a leading '.' is allowed (".5" is
# 0.5) and a trailing one is not taken ("30." is 30); the first occurrence of each word counts.
# No range check: azimuth 185 is scored as 185. Rejected: "azimuth is about 30", "azimuth=-20",
# "azimuth: - 5" (nothing but ':' and whitespace may stand between the word and the number).
_OFFICIAL_ANGLE = r"{key}[:\s]+([+-]?\d*\.?\d+)"


@dataclass(frozen=True)
class OfficialDoa:
    """A DoA as the authors' scorer reads it: any float, no range check, no decimals."""

    azimuth: float
    elevation: float


def _official_angle(text: str, key: str) -> float | None:
    m = re.search(_OFFICIAL_ANGLE.format(key=key), text, flags=re.IGNORECASE)
    return float(m.group(1)) if m else None


def official_doa(text: str) -> OfficialDoa | None:
    """Azimuth and elevation as the authors' DoA scorer parses them (see _OFFICIAL_ANGLE);
    None when either is missing (their angular error is then None and the item is dropped)."""
    az, el = _official_angle(text, "azimuth"), _official_angle(text, "elevation")
    return None if az is None or el is None else OfficialDoa(az, el)


def official_match(text: str) -> str | None:
    """The authors' matching rule: exact match after strip, lower-case and trailing '.'
    removal; any other text (including "Unknown") is no label."""
    t = text.strip().lower().rstrip(".")
    return next((label for label in MATCH_LABELS if label.lower() == t), None)


# ----------------------------------------------------------------------------- dispatch


def format_answer(task: str, answer: TypedAnswer, units: BoxUnits = "m") -> str:
    """Official text of a typed answer (DoA decimals follow the task: 0 for A/B, 1 STARSS23)."""
    key = task_key(task)
    kind = ANSWER_KIND[key]
    if kind == "doa":
        if not isinstance(answer, DoaAnswer):
            raise ValueError(f"task {key} needs a DoaAnswer, got {type(answer).__name__}")
        return format_doa(answer.azimuth, answer.elevation, DOA_DECIMALS[key])
    if kind == "boxes":
        return format_boxes(answer, units)  # type: ignore[arg-type]
    return format_match(answer)  # type: ignore[arg-type]


def parse_answer(task: str, text: str, units: BoxUnits = "m") -> TypedAnswer:
    """Strict parse of an official answer string for a task letter or manifest task name.

    Raises :class:`AnswerParseError` (a ValueError) naming what is wrong; a DoA string must
    carry the task's decimals (integers for A/B, one decimal for STARSS23).
    """
    if not isinstance(text, str):
        raise AnswerParseError(f"answer must be a string, got {type(text).__name__}")
    key = task_key(task)
    kind = ANSWER_KIND[key]
    if kind == "doa":
        doa = parse_doa(text)
        if doa.decimals != DOA_DECIMALS[key]:
            raise AnswerParseError(f"task {key} DoA answers carry {DOA_DECIMALS[key]} decimals: {text!r}")
        return doa
    if kind == "boxes":
        return parse_boxes(text, units)
    return parse_match(text)


def extract_answer(task: str, text: str | None, units: BoxUnits = "m",
                   parser: str = "lenient") -> TypedAnswer | OfficialDoa | None:
    """Extraction from a model generation; None when nothing usable is found.

    ``parser="lenient"`` (ours) tolerates surrounding text and whitespace, any case, missing or
    extra decimals (the result carries the task's decimals), "°", "=", ``bbox 0=Bbox, speaker,
    ...`` and centimetre boxes (``units="cm"``). ``parser="official"`` behaves like the authors'
    scorers (:func:`official_doa`, :func:`official_match`; boxes as lenient). Never raises on
    the text: a malformed generation is reported as unparsed by the metrics, not a crash.
    """
    key = task_key(task)
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {PARSERS}, got {parser!r}")
    if not isinstance(text, str):
        return None
    kind = ANSWER_KIND[key]
    if parser == "official" and kind == "doa":
        return official_doa(text)
    if parser == "official" and kind == "match":
        return official_match(text)
    if kind == "doa":
        return _extract_doa(text, DOA_DECIMALS[key])
    if kind == "boxes":
        return _extract_boxes(text, units)
    return _extract_match(text)


# ----------------------------------------------------------------------------- prompts


def load_prompts(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Official prompt file -> task name -> prompt templates.

    The train file maps a task to a list of templates, the test file to one string; both
    come back as tuples so callers pick by index alike.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: prompt file must be a JSON object of task -> prompt(s)")
    out: dict[str, tuple[str, ...]] = {}
    for task, value in raw.items():
        templates = (value,) if isinstance(value, str) else value
        if (not isinstance(templates, list | tuple) or not templates
                or not all(isinstance(t, str) for t in templates)):
            raise ValueError(f"{path}: prompts of task {task!r} must be a string or a non-empty "
                             f"list of strings")
        out[task] = tuple(templates)
    return out


@lru_cache(maxsize=2)
def packaged_prompts(split: Literal["train", "test"] = "test") -> dict[str, tuple[str, ...]]:
    """The official prompt files shipped in ``jaeger_ros/data`` (copied, Apache-2.0)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return load_prompts(_DATA_DIR / f"prompts_{split}.json")


def _category_text(obj_category: str | Sequence[str]) -> str:
    # The official collator joins a category list as "a, b, and c" ("speaker, and speaker"
    # for two): reproduced because the model is trained on exactly these prompts.
    if isinstance(obj_category, str):
        return obj_category
    cats = [str(c) for c in obj_category]
    if not cats:
        raise ValueError("obj_category is empty")
    return cats[0] if len(cats) == 1 else ", ".join(cats[:-1]) + f", and {cats[-1]}"


def build_prompt(task: str, choice: int | random.Random | np.random.Generator = 0,
                 gender: str | None = None, obj_category: str | Sequence[str] | None = None,
                 prompts: Mapping[str, Sequence[str]] | None = None) -> str:
    """The instruction for one question (without CHAT_TEMPLATE or modality tokens).

    ``choice`` picks the template: an index, or an RNG for random choice as in training.
    ``prompts`` defaults to the packaged test prompts (one per task). ``{gender}`` is filled
    with male/female (M/F accepted), ``{obj_category}`` with the official list joining.
    """
    key = task_key(task)
    table = packaged_prompts("test") if prompts is None else prompts
    name = TASKS[key]
    if name not in table:
        raise ValueError(f"no prompt for task {name!r}; prompts have {sorted(table)}")
    templates = table[name]
    if isinstance(choice, random.Random):
        index = choice.randrange(len(templates))
    elif isinstance(choice, np.random.Generator):
        index = int(choice.integers(len(templates)))
    else:
        index = int(choice)
        if not 0 <= index < len(templates):
            raise ValueError(f"prompt index {index} outside 0..{len(templates) - 1} for {name!r}")
    text = templates[index]
    if "{gender}" in text:
        if gender is None:
            raise ValueError(f"prompt for {name!r} needs a gender")
        text = text.replace("{gender}", normalize_gender(gender))
    if "{obj_category}" in text:
        if obj_category is None:
            raise ValueError(f"prompt for {name!r} needs obj_category")
        text = text.replace("{obj_category}", _category_text(obj_category))
    return text
