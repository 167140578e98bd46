"""Recorded rosbag2 bags -> SpatialSceneQA sample folders and manifests (`jaeger dataset from-bag`).

Why: `jaeger train` and `jaeger eval` read the layout of `jaeger dataset generate`; converting
bags into that layout lets recorded data (the simulator's live stream or a real robot) train
and score methods unchanged.

Pairing: colour, depth and camera_info with matching stamps (sync.ApproximateTimeMatcher) form
a frame; its audio is the FOA window of `window_s` seconds ENDING at the frame stamp
(audio_buffer.FoaRingBuffer; chunks are stamped at their first sample). Everything is read in
log-time order in one pass, so memory does not grow with the bag.

Labels: /sim/ground_truth (SimGroundTruth, stamped like the frame) or, for hardware bags, a
sidecar annotation file (see `SidecarLabels`). A frame becomes a sample when one voice (task
1: A, C, D) or a male and a female voice (task 2: B, E) talk at its stamp for at least
`min_active_s`, no other voice is heard within the window, and the window lies inside one
scene. Frames where nobody talks, windows that cross a scene cut or an audio gap, and frames
before the audio starts are skipped and counted.

Errors (ValueError/FileNotFoundError, one line): missing topics, unexpected message types,
audio gaps (unless allow_gaps), clock jumps, corrupt or truncated bags. The split is written
to a temporary folder and renamed when complete.

Salvage: an MCAP bag that cannot be opened (a recorder killed mid-write leaves no footer and
often no metadata.yaml) is read record by record up to its first damaged one (`_SalvagedBag`).
Its readable part is converted when it holds at least `salvage_min` of the messages that
metadata.yaml lists (or always, without metadata.yaml); the report says how many were lost.
"""
from __future__ import annotations

import bisect
import json
import mmap
import shutil
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import yaml
from PIL import Image

from jaeger_ros.core import foa as foa_io
from jaeger_ros.core.answers import azimuth_order, match_label
from jaeger_ros.core.audio_buffer import FoaRingBuffer
from jaeger_ros.data.bag_record import MSGTYPES, Topics, jaeger_typestore
from jaeger_ros.data.dataset import (DEPTH_PNG_MAX_M, FORMAT, SPLITS, TASK_LETTERS, ManifestEntry, _Job,
                                _manifest_entries, write_manifest)
from jaeger_ros.core.geometry import Box3D, SourceTruth, azel_from_direction, direction_from_azel, optical_to_camera
from jaeger_ros.core.msg_arrays import camera_info_to_intrinsics, depth_from_image, foa_from_msg, rgb_from_image
from jaeger_ros.core.sync import ApproximateTimeMatcher

ANNOTATION_FORMAT = "jaeger_ros.bag_annotation/1"
SETTLE_S = 0.2
"""A frame is converted once this much audio after its stamp has been read."""
MAX_GAP_S = 1.0
"""A forward jump of the audio stamps beyond this is a clock jump, not dropped chunks."""
SALVAGE_MIN = 0.9
"""Share of a damaged bag's messages that must be readable for it to be converted."""
MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass(frozen=True)
class FrameTruth:
    scene_id: int
    boxes: list[Box3D]  # JAEGER camera frame, left to right
    sources: list[SourceTruth]


def _ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _vec(v: Any) -> np.ndarray:
    return np.array([v.x, v.y, v.z], dtype=float)


