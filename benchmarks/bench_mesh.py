"""Mesh-world generation speed: samples/s of `generate --world mesh` (vs procedural) and where a
mesh sample's time goes.

Usage: python benchmarks/bench_mesh.py [--num 8] [--workers 2] [--task D] [--resolution 672x378]
       [--profile 4] [--rays 1500] [--worlds procedural,mesh] [--rays-curve 10]
Prints JSON: per world, wall samples/s with `workers` processes and samples per CPU-second
(this process and its children, i.e. per core when the machine is otherwise idle); then the
mean CPU seconds per stage of `profile` mesh samples in this process (scene sampling with its
visibility renders, the RGB-D render, the acoustic engine, the rest). Wall time counts what
other processes take from these on a shared machine; CPU time does not.
--rays-curve N: instead, rlr's accuracy against ray count on N furnished test rooms (every
loudspeaker a source): T20 error against a 20 000-ray reference (mean with a bootstrap 95 %
interval, 90th percentile), the direct-path direction error and CPU seconds per room -- how
acoustics_rlr.DEFAULT_RAYS was chosen.
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
from sim_bridge.mesh.acoustics_rlr import DEFAULT_RAYS


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
    """Mean CPU seconds per stage (this process, GL threads included) and mean triangle count of
    n task-D-like mesh samples."""
    from sim_bridge.mesh.world import MeshWorld

    intr = Intrinsics.from_hfov(res[0], res[1], 90.0)
    world = MeshWorld(intr, ray_count=rays)
    stages: dict[str, list[float]] = {"sample_scene": [], "render": [], "acoustics": [], "triangles": []}
    for k in range(n + 1):  # the first warms the GL context and the model cache
        rng = np.random.default_rng(1000 + k)
        t0 = time.process_time()
        scene = world.sample_scene(rng, "test", int(rng.choice([2, 3])), f"p{k}")
        t1 = time.process_time()
        world.render(scene)
        t2 = time.process_time()
        world.talker_rirs(scene, [0], [None])
        t3 = time.process_time()
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


def _rays_curve(n: int, counts: list[int], reference: int, res: tuple[int, int]) -> dict:
    from jaeger_ros.core import foa
    from jaeger_ros.core.geometry import transform_points
    from sim_bridge.acoustics import estimate_rt60
    from sim_bridge.conditions import loudspeaker_facing
    from sim_bridge.mesh.acoustics_rlr import SOURCE_OFFSET_M, MeshAcoustics
    from sim_bridge.mesh.scene import sample_mesh_scene

    intr = Intrinsics.from_hfov(res[0], res[1], 90.0)
    rows: dict[int, dict[str, list[float]]] = {c: {"t20": [], "direction": [], "cpu_s": []} for c in counts}
    for k in range(n):
        scene = sample_mesh_scene(np.random.default_rng(300 + k), "test", 2, intr, f"rays{k}")
        sources = [s.acoustic_center + SOURCE_OFFSET_M * loudspeaker_facing(s.yaw_deg) for s in scene.loudspeakers]
        t_ref = [estimate_rt60(r[0]) for r in MeshAcoustics("rlr", reference).rirs(scene, sources)]
        cam_from_world = scene.camera_from_world()
        for c in counts:
            t0 = time.process_time()
            irs = MeshAcoustics("rlr", c).rirs(scene, sources)
            rows[c]["cpu_s"].append(time.process_time() - t0)
            for p, ir, tr in zip(sources, irs, t_ref):
                rows[c]["t20"].append(abs(estimate_rt60(ir[0]) / tr - 1.0))
                truth = transform_points(cam_from_world, p)
                i = int(round(np.linalg.norm(truth) / 343.0 * 16000))
                seg = ir[:, i - 3:i + 4]  # the direct path's intensity: W times the dipoles
                est = foa.ambisonic_to_camera((seg[0][None] * seg[[foa.ACN.index(ch) for ch in "XYZ"]]).sum(axis=1))
                cos = est @ truth / (np.linalg.norm(est) * np.linalg.norm(truth))
                rows[c]["direction"].append(float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
    rng = np.random.default_rng(0)
    out = {}
    for c in counts:
        e = 100.0 * np.asarray(rows[c]["t20"])
        boot = [np.mean(rng.choice(e, e.size)) for _ in range(2000)]
        out[str(c)] = {"t20_error_mean_pct": round(float(e.mean()), 1),
                       "ci95": [round(float(np.percentile(boot, q)), 1) for q in (2.5, 97.5)],
                       "t20_error_p90_pct": round(float(np.percentile(e, 90)), 1),
                       "direction_error_p95_deg": round(float(np.percentile(rows[c]["direction"], 95)), 3),
                       "cpu_s_per_room": round(float(np.mean(rows[c]["cpu_s"])), 3)}
    return {"rooms": n, "sources": len(rows[counts[0]]["t20"]), "reference_rays": reference, "rays": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task", default="D")
    parser.add_argument("--resolution", default="672x378")
    parser.add_argument("--profile", type=int, default=4, help="mesh samples profiled per stage (0: none)")
    parser.add_argument("--rays", type=int, default=DEFAULT_RAYS)
    parser.add_argument("--worlds", default="procedural,mesh")
    parser.add_argument("--rays-curve", type=int, default=0, help="rooms of the ray-count accuracy curve (0: none)")
    args = parser.parse_args()
    res = tuple(int(v) for v in args.resolution.split("x"))
    if args.rays_curve:
        print(json.dumps(_rays_curve(args.rays_curve, [500, 1000, 1500, 2000, 3000], 20000, res), indent=1))
        return
    load0 = os.getloadavg()[0]
    rows = [_throughput(w, args.num, args.workers, args.task, res) for w in args.worlds.split(",")]
    result = {"task": args.task, "resolution": args.resolution, "cpu_count": os.cpu_count(),
              "load_avg_1min": [round(load0, 1), round(os.getloadavg()[0], 1)], "throughput": rows}
    if args.profile:
        result["mesh_profile"] = _profile(args.profile, res, args.rays)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
