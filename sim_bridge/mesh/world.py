"""The mesh world behind one interface for the data generator and the live simulator: sample a
scene, render it, and give the FOA RIR of a talking loudspeaker or of any point.

Directional loudspeakers: the ray tracer's sources are omnidirectional, so a loudspeaker's
Directivity (sim_bridge.acoustics) is applied afterwards -- its gains towards the camera on the
direct sound (the first DIRECT_WINDOW_S after the direct arrival) and its power averaged over
all directions on everything later, as the procedural world does for its diffuse tail.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import Intrinsics
from sim_bridge.mesh.acoustics_rlr import DEFAULT_RAYS, SOURCE_OFFSET_M, MeshAcoustics

if TYPE_CHECKING:  # for the hint only: import_scene is loaded where a scene file is given
    from sim_bridge.mesh.import_scene import ImportedScene

DIRECT_WINDOW_S = 0.001
SPEED_OF_SOUND = 343.0


def _sphere(n: int = 256) -> np.ndarray:
    """(n, 3) near-uniform unit directions (Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    phi = np.arccos(1.0 - 2.0 * k / n)
    theta = np.pi * (1.0 + 5.0 ** 0.5) * k
    return np.stack([np.cos(theta) * np.sin(phi), np.cos(phi), np.sin(theta) * np.sin(phi)], axis=1)


def apply_directivity(rir: np.ndarray, source: np.ndarray, receiver: np.ndarray, directivity: Any,
                      sample_rate: int = foa.SAMPLE_RATE) -> np.ndarray:
    """(4, N) RIR of an omnidirectional source -> that of a source with `directivity`
    (see the module doc for the approximation)."""
    x = np.asarray(rir, dtype=float)
    n = x.shape[1]
    k0 = int(np.ceil((np.linalg.norm(np.asarray(receiver) - np.asarray(source)) / SPEED_OF_SOUND
                      + DIRECT_WINDOW_S) * sample_rate))
    direct = np.zeros_like(x)
    direct[:, :min(k0, n)] = x[:, :min(k0, n)]
    later = x - direct
    towards = directivity.gains((np.asarray(receiver, float) - np.asarray(source, float))[None])[:, 0]
    diffuse = np.sqrt(np.mean(directivity.gains(_sphere()) ** 2, axis=1))
    nfft = 1 << int(np.ceil(np.log2(max(n, 2))))
    masks = directivity.band_masks(np.fft.rfftfreq(nfft, 1.0 / sample_rate))
    spec = (np.fft.rfft(direct, nfft, axis=1) * (masks.T @ towards)[None]
            + np.fft.rfft(later, nfft, axis=1) * (masks.T @ diffuse)[None])
    return np.fft.irfft(spec, nfft, axis=1)[:, :n].astype(np.float32)


def check_available() -> None:
    """RuntimeError (one line) naming what the mesh world lacks on this machine."""
    from sim_bridge.mesh import catalogue

    try:
        import pyrender  # noqa: F401
        import trimesh  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"the mesh world needs pyrender and trimesh (make setup): {e}") from None
    if not catalogue.load_catalogue():
        raise RuntimeError(f"the mesh world needs the furniture models of the sweethome3d-furniture package "
                           f"(apt-get install sweethome3d-furniture; none in {catalogue.FURNITURE_DIR})")


