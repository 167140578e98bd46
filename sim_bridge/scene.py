"""Procedural scenes: a shoebox room, furniture clutter, loudspeakers and a head-height camera.

World frame: y up, floor at y = 0, room interior [0, sx] x [0, sy] x [0, sz] (sim_bridge.room).
A Furniture or PlacedLoudspeaker pose is a floor/centre point plus a yaw about +y
(geometry.rotation_y); an object's local front is +z, so yaw = atan2(fx, fz) faces (fx, fz).

sample_scene draws rooms, clutter, a camera and loudspeakers under the SpatialSceneQA rules
(sources 1-4 m away, >= 0.5 m from walls/obstacles/each other, >= 500 px at 1920x1080, visible
acoustic centre, at most half of the silhouette occluded) and checks visibility with the real
renderer's instance mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from jaeger_ros.core.geometry import (Box3D, Intrinsics, azel_from_direction, pose_matrix, project, rotation_x,
                                 rotation_y, transform_points)
from sim_bridge.loudspeakers import SPLITS, LoudspeakerShape, make_shape, shape_ids
from sim_bridge.people import TALKER_KINDS, make_person, person_ids
from sim_bridge.render import raycast
from sim_bridge.room import Room

FURNITURE_KINDS = ("table", "cabinet", "sofa", "armchair", "shelf", "media", "plant", "lamp")
WALL_ITEM_KINDS = ("door", "window", "picture")
FLOOR_STYLES = ("planks", "tiles", "carpet")

CLEARANCE_M = 0.5
"""Loudspeakers keep this from walls, furniture and each other (SpatialSceneQA rule)."""
DISTANCE_RANGE_M = (1.0, 4.0)
"""Acoustic centre to camera distance."""
MIN_PIXELS_1080P = 500
"""A loudspeaker must cover this many pixels of a 1920x1080 frame (scaled by pixel count)."""
MIN_VISIBLE_FRACTION = 0.5
"""At least this share of a loudspeaker's in-frame silhouette must be unoccluded."""
AZIMUTH_LIMIT_DEG = 40.0
ELEVATION_RANGE_DEG = (-25.0, 24.0)
"""Official task-A extremes; sampling keeps sources inside them."""
MIN_X_SEPARATION_M = 0.25
"""Box centres differ at least this much in camera x, so Left/Center/Right is unambiguous."""
CAMERA_HEIGHT_RANGE_M = (1.4, 1.75)
PITCH_RANGE_DEG = (-12.0, 5.0)
"""Tuned so that source elevations resemble the official ones (median about -18 deg)."""
YAW_JITTER_DEG = 30.0
PERSON_YAW_JITTER_DEG = 45.0
"""People turn further away from the camera than loudspeakers are aimed (still facing it)."""
PERSON_DISTANCE_M = 1.2
"""People keep at least social distance from the robot (E. T. Hall, The Hidden Dimension, 1966:
social zone from 1.2 m), so most of the body is in view."""
RT60_RANGE_S = (0.2, 0.9)
MAX_ATTEMPTS = 300
_SPLIT_STREAM = 0x5CE7E


