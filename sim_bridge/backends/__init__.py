"""Simulator backends: who renders a pose's RGB-D image and a source's FOA room impulse response.

Why an interface: the procedural simulator (shoebox rooms, ray-cast boxes, image sources) is
fast and needs nothing installed; scanned homes (Habitat-Sim) with ray-traced acoustics
(SoundSpaces 2.0) are closer to the paper's data but need a GPU build and datasets that are
not installed here. Both return the same things in the same conventions, so the rest of the
pipeline does not care which one ran:

- rgb: uint8 (H, W, 3); depth: float32 (H, W) planar metres along the camera's -z, 0 = no
  return; instance: int32 (H, W), 0 = background (see each backend for its ids);
- FOA RIR: float (4, N) at the requested sample rate, ACN/SN3D (AmbiX), axes of the
  receiving camera (ambisonic X = camera -z, Y = camera -x, Z = camera +y).

`get_backend("procedural")` is the default; `get_backend("habitat", ...)` raises
BackendUnavailable unless habitat_sim (with audio) imports.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from sim_bridge.render import RenderResult


class BackendUnavailable(RuntimeError):
    """The backend's simulator is not installed (or not built with what the backend needs)."""


class SimulatorBackend(Protocol):
    """What a simulator must provide (see the module doc for the conventions)."""

    name: str

    def observe(self, scene: Any, intrinsics: Any) -> RenderResult:
        """RGB, depth and instance ids seen from the scene's camera."""

    def foa_rir(self, scene: Any, source_world: np.ndarray, sample_rate: int,
                rng: np.random.Generator | None = None, **options: Any) -> np.ndarray:
        """(4, N) ACN/SN3D RIR from a world point to the scene's camera, in the camera's axes."""


BACKENDS = ("procedural", "habitat")


def get_backend(name: str = "procedural", **kwargs: Any) -> SimulatorBackend:
    """The named backend; kwargs go to its constructor."""
    if name == "procedural":
        from sim_bridge.backends.procedural import ProceduralBackend

        return ProceduralBackend(**kwargs)
    if name == "habitat":
        from sim_bridge.backends.habitat import HabitatBackend

        return HabitatBackend(**kwargs)
    raise ValueError(f"unknown simulator backend {name!r}; expected one of {BACKENDS}")