class MeshWorld:
    """Scenes from sim_bridge.mesh.scene, pictures from render_gl, sound from acoustics_rlr."""

    name = "mesh"

    def __init__(self, intrinsics: Intrinsics, acoustics: str = "rlr", ray_count: int = DEFAULT_RAYS,
                 scene_file: str | None = None, home: ImportedScene | None = None,
                 acoustics_worker_nice: int | None = None) -> None:
        """`home`: the ImportedScene a caller already loaded from `scene_file` (loading one is
        slow), else scene_file is loaded here; `acoustics_worker_nice`: MeshAcoustics' worker_nice
        (a live stream's: rlr in its own process)."""
        self.intrinsics = intrinsics
        self.acoustics = MeshAcoustics(acoustics, ray_count, worker_nice=acoustics_worker_nice)
        self.imported = home
        if home is None and scene_file:
            from sim_bridge.mesh.import_scene import load_scene, sidecar_of

            self.imported = load_scene(scene_file, sidecar_of(scene_file))
        self._imported_rirs: dict[tuple, list[np.ndarray]] = {}
        """Talker RIRs of the imported home by source positions: every sample renders the same
        home, so the same loudspeakers' responses would otherwise be traced again and again."""

    def sample_scene(self, rng: np.random.Generator, split: str, num_loudspeakers: int, scene_id: str,
                     talkers: str = "loudspeakers") -> Any:
        """A sampled furnished room, or the imported home as its sidecar poses it (camera and
        loudspeakers; num_loudspeakers is then the sidecar's) or, where the sidecar poses none,
        with camera and sources sampled in it. talkers: see sample_mesh_scene."""
        from sim_bridge.mesh.scene import sample_mesh_scene

        if self.imported is not None:
            if self.imported.posed:
                return self.imported
            from sim_bridge.mesh.import_scene import sample_in_home

            return sample_in_home(self.imported, rng, split, num_loudspeakers, self.intrinsics, scene_id, talkers)

        return sample_mesh_scene(rng, split, num_loudspeakers, self.intrinsics, scene_id, talkers)

    def render(self, scene: Any) -> Any:
        from sim_bridge.mesh.render_gl import GLRenderer

        return GLRenderer.shared(self.intrinsics).render(scene)

    def talker_rirs(self, scene: Any, speakers: list[int], directivities: list[Any]) -> list[np.ndarray]:
        """FOA RIRs of loudspeakers `speakers` (indices), in one engine run (once per set of
        sources in an imported home); each source sits SOURCE_OFFSET_M in front of its driver,
        off the loudspeaker's own mesh."""
        from sim_bridge.conditions import loudspeaker_facing

        spks = [scene.loudspeakers[i] for i in speakers]
        sources = [s.acoustic_center + SOURCE_OFFSET_M * loudspeaker_facing(s.yaw_deg) for s in spks]
        if scene is self.imported:
            key = tuple(tuple(np.round(src, 6)) for src in sources)
            if key not in self._imported_rirs:
                self._imported_rirs[key] = self.acoustics.rirs(scene, sources)
            rirs = self._imported_rirs[key]
        else:
            rirs = self.acoustics.rirs(scene, sources)
        return [r if d is None else apply_directivity(r, src, scene.camera_position, d, self.acoustics.sample_rate)
                for r, src, d in zip(rirs, sources, directivities)]

    def point_rir(self, scene: Any, position: np.ndarray) -> np.ndarray:
        """FOA RIR of an omnidirectional source at a world point (an interferer)."""
        return self.acoustics.rirs(scene, [np.asarray(position, dtype=float)])[0]

    def describe(self, scene: Any) -> dict[str, Any]:
        """metadata.json's `world` record: the engines and the scene's source models."""
        from sim_bridge.mesh.render_gl import GLRenderer

        return {"name": "mesh", "render": "pyrender", "gl_platform": GLRenderer.shared(self.intrinsics).platform,
                "acoustics": self.acoustics.engine, "acoustics_settings": self.acoustics.describe(),
                "assets": scene.assets(), "asset_source": "Debian sweethome3d-furniture (see ATTRIBUTION)",
                "scene_file": scene.source_file,
                "directivity": "where conditions.directivity: direct sound directional, later sound power-averaged",
                "capsules": "ideal (the tetrahedral capsule model is procedural-only)"}


PROCEDURAL_WORLD = {"name": "procedural", "render": "procedural ray caster (sim_bridge.render)",
                    "acoustics": "image sources + diffuse tail (sim_bridge.acoustics)", "assets": []}
"""metadata.json's `world` record of the procedural world."""
