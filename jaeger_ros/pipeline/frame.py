"""The per-frame pipeline of jaeger_node, free of ROS: one estimator turns an RGB-D frame and the
FOA window that ends at its stamp into boxes, a sound direction and the matched box.

Why its own stage: the node, the live demo, `jaeger record` and the benchmarks must run the
same detect -> lift -> hear -> match code; the node file stays ROS glue around it. It sits after
the estimators (classical, model) and before the ROS edge.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from jaeger_ros.core import answers
from jaeger_ros.core.geometry import Box3D, Intrinsics, box_category, direction_from_azel

if TYPE_CHECKING:  # classical.matching is imported when an estimator is built
    from jaeger_ros.classical.matching import MatchResult

METHODS = ("classical", "jaeger")
DOA_METHODS = ("robust", "onset")
"""ClassicalEstimator's sound-only DoA: "robust" (classical/doa_robust.py through
tracking.RobustPool: noise-tracked direct-path-dominance votes, talker-change reset; the
default) or "onset" (the earlier doa.py onset votes through tracking.OnsetPool)."""
CANDIDATES = ("depth", "classified", "detectors")
"""ClassicalEstimator's candidates: "depth" (every loudspeaker-sized depth blob, category
"unknown": plants and lamps included), "classified" (those blobs scored by the loudspeaker crop
classifier, the rejected ones dropped; ~1 ms more; the default when its checkpoint loads) or
"detectors" (detectors.candidates: people from the person detectors + classified loudspeakers,
0.2-0.7 s a new scene on 2 shared cores, in a background thread in the node)."""
UNKNOWN = "unknown"
VAD_HOLD_S = 1.2
"""With the VAD on, a direction is reported only while speech was heard within this long
(longer than the pauses between a talker's sentences, 0.3-1 s in the simulator): nobody
speaking, no direction."""
VOTE_LEAD_S = 0.15
"""DoA votes this long before a speech span still count: silero enters a span a chunk or two
(32 ms each) after the first syllable, and that syllable's onset is the cleanest vote."""
VAD_ON, VAD_OFF = 0.35, 0.25
"""Whether somebody spoke within VAD_HOLD_S is judged on speech entered at this silero probability
and left under VAD_OFF, lower than silero's own 0.5 / 0.35 (detectors.vad), which still decide
the votes: a talker in a reverberant room scores 0.15-0.6 for whole utterances even with every
noise removed (live mesh world, seed 5, scene 8: pink noise at 27 dB, no direction for 2.8 s of
speech), while ambient sound alone stays lower (live mesh world, seeds 5-7, 44 scenes: noise,
fan and babble at 8-34 dB SNR 0.27 at most, a TV talks and passes either way; procedural babble
0.43 in single chunks, which open this gate on no new vote). Votes from the weaker chunks were
tried too: in babble they let the crowd's directions in (seed 6, scene 3: 51 of 51 frames
matched -> 32)."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    """One frame's result in JAEGER's camera frame."""

    boxes: list[Box3D]  # left to right
    direction: np.ndarray | None  # unit DoA of the target voice (None: no usable sound)
    doa_confidence: float
    index: int  # matched box, -1 for none
    label: str
    confidence: float
    voice_id: str = ""      # identity of the voice heard ("voice_<n>", n from 0 in order of appearance; "" unknown)
    voice_gender: str = ""  # "male" / "female" from that voice's pitch ("" unknown)

    @property
    def categories(self) -> list[str]:
        """Per box: "loudspeaker", "person" or "unknown" (geometry.box_category)."""
        return [box_category(b) for b in self.boxes]

    @property
    def scores(self) -> list[float]:
        """Per box: its category's detector or classifier score in [0, 1]."""
        return [float(b.score) for b in self.boxes]

    @property
    def category(self) -> str:
        """Category of the matched box ("" when none is matched)."""
        return box_category(self.boxes[self.index]) if 0 <= self.index < len(self.boxes) else ""


def _as_candidate(box: Box3D, category: str, score: float) -> Box3D:
    """`box` carrying its category (extra["category"], read by geometry.box_category) and score."""
    return Box3D(box.center, box.size, label=box.label, score=float(score), extra={**box.extra, "category": category})


def _detected(found: list) -> list[Box3D]:
    """detectors.candidates results as candidate boxes carrying their category and score."""
    return [_as_candidate(c.box, c.category, c.score) for c in found]


class ClassicalEstimator:
    """Candidates (CANDIDATES) + intensity-vector DoA pooled over the stream + matching over every
    candidate, people and loudspeakers alike, filtered over time (matching.TalkerFilter: one
    wandering DoA does not move the match, a run of them does). The match confidence is the
    DoA's confidence times the filter's probability, so a guess from a reverberant window is
    not reported as certain.

    Candidates are recomputed only when the depth image changes (DEPTH_CHANGE_* below): a
    static scene keeps stable boxes and saves 20-50 ms a frame. Such a change also resets the
    DoA pool, so onsets heard before the scene changed do not vote after it. The published
    direction is the sound-only estimate (`doa`: one of DOA_METHODS); the matched box is
    reported beside it, never snapped into it."""

    name = "classical"
    DEPTH_STRIDE = 8
    DEPTH_CHANGE_M = 0.05     # a pixel moved more than this ...
    DEPTH_CHANGE_SHARE = 0.02  # ... in more than this share of the (subsampled) image: new scene

    def __init__(self, doa_memory_s: float = 5.0, doa: str = "robust", candidates: str = "classified",
                 vad: bool = True, voices: bool = False, background: bool = False, dereverb: bool = False) -> None:
        """`vad`: only votes inside speech (silero, detectors.vad) count, and no direction is
        reported when nobody spoke within VAD_HOLD_S; `voices`: each voice heard gets an identity
        (detectors.voice_id: Resemblyzer embeddings clustered online, gender from pitch);
        `background` (the live node): the detectors (candidates "detectors") run beside the
        stream: a changed view gets its loudspeakers at once and its people a few frames later
        (meanwhile the earlier people the depth still shows, candidates.still_there); so do
        the voice embeddings (their identities arrive a frame or a few later instead of stalling
        the stream 120-300 ms per turn); `dereverb`: the DoA votes are taken from the audio with its
        late reverberation removed (classical.dereverb.StreamDereverb, multichannel WPE; its filter
        is fitted in a background thread when `background`); the VAD and the voices hear the audio
        as it came."""
        from jaeger_ros.classical import candidates as blobs
        from jaeger_ros.classical import matching, tracking
        if doa not in DOA_METHODS:
            raise ValueError(f"doa must be one of {DOA_METHODS}, got {doa!r}")
        if candidates not in CANDIDATES:
            raise ValueError(f"candidates must be one of {CANDIDATES}, got {candidates!r}")
        self._blobs, self._matching = blobs, matching
        self._classifier, self._detector = None, None
        if candidates == "classified":
            from jaeger_ros.detectors import loudspeaker
            try:
                self._classifier = loudspeaker.LoudspeakerClassifier()
            except Exception as err:  # no checkpoint (or torch): the unclassified blobs still work
                _log.warning("loudspeaker classifier not loaded (%s: %s): candidates are unclassified depth blobs",
                             type(err).__name__, err)
                candidates = "depth"
            self._threshold = loudspeaker.THRESHOLD
        elif candidates == "detectors":
            from jaeger_ros.detectors.candidates import CandidateDetector
            self._detector = CandidateDetector()
        self._background = background and self._detector is not None
        self.candidates = candidates  # what is used (a failed "classified" is "depth")
        self._new_pool = lambda: (tracking.RobustPool(memory_s=doa_memory_s) if doa == "robust"
                                  else tracking.OnsetPool(memory_s=doa_memory_s))
        self._pool = self._new_pool()
        self._dereverb = None
        if dereverb:
            from jaeger_ros.classical.dereverb import StreamDereverb
            self._dereverb = StreamDereverb(background=background)
        self._last_stamp: float | None = None
        self._depth_key: np.ndarray | None = None
        self._boxes: list[Box3D] = []
        self._talker = matching.TalkerFilter()
        self.vad = vad
        self._gate, self._voices = None, None
        if vad or voices:
            from jaeger_ros.detectors import vad as speech
            self._gate = speech.SpeechGate(memory_s=doa_memory_s + 2.0)
        if voices:
            from jaeger_ros.detectors.voice_id import VoiceStream
            self._voices = VoiceStream(gate=self._gate, background=background)

    def _scene_changed(self, depth: np.ndarray) -> bool:
        """Whether the depth moved since the candidates were computed. Only pixels valid in both
        frames are compared, so the flickering holes of a real sensor do not count as change."""
        key = np.nan_to_num(depth[::self.DEPTH_STRIDE, ::self.DEPTH_STRIDE], nan=0.0, posinf=0.0, neginf=0.0)
        old = self._depth_key
        if old is not None and key.shape == old.shape:
            both = (key > 0) & (old > 0)
            moved = both & (np.abs(key - old) > self.DEPTH_CHANGE_M)
            if both.sum() >= 0.5 * max((key > 0).sum(), (old > 0).sum()) and \
                    moved.sum() <= self.DEPTH_CHANGE_SHARE * both.sum():
                return False
        self._depth_key = key
        return True

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, foa: np.ndarray | None,
                 sample_rate: int, target: str, stamp: float, valid: np.ndarray | None = None) -> Estimate:
        if self._last_stamp is not None and stamp < self._last_stamp:  # the stream restarted
            self._pool = self._new_pool()
            self._talker.reset()
            self._forget_room()
        self._last_stamp = stamp
        if self._background and (found := self._detector.poll()) is not None:
            self._boxes = _detected(found)
        if self._scene_changed(depth):
            self._pool.reset(stamp)
            self._talker.reset()
            self._forget_room()
            try:
                if self._background:   # loudspeakers now, people when the background run ends
                    self._boxes = _detected(self._detector.submit(rgb, depth, intrinsics))
                else:
                    self._boxes = self._find(rgb, depth, intrinsics)  # left to right by azimuth
            except ValueError:
                self._depth_key, self._boxes = None, []  # try again on the next frame
                raise
        boxes = self._boxes
        voice = self._hear(stamp, foa, sample_rate)
        if self.vad and foa is not None:
            valid = self._speech_only(stamp, foa.shape[1], sample_rate, valid)
        heard = foa if foa is None or self._dereverb is None else self._dereverb(stamp, foa, sample_rate)
        est = self._pool.update(stamp, heard, sample_rate, valid)
        if self.vad and not self._spoke_recently(stamp):
            est = None  # the pool still remembers votes of speech that ended: nobody speaks now
        if est is None:
            return Estimate(boxes, None, 0.0, -1, "", 0.0, *voice)
        direction = np.asarray(est.direction, dtype=float)
        if not boxes:
            return Estimate(boxes, direction, float(est.confidence), -1, "", 0.0, *voice)
        match = self._match(direction, float(est.confidence), boxes, stamp, voice[0])
        return Estimate(boxes, direction, float(est.confidence), int(match.index), match.label,
                        float(est.confidence * match.confidence), *voice)

    def _forget_room(self) -> None:
        """A new view may be a new room: the dereverberation filter starts afresh."""
        if self._dereverb is not None:
            self._dereverb.reset()

    def _match(self, direction: np.ndarray, confidence: float, boxes: list[Box3D], stamp: float,
               voice_id: str) -> MatchResult:
        """The candidate the DoAs heard so far point at (matching.TalkerFilter over this DoA's
        match_speaker)."""
        return self._talker.update(self._matching.match_speaker(direction, boxes), confidence, boxes, stamp, voice_id)

    def _hear(self, stamp: float, foa: np.ndarray | None, sample_rate: int) -> tuple[str, str]:
        """Run the VAD (and voice identity) over the window's unheard audio; returns the
        (voice id, gender) of the voice heard now, ("", "") when unknown."""
        if foa is not None and self._voices is not None:
            self._voices.update(stamp, foa, sample_rate)
        elif foa is not None and self._gate is not None:
            self._gate.update(stamp, foa, sample_rate)
        turn = self._voices.current(stamp, VAD_HOLD_S) if self._voices is not None else None
        if turn is None:
            return "", ""
        return f"voice_{turn.voice_id}", self._voices.identities.gender(turn.voice_id)

    def _speech_only(self, stamp: float, n: int, sample_rate: int, valid: np.ndarray | None) -> np.ndarray:
        """The window's sample mask with everything outside speech (as the gate heard it) marked
        invalid, which the pools treat as a dropout: no vote there, and none from the fallback."""
        times = stamp - n / sample_rate + np.arange(n) / sample_rate
        speech = self._gate.mask(times, min_speech_s=0.0, pad_before_s=VOTE_LEAD_S)
        return speech if valid is None else speech & np.asarray(valid, bool)

    def _spoke_recently(self, stamp: float) -> bool:
        """Speech (at VAD_ON, VAD_OFF) ended within VAD_HOLD_S or goes on."""
        end = self._gate.last_speech(on=VAD_ON, off=VAD_OFF)
        return end is not None and stamp - end <= VAD_HOLD_S

    def _find(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Box3D]:
        """This frame's candidates, left to right, each with its category and score."""
        if self._detector is not None:
            return _detected(self._detector(rgb, depth, intrinsics))
        boxes = self._blobs.boxes_from_depth(depth, intrinsics)
        if self._classifier is None:
            return [_as_candidate(b, UNKNOWN, b.score) for b in boxes]
        probs = self._classifier(rgb, depth, intrinsics, boxes)
        return [_as_candidate(b, "loudspeaker", p) for b, p in zip(boxes, probs) if p >= self._threshold]


