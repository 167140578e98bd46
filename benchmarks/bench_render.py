"""Renderer and scene-sampler cost: ms per render at 672x378 and 1280x720, ms per sample_scene.

Usage: python benchmarks/bench_render.py [--scenes 6] [--repeat 3]
Prints a table; single process. Target: <= 120 ms per 672x378 render with ~10 furniture
items and 3 loudspeakers (the "busy" rows).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from jaeger_ros.core.geometry import Intrinsics
from sim_bridge.render import raycast, render, scene_primitives
from sim_bridge.scene import Scene, sample_scene

RESOLUTIONS = ((672, 378), (1280, 720))


def busy_scenes(count: int, intrinsics: Intrinsics) -> list[Scene]:
    """Scenes with 3 loudspeakers and at least 8 furniture items (big rooms)."""
    out: list[Scene] = []
    seed = 0
    while len(out) < count:
        scene = sample_scene(np.random.default_rng(seed), "train", 3, intrinsics)
        seed += 1
        if len(scene.furniture) >= 8:
            out.append(scene)
    return out


def ms(fn, repeat: int) -> float:
    fn()  # warm-up (ray cache)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = Intrinsics.from_hfov(*RESOLUTIONS[0], 90.0)
    print(f"{'what':<34} {'scenes':>6} {'furn':>5} {'prims':>6} {'ms':>8}")
    for n in (1, 2, 3):
        times = []
        for k in range(args.scenes):
            t0 = time.perf_counter()
            sample_scene(np.random.default_rng(1000 + k), "train", n, base)
            times.append((time.perf_counter() - t0) * 1000.0)
        print(f"{f'sample_scene, {n} loudspeaker(s), 672x378':<34} {args.scenes:>6} {'':>5} {'':>6} "
              f"{np.mean(times):>8.1f}")
    typical = [sample_scene(np.random.default_rng(2000 + k), "train", 3, base) for k in range(args.scenes)]
    busy = busy_scenes(args.scenes, base)
    for label, scenes in (("typical", typical), ("busy", busy)):
        furn = np.mean([len(s.furniture) for s in scenes])
        prims = np.mean([len(scene_primitives(s)) for s in scenes])
        for w, h in RESOLUTIONS:
            intr = Intrinsics.from_hfov(w, h, 90.0)
            t_render = np.mean([ms(lambda s=s: render(s, intr), args.repeat) for s in scenes])
            t_cast = np.mean([ms(lambda s=s: raycast(s, intr), args.repeat) for s in scenes])
            print(f"{f'render {label} {w}x{h}':<34} {len(scenes):>6} {furn:>5.1f} {prims:>6.0f} {t_render:>8.1f}")
            print(f"{f'raycast (depth+mask) {label} {w}x{h}':<34} {len(scenes):>6} {furn:>5.1f} {prims:>6.0f} "
                  f"{t_cast:>8.1f}")


if __name__ == "__main__":
    main()
