"""A live, ROS-free simulated world: RGB-D frames and a continuous FOA stream with ground truth.

Why: the ROS sim_bridge node only paces and publishes; everything that decides what the
camera sees and the microphone hears lives here so it can be tested without ROS.

Timeline (seconds of stream time since `start`): scene k covers [k P, (k+1) P) with P the
scene period rounded to whole audio chunks. Each scene is drawn from its own generator seeded
by (seed, k), so the world does not depend on timing. The camera is static within a scene,
so its frame is rendered once and re-stamped. Loudspeakers play dry speech with pauses;
the FOA stream is the sum over loudspeakers of speech convolved with each one's FOA room
impulse response, computed chunk by chunk with overlap-add (the tail of every chunk rings on
into the next), plus a little sensor noise and the scene's sensing conditions (a preset of
sim_bridge.conditions, `realistic` by default: ambient noise, interferer and self-noise as one
precomputed scene-long buffer at the drawn SNR, directional loudspeakers, tetrahedral
capsules, depth and RGB noise; `drawn_conditions` says what scene k drew). Scenario
"single": one loudspeaker per scene talks; "dual": a male and a female loudspeaker talk independently (they overlap at times).
`talker_kind` people / mixed makes some or all sources people who talk from the mouth with
their own voice gender and a human voice directivity (sim_bridge.people).

Frames: the simulator's world is y up; `map` is REP-103 (z up): map = (z, x, y) of world, with
scene k's room moved to its own place in map (room_origin: rooms in a row along map +x), so a
robot that goes to the next room moves in map and nothing kept in map from one room lies in the next.
TF (tf_links): map -> odom -> base_link -> camera_link -> camera_color_optical_frame (REP-105).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.signal import fftconvolve

from jaeger_ros.core import foa
from jaeger_ros.core.answers import azimuth_order, match_label
from jaeger_ros.core.geometry import (BASE_FRAME, BODY_FROM_CAMERA, CAMERA_LINK_FRAME, MAP_FRAME, ODOM_FRAME,
                                     OPTICAL_FRAME, OPTICAL_FROM_CAMERA, Box3D, Intrinsics, SourceTruth,
                                     azel_from_direction, inside_image, pose_matrix, transform_points)
from jaeger_ros.core.threads import lower_this_thread
from sim_bridge import conditions as sensing
from sim_bridge.acoustics import SPEED_OF_SOUND, direct_to_reverberant_db, foa_rir
from sim_bridge.people import TALKER_KINDS, source_directivity, talker_voices
from sim_bridge.render import render
from sim_bridge.robot import Base, BaseLimits, planar_pose
from sim_bridge.scene import sample_scene
from sim_bridge.speech import SpeechBank

SCENARIOS = ("single", "dual", "party")
MAP_FROM_WORLD = pose_matrix(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.zeros(3))
"""map (REP-103, z up) <- the world of scene 0 (y up): map = (z, x, y) of world, so its room spans
[0, sz] x [0, sx] x [0, sy] in map (scene k: see map_from_world)."""
ROOM_SPACING_M = 20.0
"""Scene k's room has its min corner ROOM_SPACING_M * k along map +x: sampled rooms are at most 9 m
across, so neighbouring rooms stay more than 10 m apart, far beyond any tracker's gate."""


def room_origin(k: int) -> np.ndarray:
    """The min corner of scene k's room in map (scene 0's is the map origin)."""
    return np.array([k * ROOM_SPACING_M, 0.0, 0.0])


def map_from_world(k: int) -> np.ndarray:
    """map <- the simulator world of scene k: MAP_FROM_WORLD, then the room moved to room_origin(k)."""
    out = MAP_FROM_WORLD.copy()
    out[:3, 3] = room_origin(k)
    return out

