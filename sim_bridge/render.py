"""Analytic numpy ray caster: RGB, planar metric depth and loudspeaker instance masks.

Why analytic: scenes are a shoebox plus oriented boxes and cylinders, so exact ray/primitive
intersections in numpy give pixel-exact depth (what back-projection tests need) without a
mesh library. Speed comes from culling: each primitive only tests the pixels inside its
projected screen-space bounding rectangle.

Depth model: camera-frame rays are (x, y, -1) (Intrinsics.pixel_rays), so a hit at ray
parameter t is the camera point t * (x, y, -1): t IS the planar depth geometry.backproject
expects. Shading: Lambert with one ceiling point light + ambient + a little specular,
procedural textures (planks, tiles, wood grain, grilles, driver cones, books...) and a soft
contact shadow where objects meet the floor.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

import numpy as np

from jaeger_ros.core.geometry import Intrinsics, rotation_y
from sim_bridge.loudspeakers import PART_FRAMES, half_extents

if TYPE_CHECKING:
    from sim_bridge.scene import Furniture, Scene

NEAR = 1e-3
"""Hits closer than this (m) are ignored; the camera never sits inside an object."""


@dataclass(frozen=True)
class RenderResult:
    """rgb uint8 (H, W, 3); depth float32 (H, W) planar metres; instance int32 (H, W), 0 = not a
    loudspeaker, i + 1 = scene.loudspeakers[i]."""

    rgb: np.ndarray
    depth: np.ndarray
    instance: np.ndarray


@dataclass(frozen=True)
class Primitive:
    """A box ([-half, half]^3) or a cylinder (radius half[0], axis z, |z| <= half[2]) in its own
    frame, posed by `rotation` (world_from_primitive) and `center`."""

    kind: str
    center: np.ndarray
    rotation: np.ndarray
    half: np.ndarray
    color: np.ndarray
    texture: str
    instance: int = 0
    seed: int = 0

    def corners(self) -> np.ndarray:
        """(8, 3) world corners of the primitive's own bounding box."""
        signs = np.array([[(k >> i) & 1 for i in range(3)] for k in range(8)]) * 2.0 - 1.0
        return self.center + (signs * self.half) @ self.rotation.T


def _prim(kind: str, center, size, color, texture: str, world_rot: np.ndarray, world_t: np.ndarray,
          instance: int = 0, seed: int = 0) -> Primitive:
    """Primitive from a part given in an object's local frame (see loudspeakers.Part)."""
    return Primitive("box" if kind == "box" else "cylinder",
                     world_t + world_rot @ np.asarray(center, dtype=float), world_rot @ PART_FRAMES[kind],
                     half_extents(kind, size), np.asarray(color, dtype=float), texture, instance, seed)


# --- scene -> primitives -------------------------------------------------------------------------

