"""Loudspeaker candidates from a depth image alone (no ground truth, no learning).

The floor is found first (the largest roughly horizontal plane below the camera with nothing
under it), so that every point gets a height above it. Points on the floor, high up, or on
large vertical planes (walls: only their stretches at least WALL_MIN_RUN_M long, for a near
loudspeaker's flat face can hold as many points as a wall) are removed; the rest are projected
onto the floor and grouped into connected blobs. Blobs of loudspeaker size (0.55-1.05 m high,
0.17-0.75 m wide) standing on the floor within 4.5 m become boxes. Only the front of an object
is seen, so its depth extent is taken as at least 0.9 x its width (floor-standing loudspeakers
have near-square footprints).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from jaeger_ros.core.answers import azimuth_order
from jaeger_ros.core.geometry import Box3D, Intrinsics, backproject, project

CELL_M = 0.04
HEIGHT_RANGE_M = (0.55, 1.05)
WIDTH_RANGE_M = (0.17, 0.75)
MAX_TOP_M = 1.3            # points higher than this are walls, shelves, lamps, ceiling
FLOOR_TOL_M = 0.04
WALL_TOL_M = 0.03
MIN_WALL_SHARE = 0.06      # a vertical plane holding this share of the points is a wall ...
WALL_MIN_RUN_M = 1.0       # ... where its points run on this far across without a gap of WALL_GAP_M:
WALL_GAP_M = 0.4           # a tower loudspeaker's face 1.9 m away held 6 % of the points below MAX_TOP_M
#                            and was removed whole (live mesh world, mixed seed 10, scene 9)
MIN_POINTS = 40
MAX_DEPTH_M = 6.0
MAX_RANGE_M = 4.5          # farther objects are out of the working range (the DoA and depth degrade)
FLOATING_M = 0.6           # lowest visible point higher than this: not standing on the floor
BELOW_FLOOR_M = 0.1        # a floor candidate with points this far below it ...
MAX_BELOW_FLOOR_SHARE = 0.02  # ... (more than this share) is a table top or a seat


def _fit_planes(points: np.ndarray, rng: np.random.Generator, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Random planes through point triples: unit normals (n, 3) and offsets (n,) with n.p + d = 0."""
    idx = rng.integers(len(points), size=(iterations, 3))
    a, b, c = points[idx[:, 0]], points[idx[:, 1]], points[idx[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-9
    n = n[ok] / norm[ok, None]
    return n, -np.sum(n * a[ok], axis=1)


def find_floor(points: np.ndarray, rng: np.random.Generator, iterations: int = 300) -> tuple[np.ndarray, float]:
    """Floor plane (normal pointing up towards the camera, offset): the best-supported
    near-horizontal plane at least 0.5 m below the camera that has (almost) nothing below it.

    A camera looking level or up sees little floor (~4% of the points), so a third of the
    triples are drawn from the lowest points, and table tops or seat cushions, which can hold
    more points than the visible floor, are ruled out by the floor under them."""
    low = points[points[:, 1] <= np.percentile(points[:, 1], 20)]
    normals, offsets = _fit_planes(points, rng, iterations)
    if len(low) >= 3:
        low_n, low_d = _fit_planes(low, rng, iterations // 2)
        normals, offsets = np.concatenate([normals, low_n]), np.concatenate([offsets, low_d])
    flip = normals[:, 1] < 0                      # orient normals along camera +y (up)
    normals[flip] *= -1
    offsets[flip] *= -1
    plausible = (normals[:, 1] > np.cos(np.radians(35))) & (offsets > 0.5)  # camera height = offset
    if not np.any(plausible):
        raise ValueError("no floor plane found in the depth image")
    normals, offsets = normals[plausible], offsets[plausible]
    sample = points[::4]                          # enough to rank planes, 4x cheaper
    heights = sample @ normals.T + offsets
    support = (np.abs(heights) < FLOOR_TOL_M).sum(axis=0)
    below = (heights < -BELOW_FLOOR_M).sum(axis=0)
    grounded = below <= MAX_BELOW_FLOOR_SHARE * len(sample)
    best = int(np.argmax(np.where(grounded, support, -1) if np.any(grounded) else support))
    # refine by least squares on the inliers
    inl = points[np.abs(points @ normals[best] + offsets[best]) < FLOOR_TOL_M]
    centroid = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - centroid, full_matrices=False)
    n = vt[2] if vt[2][1] > 0 else -vt[2]
    return n, float(-n @ centroid)


def _remove_walls(points: np.ndarray, up: np.ndarray, rng: np.random.Generator,
                  max_walls: int = 4, iterations: int = 200) -> np.ndarray:
    """Mask of points NOT on large vertical planes (their long stretches, see _long_runs)."""
    keep = np.ones(len(points), bool)
    tried = np.zeros(len(points), bool)
    total = len(points)
    for _ in range(max_walls):
        rest = points[keep & ~tried]
        if len(rest) < MIN_POINTS:
            break
        normals, offsets = _fit_planes(rest, rng, iterations)
        vertical = np.abs(normals @ up) < 0.1
        if not np.any(vertical):
            break
        normals, offsets = normals[vertical], offsets[vertical]
        support = (np.abs(rest @ normals.T + offsets) < WALL_TOL_M).sum(axis=0)
        best = int(np.argmax(support))
        if support[best] < MIN_WALL_SHARE * total:
            break
        on = np.nonzero(keep & ~tried & (np.abs(points @ normals[best] + offsets[best]) < WALL_TOL_M))[0]
        across = np.cross(normals[best], up)
        wall = _long_runs(points[on] @ (across / np.linalg.norm(across)))
        keep[on[wall]] = False
        tried[on[~wall]] = True   # kept, but not offered to the next plane fit again
    return keep


def _long_runs(across: np.ndarray) -> np.ndarray:
    """Mask of the positions (along a plane, m) that lie in runs at least WALL_MIN_RUN_M long
    with no gap wider than WALL_GAP_M."""
    order = np.argsort(across)
    s = across[order]
    run = np.concatenate([[0], np.cumsum(np.diff(s) > WALL_GAP_M)])
    starts, ends = np.full(run[-1] + 1, np.inf), np.full(run[-1] + 1, -np.inf)
    np.minimum.at(starts, run, s)
    np.maximum.at(ends, run, s)
    mask = np.empty(len(s), bool)
    mask[order] = (ends - starts)[run] >= WALL_MIN_RUN_M
    return mask


def _floor_in_view(point: np.ndarray, intrinsics: Intrinsics) -> bool:
    """Whether a camera-frame floor point is in front of the camera and above the image's bottom edge."""
    _, v, in_front = project(point, intrinsics)
    return bool(in_front and v < intrinsics.height)


def boxes_from_depth(depth: np.ndarray, intrinsics: Intrinsics, stride: int = 3,
                     seed: int = 0, height_range: tuple[float, float] = HEIGHT_RANGE_M,
                     width_range: tuple[float, float] = WIDTH_RANGE_M, max_top: float = MAX_TOP_M,
                     cut_floating: float = FLOATING_M) -> list[Box3D]:
    """Loudspeaker-sized objects standing on the floor, as camera-frame boxes, left to right
    (descending azimuth, the bbox-id order of the release). The size limits are the
    loudspeakers' unless given (the person detectors ask for person-sized objects).
    `cut_floating` (> FLOATING_M) also keeps a blob whose lowest visible point is up to this
    high when the floor at its front lies below the image's bottom edge: a person standing
    1.3 m from the camera shows nothing below her thighs, she is not a table top."""
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"depth must be a non-empty 2-D image, got shape {d.shape}")
    pts = backproject(d, intrinsics)[::stride, ::stride].reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1) & (-pts[:, 2] < MAX_DEPTH_M)]
    if len(pts) < MIN_POINTS:
        raise ValueError("depth image has too few valid pixels")
    rng = np.random.default_rng(seed)
    up, offset = find_floor(pts, rng)
    height = pts @ up + offset
    # floor-aligned axes: forward = camera forward projected on the floor, right = forward x up
    fwd = np.array([0.0, 0.0, -1.0]) - up * (-up[2])
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    mask = (height > FLOOR_TOL_M) & (height < max_top)
    mask[mask] &= _remove_walls(pts[mask], up, rng)
    obj = pts[mask]
    if len(obj) < MIN_POINTS:
        return []
    a, b, h = obj @ right, obj @ fwd, height[mask]
    ia = np.floor((a - a.min()) / CELL_M).astype(int)
    ib = np.floor((b - b.min()) / CELL_M).astype(int)
    grid = np.zeros((ia.max() + 1, ib.max() + 1), bool)
    grid[ia, ib] = True
    labels, count = ndimage.label(ndimage.binary_closing(grid, iterations=1) | grid,
                                  structure=np.ones((3, 3), bool))
    boxes = []
    for k in range(1, count + 1):
        sel = labels[ia, ib] == k
        if sel.sum() < MIN_POINTS:
            continue
        pa, pb, ph = a[sel], b[sel], h[sel]
        top = np.percentile(ph, 99)
        width = np.percentile(pa, 98) - np.percentile(pa, 2)
        if not (height_range[0] <= top <= height_range[1] and width_range[0] <= width <= width_range[1]):
            continue
        a0, a1 = np.percentile(pa, 2), np.percentile(pa, 98)
        b0 = np.percentile(pb, 2)
        bottom = np.percentile(ph, 2)
        foot = (a0 + a1) / 2 * right - offset * up + b0 * fwd
        if bottom > FLOATING_M and (bottom > cut_floating or _floor_in_view(foot, intrinsics)):
            continue                              # a table top or shelf, not standing
        if np.hypot((a0 + a1) / 2, b0) > MAX_RANGE_M:
            continue
        depth_extent = max(np.percentile(pb, 98) - b0, 0.9 * width)
        corners_floor = np.array([[x, y, z] for x in (a0, a1) for y in (0.0, top) for z in (b0, b0 + depth_extent)])
        corners = (corners_floor[:, 0:1] * right + (corners_floor[:, 1:2] - offset) * up
                   + corners_floor[:, 2:3] * fwd)
        boxes.append(Box3D.from_points(corners))
    return [boxes[i] for i in azimuth_order(boxes)]
