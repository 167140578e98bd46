"""Ambisonic RIRs of mesh scenes: SoundSpaces 2.0's engine (rlr-audio-propagation), or
pyroomacoustics on the room's bounding shoebox where that engine is not installed.

rlr-audio-propagation is CC-BY-NC-4.0 (research use; its closed libRLRAudioPropagation.so
included), so it is optional: `engine()` says which one runs and the data generator records it.

The engine's output, measured here (tests/test_mesh_acoustics.py): ACN order, N3D dipoles,
W = 1 / (sqrt(4 pi) r) for a direct path of r metres, the three dipoles fixed to the WORLD axes
(ACN slots Y, Z, X carry world +y, +z, +x) whatever the listener's orientation. The listener
radius is set to 0 so the direct sound arrives at r / c (the default 0.1 m sphere advances it).
Both engines' outputs go through one conversion, backends.habitat.soundspaces_foa_to_ambix
(via to_ambix), to the project's AmbiX: ACN/SN3D, camera axes, W = 1 / r.

Materials: config/materials_mesh.json (octave-band absorption/scattering, its source named in
the file), matched by each mesh part's acoustic material category.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from jaeger_ros.core import foa
from jaeger_ros.core.paths import share_dir
from sim_bridge.backends.habitat import SOUNDSPACES_W_SCALE, soundspaces_foa_to_ambix

ENGINES = ("rlr", "pyroomacoustics")
PRA_W_SCALE = 1.0
"""pyroomacoustics (0.10) already gives the direct path amplitude 1 / r."""
DEFAULT_RAYS = 1500
"""Measured (benchmarks/bench_mesh.py --rays-curve, 10 furnished test rooms, 20 sources, against
20 000 rays): mean T20 error 2.9 % at 500 rays, 2.4 % at 1000, 1.7 % at 1500, 1.7 % at 2000, 1.5 %
at 3000; the direct-path direction within 0.01 deg at every count; 1500 costs 0.20 s per room where
3000 costs 0.35 s."""
SOURCE_OFFSET_M = 0.03
"""Sources sit this far in front of the driver's face, off the loudspeaker's own mesh."""
MAX_IR_S = 1.5
PRA_MAX_ORDER = 12


def materials_path() -> Path:
    return share_dir() / "config" / "materials_mesh.json"


@lru_cache(maxsize=1)
def material_table() -> dict[str, dict[str, Any]]:
    """label -> material entry of config/materials_mesh.json."""
    data = json.loads(materials_path().read_text())
    return {label: m for m in data["materials"] for label in m["labels"]}


def band_absorption(category: str) -> tuple[np.ndarray, np.ndarray]:
    """(centre frequencies, absorption) of a material category (default material if unknown)."""
    table = material_table()
    entry = table.get(category, table["default"])
    pairs = np.asarray(entry["absorption"], dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def mid_absorption(category: str) -> float:
    """Mean absorption of the 500 Hz and 1 kHz bands (what a single-coefficient model uses)."""
    f, a = band_absorption(category)
    return float(np.clip(np.interp([500.0, 1000.0], f, a).mean(), 0.01, 0.99))


def rlr_available() -> bool:
    try:
        import rlr_audio_propagation  # noqa: F401  (optional, CC-BY-NC-4.0)
    except ImportError:
        return False
    return True


def engine(preferred: str = "rlr") -> str:
    """The engine that will run: rlr when asked for and importable, else pyroomacoustics."""
    if preferred not in ENGINES:
        raise ValueError(f"unknown acoustics engine {preferred!r}, expected one of {ENGINES}")
    return "rlr" if preferred == "rlr" and rlr_available() else "pyroomacoustics"


def to_ambix(ir: np.ndarray, world_from_camera: np.ndarray, engine_name: str = "rlr") -> np.ndarray:
    """(4, N) ACN RIR with world-fixed dipoles -> ours (ACN/SN3D, camera axes, W = 1 / r).

    rlr: N3D dipoles, W scale 1/sqrt(4 pi); pyroomacoustics (our virtual B-format): SN3D, 1."""
    if engine_name == "rlr":
        return soundspaces_foa_to_ambix(ir, world_from_camera, "N3D", True, w_scale=SOUNDSPACES_W_SCALE)  # rlr is the SoundSpaces engine
    if engine_name == "pyroomacoustics":
        return soundspaces_foa_to_ambix(ir, world_from_camera, "SN3D", True, w_scale=PRA_W_SCALE)
    raise ValueError(f"unknown acoustics engine {engine_name!r}")


# --- geometry handed to an engine ----------------------------------------------------------------

def scene_triangles(scene: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(vertices (V, 3), faces (F, 3), material category) of every surface of a MeshScene in
    world coordinates: the shell's floor/walls/ceiling, the objects and the loudspeakers."""
    from sim_bridge.mesh.render_gl import loudspeaker_local_meshes, object_local_meshes
    from jaeger_ros.core.geometry import transform_points

    out: list[tuple[np.ndarray, np.ndarray, str]] = []
    if scene.shell is not None:
        out += shell_triangles(scene.shell)
    for obj in scene.objects:
        pose = obj.world_from_local()
        for part in object_local_meshes(obj):
            out.append((transform_points(pose, part.vertices), np.asarray(part.faces), obj.material))
    for spk in scene.loudspeakers:
        pose = spk.world_from_local()
        for part in loudspeaker_local_meshes(spk.source):
            out.append((transform_points(pose, part.vertices), np.asarray(part.faces), "wood"))
    out += list(getattr(scene, "extra_triangles", lambda: [])())
    return out


