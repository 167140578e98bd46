"""foa_capture node: a 4-capsule tetrahedral (A-format) microphone -> FoaAudio (B-format) chunks.

Reads a 4-channel ALSA/PortAudio device with `sounddevice` (imported only when the node runs:
it is the optional `hardware` extra; without it, or without the device, the executable exits 1
with one line),
converts each block with a 4x4 A->B matrix and publishes jaeger_ros/FoaAudio on `audio_topic`,
stamped at the FIRST sample of the chunk: a sample counter anchored at the first block's
capture time (the stream's ADC time mapped to the ROS clock), so stamps do not jitter with
callback scheduling.

Axes: the ambisonic axes (X forward, Y left, Z up) are those of the microphone, whose frame is
`frame_id` (default mic_link, REP-103 axes). jaeger_node looks up the microphone's mount in TF
(the image frame <- frame_id) and rotates the FOA into the camera frame: publish the mount, e.g.
camera_link -> mic_link on /tf_static (identity when it is mounted aligned with the camera).

Matrix: `a_to_b_matrix` (16 numbers, row-major, rows W, Y, Z, X in ACN order, SN3D) maps
capsule signals (columns in device channel order) to B-format. The default is the ideal
matrix of a tetrahedral array with capsules LFU, RFD, LBD, RBU (Soundfield/Ambeo/Zoom
H3-VR ordering) and cardioid capsules; replace it with the microphone's calibrated one.
No capsule-spacing correction filters are applied (fine below ~4 kHz for 1-2 cm arrays).
"""
from __future__ import annotations

import queue
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from jaeger_ros.core.foa import TETRA_CAPSULES, tetrahedral_a_to_b  # noqa: F401 (re-exported)
from jaeger_ros.ros import convert as rc
from jaeger_ros.msg import FoaAudio
from jaeger_ros.ros.params import Spec, declare
from jaeger_ros.ros.runner import NodeStartError, run_node

INSTALL_HINT = "pip install sounddevice (and PortAudio: apt install libportaudio2)"


def parse_matrix(values: Any) -> np.ndarray:
    """16 numbers (row-major) -> a finite, invertible (4, 4) matrix."""
    m = np.asarray(values, dtype=float)
    if m.size != 16 or not np.all(np.isfinite(m)):
        raise ValueError(f"a_to_b_matrix needs 16 finite numbers (row-major 4x4), got {m.size}")
    m = m.reshape(4, 4)
    if abs(np.linalg.det(m)) < 1e-9:
        raise ValueError("a_to_b_matrix is singular")
    return m


def a_to_b(block: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) capsule samples (device layout) -> (4, N) float32 B-format."""
    a = np.asarray(block, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"A-format block must have shape (N, 4), got {a.shape}")
    return (matrix.astype(np.float32) @ a.T).astype(np.float32)


PARAMETERS: tuple[Spec, ...] = (
    Spec("device", "", "input device: '' = the default; a sounddevice name or ALSA hw:X,Y"),
    Spec("sample_rate", 16000, "Hz, the device must support it (no resampling)", 8000, 192000),
    Spec("chunk_s", 0.05, "s per FOA chunk (stamped at its first sample)", 0.005, 1.0),
    Spec("frame_id", "mic_link", "frame_id of the chunks: the microphone's frame (X forward, Y left, Z up = the "
         "ambisonic axes); publish its mount in TF (e.g. camera_link -> mic_link on /tf_static)"),
    Spec("audio_topic", "audio/foa", "jaeger_ros/FoaAudio output (reliable; qos_overrides.<topic>.publisher.*)"),
    Spec("a_to_b_matrix", tetrahedral_a_to_b().reshape(-1).tolist(),
         "16 numbers, row-major 4x4 A->B matrix (rows W, Y, Z, X in ACN/SN3D; columns = device channels)"),
)
"""Every parameter is read at start-up (read_only): the stream is opened with them once."""


def open_stream(device: str, sample_rate: int, blocksize: int, callback: Any) -> Any:
    """A started 4-channel float32 input stream; NodeStartError (one line) when sounddevice,
    PortAudio or the device is missing."""
    try:
        import sounddevice
    except ImportError:
        raise NodeStartError(f"foa_capture: sounddevice is not installed: {INSTALL_HINT}") from None
    except OSError as err:  # sounddevice is there, its PortAudio library is not
        raise NodeStartError(f"foa_capture: PortAudio not found ({err}): {INSTALL_HINT}") from None
    try:
        stream = sounddevice.InputStream(device=device or None, channels=4, samplerate=sample_rate,
                                         blocksize=blocksize, dtype="float32", callback=callback)
        stream.start()
    except (ValueError, sounddevice.PortAudioError) as err:
        raise NodeStartError(f"foa_capture: cannot open input device {device or '(default)'!r} with 4 channels at "
                             f"{sample_rate} Hz: {err}") from None
    return stream


class FoaCaptureNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        self.stream: Any = None  # set first: rclpy destroys a half-built node at shutdown
        super().__init__("foa_capture", **kwargs)
        p = declare(self, PARAMETERS)
        self.p = p
        self.matrix = parse_matrix(p["a_to_b_matrix"])
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)  # REP-2003: as camera drivers
        self.pub = self.create_publisher(FoaAudio, p["audio_topic"], reliable,
                                         qos_overriding_options=QoSOverridingOptions.with_default_policies())
        self._blocks: queue.Queue = queue.Queue(maxsize=100)
        self._t0: float | None = None
        self._samples = 0
        self.chunk = int(round(p["chunk_s"] * p["sample_rate"]))
        self.stream = open_stream(p["device"], p["sample_rate"], self.chunk, self._on_block)
        self.timer = self.create_timer(p["chunk_s"] / 2.0, self._publish_pending)
        self.get_logger().info(f"capturing 4 channels from {p['device'] or 'the default device'} at "
                               f"{p['sample_rate']} Hz, {self.chunk}-sample chunks -> {p['audio_topic']}")

    def _on_block(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: anchor the clock once, then stamp by sample count."""
        if self._t0 is None:
            now = self.get_clock().now().nanoseconds * 1e-9
            self._t0 = now - max(0.0, time_info.currentTime - time_info.inputBufferAdcTime)
        if status:
            self.get_logger().warning(f"audio device status: {status}", throttle_duration_sec=2.0)
        try:
            self._blocks.put_nowait((self._t0 + self._samples / self.p["sample_rate"], indata.copy()))
        except queue.Full:
            self.get_logger().warning("capture queue full: dropping audio", throttle_duration_sec=2.0)
        self._samples += frames

    def _publish_pending(self) -> None:
        while not self._blocks.empty():
            t, block = self._blocks.get_nowait()
            self.pub.publish(rc.foa_to_msg(a_to_b(block, self.matrix), self.p["sample_rate"],
                                           rc.make_header(t, self.p["frame_id"])))

    def destroy_node(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(FoaCaptureNode, args)


if __name__ == "__main__":
    main()
