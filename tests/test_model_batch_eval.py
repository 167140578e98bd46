"""Issue 25: batched generation in `jaeger eval` (left padding, attention mask, greedy) gives the
answers one-at-a-time generation gives, on the shipped tiny checkpoint and real generated
samples; prompts of different lengths in one batch (task A has no image tokens, D has them)
exercise the padding."""
from __future__ import annotations

import json
import os
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pytest

from jaeger_ros.data.dataset import find_manifests, generate, load_sample, read_manifest, resolve_sample_path
from jaeger_ros.data.evaluation import evaluate
from jaeger_ros.model.predictor import JaegerMethod, query_for

REPO = Path(__file__).resolve().parents[1]


class _Counting(JaegerMethod):
    """The shipped checkpoint, counting how many items each answer_batch call carried."""

    def __init__(self, inner: JaegerMethod) -> None:
        super().__init__(inner.predictor, inner.name)
        self.sizes: list[int] = []

    def answer_batch(self, pairs):
        self.sizes.append(len(pairs))
        return super().answer_batch(pairs)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(root, "test", 5, seed=21, tasks="ABCDE", resolution=(224, 126), progress=False)
    return root


@pytest.fixture(scope="module")
def method():
    return JaegerMethod.from_checkpoint("default", device="cpu")


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_batched_eval_answers_equal_one_at_a_time(data_root, method, tmp_path):
    one = _Counting(method)
    four = _Counting(method)
    r1 = evaluate(one, data_root, "test", out_dir=tmp_path / "b1", progress=False, batch_size=1)
    r4 = evaluate(four, data_root, "test", out_dir=tmp_path / "b4", progress=False, batch_size=4)
    a, b = _records(tmp_path / "b1"), _records(tmp_path / "b4")
    n = Counter(r["key"] for r in a)  # items per manifest
    assert set(n) == set("ABCDE") and one.sizes == [1] * len(a) and len(b) == len(a)
    per_task = [size for k in n.values() for size in [4] * (k // 4) + [k % 4] * (k % 4 > 0)]  # within a task
    assert sorted(four.sizes) == sorted(per_task) and 4 in per_task
    for x, y in zip(a, b):
        assert (x["key"], x["path"], x["raw_text"], x["answer"]) == (y["key"], y["path"], y["raw_text"], y["answer"])
        assert x["token_probability"] == pytest.approx(y["token_probability"], abs=1e-4)
    assert r1["tasks"] == r4["tasks"]


def test_a_mixed_task_batch_is_left_padded_and_answers_as_one_at_a_time(data_root, method):
    queries = []
    for key, manifest in sorted(find_manifests(data_root, "test").items()):
        entry = read_manifest(manifest)[0]
        if key in ("A", "D"):
            queries.append(query_for(load_sample(resolve_sample_path(data_root, entry)), entry))
    predictor = method.predictor
    b = predictor.model.builder
    lengths = {q["task"]: len(b.encode(b.prompt(q["task"], "x"), None)[0]) for q in queries}
    assert len(queries) == 2 and lengths["D"] > lengths["A"]  # one batch, prompts of different lengths
    together = predictor.predict_batch(queries)
    alone = [predictor.predict_batch([q])[0] for q in queries]
    for x, y in zip(together, alone):
        assert x.raw_text == y.raw_text and x.token_probability == pytest.approx(y.token_probability, abs=1e-4)


def test_cli_batch_size_must_be_positive(data_root):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "jaeger_ros.cli", "eval", "--checkpoint", "default", "--data",
                           str(data_root), "--batch-size", "0"], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "--batch-size" in proc.stderr and "at least 1" in proc.stderr


class _FailsOn(JaegerMethod):
    """The shipped checkpoint made to fail (ValueError, as a bad input would) on one sample."""

    def __init__(self, inner: JaegerMethod, path: str) -> None:
        super().__init__(inner.predictor, inner.name)
        self.path = path

    def answer_batch(self, pairs):
        if any(entry.path == self.path for _, entry in pairs):
            raise ValueError("this sample fails")
        return super().answer_batch(pairs)


def test_a_failing_item_is_charged_to_itself_not_to_its_batch(data_root, method, tmp_path):
    entries = read_manifest(find_manifests(data_root, "test")["D"])
    bad = sorted(e.path for e in entries)[1]
    evaluate(_FailsOn(method, bad), data_root, "test", tasks=["D"], out_dir=tmp_path / "b1", progress=False)
    evaluate(_FailsOn(method, bad), data_root, "test", tasks=["D"], out_dir=tmp_path / "b4", progress=False,
             batch_size=4)
    a, b = _records(tmp_path / "b1"), _records(tmp_path / "b4")
    assert [r["path"] for r in a] == [r["path"] for r in b] == sorted(e.path for e in entries)
    assert [r["answer"] for r in a] == [r["answer"] for r in b]
    assert [r["path"] for r in b if r["answer"] is None] == [bad]  # the other three of its batch are answered
    report = json.loads((tmp_path / "b4" / "report.json").read_text())
    assert report["tasks"]["D"]["n"] == len(entries)