def shell_triangles(shell: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Floor, walls and ceiling of a Shell as triangles (normals into the room)."""
    xs, zs, inside = shell.grid()
    h = shell.height
    floor, ceil = [], []
    for i in range(len(xs) - 1):
        for j in range(len(zs) - 1):
            if inside[i, j]:
                x0, x1, z0, z1 = xs[i], xs[i + 1], zs[j], zs[j + 1]
                floor.append([[x0, 0, z0], [x0, 0, z1], [x1, 0, z1], [x1, 0, z0]])
                ceil.append([[x0, h, z0], [x1, h, z0], [x1, h, z1], [x0, h, z1]])
    walls = [[[a[0], 0, a[1]], [b[0], 0, b[1]], [b[0], h, b[1]], [a[0], h, a[1]]] for a, b, _ in shell.walls]

    def quads(q: list) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(q, dtype=float).reshape(-1, 3)
        f = np.concatenate([np.array([[0, 1, 2], [0, 2, 3]]) + 4 * k for k in range(len(q))])
        return v, f

    return [(*quads(floor), shell.floor_material), (*quads(walls), shell.wall_material),
            (*quads(ceil), shell.ceiling_material)]


# --- engines ---------------------------------------------------------------------------------------

@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 sent to /dev/null (C-level prints bypass sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class MeshAcoustics:
    """FOA RIRs from world points to a scene's camera, in the project's AmbiX.

    ray_count: rlr's indirect rays (the quality/speed setting: see DEFAULT_RAYS).
    preferred: "rlr" or "pyroomacoustics".
    worker_nice: None, rlr runs in the calling thread; a number, in a worker process at that much
    lower priority. rlr holds the GIL while it simulates (36 ms to build a room's mesh, 170-270 ms
    to simulate it), which stalled a live simulator's stream while it built the next scene in a
    thread (chunks published up to 274 ms late)."""

    def __init__(self, preferred: str = "rlr", ray_count: int = DEFAULT_RAYS,
                 sample_rate: int = foa.SAMPLE_RATE, diffraction: bool = True, threads: int = 1,
                 materials: str | Path | None = None, worker_nice: int | None = None) -> None:
        self.engine = engine(preferred)
        self.worker_nice = worker_nice
        self.ray_count, self.sample_rate = int(ray_count), int(sample_rate)
        self.diffraction, self.threads = diffraction, int(threads)
        self.materials = Path(materials) if materials else materials_path()

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"engine": self.engine, "sample_rate": self.sample_rate,
                             "materials": self.materials.name}
        if self.engine == "rlr":
            d.update(ray_count=self.ray_count, diffraction=self.diffraction, listener_radius_m=0.0,
                     licence="CC-BY-NC-4.0")
        else:
            d.update(model="image sources of the room's bounding shoebox", max_order=PRA_MAX_ORDER)
        return d

    def rirs(self, scene: Any, sources_world: list[np.ndarray]) -> list[np.ndarray]:
        """One (4, N) float32 RIR per source, to scene.camera_position in the camera's axes."""
        if not sources_world:
            return []
        if self.engine == "rlr":
            raw = self._rlr(scene, sources_world)
        else:
            raw = self._pra(scene, sources_world)
        wfc = scene.world_from_camera()[:3, :3]
        return [to_ambix(r, wfc, self.engine).astype(np.float32) for r in raw]

    def _rlr(self, scene: Any, sources_world: list[np.ndarray]) -> list[np.ndarray]:
        settings = dict(sample_rate=self.sample_rate, rays=self.ray_count, threads=self.threads,
                        diffraction=self.diffraction, materials=str(self.materials))
        job = (settings, scene_triangles(scene), np.asarray(scene.camera_position, dtype=float),
               [np.asarray(s, dtype=float) for s in sources_world])
        if self.worker_nice is None:
            return _rlr_simulate(*job)
        return _worker(self.worker_nice).run(*job)

    def close(self) -> None:
        """End the worker process, if this engine started one (`worker_nice`)."""
        if self.worker_nice is not None:
            _close_worker(self.worker_nice)

    def _pra(self, scene: Any, sources_world: list[np.ndarray]) -> list[np.ndarray]:
        """A virtual B-format microphone (omni + figure-eights along world +y, +z, +x, i.e. ACN
        slots with SN3D gains) in pyroomacoustics' image-source shoebox of the room's bounds."""
        import pyroomacoustics as pra
        from pyroomacoustics.directivities import DirectionVector, FigureEight

        room = scene.room
        s = scene.shell
        names = {"west": s.wall_material, "east": s.wall_material, "north": s.wall_material,
                 "south": s.wall_material, "floor": s.floor_material, "ceiling": s.ceiling_material}
        # pra's shoebox walls: west/east (x), south/north (y), floor/ceiling (z); our y is up,
        # so pra's (x, y, z) = our (x, z, y) and the figure-eights are set in pra's axes.
        mats = {}
        for pra_wall, ours in (("west", "west"), ("east", "east"), ("south", "north"), ("north", "south"),
                               ("floor", "floor"), ("ceiling", "ceiling")):
            f, a = band_absorption(names[ours])
            mats[pra_wall] = pra.Material({"coeffs": a.tolist(), "center_freqs": f.tolist()})
        size = np.asarray(room.size, dtype=float)[[0, 2, 1]]

        def to_pra(p: np.ndarray) -> np.ndarray:
            return np.asarray(p, dtype=float)[[0, 2, 1]]

        box = pra.ShoeBox(size, fs=self.sample_rate, materials=mats,
                          max_order=PRA_MAX_ORDER, air_absorption=False)
        for src in sources_world:
            box.add_source(np.clip(to_pra(src), 0.05, size - 0.05))
        mic = np.clip(to_pra(scene.camera_position), 0.05, size - 0.05)
        # ACN slots Y, Z, X = our world +y (pra +z, colatitude 0), +z (pra +y), +x (pra +x)
        axes = [DirectionVector(azimuth=0.0, colatitude=0.0), DirectionVector(azimuth=90.0, colatitude=90.0),
                DirectionVector(azimuth=0.0, colatitude=90.0)]
        box.add_microphone(mic)
        for d in axes:
            box.add_microphone(mic, directivity=FigureEight(orientation=d))
        box.compute_rir()
        lead = pra.constants.get("frac_delay_length") // 2  # pra delays every arrival by half its filter
        out = []
        for k in range(len(sources_world)):
            rirs = [np.asarray(box.rir[m][k], dtype=float)[lead:] for m in range(4)]
            n = max(len(r) for r in rirs)
            out.append(np.stack([np.pad(r, (0, n - len(r))) for r in rirs]))
        return out


_WORKERS: dict[int, "_Worker"] = {}


class _Worker:
    """rlr in a process of its own (python -m sim_bridge.mesh.rlr_worker), at `nice` above this
    one: jobs are pickled to its stdin, results come back on a pipe of their own (the closed
    library prints on the C stdout). One job at a time."""

    def __init__(self, nice: int) -> None:
        import subprocess
        import threading
        read, write = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])   # where sim_bridge and jaeger_ros are importable
        env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self._proc = subprocess.Popen([sys.executable, "-m", "sim_bridge.mesh.rlr_worker", str(write), str(nice)],
                                      stdin=subprocess.PIPE, pass_fds=(write,), env=env)
        os.close(write)
        self._results = os.fdopen(read, "rb")
        self._lock = threading.Lock()

    def run(self, *job: Any) -> list[np.ndarray]:
        import pickle
        with self._lock:
            pickle.dump(job, self._proc.stdin)
            self._proc.stdin.flush()
            try:
                status, value = pickle.load(self._results)
            except EOFError:
                raise RuntimeError(f"the rlr worker process ended (exit code {self._proc.wait()})") from None
        if status != "ok":
            raise RuntimeError(f"rlr worker: {value}")
        return value

    def close(self) -> None:
        with self._lock:
            self._proc.stdin.close()
            self._proc.wait()
            self._results.close()


