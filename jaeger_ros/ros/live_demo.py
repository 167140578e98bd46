"""The live demo: sim_bridge and jaeger_node as separate processes, scored against ground truth.

Like `ros2 launch jaeger_ros sim.launch.py` (which needs launch/ros2cli, not installable here),
it starts both nodes as their own processes with config/sim.yaml, listens to
/jaeger/speaker_match, /sim/ground_truth, the colour image, /tf and /tf_static, prints the TF
chain once, then a live line every second: output rate, latency (image stamp ->
speaker_match received), DoA error and speaker-match accuracy. SCORING_RULE (printed at the
start) says which frames count. At the end it writes summary.json, last_frame.png (the last
answered talker frame, else the last answered frame, with projected boxes and their categories,
the matched speaker and the DoA) and topdown.png (the room in `map` placed with the received TF,
and a polar view around the camera) to --out. --talkers mixed --candidates detectors (what `make
demo` runs) puts a person and a loudspeaker that may talk in every scene, found by the detectors.

The nodes log to this terminal (their stderr is ours), lifecycle transitions included. They
run in one process group of their own, so the terminal's Ctrl-C reaches this process only,
which then stops them in order; they also get SIGTERM if this process dies however it dies.
SIGINT, SIGTERM and SIGHUP end the run early: the summary of what ran so far is written and
the exit status is 0. A node that exits or never answers ends it with status 1.

Usage: python -m jaeger_ros.ros.live_demo --duration 30 --out reports/live
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType

import numpy as np

from jaeger_ros.core.paths import share_dir

REPO = share_dir()
DEFAULT_PARAMS = REPO / "config" / "sim.yaml"
FASTDDS_PROFILE = REPO / "config" / "fastdds.xml"
"""Large shared-memory segment: without it best-effort readers lose many 640x480 frames."""
BOX_MATCH_M = 0.3
SCORING_RULE = (
    "scoring: a frame is a talker frame when exactly one talker (loudspeaker or person) talks and has talked for "
    "at least window_s (so the audio window holds that voice only; pauses, scene cuts and utterance starts are "
    "not scored). match = the position label (Left/Center/Right ...), scored on talker frames where the node "
    "found as many candidates as the truth holds (every loudspeaker and every person in view, silent people "
    "included: in the mesh world they are among the candidates); box match = the matched candidate lies within "
    f"{BOX_MATCH_M} m of the talker's box, scored on every talker frame (candidate misses and extras count "
    "as errors).")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT_S = 10.0
"""How long the nodes get to shut down after SIGTERM before they are killed."""
_PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """A stop signal arrived; the message is its name."""


class StopFlag:
    """Signal handler that only notes the first stop signal; the loops call `check` between
    spins. Raising from the handler itself could land inside rclpy's C++ message conversion,
    where it surfaces as an unrelated RuntimeError."""

    def __init__(self) -> None:
        self.name: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.name = self.name or signal.Signals(signum).name

    def check(self) -> None:
        if self.name is not None:
            raise Stop(self.name)


def _die_with_parent(libc: ctypes.CDLL, parent: int) -> None:
    """Runs in each node process before exec: SIGTERM it when the demo process dies (even by
    SIGKILL), and at once if the demo is already gone."""
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def start_nodes(commands: dict[str, list[str]]) -> dict[str, subprocess.Popen]:
    """Start each command in one new process group (led by the first) that dies with us."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it
    procs: dict[str, subprocess.Popen] = {}
    parent = os.getpid()
    for name, cmd in commands.items():
        group = next(iter(procs.values())).pid if procs else 0
        procs[name] = subprocess.Popen(cmd, cwd=REPO, process_group=group,
                                       preexec_fn=lambda: _die_with_parent(libc, parent))
    return procs


