"""Who is speaking: one identity per voice, kept across turns, silences and robot turns.

Why embeddings and not directions: a talker who walks, or a robot that turns, changes the
direction of arrival but not the voice. Resemblyzer's speaker encoder (Apache-2.0; the 256-D
GE2E model's weights, pretrained.pt, ship inside the Resemblyzer wheel) maps an utterance of
the omnidirectional channel to a unit vector; the same voice lands near itself (cosine ~0.9
on the simulator's voices) and other voices farther (0.4-0.8). An online clusterer keeps a
centroid per identity: a turn joins the nearest identity above `threshold`, else it opens a
new one; a turn pitched far from an identity (PITCH_RATIO) never joins it. Time plays no
part, so 30 s of silence or a turn of the robot changes nothing.

Gender comes from the voice's pitch (median F0 of its clearly voiced frames; adult male voices
sit around 85-155 Hz, female 165-255 Hz), not from any scene file.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from jaeger_ros.core.threads import BACKGROUND_NICE, lower_this_thread
from jaeger_ros.detectors.vad import CHUNK_S, OFF_THRESHOLD, ON_THRESHOLD, VAD_RATE, SpeechGate, to_vad_rate

SAME_VOICE = 0.72
"""Cosine to an identity's centroid from which a turn is that voice. Chosen on the train-split
voices (20 voices x 3 turns in a reverberant room from random directions and headings) as the
value that clusters the most two-talker sessions exactly (all 190 pairs, turns interleaved):
0.70: 80 %, 0.72: 84 %, 0.75: 78 %, 0.78: 81 %, 0.80: 57 %. The simulator's espeak-ng voices
sound alike, so other-voice pairs reach it far more often than real voices would."""
PITCH_RATIO = 1.4           # a turn whose F0 differs from an identity's by more is another voice
MIN_TURN_S = 1.0            # shorter speech gives unreliable embeddings: not identified
MAX_TURN_S = 4.0            # a longer turn is identified in pieces of this length
TURN_GAP_S = 0.4            # a pause this long ends a turn (words are closer)
EARLY_S = 1.5               # a new turn is matched (not learnt) against the known voices this far in
MALE_BELOW_HZ = 160.0


def median_f0(audio: np.ndarray, sample_rate: int = VAD_RATE) -> float | None:
    """Median F0 (Hz) over the 40 ms frames whose normalised autocorrelation peak in 60-400 Hz
    exceeds 0.6 (clearly voiced); None when no frame is."""
    x = np.asarray(audio, dtype=float).reshape(-1)
    win, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    if x.size < win:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames ** 2, axis=1)
    frames = frames[energy > 0.05 * np.percentile(energy, 95)]   # skip the quiet frames
    if not len(frames):
        return None
    spec = np.abs(np.fft.rfft(frames, 2 * win)) ** 2
    ac = np.fft.irfft(spec)[:, :win]
    ac /= np.maximum(ac[:, :1], 1e-12)
    ac *= win / (win - np.arange(win))          # unbias: long lags overlap fewer samples
    lo, hi = sample_rate // 400, sample_rate // 60
    best = ac[:, lo:hi].max(axis=1)
    # the shortest lag within 90 % of the best peak (not one of its multiples, an octave low)
    lag = lo + np.argmax(ac[:, lo:hi] >= 0.9 * best[:, None], axis=1)
    voiced = best > 0.6
    return float(np.median(sample_rate / lag[voiced])) if voiced.any() else None


def gender_from_f0(f0: float | None) -> str:
    """"male" / "female" from a median F0, "" when unknown."""
    if f0 is None:
        return ""
    return "male" if f0 < MALE_BELOW_HZ else "female"


class SpeakerEncoder:
    """Resemblyzer's encoder on CPU, on one thread (the small LSTM gains nothing from more on a
    shared 2-core machine and loses much to contention)."""

    def __init__(self) -> None:
        import torch
        from resemblyzer import VoiceEncoder
        self._torch = torch
        self._encoder = VoiceEncoder("cpu", verbose=False)
        self._warm_up()

    def _warm_up(self) -> None:
        """One pass over noise now, so the first voice heard live does not pay librosa's and
        torch's first-call set-up (seconds: a live node would drop frames)."""
        from resemblyzer import preprocess_wav
        noise = np.random.default_rng(0).normal(0.0, 0.1, 2 * VAD_RATE).astype(np.float32)
        preprocess_wav(noise)
        self._embed(noise)

    def _embed(self, wav: np.ndarray) -> np.ndarray:
        threads = self._torch.get_num_threads()
        self._torch.set_num_threads(1)   # measured 200 ms per 2 s turn on one thread, 730 ms on a busy pool of 2
        try:
            return np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)
        finally:
            self._torch.set_num_threads(threads)

    def __call__(self, audio: np.ndarray, sample_rate: int = VAD_RATE) -> np.ndarray:
        """Unit 256-D embedding of one utterance (its long silences are trimmed first)."""
        from resemblyzer import preprocess_wav
        x = to_vad_rate(audio, sample_rate)
        if x.size < int(0.3 * VAD_RATE) or not np.any(x):
            raise ValueError("utterance too short or silent to embed")
        wav = preprocess_wav(x)
        if wav.size < int(0.3 * VAD_RATE):
            raise ValueError("utterance has too little speech to embed")
        return self._embed(wav)


