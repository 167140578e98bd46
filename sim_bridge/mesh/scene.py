"""Mesh scenes: a room shell (shoebox, L-shape or alcove), catalogue furniture, loudspeakers and
distractors, each a set of triangle meshes with a semantic category, an acoustic material
category and an instance id.

World frame as the procedural world (sim_bridge.scene): y up, floor at y = 0, the room's
bounding box is [0, sx] x [0, sy] x [0, sz]; a pose is a floor point plus a yaw about +y with
the object's local front +z. Loudspeakers are instance ids 1..n in list order (the
RenderResult convention), then furniture, then the shell.

sample_mesh_scene follows the procedural sampler's SpatialSceneQA rules (sources 1-4 m away,
>= 0.5 m from walls/furniture/each other, >= 500 px at 1080p, visible acoustic centre, at most
half occluded), checked on the GL render. Rooms, models and floor/wall textures are split
between train/val/test: rooms by a stream seeded with the split, models by
catalogue.CatalogueModel.split, textures by TEXTURE_SPLITS.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from jaeger_ros.core.geometry import (Box3D, Intrinsics, pose_matrix, project, rotation_x,
                                      rotation_y, transform_points)
from sim_bridge import scene as procedural
from sim_bridge.scene import _floats, _vec
from sim_bridge.loudspeakers import LoudspeakerShape, make_shape, shape_ids
from sim_bridge.mesh import catalogue
from sim_bridge.people import MOUTH_FRACTION
from sim_bridge.room import SURFACES, Room

SHELL_KINDS = ("shoebox", "L", "alcove")
TEXTURE_SPLITS = {"train": range(0, 32), "val": range(32, 36), "test": range(36, 40)}
"""Procedural floor/wall texture ids per split, 40 in all (texture k is drawn from seed k)."""
FLOOR_MATERIALS = ("parquet", "carpet", "tile")
WALL_MATERIALS = ("plaster", "brick", "drywall")
CEILING_MATERIALS = ("plaster", "ceiling_panel")
FURNITURE_WEIGHTS = {"sofa": 3, "table": 3, "chair": 3, "cabinet": 3, "shelf": 2, "bed": 1, "appliance": 1,
                     "plant": 2, "lamp": 1, "person": 1}
AGAINST_WALL = ("sofa", "cabinet", "shelf", "bed", "appliance")
ON_TOP = ("tv", "lamp", "plant", "box", "audio")
"""Kinds that may stand on a table/cabinet top when small enough."""
SUPPORTS = ("table", "cabinet", "shelf")
CATALOGUE_SPEAKER_SHARE = 0.3
"""Share of loudspeakers drawn from the catalogue (where the split has any), on stands or tops."""
MAX_ATTEMPTS = 60
_SPLIT_STREAM = 0x3E54


# --- the shell -----------------------------------------------------------------------------------

@dataclass
class Shell:
    """Floor plan as a union of axis-aligned (x0, z0, x1, z1) rectangles, a flat ceiling at
    `height`, per-surface materials and texture ids."""

    kind: str
    rects: list[tuple[float, float, float, float]]
    height: float
    floor_material: str
    wall_material: str
    ceiling_material: str
    floor_texture: int
    wall_texture: int
    wall_color: tuple[float, float, float]

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell edges xs, zs and the (len(xs)-1, len(zs)-1) mask of cells inside the room."""
        xs = np.unique([v for r in self.rects for v in (r[0], r[2])])
        zs = np.unique([v for r in self.rects for v in (r[1], r[3])])
        inside = np.zeros((len(xs) - 1, len(zs) - 1), dtype=bool)
        for i in range(len(xs) - 1):
            for j in range(len(zs) - 1):
                cx, cz = (xs[i] + xs[i + 1]) / 2, (zs[j] + zs[j + 1]) / 2
                inside[i, j] = any(r[0] <= cx <= r[2] and r[1] <= cz <= r[3] for r in self.rects)
        return xs, zs, inside

    @cached_property
    def walls(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Wall segments (a_xz, b_xz, inward normal_xz) between inside and outside cells (computed
        once, as nothing changes a shell's rects: placement asks thousands of times per scene)."""
        xs, zs, inside = self.grid()
        nx, nz = inside.shape
        out = []

        def cell(i: int, j: int) -> bool:
            return 0 <= i < nx and 0 <= j < nz and bool(inside[i, j])

        for i in range(nx):
            for j in range(nz):
                if not inside[i, j]:
                    continue
                if not cell(i - 1, j):
                    out.append((np.array([xs[i], zs[j]]), np.array([xs[i], zs[j + 1]]), np.array([1.0, 0.0])))
                if not cell(i + 1, j):
                    out.append((np.array([xs[i + 1], zs[j]]), np.array([xs[i + 1], zs[j + 1]]), np.array([-1.0, 0.0])))
                if not cell(i, j - 1):
                    out.append((np.array([xs[i], zs[j]]), np.array([xs[i + 1], zs[j]]), np.array([0.0, 1.0])))
                if not cell(i, j + 1):
                    out.append((np.array([xs[i], zs[j + 1]]), np.array([xs[i + 1], zs[j + 1]]), np.array([0.0, -1.0])))
        return out

    @property
    def size(self) -> np.ndarray:
        r = np.asarray(self.rects)
        return np.array([r[:, 2].max(), self.height, r[:, 3].max()])

    def floor_area(self) -> float:
        xs, zs, inside = self.grid()
        return float(np.sum(np.outer(np.diff(xs), np.diff(zs))[inside]))

    def contains_xz(self, p: np.ndarray) -> bool:
        return any(r[0] <= p[0] <= r[2] and r[1] <= p[1] <= r[3] for r in self.rects)

    def wall_clearance(self, footprint: np.ndarray) -> float:
        """Smallest distance (m) from a convex footprint to the walls; negative when any corner
        is outside the room. With every corner inside, a wall can only touch the footprint, so
        the distance is the least of corner-to-wall and wall-end-to-edge distances."""
        if not all(self.contains_xz(c) for c in footprint):
            return -1.0
        walls = self.walls
        a = np.array([w[0] for w in walls])
        b = np.array([w[1] for w in walls])
        edges_a, edges_b = footprint, np.roll(footprint, -1, axis=0)
        d1 = _point_segment_distances(footprint, a, b)
        d2 = _point_segment_distances(np.concatenate([a, b]), edges_a, edges_b)
        return float(min(d1.min(), d2.min()))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rects": [list(map(float, r)) for r in self.rects], "height": float(self.height),
                "floor_material": self.floor_material, "wall_material": self.wall_material,
                "ceiling_material": self.ceiling_material, "floor_texture": int(self.floor_texture),
                "wall_texture": int(self.wall_texture), "wall_color": list(map(float, self.wall_color))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Shell":
        return cls(d["kind"], [tuple(r) for r in d["rects"]], float(d["height"]), d["floor_material"],
                   d["wall_material"], d["ceiling_material"], int(d["floor_texture"]), int(d["wall_texture"]),
                   tuple(d["wall_color"]))


def _point_segment_distances(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, S) distances from points p (P, 2) to segments a-b (S, 2)."""
    ab = b - a
    t = np.einsum("psk,sk->ps", p[:, None] - a[None], ab) / np.maximum(np.einsum("sk,sk->s", ab, ab), 1e-12)
    closest = a[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]
    return np.linalg.norm(p[:, None] - closest, axis=-1)


def _sample_shell(rng: np.random.Generator, split: str) -> Shell:
    kind = SHELL_KINDS[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    sx, sz = float(rng.uniform(4.0, 8.5)), float(rng.uniform(4.0, 8.5))
    height = float(rng.uniform(2.5, 3.2))
    rects = [(0.0, 0.0, sx, sz)]
    if kind == "L":  # the main rectangle minus a corner: two rectangles
        cx, cz = float(rng.uniform(0.35, 0.6) * sx), float(rng.uniform(0.35, 0.6) * sz)
        rects = [(0.0, 0.0, sx, cz), (0.0, cz, cx, sz)]
    elif kind == "alcove":  # a recess of 1-1.6 m behind one wall section
        depth, width = float(rng.uniform(1.0, 1.6)), float(rng.uniform(1.5, 0.6 * sx))
        x0 = float(rng.uniform(0.2, sx - width - 0.2))
        rects = [(0.0, 0.0, sx, sz), (x0, sz, x0 + width, sz + depth)]
    textures = list(TEXTURE_SPLITS[split])
    walls = [(0.88, 0.87, 0.84), (0.82, 0.80, 0.74), (0.74, 0.80, 0.82), (0.85, 0.78, 0.70), (0.72, 0.76, 0.68),
             (0.92, 0.92, 0.92), (0.62, 0.64, 0.68)]
    colour = np.clip(np.asarray(walls[int(rng.integers(len(walls)))]) * rng.uniform(0.93, 1.05, 3), 0, 1)
    return Shell(kind, rects, height, FLOOR_MATERIALS[int(rng.integers(3))], WALL_MATERIALS[int(rng.integers(3))],
                 CEILING_MATERIALS[int(rng.integers(2))], int(rng.choice(textures)), int(rng.choice(textures)),
                 tuple(float(c) for c in colour))


# --- objects ---------------------------------------------------------------------------------------

@dataclass
class MeshObject:
    """A posed object: a catalogue model (source = model id) or a coloured box (source "box",
    size = its full extents) such as a door, window or loudspeaker stand."""

    instance_id: int
    category: str
    material: str
    source: str
    position: np.ndarray
    """World floor point of its local origin (bottom centre)."""
    yaw_deg: float
    size: np.ndarray
    """Local (w, h, d) bounding size, metres."""
    color: tuple[float, float, float] = (0.8, 0.8, 0.8)

    def __post_init__(self) -> None:
        self.position, self.size = _vec(self.position), _vec(self.size)

    def world_from_local(self) -> np.ndarray:
        return pose_matrix(rotation_y(self.yaw_deg), self.position)

    def footprint(self) -> np.ndarray:
        return procedural._rect_corners(self.position[[0, 2]], self.size[[0, 2]] / 2.0, self.yaw_deg)

    @property
    def top(self) -> float:
        return float(self.position[1] + self.size[1])

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "category": self.category, "material": self.material,
                "source": self.source, "position": _floats(self.position), "yaw_deg": float(self.yaw_deg),
                "size": _floats(self.size), "color": list(map(float, self.color))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeshObject":
        return cls(int(d["instance_id"]), d["category"], d["material"], d["source"], d["position"],
                   float(d["yaw_deg"]), d["size"], tuple(d.get("color", (0.8, 0.8, 0.8))))


SILENT_PERSON_MIN_SHARE = 0.002
"""Share of the image a silent person must cover to count as seen (600 pixels at 640x480: a
quarter of a person 4.5 m away), her head in sight."""
SILENT_PERSON_RANGE_M = 4.5
"""Farthest silent person counted: the depth candidates' working range (jaeger_ros.classical.candidates)."""


TALKING_PEOPLE = r"^(sitting |holding )?(male|female|boy|girl)$"
"""Catalogue people who may talk: standing, holding or seated; not lying down, not mannequins."""
ADULT_HEIGHT_M, CHILD_HEIGHT_M = 1.72, 1.30
"""Standing height assumed for a seated model (its own box is shorter than the person)."""


def talking_people(split: str) -> list[catalogue.CatalogueModel]:
    """The split's catalogue people who can be talkers."""
    import re

    return [m for m in catalogue.models(split, "person") if re.match(TALKING_PEOPLE, m.name.lower())]


def person_gender(name: str) -> str | None:
    """Voice gender a catalogue person's name says (male/boy, female/girl), else None."""
    low = name.lower()
    return "female" if ("female" in low or "girl" in low) else "male" if ("male" in low or "boy" in low) else None


def _model_vertices(model: catalogue.CatalogueModel) -> np.ndarray:
    """(N, 3) vertices of all of a catalogue model's parts, local frame (where the mouth and the
    seat of a person are looked for)."""
    return np.concatenate([np.asarray(m.vertices) for m in catalogue.load_model(model).parts])


@lru_cache(maxsize=None)
def _head_local(model_id: str) -> tuple[float, float, float]:
    """The middle of a catalogue person's head at mouth height, local frame: MOUTH_FRACTION of
    the standing height (a seated model: its top less the mouth's drop below the crown of a
    standing adult/child), on the head's centre line."""
    model = _model_by_id(model_id)
    verts = _model_vertices(model)
    top = float(verts[:, 1].max())
    low = model.name.lower()
    standing = top if not low.startswith("sitting") else (CHILD_HEIGHT_M if ("boy" in low or "girl" in low)
                                                          else ADULT_HEIGHT_M)
    y = top - (1.0 - MOUTH_FRACTION) * standing if low.startswith("sitting") else MOUTH_FRACTION * top
    head = verts[verts[:, 1] > top - 0.3]
    return float(np.median(head[:, 0])), y, float(np.median(head[:, 2]))


@lru_cache(maxsize=None)
def _mouth_local(model_id: str) -> tuple[float, float, float]:
    """A catalogue person's mouth in its local frame: the head's middle at mouth height
    (_head_local) moved to the front (+z) surface of the head."""
    cx, y, mid = _head_local(model_id)
    verts = _model_vertices(_model_by_id(model_id))
    top = float(verts[:, 1].max())
    band = verts[(np.abs(verts[:, 1] - y) < 0.04) & (np.abs(verts[:, 0] - cx) < 0.05) & (verts[:, 1] > top - 0.35)]
    z = float(band[:, 2].max()) if len(band) else mid + 0.09
    return cx, y, z


STOOL_WIDTH_M, STOOL_DEPTH_M = 0.42, 0.36


@lru_cache(maxsize=None)
def _seat_local(model_id: str) -> tuple[float, float, float] | None:
    """(seat height, x, z) of the stool a catalogue person sits on, local frame; None for one
    standing or sitting on the floor. The catalogue's seated people come without their chair: the
    seat is the underside of the body's rear 20 cm (buttocks and back; feet near the floor ignored)."""
    model = _model_by_id(model_id)
    if not model.name.lower().startswith("sitting"):
        return None
    verts = _model_vertices(model)
    rear = verts[(verts[:, 2] < verts[:, 2].min() + 0.2) & (verts[:, 1] > 0.2)]
    if not len(rear) or rear[:, 1].min() < 0.25:
        return None
    seat = float(rear[:, 1].min())
    return seat, float(np.median(rear[:, 0])), float(verts[:, 2].min()) + STOOL_DEPTH_M / 2 + 0.02


@dataclass
class MeshLoudspeaker:
    """A sound source: a procedural loudspeaker shape (source "procedural:<id>"), a catalogue
    "Speaker" model or a catalogue person (source = its model id; the mouth is the acoustic
    centre), standing with its local origin at `position`."""

    source: str
    position: np.ndarray
    yaw_deg: float

    def __post_init__(self) -> None:
        self.position = _vec(self.position)

    @property
    def shape(self) -> LoudspeakerShape | None:
        return _shape(int(self.source.split(":")[1])) if self.source.startswith("procedural:") else None

    @property
    def shape_id(self) -> int:
        """The procedural shape id, -1 for a catalogue model."""
        return int(self.source.split(":")[1]) if self.source.startswith("procedural:") else -1

    @property
    def model(self) -> catalogue.CatalogueModel | None:
        return None if self.source.startswith("procedural:") else _model_by_id(self.source)

    @property
    def category(self) -> str:
        """"person" for a catalogue person, else "loudspeaker"."""
        model = self.model
        return "person" if model is not None and model.category == "person" else "loudspeaker"

    @property
    def gender(self) -> str | None:
        """A person's voice gender as the catalogue names it (None: a loudspeaker)."""
        return person_gender(self.model.name) if self.category == "person" else None

    def local_bounds(self) -> np.ndarray:
        shape = self.shape
        if shape is not None:
            return np.stack(shape.bounds)
        w, h, d = self.model.size_m
        return np.array([[-w / 2, 0.0, -d / 2], [w / 2, h, d / 2]])

    @property
    def acoustic_center_local(self) -> np.ndarray:
        """The main driver's front centre; for a catalogue model (which names no driver) the
        front face centre at 62 % of its height, where a two-way box has its woofer; for a person
        the mouth (_mouth_local)."""
        shape = self.shape
        if shape is not None:
            return shape.acoustic_center_local
        if self.category == "person":
            return np.array(_mouth_local(self.source))
        lo, hi = self.local_bounds()
        return np.array([0.0, 0.62 * hi[1], hi[2]])

    def world_from_local(self) -> np.ndarray:
        return pose_matrix(rotation_y(self.yaw_deg), self.position)

    @property
    def acoustic_center(self) -> np.ndarray:
        return transform_points(self.world_from_local(), self.acoustic_center_local)

    def footprint(self) -> np.ndarray:
        lo, hi = self.local_bounds()
        c = transform_points(self.world_from_local(), np.array([(lo[0] + hi[0]) / 2, 0.0, (lo[2] + hi[2]) / 2]))
        return procedural._rect_corners(c[[0, 2]], (hi - lo)[[0, 2]] / 2.0, self.yaw_deg)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "shape_id": self.shape_id, "category": self.category,
                "position": _floats(self.position),
                "yaw_deg": float(self.yaw_deg), "acoustic_center": _floats(self.acoustic_center)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeshLoudspeaker":
        return cls(d["source"], d["position"], float(d["yaw_deg"]))


@lru_cache(maxsize=None)
def _shape(shape_id: int) -> LoudspeakerShape:
    return make_shape(shape_id)


@lru_cache(maxsize=None)
def _model_by_id(model_id: str) -> catalogue.CatalogueModel:
    for m in catalogue.load_catalogue():
        if m.model_id == model_id:
            return m
    raise KeyError(f"model {model_id!r} is not in the installed furniture catalogue")


@dataclass
class MeshScene:
    """Everything the GL renderer and the acoustics need to reproduce one mesh sample."""

    scene_id: str
    split: str
    shell: Shell
    objects: list[MeshObject]
    loudspeakers: list[MeshLoudspeaker]
    camera_position: np.ndarray
    camera_yaw_deg: float
    camera_pitch_deg: float
    light_intensity: float = 3.0
    light_seed: int = 0
    source_file: str | None = None
    """An imported scene's mesh file (import_scene); None for a sampled room."""

    def __post_init__(self) -> None:
        self.camera_position = _vec(self.camera_position)

    # The procedural world's interface, so the data generator and the conditions treat both alike.
    def world_from_camera(self) -> np.ndarray:
        return pose_matrix(rotation_y(self.camera_yaw_deg) @ rotation_x(self.camera_pitch_deg), self.camera_position)

    def camera_from_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_from_camera())

    @property
    def room(self) -> Room:
        """The shell's bounding shoebox with its surfaces' mid-band absorption: what the
        pyroomacoustics fallback and the sensing conditions (babble, interferers) use."""
        from sim_bridge.mesh.acoustics_rlr import mid_absorption

        s = self.shell
        alpha = {"west": s.wall_material, "east": s.wall_material, "north": s.wall_material,
                 "south": s.wall_material, "floor": s.floor_material, "ceiling": s.ceiling_material}
        return Room(tuple(float(v) for v in s.size), tuple(mid_absorption(alpha[k]) for k in SURFACES))

    def loudspeaker_boxes_camera(self) -> list[Box3D]:
        """Camera-frame axis-aligned boxes enclosing each loudspeaker's mesh vertices."""
        from sim_bridge.mesh.render_gl import loudspeaker_local_meshes

        cam_from_world = self.camera_from_world()
        boxes = []
        for spk in self.loudspeakers:
            verts = np.concatenate([m.vertices for m in loudspeaker_local_meshes(spk.source)])
            p = transform_points(cam_from_world @ spk.world_from_local(), verts)
            boxes.append(Box3D.from_points(p, "person" if spk.category == "person" else "speaker"))
        return boxes

    def silent_people_boxes_camera(self, objects: np.ndarray, intrinsics: Intrinsics,
                                   min_share: float = SILENT_PERSON_MIN_SHARE,
                                   max_distance_m: float = SILENT_PERSON_RANGE_M) -> list[Box3D]:
        """Camera-frame boxes of the people standing or sitting in the room as furniture or
        distractors (not sources) that the camera sees: at least `min_share` of the image's
        pixels (`objects`: the render's instance id per pixel), her head seen (the pixel of its
        middle at mouth height shows her, as a talker's mouth must be seen) and the box centre
        within max_distance_m. They do not talk, but they are people a robot must tell from the
        one who does: the live ground truth counts them among the candidates."""
        cam_from_world = self.camera_from_world()
        ids, counts = np.unique(np.asarray(objects), return_counts=True)
        shown = dict(zip(ids.tolist(), counts.tolist()))
        boxes = []
        for obj in self.objects:
            if obj.category != "person" or shown.get(obj.instance_id, 0) < min_share * objects.size:
                continue
            cam_from_local = cam_from_world @ obj.world_from_local()
            head = transform_points(cam_from_local, np.array([_head_local(obj.source)]))[0]
            u, v, front = project(head, intrinsics)
            if not (front and 0 <= u < objects.shape[1] and 0 <= v < objects.shape[0]
                    and objects[int(v), int(u)] == obj.instance_id):
                continue
            local = Box3D([0.0, obj.size[1] / 2.0, 0.0], obj.size)   # the model's bounds: floor centre at the origin
            box = Box3D.from_points(transform_points(cam_from_local, local.corners()), "person")
            if float(np.linalg.norm(box.center)) <= max_distance_m:
                boxes.append(box)
        return boxes

    def source_direction_camera(self, i: int) -> np.ndarray:
        p = transform_points(self.camera_from_world(), self.loudspeakers[i].acoustic_center)
        return p / np.linalg.norm(p)

    def assets(self) -> list[str]:
        """Catalogue model ids this scene uses (loudspeakers included), sorted."""
        ids = {o.source for o in self.objects if o.source not in ("box",)}
        ids |= {s.source for s in self.loudspeakers if not s.source.startswith("procedural:")}
        return sorted(ids)

    def to_dict(self) -> dict[str, Any]:
        return {"world": "mesh", "scene_id": self.scene_id, "split": self.split,
                "shell": self.shell.to_dict() if self.shell is not None else None,
                "objects": [o.to_dict() for o in self.objects],
                "loudspeakers": [s.to_dict() for s in self.loudspeakers],
                "camera": {"position": _floats(self.camera_position), "yaw_deg": float(self.camera_yaw_deg),
                           "pitch_deg": float(self.camera_pitch_deg)},
                "light": {"intensity": float(self.light_intensity), "seed": int(self.light_seed)},
                "source_file": self.source_file}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MeshScene":
        cam = d["camera"]
        return cls(d["scene_id"], d["split"], Shell.from_dict(d["shell"]),
                   [MeshObject.from_dict(o) for o in d["objects"]],
                   [MeshLoudspeaker.from_dict(s) for s in d["loudspeakers"]], cam["position"],
                   float(cam["yaw_deg"]), float(cam["pitch_deg"]), float(d["light"]["intensity"]),
                   int(d["light"]["seed"]), d.get("source_file"))


# --- sampling --------------------------------------------------------------------------------------

def _pick_model(rng: np.random.Generator, split: str, category: str,
                max_size: np.ndarray | None = None) -> catalogue.CatalogueModel | None:
    """A loadable model of the category (None if the split has none that fits max_size)."""
    options = catalogue.models(split, category)
    if max_size is not None:
        options = [m for m in options if np.all(np.asarray(m.size_m) <= max_size)]
    for _ in range(4):
        if not options:
            return None
        m = options[int(rng.integers(len(options)))]
        try:
            catalogue.load_model(m)
            return m
        except catalogue.ModelTooHeavy:
            options = [o for o in options if o is not m]
    return None


def _against_wall(rng: np.random.Generator, shell: Shell, w: float, d: float) -> tuple[np.ndarray, float] | None:
    """Centre (x, z) and yaw of a w x d footprint with its back to a random wall segment."""
    segments = [s for s in shell.walls if np.linalg.norm(s[1] - s[0]) >= w + 0.1]
    if not segments:
        return None
    a, b, n = segments[int(rng.integers(len(segments)))]
    along = (b - a) / np.linalg.norm(b - a)
    t = rng.uniform(w / 2 + 0.05, np.linalg.norm(b - a) - w / 2 - 0.05)
    gap = rng.uniform(0.02, 0.06)
    c = a + along * t + n * (gap + d / 2)
    return c, float(np.degrees(np.arctan2(n[0], n[1])))


def _fits(shell: Shell, fp: np.ndarray, others: list[np.ndarray], wall_gap: float, gap: float) -> bool:
    if shell.wall_clearance(fp) < wall_gap:
        return False
    c, r = fp.mean(axis=0), np.linalg.norm(fp - fp.mean(axis=0), axis=1).max()
    for o in others:  # bounding circles further apart than the gap need no exact test
        oc = o.mean(axis=0)
        if np.linalg.norm(c - oc) - r - np.linalg.norm(o - oc, axis=1).max() < gap and \
                procedural.rect_distance(fp, o) < gap:
            return False
    return True


def _sample_furniture(rng: np.random.Generator, shell: Shell, split: str) -> list[MeshObject]:
    want = int(rng.integers(4, min(11, max(5, int(shell.floor_area() / 3.5))) + 1))
    kinds = list(FURNITURE_WEIGHTS)
    p = np.array([FURNITURE_WEIGHTS[k] for k in kinds], dtype=float)
    placed: list[MeshObject] = []
    for _ in range(want * 6):
        if len(placed) >= want:
            break
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        model = _pick_model(rng, split, kind)
        if model is None:
            continue
        w, h, d = model.size_m
        if kind in AGAINST_WALL or rng.random() < 0.3:
            spot = _against_wall(rng, shell, w, d)
            if spot is None:
                continue
            xz, yaw = spot
        else:
            lo, hi = np.asarray(shell.rects)[:, :2].min(axis=0), np.asarray(shell.rects)[:, 2:].max(axis=0)
            xz, yaw = rng.uniform(lo + 0.3, hi - 0.3), float(rng.uniform(-180, 180))
        obj = MeshObject(0, kind, model.material, model.model_id, [xz[0], 0.0, xz[1]], yaw, model.size_m)
        if _fits(shell, obj.footprint(), [o.footprint() for o in placed], 0.0, 0.1):
            placed.append(obj)
    return placed


def _sample_on_tops(rng: np.random.Generator, furniture: list[MeshObject], split: str) -> list[MeshObject]:
    """Small items (TVs, lamps, plants, boxes, audio gear) on tables and cabinets."""
    items: list[MeshObject] = []
    for sup in furniture:
        if sup.category not in SUPPORTS or not 0.35 <= sup.top <= 1.25 or rng.random() < 0.35:
            continue
        kind = ON_TOP[int(rng.integers(len(ON_TOP)))]
        room = np.array([sup.size[0] * 0.9, 2.0, sup.size[2] * 0.9])
        model = _pick_model(rng, split, kind, room)
        if model is None:
            continue
        w, _, d = model.size_m
        local = np.array([rng.uniform(-(sup.size[0] - w) / 2 * 0.9, (sup.size[0] - w) / 2 * 0.9), sup.top,
                          rng.uniform(-(sup.size[2] - d) / 2 * 0.9, (sup.size[2] - d) / 2 * 0.9)])
        pos = sup.position + rotation_y(sup.yaw_deg) @ np.array([local[0], 0.0, local[2]]) + [0.0, sup.top, 0.0]
        items.append(MeshObject(0, kind, model.material, model.model_id, pos, sup.yaw_deg, model.size_m))
    return items


def _sample_camera(rng: np.random.Generator, shell: Shell,
                   furniture: list[MeshObject]) -> tuple[np.ndarray, float, float] | None:
    lo, hi = np.asarray(shell.rects)[:, :2].min(axis=0), np.asarray(shell.rects)[:, 2:].max(axis=0)
    for _ in range(50):
        xz = rng.uniform(lo + 0.5, hi - 0.5)
        me = procedural._rect_corners(xz, np.array([0.15, 0.15]), 0.0)
        if not _fits(shell, me, [f.footprint() for f in furniture], 0.4, 0.2):
            continue
        target = rng.uniform(lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))
        to = target - xz
        if np.linalg.norm(to) < 1.0:
            continue
        yaw = float(np.degrees(np.arctan2(-to[0], -to[1])) + rng.uniform(-25.0, 25.0))
        return (np.array([xz[0], rng.uniform(*procedural.CAMERA_HEIGHT_RANGE_M), xz[1]]), yaw,
                float(rng.uniform(*procedural.PITCH_RANGE_DEG)))
    return None


