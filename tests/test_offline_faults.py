"""Batch tools under faults: killed checkpoint writes, crafted or corrupt checkpoint files,
unreadable samples in an evaluated split, generation into an existing or half-written split,
and the CLI's one-line errors. Everything runs on real files (generated samples, the shipped
checkpoint, real torch optimizers); the only stand-ins are the kills, made by patching the
train module's file operations to stop part-way, as a SIGKILL would."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import jaeger_ros.model.train as train_mod
from jaeger_ros.classical.method import ClassicalMethod
from jaeger_ros.cli import main
from jaeger_ros.data.dataset import find_manifests, generate, iter_entries, read_manifest
from jaeger_ros.data.evaluation import evaluate
from jaeger_ros.model.modeling import CheckpointError, JaegerModel
from jaeger_ros.model.predictor import DEFAULT_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]
RES = (224, 126)


# ------------------------------------------------------------------ 1. checkpoints survive a kill

class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no `except Exception` cleanup runs."""


def _tiny_training_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    model(torch.ones(1, 3)).sum().backward()
    opt.step(), sched.step()
    return model, opt, sched


class _KillAt:
    """Counts the checkpoint writer's file operations and kills it at operation `k`, either
    before it starts or part-way (half a file written, one file of a folder deleted, or just
    after a rename)."""

    def __init__(self, monkeypatch, k: int | None, midway: bool) -> None:
        self.k, self.midway, self.n = k, midway, 0
        real_write, real_rename, real_remove = train_mod.write_synced, train_mod._rename, train_mod._remove

        def write(path, data):
            if self._now():
                if self.midway:
                    Path(path).write_bytes(data[:len(data) // 2])
                raise Killed
            real_write(path, data)

        def rename(src, dst):
            if self._now():
                if self.midway:
                    real_rename(src, dst)
                raise Killed
            real_rename(src, dst)

        def remove(folder):
            if self._now():
                files = sorted(p for p in Path(folder).glob("*") if p.is_file()) if Path(folder).is_dir() else []
                if self.midway and files:
                    files[0].unlink()
                raise Killed
            real_remove(folder)

        monkeypatch.setattr(train_mod, "write_synced", write)
        monkeypatch.setattr(train_mod, "_rename", rename)
        monkeypatch.setattr(train_mod, "_remove", remove)

    def _now(self) -> bool:
        self.n += 1
        return self.n == self.k


def test_a_kill_at_any_write_point_leaves_a_complete_checkpoint(tmp_path, monkeypatch):
    m1, o1, s1 = _tiny_training_state(1)
    m2, o2, s2 = _tiny_training_state(2)
    base = tmp_path / "base"
    train_mod.save_checkpoint(m1, o1, s1, base, step=1, total_steps=9)
    shutil.copytree(base, tmp_path / "count")
    with monkeypatch.context() as mp:
        counter = _KillAt(mp, None, False)
        train_mod.save_checkpoint(m2, o2, s2, tmp_path / "count", step=2, total_steps=9)
    n_ops = counter.n
    assert n_ops == 9  # 2 leftover removals, 4 files, 2 renames, removal of the previous checkpoint
    weights = {1: m1.state_dict(), 2: m2.state_dict()}
    outcomes = set()
    for k in range(1, n_ops + 1):
        for midway in (False, True):
            run = tmp_path / f"kill_{k}_{int(midway)}"
            shutil.copytree(base, run)
            with monkeypatch.context() as mp:
                _KillAt(mp, k, midway)
                with pytest.raises(Killed):
                    train_mod.save_checkpoint(m2, o2, s2, run, step=2, total_steps=9)
            last = train_mod.recover_checkpoint(run)
            assert last == run / "last", (k, midway)
            step = train_mod.checkpoint_step(last)
            outcomes.add(step)
            assert sorted(p.name for p in run.iterdir()) == ["last"], (k, midway)  # leftovers removed
            stored = load_file(str(last / "model.safetensors"))
            for name, value in weights[step].items():
                assert torch.equal(stored[name], value), (k, midway, name)
            state = train_mod.load_train_state(last / "optimizer.pt")
            assert state["scheduler"]["last_epoch"] == 1
            assert json.loads((last / "state.json").read_text())["step"] == step
    assert outcomes == {1, 2}  # early kills keep the old checkpoint, late ones the new


def test_a_kill_before_the_first_checkpoint_is_complete_leaves_nothing_to_resume(tmp_path, monkeypatch):
    model, opt, sched = _tiny_training_state(0)
    with monkeypatch.context() as mp:
        _KillAt(mp, 4, True)  # half-way through the optimizer state of the first checkpoint
        with pytest.raises(Killed):
            train_mod.save_checkpoint(model, opt, sched, tmp_path, step=1, total_steps=3)
    assert train_mod.recover_checkpoint(tmp_path) is None
    assert not (tmp_path / "last").exists()


# ------------------------------------------------------------------ 2. optimizer state is never unpickled blindly

class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_optimizer_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "optimizer.pt"
    torch.save({"optimizer": _Payload(marker), "scheduler": {}, "torch_rng": torch.get_rng_state()}, crafted)
    with pytest.raises(CheckpointError) as err:
        train_mod.load_train_state(crafted)
    assert not marker.exists()
    message = str(err.value)
    assert message.startswith(str(crafted)) and "\n" not in message and "refused" in message


# ------------------------------------------------------------------ 3. evaluation skips unreadable samples

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height RGB pixels, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _edit_metadata(folder: Path, change) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps(change(meta)))


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A generated test split (task1_00000..5 and task2_00000..2) with one fault per folder."""
    root = tmp_path_factory.mktemp("damaged")
    generate(root, "test", 3, seed=3, tasks="ABCDE", resolution=RES, progress=False)
    split = root / "test"
    (split / "task1_00000" / "foa_ls.wav").unlink()                          # A skipped, C scored
    (split / "task1_00001" / "metadata.json").write_text('{"sample_rate": 16')  # D skipped
    shutil.rmtree(split / "task2_00000")                                     # B and E skipped
    rgb = (split / "task1_00002" / "rgb.png").read_bytes()
    (split / "task1_00002" / "rgb.png").write_bytes(rgb[:len(rgb) // 2])     # C skipped, A scored
    _png_header_only(split / "task1_00003" / "rgb.png", 12000, 9000)         # 108 MP: D skipped
    _edit_metadata(split / "task2_00001", lambda m: {**m, "intrinsics": {**m["intrinsics"], "fx": -1.0}})  # E
    (split / "task1_00004" / "metadata.json").write_text("[1, 2, 3]")        # A and C skipped
    expected = {("A", "test/task1_00000"): ("foa_ls.wav", "not found"),
                ("D", "test/task1_00001"): ("metadata.json", "not readable JSON"),
                ("B", "test/task2_00000"): ("task2_00000", "sample folder not found"),
                ("E", "test/task2_00000"): ("task2_00000", "sample folder not found"),
                ("C", "test/task1_00002"): ("rgb.png", "unreadable image"),
                ("D", "test/task1_00003"): ("rgb.png", "MP limit"),
                ("E", "test/task2_00001"): ("metadata.json", "bad intrinsics"),
                ("A", "test/task1_00004"): ("metadata.json", "expected a JSON object"),
                ("C", "test/task1_00004"): ("metadata.json", "expected a JSON object")}
    return root, expected


def test_evaluation_skips_and_lists_unreadable_samples(damaged, tmp_path):
    root, expected = damaged
    report = evaluate(ClassicalMethod(), root, "test", out_dir=tmp_path, progress=False)
    got = {(s["task"], s["path"]): s["error"] for s in report["skipped"]}
    assert set(got) == set(expected)
    for key, (file, why) in expected.items():
        assert file in got[key] and why in got[key], (key, got[key])
        assert "\n" not in got[key]
    scored = {t: r.get("n_samples", r["n"]) for t, r in report["tasks"].items()}  # C's "n" counts boxes
    assert scored == {"A": 1, "B": 2, "C": 1, "D": 1, "E": 1}
    assert json.loads((tmp_path / "report.json").read_text())["skipped"] == report["skipped"]
    md = (tmp_path / "report.md").read_text()
    assert "Skipped: 9 entries" in md and all(path in md for _, path in expected)


def test_cli_eval_prints_the_skip_count_and_exits_zero(damaged, tmp_path, capsys):
    root, _ = damaged
    assert main(["eval", "--method", "classical", "--data", str(root), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "classical: skipped 9 entries whose files could not be read" in out
    assert (tmp_path / "r" / "report.md").is_file()


def test_cli_eval_with_nothing_readable_fails_in_one_line(damaged, tmp_path, capsys):
    root, _ = damaged
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    for folder in (broken / "test").glob("task*"):
        shutil.rmtree(folder)
    assert main(["eval", "--method", "classical", "--data", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("jaeger: error: nothing could be scored") and "\n" not in err
    assert "sample folder not found" in err


def test_a_malformed_manifest_is_skipped_and_named(damaged, tmp_path):
    root, _ = damaged
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    manifest = find_manifests(copy, "test")["B"]
    manifest.write_text('{"annotation": [')
    report = evaluate(ClassicalMethod(), copy, "test", tasks="AB", progress=False)
    [skip] = [s for s in report["skipped"] if s["task"] == "B"]
    assert {"task": "B", "path": str(manifest)} == {k: v for k, v in skip.items() if k != "error"}
    assert "not valid JSON" in skip["error"] and set(report["tasks"]) == {"A"}


def test_a_malformed_manifest_entry_skips_only_that_entry(damaged, tmp_path, capsys):
    """Issue 26: one entry without "text" (and one with an unknown task) are listed with the
    reason; every other entry of their task is still scored."""
    root, expected = damaged
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    manifest = find_manifests(copy, "test")["D"]
    raw = json.loads(manifest.read_text())["annotation"]
    readable_d = [e for e in raw if ("D", e["path"]) not in expected]
    assert len(raw) >= 3 and readable_d
    raw.append({k: v for k, v in readable_d[0].items() if k != "text"})   # a copy of a readable entry, no text
    raw.append({**readable_d[0], "task": "speaker_counting"})
    manifest.write_text(json.dumps({"annotation": raw}))
    report = evaluate(ClassicalMethod(), copy, "test", tasks="D", progress=False)
    bad = [s for s in report["skipped"] if "entry" in s]
    assert [(s["task"], s["entry"]) for s in bad] == [("D", len(raw) - 2), ("D", len(raw) - 1)]
    assert "lacks ['text']" in bad[0]["error"] and "speaker_counting" in bad[1]["error"]
    assert all(str(manifest) in s["error"] and "\n" not in s["error"] for s in bad)
    assert report["tasks"]["D"]["n"] == len(readable_d)  # every other entry of task D scored
    assert main(["eval", "--method", "classical", "--data", str(copy), "--tasks", "D"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 malformed manifest entries" in out and "lacks ['text']" in out


# ------------------------------------------------------------------ 4. corrupt checkpoints: one line naming the file

@pytest.fixture()
def checkpoint_copy(tmp_path) -> Path:
    ck = tmp_path / "ck"
    shutil.copytree(DEFAULT_CHECKPOINT, ck)
    return ck


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_corrupt_weights_file_is_a_one_line_checkpoint_error(checkpoint_copy, damage):
    weights = checkpoint_copy / "model.safetensors"
    data = weights.read_bytes()
    if damage == "garbage":
        weights.write_bytes(b"\x07\x00\x00\x00\x00\x00\x00\x00not json" + data[:64])
    elif damage == "truncated":
        weights.write_bytes(data[:len(data) // 3])
    else:
        weights.unlink()
    with pytest.raises(CheckpointError) as err:
        JaegerModel.from_pretrained(checkpoint_copy)
    assert str(err.value).startswith(str(weights)) and "\n" not in str(err.value)


def test_a_corrupt_config_is_a_checkpoint_error(checkpoint_copy):
    (checkpoint_copy / "jaeger_config.json").write_text("{")
    with pytest.raises(CheckpointError, match="jaeger_config.json"):
        JaegerModel.from_pretrained(checkpoint_copy)
    with pytest.raises(CheckpointError, match="folder not found"):
        JaegerModel.from_pretrained(checkpoint_copy / "nowhere")


def test_cli_eval_with_a_corrupt_checkpoint_exits_with_one_line(checkpoint_copy, damaged):
    root, _ = damaged
    (checkpoint_copy / "model.safetensors").write_bytes(b"\xff" * 100)
    r = subprocess.run([sys.executable, "-m", "jaeger_ros.cli", "eval", "--checkpoint", str(checkpoint_copy),
                        "--data", str(root)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert str(checkpoint_copy / "model.safetensors") in r.stderr


def test_cli_bad_config_and_bad_paths_are_one_line(tmp_path, capsys):
    bad = tmp_path / "train.yaml"
    bad.write_text("max_steps: [1\n")
    assert main(["train", "--config", str(bad), "--data", str(tmp_path)]) == 2
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--data", str(tmp_path)]) == 2
    (tmp_path / "f.txt").write_text("a file")
    assert main(["dataset", "generate", "--out", str(tmp_path / "f.txt" / "x"), "--split", "test", "--num", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("jaeger: error: ") for line in lines)
    assert str(bad) in lines[0] and "YAML" in lines[0] and "none.yaml" in lines[1]


def test_cli_bug_is_one_line_unless_debugging(tmp_path, monkeypatch, capsys):
    import jaeger_ros.data.evaluation as evaluation

    def bug(*args, **kwargs):
        raise KeyError("a genuine bug")

    monkeypatch.setattr(evaluation, "evaluate", bug)  # stands for an unexpected failure inside the command
    argv = ["eval", "--method", "classical", "--data", str(tmp_path)]
    monkeypatch.delenv("JAEGER_DEBUG", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaeger: internal error: KeyError") and "\n" not in err and "JAEGER_DEBUG" in err
    monkeypatch.setenv("JAEGER_DEBUG", "1")
    with pytest.raises(KeyError):
        main(argv)


# ------------------------------------------------------------------ 5. generation never deletes what it did not write

def test_generate_refuses_a_non_empty_split(tmp_path):
    generate(tmp_path, "test", 1, tasks="A", resolution=RES, progress=False)
    foreign = tmp_path / "test" / "notes.txt"
    foreign.write_text("mine")
    before = sorted(p.name for p in (tmp_path / "test").iterdir())
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate(tmp_path, "test", 1, tasks="A", resolution=RES, progress=False)
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == before
    assert foreign.read_text() == "mine"


def test_overwrite_replaces_only_what_the_generator_wrote(tmp_path):
    generate(tmp_path, "test", 3, tasks="AD", resolution=RES, progress=False)
    split = tmp_path / "test"
    (split / "notes.txt").write_text("mine")
    (split / "manifests" / "extra.json").write_text("{}")
    (split / "my_recording").mkdir()
    (split / "my_recording" / "metadata.json").write_text("{}")
    counts = generate(tmp_path, "test", 1, seed=5, tasks="A", resolution=RES, progress=False, overwrite=True)
    assert counts == {"A": 1}
    assert sorted(p.name for p in split.iterdir()) == ["manifests", "my_recording", "notes.txt", "task1_00000"]
    assert sorted(p.name for p in (split / "manifests").iterdir()) == ["A.json", "extra.json"]
    assert (split / "notes.txt").read_text() == "mine"
    [entry] = read_manifest(split / "manifests" / "A.json")
    assert json.loads((split / "task1_00000" / "metadata.json").read_text())["scene"]  # the new sample
    assert [f for _, _, f in iter_entries(tmp_path, "test")] == [split / "task1_00000"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwrite_refuses_to_replace_a_foreign_folder_of_the_same_name(tmp_path):
    generate(tmp_path, "test", 1, tasks="A", resolution=RES, progress=False)
    shutil.rmtree(tmp_path / "test" / "task1_00000")
    (tmp_path / "test" / "task1_00000").mkdir()
    (tmp_path / "test" / "task1_00000" / "data.bin").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not written by the generator"):
        generate(tmp_path, "test", 1, tasks="A", resolution=RES, progress=False, overwrite=True)
    assert (tmp_path / "test" / "task1_00000" / "data.bin").read_bytes() == b"x"


def test_a_killed_generation_leaves_a_temp_folder_that_the_next_run_removes(tmp_path):
    script = textwrap.dedent(f"""
        import os
        import jaeger_ros.data.dataset as ds
        real = ds._make_sample
        def make_then_die(job, out):
            if job.index == 1:
                os._exit(9)  # as a SIGKILL: no cleanup runs
            return real(job, out)
        ds._make_sample = make_then_die
        ds.generate({str(tmp_path)!r}, "test", 2, tasks="A", resolution={RES!r}, progress=False)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 9, r.stderr[-2000:]
    [leftover] = [p for p in tmp_path.iterdir() if p.name.startswith(".test.")]
    assert (leftover / "task1_00000" / "metadata.json").is_file()
    assert not (tmp_path / "test").exists()
    generate(tmp_path, "val", 1, tasks="A", resolution=RES, progress=False)
    assert leftover.exists()  # another split's run leaves it alone
    generate(tmp_path, "test", 1, tasks="A", resolution=RES, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test", "val"]


def test_a_live_run_temp_folder_is_not_removed(tmp_path):
    live = tmp_path / f".test.generating-{os.getpid()}-abc"  # this process is alive
    live.mkdir()
    generate(tmp_path, "test", 1, tasks="A", resolution=RES, progress=False)
    assert live.is_dir()


def test_cli_generate_overwrite_flag(tmp_path, capsys):
    argv = ["dataset", "generate", "--out", str(tmp_path), "--split", "test", "--num", "1", "--tasks", "A",
            "--resolution", "224x126", "--world", "procedural"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert len(list(iter_entries(tmp_path, "test"))) == 1
