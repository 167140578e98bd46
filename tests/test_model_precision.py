"""Mixed precision and engines on the 7B code path (a tiny thinker saved to disk and loaded as
the qwen2.5-omni-7b preset loads Qwen2.5-Omni-7B).

With the base in bf16, trainable parameters must still be float32 master weights: at the
official lr of 1e-6 a bf16 weight of size 0.02 cannot change at all (its spacing is ~1e-4),
so only float32 weights under bf16 autocast move as a pure-float32 run moves them."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jaeger_ros.model.config import JaegerConfig, TrainConfig
from jaeger_ros.model.lora import cast_for_training, set_trainable
from jaeger_ros.model.modeling import JaegerModel, Towers
from jaeger_ros.model.train import train
from test_model_train import write_toy_dataset

REPO = Path(__file__).resolve().parents[1]
TRAINABLE = {"all": ["audio", "iv", "proj"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root, "train", 3, seconds=0.5)
    return root


def seven_b(base: Path, dtype: str) -> JaegerConfig:
    return JaegerConfig.load(REPO / "config" / "qwen2.5-omni-7b.yaml").replace(
        base_model_path=str(base), dtype=dtype, iv="classical", max_audio_seconds=0.5, image_size=[112, 56],
        max_new_tokens=8)


def start_weights(cfg: JaegerConfig) -> dict[str, torch.Tensor]:
    model = JaegerModel.from_config(cfg)
    set_trainable(model, TRAINABLE, ["A"])
    cast_for_training(model)
    return {k: p.detach().float().clone() for k, p in model.named_parameters() if p.requires_grad}


def run(base: Path, data: Path, out: Path, dtype: str, mixed: str) -> dict[str, torch.Tensor]:
    tc = TrainConfig(tasks=("A",), trainable=TRAINABLE, max_steps=6, batch_size=2, lr=1e-6, warmup_steps=0,
                     min_lr_ratio=1.0, adam_betas=(0.9, 0.999), save_every=6, eval_every=1000, log_every=6,
                     mixed_precision=mixed, loss="token_mean")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # one process, two precision settings
    train(tc, seven_b(base, dtype), [str(data)], out, progress=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    return load_file(str(out / "last" / "model.safetensors"))


def test_bf16_base_trains_its_float32_weights_as_far_as_pure_float32(tiny_qwen_dir, data, tmp_path):
    fp32 = run(tiny_qwen_dir, data, tmp_path / "fp32", "float32", "no")
    mixed = run(tiny_qwen_dir, data, tmp_path / "bf16", "bfloat16", "bf16")
    assert {str(v.dtype) for v in mixed.values()} == {"torch.float32"}  # checkpoints hold float32 master weights
    assert fp32.keys() == mixed.keys()
    model = JaegerModel.from_config(seven_b(tiny_qwen_dir, "float32"))
    proj_key = next(k for k, p in model.named_parameters() if p is Towers(model.base_thinker).audio.proj.weight)
    d_model = Towers(model.base_thinker).audio.ln_post.norm.normalized_shape[0] - 1203
    # zero-initialised IV columns of the fused projection: moved as far in both runs
    far = {name: float(w[proj_key][:, d_model:].abs().mean()) for name, w in (("fp32", fp32), ("bf16", mixed))}
    assert far["fp32"] > 1e-6 and abs(far["bf16"] - far["fp32"]) <= 0.1 * far["fp32"], far
    # pretrained audio-tower weights (stored in bf16 in the base): moved as far too
    start32, start16 = start_weights(seven_b(tiny_qwen_dir, "float32")), start_weights(seven_b(tiny_qwen_dir, "bfloat16"))
    tower = [k for k in start32 if ".audio_tower.layers." in k and k.endswith("fc1.weight")]
    assert tower
    moved = {name: np.mean([float((w[k] - s[k]).abs().mean()) for k in tower])
             for name, w, s in (("fp32", fp32, start32), ("bf16", mixed, start16))}
    assert moved["fp32"] > 1e-6 and abs(moved["bf16"] - moved["fp32"]) <= 0.1 * moved["fp32"], moved


def test_deepspeed_zero2_bf16_initialises_and_steps_the_tiny_model(tiny_qwen_dir, tmp_path):
    """ZeRO-2 bf16 through accelerate's DeepSpeed plugin on one CPU process (gloo): the engine
    wraps the model, shards the optimizer and takes a step. Runs where deepspeed is importable
    (it is not a dependency: pip install deepspeed==0.19.8)."""
    pytest.importorskip("deepspeed")
    script = tmp_path / "ds.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DeepSpeedPlugin
        from jaeger_ros.model.config import JaegerConfig
        from jaeger_ros.model.lora import cast_for_training
        from jaeger_ros.model.modeling import JaegerModel
        import numpy as np

        cfg = JaegerConfig.load({str(REPO / "config" / "qwen2.5-omni-7b.yaml")!r}).replace(
            base_model_path={str(tiny_qwen_dir)!r}, dtype="bfloat16", iv="classical", max_audio_seconds=0.5,
            image_size=[112, 56])
        plugin = DeepSpeedPlugin(zero_stage=2, gradient_clipping=1.0)
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 2
        accel = Accelerator(mixed_precision="bf16", deepspeed_plugin=plugin)
        model = JaegerModel.from_config(cfg)
        cast_for_training(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        engine, opt = accel.prepare(model, opt)
        assert type(engine).__name__ == "DeepSpeedEngine" and engine.zero_optimization_stage() == 2
        b = model.builder
        x = b.inputs("A", foa=np.random.default_rng(0).normal(size=(4, 8000)).astype(np.float32))
        batch = b.collate([(*b.encode(b.prompt("A", "Where?"), "Left"), x)] * 2)
        before = {{k: v.detach().float().clone() for k, v in engine.module.named_parameters() if "lora_B" in k}}
        loss = engine(batch).loss
        accel.backward(loss)
        opt.step()
        after = {{k: v.detach().float() for k, v in engine.module.named_parameters() if "lora_B" in k}}
        assert any(not torch.equal(before[k], after[k]) for k in before)
        print("ZERO2-OK", float(loss))
    """))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ZERO2-OK" in proc.stdout, (proc.stdout[-2000:], proc.stderr[-3000:])
