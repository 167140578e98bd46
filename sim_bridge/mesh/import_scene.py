"""Import a user's scanned or modelled home (glTF/GLB, OBJ or PLY, as Habitat, Replica and HM3D
users have) with a JSON semantic sidecar, and render the project's tasks in it: RGB-D, instance
masks, loudspeaker boxes and ambisonic RIRs through the same renderer and acoustics as the
sampled mesh rooms.

Sidecar format (JSON, units metres, the scene's frame must be y up like Habitat's)::

    {
      "instances": {                 # one entry per node/mesh name of the file, or per PLY
        "<node or mesh name>": {"category": "sofa", "material": "fabric"},
        ...                          # material: a label of config/materials_mesh.json
      },                             # (unlisted geometry: category "unknown", material "default")
      "camera": {"position": [x, y, z], "yaw_deg": 0.0, "pitch_deg": 0.0},
      "loudspeakers": [              # inserted: procedural shapes or catalogue models
        {"source": "procedural:17", "position": [x, 0.0, z], "yaw_deg": 180.0}
      ]
    }

Without "camera" (and "loudspeakers"), every sample places them anew (sample_in_home) by the
sampled mesh rooms' rules: the camera 1.4-1.75 m above free floor, sources on free floor
1-4 m away in view, >= 0.5 m from walls and furniture, checked on the GL render. "Free floor"
is read from the geometry (FloorGrid), so the file must have its main floor at y = 0.

Habitat's semantic annotations (Replica's mesh_semantic.ply + info_semantic.json, HM3D's
semantic.glb + semantic.txt) convert into such a file with `jaeger scene convert`
(sim_bridge.mesh.habitat_semantic).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from jaeger_ros.core.geometry import Intrinsics
from sim_bridge import scene as procedural
from sim_bridge.mesh import catalogue
from sim_bridge.mesh.scene import (MAX_ATTEMPTS, MeshLoudspeaker, MeshScene, _number, _place_loudspeakers,
                                   _sample_camera, talking_people, visibility_problems)
from sim_bridge.room import SURFACES, Room

SCENE_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
GRID_CELL_M = 0.1
FLOOR_TOLERANCE_M = 0.1
"""Floor surfaces within this of y = 0 are floor; anything else from here to BLOCK_HEIGHT_M blocks."""
BLOCK_HEIGHT_M = 2.0
NOT_FLOOR = ("ceiling",)
"""Categories that never block the floor (the ceiling lies above BLOCK_HEIGHT_M in most homes anyway)."""
_HOME_STREAM = 0x4B0E


@dataclass
class ImportedPart:
    """One named piece of the imported file, in world coordinates."""

    name: str
    instance_id: int
    category: str
    material: str
    mesh: Any
    """trimesh.Trimesh, world frame."""


@dataclass
class ImportedScene(MeshScene):
    """A MeshScene whose geometry comes from a file instead of a shell and catalogue objects."""

    parts: list[ImportedPart] = field(default_factory=list)
    posed: bool = True
    """Whether the sidecar gave the camera (else sample_in_home places camera and sources)."""
    _gl: list = field(default_factory=list, repr=False)
    """pyrender meshes of the parts, shared by every sampled copy of this home."""
    _grid: list = field(default_factory=list, repr=False)
    """[FloorGrid] once computed, shared by the sampled copies."""

    @property
    def room(self) -> Room:
        """The imported geometry's bounding box (what the conditions and the fallback use)."""
        from sim_bridge.mesh.acoustics_rlr import mid_absorption

        hi = np.max([p.mesh.bounds[1] for p in self.parts], axis=0)
        return Room(tuple(float(v) for v in hi), tuple(mid_absorption("default") for _ in SURFACES))

    def extra_meshes(self) -> list[tuple[Any, int]]:
        """(pyrender mesh, instance id) of every imported part (render_gl adds these)."""
        import pyrender

        from sim_bridge.mesh.render_gl import _pyrender_mesh

        if not self._gl:
            self._gl.extend(_pyrender_mesh(pyrender, (p.mesh,)) for p in self.parts)
        return [(m, p.instance_id) for m, p in zip(self._gl, self.parts)]

    def extra_triangles(self) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """(vertices, faces, material) of every imported part (the acoustics add these)."""
        return [(np.asarray(p.mesh.vertices), np.asarray(p.mesh.faces), p.material) for p in self.parts]

    def categories(self) -> dict[int, str]:
        """instance id -> semantic category (loudspeakers included)."""
        out = {i + 1: s.category for i, s in enumerate(self.loudspeakers)}
        out.update({o.instance_id: o.category for o in self.objects})
        out.update({p.instance_id: p.category for p in self.parts})
        return out

    def floor_grid(self) -> "FloorGrid":
        """Where cameras and sources may stand (computed once: it samples every surface)."""
        if not self._grid:
            self._grid.append(FloorGrid.of(self.parts))
        return self._grid[0]


