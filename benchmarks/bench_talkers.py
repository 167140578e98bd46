"""Talkers over a moving robot: world-frame track quality and the turn-to-speaker behaviour.

Runs the `party` pipeline as four processes, in real time, on a private ROS domain (localhost,
Fast DDS with config/fastdds.xml as the launch files use it):
sim_bridge (talkers taking turns around a robot base that executes cmd_vel), jaeger_node
(classical by default), jaeger_tracker and turn_to_speaker, all with config/party.yaml; this
script listens to /sim/ground_truth (the truth, in map), /jaeger/talkers and /cmd_vel.

Figures (the JSON keys in brackets):
- talker position error in map, metres, median and p90, for talkers SEEN by the camera while
  talking before that time [position_error_seen_median_m] and for talkers only HEARD so far
  [position_error_heard_median_m]: each TalkerArray is matched one-to-one to the talkers heard in
  the last 30 s (nearest first, at most GATE_ERROR_M apart);
- id switches per talker per minute [id_switches_per_talker_min]: the matched track id of a
  talker changing between consecutive matched messages;
- voice identity: the voice id (Talker.voice_id) of the track matched to a talker changing
  between consecutive matched messages, ignoring unnamed tracks [voice_id_switches_per_talker_min];
  distinct voice ids matched to each talker (1 = one identity per voice) [voice_ids_per_talker_max];
  distinct voice ids published against the talkers heard [voice_ids_total]; share of published
  tracks that carry a voice id [tracks_with_voice_id_share];
- recall [recall]: share of (message, talker heard in the last 30 s and first heard >= 1 s
  before) pairs with a track within GATE_RECALL_M;
- time from a new talker's onset (its first speech after another talker's) to the robot facing
  it: |azimuth from the camera| within the behaviour's dead band (turn_to_speaker's
  dead_band_deg in config/party.yaml, or --facing-deg) (median, p90; never faced counts as
  infinite; onsets less than CENSOR_S before the end are left out: they could not be faced in
  time to count) [time_to_face_median_s];
- share of the robot's turns (rotation episodes of >= 10 deg, pauses under 0.5 s joined) that
  end facing the right talker: the one talking when the turn ends (or the last one who talked),
  within the same angle once the robot settled (3 frames later) [correct_turn_share];
- CPU of each node (share of one core over the run) and whether the pipeline kept real time
  (frames published vs. expected, outputs of jaeger_node and the tracker per frame).

Usage: python benchmarks/bench_talkers.py --duration 120 --seed 0 [--json FILE] [--method classical]
       [--world procedural|mesh]
       [--jaeger-param vad:=false --jaeger-param voice_id:=false]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GATE_ERROR_M = 2.0
GATE_RECALL_M = 1.0
RECENT_S = 30.0
CENSOR_S = 5.0
NODES = {"sim_bridge": "sim_bridge.node", "jaeger_node": "jaeger_ros.ros.jaeger_node",
         "jaeger_tracker": "jaeger_ros.ros.tracker_node", "turn_to_speaker": "jaeger_ros.ros.turn_to_speaker"}


@dataclass
class Truth:
    """One /sim/ground_truth message: camera yaw in map and every talker."""

    t: float
    yaw: float
    positions: np.ndarray  # (n, 3) map
    active: np.ndarray  # (n,) bool
    in_view: np.ndarray  # (n,) bool
    azimuth_deg: np.ndarray  # (n,) from the camera, positive left


@dataclass
class Recording:
    truths: list[Truth] = field(default_factory=list)
    talkers: list[tuple[float, list[tuple[int, np.ndarray]]]] = field(default_factory=list)
    voice_ids: list[dict[int, str]] = field(default_factory=list)  # per TalkerArray: track id -> voice id
    commands: int = 0


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def match(tracks: list[tuple[int, np.ndarray]], truth: np.ndarray, candidates: list[int],
          gate: float) -> dict[int, tuple[int, float]]:
    """Greedy one-to-one: talker index -> (track id, distance), nearest pairs first."""
    pairs = sorted((float(np.linalg.norm(p - truth[k])), k, tid) for k in candidates for tid, p in tracks)
    out: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for dist, k, tid in pairs:
        if dist <= gate and k not in out and tid not in used:
            out[k] = (tid, dist)
            used.add(tid)
    return out


def dead_band_deg() -> float:
    """The behaviour's own "facing" angle, from the configuration the benchmark runs."""
    import yaml
    params = yaml.safe_load((REPO / "config" / "party.yaml").read_text())
    return float(params["turn_to_speaker"]["ros__parameters"]["dead_band_deg"])


