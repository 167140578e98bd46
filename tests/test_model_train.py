"""JAEGER training: loss goes down, exact resume, DDP with 2 CPU processes (gloo), evaluation.

The dataset here is small but physical: FOA plane waves from the talking loudspeaker's
direction (foa.encode_gains), boxes projected into the RGB image, matching depth.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from jaeger_ros.core import answers
from jaeger_ros.core import foa as foa_io
from jaeger_ros.data.dataset import ManifestEntry, write_manifest
from jaeger_ros.core.geometry import Box3D, Intrinsics, azel_from_direction, project
from jaeger_ros.model.config import TrainConfig
from jaeger_ros.model.train import evaluate_examples, headline, train

REPO = Path(__file__).resolve().parents[1]


def write_toy_dataset(root: Path, split: str, n: int, seed: int = 0, size: tuple[int, int] = (112, 56),
                      seconds: float = 1.0) -> None:
    """n task1 + n task2 folders and manifests A-E in the dataset layout."""
    rng = np.random.default_rng(seed)
    intr = Intrinsics.from_hfov(size[0], size[1], 90.0)
    per = {t: [] for t in "ABCDE"}
    for i in range(n):
        for fam in ("task1", "task2"):
            name = f"{fam}_{i:05d}"
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            k = int(rng.integers(2, 4))
            xs = np.sort(rng.uniform(-1.2, 1.2, k))
            boxes = [Box3D([x, -0.8, -rng.uniform(2.0, 3.0)], [0.35, 0.7, 0.35]) for x in xs]
            depth = np.full((size[1], size[0]), 4.0, np.float32)
            rgb = np.full((size[1], size[0], 3), 90, np.uint8)
            mask = np.zeros((size[1], size[0]), np.uint8)
            for j, b in enumerate(boxes):
                u, v, _ = project(b.corners(), intr)
                u0, u1 = int(max(u.min(), 0)), int(min(u.max(), size[0]))
                v0, v1 = int(max(v.min(), 0)), int(min(v.max(), size[1]))
                rgb[v0:v1, u0:u1] = (200, 40, 40); depth[v0:v1, u0:u1] = -b.center[2]; mask[v0:v1, u0:u1] = j + 1
            n_s = int(seconds * 16000)
            talkers = rng.choice(k, size=2 if fam == "task2" else 1, replace=False)
            mix = np.zeros((4, n_s))
            sources = []
            for j, spk in enumerate(talkers):
                d = boxes[spk].center / np.linalg.norm(boxes[spk].center)
                sig = rng.normal(size=n_s) * (0.3 if j == 0 else 0.2)
                mix += foa_io.encode_gains(d)[:, None] * sig[None]
                az, el = azel_from_direction(d)
                sources.append({"gender": ["male", "female"][j] if fam == "task2" else "male",
                                "azimuth_deg": float(az), "elevation_deg": float(el), "loudspeaker": int(spk)})
            foa_io.write_foa_wav(folder / "foa_ls.wav", mix.astype(np.float32))
            Image.fromarray(rgb).save(folder / "rgb.png")
            Image.fromarray(mask).save(folder / "mask.png")  # instance ids: bbox_id + 1
            Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(folder / "depth_mm.png")
            meta = {"sample_rate": 16000, "intrinsics": intr.to_dict(),
                    "foa": {"channel_order": "ACN", "normalization": "SN3D"},
                    "boxes": [{"bbox_id": j, "center": b.center.tolist(), "size": b.size.tolist(), "label": "speaker"}
                              for j, b in enumerate(boxes)],
                    "sources": sources}
            (folder / "metadata.json").write_text(json.dumps(meta))
            path = f"{split}/{name}"
            if fam == "task1":
                s = sources[0]
                per["A"].append(ManifestEntry(path, "spatial_doa", answers.format_doa(s["azimuth_deg"], s["elevation_deg"]), gender="M"))
                per["C"].append(ManifestEntry(path, "visual_grounding", answers.format_boxes(boxes), obj_category=["speaker"] * k))
                per["D"].append(ManifestEntry(path, "single_source", answers.match_label(s["loudspeaker"], k), num_speakers=k))
            else:
                s = sources[i % 2]
                per["B"].append(ManifestEntry(path, "multi_spatial_doa", answers.format_doa(s["azimuth_deg"], s["elevation_deg"]), gender=s["gender"][0].upper()))
                lab = answers.match_label(s["loudspeaker"], k)
                per["E"].append(ManifestEntry(path, "dual_source", lab, gender=s["gender"], num_speakers=k, target_label=answers.target_label(s["gender"], lab)))
    for t, es in per.items():
        write_manifest(Path(root) / split / "manifests" / f"{t}.json", es)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root, "train", 6)
    write_toy_dataset(root, "val", 1, seed=1)
    return root


def recipe(**changes) -> TrainConfig:
    base = dict(max_steps=4, batch_size=4, eval_every=1000, save_every=2, log_every=1, warmup_steps=1,
                eval_samples=1, mixed_precision="no", num_workers=0, lr=2e-3)
    return TrainConfig(**{**base, **changes})


def model_config(**changes):
    return TrainConfig().model_config(REPO / "config").replace(
        **{"iv": "classical", "max_audio_seconds": 0.5, "image_size": [112, 56], "max_new_tokens": 8, **changes})


def losses(out: Path) -> list[float]:
    return [e["loss"] for e in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in e]


def test_short_training_lowers_the_loss_and_writes_a_checkpoint(data, tmp_path):
    out = train(recipe(max_steps=30, log_every=5, save_every=30, eval_every=30), model_config(),
                [str(data)], tmp_path / "run", progress=False)
    curve = losses(out)
    assert np.mean(curve[-2:]) < 0.6 * curve[0], curve
    for name in ("model.safetensors", "jaeger_config.json", "tokenizer.json", "train_config.yaml"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("val" in e for e in log)  # periodic validation on the val split ran


def test_resume_continues_exactly(data, tmp_path):
    full = train(recipe(max_steps=4), model_config(), [str(data)], tmp_path / "full", progress=False)
    part = tmp_path / "part"
    train(recipe(max_steps=4), model_config(), [str(data)], part, progress=False, stop_at=2)
    assert not (part / "model.safetensors").exists()
    train(recipe(max_steps=4), model_config(), [str(data)], part, resume=True, progress=False)
    a, b = load_file(str(full / "last" / "model.safetensors")), load_file(str(part / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert losses(full)[2:] == pytest.approx(losses(part)[2:], rel=1e-5)


def test_resume_without_checkpoint_is_an_error(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="resume"):
        train(recipe(), model_config(), [str(data)], tmp_path / "none", resume=True, progress=False)


def test_a_missing_base_model_fails_before_any_state(tmp_path):
    cfg = model_config().replace(base_model_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="base_model_path is not a folder"):
        train(recipe(), cfg, [str(tmp_path)], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_source_weights_must_match_the_roots(data, tmp_path):
    with pytest.raises(ValueError, match="source weights"):
        train(recipe(source_weights=[1.0, 2.0]), model_config(), [str(data)], tmp_path / "w", progress=False)


def test_ddp_two_cpu_processes_with_gloo(data, tmp_path):
    """`train_from_config` under torchrun: 2 gloo ranks, gradients synced (train() checks the
    replicas agree at the end and raises otherwise), one checkpoint written."""
    cfg = tmp_path / "train.yaml"
    mc = model_config().to_dict()
    tc = recipe(max_steps=3, batch_size=2).to_dict()
    tc.update(model=mc)
    cfg.write_text(json.dumps(tc))
    cfg.rename(cfg.with_suffix(".json"))
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        from jaeger_ros.model.train import train_from_config
        train_from_config({str(cfg.with_suffix(".json"))!r}, [{str(data)!r}], {str(tmp_path / "ddp")!r})
    """))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29517", str(script)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()]
    assert {e.get("world_size") for e in log if "loss" in e} == {2}
    assert (tmp_path / "ddp" / "model.safetensors").is_file()


