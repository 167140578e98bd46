"""Reliability of jaeger_node and the bag converter: message fuzz, stamp faults, dropouts, damaged bags, soak.

Fault mode (default): a real jaeger_node (classical) in this process is fed a live 10 Hz
RGB-D + FOA stream by a source node (private random domain, localhost); one fault at a time
is injected into that stream, then the good stream goes on for `--settle` seconds. Per input:
survived (the node answers good frames afterwards), clear error (the fault is counted under its
drop reason, or as a gap), recovered (seconds from the fault to the first answered good frame
stamped after it), data lost (good frames published meanwhile that got no answer; for bags:
messages lost). Damaged bags
(a recording cut at 98 % / 50 %, corrupt bytes) go through `convert_bags`: survived = no crash,
clear error = a one-line ValueError, recovered = salvaged. Prints one table row per category.

Soak mode (--soak SECONDS): sim_bridge and jaeger_node as separate processes (as the live
demo runs them) for SECONDS; prints the output rate, answered share and each process's RSS
growth (MB/min, least squares after --warmup seconds).

Usage: python benchmarks/bench_reliability.py [--settle 2.5] [--fuzz 20] [--json out.json]
       python benchmarks/bench_reliability.py --soak 600 [--warmup 60]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OPTICAL = "camera_color_optical_frame"
RATE, CHUNK, FRAME_HZ = 16000, 800, 10.0
MAX_PIXELS = 100_000
AUDIO_FAULTS = ("audio", "audio_future", "audio_stale")


@dataclass
class Outcome:
    category: str
    name: str
    survived: bool
    clear: bool
    recovered_s: float | None  # None: no answered frame after the fault
    lost: int


@dataclass
class Stream:
    """The source node: a live 10 Hz frame + FOA stream, and what came back."""

    node: object
    pubs: list
    pub_audio: object
    executor: object
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    audio_end: float | None = None
    next_frame: float = 0.0
    jitter_chunks: int = 0  # the next chunks' stamps get +-1 ms of jitter
    published: list[tuple[int, float]] = field(default_factory=list)  # (stamp ns, monotonic time)
    answered: dict[int, float] = field(default_factory=dict)  # stamp ns -> monotonic time

    def chunk(self, start: float, n: int = CHUNK, scale: float = 0.05):
        from jaeger_ros.core import foa
        from jaeger_ros.core.geometry import direction_from_azel
        from jaeger_ros.ros import convert as rc
        samples = foa.encode_gains(direction_from_azel(30.0, 0.0))[:, None] * self.rng.standard_normal(n)[None] * scale
        return rc.foa_to_msg(samples, RATE, rc.make_header(start, OPTICAL))

    def frame(self, stamp: float, width: int = 160, height: int = 120):
        from jaeger_ros.core.geometry import Intrinsics
        from jaeger_ros.ros import convert as rc
        header = rc.make_header(stamp, OPTICAL)
        depth = np.full((height, width), 2.5, np.float32)
        depth[height // 3: 2 * height // 3, width // 4: width // 2] = 1.8
        return [rc.numpy_to_image(np.full((height, width, 3), 90, np.uint8), "rgb8", header),
                rc.depth_to_image(depth, header),
                rc.intrinsics_to_camera_info(Intrinsics.from_hfov(width, height, 90.0), header)]

    def run(self, seconds: float, audio: bool = True) -> None:
        """Spin while keeping the good stream going."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.time()
            if audio:
                t = self.audio_end if self.audio_end is not None else now - 1.0
                while t < now:
                    jitter = self.rng.uniform(-0.001, 0.001) if self.jitter_chunks > 0 else 0.0
                    self.jitter_chunks -= 1
                    self.pub_audio.publish(self.chunk(t + jitter))
                    t += CHUNK / RATE
                self.audio_end = t
            if now >= self.next_frame:
                stamp = now - 0.02
                for pub, msg in zip(self.pubs, self.frame(stamp)):
                    pub.publish(msg)
                self.published.append((int(round(stamp * 1e9)), time.monotonic()))
                self.next_frame = now + 1.0 / FRAME_HZ
            self.executor.spin_once(timeout_sec=0.005)

    def take_slot(self) -> float:
        """Wait for the next frame slot and take it from the good stream: a stamp the node
        would accept (not above rate_hz), for an injected frame set."""
        while time.time() < self.next_frame:
            self.executor.spin_once(timeout_sec=0.002)
        self.next_frame = time.time() + 1.0 / FRAME_HZ
        return time.time() - 0.02

    def on_match(self, msg) -> None:
        self.answered[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = time.monotonic()


def fault_cases(s: Stream, fuzz: int) -> list[tuple[str, str, Callable[[], None], tuple[str, ...]]]:
    """(category, name, inject, drop reasons that count as a clear error; 'gap' = audio gap)."""
    from jaeger_ros.ros import convert as rc

    def audio(mutate: Callable[[object], None]) -> Callable[[], None]:
        def inject() -> None:
            msg = s.chunk(time.time() - 0.5)
            mutate(msg)
            s.pub_audio.publish(msg)
        return inject

    def image(index: int, mutate: Callable[[object], None]) -> Callable[[], None]:
        def inject() -> None:
            msgs = s.frame(s.take_slot())
            mutate(msgs[index])
            for pub, msg in zip(s.pubs, msgs):
                pub.publish(msg)
        return inject

    def setattr_(name: str, value: object) -> Callable[[object], None]:
        return lambda m: setattr(m, name, value)

    def amplitude(value: float) -> Callable[[], None]:
        return lambda: s.pub_audio.publish(s.chunk(time.time() - 0.5, scale=value))

    def shift_audio(offset: float, n: int = CHUNK) -> Callable[[], None]:
        return lambda: s.pub_audio.publish(s.chunk(time.time() + offset, n))

    def shift_frame(offset: float, only: int | None = None) -> Callable[[], None]:
        def inject() -> None:
            stamp = time.time() + offset
            for k, (pub, msg) in enumerate(zip(s.pubs, s.frame(stamp))):
                if only is None or k == only:
                    pub.publish(msg)
        return inject

    def future_colour_burst() -> None:
        for k in range(12):
            s.pubs[0].publish(s.frame(time.time() + 10.0 + k)[0])
            s.executor.spin_once(timeout_sec=0.01)

    def depth_beyond_slop() -> None:
        stamp = s.take_slot()
        rgb, _, info = s.frame(stamp)
        for pub, msg in zip(s.pubs, (rgb, s.frame(stamp + 0.25)[1], info)):
            pub.publish(msg)

    def nan_k(m) -> None:
        m.k = [float("nan")] + list(m.k[1:])

    def tiny_f(m) -> None:
        m.k = [1e-6, 0.0, m.k[2], 0.0, 1e-6, m.k[5], 0.0, 0.0, 1.0]

    def gap() -> None:  # 0.3 s of the stream never arrives
        s.audio_end = (s.audio_end or time.time()) + 0.3

    def jitter() -> None:  # the next 20 chunks of the stream with +-1 ms stamp jitter
        s.jitter_chunks = 20

    cases = [
        ("malformed audio", "3 channels", audio(setattr_("channels", 3)), ("audio",)),
        ("malformed audio", "8 kHz", audio(setattr_("sample_rate", 8000)), ("audio",)),
        ("malformed audio", "rate 0", audio(setattr_("sample_rate", 0)), ("audio",)),
        ("malformed audio", "frame_samples mismatch", audio(setattr_("frame_samples", 801)), ("audio",)),
        ("malformed audio", "NaN samples", amplitude(float("nan")), ("audio",)),
        ("malformed audio", "int16-range samples", amplitude(32767.0 / 4), ("audio",)),
        ("malformed audio", "1e30 samples", amplitude(1e30), ("audio",)),
        ("malformed audio", "unknown channel order", audio(setattr_("channel_order", "XYZW")), ("audio",)),
        ("malformed image", "unknown encoding", image(0, setattr_("encoding", "yuv422")), ("frame",)),
        ("malformed image", "step too small", image(0, setattr_("step", 3)), ("frame",)),
        ("malformed image", "data cut short", image(1, lambda m: setattr(m, "data", bytes(m.data)[:100])), ("frame",)),
        ("malformed image", "depth of another size", image(1, lambda m: (setattr(m, "width", 80),
                                                                          setattr(m, "step", 320),
                                                                          setattr(m, "height", 60),
                                                                          setattr(m, "data", bytes(m.data)[:19200]))),
         ("frame",)),
        ("malformed image", "empty image", image(0, lambda m: (setattr(m, "width", 0), setattr(m, "height", 0),
                                                               setattr(m, "data", b""))), ("frame",)),
        ("malformed image", "camera_info K NaN", image(2, nan_k), ("frame",)),
        ("malformed image", "camera_info fx 1e-6", image(2, tiny_f), ("frame",)),
        ("malformed image", "no valid depth", image(1, lambda m: setattr(m, "data", b"\x00" * len(m.data))),
         ("frame",)),
        # max_pixels is lowered for the bench: a 4096x4096 set does not fit this machine's transport
        ("malformed image", f"640x480 frame > max_pixels {MAX_PIXELS}",
         lambda: [pub.publish(msg) for pub, msg in zip(s.pubs, s.frame(s.take_slot(), 640, 480))], ("oversized",)),
        ("stamp faults", "audio chunk +3600 s", shift_audio(3600.0), ("audio_future",)),
        ("stamp faults", "1 s chunk stamped at its last sample", shift_audio(-0.0, RATE), ("audio_future",)),
        ("stamp faults", "audio chunk -60 s", shift_audio(-60.0), ("audio_stale",)),
        ("stamp faults", "frame set +2 s", shift_frame(2.0), ("future",)),
        ("stamp faults", "12 colour images +10 s", future_colour_burst, ("future",)),
        ("stamp faults", "frame set -10 s", shift_frame(-10.0), ("stale",)),
        ("stamp faults", "frame set 0.2 s backwards", shift_frame(-0.2), ("backwards",)),
        ("stamp faults", "depth beyond slop", depth_beyond_slop, ("unsynchronised",)),
        ("dropouts", "0.3 s audio gap", gap, ("gap",)),
        ("dropouts", "+-1 ms stamp jitter (not a fault)", jitter, ()),
    ]
    rng = random.Random(1)
    for k in range(fuzz):
        fields = {"channels": rng.choice([0, 1, 3, 4, 5, 255]), "sample_rate": rng.choice([0, 1, 8000, 16000, 2**31 - 1]),
                  "frame_samples": rng.choice([0, 1, 799, 800, 801, 10**6])}
        name, value = rng.choice(list(fields.items()))
        if (name, value) in (("channels", 4), ("sample_rate", 16000), ("frame_samples", 800)):
            value = value + 1
        # a wrong rate or size also moves the chunk's end: ahead of the clock is as clear a reason
        cases.append(("message fuzz", f"audio {name}={value}", audio(setattr_(name, value)), ("audio", "audio_future")))
        enc = rng.choice(["rgb8", "bgr8", "mono8", "16UC1", "32FC1", "rgba8", "", "bad"])
        w, h = rng.choice([0, 1, 159, 161, 4096]), rng.choice([0, 1, 119, 121])
        idx = rng.choice([0, 1])

        def wreck(m, enc=enc, w=w, h=h) -> None:
            m.encoding, m.width, m.height = enc, w, h
        cases.append(("message fuzz", f"image[{idx}] {enc!r} {w}x{h}", image(idx, wreck), ("frame", "oversized")))
    return cases


def run_faults(settle: float, fuzz: int) -> list[Outcome]:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from jaeger_ros.msg import FoaAudio, SpeakerMatch
    from jaeger_ros.ros.jaeger_node import JaegerNode

    from jaeger_ros.ros.live_demo import FASTDDS_PROFILE

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))  # large frames over shared memory
    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 200))
    node = JaegerNode(context=ctx, parameter_overrides=[Parameter("stale_after_s", value=1.0),
                                                              Parameter("max_pixels", value=MAX_PIXELS)])
    src = rclpy.create_node("fault_source", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    stream = Stream(src, [src.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data),
                          src.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data),
                          src.create_publisher(CameraInfo, "/camera/color/camera_info", qos_profile_sensor_data)],
                    src.create_publisher(FoaAudio, "/audio/foa", 100), executor)
    src.create_subscription(SpeakerMatch, "/jaeger/speaker_match", stream.on_match, 50)
    executor.add_node(node)
    executor.add_node(src)
    outcomes = []
    try:
        stream.run(3.0)  # discovery and warm-up
        for category, name, inject, reasons in fault_cases(stream, fuzz):
            before = dict(node.drops)
            gaps_before = node.buffer.stats.gaps
            overlaps_before = node.buffer.stats.overlaps
            at_wall, at_mono = time.time(), time.monotonic()
            inject()
            stream.run(settle)
            counted = {r: node.drops[r] - before.get(r, 0) for r in node.drops}
            clean = node.buffer.stats.gaps == gaps_before and node.buffer.stats.overlaps == overlaps_before and \
                not any(counted.get(r, 0) for r in AUDIO_FAULTS)
            clear = (not reasons and clean) or \
                any(counted.get(r, 0) > 0 for r in reasons) or ("gap" in reasons and node.buffer.stats.gaps > gaps_before)
            after = sorted(stamp for stamp in stream.answered if stamp > at_wall * 1e9)
            recovered = stream.answered[after[0]] - at_mono if after else None
            good = [stamp for stamp, sent in stream.published if at_mono <= sent <= time.monotonic() - 0.5]
            lost = sum(stamp not in stream.answered for stamp in good)
            alive = node._worker is not None and node._worker.is_alive()
            outcomes.append(Outcome(category, name, bool(after) and alive, clear, recovered, lost))
    finally:
        node.destroy_node()
        src.destroy_node()
        rclpy.shutdown(context=ctx)
    return outcomes


