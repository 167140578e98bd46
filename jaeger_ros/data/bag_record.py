"""Record the simulated live world into a standard rosbag2 (mcap or sqlite3), without ROS.

Why not `ros2 bag record`: neither the ros2 CLI nor rosbag2_py exists here, and a recording
need not wait for real time. The recorder runs the ROS-free live world (sim_bridge.live) on
its own clock and writes what sim_bridge publishes, serialised as CDR with the `rosbags`
library: colour image (rgb8), depth (32FC1 metres, NaN = no return), camera_info, FOA chunks
(jaeger_ros/msg/FoaAudio, stamped at their FIRST sample), /sim/ground_truth and TF
(tf2_msgs/TFMessage: the links of sim_bridge.live.tf_links, the moving ones on /tf with every
frame, the fixed ones once on /tf_static, exactly as sim_bridge publishes them). Every
connection embeds its message definition, so any rosbag2 reader decodes the bag without this
package, and records the QoS sim_bridge's publisher offers (offered_qos_profiles, as `ros2 bag
record` writes them): `ros2 bag play` republishes with it, so /tf_static is transient-local again
and a TF listener that starts after playback began (RViz) still gets the static transforms.

Time: header stamps are stream time (sample 0 of the FOA stream) plus a start time (the wall
clock at start unless given). The log time of a message is when sim_bridge would publish it:
frames at their stamp, audio chunks at their last sample's capture time. Audio is synthesised
one chunk ahead of each frame, as in sim_bridge, so a frame's ground truth knows who talks.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial.transform import Rotation

from jaeger_ros.core.geometry import OPTICAL_FRAME, Box3D, box_category, camera_to_optical
from jaeger_ros.core.paths import share_candidates

if TYPE_CHECKING:  # the simulator is imported only when recording (converting bags needs none of it)
    from sim_bridge.live import FrameLink

STORAGES = ("mcap", "sqlite3")


@dataclass(frozen=True)
class Topics:
    """Topic names of sim_bridge (config/sim.yaml), shared by the recorder and the converter."""

    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_raw"
    camera_info: str = "/camera/color/camera_info"
    audio: str = "/audio/foa"
    ground_truth: str = "/sim/ground_truth"
    tf: str = "/tf"
    tf_static: str = "/tf_static"


MSGTYPES = {"color": "sensor_msgs/msg/Image", "depth": "sensor_msgs/msg/Image",
            "camera_info": "sensor_msgs/msg/CameraInfo", "audio": "jaeger_ros/msg/FoaAudio",
            "ground_truth": "jaeger_ros/msg/SimGroundTruth", "tf": "tf2_msgs/msg/TFMessage",
            "tf_static": "tf2_msgs/msg/TFMessage"}

# (depth, transient_local) of each sim_bridge publisher (sim_bridge/node.py): everything reliable;
# images and camera_info keep last 5, audio 20, ground truth 10, /tf 100, /tf_static 1 latched.
PUBLISHER_QOS = {"color": (5, False), "depth": (5, False), "camera_info": (5, False), "audio": (20, False),
                 "ground_truth": (10, False), "tf": (100, False), "tf_static": (1, True)}


def offered_qos(name: str) -> list[Any]:
    """The offered_qos_profiles entry of one topic (rosbags Qos): reliable, keep last, and
    transient local where sim_bridge latches; deadline, lifespan and lease left at the RMW
    default (0 s: unspecified), liveliness automatic."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    depth, latched = PUBLISHER_QOS[name]
    unspecified = QosTime(sec=0, nsec=0)
    return [Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
                durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
                deadline=unspecified, lifespan=unspecified, liveliness=QosLiveliness.AUTOMATIC,
                liveliness_lease_duration=unspecified, avoid_ros_namespace_conventions=False)]


def _msg_dir() -> Path:
    """msg/*.msg of this package: the source tree, or share/jaeger_ros/msg when installed."""
    for candidate in share_candidates():
        if (candidate / "msg").is_dir():
            return candidate / "msg"
    raise FileNotFoundError("jaeger_ros message definitions (msg/*.msg) not found")


