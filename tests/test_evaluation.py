"""Evaluation end to end: generated data -> classical method -> report.json/md + plots."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from jaeger_ros.classical.method import ClassicalMethod
from jaeger_ros.data.dataset import generate
from jaeger_ros.data.evaluation import azimuth_polar_figure, evaluate, format_table

KEYS = {"A": {"n", "az_median", "el_median", "gc_median", "az_mean", "el_mean"},
        "C": {"n", "iou_mean", "iou_median", "offset_mean", "offset_median"},
        "D": {"n", "accuracy"}}
KEYS["B"], KEYS["E"] = KEYS["A"], KEYS["D"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(root, "test", 4, seed=11, tasks="ABCDE", resolution=(448, 252), progress=False)
    return root


@pytest.fixture(scope="module")
def report(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return evaluate(ClassicalMethod(), data_root, "test", out_dir=out, progress=False), out


def test_report_has_the_documented_shape(report):
    rep, out = report
    assert rep["method"] == "classical" and rep["split"] == "test"
    assert set(rep["tasks"]) == set("ABCDE")
    for letter, keys in KEYS.items():
        assert keys <= set(rep["tasks"][letter]), letter
        assert rep["tasks"][letter]["n"] >= 4
    assert json.loads((out / "report.json").read_text())["tasks"].keys() == rep["tasks"].keys()
    assert "classical" in (out / "report.md").read_text()


def test_classical_figures_are_sane_on_simulated_data(report):
    rep, _ = report
    assert rep["tasks"]["A"]["az_median"] < 5.0      # single source: onset intensity DoA
    assert rep["tasks"]["D"]["accuracy"] >= 75.0     # oracle boxes + DoA
    assert 0.0 <= rep["tasks"]["C"]["iou_mean"] <= 1.0


def test_plots_are_real_images(report):
    _, out = report
    names = {p.name for p in out.glob("*.png")}
    assert {"doa_errors_A.png", "azimuth_polar_A.png", "grounding_iou.png", "matching_confusion_D.png"} <= names
    for p in out.glob("*.png"):
        img = np.asarray(Image.open(p))
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0


def test_table_lists_methods_side_by_side(report):
    rep, _ = report
    other = {**rep, "method": "other", "tasks": {"D": {"n": 3, "accuracy": 12.5}}}
    table = format_table([rep, other])
    lines = table.splitlines()
    assert lines[0].startswith("method") and "match 1-spk %" in lines[0]
    row = next(line for line in lines if line.startswith("other "))
    assert "12.5" in row and row.count("–") == 9        # only D is filled in
    assert any(line.startswith("paper: JAEGER Neural IV") for line in lines)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        evaluate(ClassicalMethod(), tmp_path, "test", progress=False)


def test_azimuth_polar_plot_follows_the_readme_convention():
    """0 = forward at the top, positive = left (counter-clockwise), labels -180..180, every
    marker in the legend, both coordinates named."""
    import matplotlib.pyplot as plt

    fig = azimuth_polar_figure("A", np.array([0.0, 90.0, -90.0, 170.0]), np.array([10.0, 80.0, -95.0, -170.0]), 1)
    ax = fig.axes[0]
    fig.canvas.draw()
    centre = ax.transAxes.transform((0.5, 0.5))
    r = ax.get_rmax()
    for az, side in ((0.0, "top"), (90.0, "left"), (-90.0, "right"), (180.0, "bottom")):
        x, y = ax.transData.transform((np.radians(az), r)) - centre
        assert {"top": y > abs(x), "left": -x > abs(y), "right": x > abs(y), "bottom": -y > abs(x)}[side], az
    where = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    assert set(where) == {"-150°", "-120°", "-90°", "-60°", "-30°", "0°", "+30°", "+60°", "+90°", "+120°",
                          "+150°", "180°"}
    assert np.isclose(where["+90°"] % (2 * np.pi), np.radians(90)) and np.isclose(where["-90°"], np.radians(270))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("true" in t for t in legend) and any("predicted" in t for t in legend) and any("error" in t for t in legend)
    assert "azimuth" in ax.get_xlabel() and "radius: sample" in ax.get_xlabel()
    assert "1 unparsed" in ax.get_title()
    plt.close(fig)


class _Scripted:
    """A method that 'generates' fixed raw texts (stands for a model's generations, which the
    official parser must read as the authors' scorer does); its answer is the raw text."""

    name = "scripted"
    tasks = frozenset("AD")

    def __init__(self, texts: dict[str, list[str]]) -> None:
        self.texts = {k: list(v) for k, v in texts.items()}
        self.last_raw_text: str | None = None

    def answer(self, sample, entry) -> str:
        self.last_raw_text = self.texts[entry.letter].pop(0)
        return self.last_raw_text


def test_the_official_parser_scores_raw_generations_as_the_authors(data_root, tmp_path):
    from jaeger_ros.data.dataset import find_manifests, read_manifest

    a = sorted(read_manifest(find_manifests(data_root, "test")["A"]), key=lambda e: e.path)
    d = sorted(read_manifest(find_manifests(data_root, "test")["D"]), key=lambda e: e.path)
    doa = ["azimuth: 185; elevation: 3", "azimuth is about 30; elevation: 2"] + ["no answer"] * (len(a) - 2)
    match = [f" {d[0].text.lower()}. ", f"The {d[1].text} one"] + ["Unknown"] * (len(d) - 2)
    reports = {}
    for parser in ("official", "lenient"):
        reports[parser] = evaluate(_Scripted({"A": doa, "D": match}), data_root, "test", tasks="AD",
                                   out_dir=tmp_path / parser, progress=False, parser=parser)
    off, len_ = reports["official"], reports["lenient"]
    truth = [float(v) for v in re.findall(r"-?\d+", a[0].text)]
    vec = [np.array([np.cos(np.radians(el)) * np.cos(np.radians(az)), np.cos(np.radians(el)) * np.sin(np.radians(az)),
                     np.sin(np.radians(el))]) for az, el in ((185.0, 3.0), truth)]
    want = float(np.degrees(np.arccos(np.clip(vec[0] @ vec[1], -1, 1))))
    assert off["official"]["A"]["n_parsed"] == 1 and off["official"]["A"]["gc_mean"] == pytest.approx(want)
    assert len_["official"]["A"]["n_parsed"] == 1 and len_["official"]["A"]["gc_mean"] != pytest.approx(want)
    assert off["tasks"]["D"]["accuracy"] == pytest.approx(100.0 / len(d))  # only the exact label counts
    assert len_["tasks"]["D"]["accuracy"] == pytest.approx(200.0 / len(d))
    recs = [json.loads(line) for line in (tmp_path / "official" / "predictions.jsonl").read_text().splitlines()]
    first = next(r for r in recs if r["key"] == "A" and r["path"] == a[0].path)
    assert first["raw_output"] == first["pred_text"] == doa[0] and first["pred_az"] == 185.0
    assert all(r["category"] == "" for r in recs)


def test_shards_follow_the_launcher_and_take_sorted_paths_rank_by_rank(monkeypatch, tmp_path):
    from pathlib import Path

    from jaeger_ros.data.dataset import ManifestEntry
    from jaeger_ros.data.evaluation import SHARD_FORMAT, launcher_shard, merge, shard_entries

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert launcher_shard() == (1, 3)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="rank"):
        launcher_shard()
    # two entries share a path (they go to one rank); manifest order is not path order
    paths = ["s/t9", "s/t2", "s/t5", "s/t2", "s/t7", "s/t1"]
    entries = [("D", i, ManifestEntry(p, "single_source", "Left"), Path(p)) for i, p in enumerate(paths)]
    distinct = ["s/t1", "s/t2", "s/t5", "s/t7", "s/t9"]  # sorted by hand
    for rank in range(3):
        got = shard_entries(entries, rank, 3)
        assert sorted({e[2].path for e in got}) == distinct[rank::3]
        assert [e[1] for e in got if e[2].path == "s/t2"] == ([1, 3] if rank == 1 else [])
    # a merge needs every rank of one run
    meta = {"format": SHARD_FORMAT, "method": "m", "data": "d", "split": "test", "parser": "lenient",
            "world_size": 2, "rank": 0, "skipped": [], "items": {}}
    (tmp_path / "shard_rank_0.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"ranks \[1\] of 2 missing"):
        merge(tmp_path)
    (tmp_path / "shard_rank_1.json").write_text(json.dumps({**meta, "rank": 1, "parser": "official"}))
    with pytest.raises(ValueError, match="different runs"):
        merge(tmp_path)


def test_sharded_eval_of_the_tiny_checkpoint_under_the_official_protocol_merges_exactly(data_root, tmp_path):
    """Two real processes (--shard 0/2, 1/2) with the shipped checkpoint and the authors'
    protocol, merged, equal the single-process report; the records carry the model's raw
    generation (with the forced answer prefixes) as raw_output and pred_text."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    common = [sys.executable, "-m", "jaeger_ros.cli", "eval", "--checkpoint", "default", "--protocol", "official",
              "--data", str(data_root), "--tasks", "A,C,D"]
    runs = [subprocess.Popen([*common, "--shard", f"{r}/2", "--out", str(tmp_path / "sharded")], env=env, cwd=repo,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    single = subprocess.run([*common, "--out", str(tmp_path / "single")], env=env, cwd=repo, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    for p in runs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    merged = subprocess.run([*common[:3], "eval", "--merge", str(tmp_path / "sharded")], env=env, cwd=repo,
                            capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr[-2000:]
    one, two = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("single", "sharded"))
    assert one == two and one["parser"] == "official"
    assert (tmp_path / "single" / "predictions.jsonl").read_text() == \
        (tmp_path / "sharded" / "predictions.jsonl").read_text()
    recs = [json.loads(line) for line in (tmp_path / "single" / "predictions.jsonl").read_text().splitlines()]
    assert {r["key"] for r in recs} == {"A", "C", "D"}
    for r in recs:
        assert r["raw_output"] == r["pred_text"] == r["raw_text"] and r["category"] == ""
        prefix = {"A": "azimuth: ", "C": "bbox_0=Bbox(speaker,"}.get(r["key"], "")
        assert r["raw_output"].startswith(prefix)
