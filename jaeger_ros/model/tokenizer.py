"""The tiny preset's tokenizer: byte-level BPE trained on our prompt/answer corpus.

Why our own: Qwen's 152k-token vocabulary would dwarf a CPU-sized LLM, and nothing can be
downloaded here. Digits are always single tokens (as in Qwen2's tokenizer) so numbers are
written digit by digit, and the special tokens are Qwen2.5-Omni's, so prompts look the same
to the tiny and the 7B model.

Integer tokens (`integers=(lo, hi)`): every integer of the answer ranges (azimuth, elevation,
box centimetres) is one added token, so writing a number is one decision over its value
instead of a chain of digits where "off by one" and "off by nine" cost the same. Text is
unchanged: decoding gives back the same bytes, and integers outside the range fall back to
the digit tokens.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D
from jaeger_ros.model.config import SPECIAL_TOKENS


def corpus(seed: int = 0, n_answers: int = 400) -> list[str]:
    """Every official train/test prompt (gender and category filled in), the chat template,
    and synthetic answers in both box units, so the BPE merges fit what the model reads and writes."""
    rng = np.random.default_rng(seed)
    texts = [answers.CHAT_TEMPLATE.format("")]
    for split in ("train", "test"):
        for task, templates in answers.packaged_prompts(split).items():
            for template, gender, cats in itertools.product(
                    templates, answers.GENDERS, (["speaker"], ["speaker"] * 2, ["speaker"] * 3)):
                text = template.replace("{gender}", gender)
                texts.append(text.replace("{obj_category}", answers._category_text(cats)))
    for _ in range(n_answers):
        texts.append(answers.format_doa(rng.uniform(-180, 180), rng.uniform(-90, 90)))
        boxes = [Box3D(rng.uniform(-3, 3, 3), rng.uniform(0.1, 1.0, 3)) for _ in range(int(rng.integers(1, 4)))]
        texts.append(answers.format_boxes(boxes, "m"))
        texts.append(answers.format_boxes(boxes, "cm"))
    texts += list(answers.MATCH_LABELS)
    return texts


def train_tokenizer(vocab_size: int = 512, seed: int = 0, integers: tuple[int, int] | None = None
                    ) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE and wrap it as a transformers fast tokenizer
    (eos = <|im_end|>, pad = <|endoftext|>); `integers`: (lo, hi) range of integers that get
    one token each (added after the BPE vocabulary)."""
    specials = list(SPECIAL_TOKENS.values())
    if vocab_size < 256 + len(specials) + 10:
        raise ValueError(f"vocab_size {vocab_size} too small for the byte alphabet and special tokens")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    if integers is not None:
        lo, hi = int(integers[0]), int(integers[1])
        if lo > hi:
            raise ValueError(f"integer token range must be (lo, hi) with lo <= hi, got {integers}")
        # Added tokens are matched longest-first before pre-tokenisation: "-123" is one token.
        tok.add_tokens([AddedToken(str(i), normalized=False) for i in range(lo, hi + 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL_TOKENS["im_end"],
                                   pad_token=SPECIAL_TOKENS["pad"],
                                   additional_special_tokens=[t for k, t in SPECIAL_TOKENS.items()
                                                              if k not in ("pad", "im_end")])


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    p = Path(path)
    if not (p / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {p}")
    return PreTrainedTokenizerFast.from_pretrained(str(p))


def integer_token_values(tokenizer: PreTrainedTokenizerFast) -> dict[int, int]:
    """Token id -> integer value of every single-token integer (the added integer tokens and
    the ten digits)."""
    out = {}
    for text, tid in tokenizer.get_vocab().items():
        if re.fullmatch(r"-?\d+", text) and (text == "0" or not text.lstrip("-").startswith("0")) and text != "-0":
            out[int(tid)] = int(text)
    return out


def special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Name -> id of every special token the thinker needs (ValueError if one is missing)."""
    out = {}
    for name, text in SPECIAL_TOKENS.items():
        ids = tokenizer.convert_tokens_to_ids([text])
        if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id or \
                tokenizer.convert_ids_to_tokens(ids)[0] != text:
            raise ValueError(f"tokenizer lacks the special token {text!r}")
        out[name] = int(ids[0])
    return out
