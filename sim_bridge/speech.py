"""Dry speech for the simulator: many synthetic voices (male/female) or recordings from a folder.

Why several engines: LibriSpeech is not shipped with the project, and a model trained on one
speech engine learns that engine's voices instead of gender (tasks B and E ask for a talker
by gender). So the synthetic pool mixes three Debian engines -- espeak-ng variants, flite
(CMU voices) and festival (diphone and HTS voices) -- with sox pitch/tempo augmentation, and
VOICES assigns every voice to one split by SPEAKER (flite's and festival's slt are one
speaker, so both are test voices): test voices are never heard in training, like test rooms
and loudspeaker shapes. A LibriSpeech-style folder can replace it (SpeechBank(speech_dir=...)).
Debian packages: espeak-ng, flite, festival, festvox-kallpc16k, festvox-us-slt-hts, sox.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
ENGINES = ("espeak-ng", "flite", "festival")


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: engine, the engine's voice name, gender, speaker (voices of one
    speaker in two engines share it) and the split it belongs to."""

    engine: str
    name: str
    gender: str
    speaker: str
    split: str

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


def _espeak(split: str, gender: str, names: str) -> list[Voice]:
    return [Voice("espeak-ng", n, gender, f"espeak-{n}", split) for n in names.split()]


VOICES: tuple[Voice, ...] = tuple(
    _espeak("train", "male", "m1 m2 m3 m4 adam Andy benjamin boris john max paul")
    + _espeak("train", "female", "f1 f2 f3 Annie belinda linda steph")
    + [Voice("flite", "kal", "male", "kal", "train"), Voice("festival", "voice_kal_diphone", "male", "kal", "train")]
    + _espeak("val", "male", "m5 edward Lee") + _espeak("val", "female", "f4 aunty")
    + [Voice("flite", "awb", "male", "awb", "val")]
    + _espeak("test", "male", "m6 m7 Alex caleb Michael Mike robert")
    + _espeak("test", "female", "f5 Alicia Andrea anika")
    + [Voice("flite", "rms", "male", "rms", "test"), Voice("flite", "slt", "female", "slt", "test"),
       Voice("festival", "voice_cmu_us_slt_arctic_hts", "female", "slt", "test")])
"""Every synthetic voice and its split; espeak-ng variants measured at pitch 50: male F0
77-125 Hz, female 173-266 Hz."""
SOX_PITCH_CENTS = (-150.0, 150.0)
SOX_TEMPO = (0.9, 1.12)
"""sox augmentation of flite/festival utterances (espeak-ng has its own pitch and speed)."""
_APT_PACKAGE = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival festvox-kallpc16k festvox-us-slt-hts",
                "sox": "sox"}


def voices(split: str, gender: str, engines: tuple[str, ...] = ENGINES) -> list[Voice]:
    """The voices of one split and gender from the given engines."""
    return [v for v in VOICES if v.split == split and v.gender == gender and v.engine in engines]


def _executable(name: str) -> str:
    exe = shutil.which({"festival": "text2wave"}.get(name, name))
    if exe is None:
        raise RuntimeError(f"{name} not found on PATH: install it (apt-get install {_APT_PACKAGE[name]})")
    return exe


