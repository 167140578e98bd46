"""Dataset -> model inputs: log-mel of W, fixed-length FOA, patches + depth PE, prompts, labels.

Audio is cut or zero-padded to a fixed `max_audio_seconds` window: the Neural IV's
GroupNorm pools statistics over the whole window, so a fixed window keeps a sample's
features independent of whatever else is in its batch, and every sample of a task then
has the same number of audio tokens.
"""
from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from scipy.signal import resample_poly

from jaeger_ros.core import answers
from jaeger_ros.core.foa import SAMPLE_RATE, camera_to_ambisonic
from jaeger_ros.core.geometry import Intrinsics, direction_from_azel
from jaeger_ros.model.config import JaegerConfig, SPECIAL_TOKENS
from jaeger_ros.model.depth_pe import depth_pe, grid_for, merged_tokens, patchify, pe_rows_for_patches, \
    release_depth_pe, tower_order

N_MELS = 128
MEL_N_FFT = 400
MEL_HOP = 160
"""Whisper / Qwen2.5-Omni feature extractor: 25 ms windows, 10 ms hop, 128 mel bins."""
OFFICIAL_RGB_SIZE = (672, 378)
"""The authors resize RGB (BILINEAR) and depth (NEAREST) to this size before anything else."""
OFFICIAL_HFOV_DEG = 90.0
OFFICIAL_VFOV_DEG = 58.72
"""The authors' camera: each focal length from its own field of view (fy != fx)."""
AUDIO_TASKS = frozenset("ABDE")
VISION_TASKS = frozenset("CDE")
IGNORE_INDEX = -100
TASK_LETTERS = "ABCDE"