class GroundTruthLabels:
    """Labels from /sim/ground_truth messages as they stream past (stamped like the frames)."""

    def __init__(self) -> None:
        self._stamps: list[int] = []
        self._truths: list[FrameTruth] = []
        self._scene_start: dict[int, int] = {}

    def add(self, msg: Any) -> None:
        stamp = _ns(msg.header.stamp)
        boxes = [Box3D(optical_to_camera(_vec(b.center.position)), _vec(b.size), b.label or "speaker")
                 for b in msg.boxes]
        sources = []
        for s in msg.sources:
            d = optical_to_camera(_vec(s.direction))
            sources.append(SourceTruth(s.gender, int(s.loudspeaker), s.label, bool(s.active), float(s.active_for_s),
                                       d / np.linalg.norm(d), float(s.azimuth_deg), float(s.elevation_deg)))
        if self._stamps and stamp <= self._stamps[-1]:
            raise ValueError(f"clock jump: /sim/ground_truth stamp {stamp * 1e-9:.3f} s is not after "
                             f"{self._stamps[-1] * 1e-9:.3f} s")
        self._stamps.append(stamp)
        self._truths.append(FrameTruth(int(msg.scene_id), boxes, sources))
        self._scene_start.setdefault(int(msg.scene_id), stamp)

    def truth(self, stamp: int, slop_ns: int) -> FrameTruth | None:
        i = bisect.bisect_left(self._stamps, stamp - slop_ns)
        if i < len(self._stamps) and abs(self._stamps[i] - stamp) <= slop_ns:
            return self._truths[i]
        return None

    def in_one_scene(self, truth: FrameTruth, start: int) -> bool:
        return self._scene_start[truth.scene_id] <= start

    def heard(self, truth: FrameTruth, start: int, end: int) -> set[int]:
        """Indices of the sources active at any ground-truth stamp in [start, end]."""
        lo, hi = bisect.bisect_left(self._stamps, start), bisect.bisect_right(self._stamps, end)
        return {i for t in self._truths[lo:hi] if t.scene_id == truth.scene_id
                for i, s in enumerate(t.sources) if s.active}

    def forget_before(self, stamp: int) -> None:
        i = bisect.bisect_left(self._stamps, stamp)
        del self._stamps[:i], self._truths[:i]


class SidecarLabels:
    """Labels of a hardware bag from an annotation file (JSON or YAML)::

        format: jaeger_ros.bag_annotation/1
        segments:                         # stretches with a fixed camera and loudspeakers
          - start: 1718000000.0           # header-stamp seconds, [start, end)
            end: 1718000030.0
            boxes:                        # loudspeakers, camera OPTICAL frame, metres
              - {center: [-0.8, 0.4, 2.5], size: [0.3, 0.5, 0.3], label: speaker}
              - {center: [0.9, 0.4, 2.7], size: [0.3, 0.5, 0.3]}
            talkers:                      # who plays what, when
              - gender: male              # male | female
                loudspeaker: 0            # index into boxes
                intervals: [[1718000001.2, 1718000004.0], [1718000005.0, 1718000009.5]]

    Boxes may be listed in any order (ids are assigned left to right); a talker's direction is
    the centre of its box unless it gives `azimuth_deg` and `elevation_deg` (JAEGER convention).
    """

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {p}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{p}: not valid JSON/YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict) or data.get("format") != ANNOTATION_FORMAT:
            raise ValueError(f"{p}: expected a mapping with format: {ANNOTATION_FORMAT}")
        self.segments: list[tuple[int, int, list[Box3D], list[tuple[SourceTruth, list[tuple[int, int]]]]]] = []
        try:
            for seg in data["segments"]:
                self.segments.append(self._segment(seg))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"{p}: segment {len(self.segments)}: {e!r}") from None

    @staticmethod
    def _segment(seg: dict[str, Any]) -> tuple[int, int, list[Box3D], list[tuple[SourceTruth, list[tuple[int, int]]]]]:
        raw = [Box3D(optical_to_camera(np.asarray(b["center"], float)), np.asarray(b["size"], float),
                     b.get("label", "speaker")) for b in seg["boxes"]]
        order = azimuth_order(raw)  # bbox ids left to right by azimuth
        talkers = []
        for t in seg["talkers"]:
            if t["gender"] not in ("male", "female"):
                raise ValueError(f"gender must be male or female, got {t['gender']!r}")
            box = raw[int(t["loudspeaker"])]
            if "azimuth_deg" in t:
                d = np.asarray(direction_from_azel(t["azimuth_deg"], t["elevation_deg"]), float)
            else:
                d = box.center / np.linalg.norm(box.center)
            az, el = azel_from_direction(d)
            spans = [(int(round(a * 1e9)), int(round(b * 1e9))) for a, b in t["intervals"]]
            rank = order.index(int(t["loudspeaker"]))
            talkers.append((SourceTruth(t["gender"], rank, match_label(rank, len(raw)), False, 0.0, d,
                                        float(az), float(el)), spans))
        return (int(round(float(seg["start"]) * 1e9)), int(round(float(seg["end"]) * 1e9)),
                [raw[i] for i in order], talkers)

    def _find(self, stamp: int) -> int | None:
        return next((k for k, (a, b, _, _) in enumerate(self.segments) if a <= stamp < b), None)

    def truth(self, stamp: int, slop_ns: int) -> FrameTruth | None:
        k = self._find(stamp)
        if k is None:
            return None
        _, _, boxes, talkers = self.segments[k]
        sources = []
        for src, spans in talkers:
            since = next((s for s, e in spans if s <= stamp < e), None)
            active_for = 0.0 if since is None else (stamp - since) * 1e-9
            sources.append(replace(src, active=since is not None, active_for_s=active_for))
        return FrameTruth(k, boxes, sources)

    def in_one_scene(self, truth: FrameTruth, start: int) -> bool:
        return self.segments[truth.scene_id][0] <= start

    def heard(self, truth: FrameTruth, start: int, end: int) -> set[int]:
        _, _, _, talkers = self.segments[truth.scene_id]
        return {i for i, (_, spans) in enumerate(talkers) if any(s <= end and e > start for s, e in spans)}

    def forget_before(self, stamp: int) -> None:
        pass


