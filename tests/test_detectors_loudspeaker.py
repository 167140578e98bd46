"""The loudspeaker crop classifier: its shipped checkpoint loads weights-only, crops carry the
blob's metric geometry, and on unseen test-split renders it keeps the loudspeakers and drops
the furniture."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jaeger_ros.core.geometry import Box3D, Intrinsics, box_iou_3d
from jaeger_ros.detectors.candidates import LOUDSPEAKER, CandidateDetector
from jaeger_ros.detectors.loudspeaker import CHECKPOINT, CROP, LoudspeakerClassifier, blob_crop, furniture_boxes

pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason="no loudspeaker checkpoint shipped")


def test_checkpoint_is_a_plain_state_dict_loaded_weights_only():
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert sum(v.numel() for v in state.values()) < 100_000   # small enough for every frame
    LoudspeakerClassifier()


def test_crop_holds_the_blob_and_its_geometry():
    """A 0.3 x 0.9 x 0.3 m box 2.5 m ahead in front of a wall at 4 m: the crop's depth channel is
    0 (the blob's own median depth) at its centre, and the geometry is (size, distance)."""
    intr = Intrinsics.from_hfov(640, 480)
    box = Box3D([0.0, -0.4, -2.65], [0.3, 0.9, 0.3])
    depth = np.full((480, 640), 4.0, np.float32)
    # the box's front face (2.5 m) in pixels: u = cx + fx x / d, v = cy - fy y / d
    u0, u1 = int(320 - 320 * 0.15 / 2.5), int(320 + 320 * 0.15 / 2.5)
    v0, v1 = int(240 + 320 * -0.05 / 2.5), int(240 + 320 * 0.85 / 2.5)
    depth[v0:v1, u0:u1] = 2.5
    rgb = np.zeros((480, 640, 3), np.uint8)
    x, geom = blob_crop(rgb, depth, box, intr)
    assert x.shape == (4, CROP, CROP)
    assert x[3, CROP // 2, CROP // 2] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(geom[:3], [0.3, 0.9, 0.3], atol=1e-6)
    assert geom[3] == pytest.approx(np.hypot(0.4, 2.65), abs=1e-5)


def test_unseen_renders_keep_loudspeakers_and_drop_furniture():
    """Ten test-split scenes (rooms and loudspeaker shapes never trained on): the classifier
    keeps most blobs that are loudspeakers and scores most furniture in view below 0.5."""
    from sim_bridge.render import render
    from sim_bridge.scene import sample_scene
    intr = Intrinsics.from_hfov(640, 480)
    detector = CandidateDetector(loudspeakers=LoudspeakerClassifier())
    classifier = detector.loudspeakers
    kept = truth_count = furniture_low = furniture_count = 0
    for seed in range(500, 510):
        scene = sample_scene(np.random.default_rng(seed), "test", 2, intr)
        frame = render(scene, intr)
        found = detector(frame.rgb, frame.depth, intr)
        truth = scene.loudspeaker_boxes_camera()
        truth_count += len(truth)
        kept += sum(max([box_iou_3d(t, c.box) for c in found if c.category == LOUDSPEAKER], default=0.0) > 0.25
                    for t in truth)
        others = [b for b in furniture_boxes(scene, intr, frame.depth)
                  if max(box_iou_3d(b, t) for t in truth) < 0.05]
        furniture_count += len(others)
        furniture_low += int((classifier(frame.rgb, frame.depth, intr, others) < 0.5).sum())
    assert kept / truth_count >= 0.8, (kept, truth_count)
    assert furniture_count >= 5 and furniture_low / furniture_count >= 0.8, (furniture_low, furniture_count)
