"""Conversions between ROS messages and the numpy/geometry types of the ROS-free core.

Why one module: every frame or unit change at the ROS edge happens here, so nodes stay thin
and the conventions are tested in one place.

Frames: the core works in JAEGER's camera frame (x right, y up, z backward); ROS images and
everything jaeger_node publishes are in the camera OPTICAL frame (x right, y down, z forward,
REP-103/REP-105). Depth: 32FC1 in metres (NaN/inf/0 = no return) or 16UC1 in millimetres
(0 = no return); the core's depth is float32 metres with 0 = no return.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Quaternion, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from jaeger_ros.core import foa as foa_mod
from jaeger_ros.core.geometry import (Box3D, Intrinsics, azel_from_direction, box_category, camera_to_optical,
                                      optical_to_camera)
from jaeger_ros.msg import BoundingBox3D, BoundingBox3DArray, DoaEstimate, FoaAudio
from jaeger_ros.core.msg_arrays import (ENCODINGS, camera_info_to_intrinsics, depth_from_image, foa_from_msg,  # noqa: F401
                                 image_to_numpy, rgb_from_image)


# --- time -------------------------------------------------------------------------------------
def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp: float | Time, frame_id: str) -> Header:
    return Header(stamp=stamp if isinstance(stamp, Time) else seconds_to_stamp(stamp), frame_id=frame_id)


# --- images -----------------------------------------------------------------------------------
def numpy_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """(H, W[, C]) array -> Image with the given encoding (dtype and channels must match it)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    a = np.asarray(array)
    shape_ok = a.ndim == 2 if channels == 1 else (a.ndim == 3 and a.shape[2] == channels)
    if not shape_ok or a.dtype != dtype:
        raise ValueError(f"{encoding} needs dtype {np.dtype(dtype).name} with {channels} channel(s), "
                         f"got {a.dtype} {a.shape}")
    a = np.ascontiguousarray(a.astype(np.dtype(dtype).newbyteorder("<"), copy=False))
    msg = Image(header=header, height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=0,
                step=a.shape[1] * channels * a.dtype.itemsize)
    msg.data = a.tobytes()
    return msg


def depth_to_image(depth: np.ndarray, header: Header, encoding: str = "32FC1") -> Image:
    """(H, W) metres -> 32FC1 (metres, no return = NaN as REP-118) or 16UC1 (mm, no return = 0)."""
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    if encoding == "32FC1":
        return numpy_to_image(np.where(valid, d, np.nan).astype(np.float32), encoding, header)
    if encoding == "16UC1":
        mm = np.where(valid, np.clip(np.round(d * 1000.0), 0, 65535), 0).astype(np.uint16)
        return numpy_to_image(mm, encoding, header)
    raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")


# --- camera info ------------------------------------------------------------------------------
def intrinsics_to_camera_info(intrinsics: Intrinsics, header: Header) -> CameraInfo:
    """Intrinsics -> CameraInfo of an undistorted pinhole camera (plumb_bob, D = 0)."""
    i = intrinsics
    k = [i.fx, 0.0, i.cx, 0.0, i.fy, i.cy, 0.0, 0.0, 1.0]
    return CameraInfo(header=header, width=i.width, height=i.height, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=k, r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[i.fx, 0.0, i.cx, 0.0, 0.0, i.fy, i.cy, 0.0, 0.0, 0.0, 1.0, 0.0])


# --- FOA audio --------------------------------------------------------------------------------
def foa_to_msg(foa: np.ndarray, sample_rate: int, header: Header, order: str = foa_mod.DEFAULT_ORDER,
               normalization: str = foa_mod.DEFAULT_NORMALIZATION) -> FoaAudio:
    """(4, N) ACN/SN3D FOA -> FoaAudio in the requested order/normalisation.
    header.stamp must be the capture time of the FIRST sample."""
    a = foa_mod.convert(np.asarray(foa, dtype=np.float32), foa_mod.DEFAULT_ORDER, foa_mod.DEFAULT_NORMALIZATION,
                        order, normalization)
    msg = FoaAudio(header=header, sample_rate=int(sample_rate), channel_order=order.upper(),
                   normalization=normalization.upper(), channels=4, frame_samples=a.shape[1])
    msg.data = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    return msg


