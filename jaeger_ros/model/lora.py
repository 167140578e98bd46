"""The qwen2.5-omni-7b preset: a pretrained thinker from a LOCAL folder + peft LoRA on its LLM.

Nothing is downloaded: `base_model_path` must hold the thinker weights/config and the
tokenizer in transformers' format (a full Qwen2.5-Omni folder works: the thinker class
ignores the talker weights). Any thinker saved in that format loads the same way, which is
how the tests exercise this path with a tiny thinker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from jaeger_ros.model.config import JaegerConfig
from jaeger_ros.model.modeling import WEIGHTS, JaegerModel, Towers, from_canonical, to_canonical

LLM_LORA_PATTERN = r"^(?!.*(audio_tower|visual)).*\.layers\.\d+\.(self_attn|mlp)\.({names})"
"""LoRA goes on the decoder only: the audio and vision towers also have q/k/v/gate/up/down
projections under the same names."""
PAPER_TRAINABLE: dict[str, list[str]] = {
    "A": ["audio", "iv", "proj"], "B": ["audio", "iv", "proj"],
    "C": ["vision", "proj"],
    "D": ["audio", "iv", "vision", "proj"], "E": ["audio", "iv", "vision", "proj"],
}
"""Selective fine-tuning of the paper: DoA trains the audio tower + IV + projector,
grounding the vision tower + projector, matching both (LoRA always trains)."""
GROUPS = ("audio", "vision", "iv", "proj")


def _dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {name!r}") from None


def load_base(config: JaegerConfig) -> tuple[nn.Module, Any]:
    """(thinker, tokenizer) from config.base_model_path, local files only."""
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration

    path = Path(config.base_model_path or "")
    if not path.is_dir():
        raise FileNotFoundError(f"base_model_path is not a folder: {path}")
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        str(path), dtype=_dtype(config.dtype), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return thinker, tokenizer


def build_lora_model(config: JaegerConfig, tokenizer: Any = None) -> JaegerModel:
    """Pretrained thinker + JAEGER modules + LoRA (r, alpha, dropout from config.lora) on
    the decoder's q,k,v,o,gate,up,down. Base weights are frozen; LoRA, the IV module and
    the widened audio projection start trainable (set_trainable narrows it per task)."""
    from peft import LoraConfig, get_peft_model

    thinker, base_tokenizer = load_base(config)
    model = JaegerModel(config, thinker, tokenizer or base_tokenizer)
    names = "|".join(config.lora["target_modules"])
    lora_cfg = LoraConfig(r=int(config.lora["r"]), lora_alpha=int(config.lora["alpha"]),
                          lora_dropout=float(config.lora["dropout"]),
                          target_modules=LLM_LORA_PATTERN.format(names=names), bias="none")
    model.thinker = get_peft_model(model.thinker, lora_cfg)
    set_trainable(model, {"all": ["iv", "proj"]}, ["all"])
    dtype = _dtype(config.dtype)
    if model.iv is not None:
        model.iv.to(dtype)
    return model


def _group_params(model: JaegerModel, group: str) -> Iterable[nn.Parameter]:
    base = Towers(model.base_thinker)
    if group == "audio":
        return base.audio.parameters()
    if group == "vision":
        return base.visual.parameters()
    if group == "iv":
        return model.iv.parameters() if model.iv is not None else iter(())
    if group == "proj":
        return [*base.audio.ln_post.parameters(), *base.audio.proj.parameters(),
                *base.visual.merger.parameters()]
    raise ValueError(f"unknown trainable group {group!r}; expected one of {GROUPS}")


def set_trainable(model: JaegerModel, trainable: dict[str, list[str]], tasks: Iterable[str]) -> list[str]:
    """Freeze everything but LoRA and the groups the tasks train (union over tasks).
    Returns the groups made trainable."""
    groups = sorted({g for t in tasks for g in trainable.get(t, [])})
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise ValueError(f"unknown trainable group(s) {bad}; expected {GROUPS}")
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    for g in groups:
        for p in _group_params(model, g):
            p.requires_grad = True
    return groups


def trainable_state(model: JaegerModel) -> dict[str, torch.Tensor]:
    """What a LoRA checkpoint stores: every parameter that is not a frozen base weight
    (LoRA adapters, IV module, fused projections, any tower trained by selection)."""
    return {k: p.detach().contiguous().cpu() for k, p in model.named_parameters()
            if p.requires_grad or "lora_" in k or k.startswith("iv.")}


def save_lora(model: JaegerModel, out: Path) -> None:
    save_file(to_canonical(model, trainable_state(model)), str(Path(out) / WEIGHTS), metadata={"format": "jaeger_ros.lora/1"})


def load_lora(config: JaegerConfig, path: Path, tokenizer: Any) -> JaegerModel:
    """Rebuild from the base model and load the saved trainable weights (all must be used)."""
    model = build_lora_model(config, tokenizer)
    state = from_canonical(model, load_file(str(Path(path) / WEIGHTS)))
    own = dict(model.named_parameters())
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"{path}: weights not in the model: {unknown[:5]}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
    return model.eval()
