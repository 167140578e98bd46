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

Time is checked against the node clock: input stamped more than `max_future_s` ahead of it
(a driver with a wrong clock) is dropped before it can become the head of a stream, and audio
too old for the ring buffer is dropped; a stream that jumps (sensor restart, clock jump,
replayed bag) restarts the audio buffer or the frame sequence, logged and counted. Chunk
stamps within `audio_jitter_ms` of contiguous are contiguous; gaps are zero-filled but marked,
left out of onset detection and scale the confidence by the share of real audio in the window.
Every drop reason is logged on its own throttle, counted on /diagnostics, and named there when
output stops.

Threads: subscriptions and timers run on the executor; decoding, estimation and publishing
run on one worker thread, so audio keeps arriving while a frame is processed. The worker takes
the newest frame whose audio is complete; older ones still waiting are dropped ("superseded", normal
load shedding: logged at INFO). Images above `max_pixels` are refused from their header as they
arrive, before the synchroniser pairs them and before any conversion; an image whose stamp repeats
the previous one on its topic is dropped as a "duplicate" (not left to the synchroniser).

Lifecycle (a managed node): parameters are declared at construction; configure validates them
and builds the estimator (a bad parameter or checkpoint: one log line, the node stays
unconfigured); activate subscribes and starts the timers; deactivate stops them; cleanup and
shutdown release the estimator and the buffers. With `autostart` (default) the node takes itself
to active at start-up, so no lifecycle manager is needed. While active, missing input (no
synchronised frame set or no audio for `no_input_warn_s`) is warned about, naming the topics.

Parameters marked LIVE in PARAMETERS change while the node runs; the others are read at
configure and are rejected while the node is configured ("deactivate + cleanup + configure").
"""
from __future__ import annotations

import math
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any, Callable, NamedTuple

import numpy as np
from geometry_msgs.msg import Point
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from jaeger_ros.ros import convert as rc
from jaeger_ros.core.audio_buffer import FoaRingBuffer
from jaeger_ros.core.foa import ACN
from jaeger_ros.core.geometry import BODY_FROM_CAMERA, OPTICAL_FROM_CAMERA, Intrinsics, camera_to_optical
from jaeger_ros.core.msg_arrays import check_frame_layout
from jaeger_ros.msg import BoundingBox3D, BoundingBox3DArray, DoaEstimate, FoaAudio, SpeakerMatch
from jaeger_ros.core.sync import ApproximateTimeMatcher, subscribe_synchronized
from jaeger_ros.ros.params import Spec, check, descriptor
from jaeger_ros.ros.runner import run_node
from jaeger_ros.ros.tracker_node import TfListener
from jaeger_ros.tracker.transforms import TransformBuffer, TransformError
from jaeger_ros.pipeline.frame import (CANDIDATES, DOA_METHODS, METHODS, ClassicalEstimator, Estimate, JaegerEstimator,
                                       labelled, make_estimator)

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # pragma: no cover - ros-diagnostic-msgs is in requirements
    DiagnosticArray = None

VOICES = ("", "male", "female")
STREAM_JUMP_S = 1.0
"""A stream stamp going back by more than this is a new stream (sensor restart, clock jump)."""
DROP_LOG_PERIOD_S = 2.0
"""Each drop reason is logged at most once per this period (with the count since)."""
WORKER_JOIN_S = 30.0
SHEDDING = ("superseded",)
"""Drop reasons that are normal load shedding (the newest frame wins), logged at INFO, not WARN."""
STARTUP_GRACE_S = 10.0
"""Before the first synchronised frame set, missing input is logged as a warning only after this
long (a simulator or camera driver takes seconds to deliver its first frame); /diagnostics says
it from no_input_warn_s on."""
_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def _type_name(msg_type: type) -> str:
    """`package/msg/Name` of a message class, as `ros2 topic info` shows it."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def _color(r: float, g: float, b: float, a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=r, g=g, b=b, a=a)


CATEGORY_COLORS = {"loudspeaker": (0.2, 0.9, 0.3, 0.8), "person": (0.1, 0.3, 1.0, 0.8), "unknown": (0.7, 0.7, 0.7, 0.8)}
"""Box outline colour per category (RGBA); the matched box is red whatever its category."""
MATCHED_COLOR = (1.0, 0.2, 0.1, 1.0)
LEGEND = "boxes: green loudspeaker | blue person | grey unknown (depth blob) | red talking"


def markers_for(est: Estimate, header: Any, lifetime_s: float, arrow_length_m: float = 1.5) -> MarkerArray:
    """Box outlines coloured by category (CATEGORY_COLORS; the matched one red and thicker), a DoA
    arrow from the camera and text labels naming the category, in the optical frame of `header`. Ids are stable (box k is always id k in its namespace) and
    every marker has a lifetime, so RViz drops boxes that are no longer detected."""
    lifetime = rc.seconds_to_stamp(lifetime_s)
    life = type(Marker().lifetime)(sec=lifetime.sec, nanosec=lifetime.nanosec)
    out = MarkerArray()
    for k, (box, category) in enumerate(zip(est.boxes, est.categories)):
        matched = k == est.index
        outline = Marker(header=header, ns="jaeger_boxes", id=k, type=Marker.LINE_LIST, action=Marker.ADD,
                         lifetime=life, color=_color(*(MATCHED_COLOR if matched else CATEGORY_COLORS[category])))
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
        text.text = f"bbox_{k} {category}" + (f" {est.label} (talking, {est.confidence:.2f})" if matched else "")
        out.markers.append(text)
    if est.boxes:   # RViz has no legend widget: one line of text above the view's top left says the colours
        legend = Marker(header=header, ns="jaeger_legend", id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                        lifetime=life, color=_color(1.0, 1.0, 1.0), text=LEGEND)
        legend.pose.position = Point(x=-1.2, y=-1.0, z=3.0)
        legend.pose.orientation.w = 1.0
        legend.scale.z = 0.1
        out.markers.append(legend)
    if est.direction is not None:
        arrow = Marker(header=header, ns="jaeger_doa", id=0, type=Marker.ARROW, action=Marker.ADD, lifetime=life,
                       color=_color(0.2, 0.5, 1.0))
        arrow.pose.orientation.w = 1.0
        tip = camera_to_optical(est.direction) * arrow_length_m
        arrow.points = [Point(), Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2]))]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.03, 0.06, 0.1
        out.markers.append(arrow)
    return out