class FloorGrid:
    """Free floor of an imported home on a GRID_CELL_M grid, standing in for a Shell where the
    mesh samplers ask one (`rects`, `wall_clearance`): a cell is free when floor geometry lies
    within FLOOR_TOLERANCE_M of y = 0 and no other surface (walls, furniture) passes through it
    below BLOCK_HEIGHT_M. Surfaces are sampled by area (~25 points per cell), so a wall thinner
    than a cell still blocks it."""

    def __init__(self, origin: np.ndarray, free: np.ndarray) -> None:
        from scipy.ndimage import distance_transform_edt

        self.origin, self.free = np.asarray(origin, dtype=float), free
        self.clearance = distance_transform_edt(free) * GRID_CELL_M - GRID_CELL_M / 2
        """Per free cell: distance from its centre to the nearest blocked cell's edge."""
        ij = np.argwhere(free)
        lo, hi = self.origin + ij.min(axis=0) * GRID_CELL_M, self.origin + (ij.max(axis=0) + 1) * GRID_CELL_M
        self.rects = [(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))]

    @classmethod
    def of(cls, parts: list[ImportedPart]) -> "FloorGrid":
        import trimesh

        lo = np.min([p.mesh.bounds[0] for p in parts], axis=0)[[0, 2]]
        hi = np.max([p.mesh.bounds[1] for p in parts], axis=0)[[0, 2]]
        shape = tuple(np.maximum(np.ceil((hi - lo) / GRID_CELL_M).astype(int), 1))
        floor, blocked = np.zeros(shape, bool), np.zeros(shape, bool)
        for p in parts:
            if p.category in NOT_FLOOR or p.mesh.area <= 0:
                continue
            n = int(min(4_000_000, max(200, p.mesh.area / GRID_CELL_M ** 2 * 25)))
            pts, face = trimesh.sample.sample_surface(p.mesh, n, seed=0)
            up = np.asarray(p.mesh.face_normals)[face][:, 1]
            ij = np.clip(((pts[:, [0, 2]] - lo) / GRID_CELL_M).astype(int), 0, np.array(shape) - 1)
            is_floor = (np.abs(pts[:, 1]) <= FLOOR_TOLERANCE_M) & (np.abs(up) > 0.9)
            floor[tuple(ij[is_floor].T)] = True
            block = ~is_floor & (pts[:, 1] > FLOOR_TOLERANCE_M) & (pts[:, 1] < BLOCK_HEIGHT_M)
            blocked[tuple(ij[block].T)] = True
        free = floor & ~blocked
        if not free.any():
            raise ValueError("the imported home has no free floor at y = 0 to place a camera on")
        return cls(lo, free)

    def wall_clearance(self, footprint: np.ndarray) -> float:
        """Least clearance over a 5 x 5 lattice spanning the (convex, 4-corner) footprint; -1
        when any lattice point is off the free floor (Shell.wall_clearance's contract)."""
        fp = np.asarray(footprint, dtype=float)
        t = np.linspace(0.0, 1.0, 5)
        a, b = fp[0] + t[:, None] * (fp[1] - fp[0]), fp[3] + t[:, None] * (fp[2] - fp[3])
        pts = (a[:, None] + t[None, :, None] * (b - a)[:, None]).reshape(-1, 2)
        ij = np.floor((pts - self.origin) / GRID_CELL_M).astype(int)
        if np.any(ij < 0) or np.any(ij >= self.free.shape) or not self.free[tuple(ij.T)].all():
            return -1.0
        return float(self.clearance[tuple(ij.T)].min())


