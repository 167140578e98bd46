"""120 procedural floor-standing loudspeakers, split 96/12/12 by shape (unseen geometry at test).

Each shape is built deterministically from its id out of parametrised parts (cabinet style,
drivers, tweeter, port, grille, baffle, feet/plinth/stand), all axis-aligned boxes or
cylinders in the loudspeaker's local frame: origin at the floor centre of the footprint,
y up, front facing +z. Sizes follow the official boxes: width 0.21-0.58 m (median ~0.35),
height 0.60-0.88 m (~0.66), depth 0.22-0.58 m (~0.36).

Split: a fixed permutation of the 120 ids (numpy default_rng(SPLIT_SEED)); its first 96
entries are train, the next 12 val, the last 12 test. Never change SPLIT_SEED: datasets
already written rely on which shapes are unseen.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NUM_SHAPES = 120
SPLITS = ("train", "val", "test")
SPLIT_SIZES = {"train": 96, "val": 12, "test": 12}
SPLIT_SEED = 2602_18527
_SHAPE_SEED = 7919

PART_KINDS = ("box", "cylinder_y", "cylinder_z")
"""box: axis-aligned in the local frame; cylinder_y / cylinder_z: axis along local y / z."""
PART_FRAMES = {"box": np.eye(3), "cylinder_z": np.eye(3),
               "cylinder_y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])}
"""local_from_part rotations: a part's own frame has its cylinder axis along z."""
TEXTURES = ("plain", "gloss", "wood", "metal", "grille", "driver", "dome", "port", "fabric", "skin", "cloth", "hair")
"""The last three dress people (sim_bridge.people), who are built from the same parts."""

# (name, colour, texture) cabinet finishes.
_FINISHES = (
    ("walnut", (0.36, 0.22, 0.12), "wood"), ("oak", (0.64, 0.47, 0.30), "wood"),
    ("cherry", (0.52, 0.25, 0.15), "wood"), ("rosewood", (0.30, 0.13, 0.09), "wood"),
    ("black ash", (0.09, 0.085, 0.08), "wood"), ("piano black", (0.035, 0.035, 0.04), "gloss"),
    ("white", (0.86, 0.86, 0.84), "gloss"), ("satin grey", (0.42, 0.43, 0.45), "plain"),
    ("silver", (0.68, 0.69, 0.71), "metal"), ("red lacquer", (0.55, 0.07, 0.07), "gloss"),
    ("navy", (0.10, 0.14, 0.30), "plain"), ("cream", (0.82, 0.77, 0.64), "plain"),
)
_CONES = ((0.05, 0.05, 0.055), (0.30, 0.30, 0.32), (0.72, 0.72, 0.74), (0.78, 0.62, 0.18),
          (0.85, 0.85, 0.82), (0.12, 0.16, 0.30))
_GRILLES = ((0.05, 0.05, 0.05), (0.18, 0.18, 0.19), (0.30, 0.28, 0.25), (0.10, 0.12, 0.20),
            (0.45, 0.42, 0.38))
_TRIMS = ((0.03, 0.03, 0.03), (0.55, 0.56, 0.58), (0.75, 0.62, 0.35))


def half_extents(kind: str, size) -> np.ndarray:
    """Half extents in a part's own frame (box: hx, hy, hz; cylinder: r, r, half length)."""
    s = np.asarray(size, dtype=float) / 2.0
    return np.array([s[0], s[0], s[1]]) if kind == "cylinder_y" else s


@dataclass(frozen=True)
class Part:
    """One primitive in the loudspeaker's local frame.

    size is the part's full local axis-aligned extent (m): for cylinder_y (2r, length, 2r),
    for cylinder_z (2r, 2r, length), so every part's local box is center +- size / 2.
    """

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[float, float, float]
    texture: str = "plain"
    role: str = "cabinet"

    def __post_init__(self) -> None:
        if self.kind not in PART_KINDS:
            raise ValueError(f"unknown part kind {self.kind!r}, expected one of {PART_KINDS}")
        if self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}, expected one of {TEXTURES}")
        if min(self.size) <= 0:
            raise ValueError(f"part size must be positive, got {self.size}")

    @property
    def frame(self) -> np.ndarray:
        """3x3 local_from_part rotation; a part's own frame has its cylinder axis along z."""
        return PART_FRAMES[self.kind]

    @property
    def half_extents(self) -> np.ndarray:
        return half_extents(self.kind, self.size)


