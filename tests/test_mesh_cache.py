"""The parsed-model disk cache of the mesh world's catalogue: a second process gets the same
parts without parsing the OBJ, a damaged cache file is parsed again and replaced, and
JAEGER_MODEL_CACHE=off writes nothing. Skipped without trimesh or the furniture package."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trimesh")

from sim_bridge.mesh import catalogue  # noqa: E402

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")


def _textured_model() -> catalogue.CatalogueModel:
    """The first catalogue model with a texture image (the part a cache could most easily lose)."""
    for model in catalogue.load_catalogue():
        try:
            parts = catalogue._parse_model(model, catalogue.FURNITURE_DIR)
        except Exception:
            continue
        if any(getattr(getattr(p.visual, "material", None), "image", None) is not None for p in parts):
            return model
    pytest.skip("no textured model in the catalogue")


def _same_parts(a: list, b: list) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.vertices, q.vertices)
        np.testing.assert_array_equal(p.faces, q.faces)
        assert type(p.visual) is type(q.visual)
        if getattr(p.visual, "uv", None) is not None:
            np.testing.assert_array_equal(p.visual.uv, q.visual.uv)
        img_p = getattr(getattr(p.visual, "material", None), "image", None)
        img_q = getattr(getattr(q.visual, "material", None), "image", None)
        assert (img_p is None) == (img_q is None)
        if img_p is not None:
            assert img_p.tobytes() == img_q.tobytes()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JAEGER_MODEL_CACHE", str(tmp_path / "cache"))
    catalogue.load_model.cache_clear()
    yield tmp_path / "cache"
    catalogue.load_model.cache_clear()


def test_a_second_process_reads_the_parsed_model_from_disk(cache_dir, monkeypatch):
    model = _textured_model()
    fresh = catalogue._parse_model(model, catalogue.FURNITURE_DIR)
    first = catalogue.load_model(model).parts
    assert len(list(cache_dir.glob("*.pkl"))) == 1
    _same_parts(first, fresh)
    catalogue.load_model.cache_clear()  # what a new process starts with

    def no_parse(*args: object) -> None:
        raise AssertionError("parsed although the disk cache holds the model")

    monkeypatch.setattr(catalogue, "_parse_model", no_parse)
    _same_parts(catalogue.load_model(model).parts, fresh)


def test_a_damaged_cache_file_is_parsed_again_and_replaced(cache_dir):
    model = _textured_model()
    catalogue.load_model(model)
    (path,) = cache_dir.glob("*.pkl")
    path.write_bytes(b"not a pickle")
    catalogue.load_model.cache_clear()
    _same_parts(catalogue.load_model(model).parts, catalogue._parse_model(model, catalogue.FURNITURE_DIR))
    assert path.read_bytes() != b"not a pickle"


def test_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("JAEGER_MODEL_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    catalogue.load_model.cache_clear()
    try:
        assert catalogue.model_cache_dir() is None
        catalogue.load_model(_textured_model())
    finally:
        catalogue.load_model.cache_clear()
    assert not any(tmp_path.rglob("*.pkl"))
