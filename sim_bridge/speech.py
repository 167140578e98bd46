"""Dry speech for the simulator: espeak-ng voices (male/female) or recordings from a folder.

Why espeak-ng: LibriSpeech is not shipped with the project, and the tasks only need speech
whose gender is audible (tasks B and E ask for a talker by gender) and whose spectrum is
speech-like. A LibriSpeech-style folder can replace it (SpeechBank(speech_dir=...)).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from jaeger_ros.core.foa import SAMPLE_RATE

GENDERS = ("male", "female")
SPLITS = ("train", "val", "test")
VARIANTS = {"male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7"),
            "female": ("f1", "f2", "f3", "f4", "f5")}
"""espeak-ng voice variants (en-us+<variant>) per gender."""
SPEED_WPM = (135, 185)
PITCH = {"male": (30, 55), "female": (45, 75)}
"""Per-utterance random ranges of espeak-ng's speed (words per minute) and pitch (0-99)."""
LIBRISPEECH_SUBSETS = {"train": ("train-clean-100", "train-clean-360", "train-other-500", "train"),
                       "val": ("dev-clean", "dev-other", "val", "dev"),
                       "test": ("test-clean", "test-other", "test")}
"""Sub-folders of a speech_dir that hold one split (first found wins)."""
SILENCE_DB = -40.0
"""Frames this far below the loudest 20 ms frame count as leading/trailing silence."""


def _check_gender(gender: str) -> str:
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    return gender


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM mono wav bytes -> (float samples, rate). espeak-ng streams to stdout with
    placeholder chunk sizes, so the data chunk is read to the end of the stream."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not produce a wav stream")
    pos, rate, bits = 12, None, None
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"fmt ":
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
            bits = int.from_bytes(data[pos + 22:pos + 24], "little")
        elif tag == b"data":
            if rate is None or bits != 16:
                raise RuntimeError(f"unexpected espeak-ng wav format (rate {rate}, {bits} bits)")
            pcm = data[pos + 8:]
            pcm = pcm[: len(pcm) // 2 * 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos += 8 + size + (size & 1)
    raise RuntimeError("espeak-ng wav stream has no data chunk")


def synthesize(text: str, gender: str, sample_rate: int = SAMPLE_RATE, speed_wpm: int = 160,
               pitch: int = 50, variant: str | None = None) -> np.ndarray:
    """Speak `text` with an espeak-ng en-us voice of the given gender -> float32 (N,) at sample_rate.

    variant: one of VARIANTS[gender] (default: the first).
    """
    variants = VARIANTS[_check_gender(gender)]
    variant = variant or variants[0]
    if variant not in variants:
        raise ValueError(f"variant {variant!r} is not a {gender} voice; expected one of {variants}")
    if not text.strip():
        raise ValueError("text is empty")
    if not 80 <= speed_wpm <= 450 or not 0 <= pitch <= 99:
        raise ValueError(f"speed must be 80-450 wpm and pitch 0-99, got {speed_wpm}, {pitch}")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng not found on PATH: install it (apt-get install espeak-ng)")
    proc = subprocess.run([exe, "-v", f"en-us+{variant}", "-s", str(int(speed_wpm)), "-p", str(int(pitch)),
                           "--stdout"], input=text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    audio, rate = _parse_wav(proc.stdout)
    return _resample(audio, rate, sample_rate)


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio.astype(np.float32)
    g = np.gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def trim_silence(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = SILENCE_DB) -> np.ndarray:
    """Drop leading/trailing 20 ms frames quieter than threshold_db below the loudest frame."""
    frame = max(1, int(0.02 * sample_rate))
    n = audio.size // frame
    if n == 0:
        return audio
    energy = np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1)
    if energy.max() <= 0:
        return audio[:0]
    loud = np.flatnonzero(energy >= energy.max() * 10.0 ** (threshold_db / 10.0))
    return audio[loud[0] * frame: (loud[-1] + 1) * frame]


def _normalise(audio: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(audio.astype(float) ** 2))) if audio.size else 0.0
    return (audio / rms * 0.1).astype(np.float32) if rms > 0 else audio.astype(np.float32)