@dataclass(frozen=True)
class LoudspeakerShape:
    """A loudspeaker model: parts in the local frame and which driver is the acoustic centre."""

    shape_id: int
    style: str
    parts: tuple[Part, ...]
    main_driver: int
    """Index into parts of the top cone driver (woofer/midrange, below any tweeter): its front
    centre is the acoustic centre, where speech comes from. For a person: the mouth."""
    category: str = "loudspeaker"
    """"loudspeaker" or "person" (sim_bridge.people)."""
    gender: str | None = None
    """A person's voice gender (None for a loudspeaker: any voice plays through it)."""

    @property
    def body_parts(self) -> tuple[Part, ...]:
        """The parts that belong to the object's box: all but a seated person's stool."""
        return tuple(p for p in self.parts if p.role != "seat")

    @property
    def colors(self) -> np.ndarray:
        """(P, 3) part colours in [0, 1]."""
        return np.array([p.color for p in self.parts])

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Local axis-aligned bounding box (min, max), metres."""
        c = np.array([p.center for p in self.parts])
        s = np.array([p.size for p in self.parts]) / 2.0
        return (c - s).min(axis=0), (c + s).max(axis=0)

    @property
    def size(self) -> np.ndarray:
        """(w, h, d) of the local bounding box, metres."""
        lo, hi = self.bounds
        return hi - lo

    @property
    def acoustic_center_local(self) -> np.ndarray:
        """Centre of the main driver's front face in the local frame."""
        p = self.parts[self.main_driver]
        return np.array([p.center[0], p.center[1], p.center[2] + p.size[2] / 2.0])


def _check_id(shape_id: int) -> int:
    if not (isinstance(shape_id, (int, np.integer)) and 0 <= int(shape_id) < NUM_SHAPES):
        raise ValueError(f"shape_id must be an integer in [0, {NUM_SHAPES}), got {shape_id!r}")
    return int(shape_id)


@lru_cache(maxsize=1)
def _split_table() -> dict[int, str]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(NUM_SHAPES)
    table, start = {}, 0
    for split in SPLITS:
        for sid in perm[start:start + SPLIT_SIZES[split]]:
            table[int(sid)] = split
        start += SPLIT_SIZES[split]
    return table


def shape_split(shape_id: int) -> str:
    """"train", "val" or "test" for a shape id (fixed permutation, see the module doc)."""
    return _split_table()[_check_id(shape_id)]