def _vec(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(3)


def _floats(v: Any) -> list[float]:
    return [float(x) for x in np.asarray(v, dtype=float).ravel()]


@dataclass
class Furniture:
    """A piece of clutter: bounding box centre (world), full size (local x, y, z), yaw about +y.

    kind picks how the renderer builds it inside that box; seed varies its details (books...).
    """

    center: np.ndarray
    size: np.ndarray
    yaw_deg: float
    color: np.ndarray
    kind: str = "cabinet"
    seed: int = 0

    def __post_init__(self) -> None:
        self.center, self.size, self.color = _vec(self.center), _vec(self.size), _vec(self.color)
        if self.kind not in FURNITURE_KINDS + WALL_ITEM_KINDS:
            raise ValueError(f"unknown furniture kind {self.kind!r}")
        if np.any(self.size <= 0):
            raise ValueError(f"furniture size must be positive, got {self.size}")

    def footprint(self) -> np.ndarray:
        """(4, 2) world (x, z) corners of the floor footprint, counter-clockwise seen from above."""
        return _rect_corners(self.center[[0, 2]], self.size[[0, 2]] / 2.0, self.yaw_deg)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "center": _floats(self.center), "size": _floats(self.size),
                "yaw_deg": float(self.yaw_deg), "color": _floats(self.color), "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Furniture":
        return cls(d["center"], d["size"], float(d["yaw_deg"]), d["color"], d.get("kind", "cabinet"),
                   int(d.get("seed", 0)))


@dataclass
class PlacedLoudspeaker:
    """A sound source standing with its local origin at `position` (floor point, world): a
    loudspeaker shape, or a person (sim_bridge.people) whose mouth is the acoustic centre."""

    shape: LoudspeakerShape
    position: np.ndarray
    yaw_deg: float

    def __post_init__(self) -> None:
        self.position = _vec(self.position)

    def world_from_local(self) -> np.ndarray:
        return pose_matrix(rotation_y(self.yaw_deg), self.position)

    @property
    def category(self) -> str:
        """"loudspeaker" or "person"."""
        return self.shape.category

    @property
    def acoustic_center(self) -> np.ndarray:
        """World point the sound comes from: the centre of the main driver's (a person's mouth's)
        front face."""
        return transform_points(self.world_from_local(), self.shape.acoustic_center_local)

    def footprint(self) -> np.ndarray:
        """(4, 2) world (x, z) corners of the local bounding box's footprint."""
        lo, hi = self.shape.bounds
        centre_local = np.array([(lo[0] + hi[0]) / 2, 0.0, (lo[2] + hi[2]) / 2])
        c = transform_points(self.world_from_local(), centre_local)
        return _rect_corners(c[[0, 2]], (hi - lo)[[0, 2]] / 2.0, self.yaw_deg)

    def to_dict(self) -> dict[str, Any]:
        return {"shape_id": int(self.shape.shape_id), "category": self.category, "position": _floats(self.position),
                "yaw_deg": float(self.yaw_deg), "acoustic_center": _floats(self.acoustic_center)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlacedLoudspeaker":
        make = make_person if d.get("category") == "person" else make_shape
        return cls(make(int(d["shape_id"])), d["position"], float(d["yaw_deg"]))


@dataclass
class Scene:
    """Everything the renderer and the acoustics need to reproduce one sample exactly."""

    scene_id: str
    room: Room
    furniture: list[Furniture]
    loudspeakers: list[PlacedLoudspeaker]
    camera_position: np.ndarray
    camera_yaw_deg: float
    camera_pitch_deg: float
    wall_items: list[Furniture] = field(default_factory=list)
    floor_style: str = "planks"
    floor_color: np.ndarray = field(default_factory=lambda: np.array([0.55, 0.38, 0.22]))
    wall_colors: np.ndarray = field(default_factory=lambda: np.full((4, 3), 0.82))
    """(4, 3) colours of the west, east, north, south walls."""
    ceiling_color: np.ndarray = field(default_factory=lambda: np.array([0.93, 0.93, 0.92]))
    skirting_color: np.ndarray = field(default_factory=lambda: np.array([0.9, 0.9, 0.88]))
    light_intensity: float = 1.0
    texture_seed: int = 0

    def __post_init__(self) -> None:
        self.camera_position = _vec(self.camera_position)
        self.floor_color, self.ceiling_color = _vec(self.floor_color), _vec(self.ceiling_color)
        self.skirting_color = _vec(self.skirting_color)
        self.wall_colors = np.asarray(self.wall_colors, dtype=float).reshape(4, 3)
        if self.floor_style not in FLOOR_STYLES:
            raise ValueError(f"unknown floor style {self.floor_style!r}, expected one of {FLOOR_STYLES}")

    def world_from_camera(self) -> np.ndarray:
        """4x4 camera pose: yaw about world +y, then pitch about the camera x axis."""
        return pose_matrix(rotation_y(self.camera_yaw_deg) @ rotation_x(self.camera_pitch_deg),
                           self.camera_position)

    def camera_from_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_from_camera())

    def loudspeaker_boxes_camera(self) -> list[Box3D]:
        """Camera-frame axis-aligned boxes tightly enclosing each source's parts (list order; a
        seated person's stool left out), labelled "speaker" (the release's label) or "person"."""
        cam_from_world = self.camera_from_world()
        boxes = []
        for spk in self.loudspeakers:
            rot = cam_from_world[:3, :3] @ rotation_y(spk.yaw_deg)
            origin = transform_points(cam_from_world, spk.position)
            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            for part in spk.shape.body_parts:
                r = rot @ part.frame
                c = origin + rot @ np.asarray(part.center)
                h = part.half_extents
                if part.kind == "box":
                    ext = np.abs(r) @ h
                else:  # exact extent of a cylinder with axis a: |a_k| h + r sqrt(1 - a_k^2)
                    a = r[:, 2]
                    ext = np.abs(a) * h[2] + h[0] * np.sqrt(np.clip(1.0 - a * a, 0.0, None))
                lo, hi = np.minimum(lo, c - ext), np.maximum(hi, c + ext)
            boxes.append(Box3D((lo + hi) / 2.0, hi - lo, "person" if spk.category == "person" else "speaker"))
        return boxes

    def source_direction_camera(self, i: int) -> np.ndarray:
        """Unit camera-frame direction from the camera to loudspeaker i's acoustic centre."""
        if not 0 <= i < len(self.loudspeakers):
            raise ValueError(f"loudspeaker index {i} out of range (scene has {len(self.loudspeakers)})")
        p = transform_points(self.camera_from_world(), self.loudspeakers[i].acoustic_center)
        return p / np.linalg.norm(p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id, "room": self.room.to_dict(),
            "furniture": [f.to_dict() for f in self.furniture],
            "wall_items": [f.to_dict() for f in self.wall_items],
            "loudspeakers": [s.to_dict() for s in self.loudspeakers],
            "camera": {"position": _floats(self.camera_position), "yaw_deg": float(self.camera_yaw_deg),
                       "pitch_deg": float(self.camera_pitch_deg)},
            "appearance": {"floor_style": self.floor_style, "floor_color": _floats(self.floor_color),
                           "wall_colors": [_floats(c) for c in self.wall_colors],
                           "ceiling_color": _floats(self.ceiling_color),
                           "skirting_color": _floats(self.skirting_color),
                           "light_intensity": float(self.light_intensity), "texture_seed": int(self.texture_seed)},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scene":
        cam, look = d["camera"], d["appearance"]
        return cls(d["scene_id"], Room.from_dict(d["room"]), [Furniture.from_dict(f) for f in d["furniture"]],
                   [PlacedLoudspeaker.from_dict(s) for s in d["loudspeakers"]], cam["position"],
                   float(cam["yaw_deg"]), float(cam["pitch_deg"]),
                   [Furniture.from_dict(f) for f in d.get("wall_items", [])], look["floor_style"],
                   look["floor_color"], look["wall_colors"], look["ceiling_color"], look["skirting_color"],
                   float(look["light_intensity"]), int(look["texture_seed"]))


# --- 2-D footprint geometry ----------------------------------------------------------------------

def _rect_corners(center_xz: np.ndarray, half_xz: np.ndarray, yaw_deg: float) -> np.ndarray:
    """(4, 2) world (x, z) corners of a rectangle with local half sizes, rotated by yaw about +y."""
    r = rotation_y(yaw_deg)[np.ix_([0, 2], [0, 2])]
    local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half_xz
    return center_xz + local @ r.T


def _segment_point_distance(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(a + t * ab - p))


def _polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex polygons given as (N, 2) corner loops."""
    for poly in (a, b):
        for k in range(len(poly)):
            edge = poly[(k + 1) % len(poly)] - poly[k]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def rect_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest distance (m) between two convex footprints; 0 when they overlap."""
    if _polygons_overlap(a, b):
        return 0.0
    best = np.inf
    for p_set, q_set in ((a, b), (b, a)):
        for p in p_set:
            for k in range(len(q_set)):
                best = min(best, _segment_point_distance(q_set[k], q_set[(k + 1) % len(q_set)], p))
    return float(best)


def wall_distance(footprint: np.ndarray, room: Room) -> float:
    """Smallest distance from a footprint to the room's walls (negative when it pokes through)."""
    sx, sz = room.size[0], room.size[2]
    return float(min(footprint[:, 0].min(), sx - footprint[:, 0].max(),
                     footprint[:, 1].min(), sz - footprint[:, 1].max()))


# --- sampling ------------------------------------------------------------------------------------

def corridor(a: np.ndarray, b: np.ndarray, half_width: float) -> np.ndarray:
    """(4, 2) corners of the strip between two floor points (world x, z)."""
    d = b - a
    n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9) * half_width
    return np.array([a + n, b + n, b - n, a - n])


def place_around(rng: np.random.Generator, centre_xz: np.ndarray, heading: float, azimuths_deg: Any,
                 pitch_deg: float, height: float, vfov_deg: float, shapes: np.ndarray,
                 make: Callable[[int, list[float], float], Any],
                 wall_clearance: Callable[[np.ndarray], float]) -> list[Any] | None:
    """Loudspeakers around a robot at centre_xz (world x, z) with map heading `heading`: talker k
    at azimuths_deg[k] (map, positive left), 1.2-2.5 m away, facing the robot within 20 deg, 0.4 m
    from the walls, 0.6 m from each other, its acoustic centre inside the vertical field of view of
    a camera at `height` pitched `pitch_deg`. make(shape id, position, yaw) builds one talker (the
    procedural and the mesh worlds' own loudspeaker types). None when one does not fit."""
    placed: list[Any] = []
    for k in range(len(azimuths_deg)):
        for _ in range(40):
            shape = int(shapes[int(rng.integers(len(shapes)))])
            a = heading + np.radians(rng.uniform(*azimuths_deg[k]))
            r = rng.uniform(1.2, 2.5)
            xy_map = np.array([np.cos(a), np.sin(a)]) * r  # relative to the robot, map x, y
            xz = centre_xz + np.array([xy_map[1], xy_map[0]])  # world x = map y, world z = map x
            to = centre_xz - xz
            spk = make(shape, [xz[0], 0.0, xz[1]], float(np.degrees(np.arctan2(to[0], to[1])) + rng.uniform(-20.0, 20.0)))
            fp = spk.footprint()
            if wall_clearance(fp) < 0.4 or any(rect_distance(fp, o.footprint()) < 0.6 for o in placed):
                continue
            centre = spk.acoustic_center
            elevation = np.degrees(np.arctan2(centre[1] - height, np.linalg.norm(centre[[0, 2]] - centre_xz)))
            if abs(elevation - pitch_deg) > vfov_deg / 2.0 - 6.0:
                continue
            placed.append(spk)
            break
        else:
            return None
    return placed


def min_pixels(intrinsics: Intrinsics) -> int:
    """The 500-px-at-1080p visibility rule scaled to this resolution's pixel count."""
    return max(1, int(np.ceil(MIN_PIXELS_1080P * intrinsics.width * intrinsics.height / (1920 * 1080))))


def _sample_room(rng: np.random.Generator) -> Room:
    """Shoebox with per-surface absorption scaled so that the Sabine RT60 is in RT60_RANGE_S."""
    size = (float(rng.uniform(3.5, 9.0)), float(rng.uniform(2.5, 3.2)), float(rng.uniform(3.5, 9.0)))
    for _ in range(50):
        target = rng.uniform(*RT60_RANGE_S)
        # Relative absorption: walls ~plaster/curtains, floor wood/carpet, ceiling tiles/plaster.
        rel = np.array([rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.4, 2.0),
                        rng.uniform(0.5, 2.5), rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5)])
        probe = Room(size, tuple(float(a) for a in np.clip(rel * 0.1, 0.01, 0.99)))
        alpha = np.clip(rel * 0.1 * probe.sabine_rt60() / target, 0.02, 0.95)
        room = Room(size, tuple(float(a) for a in alpha))
        if RT60_RANGE_S[0] <= room.sabine_rt60() <= RT60_RANGE_S[1]:
            return room
    raise RuntimeError(f"could not draw absorption for a {size} room with RT60 in {RT60_RANGE_S}")


