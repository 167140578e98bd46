"""A live, ROS-free simulated world: RGB-D frames and a continuous FOA stream with ground truth.

Why: the ROS sim_bridge node only paces and publishes; everything that decides what the
camera sees and the microphone hears lives here so it can be tested without ROS.

Timeline (seconds of stream time since `start`): scene k covers [k P, (k+1) P) with P the
scene period rounded to whole audio chunks. Each scene is drawn from its own generator seeded
by (seed, k), so the world does not depend on timing. The camera is static within a scene,
so its frame is rendered once and re-stamped. Loudspeakers play dry speech with pauses;
the FOA stream is the sum over loudspeakers of speech convolved with each one's FOA room
impulse response, computed chunk by chunk with overlap-add (the tail of every chunk rings on
into the next), plus a little sensor noise. Scenario "single": one loudspeaker per scene
talks; "dual": a male and a female loudspeaker talk independently (they overlap at times).

Frames: the simulator's world is y up; `map` is REP-103 (z up): map = (z, x, y) of world.
TF (tf_links): map -> odom -> base_link -> camera_link -> camera_color_optical_frame (REP-105).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from jaeger_ros.core import foa
from jaeger_ros.core.answers import match_label
from jaeger_ros.core.geometry import (BODY_FROM_CAMERA, OPTICAL_FROM_CAMERA, Box3D, Intrinsics, SourceTruth,
                                 azel_from_direction, pose_matrix)
from sim_bridge.acoustics import foa_rir
from sim_bridge.render import render
from sim_bridge.scene import sample_scene
from sim_bridge.speech import SpeechBank

SCENARIOS = ("single", "dual")
MAP_FROM_WORLD = pose_matrix(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.zeros(3))
"""map (REP-103, z up) <- simulator world (y up): map = (z, x, y) of world, so the room spans
[0, sz] x [0, sx] x [0, sy] in map."""
LINK_FROM_OPTICAL = pose_matrix(BODY_FROM_CAMERA @ OPTICAL_FROM_CAMERA.T, np.zeros(3))
"""camera_link (REP-103 body axes) <- camera optical frame: the standard fixed rotation."""
CAMERA_FROM_OPTICAL = pose_matrix(OPTICAL_FROM_CAMERA.T, np.zeros(3))
MAP_FRAME, ODOM_FRAME, BASE_FRAME, CAMERA_LINK_FRAME = "map", "odom", "base_link", "camera_link"
OPTICAL_FRAME = "camera_color_optical_frame"
"""Frame of the colour and depth images (depth is registered to colour) and of the ground truth."""


@dataclass(frozen=True)
class LiveConfig:
    scenario: str = "single"
    min_loudspeakers: int = 2
    max_loudspeakers: int = 3
    split: str = "test"
    seed: int = 0
    scene_period_s: float = 8.0
    chunk_s: float = 0.05
    width: int = 640
    height: int = 480
    hfov_deg: float = 90.0
    pause_s: tuple[float, float] = (0.3, 1.0)
    utterance_max_s: float = 4.0
    noise_rms: float = 1e-4
    speech_pool: int = 8
    speech_dir: str | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        lo, hi = self.min_loudspeakers, self.max_loudspeakers
        need = 2 if self.scenario == "dual" else 1
        if not need <= lo <= hi:
            raise ValueError(f"need {need} <= min_loudspeakers <= max_loudspeakers, got {lo}..{hi}")
        if self.chunk_s <= 0 or self.scene_period_s < self.chunk_s:
            raise ValueError(f"need 0 < chunk_s <= scene_period_s, got {self.chunk_s}, {self.scene_period_s}")
        if not 0 <= self.pause_s[0] <= self.pause_s[1] or self.utterance_max_s <= 0:
            raise ValueError(f"bad speech timing: pauses {self.pause_s}, utterances <= {self.utterance_max_s} s")


@dataclass
class _Voice:
    """One talking loudspeaker: its RIR (as an FFT for overlap-add) and speech schedule."""

    gender: str
    loudspeaker: int  # index into scene.loudspeakers
    rir_fft: np.ndarray
    rir_len: int
    rng: np.random.Generator
    tail: np.ndarray
    utterance: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pos: int = 0  # samples of `utterance` already played
    wait: int = 0  # samples of pause left before the next utterance
    active_since: int | None = None  # absolute sample where the current utterance began
    intervals: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of utterances


@dataclass
class LiveScene:
    index: int
    scene: object  # sim_bridge.scene.Scene
    rgb: np.ndarray
    depth: np.ndarray
    boxes: list[Box3D]  # camera frame, left to right
    order: list[int]  # order[rank] = loudspeaker index
    voices: list[_Voice]
    map_from_optical: np.ndarray


@dataclass(frozen=True)
class GroundTruth:
    time: float
    scene_id: int
    scenario: str
    boxes: list[Box3D]
    sources: list[SourceTruth]
    map_from_optical: np.ndarray
    room_size_map: np.ndarray


class LiveWorld:
    """Scenes, frames and a continuous FOA stream on one sample clock (see module doc)."""

    def __init__(self, config: LiveConfig) -> None:
        self.config = config
        self.sample_rate = foa.SAMPLE_RATE
        self.intrinsics = Intrinsics.from_hfov(config.width, config.height, config.hfov_deg)
        self.chunk = int(round(config.chunk_s * self.sample_rate))
        self.scene_samples = self.chunk * max(1, int(round(config.scene_period_s / config.chunk_s)))
        self.speech = SpeechBank(config.split, config.seed, config.speech_dir, pool_size=config.speech_pool)
        self.t0: float | None = None
        self._next = 0  # absolute index of the next audio sample to emit
        self._scenes: dict[int, LiveScene] = {}
        self._building: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._noise_rng = np.random.default_rng([config.seed, 7])

    # --- scenes ---------------------------------------------------------------------------
    def _build(self, k: int) -> LiveScene:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, k])
        n = int(rng.integers(cfg.min_loudspeakers, cfg.max_loudspeakers + 1))
        scene = sample_scene(rng, cfg.split, n, self.intrinsics)
        rendered = render(scene, self.intrinsics)
        boxes = scene.loudspeaker_boxes_camera()
        order = sorted(range(len(boxes)), key=lambda i: boxes[i].center[0])
        wfc = np.asarray(scene.world_from_camera(), dtype=float)
        receiver = wfc[:3, 3]
        if cfg.scenario == "single":
            talkers = [(str(rng.choice(("male", "female"))), int(rng.integers(len(boxes))))]
        else:
            pair = rng.choice(len(boxes), size=2, replace=False)
            talkers = [("male", int(pair[0])), ("female", int(pair[1]))]
        voices = []
        for gender, i in talkers:
            rir = foa_rir(scene.room, scene.loudspeakers[i].acoustic_center, receiver, wfc[:3, :3],
                          self.sample_rate, rng)
            nfft = 1 << int(np.ceil(np.log2(self.chunk + rir.shape[1] - 1)))
            voices.append(_Voice(gender, i, np.fft.rfft(rir.astype(float), nfft, axis=1), rir.shape[1],
                                 np.random.default_rng([cfg.seed, k, len(voices) + 1]),
                                 np.zeros((4, rir.shape[1] - 1))))
        for v in voices:  # a short random lead-in so voices do not all start at the scene cut
            v.wait = int(v.rng.uniform(0.0, cfg.pause_s[1]) * self.sample_rate)
        return LiveScene(k, scene, rendered.rgb, rendered.depth, [boxes[i] for i in order], order, voices,
                         MAP_FROM_WORLD @ wfc @ CAMERA_FROM_OPTICAL)

    def _prefetch(self, k: int) -> None:
        """Build scene k in the background so a scene cut does not stall the stream."""
        def work() -> None:
            built = self._build(k)
            with self._lock:
                self._scenes[k] = built
        with self._lock:
            if k in self._scenes or k in self._building:
                return
            thread = threading.Thread(target=work, name=f"scene-{k}", daemon=True)
            self._building[k] = thread
        thread.start()

    def scene(self, k: int) -> LiveScene:
        """Scene k (built now if its prefetch has not finished); prefetches k+1 and forgets k-2."""
        self._prefetch(k)
        self._building[k].join()
        with self._lock:
            for old in [j for j in self._scenes if j < k - 1]:
                del self._scenes[old]
                self._building.pop(old, None)
            current = self._scenes[k]
        self._prefetch(k + 1)
        return current

    def scene_index(self, t: float) -> int:
        return int(max(0, self._sample_at(t)) // self.scene_samples)

    # --- clock ----------------------------------------------------------------------------
    def start(self, t0: float) -> None:
        """Anchor stream sample 0 at capture time t0 (seconds) and build the first scene."""
        self.t0, self._next = float(t0), 0
        self.scene(0)

    def _sample_at(self, t: float) -> int:
        if self.t0 is None:
            raise RuntimeError("LiveWorld.start() has not been called")
        return int(round((t - self.t0) * self.sample_rate))

    @property
    def next_chunk_time(self) -> float:
        """Capture time of the first sample of the next chunk."""
        return self.t0 + self._next / self.sample_rate

    # --- audio ----------------------------------------------------------------------------
    def _dry(self, v: _Voice, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float64)
        i = 0
        while i < n:
            if v.pos < v.utterance.size:
                take = min(n - i, v.utterance.size - v.pos)
                out[i:i + take] = v.utterance[v.pos:v.pos + take]
                v.pos += take
                i += take
                if v.pos >= v.utterance.size:
                    v.intervals.append((v.active_since, start + i))
                    v.active_since = None
                    v.wait = int(v.rng.uniform(*self.config.pause_s) * self.sample_rate)
            elif v.wait > 0:
                skip = min(n - i, v.wait)
                v.wait -= skip
                i += skip
            else:
                v.utterance = self.speech.utterance(v.gender, v.rng, self.config.utterance_max_s)
                v.pos, v.active_since = 0, start + i
        return out

    def next_chunk(self) -> tuple[float, np.ndarray]:
        """The next chunk of the stream: (capture time of its first sample, (4, chunk) float32
        ACN/SN3D in the camera's axes)."""
        start = self._next
        live = self.scene(start // self.scene_samples)
        out = self._noise_rng.standard_normal((4, self.chunk)) * self.config.noise_rms
        for v in live.voices:
            dry = self._dry(v, start, self.chunk)
            if not dry.any() and not v.tail.any():
                continue
            nfft = (v.rir_fft.shape[1] - 1) * 2
            wet = np.fft.irfft(np.fft.rfft(dry, nfft)[None] * v.rir_fft, nfft, axis=1)[:, :self.chunk + v.rir_len - 1]
            wet[:, :v.tail.shape[1]] += v.tail
            out += wet[:, :self.chunk]
            v.tail = wet[:, self.chunk:]
        t = self.next_chunk_time
        self._next += self.chunk
        return t, out.astype(np.float32)

    # --- frames and truth -----------------------------------------------------------------
    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray, int]:
        """(rgb uint8 (H, W, 3), depth float32 metres (H, W), scene id) seen at capture time t."""
        live = self.scene(self.scene_index(t))
        return live.rgb, live.depth, live.index

    def ground_truth(self, t: float) -> GroundTruth:
        """What is true at capture time t. Activity comes from the speech schedule, so it is
        known only up to the audio generated so far (a voice counts as active if its current
        utterance began at or before t)."""
        live = self.scene(self.scene_index(t))
        sample = self._sample_at(t)
        sources = []
        for v in live.voices:
            spans = list(v.intervals) + ([(v.active_since, None)] if v.active_since is not None else [])
            active_for = 0.0
            for s, e in spans:
                if s <= sample and (e is None or sample < e):
                    active_for = (sample - s) / self.sample_rate
            direction = np.asarray(live.scene.source_direction_camera(v.loudspeaker), dtype=float)
            direction = direction / np.linalg.norm(direction)
            az, el = azel_from_direction(direction)
            rank = live.order.index(v.loudspeaker)
            sources.append(SourceTruth(v.gender, rank, match_label(rank, len(live.boxes)), active_for > 0,
                                       active_for, direction, float(az), float(el)))
        room = MAP_FROM_WORLD[:3, :3] @ np.asarray(live.scene.room.size, dtype=float)
        return GroundTruth(t, live.index, self.config.scenario, live.boxes, sources, live.map_from_optical, room)

    def transforms(self, t: float, optical_frame: str = OPTICAL_FRAME) -> list[FrameLink]:
        """The TF tree at capture time t (see :func:`tf_links`)."""
        return tf_links(self.scene(self.scene_index(t)).map_from_optical, optical_frame)


@dataclass(frozen=True)
class FrameLink:
    """One TF edge: `transform` is 4x4 parent_from_child (maps child coordinates into parent).
    static: it never changes, so it goes once on the latched /tf_static; else on /tf every frame."""

    parent: str
    child: str
    transform: np.ndarray
    static: bool


def tf_links(map_from_optical: np.ndarray, optical_frame: str = OPTICAL_FRAME) -> list[FrameLink]:
    """The REP-105 chain map -> odom -> base_link -> camera_link -> `optical_frame` whose
    product is `map_from_optical`; the one function both the live node and the bag recorder
    publish, so live and recorded TF agree.

    map -> odom: identity, static (the simulator's odometry is exact, it never drifts).
    odom -> base_link: the robot on the floor (z = 0) under the camera, yaw only; /tf.
    base_link -> camera_link: the camera mount (height and pitch, new each scene); /tf.
    camera_link -> optical: the fixed REP-103 body -> optical rotation; static.
    """
    map_from_link = np.asarray(map_from_optical, dtype=float) @ np.linalg.inv(LINK_FROM_OPTICAL)
    forward = map_from_link[:3, 0]
    yaw = np.arctan2(forward[1], forward[0])
    c, s = np.cos(yaw), np.sin(yaw)
    odom_from_base = pose_matrix(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]),
                                 [map_from_link[0, 3], map_from_link[1, 3], 0.0])
    return [FrameLink(MAP_FRAME, ODOM_FRAME, np.eye(4), True),
            FrameLink(ODOM_FRAME, BASE_FRAME, odom_from_base, False),
            FrameLink(BASE_FRAME, CAMERA_LINK_FRAME, np.linalg.inv(odom_from_base) @ map_from_link, False),
            FrameLink(CAMERA_LINK_FRAME, optical_frame, LINK_FROM_OPTICAL.copy(), True)]
