"""Habitat-Sim (RGB-D of scanned scenes) + SoundSpaces 2.0 (ray-traced ambisonic RIRs) backend.

UNVERIFIED HERE: habitat-sim with audio cannot be installed on this machine, so this backend
has never run against a real simulator. Written for habitat-sim 0.2.2-0.3.x built with
`--audio` (the RLRAudioPropagation audio sensor that SoundSpaces 2.0 uses: AudioSensorSpec,
RLRAudioPropagationChannelLayoutType.Ambisonics, setAudioSourceTransform). What is tested
here are the conversions it relies on, on known vectors (tests/test_backends.py):

- Frames. Habitat's world and sensor frames are y up; a sensor looks along its -z with x to
  the right -- the same axes as our camera frame (x right, y up, z backward), so a sensor
  pose is our world_from_camera unchanged. Rotations are quaternions: numpy-quaternion's
  (w, x, y, z), or (x, y, z, w) coefficients from habitat_sim.utils.common.quat_to_coeffs.
- Depth: planar metres along -z (as ours), 0 where nothing was hit. Colour: RGBA -> RGB.
- Ambisonics: SoundSpaces' ambisonic RIRs are ACN/N3D; ours are ACN/SN3D, so each dipole is
  scaled by 1/sqrt(3). VERIFIED on the engine itself (rlr-audio-propagation, the library
  habitat-sim's audio sensor wraps; tests/test_mesh_acoustics.py renders sources ahead, left,
  above and behind): the dipole channels are the ACN slots (Y, Z, X) filled with the world's
  +y, +z, +x (SOUNDSPACES_AXES), fixed to the world whatever the listener's orientation
  (SOUNDSPACES_WORLD_FIXED), N3D, and W = 1/(sqrt(4 pi) r), which SOUNDSPACES_W_SCALE turns into
  our W = 1/r (this scale was missing before). Still assumed: that habitat-sim's sensor returns
  the engine's IR unchanged, and its default listener radius (0.1 m advances the direct sound).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jaeger_ros.core import foa
from sim_bridge.backends import BackendUnavailable
from sim_bridge.render import RenderResult

SOUNDSPACES_NORMALIZATION = "N3D"
SOUNDSPACES_WORLD_FIXED = True
SOUNDSPACES_AXES = (1, 2, 0)
"""Native channel k + 1 (ACN slots Y, Z, X) carries the component along Habitat axis
SOUNDSPACES_AXES[k] (0 = x right, 1 = y up, 2 = z back)."""
SOUNDSPACES_W_SCALE = float(np.sqrt(4.0 * np.pi))
"""The engine's direct path has W = 1 / (sqrt(4 pi) r); ours has W = 1 / r."""


def quaternion_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a quaternion (w, x, y, z); it need not be unit length."""
    q = np.asarray(wxyz, dtype=float).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n == 0:
        raise ValueError(f"invalid quaternion {q}")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a (3, 3) rotation matrix."""
    r = np.asarray(rotation, dtype=float).reshape(3, 3)
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise ValueError("not a rotation matrix")
    # the largest of the four candidate divisors keeps the formula well conditioned
    t = np.array([1 + r[0, 0] + r[1, 1] + r[2, 2], 1 + r[0, 0] - r[1, 1] - r[2, 2],
                  1 - r[0, 0] + r[1, 1] - r[2, 2], 1 - r[0, 0] - r[1, 1] + r[2, 2]])
    k = int(np.argmax(t))
    s = 2.0 * np.sqrt(t[k])
    if k == 0:
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif k == 1:
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif k == 2:
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    q = np.array(q)
    return q if q[0] >= 0 else -q


def coeffs_to_wxyz(xyzw: np.ndarray) -> np.ndarray:
    """habitat_sim.utils.common.quat_to_coeffs order (x, y, z, w) -> (w, x, y, z)."""
    c = np.asarray(xyzw, dtype=float).reshape(4)
    return c[[3, 0, 1, 2]]