_FURNITURE_SPECS = {  # kind: (width, height, depth) ranges in metres, against a wall?, colours
    "table": (((0.8, 1.8), (0.70, 0.78), (0.6, 1.0)), False,
              ((0.45, 0.30, 0.17), (0.62, 0.47, 0.31), (0.85, 0.84, 0.80), (0.15, 0.12, 0.1))),
    "cabinet": (((0.6, 1.6), (0.5, 1.1), (0.35, 0.55)), True,
                ((0.85, 0.84, 0.80), (0.40, 0.26, 0.15), (0.25, 0.27, 0.30), (0.6, 0.45, 0.3))),
    "sofa": (((1.5, 2.4), (0.75, 0.92), (0.8, 1.0)), True,
             ((0.35, 0.38, 0.42), (0.55, 0.45, 0.36), (0.20, 0.30, 0.42), (0.45, 0.18, 0.15), (0.7, 0.66, 0.58))),
    "armchair": (((0.75, 1.0), (0.75, 0.95), (0.75, 0.95)), False,
                 ((0.55, 0.35, 0.2), (0.3, 0.42, 0.35), (0.6, 0.58, 0.52), (0.25, 0.25, 0.28))),
    "shelf": (((0.6, 1.2), (1.6, 2.2), (0.28, 0.4)), True,
              ((0.86, 0.85, 0.82), (0.45, 0.30, 0.18), (0.12, 0.12, 0.12), (0.66, 0.5, 0.33))),
    "media": (((1.2, 1.8), (0.95, 1.3), (0.4, 0.5)), True,
              ((0.12, 0.12, 0.13), (0.85, 0.84, 0.80), (0.42, 0.28, 0.17))),
    "plant": (((0.4, 0.7), (0.8, 1.6), (0.4, 0.7)), False,
              ((0.20, 0.42, 0.16), (0.26, 0.48, 0.22), (0.16, 0.35, 0.18))),
    "lamp": (((0.35, 0.5), (1.5, 1.8), (0.35, 0.5)), False,
             ((0.95, 0.88, 0.72), (0.9, 0.9, 0.88), (0.85, 0.75, 0.6))),
}


