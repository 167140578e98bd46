"""Frame rate of the nodes started as the README's `ros2 run` lines start them (issue 22.2, 22.3).

sim_bridge and jaeger_node run as two plain processes: the installed executables
(build/ws/install/lib/jaeger_ros/*, what `ros2 run jaeger_ros <name>` executes), with NO Fast DDS
profile variable in their environment, optionally each under a namespace. This process listens
as an ordinary user would: a default-QoS (reliable, keep last 10) subscriber on the colour image
and the audio, and /jaeger/speaker_match + /diagnostics. After `--warmup` s it counts for
`--seconds` s and prints one JSON object per namespace: answered frames/s, images/s and audio
chunks/s received by the default subscriber, and jaeger_node's drop counters (unsynchronised
must stay 0).

Usage: python benchmarks/bench_ros_run.py [--seconds 20] [--warmup 8] [--namespaces '' robot1]
       [--profile PATH]   (a user's own FASTDDS_DEFAULT_PROFILES_FILE, passed on unchanged)
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "build" / "ws" / "install"


def start(executable: str, namespace: str, env: dict, log: Path, *params: str) -> subprocess.Popen:
    args = [str(INSTALL / "lib" / "jaeger_ros" / executable), "--ros-args"]
    if namespace:
        args += ["-r", f"__ns:=/{namespace}"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--namespaces", nargs="+", default=[""], help="one sim_bridge + jaeger_node pair per entry")
    parser.add_argument("--profile", help="a user's own Fast DDS profile (set as FASTDDS_DEFAULT_PROFILES_FILE)")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/bench_ros_run"))
    args = parser.parse_args()

    domain = random.randint(1, 200)
    env = {k: v for k, v in os.environ.items() if k not in ("FASTDDS_DEFAULT_PROFILES_FILE",
                                                            "FASTRTPS_DEFAULT_PROFILES_FILE")}
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    if args.profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = args.profile
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    args.logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, ns in enumerate(args.namespaces):
        tag = ns or "root"
        procs.append(start("sim_bridge", ns, env, args.logs / f"sim_{tag}.log", f"seed:={i}"))
        procs.append(start("jaeger_node", ns, env, args.logs / f"node_{tag}.log"))

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from jaeger_ros.msg import FoaAudio, SpeakerMatch

    rclpy.init()
    node = rclpy.create_node("bench_listener")
    counting = {"on": False}
    stats = {ns: {"answered": 0, "images": 0, "audio": 0, "drops": {}} for ns in args.namespaces}

    def counter(ns: str, key: str):
        def cb(_msg) -> None:
            if counting["on"]:
                stats[ns][key] += 1
        return cb

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:  # named "<namespace>/jaeger_node: pipeline"
            for ns in args.namespaces:
                if status.name == (f"{ns}/" if ns else "") + "jaeger_node: pipeline":
                    stats[ns]["drops"] = {kv.key: int(kv.value) for kv in status.values
                                          if kv.key.startswith("dropped_")}

    for ns in args.namespaces:
        prefix = f"/{ns}" if ns else ""
        node.create_subscription(Image, f"{prefix}/camera/color/image_raw", counter(ns, "images"), 10)
        node.create_subscription(FoaAudio, f"{prefix}/audio/foa", counter(ns, "audio"), 10)
        node.create_subscription(SpeakerMatch, f"{prefix}/jaeger/speaker_match", counter(ns, "answered"), 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)

    try:
        spin(args.warmup)
        counting["on"] = True
        spin(args.seconds)
        counting["on"] = False
        spin(1.5)  # the last diagnostics
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.try_shutdown()
    for ns, s in stats.items():
        print(json.dumps({"namespace": ns or "/", "seconds": args.seconds, "profile": args.profile or "(node's own)",
                          "answered_hz": round(s["answered"] / args.seconds, 2),
                          "default_qos_images_hz": round(s["images"] / args.seconds, 2),
                          "default_qos_audio_chunks_hz": round(s["audio"] / args.seconds, 2),
                          "drops": s["drops"]}))


if __name__ == "__main__":
    sys.exit(main())