def _furniture_parts(f: "Furniture") -> list[tuple]:
    """(kind, centre, size, colour, texture) in the item's frame (origin at its box centre)."""
    w, h, d = f.size
    c = f.color
    rng = np.random.default_rng(f.seed)
    wood = np.array([0.45, 0.30, 0.18]) * rng.uniform(0.8, 1.2)
    bottom = -h / 2
    if f.kind == "table":
        leg = min(0.06, w / 10)
        parts = [("box", (0, h / 2 - 0.02, 0), (w, 0.04, d), c, "wood")]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(("box", (sx * (w / 2 - 0.05), -0.02, sz * (d / 2 - 0.05)), (leg, h - 0.04, leg),
                              c * 0.8, "wood"))
        return parts
    if f.kind == "cabinet":
        return [("box", (0, 0.04, 0), (w, h - 0.08, d), c, "panels"),
                ("box", (0, h / 2 - 0.01, 0.005), (w + 0.02, 0.02, d + 0.01), c * 0.9, "wood"),
                ("box", (0, bottom + 0.02, -0.02), (w - 0.06, 0.04, d - 0.06), c * 0.4, "plain")]
    if f.kind in ("sofa", "armchair"):
        arm = min(0.18, w * 0.15)
        seat_h = 0.42 * h
        back_d = 0.22 * d
        parts = [("box", (0, bottom + seat_h / 2, 0), (w, seat_h, d), c, "fabric"),
                 ("box", (0, 0, -d / 2 + back_d / 2), (w, h, back_d), c * 0.95, "fabric")]
        for sx in (-1, 1):
            parts.append(("box", (sx * (w / 2 - arm / 2), bottom + 0.32 * h, 0.0), (arm, 0.64 * h, d), c * 0.92,
                          "fabric"))
        n = max(1, int(round((w - 2 * arm) / 0.65)))
        cw = (w - 2 * arm) / n
        for k in range(n):
            x = -w / 2 + arm + cw * (k + 0.5)
            parts.append(("box", (x, bottom + seat_h + 0.06, back_d / 2), (cw - 0.02, 0.12, d - back_d - 0.02),
                          c * 1.06, "fabric"))
        return parts
    if f.kind == "shelf":
        t = 0.022
        parts = [("box", (sx * (w / 2 - t / 2), 0, 0), (t, h, d), c, "wood") for sx in (-1, 1)]
        parts.append(("box", (0, 0, -d / 2 + 0.005), (w - 2 * t, h, 0.01), c * 0.85, "plain"))
        n = int(rng.integers(3, 6))
        step = (h - t) / n
        for k in range(n + 1):
            parts.append(("box", (0, bottom + t / 2 + k * step, 0), (w - 2 * t, t, d), c, "wood"))
        for k in range(n):
            book_h = step * rng.uniform(0.6, 0.85)
            parts.append(("box", (0, bottom + t + k * step + book_h / 2, 0.01), (w - 2 * t - 0.02, book_h, d * 0.8),
                          c, "books"))
        return parts
    if f.kind == "media":
        cab_h = rng.uniform(0.4, 0.55)
        tv_w, tv_h = min(w * 0.85, rng.uniform(0.9, 1.4)), h - cab_h - 0.08
        return [("box", (0, bottom + cab_h / 2, 0), (w, cab_h, d), c, "panels"),
                ("box", (0, bottom + cab_h + 0.01, 0), (0.3, 0.02, 0.2), (0.05, 0.05, 0.05), "metal"),
                ("box", (0, bottom + cab_h + 0.04, 0), (0.06, 0.06, 0.04), (0.05, 0.05, 0.05), "metal"),
                ("box", (0, bottom + cab_h + 0.08 + tv_h / 2, 0), (tv_w, tv_h, 0.05), (0.03, 0.03, 0.035), "screen")]
    if f.kind == "plant":
        pot_h = h * rng.uniform(0.25, 0.4)
        pot_r = min(w, d) * 0.3
        pot = np.array([0.6, 0.35, 0.25]) if rng.random() < 0.5 else np.array([0.85, 0.84, 0.8])
        return [("cylinder_y", (0, bottom + pot_h / 2, 0), (2 * pot_r, pot_h, 2 * pot_r), pot, "plain"),
                ("cylinder_y", (0, bottom + pot_h + (h - pot_h) / 2, 0), (min(w, d), h - pot_h, min(w, d)), c,
                 "leaves")]
    if f.kind == "lamp":
        shade_h = 0.3
        return [("cylinder_y", (0, bottom + 0.01, 0), (min(w, d) * 0.7, 0.02, min(w, d) * 0.7), (0.1, 0.1, 0.1),
                 "metal"),
                ("cylinder_y", (0, bottom + (h - shade_h) / 2, 0), (0.025, h - shade_h, 0.025), (0.1, 0.1, 0.1),
                 "metal"),
                ("cylinder_y", (0, h / 2 - shade_h / 2, 0), (min(w, d), shade_h, min(w, d)), c, "shade")]
    # Wall items: door, window, picture are single textured slabs.
    return [("box", (0, 0, 0), (w, h, d), c if f.kind == "picture" else wood * 1.3 if f.kind == "door" else c,
             f.kind)]


def scene_primitives(scene: "Scene") -> list[Primitive]:
    """Every loudspeaker or person part (instance i + 1; a seated person's stool 0), furniture and
    wall item as world primitives."""
    prims = []
    for i, spk in enumerate(scene.loudspeakers):
        rot = rotation_y(spk.yaw_deg)
        for k, p in enumerate(spk.shape.parts):
            prims.append(_prim(p.kind, p.center, p.size, p.color, p.texture, rot, spk.position,
                               0 if p.role == "seat" else i + 1, spk.shape.shape_id * 100 + k))
    for f in list(scene.furniture) + list(scene.wall_items):
        rot = rotation_y(f.yaw_deg)
        for k, (kind, c, s, col, tex) in enumerate(_furniture_parts(f)):
            prims.append(_prim(kind, c, s, np.clip(col, 0, 1), tex, rot, f.center, 0, (f.seed + k) % (1 << 30)))
    return prims


# --- intersection --------------------------------------------------------------------------------

def _safe_inverse(d: np.ndarray) -> np.ndarray:
    """1 / d with +-inf for axis-parallel rays (the slab tests handle infinities)."""
    with np.errstate(divide="ignore"):
        return 1.0 / d