def jaeger_typestore() -> Any:
    """rosbags typestore of ROS 2 Kilted plus this package's messages (from msg/*.msg)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"jaeger_ros/msg/{path.stem}"))
    store.register(types)
    return store


@dataclass(frozen=True)
class RecordStats:
    """What a recording holds and what it cost."""

    path: str
    storage: str
    duration_s: float
    frames: int
    audio_chunks: int
    messages: int
    bytes: int
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Messages:
    """Builds rosbags message objects for one typestore (the ROS-free twin of sim_bridge/node.py)."""

    def __init__(self, store: Any) -> None:
        self.t = store.types

    def header(self, stamp_ns: int, frame_id: str = OPTICAL_FRAME) -> Any:
        stamp = self.t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        return self.t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def image(self, stamp_ns: int, array: np.ndarray, encoding: str) -> Any:
        a = np.ascontiguousarray(array)
        h, w = a.shape[:2]
        return self.t["sensor_msgs/msg/Image"](header=self.header(stamp_ns), height=h, width=w, encoding=encoding,
                                               is_bigendian=0, step=a.strides[0], data=a.reshape(-1).view(np.uint8))

    def camera_info(self, stamp_ns: int, intrinsics: Any) -> Any:
        i = intrinsics
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns), height=i.height, width=i.width, distortion_model="plumb_bob",
            d=np.zeros(5), k=np.array([i.fx, 0.0, i.cx, 0.0, i.fy, i.cy, 0.0, 0.0, 1.0]),
            r=np.eye(3).reshape(-1), p=np.array([i.fx, 0.0, i.cx, 0.0, 0.0, i.fy, i.cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
            binning_x=0, binning_y=0, roi=roi)

    def foa(self, stamp_ns: int, samples: np.ndarray, sample_rate: int) -> Any:
        a = np.ascontiguousarray(samples, dtype=np.float32)
        return self.t["jaeger_ros/msg/FoaAudio"](header=self.header(stamp_ns), sample_rate=sample_rate,
                                                 channel_order="ACN", normalization="SN3D", channels=4,
                                                 frame_samples=a.shape[1], data=a.reshape(-1))

    def vector(self, v: Any) -> Any:
        return self.t["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))

    def point(self, p: Any) -> Any:
        return self.t["geometry_msgs/msg/Point"](x=float(p[0]), y=float(p[1]), z=float(p[2]))

    def pose(self, transform: np.ndarray) -> Any:
        q = Rotation.from_matrix(transform[:3, :3]).as_quat(canonical=True)  # x, y, z, w >= 0 as ros.convert
        return self.t["geometry_msgs/msg/Pose"](
            position=self.t["geometry_msgs/msg/Point"](x=float(transform[0, 3]), y=float(transform[1, 3]),
                                                      z=float(transform[2, 3])),
            orientation=self.t["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                               w=float(q[3])))

    def box(self, box: Box3D, index: int) -> Any:
        """Camera-frame box -> BoundingBox3D in the optical frame (as ros_convert.box_to_msg)."""
        pose = np.eye(4)
        pose[:3, 3] = camera_to_optical(box.center)
        return self.t["jaeger_ros/msg/BoundingBox3D"](id=index, label=box.label, category=box_category(box),
                                                      center=self.pose(pose),
                                                      size=self.vector(box.size), score=float(box.score))

    def ground_truth(self, stamp_ns: int, gt: Any) -> Any:
        sources = [self.t["jaeger_ros/msg/SimSource"](
            gender=s.gender, loudspeaker=s.loudspeaker, category=c, label=s.label, active=bool(s.active),
            active_for_s=float(s.active_for_s), azimuth_deg=float(s.azimuth_deg), elevation_deg=float(s.elevation_deg),
            direction=self.vector(camera_to_optical(s.direction)),
            position=self.point(p), in_view=bool(seen), drr_db=float(drr))
            for s, p, seen, c, drr in zip(gt.sources, gt.positions_map, gt.in_view, gt.source_categories(),
                                           gt.source_drr_db())]
        return self.t["jaeger_ros/msg/SimGroundTruth"](
            header=self.header(stamp_ns), scene_id=gt.scene_id, scenario=gt.scenario,
            boxes=[self.box(b, i) for i, b in enumerate(gt.boxes)], sources=sources,
            camera_pose=self.pose(gt.map_from_optical), room_size=self.vector(gt.room_size_map),
            room_origin=self.point(gt.room_origin_map))

    def tf(self, stamp_ns: int, links: list[FrameLink]) -> Any:
        transforms = []
        for link in links:
            pose = self.pose(link.transform)
            p = pose.position
            transforms.append(self.t["geometry_msgs/msg/TransformStamped"](
                header=self.header(stamp_ns, link.parent), child_frame_id=link.child,
                transform=self.t["geometry_msgs/msg/Transform"](
                    translation=self.t["geometry_msgs/msg/Vector3"](x=p.x, y=p.y, z=p.z),
                    rotation=pose.orientation)))
        return self.t["tf2_msgs/msg/TFMessage"](transforms=transforms)


def record(out: str | Path, duration_s: float, scenario: str = "single", seed: int = 0, storage: str = "mcap",
           width: int = 640, height: int = 480, rate_hz: float = 10.0, start_ns: int | None = None,
           compress: bool = True, split: str = "test", progress: bool = True,
           conditions: str = "realistic", world: str = "procedural", talkers: str = "loudspeakers") -> RecordStats:
    """Record `duration_s` seconds of the live world to the rosbag2 folder `out` (which must not
    exist). The bag is written beside `out` and renamed when complete, so a failure leaves
    nothing behind. `compress`: zstd chunks (mcap) or zstd messages (sqlite3); `conditions`: the
    sim_bridge.conditions preset of the live world; `world`: procedural or mesh (sim_bridge.mesh);
    `talkers`: loudspeakers, people or mixed (sim_bridge.people)."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
    from tqdm import tqdm

    from sim_bridge.live import LiveConfig, LiveWorld

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if duration_s <= 0 or rate_hz <= 0:
        raise ValueError(f"duration and camera rate must be positive, got {duration_s} s, {rate_hz} Hz")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; rosbag2 recordings are never overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    world = LiveWorld(LiveConfig(scenario=scenario, seed=seed, width=width, height=height, split=split,
                                  conditions=conditions, world=world, talker_kind=talkers))
    start_ns = time.time_ns() if start_ns is None else int(start_ns)
    store = jaeger_typestore()
    make = _Messages(store)
    topics = Topics()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    bag = tmp / out.name
    wall = time.perf_counter()
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    if compress:
        writer.set_compression(CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE,
                               CompressionFormat.ZSTD)
    writer.set_custom_data("jaeger_ros.recorder", json.dumps(
        {"scenario": scenario, "seed": seed, "split": split, "width": width, "height": height, "rate_hz": rate_hz,
         "start_ns": start_ns}))
    frames = chunks = 0
    try:
        writer.open()
        conns = {name: writer.add_connection(getattr(topics, name), msgtype, typestore=store,
                                             offered_qos_profiles=offered_qos(name))
                 for name, msgtype in MSGTYPES.items()}

        def write(name: str, log_ns: int, msg: Any) -> None:
            writer.write(conns[name], log_ns, store.serialize_cdr(msg, MSGTYPES[name]))

        def ns(t: float) -> int:
            return start_ns + int(round(t * 1e9))

        world.start(0.0)
        rate = world.sample_rate
        chunk_s = world.chunk / rate
        pending: list[tuple[float, np.ndarray]] = []

        def flush_audio(until: float) -> int:
            """Write the chunks whose last sample has been captured by `until` (stream seconds)."""
            n = 0
            while pending and pending[0][0] + chunk_s <= until + 1e-9:
                t, samples = pending.pop(0)
                write("audio", ns(t + chunk_s), make.foa(ns(t), samples, rate))
                n += 1
            return n

        n_frames = int(np.floor(duration_s * rate_hz + 1e-9))
        cache: tuple[int, Any, Any] | None = None
        for k in tqdm(range(n_frames), desc="record", unit="frame", disable=not progress):
            t = k / rate_hz
            while world.next_chunk_time <= t + chunk_s:  # one chunk ahead, as sim_bridge
                pending.append(world.next_chunk())
            chunks += flush_audio(t)
            rgb, depth, scene_id = world.frame(t)
            if cache is None or cache[0] != scene_id:  # static camera: convert once per scene
                cache = (scene_id, np.ascontiguousarray(rgb, dtype=np.uint8),
                         np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32))
            stamp = ns(t)
            write("color", stamp, make.image(stamp, cache[1], "rgb8"))
            write("depth", stamp, make.image(stamp, cache[2], "32FC1"))
            write("camera_info", stamp, make.camera_info(stamp, world.intrinsics))
            write("ground_truth", stamp, make.ground_truth(stamp, world.ground_truth(t)))
            links = world.transforms(t, OPTICAL_FRAME)
            if k == 0:  # fixed for the whole recording, as sim_bridge latches them
                write("tf_static", stamp, make.tf(stamp, [link for link in links if link.static]))
            write("tf", stamp, make.tf(stamp, [link for link in links if not link.static]))
            frames += 1
        while world.next_chunk_time + chunk_s <= duration_s + 1e-9:
            pending.append(world.next_chunk())
        chunks += flush_audio(duration_s)
        writer.close()
        bag.rename(out)
    except BaseException:
        writer.abort()  # no-op once closed
        raise
    finally:
        world.close()  # the next scene's prefetch thread must not outlive the recording (see LiveWorld.close)
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return RecordStats(str(out), storage, duration_s, frames, chunks, sum(writer.counts.values()), size,
                       time.perf_counter() - wall)
