"""Mesh-world catalogue and scene sampling: categories, licences, disjoint deterministic splits
of models, rooms and textures, placement without intersections, determinism for a seed.
Skipped where the furniture package or pyrender is missing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sim_bridge.mesh import catalogue

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")


def test_catalogue_categories_licences_and_splits():
    cat = catalogue.load_catalogue()
    assert len(cat) > 300
    ids = [m.model_id for m in cat]
    assert len(ids) == len(set(ids))
    assert {m.licence for m in cat} <= {"CC0-1.0", "CC-BY-3.0", "CC-BY-3.0-US"}
    assert all(m.creator or m.licence == "CC0-1.0" for m in cat)
    by = {(m.category, m.split) for m in cat}
    for kind in ("sofa", "table", "chair", "plant", "lamp", "person", "tv", "box", "bin"):
        for split in catalogue.SPLITS:  # every distractor kind is seen unseen at val and test
            assert (kind, split) in by, (kind, split)
    assert {m.name for m in cat if m.category == "loudspeaker"} == {"Speaker"}
    # the rule: per category, the last by hash is test and the one before it val (3 or more)
    for kind in catalogue.SEMANTIC_CATEGORIES:
        members = sorted((m for m in cat if m.category == kind), key=lambda m: catalogue._rank_key(m.model_id))
        if len(members) >= 3:
            assert (members[-1].split, members[-2].split) == ("test", "val")


def test_classify_by_name():
    assert catalogue.classify("Speaker", "Miscellaneous") == ("loudspeaker", "wood")
    assert catalogue.classify("Corner sofa", "Living room")[0] == "sofa"
    assert catalogue.classify("TV stand", "Living room")[0] == "cabinet"
    assert catalogue.classify("Sitting female", "Characters") == ("person", "human")
    assert catalogue.classify("Dog", "Characters") is None
    assert catalogue.classify("Palm tree", "Exterior") is None


def test_model_is_scaled_to_its_catalogue_size():
    m = catalogue.models("train", "loudspeaker")[0]
    mesh = catalogue.load_model(m)
    lo, hi = mesh.bounds()
    np.testing.assert_allclose(hi - lo, m.size_m, atol=1e-6)
    np.testing.assert_allclose([lo[1], (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2], 0.0, atol=1e-6)


pyrender = pytest.importorskip("pyrender")

from jaeger_ros.core.geometry import Intrinsics  # noqa: E402
from sim_bridge.mesh.scene import TEXTURE_SPLITS, MeshScene, sample_mesh_scene  # noqa: E402
from sim_bridge.scene import rect_distance  # noqa: E402

INTR = Intrinsics.from_hfov(224, 126, 90.0)


@pytest.fixture(scope="module")
def scenes():
    return {split: [sample_mesh_scene(np.random.default_rng(s), split, 2, INTR, f"{split}/{s}") for s in (1, 2)]
            for split in catalogue.SPLITS}


def test_deterministic_for_a_seed(scenes):
    again = sample_mesh_scene(np.random.default_rng(1), "train", 2, INTR, "train/1")
    assert json.dumps(again.to_dict()) == json.dumps(scenes["train"][0].to_dict())
    back = MeshScene.from_dict(json.loads(json.dumps(again.to_dict())))
    assert json.dumps(back.to_dict()) == json.dumps(again.to_dict())


def test_splits_share_no_models_rooms_or_textures(scenes):
    split_of = {m.model_id: m.split for m in catalogue.load_catalogue()}
    for split, group in scenes.items():
        for s in group:
            assert all(split_of[a] == split for a in s.assets()), (split, s.assets())
            assert s.shell.floor_texture in TEXTURE_SPLITS[split] and s.shell.wall_texture in TEXTURE_SPLITS[split]
    rooms = [tuple(np.round(np.asarray(s.shell.rects).ravel(), 6)) for g in scenes.values() for s in g]
    assert len(set(rooms)) == len(rooms)
    assert not set.intersection(*(set(TEXTURE_SPLITS[k]) for k in catalogue.SPLITS))


def test_placement_rules(scenes):
    for group in scenes.values():
        for s in group:
            fps = [o.footprint() for o in s.objects if o.position[1] == 0.0 and o.category != "stand"]
            for spk in s.loudspeakers:
                fp = spk.footprint()
                assert s.shell.wall_clearance(fp) >= 0.5
                assert all(rect_distance(fp, o) >= 0.29 for o in fps)
            for o in s.objects:
                assert s.shell.wall_clearance(o.footprint()) >= 0.0, o
            ids = [o.instance_id for o in s.objects]
            assert ids == list(range(len(s.loudspeakers) + 1, len(s.loudspeakers) + 1 + len(ids)))
            assert 1 <= len(s.loudspeakers) <= 4
