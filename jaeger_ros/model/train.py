"""Training loop on accelerate: one process on a CPU, or DDP / DeepSpeed under
`accelerate launch` (config/accelerate/) or torchrun.

Samples stream from disk: a lazy torch Dataset read by DataLoader workers, passed through
`accelerator.prepare`, which hands each rank its share of the batches. Global batch k is a
pure function of (seed, k) (epochs: one permutation of every entry per epoch; weighted
roots: seeded draws), and rank r takes batches r, r + n, ... so a resumed run draws
exactly the batches the uninterrupted one would have; trainable weights, optimizer,
schedule and torch RNG states are restored from `OUT/last/`.

Checkpoints hold the TRAINABLE parameters only (a frozen 7B base is rebuilt from its local
folder). A checkpoint is written into a temporary folder beside `last/` (files flushed to
disk, then a COMPLETE marker), and only then renamed into place; the previous checkpoint is
kept until the new one is in place. A run killed at any moment leaves at least one complete
checkpoint, and `resume` picks the newest complete one and removes the leftovers. With a val
split, `OUT/best/` holds the loadable checkpoint of the lowest validation loss.
Unreadable samples are skipped (the next entry takes their place) and listed in
`OUT/skipped.json`.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import yaml

from jaeger_ros.data.dataset import one_line
from jaeger_ros.model.config import AUX_HEADS, JaegerConfig, TrainConfig
from jaeger_ros.model.data import Example, JaegerDataset, ModelInputs, SampleReader, batch_tasks, \
    collate_items, instruction, load_examples
from jaeger_ros.model import auxiliary
from jaeger_ros.model.modeling import CheckpointError, JaegerModel, SoftIntegers, answer_loss, write_synced
from jaeger_ros.model.tokenizer import integer_token_values

LAST = "last"
BEST = "best"
LOG = "train_log.jsonl"
SKIPPED = "skipped.json"
COMPLETE = "COMPLETE"
"""Marker written last into a checkpoint folder: {"step", "files": {name: bytes}}."""
_TMP, _OLD = ".last.tmp", ".last.old"
"""The checkpoint being written, and the previous one while the new one is renamed in."""
_STATE_FILES = ("model.safetensors", "optimizer.pt", "state.json")
ENGINE_STATE = "engine_state"
"""DeepSpeed runs: OUT/engine_state/step_N holds accelerator.save_state of every rank."""
REFIT_EVERY = 50
"""With max_minutes, the schedule's length is fitted to the time left after 20 steps and again
every REFIT_EVERY steps from the recent pace (on a shared CPU the speed changes during a run)."""


# ---------------------------------------------------------------------- batches

class _Sources:
    """The train entries of every data root, and which of them global batch k holds.

    Without weights: epochs, each a seeded permutation of all entries (every entry once per
    epoch). With per-root weights: each slot draws a root by weight, then an entry of it."""

    def __init__(self, sources: list[list[Example]], weights: list[float] | None, seed: int) -> None:
        if weights is not None and len(weights) != len(sources):
            raise ValueError(f"{len(weights)} source weights for {len(sources)} data roots")
        w = np.asarray(weights if weights is not None else [len(s) for s in sources], dtype=float)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {w.tolist()}")
        self.examples = [ex for s in sources for ex in s]
        self.offsets = np.cumsum([0] + [len(s) for s in sources])
        self.weighted = weights is not None
        self.p, self.seed = w / w.sum(), seed
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, k: int, size: int) -> list[tuple[int, int]]:
        """(entry index, stream position) of the `size` slots of global batch k."""
        positions = range(k * size, (k + 1) * size)
        if self.weighted:
            rng = np.random.default_rng([self.seed, k])
            src = rng.choice(len(self.p), size=size, p=self.p)
            n = np.diff(self.offsets)
            return [(int(self.offsets[s] + rng.integers(n[s])), p) for s, p in zip(src, positions)]
        return [(int(self._permutation(p // len(self))[p % len(self)]), p) for p in positions]

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self)))
        return self._perm[1]


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler over global batches start, start+1, ... (accelerate deals them out to
    the ranks in turn)."""

    def __init__(self, sources: _Sources, batch_size: int, start: int, count: int) -> None:
        self.sources, self.batch_size, self.start, self.count = sources, batch_size, start, count

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for k in range(self.start, self.start + self.count):
            yield self.sources.batch(k, self.batch_size)

    def __len__(self) -> int:
        return self.count


