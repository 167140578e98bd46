"""Live benchmark: sim_bridge + jaeger_node as processes over a fixed-seed stream, scored per frame.

Why beside the live demo: `make demo` prints running figures; this writes one JSON of the
published, sound-only DoA and the matching with bootstrap 95 % intervals, so live runs can be
compared. It runs jaeger_ros.ros.live_demo's main (same processes, same scoring rule,
live_demo.SCORING_RULE) with a Scorer that also keeps each scored frame: its DoA error, whether
the talker's acoustic centre is in the image (SimSource.in_view), and whether the match is right;
per frame the candidates against the true boxes (loudspeaker precision and recall: a plant, lamp
or box claimed as a loudspeaker is a false positive; person recall), match accuracy per talker
category (match_accuracy_*: the matched candidate's label, the paper's answer, on frames whose
candidates are as many as the true boxes; box_match_*: every in-view talker frame, whether the
matched box is the talker's, by place; box_detail per scene), and, from jaeger_tracker's tracks, identity switches per talker per minute; by_drr bands
the frames by their talker's direct-to-reverberant ratio (SimSource.drr_db) and scene_detail lists
every scene (benchmarks/plot_live_drr.py draws and pools it).

Run (from a source checkout with the workspace sourced):
    python benchmarks/bench_live.py --conditions realistic --duration 120 --seed 3 --json OUT.json
    [--scenario single|dual] [--method classical|jaeger] [--candidates depth|classified|detectors]
    [--world procedural|mesh] [--talkers loudspeakers|people|mixed] [--no-tracker] [--out-of-view SHARE]
--conditions: clean | realistic | hard | diffuse@SNR. --candidates is jaeger_node's parameter (set in a
copy of the demo's params file; default: the file's value, classified). --out-of-view: sim_bridge's
out_of_view, the share of scenes where the robot looks away (talkers beside or behind it); the
sound-only DoA is then reported in view and out of view.
    python benchmarks/bench_live.py --pool-cost   # per-frame cost of the two DoA pools, no ROS
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from jaeger_ros.data.robustness import bootstrap_ci, cluster_bootstrap, drr_band, drr_bands
from jaeger_ros.ros import live_demo


PERSON_MATCH_M = 0.5
"""A person candidate finds a true person when their centres are this close horizontally (x, z of
the optical frame) or its centre lies on her true box's footprint widened by this much: a lifted
box holds the person's front only, so its centre sits nearer than the true box's, and a seated
person's true box (legs, chair) is larger than what is seen of her."""
SETTLED_S = 2.0
"""*_settled keys: only frames this long after their scene's first answered frame (the background
person detectors are a few frames behind a scene cut; on loaded cores, seconds)."""
TRACK_GATE_M = 1.0
"""A talker's track is the nearest track within this distance of her true position (map frame)."""
LOUDSPEAKER_CLAIMS = ("loudspeaker", "unknown", "")
"""Candidate categories that claim a loudspeaker: a depth blob (unknown) on a plant is a false positive."""


class ScoredFrame(NamedTuple):
    """One scored talker frame."""

    error_deg: float | None  # the published sound-only DoA against the talker (None: no DoA)
    in_view: bool
    correct: bool
    category: str            # the talker's: "loudspeaker" or "person"
    scene: int
    drr_db: float            # the talker's direct-to-reverberant ratio (SimSource.drr_db; NaN unknown)


def _category(box) -> str:
    return box.category or "loudspeaker"   # the simulator's boxes are loudspeakers unless they say otherwise


def _greedy(found: list, truth: list, close) -> int:
    """One-to-one pairs of found and true boxes that `close(a, b)` accepts, nearest first."""
    pairs = sorted((_centre_gap(a, b), i, j) for i, a in enumerate(found) for j, b in enumerate(truth) if close(a, b))
    used_i, used_j = set(), set()
    for _, i, j in pairs:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
    return len(used_i)


def _xyz(box) -> np.ndarray:
    p = box.center.position
    return np.array([p.x, p.y, p.z])


def _centre_gap(a, b) -> float:
    return float(np.linalg.norm(_xyz(a) - _xyz(b)))


