"""The `jaeger` command: dataset generation, bag recording and conversion, evaluation, training.

Every failure a user can cause (bad paths, bad files, bad config) ends with exit status 2 and
one line saying what was wrong. Anything else is a bug: one line and exit status 1, or the
full traceback with JAEGER_DEBUG=1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from jaeger_ros.classical.method import ClassicalMethod
from jaeger_ros.data.dataset import DEFAULT_RESOLUTION, SPLITS, STARSS23, TASK_LETTERS, one_line


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 672x378, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return w, h


def _tasks(text: str) -> list[str]:
    letters = [t.strip().upper() for t in text.split(",") if t.strip()]
    bad = [t for t in letters if t not in TASK_LETTERS]
    if bad or not letters:
        raise argparse.ArgumentTypeError(f"tasks must be a comma list of {','.join(TASK_LETTERS)}, got {text!r}")
    return letters


def _eval_tasks(text: str) -> list[str]:
    keys = [t.strip() for t in text.split(",") if t.strip()]
    keys = [k if k.lower() == STARSS23 else k.upper() for k in keys]
    bad = [k for k in keys if k not in (*TASK_LETTERS, STARSS23)]
    if bad or not keys:
        raise argparse.ArgumentTypeError(f"tasks must be a comma list of {','.join(TASK_LETTERS)},{STARSS23}, "
                                         f"got {text!r}")
    return keys


def _cmd_import_official(args: argparse.Namespace) -> None:
    from jaeger_ros.data.official import REPORT_NAME, import_official, render_speech

    if args.speech_dir:
        speech = render_speech(args.release, args.speech_dir, manifests=args.manifests, workers=args.workers)
        for split, r in speech.items():
            print(f"speech {split}: wrote foa_ls.wav in {r['written']} folders, {len(r['failed'])} failed"
                  + (f" (first: {r['failed'][0]['folder']}: {r['failed'][0]['error']})" if r["failed"] else ""))
    report = import_official(args.release, args.out, manifests=args.manifests, foa_order=args.foa_order,
                             foa_normalization=args.foa_normalization, overwrite=args.overwrite)
    for split, tasks in report["splits"].items():
        for key, c in tasks.items():
            print(f"{split} {key}: {c['entries']} entries, {c['found']} found, {c['missing']} missing, "
                  f"{c['unreadable']} unreadable")
    print(f"report written to {Path(args.out) / REPORT_NAME}")


def _cmd_generate(args: argparse.Namespace) -> None:
    from jaeger_ros.data.dataset import generate

    counts = generate(args.out, args.split, args.num, seed=args.seed, tasks=args.tasks,
                      workers=args.workers, speech_dir=args.speech_dir, resolution=args.resolution,
                      overwrite=args.overwrite, conditions=args.conditions, world=args.world, scene=args.scene,
                      talkers=args.talkers)
    print(json.dumps({"out": str(Path(args.out) / args.split), "entries": counts}))


def _cmd_record(args: argparse.Namespace) -> None:
    from jaeger_ros.data.bag_record import record

    stats = record(args.out, args.duration, scenario=args.scenario, seed=args.seed, storage=args.storage,
                   width=args.resolution[0], height=args.resolution[1], rate_hz=args.rate,
                   compress=not args.no_compress, conditions=args.conditions, world=args.world,
                   talkers=args.talkers)
    print(json.dumps(stats.to_dict()))


def _cmd_from_bag(args: argparse.Namespace) -> None:
    from jaeger_ros.data.bag_dataset import convert_bags

    annotations = args.annotation if args.annotation else None
    report = convert_bags(args.bags, args.out, split=args.split, tasks=args.tasks, window_s=args.window_s,
                          min_active_s=args.min_active_s, annotations=annotations, allow_gaps=args.allow_gaps)
    print(json.dumps({"out": str(Path(args.out) / args.split), **report.to_dict()}))


CLASSICAL_METHODS = {ClassicalMethod(use_depth=depth, doa=doa).name: (depth, doa)
                     for depth in (True, False) for doa in ClassicalMethod.DOA}
"""Eval names of the classical baselines -> (use_depth, doa), as ClassicalMethod names itself."""


def _method(spec: str, protocol: str | None = None, base_model: str | None = None):
    """'classical' (A/B snapped to depth-detected loudspeakers), 'classical-audio' (A/B from the
    sound alone, as the paper's audio-only tasks), or a checkpoint directory / 'default' (the
    shipped tiny model) / 'official:CKPT_DIR[@QWEN_DIR]' (a released checkpoint); `protocol`:
    trained | official."""
    if spec in CLASSICAL_METHODS:
        use_depth, doa = CLASSICAL_METHODS[spec]
        return ClassicalMethod(use_depth=use_depth, doa=doa)
    from jaeger_ros.model.predictor import JaegerMethod

    if base_model and spec.startswith("official:") and "@" not in spec:
        spec = f"{spec}@{base_model}"
    return JaegerMethod.from_checkpoint(spec, protocol=protocol)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"need a whole number of at least 1, got {text!r}")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        rank, world = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard must look like 0/8 (rank/world size), got {text!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 0 <= rank < world size")
    return rank, world


def _cmd_eval(args: argparse.Namespace) -> None:
    from jaeger_ros.data.evaluation import evaluate, format_table, launcher_shard, merge

    if args.merge:
        reports = [merge(args.merge)]
        args.out = args.merge
    else:
        if (args.method is None) == (args.checkpoint is None):
            raise ValueError("give exactly one of --method classical or --checkpoint DIR|default (or --merge DIR)")
        if args.data is None:
            raise ValueError("--data is required (unless --merge DIR)")
        shard = args.shard or launcher_shard()
        if shard[1] > 1 and (args.out is None or args.compare or args.by_condition):
            raise ValueError("a sharded eval needs --out and takes no --compare/--by-condition")
        parser = args.parser or ("official" if args.protocol == "official" or
                                 str(args.checkpoint or "").startswith("official:") else "lenient")
        specs = [args.method or args.checkpoint] + ([args.compare] if args.compare else [])
        reports = []
        for k, spec in enumerate(specs):
            out = None
            if args.out:
                out = Path(args.out) if k == 0 else Path(args.out) / f"compare_{spec.replace('/', '_')}"
            reports.append(evaluate(_method(spec, args.protocol, args.base_model), args.data, split=args.split,
                                    tasks=args.tasks, out_dir=out, shard=shard, parser=parser,
                                    batch_size=args.batch_size))
        if shard[1] > 1:
            print(f"rank {shard[0]}/{shard[1]}: shard files written to {args.out}; when every rank is done, "
                  f"`jaeger eval --merge {args.out}` writes the report")
            return
    print(format_table(reports))
    for report in reports:
        skipped = report["skipped"]
        malformed = sum("entry" in s for s in skipped)
        if len(skipped) > malformed:
            where = f"listed in {args.out}/report.md" if args.out else "first: " + skipped[0]["error"]
            print(f"{report['method']}: skipped {len(skipped) - malformed} entries whose files could not be read "
                  f"({where})")
        if malformed:
            first = next(s for s in skipped if "entry" in s)
            print(f"{report['method']}: skipped {malformed} malformed manifest entries (first: {first['error']})")
    if args.by_condition:
        from jaeger_ros.data import robustness

        for k, spec in enumerate(specs):
            items = robustness.score_items(_method(spec, args.protocol), args.data, args.split, args.tasks or "ABDE")
            table = robustness.breakdown(items)
            print(robustness.format_breakdown(table, f"{spec}: by condition"))
            if args.out:
                robustness.write_report(table, Path(args.out) / (f"compare_{spec.replace('/', '_')}" if k else ""))
    if args.out:
        print(f"report written to {args.out}")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from jaeger_ros.model import calibration
    from jaeger_ros.model.predictor import checkpoint_path

    folder = checkpoint_path(args.checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such checkpoint folder")
    cal = calibration.fit(args.val, args.doa_correct_deg)
    print(f"calibration written to {cal.save(folder)}")
    if args.test:
        scores = calibration.read_scores(args.test, cal.doa_correct_deg)
        print(calibration.format_table(calibration.measure(cal, scores), cal.doa_correct_deg))
        if args.plot:
            calibration.reliability_figure(cal, scores).savefig(args.plot, dpi=120)
            print(f"reliability diagram written to {args.plot}")


def _cmd_train(args: argparse.Namespace) -> None:
    from jaeger_ros.model.train import train_from_config, train_recipe

    try:
        if args.recipe:
            if args.resume or args.init or args.init_audio or args.init_visual:
                raise ValueError("--recipe: the recipe says where each stage starts (rerun it to continue)")
            out = train_recipe(args.recipe, args.data, args.out or f"runs/{Path(args.recipe).stem}")
        else:
            out = train_from_config(args.config, args.data, args.out, resume=args.resume, init_from=args.init,
                                    init_audio=args.init_audio, init_visual=args.init_visual,
                                    base_model=args.base_model)
    except yaml.YAMLError as e:  # its message names no file
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{args.config or args.recipe}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    print(f"checkpoint written to {out}")


def _cmd_scene_convert(args: argparse.Namespace) -> None:
    from sim_bridge.mesh.habitat_semantic import convert_hm3d, convert_replica

    if args.replica:
        sidecar = convert_replica(args.replica, args.out, up=args.up or "z")
    else:
        sidecar = convert_hm3d(args.hm3d[0], args.hm3d[1], args.out, up=args.up or "y")
    counts: dict[str, int] = {}
    for info in sidecar["instances"].values():
        counts[info["category"]] = counts.get(info["category"], 0) + 1
    print(json.dumps({"out": str(args.out), "sidecar": str(Path(args.out).with_suffix(".json")),
                      "objects": len(sidecar["instances"]), "categories": dict(sorted(counts.items()))}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaeger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ds = sub.add_parser("dataset", help="SpatialSceneQA-format datasets")
    ds_sub = ds.add_subparsers(dest="dataset_command", required=True)
    gen = ds_sub.add_parser("generate", help="simulate and write a split")
    gen.add_argument("--out", required=True, help="dataset root; the split goes to OUT/SPLIT")
    gen.add_argument("--split", required=True, choices=SPLITS)
    gen.add_argument("--num", required=True, type=int, help="entries per task")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--tasks", type=_tasks, default=list(TASK_LETTERS), help="e.g. A,B,C,D,E")
    gen.add_argument("--workers", type=int, default=1)
    gen.add_argument("--speech-dir", default=None, help="dry speech (e.g. LibriSpeech flac) instead of espeak-ng")
    gen.add_argument("--resolution", type=_resolution, default=DEFAULT_RESOLUTION, help="WxH, default 672x378")
    gen.add_argument("--conditions", default="realistic", metavar="clean|realistic|hard|diffuse@SNR",
                     help="sensing conditions preset (sim_bridge/conditions.py), default realistic")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace the samples and manifests a previous run wrote into OUT/SPLIT (other files stay)")
    gen.add_argument("--world", default="mesh", choices=["procedural", "mesh"],
                     help="furnished mesh rooms (default; sim_bridge/mesh: pyrender, SoundSpaces 2.0's rlr engine "
                          "or pyroomacoustics) or procedural shoebox rooms (no GL, no furniture package needed)")
    gen.add_argument("--scene", default=None, metavar="FILE",
                     help="with --world mesh: your GLB/glTF/OBJ/PLY home and its semantic sidecar FILE.json "
                          "(categories; a camera and loudspeakers, else sampled per sample; `jaeger scene convert` "
                          "writes one from Habitat data: sim_bridge/mesh/import_scene.py) instead of sampled rooms")
    gen.add_argument("--talkers", default="loudspeakers", choices=["loudspeakers", "people", "mixed"],
                     help="who talks: loudspeakers (the official form, default), people (every source a person "
                          "talking from its mouth, box category person) or mixed")
    gen.set_defaults(func=_cmd_generate)
    io = ds_sub.add_parser("import-official", help="map the official SpatialSceneQA release onto OUT (no media copied)")
    io.add_argument("--release", required=True, metavar="ROOT",
                    help="the folder that stands for the manifests' /path/to/ prefix")
    io.add_argument("--manifests", default=None, metavar="DIR",
                    help="folder of the official manifests (default: ROOT's audio-only/, visual-only/, audio-visual/)")
    io.add_argument("--speech-dir", default=None, metavar="LIBRISPEECH",
                    help="first write each release folder's foa_ls.wav from its impulse responses and this "
                         "LibriSpeech folder (SPEAKERS.TXT, train-clean-100, dev-clean, test-clean)")
    io.add_argument("--out", required=True, metavar="DATA", help="dataset root to write (links and manifests)")
    io.add_argument("--foa-order", default="ACN", choices=["ACN", "FUMA"],
                    help="channel order of the release's FOA files (default ACN: channels used as they are)")
    io.add_argument("--foa-normalization", default="SN3D", choices=["SN3D", "N3D"],
                    help="normalisation of the release's FOA files (default SN3D: channels used as they are)")
    io.add_argument("--workers", type=int, default=1, help="processes for the speech step")
    io.add_argument("--overwrite", action="store_true", help="replace an earlier import in OUT")
    io.set_defaults(func=_cmd_import_official)
    fb = ds_sub.add_parser("from-bag", help="convert recorded rosbag2 bags into a split")
    fb.add_argument("bags", nargs="+", help="rosbag2 folders (mcap or sqlite3)")
    fb.add_argument("--out", required=True, help="dataset root; the split goes to OUT/SPLIT")
    fb.add_argument("--split", default="train", choices=SPLITS)
    fb.add_argument("--tasks", type=_tasks, default=list(TASK_LETTERS), help="e.g. A,C,D")
    fb.add_argument("--window-s", type=float, default=2.0, help="audio window ending at each frame stamp")
    fb.add_argument("--min-active-s", type=float, default=0.5, help="how long a voice must have talked")
    fb.add_argument("--annotation", nargs="+", default=None,
                    help="sidecar label file per bag (hardware bags without /sim/ground_truth)")
    fb.add_argument("--allow-gaps", action="store_true", help="skip frames whose window has an audio gap")
    fb.set_defaults(func=_cmd_from_bag)

    rec = sub.add_parser("record", help="record the simulated live world into a rosbag2")
    rec.add_argument("--duration", required=True, type=float, help="seconds of stream time")
    rec.add_argument("--out", required=True, help="bag folder to create")
    rec.add_argument("--scenario", default="single", choices=["single", "dual"])
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    rec.add_argument("--resolution", type=_resolution, default=(640, 480), help="WxH, default 640x480")
    rec.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    rec.add_argument("--no-compress", action="store_true", help="no zstd (chunks for mcap, messages for sqlite3)")
    rec.add_argument("--conditions", default="realistic", metavar="clean|realistic|hard|diffuse@SNR",
                     help="sensing conditions preset of the live world (sim_bridge/conditions.py), default realistic")
    rec.add_argument("--world", default="procedural", choices=["procedural", "mesh"],
                     help="procedural shoebox rooms (default) or furnished mesh rooms (single/dual scenarios)")
    rec.add_argument("--talkers", default="loudspeakers", choices=["loudspeakers", "people", "mixed"],
                     help="who talks: loudspeakers (default), people or mixed (ground truth names each category)")
    rec.set_defaults(func=_cmd_record)

    ev = sub.add_parser("eval", help="evaluate a method on a dataset split")
    ev.add_argument("--method", choices=list(CLASSICAL_METHODS),
                    default=None, help="classical: A/B answers snapped to depth-detected loudspeakers; classical-audio: "
                    "sound only; -robust: the noise-aware DoA (classical/doa_robust.py); "
                    "-dpd / -dpd-floor / -dpd-flat / -dpd-fuse: "
                    "the pooled direct-path covariance DoA (classical/doa_dpd.py)")
    ev.add_argument("--checkpoint", default=None, help="checkpoint dir or 'default'")
    ev.add_argument("--compare", default=None, help="a second method/checkpoint for a side-by-side table")
    ev.add_argument("--data", default=None, help="dataset root (required unless --merge)")
    ev.add_argument("--split", default="test", choices=SPLITS)
    ev.add_argument("--tasks", type=_eval_tasks, default=None, help=f"e.g. A,B or {STARSS23}")
    ev.add_argument("--out", default=None,
                    help="report folder (report.json, report.md, predictions.jsonl, official/, PNG plots)")
    ev.add_argument("--protocol", choices=["trained", "official"], default=None,
                    help="inference protocol of a checkpoint (default: trained; official for official:DIR)")
    ev.add_argument("--parser", choices=["official", "lenient"], default=None,
                    help="answer parser: official (the authors' scorers; default under --protocol official) "
                         "or lenient (ours, the default otherwise); docs/paper_protocol.md lists examples")
    ev.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                    help="evaluate rank K's part of N: sorted(paths)[K::N] per manifest (default: RANK/WORLD_SIZE "
                         "as torchrun/accelerate set them, else 0/1); writes shard files into --out")
    ev.add_argument("--base-model", default=None, metavar="QWEN_DIR",
                    help="local Qwen2.5-Omni-7B folder for official:CKPT_DIR (instead of @QWEN_DIR)")
    ev.add_argument("--batch-size", type=_positive_int, default=1, metavar="N",
                    help="checkpoints: answer N items of a task together (left padding, greedy; the answers "
                         "equal batch 1); the official protocol's whole files still go one at a time")
    ev.add_argument("--merge", default=None, metavar="DIR",
                    help="merge the shard files of a sharded run in DIR into its report (no evaluation)")
    ev.add_argument("--by-condition", action="store_true",
                    help="also break A/B/D/E down by SNR, noise, interferer, directivity, capsules, engine, "
                         "gender with bootstrap 95%% intervals (robustness.md)")
    ev.set_defaults(func=_cmd_eval)

    cal = sub.add_parser("calibrate", help="fit a checkpoint's confidence calibration on a validation "
                                          "split's predictions (calibration.json in the checkpoint)")
    cal.add_argument("--checkpoint", required=True, help="checkpoint dir or 'default'")
    cal.add_argument("--val", required=True, help="predictions.jsonl of `jaeger eval` on a validation split")
    cal.add_argument("--test", default=None, help="predictions.jsonl of another split: ECE before/after")
    cal.add_argument("--plot", default=None, help="reliability diagram PNG (with --test)")
    cal.add_argument("--doa-correct-deg", type=float, default=10.0,
                     help="an A/B answer counts as right within this great-circle error")
    cal.set_defaults(func=_cmd_calibrate)

    tr = sub.add_parser("train", help="train a JAEGER checkpoint")
    which = tr.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="one training config (config/train_tiny.yaml)")
    which.add_argument("--recipe", help="staged recipe: stages run in order, each from the previous "
                                        "one's checkpoint (config/train_tiny_recipe.yaml); OUT/final is the result")
    tr.add_argument("--data", required=True, nargs="+", help="one or more dataset roots")
    tr.add_argument("--out", default=None)
    tr.add_argument("--resume", action="store_true")
    tr.add_argument("--init", default=None, metavar="DIR|default",
                    help="fine-tune this checkpoint (default = the packaged one) instead of a fresh model")
    tr.add_argument("--init-audio", default=None, metavar="DIR",
                    help="start the audio tower (+IV, fused projection) from this checkpoint's weights")
    tr.add_argument("--init-visual", default=None, metavar="DIR",
                    help="start the vision tower from this checkpoint's weights")
    tr.add_argument("--base-model", default=None, metavar="QWEN_DIR",
                    help="local Qwen2.5-Omni-7B folder (a download of Qwen/Qwen2.5-Omni-7B), instead of the "
                         "model config's base_model_path")
    tr.set_defaults(func=_cmd_train)

    sc = sub.add_parser("scene", help="bring a scanned home in for --world mesh --scene")
    sc_sub = sc.add_subparsers(dest="scene_command", required=True)
    conv = sc_sub.add_parser("convert", help="Habitat semantic annotations -> GLB + sidecar (one node per object)")
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--replica", metavar="DIR", help="a Replica scene folder (habitat/mesh_semantic.ply, "
                                                      "habitat/info_semantic.json)")
    src.add_argument("--hm3d", nargs=2, metavar=("SEMANTIC_GLB", "SEMANTIC_TXT"), help="an HM3D *.semantic.glb "
                                                                                      "and its *.semantic.txt")
    conv.add_argument("--out", required=True, help="OUT.glb; the sidecar goes to OUT.json beside it")
    conv.add_argument("--up", choices=["y", "z"], default=None, help="the input's up axis (default: Replica z, HM3D y)")
    conv.set_defaults(func=_cmd_scene_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError, ImportError, yaml.YAMLError) as e:
        if os.environ.get("JAEGER_DEBUG"):
            raise
        print(f"jaeger: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaeger: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless asked for the traceback
        if os.environ.get("JAEGER_DEBUG"):
            raise
        print(f"jaeger: internal error: {type(e).__name__}: {one_line(e)} (JAEGER_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
