"""The tiny preset's CPU training: integer answer tokens, the content-keyed feature cache with
the precomputed Classical IV, the training-only auxiliary heads and the staged recipe.

Data: the small physical toy dataset of test_model_train (plane-wave FOA from the talking
loudspeaker, boxes drawn into RGB, depth and instance mask)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D
from jaeger_ros.model import auxiliary
from jaeger_ros.core.geometry import Intrinsics
from jaeger_ros.model.data import JaegerDataset, SampleReader, collate_items, load_examples
from jaeger_ros.model.depth_pe import depth_pe, pooled_points, sine_pe_3d
from jaeger_ros.model.modeling import AUX_PREFIX, JaegerModel, SoftIntegers, Towers, answer_loss
from jaeger_ros.model.tokenizer import integer_token_values, train_tokenizer
from jaeger_ros.model.train import StageSchedule, load_recipe, train, train_recipe
from test_model_train import model_config, recipe, write_toy_dataset

HEAD_WEIGHTS = {name: 1.0 for name in ("audio_dir", "llm_dir", "llm_label", "llm_attend", "patch_mask", "patch_box",
                                        "patch_label")}


def visible_matches(exs: list, reader: SampleReader) -> list:
    """The matching entries whose answered loudspeaker covers an image token (the toy's
    loudspeakers are small, and a token goes to the one covering most of it)."""
    return [ex for ex in exs if answers.MATCH_LABELS.index(ex.answer) in reader(ex).aux["patch_label"].tolist()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root, "train", 4)
    write_toy_dataset(root, "val", 1, seed=1)
    return root


@pytest.fixture(scope="module")
def model():
    return JaegerModel.build_tiny(model_config()).eval()


def test_integer_tokens_make_each_answer_number_one_token():
    tok = train_tokenizer(512, integers=(-1000, 1000))
    values = integer_token_values(tok)
    rng = np.random.default_rng(0)
    texts = [answers.format_doa(az, el) for az, el in zip(rng.uniform(-180, 180, 50), rng.uniform(-90, 90, 50))]
    texts += [answers.format_doa(-180, 90), answers.format_doa(180, -90), answers.format_doa(0, 0)]
    boxes = [Box3D(rng.uniform(-4, 4, 3), rng.uniform(0.1, 1.2, 3)) for _ in range(3)]
    texts.append(answers.format_boxes(boxes, "cm"))
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text  # byte-identical answers
        written = [values[i] for i in ids if i in values]
        assert written == [int(n) for n in re.findall(r"-?\d+", text)], (text, written)  # one token each
    # outside the range: the digit tokens still write it exactly
    assert tok.decode(tok("x 12345 y", add_special_tokens=False)["input_ids"]) == "x 12345 y"


def test_feature_cache_reads_identical_tensors_and_a_changed_file_invalidates(model, data, tmp_path, monkeypatch):
    ex = next(e for e in load_examples(data, "train", ["D"]))
    reader = SampleReader(model.builder, tmp_path / "cache", precompute_iv=True, aux=True)
    first = reader(ex)
    assert first.foa is None and first.iv.shape == (model.builder.n_audio_tokens, 1203)
    assert first.aux["patch_mask"].max() > 0

    def no_compute(*_a):  # a second epoch must not recompute anything
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(reader, "_compute", no_compute)
    second = reader(ex)
    for name in ("mel", "iv", "patches", "pe"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert all(torch.equal(first.aux[k], second.aux[k]) for k in first.aux)
    monkeypatch.undo()
    rgb = Path(ex.folder) / "rgb.png"
    original = rgb.read_bytes()
    try:
        img = np.asarray(Image.open(rgb)).copy()
        img[:, :20] = 255
        Image.fromarray(img).save(rgb)
        third = reader(ex)
        assert not torch.equal(first.patches, third.patches)
    finally:
        rgb.write_bytes(original)
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2


def test_precomputed_iv_gives_the_model_the_same_logits(model, data):
    exs = load_examples(data, "train", ["A", "E"])[:3]
    batches = []
    for precompute in (False, True):
        ds = JaegerDataset(exs, SampleReader(model.builder, precompute_iv=precompute), train_prompts=False)
        batches.append(collate_items(model.builder, [ds[i] for i in range(len(exs))]))
    assert "foa" in batches[0] and "iv_tokens" in batches[1] and "foa" not in batches[1]
    with torch.no_grad():
        a, b = (model(batch).logits for batch in batches)
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def test_aux_heads_reach_the_towers_and_stay_out_of_inference(data, tmp_path):
    m = JaegerModel.build_tiny(model_config())
    heads = auxiliary.attach(m)
    reader = SampleReader(m.builder, precompute_iv=True, aux=True)
    exs = [load_examples(data, "train", [t])[0] for t in "ABC"]
    exs += [visible_matches(load_examples(data, "train", [t]), reader)[0] for t in "DE"]
    ds = JaegerDataset(exs, reader)
    batch = collate_items(m.builder, [ds[i] for i in range(len(exs))])
    with auxiliary.capture(m) as seen:
        out = m(batch, output_hidden_states=True)
    numbers = torch.tensor(sorted(integer_token_values(m.tokenizer)))
    parts = auxiliary.losses(heads, batch, seen, out.hidden_states[-1], numbers, m.token_ids["image"])
    assert set(parts) == set(HEAD_WEIGHTS)
    sum(parts.values()).backward()
    towers = Towers(m.base_thinker)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in towers.audio.layers.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in towers.visual.blocks.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in towers.llm.layers.parameters())
    # a checkpoint keeps the heads; loading it for inference drops them and answers the same
    m.eval()
    m.save_pretrained(tmp_path / "ckpt")
    assert any(k.startswith(AUX_PREFIX) for k in load_file(str(tmp_path / "ckpt" / "model.safetensors")))
    loaded = JaegerModel.from_pretrained(tmp_path / "ckpt")
    assert getattr(loaded, "aux_heads", None) is None
    with torch.no_grad():
        assert torch.allclose(m(batch).logits, loaded(batch).logits, atol=1e-5)


def test_aux_losses_are_logged_per_head_and_task(data, tmp_path):
    out = train(recipe(max_steps=3, precompute_iv=True, aux_weights=HEAD_WEIGHTS), model_config(), [str(data)],
                tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "aux" in r]
    assert set().union(*(r["aux"] for r in rows)) == set(HEAD_WEIGHTS)
    assert set().union(*(r["lm_by_task"] for r in rows)) <= set("ABCDE") and rows[0]["lm_by_task"]
    assert all(r["samples_per_s"] > 0 and "load_avg_1m" in r for r in rows)


def test_recipe_runs_its_stages_in_order_each_from_the_previous(data, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({
        "defaults": {"model": model_config().to_dict(), "max_steps": 2, "batch_size": 2, "warmup_steps": 1,
                     "eval_every": 1000, "eval_samples": 1, "log_every": 1, "num_workers": 0,
                     "precompute_iv": True, "feature_cache": str(tmp_path / "cache"), "aux_weights": HEAD_WEIGHTS},
        "stages": [{"name": "encoders", "tasks": ["A", "C"], "lm_weight": 0.0},
                   {"name": "answers", "tasks": ["A", "D"]}]}))
    final = train_recipe(path, [str(data)], tmp_path / "run")
    run = tmp_path / "run"
    second = yaml.safe_load((run / "1_answers" / "train_config.yaml").read_text())
    assert second["init_from"] == str(run / "0_encoders") and second["tasks"] == ["A", "D"]
    assert (final / "model.safetensors").is_file() and (run / "training_curves.png").stat().st_size > 0
    first_heads = load_file(str(run / "0_encoders" / "model.safetensors"))
    # stage 2 continued stage 1's heads (its first step moved them only a little)
    moved = load_file(str(final / "model.safetensors"))[AUX_PREFIX + "patch_box.weight"] - \
        first_heads[AUX_PREFIX + "patch_box.weight"]
    assert float(moved.abs().max()) < 0.01
    JaegerModel.from_pretrained(final)  # loadable for inference
    stamp = os.stat(run / "0_encoders" / "model.safetensors").st_mtime_ns
    train_recipe(path, [str(data)], tmp_path / "run")  # complete stages are not run again
    assert os.stat(run / "0_encoders" / "model.safetensors").st_mtime_ns == stamp


def test_recipe_names_the_stage_of_a_bad_setting(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("defaults: {batch_size: 2}\nstages:\n  - {name: first, tasks: [A]}\n  - {name: second, lr_x: 1}\n")
    with pytest.raises(ValueError, match="second.*lr_x"):
        load_recipe(path)
    path.write_text("stages: []\n")
    with pytest.raises(ValueError, match="non-empty 'stages'"):
        load_recipe(path)
    with pytest.raises(ValueError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_max_minutes_refits_the_schedule_when_the_pace_changes(data, tmp_path, monkeypatch):
    """A fake clock: 1 s per step for the first 20 steps, then 0.25 s (the machine got free).
    A single fit after 20 steps would stop at 60 steps of a 1-minute budget; refitting from the
    recent pace uses the minute (capped by max_steps)."""
    from jaeger_ros.model import train as train_module

    clock = [0.0]

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock[0]

    monkeypatch.setattr(train_module, "time", FakeTime)
    monkeypatch.setattr(train_module, "REFIT_EVERY", 5)
    steps = [0]
    real_step = torch.optim.AdamW.step

    def timed_step(self, *args, **kwargs):
        steps[0] += 1
        clock[0] += 1.0 if steps[0] <= 20 else 0.25
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", timed_step)
    out = train(recipe(max_steps=100, batch_size=2, max_minutes=1.0, log_every=50, save_every=1000),
                model_config(), [str(data)], tmp_path / "run", progress=False)
    last = [e for e in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in e][-1]
    assert steps[0] == 100 and last["step"] == 100


def test_soft_integer_targets_charge_an_answer_by_its_distance(model):
    ids = {v: i for i, v in integer_token_values(model.tokenizer).items()}
    vocab = len(model.tokenizer)
    labels = torch.full((2, 3), -100)
    labels[:, 1] = ids[37]

    def peaked(value: int) -> torch.Tensor:
        logits = torch.zeros(1, 3, vocab)
        logits[0, 0, ids[value]] = 8.0  # position 0 writes the token at position 1
        return logits

    logits = torch.cat([peaked(38), peaked(90)])
    hard = answer_loss(logits, labels)[1]
    soft = answer_loss(logits, labels, soft=SoftIntegers.of(model.tokenizer, 2.0))[1]
    assert torch.allclose(hard[0], hard[1])  # plain cross-entropy: 1 off costs what 53 off costs
    assert soft[0] < soft[1] - 1.0
    sharp = answer_loss(logits, labels, soft=SoftIntegers.of(model.tokenizer, 0.05))[1]
    assert torch.allclose(sharp, hard, atol=1e-4)  # a narrow target is the one token
    text = torch.zeros(1, 3, vocab)
    text_labels = torch.full((1, 3), -100)
    text_labels[0, 1] = model.token_ids["im_end"]  # non-integer tokens keep plain cross-entropy
    assert torch.allclose(answer_loss(text, text_labels, soft=SoftIntegers.of(model.tokenizer, 2.0))[1],
                          answer_loss(text, text_labels)[1])


def test_integer_embeddings_start_ordinal_and_are_the_output_layer(model):
    ids = {v: i for i, v in integer_token_values(model.tokenizer).items()}
    emb = model.base_thinker.get_input_embeddings().weight
    near = torch.nn.functional.cosine_similarity(emb[ids[37]], emb[ids[38]], dim=0)
    far = torch.nn.functional.cosine_similarity(emb[ids[37]], emb[ids[-143]], dim=0)
    assert near > 0.6 and far < near - 0.3
    assert model.base_thinker.lm_head.weight.data_ptr() == emb.data_ptr()


def test_absolute_depth_pe_says_how_far_the_scene_is():
    """A flat wall at 2 m and at 3 m: centred (JAEGER) the depth channels are identical; the
    absolute option tells them apart and is the camera-frame point's PE."""
    k = Intrinsics(width=56, height=56, fx=50.0, fy=50.0, cx=28.0, cy=28.0)
    near, far = np.full((56, 56), 2.0, np.float32), np.full((56, 56), 3.0, np.float32)
    z = slice(128, 192)  # third of the 192 channels: the depth axis
    assert torch.equal(depth_pe(near, k, (4, 4), 192)[:, z], depth_pe(far, k, (4, 4), 192)[:, z])
    a, b = depth_pe(near, k, (4, 4), 192, centred=False), depth_pe(far, k, (4, 4), 192, centred=False)
    assert not torch.allclose(a[:, z], b[:, z])
    points = torch.from_numpy(np.round(pooled_points(near, k, (4, 4)).reshape(-1, 3) * 1000.0))
    assert torch.equal(a, sine_pe_3d(points, 192))


