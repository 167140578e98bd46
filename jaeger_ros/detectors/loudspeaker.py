"""Loudspeaker or not: a small RGB-D classifier of depth-blob crops.

Why: the depth blobs (jaeger_ros.classical.candidates) are every loudspeaker-sized object
standing on the floor, plants, lamps and armchairs included, and the matcher then grounds the
voice on a plant. No pretrained loudspeaker detector exists, so this one is trained here on
the procedural world's and the mesh world's renders: each blob of a train-split scene is
cropped from the RGB and the depth image and labelled by its 3D overlap with the true
loudspeakers (IoU > 0.25: loudspeaker, < 0.05: not; in between: skipped); crops of the
procedural world's furniture in view add negatives. The network sees the crop's colour, its
depth relative to the blob's median depth, and the blob's metric size and distance. Scenes of
the test split (unseen rooms and loudspeaker shapes or catalogue models) measure it.

Train (the shipped checkpoint: 13 CPU-minutes, most of it rendering; each scene also as the
`realistic` sensing preset degrades it, the sensor the live node sees) and measure:
    python -m jaeger_ros.detectors.loudspeaker train --scenes 300 --mesh-scenes 300 --conditions realistic
    python -m jaeger_ros.detectors.loudspeaker evaluate [--world mesh] [--conditions realistic]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d, project

CROP = 32
CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "loudspeaker_crops" / "model.pt"
POSITIVE_IOU, NEGATIVE_IOU = 0.25, 0.05
DEPTH_SCALE_M = 0.5
THRESHOLD = 0.5


def blob_crop(rgb: np.ndarray, depth: np.ndarray, box: Box3D, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(4, CROP, CROP) float32 input (RGB in [-0.5, 0.5], depth relative to the blob's median in
    units of DEPTH_SCALE_M, clipped to [-1, 1], holes = 1) and (4,) geometry (width, height,
    depth extent, distance in metres) of one blob box."""
    import cv2
    u, v, _ = project(box.corners(), intrinsics)
    h, w = depth.shape
    x0, x1 = int(np.clip(np.floor(u.min()), 0, w - 1)), int(np.clip(np.ceil(u.max()), 1, w))
    y0, y1 = int(np.clip(np.floor(v.min()), 0, h - 1)), int(np.clip(np.ceil(v.max()), 1, h))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    sy, sx = rgb.shape[0] / h, rgb.shape[1] / w
    colour = rgb[int(y0 * sy):max(int(y1 * sy), int(y0 * sy) + 1), int(x0 * sx):max(int(x1 * sx), int(x0 * sx) + 1), :3]
    colour = cv2.resize(np.ascontiguousarray(colour), (CROP, CROP), interpolation=cv2.INTER_AREA)
    d = depth[y0:y1, x0:x1].astype(np.float32)
    valid = np.isfinite(d) & (d > 0)
    ref = float(np.median(d[valid])) if valid.any() else -box.max[2]
    if valid.any() and not valid.all():
        # a real sensor's holes (dark cloth, depth edges: half of a black loudspeaker) take the
        # nearest valid depth; read as "far" they made the classifier reject half the
        # loudspeakers under `realistic` sensing (14 of 30 kept, 29 of 30 filled; 12 live scenes)
        from scipy.ndimage import distance_transform_edt
        d = d[tuple(distance_transform_edt(~valid, return_distances=False, return_indices=True))]
        valid = np.ones_like(valid)
    rel = np.where(valid, np.clip((d - ref) / DEPTH_SCALE_M, -1.0, 1.0), 1.0).astype(np.float32)
    rel = cv2.resize(rel, (CROP, CROP), interpolation=cv2.INTER_AREA)
    x = np.concatenate([colour.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5, rel[None]], axis=0)
    geom = np.array([box.size[0], box.size[1], box.size[2], float(np.linalg.norm(box.center))], np.float32)
    return x, geom


def _network():
    import torch
    from torch import nn

    class CropNet(nn.Module):
        """Three conv blocks over the 4-channel crop, pooled, joined with the geometry."""

        def __init__(self) -> None:
            super().__init__()
            block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),  # noqa: E731
                                               nn.MaxPool2d(2))
            self.conv = nn.Sequential(block(4, 16), block(16, 32), block(32, 48))
            self.head = nn.Sequential(nn.Linear(48 + 4, 32), nn.ReLU(), nn.Linear(32, 1))

        def forward(self, x: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
            f = self.conv(x).mean(dim=(2, 3))
            return self.head(torch.cat([f, geom], dim=1)).squeeze(1)

    return CropNet()


class LoudspeakerClassifier:
    """The trained crop classifier (the checkpoint is a plain state dict, loaded weights_only)."""

    def __init__(self, checkpoint: str | Path = CHECKPOINT) -> None:
        import torch
        self._torch = torch
        self.model = _network()
        self.model.load_state_dict(torch.load(Path(checkpoint), map_location="cpu", weights_only=True))
        self.model.eval()

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, boxes: list[Box3D]) -> np.ndarray:
        """Probability that each blob box is a loudspeaker."""
        if not boxes:
            return np.zeros(0, np.float32)
        crops = [blob_crop(rgb, depth, b, intrinsics) for b in boxes]
        torch = self._torch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # a few 32x32 crops: 1 ms on one thread, ~100x more on a busy pool
        try:
            with torch.no_grad():
                logits = self.model(torch.from_numpy(np.stack([c[0] for c in crops])),
                                    torch.from_numpy(np.stack([c[1] for c in crops])))
        finally:
            torch.set_num_threads(threads)
        return torch.sigmoid(logits).numpy()