def _hit_box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry parameter (inf on a miss) and entry-face axis for local rays from o.

    d is planar (3, ...) so every step works on contiguous per-axis arrays (slab method).
    """
    tnear = tfar = axis = None
    for k in range(3):
        inv = _safe_inverse(d[k])
        t1, t2 = (-half[k] - o[k]) * inv, (half[k] - o[k]) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        if tnear is None:
            tnear, tfar, axis = lo, hi, np.zeros(lo.shape, np.int8)
        else:
            later = lo > tnear
            axis[later] = k
            tnear, tfar = np.maximum(tnear, lo), np.minimum(tfar, hi)
    return np.where((tnear <= tfar) & (tnear > NEAR), tnear, np.inf), axis


def _hit_cylinder(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry parameter (inf on a miss) and whether the entry is through a cap; d planar (3, ...)."""
    r, hz = half[0], half[2]
    a = d[0] * d[0] + d[1] * d[1]
    b = 2.0 * (o[0] * d[0] + o[1] * d[1])
    c = o[0] ** 2 + o[1] ** 2 - r * r
    disc = b * b - 4.0 * a * c
    parallel = a < 1e-14
    sq = np.sqrt(np.maximum(disc, 0.0))
    a2 = np.where(parallel, 1.0, 2.0 * a)
    tc0 = np.where(parallel, -np.inf, (-b - sq) / a2)
    tc1 = np.where(parallel, np.inf, (-b + sq) / a2)
    ok = np.where(parallel, c <= 0.0, disc >= 0.0)
    inv = _safe_inverse(d[2])
    z1, z2 = (-hz - o[2]) * inv, (hz - o[2]) * inv
    tz0, tz1 = np.minimum(z1, z2), np.maximum(z1, z2)
    tnear, tfar = np.maximum(tc0, tz0), np.minimum(tc1, tz1)
    hit = ok & (tnear <= tfar) & (tnear > NEAR)
    return np.where(hit, tnear, np.inf), tz0 >= tc0


def _normals(prim: Primitive, p: np.ndarray, d: np.ndarray, aux: np.ndarray) -> np.ndarray:
    """(N, 3) outward unit normals in the primitive's frame at entry points p."""
    n = np.zeros_like(p)
    if prim.kind == "box":
        rows = np.arange(len(p))
        n[rows, aux] = -np.sign(d[rows, aux])
        return n
    n[:, 0] = np.where(aux, 0.0, p[:, 0] / prim.half[0])
    n[:, 1] = np.where(aux, 0.0, p[:, 1] / prim.half[0])
    n[:, 2] = np.where(aux, -np.sign(d[:, 2]), 0.0)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


# --- procedural textures -------------------------------------------------------------------------

def _hash(a: np.ndarray, b: np.ndarray, seed) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer lattice cell (integer mixing)."""
    h = (np.asarray(a).astype(np.int64) * 73856093) ^ (np.asarray(b).astype(np.int64) * 19349663) \
        ^ (np.asarray(seed, dtype=np.int64) % 65521 * 83492791)
    h &= 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    h ^= h >> 12
    h = (h * 0x297A2D39) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0xFFFFFF).astype(np.float64) / float(1 << 24)


def _noise(x: np.ndarray, y: np.ndarray, seed: float) -> np.ndarray:
    """Smooth value noise in [0, 1) (bilinear over hashed lattice values)."""
    xi, yi = np.floor(x), np.floor(y)
    fx, fy = x - xi, y - yi
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    v00, v10 = _hash(xi, yi, seed), _hash(xi + 1, yi, seed)
    v01, v11 = _hash(xi, yi + 1, seed), _hash(xi + 1, yi + 1, seed)
    return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy


@dataclass
class _Surface:
    albedo: np.ndarray
    normal: np.ndarray
    spec: np.ndarray
    glow: np.ndarray


def _surface_coords(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates on a face: the two axes other than the normal's dominant one."""
    ax = np.abs(n).argmax(axis=1)
    u = np.where(ax == 0, p[:, 2], p[:, 0])
    v = np.where(ax == 1, p[:, 2], p[:, 1])
    return u, v


def _tex_plain(s: _Surface, p, n, half, color, seed) -> None:
    u, v = _surface_coords(p, n)
    s.albedo *= (0.95 + 0.05 * _noise(u * 15, v * 15, seed))[:, None]


def _tex_gloss(s: _Surface, p, n, half, color, seed) -> None:
    _tex_plain(s, p, n, half, color, seed)
    s.spec[:] = 0.6


def _tex_wood(s: _Surface, p, n, half, color, seed) -> None:
    long_axis = int(np.argmax(half))
    others = [k for k in range(3) if k != long_axis]
    along, a, b = p[:, long_axis], p[:, others[0]], p[:, others[1]]
    warp = 3.0 * _noise(along * 2.0, (a + b) * 6.0, seed)
    grain = 0.5 + 0.5 * np.sin((a + 0.6 * b) * 90.0 + warp * 2.5)
    s.albedo *= (0.8 + 0.2 * grain + 0.08 * _noise(along * 9, a * 40, seed + 1))[:, None]
    s.spec[:] = 0.12


