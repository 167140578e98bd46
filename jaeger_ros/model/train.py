"""Training loop on accelerate: one process on a CPU, or DDP under `accelerate launch`/torchrun.

The batch of step s on rank r depends only on (seed, s, r), so a resumed run draws exactly
the batches the uninterrupted one would have; model, optimizer, schedule and torch RNG
states are restored from `OUT/last/`.

A checkpoint is written into a temporary folder beside `last/` (files flushed to disk, then a
COMPLETE marker), and only then renamed into place; the previous checkpoint is kept until
the new one is in place. A run killed at any moment leaves at least one complete
checkpoint, and `resume` picks the newest complete one and removes the leftovers.
Sample folders that cannot be read are skipped and listed in `OUT/skipped.json`.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import random
import shutil
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from jaeger_ros.model.config import JaegerConfig, TrainConfig
from jaeger_ros.model.data import AUDIO_TASKS, VISION_TASKS, Example, InputBuilder, ModelInputs, instruction, \
    load_examples, read_folder
from jaeger_ros.data.dataset import one_line
from jaeger_ros.model.modeling import CheckpointError, JaegerModel, write_synced

LAST = "last"
LOG = "train_log.jsonl"
SKIPPED = "skipped.json"
COMPLETE = "COMPLETE"
"""Marker written last into a checkpoint folder: {"step", "files": {name: bytes}}."""
_TMP, _OLD = ".last.tmp", ".last.old"
"""The checkpoint being written, and the previous one while the new one is renamed in."""
_STATE_FILES = ("model.safetensors", "optimizer.pt", "state.json")


# ---------------------------------------------------------------------- preloading

def _preload_one(args: tuple[dict[str, Any], dict[str, Any], str, str]
                 ) -> tuple[str, dict[str, np.ndarray | Any] | None, str | None]:
    """(folder, arrays, None), or (folder, None, why) when its files cannot be read or used."""
    cfg_dict, vision, folder, letters = args
    builder = InputBuilder(JaegerConfig.from_dict(cfg_dict), None, vision)
    out: dict[str, Any] = {}
    try:
        raw = read_folder(folder)
        if set(letters) & AUDIO_TASKS:
            foa, mel = builder.audio(raw["foa"], raw["sample_rate"])
            out["foa"], out["mel"] = foa.half().numpy(), mel.half().numpy()
        if set(letters) & VISION_TASKS:
            patches, grid, pe = builder.vision(raw["rgb"], raw["depth"], raw["intrinsics"])
            out["patches"], out["grid"] = patches.half().numpy(), grid
            out["pe"] = pe.half().numpy() if pe is not None else None
    except (OSError, ValueError) as e:  # SampleError (a ValueError) names the file; others get the folder
        why = one_line(e)
        return folder, None, why if folder in why else f"{folder}: {why}"
    return folder, out, None


def preload(builder: InputBuilder, examples: Sequence[Example], workers: int = 0, desc: str = "preload",
            skipped: list[dict[str, str]] | None = None) -> dict[str, dict[str, Any]]:
    """Folder -> model-ready arrays (float16) for every folder the examples use. A folder that
    cannot be read is left out and listed in `skipped` ({"folder", "error"}) when it is given;
    without it, ValueError."""
    from tqdm import tqdm

    needs: dict[str, set[str]] = {}
    for ex in examples:
        needs.setdefault(ex.folder, set()).add(ex.task)
    vision = {"patch_size": builder.patch_size, "spatial_merge_size": builder.merge,
              "temporal_patch_size": builder.tps, "window_size": builder.window_size,
              "hidden_size": builder.vision_dim}
    jobs = [(builder.config.to_dict(), vision, f, "".join(sorted(t))) for f, t in needs.items()]
    out: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, str]] = []

    def keep(folder: str, arrays: dict[str, Any] | None, why: str | None) -> None:
        if arrays is None:
            problems.append({"folder": folder, "error": str(why)})
        else:
            out[folder] = arrays

    with tqdm(total=len(jobs), desc=desc, unit="folder", disable=len(jobs) < 50) as bar:
        if workers <= 1:
            for result in map(_preload_one, jobs):
                keep(*result)
                bar.update()
        else:
            with get_context("spawn").Pool(workers) as pool:
                for result in pool.imap_unordered(_preload_one, jobs, chunksize=8):
                    keep(*result)
                    bar.update()
    problems.sort(key=lambda p: p["folder"])
    if skipped is None and problems:
        raise ValueError(f"{len(problems)} unreadable sample folders, first: {problems[0]['error']}")
    if skipped is not None:
        skipped += problems
    return out


def model_inputs(arrays: dict[str, Any], task: str) -> ModelInputs:
    """The parts of a preloaded folder that a task uses, as float32 tensors."""
    x = ModelInputs()
    if task in AUDIO_TASKS:
        x.foa, x.mel = torch.from_numpy(arrays["foa"]).float(), torch.from_numpy(arrays["mel"]).float()
    if task in VISION_TASKS:
        x.patches, x.grid = torch.from_numpy(arrays["patches"]).float(), tuple(arrays["grid"])
        x.pe = torch.from_numpy(arrays["pe"]).float() if arrays.get("pe") is not None else None
    return x


def make_item(builder: InputBuilder, ex: Example, arrays: dict[str, Any], rng: random.Random | None,
              with_answer: bool = True) -> tuple[list[int], list[int], ModelInputs]:
    """Token ids + labels + inputs; rng picks a train prompt template (None: the test prompt)."""
    prompt = builder.prompt(ex.task, instruction(ex.task, ex, rng))
    ids, labels = builder.encode(prompt, builder.target(ex.task, ex.answer) if with_answer else None)
    return ids, labels, model_inputs(arrays, ex.task)


# ---------------------------------------------------------------------- schedule

def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine down to min_ratio at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name or "embed" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------- evaluation

def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate_examples(model: JaegerModel, examples: Sequence[Example], arrays: dict[str, dict[str, Any]],
                      batch_size: int = 32) -> dict[str, Any]:
    """Greedy answers on examples (test prompts) -> per-task summaries of jaeger_ros.core.metrics,
    plus the raw generations."""
    from jaeger_ros.core import metrics
    from jaeger_ros.model.predictor import JaegerPredictor

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictor = JaegerPredictor(model)
    by_task: dict[str, list[Example]] = {}
    for ex in examples:
        by_task.setdefault(ex.task, []).append(ex)
    report: dict[str, Any] = {}
    for task, exs in sorted(by_task.items()):
        texts, raw = [], []
        for i in range(0, len(exs), batch_size):
            chunk = exs[i:i + batch_size]
            items = [make_item(model.builder, ex, arrays[ex.folder], None, with_answer=False) for ex in chunk]
            gen, conf = model.generate(_to(model.builder.collate(items, padding_side="left"), device))
            for ex, g, c in zip(chunk, gen, conf):
                n = len(ex.obj_category) if ex.obj_category else None
                texts.append(predictor.parse(task, g, c, n).official_text() or g)
                raw.append(g)
        summary = metrics.summarise(task, texts, [ex.answer for ex in exs])
        summary["n"] = len(exs)
        report[task] = summary
        report.setdefault("_generations", {})[task] = [
            {"folder": ex.folder, "truth": ex.answer, "answer": t, "raw": r} for ex, t, r in zip(exs, texts, raw)]
    model.train(was_training)
    return report


def headline(report: dict[str, Any]) -> dict[str, float | None]:
    """The Table-2 style numbers of an evaluate_examples report."""
    def get(task: str, *keys: str) -> float | None:
        d = report.get(task, {})
        for k in keys:
            if d.get(k) is not None:
                return d[k]
        return None
    return {"A_az_median": get("A", "az_median"), "A_el_median": get("A", "el_median"),
            "B_az_median": get("B", "az_median"), "B_el_median": get("B", "el_median"),
            "C_iou_mean": get("C", "iou_mean"), "C_offset_mean": get("C", "offset_mean"),
            "D_acc": get("D", "accuracy"), "E_acc": get("E", "accuracy")}


# ---------------------------------------------------------------------- training

class _Sources:
    """Several datasets sampled with per-source weights; example choice is a pure function
    of (seed, step, rank, slot)."""

    def __init__(self, sources: list[list[Example]], weights: list[float] | None, seed: int) -> None:
        if weights is not None and len(weights) != len(sources):
            raise ValueError(f"{len(weights)} source weights for {len(sources)} data roots")
        w = np.asarray(weights if weights is not None else [len(s) for s in sources], dtype=float)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {w.tolist()}")
        self.sources, self.p, self.seed = sources, w / w.sum(), seed

    def batch(self, step: int, rank: int, size: int) -> tuple[list[Example], random.Random]:
        rng = np.random.default_rng([self.seed, step, rank])
        src = rng.choice(len(self.sources), size=size, p=self.p)
        picks = [self.sources[s][int(rng.integers(len(self.sources[s])))] for s in src]
        return picks, random.Random(int(rng.integers(2 ** 31)))


def train_from_config(config_path: str | Path, data_dirs: Sequence[str] | str, out_dir: str | Path | None = None,
                      resume: bool = False, init_from: str | None = None) -> Path:
    """`jaeger train`: train the recipe in `config_path` on the train splits of `data_dirs`
    (validating on the first root's val split when it has one). Returns the checkpoint folder."""
    config_path = Path(config_path)
    tc = TrainConfig.load(config_path)
    if init_from is not None:
        tc.init_from = init_from
    model_cfg = tc.model_config(base_dir=config_path.parent)
    out = Path(out_dir) if out_dir else Path("runs") / config_path.stem
    return train(tc, model_cfg, [str(d) for d in ([data_dirs] if isinstance(data_dirs, (str, Path)) else data_dirs)],
                 out, resume=resume)


def train(tc: TrainConfig, model_cfg: JaegerConfig, data_dirs: Sequence[str], out: Path, resume: bool = False,
          progress: bool = True, stop_at: int | None = None) -> Path:
    """Train (or resume) and write the checkpoint to `out`. `stop_at`: leave after that step
    with only the resumable state in OUT/last (a job sliced into time-limited runs)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm import tqdm

    if not data_dirs:
        raise ValueError("give at least one data root")
    # cpu=True lets accelerate run DDP over gloo when torchrun starts CPU-only ranks.
    accel = Accelerator(mixed_precision=tc.mixed_precision, cpu=not torch.cuda.is_available(),
                        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    out = Path(out)
    last = out / LAST
    if resume:
        if accel.is_main_process:
            recover_checkpoint(out)
        accel.wait_for_everyone()
        if checkpoint_step(last) is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint to resume in {out}")
    if accel.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    if tc.init_from:
        from jaeger_ros.model.predictor import checkpoint_path

        model = JaegerModel.from_pretrained(checkpoint_path(tc.init_from))
        model_cfg = model.config
    else:
        model = JaegerModel.from_config(model_cfg, seed=tc.seed)
    if resume:
        _load_model_state(model, last / "model.safetensors")
    if tc.trainable is not None:
        from jaeger_ros.model.lora import set_trainable

        set_trainable(model, tc.trainable, tc.tasks)
    builder = model.builder

    skipped: list[dict[str, str]] = []
    arrays: dict[str, dict[str, Any]] = {}
    sources = []
    for d in data_dirs:
        exs = load_examples(d, "train", tc.tasks)
        arrays.update(preload(builder, exs, tc.num_workers, desc="preload train", skipped=skipped))
        sources.append([ex for ex in exs if ex.folder in arrays])
        if not sources[-1]:
            raise ValueError(f"{d}/train: no readable sample ({len(skipped)} skipped, first: {skipped[0]['error']})")
    val_examples: list[Example] = []
    val_root = Path(data_dirs[0]) / "val" / "manifests"
    if val_root.is_dir():
        all_val = load_examples(data_dirs[0], "val", tc.tasks)
        per_task: dict[str, list[Example]] = {}
        for ex in all_val:
            per_task.setdefault(ex.task, []).append(ex)
        val_examples = [ex for exs in per_task.values() for ex in exs[:tc.eval_samples]]
        arrays.update(preload(builder, val_examples, tc.num_workers, desc="preload val", skipped=skipped))
        val_examples = [ex for ex in val_examples if ex.folder in arrays]
    if accel.is_main_process:
        (out / SKIPPED).write_text(json.dumps(skipped, indent=1))
        if skipped:
            print(f"skipped {len(skipped)} unreadable sample folders (listed in {out / SKIPPED})", file=sys.stderr)
    sampler = _Sources(sources, tc.source_weights, tc.seed)

    optimizer = torch.optim.AdamW(_param_groups(model, tc.weight_decay), lr=tc.lr, betas=(0.9, 0.95))
    total = {"steps": tc.max_steps}  # cut by max_minutes once the step time is known
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tc.warmup_steps, total["steps"], tc.min_lr_ratio))
    start = 0
    if resume:
        progress_state = _read_json(last / "state.json")
        total["steps"] = int(progress_state.get("total_steps", tc.max_steps))
        state = load_train_state(last / "optimizer.pt")
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{last / 'optimizer.pt'}: does not fit this model ({one_line(e)})") from e
        start = int(progress_state["step"])
    model, optimizer, scheduler = accel.prepare(model, optimizer, scheduler)
    raw_model: JaegerModel = accel.unwrap_model(model)
    if accel.is_main_process:
        (out / "train_config.yaml").write_text(yaml.safe_dump(
            {**tc.to_dict(), "model": model_cfg.to_dict(), "data": list(data_dirs)}, sort_keys=False))

    log_path = out / LOG
    model.train()
    bar = tqdm(total=tc.max_steps, initial=start, desc="train", disable=not (progress and accel.is_main_process))
    t0, seen, running = time.perf_counter(), 0, []
    end = total["steps"] if stop_at is None else min(int(stop_at), total["steps"])
    t_start = time.perf_counter()
    step = start
    while step < end:
        exs, rng = sampler.batch(step, accel.process_index, tc.batch_size)
        items = [make_item(builder, ex, arrays[ex.folder], rng) for ex in exs]
        batch = _to(builder.collate(items), accel.device)
        loss = model(batch).loss
        accel.backward(loss)
        if tc.grad_clip > 0:
            accel.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(float(loss.detach()))
        seen += len(exs) * accel.num_processes
        bar.update()
        done = step + 1
        step = done
        if tc.max_minutes is not None and done == start + 20 and not resume:
            per_step = (time.perf_counter() - t_start) / 20
            fits = start + int((tc.max_minutes * 60 - (time.perf_counter() - t_start)) / per_step) + 20
            fits = int(accel.reduce(torch.tensor([fits], device=accel.device), reduction="min").item()) \
                if accel.num_processes > 1 else fits
            total["steps"] = max(done, min(tc.max_steps, fits))
            end = total["steps"] if stop_at is None else min(int(stop_at), total["steps"])
            bar.total = total["steps"]
        if done % tc.log_every == 0 or done == end:
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            entry = {"step": done, "loss": float(np.mean(running)), "lr": scheduler.get_last_lr()[0],
                     "samples_per_s": rate, "world_size": accel.num_processes}
            running = []
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
            if accel.is_main_process:
                _append(log_path, entry)
        if val_examples and (done % tc.eval_every == 0 or done == total["steps"]):
            if accel.is_main_process:
                report = evaluate_examples(raw_model, val_examples, arrays)
                _append(log_path, {"step": done, "val": headline(report),
                                   "val_unparsed": {t: r.get("n_unparsed") for t, r in report.items()
                                                    if isinstance(r, dict) and "n_unparsed" in r}})
                bar.write(f"step {done} val {json.dumps(headline(report))}")
            accel.wait_for_everyone()
        if done % tc.save_every == 0 or done == end:
            accel.wait_for_everyone()
            if accel.is_main_process:
                save_checkpoint(raw_model, optimizer, scheduler, out, done, total["steps"])
    bar.close()
    _check_ranks_agree(accel, raw_model)
    if end < total["steps"]:
        return out
    if accel.is_main_process:
        raw_model.save_pretrained(out, dtype=torch.float16)
    accel.wait_for_everyone()
    return out


def _check_ranks_agree(accel: Any, model: torch.nn.Module) -> None:
    """DDP keeps replicas identical; a divergence would mean lost gradient syncs -> RuntimeError."""
    if accel.num_processes == 1:
        return
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    sums = accel.gather(total.to(accel.device))
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-6, atol=1e-6):
        raise RuntimeError(f"DDP replicas diverged: parameter sums {sums.tolist()}")


def _append(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def save_checkpoint(model: torch.nn.Module, optimizer: Any, scheduler: Any, out: Path, step: int,
                    total_steps: int) -> Path:
    """Full-precision state for exact resume in OUT/last. Every step leaves a complete
    checkpoint on disk: the new one is complete (marker written last) before the old one
    leaves `last`, and the old one is deleted only once the new one is in place."""
    out = Path(out)
    tmp, old, last = out / _TMP, out / _OLD, out / LAST
    _remove(tmp)  # leftovers of a save that was killed
    _remove(old)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    blobs = {"model.safetensors": _safetensors_bytes(_untie(state)),
             "optimizer.pt": _torch_bytes({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                           "torch_rng": torch.get_rng_state()}),
             "state.json": json.dumps({"step": step, "total_steps": total_steps}).encode()}
    for name, data in blobs.items():
        write_synced(tmp / name, data)
    marker = {"step": step, "files": {name: len(data) for name, data in blobs.items()}}
    write_synced(tmp / COMPLETE, json.dumps(marker).encode())
    _sync_dir(tmp)
    if last.exists():
        _rename(last, old)
    _rename(tmp, last)
    _remove(old)
    return last


def checkpoint_step(folder: Path) -> int | None:
    """The step of a complete checkpoint folder (marker present, every file at its recorded
    size), else None."""
    try:
        marker = json.loads((folder / COMPLETE).read_text())
        sizes = marker["files"]
        if set(sizes) != set(_STATE_FILES):
            return None
        if any((folder / name).stat().st_size != size for name, size in sizes.items()):
            return None
        return int(marker["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recover_checkpoint(out: Path) -> Path | None:
    """Put the newest complete checkpoint of a run (an interrupted save may have left it in
    the temporary folders) at OUT/last and remove the rest; None when there is none."""
    out = Path(out)
    last = out / LAST
    found = [(step, folder) for folder in (last, out / _OLD, out / _TMP)
             if (step := checkpoint_step(folder)) is not None]
    if not found:
        return None
    _, best = max(found, key=lambda f: (f[0], f[1] == last))
    if best != last:
        _remove(last)
        _rename(best, last)
    _remove(out / _OLD)
    _remove(out / _TMP)
    return last


def load_train_state(path: Path) -> dict[str, Any]:
    """Optimizer, schedule and RNG state, unpickled with weights_only=True: a file holding
    anything but tensors and plain values is refused (CheckpointError), never executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain values "
                              f"({one_line(e).split('.')[0]})") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable training state ({one_line(e)})") from None
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "torch_rng"} <= set(state):
        raise CheckpointError(f"{path}: not a training state (needs optimizer, scheduler and torch_rng)")
    return state


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({one_line(e)})") from None
    if not isinstance(data, dict) or "step" not in data:
        raise CheckpointError(f"{path}: expected an object with 'step'")
    return data


def _load_model_state(model: torch.nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: unreadable weights ({one_line(e)})") from None
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit this model ({one_line(e)[:300]})") from None


def _safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(state)


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _sync_dir(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)
    _sync_dir(dst.parent)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): store independent copies."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out