def sample_in_home(home: ImportedScene, rng: np.random.Generator, split: str, num_loudspeakers: int,
                   intrinsics: Intrinsics, scene_id: str = "", talkers: str = "loudspeakers") -> ImportedScene:
    """A copy of `home` with a sampled camera and num_loudspeakers sources (split's shapes,
    catalogue models and people; talkers as in sample_mesh_scene), valid under the mesh rooms'
    visibility rules. Consumes exactly one draw from `rng`, so samples vary and repeat by seed."""
    from sim_bridge.mesh.render_gl import GLRenderer

    if split not in catalogue.SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {catalogue.SPLITS}")
    procedural.source_kinds(rng, talkers, 0)  # an unknown mode fails before any draw
    rng = np.random.default_rng([int(rng.integers(1 << 62)), catalogue.SPLITS.index(split), _HOME_STREAM])
    kinds = (None if talkers == "loudspeakers" or not talking_people(split)
             else procedural.source_kinds(rng, talkers, num_loudspeakers))
    grid, renderer, last = home.floor_grid(), GLRenderer.shared(intrinsics), "no attempt"
    for _ in range(MAX_ATTEMPTS):
        cam = _sample_camera(rng, grid, [])  # type: ignore[arg-type]  # FloorGrid stands in for a Shell
        if cam is None:
            last = "no free camera position"
            continue
        scene = replace(home, scene_id=scene_id, split=split, shell=grid, objects=[], loudspeakers=[],
                        camera_position=cam[0], camera_yaw_deg=cam[1], camera_pitch_deg=cam[2])
        ok = _place_loudspeakers(rng, scene, num_loudspeakers, kinds)
        scene.shell = None  # the grid is no geometry: the renderer must not draw a shell
        if not ok:
            last = "could not place the loudspeakers"
            continue
        _number(scene)
        first = len(scene.loudspeakers) + len(scene.objects) + 1
        scene.parts = [replace(p, instance_id=first + k) for k, p in enumerate(home.parts)]
        problems = visibility_problems(scene, intrinsics, renderer)
        if not problems:
            return scene
        last = "; ".join(problems)
    raise RuntimeError(f"sample_in_home({home.scene_id!r}) failed {MAX_ATTEMPTS} times; last: {last}")


def sidecar_of(path: str | Path) -> Path:
    """The semantic sidecar beside a scene file: the same name with .json (home.glb -> home.json)."""
    return Path(path).with_suffix(".json")


def load_scene(path: str | Path, sidecar: str | Path) -> ImportedScene:
    """An ImportedScene of a GLB/glTF/OBJ/PLY file and its semantic sidecar (see the module doc).
    Raises ValueError (one line) for an unknown suffix or a malformed sidecar."""
    import trimesh

    path, sidecar = Path(path), Path(sidecar)
    if path.suffix.lower() not in SCENE_SUFFIXES:
        raise ValueError(f"{path}: scene files must be one of {SCENE_SUFFIXES}")
    try:
        meta = json.loads(sidecar.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("instances", {}), dict):
            raise TypeError("expected an object with an \"instances\" object")
        cam = meta.get("camera")
        if cam is None and meta.get("loudspeakers"):
            raise KeyError("camera (placed loudspeakers need the camera they were placed for)")
        if cam is not None:
            np.asarray(cam["position"], dtype=float).reshape(3)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{sidecar}: not a semantic sidecar ({type(e).__name__}: {e})") from None
    loaded = trimesh.load(str(path), force="scene", process=False)
    speakers = [MeshLoudspeaker(s["source"], s["position"], float(s.get("yaw_deg", 0.0)))
                for s in meta.get("loudspeakers", [])]
    instances = meta.get("instances", {})
    parts = []
    for k, node in enumerate(sorted(loaded.graph.nodes_geometry)):
        transform, geom_name = loaded.graph[node]
        mesh = loaded.geometry[geom_name].copy()
        mesh.apply_transform(transform)
        info = instances.get(node, instances.get(geom_name, {}))
        parts.append(ImportedPart(node, len(speakers) + 1 + k, info.get("category", "unknown"),
                                  info.get("material", "default"), mesh))
    if not parts:
        raise ValueError(f"{path}: no geometry")
    if cam is None:  # a placeholder pose: sample_in_home replaces it in every sample
        bounds = np.array([p.mesh.bounds for p in parts])
        centre = (bounds[:, 0].min(axis=0) + bounds[:, 1].max(axis=0)) / 2
        cam = {"position": [centre[0], procedural.CAMERA_HEIGHT_RANGE_M[0], centre[2]]}
    home = ImportedScene(path.stem, "test", None, [], speakers, cam["position"], float(cam.get("yaw_deg", 0.0)),
                         float(cam.get("pitch_deg", 0.0)), source_file=str(path), parts=parts,
                         posed="camera" in meta)
    if not home.posed:
        home.floor_grid()  # a home with no free floor at y = 0 fails here, before any sample
    return home