# --------------------------------------------------------------------------- reading

@dataclass
class _Frame:
    stamp: int
    color: Any
    depth: Any
    info: Any


@dataclass
class ConvertReport:
    """Counts of one conversion: frames seen, samples per task, frames skipped by reason."""

    bags: int = 0
    frames: int = 0
    folders: int = 0
    entries: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    salvaged: list[dict[str, Any]] = field(default_factory=list)
    """Damaged bags converted from their readable part, with what was lost."""

    def to_dict(self) -> dict[str, Any]:
        return {"bags": self.bags, "frames": self.frames, "folders": self.folders, "entries": self.entries,
                "skipped": dict(self.skipped), "salvaged": self.salvaged}


def _open_reader(path: Path, store: Any) -> Any:
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    try:
        reader = AnyReader([path], default_typestore=store)
        reader.open()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not a rosbag2 bag (no metadata.yaml)") from None
    except Exception as e:  # rosbags raises many kinds on damaged files
        raise ValueError(f"{path}: corrupt or truncated bag ({_reason(e)})") from None
    return reader


@dataclass(frozen=True)
class _Connection:
    """The fields of a rosbags connection that the converter reads."""

    topic: str
    msgtype: str
    msgcount: int


class _Damaged(Exception):
    """An MCAP record that cannot be read: where salvage stops."""


