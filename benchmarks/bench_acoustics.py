"""FOA RIR cost: milliseconds per foa_rir call (and per convolution with 4 s of speech).

Usage: python benchmarks/bench_acoustics.py [--repeat 20]
Prints a table; single process. Target: <= 150 ms per RIR for 5 x 2.7 x 4 m at RT60 0.5 s.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from jaeger_ros.core.geometry import rotation_y
from sim_bridge.acoustics import convolve_foa, estimate_rt60, foa_rir
from sim_bridge.room import Room

CASES = [((5.0, 2.7, 4.0), 0.5), ((5.0, 2.7, 4.0), 0.2), ((5.0, 2.7, 4.0), 0.9),
         ((3.0, 2.5, 3.0), 0.5), ((8.0, 3.0, 6.0), 0.5), ((12.0, 4.0, 9.0), 0.9)]


def room_with_rt60(size: tuple[float, float, float], rt60: float) -> Room:
    """Uniform absorption giving the requested Sabine RT60."""
    probe = Room(size, (0.5,) * 6)
    alpha = 0.5 * probe.sabine_rt60() / rt60
    return Room(size, (alpha,) * 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(4 * 16000)
    print(f"{'room (m)':<16} {'RT60':>5} {'T20 est':>8} {'N':>6} {'ms/RIR':>7} {'ms/conv 4s':>11}")
    for size, rt60 in CASES:
        room = room_with_rt60(size, rt60)
        src, rcv = np.array(size) * [0.7, 0.4, 0.3], np.array(size) * [0.3, 0.55, 0.6]
        rir = foa_rir(room, src, rcv, rotation_y(30.0), rng=rng)  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            rir = foa_rir(room, src, rcv, rotation_y(30.0), rng=rng)
        ms_rir = (time.perf_counter() - t0) / args.repeat * 1000
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            convolve_foa(speech, rir)
        ms_conv = (time.perf_counter() - t0) / args.repeat * 1000
        label = "x".join(f"{s:g}" for s in size)
        print(f"{label:<16} {rt60:>5.2f} {estimate_rt60(rir[0]):>8.3f} {rir.shape[1]:>6} {ms_rir:>7.1f} {ms_conv:>11.1f}")


if __name__ == "__main__":
    main()