def _place_loudspeakers(rng: np.random.Generator, scene: MeshScene, n: int, kinds: list[str] | None = None) -> bool:
    """Append n loudspeakers under the procedural world's rules; catalogue models stand on a stand
    (a box object added to scene.objects) so their drivers are at listening height. kinds[j]
    "person": source j is a catalogue person on the floor, facing the camera, genders alternating."""
    cam_from_world = scene.camera_from_world()
    cam_xz = scene.camera_position[[0, 2]]
    shapes = shape_ids(scene.split)
    cat_speakers = [m for m in catalogue.models(scene.split, "loudspeaker")]
    people = talking_people(scene.split)
    for j in range(n):
        person = kinds is not None and kinds[j] == "person"
        if person:  # alternate voice genders where the split has both, as the procedural world does
            want = ("male", "female")[sum(k == "person" for k in kinds[:j]) % 2]
            pool = [m for m in people if person_gender(m.name) == want] or people
        for _ in range(60):
            if person:
                model = pool[int(rng.integers(len(pool)))]
                az = np.radians(scene.camera_yaw_deg + rng.uniform(-procedural.AZIMUTH_LIMIT_DEG,
                                                                    procedural.AZIMUTH_LIMIT_DEG))
                xz = cam_xz + rng.uniform(1.2, procedural.DISTANCE_RANGE_M[1]) * np.array([-np.sin(az), -np.cos(az)])
                to_cam = cam_xz - xz
                yaw = float(np.degrees(np.arctan2(to_cam[0], to_cam[1]))
                            + rng.uniform(-procedural.PERSON_YAW_JITTER_DEG, procedural.PERSON_YAW_JITTER_DEG))
                spk = MeshLoudspeaker(model.model_id, [xz[0], 0.0, xz[1]], yaw)
                if not self_check(spk, scene, cam_from_world):
                    continue
                if not procedural.append_separated(scene, spk):
                    continue
                seat = _seat_local(model.model_id)
                if seat is not None:  # a stool under a seated person (furniture, not part of the person)
                    at = transform_points(spk.world_from_local(), np.array([seat[1], 0.0, seat[2]]))
                    scene.objects.append(MeshObject(0, "chair", "wood", "box", [at[0], 0.0, at[2]], yaw,
                                                    [STOOL_WIDTH_M, seat[0], STOOL_DEPTH_M], (0.36, 0.25, 0.15)))
                break
            use_model = bool(cat_speakers) and rng.random() < CATALOGUE_SPEAKER_SHARE
            az = np.radians(scene.camera_yaw_deg + rng.uniform(-procedural.AZIMUTH_LIMIT_DEG,
                                                                procedural.AZIMUTH_LIMIT_DEG))
            r = rng.uniform(0.8, procedural.DISTANCE_RANGE_M[1])
            xz = cam_xz + r * np.array([-np.sin(az), -np.cos(az)])
            to_cam = cam_xz - xz
            yaw = float(np.degrees(np.arctan2(to_cam[0], to_cam[1]))
                        + rng.uniform(-procedural.YAW_JITTER_DEG, procedural.YAW_JITTER_DEG))
            stand = None
            if use_model:
                model = cat_speakers[int(rng.integers(len(cat_speakers)))]
                stand_h = float(rng.uniform(0.5, 0.8))
                w, _, d = model.size_m
                stand = MeshObject(0, "stand", "metal", "box", [xz[0], 0.0, xz[1]], yaw,
                                   [w * 1.1, stand_h, d * 1.1], (0.08, 0.08, 0.09))
                spk = MeshLoudspeaker(model.model_id, [xz[0], stand_h, xz[1]], yaw)
            else:
                spk = MeshLoudspeaker(f"procedural:{int(shapes[int(rng.integers(len(shapes)))])}",
                                      [xz[0], 0.0, xz[1]], yaw)
            if not self_check(spk, scene, cam_from_world, None if stand is None else stand.footprint()):
                continue
            if not procedural.append_separated(scene, spk):
                continue
            if stand is not None:
                scene.objects.append(stand)
            break
        else:
            return False
    return True