class _SalvagedBag:
    """The readable part of a damaged or unfinished MCAP bag, with the interface of the rosbags
    reader that `_Converter.convert` uses. Records are read in file order (the recorder writes
    in log-time order) up to the first one that is cut off or fails its chunk checksum;
    everything after it is lost, whole chunks before it are kept."""

    def __init__(self, file: Path, store: Any) -> None:
        self.file, self.store = file, store
        self.size = file.stat().st_size
        self.readable_bytes = len(MCAP_MAGIC)
        self.damage = "end of file"
        self._schemas: dict[str, tuple[str, str]] = {}  # type name -> (encoding, definition)
        counts: Counter = Counter()
        types: dict[str, str] = {}
        for topic, msgtype, _ in self._records():
            counts[topic] += 1
            types[topic] = msgtype
        self.connections = [_Connection(t, types[t], n) for t, n in counts.items()]
        self.messages_read = sum(counts.values())
        self.typestore = self._embedded_types()

    def _embedded_types(self) -> Any:
        """A typestore of the definitions the bag embeds (as rosbags' reader builds it), or the
        package's own where it embeds none."""
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        types: dict[str, Any] = {}
        for name, (encoding, text) in self._schemas.items():
            if encoding == "ros2msg" and text:
                types.update(get_types_from_msg(text, name))
        if not types:
            return self.store
        embedded = get_typestore(Stores.EMPTY)
        embedded.register(types)
        return embedded

    @classmethod
    def open(cls, path: Path, store: Any, error: Exception, salvage_min: float) -> tuple[_SalvagedBag, int | None]:
        """The salvaged bag and the message count metadata.yaml promised (None: no metadata),
        or `error` raised again when there is no MCAP file or too little of it is readable."""
        files = sorted(path.glob("*.mcap")) if path.is_dir() else []
        if len(files) != 1:
            raise error
        with open(files[0], "rb") as f:
            if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                raise error
        bag = cls(files[0], store)
        expected = None
        try:
            meta = yaml.safe_load((path / "metadata.yaml").read_text())
            expected = int(meta["rosbag2_bagfile_information"]["message_count"])
        except FileNotFoundError:
            pass
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            raise error from None
        if bag.messages_read == 0 or (expected is not None and bag.messages_read < salvage_min * expected):
            share = f"{bag.messages_read} of {expected}" if expected is not None else f"{bag.messages_read}"
            raise ValueError(f"{error}; only {share} messages are readable (salvage needs {salvage_min:.0%})") from None
        return bag, expected

    def _records(self) -> Iterator[tuple[str, str, bytes]]:
        """(topic, message type, CDR bytes) of every message up to the first damaged record."""
        with open(self.file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            schemas: dict[int, str] = {}
            channels: dict[int, tuple[str, str]] = {}
            pos = len(MCAP_MAGIC)
            try:
                while pos < self.size:
                    end = yield from self._record(buf, pos, self.size, schemas, channels, top=True)
                    if end is None:  # data end: the rest is the index, which we do not need
                        break
                    pos = self.readable_bytes = end
            except (_Damaged, struct.error, KeyError, UnicodeDecodeError, ValueError) as e:
                self.damage = f"damaged record at byte {pos} ({type(e).__name__}: {e})"

    def _record(self, buf: Any, pos: int, limit: int, schemas: dict[int, str], channels: dict[int, tuple[str, str]],
                top: bool) -> Iterator[tuple[str, str, bytes]]:
        """Yield the messages of the record at `pos`; return where it ends (None at data end)."""
        from rosbags.rosbag2.storage_mcap import decompress

        if pos + 9 > limit:
            raise _Damaged("record header cut off")
        op, length = buf[pos], struct.unpack_from("<Q", buf, pos + 1)[0]
        body, end = pos + 9, pos + 9 + length
        if end > limit:
            raise _Damaged(f"record of {length} bytes cut off")

        def string(at: int) -> tuple[str, int]:
            n = struct.unpack_from("<I", buf, at)[0]
            return bytes(buf[at + 4:at + 4 + n]).decode(), at + 4 + n

        if op == 0x03:  # schema: id, name, encoding, data
            name, at = string(body + 2)
            encoding, at = string(at)
            schemas[struct.unpack_from("<H", buf, body)[0]] = name
            self._schemas[name] = (encoding, string(at)[0])
        elif op == 0x04:  # channel: id, schema id, topic, encoding, metadata
            cid, sid = struct.unpack_from("<HH", buf, body)
            channels[cid] = (string(body + 4)[0], schemas[sid])
        elif op == 0x05:  # message: channel, sequence, log time, publish time, data
            topic, msgtype = channels[struct.unpack_from("<H", buf, body)[0]]
            yield topic, msgtype, bytes(buf[body + 22:end])
        elif op == 0x06 and top:  # chunk: times, size, crc, compression, records
            size, crc = struct.unpack_from("<QI", buf, body + 16)
            compression, at = string(body + 28)
            n = struct.unpack_from("<Q", buf, at)[0]
            if at + 8 + n > end:
                raise _Damaged("chunk records overrun the chunk")
            try:
                inner = decompress(bytes(buf[at + 8:at + 8 + n]), compression, size, crc)
            except Exception as e:  # rosbags' checksum/size errors and the codecs' own
                raise _Damaged(f"chunk does not decompress: {_reason(e)}") from None
            at = 0
            while at < len(inner):
                at = yield from self._record(inner, at, len(inner), schemas, channels, top=False)
        elif op in (0x0F, 0x02) and top:  # data end, footer
            return None
        return end

    def messages(self, connections: Sequence[Any]) -> Iterator[tuple[_Connection, int, bytes]]:
        wanted = {c.topic: c for c in connections}
        for topic, _, raw in self._records():
            if topic in wanted:
                yield wanted[topic], 0, raw

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        store = self.typestore if msgtype in self.typestore.fielddefs else self.store
        return store.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        pass


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _messages(reader: Any, path: Path, connections: Sequence[Any]) -> Iterator[tuple[str, Any]]:
    """(topic, message) in log-time order; decoding and storage failures become one-line errors."""
    it = reader.messages(connections=connections)
    while True:
        try:
            conn, _, raw = next(it)
        except StopIteration:
            return
        except Exception as e:
            raise ValueError(f"{path}: corrupt or truncated bag ({_reason(e)})") from None
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception as e:
            raise ValueError(f"{path}: cannot decode a {conn.msgtype} message on {conn.topic} "
                             f"({_reason(e)})") from None
        yield conn.topic, msg


class _Converter:
    """Turns the frames of one or more bags into sample folders under `root` (a temp folder)."""

    def __init__(self, root: Path, split: str, tasks: Iterable[str], window_s: float, min_active_s: float,
                 slop_s: float, allow_gaps: bool, progress: bool, salvage_min: float = SALVAGE_MIN) -> None:
        self.root, self.split, self.salvage_min = root, split, salvage_min
        self.tasks = set(tasks)
        self.window_s, self.min_active_s, self.slop_s = window_s, min_active_s, slop_s
        self.allow_gaps, self.progress = allow_gaps, progress
        self.per_task: dict[str, list[ManifestEntry]] = {t: [] for t in TASK_LETTERS if t in self.tasks}
        self.counters = {"task1": 0, "task2": 0}
        self.report = ConvertReport()

    def convert(self, path: Path, topics: Topics, store: Any, annotation: str | Path | None) -> None:
        from tqdm import tqdm

        labels: GroundTruthLabels | SidecarLabels = SidecarLabels(annotation) if annotation else GroundTruthLabels()
        salvaged: _SalvagedBag | None = None
        try:
            reader = _open_reader(path, store)
        except (ValueError, FileNotFoundError) as err:
            salvaged, expected = _SalvagedBag.open(path, store, err, self.salvage_min)
            reader = salvaged
        try:
            wanted = {"color": topics.color, "depth": topics.depth, "camera_info": topics.camera_info,
                      "audio": topics.audio}
            if annotation is None:
                wanted["ground_truth"] = topics.ground_truth
            by_topic = {c.topic: c for c in reader.connections if c.msgcount > 0}
            missing = [t for t in wanted.values() if t not in by_topic]
            if missing:
                raise ValueError(f"{path}: missing topic(s) {', '.join(missing)} (topics with messages: "
                                 f"{', '.join(sorted(by_topic)) or 'none'})")
            for name, topic in wanted.items():
                if by_topic[topic].msgtype != MSGTYPES[name]:
                    raise ValueError(f"{path}: topic {topic} has message type {by_topic[topic].msgtype}, "
                                     f"expected {MSGTYPES[name]}")
            role = {topic: name for name, topic in wanted.items()}
            n_frames = by_topic[topics.color].msgcount
            with tqdm(total=n_frames, desc=f"from-bag {path.name}", unit="frame", disable=not self.progress) as bar:
                self._stream(path, _messages(reader, path, [by_topic[t] for t in wanted.values()]), role, labels, bar)
        finally:
            reader.close()
        if salvaged is not None:
            self.report.salvaged.append({
                "bag": str(path), "messages_read": salvaged.messages_read,
                "messages_lost": None if expected is None else expected - salvaged.messages_read,
                "bytes_unread": salvaged.size - salvaged.readable_bytes, "stopped_at": salvaged.damage})
        self.report.bags += 1

    def _stream(self, path: Path, messages: Iterator[tuple[str, Any]], role: dict[str, str],
                labels: GroundTruthLabels | SidecarLabels, bar: Any) -> None:
        matcher = ApproximateTimeMatcher(3, queue_size=10, slop=self.slop_s)
        index = {"color": 0, "depth": 1, "camera_info": 2}
        buffer: FoaRingBuffer | None = None
        gaps: list[tuple[int, int]] = []
        pending: list[_Frame] = []
        last_color: int | None = None
        first_audio: int | None = None
        frames_before = self.report.frames
        skipped_before = self.report.skipped["no audio window"]
        for topic, msg in messages:
            kind = role[topic]
            if kind == "ground_truth":
                assert isinstance(labels, GroundTruthLabels)  # the topic is read only without a sidecar
                labels.add(msg)
            elif kind == "audio":
                samples, rate = foa_from_msg(msg)
                start = _ns(msg.header.stamp)
                if buffer is None:
                    buffer = FoaRingBuffer(rate, self.window_s + 10.0)
                elif rate != buffer.sample_rate:
                    raise ValueError(f"{path}: FOA sample rate changes from {buffer.sample_rate} to {rate} Hz")
                self._push(path, buffer, start, samples, gaps)
                first_audio = start if first_audio is None else first_audio
                pending = self._ready(path, pending, buffer, gaps, labels)
            else:
                stamp = _ns(msg.header.stamp)
                if kind == "color":
                    bar.update()
                    if last_color is not None and stamp <= last_color:
                        raise ValueError(f"{path}: clock jump: image stamp {stamp * 1e-9:.3f} s is not after "
                                         f"{last_color * 1e-9:.3f} s")
                    last_color = stamp
                matched = matcher.add(index[kind], stamp * 1e-9, msg)
                if matched is not None:
                    self.report.frames += 1
                    pending.append(_Frame(_ns(matched[0].header.stamp), *matched))
        if buffer is not None:  # the bag has ended: every label that will come has come
            pending = self._ready(path, pending, buffer, gaps, labels, settle_s=0.0)
        self.report.skipped["audio ends before the frame"] += len(pending)
        frames = self.report.frames - frames_before
        no_window = self.report.skipped["no audio window"] - skipped_before + len(pending)
        if frames and no_window == frames:
            span = (f"audio {first_audio * 1e-9:.3f}..{buffer.end_time:.3f} s" if buffer is not None else "no audio")
            raise ValueError(f"{path}: no frame stamp falls inside the FOA stream ({span}, images up to "
                             f"{(last_color or 0) * 1e-9:.3f} s): are images and audio stamped by different clocks?")

    def _push(self, path: Path, buffer: FoaRingBuffer, start: int, samples: np.ndarray,
              gaps: list[tuple[int, int]]) -> None:
        """Add a chunk; jumps beyond the stamp tolerance are gaps or clock jumps."""
        end = buffer.end_time
        if end is not None:
            jump = start * 1e-9 - end
            tol = (buffer.tolerance + 0.5) / buffer.sample_rate
            if jump < -tol or jump > MAX_GAP_S:
                raise ValueError(f"{path}: clock jump: FOA chunk stamped {start * 1e-9:.3f} s follows audio "
                                 f"ending at {end:.3f} s ({jump:+.3f} s)")
            if jump > tol:
                if not self.allow_gaps:
                    raise ValueError(f"{path}: FOA audio gap of {jump:.3f} s at {end:.3f} s (dropped chunks?); "
                                     f"--allow-gaps skips the frames it touches")
                gaps.append((int(round(end * 1e9)), start))
        buffer.push(start * 1e-9, samples)

    def _ready(self, path: Path, pending: list[_Frame], buffer: FoaRingBuffer, gaps: list[tuple[int, int]],
               labels: GroundTruthLabels | SidecarLabels, settle_s: float = SETTLE_S) -> list[_Frame]:
        """Convert the pending frames whose audio window arrived `settle_s` ago (by then the
        frame's ground truth, logged after its images, has arrived too); return the rest."""
        end = buffer.end_time - settle_s
        keep = []
        for f in pending:
            if f.stamp * 1e-9 > end + 0.5 / buffer.sample_rate:
                keep.append(f)
                continue
            window = buffer.window(f.stamp * 1e-9, self.window_s)
            start = f.stamp - int(round(self.window_s * 1e9))
            if window is None:
                self.report.skipped["no audio window"] += 1
            elif any(a < f.stamp and b > start for a, b in gaps):
                self.report.skipped["audio gap in window"] += 1
            else:
                reason = self._sample(path, f, window, buffer.sample_rate, start, labels)
                if reason:
                    self.report.skipped[reason] += 1
        if keep:
            labels.forget_before(keep[0].stamp - int((self.window_s + 1.0) * 1e9))
        return keep

    def _sample(self, path: Path, f: _Frame, window: np.ndarray, rate: int, start: int,
                labels: GroundTruthLabels | SidecarLabels) -> str | None:
        """Write the frame's sample folder, or say why it is skipped."""
        truth = labels.truth(f.stamp, int(self.slop_s * 1e9))
        if truth is None:
            return "no label"
        if not labels.in_one_scene(truth, start):
            return "window crosses a scene cut"
        talking = [i for i, s in enumerate(truth.sources) if s.active and s.active_for_s >= self.min_active_s]
        if not talking:
            return "nobody talking"
        if labels.heard(truth, start, f.stamp) != set(talking):
            return "another voice starts or stops in the window"
        n = len(truth.boxes)
        if len(talking) == 1:
            family, prefix, letters = "bag_single", "task1", [t for t in "ACD" if t in self.tasks]
            sources = [truth.sources[talking[0]]]
        elif len(talking) == 2 and {truth.sources[i].gender for i in talking} == {"male", "female"}:
            family, prefix, letters = "bag_dual", "task2", [t for t in "BE" if t in self.tasks]
            sources = sorted((truth.sources[i] for i in talking), key=lambda s: s.gender != "male")
        else:
            return "unsupported talker mix"
        if not 2 <= n <= 3:
            letters = [t for t in letters if t not in "DE"]  # matching needs 2-3 candidates
        if not letters:
            return "task not requested"
        name = f"{prefix}_{self.counters[prefix]:05d}"
        job = _Job(name, family, self.counters[prefix], 0, self.split, tuple(letters))
        self.counters[prefix] += 1
        src_dicts = [{"gender": s.gender, "azimuth_deg": s.azimuth_deg, "elevation_deg": s.elevation_deg,
                      "direction": [float(v) for v in s.direction], "loudspeaker": s.loudspeaker,
                      "active_for_s": s.active_for_s} for s in sources]
        self._write_folder(self.root / name, f, window, rate, truth, src_dicts, path, family)
        for letter, entry in _manifest_entries(job, truth.boxes, src_dicts):
            self.per_task[letter].append(ManifestEntry.from_dict(entry))
        self.report.folders += 1
        return None

    def _write_folder(self, folder: Path, f: _Frame, window: np.ndarray, rate: int, truth: FrameTruth,
                      sources: list[dict[str, Any]], bag: Path, family: str) -> None:
        """The files of `dataset.generate`'s folders that a bag can provide (no mask, no RIRs)."""
        rgb, depth, intr = rgb_from_image(f.color), depth_from_image(f.depth), camera_info_to_intrinsics(f.info)
        if rgb.shape[:2] != depth.shape or (intr.width, intr.height) != (rgb.shape[1], rgb.shape[0]):
            raise ValueError(f"{bag}: frame at {f.stamp * 1e-9:.3f} s has colour {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"depth {depth.shape[1]}x{depth.shape[0]}, camera_info {intr.width}x{intr.height}")
        folder.mkdir(parents=True)
        foa_io.write_foa_wav(folder / "foa_ls.wav", window, rate)
        Image.fromarray(rgb).save(folder / "rgb.png")
        Image.fromarray(np.clip(np.round(depth / DEPTH_PNG_MAX_M * 255.0), 0, 255).astype(np.uint8)).save(
            folder / "depth.png")
        Image.fromarray(np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)).save(folder / "depth_mm.png")
        metadata = {
            "format": FORMAT, "split": self.split, "name": folder.name, "family": family, "sample_rate": rate,
            "foa": {"channel_order": foa_io.DEFAULT_ORDER, "normalization": foa_io.DEFAULT_NORMALIZATION,
                    "channels": list(foa_io.ACN), "axes": "x forward (-z camera), y left, z up"},
            "intrinsics": intr.to_dict(),
            "depth": {"depth.png": "uint8, d = px/255*10 m", "depth_mm.png": "uint16 millimetres",
                      "kind": "planar (camera -z)"},
            "frame": "camera: x right, y up, z backward",
            "boxes": [{"bbox_id": r, "label": b.label, "center": b.center.tolist(), "size": b.size.tolist()}
                      for r, b in enumerate(truth.boxes)],
            "sources": sources,
            "bag": {"path": str(bag), "stamp_ns": f.stamp, "scene_id": truth.scene_id, "window_s": self.window_s},
        }
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=1))