class _Collate:
    """Picklable collate function for DataLoader workers."""

    def __init__(self, builder: Any) -> None:
        self.builder = builder

    def __call__(self, items: list) -> dict[str, Any]:
        return collate_items(self.builder, items)


def make_loader(dataset: JaegerDataset, sources: _Sources, batch_size: int, start: int, count: int,
                workers: int) -> torch.utils.data.DataLoader:
    """DataLoader of global batches [start, start + count) for accelerator.prepare."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(sources, batch_size, start, count), num_workers=workers,
        collate_fn=_Collate(dataset.reader.builder), persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None)


# ---------------------------------------------------------------------- schedule

def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine down to min_ratio at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StageSchedule:
    """lr_factor over a length that max_minutes refits may change (`steps`), never rising
    after the warm-up: a refit that lengthens the stage holds the rate instead of climbing
    back up the cosine."""

    def __init__(self, warmup: int, steps: int, min_ratio: float) -> None:
        self.warmup, self.steps, self.min_ratio = warmup, steps, min_ratio
        self._lowest = 1.0

    def __call__(self, step: int) -> float:
        f = lr_factor(step, self.warmup, self.steps, self.min_ratio)
        if step >= self.warmup:
            f = self._lowest = min(f, self._lowest)
        return f


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name or "embed" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------- evaluation

def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


Reader = Callable[[Example], ModelInputs]


def _readable(examples: Sequence[Example], read: Reader, skipped: list[dict[str, str]] | None
              ) -> list[tuple[Example, ModelInputs]]:
    out = []
    for ex in examples:
        try:
            out.append((ex, read(ex)))
        except (OSError, ValueError) as e:
            why = one_line(e)
            if skipped is None:
                raise
            skipped.append({"folder": ex.folder, "error": why if ex.folder in why else f"{ex.folder}: {why}"})
    return out


@torch.no_grad()
def evaluate_examples(model: JaegerModel, examples: Sequence[Example], read: Reader, batch_size: int = 32,
                      skipped: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Greedy answers on examples (test prompts) -> per-task summaries of jaeger_ros.core.metrics,
    plus the raw generations. `read` gives an example's inputs (a SampleReader); unreadable
    examples are listed in `skipped` when it is given (else the error propagates)."""
    from jaeger_ros.core import metrics
    from jaeger_ros.model.predictor import JaegerPredictor

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictor = JaegerPredictor(model)
    b = model.builder
    by_task: dict[str, list[Example]] = {}
    for ex in examples:
        by_task.setdefault(ex.task, []).append(ex)
    report: dict[str, Any] = {}
    for task, exs in sorted(by_task.items()):
        done: list[Example] = []
        texts, raw = [], []
        for i in range(0, len(exs), batch_size):
            chunk = _readable(exs[i:i + batch_size], read, skipped)
            if not chunk:
                continue
            items = [(*b.encode(b.prompt(ex.task, instruction(ex.task, ex, None)), None), x) for ex, x in chunk]
            gen, conf = model.generate(_to(b.collate(items, padding_side="left"), device))
            for (ex, _), g, c in zip(chunk, gen, conf):
                n = len(ex.obj_category) if ex.obj_category else None
                texts.append(predictor.parse(task, g, c, n).official_text() or g)
                raw.append(g)
                done.append(ex)
        summary = metrics.summarise(task, texts, [ex.answer for ex in done])
        summary["n"] = len(done)
        report[task] = summary
        report.setdefault("_generations", {})[task] = [
            {"folder": ex.folder, "truth": ex.answer, "answer": t, "raw": r} for ex, t, r in zip(done, texts, raw)]
    model.train(was_training)
    return report