def finds_person(centre: np.ndarray, person_centre: np.ndarray, person_size: np.ndarray) -> bool:
    """The person rule on camera-frame xyz (x, z horizontal): a candidate centred at `centre` finds
    the true person within PERSON_MATCH_M horizontally of her box's centre, or on her box's
    footprint widened by PERSON_MATCH_M (a seen front sits nearer than the true box's centre)."""
    gap = np.abs(np.asarray(centre, float) - np.asarray(person_centre, float))[[0, 2]]
    half = np.asarray(person_size, float)[[0, 2]] / 2 + PERSON_MATCH_M
    return float(np.hypot(*gap)) < PERSON_MATCH_M or bool(np.all(gap <= half))


def talker_box_matched(match, true_box) -> bool:
    """The matched candidate is the talker's own box, by where it is (not by its label, which the
    paper's answers use and which swaps when a neighbour's detected centre crosses the talker's):
    a loudspeaker within live_demo.BOX_MATCH_M of its true centre, a person by finds_person."""
    if match.index < 0:
        return False
    if _category(true_box) == "person":
        return finds_person(_xyz(match.matched_box), _xyz(true_box),
                            np.array([true_box.size.x, true_box.size.y, true_box.size.z]))
    return _centre_gap(match.matched_box, true_box) < live_demo.BOX_MATCH_M


def candidate_counts(match, gt) -> dict[str, int]:
    """One frame's candidates against the truth: loudspeaker claims that are a true loudspeaker
    (centres within live_demo.BOX_MATCH_M), claims, true loudspeakers; people found (PERSON_MATCH_M
    horizontally) and true people."""
    claims = [c for c in match.candidates if c.category in LOUDSPEAKER_CLAIMS]
    people = [c for c in match.candidates if c.category == "person"]
    true_ls = [b for b in gt.boxes if _category(b) == "loudspeaker"]
    true_people = [b for b in gt.boxes if _category(b) == "person"]
    def horizontal(a, b) -> bool:
        return finds_person(_xyz(a), _xyz(b), np.array([b.size.x, b.size.y, b.size.z]))
    return {"ls_tp": _greedy(claims, true_ls, lambda a, b: _centre_gap(a, b) < live_demo.BOX_MATCH_M),
            "ls_claims": len(claims), "ls_truth": len(true_ls),
            "person_tp": _greedy(people, true_people, horizontal), "person_truth": len(true_people)}


class FrameScorer(live_demo.Scorer):
    """live_demo.Scorer that keeps each scored frame (ScoredFrame), and per frame with ground truth
    its scene and candidate_counts: it hands the pending matches to the base class one at a time
    and reads what each one added."""

    made: list["FrameScorer"] = []  # the demo builds its own scorer; this is how we find it

    def __init__(self, window_s: float) -> None:
        super().__init__(window_s)
        self.frames: list[ScoredFrame] = []
        self.detections: list[tuple[int, float, dict[str, int]]] = []   # (scene, stamp s, counts)
        self.truth_log: list[tuple[int, int, list[tuple[int, np.ndarray, bool]]]] = []  # (stamp, scene, talkers)
        self.box_frames: list[tuple[int, str, bool]] = []   # in-view talker frames: (scene, category, box matched)
        FrameScorer.made.append(self)

    def on_truth(self, msg) -> None:
        talkers = [(s.loudspeaker, np.array([s.position.x, s.position.y, s.position.z]), bool(s.active))
                   for s in msg.sources]
        self.truth_log.append((self.key(msg.header.stamp), int(msg.scene_id), talkers))
        super().on_truth(msg)

    def _drain(self) -> None:
        queued = list(self.pending)
        self.pending.clear()
        for i, match in enumerate(queued):
            scored, correct, errors, talker_frames = self.scored, self.correct, len(self.doa_errors), self.talker_frames
            self.pending.append(match)
            super()._drain()
            if self.pending:  # its ground truth has not arrived yet: keep it and the rest, in order
                self.pending.extend(queued[i + 1:])
                return
            if self.last is None or self.last[0] is not match:
                continue   # its ground truth was lost
            gt = self.last[1]
            stamp = gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9
            self.detections.append((int(gt.scene_id), stamp, candidate_counts(match, gt)))
            target = self.target_of(match, gt)
            if self.talker_frames > talker_frames and target.loudspeaker >= 0:
                true_box = gt.boxes[target.loudspeaker]
                self.box_frames.append((int(gt.scene_id), _category(true_box), talker_box_matched(match, true_box)))
            if self.scored > scored:   # a scored frame has its target
                error = self.doa_errors[-1] if len(self.doa_errors) > errors else None
                if target.loudspeaker < 0:  # out of view: no box, the truth names it
                    category = target.category or "loudspeaker"
                else:
                    category = _category(gt.boxes[target.loudspeaker])
                self.frames.append(ScoredFrame(error, bool(target.in_view), self.correct > correct, category,
                                               int(gt.scene_id), float(target.drr_db)))


