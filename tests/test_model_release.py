"""The authors' released checkpoints: a tiny thinker wrapped and saved the way their trainer
saves it (their module -> peft LoRA with their decoder regex -> the thinker under its older
attribute names; only requires_grad parameters in model.safetensors; adapter_config.json
naming the base folder), loaded through JaegerPredictor.from_official / "official:DIR"."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from jaeger_ros.model.config import IV_DIM
from jaeger_ros.model.iv import RELEASE_ROWS
from jaeger_ros.model.modeling import CheckpointError, Towers
from jaeger_ros.model.predictor import JaegerPredictor
from jaeger_ros.model.release import release_key

THEIR_LORA_REGEX = r"model\.layers\..*?(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


class TheirThinker(nn.Module):
    """The thinker as the release's transformers named it: audio_tower, visual, model (the
    decoder), lm_head as direct children; ln_post/proj widened to d_model + 1203 and freshly
    initialised, as their ignore_mismatched_sizes load leaves them."""

    def __init__(self, thinker: nn.Module) -> None:
        super().__init__()
        towers = Towers(thinker)
        self.audio_tower, self.visual, self.model, self.lm_head = towers.audio, towers.visual, towers.llm, thinker.lm_head
        d = self.audio_tower.ln_post.normalized_shape[0]
        self.audio_tower.ln_post = nn.LayerNorm(d + IV_DIM)
        self.audio_tower.proj = nn.Linear(d + IV_DIM, self.audio_tower.proj.out_features)
        nn.init.normal_(self.audio_tower.proj.weight, std=0.02)


class TheirWrapper(nn.Module):
    def __init__(self, peft_model: nn.Module) -> None:
        super().__init__()
        self.model = peft_model


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_qwen_dir) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    base = tiny_qwen_dir
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(str(base))

    torch.manual_seed(1)
    theirs = TheirWrapper(get_peft_model(TheirThinker(thinker), LoraConfig(
        r=64, lora_alpha=128, lora_dropout=0.05, target_modules=THEIR_LORA_REGEX)))
    for name, p in theirs.named_parameters():
        p.requires_grad = "lora_" in name or "visual" in name or "audio_tower" in name  # trainable_modules
        if "lora_B" in name:
            nn.init.normal_(p, std=0.02)  # a trained adapter, not peft's zeros
    saved = {k: v.detach().clone().contiguous() for k, v in theirs.named_parameters() if v.requires_grad}
    ckpt = tmp_path_factory.mktemp("release")
    save_file(saved, str(ckpt / "model.safetensors"))
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 64}))
    return {"base": base, "ckpt": ckpt, "saved": saved}


def test_release_keys_are_their_wrapper_names(release):
    keys = list(release["saved"])
    assert all(k.startswith("model.base_model.model.") for k in keys)
    assert any(k.endswith("q_proj.lora_A.default.weight") and ".model.layers." in k for k in keys)
    assert any(".audio_tower.ln_post.weight" in k for k in keys) and any(".visual.merger." in k for k in keys)
    assert not any("lora_" in k and ("audio_tower" in k or "visual" in k) for k in keys)  # decoder-only LoRA


def test_from_official_puts_every_released_tensor_on_its_parameter(release):
    pred = JaegerPredictor.from_official(release["base"], release["ckpt"])
    model = pred.model
    assert pred.protocol == "official" and model.config.release_compat and model.config.iv == "classical"
    assert model.iv.axes == RELEASE_ROWS
    own = dict(model.named_parameters())
    from jaeger_ros.model.modeling import from_canonical

    for key, value in release["saved"].items():
        ours = from_canonical(model, {release_key(key): value})
        (name, v), = ours.items()
        target = own[name]
        assert target.shape == value.shape, key
        assert torch.equal(target.detach().float(), value.to(target.dtype).float()), key
    assert sum(1 for k in release["saved"] if "lora_B" in k) == \
        sum(1 for n in own if "lora_B" in n)  # every adapter of the decoder came from the file
    proj = Towers(model.base_thinker).audio.proj.weight
    assert proj.dtype == torch.float32 and float(proj.detach()[:, -IV_DIM:].abs().sum()) > 0  # their IV columns, not zeros


def test_official_spec_reads_the_base_folder_and_answers_with_the_official_protocol(release):
    pred = JaegerPredictor.from_pretrained(f"official:{release['ckpt']}")
    assert pred.protocol == "official" and pred.model.config.base_model_path == str(release["base"])
    foa = np.random.default_rng(0).normal(size=(4, 7000)).astype(np.float32) * 0.1  # not a 13 s window
    out = pred.predict(None, None, None, foa, 16000, "A")
    assert out.raw_text.startswith("azimuth: ")  # the forced prefix is part of the answer
    b = pred.model.builder
    inputs = b.inputs("A", foa=foa, whole_audio=True)
    assert inputs.foa.shape == (4, 7000)  # the whole file, neither cut nor padded
    trained = JaegerPredictor(pred.model, "trained")
    assert trained.model.builder.inputs("A", foa=foa).foa.shape == (4, 13 * 16000)


def test_a_foreign_or_misfitting_release_is_one_line_error(release, tmp_path):
    bad = dict(release["saved"])
    bad["model.base_model.model.talker.weight"] = torch.zeros(2)
    save_file(bad, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unknown part"):
        JaegerPredictor.from_official(release["base"], tmp_path)
    wrong = {k: (v[:, :-1] if v.ndim == 2 and "audio_tower.proj" in k else v) for k, v in release["saved"].items()}
    save_file({k: v.contiguous() for k, v in wrong.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="wrong shape") as err:
        JaegerPredictor.from_official(release["base"], tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="names no base model"):
        JaegerPredictor.from_pretrained(f"official:{tmp_path}")