class Param(NamedTuple):
    """One parameter of the node: LIVE ones change while it runs, the others at configure."""

    name: str
    default: Any
    description: str
    live: bool


PARAMETERS: tuple[Param, ...] = (
    Param("method", "classical", "estimator: classical | jaeger", False),
    Param("checkpoint", "", "method jaeger: model folder ('' = the packaged tiny checkpoint)", False),
    Param("target_voice", "", "voice to locate: '' (single source) | male | female", True),
    Param("rate_hz", 10.0, "most outputs per second, 0 < rate_hz <= 200", True),
    Param("window_s", 0.5, "seconds of audio ending at the image stamp, 0 < window_s < audio_buffer_s", True),
    Param("doa_memory_s", 5.0, "method classical: s of onset votes pooled into the DoA (a new talker takes "
          "over within about this), 0..60", False),
    Param("doa", "robust", "method classical: sound-only DoA pool: robust (noise-tracked direct-path votes) | "
          "onset (the previous onset pool)", False),
    Param("candidates", "classified", "method classical: candidate boxes: depth (every loudspeaker-sized depth blob, "
          "category unknown) | classified (blobs kept by the loudspeaker crop classifier; depth when its checkpoint "
          "is missing) | detectors (people + classified loudspeakers; 0.2-0.7 s per new scene in a background thread, "
          "the boxes follow a few frames later)", False),
    Param("vad", True, "method classical: only DoA votes inside speech (silero VAD) count; no direction while "
          "nobody speaks (~4 ms more per 0.1 s step: 7.5 -> 11.6 ms mean, benchmarks/bench_voice.py)", False),
    Param("dereverb", True, "method classical: the DoA votes hear the audio with its late reverberation removed "
          "(multichannel WPE, classical/dereverb.py, filter refitted each second in a background thread; ~3 ms more "
          "a frame, p95 latency +10-30 ms live, match about +1 point pooled; false for the lowest latency; see the README)",
          False),
    Param("voice_id", True, "method classical: give each voice heard an identity (Resemblyzer embeddings, gender "
          "from pitch), published as SpeakerMatch.voice_id/voice_gender (one embedding per turn of speech)", False),
    Param("queue_size", 10, "approximate-time sync queue per image input, 1..1000", False),
    Param("slop", 0.02, "s, largest stamp spread of a synchronised RGB/depth/info set, 0..1", False),
    Param("stale_after_s", 1.0, "s, drop frames older than this (or whose audio never came), 0..60", True),
    Param("max_future_s", 0.5, "s, drop input stamped further than this ahead of the node clock, 0..3600", True),
    Param("audio_jitter_ms", 2.0, "ms, FOA chunk-stamp jitter taken as contiguous (larger: a gap), 0..50", False),
    Param("max_pixels", 4_000_000, "drop colour/depth images with more pixels than this, 1..100000000", True),
    Param("audio_buffer_s", 4.0, "s of FOA kept in the ring buffer, 0..60", False),
    Param("sample_rate", 16000, "Hz, expected FOA sample rate (others are dropped), 1000..192000", False),
    Param("min_audio_rms", 1e-3, "below this W-channel RMS a window counts as silence, 0..1", True),
    Param("marker_lifetime_s", 0.5, "s, RViz marker lifetime, 0..60", True),
    Param("diagnostics_period_s", 1.0, "s between /diagnostics messages (and input checks), 0.05..60", False),
    Param("no_input_warn_s", 3.0, "s without a synchronised frame set or audio before a warning, 0..3600", True),
    Param("autostart", True, "configure and activate at start-up (false: wait for `ros2 lifecycle set`)", False),
    Param("color_topic", "camera/color/image_raw", "colour image input (rgb8/bgr8)", False),
    Param("depth_topic", "camera/depth/image_raw", "depth image input (32FC1 m or 16UC1 mm), aligned to colour",
          False),
    Param("camera_info_topic", "camera/color/camera_info", "colour camera_info input", False),
    Param("audio_topic", "audio/foa", "jaeger_ros/FoaAudio input", False),
    Param("doa_topic", "jaeger/doa", "DoaEstimate output", False),
    Param("detections_topic", "jaeger/detections", "BoundingBox3DArray output", False),
    Param("match_topic", "jaeger/speaker_match", "SpeakerMatch output", False),
    Param("markers_topic", "jaeger/markers", "MarkerArray output", False),
    Param("diagnostics_topic", "/diagnostics", "DiagnosticArray output (absolute: one /diagnostics per robot)", False),
)
SPECS = {p.name: p for p in PARAMETERS}
AT_START = ("autostart", "diagnostics_topic", "diagnostics_period_s")
"""Read once at construction: /diagnostics is published in every lifecycle state."""
# float parameters: (low, high, low included)
FLOAT_LIMITS = {"rate_hz": (0.0, 200.0, False), "window_s": (0.0, 10.0, False), "slop": (0.0, 1.0, True),
                "doa_memory_s": (0.0, 60.0, False), "stale_after_s": (0.0, 60.0, False), "audio_buffer_s": (0.0, 60.0, False),
                "max_future_s": (0.0, 3600.0, True), "audio_jitter_ms": (0.0, 50.0, True),
                "min_audio_rms": (0.0, 1.0, True), "marker_lifetime_s": (0.0, 60.0, False),
                "diagnostics_period_s": (0.05, 60.0, True), "no_input_warn_s": (0.0, 3600.0, False)}