def label_blobs(blobs: list[Box3D], truth: list[Box3D]) -> list[int]:
    """1 loudspeaker, 0 not, -1 ambiguous (skipped in training, a false positive in scoring)."""
    labels = []
    for b in blobs:
        best = max([box_iou_3d(b, t) for t in truth], default=0.0)
        labels.append(1 if best > POSITIVE_IOU else 0 if best < NEGATIVE_IOU else -1)
    return labels


def furniture_boxes(scene, intrinsics: Intrinsics, depth: np.ndarray) -> list[Box3D]:
    """Camera-frame boxes of the floor furniture that is in view and mostly unoccluded: more
    negatives than the blobs alone offer (few distractors pass the blob filter in the
    procedural world, yet plants, armchairs and cabinets are what a blob must be told from)."""
    from jaeger_ros.core.geometry import rotation_y, transform_points
    cam_from_world = scene.camera_from_world()
    boxes = []
    for f in scene.furniture:
        local = (np.array([[(k >> i) & 1 for i in range(3)] for k in range(8)]) - 0.5) * f.size
        corners = transform_points(cam_from_world, local @ rotation_y(f.yaw_deg).T + f.center)
        if corners[:, 2].max() > -0.3:
            continue
        box = Box3D.from_points(corners)
        u, v, _ = project(box.center, intrinsics)
        if not (0 <= u < intrinsics.width and 0 <= v < intrinsics.height):
            continue
        seen = depth[int(v), int(u)]
        if np.isfinite(seen) and abs(seen + box.center[2]) < 0.5 + box.size[2] / 2:
            boxes.append(box)
    return boxes


def _stack(crops: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not crops:
        return np.zeros((0, 4, CROP, CROP), np.float32), np.zeros((0, 4), np.float32)
    return np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops])


def render_blobs(split: str, scenes: int, seed: int, intrinsics: Intrinsics, world: str = "procedural",
                 conditions: str = "") -> list[dict]:
    """Per scene: crops, geometry, labels of its blobs and the number of true loudspeakers;
    also crops of the furniture in view (negatives for training; procedural world only).
    `conditions` (a sim_bridge sensing preset, e.g. realistic): each scene once more as that
    preset degrades it (depth holes and noise, colour noise), the sensor the live node sees."""
    from tqdm import tqdm

    if world == "mesh":
        from sim_bridge.mesh.render_gl import render
        from sim_bridge.mesh.scene import sample_mesh_scene as sample_scene
    else:
        from sim_bridge.render import render
        from sim_bridge.scene import sample_scene
    rng = np.random.default_rng(seed)
    out = []
    for _ in tqdm(range(scenes), desc=f"{world} {split} scenes"):
        scene = sample_scene(rng, split, int(rng.integers(1, 5)), intrinsics)
        frame = render(scene, intrinsics)
        truth = scene.loudspeaker_boxes_camera()
        views = [(frame.rgb, frame.depth)]
        if conditions:
            from sim_bridge import conditions as sensing
            cond = sensing.draw(conditions, rng)
            depth = (sensing.degrade_depth(np.nan_to_num(frame.depth, nan=0.0, posinf=0.0), frame.rgb, cond, rng)
                     if cond.depth_noise_k is not None else frame.depth)
            views.append((sensing.degrade_rgb(frame.rgb, cond, rng), depth))
        for rgb, depth in views:
            try:
                blobs = boxes_from_depth(depth, intrinsics)
            except ValueError:
                blobs = []
            crops = [blob_crop(rgb, depth, b, intrinsics) for b in blobs]
            extra = [blob_crop(rgb, depth, b, intrinsics)
                     for b in (furniture_boxes(scene, intrinsics, frame.depth) if world == "procedural" else [])
                     if max([box_iou_3d(b, t) for t in truth], default=0.0) < NEGATIVE_IOU]
            x, geom = _stack(crops)
            neg_x, neg_geom = _stack(extra)
            out.append({"x": x, "geom": geom, "neg_x": neg_x, "neg_geom": neg_geom,
                        "label": np.array(label_blobs(blobs, truth), int), "truth": len(truth),
                        "found": sum(max([box_iou_3d(t, b) for b in blobs], default=0.0) > POSITIVE_IOU
                                     for t in truth)})
    return out


