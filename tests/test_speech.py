"""Speech sources: espeak-ng voices by gender, split-disjoint texts, LibriSpeech-style folders."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from sim_bridge import speech

FS = 16000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
FUNCTION_WORDS = {"the", "a", "it", "was", "and", "one", "when", "that", "which", "why", "on", "in", "at",
                  "of", "my", "our", "once", "every", "last", "before", "after", "during", "near", "throughout"}


def median_f0(x: np.ndarray, fs: int = FS) -> float:
    """Median F0 (Hz) of voiced 40 ms frames: autocorrelation peak in 60-400 Hz, kept when it
    reaches half the zero-lag value (periodic), frames within 10 dB of the loudest."""
    frame, hop = int(0.04 * fs), int(0.02 * fs)
    starts = range(0, x.size - frame, hop)
    energy = np.array([np.mean(x[i:i + frame] ** 2) for i in starts])
    lo, hi = fs // 400, fs // 60
    f0 = []
    for i, e in zip(starts, energy):
        if e < 0.1 * energy.max():
            continue
        s = x[i:i + frame] - np.mean(x[i:i + frame])
        ac = np.correlate(s, s, "full")[frame - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            f0.append(fs / lag)
    assert len(f0) > 10, "too few voiced frames"
    return float(np.median(f0))


def content_words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - FUNCTION_WORDS


@needs_espeak
def test_synthesize_returns_16k_speech() -> None:
    x = speech.synthesize("The lantern was carried across the meadow.", "male")
    assert x.dtype == np.float32 and x.ndim == 1
    assert 1.0 < x.size / FS < 5.0  # about 7 words at 160 words per minute
    assert np.max(np.abs(x)) <= 1.0 and np.sqrt(np.mean(x ** 2)) > 0.01
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / FS)
    assert spectrum[freqs < 4000].sum() > 0.9 * spectrum.sum()  # speech energy sits low


@needs_espeak
def test_female_voices_have_higher_pitch_than_male_voices() -> None:
    text = "Every evening the old miller counted the silver coins near the window."
    male = [median_f0(speech.synthesize(text, "male", variant=v, pitch=50)) for v in ("m1", "m3", "m7")]
    female = [median_f0(speech.synthesize(text, "female", variant=v, pitch=50)) for v in ("f1", "f2", "f5")]
    assert max(male) < 140 and min(female) > 160
    assert min(female) > 1.4 * max(male)


@needs_espeak
def test_speed_changes_duration() -> None:
    text = "The captain opened a wooden chest before supper."
    slow = speech.synthesize(text, "female", speed_wpm=120)
    fast = speech.synthesize(text, "female", speed_wpm=240)
    assert fast.size < 0.7 * slow.size


def test_synthesize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gender"):
        speech.synthesize("hello", "robot")
    with pytest.raises(ValueError, match="not a male voice"):
        speech.synthesize("hello", "male", variant="f1")
    with pytest.raises(ValueError, match="empty"):
        speech.synthesize("  ", "female")


def test_missing_espeak_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="espeak-ng not found"):
        speech.synthesize("hello", "male")


def test_split_vocabularies_are_disjoint() -> None:
    rng = np.random.default_rng(0)
    words = {split: set().union(*(content_words(speech.make_sentence(split, rng)) for _ in range(300)))
             for split in speech.SPLITS}
    assert all(len(w) > 20 for w in words.values())
    assert not words["train"] & words["val"]
    assert not words["train"] & words["test"]
    assert not words["val"] & words["test"]
    with pytest.raises(ValueError, match="split"):
        speech.make_sentence("dev", rng)


def test_trim_silence_removes_leading_and_trailing_quiet() -> None:
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(FS) / FS)
    padded = np.concatenate([np.zeros(FS // 2), 1e-4 * np.ones(FS // 4), tone, np.zeros(FS)]).astype(np.float32)
    trimmed = speech.trim_silence(padded)
    assert abs(trimmed.size - FS) <= int(0.02 * FS)
    assert np.max(np.abs(trimmed[: int(0.02 * FS)])) > 0.4 and np.max(np.abs(trimmed[-int(0.02 * FS):])) > 0.4


@needs_espeak
def test_speech_bank_pool_is_cached_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = speech.synthesize_voice
    monkeypatch.setattr(speech, "synthesize_voice", lambda *a, **k: calls.append(a[0].gender) or real(*a, **k))
    bank = speech.SpeechBank("test", seed=3, pool_size=4, engines=("espeak-ng",))
    rng = np.random.default_rng(0)
    clips = [bank.utterance(g, rng, max_seconds=2.0) for g in ("male", "female") * 20]
    assert calls.count("male") == 4 and calls.count("female") == 4  # 40 clips, 8 syntheses
    for clip in clips:
        assert clip.dtype == np.float32 and 0.3 * FS < clip.size <= 2 * FS
        np.testing.assert_allclose(np.sqrt(np.mean(clip.astype(float) ** 2)), 0.1, rtol=0.5)
    # Same seed -> same pool; the pool's genders are audible.
    again = speech.SpeechBank("test", seed=3, pool_size=4, engines=("espeak-ng",))
    np.testing.assert_array_equal(again.utterance("male", np.random.default_rng(0), 60.0),
                                  bank.utterance("male", np.random.default_rng(0), 60.0))
    male_f0 = np.median([median_f0(bank.utterance("male", rng, 60.0)) for _ in range(4)])
    female_f0 = np.median([median_f0(bank.utterance("female", rng, 60.0)) for _ in range(4)])
    assert female_f0 > 1.3 * male_f0


def tone(freq: float, seconds: float = 1.0, rate: int = FS) -> np.ndarray:
    return 0.2 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def dominant_hz(x: np.ndarray) -> float:
    return float(np.fft.rfftfreq(x.size, 1 / FS)[np.argmax(np.abs(np.fft.rfft(x)))])


def _write_librispeech(root, speakers: dict[str, tuple[str, float]]) -> None:
    """A tiny LibriSpeech-shaped tree: <subset>/<speaker>/<chapter>/<speaker>-<chapter>-0000.flac,
    each speaker a tone of its own frequency so the tests can tell whose file came back."""
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for spk, (sex, freq) in speakers.items():
        lines.append(f"{spk:<5}| {sex} | test-clean       | 8.02 | Reader {spk}")
        folder = root / "test-clean" / spk / "777"
        folder.mkdir(parents=True)
        sf.write(str(folder / f"{spk}-777-0000.flac"), tone(freq), FS)
    (root / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")


def test_speech_dir_with_librispeech_speakers_table(tmp_path) -> None:
    _write_librispeech(tmp_path, {"19": ("F", 300.0), "26": ("M", 500.0), "32": ("F", 700.0)})
    (tmp_path / "test-clean" / "99").mkdir()
    sf.write(str(tmp_path / "test-clean" / "99" / "99-1-1.wav"), tone(900.0), FS)  # not in SPEAKERS.TXT
    (tmp_path / "train-clean-100" / "26").mkdir(parents=True)  # another split's folder is not read
    sf.write(str(tmp_path / "train-clean-100" / "26" / "26-1-1.wav"), tone(1100.0), FS)
    bank = speech.SpeechBank("test", seed=0, speech_dir=tmp_path)
    rng = np.random.default_rng(0)
    male = {dominant_hz(bank.utterance("male", rng, max_seconds=0.5)) for _ in range(20)}
    female = {dominant_hz(bank.utterance("female", rng, max_seconds=0.5)) for _ in range(20)}
    assert male == {500.0} and female == {300.0, 700.0}
    clip = bank.utterance("male", rng, max_seconds=0.5)
    assert clip.dtype == np.float32 and clip.size == FS // 2
    np.testing.assert_allclose(np.sqrt(np.mean(clip.astype(float) ** 2)), 0.1, rtol=0.01)


def test_speech_dir_with_gender_folders_and_resampling(tmp_path) -> None:
    for gender, rate in (("male", 22050), ("female", 16000)):
        (tmp_path / gender).mkdir()
        sf.write(str(tmp_path / gender / "a.wav"), np.stack([tone(400.0, 1.0, rate)] * 2, axis=1), rate)  # stereo
    bank = speech.SpeechBank("train", seed=0, speech_dir=tmp_path)
    clip = bank.utterance("male", np.random.default_rng(0), max_seconds=10.0)
    assert abs(clip.size - FS) <= 2  # 1 s at 22.05 kHz -> 16 kHz, mono
    assert abs(dominant_hz(clip) - 400.0) <= 1.0


def test_speech_dir_missing_gender_raises(tmp_path) -> None:
    _write_librispeech(tmp_path, {"19": ("F", 300.0)})
    with pytest.raises(ValueError, match="no male speech"):
        speech.SpeechBank("test", seed=0, speech_dir=tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        speech.SpeechBank("test", seed=0, speech_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        speech.SpeechBank("dev", seed=0)


@pytest.mark.skipif(shutil.which("sox") is None or shutil.which("flite") is None, reason="sox or flite not installed")
def test_sox_augmented_voices_are_repeatable() -> None:
    """The same text, voice and rng twice gives the same samples: sox dithers its 16-bit output
    with a random seed unless told -R (that made the same seed's data differ by ~2 LSB)."""
    voice = next(v for v in speech.VOICES if v.engine == "flite")
    a, b = (speech.synthesize_voice(voice, "the same words twice", np.random.default_rng(4))[0] for _ in range(2))
    np.testing.assert_array_equal(a, b)