def test_evaluation_scores_generations_with_official_metrics(data, tmp_path):
    from jaeger_ros.model.data import SampleReader, load_examples
    from jaeger_ros.model.modeling import JaegerModel

    model = JaegerModel.build_tiny(model_config())
    exs = load_examples(data, "val", "ABCDE")
    report = evaluate_examples(model, exs, SampleReader(model.builder))
    assert set(report) >= set("ABCDE")
    assert report["D"]["n"] == 1 and report["D"]["accuracy"] in (0.0, 100.0)
    assert set(headline(report)) >= {"A_az_median", "C_iou_mean", "E_acc"}


def test_input_ablations_remove_only_their_input_and_print_a_table(data, tmp_path, capsys):
    from jaeger_ros.model.data import SampleReader, load_examples
    from jaeger_ros.model.modeling import JaegerModel
    from jaeger_ros.model.report import ablate, main

    model = JaegerModel.build_tiny(model_config())
    read = SampleReader(model.builder)
    for ex in load_examples(data, "val", "ABCDE"):
        a = read(ex)
        no_foa, no_pe = ablate(a, "no-foa"), ablate(a, "no-depth-pe")
        if a.foa is not None:
            assert a.foa[1:].abs().max() > 0 and not no_foa.foa[1:].any()
            assert torch.equal(no_foa.foa[0], a.foa[0])  # W kept
        if a.pe is not None:
            assert a.pe.abs().max() > 0 and not no_pe.pe.any()
            assert torch.equal(no_pe.patches, a.patches)
    with pytest.raises(ValueError, match="unknown ablation"):
        ablate(a, "no-rgb")
    model.save_pretrained(tmp_path / "ck")
    main([str(tmp_path / "ck"), str(data), "--split", "val", "--tasks", "AD", "--ablate", "no-foa,no-depth-pe",
          "--out", str(tmp_path / "r.json")])
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows == ["inputs", "full", "no-foa", "no-depth-pe"]
    assert set(json.loads((tmp_path / "r.json").read_text())["_ablations"]) == {"no-foa", "no-depth-pe"}