INT_LIMITS = {"queue_size": (1, 1000), "sample_rate": (1000, 192000), "max_pixels": (1, 100_000_000)}
CHOICES = {"method": METHODS, "target_voice": VOICES, "doa": DOA_METHODS, "candidates": CANDIDATES}


def spec_of(param: Param) -> Spec:
    """The parameter as a params.Spec: its range (FLOAT_LIMITS, INT_LIMITS) and choices, so the
    node checks values with the same params.check as every other node."""
    low, high, closed = FLOAT_LIMITS.get(param.name) or (*INT_LIMITS.get(param.name, (None, None)), True)
    return Spec(param.name, param.default, param.description, low, high, tuple(CHOICES.get(param.name, ())),
                live=param.live, low_open=not closed)


def descriptor_of(spec: Param) -> ParameterDescriptor:
    """Static type, range and description; read_only only for what is read at construction
    (configure-time parameters change while unconfigured and are refused, with the reason, while
    configured)."""
    when = " (live)" if spec.live else " (read at configure)"
    full = spec_of(spec)
    return descriptor(full._replace(description=spec.description + ("" if spec.name in AT_START else when)),
                      read_only=spec.name in AT_START)


def check_parameter(name: str, value: Any) -> Any:
    """`value` of parameter `name`, normalised (an integer where a float is meant becomes a
    float); ValueError naming the parameter and the reason otherwise."""
    return check(spec_of(SPECS[name]), value)


def check_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """Every parameter checked and normalised, plus the checks that involve two of them."""
    out = {name: check_parameter(name, value) for name, value in values.items()}
    if out["window_s"] >= out["audio_buffer_s"]:
        raise ValueError(f"window_s = {out['window_s']:g} must be below audio_buffer_s = {out['audio_buffer_s']:g}")
    return out


def image_size(raw: bytes) -> tuple[int, int, float] | None:
    """(width, height, stamp in s) read from a serialized sensor_msgs/Image (CDR, either byte
    order: the header's stamp and frame_id, then height and width), or None when it is not plain CDR.
    Why: a 4096x4096 image takes rclpy ~0.3 s to turn into a Python message; its size is in the
    first bytes, so an oversized one is refused before that."""
    if len(raw) < 16 or raw[0] != 0 or raw[1] not in (0, 1):
        return None
    order = "<" if raw[1] == 1 else ">"
    body = memoryview(raw)[4:]  # CDR alignment counts from here
    (length,) = struct.unpack_from(order + "I", body, 8)  # frame_id, after sec and nanosec
    at = 12 + length
    at += -at % 4
    if at + 8 > len(body):
        return None
    height, width = struct.unpack_from(order + "II", body, at)
    sec, nanosec = struct.unpack_from(order + "iI", body, 0)
    return width, height, sec + nanosec * 1e-9


class _InputTap:
    """Stands in for the node while the synchroniser subscribes (message_filters or not): it
    notes when each topic last delivered, for the no-input warning, passes on only what `admit`
    accepts (so no synchroniser sees a message stamped ahead of the clock), and keeps every
    subscription it made, so deactivation can remove them. Images come serialized: `oversized`
    sees their size first, and only the accepted ones are turned into messages."""

    def __init__(self, node: LifecycleNode, admit: Callable[[str, Any], bool],
                 oversized: Callable[[str, int, int, float], bool]) -> None:
        self._node, self._admit, self._oversized = node, admit, oversized
        self.arrivals: dict[str, float | None] = {}
        self.subscriptions: list[Any] = []

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None], qos_profile: Any,
                            **kwargs: Any) -> Any:
        name = self._node.resolve_topic_name(topic)  # as the graph shows it (namespace applied)
        self.arrivals[name] = None

        def tapped(msg: Any) -> None:
            self.arrivals[name] = time.monotonic()
            if isinstance(msg, bytes):
                size = image_size(msg)
                if size is not None and self._oversized(topic, *size):
                    return
                msg = deserialize_message(msg, msg_type)
            if self._admit(topic, msg):
                callback(msg)

        if msg_type is Image:
            kwargs["raw"] = True
        sub = self._node.create_subscription(msg_type, topic, tapped, qos_profile, **kwargs)
        self.subscriptions.append(sub)
        return sub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


class _Owned:
    """Creates subscriptions on the node and keeps them, so a transition can release them (the
    TF listener subscribes through it)."""

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node
        self.subscriptions: list[Any] = []

    def create_subscription(self, *args: Any, **kwargs: Any) -> Any:
        sub = self._node.create_subscription(*args, **kwargs)
        self.subscriptions.append(sub)
        return sub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


BODY_FROM_OPTICAL = BODY_FROM_CAMERA @ OPTICAL_FROM_CAMERA.T
"""REP-103 axes (X forward, Y left, Z up: the ambisonic axes) of a camera <- its optical frame."""