def _against_wall(rng: np.random.Generator, room: Room, w: float, d: float,
                  gap: float | None = None) -> tuple[np.ndarray, float]:
    """Centre (x, z) and yaw of a w x d footprint with its back to a random wall, facing inwards."""
    sx, sz = room.size[0], room.size[2]
    wall = int(rng.integers(4))
    gap = rng.uniform(0.01, 0.06) if gap is None else gap
    if wall == 0:    # west wall x = 0, face +x
        return np.array([gap + d / 2, rng.uniform(w / 2, sz - w / 2)]), 90.0
    if wall == 1:    # east wall, face -x
        return np.array([sx - gap - d / 2, rng.uniform(w / 2, sz - w / 2)]), -90.0
    if wall == 2:    # north wall z = 0, face +z
        return np.array([rng.uniform(w / 2, sx - w / 2), gap + d / 2]), 0.0
    return np.array([rng.uniform(w / 2, sx - w / 2), sz - gap - d / 2]), 180.0


def _sample_furniture(rng: np.random.Generator, room: Room) -> list[Furniture]:
    area = room.size[0] * room.size[2]
    want = int(rng.integers(3, min(10, max(3, int(area / 4.5))) + 1))
    kinds = list(_FURNITURE_SPECS)
    placed: list[Furniture] = []
    for _ in range(want * 15):
        if len(placed) == want:
            break
        kind = kinds[int(rng.integers(len(kinds)))]
        ranges, wall, colours = _FURNITURE_SPECS[kind]
        w, h, d = (rng.uniform(*r) for r in ranges)
        if w > min(room.size[0], room.size[2]) - 0.2:
            continue
        if wall or rng.random() < 0.3:
            xz, yaw = _against_wall(rng, room, w, d)
        else:
            xz = np.array([rng.uniform(0.2, room.size[0] - 0.2), rng.uniform(0.2, room.size[2] - 0.2)])
            yaw = rng.uniform(-180.0, 180.0)
        colour = np.clip(np.asarray(colours[int(rng.integers(len(colours)))]) * rng.uniform(0.9, 1.1, 3), 0, 1)
        item = Furniture([xz[0], h / 2, xz[1]], [w, h, d], float(yaw), colour, kind, int(rng.integers(1 << 30)))
        fp = item.footprint()
        if wall_distance(fp, room) < 0.0 or any(rect_distance(fp, f.footprint()) < 0.1 for f in placed):
            continue
        placed.append(item)
    return placed


