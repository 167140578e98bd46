"""Procedural people who talk: standing or seated figures whose mouth is the acoustic source.

Why: a robot meets people, not only loudspeakers. A person is built like a loudspeaker shape
(sim_bridge.loudspeakers): axis-aligned boxes and cylinders in a local frame (origin at the
floor centre, y up, front +z), and its `main_driver` part is the MOUTH, so its front-face centre
is where speech comes from and every renderer, box and visibility rule of the loudspeakers
applies unchanged. A seated person sits on a stool whose parts have role "seat": the renderer
draws them as background (instance 0) and the person's box leaves them out.

Proportions follow Drillis & Contini's segment lengths as fractions of standing height H
(R. Drillis, R. Contini, "Body segment parameters", NYU report 1166-03, 1966, as tabulated in
D. A. Winter, "Biomechanics and Motor Control of Human Movement", 4th ed., Wiley 2009, fig. 4.1):
chin 0.870 H, eyes 0.936 H, shoulder 0.818 H, hip 0.530 H, knee 0.285 H, wrist 0.485 H,
shoulder breadth 0.259 H, head breadth ~0.09 H. The mouth sits between chin and eyes at
MOUTH_FRACTION H (a third of the way up the face from the chin).

People ids are split 48/6/6 like the loudspeaker shapes (a fixed permutation; never change
PEOPLE_SPLIT_SEED: datasets rely on which people are unseen).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim_bridge.acoustics import Directivity
from sim_bridge.conditions import loudspeaker_facing  # any source's front, people's too
from sim_bridge.loudspeakers import SPLITS, LoudspeakerShape, Part, _box, _cyl, _jitter

NUM_PEOPLE = 60
PEOPLE_SPLIT_SIZES = {"train": 48, "val": 6, "test": 6}
PEOPLE_SPLIT_SEED = 2612_0624
_PEOPLE_SEED = 4243
TALKER_KINDS = ("loudspeakers", "people", "mixed")
"""What talks in a scene: only loudspeakers (the official SpatialSceneQA form), only people, or
each source drawn person/loudspeaker at even odds (at least one of each where there are two)."""
CATEGORIES = ("loudspeaker", "person")

MOUTH_FRACTION = 0.91
"""Mouth height / standing height (between chin 0.870 and eyes 0.936, Drillis & Contini)."""
CHIN, EYES, SHOULDER, HIP, KNEE, WRIST = 0.870, 0.936, 0.818, 0.530, 0.285, 0.485
SEAT_HEIGHT_M = (0.42, 0.50)
HEIGHTS_M = {"male": (1.65, 1.92), "female": (1.55, 1.78)}

_SKIN = ((0.96, 0.80, 0.69), (0.90, 0.70, 0.56), (0.78, 0.57, 0.42), (0.61, 0.43, 0.30), (0.42, 0.28, 0.19),
         (0.30, 0.20, 0.14))
_HAIR = ((0.08, 0.06, 0.05), (0.25, 0.16, 0.09), (0.45, 0.30, 0.15), (0.75, 0.60, 0.35), (0.55, 0.55, 0.55),
         (0.50, 0.20, 0.10))
_TOPS = ((0.80, 0.15, 0.15), (0.15, 0.30, 0.60), (0.90, 0.90, 0.88), (0.20, 0.20, 0.22), (0.20, 0.50, 0.30),
         (0.85, 0.65, 0.20), (0.55, 0.35, 0.60), (0.60, 0.75, 0.85))
_BOTTOMS = ((0.12, 0.15, 0.30), (0.20, 0.20, 0.22), (0.45, 0.38, 0.28), (0.30, 0.30, 0.32), (0.55, 0.50, 0.42))
_LIPS = (0.62, 0.30, 0.28)


def _check_id(person_id: int) -> int:
    if not (isinstance(person_id, (int, np.integer)) and 0 <= int(person_id) < NUM_PEOPLE):
        raise ValueError(f"person_id must be an integer in [0, {NUM_PEOPLE}), got {person_id!r}")
    return int(person_id)


@lru_cache(maxsize=1)
def _split_table() -> dict[int, str]:
    perm = np.random.default_rng(PEOPLE_SPLIT_SEED).permutation(NUM_PEOPLE)
    table, start = {}, 0
    for split in SPLITS:
        for pid in perm[start:start + PEOPLE_SPLIT_SIZES[split]]:
            table[int(pid)] = split
        start += PEOPLE_SPLIT_SIZES[split]
    return table


def person_ids(split: str) -> list[int]:
    """Sorted person ids of one split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    return sorted(i for i, s in _split_table().items() if s == split)