@torch.no_grad()
def validation_loss(model: Any, items: Sequence[Any], builder: Any, device: torch.device, loss: str,
                    batch_size: int = 16) -> float:
    """Teacher-forced loss over fixed validation items (train targets, test prompts)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        total += float(model(_to(builder.collate(chunk), device), loss=loss).loss) * len(chunk)
        n += len(chunk)
    model.train(was_training)
    return total / max(n, 1)


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

def train_from_config(config_path: str | Path, data_dirs: Sequence[str] | str, out_dir: str | Path | None = None,
                      resume: bool = False, init_from: str | None = None, init_audio: str | None = None,
                      init_visual: str | None = None, base_model: str | None = None) -> Path:
    """`jaeger train`: train the recipe in `config_path` on the train splits of `data_dirs`
    (validating on the first root's val split when it has one). `base_model`: the local
    Qwen2.5-Omni-7B folder, instead of the model config's base_model_path. Returns the
    checkpoint folder."""
    config_path = Path(config_path)
    tc = TrainConfig.load(config_path)
    for name, value in (("init_from", init_from), ("init_audio", init_audio), ("init_visual", init_visual)):
        if value is not None:
            setattr(tc, name, value)
    model_cfg = tc.model_config(base_dir=config_path.parent)
    if base_model:
        model_cfg = model_cfg.replace(base_model_path=str(base_model))
    out = Path(out_dir) if out_dir else Path("runs") / config_path.stem
    return train(tc, model_cfg, [str(d) for d in ([data_dirs] if isinstance(data_dirs, (str, Path)) else data_dirs)],
                 out, resume=resume)


TOWER_KEYS = {"audio": ("audio_tower.", "iv."), "visual": ("visual.",)}
"""Checkpoint key parts of each tower for staged initialisation (the audio tower's include its
IV module and fused ln_post/proj)."""


def init_tower(model: JaegerModel, checkpoint: str | Path, tower: str) -> int:
    """Load only one tower's weights from a checkpoint folder of ours (trained on other tasks),
    as the official audio_init_ckpt / visual_init_ckpt. Returns the number of tensors loaded;
    CheckpointError when the file is unreadable or holds none of that tower."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from jaeger_ros.model.modeling import WEIGHTS, from_canonical

    path = Path(checkpoint) / WEIGHTS if Path(checkpoint).is_dir() else Path(checkpoint)
    try:
        stored = from_canonical(model, load_file(str(path)))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: unreadable weights ({one_line(e)})") from None
    own = dict(model.named_parameters())
    parts = TOWER_KEYS[tower]
    picked = {k: v for k, v in stored.items()
              if any(k.startswith(p) or f".{p}" in k for p in parts) and k in own and own[k].shape == v.shape}
    if not picked:
        raise CheckpointError(f"{path}: holds no {tower}-tower weights of this model")
    with torch.no_grad():
        for k, v in picked.items():
            own[k].copy_(v.to(own[k].dtype))
    return len(picked)


def train(tc: TrainConfig, model_cfg: JaegerConfig, data_dirs: Sequence[str], out: Path, resume: bool = False,
          progress: bool = True, stop_at: int | None = None) -> Path:
    """Train (or resume) and write the checkpoint to `out`. `stop_at`: leave after that step
    with only the resumable state in OUT/last (a job sliced into time-limited runs)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from tqdm import tqdm

    from jaeger_ros.model.lora import base_model_dir, cast_for_training, set_trainable

    if not data_dirs:
        raise ValueError("give at least one data root")
    if model_cfg.base_model_path:  # before any state is built
        base_model_dir(model_cfg)
    # cpu=True lets accelerate run DDP over gloo when torchrun starts CPU-only ranks (DeepSpeed,
    # when `accelerate launch` asks for it, runs on CPU ranks under DS_ACCELERATOR=cpu).
    # The schedule steps once per optimizer step (accelerate would step it once per process).
    # DeepSpeed on CPU ranks: accelerate finds no backend for a non-`cpu` run without a GPU, so it
    # would count one process while DeepSpeed's world has them all (and fail DeepSpeed's batch
    # check); naming gloo makes both count the same ranks.
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    handlers: list[Any] = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    if deepspeed and not torch.cuda.is_available():
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    accel = Accelerator(mixed_precision=tc.mixed_precision, cpu=not torch.cuda.is_available() and not deepspeed,
                        gradient_accumulation_steps=1 if deepspeed else tc.grad_accum_steps,
                        step_scheduler_with_optimizer=False, kwargs_handlers=handlers)
    plugin = getattr(accel.state, "deepspeed_plugin", None)
    if plugin is not None:  # the engine accumulates itself: it must know the count (and the micro-batch, below)
        _deepspeed_set(plugin, "gradient_accumulation_steps", tc.grad_accum_steps)
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

    from jaeger_ros.model.predictor import checkpoint_path

    if tc.init_from:
        model = JaegerModel.from_pretrained(checkpoint_path(tc.init_from))
        model_cfg = model.config
    else:
        model = JaegerModel.from_config(model_cfg, seed=tc.seed)
    if tc.aux_weights:
        from jaeger_ros.model.auxiliary import attach, load_heads

        if model_cfg.preset != "tiny":
            raise ValueError("aux_weights: the auxiliary heads are for the tiny preset")
        attach(model)
        if tc.init_from and not resume:
            load_heads(model, checkpoint_path(tc.init_from))
    if tc.trainable is not None:
        set_trainable(model, tc.trainable, tc.tasks)
    cast_for_training(model)  # trainable float32 (master weights), frozen base in its dtype
    if tc.gradient_checkpointing:
        model.base_thinker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for tower, ckpt in (("audio", tc.init_audio), ("visual", tc.init_visual)):
        if ckpt and not resume:
            n = init_tower(model, ckpt, tower)
            if accel.is_main_process:
                print(f"{tower} tower: {n} tensors from {ckpt}", file=sys.stderr)
    if resume:
        _load_model_state(model, last / "model.safetensors")
    builder = model.builder
    reader = SampleReader(builder, tc.feature_cache, precompute_iv=tc.precompute_iv, aux=bool(tc.aux_weights))
    number_ids = torch.tensor(sorted(integer_token_values(model.tokenizer)))
    soft = SoftIntegers.of(model.tokenizer, tc.integer_sigma) if tc.integer_sigma > 0 else None
    attend = float(tc.aux_weights.get("llm_attend", 0.0)) > 0  # opt-in: its hook and loss only when weighted

    sources_list = [load_examples(d, "train", tc.tasks) for d in data_dirs]
    sources = _Sources(sources_list, tc.source_weights, tc.seed)
    dataset = JaegerDataset(sources.examples, reader, seed=tc.seed)
    global_batch = tc.batch_size * accel.num_processes * tc.grad_accum_steps
    micro = accel.num_processes * tc.grad_accum_steps  # loader batches per optimizer step
    max_steps = tc.max_steps if tc.epochs is None else max(1, math.ceil(tc.epochs * len(sources) / global_batch))
    skipped: list[dict[str, str]] = []
    val_items: list[Any] = []
    val_root = Path(data_dirs[0]) / "val" / "manifests"
    val_examples: list[Example] = []
    if val_root.is_dir():
        per_task: dict[str, list[Example]] = {}
        for ex in load_examples(data_dirs[0], "val", tc.tasks):
            per_task.setdefault(ex.task, []).append(ex)
        val_examples = [ex for exs in per_task.values() for ex in exs[:tc.eval_samples]]
        val_examples = [ex for ex, _ in _readable(val_examples, reader, skipped)]
        val_items = [JaegerDataset(val_examples, reader, train_prompts=False)[i][0] for i in range(len(val_examples))] \
            if val_examples else []

    optimizer = torch.optim.AdamW(_param_groups(model, tc.weight_decay), lr=tc.lr, betas=tuple(tc.adam_betas))
    schedule = StageSchedule(tc.warmup_steps, max_steps, tc.min_lr_ratio)  # cut by max_minutes once the pace is known
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start, best_loss = 0, math.inf
    if resume:
        progress_state = _read_json(last / "state.json")
        schedule.steps = int(progress_state.get("total_steps", max_steps))
        best_loss = float(progress_state.get("best_val_loss") or math.inf)
        state = load_train_state(last / "optimizer.pt")
        try:
            if plugin is None:  # DeepSpeed: the engine state (per-rank partitions) loads after prepare
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{last / 'optimizer.pt'}: does not fit this model ({one_line(e)})") from e
        start = int(progress_state["step"])
    if plugin is not None:  # our loader has a batch sampler, so DeepSpeed cannot read the micro-batch from it
        _deepspeed_set(plugin, "train_micro_batch_size_per_gpu", tc.batch_size)
    loader = make_loader(dataset, sources, tc.batch_size, start * micro, (schedule.steps - start) * micro,
                         tc.num_workers)
    model, optimizer, scheduler, loader = accel.prepare(model, optimizer, scheduler, loader)
    raw_model: JaegerModel = accel.unwrap_model(model)
    if resume and plugin is not None:
        accel.load_state(str(out / progress_state["engine_state"]))
    if accel.is_main_process:
        (out / "train_config.yaml").write_text(yaml.safe_dump(
            {**tc.to_dict(), "model": model_cfg.to_dict(), "data": list(data_dirs)}, sort_keys=False))

    log_path = out / LOG
    model.train()
    bar = tqdm(total=schedule.steps, initial=start, desc="train", disable=not (progress and accel.is_main_process))
    t0, seen, running = time.perf_counter(), 0, []
    by_task: dict[str, list[float]] = {}
    by_head: dict[str, list[float]] = {}
    end = schedule.steps if stop_at is None else min(int(stop_at), schedule.steps)
    t_start = time.perf_counter()
    fit_at = (t_start, start)  # (time, step) of the last fit of the schedule to max_minutes
    step = start
    batches = iter(loader)
    # ZeRO-2: every trainable joins every micro-batch's graph (every_trainable; the set is fixed here)
    trainables = [p for p in raw_model.parameters() if p.requires_grad] if plugin is not None else None
    while step < end:
        for _ in range(tc.grad_accum_steps):  # micro-batches of one optimizer step
            batch = next(batches)
            skipped += batch.pop("skipped")
            with accel.accumulate(model):  # DDP: no gradient sync before the last micro-batch
                touch = every_trainable(trainables) if trainables is not None else None  # before the forward
                with (auxiliary.capture(raw_model, attend=attend) if tc.aux_weights else contextlib.nullcontext({})) \
                        as towers_out:
                    # the answer loss is taken here, per sample, for the per-task logs
                    result = model({k: v for k, v in batch.items() if k != "labels"},
                                   output_hidden_states=bool(tc.aux_weights))
                lm_loss, per_sample = answer_loss(result.logits, batch["labels"].to(result.logits.device), tc.loss,
                                                  soft)
                loss = lm_loss * tc.lm_weight
                if tc.aux_weights:
                    parts = auxiliary.losses(raw_model.aux_heads, batch, towers_out, result.hidden_states[-1],
                                             number_ids, raw_model.token_ids["image"] if attend else None)
                    for name, value in parts.items():
                        loss = loss + float(tc.aux_weights.get(name, 0.0)) * value
                        by_head.setdefault(name, []).append(float(value.detach()))
                for t, v in zip(batch_tasks(batch), per_sample.tolist()):
                    if not math.isnan(v):
                        by_task.setdefault(t, []).append(v)
                accel.backward(loss if touch is None else loss + touch)  # DeepSpeed: divided by its engine
                if tc.grad_clip > 0 and accel.sync_gradients:
                    accel.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()  # these two act on the last micro-batch only
                optimizer.zero_grad(set_to_none=True)
            running.append(float(loss.detach()))
            seen += int(batch["input_ids"].shape[0]) * accel.num_processes
        scheduler.step()
        bar.update()
        done = step + 1
        step = done
        if tc.max_minutes is not None and not resume and done >= start + 20 and \
                (done - start - 20) % REFIT_EVERY == 0:
            now = time.perf_counter()
            per_step = (now - fit_at[0]) / (done - fit_at[1])  # the recent pace: shared CPUs change speed
            fit_at = (now, done)
            fits = done + int((tc.max_minutes * 60 - (now - t_start)) / per_step)
            fits = int(accel.reduce(torch.tensor([fits], device=accel.device), reduction="min").item()) \
                if accel.num_processes > 1 else fits
            schedule.steps = max(done, min(max_steps, fits))
            end = schedule.steps if stop_at is None else min(int(stop_at), schedule.steps)
            bar.total = schedule.steps
        if done % tc.log_every == 0 or done == end:
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            entry = {"step": done, "loss": float(np.mean(running)), "lr": scheduler.get_last_lr()[0],
                     "samples_per_s": rate, "world_size": accel.num_processes, "global_batch": global_batch,
                     "lm_by_task": {t: float(np.mean(v)) for t, v in sorted(by_task.items())},
                     "aux": {h: float(np.mean(v)) for h, v in sorted(by_head.items())},
                     "load_avg_1m": os.getloadavg()[0], "elapsed_s": time.perf_counter() - t_start}
            running, by_task, by_head = [], {}, {}
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
            if accel.is_main_process:
                _append(log_path, entry)
        if val_examples and (done % tc.eval_every == 0 or done == schedule.steps):
            improved = [None]
            if accel.is_main_process:
                val_loss = validation_loss(raw_model, val_items, builder, accel.device, tc.loss)
                report = evaluate_examples(raw_model, val_examples, reader)
                _append(log_path, {"step": done, "val_loss": val_loss, "val": headline(report),
                                   "val_unparsed": {t: r.get("n_unparsed") for t, r in report.items()
                                                    if isinstance(r, dict) and "n_unparsed" in r}})
                bar.write(f"step {done} val loss {val_loss:.4f} {json.dumps(headline(report))}")
                if val_loss < best_loss:
                    best_loss = val_loss
                    improved = [val_loss]
            if plugin is not None and accel.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                broadcast_object_list(improved)  # every rank takes part in the fp32 gather
            if improved[0] is not None:
                with fp32_trainables(raw_model, plugin is not None):
                    if accel.is_main_process:
                        save_best(raw_model, out, done, improved[0])
            accel.wait_for_everyone()
        if done % tc.save_every == 0 or done == end:
            accel.wait_for_everyone()
            engine_state = None
            if plugin is not None:  # each rank saves its ZeRO partition of the optimizer
                engine_state = f"{ENGINE_STATE}/step_{done}"
                accel.save_state(str(out / engine_state))
                accel.wait_for_everyone()
            if accel.is_main_process:
                save_checkpoint(raw_model, optimizer, scheduler, out, done, schedule.steps, best_loss,
                                engine_state)
    bar.close()
    _check_ranks_agree(accel, raw_model)
    _write_skipped(accel, out, skipped)
    if end < schedule.steps:
        return out
    with fp32_trainables(raw_model, plugin is not None):
        if accel.is_main_process:
            raw_model.save_pretrained(out)
    accel.wait_for_everyone()
    return out


def every_trainable(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """0 x (the sum of every trainable parameter), built BEFORE the forward and added to the loss.

    ZeRO-2 reduces gradients in buckets filled in the order the parameters' gradient hooks
    fire, and the ranks must agree on that order. A rank whose micro-batch holds only audio
    tasks (A, B) leaves the vision tower out of its graph, one with only task C the audio
    tower, so the buckets differ (gloo: "Received data size doesn't match expected size").
    This term gives every trainable parameter one more gradient input, zero, from nodes older
    than the whole forward: autograd runs the newest ready node first, so those inputs arrive
    last, after the real backward, and every rank's hooks fire in the same (parameter) order.
    The gradients and the loss are unchanged; unused parameters get zeros, as ZeRO's flat
    partitions give them anyway. Cost: the reduction no longer overlaps the backward."""
    return torch.stack([p.sum().float() for p in params]).sum() * 0.0


def _deepspeed_set(plugin: Any, key: str, value: Any) -> None:
    """A DeepSpeed setting in the plugin's config and in the copy accelerate reads it back from."""
    plugin.deepspeed_config[key] = value
    plugin.hf_ds_config.config[key] = value


def _write_skipped(accel: Any, out: Path, skipped: list[dict[str, str]]) -> None:
    """The unreadable samples every rank met, once each, in OUT/skipped.json (+ one line)."""
    from accelerate.utils import gather_object

    every = gather_object([skipped]) if accel.num_processes > 1 else [skipped]
    if not accel.is_main_process:
        return
    unique = {s["folder"]: s for part in every for s in part}
    listed = [unique[f] for f in sorted(unique)]
    (out / SKIPPED).write_text(json.dumps(listed, indent=1))
    if listed:
        print(f"skipped {len(listed)} unreadable samples (listed in {out / SKIPPED})", file=sys.stderr)


def save_best(model: JaegerModel, out: Path, step: int, val_loss: float) -> Path:
    """OUT/best: a loadable checkpoint (trainable weights, config, tokenizer) of the lowest
    validation loss so far, swapped in whole (a crash keeps the previous best)."""
    tmp, best, old = out / ".best.tmp", out / BEST, out / ".best.old"
    _remove(tmp)
    _remove(old)
    model.save_pretrained(tmp)
    write_synced(tmp / "best.json", json.dumps({"step": step, "val_loss": val_loss}).encode())
    return _swap_in(tmp, best, old)


def _swap_in(tmp: Path, dest: Path, old: Path) -> Path:
    """Put the complete folder `tmp` in place of `dest`; at every moment one complete copy exists
    (the previous one waits in `old` until the new one is in place)."""
    _sync_dir(tmp)
    if dest.exists():
        _rename(dest, old)
    _rename(tmp, dest)
    _remove(old)
    return dest


def _check_ranks_agree(accel: Any, model: torch.nn.Module) -> None:
    """DDP keeps replicas identical; a divergence would mean lost gradient syncs -> RuntimeError."""
    if accel.num_processes == 1:
        return
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    sums = accel.gather(total.to(accel.device))
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-6, atol=1e-6):
        raise RuntimeError(f"DDP replicas diverged: parameter sums {sums.tolist()}")