def train(data: list[dict], epochs: int = 40, seed: int = 0):
    """Adam on the labelled blobs, horizontal flips as augmentation, positives and negatives
    weighted to balance."""
    import torch
    torch.manual_seed(seed)
    x = np.concatenate([d["x"] for d in data] + [d["neg_x"] for d in data])
    g = np.concatenate([d["geom"] for d in data] + [d["neg_geom"] for d in data])
    y = np.concatenate([d["label"] for d in data] + [np.zeros(len(d["neg_x"]), int) for d in data])
    keep = y >= 0
    x, g, y = torch.from_numpy(x[keep]), torch.from_numpy(g[keep]), torch.from_numpy(y[keep].astype(np.float32))
    model = _network()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    pos_weight = torch.tensor(float((y == 0).sum()) / max(float((y == 1).sum()), 1.0))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(64):
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            loss_fn(model(xb, g[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model, {"crops": int(len(y)), "loudspeakers": int(y.sum()), "blob_negatives": int(sum(
        (d["label"] == 0).sum() for d in data)), "furniture_negatives": int(sum(len(d["neg_x"]) for d in data)),
        "epochs": epochs}


def score(data: list[dict], probs: list[np.ndarray] | None, rng: np.random.Generator) -> dict:
    """Candidate precision (kept blobs that are loudspeakers) and recall (true loudspeakers kept)
    with 95 % bootstrap intervals over scenes; probs None scores the blobs alone."""
    tp, kept, truth = [], [], []
    for k, d in enumerate(data):
        keep = np.ones(len(d["label"]), bool) if probs is None else probs[k] >= THRESHOLD
        tp.append(int(((d["label"] == 1) & keep).sum()))
        kept.append(int(keep.sum()))
        truth.append(d["truth"])
    tp, kept, truth = np.array(tp), np.array(kept), np.array(truth)
    draws = rng.integers(0, len(tp), (1000, len(tp)))
    prec = tp[draws].sum(1) / np.maximum(kept[draws].sum(1), 1)
    rec = tp[draws].sum(1) / np.maximum(truth[draws].sum(1), 1)
    ci = lambda v: [round(float(np.percentile(v, 2.5)), 3), round(float(np.percentile(v, 97.5)), 3)]  # noqa: E731
    return {"scenes": len(tp), "loudspeakers": int(truth.sum()), "candidates": int(kept.sum()),
            "precision": round(float(tp.sum() / max(kept.sum(), 1)), 3), "precision_ci95": ci(prec),
            "recall": round(float(tp.sum() / max(truth.sum(), 1)), 3), "recall_ci95": ci(rec)}


def main(argv: list[str] | None = None) -> None:
    import torch
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("train", "evaluate"))
    parser.add_argument("--scenes", type=int, default=0, help="train: 300 train-split scenes; evaluate: 100 test-split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--checkpoint", default=str(CHECKPOINT))
    parser.add_argument("--json", default="", help="evaluate: also write the scores here")
    parser.add_argument("--mesh-scenes", type=int, default=0,
                        help="train: also this many train-split mesh-world scenes (their blobs only)")
    parser.add_argument("--conditions", default="",
                        help="train: also each scene as this sensing preset degrades it (e.g. realistic); "
                             "evaluate: score the degraded scenes only")
    parser.add_argument("--world", choices=("procedural", "mesh"), default="procedural",
                        help="evaluate: the scenes to score on (mesh: catalogue models and distractors, "
                             "never trained on)")
    args = parser.parse_args(argv)
    intr = Intrinsics.from_hfov(640, 480)
    torch.set_num_threads(2)
    if args.action == "train":
        data = render_blobs("train", args.scenes or 300, args.seed, intr, conditions=args.conditions)
        if args.mesh_scenes:
            data += render_blobs("train", args.mesh_scenes, args.seed, intr, "mesh", args.conditions)
        model, info = train(data, args.epochs, args.seed)
        info.update(mesh_scenes=args.mesh_scenes, conditions=args.conditions or "clean")
        Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.checkpoint)
        print(json.dumps(info))
        return
    data = render_blobs("test", args.scenes or 100, args.seed + 1, intr, args.world, args.conditions)
    if args.conditions:
        data = data[1::2]   # the degraded view of each scene
    classifier = LoudspeakerClassifier(args.checkpoint)
    probs = []
    with torch.no_grad():
        for d in data:
            if len(d["label"]):
                p = torch.sigmoid(classifier.model(torch.from_numpy(d["x"]), torch.from_numpy(d["geom"]))).numpy()
            else:
                p = np.zeros(0)
            probs.append(p)
    rng = np.random.default_rng(0)
    report = {"split": "test", "world": args.world, "conditions": args.conditions or "clean", "blobs_alone": score(data, None, rng),
              "classifier": score(data, probs, rng)}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
