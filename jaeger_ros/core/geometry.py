"""Frames, directions, camera models and box metrics in JAEGER's conventions.

JAEGER camera frame: x right, y up, z backward (the camera looks along -z).
Azimuth 0 = forward (-z), positive to the LEFT, in [-180, 180]; elevation positive UP.
ROS optical frames (x right, y down, z forward) and REP-103 body frames (x forward, y left,
z up) are converted here so that nodes only touch these functions at the ROS edge.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Rotation matrices mapping JAEGER-camera coordinates into other frames (p_other = R @ p_cam).
OPTICAL_FROM_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
BODY_FROM_CAMERA = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

# REP-105 frame names of the simulated robot, shared by the live simulator and its bags.
MAP_FRAME, ODOM_FRAME, BASE_FRAME, CAMERA_LINK_FRAME = "map", "odom", "base_link", "camera_link"
OPTICAL_FRAME = "camera_color_optical_frame"
"""Frame of the colour and depth images (depth is registered to colour) and of the ground truth."""


def _apply(rotation: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=float) @ rotation.T


def camera_to_optical(points: np.ndarray) -> np.ndarray:
    """(..., 3) JAEGER camera -> ROS optical (x right, y down, z forward)."""
    return _apply(OPTICAL_FROM_CAMERA, points)


def optical_to_camera(points: np.ndarray) -> np.ndarray:
    """(..., 3) ROS optical -> JAEGER camera."""
    return _apply(OPTICAL_FROM_CAMERA.T, points)


def camera_to_body(points: np.ndarray) -> np.ndarray:
    """(..., 3) JAEGER camera -> REP-103 body (x forward, y left, z up)."""
    return _apply(BODY_FROM_CAMERA, points)


def body_to_camera(points: np.ndarray) -> np.ndarray:
    """(..., 3) REP-103 body -> JAEGER camera."""
    return _apply(BODY_FROM_CAMERA.T, points)


def azel_from_direction(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth/elevation (degrees) of (..., 3) camera-frame vectors (need not be unit)."""
    v = np.asarray(direction, dtype=float)
    norm = np.linalg.norm(v, axis=-1)
    if np.any(norm == 0):
        raise ValueError("direction has zero length")
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    az = np.degrees(np.arctan2(0.0 - x, 0.0 - z))  # 0.0 - avoids -0.0 giving -180 straight up
    el = np.degrees(np.arcsin(np.clip(y / norm, -1.0, 1.0)))
    return az, el


def direction_from_azel(azimuth_deg: Any, elevation_deg: Any) -> np.ndarray:
    """Unit (..., 3) camera-frame vectors for azimuth/elevation in degrees."""
    az = np.radians(np.asarray(azimuth_deg, dtype=float))
    el = np.radians(np.asarray(elevation_deg, dtype=float))
    return np.stack([-np.sin(az) * np.cos(el), np.sin(el), -np.cos(az) * np.cos(el)], axis=-1)


def wrapped_azimuth_error(a_deg: Any, b_deg: Any) -> np.ndarray:
    """Circular |a - b| in degrees, in [0, 180] (the official scorer's azimuth error)."""
    d = np.abs(np.asarray(a_deg, dtype=float) - np.asarray(b_deg, dtype=float)) % 360.0
    return np.minimum(d, 360.0 - d)


def great_circle_deg(az1: Any, el1: Any, az2: Any, el2: Any) -> np.ndarray:
    """Angle (degrees) between two directions given as azimuth/elevation pairs."""
    u = direction_from_azel(az1, el1)
    v = direction_from_azel(az2, el2)
    cos = np.clip(np.sum(u * v, axis=-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def rotation_y(angle_deg: float) -> np.ndarray:
    """Rotation about +y (yaw in a y-up frame; positive turns -z towards -x, i.e. to the left)."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_x(angle_deg: float) -> np.ndarray:
    """Rotation about +x (pitch; positive turns -z towards +y, i.e. looks up)."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def pose_matrix(rotation: np.ndarray, translation: Any) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation and a translation."""
    t = np.eye(4)
    t[:3, :3] = rotation
    t[:3, 3] = np.asarray(translation, dtype=float)
    return t


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (..., 3) points."""
    p = np.asarray(points, dtype=float)
    return p @ transform[:3, :3].T + transform[:3, 3]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in the reference's convention (cx = w/2, cy = h/2, pixel u's ray
    passes through u - cx, no half-pixel shift), so rendering and back-projection agree."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float = 90.0) -> "Intrinsics":
        """Square pixels: vfov follows from the aspect ratio (16:9 at 90 deg -> 58.72 deg)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if not 0.0 < hfov_deg < 180.0:
            raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov_deg}")
        fx = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        return cls(width, height, float(fx), float(fx), width / 2.0, height / 2.0)

    @property
    def hfov_deg(self) -> float:
        return float(np.degrees(2.0 * np.arctan(self.width / 2.0 / self.fx)))

    @property
    def vfov_deg(self) -> float:
        return float(np.degrees(2.0 * np.arctan(self.height / 2.0 / self.fy)))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera at another resolution (as when the model resizes the depth map)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) camera-frame ray directions with z = -1 (depth d gives point d * ray)."""
        u = np.arange(self.width, dtype=float)
        v = np.arange(self.height, dtype=float)
        uu, vv = np.meshgrid(u, v)
        return np.stack([(uu - self.cx) / self.fx, -(vv - self.cy) / self.fy, -np.ones_like(uu)], axis=-1)

    def to_dict(self) -> dict[str, float]:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Intrinsics":
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]),
                   float(d["cx"]), float(d["cy"]))


def backproject(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W) planar depth in metres -> (H, W, 3) camera-frame points; invalid depth -> NaN.

    x = (u - cx) d / fx, y = -(v - cy) d / fy, z = -d, as the reference code does.
    """
    d = np.asarray(depth, dtype=float)
    if d.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth shape {d.shape} does not match intrinsics "
                         f"{intrinsics.height}x{intrinsics.width}")
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    return intrinsics.pixel_rays() * d[..., None]