class _Killed(BaseException):
    """Stands for SIGKILL inside the checkpoint writer (no `except Exception` cleanup runs)."""


@pytest.mark.parametrize("kill", ["writing optimizer state", "after moving the old checkpoint away"])
def test_a_run_killed_while_saving_resumes_exactly(data, tmp_path, monkeypatch, kill):
    """Kill the save of step 4 part-way, then `--resume`: the run ends exactly as an
    uninterrupted one (from step 2's checkpoint, or from step 4's when it was complete)."""
    import jaeger_ros.model.train as train_mod

    full = train(recipe(max_steps=6), model_config(), [str(data)], tmp_path / "full", progress=False)
    run = tmp_path / "run"
    real_write, real_rename = train_mod.write_synced, train_mod._rename

    def write(path, payload):  # the save of step 4 is the one that finds step 2 in last/
        if kill == "writing optimizer state" and Path(path).name == "optimizer.pt" \
                and train_mod.checkpoint_step(run / "last") == 2:
            Path(path).write_bytes(payload[:len(payload) // 2])
            raise _Killed
        real_write(path, payload)

    def rename(src, dst):
        real_rename(src, dst)
        if kill == "after moving the old checkpoint away" and Path(dst).name == ".last.old" \
                and train_mod.checkpoint_step(Path(dst)) == 2:
            raise _Killed

    with monkeypatch.context() as mp:
        mp.setattr(train_mod, "write_synced", write)
        mp.setattr(train_mod, "_rename", rename)
        with pytest.raises(_Killed):
            train(recipe(max_steps=6), model_config(), [str(data)], run, progress=False)
    assert not (run / "model.safetensors").exists()
    train(recipe(max_steps=6), model_config(), [str(data)], run, resume=True, progress=False)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".last")) == []
    a, b = load_file(str(full / "last" / "model.safetensors")), load_file(str(run / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert (run / "model.safetensors").is_file()
    resumed_from = 2 if kill == "writing optimizer state" else 4
    log = [e for e in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if "loss" in e]
    assert [e["step"] for e in log] == list(range(1, 5)) + list(range(resumed_from + 1, 7))


def test_resume_refuses_a_crafted_optimizer_file(data, tmp_path):
    from jaeger_ros.model.modeling import CheckpointError

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'code_ran'}",)

    run = tmp_path / "run"
    train(recipe(max_steps=4), model_config(), [str(data)], run, progress=False, stop_at=2)
    marker = json.loads((run / "last" / "COMPLETE").read_text())
    torch.save({"optimizer": Payload(), "scheduler": {}, "torch_rng": torch.get_rng_state()},
               run / "last" / "optimizer.pt")
    marker["files"]["optimizer.pt"] = (run / "last" / "optimizer.pt").stat().st_size  # a "complete" checkpoint
    (run / "last" / "COMPLETE").write_text(json.dumps(marker))
    with pytest.raises(CheckpointError) as err:
        train(recipe(max_steps=4), model_config(), [str(data)], run, resume=True, progress=False)
    assert not (tmp_path / "code_ran").exists()
    assert str(err.value).startswith(str(run / "last" / "optimizer.pt")) and "\n" not in str(err.value)


def test_training_skips_and_lists_unreadable_samples(tmp_path):
    """One epoch (15 entries, 4 steps of 4) meets both damaged folders; each is replaced by the
    next entry and listed once."""
    root = tmp_path / "data"
    write_toy_dataset(root, "train", 3)
    (root / "train" / "task1_00001" / "foa_ls.wav").unlink()
    rgb = root / "train" / "task2_00002" / "rgb.png"
    rgb.write_bytes(rgb.read_bytes()[:100])
    out = train(recipe(max_steps=4, save_every=4), model_config(), [str(root)], tmp_path / "run", progress=False)
    skipped = json.loads((out / "skipped.json").read_text())
    assert [s["folder"] for s in skipped] == [str(root / "train" / "task1_00001"), str(root / "train" / "task2_00002")]
    assert "foa_ls.wav" in skipped[0]["error"] and "rgb.png" in skipped[1]["error"]
    assert (out / "model.safetensors").is_file()
    for folder in (root / "train").glob("task*"):
        (folder / "foa_ls.wav").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no readable sample"):
        train(recipe(max_steps=2, tasks=("A",)), model_config(), [str(root)], tmp_path / "none", progress=False)