def _run(cmd: list[str], stdin: bytes) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def synthesize_voice(voice: Voice, text: str, rng: np.random.Generator,
                     sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict[str, Any]]:
    """Speak `text` with `voice`, randomised per utterance -> (float32 (N,), settings).

    espeak-ng: speed and pitch drawn from SPEED_WPM / PITCH; flite and festival: sox pitch
    shift and tempo drawn from SOX_PITCH_CENTS / SOX_TEMPO. settings records what was drawn.
    """
    if not text.strip():
        raise ValueError("text is empty")
    if voice.engine == "espeak-ng":
        speed, pitch = int(rng.integers(*SPEED_WPM)), int(rng.integers(*PITCH[voice.gender]))
        audio = _espeak_audio(text, voice.name, speed, pitch, sample_rate)
        return audio, {"speed_wpm": speed, "pitch": pitch}
    if voice.engine not in ENGINES:
        raise ValueError(f"unknown speech engine {voice.engine!r}; expected one of {ENGINES}")
    with tempfile.TemporaryDirectory(prefix="jaeger-tts-") as tmp:  # both engines seek in their output
        out, txt = Path(tmp) / "speech.wav", Path(tmp) / "text.txt"
        txt.write_text(text)
        if voice.engine == "flite":
            _run([_executable("flite"), "-voice", voice.name, "-f", str(txt), "-o", str(out)], b"")
        else:
            _run([_executable("festival"), "-eval", f"({voice.name})", "-o", str(out), str(txt)], b"")
        wav = out.read_bytes()
    cents = float(rng.uniform(*SOX_PITCH_CENTS))
    tempo = float(rng.uniform(*SOX_TEMPO))
    # -R: sox seeds its 16-bit dither with a fixed number (else each run differs by ~2 LSB and the
    # same seed would not give the same data)
    wav = _run([_executable("sox"), "-R", "-t", "wav", "-", "-t", "wav", "-b", "16", "-", "pitch",
                f"{cents:.0f}", "tempo", "-s", f"{tempo:.3f}"], wav)
    audio, rate = _parse_wav(wav)
    return _resample(audio, rate, sample_rate), {"sox_pitch_cents": round(cents), "sox_tempo": round(tempo, 3)}


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
        raise RuntimeError("the speech engine did not produce a wav stream")
    pos, rate, bits = 12, None, None
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"fmt ":
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
            bits = int.from_bytes(data[pos + 22:pos + 24], "little")
        elif tag == b"data":
            if rate is None or bits != 16:
                raise RuntimeError(f"unexpected wav format (rate {rate}, {bits} bits)")
            pcm = data[pos + 8:]
            pcm = pcm[: len(pcm) // 2 * 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos += 8 + size + (size & 1)
    raise RuntimeError("wav stream has no data chunk")


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
    return _espeak_audio(text, variant, speed_wpm, pitch, sample_rate)


def _espeak_audio(text: str, variant: str, speed_wpm: int, pitch: int, sample_rate: int) -> np.ndarray:
    wav = _run([_executable("espeak-ng"), "-v", f"en-us+{variant}", "-s", str(int(speed_wpm)), "-p", str(int(pitch)),
                "--stdout"], text.encode())
    audio, rate = _parse_wav(wav)
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


def _median_f0(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Median F0 (Hz) of the clearly voiced 40 ms windows (normalised autocorrelation > 0.7
    at the best lag in 60-400 Hz), None when none is voiced."""
    window, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    if audio.size < window:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(float), window)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    taper = np.hanning(window)
    spec = np.abs(np.fft.rfft(frames * taper, 2 * window)) ** 2
    ac = np.fft.irfft(spec)[:, :window]
    ac = ac / np.maximum(np.correlate(taper, taper, "full")[window - 1:] / np.sum(taper ** 2), 1e-3)  # undo the taper
    lo, hi = sample_rate // 400, sample_rate // 60
    # the first lag past the zero crossing whose correlation is 90 % of the best: not a multiple
    best = ac[:, lo:hi].max(axis=1, keepdims=True)
    lag = lo + np.argmax(ac[:, lo:hi] >= 0.9 * best, axis=1)
    voiced = ac[np.arange(len(lag)), lag] > 0.7 * np.maximum(ac[:, 0], 1e-12)
    return round(float(np.median(sample_rate / lag[voiced])), 1) if voiced.any() else None


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

    Synthetic (speech_dir None): a pool of `pool_size` utterances per gender is synthesised on
    first use (random text from make_sentence(split), a voice of the split from `engines`
    (VOICES), its randomised settings, all from a generator seeded by (seed, split, gender))
    and reused afterwards, so thousands of samples cost 2 x pool_size synthesis calls.

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

    def __init__(self, split: str, seed: int, speech_dir: str | Path | None = None, pool_size: int = 24,
                 engines: tuple[str, ...] = ENGINES) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.split, self.seed, self.pool_size = split, int(seed), int(pool_size)
        self.speech_dir = Path(speech_dir) if speech_dir is not None else None
        unknown = [e for e in engines if e not in ENGINES]
        if unknown or not engines:
            raise ValueError(f"engines must be a non-empty subset of {ENGINES}, got {engines}")
        self.engines = tuple(engines)
        self._pool: dict[str, list[tuple[np.ndarray, dict[str, Any]]]] = {}
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

    def _synthetic_pool(self, gender: str) -> list[tuple[np.ndarray, dict[str, Any]]]:
        if gender not in self._pool:
            rng = np.random.default_rng([self.seed, SPLITS.index(self.split), GENDERS.index(gender)])
            choices = voices(self.split, gender, self.engines)
            if not choices:
                raise ValueError(f"no {gender} {self.split} voice among the engines {self.engines}")
            pool = []
            while len(pool) < self.pool_size:
                text = " ".join(make_sentence(self.split, rng) for _ in range(int(rng.integers(1, 3))))
                voice = choices[int(rng.integers(len(choices)))]
                audio, settings = synthesize_voice(voice, text, rng)
                audio = trim_silence(audio)
                if audio.size:
                    info = {"engine": voice.engine, "voice": voice.name, "speaker": voice.speaker,
                            "gender": gender, "f0_hz": _median_f0(audio), **settings}
                    pool.append((_normalise(audio), info))
            self._pool[gender] = pool
        return self._pool[gender]

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return _normalise(trim_silence(_resample(data.mean(axis=1), rate, SAMPLE_RATE)))

    def utterance(self, gender: str, rng: np.random.Generator, max_seconds: float = 4.0) -> np.ndarray:
        """One dry utterance (N,) float32 at 16 kHz, at most max_seconds (a random excerpt of a
        longer one)."""
        return self.utterance_with_info(gender, rng, max_seconds)[0]

    def utterance_with_info(self, gender: str, rng: np.random.Generator,
                            max_seconds: float = 4.0) -> tuple[np.ndarray, dict[str, Any]]:
        """utterance() and where it came from: engine, voice, speaker, F0 (median, Hz) and the
        drawn synthesis settings (synthetic), or the file (speech_dir)."""
        _check_gender(gender)
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        if self.speech_dir is None:
            pool = self._synthetic_pool(gender)
            audio, info = pool[int(rng.integers(len(pool)))]
        else:
            paths = self._files[gender]
            path = paths[int(rng.integers(len(paths)))]
            audio = self._load(path)
            info = {"engine": "recording", "voice": str(path.relative_to(self.speech_dir)), "gender": gender}
        limit = int(max_seconds * SAMPLE_RATE)
        if audio.size > limit:
            start = int(rng.integers(audio.size - limit + 1))
            audio = audio[start:start + limit]
        return audio.copy(), dict(info)