def stop_nodes(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to the node group, SIGKILL after STOP_TIMEOUT_S. A running node shuts down
    cleanly on SIGTERM as on Ctrl-C; one still importing just ends (SIGINT would print a
    KeyboardInterrupt traceback there)."""
    if not procs:
        return
    group = next(iter(procs.values())).pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        pass  # every node has exited already
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs.values():
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def _node_command(module: str, params: Path, overrides: dict[str, object]) -> list[str]:
    cmd = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)]
    for key, value in overrides.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


def node_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The node processes to start, each with the params file and the options that override it
    (unset options leave the file's values)."""
    target = "female" if args.scenario == "dual" else ""
    commands = {
        "sim_bridge": _node_command("sim_bridge.node", args.params, {
            "scenario": args.scenario, "seed": args.seed, "conditions": args.conditions,
            **({"world": args.world} if args.world else {}),
            **({"talker_kind": args.talkers} if args.talkers else {})}),
        "jaeger_node": _node_command("jaeger_ros.ros.jaeger_node", args.params, {
            "method": args.method, "window_s": args.window,
            **({"candidates": args.candidates} if args.candidates else {}),
            **({"checkpoint": args.checkpoint} if args.checkpoint else {}),
            **({"target_voice": target} if target else {})}),
    }
    if args.tracker:
        commands["jaeger_tracker"] = _node_command("jaeger_ros.ros.tracker_node", args.params, {})
    return commands


class Scorer:
    """Joins speaker matches with ground truth by stamp and keeps running statistics."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.truth: dict[int, object] = {}
        self.truth_stamps: list[int] = []  # every frame the simulator published (its ground truth)
        self.match_stamps: list[int] = []
        self.images: dict[int, object] = {}
        self.received: list[tuple[float, float]] = []  # (receipt time, stamp)
        self.doa_errors: list[float] = []
        self.correct = 0
        self.scored = 0
        self.talker_frames = 0
        self.box_correct = 0
        self.unscored = 0
        self.missing_truth = 0
        self.pending: deque = deque(maxlen=200)
        self.last: tuple[object, object | None, object | None] | None = None
        self.last_talker: tuple[object, object | None, object | None] | None = None  # the last talker frame's
        self.talkers: list[tuple[int, list[tuple[int, np.ndarray]]]] = []  # (stamp key, [(track id, map xyz)])

    def on_talkers(self, msg) -> None:
        """The tracker's tracks (--tracker), kept for identity scoring (benchmarks/bench_live.py)."""
        self.talkers.append((self.key(msg.header.stamp), [
            (int(t.id), np.array([t.position.x, t.position.y, t.position.z])) for t in msg.talkers]))

    @staticmethod
    def key(stamp) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def on_truth(self, msg) -> None:
        self.truth[self.key(msg.header.stamp)] = msg
        self.truth_stamps.append(self.key(msg.header.stamp))
        if len(self.truth) > 300:
            del self.truth[min(self.truth)]
        self._drain()

    def on_image(self, msg) -> None:
        self.images[self.key(msg.header.stamp)] = msg
        if len(self.images) > 30:
            del self.images[min(self.images)]

    def on_match(self, msg) -> None:
        from jaeger_ros.ros.convert import stamp_to_seconds
        self.received.append((time.time(), stamp_to_seconds(msg.header.stamp)))
        self.match_stamps.append(self.key(msg.header.stamp))
        self.pending.append(msg)
        self._drain()

    def target_of(self, match, gt):
        """The talker a frame is scored against (a SimSource), or None: the one whose voice was
        asked for, else the only one heard (for the pooling window) while nobody else speaks."""
        talking = [s for s in gt.sources if s.active_for_s >= self.window_s]
        if match.target:
            return next((s for s in talking if s.gender == match.target), None)
        voices = [s for s in gt.sources if s.active]
        return talking[0] if len(talking) == 1 and len(voices) == 1 else None

    def _drain(self) -> None:
        from jaeger_ros.core.geometry import great_circle_deg
        newest = max(self.truth, default=0)
        while self.pending:
            key = self.key(self.pending[0].header.stamp)
            if key not in self.truth:
                if newest - key > 2_000_000_000:  # its ground truth was lost (e.g. before discovery)
                    self.pending.popleft()
                    self.missing_truth += 1
                    continue
                break
            match = self.pending.popleft()
            gt = self.truth[key]
            self.last = (match, gt, self.images.get(self.key(match.header.stamp)))
            target = self.target_of(match, gt)
            if target is not None:
                self.last_talker = self.last
                self.talker_frames += 1
                if target.loudspeaker < 0:   # out of view: right when no visible box is claimed
                    self.box_correct += int(match.index < 0)
                else:
                    self.box_correct += int(match.index >= 0 and _distance(match.matched_box,
                                                                            gt.boxes[target.loudspeaker]) < BOX_MATCH_M)
            if target is None or len(gt.boxes) != len(match.candidates):
                self.unscored += 1
                continue
            self.scored += 1
            self.correct += int(match.label == target.label)
            if match.doa.confidence > 0:
                self.doa_errors.append(float(great_circle_deg(match.doa.azimuth_deg, match.doa.elevation_deg,
                                                              target.azimuth_deg, target.elevation_deg)))

    def stats(self, since: float = 0.0) -> dict[str, float]:
        recv = [(r, s) for r, s in self.received if r >= since]
        lat = np.array([r - s for r, s in recv]) * 1000.0
        span = recv[-1][0] - recv[0][0] if len(recv) > 1 else 0.0
        # frames published while the node was answering (first..last answered stamp) with no answer
        lo = int(round(recv[0][1] * 1e9)) if recv else 0
        hi = max(self.match_stamps, default=0)
        published = {k for k in self.truth_stamps if lo <= k <= hi}
        frames = len(published)
        answered = len(published & set(self.match_stamps))  # outputs whose frame we saw published
        return {"messages": len(recv), "rate_hz": (len(recv) - 1) / span if span > 0 else 0.0,
                "frames_published": frames, "frames_without_output": frames - answered,
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "doa_error_median_deg": float(np.median(self.doa_errors)) if self.doa_errors else float("nan"),
                "scored_frames": self.scored, "unscored_frames": self.unscored, "correct": self.correct,
                "without_ground_truth": self.missing_truth,
                "match_accuracy": self.correct / self.scored if self.scored else float("nan"),
                "talker_frames": self.talker_frames, "box_correct": self.box_correct,
                "box_match_accuracy": self.box_correct / self.talker_frames if self.talker_frames else float("nan")}


def _distance(a, b) -> float:
    """Metres between two BoundingBox3D centres."""
    pa, pb = a.center.position, b.center.position
    return float(np.linalg.norm([pa.x - pb.x, pa.y - pb.y, pa.z - pb.z]))


def _project(points_optical: np.ndarray, k: np.ndarray) -> np.ndarray:
    p = np.asarray(points_optical, dtype=float)
    z = np.maximum(p[..., 2], 1e-6)
    return np.stack([k[0] * p[..., 0] / z + k[2], k[4] * p[..., 1] / z + k[5]], axis=-1)


def _box_corners(box) -> np.ndarray:
    c = np.array([box.center.position.x, box.center.position.y, box.center.position.z])
    s = np.array([box.size.x, box.size.y, box.size.z]) / 2.0
    return np.array([c + s * np.array([sx, sy, sz]) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])


_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def _matrix(transform) -> np.ndarray:
    """4x4 parent_from_child of a geometry_msgs/Transform."""
    from jaeger_ros.ros.convert import matrix_from_quaternion
    r, t = transform.rotation, transform.translation
    m = np.eye(4)
    m[:3, :3] = matrix_from_quaternion([r.x, r.y, r.z, r.w])
    m[:3, 3] = [t.x, t.y, t.z]
    return m


class TfTree:
    """What /tf and /tf_static said: fixed links for good, moving links by stamp (the last
    MAX_STAMPS stamps). Chains are composed with numpy, as tf2_ros (not available here) would."""

    MAX_STAMPS = 300

    def __init__(self) -> None:
        self.static: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent_from_child)
        self.moving: dict[int, dict[str, tuple[str, np.ndarray]]] = {}  # stamp -> child -> ...

    def on_static(self, msg) -> None:
        for t in msg.transforms:
            self.static[t.child_frame_id] = (t.header.frame_id, _matrix(t.transform))

    def on_tf(self, msg) -> None:
        for t in msg.transforms:
            self.moving.setdefault(Scorer.key(t.header.stamp), {})[t.child_frame_id] = (t.header.frame_id,
                                                                                         _matrix(t.transform))
        while len(self.moving) > self.MAX_STAMPS:
            del self.moving[min(self.moving)]

    def lookup(self, frame: str, stamp: int) -> tuple[list[str], np.ndarray]:
        """(frames from the root of the tree down to `frame`, root_from_frame) at `stamp`, with
        the moving links of the newest stamp not after it."""
        older = [k for k in self.moving if k <= stamp]
        moving = self.moving[max(older)] if older else {}
        names, root_from_frame = [frame], np.eye(4)
        while names[-1] in moving or names[-1] in self.static:
            parent, link = moving.get(names[-1]) or self.static[names[-1]]
            root_from_frame = link @ root_from_frame
            names.append(parent)
            if len(names) > 64:
                raise LookupError(f"TF has a loop through {frame}")
        return names[::-1], root_from_frame