def shape_ids(split: str) -> list[int]:
    """Sorted shape ids of one split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    return sorted(i for i, s in _split_table().items() if s == split)


def _jitter(rng: np.random.Generator, color: tuple[float, ...], amount: float = 0.06) -> tuple[float, float, float]:
    c = np.clip(np.asarray(color) * (1.0 + rng.uniform(-amount, amount, 3)), 0.0, 1.0)
    return tuple(float(v) for v in c)


def _box(center, size, color, texture="plain", role="cabinet") -> Part:
    return Part("box", tuple(float(v) for v in center), tuple(float(v) for v in size), color, texture, role)


def _cyl(axis: str, center, radius: float, length: float, color, texture="plain", role="cabinet") -> Part:
    size = (2 * radius, length, 2 * radius) if axis == "y" else (2 * radius, 2 * radius, length)
    return Part(f"cylinder_{axis}", tuple(float(v) for v in center), tuple(float(v) for v in size),
                color, texture, role)


def _cabinet(rng: np.random.Generator, style: str, w: float, d: float, y0: float, y1: float,
             color, texture) -> tuple[list[Part], float]:
    """Cabinet parts between heights y0 and y1; returns parts and the front face width at the top."""
    h = y1 - y0
    if style == "tapered":
        n = int(rng.integers(3, 6))
        top_w, top_d = w * rng.uniform(0.72, 0.9), d * rng.uniform(0.6, 0.85)
        parts = []
        for k in range(n):
            f = k / max(n - 1, 1)
            wk, dk = w + (top_w - w) * f, d + (top_d - d) * f
            parts.append(_box((0.0, y0 + h * (k + 0.5) / n, d / 2 - dk / 2), (wk, h / n, dk), color, texture))
        return parts, top_w
    if style == "rounded":
        r = rng.uniform(0.03, 0.22) * min(w, d)
        parts = [_box((0.0, y0 + h / 2, 0.0), (w - 2 * r, h, d), color, texture),
                 _box((0.0, y0 + h / 2, 0.0), (w, h, d - 2 * r), color, texture)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(_cyl("y", (sx * (w / 2 - r), y0 + h / 2, sz * (d / 2 - r)), r, h, color, texture))
        return parts, w
    return [_box((0.0, y0 + h / 2, 0.0), (w, h, d), color, texture)], w


def make_shape(shape_id: int) -> LoudspeakerShape:
    """The loudspeaker with this id (deterministic: the same id always gives the same parts)."""
    sid = _check_id(shape_id)
    rng = np.random.default_rng([_SHAPE_SEED, sid])
    style = str(rng.choice(["tower", "tower", "tapered", "rounded", "stand"]))
    w = float(np.clip(np.exp(rng.normal(np.log(0.32), 0.22)), 0.20, 0.50))
    h = float(rng.uniform(0.60, 0.67) if rng.random() < 0.6 else rng.uniform(0.74, 0.85))
    d = float(np.clip(np.exp(rng.normal(np.log(0.32), 0.24)), 0.20, 0.50))
    _, finish, texture = _FINISHES[int(rng.integers(len(_FINISHES)))]
    body = _jitter(rng, finish)
    trim = _jitter(rng, _TRIMS[int(rng.integers(len(_TRIMS)))])
    parts: list[Part] = []

    # Base: feet, plinth, stand or nothing.
    if style == "stand":
        stand_h = h * rng.uniform(0.45, 0.55)
        plate = _jitter(rng, (0.05, 0.05, 0.05) if rng.random() < 0.7 else (0.6, 0.6, 0.62))
        parts.append(_box((0.0, 0.01, 0.0), (w * rng.uniform(0.95, 1.15), 0.02, d * rng.uniform(0.95, 1.1)),
                          plate, "metal"))
        if rng.random() < 0.5:
            parts.append(_box((0.0, stand_h / 2, 0.0), (w * 0.35, stand_h - 0.04, d * 0.35), plate, "metal"))
        else:
            for sx in (-1, 1):
                parts.append(_cyl("y", (sx * w * 0.3, stand_h / 2, 0.0), 0.018, stand_h - 0.04, plate, "metal"))
        parts.append(_box((0.0, stand_h - 0.01, 0.0), (w * 0.8, 0.02, d * 0.8), plate, "metal"))
        y0 = stand_h
        w, d = w * rng.uniform(0.8, 0.95), d * rng.uniform(0.8, 1.0)
        cab_style = "tower"
    else:
        base = str(rng.choice(["none", "feet", "plinth"]))
        y0 = 0.0
        if base == "feet":
            fh, fr = rng.uniform(0.015, 0.04), rng.uniform(0.012, 0.025)
            for sx in (-1, 1):
                for sz in (-1, 1):
                    parts.append(_cyl("y", (sx * (w / 2 - 1.6 * fr), fh / 2, sz * (d / 2 - 1.6 * fr)), fr, fh,
                                      trim, "metal", "feet"))
            y0 = fh
        elif base == "plinth":
            ph = rng.uniform(0.025, 0.06)
            grow = rng.uniform(0.0, 0.05)
            parts.append(_box((0.0, ph / 2, 0.0), (w + grow, ph, d + grow), trim, "gloss", "plinth"))
            y0 = ph
        cab_style = style
    cab, front_w = _cabinet(rng, cab_style, w, d, y0, h, body, texture)
    parts.extend(cab)
    front_z = d / 2

    # Optional top cap and front baffle in a contrasting finish.
    if rng.random() < 0.25 and cab_style == "tower":
        cap_h = rng.uniform(0.015, 0.03)
        parts.append(_box((0.0, h + cap_h / 2, 0.0), (w, cap_h, d), trim, "gloss", "cap"))
    if rng.random() < 0.5:
        baffle = _jitter(rng, ((0.04, 0.04, 0.04), (0.2, 0.2, 0.21), body)[int(rng.integers(3))])
        inset = rng.uniform(0.0, 0.02)
        bw = front_w - 2 * inset
        parts.append(_box((0.0, (y0 + h) / 2, front_z + 0.005), (bw, h - y0 - 2 * inset, 0.01), baffle,
                          "gloss" if rng.random() < 0.5 else "plain", "baffle"))
        front_z += 0.01

    # Drivers stacked from the top: optional tweeter, then 1-3 woofers/midranges.
    has_tweeter = rng.random() < 0.8
    n_woofers = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    cab_h = h - y0
    margin = 0.03
    rw = rng.uniform(0.28, 0.40) * front_w
    radii = [rw] + [rw * rng.uniform(0.9, 1.12) for _ in range(n_woofers - 1)]
    rt = rng.uniform(0.018, 0.032) if has_tweeter else 0.0
    gap = rng.uniform(0.012, 0.04)
    need = sum(2.3 * r for r in radii) + (2.4 * rt + gap if has_tweeter else 0.0) + gap * (n_woofers - 1)
    scale = min(1.0, (cab_h - 2 * margin - 0.04 - gap) / need)
    radii = [r * scale for r in radii]
    rt *= scale
    cone = _jitter(rng, _CONES[int(rng.integers(len(_CONES)))])
    y = h - margin - rng.uniform(0.0, 0.04)
    main_driver = -1
    if has_tweeter:
        y -= 1.2 * rt
        parts.append(_cyl("z", (0.0, y, front_z + 0.003), rt * 1.5, 0.006, trim, "metal", "tweeter"))
        parts.append(_cyl("z", (0.0, y, front_z + 0.008), rt, 0.016, _jitter(rng, _CONES[int(rng.integers(3))]),
                          "dome", "tweeter"))
        y -= 1.2 * rt + gap
    for k, r in enumerate(radii):
        y -= 1.15 * r
        parts.append(_cyl("z", (0.0, y, front_z + 0.003), r * 1.12, 0.006, trim, "metal", "driver"))
        parts.append(_cyl("z", (0.0, y, front_z + 0.007), r, 0.014, cone, "driver", "driver"))
        if k == 0:
            main_driver = len(parts) - 1
        y -= 1.15 * r + gap

    # Port below the drivers if there is room (round or slot), else on the back.
    room_left = y - y0 - margin
    if room_left > 0.06 and rng.random() < 0.7:
        if rng.random() < 0.6:
            pr = min(rng.uniform(0.02, 0.04), room_left / 3)
            parts.append(_cyl("z", (0.0, y0 + margin + pr + room_left * rng.uniform(0.1, 0.4), front_z + 0.003),
                              pr, 0.006, (0.02, 0.02, 0.02), "port", "port"))
        else:
            parts.append(_box((0.0, y0 + margin + 0.02, front_z + 0.002), (front_w * 0.6, 0.018, 0.004),
                              (0.015, 0.015, 0.015), "port", "port"))

    # Grille over the drivers (covers their region; the acoustic centre stays where it is).
    if rng.random() < 0.3:
        gcol = _jitter(rng, _GRILLES[int(rng.integers(len(_GRILLES)))])
        gy0 = max(y + gap, y0 + 0.01)
        parts.append(_box((0.0, (gy0 + h - 0.01) / 2, front_z + 0.024), (front_w - 0.02, h - 0.01 - gy0, 0.012),
                          gcol, "grille", "grille"))
    return LoudspeakerShape(sid, style, tuple(parts), main_driver)
