"""The default backend: the procedural simulator (sim_bridge.render + sim_bridge.acoustics)."""
from __future__ import annotations

from typing import Any

import numpy as np

from sim_bridge.acoustics import foa_rir
from sim_bridge.render import RenderResult, render


class ProceduralBackend:
    """Shoebox rooms ray-cast on the CPU; image-source + diffuse-tail FOA RIRs.

    instance ids: i + 1 = scene.loudspeakers[i]."""

    name = "procedural"

    def observe(self, scene: Any, intrinsics: Any) -> RenderResult:
        return render(scene, intrinsics)

    def foa_rir(self, scene: Any, source_world: np.ndarray, sample_rate: int,
                rng: np.random.Generator | None = None, **options: Any) -> np.ndarray:
        """options: those of acoustics.foa_rir (directivity, capsules, max_order, tail)."""
        return foa_rir(scene.room, np.asarray(source_world, float), scene.camera_position,
                       scene.world_from_camera()[:3, :3], sample_rate, rng=rng, **options)
