"""A time-indexed transform tree (what tf2's buffer does), without ROS.

Why here: tf2_ros has no Python wheel on this platform, yet the tracker must place each frame's
direction of arrival in `map` with the camera pose AT THE FRAME'S STAMP (the robot turns while the
estimate is computed, so "the latest pose" would smear every bearing by the processing delay).

Each child frame has one parent (a tree). Moving edges keep a history sorted by stamp and are
interpolated (translation linearly, rotation by slerp); static edges hold at any time. A lookup
composes the edges through the frames' common ancestor. Asking for a time after the newest
sample of an edge (beyond `extrapolation_s`) or before its oldest raises TransformError: the
caller waits or drops, it never gets a silently wrong pose.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


class TransformError(LookupError):
    """The transform is not known at that time (no path, too old or not yet received)."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)


def interpolate(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Pose between 4x4 transforms a (fraction 0) and b (fraction 1)."""
    rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))([fraction]).as_matrix()[0]
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = (1.0 - fraction) * a[:3, 3] + fraction * b[:3, 3]
    return out


class TransformBuffer:
    """parent_from_child transforms per edge; `lookup(target, source, t)` gives target_from_source."""

    def __init__(self, cache_s: float = 10.0, extrapolation_s: float = 0.0) -> None:
        if cache_s <= 0 or extrapolation_s < 0:
            raise ValueError(f"need cache_s > 0 and extrapolation_s >= 0, got {cache_s}, {extrapolation_s}")
        self.cache_s = cache_s
        self.extrapolation_s = extrapolation_s
        self._edges: dict[str, _Edge] = {}

    def set_transform(self, parent: str, child: str, parent_from_child: np.ndarray, stamp: float,
                      static: bool = False) -> None:
        """Add one sample of an edge. A child that changes parent starts a fresh history
        (the tree was re-wired); samples older than `cache_s` behind the newest are forgotten."""
        if not parent or not child or parent == child:
            raise ValueError(f"bad TF edge {parent!r} -> {child!r}")
        matrix = np.asarray(parent_from_child, dtype=float)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"TF edge {parent} -> {child}: not a finite 4x4 transform")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            edge = self._edges[child] = _Edge(parent, static)
        if static:
            edge.stamps, edge.matrices = [stamp], [matrix]
            return
        i = bisect.bisect_left(edge.stamps, stamp)
        if i < len(edge.stamps) and edge.stamps[i] == stamp:
            edge.matrices[i] = matrix
        else:
            edge.stamps.insert(i, stamp)
            edge.matrices.insert(i, matrix)
        keep = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_s)
        del edge.stamps[:keep], edge.matrices[:keep]

    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def latest_common_time(self, target: str, source: str) -> float:
        """The newest stamp at which every moving edge between the two frames is known."""
        times = [self._edges[f].stamps[-1] for f in self._chain(target, source) if not self._edges[f].static]
        return min(times) if times else float("inf")

    def _edge_at(self, child: str, stamp: float) -> np.ndarray:
        edge = self._edges[child]
        if edge.static:
            return edge.matrices[0]
        s = edge.stamps
        if stamp > s[-1] + self.extrapolation_s or stamp < s[0] - self.extrapolation_s:
            raise TransformError(f"{edge.parent} -> {child} is known for [{s[0]:.3f}, {s[-1]:.3f}], "
                                 f"not at {stamp:.3f}")
        i = bisect.bisect_left(s, stamp)
        if i == 0:
            return edge.matrices[0]
        if i == len(s):
            return edge.matrices[-1]
        span = s[i] - s[i - 1]
        return interpolate(edge.matrices[i - 1], edge.matrices[i], (stamp - s[i - 1]) / span if span > 0 else 1.0)

    def _ancestors(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self._edges:
            path.append(self._edges[path[-1]].parent)
            if len(path) > 64:
                raise TransformError(f"TF tree has a loop through {frame}")
        return path

    def _chain(self, target: str, source: str) -> list[str]:
        """Child frames of every edge between the two frames (via their common ancestor)."""
        up_t, up_s = self._ancestors(target), self._ancestors(source)
        common = next((f for f in up_s if f in up_t), None)
        if common is None:
            raise TransformError(f"no TF path between {target!r} and {source!r}")
        return up_t[:up_t.index(common)] + up_s[:up_s.index(common)]

    def lookup(self, target: str, source: str, stamp: float) -> np.ndarray:
        """4x4 target_from_source at time `stamp` (maps source coordinates into target)."""
        up_t, up_s = self._ancestors(target), self._ancestors(source)
        common = next((f for f in up_s if f in up_t), None)
        if common is None:
            raise TransformError(f"no TF path between {target!r} and {source!r}")
        common_from_source = np.eye(4)
        for child in reversed(up_s[:up_s.index(common)]):
            common_from_source = common_from_source @ self._edge_at(child, stamp)
        common_from_target = np.eye(4)
        for child in reversed(up_t[:up_t.index(common)]):
            common_from_target = common_from_target @ self._edge_at(child, stamp)
        return np.linalg.inv(common_from_target) @ common_from_source