def world_from_sensor(position: np.ndarray, rotation_wxyz: np.ndarray) -> np.ndarray:
    """4x4 pose of a Habitat sensor (its world position and rotation) as our world_from_camera:
    the axes coincide (see the module doc), so only the layout changes."""
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix(rotation_wxyz)
    m[:3, 3] = np.asarray(position, dtype=float).reshape(3)
    return m


def depth_from_habitat(depth: np.ndarray) -> np.ndarray:
    """Habitat depth observation ((H, W) or (H, W, 1) planar metres) -> float32 (H, W), 0 = no
    return (non-finite or non-positive values included)."""
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"depth observation must be (H, W) or (H, W, 1), got {d.shape}")
    return np.where(np.isfinite(d) & (d > 0), d, np.float32(0.0)).astype(np.float32)


def rgb_from_habitat(color: np.ndarray) -> np.ndarray:
    """Habitat colour observation (H, W, 4) RGBA or (H, W, 3) uint8 -> (H, W, 3) uint8."""
    c = np.asarray(color)
    if c.ndim != 3 or c.shape[2] not in (3, 4) or c.dtype != np.uint8:
        raise ValueError(f"colour observation must be uint8 (H, W, 3|4), got {c.dtype} {c.shape}")
    return np.ascontiguousarray(c[..., :3])


def soundspaces_foa_to_ambix(ir: np.ndarray, world_from_camera: np.ndarray,
                             normalization: str = SOUNDSPACES_NORMALIZATION,
                             world_fixed: bool = SOUNDSPACES_WORLD_FIXED,
                             axes: tuple[int, int, int] = SOUNDSPACES_AXES,
                             w_scale: float = 1.0) -> np.ndarray:
    """A SoundSpaces ambisonic RIR (4, N) -> ours: ACN/SN3D in the camera's ambisonic axes.

    world_from_camera: (3, 3) (or 4x4) rotation of the listening camera; used when the native
    dipoles are world-fixed. normalization: "N3D" or "SN3D" of the native dipoles. w_scale
    multiplies every channel (SOUNDSPACES_W_SCALE turns the engine's 1/(sqrt(4 pi) r) into our
    1/r)."""
    x = np.asarray(ir, dtype=float)
    if x.ndim != 2 or x.shape[0] != 4:
        raise ValueError(f"ambisonic RIR must have shape (4, N), got {x.shape}")
    if sorted(axes) != [0, 1, 2]:
        raise ValueError(f"axes must be a permutation of (0, 1, 2), got {axes}")
    scale = 1.0 if normalization.upper() == "SN3D" else 3.0 ** -0.5
    if normalization.upper() not in foa.NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {foa.NORMALIZATIONS}, got {normalization!r}")
    native = np.zeros((3, x.shape[1]))
    for slot, axis in enumerate(axes):
        native[axis] = x[1 + slot] * scale
    rot = np.asarray(world_from_camera, dtype=float)[:3, :3]
    cam = rot.T @ native if world_fixed else native
    ambi = foa.camera_to_ambisonic(cam.T).T        # rows X (front), Y (left), Z (up)
    return w_scale * np.stack([x[0], ambi[1], ambi[2], ambi[0]])


def _import_habitat() -> Any:
    try:
        import habitat_sim  # noqa: F401  (optional dependency)
    except ImportError as e:
        raise BackendUnavailable(f"the habitat backend needs habitat-sim built with audio "
                                 f"(SoundSpaces 2.0): {e}") from None
    if not hasattr(habitat_sim, "AudioSensorSpec"):
        raise BackendUnavailable("habitat-sim is installed without audio (build it with --audio)")
    return habitat_sim


