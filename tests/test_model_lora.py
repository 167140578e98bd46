"""The qwen2.5-omni-7b preset's loading and LoRA wrapping, on a tiny thinker saved to disk
in the same format (Qwen2_5OmniThinkerForConditionalGeneration.save_pretrained + tokenizer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jaeger_ros.model.config import JaegerConfig
from jaeger_ros.model.lora import PAPER_TRAINABLE, set_trainable
from jaeger_ros.model.modeling import JaegerModel

REPO = Path(__file__).resolve().parents[1]


def seven_b_config(base: Path) -> JaegerConfig:
    cfg = JaegerConfig.load(REPO / "config" / "qwen2.5-omni-7b.yaml")
    return cfg.replace(base_model_path=str(base), dtype="float32", max_audio_seconds=0.5, image_size=[112, 56])


@pytest.fixture(scope="module")
def model(tiny_qwen_dir) -> JaegerModel:
    return JaegerModel.from_config(seven_b_config(tiny_qwen_dir))


def test_lora_wraps_only_the_decoder_projections(model):
    lora = [n for n, _ in model.named_parameters() if "lora_" in n]
    layers = model.base_thinker.config.text_config.num_hidden_layers
    assert len(lora) == layers * 7 * 2  # q,k,v,o,gate,up,down x (A, B)
    assert not any("audio_tower" in n or "visual" in n for n in lora)  # not the towers' projections
    a = dict(model.named_parameters())[next(n for n in lora if "q_proj.lora_A" in n)]
    assert a.shape[0] == 64  # r
    peft_cfg = model.thinker.peft_config["default"]
    assert peft_cfg.lora_alpha == 128 and peft_cfg.lora_dropout == 0.05
    frozen_base = [n for n, p in model.named_parameters() if ".layers." in n and "lora_" not in n
                   and "audio_tower" not in n and "visual" not in n]
    assert frozen_base and not any(dict(model.named_parameters())[n].requires_grad for n in frozen_base)


def test_selective_fine_tuning_per_task(model):
    params = dict(model.named_parameters())
    set_trainable(model, PAPER_TRAINABLE, ["A"])  # DoA: audio tower + IV + projector
    assert all(p.requires_grad for n, p in params.items() if ".audio_tower." in n)
    assert not any(p.requires_grad for n, p in params.items() if ".visual.blocks." in n)
    set_trainable(model, PAPER_TRAINABLE, ["C"])  # grounding: vision + projector
    assert all(p.requires_grad for n, p in params.items() if ".visual." in n)
    assert not any(p.requires_grad for n, p in params.items() if n.startswith("iv."))
    assert all(p.requires_grad for n, p in params.items() if "lora_" in n)
    with pytest.raises(ValueError, match="unknown trainable group"):
        set_trainable(model, {"A": ["everything"]}, ["A"])


def test_lora_checkpoint_round_trip_from_the_local_base(model, tiny_qwen_dir, tmp_path):
    set_trainable(model, PAPER_TRAINABLE, ["D"])
    with torch.no_grad():  # make the adapters non-trivial so the round trip means something
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    model.save_pretrained(tmp_path / "ck")
    loaded = JaegerModel.from_pretrained(tmp_path / "ck")
    rng = np.random.default_rng(0)
    b = model.builder
    x = b.inputs("A", foa=rng.normal(size=(4, 8000)).astype(np.float32))
    batch = b.collate([(*b.encode(b.prompt("A", "Where?"), "Left"), x)])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(batch).logits, loaded(batch).logits, atol=1e-5)
    stored = (tmp_path / "ck" / "model.safetensors").stat().st_size
    full = sum(p.numel() * 4 for p in model.parameters())
    assert stored < full  # only adapters + trained modules, not the base weights


def test_missing_local_base_is_a_clear_error(tmp_path):
    cfg = seven_b_config(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="base_model_path"):
        JaegerModel.from_config(cfg)