def _row(values: np.ndarray, stat, rng: np.random.Generator) -> dict:
    if values.size == 0:
        return {"value": None, "ci95": None, "n": 0}
    lo, hi = bootstrap_ci(values, stat, rng)
    return {"value": float(stat(values)), "ci95": [lo, hi], "n": int(values.size)}


def _ratio_by_scene(scenes: np.ndarray, num: np.ndarray, den: np.ndarray, rng: np.random.Generator) -> dict:
    """sum(num) / sum(den) with a 95 % bootstrap interval over scenes (a scene's frames share
    its candidates, so frames are not independent); n = the denominator, scenes = its scenes."""
    if den.sum() == 0:
        return {"value": None, "ci95": None, "n": 0, "scenes": 0}

    def ratio(rows: np.ndarray) -> float:
        return float(rows[:, 0].sum() / rows[:, 1].sum()) if rows[:, 1].sum() > 0 else float("nan")

    row = cluster_bootstrap(scenes, np.column_stack([num, den]).astype(float), ratio, rng, n=2000)
    return {**row, "n": int(den.sum()), "scenes": int(len({s for s, d in zip(scenes, den) if d > 0}))}


def by_drr(frames: list[ScoredFrame], rng: np.random.Generator) -> dict:
    """Sound-only DoA median and match accuracy of the scored frames in each band of their
    talker's DRR (robustness.drr_band), intervals over scenes; frames of unknown DRR are counted."""
    out: dict = {"unknown_drr_frames": sum(drr_band(f.drr_db) is None for f in frames)}
    for band in drr_bands():
        sel = [f for f in frames if drr_band(f.drr_db) == band]
        with_doa = [f for f in sel if f.error_deg is not None]
        out[band] = {"doa_error_median_deg": cluster_bootstrap(np.array([f.scene for f in with_doa], int),
                                                               np.array([f.error_deg for f in with_doa]),
                                                               np.median, rng),
                     "match_accuracy": cluster_bootstrap(np.array([f.scene for f in sel], int),
                                                         np.array([100.0 * f.correct for f in sel]), np.mean, rng)}
    return out


def scene_detail(frames: list[ScoredFrame], scene_snr: dict[str, float | None]) -> list[dict]:
    """Per scene: its talkers' DRR (median over scored frames; None unknown), SNR, sound-only DoA
    median, match accuracy and frames: what plot_live_drr.py draws and pools."""
    rows = []
    for scene in sorted({f.scene for f in frames}):
        sel = [f for f in frames if f.scene == scene]
        errs = [f.error_deg for f in sel if f.error_deg is not None]
        drr = [f.drr_db for f in sel if drr_band(f.drr_db) is not None]
        rows.append({"scene": scene, "drr_db": float(np.median(drr)) if drr else None,
                     "snr_db": scene_snr.get(str(scene), scene_snr.get(scene)),
                     "categories": sorted({f.category for f in sel}),
                     "doa_error_median_deg": float(np.median(errs)) if errs else None,
                     "match_accuracy": float(100.0 * np.mean([f.correct for f in sel])), "frames": len(sel)})
    return rows


def box_detail(box_frames: list[tuple[int, str, bool]]) -> list[dict]:
    """Per scene and talker category: in-view talker frames and how many matched the talker's box
    (what pooling runs by scene needs)."""
    counts: dict[tuple[int, str], list[int]] = {}
    for scene, category, ok in box_frames:
        row = counts.setdefault((scene, category), [0, 0])
        row[0] += int(ok)
        row[1] += 1
    return [{"scene": scene, "category": category, "matched": matched, "frames": frames}
            for (scene, category), (matched, frames) in sorted(counts.items())]


def box_match(detail: list[dict], category: str, rng: np.random.Generator) -> dict:
    """Share of a talker category's in-view frames whose matched box is the talker's, pooled over
    box_detail's scenes with an interval over scenes (fraction, like the candidate ratios)."""
    rows = [r for r in detail if r["category"] == category]
    return _ratio_by_scene(np.array([r["scene"] for r in rows], dtype=int),
                           np.array([r["matched"] for r in rows], dtype=float),
                           np.array([r["frames"] for r in rows], dtype=float), rng)


