"""`jaeger dataset generate --world mesh`: the same seed writes the same bytes, FOA and noise
included (in fresh worker processes, where str hashes and object ids differ), metadata records
the engines and source models, and the splits share no models, rooms or textures. Skipped
without pyrender or the furniture package."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyrender")

from jaeger_ros.data.dataset import generate, load_sample  # noqa: E402
from sim_bridge.mesh import catalogue  # noqa: E402
from sim_bridge.mesh.acoustics_rlr import engine  # noqa: E402
from sim_bridge.mesh.scene import TEXTURE_SPLITS  # noqa: E402

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")
RES = (224, 126)


def _gen(root: Path, split: str, seed: int) -> Path:
    generate(root, split, 1, seed=seed, tasks=["D"], workers=2, resolution=RES, progress=False,
             conditions="realistic", world="mesh")  # 2 workers: spawned processes, one sample each
    return root / split / "task1_00000"


def test_generation_is_deterministic_and_recorded(tmp_path):
    a, b = _gen(tmp_path / "a", "test", 7), _gen(tmp_path / "b", "test", 7)
    for name in ("rgb.png", "depth.png", "depth_mm.png", "mask.png", "ir.npy", "metadata.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # the samples, not the bytes: libsndfile stamps a float wav's PEAK chunk with the time
    np.testing.assert_array_equal(load_sample(a).foa(), load_sample(b).foa())
    meta = json.loads((a / "metadata.json").read_text())
    world = meta["world"]
    assert (world["name"], world["render"], world["acoustics"]) == ("mesh", "pyrender", engine("rlr"))
    models = {o["source"] for o in meta["scene"]["objects"] if o["source"] != "box"}
    models |= {s["source"] for s in meta["scene"]["loudspeakers"] if not s["source"].startswith("procedural:")}
    assert world["assets"] == sorted(models)
    mask = load_sample(a).instance_mask()
    assert sorted(np.unique(mask[mask > 0])) == list(range(1, len(meta["boxes"]) + 1))


def test_splits_share_no_models_rooms_or_textures(tmp_path):
    split_of = {m.model_id: m.split for m in catalogue.load_catalogue()}
    rooms = []
    for split in catalogue.SPLITS:
        meta = json.loads((_gen(tmp_path, split, 3) / "metadata.json").read_text())
        assert all(split_of[m] == split for m in meta["world"]["assets"]), meta["world"]["assets"]
        shell = meta["scene"]["shell"]
        assert shell["floor_texture"] in TEXTURE_SPLITS[split] and shell["wall_texture"] in TEXTURE_SPLITS[split]
        rooms.append(json.dumps(shell["rects"]))
    assert len(set(rooms)) == 3


def test_cli_without_the_furniture_package_is_one_line(tmp_path, monkeypatch, capsys):
    """No models installed (an empty furniture folder): the CLI exits non-zero with one line
    naming the package, before any work."""
    from jaeger_ros.cli import main

    monkeypatch.setattr(catalogue, "FURNITURE_DIR", tmp_path / "none")
    catalogue.load_catalogue.cache_clear()
    try:
        code = main(["dataset", "generate", "--out", str(tmp_path / "d"), "--split", "test", "--num", "1",
                     "--tasks", "D", "--world", "mesh"])
    finally:
        monkeypatch.undo()
        catalogue.load_catalogue.cache_clear()
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "sweethome3d-furniture" in err
    assert not (tmp_path / "d").exists()
