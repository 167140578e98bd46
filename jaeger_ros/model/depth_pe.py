"""Vision inputs: Qwen2.5-VL-style patch packing and JAEGER's depth 3D position encoding.

The depth PE is added to the vision tower's patch features right before the patch merger.
There the rows are in the tower's window-attention order, so this module also builds
the permutation from raster (row-major patch grid) order to that order.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from jaeger_ros.core.geometry import Intrinsics, backproject

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
"""Normalisation of Qwen2.5-Omni's image processor (CLIP statistics)."""


def patchify(image: np.ndarray, patch_size: int, merge: int, temporal_patch_size: int
             ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 (H, W, 3) RGB -> (gh*gw, 3*tps*ps*ps) normalised patch rows in the processor's
    order (2x2 merge blocks row-major, each block's patches row-major) and grid (1, gh, gw)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {img.shape}")
    h, w = img.shape[:2]
    unit = patch_size * merge
    if h % unit or w % unit:
        raise ValueError(f"image {w}x{h} is not a multiple of patch_size*merge = {unit}")
    x = torch.from_numpy(img.astype(np.float32)).div(255.0)  # a copy: camera frames arrive read-only
    x = (x - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)  # (H, W, 3)
    x = x.permute(2, 0, 1)[None].expand(temporal_patch_size, -1, -1, -1)  # (tps, 3, H, W)
    gh, gw = h // patch_size, w // patch_size
    x = x.reshape(temporal_patch_size, 3, gh // merge, merge, patch_size, gw // merge, merge, patch_size)
    x = x.permute(2, 5, 3, 6, 1, 0, 4, 7)  # (gh/m, gw/m, m, m, 3, tps, ps, ps)
    return x.reshape(gh * gw, -1).contiguous(), (1, gh, gw)


def raster_to_processor_order(gh: int, gw: int, merge: int) -> torch.Tensor:
    """Index array: processor-order row k holds raster patch index [k]."""
    idx = torch.arange(gh * gw).reshape(gh // merge, merge, gw // merge, merge)
    return idx.permute(0, 2, 1, 3).reshape(-1)


def window_index(grid_thw: list[tuple[int, int, int]], window_size: int, patch_size: int,
                 merge: int) -> torch.Tensor:
    """Order of merge blocks inside the vision tower (Qwen2.5-VL window attention): the
    merged grid is cut into windows of window_size/(patch*merge) blocks, visited window by
    window, row-major within each; images follow one another."""
    per_window = max(window_size // merge // patch_size, 1)
    out, offset = [], 0
    for t, h, w in grid_thw:
        lh, lw = h // merge, w // merge
        index = torch.arange(t * lh * lw).reshape(t, lh, lw)
        pad_h, pad_w = (-lh) % per_window, (-lw) % per_window
        padded = F.pad(index, (0, pad_w, 0, pad_h), value=-1)
        nh, nw = (lh + pad_h) // per_window, (lw + pad_w) // per_window
        padded = padded.reshape(t, nh, per_window, nw, per_window).permute(0, 1, 3, 2, 4).reshape(-1)
        out.append(padded[padded >= 0] + offset)
        offset += t * lh * lw
    return torch.cat(out)


def tower_order(grid_thw: list[tuple[int, int, int]], window_size: int, patch_size: int,
                merge: int) -> torch.Tensor:
    """Rows of processor-order patches (all images concatenated) in the order the merger
    sees them: row k of the merger input is processor row [k]."""
    blocks = window_index(grid_thw, window_size, patch_size, merge)
    unit = merge * merge
    return (blocks[:, None] * unit + torch.arange(unit)[None]).reshape(-1)


def pooled_points(depth: np.ndarray, intrinsics: Intrinsics, grid_hw: tuple[int, int]) -> np.ndarray:
    """(gh, gw, 3) mean camera-frame point of each patch cell (metres). Cells with no valid
    depth take the mean of the valid ones, so they land at 0 after centring."""
    pts = backproject(depth, intrinsics)  # (H, W, 3), NaN where invalid
    valid = np.isfinite(pts[..., 2])
    t = torch.from_numpy(np.where(valid[..., None], pts, 0.0)).permute(2, 0, 1)[None].float()
    m = torch.from_numpy(valid.astype(np.float32))[None, None]
    s = F.adaptive_avg_pool2d(t, grid_hw)[0].permute(1, 2, 0).numpy()
    c = F.adaptive_avg_pool2d(m, grid_hw)[0, 0].numpy()
    cells = np.where(c[..., None] > 0, s / np.maximum(c[..., None], 1e-12), np.nan)
    if not np.any(np.isfinite(cells[..., 2])):
        return np.zeros((*grid_hw, 3), dtype=np.float32)
    mean = np.nanmean(cells.reshape(-1, 3), axis=0)
    return np.where(np.isfinite(cells), cells, mean).astype(np.float32)


def sine_pe_3d(points_mm: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(..., 3) coordinates (millimetres) -> (..., dim): floor(dim/3) channels per axis,
    frequencies temperature^(2*(i//2)/n), sin on even and cos on odd channels interleaved,
    zero-padded to dim (as JAEGER's PositionEmbeddingSine3D)."""
    n = dim // 3
    if n < 2:
        raise ValueError(f"dim must be >= 6 for a 3D sinusoidal PE, got {dim}")
    i = torch.arange(n, dtype=torch.float32, device=points_mm.device)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / n)
    pos = points_mm.float()[..., None] / dim_t  # (..., 3, n)
    pe = torch.stack([pos[..., 0::2].sin(), pos[..., 1::2].cos()], dim=-1).flatten(-2)  # (..., 3, n)
    pe = pe.flatten(-2)
    return F.pad(pe, (0, dim - pe.shape[-1]))


def depth_pe(depth: np.ndarray, intrinsics: Intrinsics, grid_hw: tuple[int, int], dim: int,
             centred: bool = True) -> torch.Tensor:
    """(gh*gw, dim) raster-order PE of a depth map (metres) at the model's resolution:
    back-project, average per patch, centre on the mean (JAEGER; `centred=False` keeps the
    camera-frame coordinates, so the PE says where each patch is, not only where it is
    relative to the rest of the scene), millimetres rounded, 3D sine PE."""
    pts = pooled_points(depth, intrinsics, grid_hw).reshape(-1, 3)
    if centred:
        pts = pts - pts.mean(axis=0)
    return sine_pe_3d(torch.from_numpy(np.round(pts * 1000.0)), dim)


def grid_for(image_size: tuple[int, int], patch_size: int, merge: int) -> tuple[int, int]:
    """(gh, gw) patch grid of a (width, height) input, checking divisibility."""
    w, h = image_size
    unit = patch_size * merge
    if w % unit or h % unit:
        raise ValueError(f"image_size {w}x{h} must be a multiple of {unit} (patch {patch_size} x merge {merge})")
    return h // patch_size, w // patch_size


def merged_tokens(grid_hw: tuple[int, int], merge: int) -> int:
    return math.prod(grid_hw) // (merge * merge)


RELEASE_DEPTH_SIZE = (672, 378)
"""(width, height) of the point cloud the release pools onto the patch grid."""


def release_depth_pe(depth: np.ndarray, intrinsics: Intrinsics, grid_hw: tuple[int, int], dim: int) -> torch.Tensor:
    """The release's depth PE, for its checkpoints only: the point cloud at 672x378 (nearest
    resize), rounded to bf16 as its inference feeds it, plain average-pooled to the patch
    grid, centred, millimetres rounded, 3D sine PE; rows in RASTER order. The release puts
    this sequence through the patch order unchanged, so processor-order patch j receives the
    PE of raster cell j (see pe_rows_for_patches) where our models map each patch its own."""
    from PIL import Image

    w, h = RELEASE_DEPTH_SIZE
    d = np.asarray(depth, dtype=np.float32)
    small = np.asarray(Image.fromarray(d).resize((w, h), Image.NEAREST))
    pts = backproject(small, intrinsics.scaled(w, h))
    if not np.all(np.isfinite(pts)):
        pts = np.where(np.isfinite(pts), pts, 0.0)  # the release's clouds have no holes (8-bit depth)
    cloud = torch.from_numpy(pts.astype(np.float32)).to(torch.bfloat16).float()  # (h, w, 3)
    pooled = F.adaptive_avg_pool2d(cloud.permute(2, 0, 1)[None], grid_hw)[0]  # (3, gh, gw)
    centred = (pooled - pooled.reshape(3, -1).mean(1)[:, None, None]) / 0.001
    return sine_pe_3d(centred.round().permute(1, 2, 0).reshape(-1, 3), dim)


def pe_rows_for_patches(gh: int, gw: int, merge: int, release: bool = False) -> torch.Tensor:
    """Raster cell whose PE each processor-order patch receives: the cell it covers (ours),
    or, with release=True, raster cell j for patch j whatever it covers (the release's order,
    a documented defect reproduced only to run its checkpoints)."""
    return torch.arange(gh * gw) if release else raster_to_processor_order(gh, gw, merge)