class HabitatBackend:
    """RGB-D + semantic ids of a Habitat scene at the scene's camera pose, and SoundSpaces 2.0
    ambisonic RIRs from a world point to it (unverified here: see the module doc).

    `scene` arguments need only camera_position and world_from_camera() (a procedural Scene or
    any object with those), in Habitat's world coordinates. instance ids are the scene's
    semantic object ids (0 = none), not loudspeaker indices.
    """

    name = "habitat"

    def __init__(self, scene_path: str, width: int = 672, height: int = 378, hfov_deg: float = 90.0,
                 sample_rate: int = foa.SAMPLE_RATE, materials_json: str | None = None,
                 scene_dataset_config: str | None = None) -> None:
        hs = _import_habitat()
        self._hs = hs
        self.width, self.height, self.hfov_deg, self.sample_rate = width, height, hfov_deg, sample_rate
        backend = hs.SimulatorConfiguration()
        backend.scene_id = str(scene_path)
        if scene_dataset_config:
            backend.scene_dataset_config_file = str(scene_dataset_config)
        backend.load_semantic_mesh = True
        backend.enable_physics = False
        specs = []
        for uuid, kind in (("color", hs.SensorType.COLOR), ("depth", hs.SensorType.DEPTH),
                           ("semantic", hs.SensorType.SEMANTIC)):
            spec = hs.CameraSensorSpec()
            spec.uuid, spec.sensor_type = uuid, kind
            spec.resolution = [height, width]
            spec.position = [0.0, 0.0, 0.0]
            spec.hfov = float(hfov_deg)
            specs.append(spec)
        agent = hs.agent.AgentConfiguration()
        agent.sensor_specifications = specs
        self._sim = hs.Simulator(hs.Configuration(backend, [agent]))
        audio = hs.AudioSensorSpec()
        audio.uuid = "audio_sensor"  # the name Simulator.get_sensor_observations routes audio by
        audio.enableMaterials = materials_json is not None
        audio.channelLayout.type = hs.sensor.RLRAudioPropagationChannelLayoutType.Ambisonics
        audio.channelLayout.channelCount = 4
        audio.position = [0.0, 0.0, 0.0]
        audio.acousticsConfig.sampleRate = int(sample_rate)
        self._sim.add_sensor(audio)
        self._audio = self._sim.get_agent(0)._sensors["audio_sensor"]
        if materials_json is not None:
            self._audio.setAudioMaterialsJSON(str(materials_json))

    def _pose(self, scene: Any) -> np.ndarray:
        from habitat_sim.utils.common import quat_from_coeffs

        wfc = np.asarray(scene.world_from_camera(), dtype=float)
        agent = self._sim.get_agent(0)
        state = agent.get_state()
        state.position = np.asarray(scene.camera_position, dtype=np.float32)
        q = matrix_to_quaternion(wfc[:3, :3])
        state.rotation = quat_from_coeffs(q[[1, 2, 3, 0]])
        agent.set_state(state, infer_sensor_states=True)
        return wfc

    def observe(self, scene: Any, intrinsics: Any) -> RenderResult:
        expected = (self.width, self.height, (self.width / 2.0) / np.tan(np.radians(self.hfov_deg) / 2.0))
        if (intrinsics.width, intrinsics.height) != expected[:2] or not np.isclose(intrinsics.fx, expected[2]):
            raise ValueError(f"intrinsics {intrinsics} differ from the Habitat cameras "
                             f"({self.width}x{self.height}, hfov {self.hfov_deg} deg)")
        self._pose(scene)
        obs = self._sim.get_sensor_observations()
        return RenderResult(rgb_from_habitat(obs["color"]), depth_from_habitat(obs["depth"]),
                            np.asarray(obs["semantic"], dtype=np.int32))

    def foa_rir(self, scene: Any, source_world: np.ndarray, sample_rate: int,
                rng: np.random.Generator | None = None, **options: Any) -> np.ndarray:
        """rng and options are not used (the ray tracer has its own); sample_rate must be the
        one the backend was built with."""
        if sample_rate != self.sample_rate:
            raise ValueError(f"this backend renders at {self.sample_rate} Hz, asked for {sample_rate}")
        wfc = self._pose(scene)
        self._audio.setAudioSourceTransform(np.asarray(source_world, dtype=np.float32))
        ir = np.asarray(self._sim.get_sensor_observations()["audio_sensor"], dtype=float)
        if ir.ndim == 2 and ir.shape[0] != 4 and ir.shape[1] == 4:
            ir = ir.T
        return soundspaces_foa_to_ambix(ir, wfc, w_scale=SOUNDSPACES_W_SCALE)
