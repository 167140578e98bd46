"""The authors' released JAEGER checkpoints on a local Qwen2.5-Omni-7B.

Their trainer wraps only the thinker in a peft LoRA model inside its own module (attribute
`model`) and saves the requires_grad parameters alone, named after the transformers layout
of its time: `model.base_model.model.{audio_tower,visual,model,lm_head}.…` with LoRA as
`….lora_A.default.weight`. Their audio tower's ln_post/proj are plain LayerNorm/Linear over
1280 + 1203 inputs (ours wrap the LayerNorm: `ln_post.norm`), their merger is unwrapped (ours:
`merger.merger`), and a Neural IV, when present, is `audio_tower.foa_iv_encoder` with
`conv_layers.i` / `linear_layers.j` (ours: `iv.cnn.i` / `iv.head.j`). The committed release
uses Classical IV (no IV weights). Their input handling is reproduced by release_compat.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from jaeger_ros.data.dataset import one_line
from jaeger_ros.model.config import JaegerConfig
from jaeger_ros.model.modeling import CANONICAL_PREFIX, WEIGHTS, CheckpointError, JaegerModel, from_canonical

WRAPPER_PREFIX = "model.base_model.model."
"""Their SALMONN3D.model (peft) -> base_model (LoraModel) -> model (the thinker)."""
_PARTS = {"audio_tower.": "audio", "visual.": "visual", "model.": "llm", "lm_head.": "lm_head"}
_IV = "audio_tower.foa_iv_encoder."


def release_config(qwen_dir: str | Path, neural_iv: bool = False, dtype: str = "bfloat16") -> JaegerConfig:
    """The model the release was trained as: Qwen2.5-Omni-7B thinker, LoRA r64/a128/d0.05 on
    the decoder, depth PE, IV fused into the audio tower, boxes in cm, 13 s of audio."""
    return JaegerConfig(preset="qwen2.5-omni-7b", base_model_path=str(qwen_dir), dtype=dtype,
                        iv="neural" if neural_iv else "classical", depth_pe=True, image_size=(672, 392),
                        max_audio_seconds=13.0, box_units="cm", max_new_tokens=512, release_compat=True)


def release_key(key: str) -> str:
    """Their saved name -> our canonical checkpoint name (ValueError for anything else)."""
    if not key.startswith(WRAPPER_PREFIX):
        raise ValueError(f"not a key of the released wrapper: {key!r}")
    inner = key[len(WRAPPER_PREFIX):]
    if inner.startswith(_IV):
        rest = inner[len(_IV):].replace("conv_layers.", "cnn.", 1).replace("linear_layers.", "head.", 1)
        return "iv." + rest
    for theirs, part in _PARTS.items():
        if inner.startswith(theirs):
            rest = inner[len(theirs):]
            if part == "audio" and rest.startswith("ln_post."):
                rest = "ln_post.norm." + rest[len("ln_post."):]
            if part == "visual" and rest.startswith("merger."):
                rest = "merger.merger." + rest[len("merger."):]
            return CANONICAL_PREFIX[part] + rest
    raise ValueError(f"unknown part in released key {key!r}")


def load_release(qwen_dir: str | Path, checkpoint: str | Path, dtype: str = "bfloat16",
                 device: str | torch.device = "cpu") -> JaegerModel:
    """Qwen2.5-Omni-7B from `qwen_dir` + the released trainable weights (a model.safetensors
    or its folder). Every stored tensor must land on a parameter of the same shape; the rest
    keeps the base weights, as their loader (strict=False) does. CheckpointError otherwise."""
    from jaeger_ros.model.lora import build_lora_model

    path = Path(checkpoint)
    path = path / WEIGHTS if path.is_dir() else path
    try:
        stored = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: unreadable released weights ({one_line(e)})") from None
    try:
        canonical = {release_key(k): v for k, v in stored.items()}
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    config = release_config(qwen_dir, neural_iv=any(k.startswith("iv.") for k in canonical), dtype=dtype)
    try:
        model = build_lora_model(config)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{qwen_dir}: cannot load the base model ({one_line(e)})") from None
    own = dict(model.named_parameters())
    state = from_canonical(model, canonical)
    unknown = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and own[k].shape != state[k].shape]
    if unknown or wrong:
        raise CheckpointError(f"{path}: does not fit {qwen_dir} (not in the model: {unknown[:3]}, "
                              f"wrong shape: {wrong[:3]})")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
    return model.to(device).eval()


def parse_spec(spec: str) -> tuple[Path, Path]:
    """`official:CKPT_DIR[@QWEN_DIR]` -> (qwen_dir, checkpoint dir). Without @QWEN_DIR the base
    folder is the one the release names in CKPT_DIR/adapter_config.json (its
    base_model_name_or_path), as their trainer saved it."""
    body = spec.removeprefix("official:")
    ckpt, _, qwen = body.partition("@")
    if not ckpt:
        raise CheckpointError(f"{spec!r}: expected official:CKPT_DIR[@QWEN_DIR]")
    if not qwen:
        adapter = Path(ckpt) / "adapter_config.json"
        try:
            qwen = json.loads(adapter.read_text()).get("base_model_name_or_path") or ""
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{adapter}: names no base model ({one_line(e)}); "
                                  f"give official:CKPT_DIR@QWEN_DIR") from None
        if not qwen:
            raise CheckpointError(f"{adapter}: names no base model; give official:CKPT_DIR@QWEN_DIR")
    return Path(qwen), Path(ckpt)