@lru_cache(maxsize=1)
def _mel_filters() -> torch.Tensor:
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(num_frequency_bins=1 + MEL_N_FFT // 2, num_mel_filters=N_MELS, min_frequency=0.0,
                         max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(fb).float()  # (F, 128)


WHISPER_MAX_SAMPLES = 30 * SAMPLE_RATE
"""Whisper's feature extractor pads or cuts every input to 30 s."""


def whisper_frames(n_samples: int) -> int:
    """Mel frames Whisper's feature extractor marks as real for n samples: its attention mask
    over the 30 s input taken every 160 samples, ceil(min(n, 480000) / 160)."""
    return -(-min(int(n_samples), WHISPER_MAX_SAMPLES) // MEL_HOP)


def log_mel(wave: np.ndarray | torch.Tensor, whisper_length: bool = False) -> torch.Tensor:
    """(N,) 16 kHz mono -> (128, frames) log-mel as WhisperFeatureExtractor computes it (power
    STFT, Slaney mel, log10, 8 dB dynamic range below the max, (x + 4) / 4). frames = N // 160
    (what our checkpoints were trained on), or with `whisper_length` the count Whisper's
    extractor gives (:func:`whisper_frames`: one more for most lengths, at most 30 s)."""
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32) if not torch.is_tensor(wave) else wave).float()
    if x.ndim != 1 or x.numel() < MEL_N_FFT:
        raise ValueError(f"audio must be 1-D with at least {MEL_N_FFT} samples, got {tuple(x.shape)}")
    if whisper_length:
        x = x[:WHISPER_MAX_SAMPLES]
    n_frames = whisper_frames(x.numel()) if whisper_length else x.numel() // MEL_HOP
    # Whisper zero-pads to 30 s before its centred STFT: trailing zeros (none past 30 s, where
    # the reflection reaches the last frames), reflection at the start.
    tail = min(MEL_N_FFT // 2, WHISPER_MAX_SAMPLES - x.numel()) if whisper_length else MEL_N_FFT // 2
    x = torch.cat([x, x.new_zeros(tail)])
    spec = torch.stft(x, MEL_N_FFT, MEL_HOP, window=torch.hann_window(MEL_N_FFT), center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2  # (F, T')
    mel = (_mel_filters().T @ spec[:, :n_frames]).clamp(min=1e-10).log10()
    mel = torch.maximum(mel, mel.max() - 8.0)
    return (mel + 4.0) / 4.0


def official_intrinsics(width: int, height: int) -> Intrinsics:
    """The camera the authors' point cloud assumes for a depth image of this size:
    fx = (w/2) / tan(hfov/2), fy = (h/2) / tan(vfov/2) with hfov 90 deg, vfov 58.72 deg,
    cx = w/2, cy = h/2 (at 672x378: fx = 336, fy = 335.97)."""
    return Intrinsics(int(width), int(height), float((width / 2) / np.tan(np.radians(OFFICIAL_HFOV_DEG) / 2)),
                      float((height / 2) / np.tan(np.radians(OFFICIAL_VFOV_DEG) / 2)), width / 2, height / 2)


def audio_token_count(n_mel_frames: int) -> int:
    """Audio tower tokens of n mel frames (conv stride 2, then average-pool 2)."""
    return ((n_mel_frames - 1) // 2 + 1 - 2) // 2 + 1


@dataclass
class ModelInputs:
    """One sample's model-ready tensors (None for a modality the task does not use)."""

    foa: torch.Tensor | None = None
    """(4, N) float32 ACN/SN3D, fixed N = max_audio_seconds * 16 kHz."""
    mel: torch.Tensor | None = None
    """(128, N // 160) log-mel of W."""
    patches: torch.Tensor | None = None
    """(gh*gw, 3*tps*ps*ps) processor-order patch rows."""
    grid: tuple[int, int, int] | None = None
    pe: torch.Tensor | None = None
    """(gh*gw, vision hidden) depth PE, processor order (None without depth PE)."""
    iv: torch.Tensor | None = None
    """(audio tokens, 1203) Classical IV already resampled to the token rate: the parameter-free
    IV computed once (reader/cache) instead of every step; `foa` is then left out."""
    aux: dict[str, torch.Tensor] | None = None
    """Training-only targets of the auxiliary heads (see aux_targets)."""


class InputBuilder:
    """Turns raw arrays into ModelInputs and prompts into token ids for one model config."""

    def __init__(self, config: JaegerConfig, tokenizer: Any, vision: dict[str, Any]) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.patch_size = int(vision.get("patch_size", 14))
        self.merge = int(vision.get("spatial_merge_size", 2))
        self.tps = int(vision.get("temporal_patch_size", 2))
        self.window_size = int(vision.get("window_size", 112))
        self.vision_dim = int(vision["hidden_size"])
        self.grid_hw = grid_for(config.image_size, self.patch_size, self.merge)
        self.n_samples = int(round(config.max_audio_seconds * SAMPLE_RATE))
        self.n_audio_tokens = audio_token_count(self.n_samples // MEL_HOP)
        self.n_image_tokens = merged_tokens(self.grid_hw, self.merge)
        self._pe_rows = pe_rows_for_patches(*self.grid_hw, self.merge, release=config.release_compat)

    # ------------------------------------------------------------------ arrays
    def audio(self, foa: np.ndarray, sample_rate: int, whole: bool = False,
              whisper_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(4, N) float32 FOA and its W log-mel: cut or zero-padded to the fixed training window,
        or (whole=True, the official inference protocol) the whole recording; `whisper_length`:
        the mel frames Whisper's extractor gives (log_mel), the FOA for the IV stays whole."""
        a = np.asarray(foa, dtype=np.float32)
        if a.ndim != 2 or a.shape[0] != 4 or a.shape[1] == 0:
            raise ValueError(f"FOA must have shape (4, N > 0), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("FOA contains NaN or infinite samples")
        if int(sample_rate) != SAMPLE_RATE:
            if sample_rate <= 0:
                raise ValueError(f"sample rate must be positive, got {sample_rate}")
            g = np.gcd(int(sample_rate), SAMPLE_RATE)
            a = resample_poly(a, SAMPLE_RATE // g, int(sample_rate) // g, axis=1).astype(np.float32)
        length = max(a.shape[1], MEL_N_FFT) if whole else self.n_samples
        fixed = np.zeros((4, length), dtype=np.float32)
        n = min(a.shape[1], length)
        fixed[:, :n] = a[:, :n]
        t = torch.from_numpy(fixed)
        return t, log_mel(t[0], whisper_length)

    def vision(self, rgb: np.ndarray, depth: np.ndarray | None, intrinsics: Intrinsics | None,
               resize_chain: bool = False) -> tuple[torch.Tensor, tuple[int, int, int], torch.Tensor | None]:
        """Patches, grid and depth PE. `resize_chain`: the authors' RGB path, BILINEAR to
        672x378 first, then the processor's BICUBIC to the model's size (ours: one BICUBIC)."""
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3), got {img.shape}")
        w, h = self.config.image_size
        pil = Image.fromarray(img.astype(np.uint8))
        if resize_chain and pil.size != OFFICIAL_RGB_SIZE:
            pil = pil.resize(OFFICIAL_RGB_SIZE, Image.BILINEAR)
        resized = np.asarray(pil.resize((w, h), Image.BICUBIC))
        patches, grid = patchify(resized, self.patch_size, self.merge, self.tps)
        pe = None
        if self.config.depth_pe:
            if depth is None or intrinsics is None:
                raise ValueError("this model uses the depth PE: depth and intrinsics are required")
            d = np.asarray(depth, dtype=np.float32)
            if d.ndim != 2:
                raise ValueError(f"depth must be (H, W), got {d.shape}")
            if d.shape != (intrinsics.height, intrinsics.width):
                raise ValueError(f"depth {d.shape} does not match intrinsics {intrinsics.height}x{intrinsics.width}")
            if self.config.release_compat:
                pe = release_depth_pe(d, intrinsics, self.grid_hw, self.vision_dim)[self._pe_rows]
            else:
                small = np.asarray(Image.fromarray(d).resize((w, h), Image.NEAREST))
                pe = depth_pe(small, intrinsics.scaled(w, h), self.grid_hw, self.vision_dim,
                              centred=not self.config.depth_pe_absolute)[self._pe_rows]
        return patches, grid, pe

    def inputs(self, task: str, rgb=None, depth=None, intrinsics=None, foa=None, sample_rate=SAMPLE_RATE,
               whole_audio: bool = False, official: bool = False) -> ModelInputs:
        """`official`: the authors' inference inputs (Whisper-length mel, RGB resize chain)."""
        out = ModelInputs()
        if task in AUDIO_TASKS:
            if foa is None:
                raise ValueError(f"task {task} needs FOA audio")
            out.foa, out.mel = self.audio(foa, sample_rate, whole=whole_audio, whisper_length=official)
        if task in VISION_TASKS:
            if rgb is None:
                raise ValueError(f"task {task} needs an RGB image")
            out.patches, out.grid, out.pe = self.vision(rgb, depth, intrinsics, resize_chain=official)
        return out

    # ------------------------------------------------------------------ text
    def prompt(self, task: str, instruction: str, n_audio_tokens: int | None = None,
               system: str | None = None) -> str:
        """Chat-template prompt with the modality placeholders (image first, then audio).
        `n_audio_tokens`: for audio longer or shorter than the training window (whole-file
        inference); `system`: another system prompt than the training one (the official
        inference prompt, which Qwen's chat template writes without newlines between the
        blocks). The training prompt puts a newline after each block when the config says
        `modality_newline` (the authors' collator)."""
        parts = []
        end = "\n" if system is None and self.config.modality_newline else ""
        if task in VISION_TASKS:
            parts.append(SPECIAL_TOKENS["vision_bos"] + SPECIAL_TOKENS["image"] * self.n_image_tokens
                         + SPECIAL_TOKENS["vision_eos"] + end)
        if task in AUDIO_TASKS:
            parts.append(SPECIAL_TOKENS["audio_bos"] + SPECIAL_TOKENS["audio"] * (n_audio_tokens or self.n_audio_tokens)
                         + SPECIAL_TOKENS["audio_eos"] + end)
        user = "".join(parts) + instruction
        if system is None:
            return answers.CHAT_TEMPLATE.format(user)
        return (f"{SPECIAL_TOKENS['im_start']}system\n{system}{SPECIAL_TOKENS['im_end']}\n"
                f"{SPECIAL_TOKENS['im_start']}user\n{user}{SPECIAL_TOKENS['im_end']}\n"
                f"{SPECIAL_TOKENS['im_start']}assistant\n")

    def target(self, task: str, official_text: str) -> str:
        """The string the model learns to write: the official answer, boxes in config units."""
        if task == "C" and self.config.box_units == "cm":
            return answers.format_boxes(answers.parse_boxes(official_text, "m"), "cm")
        return official_text

    def encode(self, prompt: str, target: str | None) -> tuple[list[int], list[int]]:
        """input ids and labels; the loss covers only the answer and its <|im_end|>."""
        p = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if target is None:
            return p, [IGNORE_INDEX] * len(p)
        a = self.tokenizer(target + SPECIAL_TOKENS["im_end"], add_special_tokens=False)["input_ids"]
        return p + a, [IGNORE_INDEX] * len(p) + a

    # ------------------------------------------------------------------ batching
    def collate(self, items: Sequence[tuple[list[int], list[int], ModelInputs]], padding_side: str = "right"
                ) -> dict[str, Any]:
        """Pad token ids, stack audio, concatenate image patches (+ PE in the tower's order)."""
        pad = self.tokenizer.pad_token_id
        longest = max(len(ids) for ids, _, _ in items)
        input_ids, labels, mask = [], [], []
        for ids, lab, _ in items:
            n = longest - len(ids)
            if padding_side == "left":
                input_ids.append([pad] * n + ids), labels.append([IGNORE_INDEX] * n + lab)
                mask.append([0] * n + [1] * len(ids))
            else:
                input_ids.append(ids + [pad] * n), labels.append(lab + [IGNORE_INDEX] * n)
                mask.append([1] * len(ids) + [0] * n)
        batch: dict[str, Any] = {"input_ids": torch.tensor(input_ids), "attention_mask": torch.tensor(mask),
                                 "labels": torch.tensor(labels)}
        audio = [x for _, _, x in items if x.mel is not None]
        if audio:
            if all(x.iv is not None for x in audio):
                batch["iv_tokens"] = torch.stack([x.iv for x in audio])
            else:
                batch["foa"] = torch.stack([x.foa for x in audio])
            batch["input_features"] = torch.stack([x.mel for x in audio])
            batch["feature_attention_mask"] = torch.ones(len(audio), audio[0].mel.shape[1], dtype=torch.long)
        images = [x for _, _, x in items if x.patches is not None]
        if images:
            grids = [x.grid for x in images]
            batch["pixel_values"] = torch.cat([x.patches for x in images])
            batch["image_grid_thw"] = torch.tensor(grids)
            if self.config.depth_pe:
                pe = torch.cat([x.pe for x in images])
                batch["depth_pe"] = pe[tower_order(grids, self.window_size, self.patch_size, self.merge)]
        return batch


# ---------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Example:
    """One manifest entry resolved for training: task letter, sample folder, official answer."""

    task: str
    folder: str
    answer: str
    gender: str | None
    obj_category: tuple[str, ...] | None


def load_examples(data_dir: str | Path, split: str, tasks: Sequence[str]) -> list[Example]:
    from jaeger_ros.data.dataset import iter_entries

    out = []
    for letter, entry, folder in iter_entries(data_dir, split, tasks):
        out.append(Example(letter, str(folder), entry.text, entry.target_gender,
                           tuple(entry.obj_category) if entry.obj_category else None))
    if not out:
        raise ValueError(f"no entries for tasks {list(tasks)} in {data_dir}/{split}")
    return out


def instruction(task: str, example: Example, rng: random.Random | None) -> str:
    """Official prompt: a random train template when rng is given, else the test prompt."""
    prompts = answers.packaged_prompts("train") if rng is not None else None
    return answers.build_prompt(task, rng if rng is not None else 0, gender=example.gender,
                                obj_category=list(example.obj_category) if example.obj_category else ["speaker"],
                                prompts=prompts)


# ---------------------------------------------------------------------- streaming

CACHE_VERSION = 3
_INPUT_SUFFIXES = (".png", ".jpg", ".wav", ".json")
"""Files whose bytes key the feature cache (the release's ir*.npy are not model inputs)."""


class SampleReader:
    """Sample folder -> ModelInputs (float32) for one task, read when asked: nothing is held
    between calls, so memory does not grow with the dataset. With `cache_dir`, the derived
    tensors are stored under a key made of the folder's input files' bytes and the model's
    input settings, so a changed file or setting never reuses a stale entry."""

    def __init__(self, builder: InputBuilder, cache_dir: str | Path | None = None, precompute_iv: bool = False,
                 aux: bool = False) -> None:
        """`precompute_iv`: give the Classical IV at the token rate instead of the FOA (the
        model then skips its IV); `aux`: add the auxiliary heads' targets (training)."""
        self.builder = builder
        self.cache_dir = Path(cache_dir) if cache_dir else None
        cfg = builder.config
        self.iv = None
        if precompute_iv and cfg.iv == "classical" and not cfg.release_compat:
            from jaeger_ros.model.iv import XYZ_ROWS, ClassicalIV

            self.iv = ClassicalIV(axes=XYZ_ROWS)
        self.aux = aux
        self._settings = repr((CACHE_VERSION, cfg.image_size, cfg.max_audio_seconds, cfg.depth_pe, cfg.depth_pe_absolute,
                               cfg.release_compat, builder.patch_size, builder.merge, builder.tps,
                               builder.vision_dim, self.iv is not None, aux)).encode()

    def __call__(self, ex: Example) -> ModelInputs:
        """ValueError/OSError (naming the file) when the folder cannot be read or used."""
        if self.cache_dir is None:
            return self._compute(ex.folder, ex.task)
        key = self._key(ex.folder, ex.task)
        path = self.cache_dir / key[:2] / f"{key}.pt"
        if path.is_file():
            try:
                return _inputs_from_dict(torch.load(path, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError, EOFError, ValueError, KeyError):
                pass  # a damaged entry is recomputed and rewritten
        x = self._compute(ex.folder, ex.task)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(_inputs_to_dict(x), tmp)
        os.replace(tmp, path)  # readers in other workers/ranks see a whole file or none
        return x

    def _compute(self, folder: str, task: str) -> ModelInputs:
        """Reads only the files the task uses."""
        from jaeger_ros.data.dataset import load_sample

        s = load_sample(folder)
        x = ModelInputs()
        if task in AUDIO_TASKS:
            x.foa, x.mel = self.builder.audio(s.foa(), s.sample_rate)
            if self.iv is not None:
                from jaeger_ros.model.iv import iv_frames, resample_to_tokens

                with torch.no_grad():
                    frames = self.iv(x.foa[None])[0][:iv_frames("classical", x.foa.shape[-1])]
                x.iv = resample_to_tokens(frames, audio_token_count(x.mel.shape[-1])).contiguous()
                x.foa = None
        if task in VISION_TASKS:
            x.patches, x.grid, x.pe = self.builder.vision(s.rgb(), s.depth(), s.intrinsics)
        if self.aux:
            x.aux = aux_targets(s, self.builder, task in VISION_TASKS)
        return x

    def _key(self, folder: str, task: str) -> str:
        h = hashlib.sha256(self._settings)
        h.update(f"{task in AUDIO_TASKS}{task in VISION_TASKS}".encode())
        p = Path(folder)
        files = sorted(f for f in p.iterdir() if f.suffix in _INPUT_SUFFIXES) if p.is_dir() else [p]
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()


def _inputs_to_dict(x: ModelInputs) -> dict[str, Any]:
    out = {k: v for k, v in (("foa", x.foa), ("mel", x.mel), ("patches", x.patches), ("pe", x.pe), ("iv", x.iv),
                             ("grid", None if x.grid is None else torch.tensor(x.grid))) if v is not None}
    out.update({f"aux.{k}": v for k, v in (x.aux or {}).items()})
    return out


def _inputs_from_dict(d: dict[str, Any]) -> ModelInputs:
    grid = d.get("grid")
    aux = {k[4:]: v for k, v in d.items() if k.startswith("aux.")}
    return ModelInputs(foa=d.get("foa"), mel=d.get("mel"), patches=d.get("patches"), pe=d.get("pe"), iv=d.get("iv"),
                       grid=None if grid is None else tuple(int(v) for v in grid), aux=aux or None)


GENDER_CODES = {"male": 0, "m": 0, "female": 1, "f": 1}
VOICE_SLOTS = ("male", "female")
"""One slot per gender code (the audio_dir head's per-voice directions, voice_slots)."""


def direction_vector(azimuth_deg: float, elevation_deg: float) -> torch.Tensor:
    """Unit vector in the FOA frame (x forward, y left, z up) of an azimuth/elevation."""
    return torch.tensor(camera_to_ambisonic(direction_from_azel(azimuth_deg, elevation_deg)), dtype=torch.float32)


def aux_targets(sample: Any, builder: InputBuilder, vision: bool) -> dict[str, torch.Tensor]:
    """Targets of the training-only heads, from the sample's metadata and instance mask:
    `src_dir` (S, 3) every source's unit direction and `src_gender` (S,) 0 male / 1 female;
    with vision, per merged image token (row-major over the merged grid, the order of the
    vision tower's output) `patch_mask` (N,) the loudspeaker pixel fraction and `patch_box`
    (N, 6) centre and size (metres, camera frame) of the loudspeaker covering most of it and
    `patch_label` (N,) that loudspeaker's matching label (answers.MATCH_LABELS index among the
    scene's loudspeakers left to right; -1: none, or a count with other labels)."""
    meta = sample.metadata
    sources = meta.get("sources") or []
    out = {"src_dir": torch.stack([direction_vector(s["azimuth_deg"], s["elevation_deg"]) for s in sources])
           if sources else torch.zeros(0, 3),
           "src_gender": torch.tensor([GENDER_CODES.get(str(s.get("gender", "")).lower(), -1) for s in sources],
                                      dtype=torch.long)}
    if not vision:
        return out
    mask_path = sample.folder / "mask.png"
    if not mask_path.is_file():
        raise ValueError(f"{mask_path}: missing (the auxiliary vision targets need the instance mask)")
    w, h = builder.config.image_size
    ids = np.asarray(Image.open(mask_path).resize((w, h), Image.NEAREST)).astype(np.int64)
    unit = builder.patch_size * builder.merge
    gh, gw = h // unit, w // unit
    cells = ids.reshape(gh, unit, gw, unit).transpose(0, 2, 1, 3).reshape(gh * gw, unit * unit)
    listed = meta.get("boxes", [])
    boxes = {int(b["bbox_id"]) + 1: list(b["center"]) + list(b["size"]) for b in listed}
    ranks = answers.azimuth_order([b["center"] for b in listed])
    names = {int(listed[k]["bbox_id"]) + 1: answers.match_label(r, len(listed)) for r, k in enumerate(ranks)}
    frac = (cells > 0).mean(1)
    box = np.zeros((gh * gw, 6), dtype=np.float32)
    label = np.full(gh * gw, -1, dtype=np.int64)
    for i, cell in enumerate(cells):
        inside = cell[cell > 0]
        if inside.size:
            k = int(np.bincount(inside).argmax())
            box[i] = boxes.get(k, [0.0] * 6)
            name = names.get(k)
            label[i] = answers.MATCH_LABELS.index(name) if name in answers.MATCH_LABELS else -1
    out["patch_mask"] = torch.from_numpy(frac.astype(np.float32))
    out["patch_box"] = torch.from_numpy(box)
    out["patch_label"] = torch.from_numpy(label)
    return out


def sample_targets(ex: Example, x: ModelInputs) -> dict[str, torch.Tensor]:
    """One sample's targets: the reader's (per-source directions, image-token targets) resolved
    for this entry: `task`, `dir` + `has_dir` (the voice the answer is about: from the answer
    for A/B, the source of the asked gender for D/E), `label` (matching label index or -1),
    `voice_dir` + `has_voice` (each gender's voice: voice_slots)."""
    aux = dict(x.aux or {})
    out = {k: v for k, v in aux.items() if k.startswith("patch_")}
    out["task"] = torch.tensor(TASK_LETTERS.index(ex.task))
    direction, label = None, -1
    if ex.task in "AB":
        doa = answers.parse_doa(ex.answer)
        direction = direction_vector(doa.azimuth, doa.elevation)
    elif ex.task in "DE":
        label = answers.MATCH_LABELS.index(ex.answer) if ex.answer in answers.MATCH_LABELS else -1
        dirs, genders = aux.get("src_dir"), aux.get("src_gender")
        if dirs is not None and len(dirs) == 1:
            direction = dirs[0]
        elif dirs is not None and len(dirs) > 1 and ex.gender is not None:
            want = GENDER_CODES.get(str(ex.gender).lower(), -2)
            hits = (genders == want).nonzero()
            direction = dirs[int(hits[0])] if len(hits) == 1 else None
    out["dir"] = direction if direction is not None else torch.zeros(3)
    out["has_dir"] = torch.tensor(direction is not None)
    out["label"] = torch.tensor(label)
    out["voice_dir"], out["has_voice"] = voice_slots(aux.get("src_dir"), aux.get("src_gender"))
    return out


def voice_slots(dirs: torch.Tensor | None, genders: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 3) the direction of the scene's male and female voice, and (2,) which are known (a
    gender present once; two voices of one gender leave its slot empty, being ambiguous)."""
    slots, known = torch.zeros(len(VOICE_SLOTS), 3), torch.zeros(len(VOICE_SLOTS), dtype=torch.bool)
    if dirs is None or genders is None:
        return slots, known
    for g in range(len(VOICE_SLOTS)):
        hits = (genders == g).nonzero()
        if len(hits) == 1:
            slots[g], known[g] = dirs[int(hits[0])], True
    return slots, known


Item = tuple[list[int], list[int], ModelInputs]


class JaegerDataset(torch.utils.data.Dataset):
    """Lazy map-style dataset for torch's DataLoader: an index is a pair (entry, stream
    position); the position seeds the train prompt template, so a batch's items depend only
    on the sampler's indices (deterministic resume, any worker count).

    An unreadable sample is replaced by the next readable entry and reported with the item
    (`skipped`), so every batch keeps its size on every rank."""

    def __init__(self, examples: Sequence[Example], reader: SampleReader, seed: int = 0,
                 train_prompts: bool = True) -> None:
        if not examples:
            raise ValueError("no examples")
        self.examples = list(examples)
        self.reader = reader
        self.seed = seed
        self.train_prompts = train_prompts

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[Item, list[dict[str, str]]]:
        index, position = key if isinstance(key, tuple) else (key, key)
        skipped: list[dict[str, str]] = []
        for attempt in range(len(self.examples)):
            ex = self.examples[(index + attempt) % len(self.examples)]
            try:
                x = self.reader(ex)
            except (OSError, ValueError) as e:  # SampleError (a ValueError) names the file
                why = " ".join(str(e).split()) or type(e).__name__
                skipped.append({"folder": ex.folder, "error": why if ex.folder in why else f"{ex.folder}: {why}"})
                continue
            rng = random.Random(int(np.random.default_rng([self.seed, position]).integers(2 ** 31))) \
                if self.train_prompts else None
            if x.aux is not None:
                x.aux = sample_targets(ex, x)
            b = self.reader.builder
            ids, labels = b.encode(b.prompt(ex.task, instruction(ex.task, ex, rng)), b.target(ex.task, ex.answer))
            return (ids, labels, x), skipped
        raise ValueError(f"no readable sample among {len(self.examples)} entries "
                         f"(first: {skipped[0]['error'] if skipped else '-'})")


def collate_items(builder: InputBuilder, items: Sequence[tuple[Item, list[dict[str, str]]]]) -> dict[str, Any]:
    """A training batch from JaegerDataset items; the skipped samples ride along as `skipped`."""
    batch = builder.collate([item for item, _ in items])
    if all(x.aux is not None for (_, _, x), _ in items):
        batch["aux"] = [x.aux for (_, _, x), _ in items]
    batch["skipped"] = [s for _, skips in items for s in skips]
    return batch


def batch_tasks(batch: dict[str, Any]) -> list[str]:
    """The task letter of each sample of a collated batch (from its auxiliary targets, else "?")."""
    if "aux" in batch:
        return [TASK_LETTERS[int(t["task"])] for t in batch["aux"]]
    return ["?"] * int(batch["input_ids"].shape[0])
