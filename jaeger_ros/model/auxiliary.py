"""Dense auxiliary losses for training the tiny preset on a CPU (never used at inference).

Why: the answer's cross-entropy is one sparse signal per sample, and on its own the tiny
model hears direction in its audio tower without its LLM learning to read it, and leaves its
vision path unused. These heads give every audio token, every image token and the LLM's
state at the answer a target of its own:

* `audio_dir`: per audio token (audio tower output), the unit direction of each voice by its
  gender (a male and a female slot): the tower cannot know which voice a question will ask
  about, so with two voices a single "asked voice" target would be a coin toss for it;
* `llm_dir`: the LLM's last hidden state at the position that writes the answer's first
  number (tasks A, B: the azimuth) or its matching label (D, E), the same direction;
* `llm_label`: that state at the position that writes a matching label (D, E): which label;
* `llm_attend`: at that position, one attention head of one LLM layer (ATTEND_LAYER, head 0)
  is taught to look at the image tokens of the matched loudspeaker (the cross-entropy of its
  attention mass there): the step from "the voice is at 30°" to "that is the Left one" is a
  lookup the 4-layer LLM does not find from the answer loss alone;
* `patch_mask` / `patch_box` / `patch_label`: per merged image token (vision tower output),
  the fraction of loudspeaker pixels it covers, the centre and size of that loudspeaker
  (weighted by that fraction) and its matching label (Left/Center/Right among the scene's
  loudspeakers): the LLM can then pick a loudspeaker's tokens by direction and read its label.

The heads live in `JaegerModel.aux_heads` while training, so checkpoints may carry them
(modeling.AUX_PREFIX); loading a checkpoint for inference drops them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from jaeger_ros.core import answers
from jaeger_ros.model.data import AUDIO_TASKS, IGNORE_INDEX, VISION_TASKS, VOICE_SLOTS, batch_tasks

ATTEND_LAYER = -2
"""The LLM layer whose head 0 `llm_attend` teaches (the next-to-last: the layers before it can
bring the voice's direction to the answer position, the one after can turn what it read into
the label)."""


class AuxHeads(nn.Module):
    """One linear head per name in config.AUX_HEADS: they are meant to make the features linearly
    readable, so they must stay too weak to do the work themselves."""

    def __init__(self, audio_dim: int, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.audio_dir = nn.Linear(audio_dim, 3 * len(VOICE_SLOTS))
        self.llm_dir = nn.Linear(llm_dim, 3)
        self.llm_label = nn.Linear(llm_dim, len(answers.MATCH_LABELS))
        self.patch_mask = nn.Linear(vision_dim, 1)
        self.patch_box = nn.Linear(vision_dim, 6)
        self.patch_label = nn.Linear(vision_dim, len(answers.MATCH_LABELS))


def attach(model: Any) -> AuxHeads:
    """Give a tiny JaegerModel its auxiliary heads (kept if it already has them)."""
    if getattr(model, "aux_heads", None) is None:
        cfg = model.base_thinker.config
        model.aux_heads = AuxHeads(cfg.audio_config.output_dim, cfg.vision_config.out_hidden_size,
                                   cfg.get_text_config().hidden_size)
    return model.aux_heads


@contextlib.contextmanager
def capture(model: Any, attend: bool = True) -> Iterator[dict[str, Any]]:
    """Record the audio tower's tokens, the vision tower's merged tokens and, with `attend`
    (for llm_attend), the input of the ATTEND_LAYER attention of one forward (`attend`:
    module, normed states, cos, sin)."""
    from jaeger_ros.model.modeling import Towers

    towers = Towers(model.base_thinker)
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, field: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            seen[name] = getattr(output, field) if hasattr(output, field) else output
        return hook

    def keep_attention(module: nn.Module, args: Any, kwargs: dict[str, Any], _output: Any) -> None:
        cos, sin = kwargs["position_embeddings"]
        seen["attend"] = (module, kwargs.get("hidden_states", args[0] if args else None), cos, sin)

    handles = [towers.audio.register_forward_hook(keep("audio", "last_hidden_state")),
               towers.visual.register_forward_hook(keep("vision", "pooler_output"))]
    if attend:
        handles.append(towers.llm.layers[ATTEND_LAYER].self_attn.register_forward_hook(keep_attention,
                                                                                       with_kwargs=True))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


def attention_logprobs(seen_attend: tuple[Any, ...], rows: list[int], pos: list[int],
                       attention_mask: torch.Tensor) -> torch.Tensor:
    """(n, L) log attention weights of head 0 of the captured layer at (rows[i], pos[i]) over
    every position of that sample, recomputed from the layer's input the way the layer does
    (so it is the same under sdpa, flash or eager attention)."""
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import apply_rotary_pos_emb

    attn, hidden, cos, sin = seen_attend
    d = attn.head_dim
    r = torch.tensor(rows, device=hidden.device)
    p = torch.tensor(pos, device=hidden.device)
    h = hidden[r]
    q = attn.q_proj(h[torch.arange(len(rows)), p])[:, None, :d]  # (n, 1, d): head 0
    k = attn.k_proj(h)[..., :d]  # (n, L, d): kv head 0, which query head 0 reads
    q = apply_rotary_pos_emb(q[:, None], q[:, None], cos[r, p][:, None], sin[r, p][:, None])[0][:, 0]
    k = apply_rotary_pos_emb(k[:, None], k[:, None], cos[r], sin[r])[0][:, 0]
    scores = (q @ k.transpose(1, 2))[:, 0].float() * attn.scaling  # (n, L)
    keys = torch.arange(h.shape[1], device=h.device)[None]
    allowed = (keys <= p[:, None]) & attention_mask[r].to(h.device).bool()
    return torch.log_softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


def losses(heads: AuxHeads, batch: dict[str, Any], seen: dict[str, Any], hidden: torch.Tensor,
           number_ids: torch.Tensor, image_id: int | None = None) -> dict[str, torch.Tensor]:
    """Each head's loss on this batch (heads without targets in it are left out).
    `hidden`: (B, L, H) the LLM's last hidden states; `number_ids`: the integer token ids;
    `image_id`: the image placeholder token (`llm_attend` needs it and capture(attend=True))."""
    targets: list[dict[str, torch.Tensor]] = batch["aux"]
    tasks = batch_tasks(batch)
    out: dict[str, torch.Tensor] = {}
    audio_rows = [i for i, t in enumerate(tasks) if t in AUDIO_TASKS]
    if "audio" in seen and audio_rows:
        tokens = seen["audio"].reshape(len(audio_rows), -1, seen["audio"].shape[-1])
        want = torch.stack([targets[i]["voice_dir"] for i in audio_rows]).to(tokens.device)  # (n, 2, 3)
        has = torch.stack([targets[i]["has_voice"] for i in audio_rows]).to(tokens.device)  # (n, 2)
        if bool(has.any()):
            pred = heads.audio_dir(tokens).unflatten(-1, (len(VOICE_SLOTS), 3))  # (n, T, 2, 3)
            err = 1.0 - F.cosine_similarity(pred.float(), want[:, None].float().expand_as(pred), dim=-1)
            out["audio_dir"] = (err * has[:, None]).sum() / (has.sum() * err.shape[1])
    image_rows = [i for i, t in enumerate(tasks) if t in VISION_TASKS]
    if "vision" in seen and image_rows and all("patch_mask" in targets[i] for i in image_rows):
        tokens = seen["vision"].reshape(len(image_rows), -1, seen["vision"].shape[-1])
        mask = torch.stack([targets[i]["patch_mask"] for i in image_rows]).to(tokens.device)
        box = torch.stack([targets[i]["patch_box"] for i in image_rows]).to(tokens.device)
        out["patch_mask"] = F.binary_cross_entropy_with_logits(heads.patch_mask(tokens)[..., 0].float(), mask)
        inside = mask > 0  # a loudspeaker rarely fills a 28 px token: weigh each by its coverage
        if bool(inside.any()):
            err = F.smooth_l1_loss(heads.patch_box(tokens)[inside].float(), box[inside], beta=0.1,
                                   reduction="none").mean(-1)
            out["patch_box"] = (err * mask[inside]).sum() / mask[inside].sum()
        if all("patch_label" in targets[i] for i in image_rows):
            names = torch.stack([targets[i]["patch_label"] for i in image_rows]).to(tokens.device)
            if bool((names >= 0).any()):
                out["patch_label"] = F.cross_entropy(heads.patch_label(tokens).flatten(0, 1).float(),
                                                     names.flatten(), ignore_index=-1)
    labels = batch["labels"].to(hidden.device)
    is_number = torch.isin(labels, number_ids.to(labels.device))
    dir_rows, dir_pos, lab_rows, lab_pos = [], [], [], []
    for i, t in enumerate(tasks):
        answer = (labels[i] != IGNORE_INDEX).nonzero()
        if not len(answer):
            continue
        if t in "AB" and bool(targets[i]["has_dir"]):
            first = (is_number[i]).nonzero()
            if len(first):
                dir_rows.append(i)
                dir_pos.append(int(first[0]) - 1)  # the state that writes the first number
        elif t in "DE" and int(targets[i]["label"]) >= 0:
            lab_rows.append(i)
            lab_pos.append(int(answer[0]) - 1)
            if bool(targets[i]["has_dir"]):  # to pick a loudspeaker, the state must hold the voice's direction
                dir_rows.append(i)
                dir_pos.append(int(answer[0]) - 1)
    if dir_rows:
        want = torch.stack([targets[i]["dir"] for i in dir_rows]).to(hidden.device)
        out["llm_dir"] = _cosine_loss(heads.llm_dir(hidden[dir_rows, dir_pos]), want)
    if lab_rows:
        want = torch.stack([targets[i]["label"] for i in lab_rows]).to(hidden.device)
        out["llm_label"] = F.cross_entropy(heads.llm_label(hidden[lab_rows, lab_pos]).float(), want)
    attend = _attend_targets(batch, lab_rows, lab_pos, image_id) if "attend" in seen and image_id is not None else None
    if attend:
        rows, pos, tokens = attend
        logp = attention_logprobs(seen["attend"], rows, pos, batch["attention_mask"])
        out["llm_attend"] = -torch.stack([logp[k, t].logsumexp(0) for k, t in enumerate(tokens)]).mean()
    return out


def _attend_targets(batch: dict[str, Any], rows: list[int], pos: list[int], image_id: int
                    ) -> tuple[list[int], list[int], list[torch.Tensor]] | None:
    """For the matching rows whose matched loudspeaker covers some image token: the rows, the
    label positions and the sequence positions of those image tokens (the merged tokens are
    laid into the sequence in the vision tower's row-major order)."""
    targets = batch["aux"]
    keep_rows, keep_pos, keep_tokens = [], [], []
    for i, p in zip(rows, pos):
        names = targets[i].get("patch_label")
        if names is None:
            continue
        slots = (batch["input_ids"][i] == image_id).nonzero()[:, 0]
        if len(slots) != len(names):
            continue
        hit = slots[names == int(targets[i]["label"])]
        if len(hit):
            keep_rows.append(i)
            keep_pos.append(p)
            keep_tokens.append(hit)
    return (keep_rows, keep_pos, keep_tokens) if keep_rows else None


def load_heads(model: Any, checkpoint: str | Path) -> int:
    """Continue the heads of a checkpoint folder that carries them (a previous training
    stage); returns how many tensors were loaded (0 when it has none)."""
    from safetensors.torch import load_file

    from jaeger_ros.model.modeling import AUX_PREFIX, WEIGHTS

    stored = {k[len(AUX_PREFIX):]: v for k, v in load_file(str(Path(checkpoint) / WEIGHTS)).items()
              if k.startswith(AUX_PREFIX)}
    if stored:
        model.aux_heads.load_state_dict({k: v.float() for k, v in stored.items()})
    return len(stored)
