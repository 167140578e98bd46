"""jaeger_node: RGB-D + FOA -> direction of arrival, loudspeaker boxes and the talking speaker.

Inputs (every topic a parameter): colour image, depth image (32FC1 m or 16UC1 mm), camera_info,
all three approximately synchronised (`queue_size`, `slop`), and FOA chunks
(jaeger_ros/FoaAudio stamped at their first sample) kept in a ring buffer, so each frame is
paired with the `window_s` seconds of audio that END at the image stamp.

Outputs, stamped with the image stamp and expressed in the image's frame (header.frame_id of
the colour image: the camera OPTICAL frame, x right, y down, z forward; the estimators work in
JAEGER's camera frame and ros_convert turns their results around): /jaeger/doa
(DoaEstimate), /jaeger/detections (BoundingBox3DArray, left to right), /jaeger/speaker_match
(SpeakerMatch), /jaeger/markers (MarkerArray) and /diagnostics, at up to `rate_hz` whether or
not anyone subscribes.

Methods: `classical` (candidates from depth alone, intensity-vector DoA, nearest-box match: no
ground truth enters the node) or `jaeger` (the fine-tuned model from `checkpoint`, imported
only when chosen). Malformed input (wrong channel count or rate, NaN, empty depth,
mismatched sizes, stale stamps) is logged (throttled), counted in /diagnostics and dropped.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from jaeger_ros.ros import convert as rc
from jaeger_ros.core.audio_buffer import FoaRingBuffer
from jaeger_ros.core.geometry import Box3D, Intrinsics, camera_to_optical, direction_from_azel
from jaeger_ros.msg import BoundingBox3D, BoundingBox3DArray, DoaEstimate, FoaAudio, SpeakerMatch
from jaeger_ros.core.sync import subscribe_synchronized
from jaeger_ros.ros.runner import run_node

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # pragma: no cover - ros-diagnostic-msgs is in requirements
    DiagnosticArray = None

METHODS = ("classical", "jaeger")
VOICES = ("", "male", "female")
_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


@dataclass(frozen=True)
class Estimate:
    """One frame's result in JAEGER's camera frame."""

    boxes: list[Box3D]  # left to right
    direction: np.ndarray | None  # unit DoA of the target voice (None: no usable sound)
    doa_confidence: float
    index: int  # matched box, -1 for none
    label: str
    confidence: float


class ClassicalEstimator:
    """Depth-only candidates + intensity-vector DoA pooled over the stream + nearest-box
    matching (no learning). The match confidence is the DoA's confidence times the matching
    probability, so a guess from a reverberant window is not reported as certain.

    Candidates are recomputed only when the depth image changes (DEPTH_CHANGE_* below): a
    static scene keeps stable boxes and saves 20-50 ms a frame. Such a change also resets the
    DoA pool, so onsets heard before the scene changed do not vote after it."""

    name = "classical"
    DEPTH_STRIDE = 8
    DEPTH_CHANGE_M = 0.05     # a pixel moved more than this ...
    DEPTH_CHANGE_SHARE = 0.02  # ... in more than this share of the (subsampled) image: new scene

    def __init__(self) -> None:
        from jaeger_ros.classical import candidates, doa, matching, tracking
        self._candidates, self._doa, self._matching = candidates, doa, matching
        self._pool = tracking.OnsetPool()
        self._depth_key: np.ndarray | None = None
        self._boxes: list[Box3D] = []

    def _scene_changed(self, depth: np.ndarray) -> bool:
        """Whether the depth moved since the candidates were computed. Only pixels valid in both
        frames are compared, so the flickering holes of a real sensor do not count as change."""
        key = np.nan_to_num(depth[::self.DEPTH_STRIDE, ::self.DEPTH_STRIDE], nan=0.0, posinf=0.0, neginf=0.0)
        old = self._depth_key
        if old is not None and key.shape == old.shape:
            both = (key > 0) & (old > 0)
            moved = both & (np.abs(key - old) > self.DEPTH_CHANGE_M)
            if both.sum() >= 0.5 * max((key > 0).sum(), (old > 0).sum()) and \
                    moved.sum() <= self.DEPTH_CHANGE_SHARE * both.sum():
                return False
        self._depth_key = key
        return True

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, foa: np.ndarray | None,
                 sample_rate: int, target: str, stamp: float) -> Estimate:
        if self._scene_changed(depth):
            self._pool.reset(stamp)
            try:
                self._boxes = sorted(self._candidates.boxes_from_depth(depth, intrinsics), key=lambda b: b.center[0])
            except ValueError:
                self._depth_key, self._boxes = None, []  # try again on the next frame
                raise
        boxes = self._boxes
        est = self._pool.update(stamp, foa, sample_rate)
        if est is None:
            return Estimate(boxes, None, 0.0, -1, "", 0.0)
        direction = np.asarray(est.direction, dtype=float)
        if not boxes:
            return Estimate(boxes, direction, float(est.confidence), -1, "", 0.0)
        match = self._matching.match_speaker(direction, boxes)
        return Estimate(boxes, direction, float(est.confidence), int(match.index), match.label,
                        float(est.confidence * match.confidence))


class JaegerEstimator:
    """The fine-tuned JAEGER model: grounding (task C), then DoA (A/B) and matching (D/E)."""

    name = "jaeger"

    def __init__(self, checkpoint: str) -> None:
        try:
            from jaeger_ros.model import predictor
        except ImportError as err:
            raise RuntimeError(f"method 'jaeger' needs jaeger_ros.model (torch, transformers), which is not "
                               f"importable ({err}); use method 'classical' or install the model's requirements") from err
        self._model = predictor.JaegerPredictor.from_pretrained(checkpoint or "default")

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, foa: np.ndarray | None,
                 sample_rate: int, target: str, stamp: float) -> Estimate:
        grounding = self._model.predict(rgb, depth, intrinsics, None, sample_rate, "C")
        boxes = sorted(grounding.boxes, key=lambda b: b.center[0])
        if foa is None:
            return Estimate(boxes, None, 0.0, -1, "", 0.0)
        voice = target or None
        doa, match = self._model.predict_batch([
            dict(rgb=None, depth=None, intrinsics=None, foa=foa, sample_rate=sample_rate, task="B" if voice else "A",
                 target=voice),
            dict(rgb=rgb, depth=depth, intrinsics=intrinsics, foa=foa, sample_rate=sample_rate,
                 task="E" if voice else "D", target=voice, num_candidates=len(boxes) or None)])
        direction = direction_from_azel(doa.azimuth_deg, doa.elevation_deg) if doa.valid else None
        if not (match.valid and match.match_index is not None and 0 <= match.match_index < len(boxes)):
            return Estimate(boxes, direction, doa.confidence if doa.valid else 0.0, -1, "", 0.0)
        return Estimate(boxes, direction, doa.confidence if doa.valid else 0.0, match.match_index,
                        str(match.match_label), match.confidence)


def make_estimator(method: str, checkpoint: str) -> ClassicalEstimator | JaegerEstimator:
    if method == "classical":
        return ClassicalEstimator()
    if method == "jaeger":
        return JaegerEstimator(checkpoint)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _color(r: float, g: float, b: float, a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=r, g=g, b=b, a=a)


def markers_for(est: Estimate, header: Any, lifetime_s: float, arrow_length_m: float = 1.5) -> MarkerArray:
    """Box outlines (matched one highlighted), a DoA arrow from the camera and text labels, in
    the optical frame of `header`. Ids are stable (box k is always id k in its namespace) and
    every marker has a lifetime, so RViz drops boxes that are no longer detected."""
    lifetime = rc.seconds_to_stamp(lifetime_s)
    life = type(Marker().lifetime)(sec=lifetime.sec, nanosec=lifetime.nanosec)
    out = MarkerArray()
    for k, box in enumerate(est.boxes):
        matched = k == est.index
        outline = Marker(header=header, ns="jaeger_boxes", id=k, type=Marker.LINE_LIST, action=Marker.ADD,
                         lifetime=life, color=_color(1.0, 0.2, 0.1) if matched else _color(0.2, 0.9, 0.3, 0.8))
        outline.pose.orientation.w = 1.0
        outline.scale.x = 0.03 if matched else 0.012
        corners = camera_to_optical(box.corners())
        outline.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for e in _BOX_EDGES for p in corners[list(e)]]
        out.markers.append(outline)
        text = Marker(header=header, ns="jaeger_labels", id=k, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      lifetime=life, color=_color(1.0, 1.0, 1.0))
        top = camera_to_optical(box.center + np.array([0.0, box.size[1] / 2 + 0.12, 0.0]))
        text.pose.position = Point(x=float(top[0]), y=float(top[1]), z=float(top[2]))
        text.pose.orientation.w = 1.0
        text.scale.z = 0.12
        text.text = f"bbox_{k}" + (f" {est.label} (talking, {est.confidence:.2f})" if matched else "")
        out.markers.append(text)
    if est.direction is not None:
        arrow = Marker(header=header, ns="jaeger_doa", id=0, type=Marker.ARROW, action=Marker.ADD, lifetime=life,
                       color=_color(0.2, 0.5, 1.0))
        arrow.pose.orientation.w = 1.0
        tip = camera_to_optical(est.direction) * arrow_length_m
        arrow.points = [Point(), Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2]))]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.03, 0.06, 0.1
        out.markers.append(arrow)
    return out


class JaegerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("jaeger_node", **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("method", "classical"), ("checkpoint", ""), ("target_voice", ""), ("rate_hz", 10.0),
            ("window_s", 0.5), ("queue_size", 10), ("slop", 0.02), ("stale_after_s", 1.0),
            ("audio_buffer_s", 4.0), ("sample_rate", 16000), ("min_audio_rms", 1e-3),
            ("marker_lifetime_s", 0.5), ("diagnostics_period_s", 1.0),
            ("color_topic", "/camera/color/image_raw"), ("depth_topic", "/camera/depth/image_raw"),
            ("camera_info_topic", "/camera/color/camera_info"), ("audio_topic", "/audio/foa"),
            ("doa_topic", "/jaeger/doa"), ("detections_topic", "/jaeger/detections"),
            ("match_topic", "/jaeger/speaker_match"), ("markers_topic", "/jaeger/markers"),
            ("diagnostics_topic", "/diagnostics"))}
        if p["target_voice"] not in VOICES:
            raise ValueError(f"target_voice must be one of {VOICES}, got {p['target_voice']!r}")
        if p["rate_hz"] <= 0 or p["window_s"] <= 0 or p["window_s"] >= p["audio_buffer_s"]:
            raise ValueError(f"need rate_hz > 0 and 0 < window_s < audio_buffer_s, got {p['rate_hz']}, "
                             f"{p['window_s']}, {p['audio_buffer_s']}")
        self.p = p
        self.estimator = make_estimator(p["method"], p["checkpoint"])
        self.buffer = FoaRingBuffer(p["sample_rate"], p["audio_buffer_s"])
        self.drops: Counter[str] = Counter()
        self.processed = 0
        self.skipped = 0
        self.latencies: deque[float] = deque(maxlen=200)
        self._done_stamps: deque[float] = deque(maxlen=200)
        # frames waiting for their audio, oldest first: a late audio chunk delays frames, it
        # does not drop them (a newer frame no longer replaces one still waiting)
        self._pending: deque[tuple[float, Image, Image, CameraInfo]] = deque()
        self._last_stamp = -np.inf  # newest accepted frame

        outputs = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_doa = self.create_publisher(DoaEstimate, p["doa_topic"], outputs)
        self.pub_det = self.create_publisher(BoundingBox3DArray, p["detections_topic"], outputs)
        self.pub_match = self.create_publisher(SpeakerMatch, p["match_topic"], outputs)
        self.pub_markers = self.create_publisher(MarkerArray, p["markers_topic"], outputs)
        self.pub_diag = (self.create_publisher(DiagnosticArray, p["diagnostics_topic"], 10)
                         if DiagnosticArray is not None else None)
        self._subs = subscribe_synchronized(
            self, [(Image, p["color_topic"]), (Image, p["depth_topic"]), (CameraInfo, p["camera_info_topic"])],
            qos_profile_sensor_data, p["queue_size"], p["slop"], self._on_frame)
        audio_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._audio_sub = self.create_subscription(FoaAudio, p["audio_topic"], self._on_audio, audio_qos)
        self._timer = self.create_timer(0.5 / p["rate_hz"], self._try_process)
        self._diag_timer = self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.get_logger().info(f"jaeger_node: method {p['method']}, target '{p['target_voice']}', "
                               f"{p['rate_hz']} Hz, window {p['window_s']} s")

    # --- input ----------------------------------------------------------------------------
    def _drop(self, reason: str, detail: str) -> None:
        self.drops[reason] += 1
        self.get_logger().warning(f"dropped input ({reason}): {detail}", throttle_duration_sec=2.0)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_audio(self, msg: FoaAudio) -> None:
        try:
            samples, rate = rc.foa_from_msg(msg)
            if rate != self.p["sample_rate"]:
                raise ValueError(f"sample rate {rate} Hz, expected {self.p['sample_rate']} Hz")
        except ValueError as err:
            self._drop("audio", str(err))
            return
        self.buffer.push(rc.stamp_to_seconds(msg.header.stamp), samples)
        self._try_process()

    def _on_frame(self, rgb: Image, depth: Image, info: CameraInfo) -> None:
        stamp = rc.stamp_to_seconds(rgb.header.stamp)
        if self._now() - stamp > self.p["stale_after_s"]:
            self._drop("stale", f"frame stamped {self._now() - stamp:.2f} s ago")
            return
        if stamp - self._last_stamp < 0.9 / self.p["rate_hz"]:
            self.skipped += 1  # above rate_hz: not an error
            return
        self._last_stamp = stamp
        self._pending.append((stamp, rgb, depth, info))
        self._try_process()

    # --- processing -----------------------------------------------------------------------
    def _try_process(self) -> None:
        while self._pending:
            stamp = self._pending[0][0]
            first = self.buffer.start_time
            if first is not None and stamp - self.p["window_s"] < first - 1.0 / self.p["sample_rate"]:
                self._pending.popleft()
                self.skipped += 1  # its window begins before the audio stream did (start-up): not an error
                continue
            window = self.buffer.window(stamp, self.p["window_s"])
            if window is None:
                if self._now() - stamp <= self.p["stale_after_s"]:
                    return  # its audio has not all arrived yet
                self._pending.popleft()
                self._drop("no_audio", f"no audio covering [{stamp - self.p['window_s']:.3f}, {stamp:.3f}] "
                                       f"(buffer holds {self.buffer.start_time} .. {self.buffer.end_time})")
                continue
            _, rgb_msg, depth_msg, info_msg = self._pending.popleft()
            self._process_frame(stamp, rgb_msg, depth_msg, info_msg, window)

    def _process_frame(self, stamp: float, rgb_msg: Image, depth_msg: Image, info_msg: CameraInfo,
                       window: np.ndarray) -> None:
        try:
            rgb = rc.rgb_from_image(rgb_msg)
            depth = rc.depth_from_image(depth_msg)
            intr = rc.camera_info_to_intrinsics(info_msg)
            if rgb.shape[:2] != depth.shape or depth.shape != (intr.height, intr.width):
                raise ValueError(f"sizes differ: rgb {rgb.shape[:2]}, depth {depth.shape}, "
                                 f"camera_info {intr.height}x{intr.width}")
            if not np.any(depth > 0):
                raise ValueError("depth image has no valid pixel")
        except ValueError as err:
            self._drop("frame", str(err))
            return
        self._process(stamp, rgb_msg.header, rgb, depth, intr, window)

    def _process(self, stamp: float, header: Any, rgb: np.ndarray, depth: np.ndarray, intr: Intrinsics,
                 window: np.ndarray) -> None:
        target = self.p["target_voice"]
        # silence (W below min_audio_rms): boxes only, no direction and no talker
        audible = float(np.sqrt(np.mean(window[0].astype(float) ** 2))) >= self.p["min_audio_rms"]
        try:
            est = self.estimator(rgb, depth, intr, window if audible else None, self.p["sample_rate"], target,
                                 stamp)
        except Exception as err:  # keep running on any estimator failure; it is counted and logged
            self._drop("estimator", f"{type(err).__name__}: {err}")
            return
        header = rc.make_header(header.stamp, header.frame_id)
        boxes = [rc.box_to_msg(b, i) for i, b in enumerate(est.boxes)]
        direction = est.direction if est.direction is not None else np.array([0.0, 0.0, -1.0])
        doa = rc.doa_to_msg(direction, est.doa_confidence if est.direction is not None else 0.0, header, target)
        match = SpeakerMatch(header=header, target=target, index=est.index, label=est.label,
                             matched_box=boxes[est.index] if est.index >= 0 else BoundingBox3D(),
                             candidates=boxes, doa=doa, confidence=est.confidence, method=self.estimator.name)
        self.pub_det.publish(BoundingBox3DArray(header=header, boxes=boxes))
        self.pub_doa.publish(doa)
        self.pub_match.publish(match)
        self.pub_markers.publish(markers_for(est, header, self.p["marker_lifetime_s"]))
        self.processed += 1
        self.latencies.append(self._now() - stamp)
        self._done_stamps.append(time.monotonic())

    # --- diagnostics ----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self.pub_diag is None:
            return
        recent = [t for t in self._done_stamps if time.monotonic() - t <= 5.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        lat = np.array(self.latencies) * 1000.0
        level, message = DiagnosticStatus.OK, "running"
        if not recent:
            level, message = DiagnosticStatus.WARN, "no output in the last 5 s (waiting for synchronised input)"
        elif rate < 0.5 * self.p["rate_hz"]:
            level, message = DiagnosticStatus.WARN, f"output rate {rate:.1f} Hz below half of rate_hz"
        values = {"method": self.estimator.name, "target_voice": self.p["target_voice"] or "(single)",
                  "processed": self.processed, "skipped": self.skipped, "rate_hz": f"{rate:.2f}",
                  "latency_p50_ms": f"{np.percentile(lat, 50):.1f}" if lat.size else "n/a",
                  "latency_p95_ms": f"{np.percentile(lat, 95):.1f}" if lat.size else "n/a",
                  "audio_gaps": self.buffer.stats.gaps, "audio_overlaps": self.buffer.stats.overlaps,
                  **{f"dropped_{k}": v for k, v in sorted(self.drops.items())}}
        status = DiagnosticStatus(level=level, name="jaeger_node: pipeline", message=message, hardware_id="jaeger_ros",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.pub_diag.publish(DiagnosticArray(header=rc.make_header(self._now(), ""), status=[status]))


def main(args: list[str] | None = None) -> None:
    run_node(JaegerNode, args)


if __name__ == "__main__":
    main()
