"""Procedural loudspeaker shapes: split, determinism, variety, sizes like the official boxes."""
import numpy as np
import pytest

from sim_bridge.loudspeakers import (NUM_SHAPES, SPLITS, Part, make_shape, shape_ids, shape_split)

ALL = [make_shape(i) for i in range(NUM_SHAPES)]


def geometry_signature(shape) -> tuple:
    return tuple((p.kind, *np.round(p.center, 4), *np.round(p.size, 4)) for p in shape.parts)


def test_split_sizes_are_96_12_12_disjoint_and_complete():
    ids = {s: shape_ids(s) for s in SPLITS}
    assert [len(ids[s]) for s in SPLITS] == [96, 12, 12]
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])
    assert sorted(sum(ids.values(), [])) == list(range(NUM_SHAPES))
    for s in SPLITS:
        assert all(shape_split(i) == s for i in ids[s])
    # A permutation, not contiguous blocks: every split reaches across the id range.
    assert max(ids["test"]) - min(ids["test"]) > 60


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match="split"):
        shape_ids("dev")
    with pytest.raises(ValueError, match="shape_id"):
        shape_split(NUM_SHAPES)
    with pytest.raises(ValueError, match="shape_id"):
        make_shape(-1)


def test_shapes_are_deterministic():
    for i in (0, 57, 119):
        assert make_shape(i) == ALL[i]
        assert geometry_signature(make_shape(i)) == geometry_signature(ALL[i])


def test_all_120_shapes_have_distinct_geometry():
    assert len({geometry_signature(s) for s in ALL}) == NUM_SHAPES
    # Not only sizes differ: the part structure varies too.
    assert len({tuple(p.role for p in s.parts) for s in ALL}) > 40
    assert {s.style for s in ALL} == {"tower", "tapered", "rounded", "stand"}


def test_sizes_follow_the_official_box_statistics():
    sizes = np.array([s.size for s in ALL])
    assert np.all(sizes[:, 0] >= 0.2) and np.all(sizes[:, 0] <= 0.58)
    assert np.all(sizes[:, 1] >= 0.6) and np.all(sizes[:, 1] <= 0.88)
    assert np.all(sizes[:, 2] >= 0.2) and np.all(sizes[:, 2] <= 0.58)
    median = np.median(sizes, axis=0)
    np.testing.assert_allclose(median, [0.35, 0.66, 0.36], atol=0.04)
    assert np.ptp(sizes[:, 0]) > 0.25 and np.ptp(sizes[:, 1]) > 0.2 and np.ptp(sizes[:, 2]) > 0.25


def test_local_frame_origin_is_the_floor_centre_and_front_is_plus_z():
    for s in ALL:
        lo, hi = s.bounds
        assert abs(lo[1]) < 1e-9  # stands on the floor
        assert abs(lo[0] + hi[0]) < 1e-9  # centred in x
        drivers = [p for p in s.parts if p.role in ("driver", "tweeter")]
        assert drivers and all(p.center[2] > 0 for p in drivers)  # drivers on the front face
        assert all(p.kind == "cylinder_z" for p in drivers)


def test_acoustic_centre_is_the_main_drivers_front_centre():
    for s in ALL:
        main = s.parts[s.main_driver]
        assert main.role == "driver" and main.texture == "driver"
        ac = s.acoustic_center_local
        lo, hi = s.bounds
        assert np.all(ac >= lo) and np.all(ac <= hi)
        assert ac[2] == pytest.approx(main.center[2] + main.size[2] / 2)
        assert 0.2 < ac[1] < 0.85
        # The main driver is the largest cone driver.
        cones = [p for p in s.parts if p.texture == "driver"]
        assert main.size[0] >= max(p.size[0] for p in cones) * 0.89


def test_loudspeakers_are_not_one_flat_colour():
    for s in ALL:
        colours = {tuple(np.round(c, 3)) for c in s.colors}
        assert len(colours) >= 3
        assert s.colors.shape == (len(s.parts), 3)
        assert {"driver", "grille"} & {p.texture for p in s.parts}
    assert sum("grille" in {p.texture for p in s.parts} for s in ALL) > 15


def test_part_validates_its_fields():
    with pytest.raises(ValueError, match="kind"):
        Part("sphere", (0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="texture"):
        Part("box", (0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.5), "marble")
    with pytest.raises(ValueError, match="size"):
        Part("box", (0, 0, 0), (1, 0, 1), (0.5, 0.5, 0.5))
    cyl = Part("cylinder_y", (0, 0.5, 0), (0.2, 1.0, 0.2), (0.5, 0.5, 0.5))
    np.testing.assert_allclose(cyl.half_extents, [0.1, 0.1, 0.5])
    np.testing.assert_allclose(cyl.frame @ [0, 0, 1], [0, 1, 0])  # cylinder axis -> local y
    assert np.linalg.det(cyl.frame) == pytest.approx(1.0)