def project(points: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3) camera-frame points -> pixel (u, v) and a mask of points in front of the camera."""
    p = np.asarray(points, dtype=float)
    d = -p[..., 2]
    in_front = d > 1e-9
    safe = np.where(in_front, d, 1.0)
    u = intrinsics.cx + intrinsics.fx * p[..., 0] / safe
    v = intrinsics.cy - intrinsics.fy * p[..., 1] / safe
    return u, v, in_front


def inside_image(point: np.ndarray, intrinsics: Intrinsics) -> bool:
    """Whether a camera-frame point is in front of the camera and projects inside the image."""
    u, v, front = project(point, intrinsics)
    return bool(front and 0 <= u < intrinsics.width and 0 <= v < intrinsics.height)


@dataclass(frozen=True)
class Box3D:
    """Axis-aligned 3D box: centre and full size (metres) in the frame named by its user."""

    center: np.ndarray
    size: np.ndarray
    label: str = "speaker"
    score: float = 1.0
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.center, dtype=float).reshape(3)
        s = np.asarray(self.size, dtype=float).reshape(3)
        if np.any(s < 0) or not (np.all(np.isfinite(c)) and np.all(np.isfinite(s))):
            raise ValueError(f"invalid box centre {c} / size {s}")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "size", s)

    @property
    def min(self) -> np.ndarray:
        return self.center - self.size / 2.0

    @property
    def max(self) -> np.ndarray:
        return self.center + self.size / 2.0

    def corners(self) -> np.ndarray:
        """(8, 3) corners; bit i of the index picks max along axis i."""
        idx = np.array([[(k >> i) & 1 for i in range(3)] for k in range(8)], dtype=bool)
        return np.where(idx, self.max, self.min)

    @classmethod
    def from_points(cls, points: np.ndarray, label: str = "speaker") -> "Box3D":
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        lo, hi = p.min(axis=0), p.max(axis=0)
        return cls((lo + hi) / 2.0, hi - lo, label)


CATEGORIES = ("loudspeaker", "person", "unknown")


def box_category(box: Box3D) -> str:
    """The box's category (one of CATEGORIES) for the messages: `extra["category"]` where the
    pipeline set it, else from the label ("speaker" is the release's and the simulator's
    loudspeaker label), so ground-truth boxes keep a category too."""
    if box.extra.get("category") in CATEGORIES:
        return box.extra["category"]
    return {"speaker": "loudspeaker", "loudspeaker": "loudspeaker", "person": "person"}.get(box.label, "unknown")


@dataclass(frozen=True)
class SourceTruth:
    """One talker's ground truth at one instant. The simulator publishes it and the bag
    converter reads it back (from /sim/ground_truth or a sidecar annotation), so both
    label the same way."""

    gender: str
    loudspeaker: int  # rank among the left-to-right boxes
    label: str  # Left / Center / Right (answers.match_label of the rank)
    active: bool
    active_for_s: float
    direction: np.ndarray  # JAEGER camera frame, unit
    azimuth_deg: float
    elevation_deg: float


def box_iou_3d(a: Box3D, b: Box3D) -> float:
    """Axis-aligned 3D IoU (volume of intersection over volume of union)."""
    overlap = np.clip(np.minimum(a.max, b.max) - np.maximum(a.min, b.min), 0.0, None)
    inter = float(np.prod(overlap))
    union = float(np.prod(a.size) + np.prod(b.size) - inter)
    return inter / union if union > 0 else 0.0


def center_offset(a: Box3D, b: Box3D) -> float:
    """Euclidean distance between box centres (metres)."""
    return float(np.linalg.norm(a.center - b.center))
