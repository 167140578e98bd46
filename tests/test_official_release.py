"""The official release end to end: sample folders fabricated in the release's layout from the
public manifests (paths rewritten into a temporary ROOT, a few entries per task, some folders
missing, some files corrupt, no finished audio) -> `jaeger dataset import-official` with the
speech step -> `jaeger train` (tiny, 2 gloo processes) -> `jaeger eval`; counts, skips,
predictions.jsonl and the official headline against a scorer written here from the
reference's definitions.

The shared copy holds no train manifests of tasks A-C: the train split takes task D's train
manifest and task A's val entries with their split renamed to train (same schema).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from jaeger_ros.data.official import find_official_manifests, local_name, release_path, speech_jobs, utterances
from jaeger_ros.model.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "spatialsceneqa"
PLACEHOLDER = "/path/to/"
PER_TASK = 3
TEST_MANIFESTS = {  # key -> (release sub-folder, file) of the test split
    "A": ("audio-only", "hm3d_av_v2_ls_task1_test.json"), "B": ("audio-only", "hm3d_av_v2_ls_task2_test.json"),
    "C": ("visual-only", "visual_grounding_hm3d_av_v2_speaker_only_test.json"),
    "D": ("audio-visual", "hm3d_av_v2_task1_test.json"), "E": ("audio-visual", "hm3d_av_v2_task2_test.json"),
    "starss23": ("audio-only", "starss23_test.json")}
NEEDS = {"A": "audio", "B": "audio", "starss23": "audio", "C": "vision", "D": "both", "E": "both"}

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="public manifests not available")


def _entries(sub: str, name: str, n: int, rename: tuple[str, str] | None = None) -> list[dict]:
    entries = json.loads((SHARED / f"{sub}__{name}").read_text())["annotation"][:n]
    if rename:
        entries = [{**e, "path": e["path"].replace(f"/{rename[0]}/", f"/{rename[1]}/")} for e in entries]
    return entries


def _write_manifest(man: Path, sub: str, name: str, entries: list[dict]) -> None:
    (man / sub).mkdir(parents=True, exist_ok=True)
    (man / sub / name).write_text(json.dumps({"annotation": entries}))


def _folder(root: Path, manifest_path: str) -> Path:
    assert manifest_path.startswith(PLACEHOLDER)
    return root / manifest_path[len(PLACEHOLDER):]


def _fabricate_hm3d(folder: Path, rng: np.random.Generator) -> None:
    """A release folder: RGB-D, the release's own metadata (in a schema of its own), impulse
    responses and no foa_ls.wav (the release ships none)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (63, 112, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(30, 200, (63, 112), dtype=np.uint8)).save(folder / "depth.png")
    (folder / "metadata.json").write_text(json.dumps({"boxes": "in the release's own schema", "fov": 90}))
    names = ["ir.npy"] if folder.name.startswith("task1") else ["ir_male.npy", "ir_female.npy"]
    for name in names:
        ir = np.zeros((4, 48))
        ir[:, 0] = [1.0, *rng.uniform(-0.6, 0.6, 3)]
        ir[:, 1:] = rng.normal(scale=0.05, size=(4, 47))
        np.save(folder / name, ir.astype(np.float32))