@dataclass(frozen=True)
class Figure:
    """The numbers a person is built from (kept so tests can check the geometry independently)."""

    height: float
    """Standing height H, metres."""
    seat: float
    """Seat top height (0 for a standing person), metres."""

    @property
    def lift(self) -> float:
        """How far the upper body sits above (positive) or below where it stands: seat - hip."""
        return self.seat - HIP * self.height if self.seat > 0 else 0.0

    @property
    def mouth_height(self) -> float:
        return MOUTH_FRACTION * self.height + self.lift


def figure(person_id: int) -> tuple[Figure, str, str]:
    """(figure, posture "standing"/"sitting", gender) of a person id (deterministic)."""
    rng = np.random.default_rng([_PEOPLE_SEED, _check_id(person_id)])
    gender = "male" if rng.random() < 0.5 else "female"
    posture = "sitting" if rng.random() < 0.4 else "standing"
    h = float(rng.uniform(*HEIGHTS_M[gender]))
    seat = float(rng.uniform(*SEAT_HEIGHT_M)) if posture == "sitting" else 0.0
    return Figure(h, seat), posture, gender


@lru_cache(maxsize=None)
def make_person(person_id: int) -> LoudspeakerShape:
    """The person with this id as parts (category "person"; main_driver = the mouth)."""
    pid = _check_id(person_id)
    fig, posture, gender = figure(pid)
    rng = np.random.default_rng([_PEOPLE_SEED, pid, 1])
    H, lift = fig.height, fig.lift
    skin = _jitter(rng, _SKIN[int(rng.integers(len(_SKIN)))], 0.04)
    hair = _jitter(rng, _HAIR[int(rng.integers(len(_HAIR)))], 0.05)
    top = _jitter(rng, _TOPS[int(rng.integers(len(_TOPS)))], 0.08)
    bottom = _jitter(rng, _BOTTOMS[int(rng.integers(len(_BOTTOMS)))], 0.08)
    shoe = _jitter(rng, (0.08, 0.07, 0.06) if rng.random() < 0.7 else (0.85, 0.85, 0.85), 0.05)
    shoulder_w = 0.259 * H
    torso_w, torso_d = 0.20 * H, 0.12 * H
    leg_r, arm_r = 0.034 * H, 0.022 * H
    hip_x = torso_w / 2 - leg_r
    parts: list[Part] = []
    # Legs and shoes.
    if posture == "standing":
        for sx in (-1, 1):
            parts.append(_cyl("y", (sx * hip_x, (HIP * H) / 2 + 0.04, 0.0), leg_r, HIP * H - 0.08, bottom, "cloth"))
            parts.append(_box((sx * hip_x, 0.04, 0.03), (2.2 * leg_r, 0.08, 0.26), shoe, "plain", "shoe"))
    else:
        thigh = 0.245 * H
        for sx in (-1, 1):
            parts.append(_box((sx * hip_x, fig.seat + leg_r, thigh / 2 - 0.02), (2 * leg_r, 2 * leg_r, thigh + 0.06),
                              bottom, "cloth"))
            parts.append(_cyl("y", (sx * hip_x, (fig.seat + 0.08) / 2, thigh), leg_r * 0.9, fig.seat - 0.08 + 0.02,
                              bottom, "cloth"))
            parts.append(_box((sx * hip_x, 0.04, thigh + 0.05), (2.2 * leg_r, 0.08, 0.26), shoe, "plain", "shoe"))
        stool = _jitter(rng, ((0.35, 0.24, 0.14), (0.15, 0.15, 0.16), (0.7, 0.7, 0.72))[int(rng.integers(3))])
        parts.append(_box((0.0, fig.seat - 0.02, 0.02), (0.42, 0.04, 0.40), stool, "wood", "seat"))
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(_cyl("y", (sx * 0.17, (fig.seat - 0.04) / 2, 0.02 + sz * 0.16), 0.018,
                                  fig.seat - 0.04, stool, "metal", "seat"))
    # Torso (hip to shoulder), arms, neck, head.
    y_hip, y_sh = HIP * H + lift, SHOULDER * H + lift
    parts.append(_box((0.0, (y_hip + y_sh) / 2, 0.0), (torso_w, y_sh - y_hip, torso_d), top, "cloth", "torso"))
    arm_x = shoulder_w / 2 - arm_r
    if posture == "standing":
        for sx in (-1, 1):
            y_wr = WRIST * H
            parts.append(_cyl("y", (sx * arm_x, (y_sh - 0.02 + y_wr) / 2, 0.0), arm_r, y_sh - 0.02 - y_wr, top, "cloth"))
            parts.append(_box((sx * arm_x, y_wr - 0.05, 0.0), (2 * arm_r, 0.1, 2.4 * arm_r), skin, "skin", "hand"))
    else:
        y_el = y_sh - 0.186 * H  # upper arm down to the elbow, forearm forward on the thigh
        for sx in (-1, 1):
            parts.append(_cyl("y", (sx * arm_x, (y_sh - 0.02 + y_el) / 2, 0.0), arm_r, y_sh - 0.02 - y_el, top, "cloth"))
            parts.append(_box((sx * arm_x, y_el + arm_r, 0.146 * H / 2), (2 * arm_r, 2 * arm_r, 0.146 * H),
                              skin, "skin", "hand"))
    y_chin = CHIN * H + lift
    parts.append(_cyl("y", (0.0, (y_sh + y_chin) / 2 + 0.01, -0.01), 0.03 * H, y_chin - y_sh + 0.02, skin, "skin"))
    head_w, head_d = 0.088 * H, 0.112 * H
    y_top = H + lift
    head_z = 0.01
    parts.append(_box((0.0, (y_chin + y_top) / 2, head_z), (head_w, y_top - y_chin, head_d), skin, "skin", "head"))
    front = head_z + head_d / 2
    hair_len = float(rng.uniform(0.02, 0.06) if gender == "male" else rng.uniform(0.06, 0.16))
    parts.append(_box((0.0, y_top + 0.012, head_z - 0.01), (head_w + 0.02, 0.03, head_d + 0.02), hair, "hair", "hair"))
    parts.append(_box((0.0, y_top - hair_len / 2, head_z - head_d / 2 - 0.012), (head_w + 0.02, hair_len + 0.02, 0.03),
                      hair, "hair", "hair"))
    # A face a face detector can find: eye whites and irises, brows, a nose, ears.
    y_eye = EYES * H + lift
    for sx in (-1, 1):
        parts.append(_box((sx * head_w * 0.24, y_eye, front + 0.002), (0.03, 0.014, 0.004), (0.92, 0.9, 0.88),
                          "plain", "eye"))
        parts.append(_box((sx * head_w * 0.24, y_eye, front + 0.0045), (0.012, 0.012, 0.002), (0.12, 0.08, 0.05),
                          "plain", "eye"))
        parts.append(_box((sx * head_w * 0.24, y_eye + 0.02, front + 0.003), (0.036, 0.007, 0.006), hair,
                          "hair", "brow"))
        parts.append(_box((sx * (head_w / 2 + 0.008), (y_eye + MOUTH_FRACTION * H + lift) / 2, head_z),
                          (0.016, 0.055, 0.035), skin, "skin", "ear"))
    parts.append(_box((0.0, (y_eye + MOUTH_FRACTION * H + lift) / 2 + 0.004, front + 0.01), (0.024, 0.04, 0.02),
                      tuple(c * 0.93 for c in skin), "skin", "nose"))
    y_mouth = MOUTH_FRACTION * H + lift
    parts.append(_box((0.0, y_mouth, front + 0.002), (0.045, 0.014, 0.004), _LIPS, "skin", "mouth"))
    return LoudspeakerShape(pid, posture, tuple(parts), len(parts) - 1, category="person", gender=gender)