def convert_bags(bags: Sequence[str | Path], out_dir: str | Path, split: str = "train",
                 tasks: Iterable[str] = TASK_LETTERS, window_s: float = 2.0, min_active_s: float = 0.5,
                 annotations: Sequence[str | Path | None] | None = None, topics: Topics = Topics(),
                 slop_s: float = 0.02, allow_gaps: bool = False, progress: bool = True,
                 salvage_min: float = SALVAGE_MIN) -> ConvertReport:
    """Convert bags into OUT/<split> (sample folders + manifests, replacing an existing split).

    `annotations`: one sidecar file (or None: /sim/ground_truth) per bag. `salvage_min`: see
    the module docstring (1.0: convert only intact bags)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not bags:
        raise ValueError("give at least one bag")
    letters = [t.strip().upper() for t in tasks]
    if not letters or any(t not in TASK_LETTERS for t in letters):
        raise ValueError(f"tasks must be letters from {','.join(TASK_LETTERS)}, got {list(tasks)}")
    if window_s <= 0 or min_active_s < 0 or min_active_s > window_s:
        raise ValueError(f"need window_s > 0 and 0 <= min_active_s <= window_s, got {window_s}, {min_active_s}")
    annotations = list(annotations) if annotations is not None else [None] * len(bags)
    if len(annotations) != len(bags):
        raise ValueError(f"{len(annotations)} annotation files for {len(bags)} bags")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=out_dir))
    store = jaeger_typestore()
    conv = _Converter(tmp, split, letters, window_s, min_active_s, slop_s, allow_gaps, progress, salvage_min)
    try:
        for bag, annotation in zip(bags, annotations):
            conv.convert(Path(bag), topics, store, annotation)
        if conv.report.folders == 0:
            raise ValueError(f"no usable frames in {', '.join(str(b) for b in bags)} "
                             f"(skipped: {dict(conv.report.skipped)})")
        for letter, entries in conv.per_task.items():
            if entries:  # a single-talker bag has no task-2 entries: no empty B/E manifests
                write_manifest(tmp / "manifests" / f"{letter}.json", entries)
        final = out_dir / split
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    conv.report.entries = {letter: len(e) for letter, e in conv.per_task.items() if e}
    return conv.report