def id_switches(truth_log: list, talkers: list, rng: np.random.Generator) -> dict:
    """Identity switches per talker per minute: for each tracker message, each talker talking in
    the latest ground truth takes the nearest track within TRACK_GATE_M (map frame); a switch is
    its track id changing between consecutive such messages of the same scene. Talker-minutes
    are those messages' span per talker; 95 % bootstrap interval over talkers."""
    if not talkers or not truth_log:
        return {"value": None, "ci95": None, "talkers": 0, "talker_minutes": 0.0}
    stamps = np.array([t[0] for t in truth_log])
    seen: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for stamp, tracks in talkers:
        k = int(np.searchsorted(stamps, stamp, side="right")) - 1
        if k < 0 or not tracks:
            continue
        _, scene, sources = truth_log[k]
        for index, position, active in sources:
            if not active:
                continue
            gaps = [float(np.linalg.norm(p - position)) for _, p in tracks]
            best = int(np.argmin(gaps))
            if gaps[best] <= TRACK_GATE_M:
                seen.setdefault((scene, index), []).append((stamp, tracks[best][0]))
    switches, minutes = [], []
    for events in seen.values():
        ids = [tid for _, tid in events]
        switches.append(sum(a != b for a, b in zip(ids, ids[1:])))
        minutes.append(max((events[-1][0] - events[0][0]) / 6e10, 1e-9))
    switches, minutes = np.array(switches, float), np.array(minutes)
    keep = minutes >= 1.0 / 60.0   # a talker tracked for under a second tells nothing about switches
    switches, minutes = switches[keep], minutes[keep]
    if not minutes.size:
        return {"value": None, "ci95": None, "talkers": 0, "talker_minutes": 0.0}
    pick = rng.integers(0, len(minutes), (2000, len(minutes)))
    rates = switches[pick].sum(1) / minutes[pick].sum(1)
    return {"value": float(switches.sum() / minutes.sum()),
            "ci95": [float(np.percentile(rates, 2.5)), float(np.percentile(rates, 97.5))],
            "talkers": int(minutes.size), "talker_minutes": float(minutes.sum())}


def talkers_parameter() -> str | None:
    """The name of sim_bridge's parameter that chooses loudspeaker / people / mixed talkers, or
    None while the simulator has none (only loudspeakers talk then)."""
    from sim_bridge.node import PARAMETERS
    return next((p.name for p in PARAMETERS if "mixed" in p.choices and "people" in p.choices), None)