@dataclass(frozen=True)
class VoiceDirectivity(Directivity):
    """Human talker directivity: a cardioid-like pattern per band, amplitude
    back + (1 - back) (1 + cos theta) / 2 towards angle theta off the mouth axis, with the
    back level growing with frequency. Numbers (front-to-back level difference of running speech):
    ~1.5 dB below 500 Hz, ~5 dB 0.5-2 kHz, ~9 dB above 2 kHz, after W. T. Chu and A. C. C. Warnock,
    "Detailed directivity of sound fields around human talkers", NRC Canada IRC-RR-104 (2002),
    and B. B. Monson, E. J. Hunter, B. H. Story, "Horizontal directivity of low- and
    high-frequency energy in speech and singing", JASA 132(1) 433-441 (2012)."""

    crossovers_hz: tuple[float, ...] = (500.0, 2000.0)
    exponents: tuple[float, ...] = (1.0, 1.0, 1.0)
    backs_db: tuple[float, ...] = (-1.5, -5.0, -9.0)

    def gains(self, emission: np.ndarray) -> np.ndarray:
        """(bands, K) amplitude gains for (K, 3) world emission directions."""
        e = np.asarray(emission, dtype=float)
        cos = (e @ self.facing) / np.maximum(np.linalg.norm(e, axis=1), 1e-12)
        card = np.clip((1.0 + cos) / 2.0, 0.0, 1.0)
        back = 10.0 ** (np.asarray(self.backs_db) / 20.0)
        return back[:, None] + (1.0 - back[:, None]) * card[None]