def self_check(spk: MeshLoudspeaker, scene: MeshScene, cam_from_world: np.ndarray,
               footprint: np.ndarray | None = None) -> bool:
    """Whether a placed source keeps the distance, direction and clearance rules; `footprint`:
    what stands on the floor when that is not the source itself (a catalogue model's stand)."""
    if not procedural.in_sensing_range(transform_points(cam_from_world, spk.acoustic_center)):
        return False
    others = [o.footprint() for o in scene.objects] + [o.footprint() for o in scene.loudspeakers]
    fp = spk.footprint() if footprint is None else footprint
    return _fits(scene.shell, fp, others, procedural.CLEARANCE_M, procedural.CLEARANCE_M)


def _place_distractors(rng: np.random.Generator, scene: MeshScene) -> None:
    """1-3 loudspeaker-sized look-alikes (plants, lamps, bins, boxes, people, audio gear) on the
    floor in the camera's view, clear of the loudspeakers."""
    cam_xz = scene.camera_position[[0, 2]]
    for _ in range(int(rng.integers(1, 4))):
        kind = ("plant", "lamp", "bin", "box", "person", "audio")[int(rng.integers(6))]
        model = _pick_model(rng, scene.split, kind)
        if model is None:
            continue
        for _ in range(15):
            az = np.radians(scene.camera_yaw_deg + rng.uniform(-50.0, 50.0))
            xz = cam_xz + rng.uniform(1.2, 4.5) * np.array([-np.sin(az), -np.cos(az)])
            obj = MeshObject(0, kind, model.material, model.model_id, [xz[0], 0.0, xz[1]],
                             float(rng.uniform(-180, 180)), model.size_m)
            others = [o.footprint() for o in scene.objects]
            me = procedural._rect_corners(cam_xz, np.array([0.3, 0.3]), 0.0)
            if (_fits(scene.shell, obj.footprint(), others + [me], 0.05, 0.1)
                    and all(procedural.rect_distance(obj.footprint(), s.footprint()) >= 0.3
                            for s in scene.loudspeakers)):
                scene.objects.append(obj)
                break