def read_log(run: Path) -> list[dict[str, Any]]:
    """The entries of a run's OUT/train_log.jsonl, oldest first."""
    return [json.loads(line) for line in (Path(run) / LOG).read_text().splitlines() if line.strip()]


def _append(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


@contextlib.contextmanager
def fp32_trainables(model: torch.nn.Module, deepspeed: bool) -> Iterator[None]:
    """Under DeepSpeed bf16 the engine keeps the module in bf16 and the fp32 master weights in
    its ZeRO optimizer partitions: for a save, every trainable parameter holds its full fp32
    master copy (gathered: a collective, so every rank enters), restored afterwards. Without
    DeepSpeed the trainables already are fp32 (cast_for_training)."""
    if not deepspeed:
        yield
        return
    from deepspeed.utils import safe_get_full_fp32_param

    kept = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            full = safe_get_full_fp32_param(p)
            if full is not None:
                kept[name] = p.data
                p.data = full.detach().to(p.device, torch.float32)
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            if name in kept:
                p.data = kept[name]


def save_checkpoint(model: torch.nn.Module, optimizer: Any, scheduler: Any, out: Path, step: int,
                    total_steps: int, best_val_loss: float = math.inf, engine_state: str | None = None) -> Path:
    """Resume state in OUT/last: the trainable parameters in full precision (the frozen base
    is rebuilt from its source), optimizer, schedule, RNG. Every step leaves a complete
    checkpoint on disk: the new one is complete (marker written last) before the old one
    leaves `last`, and the old one is deleted only once the new one is in place."""
    out = Path(out)
    tmp, old, last = out / _TMP, out / _OLD, out / LAST
    _remove(tmp)  # leftovers of a save that was killed
    _remove(old)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.named_parameters() if v.requires_grad}
    # DeepSpeed: optimizer and schedule live in the engine's per-rank state (engine_state,
    # written by accelerator.save_state on every rank); this file then keeps the RNG only
    engine = engine_state is not None
    blobs = {"model.safetensors": _safetensors_bytes(_untie(state)),
             "optimizer.pt": _torch_bytes({"optimizer": {} if engine else optimizer.state_dict(),
                                           "scheduler": {} if engine else scheduler.state_dict(),
                                           "torch_rng": torch.get_rng_state()}),
             "state.json": json.dumps({"step": step, "total_steps": total_steps,
                                       "best_val_loss": best_val_loss if math.isfinite(best_val_loss) else None,
                                       **({"engine_state": engine_state} if engine else {})}).encode()}
    for name, data in blobs.items():
        write_synced(tmp / name, data)
    marker = {"step": step, "files": {name: len(data) for name, data in blobs.items()}}
    write_synced(tmp / COMPLETE, json.dumps(marker).encode())
    done = _swap_in(tmp, last, old)
    if engine:  # the engine states of older checkpoints go once this one is in place
        for folder in (out / ENGINE_STATE).glob("step_*"):
            if folder != out / engine_state:
                _remove(folder)
    return done


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
        stored = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: unreadable weights ({one_line(e)})") from None
    own = {k: p for k, p in model.named_parameters() if p.requires_grad}
    if set(stored) != set(own) or any(stored[k].shape != own[k].shape for k in own):
        missing, unexpected = sorted(set(own) - set(stored)), sorted(set(stored) - set(own))
        wrong = [k for k in set(own) & set(stored) if stored[k].shape != own[k].shape]
        raise CheckpointError(f"{path}: does not fit this model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}, wrong shape {wrong[:3]})")
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(stored[k])


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