def _worker(nice: int) -> _Worker:
    if nice not in _WORKERS:
        _WORKERS[nice] = _Worker(nice)
    return _WORKERS[nice]


def _close_worker(nice: int) -> None:
    worker = _WORKERS.pop(nice, None)
    if worker is not None:
        worker.close()


def _rlr_simulate(settings: dict[str, Any], parts: list, listener: np.ndarray,
                  sources_world: list[np.ndarray]) -> list[np.ndarray]:
    """rlr's raw impulse responses of `sources_world` at `listener` in the triangle soup `parts`
    (scene_triangles). A module-level function: the worker process (rlr_worker) runs it too."""
    import rlr_audio_propagation as rlr

    with _quiet_stdout():  # the closed library prints a line per context on the C stdout
        cfg = rlr.Config()
        cfg.sample_rate = settings["sample_rate"]
        cfg.indirect_ray_count = settings["rays"]
        cfg.thread_count = settings["threads"]
        cfg.max_diffraction_order = 10 if settings["diffraction"] else 0
        cfg.diffraction = bool(settings["diffraction"])
        cfg.max_ir_length = MAX_IR_S
        ctx = rlr.Context(cfg)
        ctx.set_material_database_json(settings["materials"])
        ctx.add_object()
        offset = 0
        vertices = np.concatenate([v for v, _, _ in parts]).astype(np.float32)
        ctx.add_mesh_vertices(vertices.ravel().tolist())
        for v, f, material in parts:
            ctx.add_mesh_indices((np.asarray(f, dtype=np.int64) + offset).ravel().tolist(), 3, material)
            offset += len(v)
        ctx.finalize_object_mesh(0)
        ctx.add_listener(rlr.ChannelLayout(rlr.ChannelLayoutType.Ambisonics, 4))
        ctx.set_listener_position(0, listener.tolist())
        ctx.set_listener_radius(0, 0.0)
        for k, s in enumerate(sources_world):
            ctx.add_source()
            ctx.set_source_position(k, s.tolist())
        ctx.simulate()
        out = []
        for k in range(len(sources_world)):
            ir = np.asarray(ctx.get_listener_source_audio(0, k), dtype=float)
            if ir.ndim != 2 or ir.shape[0] != 4 or ir.shape[1] == 0:
                raise RuntimeError(f"rlr returned an impulse response of shape {ir.shape} for source {k}")
            out.append(ir)
    return out