def run_bags(tmp: Path) -> list[Outcome]:
    from jaeger_ros.data.bag_dataset import convert_bags
    from jaeger_ros.data.bag_record import record

    bag = tmp / "bag"
    record(bag, 4.0, width=320, height=240, seed=3, progress=False)
    cases = {"cut at 98 %": lambda d: d[:int(len(d) * 0.98)], "cut at 50 %": lambda d: d[:len(d) // 2],
             "4 KiB of corrupt bytes": lambda d: d[:len(d) // 3] + b"\xff" * 4096 + d[len(d) // 3 + 4096:]}
    out = []
    for name, damage in cases.items():
        copy = tmp / name.replace(" ", "_").replace("%", "pct")
        shutil.copytree(bag, copy)
        mcap = next(copy.glob("*.mcap"))
        mcap.write_bytes(damage(mcap.read_bytes()))
        try:
            report = convert_bags([copy], tmp / f"out_{copy.name}", window_s=1.0, progress=False)
            lost = sum(s["messages_lost"] or 0 for s in report.salvaged)
            out.append(Outcome("damaged bags", name, True, bool(report.salvaged), 0.0 if report.salvaged else None, lost))
        except ValueError as err:
            out.append(Outcome("damaged bags", name, True, "\n" not in str(err), None, 0))
        except Exception:  # a crash is what this row reports
            out.append(Outcome("damaged bags", name, False, False, None, 0))
    return out


def print_table(outcomes: list[Outcome]) -> None:
    rows = defaultdict(list)
    for o in outcomes:
        rows[o.category].append(o)
    print(f"{'category':<18} {'inputs':>6} {'survived':>9} {'clear error':>12} {'recovered':>20} {'data lost':>10}")
    for category, items in rows.items():
        rec = [o.recovered_s for o in items if o.recovered_s is not None]
        recovered = f"{len(rec)}/{len(items)} max {max(rec):.2f} s" if rec else f"0/{len(items)}"
        print(f"{category:<18} {len(items):>6} {sum(o.survived for o in items):>9} "
              f"{sum(o.clear for o in items):>12} {recovered:>20} {sum(o.lost for o in items):>10}")
    for o in outcomes:
        if not (o.survived and o.clear):
            print(f"  not clean: {o.category} / {o.name}: survived {o.survived}, clear error {o.clear}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


def run_soak(seconds: float, warmup: float) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from jaeger_ros.msg import SpeakerMatch
    from jaeger_ros.ros import live_demo

    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(live_demo.FASTDDS_PROFILE))
    params = live_demo.DEFAULT_PARAMS
    procs = live_demo.start_nodes({
        "sim_bridge": [sys.executable, "-m", "sim_bridge.node", "--ros-args", "--params-file", str(params)],
        "jaeger_node": [sys.executable, "-m", "jaeger_ros.ros.jaeger_node", "--ros-args", "--params-file", str(params)]})
    rclpy.init()
    node = rclpy.create_node("soak_probe")
    arrivals: list[float] = []
    node.create_subscription(SpeakerMatch, "/jaeger/speaker_match", lambda m: arrivals.append(time.monotonic()), 50)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in procs}
    start = time.monotonic()
    next_sample = start
    try:
        while time.monotonic() - start < seconds:
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() >= next_sample:
                for name, p in procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{name} exited with {p.returncode}")
                    samples[name].append((time.monotonic() - start, rss_mb(p.pid)))
                next_sample += 10.0
    finally:
        live_demo.stop_nodes(procs)
        node.destroy_node()
        rclpy.shutdown()
    steady = [t for t in arrivals if t - start >= warmup]
    rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    result = {"seconds": seconds, "warmup_s": warmup, "outputs": len(arrivals), "rate_hz": round(rate, 2),
              "longest_silence_s": round(float(np.max(np.diff(steady))), 3) if len(steady) > 1 else None}
    for name, pts in samples.items():
        t, mb = np.array([p for p in pts if p[0] >= warmup]).T if any(p[0] >= warmup for p in pts) else ([], [])
        slope = float(np.polyfit(t, mb, 1)[0]) * 60.0 if len(t) > 2 else float("nan")
        result[name] = {"rss_start_mb": round(pts[0][1], 1), "rss_end_mb": round(pts[-1][1], 1),
                        "rss_growth_mb_per_min": round(slope, 3)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=2.5, help="s of good stream after each fault")
    parser.add_argument("--fuzz", type=int, default=20, help="random malformed audio + image messages (pairs)")
    parser.add_argument("--soak", type=float, default=0.0, help="run the soak for this many seconds instead")
    parser.add_argument("--warmup", type=float, default=60.0, help="soak: seconds left out of the RSS fit")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.soak:
        result = run_soak(args.soak, args.warmup)
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    outcomes = run_faults(args.settle, args.fuzz)
    with tempfile.TemporaryDirectory() as tmp:
        outcomes += run_bags(Path(tmp))
    print_table(outcomes)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))


if __name__ == "__main__":
    main()
