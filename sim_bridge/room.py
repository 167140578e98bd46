"""The shoebox room shared by the renderer and the acoustics (one description, two physics)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SURFACES = ("west", "east", "floor", "ceiling", "north", "south")
"""Surface names in axis order: x=0, x=sx, y=0, y=sy, z=0, z=sz."""


@dataclass(frozen=True)
class Room:
    """Shoebox interior [0, sx] x [0, sy] x [0, sz] metres in the simulator's world frame
    (y up, floor at y = 0), with an energy absorption coefficient per surface."""

    size: tuple[float, float, float]
    absorption: tuple[float, float, float, float, float, float]

    def __post_init__(self) -> None:
        if len(self.size) != 3 or min(self.size) <= 0:
            raise ValueError(f"room size must be 3 positive lengths, got {self.size}")
        if len(self.absorption) != 6 or not all(0.0 < a < 1.0 for a in self.absorption):
            raise ValueError(f"need 6 absorption coefficients in (0, 1), got {self.absorption}")

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def surface_areas(self) -> np.ndarray:
        sx, sy, sz = self.size
        return np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])

    def sabine_rt60(self, speed_of_sound: float = 343.0) -> float:
        """Sabine reverberation time (s): 24 ln(10) V / (c * sum(S_i a_i))."""
        absorbing = float(np.sum(self.surface_areas() * np.asarray(self.absorption)))
        return 24.0 * np.log(10.0) * self.volume / (speed_of_sound * absorbing)

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        p = np.asarray(point, dtype=float)
        return bool(np.all(p >= margin) and np.all(p <= np.asarray(self.size) - margin))

    def to_dict(self) -> dict:
        return {"size": list(self.size), "absorption": dict(zip(SURFACES, self.absorption))}

    @classmethod
    def from_dict(cls, d: dict) -> "Room":
        return cls(tuple(d["size"]), tuple(d["absorption"][s] for s in SURFACES))
