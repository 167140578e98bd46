"""Robustness benchmark: fixed-seed clean / realistic / hard test splits and a diffuse-noise SNR
sweep, scored by the classical baseline (and a JAEGER checkpoint when given), one table.

The SNR sweep re-noises the clean split (same scenes, voices and speech) with spatially
diffuse noise (pink, brown, ventilation hum or babble, drawn per sample) at exactly each SNR,
so the curve isolates the noise. Every figure is a median great-circle error (A, B) or an
accuracy (D, E; E also per gender) with its bootstrap 95 % interval.

Run: .venv/bin/python benchmarks/bench_robust.py --out /tmp/jaeger_robust [--num 200]
     [--preset-num 100] [--presets clean,realistic,hard] [--snrs 20,10,5,0]
     [--checkpoint DIR|default] [--audio-only] [--workers 1] [--world procedural|mesh]
(--audio-only adds the classical baseline without depth, A and B from the sound alone, with the
sound-only DoAs: classical-audio (doa.py onset votes), classical-audio-robust (doa_robust.py),
classical-audio-dpd (doa_dpd.py, the pooled direct-path covariance) and classical-audio-dpd-flat
(the same, seeded by flattened vote weights).)
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from jaeger_ros.core import foa
from jaeger_ros.data import robustness
from jaeger_ros.data.dataset import find_manifests, generate
from sim_bridge import conditions as sensing
from sim_bridge.speech import SpeechBank

SEED = 12
TASKS = ("A", "B", "D", "E")


def _generated(root: Path, split: str = "test") -> bool:
    try:
        return set(TASKS) <= set(find_manifests(root, split))
    except FileNotFoundError:
        return False


def renoise(clean_root: Path, out_root: Path, snr_db: float, seed: int = SEED) -> None:
    """Copy of the clean test split with diffuse noise added at exactly snr_db (files other than
    foa_ls.wav and metadata.json are linked)."""
    src, dst = clean_root / "test", out_root / "test"
    if _generated(out_root):
        return
    shutil.rmtree(dst, ignore_errors=True)
    bank = SpeechBank("test", seed)
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and p.name != "manifests"):
        target = dst / folder.name
        target.mkdir(parents=True)
        for f in folder.iterdir():
            if f.name not in ("foa_ls.wav", "metadata.json"):
                (target / f.name).symlink_to(f.resolve())
        meta = json.loads((folder / "metadata.json").read_text())
        rng = np.random.default_rng([seed, int(snr_db * 10) + 1000, int(folder.name.split("_")[1]),
                                     int(folder.name[4])])
        speech, rate = foa.read_foa_wav(folder / "foa_ls.wav")
        cond = sensing.draw(f"diffuse@{snr_db:g}", rng)
        cond = sensing.Conditions(cond.preset, cond.snr_db, sensing.NOISE_KINDS[int(rng.integers(4))])
        noisy, cond = sensing.apply_audio(speech, cond, None, rng, bank.utterance, rt60_s=meta.get("rt60_sabine_s"))
        meta["conditions"] = cond.to_dict()
        foa.write_foa_wav(target / "foa_ls.wav", noisy, rate)
        (target / "metadata.json").write_text(json.dumps(meta, indent=1))
    shutil.copytree(src / "manifests", dst / "manifests", dirs_exist_ok=True)


def _methods(checkpoint: str | None, audio_only: bool) -> list:
    from jaeger_ros.classical.method import ClassicalMethod
    from jaeger_ros.cli import _method

    return ([_method("classical")]
            + ([ClassicalMethod(use_depth=False, doa=d) for d in ("onset", "robust", "dpd", "dpd-flat")]
               if audio_only else [])
            + ([_method(checkpoint)] if checkpoint else []))


def _cell(row: dict | None, unit: str) -> str:
    if row is None:
        return "–"
    return f"{row['value']:.1f}{unit} [{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/jaeger_robust"))
    parser.add_argument("--num", type=int, default=200, help="entries per task of the clean split (and the sweep)")
    parser.add_argument("--preset-num", type=int, default=100, help="entries per task of realistic and hard")
    parser.add_argument("--presets", default="clean,realistic,hard",
                        help="generated splits (clean is always made: the SNR sweep re-noises it)")
    parser.add_argument("--snrs", default="20,10,5,0")
    parser.add_argument("--audio-only", action="store_true")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--world", choices=("procedural", "mesh"), default="procedural",
                        help="the simulated world of every generated split")
    args = parser.parse_args()

    presets = ["clean"] + [p for p in args.presets.split(",") if p and p != "clean"]
    unknown = [p for p in presets if p not in sensing.PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; expected some of {sorted(sensing.PRESETS)}")
    splits: dict[str, Path] = {}
    for name in presets:
        num = args.num if name == "clean" else args.preset_num
        root = args.out / name
        if not _generated(root):
            t0 = time.perf_counter()
            generate(root, "test", num, seed=SEED, tasks=TASKS, workers=args.workers, conditions=name,
                     overwrite=True, world=args.world)
            print(f"generated {name}: {3 * num} folders in {time.perf_counter() - t0:.0f} s")
        splits[name] = root
    for snr in [float(s) for s in args.snrs.split(",")]:
        root = args.out / f"diffuse{snr:g}dB"
        renoise(splits["clean"], root, snr)
        splits[f"diffuse@{snr:g} dB"] = root

    rows, curves = [], {}
    for method in _methods(args.checkpoint, args.audio_only):
        for name, root in splits.items():
            t0 = time.perf_counter()
            items = robustness.score_items(method, root, "test", TASKS)
            table = robustness.breakdown(items)
            robustness.write_report(table, args.out / "reports" / method.name / name.replace(" ", "").replace("@", "_"),
                                    f"{method.name} on {name}")
            e = table.get("E", {})
            rows.append([method.name, name, _cell(table.get("A", {}).get("all"), "°"),
                         _cell(table.get("B", {}).get("all"), "°"), _cell(table.get("D", {}).get("all"), "%"),
                         _cell(e.get("all"), "%"), _cell(e.get("gender", {}).get("male"), "%"),
                         _cell(e.get("gender", {}).get("female"), "%"),
                         f"{(time.perf_counter() - t0) / max(len(items), 1) * 1000:.0f}"])
            label = "clean" if name == "clean" else name.split("@")[1].split()[0] if "@" in name else None
            if label is not None:
                for task, t in table.items():
                    curves.setdefault(method.name, {}).setdefault(task, {})[label] = t["all"]
    header = ["method", "split", "A gc median", "B gc median", "D acc", "E acc", "E male", "E female", "ms/item"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    counts = {name: {t: len(json.loads((root / "test" / "manifests" / f"{t}.json").read_text())["annotation"])
                     for t in TASKS} for name, root in splits.items()}
    print("entries per task:", json.dumps(counts))
    robustness.error_vs_snr_plot(curves, args.out / "error_vs_snr.png")
    print(f"plot: {args.out / 'error_vs_snr.png'}; per-condition tables: {args.out / 'reports'}")


if __name__ == "__main__":
    main()