def rotate_foa(window: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(4, N) ACN FOA with its dipoles (X, Y, Z) turned by `rotation` (W is omnidirectional)."""
    out = np.array(window, dtype=np.float32, copy=True)
    xyz = [ACN.index("X"), ACN.index("Y"), ACN.index("Z")]
    out[xyz] = rotation @ window[xyz]
    return out


class JaegerNode(LifecycleNode):
    """The managed estimator node (see the module docstring for topics and lifecycle)."""

    def __init__(self, **kwargs: Any) -> None:
        # state first: rclpy destroys a half-built node (interrupted start-up) at shutdown
        self._phase = "unconfigured"
        self.p: dict[str, Any] = {}
        self.estimator: ClassicalEstimator | JaegerEstimator | None = None
        self.buffer: FoaRingBuffer | None = None
        self._outputs: list[Any] = []
        self._inputs: _InputTap | None = None
        self._tf_owner: _Owned | None = None
        self._tf: TfListener | None = None
        self._audio_frame = ""  # frame_id of the newest FOA chunk (the microphone's)
        self._sync: list[Any] = []
        self._tickers: list[Any] = []
        self._process_timer: Any = None
        self._active_since = 0.0
        self._last_set: float | None = None
        self._drop_lock = threading.Lock()
        self._work = threading.Condition()
        self._ready: tuple[Any, ...] | None = None  # the frame handed to the worker (guarded by _work)
        self._worker: threading.Thread | None = None
        self._running = False
        self._failure: str | None = None  # why the last transition failed (for /diagnostics)
        self.pub_diag: Any = None
        self._diag_timer: Any = None
        self._reset_counters()
        super().__init__("jaeger_node", **kwargs)
        # statically typed, described, with ranges (`ros2 param describe`); a start-up value is
        # checked here (one line, exit 1), typed first: `rate_hz:=10` is the double 10.0
        overrides = self._parameter_overrides  # rclpy keeps them here until each is declared
        for spec in PARAMETERS:
            if spec.name in overrides:
                overrides[spec.name] = Parameter(spec.name, value=check_parameter(spec.name, overrides[spec.name].value))
            self.declare_parameter(spec.name, spec.default, descriptor_of(spec))
        self.add_on_set_parameters_callback(self._check_change)
        self.add_post_set_parameters_callback(self._apply_change)
        # /diagnostics from construction (a plain publisher, not a lifecycle one): a configure that
        # fails is reported there, not only in one log line
        if DiagnosticArray is not None:
            self.pub_diag = self.create_publisher(DiagnosticArray, self._static("diagnostics_topic"), 10)
        self._diag_timer = self.create_timer(self._static("diagnostics_period_s"), self._publish_diagnostics)
        if self.get_parameter("autostart").value and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    @property
    def status_name(self) -> str:
        """The /diagnostics status name: the node's full name (one /diagnostics for all robots)."""
        return f"{self.get_fully_qualified_name().lstrip('/')}: pipeline"

    def _static(self, name: str) -> Any:
        """A parameter read once at construction (checked: a bad one stops the start-up)."""
        return check_parameter(name, self.get_parameter(name).value)

    def _reset_counters(self) -> None:
        self.drops: Counter[str] = Counter()
        self.processed = 0
        self.skipped = 0
        self.latencies: deque[float] = deque(maxlen=200)
        self._done_stamps: deque[float] = deque(maxlen=200)
        # frames waiting for their audio, oldest first: a late audio chunk delays frames, it
        # does not drop them (a newer frame no longer replaces one still waiting)
        self._pending: deque[tuple[float, Image, Image, CameraInfo]] = deque()
        self._last_stamp = -np.inf  # newest accepted frame
        self.stream_resets = 0  # frame stream restarts (stamps jumped back)
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged, drops since)
        self._last_drop: tuple[str, str] | None = None
        self._sync_dropped = 0
        self._audio_restarts = 0
        self._last_in: dict[str, int] = {}  # input topic -> stamp (ns) of its last admitted image
        self._refused: deque[float] = deque(maxlen=16)  # stamps of frame sets refused as oversized

    # --- parameters -----------------------------------------------------------------------
    def parameter_values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}

    def _check_change(self, params: list[Parameter]) -> SetParametersResult:
        """Reject bad values with the reason, and configure-time parameters while configured."""
        values = self.parameter_values()
        configured = self._phase in ("inactive", "active")
        try:
            for param in params:
                if param.name not in SPECS:
                    continue
                if configured and not SPECS[param.name].live and param.value != values[param.name]:
                    raise ValueError(f"{param.name} is read at configure: deactivate + cleanup + configure to change it")
                values[param.name] = check_parameter(param.name, param.value)
            if configured:
                check_parameters(values)
        except ValueError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_change(self, params: list[Parameter]) -> None:
        """Live parameters take effect at once while configured (the others wait for configure)."""
        if self._phase not in ("inactive", "active"):
            return
        self.p = check_parameters(self.parameter_values())
        if self._process_timer is not None:
            self._process_timer.timer_period_ns = int(0.5e9 / self.p["rate_hz"])
        self.get_logger().info("parameters applied: " + ", ".join(f"{p.name}={self.p[p.name]!r}" for p in params
                                                                  if p.name in SPECS))

    # --- lifecycle ------------------------------------------------------------------------
    # rclpy turns an exception raised in a transition callback into ERROR without a word, and
    # leaves whatever the callback had created; so every callback runs through _guarded, which
    # logs the cause once, releases everything and leaves the node unconfigured.
    def _transition(self, before: LifecycleState, after: str, detail: str = "") -> None:
        self._phase = after
        self.get_logger().info(f"lifecycle: {before.label} -> {after}" + (f" ({detail})" if detail else ""))

    def _fail(self, transition: str, why: str) -> None:
        """Release everything, reset the phase, say why in ONE error line and on /diagnostics."""
        why = " ".join(why.split())
        try:
            self._release()
        except Exception as err:  # what could not be released is named, the node still resets
            why += f" (and releasing failed: {type(err).__name__}: {err})"
        self._phase, self._failure = "unconfigured", f"{transition} failed: {why}"
        self.get_logger().error(f"lifecycle: {transition} failed, released everything, now unconfigured: {why}")

    def _guarded(self, transition: str, body: Callable[[LifecycleState], TransitionCallbackReturn],
                 state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return body(state)
        except Exception as err:
            self._fail(transition, f"{type(err).__name__}: {err}")
            # configure: FAILURE keeps the machine in unconfigured; the others: ERROR, then
            # on_error (nothing left to release) takes it to unconfigured
            return TransitionCallbackReturn.FAILURE if transition == "configure" else TransitionCallbackReturn.ERROR

    def _configure_failed(self, why: str) -> TransitionCallbackReturn:
        self._fail("configure", why)
        return TransitionCallbackReturn.FAILURE

    def topic_conflicts(self, p: dict[str, Any]) -> list[str]:
        """Pairs of topic parameters that resolve to the same name with different message types
        (DDS cannot carry both in one node: creating the second entity fails)."""
        types = {"color_topic": Image, "depth_topic": Image, "camera_info_topic": CameraInfo, "audio_topic": FoaAudio,
                 "doa_topic": DoaEstimate, "detections_topic": BoundingBox3DArray, "match_topic": SpeakerMatch,
                 "markers_topic": MarkerArray, "diagnostics_topic": DiagnosticArray}
        seen: dict[str, tuple[str, type]] = {}
        out = []
        for name, msg_type in types.items():
            if msg_type is None:
                continue
            topic = self.resolve_topic_name(p[name])
            if topic in seen and seen[topic][1] is not msg_type:
                other, other_type = seen[topic]
                out.append(f"{name} {topic!r} ({_type_name(msg_type)}) is also {other} ({_type_name(other_type)})")
            seen.setdefault(topic, (name, msg_type))
        return out

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._guarded("configure", self._configure, state)

    def _configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            p = check_parameters(self.parameter_values())
        except ValueError as err:
            return self._configure_failed(f"parameter {err}")
        conflicts = self.topic_conflicts(p)
        if conflicts:
            return self._configure_failed("topic used with two message types: " + "; ".join(conflicts))
        if p["method"] == "jaeger":  # loading takes seconds: say what the node is doing
            self.get_logger().info(f"lifecycle: configuring (loading checkpoint {p['checkpoint'] or 'default'!r})")
        try:
            # background: the person detectors run beside the 10 Hz frame path (their boxes a few frames later)
            estimator = make_estimator(p["method"], p["checkpoint"], p["doa_memory_s"], p["doa"], p["candidates"],
                                       p["vad"], p["voice_id"], background=True, dereverb=p["dereverb"])
        except Exception as err:  # whatever loading raises (missing file, bad weights, no torch): stay up
            where = f"checkpoint {p['checkpoint'] or 'default'!r}" if p["method"] == "jaeger" else f"method {p['method']}"
            return self._configure_failed(f"{where}: {type(err).__name__}: {err}")
        self.p, self.estimator = p, estimator
        self.buffer = FoaRingBuffer(p["sample_rate"], p["audio_buffer_s"], tolerance_s=p["audio_jitter_ms"] / 1000.0,
                                    restart_s=max(STREAM_JUMP_S, 2 * p["audio_jitter_ms"] / 1000.0))
        self._reset_counters()
        outputs = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for attr, msg_type, name in (("pub_doa", DoaEstimate, "doa_topic"),
                                     ("pub_det", BoundingBox3DArray, "detections_topic"),
                                     ("pub_match", SpeakerMatch, "match_topic"),
                                     ("pub_markers", MarkerArray, "markers_topic")):
            setattr(self, attr, self.create_lifecycle_publisher(msg_type, p[name], outputs))
            self._outputs.append(getattr(self, attr))  # one at a time: a failure releases those made
        self._failure = None
        # the candidates in use: a "classified" without its checkpoint is "depth" (the estimator warned)
        used = f", candidates {estimator.candidates}" if isinstance(estimator, ClassicalEstimator) else ""
        self._transition(state, "inactive", f"method {p['method']}{used}, target '{p['target_voice']}', "
                                            f"{p['rate_hz']:g} Hz, window {p['window_s']:g} s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._guarded("activate", self._activate, state)

    def _activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        p = self.p
        self._inputs = _InputTap(self, self._admit, self._oversized)
        self._sync = subscribe_synchronized(
            self._inputs, [(Image, p["color_topic"]), (Image, p["depth_topic"]), (CameraInfo, p["camera_info_topic"])],
            qos_profile_sensor_data, p["queue_size"], p["slop"], self._on_frame, clock=self._now,
            max_age_s=p["stale_after_s"] + p["slop"])
        self._sync_dropped = 0
        audio_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._inputs.create_subscription(FoaAudio, p["audio_topic"], self._on_audio, audio_qos)
        self._tf_owner = _Owned(self)  # the microphone's mount relative to the camera
        self._tf = TfListener(self._tf_owner, TransformBuffer(cache_s=10.0))
        self._process_timer = self.create_timer(0.5 / p["rate_hz"], self._try_process)
        self._tickers = [self._process_timer]
        self._running = True  # the worker last: nothing above can leave it running
        self._worker = threading.Thread(target=self._work_loop, name="jaeger_node worker", daemon=True)
        self._worker.start()
        self._active_since, self._last_set = time.monotonic(), None
        self._transition(state, "active", "inputs " + ", ".join(self._inputs.arrivals))
        return result

    def _stop_processing(self) -> None:
        with self._work:
            self._running, self._ready = False, None
            self._work.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=WORKER_JOIN_S)  # lets the frame in the estimator finish
        self._worker = None
        for timer in self._tickers:
            self.destroy_timer(timer)
        for owner in (self._inputs, self._tf_owner):
            for sub in owner.subscriptions if owner is not None else ():
                self.destroy_subscription(sub)
        self._tickers, self._process_timer, self._inputs, self._sync = [], None, None, []
        self._tf_owner, self._tf, self._audio_frame = None, None, ""
        self._pending.clear()

    def _release(self) -> None:
        """Stop processing and let go of the estimator (model weights), buffers and publishers."""
        self._stop_processing()
        for pub in self._outputs:
            self.destroy_lifecycle_publisher(pub)
        self._outputs = []
        self.estimator, self.buffer = None, None

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body(state: LifecycleState) -> TransitionCallbackReturn:
            self._stop_processing()
            self._transition(state, "inactive")
            return super(JaegerNode, self).on_deactivate(state)
        return self._guarded("deactivate", body, state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body(state: LifecycleState) -> TransitionCallbackReturn:
            self._release()
            self._transition(state, "unconfigured")
            return super(JaegerNode, self).on_cleanup(state)
        return self._guarded("cleanup", body, state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body(state: LifecycleState) -> TransitionCallbackReturn:
            self._release()
            if self._diag_timer is not None:
                self.destroy_timer(self._diag_timer)
                self._diag_timer = None
            self._transition(state, "finalized")
            return super(JaegerNode, self).on_shutdown(state)
        return self._guarded("shutdown", body, state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """After a transition returned ERROR: _fail has released everything and logged why."""
        self._release()
        self._phase = "unconfigured"
        self.get_logger().info(f"lifecycle: error processing after {state.label} -> unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    # --- input ----------------------------------------------------------------------------
    def _drop(self, reason: str, detail: str, count: int = 1) -> None:
        """Count a drop and log it, each reason on its own throttle (one fault cannot hide
        another), with the number of drops of that reason since its last line."""
        now = time.monotonic()
        with self._drop_lock:
            self.drops[reason] += count
            self._last_drop = (reason, detail)
            last, since = self._logged.get(reason, (-np.inf, 0))
            since += count
            if now - last < DROP_LOG_PERIOD_S:
                self._logged[reason] = (last, since)
                return
            self._logged[reason] = (now, 0)
        more = f" ({since - 1} more since the last report)" if since > 1 else ""
        if reason in SHEDDING:
            self.get_logger().info(f"dropped input ({reason}): {detail}{more}")
        else:
            self.get_logger().warning(f"dropped input ({reason}): {detail}{more}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _admit(self, topic: str, msg: Any) -> bool:
        """False (dropped, counted) for a message stamped more than max_future_s ahead of the
        clock: accepted, it would become the newest frame or the audio stream's head and hold
        back everything stamped correctly. An audio chunk is judged by its last sample. Images
        older than stale_after_s are dropped here too, each named (the synchroniser would only
        let them expire)."""
        end = rc.stamp_to_seconds(msg.header.stamp)
        audio = isinstance(msg, FoaAudio)
        if audio and msg.sample_rate > 0:
            end += msg.frame_samples / msg.sample_rate
        ahead = end - self._now()
        if ahead > self.p["max_future_s"]:
            self._drop("audio_future" if audio else "future",
                       f"{topic} stamped {ahead:.3f} s ahead of the clock (max_future_s {self.p['max_future_s']:g})")
            return False
        if not audio and -ahead > self.p["stale_after_s"]:
            self._drop("stale", f"{topic} stamped {-ahead:.2f} s ago (stale_after_s {self.p['stale_after_s']:g})")
            return False
        if audio:
            return True
        if isinstance(msg, Image) and self._oversized(topic, msg.width, msg.height, end):
            return False
        if any(abs(end - refused) <= self.p["slop"] / 2 for refused in self._refused):
            self._drop("oversized", f"{topic}: stamped {end:.3f}, part of a frame set whose image was oversized")
            return False
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if self._last_in.get(topic) == stamp:  # the same set sent again (a driver or bag replaying it)
            self._drop("duplicate", f"{topic}: a second message stamped {end:.3f} (a duplicated frame set)")
            return False
        self._last_in[topic] = stamp
        return True

    def _oversized(self, topic: str, width: int, height: int, stamp: float) -> bool:
        """Refuse (count, log) an image above max_pixels from its size alone: never deserialized,
        converted or paired, it never waits in the synchroniser. The rest of its frame set (the
        other image, camera_info: stamped within slop / 2, closer than the next frame of a 30 Hz
        camera) goes too, counted here, not as `unsynchronised`."""
        if width * height <= self.p["max_pixels"]:
            return False
        self._drop("oversized", f"{topic}: {width}x{height} image, {width * height} pixels > max_pixels "
                                f"{self.p['max_pixels']}")
        self._refused.append(stamp)
        matcher = self._sync[-1] if self._sync and isinstance(self._sync[-1], ApproximateTimeMatcher) else None
        for queue in matcher.queues if matcher is not None else ():  # partners that came first
            for queued in [q for q in queue if abs(q - stamp) <= self.p["slop"] / 2]:
                del queue[queued]
                self._drop("oversized", f"stamped {queued:.3f}, part of a frame set whose image was oversized")
        return True

    def _on_audio(self, msg: FoaAudio) -> None:
        try:
            samples, rate = rc.foa_from_msg(msg)
            if rate != self.p["sample_rate"]:
                raise ValueError(f"sample rate {rate} Hz, expected {self.p['sample_rate']} Hz")
        except ValueError as err:
            self._drop("audio", str(err))
            return
        start = rc.stamp_to_seconds(msg.header.stamp)
        age = self._now() - (start + samples.shape[1] / rate)
        if age > self.p["audio_buffer_s"]:  # could never be used; pushed, it would restart the stream
            self._drop("audio_stale", f"FOA chunk ends {age:.3f} s before the clock (audio_buffer_s "
                                      f"{self.p['audio_buffer_s']:g})")
            return
        self.buffer.push(start, samples)
        self._audio_frame = msg.header.frame_id
        stats = self.buffer.stats
        if stats.restarts != self._audio_restarts:
            self._audio_restarts = stats.restarts
            self.get_logger().warning(f"audio stream restarted: chunk stamps jumped {stats.last_jump_s:+.3f} s "
                                      f"(sensor restart or clock jump); the buffer starts again")
        self._try_process()

    def _on_frame(self, rgb: Image, depth: Image, info: CameraInfo) -> None:
        self._last_set = time.monotonic()
        stamp = rc.stamp_to_seconds(rgb.header.stamp)
        if self._now() - stamp > self.p["stale_after_s"]:
            self._drop("stale", f"frame stamped {self._now() - stamp:.2f} s ago")
            return
        try:  # headers only: a malformed set gets its error even if a newer frame supersedes it
            check_frame_layout(rgb, depth, info)
        except ValueError as err:
            self._drop("frame", str(err))
            return
        if stamp < self._last_stamp - STREAM_JUMP_S:
            self.stream_resets += 1
            self.get_logger().warning(f"frame stamps jumped back {self._last_stamp - stamp:.3f} s (camera restart "
                                      f"or clock jump): the frame sequence starts again")
            self._last_stamp = -np.inf
            self._pending.clear()
        if stamp < self._last_stamp:
            self._drop("backwards", f"frame stamped {self._last_stamp - stamp:.3f} s before the previous one")
            return
        if stamp - self._last_stamp < 0.9 / self.p["rate_hz"]:
            self.skipped += 1  # above rate_hz: not an error
            return
        self._last_stamp = stamp
        self._pending.append((stamp, rgb, depth, info))
        self._try_process()

    def _check_sync(self) -> None:
        """Count and log the images the synchroniser let go unmatched (a depth or camera_info
        stamped beyond slop, or missing): otherwise such input vanishes without a trace."""
        matcher = self._sync[-1] if self._sync and isinstance(self._sync[-1], ApproximateTimeMatcher) else None
        if matcher is None:
            return
        matcher.expire(self._now())  # also when no image arrives any more
        total = sum(matcher.dropped)
        if total > self._sync_dropped:
            p = self.p
            per_input = ", ".join(f"{topic} {n}" for topic, n in
                                  zip((p["color_topic"], p["depth_topic"], p["camera_info_topic"]), matcher.dropped))
            self._drop("unsynchronised", f"images found no partner within slop {p['slop']:g} s and were let go "
                                         f"(so far: {per_input})", total - self._sync_dropped)
            self._sync_dropped = total

    # --- processing -----------------------------------------------------------------------
    def _try_process(self) -> None:
        """Hand the newest frame whose audio is complete to the worker (executor thread)."""
        while self._pending:
            stamp = self._pending[0][0]
            first = self.buffer.start_time
            if first is not None and stamp - self.p["window_s"] < first - 1.0 / self.p["sample_rate"]:
                self._pending.popleft()
                self.skipped += 1  # its window begins before the audio stream did (start-up): not an error
                continue
            window = self.buffer.window_with_mask(stamp, self.p["window_s"])
            if window is None:
                if self._now() - stamp <= self.p["stale_after_s"]:
                    return  # its audio has not all arrived yet
                self._pending.popleft()
                self._drop("no_audio", f"no audio covering [{stamp - self.p['window_s']:.3f}, {stamp:.3f}] "
                                       f"(buffer holds {self.buffer.start_time} .. {self.buffer.end_time})")
                continue
            try:
                rotation = self.mic_rotation(self._pending[0][1].header.frame_id, stamp)
            except TransformError as err:
                if self._now() - stamp <= self.p["stale_after_s"]:
                    return  # the microphone's TF has not arrived yet
                self._pending.popleft()
                self._drop("audio_tf", f"no TF between the image frame and the audio frame {self._audio_frame!r} "
                                       f"(publish the microphone's mount, e.g. camera_link -> it): {err}")
                continue
            _, rgb_msg, depth_msg, info_msg = self._pending.popleft()
            samples, valid = window
            if rotation is not None:
                samples = rotate_foa(samples, rotation)
            with self._work:
                replaced, self._ready = self._ready, (stamp, rgb_msg, depth_msg, info_msg, samples, valid)
                self._work.notify()
            if replaced is not None:
                self._drop("superseded", f"frame {replaced[0]:.3f} was still waiting for the estimator when "
                                         f"frame {stamp:.3f} became ready")

    def mic_rotation(self, image_frame: str, stamp: float) -> np.ndarray | None:
        """Rotation taking FOA from the microphone's axes (its chunks' frame_id, REP-103: X
        forward, Y left, Z up) to the camera's ambisonic axes, from TF at `stamp` (the newest
        if TF is not that recent); None when no rotation applies: audio stamped with the image's
        own frame (or none) is taken as mounted aligned with the camera (the convention before
        the microphone had a frame). TransformError when TF has no path (yet)."""
        mic = self._audio_frame
        if not mic or mic == image_frame or self._tf is None:
            return None
        buffer = self._tf.buffer
        try:
            optical_from_mic = buffer.lookup(image_frame, mic, stamp)
        except TransformError:
            latest = buffer.latest_common_time(image_frame, mic)
            if not math.isfinite(latest):
                raise
            optical_from_mic = buffer.lookup(image_frame, mic, latest)
        return BODY_FROM_OPTICAL @ optical_from_mic[:3, :3]

    def _work_loop(self) -> None:
        """The worker: decode, estimate and publish the frame handed over, until stopped."""
        while True:
            with self._work:
                while self._running and self._ready is None:
                    self._work.wait()
                if not self._running:
                    return
                item, self._ready = self._ready, None
            try:
                self._process_frame(*item)
            except Exception as err:  # keep the worker alive whatever a frame does; counted and logged
                self._drop("worker", f"{type(err).__name__}: {err}")

    def _process_frame(self, stamp: float, rgb_msg: Image, depth_msg: Image, info_msg: CameraInfo,
                       window: np.ndarray, valid: np.ndarray) -> None:
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
        self._process(stamp, rgb_msg.header, rgb, depth, intr, window, valid)

    def _process(self, stamp: float, header: Any, rgb: np.ndarray, depth: np.ndarray, intr: Intrinsics,
                 window: np.ndarray, valid: np.ndarray) -> None:
        target = self.p["target_voice"]
        share = float(valid.mean())  # of real (not gap-filled) audio in the window
        # silence (W below min_audio_rms over the real samples): boxes only, no direction and no talker
        heard = window[0][valid].astype(float)
        audible = heard.size > 0 and float(np.sqrt(np.mean(heard ** 2))) >= self.p["min_audio_rms"]
        try:
            est = labelled(self.estimator(rgb, depth, intr, window if audible else None, self.p["sample_rate"],
                                          target, stamp, None if share == 1.0 else valid))
        except Exception as err:  # keep running on any estimator failure; it is counted and logged
            self._drop("estimator", f"{type(err).__name__}: {err}")
            return
        if share < 1.0:  # a window with a gap is less certain, whatever the estimator says
            est = replace(est, doa_confidence=est.doa_confidence * share, confidence=est.confidence * share)
        header = rc.make_header(header.stamp, header.frame_id)
        boxes = [rc.box_to_msg(b, i) for i, b in enumerate(est.boxes)]
        direction = est.direction if est.direction is not None else np.array([0.0, 0.0, -1.0])
        doa = rc.doa_to_msg(direction, est.doa_confidence if est.direction is not None else 0.0, header, target)
        match = SpeakerMatch(header=header, target=target, index=est.index, label=est.label, category=est.category,
                             matched_box=boxes[est.index] if est.index >= 0 else BoundingBox3D(),
                             candidates=boxes, doa=doa, confidence=est.confidence, method=self.estimator.name,
                             voice_id=est.voice_id, voice_gender=est.voice_gender)
        self.pub_det.publish(BoundingBox3DArray(header=header, boxes=boxes))
        self.pub_doa.publish(doa)
        self.pub_match.publish(match)
        self.pub_markers.publish(markers_for(est, header, self.p["marker_lifetime_s"]))
        self.processed += 1
        self.latencies.append(self._now() - stamp)
        self._done_stamps.append(time.monotonic())

    # --- diagnostics ----------------------------------------------------------------------
    def input_report(self) -> str | None:
        """What is missing when no synchronised frame set or no audio came for no_input_warn_s
        (None when input flows), naming each input topic and when it last delivered."""
        if self._inputs is None:
            return None
        now, limit = time.monotonic(), self.p["no_input_warn_s"]
        arrivals = self._inputs.arrivals
        since_set = now - (self._last_set if self._last_set is not None else self._active_since)
        audio = arrivals.get(self.resolve_topic_name(self.p["audio_topic"]))
        since_audio = now - (audio if audio is not None else self._active_since)
        missing = ([f"no synchronised frame set for {since_set:.1f} s"] if since_set >= limit else []) + \
                  ([f"no audio for {since_audio:.1f} s"] if since_audio >= limit else [])
        if not missing:
            return None
        topics = ", ".join(f"{topic} ({'never delivered' if at is None else f'last {now - at:.1f} s ago'})"
                           for topic, at in arrivals.items())
        hint = ""
        if all(at is not None and now - at < limit for at in arrivals.values()):
            hint = f" (all deliver: are colour, depth and camera_info stamped within slop = {self.p['slop']:g} s?)"
        return f"{' and '.join(missing)}; waiting on {topics}{hint}"

    def _publish_state(self) -> None:
        """/diagnostics while not active: the lifecycle state, and why the last transition failed."""
        if self._failure:
            level, message = DiagnosticStatus.ERROR, f"{self._phase}: {self._failure}"
        else:
            level, message = DiagnosticStatus.OK, f"{self._phase}" + (
                " (waiting for configure)" if self._phase == "unconfigured" else "")
        status = DiagnosticStatus(level=level, name=self.status_name, message=message, hardware_id="jaeger_ros",
                                  values=[KeyValue(key="lifecycle_state", value=self._phase)])
        self.pub_diag.publish(DiagnosticArray(header=rc.make_header(self._now(), ""), status=[status]))

    def _publish_diagnostics(self) -> None:
        if self._phase != "active":
            if self.pub_diag is not None and self._phase != "finalized":
                self._publish_state()
            return
        self._check_sync()
        stalled = self.input_report()
        if stalled:
            if self._last_set is None and time.monotonic() - self._active_since < STARTUP_GRACE_S:
                self.get_logger().info(stalled, throttle_duration_sec=5.0)
            else:
                self.get_logger().warning(stalled, throttle_duration_sec=5.0)
        if self.pub_diag is None:
            return
        recent = [t for t in self._done_stamps if time.monotonic() - t <= 5.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        lat = np.array(self.latencies) * 1000.0
        level, message = DiagnosticStatus.OK, "running"
        if stalled:
            level, message = DiagnosticStatus.WARN, stalled
        elif not recent:
            level, message = DiagnosticStatus.WARN, "no output in the last 5 s" + (
                f"; last dropped input ({self._last_drop[0]}): {self._last_drop[1]}" if self._last_drop else "")
        elif rate < 0.5 * self.p["rate_hz"]:
            level, message = DiagnosticStatus.WARN, f"output rate {rate:.1f} Hz below half of rate_hz"
        values = {"method": self.estimator.name, "target_voice": self.p["target_voice"] or "(single)",
                  "processed": self.processed, "skipped": self.skipped, "rate_hz": f"{rate:.2f}",
                  "latency_p50_ms": f"{np.percentile(lat, 50):.1f}" if lat.size else "n/a",
                  "latency_p95_ms": f"{np.percentile(lat, 95):.1f}" if lat.size else "n/a",
                  "audio_gaps": self.buffer.stats.gaps, "audio_gap_ms": f"{self.buffer.gap_ms:.1f}",
                  "audio_overlaps": self.buffer.stats.overlaps, "audio_restarts": self.buffer.stats.restarts,
                  "frame_stream_resets": self.stream_resets,
                  **{f"dropped_{k}": v for k, v in sorted(self.drops.items())},
                  **{f"input {topic}": "never" if at is None else f"{time.monotonic() - at:.1f} s ago"
                     for topic, at in (self._inputs.arrivals.items() if self._inputs else ())}}
        status = DiagnosticStatus(level=level, name=self.status_name, message=message, hardware_id="jaeger_ros",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.pub_diag.publish(DiagnosticArray(header=rc.make_header(self._now(), ""), status=[status]))


def main(args: list[str] | None = None) -> None:
    run_node(JaegerNode, args)


if __name__ == "__main__":
    main()