@dataclass
class Identity:
    voice_id: int
    centroid: np.ndarray
    turns: int = 1
    f0s: list[float] = field(default_factory=list)

    @property
    def gender(self) -> str:
        return gender_from_f0(float(np.median(self.f0s)) if self.f0s else None)


class VoiceIdentities:
    """Online clustering of turn embeddings into identities (ids 0, 1, 2, ... in order of
    first appearance). A centroid is the normalised mean of its turns' embeddings."""

    def __init__(self, threshold: float = SAME_VOICE) -> None:
        self.threshold = threshold
        self.identities: list[Identity] = []

    def _nearest(self, embedding: np.ndarray, f0: float | None) -> tuple[np.ndarray, int | None, float]:
        """(unit embedding, index of the most similar identity of a compatible pitch if its cosine
        reaches the threshold else None, that cosine)."""
        e = np.asarray(embedding, dtype=np.float64)
        e = e / np.linalg.norm(e)
        if not self.identities:
            return e, None, -1.0
        sims = np.array([float(e @ ident.centroid) for ident in self.identities])
        for k, ident in enumerate(self.identities):
            if f0 is not None and ident.f0s:
                ratio = f0 / float(np.median(ident.f0s))
                if max(ratio, 1.0 / ratio) > PITCH_RATIO:
                    sims[k] = -1.0
        best = int(np.argmax(sims))
        return e, (best if sims[best] >= self.threshold else None), float(sims[best])

    def assign(self, embedding: np.ndarray, f0: float | None = None) -> tuple[int, float]:
        """(voice id, cosine to its centroid before the update; 1.0 for a new voice)."""
        e, best, sim = self._nearest(embedding, f0)
        if best is not None:
            ident = self.identities[best]
            total = ident.centroid * ident.turns + e
            ident.centroid, ident.turns = total / np.linalg.norm(total), ident.turns + 1
            if f0 is not None:
                ident.f0s.append(f0)
            return ident.voice_id, sim
        self.identities.append(Identity(len(self.identities), e, 1, [] if f0 is None else [f0]))
        return self.identities[-1].voice_id, 1.0

    def match(self, embedding: np.ndarray, f0: float | None = None) -> int | None:
        """The identity `assign` would give, without learning from it; None for a new voice."""
        return self._nearest(embedding, f0)[1]

    def gender(self, voice_id: int) -> str:
        return self.identities[voice_id].gender


@dataclass(frozen=True)
class VoiceTurn:
    """One identified stretch of speech in stream time."""

    start_s: float
    end_s: float
    voice_id: int
    similarity: float
    gender: str          # of the identity so far ("" unknown)
    f0_hz: float | None