def _hull(points: np.ndarray) -> np.ndarray:
    """Closed convex hull (monotone chain) of 2D points: a box's footprint seen from above."""
    pts = sorted(set(map(tuple, np.round(points, 9))))
    if len(pts) < 3:
        return np.array(pts + pts[:1])

    def half(seq):
        out: list[tuple[float, float]] = []
        for q in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (q[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (q[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(q)
        return out[:-1]
    ring = half(pts) + half(pts[::-1])
    return np.array(ring + ring[:1])


def _answer(match) -> str:
    """The node's answer in words: the matched box and its label, or that nothing matched."""
    if match.index < 0:
        return "no talker matched"
    return f"matched bbox_{match.index} = {match.label} (confidence {match.confidence:.2f})"


def _truth(gt) -> str:
    talking = [f"{s.gender} at {s.label}" for s in gt.sources if s.active]
    return "truth: " + (", ".join(talking) + " talking" if talking else "nobody talking")


# One look per thing drawn; every picture's legend lists all of them.
GT_TALKING = {"color": "orange", "ls": "--", "lw": 1.5}
GT_SILENT_IMAGE = {"color": "white", "ls": "--", "lw": 0.9}
GT_SILENT_MAP = {"color": "black", "ls": "--", "lw": 0.9}
CANDIDATE = {"color": "limegreen", "ls": "-", "lw": 1.3}
CANDIDATE_BY_CATEGORY = {"loudspeaker": CANDIDATE, "person": {"color": "dodgerblue", "ls": "-", "lw": 1.3},
                         "unknown": {"color": "lightgray", "ls": "-", "lw": 1.3}}
"""Candidate boxes by category, as jaeger_node's markers colour them (green, blue, grey)."""


def _candidate_look(box) -> dict:
    return CANDIDATE_BY_CATEGORY.get(box.category, CANDIDATE_BY_CATEGORY["unknown"])
MATCHED = {"color": "red", "ls": "-", "lw": 2.8}
DOA_COLOUR = "cyan"
PAUSED_COLOUR = "violet"  # a voice that is not talking at this frame


def write_pictures(last, info_k: np.ndarray | None, tf: TfTree, out: Path) -> list[Path]:
    """last_frame.png (image + projected boxes + DoA) and topdown.png (the room in `map`,
    placed with the received TF, and a polar view around the camera)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from jaeger_ros.core.geometry import azel_from_direction, optical_to_camera
    from jaeger_ros.ros import convert as rc
    match, gt, image = last
    written = []
    direction = np.array([match.doa.direction.x, match.doa.direction.y, match.doa.direction.z])
    has_doa = match.doa.confidence > 0
    doa_text = (f"DoA az {match.doa.azimuth_deg:.0f}°, el {match.doa.elevation_deg:.0f}° (az 0° ahead, + left)"
                if has_doa else "no DoA (silence)")
    talking = {s.loudspeaker for s in gt.sources if s.active}
    if image is not None and info_k is not None:
        rgb = rc.rgb_from_image(image)
        fig, ax = plt.subplots(figsize=(9, 7))
        ax.imshow(rgb)
        for i, box in enumerate(gt.boxes):
            uv = _project(_box_corners(box), info_k)
            look = GT_TALKING if i in talking else GT_SILENT_IMAGE
            for a, b in _EDGES:
                ax.plot(uv[[a, b], 0], uv[[a, b], 1], **look)
            ax.text(max(uv[:, 0].min(), 2), min(uv[:, 1].max() + 12, rgb.shape[0] - 6), f"true {box.category or 'loudspeaker'}",
                    color=look["color"], fontsize=8, clip_on=True,
                    bbox={"facecolor": "black", "alpha": 0.45, "pad": 1, "edgecolor": "none"})
        for box in match.candidates:
            matched = box.id == match.index
            look = MATCHED if matched else _candidate_look(box)
            uv = _project(_box_corners(box), info_k)
            for a, b in _EDGES:
                ax.plot(uv[[a, b], 0], uv[[a, b], 1], **look)
            text = f"bbox_{box.id} {box.category or 'unknown'}" + (f": {match.label}" if matched else "")
            ax.text(max(0.0, min(uv[:, 0].min(), rgb.shape[1] - 7.5 * len(text))), uv[:, 1].min() - 5, text,
                    color=look["color"], fontsize=9, fontweight="bold",  # kept inside the image on the right
                    bbox={"facecolor": "black", "alpha": 0.55, "pad": 1, "edgecolor": "none"})
        if has_doa and direction[2] > 0:
            u, v = _project(direction, info_k)
            ax.plot(u, v, marker="x", color=DOA_COLOUR, ms=14, mew=3)
        for s in gt.sources:
            d = np.array([s.direction.x, s.direction.y, s.direction.z])
            if d[2] > 0:
                u, v = _project(d, info_k)
                ax.plot(u, v, marker="o", mfc="none", color="yellow" if s.active else PAUSED_COLOUR, ms=14, mew=2)
        ax.set_xlim(0, rgb.shape[1])
        ax.set_ylim(rgb.shape[0], 0)
        ax.set_xlabel("image u (px)")
        ax.set_ylabel("image v (px)")
        ax.set_title(f"{match.method}: {_answer(match)}\n{doa_text}; {_truth(gt)}", fontsize=10)
        handles = [*(Line2D([], [], label=f"candidate: {name}", **look) for name, look in CANDIDATE_BY_CATEGORY.items()),
                   Line2D([], [], label="matched candidate (its label)", **MATCHED),
                   Line2D([], [], label="ground truth: talking talker", **GT_TALKING),
                   Line2D([], [], label="ground truth: silent talker", **GT_SILENT_IMAGE),
                   Line2D([], [], ls="none", marker="x", color=DOA_COLOUR, ms=10, mew=3, label="estimated DoA"),
                   Line2D([], [], ls="none", marker="o", mfc="none", color="yellow", ms=10, mew=2,
                          label="true direction: voice talking"),
                   Line2D([], [], ls="none", marker="o", mfc="none", color=PAUSED_COLOUR, ms=10, mew=2,
                          label="true direction: voice paused")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=8,
                  facecolor="0.3", labelcolor="white")  # dark, so the white and yellow styles show
        path = out / "last_frame.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    stamp = Scorer.key(match.header.stamp)
    chain, map_from_optical = tf.lookup(match.header.frame_id, stamp)
    if chain[0] != "map":
        print(f"topdown.png skipped: no TF from map to {match.header.frame_id} (have {' -> '.join(chain)})",
              file=sys.stderr, flush=True)
        return written
    rot, cam = map_from_optical[:3, :3], map_from_optical[:3, 3]
    fig = plt.figure(figsize=(14, 6.5))
    ax = fig.add_subplot(1, 2, 1)
    corner = np.array([gt.room_origin.x, gt.room_origin.y])  # each scene's room has its own place in map
    far = corner + [gt.room_size.x, gt.room_size.y]
    ax.add_patch(plt.Rectangle(tuple(corner), gt.room_size.x, gt.room_size.y, fill=False, color="black", lw=2))
    reach = float(np.hypot(gt.room_size.x, gt.room_size.y))
    fwd = rot[:, 2]
    yaw = np.arctan2(fwd[1], fwd[0])
    half = np.arctan(info_k[2] / info_k[0]) if info_k is not None else np.radians(45)
    for a in (yaw - half, yaw + half):
        ax.plot([cam[0], cam[0] + reach * np.cos(a)], [cam[1], cam[1] + reach * np.sin(a)], color="gray", lw=0.8)
    ax.plot(cam[0], cam[1], marker="^", color="black", ms=10, ls="none")

    def footprint(box) -> np.ndarray:
        return _hull((_box_corners(box) @ rot.T + cam)[:, :2])

    for i, box in enumerate(gt.boxes):
        ring = footprint(box)
        ax.plot(ring[:, 0], ring[:, 1], **(GT_TALKING if i in talking else GT_SILENT_MAP))
    for box in match.candidates:
        ring = footprint(box)
        style = MATCHED if box.id == match.index else _candidate_look(box)
        ax.fill(ring[:, 0], ring[:, 1], color=style["color"], alpha=0.45)
        ax.text(ring[:, 0].max() + 0.05, ring[:, 1].max(), f"bbox_{box.id} {box.category or 'unknown'}" + (
            f": {match.label}" if box.id == match.index else ""), fontsize=8, color=style["color"])
    if has_doa:
        ray = rot @ direction
        ray = ray[:2] / max(np.linalg.norm(ray[:2]), 1e-9)
        ax.plot([cam[0], cam[0] + reach * ray[0]], [cam[1], cam[1] + reach * ray[1]], color=DOA_COLOUR, lw=2)
    for s in gt.sources:   # at the acoustic centre, in view or not (map frame)
        c = np.array([s.position.x, s.position.y, s.position.z])
        ax.plot(c[0], c[1], marker="*", color="orange" if s.active else PAUSED_COLOUR, ms=15, ls="none")
    pad = 0.5
    ax.set_xlim(min(corner[0], cam[0]) - pad, max(far[0], cam[0]) + pad)
    ax.set_ylim(min(corner[1], cam[1]) - pad, max(far[1], cam[1]) + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("map x (m)")
    ax.set_ylabel("map y (m)")
    ax.set_title(f"top-down in map, placed with /tf (scene {gt.scene_id})\n{_answer(match)}", fontsize=10)
    handles = [Line2D([], [], color="black", lw=2, label="room walls"),
               Line2D([], [], ls="none", marker="^", color="black", ms=9, label="camera"),
               Line2D([], [], color="gray", lw=0.8, label="camera field of view"),
               *(Patch(color=look["color"], alpha=0.45, label=f"candidate: {name}")
                 for name, look in CANDIDATE_BY_CATEGORY.items()),
               Patch(color=MATCHED["color"], alpha=0.45, label="matched candidate"),
               Line2D([], [], label="ground truth: talking talker", **GT_TALKING),
               Line2D([], [], label="ground truth: silent talker", **GT_SILENT_MAP),
               Line2D([], [], color=DOA_COLOUR, lw=2, label="estimated DoA"),
               Line2D([], [], ls="none", marker="*", color="orange", ms=12, label="voice talking (its talker)"),
               Line2D([], [], ls="none", marker="*", color=PAUSED_COLOUR, ms=12,
                      label="voice paused (its talker)")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)

    # Around the camera, in the README's convention: azimuth 0 ahead, positive to the LEFT.
    pol = fig.add_subplot(1, 2, 2, projection="polar")
    pol.set_theta_zero_location("N")
    pol.set_theta_direction(1)  # counter-clockwise: positive azimuth is to the left
    angles = np.arange(-135, 181, 45)
    pol.set_thetagrids(angles % 360, [f"{a}°" if a not in (180,) else "±180°" for a in angles])

    def az_range(center_optical: np.ndarray) -> tuple[float, float]:
        az, _ = azel_from_direction(optical_to_camera(center_optical))
        return float(np.radians(az)), float(np.linalg.norm(center_optical))

    ranges = [0.5]
    for i, box in enumerate(gt.boxes):
        th, r = az_range(_box_corners(box).mean(axis=0))
        pol.plot(th, r, marker="s", ms=13, mfc="none", ls="none",
                 mec=(GT_TALKING if i in talking else GT_SILENT_MAP)["color"], mew=1.5)
        ranges.append(r)
    for box in match.candidates:
        th, r = az_range(_box_corners(box).mean(axis=0))
        matched = box.id == match.index
        pol.plot(th, r, marker="s", ms=7, ls="none", color=(MATCHED if matched else _candidate_look(box))["color"])
        pol.annotate(f"bbox_{box.id}" + (f": {match.label}" if matched else ""), (th, r), textcoords="offset points",
                     xytext=(8, 4), fontsize=8)
        ranges.append(r)
    rmax = 1.15 * max(ranges)
    if has_doa:
        th = np.radians(match.doa.azimuth_deg)
        pol.plot([th, th], [0, rmax], color=DOA_COLOUR, lw=2)
    for s in gt.sources:
        pol.plot(np.radians(s.azimuth_deg), rmax * 0.97, marker="*", ms=13, ls="none",
                 color="orange" if s.active else PAUSED_COLOUR)
    pol.set_rlim(0, rmax)
    pol.set_rlabel_position(-112.5)
    pol.text(np.radians(-112.5), rmax * 1.22, "distance from\ncamera (m)", ha="center", va="center", fontsize=8)
    pol.set_xlabel("azimuth (deg): 0° ahead, positive to the left (camera frame)")
    pol.legend(handles=[
        *(Line2D([], [], ls="none", marker="s", ms=7, color=look["color"], label=f"candidate: {name}")
          for name, look in CANDIDATE_BY_CATEGORY.items()),
        Line2D([], [], ls="none", marker="s", ms=7, color=MATCHED["color"], label="matched candidate"),
        Line2D([], [], ls="none", marker="s", ms=11, mfc="none", mew=1.5, mec=GT_TALKING["color"],
               label="ground truth: talking talker"),
        Line2D([], [], ls="none", marker="s", ms=11, mfc="none", mew=1.5, mec=GT_SILENT_MAP["color"],
               label="ground truth: silent talker"),
        Line2D([], [], color=DOA_COLOUR, lw=2, label="estimated DoA azimuth"),
        Line2D([], [], ls="none", marker="*", color="orange", ms=12, label="true azimuth: voice talking"),
        Line2D([], [], ls="none", marker="*", color=PAUSED_COLOUR, ms=12, label="true azimuth: voice paused")],
        loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    pol.set_title(f"around the camera: candidates, ground truth and DoA\n{doa_text}", fontsize=10)
    path = out / "topdown.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
    return written


def conditions_line(conditions: str, seed: int, scene_id: int) -> tuple[str, float | None]:
    """(a line saying what the simulator drew for scene_id: preset, ambient SNR, noise, interferer;
    the SNR in dB or None). The draw depends only on the seed, the scene and the preset."""
    from sim_bridge.live import LiveConfig, drawn_conditions

    c = drawn_conditions(LiveConfig(seed=seed, conditions=conditions), scene_id)
    if c.snr_db is None:
        return f"scene {scene_id}: {c.preset} (no added noise)", None
    extra = f", {c.interferer} interferer at SIR {c.sir_db:.0f} dB" if c.interferer else ""
    return f"scene {scene_id}: {c.preset}, SNR {c.snr_db:.1f} dB ({c.noise_kind} noise{extra})", float(c.snr_db)


def _write_outputs(args: argparse.Namespace, scorer: Scorer, tf: TfTree, camera_k: list[np.ndarray],
                   since: float, ran_s: float, stopped_by: str | None, tf_chain: list[str],
                   scene_snr_db: dict[int, float | None] | None = None) -> None:
    summary = {"scenario": args.scenario, "method": args.method, "duration_s": round(ran_s, 3),
               "window_s": args.window, "stopped_by": stopped_by, "tf_chain": tf_chain,
               "conditions": args.conditions, "scene_snr_db": scene_snr_db or {},
               **scorer.stats(since=since), "scoring_rule": SCORING_RULE}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    shown = scorer.last_talker or scorer.last  # a frame where somebody talks says more
    written = write_pictures(shown, camera_k[0] if camera_k else None, tf, args.out) if shown else []
    print(json.dumps(summary, indent=2))
    print("wrote " + ", ".join(str(p) for p in [args.out / "summary.json", *written]), flush=True)


def world_line(world: str | None, params: Path) -> str:
    """The simulated world and the engines that render and sonify it (a user should not have to
    guess whether rlr or its pyroomacoustics fallback made the sound)."""
    if world is None:
        import yaml

        world = (yaml.safe_load(Path(params).read_text()) or {}).get("sim_bridge", {}).get(
            "ros__parameters", {}).get("world", "procedural")
    if world != "mesh":
        return "world: procedural (ray-cast boxes, image-source acoustics)"
    from sim_bridge.mesh.acoustics_rlr import engine

    return f"world: mesh (render pyrender/{os.environ.get('PYOPENGL_PLATFORM', 'egl')}, acoustics {engine('rlr')})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's options (exits with a usage line on a bad one)."""
    parser = argparse.ArgumentParser(description="Live demo: sim_bridge + jaeger_node, scored live.")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of scored running")
    parser.add_argument("--out", type=Path, default=Path("reports/live"))
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    parser.add_argument("--scenario", choices=("single", "dual"), default="single")
    parser.add_argument("--method", choices=("classical", "jaeger"), default="classical")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default="realistic",
                        help="sim_bridge sensing preset: clean | realistic | hard | diffuse@SNR")
    parser.add_argument("--window", type=float, default=0.5, help="jaeger_node window_s")
    parser.add_argument("--startup-timeout", type=float, default=90.0)
    parser.add_argument("--tracker", action="store_true",
                        help="also run jaeger_tracker (its talker tracks are recorded for identity scoring)")
    parser.add_argument("--world", choices=("procedural", "mesh"), default=None,
                        help="sim_bridge parameter world (default: the params file's)")
    parser.add_argument("--talkers", choices=("loudspeakers", "people", "mixed"), default=None,
                        help="sim_bridge parameter talker_kind: who talks (default: the params file's)")
    parser.add_argument("--candidates", choices=("depth", "classified", "detectors"), default=None,
                        help="jaeger_node parameter candidates (default: the params file's); only 'detectors' "
                             "finds people, the others keep loudspeaker-sized depth blobs")
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    from sim_bridge.conditions import preset

    try:
        preset(args.conditions)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # One private DDS domain on this host, inherited by the node processes.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from jaeger_ros.core.threads import one_thread_per_library
    from jaeger_ros.ros.runner import large_data_profile
    large_data_profile()  # as each node process does: the package's profile unless the user has one
    one_thread_per_library()  # the nodes start with it (set later in a process, it does less)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from jaeger_ros.msg import SimGroundTruth, SpeakerMatch, TalkerArray

    args.out.mkdir(parents=True, exist_ok=True)
    commands = node_commands(args)
    stop = StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    procs: dict[str, subprocess.Popen] = {}
    node = None
    scorer, tf = Scorer(args.window), TfTree()
    camera_k: list[np.ndarray] = []
    tf_chain: list[str] = []
    scene_snr: dict[int, float | None] = {}
    start = time.time()
    t_first: float | None = None
    stopped_by: str | None = None
    status = 0
    try:
        procs = start_nodes(commands)
        stop.check()
        sim_pid, node_pid = procs["sim_bridge"].pid, procs["jaeger_node"].pid
        print(f"starting sim_bridge (pid {sim_pid}) and jaeger_node (pid {node_pid}) in process group {sim_pid}, "
              f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} ...", flush=True)
        print(SCORING_RULE, flush=True)
        print(world_line(args.world, args.params), flush=True)
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # our handlers stop the run in order
        node = rclpy.create_node("live_demo")
        node.create_subscription(SpeakerMatch, "/jaeger/speaker_match", scorer.on_match, 50)
        node.create_subscription(SimGroundTruth, "/sim/ground_truth", scorer.on_truth, 50)
        if args.tracker:
            node.create_subscription(TalkerArray, "/jaeger/talkers", scorer.on_talkers, 50)
        node.create_subscription(Image, "/camera/color/image_raw", scorer.on_image, qos_profile_sensor_data)
        node.create_subscription(CameraInfo, "/camera/color/camera_info",
                                 lambda m: camera_k.append(np.asarray(m.k)) if not camera_k else None,
                                 qos_profile_sensor_data)
        node.create_subscription(TFMessage, "/tf", tf.on_tf, 100)
        node.create_subscription(TFMessage, "/tf_static", tf.on_static, QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not scorer.received:
            executor.spin_once(timeout_sec=0.1)
            stop.check()
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead or time.time() - start > args.startup_timeout:
                raise RuntimeError(f"no speaker_match after {time.time() - start:.0f} s"
                                   + (f"; exited: {dead}" if dead else ""))
        t_first = time.time()
        print(f"first speaker_match after {t_first - start:.1f} s; running {args.duration:.0f} s", flush=True)
        next_print = t_first + 1.0
        while time.time() - t_first < args.duration:
            executor.spin_once(timeout_sec=0.02)
            stop.check()
            if not tf_chain and scorer.last is not None:
                names, _ = tf.lookup(scorer.last[0].header.frame_id, Scorer.key(scorer.last[0].header.stamp))
                if names[0] == "map":
                    tf_chain = names
                    print("tf: " + " -> ".join(names), flush=True)
            if scorer.truth and (scene := scorer.truth[max(scorer.truth)].scene_id) not in scene_snr:
                line, scene_snr[scene] = conditions_line(args.conditions, args.seed, scene)
                print(line, flush=True)
            if time.time() >= next_print:
                next_print += 1.0
                s = scorer.stats(since=time.time() - 5.0)
                total = scorer.stats()
                print(f"t={time.time() - t_first:5.1f}s  rate {s['rate_hz']:4.1f} Hz  latency p50 "
                      f"{s['latency_p50_ms']:5.1f} ms p95 {s['latency_p95_ms']:5.1f} ms  DoA err median "
                      f"{total['doa_error_median_deg']:5.1f} deg  match {total['correct']}/{total['scored_frames']}"
                      f" = {100 * total['match_accuracy']:5.1f} %  (unscored {total['unscored_frames']})  box match "
                      f"{total['box_correct']}/{total['talker_frames']}", flush=True)
                for name, p in procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{name} exited with {p.returncode}")
    except Stop as signalled:
        stopped_by = str(signalled)
        print(f"live demo stopped by {stopped_by} after {time.time() - start:.1f} s; writing what ran", flush=True)
    except RuntimeError as err:
        print(f"live demo failed: {err}", file=sys.stderr, flush=True)
        status = 1
    finally:
        for sig in STOP_SIGNALS:  # from here on the run ends in order whatever arrives
            signal.signal(sig, signal.SIG_IGN)
        try:
            if status == 0:
                ran = time.time() - t_first if t_first is not None else 0.0
                _write_outputs(args, scorer, tf, camera_k, t_first or 0.0, ran, stopped_by, tf_chain, scene_snr)
        finally:
            stop_nodes(procs)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return status


if __name__ == "__main__":
    sys.exit(main())