def _sample_wall_items(rng: np.random.Generator, room: Room) -> list[Furniture]:
    """A door, maybe windows and pictures: thin boxes flush with the walls (pure appearance)."""
    items: list[Furniture] = []
    sx, sy, sz = room.size
    plan = ["door"] + ["window"] * int(rng.integers(0, 3)) + ["picture"] * int(rng.integers(0, 4))
    for kind in plan:
        for _ in range(20):
            if kind == "door":
                w, h, y = rng.uniform(0.8, 0.95), 2.05, 1.025
            elif kind == "window":
                w, h = rng.uniform(0.9, 1.8), rng.uniform(1.0, 1.4)
                y = min(rng.uniform(0.9, 1.1) + h / 2, sy - 0.15 - h / 2)
            else:
                w, h, y = rng.uniform(0.35, 1.1), rng.uniform(0.3, 0.8), rng.uniform(1.45, 1.75)
            d = 0.04 if kind != "picture" else 0.03
            xz, yaw = _against_wall(rng, room, w, d, gap=0.0)
            item = Furniture([xz[0], y, xz[1]], [w, h, d], yaw,
                             rng.uniform(0.3, 0.95, 3) if kind == "picture" else np.array([0.92, 0.91, 0.88]),
                             kind, int(rng.integers(1 << 30)))
            fp = item.footprint()
            if wall_distance(fp, room) < 0.0:
                continue
            clash = [o for o in items if rect_distance(fp, o.footprint()) < 0.15
                     and abs(o.center[1] - y) < (o.size[1] + h) / 2 + 0.1]
            if not clash:
                items.append(item)
                break
    return items