class VoiceStream:
    """Voice activity + identity over a live stream of overlapping FOA windows (each ending at
    its stamp). Speech chunks gather into a turn that ends at a TURN_GAP_S pause or after
    MAX_TURN_S; a turn of at least MIN_TURN_S is embedded and assigned an identity. `update`
    returns the turns finished by the new audio; `last` is the latest one. A new turn is also
    matched against the known voices once EARLY_S of it is heard (`current` names that voice
    while the turn goes on), so a known voice is named ~1.5 s into a turn instead of at its end.
    The VAD pass is `gate`'s (a SpeechGate), so a pipeline that also gates DoA votes runs silero
    once. `background`: embeddings (120-300 ms each on 2 shared cores) run in a worker thread
    (core.threads.BACKGROUND_NICE below the caller) and their results are applied on a later
    `update`, so a live stream is not stalled by them."""

    def __init__(self, encoder: SpeakerEncoder | None = None, threshold: float = SAME_VOICE,
                 gate: SpeechGate | None = None, background: bool = False) -> None:
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="voice_id", initializer=lower_this_thread,
                                          initargs=(BACKGROUND_NICE,)) if background else None
        self._jobs: deque[tuple[str, Future, tuple]] = deque()  # ("turn" | "peek", result, context) in order
        self._serial = 0                 # number of the turn in progress (a late early match must be for it)
        self.gate = gate or SpeechGate()
        self._encoder = encoder or SpeakerEncoder()
        self.identities = VoiceIdentities(threshold)
        self._turn: list[np.ndarray] = []
        self._turn_start = 0.0
        self._silent_chunks = 0
        self._inside = False
        self._early: int | None = None   # voice id matched early for the turn in progress
        self.last: VoiceTurn | None = None

    def update(self, stamp: float, foa: np.ndarray, sample_rate: int) -> list[VoiceTurn]:
        return self.feed(*self.gate.update(stamp, foa, sample_rate), restarted=self.gate.restarted)

    def feed(self, t0: float, chunks: np.ndarray, probs: np.ndarray, restarted: bool = False) -> list[VoiceTurn]:
        """Fold in consecutive VAD chunks (SpeechGate.update's output) starting at stream time t0."""
        if restarted:
            self._turn, self._inside, self._silent_chunks, self._early = [], False, 0, None
            self._serial += 1
        finished = self._drain(block=False)
        for k, (chunk, p) in enumerate(zip(chunks, probs)):
            t = t0 + k * CHUNK_S
            if not self._inside and p >= ON_THRESHOLD:
                self._inside, self._silent_chunks = True, 0
                if not self._turn:
                    self._turn_start = t
            elif self._inside and p < OFF_THRESHOLD:
                self._inside = False
            if self._inside:
                self._turn.append(chunk)
                self._silent_chunks = 0
            elif self._turn:
                self._silent_chunks += 1
                self._turn.append(chunk)   # keep word gaps; trimmed below if the turn ends
            end_by_gap = self._turn and not self._inside and self._silent_chunks * CHUNK_S >= TURN_GAP_S
            if self._inside and self._early is None and abs(len(self._turn) * CHUNK_S - EARLY_S) < CHUNK_S / 2 \
                    and not self._continues():
                audio = np.concatenate(self._turn)
                if self._worker is None:
                    self._matched(self._peek(audio), self._serial)
                else:
                    self._jobs.append(("peek", self._worker.submit(self._features, audio), (self._serial,)))
            if end_by_gap or len(self._turn) * CHUNK_S >= MAX_TURN_S:
                audio = np.concatenate(self._turn[:len(self._turn) - self._silent_chunks] if end_by_gap else self._turn)
                if self._jobs and abs(self._turn_start - self._pending_end()) < CHUNK_S / 2:
                    finished += self._drain(block=True)  # a continuation needs its head's identity
                if self._continues():
                    finished.append(self._set_last(self._continued(audio)))
                elif self._worker is None:
                    turn = self._identify(audio, self._turn_start)
                    if turn is not None:
                        finished.append(self._set_last(turn))
                elif audio.size >= MIN_TURN_S * VAD_RATE:
                    self._jobs.append(("turn", self._worker.submit(self._features, audio),
                                       (self._turn_start, self._turn_start + audio.size / VAD_RATE)))
                self._turn, self._silent_chunks, self._early = [], 0, None
                self._turn_start = t + CHUNK_S
                self._serial += 1
        return finished

    def _set_last(self, turn: VoiceTurn) -> VoiceTurn:
        self.last = turn
        return turn

    def _matched(self, voice_id: int | None, serial: int) -> None:
        """An early match for turn `serial` (ignored if that turn is over)."""
        if serial == self._serial and self._turn:
            self._early = voice_id

    def _pending_end(self) -> float:
        """End of the newest turn waiting for its embedding (-inf: none)."""
        ends = [ctx[1] for kind, _, ctx in self._jobs if kind == "turn"]
        return ends[-1] if ends else -np.inf

    def _features(self, audio: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        """(embedding or None when it cannot be embedded, median F0): the worker's part."""
        try:
            return self._encoder(audio), median_f0(audio)
        except ValueError:
            return None, None

    def _drain(self, block: bool) -> list[VoiceTurn]:
        """Apply the worker's finished results in submission order; `block`: wait for all."""
        finished = []
        while self._jobs and (block or self._jobs[0][1].done()):
            kind, future, ctx = self._jobs.popleft()
            embedding, f0 = future.result()
            if kind == "peek":
                self._matched(None if embedding is None else self.identities.match(embedding, f0), *ctx)
            elif (turn := self._assigned(ctx[0], ctx[1], embedding, f0)) is not None:
                finished.append(self._set_last(turn))
        return finished

    def _assigned(self, start: float, end: float, embedding: np.ndarray | None, f0: float | None) -> VoiceTurn | None:
        """The turn [start, end] given the identity its embedding is assigned (None: not embeddable)."""
        if embedding is None:
            return None
        voice_id, sim = self.identities.assign(embedding, f0)
        return VoiceTurn(start, end, voice_id, sim, self.identities.gender(voice_id), f0)

    def _continues(self) -> bool:
        """Whether the turn in progress goes on from the last identified one (a long turn cut at
        MAX_TURN_S): the same voice."""
        return self.last is not None and abs(self._turn_start - self.last.end_s) < CHUNK_S / 2

    def _continued(self, audio: np.ndarray) -> VoiceTurn:
        """The next piece of a long turn: the same voice by construction (no pause for another
        talker to start), so it keeps the last identity and is not embedded (its tail can be
        too short to embed reliably: on the simulator's voices a 1.3 s tail scored 0.5 against
        its own 4 s head and opened a second identity)."""
        last = self.last
        assert last is not None
        ident = self.identities.identities[last.voice_id]
        ident.turns += 1
        return VoiceTurn(self._turn_start, self._turn_start + audio.size / VAD_RATE, last.voice_id, float("nan"),
                         ident.gender, last.f0_hz)

    def _peek(self, audio: np.ndarray) -> int | None:
        embedding, f0 = self._features(audio)
        return None if embedding is None else self.identities.match(embedding, f0)

    def current(self, now: float, hold_s: float) -> VoiceTurn | None:
        """The identified turn whose voice is heard at `now`: the last one while its speech goes on
        (a long turn is identified in MAX_TURN_S pieces) or ended within hold_s; None while a new
        turn, perhaps another voice, is not yet identified, and in silence."""
        last = self.last
        if self._turn and self._early is not None:   # a known voice matched early in this turn
            ident = self.identities.identities[self._early]
            return VoiceTurn(self._turn_start, now, ident.voice_id, float("nan"), ident.gender, None)
        if last is None:
            return None
        if self._turn:   # speech in progress: the same voice only if it continues the last turn
            return last if self._continues() else None
        return last if now - last.end_s <= hold_s else None

    def _identify(self, audio: np.ndarray, start: float) -> VoiceTurn | None:
        if audio.size < MIN_TURN_S * VAD_RATE:
            return None
        return self._assigned(start, start + audio.size / VAD_RATE, *self._features(audio))
