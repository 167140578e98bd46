"""Cost and effect of the speech gate (VAD) and voice identity in the streaming pipeline.

Feeds ClassicalEstimator the node's input, 0.5 s FOA windows every 0.1 s, over a rendered stream:
two simulator voices (test split) taking turns from two places in a reverberant room, with
diffuse-ish noise (independent per channel) at `--snr-db`, then `--noise-s` seconds of noise only.
Four configurations: no VAD (the previous pipeline), VAD, VAD + voice identity embedded in the
frame path, and the same with the embeddings in a worker thread (`bg`, as the live node runs it). Candidates are
plain depth blobs of an empty room (floor and a wall: no boxes), so the figures are the audio path only.

Prints, per configuration: ms per 0.1 s step (mean, p50, p95, max over every step of the
stream); share of the noise-only steps that reported a direction (the VAD must make it 0); share
of speech steps with a direction; and for voice identity the identities found against the 2 true
voices and the steps carrying a voice id.

Usage: python benchmarks/bench_voice.py [--turns 6] [--noise-s 10] [--snr-db 10] [--seed 0] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaeger_ros.core.geometry import Intrinsics, rotation_y
from jaeger_ros.pipeline.frame import ClassicalEstimator
from sim_bridge.acoustics import convolve_foa, foa_rir
from sim_bridge.room import Room
from sim_bridge.speech import VOICES, make_sentence, synthesize_voice, trim_silence

RATE = 16000
WINDOW_S, HOP_S = 0.5, 0.1


def render_stream(turns: int, noise_s: float, snr_db: float, seed: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(FOA stream, speech spans in seconds): turns alternate between a male and a female voice."""
    rng = np.random.default_rng(seed)
    room = Room((6.0, 3.0, 5.0), (0.25, 0.25, 0.3, 0.2, 0.25, 0.25))
    robot = np.array([3.0, 1.2, 2.5])
    voices = {v.key: v for v in VOICES}
    talkers = [(voices["espeak-ng:caleb"], np.array([1.5, 1.6, 1.0])), (voices["flite:slt"], np.array([4.6, 1.5, 4.0]))]
    pieces, spans, t = [np.zeros((4, RATE), np.float32)], [], 1.0
    for k in range(turns):
        voice, source = talkers[k % 2]
        dry = trim_silence(synthesize_voice(voice, make_sentence("test", rng), rng)[0])
        wet = convolve_foa(0.3 * dry / np.abs(dry).max(), foa_rir(room, source, robot, rotation_y(0.0), rng=rng))
        spans.append((t, t + dry.size / RATE))
        gap = rng.uniform(0.5, 2.0)
        pieces += [wet, np.zeros((4, int(gap * RATE)), np.float32)]
        t += wet.shape[1] / RATE + gap
    pieces.append(np.zeros((4, int(noise_s * RATE)), np.float32))
    stream = np.concatenate(pieces, axis=1)
    speech_rms = float(np.sqrt(np.mean(np.concatenate([stream[0, int(a * RATE):int(b * RATE)] for a, b in spans]) ** 2)))
    noise = rng.standard_normal(stream.shape).astype(np.float32)
    return stream + noise * speech_rms * 10 ** (-snr_db / 20), spans


def run(name: str, est: ClassicalEstimator, stream: np.ndarray, spans: list[tuple[float, float]],
        noise_from_s: float) -> dict:
    intr = Intrinsics(320, 240, 250.0, 250.0, 160.0, 120.0)
    rows = np.arange(240, dtype=np.float32)[:, None] - intr.cy  # camera 1.2 m above a floor, a wall 4 m ahead
    depth = np.broadcast_to(np.where(rows > 0, np.minimum(4.0, 1.2 * intr.fy / np.maximum(rows, 1e-3)), 4.0),
                            (240, 320)).astype(np.float32)
    rgb = np.zeros((240, 320, 3), np.uint8)
    window, hop = int(WINDOW_S * RATE), int(HOP_S * RATE)
    costs, noise_dirs, speech_dirs, ids = [], [], [], []
    for end in tqdm(range(window, stream.shape[1] + 1, hop), desc=name, leave=False):
        stamp = end / RATE
        t0 = time.perf_counter()
        out = est(rgb, depth, intr, stream[:, end - window:end], RATE, "", stamp)
        costs.append(1e3 * (time.perf_counter() - t0))
        talking = any(a <= stamp <= b for a, b in spans)
        if stamp >= noise_from_s + WINDOW_S:
            noise_dirs.append(out.direction is not None)
        elif talking:
            speech_dirs.append(out.direction is not None)
            ids.append(out.voice_id)
    c = np.array(costs[5:])  # the first steps load models lazily
    row = {"config": name, "steps": len(costs), "ms_mean": float(c.mean()), "ms_p50": float(np.median(c)),
           "ms_p95": float(np.percentile(c, 95)), "ms_max": float(c.max()),
           "noise_steps": len(noise_dirs), "noise_with_direction": float(np.mean(noise_dirs)),
           "speech_steps": len(speech_dirs), "speech_with_direction": float(np.mean(speech_dirs))}
    if est._voices is not None:
        row["identities"] = len(est._voices.identities.identities)
        row["speech_steps_with_voice_id"] = float(np.mean([bool(i) for i in ids]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--noise-s", type=float, default=10.0)
    parser.add_argument("--snr-db", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    stream, spans = render_stream(args.turns, args.noise_s, args.snr_db, args.seed)
    noise_from = stream.shape[1] / RATE - args.noise_s
    configs = (("no VAD", False, False, False), ("VAD", True, False, False), ("VAD + voice id", True, True, False),
               ("VAD + voice id bg", True, True, True))
    rows = [run(name, ClassicalEstimator(candidates="depth", vad=vad, voices=voices, background=bg), stream, spans,
                noise_from) for name, vad, voices, bg in configs]
    print(f"stream {stream.shape[1] / RATE:.1f} s: {args.turns} turns of 2 voices, {args.noise_s:g} s noise only, "
          f"SNR {args.snr_db:g} dB, 0.5 s windows every 0.1 s")
    print(f"{'config':16s} {'ms mean':>8s} {'p50':>6s} {'p95':>6s} {'max':>7s} {'noise dir':>10s} {'speech dir':>11s} "
          f"{'ids':>4s} {'id share':>9s}")
    for r in rows:
        print(f"{r['config']:16s} {r['ms_mean']:8.1f} {r['ms_p50']:6.1f} {r['ms_p95']:6.1f} {r['ms_max']:7.1f} "
              f"{r['noise_with_direction']:10.2f} {r['speech_with_direction']:11.2f} {r.get('identities', ''):>4} "
              f"{r.get('speech_steps_with_voice_id', float('nan')):9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