def _tex_metal(s: _Surface, p, n, half, color, seed) -> None:
    u, v = _surface_coords(p, n)
    s.albedo *= (0.88 + 0.12 * _noise(u * 200, v * 4, seed))[:, None]
    s.spec[:] = 0.9


def _tex_grille(s: _Surface, p, n, half, color, seed) -> None:
    u, v = _surface_coords(p, n)
    weave = _hash(np.floor(u / 0.006), np.floor(v / 0.006), seed)
    border = (np.abs(p[:, 0]) > half[0] - 0.012) | (np.abs(p[:, 1]) > half[1] - 0.012)
    s.albedo *= (np.where(border, 0.7, 0.86 + 0.14 * weave))[:, None]


def _radial(p, half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rho = np.hypot(p[:, 0], p[:, 1])
    safe = np.maximum(rho, 1e-9)
    return rho / half[0], p[:, 0] / safe, p[:, 1] / safe


def _tex_driver(s: _Surface, p, n, half, color, seed) -> None:
    """Cone driver on the +z cap: rubber surround, concave shaded cone, domed dust cap."""
    front = n[:, 2] > 0.5
    rr, cx, cy = _radial(p, half)
    surround, cap = rr > 0.84, rr < 0.3
    cone = front & ~surround & ~cap
    shade = np.where(surround, 0.09 / np.maximum(color.mean(), 0.05),
                     np.where(cap, 1.1, 0.65 + 0.45 * (rr - 0.3) / 0.54))
    s.albedo *= np.where(front, shade, 0.5)[:, None]
    s.albedo[front & surround] = 0.07
    bulge = np.where(surround, (rr - 0.92) / 0.08 * 0.9, np.where(cap, rr / 0.3 * 0.6, -0.35))
    tilt = np.where(front, bulge, 0.0)
    s.normal[:, 0] += tilt * cx
    s.normal[:, 1] += tilt * cy
    s.normal /= np.linalg.norm(s.normal, axis=1, keepdims=True)
    s.spec[:] = np.where(cone | (front & cap), 0.35, 0.1)


def _tex_dome(s: _Surface, p, n, half, color, seed) -> None:
    front = n[:, 2] > 0.5
    rr, cx, cy = _radial(p, half)
    k = np.where(front, np.clip(rr, 0, 0.99), 0.0)
    s.normal[front] = np.stack([k * cx, k * cy, np.sqrt(1 - k * k)], axis=1)[front]
    s.spec[:] = 0.8


def _tex_port(s: _Surface, p, n, half, color, seed) -> None:
    front = n[:, 2] > 0.5
    rr, _, _ = _radial(p, half)
    flare = front & (rr > 0.8) if half[0] == half[1] else np.zeros_like(front)
    s.albedo[:] = np.where(flare, 0.12, 0.02)[:, None]


def _tex_fabric(s: _Surface, p, n, half, color, seed) -> None:
    u, v = _surface_coords(p, n)
    s.albedo *= (0.86 + 0.1 * _noise(u * 60, v * 60, seed) + 0.06 * _noise(u * 4, v * 4, seed + 3))[:, None]


def _tex_skin(s: _Surface, p, n, half, color, seed) -> None:
    """Smooth skin: faint blotches and a little sheen (people, sim_bridge.people)."""
    u, v = _surface_coords(p, n)
    s.albedo *= (0.94 + 0.06 * _noise(u * 25, v * 25, seed))[:, None]
    s.spec[:] = 0.15


def _tex_cloth(s: _Surface, p, n, half, color, seed) -> None:
    """Clothes: a fine weave, soft folds and, by seed, stripes (people's shirts and trousers)."""
    u, v = _surface_coords(p, n)
    folds = 0.9 + 0.1 * np.sin(v * 40.0 + 3.0 * _noise(u * 5, v * 5, seed))
    weave = 0.92 + 0.08 * _noise(u * 120, v * 120, seed + 1)
    stripes = np.where((seed % 3 == 0) & (np.sin(v * 70.0) > 0.6), 0.7, 1.0)
    s.albedo *= (folds * weave * stripes)[:, None]


def _tex_hair(s: _Surface, p, n, half, color, seed) -> None:
    """Hair: strands along the vertical with a sheen."""
    u, v = _surface_coords(p, n)
    s.albedo *= (0.75 + 0.25 * _noise(u * 300, v * 8, seed))[:, None]
    s.spec[:] = 0.3


_BOOK_COLOURS = np.array([[0.55, 0.1, 0.1], [0.1, 0.2, 0.45], [0.12, 0.35, 0.2], [0.8, 0.75, 0.6],
                          [0.15, 0.15, 0.15], [0.7, 0.5, 0.15], [0.45, 0.3, 0.5], [0.85, 0.85, 0.85]])


def _tex_books(s: _Surface, p, n, half, color, seed) -> None:
    """A row of spines along x: per-book colour, height and a label band; gaps show the back."""
    cell = np.floor((p[:, 0] + half[0]) / 0.035)
    r = _hash(cell, cell * 0.7 + 3, seed)
    height = -half[1] + 2 * half[1] * (0.7 + 0.3 * _hash(cell + 11, cell, seed))
    col = _BOOK_COLOURS[(r * len(_BOOK_COLOURS)).astype(int) % len(_BOOK_COLOURS)]
    col = col * (0.8 + 0.3 * _hash(cell, cell + 5, seed))[:, None]
    band = np.abs(p[:, 1] - (height - 0.3 * half[1])) < 0.012
    col = np.where(band[:, None], col * 0.5 + 0.4, col)
    edge = ((p[:, 0] + half[0]) / 0.035 - cell) < 0.08
    empty = p[:, 1] > height
    s.albedo[:] = np.where((empty | edge)[:, None], color * 0.25, col)


def _tex_leaves(s: _Surface, p, n, half, color, seed) -> None:
    u, v = _surface_coords(p, n)
    ang = np.arctan2(p[:, 1], p[:, 0]) * 3
    blotch = _noise(ang + u * 14, v * 14, seed) * 0.7 + 0.5 * _noise(u * 40, v * 40 + ang, seed + 1)
    s.albedo *= (0.45 + 0.75 * blotch)[:, None]
    s.normal[:, 0] += (_noise(u * 30, v * 30, seed + 2) - 0.5) * 0.8
    s.normal /= np.linalg.norm(s.normal, axis=1, keepdims=True)


def _tex_panels(s: _Surface, p, n, half, color, seed) -> None:
    """Cabinet doors: a central split, inset borders and two knobs on the front face."""
    _tex_wood(s, p, n, half, color, seed) if seed % 2 else _tex_plain(s, p, n, half, color, seed)
    front = n[:, 2] > 0.5
    doors = max(1, int(round(half[0] / 0.3)))
    x = (p[:, 0] + half[0]) / (2 * half[0]) * doors
    fx = x - np.floor(x)
    groove = (np.minimum(fx, 1 - fx) * 2 * half[0] / doors < 0.004) | (half[1] - np.abs(p[:, 1]) < 0.006)
    knob = (np.abs(fx - np.where(np.floor(x) % 2 == 0, 0.9, 0.1)) * 2 * half[0] / doors < 0.012) & \
           (np.abs(p[:, 1] - half[1] * 0.5) < 0.02)
    s.albedo[front & groove] *= 0.35
    s.albedo[front & knob] = 0.7
    s.spec[front & knob] = 0.9


def _tex_screen(s: _Surface, p, n, half, color, seed) -> None:
    front = n[:, 2] > 0.5
    bezel = (half[0] - np.abs(p[:, 0]) < 0.015) | (half[1] - np.abs(p[:, 1]) < 0.015)
    glass = front & ~bezel
    g = 0.02 + 0.05 * np.clip((p[:, 0] / half[0] + p[:, 1] / half[1]) * 0.5 + 0.5, 0, 1)
    s.albedo[glass] = g[glass, None]
    s.spec[:] = np.where(glass, 0.9, 0.3)


def _tex_shade(s: _Surface, p, n, half, color, seed) -> None:
    _tex_fabric(s, p, n, half, color, seed)
    s.glow[:] = 0.45


def _tex_door(s: _Surface, p, n, half, color, seed) -> None:
    _tex_wood(s, p, n, half, color, seed)
    front = n[:, 2] > 0.5
    ax, ay = np.abs(p[:, 0]), np.abs(p[:, 1] - 0.1)
    inset = (np.abs(ax - (half[0] - 0.1)) < 0.008) & (ay < half[1] - 0.1) | \
            (np.abs(ay - (half[1] - 0.1)) < 0.008) & (ax < half[0] - 0.1)
    handle = (np.abs(p[:, 0] - (half[0] - 0.09)) < 0.05) & (np.abs(p[:, 1] + 0.03) < 0.012)
    s.albedo[front & inset] *= 0.6
    s.albedo[front & handle] = 0.75
    s.spec[front & handle] = 1.0


def _tex_window(s: _Surface, p, n, half, color, seed) -> None:
    front = n[:, 2] > 0.5
    frame = (half[0] - np.abs(p[:, 0]) < 0.06) | (half[1] - np.abs(p[:, 1]) < 0.06) | \
            (np.abs(p[:, 0]) < 0.025) | (np.abs(p[:, 1] - half[1] * 0.3) < 0.02)
    glass = front & ~frame
    sky = 0.5 + 0.5 * (p[:, 1] / half[1] * 0.5 + 0.5)
    s.albedo[glass] = np.stack([0.62 + 0.3 * sky, 0.75 + 0.2 * sky, 0.95 * np.ones_like(sky)], axis=1)[glass]
    s.glow[glass] = 0.9
    s.spec[glass] = 0.5


def _tex_picture(s: _Surface, p, n, half, color, seed) -> None:
    front = n[:, 2] > 0.5
    frame = (half[0] - np.abs(p[:, 0]) < 0.03) | (half[1] - np.abs(p[:, 1]) < 0.03)
    art = front & ~frame
    rng = np.random.default_rng(seed)
    palette = rng.uniform(0.1, 0.95, (3, 3))
    t1 = _noise(p[:, 0] * 4 + seed % 17, p[:, 1] * 4, seed)
    t2 = _noise(p[:, 0] * 9, p[:, 1] * 9 + 5, seed + 1)
    mix = palette[0] * t1[:, None] + palette[1] * (1 - t1)[:, None] * t2[:, None] + palette[2] * 0.2
    s.albedo[art] = np.clip(mix, 0, 1)[art]
    s.albedo[front & frame] = 0.12 if seed % 2 else 0.8


_TEXTURES: dict[str, Callable] = {
    "plain": _tex_plain, "gloss": _tex_gloss, "wood": _tex_wood, "metal": _tex_metal, "grille": _tex_grille,
    "driver": _tex_driver, "dome": _tex_dome, "port": _tex_port, "fabric": _tex_fabric, "books": _tex_books,
    "leaves": _tex_leaves, "panels": _tex_panels, "screen": _tex_screen, "shade": _tex_shade, "door": _tex_door,
    "window": _tex_window, "picture": _tex_picture, "skin": _tex_skin, "cloth": _tex_cloth, "hair": _tex_hair,
}


def _shade_primitive(prim: Primitive, p: np.ndarray, n: np.ndarray) -> _Surface:
    s = _Surface(np.tile(prim.color, (len(p), 1)), n.copy(), np.zeros(len(p)), np.zeros(len(p)))
    _TEXTURES[prim.texture](s, p, n, prim.half, prim.color, prim.seed)
    return s


def _room_surface(scene: "Scene", pts: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (N, 3) and glow (N,) of room surface points (world) on faces 0..5 (room.SURFACES)."""
    seed = scene.texture_seed
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    albedo = np.zeros_like(pts)
    glow = np.zeros(len(pts))
    floor, ceil = face == 2, face == 3
    walls = ~(floor | ceil)
    if floor.any():
        fx, fz = x[floor], z[floor]
        base = scene.floor_color
        if scene.floor_style == "planks":
            pw, length = 0.14 + 0.06 * (seed % 3) / 2, 1.4
            row = np.floor(fz / pw)
            shift = _hash(row, row + 1, seed) * length
            board = np.floor((fx + shift) / length)
            tone = 0.78 + 0.34 * _hash(row, board, seed)
            grain = 0.9 + 0.1 * np.sin(fz * 300 + 6 * _noise(fx * 1.5, row, seed))
            seam = ((fz / pw - row) < 0.04) | (((fx + shift) / length - board) < 0.004)
            val = np.where(seam, 0.45, tone * grain)
        elif scene.floor_style == "tiles":
            size = 0.3 + 0.15 * (seed % 3)
            gx, gz = fx / size, fz / size
            grout = (np.minimum(gx - np.floor(gx), gz - np.floor(gz)) * size) < 0.006
            val = np.where(grout, 1.15, 0.92 + 0.12 * _hash(np.floor(gx), np.floor(gz), seed))
            val = val * (0.95 + 0.05 * _noise(fx * 8, fz * 8, seed))
        else:
            val = (0.85 + 0.15 * _noise(fx * 60, fz * 60, seed)) * (0.92 + 0.08 * _noise(fx * 2, fz * 2, seed + 1))
        albedo[floor] = np.clip(base * val[:, None], 0, 1)
    if ceil.any():
        cx, cz = x[ceil], z[ceil]
        albedo[ceil] = scene.ceiling_color
        lamp = np.hypot(cx - scene.room.size[0] / 2, cz - scene.room.size[2] / 2) < 0.22
        glow[ceil] = 0.2  # light bounced off the floor
        glow[np.flatnonzero(ceil)[lamp]] = 1.5
    if walls.any():
        wf = face[walls]
        index = np.select([wf == 0, wf == 1, wf == 4], [0, 1, 2], 3)
        u = np.where(wf < 2, z[walls], x[walls])
        wy = y[walls]
        col = scene.wall_colors[index] * (0.95 + 0.05 * _noise(u * 1.5, wy * 1.5, seed + wf))[:, None]
        skirting = wy < 0.09
        col[skirting] = scene.skirting_color * np.where(wy[skirting] > 0.08, 0.8, 1.0)[:, None]
        albedo[walls] = col
    return albedo, glow


# --- camera, culling, the trace ------------------------------------------------------------------

@lru_cache(maxsize=8)
def _pixel_rays(intrinsics: Intrinsics) -> np.ndarray:
    rays = np.ascontiguousarray(np.moveaxis(intrinsics.pixel_rays(), -1, 0), dtype=np.float32)  # (3, H, W)
    rays.flags.writeable = False
    return rays


def _screen_rect(points_world: np.ndarray, world_from_camera: np.ndarray,
                 intrinsics: Intrinsics) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) covering the projection of the convex hull of points
    (clipped at the near plane, so objects reaching behind the camera stay culled); None if
    nothing is in front."""
    cam = (points_world - world_from_camera[:3, 3]) @ world_from_camera[:3, :3]
    depth = -cam[:, 2]
    front = depth > NEAR
    if not front.any():
        return None
    if not front.all():  # add where segments between front and back points cross the near plane
        a, b = cam[front], cam[~front]
        da, db = depth[front][:, None, None], depth[~front][None, :, None]
        w = (da - 2 * NEAR) / (da - db)
        crossing = a[:, None, :] + w * (b[None, :, :] - a[:, None, :])
        cam = np.concatenate([a, crossing.reshape(-1, 3)])
        depth = -cam[:, 2]
    u = intrinsics.cx + intrinsics.fx * cam[:, 0] / depth
    v = intrinsics.cy - intrinsics.fy * cam[:, 1] / depth
    u0, u1 = max(0, int(np.floor(u.min()))), min(intrinsics.width, int(np.ceil(u.max())) + 1)
    v0, v1 = max(0, int(np.floor(v.min()))), min(intrinsics.height, int(np.ceil(v.max())) + 1)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _trace(scene: "Scene", intrinsics: Intrinsics, shade: bool) -> dict[str, np.ndarray]:
    """Nearest hits of every pixel: depth, instance, face (0..5 room surface, -1 primitive) and,
    if shade, surface data (normal, albedo, spec, glow). Per-pixel buffers are float32."""
    wfc = scene.world_from_camera()
    origin = wfc[:3, 3]
    size = np.asarray(scene.room.size, dtype=float)
    if not scene.room.contains(origin, margin=NEAR):
        raise ValueError(f"camera {origin} is not inside the room {tuple(size)}")
    # (3, H, W) world directions whose camera-frame z is -1, so ray parameters are planar depths.
    dirs = np.tensordot(wfc[:3, :3].astype(np.float32), _pixel_rays(intrinsics), axes=1)
    # Inside a shoebox the first hit is the nearest exit plane along each axis.
    depth, face = None, None
    for k in range(3):
        positive = dirs[k] > 0
        tk = np.where(positive, np.float32(size[k] - origin[k]), np.float32(origin[k])) * \
            _safe_inverse(np.abs(dirs[k]))  # +inf for rays parallel to this axis's walls
        fk = np.int8(2 * k) + positive.astype(np.int8)
        if depth is None:
            depth, face = tk, fk
        else:
            closer = tk < depth
            depth = np.where(closer, tk, depth)
            face = np.where(closer, fk, face)
    instance = np.zeros(depth.shape, dtype=np.int32)
    h, w = depth.shape
    out = {"depth": depth, "instance": instance, "face": face, "dirs": dirs}
    if shade:
        out.update(normal=np.zeros((h, w, 3), np.float32), albedo=np.zeros((h, w, 3), np.float32),
                   glow=np.zeros((h, w), np.float32), spec=np.zeros((h, w), np.float32))
    prims = scene_primitives(scene)
    prims.sort(key=lambda q: float(np.linalg.norm(q.center - origin)))  # front to back: less overdraw
    for prim in prims:
        rect = _screen_rect(prim.corners(), wfc, intrinsics)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        d = np.tensordot(prim.rotation.T.astype(np.float32), dirs[:, v0:v1, u0:u1], axes=1)
        o = (prim.rotation.T @ (origin - prim.center)).astype(np.float32)
        t, aux = (_hit_box if prim.kind == "box" else _hit_cylinder)(o, d, prim.half.astype(np.float32))
        zsub = depth[v0:v1, u0:u1]
        win = t < zsub
        if not win.any():
            continue
        tw = t[win]
        zsub[win] = tw
        instance[v0:v1, u0:u1][win] = prim.instance
        face[v0:v1, u0:u1][win] = -1
        if shade:
            dw = np.stack([d[0][win], d[1][win], d[2][win]], axis=1).astype(float)
            p = o.astype(float) + tw[:, None].astype(float) * dw
            surf = _shade_primitive(prim, p, _normals(prim, p, dw, aux[win]))
            out["normal"][v0:v1, u0:u1][win] = surf.normal @ prim.rotation.T
            out["albedo"][v0:v1, u0:u1][win] = surf.albedo
            out["spec"][v0:v1, u0:u1][win] = surf.spec
            out["glow"][v0:v1, u0:u1][win] = surf.glow
    if shade:  # room surfaces only where no object covers them
        room = face >= 0
        f = face[room].astype(np.int64)
        pts = origin + depth[room][:, None].astype(float) * np.stack([dirs[k][room] for k in range(3)], axis=1)
        albedo, glow = _room_surface(scene, pts, f)
        normal = np.zeros((len(f), 3), np.float32)
        normal[np.arange(len(f)), f // 2] = np.where(f % 2 == 0, 1.0, -1.0)
        out["albedo"][room] = albedo
        out["glow"][room] = glow
        out["normal"][room] = normal
    return out


def raycast(scene: "Scene", intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Depth (float32, planar metres) and instance mask (int32) without shading (cheap checks)."""
    out = _trace(scene, intrinsics, shade=False)
    return out["depth"].astype(np.float32), out["instance"]


CONTACT_REACH_M = 0.25
"""Floor darkening fades to exactly zero at this distance from an object's footprint."""


def _contact_shadow(scene: "Scene", out: dict[str, np.ndarray], intrinsics: Intrinsics) -> np.ndarray:
    """(H, W) darkening factor of floor pixels near object footprints (ambient occlusion stand-in)."""
    factor = np.ones(out["depth"].shape, np.float32)
    wfc = scene.world_from_camera()
    floor_px = out["face"] == 2
    footprints = [(spk.footprint(), 0.55) for spk in scene.loudspeakers]
    footprints += [(f.footprint(), 0.45) for f in scene.furniture if f.kind not in ("table", "lamp")]
    for fp, strength in footprints:
        centre = fp.mean(axis=0)
        ex, ez = fp[1] - fp[0], fp[3] - fp[0]
        half = np.array([np.linalg.norm(ex), np.linalg.norm(ez)]) / 2
        ex, ez = ex / (2 * half[0]), ez / (2 * half[1])
        grown = centre + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * (half + CONTACT_REACH_M) @ np.stack([ex, ez])
        rect = _screen_rect(np.column_stack([grown[:, 0], np.zeros(4), grown[:, 1]]), wfc, intrinsics)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        sel = floor_px[v0:v1, u0:u1]
        if not sel.any():
            continue
        dsel = out["depth"][v0:v1, u0:u1][sel]
        q = np.stack([wfc[0, 3] + dsel * out["dirs"][0, v0:v1, u0:u1][sel],
                      wfc[2, 3] + dsel * out["dirs"][2, v0:v1, u0:u1][sel]], axis=1) - centre
        local = np.abs(np.column_stack([q @ ex, q @ ez])) - half
        dist = np.linalg.norm(np.maximum(local, 0.0), axis=1)
        weight = np.exp(-dist / 0.07) * np.clip(1.0 - dist / CONTACT_REACH_M, 0.0, None)
        sub = factor[v0:v1, u0:u1]
        sub[sel] *= (1.0 - strength * weight).astype(np.float32)
    return factor


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt(np.einsum("...k,...k->...", v, v)), 1e-9)[..., None]


def render(scene: "Scene", intrinsics: Intrinsics) -> RenderResult:
    """Ray-cast the scene: shaded RGB, planar depth (m) and loudspeaker instance ids."""
    out = _trace(scene, intrinsics, shade=True)
    wfc = scene.world_from_camera()
    dirs, n = np.moveaxis(out["dirs"], 0, -1), out["normal"]
    sx, sy, sz = scene.room.size
    light = np.array([sx / 2, sy - 0.05, sz / 2], np.float32)
    to_light = (light - wfc[:3, 3]).astype(np.float32) - out["depth"][..., None] * dirs
    dist2 = np.einsum("...k,...k->...", to_light, to_light)
    ldir = to_light / np.sqrt(np.maximum(dist2, 1e-12))[..., None]
    ndl = np.clip(np.einsum("...k,...k->...", n, ldir), 0.0, None)
    falloff = np.float32(scene.light_intensity * 1.5) / (1.0 + dist2 / np.float32((0.9 * sy) ** 2))
    half_vec = _unit(ldir - _unit(dirs))
    spec = out["spec"] * np.clip(np.einsum("...k,...k->...", n, half_vec), 0.0, None) ** 40 * falloff
    ambient = 0.36 + 0.05 * n[..., 1]
    occlusion = _contact_shadow(scene, out, intrinsics)
    light_term = (ambient + ndl * falloff) * occlusion + out["glow"]
    colour = out["albedo"] * light_term[..., None] + 0.6 * spec[..., None]
    tone = 1.0 - np.exp(-1.7 * colour)  # soft shoulder instead of hard clipping near the lamp
    rgb = np.clip(tone * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return RenderResult(rgb, out["depth"].astype(np.float32), out["instance"])