# ---------------------------------------------------------------------- staged recipes

RECIPE_FINAL = "final"
"""OUT/final: the last stage's checkpoint, the recipe's product."""


def load_recipe(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A recipe file: `defaults` (TrainConfig settings every stage shares) and `stages`, each a
    mapping with a `name` and the settings it changes. Every stage's config is checked here, so
    a typo fails before hours of training."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such recipe file")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ValueError(f"{path}: a recipe needs a non-empty 'stages' list (and optional 'defaults')")
    unknown = sorted(set(data) - {"defaults", "stages"})
    if unknown:
        raise ValueError(f"{path}: unknown recipe key(s) {unknown}; known: defaults, stages")
    defaults = dict(data.get("defaults") or {})
    stages = []
    for i, stage in enumerate(data["stages"]):
        if not isinstance(stage, dict) or not str(stage.get("name", "")).isidentifier():
            raise ValueError(f"{path}: stage {i} needs a 'name' (letters, digits, _)")
        settings = {k: v for k, v in stage.items() if k != "name"}
        try:
            TrainConfig(**{**defaults, **settings})
        except TypeError as e:
            raise ValueError(f"{path}: stage {stage['name']}: {one_line(e)}") from None
        stages.append(stage)
    names = [s["name"] for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names must differ, got {names}")
    return defaults, stages


def train_recipe(recipe_path: str | Path, data_dirs: Sequence[str], out_dir: str | Path) -> Path:
    """`jaeger train --recipe`: run the stages in order, each starting from the previous
    stage's checkpoint (heads included), into OUT/<i>_<name>/; OUT/final is the last one. A
    stage whose checkpoint is complete is not run again, so rerunning the command continues
    an interrupted recipe at the stage it stopped in (from that stage's start)."""
    recipe_path, out = Path(recipe_path), Path(out_dir)
    defaults, stages = load_recipe(recipe_path)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(recipe_path, out / "recipe.yaml")
    previous: Path | None = None
    for i, stage in enumerate(stages):
        stage_out = out / f"{i}_{stage['name']}"
        settings = {**defaults, **{k: v for k, v in stage.items() if k != "name"}}
        if previous is not None:
            settings["init_from"] = str(previous)
        if not (stage_out / "model.safetensors").is_file():
            _remove(stage_out)  # an interrupted stage restarts from its beginning
            tc = TrainConfig(**settings)
            print(f"recipe stage {i} {stage['name']}: tasks {','.join(tc.tasks)}, "
                  f"{tc.max_minutes} min", file=sys.stderr)
            train(tc, tc.model_config(base_dir=recipe_path.parent), list(data_dirs), stage_out)
        previous = stage_out
    final = out / RECIPE_FINAL
    _remove(final)
    shutil.copytree(previous, final, ignore=shutil.ignore_patterns(LAST, BEST, ".*"))
    plot_curves([out / f"{i}_{s['name']}" for i, s in enumerate(stages)], out / CURVES)
    return final


CURVES = "training_curves.png"


def plot_curves(stage_dirs: Sequence[Path], png: Path) -> Path:
    """Training curves of consecutive runs (a recipe's stages) on one wall-clock axis: the
    answer loss per task, each auxiliary head's loss, learning rate and samples/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_task, ax_aux), (ax_lr, ax_rate) = axes
    offset = 0.0
    for d in stage_dirs:
        rows = [r for r in read_log(d) if "elapsed_s" in r]
        if not rows:
            continue
        t = [offset + r["elapsed_s"] / 60 for r in rows]
        for key, ax in (("lm_by_task", ax_task), ("aux", ax_aux)):
            for name in sorted({k for r in rows for k in r.get(key, {})}):
                pts = [(x, r[key][name]) for x, r in zip(t, rows) if name in r.get(key, {})]
                order = "ABCDE" if key == "lm_by_task" else AUX_HEADS
                ax.plot(*zip(*pts), label=name, color=f"C{list(order).index(name)}" if name in order else None)
        ax_lr.plot(t, [r["lr"] for r in rows], color="C0")
        ax_rate.plot(t, [r["samples_per_s"] for r in rows], color="C1")
        for ax in axes.flat:
            ax.axvline(offset, color="0.8", lw=0.8)
        offset = t[-1]
    for ax, title in ((ax_task, "answer loss per task"), (ax_aux, "auxiliary losses"), (ax_lr, "learning rate"),
                      (ax_rate, "samples/s")):
        ax.set_title(title)
        ax.set_xlabel("wall-clock minutes (stages separated by grey lines)")
    ax_task.set_yscale("log")
    ax_aux.set_yscale("log")
    for ax in (ax_task, ax_aux):
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
