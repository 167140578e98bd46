"""JAEGER on transformers' Qwen2.5-Omni thinker.

Two surgical changes to the thinker, made by swapping its modules (so the stock forward,
mrope indexing and generation are reused unchanged):

* audio tower: `ln_post` and `proj` become a LayerNorm/Linear over d_model + 1203; the
  IV features of each audio, resampled to its token count, are concatenated to the tower's
  pooled hidden states right before them (IVFusionNorm);
* vision tower: the patch merger is wrapped so that the depth 3D PE is added to the patch
  features it receives (DepthPEMerger), rows already in the tower's window order.

Both modules read per-forward side inputs that JaegerModel sets just before calling the
thinker and clears right after.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from jaeger_ros.data.dataset import one_line
from jaeger_ros.model.config import IV_DIM, JaegerConfig
from jaeger_ros.model.data import InputBuilder, audio_token_count
from jaeger_ros.model.iv import RELEASE_ROWS, XYZ_ROWS, ClassicalIV, NeuralIV, iv_frames, release_iv_tokens, \
    resample_to_tokens
from jaeger_ros.model.tokenizer import integer_token_values, load_tokenizer, special_ids, train_tokenizer

WEIGHTS = "model.safetensors"
AUX_PREFIX = "aux_heads."
"""Checkpoint keys of the training-only auxiliary heads (ignored when loading for inference)."""
CONFIG = "jaeger_config.json"


class CheckpointError(ValueError):
    """A checkpoint (folder or file) that cannot be loaded. The message is one line that names
    the file and says why, so a node or CLI can log it as it is."""


def write_synced(path: Path, data: bytes) -> None:
    """Write a file and flush it to disk, so a later rename cannot publish a file that a crash
    left empty."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class IVFusionNorm(nn.Module):
    """Replaces the audio tower's ln_post: LayerNorm([hidden ; IV]) over d_model + 1203."""

    def __init__(self, d_model: int, iv_dim: int = IV_DIM, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model + iv_dim, eps=eps)
        self.pending: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.pending is None:
            raise ValueError("IV features were not set: call the thinker through JaegerModel")
        if self.pending.shape[0] != hidden.shape[0]:
            raise ValueError(f"IV features cover {self.pending.shape[0]} audio tokens, "
                             f"the audio tower produced {hidden.shape[0]}")
        return self.norm(torch.cat([hidden, self.pending.to(hidden.dtype)], dim=-1))


class DepthPEMerger(nn.Module):
    """Wraps the vision tower's patch merger: adds the depth PE to its input rows."""

    def __init__(self, merger: nn.Module) -> None:
        super().__init__()
        self.merger = merger
        self.pending: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pending is not None:
            if self.pending.shape != x.shape:
                raise ValueError(f"depth PE {tuple(self.pending.shape)} does not match patch features "
                                 f"{tuple(x.shape)}")
            x = x + self.pending.to(x.dtype)
        return self.merger(x)


class Towers:
    """The thinker's audio tower, vision tower and LLM, wherever this transformers version
    keeps them (5.2x: thinker.model.{audio_tower, visual, language_model}; earlier 5.x:
    thinker.{audio_tower, visual} and thinker.model = the LLM)."""

    def __init__(self, thinker: nn.Module) -> None:
        inner = thinker.model
        if hasattr(inner, "audio_tower"):
            self.audio, self.visual, self.llm = inner.audio_tower, inner.visual, inner.language_model
        else:
            self.audio, self.visual, self.llm = thinker.audio_tower, thinker.visual, inner


CANONICAL_PREFIX = {"audio": "thinker.model.audio_tower.", "visual": "thinker.model.visual.",
                    "llm": "thinker.model.language_model.", "lm_head": "thinker.lm_head."}
"""Checkpoint key prefixes (transformers 5.2x layout), so a checkpoint trained under one
transformers version loads under another."""


