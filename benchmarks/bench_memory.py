"""Peak memory of streaming training data against dataset size: one epoch of `jaeger train`'s
DataLoader (lazy JaegerDataset, 2 worker processes, accelerate-style global batches) over
200 and 2000 sample folders. Each size runs in a fresh process; the peak RSS of the main
process and of the largest worker must not grow with the number of folders.

Usage: python benchmarks/bench_memory.py [--sizes 200,2000] [--workers 2] [--seconds 4]
Folders are small synthetic ones in the dataset layout (112x56 RGB-D, FOA of --seconds);
what is measured is whether memory scales with the folder count, not with the folder size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jaeger_ros.core import answers
from jaeger_ros.core import foa as foa_io
from jaeger_ros.core.geometry import Box3D, Intrinsics
from jaeger_ros.data.dataset import ManifestEntry, write_manifest


def write_folders(root: Path, n: int, seconds: float) -> None:
    """n folders under root/train with a task-A and a task-C entry each."""
    rng = np.random.default_rng(0)
    intr = Intrinsics.from_hfov(112, 56, 90.0)
    a, c = [], []
    for i in range(n):
        folder = root / "train" / f"task1_{i:05d}"
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (56, 112, 3), dtype=np.uint8)).save(folder / "rgb.png")
        Image.fromarray(np.full((56, 112), 2500, np.uint16)).save(folder / "depth_mm.png")
        foa_io.write_foa_wav(folder / "foa_ls.wav", (rng.normal(size=(4, int(seconds * 16000))) * 0.1).astype(np.float32))
        (folder / "metadata.json").write_text(json.dumps({"sample_rate": 16000, "intrinsics": intr.to_dict()}))
        path = f"train/{folder.name}"
        a.append(ManifestEntry(path, "spatial_doa", answers.format_doa(10.0, -5.0), gender="M"))
        c.append(ManifestEntry(path, "visual_grounding", answers.format_boxes([Box3D([0.1, -0.5, -2.0], [0.3, 0.8, 0.3])]),
                               obj_category=["speaker"]))
    write_manifest(root / "train" / "manifests" / "A.json", a)
    write_manifest(root / "train" / "manifests" / "C.json", c)


def child(root: str, workers: int, seconds: float) -> None:
    """One epoch through the training loader; prints the peak RSS (MiB) as JSON."""
    from jaeger_ros.model.config import TrainConfig
    from jaeger_ros.model.data import InputBuilder, JaegerDataset, SampleReader, load_examples
    from jaeger_ros.model.tokenizer import train_tokenizer
    from jaeger_ros.model.train import _Sources, make_loader

    cfg = TrainConfig().model_config(Path(__file__).resolve().parents[1] / "config").replace(
        image_size=[112, 56], max_audio_seconds=seconds)
    v = cfg.thinker["vision"]
    builder = InputBuilder(cfg, train_tokenizer(512), {**v, "hidden_size": v["hidden_size"]})
    sources = _Sources([load_examples(root, "train", "AC")], None, seed=0)
    batch = 8
    steps = -(-len(sources) // batch)
    loader = make_loader(JaegerDataset(sources.examples, SampleReader(builder)), sources, batch, 0, steps, workers)
    t0, n = time.perf_counter(), 0
    for b in loader:
        n += int(b["input_ids"].shape[0])
    elapsed = time.perf_counter() - t0
    print(json.dumps({"samples": n, "seconds": elapsed,
                      "main_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workers, args.seconds)
        return
    print("| folders | samples | epoch s | main peak RSS MiB | worker peak RSS MiB |")
    print("|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            write_folders(Path(tmp), n, args.seconds)
            proc = subprocess.run([sys.executable, __file__, "--child", tmp, "--workers", str(args.workers),
                                   "--seconds", str(args.seconds)], capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {n} | {r['samples']} | {r['seconds']:.1f} | {r['main_peak_mib']:.0f} | {r['worker_peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
