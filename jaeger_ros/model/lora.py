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
OFFICIAL_TRAINABLE: dict[str, list[str]] = {"all": ["audio", "vision", "iv", "proj"]}
"""The released recipe (trainable_modules: [visual, audio_tower]): LoRA + the whole vision
tower (+merger) + the whole audio tower (+IV, fused ln_post/proj), every task."""
PAPER_TRAINABLE: dict[str, list[str]] = {
    "A": ["audio", "iv", "proj"], "B": ["audio", "iv", "proj"],
    "C": ["vision", "proj"],
    "D": ["audio", "iv", "vision", "proj"], "E": ["audio", "iv", "vision", "proj"],
}
"""The paper's per-task selective fine-tuning (an alternative to OFFICIAL_TRAINABLE): DoA
trains the audio tower + IV + projector, grounding the vision tower + projector, matching
both (LoRA always trains)."""
GROUPS = ("audio", "vision", "iv", "proj")


def _dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {name!r}") from None


def base_model_dir(config: JaegerConfig) -> Path:
    """config.base_model_path, which must be a folder (FileNotFoundError otherwise): checked
    by load_base and by training before any state is built."""
    path = Path(config.base_model_path or "")
    if not path.is_dir():
        raise FileNotFoundError(f"base_model_path is not a folder: {path}")
    return path


def load_base(config: JaegerConfig) -> tuple[nn.Module, Any]:
    """(thinker, tokenizer) from config.base_model_path, local files only."""
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration

    path = base_model_dir(config)
    extra = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        str(path), dtype=_dtype(config.dtype), local_files_only=True, **extra)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return thinker, tokenizer


def build_lora_model(config: JaegerConfig, tokenizer: Any = None) -> JaegerModel:
    """Pretrained thinker + JAEGER modules + LoRA (r, alpha, dropout from config.lora) on
    the decoder's q,k,v,o,gate,up,down. Base weights are frozen (in config.dtype); LoRA, the
    IV module and the widened audio projection start trainable, in float32 (set_trainable
    widens or narrows the selection; call cast_for_training after it)."""
    from peft import LoraConfig, get_peft_model

    thinker, base_tokenizer = load_base(config)
    model = JaegerModel(config, thinker, tokenizer or base_tokenizer)
    names = "|".join(config.lora["target_modules"])
    lora_cfg = LoraConfig(r=int(config.lora["r"]), lora_alpha=int(config.lora["alpha"]),
                          lora_dropout=float(config.lora["dropout"]),
                          target_modules=LLM_LORA_PATTERN.format(names=names), bias="none")
    model.thinker = get_peft_model(model.thinker, lora_cfg)
    set_trainable(model, {"all": ["iv", "proj"]}, [])
    cast_for_training(model)
    return model


def cast_for_training(model: JaegerModel) -> None:
    """Trainable parameters in float32 (the optimizer's master weights: bf16 weights lose
    updates below 2^-8 of their size, so an lr-1e-6 step would never land), frozen ones in
    the config's dtype (bf16 for the 7B base). The forward runs under bf16 autocast."""
    frozen = _dtype(model.config.dtype)
    with torch.no_grad():
        for p in model.parameters():
            want = torch.float32 if p.requires_grad else frozen
            if p.dtype != want and p.is_floating_point():
                p.data = p.data.to(want)


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
    """Freeze everything but LoRA and the groups the tasks train (union over the tasks and
    the "all" entry). Returns the groups made trainable."""
    groups = sorted({g for t in [*tasks, "all"] for g in trainable.get(t, [])})
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
        for k, p in own.items():  # a trained tower comes back trainable (float32) as it was saved
            if k in state and not p.requires_grad:
                p.requires_grad = True
    cast_for_training(model)
    return model.eval()
