"""Mesh-world generation speed: samples/s of `generate --world mesh` (vs procedural) and where a
mesh sample's time goes.

Usage: python benchmarks/bench_mesh.py [--num 8] [--workers 2] [--task D] [--resolution 672x378]
       [--profile 4] [--rays 3000]
Prints JSON: per world, wall samples/s with `workers` processes and samples per CPU-second
(this process and its children, i.e. per core when the machine is otherwise idle); then the
mean seconds per stage of `profile` mesh samples in this process (scene sampling with its
visibility renders, the RGB-D render, the acoustic engine, the rest). Wall time counts what
other processes take from these on a shared machine; CPU time does not.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from jaeger_ros.core.geometry import Intrinsics
from jaeger_ros.data.dataset import generate


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _throughput(world: str, num: int, workers: int, task: str, res: tuple[int, int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        generate(tmp, "test", num, seed=1, tasks=task, workers=workers, resolution=res, progress=False,
                 conditions="realistic", world=world)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {"world": world, "num": num, "workers": workers, "wall_s": round(wall, 1),
            "samples_per_s": round(num / wall, 3), "samples_per_cpu_s": round(num / cpu, 3)}


def _profile(n: int, res: tuple[int, int], rays: int) -> dict:
    """Mean seconds per stage (and mean triangle count) of n task-D-like mesh samples."""
    from sim_bridge.mesh.world import MeshWorld

    intr = Intrinsics.from_hfov(res[0], res[1], 90.0)
    world = MeshWorld(intr, ray_count=rays)
    stages: dict[str, list[float]] = {"sample_scene": [], "render": [], "acoustics": [], "triangles": []}
    for k in range(n + 1):  # the first warms the GL context and the model cache
        rng = np.random.default_rng(1000 + k)
        t0 = time.perf_counter()
        scene = world.sample_scene(rng, "test", int(rng.choice([2, 3])), f"p{k}")
        t1 = time.perf_counter()
        world.render(scene)
        t2 = time.perf_counter()
        world.talker_rirs(scene, [0], [None])
        t3 = time.perf_counter()
        from sim_bridge.mesh.acoustics_rlr import scene_triangles

        tris = sum(len(f) for _, f, _ in scene_triangles(scene))
        if k:
            stages["sample_scene"].append(t1 - t0)
            stages["render"].append(t2 - t1)
            stages["acoustics"].append(t3 - t2)
            stages["triangles"].append(tris)
    out = {name: round(float(np.mean(v)), 3) for name, v in stages.items()}
    out["acoustics_engine"] = world.acoustics.engine
    out["ray_count"] = rays
    out["n"] = n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task", default="D")
    parser.add_argument("--resolution", default="672x378")
    parser.add_argument("--profile", type=int, default=4, help="mesh samples profiled per stage (0: none)")
    parser.add_argument("--rays", type=int, default=3000)
    args = parser.parse_args()
    res = tuple(int(v) for v in args.resolution.split("x"))
    rows = [_throughput(w, args.num, args.workers, args.task, res) for w in ("procedural", "mesh")]
    result = {"task": args.task, "resolution": args.resolution, "cpu_count": os.cpu_count(),
              "load_avg_1min": round(os.getloadavg()[0], 1), "throughput": rows}
    if args.profile:
        result["mesh_profile"] = _profile(args.profile, res, args.rays)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