# Procedural sentences. Each split has its own vocabulary and templates (no content word is
# shared), like LibriSpeech's disjoint splits, so a model cannot memorise test utterances.
_WORDS = {
    "train": {
        "name": ["Martha", "the captain", "my uncle", "the old miller", "a young sailor", "the doctor",
                 "our neighbour", "the farmer", "Thomas", "the widow", "a stranger", "the blacksmith"],
        "noun": ["the lantern", "a letter", "the garden", "the river", "a basket", "the window", "the horse",
                 "a silver coin", "the harbour", "the orchard", "a wooden chest", "the meadow"],
        "verb": ["carried", "opened", "painted", "watched", "followed", "mended", "counted", "cleaned"],
        "adj": ["quiet", "golden", "narrow", "heavy", "distant", "gentle", "crooked", "bright"],
        "time": ["in the morning", "before supper", "after the storm", "at dawn", "on sunday"],
        "templates": ["{name} {verb} {noun} {time}.", "{time}, {name} {verb} {noun} near the {adj} road.",
                      "It was a {adj} day when {name} {verb} {noun}.",
                      "{name} said that {noun} looked {adj} {time}."],
    },
    "val": {
        "name": ["Eleanor", "the professor", "a tired clerk", "the gardener", "my cousin", "the merchant"],
        "noun": ["the telescope", "a parcel", "the library", "the bridge", "a violin", "the carriage"],
        "verb": ["examined", "borrowed", "repaired", "described", "admired", "delivered"],
        "adj": ["curious", "ancient", "polished", "fragile", "crimson", "enormous"],
        "time": ["during the winter", "at midnight", "last autumn", "every evening"],
        "templates": ["Nobody knew why {name} {verb} {noun} {time}.",
                      "{name} {verb} {noun}, which seemed {adj}."],
    },
    "test": {
        "name": ["Beatrice", "the inspector", "a lonely poet", "the shepherd", "my grandmother", "the pilot"],
        "noun": ["the compass", "a blanket", "the cathedral", "the mountain", "a kettle", "the lighthouse"],
        "verb": ["discovered", "sketched", "abandoned", "guarded", "photographed", "unwrapped"],
        "adj": ["silent", "frozen", "remarkable", "dusty", "velvet", "peculiar"],
        "time": ["throughout the spring", "at noon", "yesterday afternoon", "once a year"],
        "templates": ["Perhaps {name} {verb} {noun} {time}.",
                      "{time}, the {adj} one was {noun}, and {name} {verb} it."],
    },
}