# --- boxes and directions ---------------------------------------------------------------------
def box_to_msg(box: Box3D, index: int) -> BoundingBox3D:
    """Box3D in JAEGER's camera frame -> BoundingBox3D in the optical frame (size unchanged:
    the frames differ by a half turn about x, which keeps axis-aligned boxes axis-aligned)."""
    c = camera_to_optical(box.center)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in c)
    pose.orientation.w = 1.0
    return BoundingBox3D(id=int(index), label=box.label, category=box_category(box), center=pose,
                         size=Vector3(x=float(box.size[0]), y=float(box.size[1]), z=float(box.size[2])),
                         score=float(box.score))


def box_from_msg(msg: BoundingBox3D) -> Box3D:
    """BoundingBox3D in an optical frame -> Box3D in JAEGER's camera frame."""
    p = msg.center.position
    return Box3D(optical_to_camera(np.array([p.x, p.y, p.z])), np.array([msg.size.x, msg.size.y, msg.size.z]),
                 label=msg.label, score=float(msg.score), extra={"category": msg.category} if msg.category else {})


def boxes_to_msg(boxes: Sequence[Box3D], header: Header) -> BoundingBox3DArray:
    return BoundingBox3DArray(header=header, boxes=[box_to_msg(b, i) for i, b in enumerate(boxes)])


def boxes_from_msg(msg: BoundingBox3DArray) -> list[Box3D]:
    return [box_from_msg(b) for b in msg.boxes]


def vector_to_msg(v: np.ndarray) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def doa_to_msg(direction_cam: np.ndarray, confidence: float, header: Header, source: str = "") -> DoaEstimate:
    """Camera-frame direction -> DoaEstimate (az/el in JAEGER's convention, unit vector in the
    optical frame of `header`)."""
    d = np.asarray(direction_cam, dtype=float)
    d = d / np.linalg.norm(d)
    az, el = azel_from_direction(d)
    return DoaEstimate(header=header, source=source, azimuth_deg=float(az), elevation_deg=float(el),
                       direction=vector_to_msg(camera_to_optical(d)), confidence=float(np.clip(confidence, 0, 1)))


def doa_direction_camera(msg: DoaEstimate) -> np.ndarray:
    """DoaEstimate's optical-frame direction -> unit vector in JAEGER's camera frame."""
    d = optical_to_camera(np.array([msg.direction.x, msg.direction.y, msg.direction.z]))
    n = np.linalg.norm(d)
    if n == 0:
        raise ValueError("DoaEstimate direction is zero")
    return d / n


# --- rotations and transforms -----------------------------------------------------------------
def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (x, y, z, w) with w >= 0."""
    r = np.asarray(rotation, dtype=float)
    # The eigenvector of the symmetric 4x4 K (Bar-Itzhack) is robust for any rotation.
    k = np.array([
        [r[0, 0] - r[1, 1] - r[2, 2], r[1, 0] + r[0, 1], r[2, 0] + r[0, 2], r[2, 1] - r[1, 2]],
        [r[1, 0] + r[0, 1], r[1, 1] - r[0, 0] - r[2, 2], r[2, 1] + r[1, 2], r[0, 2] - r[2, 0]],
        [r[2, 0] + r[0, 2], r[2, 1] + r[1, 2], r[2, 2] - r[0, 0] - r[1, 1], r[1, 0] - r[0, 1]],
        [r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], r[0, 0] + r[1, 1] + r[2, 2]]]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[:, int(np.argmax(vals))]
    return q if q[3] >= 0 else -q


def matrix_from_quaternion(q: Sequence[float]) -> np.ndarray:
    """Quaternion (x, y, z, w) -> 3x3 rotation."""
    x, y, z, w = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def pose_to_msg(transform: np.ndarray) -> Pose:
    """4x4 transform -> Pose (position in metres, orientation quaternion)."""
    t = np.asarray(transform, dtype=float)
    q = quaternion_from_matrix(t[:3, :3])
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t[:3, 3])
    pose.orientation = Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))
    return pose


def pose_from_msg(pose: Pose) -> np.ndarray:
    o, p = pose.orientation, pose.position
    t = np.eye(4)
    t[:3, :3] = matrix_from_quaternion([o.x, o.y, o.z, o.w])
    t[:3, 3] = [p.x, p.y, p.z]
    return t


def transform_to_msg(parent_from_child: np.ndarray, parent: str, child: str, stamp: float | Time) -> TransformStamped:
    """4x4 parent_from_child -> TransformStamped (header.frame_id = parent, child_frame_id = child)."""
    pose = pose_to_msg(parent_from_child)
    msg = TransformStamped(header=make_header(stamp, parent), child_frame_id=child)
    msg.transform.translation = Vector3(x=pose.position.x, y=pose.position.y, z=pose.position.z)
    msg.transform.rotation = pose.orientation
    return msg