def _actual_prefixes(model: "JaegerModel") -> dict[str, str]:
    towers = Towers(model.base_thinker)
    ids = {id(towers.audio): "audio", id(towers.visual): "visual", id(towers.llm): "llm",
           id(model.base_thinker.lm_head): "lm_head"}
    out = {}
    for name, module in model.named_modules():
        if id(module) in ids and ids[id(module)] not in out:
            out[ids[id(module)]] = name + "."
    return out


def to_canonical(model: "JaegerModel", state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    actual = _actual_prefixes(model)
    return {_swap(k, actual, CANONICAL_PREFIX): v for k, v in state.items()}


def from_canonical(model: "JaegerModel", state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    actual = _actual_prefixes(model)
    return {_swap(k, CANONICAL_PREFIX, actual): v for k, v in state.items()}


def _swap(key: str, src: dict[str, str], dst: dict[str, str]) -> str:
    for part, prefix in src.items():
        if key.startswith(prefix):
            return dst[part] + key[len(prefix):]
    return key


def tiny_thinker_config(config: JaegerConfig, tokenizer: Any):
    """Qwen2_5OmniThinkerConfig of the tiny preset (sizes from config.thinker, token ids
    from our tokenizer)."""
    from transformers import Qwen2_5OmniThinkerConfig

    sizes = config.thinker
    missing = [k for k in ("text", "audio", "vision") if k not in sizes]
    if missing:
        raise ValueError(f"tiny preset: thinker config lacks {missing}")
    ids = special_ids(tokenizer)
    text = {"vocab_size": len(tokenizer), "pad_token_id": ids["pad"], "eos_token_id": ids["im_end"],
            **sizes["text"]}
    return Qwen2_5OmniThinkerConfig(
        text_config=text, audio_config=dict(sizes["audio"]), vision_config=dict(sizes["vision"]),
        audio_token_index=ids["audio"], image_token_index=ids["image"], video_token_index=ids["video"],
        audio_start_token_id=ids["audio_bos"], audio_end_token_id=ids["audio_eos"],
        vision_start_token_id=ids["vision_bos"], vision_end_token_id=ids["vision_eos"],
        pad_token_id=ids["pad"], tie_word_embeddings=bool(sizes["text"].get("tie_word_embeddings", False)))


INTEGER_PERIODS = (2000.0, 720.0, 360.0, 180.0, 90.0, 45.0, 20.0)
"""Periods (in the integer's units) of the smooth part of the integer tokens' embeddings."""


def ordinal_integer_embeddings(weight: torch.Tensor, values: dict[int, int]) -> None:
    """Give the integer tokens' random-init embedding rows a shared smooth part, a fixed
    random projection of sin/cos of the value at INTEGER_PERIODS, as large as the random part.
    Why: the tiny model ties its output layer to these rows, so an answer's neighbouring
    values start with similar logits and a state that points near 37 scores 36 and 38 too."""
    ids = torch.tensor(sorted(values))
    v = torch.tensor([values[int(i)] for i in ids], dtype=torch.float32)[:, None]
    phase = 2 * torch.pi * v / torch.tensor(INTEGER_PERIODS)[None]
    fourier = torch.cat([phase.sin(), phase.cos()], dim=1)  # (K, 2P)
    g = torch.Generator().manual_seed(len(values))
    smooth = fourier @ torch.randn(fourier.shape[1], weight.shape[1], generator=g)
    rows = weight[ids]
    smooth *= rows.norm(dim=1).mean() / smooth.norm(dim=1).mean()
    weight[ids] = (0.5 * rows + smooth).to(weight.dtype)


class JaegerModel(nn.Module):
    """Qwen2.5-Omni thinker + IV spatial audio path + depth PE, trained on SpatialSceneQA."""

    def __init__(self, config: JaegerConfig, thinker: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.config = config
        self.thinker = thinker
        self.tokenizer = tokenizer
        self.token_ids = special_ids(tokenizer)
        base = self.base_thinker
        vision_cfg = base.config.vision_config
        self.builder = InputBuilder(config, tokenizer, {
            "patch_size": vision_cfg.patch_size, "spatial_merge_size": vision_cfg.spatial_merge_size,
            "temporal_patch_size": vision_cfg.temporal_patch_size, "window_size": vision_cfg.window_size,
            "hidden_size": vision_cfg.hidden_size})
        rows = RELEASE_ROWS if config.release_compat else XYZ_ROWS
        self.iv: nn.Module | None = {"neural": NeuralIV, "classical": ClassicalIV}[config.iv](axes=rows) \
            if config.iv != "none" else None
        towers = Towers(base)
        if self.iv is not None and not isinstance(towers.audio.ln_post, IVFusionNorm):
            _install_iv_fusion(towers.audio, config.fused_init)
        if config.depth_pe and not isinstance(towers.visual.merger, DepthPEMerger):
            towers.visual.merger = DepthPEMerger(towers.visual.merger)

    # ------------------------------------------------------------------ construction
    @property
    def base_thinker(self) -> nn.Module:
        """The Qwen2_5OmniThinkerForConditionalGeneration (under a peft wrapper if any)."""
        t = self.thinker
        return t.get_base_model() if hasattr(t, "get_base_model") else t

    @classmethod
    def build_tiny(cls, config: JaegerConfig, tokenizer: Any = None, seed: int = 0) -> "JaegerModel":
        """Random-init tiny preset (tokenizer trained on the prompt/answer corpus if not given)."""
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        if config.preset != "tiny":
            raise ValueError(f"build_tiny needs the tiny preset, got {config.preset!r}")
        tokenizer = tokenizer or train_tokenizer(config.tokenizer_vocab_size, seed, config.integer_tokens)
        torch.manual_seed(seed)
        thinker = Qwen2_5OmniThinkerForConditionalGeneration(tiny_thinker_config(config, tokenizer))
        if config.integer_tokens is not None:
            with torch.no_grad():
                ordinal_integer_embeddings(thinker.get_input_embeddings().weight, integer_token_values(tokenizer))
        return cls(config, thinker, tokenizer)

    @classmethod
    def from_config(cls, config: JaegerConfig, seed: int = 0) -> "JaegerModel":
        if config.preset == "tiny":
            return cls.build_tiny(config, seed=seed)
        from jaeger_ros.model.lora import build_lora_model

        return build_lora_model(config)

    # ------------------------------------------------------------------ forward
    def _set_side_inputs(self, batch: dict[str, Any]) -> None:
        towers = Towers(self.base_thinker)
        if self.iv is not None and "iv_tokens" in batch:  # Classical IV computed once by the reader
            towers.audio.ln_post.pending = batch["iv_tokens"].reshape(-1, batch["iv_tokens"].shape[-1])
        elif self.iv is not None and "foa" in batch:
            foa = batch["foa"]
            n_mel = batch["input_features"].shape[-1]
            if self.config.release_compat:  # the release feeds bf16 audio and times the IV its way
                feats = self.iv(foa.to(torch.bfloat16).float())
                pending = [release_iv_tokens(f, foa.shape[-1], (n_mel - 1) // 2 + 1) for f in feats]
            else:
                feats = self.iv(foa)  # (B_audio, T_iv, 1203)
                n_frames = iv_frames(self.config.iv, foa.shape[-1])
                pending = [resample_to_tokens(f[:n_frames], audio_token_count(n_mel)) for f in feats]
            towers.audio.ln_post.pending = torch.cat(pending)
        if self.config.depth_pe and "depth_pe" in batch:
            towers.visual.merger.pending = batch["depth_pe"]

    def _clear_side_inputs(self) -> None:
        towers = Towers(self.base_thinker)
        if isinstance(towers.audio.ln_post, IVFusionNorm):
            towers.audio.ln_post.pending = None
        if isinstance(towers.visual.merger, DepthPEMerger):
            towers.visual.merger.pending = None

    @staticmethod
    def _thinker_kwargs(batch: dict[str, Any]) -> dict[str, Any]:
        keys = ("input_ids", "attention_mask", "input_features", "feature_attention_mask", "pixel_values",
                "image_grid_thw")
        return {k: batch[k] for k in keys if k in batch}

    def _precision(self) -> Any:
        """bf16/fp16 autocast when the frozen base is stored in low precision (its trainable
        parameters stay float32), so mixed-dtype layers compute in one dtype."""
        low = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.config.dtype)
        device = next(self.parameters()).device.type
        return torch.autocast(device, dtype=low) if low is not None else contextlib.nullcontext()

    def forward(self, batch: dict[str, Any], loss: str = "sample_mean", output_hidden_states: bool = False) -> Any:
        """Teacher-forced forward. `.loss` with loss="sample_mean": the cross-entropy over each
        sample's answer tokens, averaged per sample and then over the batch (a one-word match
        answer weighs as much as three boxes of 40 tokens, so mixed-task batches do not train
        grounding alone); "token_mean": over all answer tokens of the batch (the official recipe).
        `output_hidden_states`: the LLM's layers' states (for the auxiliary heads)."""
        try:
            self._set_side_inputs(batch)
            with self._precision():
                out = self.thinker(**self._thinker_kwargs(batch), output_hidden_states=output_hidden_states)
        finally:
            self._clear_side_inputs()
        labels = batch.get("labels")
        if labels is not None:
            out.loss = answer_loss(out.logits, labels.to(out.logits.device), loss)[0]
        return out

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], max_new_tokens: int | None = None,
                 eos_ids: Sequence[int] | None = None) -> tuple[list[str], list[float]]:
        """Greedy answers of a left-padded batch: (texts, mean token probability of each).
        `eos_ids`: tokens that end an answer (default <|im_end|>; the official protocol also
        stops on <|endoftext|>)."""
        kwargs = self._thinker_kwargs(batch)
        prompt_len = kwargs["input_ids"].shape[1]
        stops = list(eos_ids) if eos_ids else [self.token_ids["im_end"]]
        try:
            self._set_side_inputs(batch)
            with self._precision():
                out = self.thinker.generate(**kwargs, max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                            do_sample=False, eos_token_id=stops[0] if len(stops) == 1 else stops,
                                            pad_token_id=self.token_ids["pad"], output_scores=True,
                                            return_dict_in_generate=True)
        finally:
            self._clear_side_inputs()
        new = out.sequences[:, prompt_len:]
        probs = torch.stack([s.float().softmax(-1).max(-1).values for s in out.scores], dim=1)  # (B, steps)
        texts, confidences = [], []
        for row, p in zip(new, probs):
            ends = torch.isin(row, torch.tensor(stops, device=row.device)).nonzero()
            n = int(ends[0]) + 1 if len(ends) else len(row)
            texts.append(self.tokenizer.decode(row[:n], skip_special_tokens=True))
            confidences.append(float(p[:n].mean()) if n else 0.0)
        return texts, confidences

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
        """config + tokenizer + safetensors (the tiny preset: whole model; LoRA: adapters and
        the trained non-LLM modules, via lora.py)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save(out / CONFIG)
        self.tokenizer.save_pretrained(str(out))
        if self.config.preset != "tiny":
            from jaeger_ros.model.lora import save_lora

            save_lora(self, out)
            return out
        state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu()
                 for k, v in to_canonical(self, self.state_dict()).items()
                 if not k.startswith(CANONICAL_PREFIX["lm_head"]) or not self._tied()}
        tmp = out / f".{WEIGHTS}.tmp"  # replaced in one step: a crash keeps the old weights whole
        write_synced(tmp, save(state, metadata={"format": "jaeger_ros.model/1"}))
        os.replace(tmp, out / WEIGHTS)
        return out

    def _tied(self) -> bool:
        return bool(getattr(self.base_thinker.config.get_text_config(), "tie_word_embeddings", False))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "JaegerModel":
        """Load a checkpoint folder; CheckpointError (one line naming the file) when it is
        missing, unreadable or does not fit its config."""
        p = Path(path)
        if not p.is_dir():
            raise CheckpointError(f"{p}: checkpoint folder not found")
        if not (p / CONFIG).is_file():
            raise CheckpointError(f"{p}: not a JAEGER checkpoint (no {CONFIG})")
        try:
            config = JaegerConfig.load(p / CONFIG)
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{p / CONFIG}: unreadable model config ({one_line(e)})") from e
        try:
            tokenizer = load_tokenizer(p)
        except Exception as e:  # the tokenizers library raises bare Exceptions on a corrupt file
            raise CheckpointError(f"{p / 'tokenizer.json'}: unreadable tokenizer ({one_line(e)})") from e
        if config.preset != "tiny":
            from jaeger_ros.model.lora import load_lora

            try:
                return load_lora(config, p, tokenizer).to(device)
            except (OSError, ValueError, RuntimeError, SafetensorError) as e:
                raise CheckpointError(f"{p}: cannot load the LoRA checkpoint ({one_line(e)})") from e
        model = cls.build_tiny(config, tokenizer)
        try:
            stored = load_file(str(p / WEIGHTS))
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"{p / WEIGHTS}: unreadable weights ({one_line(e)})") from e
        # The training-only auxiliary heads (aux.py) may ride along; inference never uses them.
        state = {k: v.float() if v.is_floating_point() else v for k, v in stored.items()
                 if not k.startswith(AUX_PREFIX)}
        try:
            missing, unexpected = model.load_state_dict(from_canonical(model, state), strict=False)
        except RuntimeError as e:  # shape mismatches
            raise CheckpointError(f"{p / WEIGHTS}: does not fit {CONFIG} ({one_line(e)[:300]})") from e
        head = _actual_prefixes(model)["lm_head"]
        missing = [k for k in missing if not (k.startswith(head) and model._tied())]
        if missing or unexpected:
            raise CheckpointError(f"{p / WEIGHTS}: does not fit {CONFIG} (missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]})")
        if model._tied():
            model.base_thinker.tie_weights()
        return model.to(device).eval()


class SoftIntegers:
    """Soft targets for integer answer tokens (TrainConfig.integer_sigma): the target of a
    labelled integer v is a Gaussian of width sigma over the integer tokens' values. Why: with
    one token per number, plain cross-entropy charges an answer 1 degree off as much as one
    90 off; this makes the loss ordinal while greedy decoding still reads the peak."""

    def __init__(self, values: dict[int, int], sigma: float) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        ids = sorted(values)
        self.ids = torch.tensor(ids)
        self.values = torch.tensor([values[i] for i in ids], dtype=torch.float32)
        self.sigma = float(sigma)

    @classmethod
    def of(cls, tokenizer: Any, sigma: float) -> "SoftIntegers":
        return cls(integer_token_values(tokenizer), sigma)

    def losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(M, V) logits whose labels (M,) are all integer tokens -> (M,) soft cross-entropy."""
        ids = self.ids.to(labels.device)
        want = self.values.to(logits.device)[torch.searchsorted(ids, labels)]
        q = torch.softmax(-(self.values.to(logits.device)[None] - want[:, None]) ** 2 / (2 * self.sigma ** 2), -1)
        return -(q * logits.float().log_softmax(-1)[:, ids]).sum(-1)


def sample_losses(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
                  soft: SoftIntegers | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy, mean over each sample's labelled tokens: ((B,) losses, (B,)
    whether the sample has any labelled token; its loss is 0 otherwise). `soft`: integer
    tokens are scored against their soft targets instead."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    tok = nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                      ignore_index=ignore_index, reduction="none").view(shift_labels.shape)
    if soft is not None:
        is_int = torch.isin(shift_labels, soft.ids.to(shift_labels.device))
        if bool(is_int.any()):
            tok = tok.masked_scatter(is_int, soft.losses(shift_logits[is_int], shift_labels[is_int]))
    mask = (shift_labels != ignore_index).float()
    counts = mask.sum(1)
    return (tok * mask).sum(1) / counts.clamp(min=1.0), counts > 0


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "sample_mean",
                soft: SoftIntegers | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss of `kind`, see JaegerModel.forward -- "sample_mean": the mean over the samples
    that have answer tokens; each sample's mean answer-token loss, detached, NaN for a sample
    without answer tokens: per-task logs). `soft`: see SoftIntegers (sample_mean only)."""
    per_sample, has = sample_losses(logits, labels, soft=soft)
    if kind == "token_mean":
        if soft is not None:
            raise ValueError("soft integer targets need loss: sample_mean")
        loss = token_mean_loss(logits, labels)
    else:
        loss = per_sample[has].mean() if bool(has.any()) else per_sample.sum() * 0.0
    return loss, torch.where(has, per_sample, torch.full_like(per_sample, float("nan"))).detach()


def token_mean_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Next-token cross-entropy averaged over every labelled token of the batch."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    if not bool((shift_labels != ignore_index).any()):
        return shift_logits.sum() * 0.0
    return nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                       ignore_index=ignore_index)


def _install_iv_fusion(audio_tower: nn.Module, init: str = "pretrained") -> None:
    """Swap ln_post/proj for their d_model + 1203 versions. init="pretrained": pretrained
    weights in the d_model part and zero IV columns, so a pretrained tower's output is
    unchanged by the IV at initialisation; "random": as the authors' base load leaves them
    (proj N(0, 0.02), bias 0; LayerNorm 1 / 0)."""
    d_model = audio_tower.ln_post.normalized_shape[0]
    old_norm, old_proj = audio_tower.ln_post, audio_tower.proj
    norm = IVFusionNorm(d_model, IV_DIM, eps=old_norm.eps)
    proj = nn.Linear(d_model + IV_DIM, old_proj.out_features, bias=old_proj.bias is not None)
    with torch.no_grad():
        if init == "random":
            nn.init.normal_(proj.weight, mean=0.0, std=0.02)
            if proj.bias is not None:
                proj.bias.zero_()
            norm.norm.weight.fill_(1.0)
            norm.norm.bias.zero_()
            audio_tower.ln_post = norm.to(old_proj.weight.device, old_proj.weight.dtype)
            audio_tower.proj = proj.to(old_proj.weight.device, old_proj.weight.dtype)
            return
        norm.norm.weight[:d_model].copy_(old_norm.weight)
        norm.norm.bias[:d_model].copy_(old_norm.bias)
        proj.weight.zero_()
        proj.weight[:, :d_model].copy_(old_proj.weight)
        if old_proj.bias is not None:
            proj.bias.copy_(old_proj.bias)
    audio_tower.ln_post = norm.to(old_proj.weight.device, old_proj.weight.dtype)
    audio_tower.proj = proj.to(old_proj.weight.device, old_proj.weight.dtype)


def describe(model: JaegerModel) -> dict[str, Any]:
    """Parameter counts per part (for logs and the benchmark)."""
    towers = Towers(model.base_thinker)
    parts = {"audio_tower": towers.audio, "vision": towers.visual, "llm": towers.llm}
    out = {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
    out["iv"] = sum(p.numel() for p in model.iv.parameters()) if model.iv is not None else 0
    out["total"] = sum(p.numel() for p in model.parameters())
    return out


def config_json(model: JaegerModel) -> str:
    return json.dumps(model.config.to_dict(), indent=1)