def make_sentence(split: str, rng: np.random.Generator) -> str:
    """A random sentence from the split's own vocabulary and templates."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    words = _WORDS[split]
    template = words["templates"][int(rng.integers(len(words["templates"])))]
    fill = {k: v[int(rng.integers(len(v)))] for k, v in words.items() if k != "templates"}
    sentence = template.format(**fill)
    return sentence[0].upper() + sentence[1:]


def _read_speakers_table(path: Path) -> dict[str, str]:
    """LibriSpeech SPEAKERS.TXT: `ID | SEX | SUBSET | MINUTES | NAME`, ';' comments -> id: gender."""
    table = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = [f.strip() for f in line.split("|")]
        if line.lstrip().startswith(";") or len(fields) < 2:
            continue
        sex = fields[1].upper()
        if sex in ("M", "F"):
            table[fields[0]] = "male" if sex == "M" else "female"
    return table


class SpeechBank:
    """Per-split source of dry speech (16 kHz float32, silence-trimmed, RMS 0.1).

    Synthetic (speech_dir None): a pool of `pool_size` espeak-ng utterances per gender is
    synthesised on first use (random text from make_sentence(split), voice variant, speed
    and pitch, all from a generator seeded by (seed, split, gender)) and reused afterwards,
    so thousands of samples cost 2 x pool_size espeak-ng calls.

    From a folder (speech_dir): *.flac / *.wav files found recursively, in the split's
    sub-folder when one exists (LIBRISPEECH_SUBSETS, e.g. test-clean for "test"), else the
    whole folder. Gender per file, first rule that applies:
      1. a path component named `male` or `female` (case-insensitive);
      2. SPEAKERS.TXT (LibriSpeech format) in speech_dir, the split folder or speech_dir's
         parent; speaker id = the first path component under the split folder, or the file
         name's prefix before '-' (LibriSpeech's `<speaker>-<chapter>-<utt>.flac`).
    Files with no gender are ignored; a gender with no files is a ValueError. Files are read
    on each draw, not cached: a LibriSpeech split decoded to float32 would not fit in memory.
    """

    def __init__(self, split: str, seed: int, speech_dir: str | Path | None = None, pool_size: int = 24) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.split, self.seed, self.pool_size = split, int(seed), int(pool_size)
        self.speech_dir = Path(speech_dir) if speech_dir is not None else None
        self._pool: dict[str, list[np.ndarray]] = {}
        self._files: dict[str, list[Path]] = {}
        if self.speech_dir is not None:
            self._files = self._index_folder(self.speech_dir)

    def _index_folder(self, root: Path) -> dict[str, list[Path]]:
        if not root.is_dir():
            raise ValueError(f"speech_dir is not a folder: {root}")
        base = next((root / name for name in LIBRISPEECH_SUBSETS[self.split] if (root / name).is_dir()), root)
        table: dict[str, str] = {}
        for folder in (root.parent, root, base):
            if (folder / "SPEAKERS.TXT").is_file():
                table.update(_read_speakers_table(folder / "SPEAKERS.TXT"))
        files: dict[str, list[Path]] = {g: [] for g in GENDERS}
        for path in sorted(p for p in base.rglob("*") if p.suffix.lower() in (".flac", ".wav") and p.is_file()):
            rel = path.relative_to(base)
            named = [part.lower() for part in rel.parts[:-1] if part.lower() in GENDERS]
            gender = named[-1] if named else table.get(rel.parts[0] if len(rel.parts) > 1 else "",
                                                       table.get(path.name.split("-")[0]))
            if gender is not None:
                files[gender].append(path)
        for gender, paths in files.items():
            if not paths:
                raise ValueError(f"no {gender} speech found in {base} (need male/ and female/ folders "
                                 f"or a SPEAKERS.TXT naming the speakers)")
        return files

    def _synthetic_pool(self, gender: str) -> list[np.ndarray]:
        if gender not in self._pool:
            rng = np.random.default_rng([self.seed, SPLITS.index(self.split), GENDERS.index(gender)])
            pool = []
            while len(pool) < self.pool_size:
                text = " ".join(make_sentence(self.split, rng) for _ in range(int(rng.integers(1, 3))))
                audio = synthesize(text, gender, SAMPLE_RATE,
                                   speed_wpm=int(rng.integers(*SPEED_WPM)), pitch=int(rng.integers(*PITCH[gender])),
                                   variant=str(rng.choice(VARIANTS[gender])))
                audio = trim_silence(audio)
                if audio.size:
                    pool.append(_normalise(audio))
            self._pool[gender] = pool
        return self._pool[gender]

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return _normalise(trim_silence(_resample(data.mean(axis=1), rate, SAMPLE_RATE)))

    def utterance(self, gender: str, rng: np.random.Generator, max_seconds: float = 4.0) -> np.ndarray:
        """One dry utterance (N,) float32 at 16 kHz, at most max_seconds (a random excerpt of a
        longer one)."""
        _check_gender(gender)
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        if self.speech_dir is None:
            pool = self._synthetic_pool(gender)
            audio = pool[int(rng.integers(len(pool)))]
        else:
            paths = self._files[gender]
            audio = self._load(paths[int(rng.integers(len(paths)))])
        limit = int(max_seconds * SAMPLE_RATE)
        if audio.size > limit:
            start = int(rng.integers(audio.size - limit + 1))
            audio = audio[start:start + limit]
        return audio.copy()