def _appearance(rng: np.random.Generator) -> dict[str, Any]:
    floors = {"planks": [(0.55, 0.38, 0.22), (0.72, 0.56, 0.38), (0.36, 0.24, 0.15), (0.62, 0.6, 0.56)],
              "tiles": [(0.82, 0.8, 0.76), (0.55, 0.55, 0.56), (0.7, 0.6, 0.5), (0.3, 0.3, 0.32)],
              "carpet": [(0.45, 0.42, 0.38), (0.3, 0.33, 0.42), (0.55, 0.25, 0.2), (0.62, 0.58, 0.5)]}
    walls = [(0.88, 0.87, 0.84), (0.82, 0.80, 0.74), (0.74, 0.80, 0.82), (0.85, 0.78, 0.70),
             (0.72, 0.76, 0.68), (0.92, 0.92, 0.92), (0.62, 0.64, 0.68)]
    style = FLOOR_STYLES[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    opts = floors[style]
    base = np.asarray(walls[int(rng.integers(len(walls)))]) * rng.uniform(0.95, 1.05, 3)
    wall_colors = np.tile(base, (4, 1))
    if rng.random() < 0.3:  # an accent wall
        wall_colors[int(rng.integers(4))] = rng.uniform(0.25, 0.85, 3)
    skirting = (0.9, 0.9, 0.88) if rng.random() < 0.7 else (0.35, 0.25, 0.17)
    return {"floor_style": style,
            "floor_color": np.clip(np.asarray(opts[int(rng.integers(len(opts)))]) * rng.uniform(0.9, 1.1, 3), 0, 1),
            "wall_colors": np.clip(wall_colors, 0, 1), "ceiling_color": np.array([0.93, 0.93, 0.92]),
            "skirting_color": np.asarray(skirting), "light_intensity": float(rng.uniform(0.85, 1.15)),
            "texture_seed": int(rng.integers(1 << 30))}


def _sample_camera(rng: np.random.Generator, room: Room,
                   furniture: list[Furniture]) -> tuple[np.ndarray, float, float] | None:
    sx, sy, sz = room.size
    for _ in range(50):
        xz = np.array([rng.uniform(0.5, sx - 0.5), rng.uniform(0.5, sz - 0.5)])
        me = _rect_corners(xz, np.array([0.15, 0.15]), 0.0)
        if any(rect_distance(me, f.footprint()) < 0.2 for f in furniture):
            continue
        target = np.array([rng.uniform(0.25, 0.75) * sx, rng.uniform(0.25, 0.75) * sz])
        to = target - xz
        if np.linalg.norm(to) < 1.0:
            continue
        yaw = float(np.degrees(np.arctan2(-to[0], -to[1])) + rng.uniform(-25.0, 25.0))
        height = float(rng.uniform(*CAMERA_HEIGHT_RANGE_M))
        pitch = float(rng.uniform(*PITCH_RANGE_DEG))
        return np.array([xz[0], height, xz[1]]), yaw, pitch
    return None


def source_kinds(rng: np.random.Generator, talkers: str, n: int) -> list[str]:
    """Category of each of n sources for a `talkers` mode (sim_bridge.people.TALKER_KINDS):
    mixed draws each at even odds but keeps at least one of each where n >= 2."""
    if talkers not in TALKER_KINDS:
        raise ValueError(f"talkers must be one of {TALKER_KINDS}, got {talkers!r}")
    if talkers != "mixed":
        return ["person" if talkers == "people" else "loudspeaker"] * n
    kinds = ["person" if rng.random() < 0.5 else "loudspeaker" for _ in range(n)]
    if n >= 2 and len(set(kinds)) == 1:
        kinds[int(rng.integers(n))] = "loudspeaker" if kinds[0] == "person" else "person"
    return kinds


def people_by_gender(split: str) -> dict[str, list[int]]:
    """Person ids of a split per voice gender (both genders exist in every split)."""
    ids = person_ids(split)
    return {g: [i for i in ids if make_person(i).gender == g] or ids for g in ("male", "female")}


def in_sensing_range(p_cam: np.ndarray, min_distance_m: float = DISTANCE_RANGE_M[0]) -> bool:
    """Whether a camera-frame acoustic centre keeps the distance and direction rules (procedural
    and mesh sources alike; people keep a larger minimum distance in the procedural world)."""
    a, e = azel_from_direction(p_cam)
    return bool(min_distance_m <= float(np.linalg.norm(p_cam)) <= DISTANCE_RANGE_M[1]
                and abs(float(a)) <= AZIMUTH_LIMIT_DEG
                and ELEVATION_RANGE_DEG[0] <= float(e) <= ELEVATION_RANGE_DEG[1])


def append_separated(scene: Any, spk: Any) -> bool:
    """Add a talker to scene.loudspeakers (procedural or mesh scene) unless its box centre is within
    MIN_X_SEPARATION_M of another's in camera x, so talkers stay apart across the image."""
    scene.loudspeakers.append(spk)
    xs = np.array([b.center[0] for b in scene.loudspeaker_boxes_camera()])
    if len(xs) > 1 and np.min(np.abs(xs[-1] - xs[:-1])) < MIN_X_SEPARATION_M:
        scene.loudspeakers.pop()
        return False
    return True


def _place_loudspeakers(rng: np.random.Generator, scene: Scene, shapes: list[int], n: int,
                        kinds: list[str] | None = None, people: dict[str, list[int]] | None = None) -> bool:
    """Append n sources satisfying the geometric rules to scene.loudspeakers (False: gave up);
    kinds[j] "person" makes source j a person from `people` (ids per gender); people alternate
    genders, so two people can always voice a male + female pair."""
    cam_from_world = scene.camera_from_world()
    cam_xz = scene.camera_position[[0, 2]]
    first = ("male", "female")[int(rng.integers(2))] if kinds is not None and "person" in kinds else "male"
    for j in range(n):
        person = kinds is not None and kinds[j] == "person"
        gender = first if sum(k == "person" for k in (kinds or [])[:j]) % 2 == 0 else \
            ("female" if first == "male" else "male")
        for _ in range(60):
            if person:
                pool = people[gender]
                shape = make_person(int(pool[int(rng.integers(len(pool)))]))
            else:
                shape = make_shape(int(shapes[int(rng.integers(len(shapes)))]))
            az = np.radians(scene.camera_yaw_deg + rng.uniform(-AZIMUTH_LIMIT_DEG, AZIMUTH_LIMIT_DEG))
            r = rng.uniform(0.8, DISTANCE_RANGE_M[1])
            xz = cam_xz + r * np.array([-np.sin(az), -np.cos(az)])
            to_cam = cam_xz - xz
            jitter = PERSON_YAW_JITTER_DEG if person else YAW_JITTER_DEG
            yaw = float(np.degrees(np.arctan2(to_cam[0], to_cam[1])) + rng.uniform(-jitter, jitter))
            spk = PlacedLoudspeaker(shape, [xz[0], 0.0, xz[1]], yaw)
            if not in_sensing_range(transform_points(cam_from_world, spk.acoustic_center),
                                    PERSON_DISTANCE_M if person else DISTANCE_RANGE_M[0]):
                continue
            fp = spk.footprint()
            if wall_distance(fp, scene.room) < CLEARANCE_M:
                continue
            if any(rect_distance(fp, f.footprint()) < CLEARANCE_M for f in scene.furniture):
                continue
            if any(rect_distance(fp, o.footprint()) < CLEARANCE_M for o in scene.loudspeakers):
                continue
            if not append_separated(scene, spk):
                continue
            break
        else:
            return False
    return True


def visibility_problems(scene: Scene, intrinsics: Intrinsics, instance: np.ndarray, depth: np.ndarray,
                        alone_pixels: Callable[[int], int] | None = None) -> list[str]:
    """Why a rendered scene breaks the visibility rules (empty list: it is valid). Any world whose
    scene has `loudspeakers` (with `acoustic_center`) and `camera_from_world()` uses it;
    `alone_pixels(i)`: loudspeaker i's pixels with nothing else in the scene (default: a ray-cast
    of the procedural scene with that loudspeaker alone, only computed when needed)."""
    if alone_pixels is None:
        def alone_pixels(i: int) -> int:
            solo = replace(scene, furniture=[], wall_items=[], loudspeakers=[scene.loudspeakers[i]])
            return int(np.sum(raycast(solo, intrinsics)[1] == 1))
    problems = []
    need = min_pixels(intrinsics)
    cam_from_world = scene.camera_from_world()
    for i, spk in enumerate(scene.loudspeakers):
        count = int(np.sum(instance == i + 1))
        if count < need:
            problems.append(f"loudspeaker {i} covers {count} px < {need}")
            continue
        alone = alone_pixels(i)
        if count < MIN_VISIBLE_FRACTION * alone:
            problems.append(f"loudspeaker {i}: only {count} of its {alone} px are unoccluded")
            continue
        p = transform_points(cam_from_world, spk.acoustic_center)
        u, v, front = project(p, intrinsics)
        ui, vi = int(np.round(u)), int(np.round(v))
        if not (front and 0 <= ui < intrinsics.width and 0 <= vi < intrinsics.height):
            problems.append(f"loudspeaker {i}: acoustic centre outside the image")
        elif instance[vi, ui] != i + 1 or abs(depth[vi, ui] + p[2]) > 0.1:
            problems.append(f"loudspeaker {i}: acoustic centre hidden")
    return problems


def sample_scene(rng: np.random.Generator, split: str, num_loudspeakers: int, intrinsics: Intrinsics,
                 scene_id: str = "", talkers: str = "loudspeakers") -> Scene:
    """Draw a valid scene (see the module doc) with loudspeaker shapes (and people) from `split` only.

    `talkers`: what the sources are (sim_bridge.people.TALKER_KINDS): loudspeakers (draws exactly
    as before people existed), people, or mixed (see source_kinds).

    Retries with fresh draws until every rule holds (visibility checked on a real render at
    `intrinsics`); raises RuntimeError after MAX_ATTEMPTS failures. Consumes exactly one draw
    from `rng`; the scene itself comes from a stream seeded by that draw and the split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    if not 1 <= num_loudspeakers <= 4:
        raise ValueError(f"num_loudspeakers must be 1..4, got {num_loudspeakers}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy Generator")
    shapes = shape_ids(split)
    people = people_by_gender(split)
    source_kinds(rng, talkers, 0)  # an unknown mode fails before any draw
    # One draw from the caller's stream, mixed with the split: the same generator state never
    # gives the same room in two splits, and the caller's stream advances by a fixed amount.
    rng = np.random.default_rng([int(rng.integers(1 << 62)), SPLITS.index(split), _SPLIT_STREAM])
    kinds = None if talkers == "loudspeakers" else source_kinds(rng, talkers, num_loudspeakers)
    last = "no attempt"
    scene: Scene | None = None
    for attempt in range(MAX_ATTEMPTS):
        if scene is None or attempt % 4 == 0:  # a fresh room now and then, else a new camera
            room = _sample_room(rng)
            furniture = _sample_furniture(rng, room)
            wall_items = _sample_wall_items(rng, room)
            look = _appearance(rng)
        cam = _sample_camera(rng, room, furniture)
        if cam is None:
            last = "no free camera position"
            scene = None
            continue
        scene = Scene(scene_id, room, furniture, [], cam[0], cam[1], cam[2], wall_items, **look)
        if not _place_loudspeakers(rng, scene, shapes, num_loudspeakers, kinds, people):
            last = "could not place the loudspeakers"
            continue
        depth, instance = raycast(scene, intrinsics)
        problems = visibility_problems(scene, intrinsics, instance, depth)
        if not problems:
            return scene
        last = "; ".join(problems)
    raise RuntimeError(f"sample_scene({split!r}, {num_loudspeakers}) failed {MAX_ATTEMPTS} times; last: {last}")
