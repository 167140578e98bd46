"""ROS message -> numpy decoders that read only the messages' fields.

Why a ROS-free module: the nodes decode rclpy messages, and `jaeger dataset from-bag` decodes
the same message types as `rosbags` deserialises them (plain dataclasses with the same fields),
without rclpy. Both call these, so both accept and reject exactly the same inputs.
Depth: 32FC1 in metres (NaN/inf/0 = no return) or 16UC1 in millimetres (0 = no return); the
core's depth is float32 metres with 0 = no return.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jaeger_ros.core import foa as foa_io
from jaeger_ros.core.geometry import Intrinsics

try:  # cv_bridge is preferred where a ROS distribution provides it; ours covers the rest.
    from cv_bridge import CvBridge as _CvBridge
except ImportError:  # pragma: no cover - depends on the installation
    _CvBridge = None

MIN_FOCAL_PX = 1.0
MAX_FOCAL_PER_WIDTH = 100.0  # a 0.6 degree field of view
MAX_FOA_AMPLITUDE = 16.0
"""Float FOA is full scale at 1 in any declared normalisation; beyond this it is not float audio."""

# encoding -> (numpy dtype, channels)
ENCODINGS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
             "mono8": (np.uint8, 1), "32FC1": (np.float32, 1), "16UC1": (np.uint16, 1)}


def check_image_layout(msg: Any, encodings: tuple[str, ...] = tuple(ENCODINGS)) -> int:
    """Raise ValueError unless the Image's header describes its data (encoding among `encodings`,
    non-empty, step and byte count consistent); returns the bytes of a row's pixels. Reads no
    pixel, so a node can reject a malformed image on arrival, before it is ever decoded."""
    if msg.encoding not in encodings:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(encodings)}")
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"empty image ({msg.width}x{msg.height})")
    dtype, channels = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    if msg.step < row_bytes:
        raise ValueError(f"image step {msg.step} < width*channels*itemsize {row_bytes}")
    if len(msg.data) != msg.step * msg.height:
        raise ValueError(f"image data has {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}")
    return row_bytes


def image_to_numpy(msg: Any) -> np.ndarray:
    """Image -> (H, W) or (H, W, C) array in the message's own encoding (a copy)."""
    row_bytes = check_image_layout(msg)
    if _CvBridge is not None:  # pragma: no cover - no cv_bridge here
        return np.array(_CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough"))
    dtype, channels = ENCODINGS[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    rows = buf.reshape(msg.height, msg.step)[:, :row_bytes]
    arr = np.ascontiguousarray(rows).view(dt).reshape(msg.height, msg.width, channels).astype(dtype)
    return arr[..., 0] if channels == 1 else arr


COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")


def check_frame_layout(rgb: Any, depth: Any, info: Any) -> Intrinsics:
    """A colour/depth/camera_info set's headers checked without decoding a pixel (see
    check_image_layout): encodings, sizes, matching sizes, usable intrinsics."""
    try:
        check_image_layout(rgb, COLOUR_ENCODINGS)
    except ValueError as err:
        raise ValueError(f"colour image: {err}") from None
    try:
        check_image_layout(depth, DEPTH_ENCODINGS)
    except ValueError as err:
        raise ValueError(f"depth image: {err}") from None
    intr = camera_info_to_intrinsics(info)
    if (rgb.height, rgb.width) != (depth.height, depth.width) or (depth.height, depth.width) != (intr.height, intr.width):
        raise ValueError(f"sizes differ: rgb {rgb.height}x{rgb.width}, depth {depth.height}x{depth.width}, "
                         f"camera_info {intr.height}x{intr.width}")
    return intr


def rgb_from_image(msg: Any) -> np.ndarray:
    """Colour Image (rgb8/bgr8/rgba8/bgra8) -> (H, W, 3) uint8 RGB."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ValueError(f"colour image must be rgb8/bgr8/rgba8/bgra8, got {msg.encoding!r}")
    a = image_to_numpy(msg)[..., :3]
    return np.ascontiguousarray(a[..., ::-1] if msg.encoding.startswith("bgr") else a)


def depth_from_image(msg: Any) -> np.ndarray:
    """Depth Image (32FC1 metres or 16UC1 millimetres) -> (H, W) float32 metres, 0 = no return."""
    if msg.encoding == "32FC1":
        d = image_to_numpy(msg).astype(np.float32)
    elif msg.encoding == "16UC1":
        d = image_to_numpy(msg).astype(np.float32) / 1000.0
    else:
        raise ValueError(f"depth image must be 32FC1 (m) or 16UC1 (mm), got {msg.encoding!r}")
    return np.where(np.isfinite(d) & (d > 0), d, np.float32(0.0)).astype(np.float32)


def camera_info_to_intrinsics(msg: Any) -> Intrinsics:
    """CameraInfo (K of the rectified image) -> Intrinsics; ROS and geometry.Intrinsics both put
    pixel u's centre at integer u, so K maps over unchanged. K must be finite with focal lengths
    of MIN_FOCAL_PX..MAX_FOCAL_PER_WIDTH x width pixels (fx = 1e-6 would put every point at
    infinity) and a principal point within a width/height of the image."""
    k = np.asarray(msg.k, dtype=float)
    if msg.width == 0 or msg.height == 0 or k.shape != (9,):
        raise ValueError(f"camera_info has no usable intrinsics (size {msg.width}x{msg.height}, K={k.tolist()})")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"camera_info K has NaN or infinite entries: {k.tolist()}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    top = MAX_FOCAL_PER_WIDTH * max(msg.width, msg.height)
    if not (MIN_FOCAL_PX <= fx <= top and MIN_FOCAL_PX <= fy <= top):
        raise ValueError(f"camera_info focal lengths fx={fx:g}, fy={fy:g} px are outside "
                         f"[{MIN_FOCAL_PX:g}, {top:g}] for a {msg.width}x{msg.height} image")
    if not (-msg.width <= cx <= 2 * msg.width and -msg.height <= cy <= 2 * msg.height):
        raise ValueError(f"camera_info principal point ({cx:g}, {cy:g}) is far outside the "
                         f"{msg.width}x{msg.height} image")
    return Intrinsics(int(msg.width), int(msg.height), float(fx), float(fy), float(cx), float(cy))


def foa_from_msg(msg: Any) -> tuple[np.ndarray, int]:
    """FoaAudio -> ((4, N) float32 ACN/SN3D, sample rate), converted from the declared order and
    normalisation. Malformed chunks (channel count, sizes, rate, non-finite samples) -> ValueError."""
    if msg.channels != 4:
        raise ValueError(f"FOA chunk has {msg.channels} channels, expected 4")
    if msg.sample_rate <= 0:
        raise ValueError(f"FOA chunk has sample rate {msg.sample_rate}")
    data = np.asarray(msg.data, dtype=np.float32)
    if msg.frame_samples == 0 or data.size != 4 * msg.frame_samples:
        raise ValueError(f"FOA chunk has {data.size} samples, expected 4 x frame_samples = {4 * msg.frame_samples}")
    if not np.all(np.isfinite(data)):
        raise ValueError("FOA chunk contains NaN or infinite samples")
    peak = float(np.max(np.abs(data)))
    if peak > MAX_FOA_AMPLITUDE:
        raise ValueError(f"FOA chunk peaks at {peak:.3g}, above {MAX_FOA_AMPLITUDE:g} (float audio is full scale "
                         f"at 1; integer PCM sent as float?)")
    planar = data.reshape(4, msg.frame_samples)
    out = foa_io.convert(planar, msg.channel_order, msg.normalization)
    return out.astype(np.float32, copy=False), int(msg.sample_rate)
