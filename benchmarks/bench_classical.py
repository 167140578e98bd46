"""Classical baseline speed (one process): ms per DoA estimate (doa, doa_robust, doa_dpd), per pitch attribution (median
pitches and male shares) of two candidate directions and per onset-vote share on 1 s / 4 s of
reverberant two-talker FOA; ms per frame of the node's pooled estimator (a 0.5 s window every
0.1 s); ms per depth-only candidate segmentation on rendered 640x480 / 672x378 frames.

Run: .venv/bin/python benchmarks/bench_classical.py [--repeats N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from jaeger_ros.classical import doa_dpd, doa_robust
from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.classical.doa import (estimate_by_gender, estimate_doa, estimate_sources, talker_male_shares,
                                      talker_pitches, vote_shares)
from jaeger_ros.classical.tracking import OnsetPool
from jaeger_ros.core.foa import SAMPLE_RATE
from jaeger_ros.core.geometry import Intrinsics
from sim_bridge.acoustics import convolve_foa, foa_rir, mix_sources
from sim_bridge.render import render
from sim_bridge.scene import sample_scene
from sim_bridge.speech import SpeechBank


def _ms(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    intr = Intrinsics.from_hfov(672, 378)
    scene = sample_scene(rng, "test", 2, intr)
    bank = SpeechBank("test", 0, pool_size=2)
    rot = scene.world_from_camera()[:3, :3]
    wet = [convolve_foa(bank.utterance(g, rng), foa_rir(scene.room, scene.loudspeakers[k].acoustic_center,
                                                           scene.camera_position, rot, rng=rng))
           for k, g in enumerate(("male", "female"))]
    mix = mix_sources(wet)
    directions = [scene.source_direction_camera(k) for k in range(2)]
    rows = []
    for seconds in (1.0, 4.0):
        x = mix[:, : int(seconds * SAMPLE_RATE)]
        rows.append((f"estimate_doa, {seconds:.0f} s", _ms(lambda: estimate_doa(x), args.repeats)))
        rows.append((f"doa_robust.estimate_doa, {seconds:.0f} s", _ms(lambda: doa_robust.estimate_doa(x), args.repeats)))
        rows.append((f"doa_dpd.estimate_doa (incl. doa_robust seed), {seconds:.0f} s",
                     _ms(lambda: doa_dpd.estimate_doa(x), args.repeats)))
        rows.append((f"estimate_sources(2), {seconds:.0f} s", _ms(lambda: estimate_sources(x, max_sources=2), args.repeats)))
        rows.append((f"estimate_by_gender, {seconds:.0f} s", _ms(lambda: estimate_by_gender(x, "female"), args.repeats)))
        rows.append((f"talker_pitches(2 directions), {seconds:.0f} s",
                     _ms(lambda: talker_pitches(x, directions), args.repeats)))
        rows.append((f"talker_male_shares(2 directions), {seconds:.0f} s",
                     _ms(lambda: talker_male_shares(x, directions), args.repeats)))
        rows.append((f"vote_shares(2 directions), {seconds:.0f} s", _ms(lambda: vote_shares(x, directions), args.repeats)))
    window, hop = SAMPLE_RATE // 2, SAMPLE_RATE // 10
    ends = range(window, mix.shape[1], hop)
    pool = OnsetPool()
    rows.append(("OnsetPool.update per node frame (0.5 s window)", _ms(
        lambda: [pool.update(end / SAMPLE_RATE, mix[:, end - window:end], SAMPLE_RATE) for end in ends],
        max(1, args.repeats // 5)) / len(ends)))
    for width, height in ((640, 480), (672, 378)):
        cam = Intrinsics.from_hfov(width, height)
        depths = [render(sample_scene(np.random.default_rng(s), "test", 2, cam), cam).depth for s in range(3)]
        rows.append((f"boxes_from_depth, {width}x{height}",
                     float(np.mean([_ms(lambda d=d: boxes_from_depth(d, cam), args.repeats) for d in depths]))))
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  ms/call")
    print("-" * (width + 9))
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:7.1f}")


if __name__ == "__main__":
    main()
