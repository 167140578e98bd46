"""The live demo: sim_bridge and jaeger_node as separate processes, scored against ground truth.

Like `ros2 launch jaeger_ros sim.launch.py` (which needs launch/ros2cli, not installable here),
it starts both nodes as their own processes with config/sim.yaml, listens to
/jaeger/speaker_match, /sim/ground_truth and the colour image, and prints a live line every
second: output rate, latency (image stamp -> speaker_match received), DoA error and
speaker-match accuracy. SCORING_RULE (printed at the start) says which frames count. At the end it writes last_frame.png (the last scored-or-not frame with projected
boxes, the matched speaker and the DoA), topdown.png (room, camera, boxes, DoA ray) and
summary.json to --out.

Usage: python -m jaeger_ros.ros.live_demo --duration 30 --out reports/live
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from jaeger_ros.core.paths import share_dir

REPO = share_dir()
DEFAULT_PARAMS = REPO / "config" / "sim.yaml"
FASTDDS_PROFILE = REPO / "config" / "fastdds.xml"
"""Large shared-memory segment: without it best-effort readers lose many 640x480 frames."""
BOX_MATCH_M = 0.3
SCORING_RULE = (
    "scoring: a frame is a talker frame when exactly one loudspeaker talks and has talked for at least "
    "window_s (so the audio window holds that voice only; pauses, scene cuts and utterance starts are not "
    "scored). match = the Left/Center/Right label, scored on talker frames where the node found as many "
    "candidates as there are loudspeakers; box match = the matched candidate lies within "
    f"{BOX_MATCH_M} m of the talker's box, scored on every talker frame (candidate misses and extras count "
    "as errors).")


def _node_command(module: str, params: Path, overrides: dict[str, object]) -> list[str]:
    cmd = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)]
    for key, value in overrides.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


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
            talking = [s for s in gt.sources if s.active_for_s >= self.window_s]
            voices = [s for s in gt.sources if s.active]
            target = next((s for s in talking if s.gender == match.target), None) if match.target else \
                (talking[0] if len(talking) == 1 and len(voices) == 1 else None)
            if target is not None:
                self.talker_frames += 1
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


def write_pictures(last, info_k: np.ndarray | None, out: Path) -> list[Path]:
    """last_frame.png (image + projected boxes + DoA) and topdown.png (map view)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaeger_ros.ros import convert as rc
    match, gt, image = last
    written = []
    direction = np.array([match.doa.direction.x, match.doa.direction.y, match.doa.direction.z])
    if image is not None and info_k is not None:
        rgb = rc.rgb_from_image(image)
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.imshow(rgb)
        for box in gt.boxes:
            uv = _project(_box_corners(box), info_k)
            for a, b in _EDGES:
                ax.plot(uv[[a, b], 0], uv[[a, b], 1], color="white", lw=0.8, ls="--")
        for box in match.candidates:
            matched = box.id == match.index
            uv = _project(_box_corners(box), info_k)
            for a, b in _EDGES:
                ax.plot(uv[[a, b], 0], uv[[a, b], 1], color="red" if matched else "lime", lw=2.5 if matched else 1.2)
            ax.text(uv[:, 0].min(), uv[:, 1].min() - 5, f"bbox_{box.id}" + (f" {match.label}" if matched else ""),
                    color="red" if matched else "lime", fontsize=9)
        if match.doa.confidence > 0 and direction[2] > 0:
            u, v = _project(direction, info_k)
            ax.plot(u, v, marker="x", color="cyan", ms=14, mew=3, label="DoA")
        for s in gt.sources:
            d = np.array([s.direction.x, s.direction.y, s.direction.z])
            if d[2] > 0:
                u, v = _project(d, info_k)
                ax.plot(u, v, marker="o", mfc="none", color="yellow", ms=14, mew=2,
                        label=f"true {s.gender} ({'talking' if s.active else 'paused'})")
        ax.set_xlim(0, rgb.shape[1])
        ax.set_ylim(rgb.shape[0], 0)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"{match.method}: {match.label or 'no talker'} (conf {match.confidence:.2f}); "
                     f"DoA az {match.doa.azimuth_deg:.0f}° el {match.doa.elevation_deg:.0f}°", fontsize=10)
        ax.axis("off")
        path = out / "last_frame.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    map_from_optical = rc.pose_from_msg(gt.camera_pose)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.add_patch(plt.Rectangle((0, 0), gt.room_size.x, gt.room_size.y, fill=False, color="black", lw=2))
    cam = map_from_optical[:3, 3]
    fwd = map_from_optical[:3, 2]
    yaw = np.arctan2(fwd[1], fwd[0])
    half = np.arctan(info_k[2] / info_k[0]) if info_k is not None else np.radians(45)
    for a in (yaw - half, yaw + half):
        ax.plot([cam[0], cam[0] + 3 * np.cos(a)], [cam[1], cam[1] + 3 * np.sin(a)], color="gray", lw=0.8)
    ax.plot(cam[0], cam[1], marker="^", color="black", ms=10, label="camera")

    def footprint(box, **kw) -> None:
        corners = _box_corners(box)
        m = corners @ map_from_optical[:3, :3].T + cam
        hull = m[[0, 1, 5, 4, 0]][:, :2] if np.ptp(m[:, 2]) > 0 else m[:, :2]
        ax.fill(hull[:, 0], hull[:, 1], **kw)

    for box in gt.boxes:
        footprint(box, fill=False, ec="black", ls="--")
    for box in match.candidates:
        footprint(box, color="red" if box.id == match.index else "green", alpha=0.5)
    if match.doa.confidence > 0:
        ray = map_from_optical[:3, :3] @ direction
        ax.plot([cam[0], cam[0] + 4 * ray[0]], [cam[1], cam[1] + 4 * ray[1]], color="cyan", lw=2, label="DoA")
    for s in gt.sources:
        box = gt.boxes[s.loudspeaker]
        c = map_from_optical[:3, :3] @ np.array([box.center.position.x, box.center.position.y,
                                                 box.center.position.z]) + cam
        ax.plot(c[0], c[1], marker="*", color="orange" if s.active else "gray", ms=14,
                label=f"{s.gender} ({'talking' if s.active else 'paused'})")
    ax.set_aspect("equal")
    ax.set_xlabel("map x (m)")
    ax.set_ylabel("map y (m)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"top-down map, scene {gt.scene_id}")
    path = out / "topdown.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Live demo: sim_bridge + jaeger_node, scored live.")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of scored running")
    parser.add_argument("--out", type=Path, default=Path("reports/live"))
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    parser.add_argument("--scenario", choices=("single", "dual"), default="single")
    parser.add_argument("--method", choices=("classical", "jaeger"), default="classical")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=float, default=0.5, help="jaeger_node window_s")
    parser.add_argument("--startup-timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")

    # One private DDS domain on this host, inherited by the node processes.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from jaeger_ros.msg import SimGroundTruth, SpeakerMatch

    args.out.mkdir(parents=True, exist_ok=True)
    target = "female" if args.scenario == "dual" else ""
    procs = {
        "sim_bridge": subprocess.Popen(_node_command("sim_bridge.node", args.params,
                                                     {"scenario": args.scenario, "seed": args.seed}), cwd=REPO),
        "jaeger_node": subprocess.Popen(_node_command("jaeger_ros.ros.jaeger_node", args.params, {
            "method": args.method, "window_s": args.window,
            **({"checkpoint": args.checkpoint} if args.checkpoint else {}),
            **({"target_voice": target} if target else {})}), cwd=REPO),
    }
    rclpy.init()
    node = rclpy.create_node("live_demo")
    scorer = Scorer(args.window)
    camera_k: list[np.ndarray] = []
    node.create_subscription(SpeakerMatch, "/jaeger/speaker_match", scorer.on_match, 50)
    node.create_subscription(SimGroundTruth, "/sim/ground_truth", scorer.on_truth, 50)
    node.create_subscription(Image, "/camera/color/image_raw", scorer.on_image, qos_profile_sensor_data)
    node.create_subscription(CameraInfo, "/camera/color/camera_info",
                             lambda m: camera_k.append(np.asarray(m.k)) if not camera_k else None,
                             qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    status = 0
    try:
        start = time.time()
        print(f"starting sim_bridge and jaeger_node (ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}) ...", flush=True)
        print(SCORING_RULE, flush=True)
        while not scorer.received:
            executor.spin_once(timeout_sec=0.1)
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead or time.time() - start > args.startup_timeout:
                raise RuntimeError(f"no speaker_match after {time.time() - start:.0f} s"
                                   + (f"; exited: {dead}" if dead else ""))
        t_first = time.time()
        print(f"first speaker_match after {t_first - start:.1f} s; running {args.duration:.0f} s", flush=True)
        next_print = t_first + 1.0
        while time.time() - t_first < args.duration:
            executor.spin_once(timeout_sec=0.02)
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
        summary = {"scenario": args.scenario, "method": args.method, "duration_s": args.duration,
                   "window_s": args.window, **scorer.stats(since=t_first), "scoring_rule": SCORING_RULE}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
        written = write_pictures(scorer.last, camera_k[0] if camera_k else None, args.out) if scorer.last else []
        print(json.dumps(summary, indent=2))
        print("wrote " + ", ".join(str(p) for p in [args.out / "summary.json", *written]))
    except (RuntimeError, KeyboardInterrupt) as err:
        print(f"live demo stopped: {err}", file=sys.stderr)
        status = 1
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
