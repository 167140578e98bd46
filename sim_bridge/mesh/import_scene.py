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

Habitat's semantic annotations (info_semantic.json of Replica / HM3D, a .house of MP3D) map
object ids to class names; convert them into "instances" keyed by the mesh names the file uses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim_bridge.mesh.scene import MeshLoudspeaker, MeshScene
from sim_bridge.room import SURFACES, Room

SCENE_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")


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

        if not hasattr(self, "_gl_cache"):
            self._gl_cache = [(_pyrender_mesh(pyrender, (p.mesh,)), p.instance_id) for p in self.parts]
        return self._gl_cache

    def extra_triangles(self) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """(vertices, faces, material) of every imported part (the acoustics add these)."""
        return [(np.asarray(p.mesh.vertices), np.asarray(p.mesh.faces), p.material) for p in self.parts]

    def categories(self) -> dict[int, str]:
        """instance id -> semantic category (loudspeakers included)."""
        out = {i + 1: "loudspeaker" for i in range(len(self.loudspeakers))}
        out.update({p.instance_id: p.category for p in self.parts})
        return out


def sidecar_of(path: str | Path) -> Path:
    """The semantic sidecar beside a scene file: the same name with .json (home.glb -> home.json)."""
    return Path(path).with_suffix(".json")


def load_scene(path: str | Path, sidecar: str | Path) -> ImportedScene:
    """An ImportedScene of a GLB/glTF/OBJ/PLY file and its semantic sidecar (see the module doc).
    Raises ValueError (one line) for an unknown suffix or a sidecar without camera."""
    import trimesh

    path, sidecar = Path(path), Path(sidecar)
    if path.suffix.lower() not in SCENE_SUFFIXES:
        raise ValueError(f"{path}: scene files must be one of {SCENE_SUFFIXES}")
    try:
        meta = json.loads(sidecar.read_text())
        cam = meta["camera"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{sidecar}: not a semantic sidecar with a camera ({type(e).__name__}: {e})") from None
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
    return ImportedScene(path.stem, "test", None, [], speakers, cam["position"], float(cam.get("yaw_deg", 0.0)),
                         float(cam.get("pitch_deg", 0.0)), source_file=str(path), parts=parts)