def _number(scene: MeshScene) -> None:
    """Instance ids: loudspeakers 1..n, then the objects in list order."""
    for k, obj in enumerate(scene.objects):
        obj.instance_id = len(scene.loudspeakers) + 1 + k


def shell_instance_ids(scene: MeshScene) -> dict[str, int]:
    """Instance ids of the floor, walls and ceiling (after every object)."""
    base = len(scene.loudspeakers) + len(scene.objects) + 1
    return {"floor": base, "wall": base + 1, "ceiling": base + 2}


def visibility_problems(scene: MeshScene, intrinsics: Intrinsics, renderer: Any) -> list[str]:
    """Why a mesh scene, rendered by `renderer.visibility`, breaks the visibility rules
    (procedural.visibility_problems, with each loudspeaker's pixels counted alone in the scene)."""
    frame, alone = renderer.visibility(scene)
    return procedural.visibility_problems(scene, intrinsics, frame.instance, frame.depth, alone.__getitem__)


def sample_mesh_scene(rng: np.random.Generator, split: str, num_loudspeakers: int, intrinsics: Intrinsics,
                      scene_id: str = "", talkers: str = "loudspeakers") -> MeshScene:
    """A valid furnished mesh scene (see the module doc) from `split`'s rooms, models and
    textures. Consumes exactly one draw from `rng`, as procedural.sample_scene does.
    `talkers`: loudspeakers, people (catalogue people, mouth = source) or mixed
    (procedural.source_kinds); a split without talking people falls back to loudspeakers."""
    from sim_bridge.mesh.render_gl import GLRenderer

    if split not in catalogue.SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {catalogue.SPLITS}")
    if not 1 <= num_loudspeakers <= 4:
        raise ValueError(f"num_loudspeakers must be 1..4, got {num_loudspeakers}")
    if not catalogue.load_catalogue():
        raise RuntimeError(f"the mesh world needs the sweethome3d-furniture package "
                           f"(no models in {catalogue.FURNITURE_DIR})")
    procedural.source_kinds(rng, talkers, 0)  # an unknown mode fails before any draw
    rng = np.random.default_rng([int(rng.integers(1 << 62)), catalogue.SPLITS.index(split), _SPLIT_STREAM])
    kinds = (None if talkers == "loudspeakers" or not talking_people(split)
             else procedural.source_kinds(rng, talkers, num_loudspeakers))
    renderer = GLRenderer.shared(intrinsics)
    last = "no attempt"
    furniture: list[MeshObject] = []
    shell: Shell | None = None
    for attempt in range(MAX_ATTEMPTS):
        if shell is None or attempt % 4 == 0:
            shell = _sample_shell(rng, split)
            furniture = _sample_furniture(rng, shell, split)
            furniture += _sample_on_tops(rng, furniture, split)
        cam = _sample_camera(rng, shell, furniture)
        if cam is None:
            last = "no free camera position"
            shell = None
            continue
        scene = MeshScene(scene_id, split, shell, list(furniture), [], cam[0], cam[1], cam[2],
                          float(rng.uniform(2.0, 4.0)), int(rng.integers(1 << 30)))
        if not _place_loudspeakers(rng, scene, num_loudspeakers, kinds):
            last = "could not place the loudspeakers"
            continue
        _place_distractors(rng, scene)
        _number(scene)
        problems = visibility_problems(scene, intrinsics, renderer)
        if not problems:
            return scene
        last = "; ".join(problems)
    raise RuntimeError(f"sample_mesh_scene({split!r}, {num_loudspeakers}) failed {MAX_ATTEMPTS} times; last: {last}")