def test_patch_labels_name_each_loudspeaker_left_to_right(model, data):
    from jaeger_ros.data.dataset import load_sample

    reader = SampleReader(model.builder, precompute_iv=True, aux=True)
    gh, gw = (n // model.builder.merge for n in model.builder.grid_hw)
    columns = torch.arange(gh * gw) % gw
    several = 0
    for ex in load_examples(data, "train", ["D", "E"]):
        labels = reader(ex).aux["patch_label"]
        k = len(load_sample(ex.folder).metadata["boxes"])
        present = sorted(set(labels[labels >= 0].tolist()))
        assert set(present) <= {answers.MATCH_LABELS.index(answers.match_label(r, k)) for r in range(k)}
        means = [float(columns[labels == lab].float().mean()) for lab in present]
        assert means == sorted(means), means  # Left is leftmost in the image
        several += len(present) >= 2
    assert several > 0


def test_attention_target_is_the_layers_own_attention_on_the_matched_loudspeaker(data):
    """llm_attend recomputes one row of head 0's attention from the layer's input; it must be
    the attention the layer computes (read here from eager attention's weights), and its
    target must be the image tokens that the matched loudspeaker covers."""
    m = JaegerModel.build_tiny(model_config()).eval()
    m.base_thinker.set_attn_implementation("eager")
    reader = SampleReader(m.builder, precompute_iv=True, aux=True)
    exs = load_examples(data, "train", ["D", "E"])
    ds = JaegerDataset(exs, reader)
    batch = collate_items(m.builder, [ds[i] for i in range(len(exs))])
    layer = Towers(m.base_thinker).llm.layers[auxiliary.ATTEND_LAYER].self_attn
    weights = {}
    handle = layer.register_forward_hook(lambda _m, _a, out: weights.update(w=out[1]))  # returns None: output kept
    try:
        with torch.no_grad(), auxiliary.capture(m) as seen:
            m(batch)
    finally:
        handle.remove()
    labels = batch["labels"]
    rows = list(range(len(exs)))
    pos = [int((labels[i] != -100).nonzero()[0]) - 1 for i in rows]
    mine = auxiliary.attention_logprobs(seen["attend"], rows, pos, batch["attention_mask"]).exp()
    theirs = weights["w"][rows, 0, pos]
    assert torch.allclose(mine, theirs.float(), atol=1e-5), float((mine - theirs).abs().max())
    targets = auxiliary._attend_targets(batch, rows, pos, m.token_ids["image"])
    assert targets is not None and len(targets[0]) == len(visible_matches(exs, reader))
    for i, tokens in zip(targets[0], targets[2]):
        assert bool((batch["input_ids"][i, tokens] == m.token_ids["image"]).all())
        names = batch["aux"][i]["patch_label"]
        assert len(tokens) == int((names == int(batch["aux"][i]["label"])).sum()) > 0


def test_voice_slots_hold_each_gender_once_and_leave_ambiguity_out():
    from jaeger_ros.model.data import voice_slots

    dirs = torch.eye(3)[:2]
    slots, known = voice_slots(dirs, torch.tensor([1, 0]))
    assert known.tolist() == [True, True] and torch.equal(slots, dirs.flip(0))
    slots, known = voice_slots(dirs, torch.tensor([0, 0]))  # two male voices: neither slot is certain
    assert known.tolist() == [False, False] and not slots.any()
    assert voice_slots(dirs[:1], torch.tensor([1]))[1].tolist() == [False, True]


def test_the_rate_holds_when_a_refit_lengthens_the_stage():
    schedule = StageSchedule(warmup=5, steps=100, min_ratio=0.1)
    before = [schedule(s) for s in range(80)]
    assert before[4] == 1.0 and all(a >= b for a, b in zip(before[5:], before[6:]))
    schedule.steps = 400  # the machine got faster: the stage now fits 400 steps
    after = [schedule(s) for s in range(80, 400)]
    assert after[0] <= before[-1] and all(a >= b for a, b in zip(after, after[1:]))
    assert after[-1] == pytest.approx(0.1, abs=1e-3)