LINK_FROM_OPTICAL = pose_matrix(BODY_FROM_CAMERA @ OPTICAL_FROM_CAMERA.T, np.zeros(3))
"""camera_link (REP-103 body axes) <- camera optical frame: the standard fixed rotation."""
CAMERA_FROM_OPTICAL = pose_matrix(OPTICAL_FROM_CAMERA.T, np.zeros(3))


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
    talkers: int = 3                          # party: loudspeakers that take turns around the robot
    turn_s: tuple[float, float] = (4.0, 9.0)  # party: length of one talker's turn
    gap_s: tuple[float, float] = (0.5, 2.0)   # party: silence between turns
    max_linear_mps: float = 0.5               # party: base limits
    max_angular_rps: float = 2.0
    conditions: str = "realistic"             # sim_bridge.conditions preset (not used by party)
    world: str = "procedural"                 # or "mesh": furnished mesh rooms (sim_bridge.mesh)
    talker_kind: str = "loudspeakers"         # or people / mixed: who talks (sim_bridge.people; not party)
    out_of_view: float = 0.0                  # share of scenes where the robot looks away (LOOK_AWAY_DEG; not party)

    def __post_init__(self) -> None:
        sensing.preset(self.conditions)  # ValueError for an unknown preset
        if self.world not in ("procedural", "mesh"):
            raise ValueError(f"world must be procedural or mesh, got {self.world!r}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.talker_kind not in TALKER_KINDS or (self.scenario == "party" and self.talker_kind != "loudspeakers"):
            raise ValueError(f"talker_kind must be one of {TALKER_KINDS} (party: loudspeakers), "
                             f"got {self.talker_kind!r} for {self.scenario!r}")
        lo, hi = self.min_loudspeakers, self.max_loudspeakers
        need = 2 if self.scenario == "dual" else 1
        if not need <= lo <= hi:
            raise ValueError(f"need {need} <= min_loudspeakers <= max_loudspeakers, got {lo}..{hi}")
        if self.chunk_s <= 0 or self.scene_period_s < self.chunk_s:
            raise ValueError(f"need 0 < chunk_s <= scene_period_s, got {self.chunk_s}, {self.scene_period_s}")
        if self.scenario == "party" and not (1 <= self.talkers <= len(PARTY_AZIMUTHS_DEG)
                                             and 0 < self.turn_s[0] <= self.turn_s[1] and 0 <= self.gap_s[0] <= self.gap_s[1]):
            raise ValueError(f"party needs 1..{len(PARTY_AZIMUTHS_DEG)} talkers and positive turns, got "
                             f"{self.talkers}, turns {self.turn_s}, gaps {self.gap_s}")
        if not 0.0 <= self.out_of_view <= 1.0 or (self.scenario == "party" and self.out_of_view > 0.0):
            raise ValueError(f"out_of_view must be in [0, 1] (0 for party, whose talkers stand around the robot), "
                             f"got {self.out_of_view} for {self.scenario!r}")
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
    drr_db: float = float("nan")  # direct-to-reverberant ratio of its W impulse response at the microphone


@dataclass
class LiveScene:
    index: int
    scene: object  # sim_bridge.scene.Scene
    rgb: np.ndarray
    depth: np.ndarray
    boxes: list[Box3D]  # camera frame, left to right: the sources' and the silent people's in view
    order: list[int]  # order[rank] = loudspeaker index (>= len(scene.loudspeakers): a silent person)
    voices: list[_Voice]
    map_from_optical: np.ndarray
    ambient: np.ndarray | None = None  # (4, scene samples) noise + interferer + self-noise
    conditions: sensing.Conditions | None = None


@dataclass(frozen=True)
class GroundTruth:
    time: float
    scene_id: int
    scenario: str
    boxes: list[Box3D]  # in view, left to right: the sources' and the silent people's (every candidate)
    sources: list[SourceTruth]
    map_from_optical: np.ndarray
    room_size_map: np.ndarray
    room_origin_map: np.ndarray  # min corner of the room, map
    positions_map: list[np.ndarray]  # acoustic centre of each source, map
    in_view: list[bool]  # each source's acoustic centre inside the image
    categories: list[str] = field(default_factory=list)  # each source's "loudspeaker" or "person"
    drr_db: list[float] = field(default_factory=list)  # each source's direct-to-reverberant ratio (dB)

    def source_categories(self) -> list[str]:
        """categories per source, "loudspeaker" for all where the world named none (the messages' field)."""
        return list(self.categories) or ["loudspeaker"] * len(self.sources)

    def source_drr_db(self) -> list[float]:
        """drr_db per source, NaN for every source where the world stated none (the messages' field)."""
        return list(self.drr_db) if len(self.drr_db) == len(self.sources) else [float("nan")] * len(self.sources)


LOOK_AWAY_DEG = (90.0, 180.0)
"""In an out-of-view scene the camera, and the microphone on it, turns this far left or right from
where the scene placed it: the talkers (within scene.AZIMUTH_LIMIT_DEG of its old heading) are
then beside or behind the robot, where only the microphone finds them."""


def _drr_db(rir: np.ndarray, source: np.ndarray, receiver: np.ndarray, sample_rate: int) -> float:
    """The talker's direct-to-reverberant ratio (dB) from its (4, N) impulse response, the direct
    sound where the distance puts it; NaN for a response it cannot be read from (ground truth
    says "unknown" rather than stopping the scene)."""
    arrival = float(np.linalg.norm(np.asarray(source, float) - np.asarray(receiver, float))) / SPEED_OF_SOUND
    try:
        return direct_to_reverberant_db(rir[0], sample_rate, first_arrival_s=arrival)
    except ValueError:
        return float("nan")


def look_away_deg(config: LiveConfig, k: int) -> float:
    """How far scene k's camera turns away from its talkers (0: it looks at them). Its own
    generator, drawn only when out_of_view > 0: the other scenes and a world without the option
    stay exactly as they were."""
    if config.out_of_view <= 0.0:
        return 0.0
    rng = np.random.default_rng([config.seed, k, 0x0FF])
    if rng.random() >= config.out_of_view:
        return 0.0
    return float(rng.choice((-1.0, 1.0)) * rng.uniform(*LOOK_AWAY_DEG))


def in_image(scene, intrinsics: Intrinsics) -> list[bool]:
    """Per source of `scene`: whether its acoustic centre projects inside the image."""
    cam_from_world = scene.camera_from_world()
    return [inside_image(transform_points(cam_from_world, spk.acoustic_center), intrinsics) for spk in scene.loudspeakers]


def _conditions_rng(config: LiveConfig, k: int) -> np.random.Generator:
    """Scene k's conditions draw from their own generator: clean scenes stay as they were."""
    return np.random.default_rng([config.seed, k, 0xC0DE])


def drawn_conditions(config: LiveConfig, k: int) -> sensing.Conditions:
    """The sensing conditions scene k of a single/dual world draws (cheap: nothing is built)."""
    return sensing.draw(config.conditions, _conditions_rng(config, k))


PREFETCH_AT = 0.5
"""The stream starts building the next scene (render, acoustics: ~1 s of a core in the mesh world)
this far into the current one. Started at the cut, as it was, the build took the 2 cores from the
node's detectors exactly when a new view needs them (live mesh world, mixed seed 10: people found
0.3-0.9 s after a cut, person recall 0.19 in the first 0.5 s of a scene, 0.75 in the next): the
simulator's load is not the robot's."""
BUILD_NICE = 10
"""... and at this niceness above the stream's (the node's detectors run at +5): built half way
through a scene at the same priority, it still took the cores from the node's frame path (live
mesh world, mixed seeds 5 and 6: latency p95 205-211 ms in the 4-6 s of a scene, 57-85 ms in the
rest). The build has half a scene to finish; a cut that comes first waits for it."""


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
        self._closed = False
        self._noise_rng = np.random.default_rng([config.seed, 7])
        self.mesh = None
        if config.world == "mesh":
            from sim_bridge.mesh.world import MeshWorld, check_available

            check_available()
            self.mesh = MeshWorld(self.intrinsics, acoustics_worker_nice=BUILD_NICE)

    # --- scenes ---------------------------------------------------------------------------
    def _build(self, k: int) -> LiveScene:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, k])
        crng = _conditions_rng(cfg, k)
        cond = sensing.draw(cfg.conditions, crng)
        n = int(rng.integers(cfg.min_loudspeakers, cfg.max_loudspeakers + 1))
        if self.mesh is None:
            scene = sample_scene(rng, cfg.split, n, self.intrinsics, talkers=cfg.talker_kind)
        else:
            scene = self.mesh.sample_scene(rng, cfg.split, n, f"live/{k}", talkers=cfg.talker_kind)
        turn = look_away_deg(cfg, k)
        if turn:  # the robot looks away: seen, heard and published from the turned camera
            scene = replace(scene, camera_yaw_deg=float(scene.camera_yaw_deg) + turn)
        rendered = render(scene, self.intrinsics) if self.mesh is None else self.mesh.render(scene)
        boxes = scene.loudspeaker_boxes_camera()
        # every person the camera sees may talk: the silent ones are candidates too (after the sources)
        silent = scene.silent_people_boxes_camera(rendered.objects, self.intrinsics) if self.mesh is not None else []
        candidates = boxes + silent
        order = azimuth_order(candidates)  # bbox ids left to right by azimuth
        if turn:  # only what the image shows has a box (and a rank)
            seen = in_image(scene, self.intrinsics)
            order = [i for i in order if i >= len(boxes) or seen[i]]
        wfc = np.asarray(scene.world_from_camera(), dtype=float)
        receiver = wfc[:3, 3]
        if cfg.scenario == "single":
            talkers = [(str(rng.choice(("male", "female"))), int(rng.integers(len(boxes))))]
        else:
            pair = rng.choice(len(boxes), size=2, replace=False)
            talkers = [("male", int(pair[0])), ("female", int(pair[1]))]
        who, genders = talker_voices(scene.loudspeakers, [i for _, i in talkers], [g for g, _ in talkers])
        talkers = list(zip(genders, who))  # a person speaks with its model's voice gender
        voices, reference = [], np.zeros((4, self.scene_samples))
        directivities = [source_directivity(scene.loudspeakers[i]) if cond.directivity else None
                         for _, i in talkers]
        mesh_rirs = (self.mesh.talker_rirs(scene, [i for _, i in talkers], directivities)
                     if self.mesh is not None else None)
        for t, (gender, i) in enumerate(talkers):
            if mesh_rirs is None:
                rir = foa_rir(scene.room, scene.loudspeakers[i].acoustic_center, receiver, wfc[:3, :3],
                              self.sample_rate, rng, directivity=directivities[t], capsules=cond.capsules)
            else:
                rir = mesh_rirs[t]
            # one utterance through this RIR sets the speech level the scene's SNR refers to
            wet = fftconvolve(self.speech.utterance(gender, crng, cfg.utterance_max_s)[None], rir, axes=1)
            reference[:, :min(wet.shape[1], self.scene_samples)] += wet[:, :self.scene_samples]
            nfft = 1 << int(np.ceil(np.log2(self.chunk + rir.shape[1] - 1)))
            voices.append(_Voice(gender, i, np.fft.rfft(rir.astype(float), nfft, axis=1), rir.shape[1],
                                 np.random.default_rng([cfg.seed, k, len(voices) + 1]),
                                 np.zeros((4, rir.shape[1] - 1)),
                                 drr_db=_drr_db(rir, scene.loudspeakers[i].acoustic_center, receiver,
                                                self.sample_rate)))
        for v in voices:  # a short random lead-in so voices do not all start at the scene cut
            v.wait = int(v.rng.uniform(0.0, cfg.pause_s[1]) * self.sample_rate)
        noisy, cond = sensing.apply_audio(reference, cond, scene, crng, self.speech.utterance, lambda pos: foa_rir(
            scene.room, pos, receiver, wfc[:3, :3], self.sample_rate, rng=crng, capsules=cond.capsules)
            if self.mesh is None else self.mesh.point_rir(scene, pos))
        ambient = (noisy - reference).astype(np.float32) if cond.preset != "clean" else None
        depth = sensing.degrade_depth(np.nan_to_num(rendered.depth, nan=0.0, posinf=0.0), rendered.rgb, cond, crng)
        return LiveScene(k, scene, sensing.degrade_rgb(rendered.rgb, cond, crng),
                         depth if cond.depth_noise_k is not None else rendered.depth,
                         [candidates[i] for i in order], order, voices,
                         map_from_world(k) @ wfc @ CAMERA_FROM_OPTICAL, ambient, cond)

    def _prefetch(self, k: int) -> None:
        """Build scene k in the background so a scene cut does not stall the stream."""
        def work() -> None:
            if k > 0:   # scene 0 is built before the clock starts; the others while the node works
                lower_this_thread(BUILD_NICE)
            built = self._build(k)
            with self._lock:
                self._scenes[k] = built
        with self._lock:
            if self._closed:
                raise RuntimeError("LiveWorld is closed: it builds no more scenes")
            if k in self._scenes or k in self._building:
                return
            thread = threading.Thread(target=work, name=f"scene-{k}", daemon=True)
            self._building[k] = thread
        thread.start()

    def scene(self, k: int) -> LiveScene:
        """Scene k (built now if its prefetch has not finished); forgets k-2. The stream starts
        building k+1 half way through k (next_chunk, PREFETCH_AT), not here at the cut."""
        self._prefetch(k)
        self._building[k].join()
        with self._lock:
            for old in [j for j in self._scenes if j < k - 1]:
                del self._scenes[old]
                self._building.pop(old, None)
            return self._scenes[k]

    def close(self) -> None:
        """Build no more scenes and wait for the background builds still running. Call it before the
        program ends: a daemon build thread still inside a C++ extension at interpreter exit is ended by pthread_exit, whose forced unwinding through a noexcept
        C++ frame aborts the process with `terminate called without an active exception`."""
        with self._lock:
            self._closed = True
            running = list(self._building.values())
        for thread in running:
            thread.join()
        if self.mesh is not None:
            self.mesh.acoustics.close()   # its rlr worker process

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
                wait, room = self._turn_gate(v, start + i)
                if wait > 0:
                    v.wait = wait
                    continue
                v.utterance = self.speech.utterance(v.gender, v.rng, self.config.utterance_max_s)[:room]
                v.pos, v.active_since = 0, start + i
        return out

    def _turn_gate(self, v: _Voice, sample: int) -> tuple[int, int | None]:
        """(samples to wait before v may start an utterance, most samples it may then talk);
        voices talk whenever they like here (see PartyWorld)."""
        return 0, None

    def next_chunk(self) -> tuple[float, np.ndarray]:
        """The next chunk of the stream: (capture time of its first sample, (4, chunk) float32
        ACN/SN3D in the camera's axes)."""
        start = self._next
        live = self.scene(start // self.scene_samples)
        if start - live.index * self.scene_samples >= PREFETCH_AT * self.scene_samples:
            self._prefetch(live.index + 1)
        out = self._noise_rng.standard_normal((4, self.chunk)) * self.config.noise_rms
        if live.ambient is not None:
            offset = start - live.index * self.scene_samples
            out += live.ambient[:, offset:offset + self.chunk]
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
            rank = live.order.index(v.loudspeaker) if v.loudspeaker in live.order else -1  # -1: out of view
            if getattr(live.scene.loudspeakers[v.loudspeaker], "category", "loudspeaker") == "person":
                direction = np.asarray(live.scene.source_direction_camera(v.loudspeaker), dtype=float)  # the mouth
            else:  # labels point at the box centre, in view or not
                box = live.boxes[rank] if rank >= 0 else live.scene.loudspeaker_boxes_camera()[v.loudspeaker]
                direction = np.asarray(box.center, dtype=float)
                direction = direction / np.linalg.norm(direction)
            az, el = azel_from_direction(direction)
            sources.append(SourceTruth(v.gender, rank, match_label(rank, len(live.boxes)) if rank >= 0 else "",
                                       active_for > 0, active_for, direction, float(az), float(el)))
        room = MAP_FROM_WORLD[:3, :3] @ np.asarray(live.scene.room.size, dtype=float)
        to_map = map_from_world(live.index)
        positions = [transform_points(to_map, live.scene.loudspeakers[v.loudspeaker].acoustic_center)
                     for v in live.voices]
        return GroundTruth(t, live.index, self.config.scenario, live.boxes, sources, live.map_from_optical, room,
                           room_origin(live.index), positions, [v.loudspeaker in live.order for v in live.voices],
                           [getattr(live.scene.loudspeakers[v.loudspeaker], "category", "loudspeaker")
                            for v in live.voices], [v.drr_db for v in live.voices])

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


# --- party: a robot among talkers that take turns ------------------------------------------------

PARTY_AZIMUTHS_DEG = ((-25.0, 25.0), (100.0, 140.0), (155.0, 205.0), (-140.0, -100.0))
"""Where talker k stands relative to the robot's heading at start (positive left): one in view,
one beside and one behind, a fourth on the other side."""
MAST_FORWARD_M = 0.05
"""The camera (and the microphone on it) sits this far ahead of the base's turning centre."""
RIR_REFRESH_M = 0.15
"""Impulse responses are recomputed when the microphone moved this far from where they were."""


def party_layout(scene, rng: np.random.Generator, talkers: int, split: str, vfov_deg: float):
    """The sampled room with the robot in its middle and `talkers` loudspeakers around it
    (PARTY_AZIMUTHS_DEG, 1.2-2.5 m away, facing it, their acoustic centres inside the vertical
    field of view of the mast camera, whose pitch is clipped to [-8, 0] deg); furniture in the way
    of the robot, a loudspeaker or a line of sight is removed. Returns (scene, robot x, y, yaw in
    map) or None when the loudspeakers do not fit."""
    from dataclasses import replace

    from sim_bridge.loudspeakers import make_shape, shape_ids
    from sim_bridge.scene import PlacedLoudspeaker, corridor, place_around, rect_distance, wall_distance

    sx, _, sz = scene.room.size
    robot_w = np.array([sx / 2.0, sz / 2.0])  # world x, z
    pitch = float(np.clip(scene.camera_pitch_deg, -8.0, 0.0))
    height = float(scene.camera_position[1])
    heading = float(rng.uniform(-np.pi, np.pi))  # map yaw
    placed = place_around(rng, robot_w, heading, PARTY_AZIMUTHS_DEG[:talkers], pitch, height, vfov_deg,
                          shape_ids(split), lambda sid, at, yaw: PlacedLoudspeaker(make_shape(sid), at, yaw),
                          lambda fp: wall_distance(fp, scene.room))
    if placed is None:
        return None
    robot = np.array([[-0.6, -0.6], [0.6, -0.6], [0.6, 0.6], [-0.6, 0.6]]) + robot_w
    keep_clear = [robot] + [s.footprint() for s in placed] + \
        [corridor(robot_w, s.acoustic_center[[0, 2]], 0.3) for s in placed]
    furniture = [f for f in scene.furniture if all(rect_distance(f.footprint(), c) > 0.15 for c in keep_clear)]
    return (replace(scene, loudspeakers=placed, furniture=furniture, camera_pitch_deg=pitch),
            robot_w[1], robot_w[0], heading)


class PartyWorld(LiveWorld):
    """Scenario "party": one room, a robot base (sim_bridge.robot) turning and driving on
    `command`, a mast camera that renders from the base's pose every frame it moved, and talkers
    that take turns (one at a time, gaps between turns), most of them out of view at start.

    Audio: each talker's impulse response is computed with the microphone axes aligned to the
    world; every chunk is then rotated into the camera's axes at each sample (first-order
    ambisonics rotate exactly), so turning costs nothing and sounds continuous; responses are
    recomputed when the microphone has moved RIR_REFRESH_M."""

    def __init__(self, config: LiveConfig) -> None:
        super().__init__(config)
        self.scene_samples = 1 << 62  # one scene for the whole run
        self.base: Base | None = None
        self._render_key: tuple | None = None
        self._render: tuple[np.ndarray, np.ndarray, list[Box3D]] | None = None
        self._turns: list[tuple[int, int, int]] = []  # (talker, start sample, end sample)
        self._turn_rng = np.random.default_rng([config.seed, 11])
        self.renders = 0

    # --- the world ------------------------------------------------------------------------
    def scene(self, k: int = 0) -> LiveScene:
        """The one scene of the party (built on first use; nothing to prefetch)."""
        with self._lock:
            if 0 not in self._scenes:
                self._scenes[0] = self._build(0)
            return self._scenes[0]

    def _build(self, k: int) -> LiveScene:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, k, 0xBA27])
        for attempt in range(30):
            if self.mesh is None:
                layout = party_layout(sample_scene(rng, cfg.split, 1, self.intrinsics), rng, cfg.talkers, cfg.split,
                                      self.intrinsics.vfov_deg)
            else:
                from sim_bridge.mesh.party import mesh_party_layout

                layout = mesh_party_layout(self.mesh.sample_scene(rng, cfg.split, 1, f"party/{attempt}"), rng,
                                           cfg.talkers, PARTY_AZIMUTHS_DEG, self.intrinsics.vfov_deg)
            if layout is not None:
                break
        else:
            raise RuntimeError(f"no room fits {cfg.talkers} talkers around the robot (seed {cfg.seed})")
        scene, x, y, yaw = layout
        self.base = Base(BaseLimits(max_linear_mps=cfg.max_linear_mps, max_angular_rps=cfg.max_angular_rps),
                         np.random.default_rng([cfg.seed, 13]), x, y, yaw)
        self._scene0 = scene
        self._mast_height = float(scene.camera_position[1])
        self._mast_pitch = float(scene.camera_pitch_deg)
        genders = ["male", "female"] * cfg.talkers
        first = int(rng.integers(2))
        voices = []
        for i in range(cfg.talkers):
            voices.append(_Voice(genders[first + i], i, np.zeros((4, 1)), 1,
                                 np.random.default_rng([cfg.seed, k, i + 1]), np.zeros((4, 0))))
        posed = self._posed(self.base.map_from_base())
        self._rir_at = None
        live = LiveScene(k, scene, None, None, [], [], voices, self._map_from_optical(posed))
        self._refresh_rirs(live, posed)
        return live

    def _posed(self, map_from_base: np.ndarray):
        """The scene with its camera on the mast of a base at `map_from_base`."""
        from dataclasses import replace
        ahead = map_from_base @ np.array([MAST_FORWARD_M, 0.0, 0.0, 1.0])
        yaw = np.degrees(np.arctan2(map_from_base[1, 0], map_from_base[0, 0])) + 180.0
        return replace(self._scene0, camera_position=[ahead[1], self._mast_height, ahead[0]],
                       camera_yaw_deg=float(yaw), camera_pitch_deg=self._mast_pitch)

    @staticmethod
    def _map_from_optical(posed) -> np.ndarray:
        return MAP_FROM_WORLD @ np.asarray(posed.world_from_camera(), dtype=float) @ CAMERA_FROM_OPTICAL

    def _refresh_rirs(self, live: LiveScene, posed) -> None:
        """Impulse responses (world-aligned microphone) from where the microphone is now."""
        receiver = np.asarray(posed.camera_position, dtype=float)
        if self._rir_at is not None and np.linalg.norm(receiver - self._rir_at) < RIR_REFRESH_M:
            return
        if self.mesh is not None:  # a camera at yaw 0, pitch 0 has the world's axes
            aligned = self.mesh.talker_rirs(replace(posed, camera_yaw_deg=0.0, camera_pitch_deg=0.0),
                                            [v.loudspeaker for v in live.voices], [None] * len(live.voices))
        for n, v in enumerate(live.voices):
            rir = (foa_rir(posed.room, posed.loudspeakers[v.loudspeaker].acoustic_center, receiver, np.eye(3),
                           self.sample_rate, np.random.default_rng([self.config.seed, v.loudspeaker, 17]))
                   if self.mesh is None else aligned[n])
            nfft = 1 << int(np.ceil(np.log2(self.chunk + rir.shape[1] - 1)))
            tail = np.zeros((4, rir.shape[1] - 1))
            keep = min(tail.shape[1], v.tail.shape[1])
            tail[:, :keep] = v.tail[:, :keep]  # what still rings from before goes on ringing
            v.rir_fft, v.rir_len, v.tail = np.fft.rfft(rir.astype(float), nfft, axis=1), rir.shape[1], tail
            v.drr_db = _drr_db(rir, posed.loudspeakers[v.loudspeaker].acoustic_center, receiver, self.sample_rate)
        self._rir_at = receiver

    # --- turns ----------------------------------------------------------------------------
    def _turn_gate(self, v: _Voice, sample: int) -> tuple[int, int | None]:
        cfg, fs = self.config, self.sample_rate
        while not self._turns or self._turns[-1][2] <= sample + 3600 * fs:
            end = self._turns[-1][2] if self._turns else 0
            last = self._turns[-1][0] if self._turns else -1
            who = int(self._turn_rng.choice([k for k in range(cfg.talkers) if k != last] or [0]))
            start = end + int(self._turn_rng.uniform(*cfg.gap_s) * fs)
            self._turns.append((who, start, start + int(self._turn_rng.uniform(*cfg.turn_s) * fs)))
        mine = [(s, e) for who, s, e in self._turns if who == v.loudspeaker and e - max(s, sample) > 0.3 * fs]
        s, e = mine[0]
        return (s - sample, None) if s > sample else (0, e - sample)

    def turns(self) -> list[tuple[int, float, float]]:
        """(talker, start, end) capture times of the turns scheduled so far."""
        return [(who, self.t0 + s / self.sample_rate, self.t0 + e / self.sample_rate) for who, s, e in self._turns]

    # --- motion ---------------------------------------------------------------------------
    def start(self, t0: float) -> None:
        super().start(t0)
        self.base.time = float(t0)
        self.base.advance(t0)

    def command(self, linear_mps: float, angular_rps: float, stamp: float) -> None:
        """A base velocity command (geometry_msgs/Twist on cmd_vel), held until the next one
        or the base's command timeout."""
        self.base.command(linear_mps, angular_rps, stamp)

    def _pose_at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true x, y, yaw; odometry x, y, yaw; map_from_odom) at time t, interpolated."""
        return self.base.state_at(t)

    def next_chunk(self) -> tuple[float, np.ndarray]:
        """As LiveWorld.next_chunk, with the base moved to the chunk's end and the sound field
        rotated into the camera's axes sample by sample."""
        t_start = self.next_chunk_time
        t_end = t_start + self.chunk / self.sample_rate
        self.base.advance(t_end)
        live = self.scene(0)
        self._refresh_rirs(live, self._posed(self.base.map_from_base()))
        t, out = super().next_chunk()
        m0, m1 = (self._ambi_from_world(self._pose_at(x)[0]) for x in (t_start, t_end))
        dip = out[[3, 1, 2]].astype(float)  # X, Y, Z (ambisonic axes of the world-aligned microphone)
        ramp = np.linspace(0.0, 1.0, out.shape[1], endpoint=False)[None]
        rotated = m0 @ dip + ramp * ((m1 - m0) @ dip)
        out[3], out[1], out[2] = rotated
        return t, out

    def _ambi_from_world(self, pose: np.ndarray) -> np.ndarray:
        """Ambisonic axes of the camera <- ambisonic axes of the world-aligned microphone."""
        rot = np.asarray(self._posed(planar(pose)).world_from_camera(), dtype=float)[:3, :3]
        ambi = BODY_FROM_CAMERA  # ambisonic (X fwd, Y left, Z up) <- camera, see core.foa
        return ambi @ rot.T @ ambi.T

    # --- frames, truth, TF ----------------------------------------------------------------
    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray, int]:
        rgb, depth, _ = self._view(t)
        return rgb, depth, 0

    def _view(self, t: float) -> tuple[np.ndarray, np.ndarray, list[Box3D]]:
        """The camera image at the base's pose at t (rendered again only when it moved)."""
        return self.view_from(self.view_pose(t))

    def view_pose(self, t: float) -> np.ndarray:
        """The true base pose (x, y, yaw in map) the camera sees from at t."""
        return self._pose_at(t)[0]

    def view_from(self, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Box3D]]:
        """(rgb, depth, boxes) seen from a base pose. Reads nothing that moves with time, so a
        worker thread may render while the clock, the audio and the base go on."""
        key = (round(pose[0], 3), round(pose[1], 3), round(float(np.degrees(pose[2])), 1))
        if key != self._render_key:
            posed = self._posed(planar(pose))
            rendered = render(posed, self.intrinsics) if self.mesh is None else self.mesh.render(posed)
            self._render = (rendered.rgb, rendered.depth, posed.loudspeaker_boxes_camera())
            self._render_key = key
            self.renders += 1
        return self._render

    def ground_truth(self, t: float) -> GroundTruth:
        live = self.scene(0)
        posed = self._posed(planar(self._pose_at(t)[0]))
        boxes_all = posed.loudspeaker_boxes_camera()
        seen = in_image(posed, self.intrinsics)
        order = sorted([i for i in range(len(seen)) if seen[i]], key=lambda i: boxes_all[i].center[0])
        sample = self._sample_at(t)
        sources, positions = [], []
        for v in live.voices:
            spans = list(v.intervals) + ([(v.active_since, None)] if v.active_since is not None else [])
            active_for = max([(sample - s) / self.sample_rate for s, e in spans
                              if s <= sample and (e is None or sample < e)], default=0.0)
            direction = np.asarray(posed.source_direction_camera(v.loudspeaker), dtype=float)
            az, el = azel_from_direction(direction)
            rank = order.index(v.loudspeaker) if v.loudspeaker in order else -1
            sources.append(SourceTruth(v.gender, rank, match_label(rank, len(order)) if rank >= 0 else "",
                                       active_for > 0, active_for, direction, float(az), float(el)))
            positions.append(transform_points(MAP_FROM_WORLD, posed.loudspeakers[v.loudspeaker].acoustic_center))
        room = MAP_FROM_WORLD[:3, :3] @ np.asarray(posed.room.size, dtype=float)
        return GroundTruth(t, 0, self.config.scenario, [boxes_all[i] for i in order], sources,
                           self._map_from_optical(posed), room, room_origin(0), positions,
                           [seen[v.loudspeaker] for v in live.voices], ["loudspeaker"] * len(live.voices),
                           [v.drr_db for v in live.voices])

    def transforms(self, t: float, optical_frame: str = OPTICAL_FRAME) -> list[FrameLink]:
        """map -> odom (the localiser's correction, moving), odom -> base_link (wheel odometry),
        base_link -> camera_link (the mast, fixed) -> optical (fixed)."""
        true, odom, map_from_odom = self._pose_at(t)
        map_from_base = planar(true)
        map_from_link = self._map_from_optical(self._posed(map_from_base)) @ np.linalg.inv(LINK_FROM_OPTICAL)
        return [FrameLink(MAP_FRAME, ODOM_FRAME, map_from_odom, False),
                FrameLink(ODOM_FRAME, BASE_FRAME, planar(odom), False),
                FrameLink(BASE_FRAME, CAMERA_LINK_FRAME, np.linalg.inv(map_from_base) @ map_from_link, True),
                FrameLink(CAMERA_LINK_FRAME, optical_frame, LINK_FROM_OPTICAL.copy(), True)]


def planar(pose: np.ndarray) -> np.ndarray:
    return planar_pose(float(pose[0]), float(pose[1]), float(pose[2]))


def make_world(config: LiveConfig) -> LiveWorld:
    """The world of a scenario: PartyWorld for "party", LiveWorld otherwise."""
    return PartyWorld(config) if config.scenario == "party" else LiveWorld(config)