class JaegerEstimator:
    """The fine-tuned JAEGER model: grounding (task C), then DoA (A/B) and matching (D/E)."""

    name = "jaeger"

    def __init__(self, checkpoint: str) -> None:
        try:
            from jaeger_ros.model import predictor
        except ImportError as err:
            raise RuntimeError(f"method 'jaeger' needs jaeger_ros.model (torch, transformers), which is not "
                               f"importable ({err}); use method 'classical' or install the model's requirements") from err
        self._model = predictor.JaegerPredictor.from_pretrained(checkpoint or "default")

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, foa: np.ndarray | None,
                 sample_rate: int, target: str, stamp: float, valid: np.ndarray | None = None) -> Estimate:
        """`valid` (the window's real samples) is not used: the model was trained on whole
        windows; the node scales the confidence by its share instead."""
        grounding = self._model.predict(rgb, depth, intrinsics, None, sample_rate, "C")
        boxes = [grounding.boxes[i] for i in answers.azimuth_order(grounding.boxes)]  # left to right
        if foa is None:
            return Estimate(boxes, None, 0.0, -1, "", 0.0)
        voice = target or None
        doa, match = self._model.predict_batch([
            dict(rgb=None, depth=None, intrinsics=None, foa=foa, sample_rate=sample_rate, task="B" if voice else "A",
                 target=voice),
            dict(rgb=rgb, depth=depth, intrinsics=intrinsics, foa=foa, sample_rate=sample_rate,
                 task="E" if voice else "D", target=voice, num_candidates=len(boxes) or None)])
        direction = direction_from_azel(doa.azimuth_deg, doa.elevation_deg) if doa.valid else None
        if not (match.valid and match.match_index is not None and 0 <= match.match_index < len(boxes)):
            return Estimate(boxes, direction, doa.confidence if doa.valid else 0.0, -1, "", 0.0)
        # the label follows the index among the boxes in view (the model's own label may name a
        # position the index does not have)
        return Estimate(boxes, direction, doa.confidence if doa.valid else 0.0, match.match_index,
                        answers.match_label(match.match_index, len(boxes)), match.confidence)


def labelled(est: Estimate) -> Estimate:
    """`est` with a non-empty label whenever a box is matched (the SpeakerMatch contract)."""
    if est.index >= 0 and not est.label:
        return replace(est, label=answers.match_label(est.index, len(est.boxes)))
    return est


def make_estimator(method: str, checkpoint: str, doa_memory_s: float = 5.0, doa: str = "robust",
                   candidates: str = "classified", vad: bool = True, voices: bool = False,
                   background: bool = False, dereverb: bool = False) -> ClassicalEstimator | JaegerEstimator:
    """`doa` chooses the classical estimator's sound-only DoA (DOA_METHODS), `candidates` its
    candidates (CANDIDATES), `vad` and `voices` its speech gate and voice identity, `background`
    whether its detectors run beside the stream, `dereverb` whether its DoA hears the audio
    dereverberated."""
    if method == "classical":
        return ClassicalEstimator(doa_memory_s, doa, candidates, vad, voices, background, dereverb)
    if method == "jaeger":
        return JaegerEstimator(checkpoint)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