def source_directivity(source) -> Directivity:
    """The directivity of a placed source (anything with `category` and `yaw_deg`): a person's
    voice (VoiceDirectivity) or the default loudspeaker box (acoustics.Directivity)."""
    if getattr(source, "category", "loudspeaker") == "person":
        return VoiceDirectivity(loudspeaker_facing(source.yaw_deg))
    return Directivity(loudspeaker_facing(source.yaw_deg))


def source_gender(source) -> str | None:
    """A person's voice gender where the model says (None: a loudspeaker or an unknown person)."""
    shape = getattr(source, "shape", None)
    if shape is not None:
        return shape.gender
    return getattr(source, "gender", None)


def talker_voices(sources: list, talkers: list[int], genders: list[str]) -> tuple[list[int], list[str]]:
    """Who talks with which voice, so that a person speaks with the gender of its model.

    One talker: a person's gender replaces the drawn one. Two (male + female): the drawn pair, else
    it swapped, else the first pair of sources whose people fit (male, female); a scene without
    people keeps the draw unchanged (loudspeakers play any voice)."""
    known = [source_gender(s) for s in sources]
    if not any(known):
        return list(talkers), list(genders)
    if len(talkers) == 1:
        return [int(talkers[0])], [known[int(talkers[0])] or genders[0]]

    def fits(pair: tuple[int, int]) -> bool:
        return all(known[i] in (None, g) for i, g in zip(pair, genders))

    a, b = int(talkers[0]), int(talkers[1])
    for pair in [(a, b), (b, a)] + [(i, j) for i in range(len(sources)) for j in range(len(sources)) if i != j]:
        if fits(pair):
            return list(pair), list(genders)
    return [a, b], list(genders)