def score(rec: Recording, duration_s: float, facing_deg: float) -> dict:
    truths = rec.truths
    times = np.array([g.t for g in truths])
    n = truths[0].positions.shape[0]
    active = np.array([g.active for g in truths])
    seen_talking = np.array([g.active & g.in_view for g in truths])
    first_heard = [times[active[:, k]][0] if active[:, k].any() else math.inf for k in range(n)]
    err_seen, err_heard, hits, total = [], [], 0, 0
    ids: list[list[int]] = [[] for _ in range(n)]
    voices: list[list[str]] = [[] for _ in range(n)]
    for (stamp, tracks), named in zip(rec.talkers, rec.voice_ids or [{}] * len(rec.talkers)):
        i = int(np.clip(np.searchsorted(times, stamp), 0, len(times) - 1))
        window = (times >= stamp - RECENT_S) & (times <= stamp)
        recent = [k for k in range(n) if active[window, k].any() and first_heard[k] <= stamp - 1.0]
        if not recent:
            continue
        truth = truths[i].positions
        close = match(tracks, truth, recent, GATE_ERROR_M)
        for k in recent:
            total += 1
            if k in close:
                tid, dist = close[k]
                hits += dist <= GATE_RECALL_M
                ids[k].append(tid)
                if named.get(tid):
                    voices[k].append(named[tid])
                (err_seen if seen_talking[times <= stamp, k].any() else err_heard).append(dist)
    switches = sum(sum(a != b for a, b in zip(seq, seq[1:])) for seq in ids)
    voice_switches = sum(sum(a != b for a, b in zip(seq, seq[1:])) for seq in voices)
    published = [v for named in rec.voice_ids for v in named.values()]
    # over-counting: tracks published per talker heard so far (1.0 = one track per real talker)
    per_talker = [len(tracks) / heard for stamp, tracks in rec.talkers
                  if (heard := sum(f <= stamp - 1.0 for f in first_heard))]
    minutes = duration_s / 60.0

    # onsets of a new talker and the time until the camera faces it
    onsets, last = [], None
    for j in range(1, len(truths)):
        for k in range(n):
            if active[j, k] and not active[j - 1, k] and k != last:
                onsets.append((j, k))
        talking = np.flatnonzero(active[j])
        if talking.size:
            last = int(talking[0]) if last not in talking else last
    censored = [(j, k) for j, k in onsets if times[j] > times[-1] - CENSOR_S]
    onsets = [o for o in onsets if o not in censored]
    to_face = []
    for j, k in onsets:
        later = [m for m in range(j, len(truths)) if abs(truths[m].azimuth_deg[k]) <= facing_deg]
        to_face.append(times[later[0]] - times[j] if later else math.inf)

    # rotation episodes and whether each ends facing the talker of that moment
    yaw = np.unwrap([g.yaw for g in truths])
    rate = np.abs(np.gradient(yaw, times)) if len(times) > 2 else np.zeros(len(times))
    moving = np.flatnonzero(rate > 0.2)
    episodes = []  # (first, last) index of each turn: gaps under 0.5 s joined, under 10 deg dropped
    for j in moving:
        if episodes and times[j] - times[episodes[-1][1]] < 0.5:
            episodes[-1][1] = j
        else:
            episodes.append([j, j])
    episodes = [(a, b) for a, b in episodes if abs(yaw[b] - yaw[a]) >= math.radians(10.0)]
    correct = 0
    for _, last in episodes:
        speaking = np.flatnonzero(active[last])  # who is right: talking when the turn ends ...
        if not speaking.size:  # ... or the last one who talked
            before = np.flatnonzero(active[:last + 1].any(axis=1))
            speaking = np.flatnonzero(active[before[-1]]) if before.size else speaking
        end = min(last + 3, len(truths) - 1)  # settled
        correct += bool(speaking.size) and any(abs(truths[end].azimuth_deg[k]) <= facing_deg for k in speaking)
    finite = [t for t in to_face if math.isfinite(t)]
    return {
        "position_error_seen_median_m": percentile(err_seen, 50), "position_error_seen_p90_m": percentile(err_seen, 90),
        "position_error_heard_median_m": percentile(err_heard, 50),
        "position_error_heard_p90_m": percentile(err_heard, 90),
        "position_samples_seen": len(err_seen), "position_samples_heard": len(err_heard),
        "id_switches_per_talker_min": switches / n / minutes if minutes > 0 else None,
        "id_switches": int(switches),
        "voice_id_switches_per_talker_min": voice_switches / n / minutes if minutes > 0 else None,
        "voice_id_switches": int(voice_switches),
        "voice_ids_per_talker": [len(set(seq)) for seq in voices],
        "voice_ids_per_talker_max": max(len(set(seq)) for seq in voices),
        "voice_ids_total": len({v for v in published if v}),
        "talkers_heard": int(sum(math.isfinite(f) for f in first_heard)),
        "tracks_with_voice_id_share": float(np.mean([bool(v) for v in published])) if published else None,
        "tracks_per_heard_talker_median": float(np.median(per_talker)) if per_talker else None,
        "tracks_per_heard_talker_max": float(np.max(per_talker)) if per_talker else None,
        "recall": hits / total if total else None,
        "time_to_face_median_s": float(np.median(to_face)) if to_face else None,
        "time_to_face_p90_s": float(np.percentile(to_face, 90)) if to_face else None,
        "onsets": len(onsets), "onsets_faced": len(finite), "onsets_censored": len(censored),
        "correct_turn_share": correct / len(episodes) if episodes else None,
        "turns": len(episodes), "facing_deg": facing_deg,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from geometry_msgs.msg import TwistStamped  # turn_to_speaker's default (parameter stamped)
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from jaeger_ros.msg import SimGroundTruth, SpeakerMatch, TalkerArray
    from jaeger_ros.ros import convert as rc

    domain = random.randint(1, 200)
    # as the launch files: images through a large shared-memory segment (config/fastdds.xml); with
    # Fast DDS's default 512 KiB one a colour image is overwritten by the depth image published
    # right after it, and about a quarter of the frames never reach jaeger_node
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds.xml"))
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    params = str(REPO / "config" / "party.yaml")
    overrides = {"sim_bridge": [f"seed:={args.seed}", f"talkers:={args.talkers}", f"world:={args.world}"],
                 "jaeger_node": [f"method:={args.method}", *args.jaeger_param]}
    logs = Path(tempfile.mkdtemp(prefix="bench_talkers_"))
    procs = {name: subprocess.Popen([sys.executable, "-m", module, "--ros-args", "--params-file", params,
                                     *[a for o in overrides.get(name, []) for a in ("-p", o)]],
                                    cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=(logs / f"{name}.log").open("w"), start_new_session=True)
             for name, module in NODES.items()}
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = Context()
    rclpy.init(args=[], context=ctx, domain_id=domain)  # not this script's argv: --jaeger-param values look like remaps
    node = rclpy.create_node("bench_talkers", context=ctx)
    rec = Recording()
    counts = {"matches": 0, "frames": 0}

    def on_truth(msg: SimGroundTruth) -> None:
        pose = rc.pose_from_msg(msg.camera_pose)
        forward = pose[:3, 2]  # optical z in map
        rec.truths.append(Truth(rc.stamp_to_seconds(msg.header.stamp), math.atan2(forward[1], forward[0]),
                                np.array([[s.position.x, s.position.y, s.position.z] for s in msg.sources]),
                                np.array([s.active for s in msg.sources]), np.array([s.in_view for s in msg.sources]),
                                np.array([s.azimuth_deg for s in msg.sources])))

    def on_talkers(msg: TalkerArray) -> None:
        rec.talkers.append((rc.stamp_to_seconds(msg.header.stamp),
                            [(t.id, np.array([t.position.x, t.position.y, t.position.z])) for t in msg.talkers]))
        rec.voice_ids.append({t.id: t.voice_id for t in msg.talkers})

    def on_cmd(_: TwistStamped) -> None:
        rec.commands += 1

    def on_match(_: SpeakerMatch) -> None:
        counts["matches"] += 1

    node.create_subscription(SimGroundTruth, "/sim/ground_truth", on_truth, 50)
    node.create_subscription(TalkerArray, "/jaeger/talkers", on_talkers, 50)
    node.create_subscription(TwistStamped, "/cmd_vel", on_cmd, 50)
    node.create_subscription(SpeakerMatch, "/jaeger/speaker_match", on_match, 50)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 120.0
        while not rec.truths and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                raise SystemExit(f"{dead[0]} exited: {(logs / f'{dead[0]}.log').read_text()[-2000:]}")
        if not rec.truths:
            raise SystemExit("no ground truth within 120 s")
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        own0, wall0 = time.process_time(), time.monotonic()
        matches0 = counts["matches"]
        rec.truths.clear()
        end = wall0 + args.duration
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        wall = time.monotonic() - wall0
        cpu = {name: (cpu_seconds(p.pid) - cpu0[name]) / wall for name, p in procs.items()}
        cpu["bench_listener"] = (time.process_time() - own0) / wall
        matches = counts["matches"] - matches0
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    out = score(rec, wall, args.facing_deg if args.facing_deg is not None else dead_band_deg())
    frames = len(rec.truths)
    out.update({"duration_s": round(wall, 1), "seed": args.seed, "talkers": args.talkers, "world": args.world,
                "method": args.method,
                "jaeger_params": args.jaeger_param,
                "frames": frames, "frames_expected": int(wall * 10.0), "speaker_matches": matches,
                "talker_messages": len(rec.talkers), "cmd_vel_messages": rec.commands,
                "cpu_share_of_one_core": {k: round(v, 3) for k, v in cpu.items()},
                "cpu_total_cores": round(sum(cpu.values()), 3), "node_logs": str(logs)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--talkers", type=int, default=3)
    parser.add_argument("--method", default="classical")
    parser.add_argument("--world", default="procedural", choices=["procedural", "mesh"],
                        help="sim_bridge's world: procedural shoebox rooms or furnished mesh rooms (sim_bridge/mesh)")
    parser.add_argument("--facing-deg", type=float, help="facing = |azimuth| within this (default: the "
                        "behaviour's dead_band_deg in config/party.yaml)")
    parser.add_argument("--jaeger-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a jaeger_node parameter, e.g. vad:=false voice_id:=false (the pipeline without voice)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.duration <= 0 or (args.facing_deg is not None and args.facing_deg <= 0):
        raise SystemExit("--duration and --facing-deg must be positive")
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
