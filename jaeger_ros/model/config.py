"""One config dataclass for every JAEGER preset, read from YAML; unknown keys fail loudly.

Why one dataclass: the tiny CPU preset and the Qwen2.5-Omni-7B preset run the same model
code; only the thinker's size (random init vs a local pretrained path), the input
resolution and the fine-tuning recipe differ.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IV_KINDS = ("neural", "classical", "none")
"""Spatial audio path: Neural IV, Classical IV, or none (W channel only: the no-FOA ablation)."""
PRESETS = ("tiny", "qwen2.5-omni-7b")
BOX_UNITS = ("m", "cm")
FUSED_INITS = ("pretrained", "random")
LOSSES = ("sample_mean", "token_mean")
AUX_HEADS = ("audio_dir", "llm_dir", "llm_label", "llm_attend", "patch_mask", "patch_box", "patch_label")
"""The training-only auxiliary heads (jaeger_ros/model/auxiliary.py)."""
IV_DIM = 1203
"""3 x 401 intensity-vector features per frame (n_fft 800 at 16 kHz)."""

# Token strings of Qwen2.5-Omni's tokenizer that the thinker and the prompt format need.
SPECIAL_TOKENS = {
    "pad": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "audio": "<|AUDIO|>",
    "audio_bos": "<|audio_bos|>",
    "audio_eos": "<|audio_eos|>",
    "image": "<|IMAGE|>",
    "video": "<|VIDEO|>",
    "vision_bos": "<|vision_bos|>",
    "vision_eos": "<|vision_eos|>",
}


@dataclass
class JaegerConfig:
    """Model + input-pipeline settings (the training recipe lives in TrainConfig)."""

    preset: str = "tiny"
    """"tiny" (random init, own tokenizer) or "qwen2.5-omni-7b" (pretrained, LoRA)."""
    iv: str = "neural"
    """Spatial audio path: "neural", "classical" or "none" (no FOA: W only)."""
    depth_pe: bool = True
    """Add the depth back-projection 3D sinusoidal PE to the vision patch features."""
    depth_pe_absolute: bool = False
    """A deviation from JAEGER (which centres the point cloud on its mean): the PE of each
    patch's camera-frame point itself, so the vision tokens carry metric position, which
    grounding (task C) answers in. Off for the 7B preset and the release's checkpoints."""
    image_size: tuple[int, int] = (280, 168)
    """(width, height) the RGB-D frame is resized to; multiples of patch_size * merge."""
    max_audio_seconds: float = 8.0
    """Longer audio is cut (the reference reads at most 13 s)."""
    box_units: str = "cm"
    """Units the model writes boxes in: "cm" integers (the official model's target) or "m"."""
    max_new_tokens: int = 160
    """Generation budget: three boxes in centimetres need about 130 tokens."""
    thinker: dict[str, Any] = field(default_factory=dict)
    """tiny: {"text": {...}, "audio": {...}, "vision": {...}} Qwen2.5-Omni sub-config kwargs."""
    tokenizer_vocab_size: int = 512
    """tiny: BPE vocabulary size (digits are always single tokens)."""
    integer_tokens: tuple[int, int] | None = None
    """tiny: (lo, hi): every integer in this range is one token (answers' angles and box
    centimetres), added to the BPE vocabulary; None: numbers are written digit by digit."""
    base_model_path: str | None = None
    """qwen2.5-omni-7b: local folder with the thinker/processor/tokenizer (no downloads)."""
    lora: dict[str, Any] = field(default_factory=lambda: {
        "r": 64, "alpha": 128, "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]})
    """qwen2.5-omni-7b: peft LoRA on the LLM decoder."""
    dtype: str = "float32"
    """Dtype of the FROZEN pretrained weights ("bfloat16" for the 7B preset). Trainable
    parameters are always kept in float32 for the optimizer (lora.cast_for_training); the
    forward runs under the recipe's mixed_precision autocast."""
    attn_implementation: str | None = None
    """qwen2.5-omni-7b: the thinker's attention kernel ("flash_attention_2" needs the
    flash-attn package and a GPU; "sdpa", "eager"); None: transformers' default (sdpa)."""
    fused_init: str = "pretrained"
    """Start of the fused audio ln_post/proj (d_model + 1203 inputs): "pretrained" (ours: the
    pretrained weights in the d_model part, zero IV columns, so the tower's output is unchanged
    at the start) or "random" (the authors': their base load re-initialises both, proj
    N(0, 0.02) with bias 0, LayerNorm weight 1 and bias 0)."""
    modality_newline: bool = False
    """Training prompt: a newline after <|vision_eos|> and after <|audio_eos|>, as the authors'
    collator writes it (False: the markers joined, what the shipped tiny checkpoint saw)."""
    release_compat: bool = False
    """Reproduce the authors' released input handling, for their checkpoints only: depth PE
    mapped to patches in the release's order (a documented defect), point clouds and FOA
    rounded to bf16 before the PE / IV, IV fed FOA rows 1-3 in file order, IV frames trimmed
    to len // 320 and interpolated to the audio tower's 50 Hz length before its pooling."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.iv not in IV_KINDS:
            raise ValueError(f"iv must be one of {IV_KINDS}, got {self.iv!r}")
        if self.box_units not in BOX_UNITS:
            raise ValueError(f"box_units must be one of {BOX_UNITS}, got {self.box_units!r}")
        size = tuple(int(v) for v in self.image_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"image_size must be (width, height) > 0, got {self.image_size}")
        self.image_size = size  # type: ignore[assignment]
        if self.integer_tokens is not None:
            lo, hi = (int(v) for v in self.integer_tokens)
            if lo > hi:
                raise ValueError(f"integer_tokens must be (lo, hi) with lo <= hi, got {self.integer_tokens}")
            self.integer_tokens = (lo, hi)  # type: ignore[assignment]
        if self.fused_init not in FUSED_INITS:
            raise ValueError(f"fused_init must be one of {FUSED_INITS}, got {self.fused_init!r}")
        if self.depth_pe_absolute and self.release_compat:
            raise ValueError("depth_pe_absolute cannot be used with release_compat (the release centres its clouds)")
        if self.max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds must be positive, got {self.max_audio_seconds}")
        if self.preset == "qwen2.5-omni-7b" and not self.base_model_path:
            raise ValueError("the qwen2.5-omni-7b preset needs base_model_path (a local folder)")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        if self.integer_tokens is not None:
            d["integer_tokens"] = list(self.integer_tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JaegerConfig":
        return cls(**_checked(cls, d, "model config"))

    def replace(self, **changes: Any) -> "JaegerConfig":
        """A copy with some fields changed (unknown names -> ValueError)."""
        return JaegerConfig.from_dict({**self.to_dict(), **_checked(JaegerConfig, changes, "override")})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "JaegerConfig":
        return cls.from_dict(_read_mapping(path))


@dataclass
class TrainConfig:
    """Training recipe (config/train_tiny.yaml)."""

    model: str | dict[str, Any] = "config/tiny.yaml"
    """Model config: a YAML path (relative to this file's folder or the CWD) or a mapping."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields of the model config to change (e.g. iv: classical for an ablation)."""
    tasks: tuple[str, ...] = ("A", "B", "C", "D", "E")
    source_weights: list[float] | None = None
    """Sampling weight of each --data root (default: proportional to its size)."""
    init_from: str | None = None
    """Start from this checkpoint folder ("default" = the packaged one) instead of a fresh
    model: fine-tuning, e.g. on bag-derived data. Its own model config is used."""
    trainable: dict[str, list[str]] | None = None
    """7B: task letter (or "all") -> module groups ("audio", "vision", "iv", "proj") trained
    besides LoRA; the official recipe is {all: [audio, vision, iv, proj]}, the paper's per-task
    selective fine-tuning lora.PAPER_TRAINABLE. None: the model's own default (tiny: all of it;
    7B: LoRA + iv + proj)."""
    init_audio: str | None = None
    """Staged start: load only the audio-tower (+IV, fused ln_post/proj) weights of this
    checkpoint folder (a run of ours) before training, as the official audio_init_ckpt."""
    init_visual: str | None = None
    """Staged start: load only the vision-tower weights of this checkpoint folder."""
    epochs: float | None = None
    """When set, max_steps = epochs x the train entries / the global batch (the official
    recipe: 20); every epoch visits each entry once, in an order fixed by seed and epoch."""
    max_steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (official 7B recipe: 0.9, 0.999)."""
    loss: str = "sample_mean"
    """"sample_mean" (each sample's answer weighs the same) or "token_mean" (the official
    recipe: every answer token of the batch weighs the same)."""
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 500
    eval_samples: int | None = 64
    """Validation entries per task for the periodic check (loss + answer accuracy); None: the
    whole validation split (the authors keep the model of the best loss on all of it)."""
    save_every: int = 500
    seed: int = 0
    mixed_precision: str = "no"
    """accelerate's mixed precision: "no", "bf16" or "fp16"."""
    num_workers: int = 0
    """DataLoader worker processes per rank that read sample folders (0 = in this process)."""
    feature_cache: str | None = None
    """Folder for derived inputs (log-mel, patches, depth PE) keyed by the sample's file
    contents and the model's input settings; None reads and computes them every time."""
    precompute_iv: bool = False
    """Classical IV: compute it once per sample in the reader (and the feature cache) at the
    token rate instead of every step in the model; the same numbers, the FOA is then not loaded."""
    integer_sigma: float = 0.0
    """Tiny preset with integer tokens: train each answer integer against a Gaussian of this
    width (in the integer's own units) over the neighbouring values instead of the one
    token, so an answer 1 off costs less than one 30 off. 0: plain cross-entropy."""
    lm_weight: float = 1.0
    """Weight of the answer cross-entropy (0: pre-train the encoders on the auxiliary losses)."""
    aux_weights: dict[str, float] = field(default_factory=dict)
    """Training-only auxiliary heads (jaeger_ros/model/auxiliary.py) -> loss weight: audio_dir,
    llm_dir, llm_label, patch_mask, patch_box. Empty: none (the tiny preset only)."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step: global batch = batch_size x processes x this (one 8-GPU
    node reaches the paper's 72 with batch_size 3 and 3 here)."""
    gradient_checkpointing: bool = False
    """Recompute the thinker's activations in the backward pass (less memory, ~30 % more time)."""
    log_every: int = 20
    max_minutes: float | None = None
    """Wall-time budget: after 20 steps, and again every 50 from the recent pace, the
    schedule's length is set to the steps that fit (at most max_steps), so a time-limited job
    still ends its cosine decay."""

    def __post_init__(self) -> None:
        self.tasks = tuple(str(t).upper() for t in self.tasks)
        bad = [t for t in self.tasks if t not in "ABCDE" or len(t) != 1]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be letters A-E, got {self.tasks}")
        for name in ("max_steps", "batch_size", "eval_every", "save_every", "log_every", "grad_accum_steps"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.integer_sigma < 0:
            raise ValueError(f"integer_sigma must be >= 0, got {self.integer_sigma}")
        if self.integer_sigma > 0 and self.loss != "sample_mean":
            raise ValueError("integer_sigma needs loss: sample_mean")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"lr must be > 0 and warmup_steps >= 0, got {self.lr}, {self.warmup_steps}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no/bf16/fp16, got {self.mixed_precision!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        betas = tuple(float(b) for b in self.adam_betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        self.adam_betas = betas  # type: ignore[assignment]
        unknown = sorted(set(self.aux_weights) - set(AUX_HEADS))
        if unknown:
            raise ValueError(f"aux_weights: unknown head(s) {unknown}; known: {list(AUX_HEADS)}")
        if self.lm_weight < 0 or any(float(w) < 0 for w in self.aux_weights.values()):
            raise ValueError("lm_weight and aux_weights must be >= 0")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tasks"] = list(self.tasks)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls(**_checked(cls, _read_mapping(path), str(path)))

    def model_config(self, base_dir: str | Path | None = None) -> JaegerConfig:
        """The model config this recipe trains, with its overrides applied."""
        if isinstance(self.model, dict):
            cfg = JaegerConfig.from_dict(self.model)
        else:
            path = Path(self.model)
            candidates = [path] if path.is_absolute() else [Path(base_dir or ".") / path, path,
                                                              Path(base_dir or ".") / path.name]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"model config {self.model} not found (tried {candidates})")
            cfg = JaegerConfig.load(found)
        return cfg.replace(**self.model_overrides) if self.model_overrides else cfg


def _read_mapping(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config not found: {p}")
    data = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml") else json.loads(p.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of settings")
    return data


def _checked(cls: type, d: dict[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{what}: unknown setting(s) {unknown}; known: {sorted(names)}")
    return dict(d)