def pool_cost(seconds: float = 8.0, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per-frame cost (ms) of the node's sound-only DoA pools (and of the robust one hearing the audio
    dereverberated, the node's `dereverb`), without ROS: espeak-ng speech in
    an image-source room (RT60 ~0.5 s) plus diffuse pink noise at 10 dB, as 0.5 s windows every 0.1 s."""
    import time

    from jaeger_ros.classical import tracking
    from jaeger_ros.classical.dereverb import StreamDereverb
    from jaeger_ros.core import foa
    from jaeger_ros.core.geometry import rotation_y
    from sim_bridge import conditions as sensing
    from sim_bridge.acoustics import convolve_foa, foa_rir
    from sim_bridge.room import Room
    from sim_bridge.speech import SpeechBank

    rng = np.random.default_rng(seed)
    bank = SpeechBank("test", seed)
    dry = np.concatenate([bank.utterance("female", rng) for _ in range(3)])[: int(seconds * foa.SAMPLE_RATE)]
    room = Room((6.0, 2.8, 5.0), (0.2, 0.2, 0.2, 0.35, 0.2, 0.2))
    wet = convolve_foa(dry, foa_rir(room, np.array([1.6, 1.0, 1.6]), np.array([3.0, 1.4, 4.2]), rotation_y(15.0), rng=rng))
    noise = sensing.diffuse_noise("pink", wet.shape[1], rng)
    x = wet + noise * np.sqrt(sensing.active_power(wet[0]) / np.mean(noise[0] ** 2) / 10.0)
    window, step, rate = foa.SAMPLE_RATE // 2, foa.SAMPLE_RATE // 10, foa.SAMPLE_RATE
    out = {}
    for name, pool, heard in (("onset (OnsetPool)", tracking.OnsetPool(), None),
                              ("robust (RobustPool)", tracking.RobustPool(), None),
                              ("robust, dereverberated (StreamDereverb, fit in a thread)", tracking.RobustPool(),
                               StreamDereverb(background=True))):
        times = []
        for end in range(window, x.shape[1] + 1, step):
            t0 = time.perf_counter()
            w = x[:, end - window:end]
            pool.update(end / rate, w if heard is None else heard(end / rate, w, rate), rate)
            times.append((time.perf_counter() - t0) * 1000.0)
        t = np.array(times[5:])  # the first frames fill the pool
        out[name] = {"frames": int(t.size), "median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", default="realistic")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", choices=("single", "dual"), default="single")
    parser.add_argument("--method", choices=("classical", "jaeger"), default="classical")
    parser.add_argument("--candidates", choices=("depth", "classified", "detectors"), default=None,
                        help="jaeger_node parameter candidates (default: the params file's value)")
    parser.add_argument("--world", choices=("procedural", "mesh"), default=None,
                        help="sim_bridge parameter world (default: the params file's value, procedural)")
    parser.add_argument("--talkers", choices=("loudspeakers", "people", "mixed"), default="loudspeakers",
                        help="who talks (sim_bridge's talkers parameter; people/mixed need a simulator that has it)")
    parser.add_argument("--no-tracker", action="store_true",
                        help="do not run jaeger_tracker (no id_switches_per_talker_min)")
    parser.add_argument("--out-of-view", type=float, default=None, metavar="SHARE",
                        help="sim_bridge parameter out_of_view: share of scenes where the robot looks away (0-1)")
    parser.add_argument("--jaeger-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="set a jaeger_node parameter of the params file (repeatable), e.g. dereverb:=true")
    parser.add_argument("--json", type=Path, help="where to write the figures (required for a live run)")
    parser.add_argument("--pool-cost", action="store_true", help="only time the two DoA pools (no ROS) and exit")
    args = parser.parse_args(argv)
    if args.pool_cost:
        print(json.dumps(pool_cost(seed=args.seed), indent=2))
        return 0
    if args.json is None:
        parser.error("--json is required for a live run")
    if args.out_of_view is not None and not 0.0 <= args.out_of_view <= 1.0:
        parser.error(f"--out-of-view must be a share in [0, 1], got {args.out_of_view}")
    node_params = {}
    for item in args.jaeger_param:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            parser.error(f"--jaeger-param takes NAME:=VALUE, got {item!r}")
        node_params[name] = yaml.safe_load(value)

    with tempfile.TemporaryDirectory() as out:
        params = yaml.safe_load(live_demo.DEFAULT_PARAMS.read_text())
        if args.candidates is not None:
            params["jaeger_node"]["ros__parameters"]["candidates"] = args.candidates
        params["jaeger_node"]["ros__parameters"].update(node_params)
        if args.world is not None:
            params["sim_bridge"]["ros__parameters"]["world"] = args.world
        if args.out_of_view is not None:
            params["sim_bridge"]["ros__parameters"]["out_of_view"] = args.out_of_view
        if args.talkers != "loudspeakers":
            name = talkers_parameter()
            if name is None:
                print(f"bench_live: --talkers {args.talkers}: this sim_bridge has no talkers parameter with people "
                      "(only loudspeakers talk)", file=sys.stderr)
                return 2
            params["sim_bridge"]["ros__parameters"][name] = args.talkers
        params_file = Path(out) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params))
        candidates = params["jaeger_node"]["ros__parameters"].get("candidates", "classified")
        original = live_demo.Scorer
        live_demo.Scorer = FrameScorer  # the demo builds its scorer by this name
        try:
            status = live_demo.main(["--duration", str(args.duration), "--seed", str(args.seed), "--conditions",
                                     args.conditions, "--scenario", args.scenario, "--method", args.method,
                                     "--params", str(params_file), "--out", out]
                                    + ([] if args.no_tracker else ["--tracker"]))
        finally:
            live_demo.Scorer = original
        summary_path = Path(out) / "summary.json"
        if status != 0 or not summary_path.is_file():
            print("bench_live: the live run failed (see above)", file=sys.stderr)
            return 1
        summary = json.loads(summary_path.read_text())
    scorer = FrameScorer.made[-1]
    frames = scorer.frames
    rng = np.random.default_rng(0)
    err = np.array([f.error_deg for f in frames if f.error_deg is not None])
    in_err = np.array([f.error_deg for f in frames if f.error_deg is not None and f.in_view])
    out_err = np.array([f.error_deg for f in frames if f.error_deg is not None and not f.in_view])
    correct = np.array([100.0 * f.correct for f in frames])
    by_category = {c: np.array([100.0 * f.correct for f in frames if f.category == c])
                   for c in ("loudspeaker", "person")}
    err_by_category = {c: np.array([f.error_deg for f in frames if f.error_deg is not None and f.category == c])
                       for c in ("loudspeaker", "person")}
    lat = np.array([(r - s) * 1000.0 for r, s in scorer.received])
    scenes = np.array([d[0] for d in scorer.detections], dtype=int)
    stamps = np.array([d[1] for d in scorer.detections], dtype=float)
    counts = {k: np.array([d[2][k] for d in scorer.detections], dtype=float)
              for k in ("ls_tp", "ls_claims", "ls_truth", "person_tp", "person_truth")}
    # frames SETTLED_S or more after their scene's first answered frame: the background detectors have had time
    first = {s: stamps[scenes == s].min() for s in np.unique(scenes)}
    settled = np.array([t - first[s] >= SETTLED_S for s, t in zip(scenes, stamps)], dtype=bool)
    boxes = box_detail(scorer.box_frames)
    result = {
        "conditions": args.conditions, "duration_s": summary["duration_s"], "seed": args.seed,
        "scenario": args.scenario, "method": args.method, "candidates": candidates, "talkers": args.talkers,
        "world": params["sim_bridge"]["ros__parameters"].get("world", "procedural"), "scoring_rule": live_demo.SCORING_RULE,
        "out_of_view": params["sim_bridge"]["ros__parameters"].get("out_of_view", 0.0), "jaeger_params": node_params,
        "candidate_rule": f"per frame with ground truth; a loudspeaker claim (category {LOUDSPEAKER_CLAIMS}) is right "
                          f"within {live_demo.BOX_MATCH_M} m of a true loudspeaker's centre, a person within "
                          f"{PERSON_MATCH_M} m horizontally; one-to-one; intervals over scenes",
        "loudspeaker_precision": _ratio_by_scene(scenes, counts["ls_tp"], counts["ls_claims"], rng),
        "loudspeaker_recall": _ratio_by_scene(scenes, counts["ls_tp"], counts["ls_truth"], rng),
        "person_recall": _ratio_by_scene(scenes, counts["person_tp"], counts["person_truth"], rng),
        "loudspeaker_recall_settled": _ratio_by_scene(scenes[settled], counts["ls_tp"][settled],
                                                      counts["ls_truth"][settled], rng),
        "person_recall_settled": _ratio_by_scene(scenes[settled], counts["person_tp"][settled],
                                                 counts["person_truth"][settled], rng),
        "doa_error_median_deg": _row(err, np.median, rng),
        "doa_error_median_in_view_deg": _row(in_err, np.median, rng),
        "doa_error_median_out_of_view_deg": _row(out_err, np.median, rng),
        "doa_error_median_loudspeaker_deg": _row(err_by_category["loudspeaker"], np.median, rng),
        "doa_error_median_person_deg": _row(err_by_category["person"], np.median, rng),
        "match_accuracy": _row(correct, np.mean, rng),
        "match_accuracy_in_view": _row(np.array([100.0 * f.correct for f in frames if f.in_view]), np.mean, rng),
        "match_accuracy_loudspeaker": _row(by_category["loudspeaker"], np.mean, rng),
        "match_accuracy_person": _row(by_category["person"], np.mean, rng),
        **{f"box_match_{c}": box_match(boxes, c, rng) for c in ("loudspeaker", "person")},
        "id_switches_per_talker_min": id_switches(scorer.truth_log, scorer.talkers, rng),
        "latency_p95_ms": _row(lat, lambda v: np.percentile(v, 95), rng),
        "rate_hz": summary["rate_hz"], "scored_frames": len(frames), "frames_with_truth": len(scenes),
        "scenes": int(np.unique(scenes).size), "scene_snr_db": summary.get("scene_snr_db", {}),
        "by_drr": by_drr(frames, rng), "scene_detail": scene_detail(frames, summary.get("scene_snr_db", {})),
        "box_detail": boxes,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