def _librispeech(root: Path, rng: np.random.Generator) -> None:
    """Dry LibriSpeech stand-in: SPEAKERS.TXT and a few short flac utterances per subset."""
    speakers = {"train-clean-100": [("19", "F"), ("26", "M")], "test-clean": [("61", "M"), ("121", "F"), ("237", "F")]}
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for subset, people in speakers.items():
        for sid, sex in people:
            lines.append(f"{sid:<5}| {sex} | {subset:<17}| 10.00 | someone")
            for utt in range(2):
                f = root / subset / sid / "100" / f"{sid}-100-{utt:04d}.flac"
                f.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(f), rng.uniform(-0.3, 0.3, int(16000 * rng.uniform(0.3, 0.5))), 16000)
    (root / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """ROOT (fabricated release), MAN (its manifests), LS (speech), the planned faults."""
    base = tmp_path_factory.mktemp("official")
    root, man, ls = base / "release", base / "manifests", base / "LibriSpeech"
    rng = np.random.default_rng(11)
    per_key = {}
    for key, (sub, name) in TEST_MANIFESTS.items():
        per_key[key] = _entries(sub, name, PER_TASK)
        _write_manifest(man, sub, name, per_key[key])
    train_d = _entries("audio-visual", "hm3d_av_v2_task1_train.json", 4)
    train_a = _entries("audio-only", "hm3d_av_v2_ls_task1_val.json", 4, rename=("val", "train"))
    _write_manifest(man, "audio-visual", "hm3d_av_v2_task1_train.json", train_d)
    _write_manifest(man, "audio-only", "hm3d_av_v2_ls_task1_train.json", train_a)
    hm3d = {e["path"] for es in (*per_key.values(), train_d, train_a) for e in es if "STARSS23" not in e["path"]}
    for path in sorted(hm3d):
        _fabricate_hm3d(_folder(root, path), rng)
    starss = [e["path"] for e in per_key["starss23"]]
    for k, path in enumerate(starss):
        f = _folder(root, path)
        f.parent.mkdir(parents=True, exist_ok=True)
        if k == 0:
            sf.write(str(f), rng.uniform(-0.2, 0.2, 8000), 16000)               # mono: tiled to 4 channels
        elif k == 1:
            sf.write(str(f), rng.uniform(-0.2, 0.2, (8000, 4)), 16000)          # 4 channels
        else:
            f.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")                       # corrupt
    _librispeech(ls, rng)
    # faults: a folder absent, an RGB image truncated, a task-2 folder without its female IR
    missing = {per_key["D"][2]["path"], train_a[1]["path"]}
    for path in missing:
        for f in _folder(root, path).iterdir():
            f.unlink()
        _folder(root, path).rmdir()
    bad_rgb = per_key["C"][0]["path"]
    rgb = _folder(root, bad_rgb) / "rgb.png"
    rgb.write_bytes(rgb.read_bytes()[:60])
    no_ir = per_key["B"][1]["path"]
    (_folder(root, no_ir) / "ir_female.npy").unlink()
    faults = {"missing": missing, "bad_rgb": bad_rgb, "no_ir": no_ir, "bad_wav": starss[2]}
    return {"root": root, "man": man, "ls": ls, "test": per_key, "train": {"A": train_a, "D": train_d},
            "faults": faults, "base": base}


def _expected(release: dict, key: str, path: str) -> str:
    """found / missing / unreadable of one entry, from the planned faults."""
    f = release["faults"]
    if path in f["missing"]:
        return "missing"
    if key == "starss23":
        return "unreadable" if path == f["bad_wav"] else "found"
    if path == f["no_ir"] and NEEDS[key] in ("audio", "both"):
        return "missing"  # the speech step could not write its foa_ls.wav
    if path == f["bad_rgb"] and NEEDS[key] in ("vision", "both"):
        return "unreadable"
    return "found"


def _jaeger(*args: str, timeout: int = 600, torchrun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if torchrun:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
               "-m", "jaeger_ros.cli", *args]
    else:
        cmd = [sys.executable, "-m", "jaeger_ros.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def imported(release):
    data = release["base"] / "DATA"
    proc = _jaeger("dataset", "import-official", "--release", str(release["root"]), "--manifests",
                   str(release["man"]), "--speech-dir", str(release["ls"]), "--out", str(data))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, proc.stdout


def test_import_counts_every_task_and_writes_our_layout(release, imported):
    data, stdout = imported
    report = json.loads((data / "import_report.json").read_text())
    for split, per_key in (("test", release["test"]), ("train", release["train"])):
        for key, entries in per_key.items():
            kinds = [_expected(release, key, e["path"]) for e in entries]
            want = {"entries": len(entries), **{k: kinds.count(k) for k in ("found", "missing", "unreadable")}}
            got = report["splits"][split][key]
            assert {k: got[k] for k in want} == want, (split, key)
            assert (f"{split} {key}: {want['entries']} entries, {want['found']} found, {want['missing']} missing, "
                    f"{want['unreadable']} unreadable") in stdout
            manifest = json.loads((data / split / "manifests" / f"{key}.json").read_text())["annotation"]
            assert [m["text"] for m in manifest] == [e["text"] for e in entries]  # every entry kept
            for m, e in zip(manifest, entries):
                source = release_path(release["root"], e["path"])
                assert m["path"] == local_name(split, key, source)
                assert not Path(m["path"]).is_absolute()
                assert m == {**e, "path": m["path"]}  # the official fields, unchanged
                assert (data / m["path"] / "foa_ls.wav").is_symlink()  # linked, not copied
    assert "speech test: wrote foa_ls.wav in" in stdout and "1 failed" in stdout
    listed = {(p["task"], p["path"]): p["kind"] for p in report["problems"]}
    assert listed[("C", release["faults"]["bad_rgb"])] == "unreadable"
    assert listed[("starss23", release["faults"]["bad_wav"])] == "unreadable"


def test_speech_step_mixes_as_the_authors_tool(release, imported):
    """One task-2 folder recomputed here: cyclic male/female utterances over the sorted
    folders, full convolution (direct, not FFT), sum from t = 0, no normalisation, 16-bit."""
    root = release["root"]
    e = next(e for e in release["test"]["B"] if e["path"] != release["faults"]["no_ir"])
    folder = _folder(root, e["path"])
    lists = utterances(release["ls"], "test")
    assert [p.name for p in lists["M"]] == ["61-100-0000.flac", "61-100-0001.flac"]
    jobs = dict(speech_jobs(folder.parent.parent, lists))
    task2 = sorted((str(p) for p in folder.parent.parent.glob("*/task2*")))
    rank = task2.index(str(folder))
    male, female = lists["M"][rank % 2], lists["F"][rank % 4]
    assert jobs[str(folder)] == [str(male), str(female)]
    wet = []
    for utt, ir_name in ((male, "ir_male.npy"), (female, "ir_female.npy")):
        dry = sf.read(str(utt), dtype="float64")[0]
        ir = np.load(folder / ir_name).astype(np.float64)
        wet.append(np.stack([np.convolve(dry, ch) for ch in ir], axis=1))
    want = np.zeros((max(len(w) for w in wet), 4))
    for w in wet:
        want[:len(w)] += w
    info = sf.info(str(folder / "foa_ls.wav"))
    assert (info.subtype, info.channels, info.samplerate) == ("PCM_16", 4, 16000)
    got = sf.read(str(folder / "foa_ls.wav"), dtype="float64")[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2.0 / 32768)  # 16-bit quantisation


def test_speech_step_gives_task1_folders_a_voice_of_the_manifests_gender(release, imported):
    """Issue 25: each task-1 folder's utterance comes from a speaker whose sex (the fabricated
    SPEAKERS.TXT table) is the task-A manifest's gender; the choice is deterministic."""
    sex = {"19": "F", "26": "M", "61": "M", "121": "F", "237": "F"}  # as _librispeech writes them
    root = release["root"]
    entries = [e for e in release["test"]["A"] if e["path"] not in release["faults"]["missing"]]
    genders = {str(_folder(root, e["path"])): e["gender"] for e in entries}
    lists = utterances(release["ls"], "test")
    roots = {Path(f).parent.parent for f in genders}
    jobs = {f: u for r in roots for f, u in speech_jobs(r, lists, genders)}
    assert jobs == {f: u for r in roots for f, u in speech_jobs(r, lists, genders)}  # deterministic
    assert {g for g in genders.values()} <= {"M", "F"} and len(genders) >= 2
    for folder, gender in genders.items():
        (utt,) = jobs[folder]
        assert sex[Path(utt).name.split("-")[0]] == gender, (folder, utt)
        # the file the import step wrote is that utterance convolved with the folder's IR
        dry = sf.read(utt, dtype="float64")[0]
        ir = np.load(Path(folder) / "ir.npy").astype(np.float64)
        want = np.stack([np.convolve(dry, ch) for ch in ir], axis=1)
        np.testing.assert_allclose(sf.read(str(Path(folder) / "foa_ls.wav"), dtype="float64")[0], want,
                                   atol=2.0 / 32768)


def test_manifest_discovery_reads_both_layouts(release):
    nested = find_official_manifests(release["man"])
    flat = find_official_manifests(SHARED)
    assert set(nested) == {("test", k) for k in TEST_MANIFESTS} | {("train", "A"), ("train", "D")}
    assert ("test", "starss23") in flat and ("train", "D") in flat and ("val", "E") in flat


def _score_independently(predictions: list[dict]) -> dict[str, dict]:
    """The reference's official figures from predictions.jsonl alone."""
    num = r"(-?\d+(?:\.\d+)?)"
    doa_re = re.compile(rf"azimuth:\s*{num};\s*elevation:\s*{num}")
    out: dict[str, dict] = {}
    for key in sorted({p["key"] for p in predictions}):
        items = [p for p in predictions if p["key"] == key]
        if key in ("A", "B", "starss23"):
            errors, failures = [], 0
            for p in items:
                m, t = doa_re.search(p["answer"] or ""), doa_re.fullmatch(p["target"])
                if m is None:
                    failures += 1
                    continue
                vec = [np.array([np.cos(np.radians(float(el))) * np.cos(np.radians(float(az))),
                                 np.cos(np.radians(float(el))) * np.sin(np.radians(float(az))),
                                 np.sin(np.radians(float(el)))]) for az, el in (m.groups(), t.groups())]
                errors.append(np.degrees(np.arccos(np.clip(vec[0] @ vec[1], -1, 1))))
                assert p["angular_error"] == pytest.approx(errors[-1], abs=1e-6)
            out[key] = {"n_unparsed": failures, "gc_mean": float(np.mean(errors)) if errors else None,
                        "gc_median": float(np.median(errors)) if errors else None}
        elif key == "C":
            box_re = re.compile(r"bbox_(\d+)=Bbox\([^,]+" + r",\s*" + r",\s*".join([num] * 6) + r"\)")
            ious = []
            for p in items:
                truth = {int(m.group(1)): [float(v) for v in m.groups()[1:]] for m in box_re.finditer(p["text"])}
                pred = {int(m.group(1)): [float(v) / 100 for v in m.groups()[1:]] for m in box_re.finditer(p["pred_text"])}
                for bid, t in truth.items():
                    q = pred.get(bid)
                    if q is None:
                        ious.append(0.0)
                        continue
                    lo = np.maximum(np.subtract(t[:3], np.divide(t[3:], 2)), np.subtract(q[:3], np.divide(q[3:], 2)))
                    hi = np.minimum(np.add(t[:3], np.divide(t[3:], 2)), np.add(q[:3], np.divide(q[3:], 2)))
                    inter = float(np.prod(np.clip(hi - lo, 0, None)))
                    ious.append(inter / (np.prod(t[3:]) + np.prod(q[3:]) - inter))
            out[key] = {"iou_mean": float(np.mean(ious))}
        else:
            def right(p: dict) -> bool:
                return p["pred_text"].strip().lower().rstrip(".") == p["gt_text"].strip().lower().rstrip(".")
            out[key] = {"accuracy": 100.0 * sum(map(right, items)) / len(items)}
            if key == "E":
                out[key]["by_gender"] = {g: 100.0 * sum(map(right, sub)) / len(sub) for g in ("male", "female")
                                         if (sub := [p for p in items if p["gender"] == g])}
    return out


def test_train_two_processes_then_eval_skips_and_scores_as_the_official_scripts(release, imported, tmp_path):
    data, _ = imported
    cfg = TrainConfig(max_steps=2, batch_size=2, tasks=["A", "D"], eval_every=1000, save_every=2, log_every=1,
                      warmup_steps=1, eval_samples=1, mixed_precision="no", num_workers=0, lr=2e-3).to_dict()
    cfg["model"] = TrainConfig().model_config(REPO / "config").replace(
        iv="classical", max_audio_seconds=0.5, image_size=[112, 56], max_new_tokens=24).to_dict()
    (tmp_path / "train.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    proc = _jaeger("train", "--config", str(tmp_path / "train.json"), "--data", str(data), "--out", str(run),
                   torchrun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert {e.get("world_size") for e in log if "loss" in e} == {2}
    skipped = json.loads((run / "skipped.json").read_text())
    missing_train = _folder(release["root"], release["train"]["A"][1]["path"])
    assert any(local_name("train", "A", missing_train) in s["folder"] for s in skipped)

    ev = tmp_path / "eval"
    # the classical baseline beside it answers DoA in parseable strings (the 2-step model does not)
    proc = _jaeger("eval", "--checkpoint", str(run), "--compare", "classical", "--data", str(data),
                   "--split", "test", "--out", str(ev))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((ev / "report.json").read_text())
    bad = {(s["task"], s["path"]) for s in report["skipped"]}
    for key, entries in release["test"].items():
        kinds = [_expected(release, key, e["path"]) for e in entries]
        assert report["tasks"][key]["n_samples" if key == "C" else "n"] == kinds.count("found"), key
        assert sum(t == key for t, _ in bad) == len(entries) - kinds.count("found"), key
    assert f"skipped {len(bad)} entries" in proc.stdout

    found = {k: [e for e in es if _expected(release, k, e["path"]) == "found"] for k, es in release["test"].items()}
    parsed_doa = 0
    for out in (ev, ev / "compare_classical"):
        report = json.loads((out / "report.json").read_text())
        predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(predictions) == sum(map(len, found.values()))
        for p in predictions:
            assert {"path", "task", "prompt", "raw_text", "answer", "parsed", "target"} <= set(p)
            assert p["target"] in [e["text"] for e in found[p["key"]]]
            if out == ev and p["answer"] is not None:  # the model's own generation, before parsing
                assert isinstance(p["raw_text"], str)
        assert next(p for p in predictions if p["key"] == "B")["prompt"].startswith("Where is the ")
        official = report["official"]
        for key, want in _score_independently(predictions).items():
            for stat, value in want.items():
                if isinstance(value, dict):
                    assert official[key][stat] == pytest.approx(value), (key, stat)
                elif value is None:
                    assert official[key][stat] is None
                else:
                    assert official[key][stat] == pytest.approx(value, abs=1e-6), (key, stat)
        parsed_doa += sum(official[k]["n_parsed"] for k in ("A", "B", "starss23"))
        shards = out / "official"
        doa = json.loads((shards / "eval_results_rank_0.json").read_text())["details"]
        assert set(doa) == {"spatial_doa", "multi_spatial_doa", "starss23"}
        assert sum(map(len, doa.values())) == len(found["A"]) + len(found["B"]) + len(found["starss23"])
        assert len(json.loads((shards / "av_results_rank_0.json").read_text())) == len(found["D"]) + len(found["E"])
        assert len(json.loads((shards / "visual_results_rank_0.json").read_text())) == len(found["C"])
    assert parsed_doa >= 5  # the agreement was checked on real angles, not only on failures


def test_grounding_predictions_reach_the_official_scorer_in_centimetres():
    from jaeger_ros.data.dataset import ManifestEntry
    from jaeger_ros.data.evaluation import _TaskItems, official_headline, prediction_records
    from jaeger_ros.core import metrics

    truth = "bbox_0=Bbox(speaker, 0.29, -1.00, -2.50, 0.30, 0.60, 0.30)\nbbox_1=Bbox(speaker, 1.03, -1.04, -3.58, 0.29, 0.63, 0.34)"
    pred = "bbox_0=Bbox(speaker, 0.33, -0.95, -2.41, 0.30, 0.66, 0.29)"  # bbox_1 missing: IoU 0
    it = _TaskItems([pred], [truth], ["p"], [ManifestEntry("p", "visual_grounding", truth, obj_category=["speaker"] * 2)])
    (rec,) = prediction_records("C", it)
    assert rec["pred_text"] == "bbox_0=Bbox(speaker, 33, -95, -241, 30, 66, 29)"
    want = _score_independently([{**rec, "key": "C"}])["C"]["iou_mean"]
    assert 0.15 < want < 0.25  # (IoU of bbox_0 + 0) / 2
    assert official_headline("C", metrics.summarise("C", [pred], [truth]))["iou_mean"] == pytest.approx(want)


def _official_records(folder: Path, rank: int) -> dict[str, list[dict]]:
    """The three official files of one rank, as {manifest task: records}."""
    shards = folder / "official"
    out = dict(json.loads((shards / f"eval_results_rank_{rank}.json").read_text())["details"])
    for name in ("av", "visual"):
        for rec in json.loads((shards / f"{name}_results_rank_{rank}.json").read_text()):
            out.setdefault(rec["task"], []).append(rec)
    return out


def test_two_process_sharded_eval_merges_into_the_single_process_report(release, imported, tmp_path):
    """Issue 25: `--shard 0/2` and `--shard 1/2` in two real processes, then `--merge`, give the
    single-process report; each rank holds exactly sorted(paths)[rank::2] of every manifest
    (computed here from the fabricated manifests), and every official record carries the fields
    the authors' scripts read, the raw generation among them."""
    data, _ = imported
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    common = ("eval", "--method", "classical", "--data", str(data), "--protocol", "official")
    procs = [subprocess.Popen([sys.executable, "-m", "jaeger_ros.cli", *common, "--shard", f"{r}/2",
                               "--out", str(sharded)], env={**os.environ, "PYTHONPATH": str(REPO)},
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    proc = _jaeger(*common, "--out", str(single))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "--merge" in out
    assert not (sharded / "report.json").exists()  # a rank writes only its own files
    proc = _jaeger("eval", "--merge", str(sharded))
    assert proc.returncode == 0, proc.stderr[-3000:]

    one, merged = (json.loads((d / "report.json").read_text()) for d in (single, sharded))
    assert merged == one and one["parser"] == "official"
    assert (sharded / "predictions.jsonl").read_text() == (single / "predictions.jsonl").read_text()

    found = {k: [e for e in es if _expected(release, k, e["path"]) == "found"] for k, es in release["test"].items()}
    task_of = {"A": "spatial_doa", "B": "multi_spatial_doa", "starss23": "starss23", "C": "visual_grounding",
               "D": "single_source", "E": "dual_source"}
    rank_files = [_official_records(sharded, r) for r in (0, 1)]
    whole = _official_records(single, 0)
    ours = {(p["key"], p["path"]): p for p in map(json.loads, (single / "predictions.jsonl").read_text().splitlines())}
    for key, entries in release["test"].items():
        task = task_of[key]
        paths = sorted({local_name("test", key, release_path(release["root"], e["path"])) for e in entries})
        ok = {local_name("test", key, release_path(release["root"], e["path"])) for e in found[key]}
        for r in (0, 1):
            assert [rec["path"] for rec in rank_files[r].get(task, [])] == [p for p in paths[r::2] if p in ok], key
        union = sorted(rank_files[0].get(task, []) + rank_files[1].get(task, []), key=lambda rec: rec["path"])
        assert union == whole.get(task, []), key  # field by field
        for rec in union:
            truth = next(e for e in found[key]
                         if local_name("test", key, release_path(release["root"], e["path"])) == rec["path"])
            if key in ("A", "B", "starss23"):
                assert {"path", "gt_az", "gt_el", "pred_az", "pred_el", "angular_error", "raw_output",
                        "gender", "category"} <= set(rec)
                assert rec["gender"] == truth["gender"] and rec["raw_output"] == ours[(key, rec["path"])]["answer"]
                m = re.search(r"azimuth:\s*(-?[\d.]+); elevation:\s*(-?[\d.]+)", truth["text"])
                assert (rec["gt_az"], rec["gt_el"]) == (float(m.group(1)), float(m.group(2)))
            elif key == "C":
                assert {"path", "task", "text", "obj_category", "pred_text", "raw_output", "category"} <= set(rec)
                assert rec["text"] == truth["text"] and rec["obj_category"] == truth["obj_category"]
            else:
                assert {"path", "task", "gender", "category", "gt_text", "pred_text", "raw_output"} <= set(rec)
                assert rec["gt_text"] == truth["text"] and rec["pred_text"] == rec["raw_output"]
    assert sum(len(v) for f in rank_files for v in f.values()) == sum(map(len, found.values()))
