"""RGB, metric depth and instance masks of a MeshScene with pyrender (OpenGL offscreen).

Platform: PYOPENGL_PLATFORM=egl (Mesa's llvmpipe on a CPU) unless the environment names
another; `osmesa` (libosmesa6) is the slower fallback -- PyOpenGL fixes the platform at its
first import, so the choice is made before pyrender is imported.

Conventions (as sim_bridge.render): the camera frame is x right, y up, z backward, which is
OpenGL's eye frame, so a camera node's pose is world_from_camera unchanged. The project's
pixel u has its ray through u - cx (no half-pixel shift) while GL samples pixel u at u + 0.5,
so the GL camera's principal point is (cx + 0.5, cy + 0.5). Depth is GL's linearised eye-space
z (planar metres along -z), 0 where nothing was hit. Multisampling is switched off (pyrender
renders into a 4x MSAA buffer): a resolved edge pixel would blend two instance colours and
average two depths. Back faces are never culled, in any pass (pyrender culls them in its
segmentation pass whatever the material says): the models' single-sided planes (leaves,
cloth) and the shell are seen from both sides, as a ray caster sees them.
"""
from __future__ import annotations

import os
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

import numpy as np

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from jaeger_ros.core.geometry import Intrinsics, project, transform_points  # noqa: E402
from sim_bridge.loudspeakers import make_shape  # noqa: E402
from sim_bridge.mesh import catalogue  # noqa: E402
from sim_bridge.render import RenderResult  # noqa: E402

ZNEAR, ZFAR = 0.02, 40.0
AMBIENT = 0.35


@dataclass(frozen=True)
class MeshFrame(RenderResult):
    """RenderResult (instance: i + 1 = scene.loudspeakers[i], 0 otherwise) plus `objects`, the
    instance id of every pixel (loudspeakers, furniture, shell; 0 = nothing)."""

    objects: np.ndarray = None  # type: ignore[assignment]


def _pyrender() -> Any:
    import pyrender
    import pyrender.renderer as prr
    from OpenGL import GL

    if not getattr(prr, "_jaeger_no_msaa", False):
        def storage(target: int, samples: int, fmt: int, width: int, height: int) -> None:
            GL.glRenderbufferStorageMultisample(target, 0, fmt, width, height)

        def enable(cap: int) -> None:
            if cap != GL.GL_CULL_FACE:
                GL.glEnable(cap)

        def sorted_mesh_nodes(self: Any, scene: Any) -> list[Any]:
            """pyrender's back-to-front order with ties broken by node name (pyrender keeps nodes
            in a set, so equally distant meshes -- the shell's, all at the origin -- were drawn in
            an order that changed per process, and so did the pixels where they meet)."""
            cam = scene.get_pose(scene.main_camera_node)[:3, 3]
            nodes = sorted(scene.mesh_nodes, key=lambda n: (-float(np.linalg.norm(scene.get_pose(n)[:3, 3] - cam)),
                                                            n.name or ""))
            return [n for n in nodes if not n.mesh.is_transparent] + [n for n in nodes if n.mesh.is_transparent]

        prr.glRenderbufferStorageMultisample = storage
        prr.glEnable = enable
        prr.Renderer._sorted_mesh_nodes = sorted_mesh_nodes
        prr._jaeger_no_msaa = True
    return pyrender


@lru_cache(maxsize=1)
def _ordered_scene_class() -> type:
    import pyrender

    class OrderedScene(pyrender.Scene):
        """A pyrender Scene whose lights are handed to the shader in name order: pyrender keeps
        them in a set, so the lights were summed in an order that changed per process (a
        last-bit difference in a few pixels between two runs of one seed)."""

        @property
        def light_nodes(self) -> list[Any]:  # type: ignore[override]
            return sorted(super().light_nodes, key=lambda n: n.name or "")

    return OrderedScene


# --- meshes ------------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def loudspeaker_local_meshes(source: str) -> tuple[Any, ...]:
    """Trimesh parts of a loudspeaker in its local frame (procedural parts or catalogue model)."""
    import trimesh

    if not source.startswith("procedural:"):
        from sim_bridge.mesh.scene import _model_by_id

        return tuple(catalogue.load_model(_model_by_id(source)).parts)
    shape = make_shape(int(source.split(":")[1]))
    out = []
    for part in shape.parts:
        if part.kind == "box":
            m = trimesh.creation.box(extents=part.size)
        else:
            axis_len = part.size[1] if part.kind == "cylinder_y" else part.size[2]
            m = trimesh.creation.cylinder(radius=part.size[0] / 2.0, height=axis_len, sections=24)
            if part.kind == "cylinder_y":
                m.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        m.apply_translation(part.center)
        m.visual.face_colors = np.append(np.asarray(part.color) * 255, 255).astype(np.uint8)
        out.append(m)
    return tuple(out)


def object_local_meshes(obj: Any) -> tuple[Any, ...]:
    """Trimesh parts of a MeshObject in its local frame."""
    import trimesh

    if obj.source == "box":
        m = trimesh.creation.box(extents=obj.size)
        m.apply_translation([0.0, obj.size[1] / 2.0, 0.0])
        m.visual.face_colors = np.append(np.asarray(obj.color) * 255, 255).astype(np.uint8)
        return (m,)
    from sim_bridge.mesh.scene import _model_by_id

    return tuple(catalogue.load_model(_model_by_id(obj.source)).parts)


@lru_cache(maxsize=64)
def texture_image(kind: str, texture_id: int) -> np.ndarray:
    """(256, 256, 3) uint8 procedural texture covering 1 m x 1 m: wood planks, tiles, carpet,
    plaster, brick or concrete; the id seeds its colours and grain."""
    rng = np.random.default_rng([0x7E47, texture_id, zlib.crc32(kind.encode())])  # str hash() varies per process
    n = 256
    yy, xx = np.mgrid[0:n, 0:n] / n
    noise = rng.normal(0.0, 1.0, (n, n))
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(noise, 3.0, mode="wrap")
    smooth /= smooth.std() + 1e-9
    base = {"parquet": (0.55, 0.38, 0.22), "carpet": (0.45, 0.42, 0.40), "tile": (0.80, 0.78, 0.74),
            "plaster": (0.88, 0.87, 0.84), "brick": (0.60, 0.30, 0.22), "drywall": (0.86, 0.86, 0.84),
            "ceiling": (0.93, 0.93, 0.92)}.get(kind, (0.7, 0.7, 0.7))
    colour = np.clip(np.asarray(base) * rng.uniform(0.8, 1.15, 3) ** (0.2 if kind == "ceiling" else 1.0), 0, 1)
    shade = 1.0 + 0.05 * smooth
    if kind == "parquet":
        planks = int(rng.integers(4, 9))
        row = np.floor(yy * planks)
        grain = gaussian_filter(rng.normal(0, 1, (n, n)), (0.5, 12.0), mode="wrap")
        shade = 1.0 + 0.15 * grain / (grain.std() + 1e-9) + 0.08 * np.sin(row * 7.3)
        shade[(yy * planks % 1.0) < 0.02] *= 0.55
    elif kind == "tile":
        k = int(rng.integers(2, 6))
        shade = 1.0 + 0.03 * smooth
        shade[((xx * k) % 1.0 < 0.03) | ((yy * k) % 1.0 < 0.03)] *= 0.6
    elif kind == "brick":
        rows = 14
        r = np.floor(yy * rows)
        shift = (r % 2) * 0.125
        shade = 1.0 + 0.1 * smooth
        shade[((yy * rows) % 1.0 < 0.12) | (((xx + shift) * 4) % 1.0 < 0.03)] = 1.5
    elif kind == "carpet":
        shade = 1.0 + 0.12 * noise
    img = np.clip(colour[None, None] * shade[..., None], 0, 1)
    return (img * 255).astype(np.uint8)


def _textured_quads(pyrender: Any, quads: list[np.ndarray], normals: list[np.ndarray], uvs: list[np.ndarray],
                    image: np.ndarray, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Any:
    """A pyrender primitive of quads (each (4, 3) corners in order) with per-corner uvs."""
    pos = np.concatenate(quads).astype(np.float32)
    nrm = np.concatenate([np.repeat(n[None], 4, 0) for n in normals]).astype(np.float32)
    uv = np.concatenate(uvs).astype(np.float32)
    idx = np.concatenate([np.array([[0, 1, 2], [0, 2, 3]]) + 4 * k for k in range(len(quads))]).astype(np.uint32)
    tex = pyrender.Texture(source=image, source_channels="RGB",
                           sampler=pyrender.Sampler(wrapS=10497, wrapT=10497))  # GL_REPEAT
    mat = pyrender.MetallicRoughnessMaterial(baseColorTexture=tex, baseColorFactor=(*tint, 1.0),
                                             metallicFactor=0.0, roughnessFactor=0.9, doubleSided=True)
    return pyrender.Primitive(positions=pos, normals=nrm, texcoord_0=uv, indices=idx, material=mat)


def shell_meshes(pyrender: Any, shell: Any) -> dict[str, Any]:
    """pyrender meshes of the floor, walls and ceiling of a Shell (world frame)."""
    xs, zs, inside = shell.grid()
    floor, ceil = [], []
    for i in range(len(xs) - 1):
        for j in range(len(zs) - 1):
            if inside[i, j]:
                x0, x1, z0, z1 = xs[i], xs[i + 1], zs[j], zs[j + 1]
                floor.append(np.array([[x0, 0, z0], [x0, 0, z1], [x1, 0, z1], [x1, 0, z0]], float))
                ceil.append(np.array([[x0, shell.height, z0], [x1, shell.height, z0], [x1, shell.height, z1],
                                      [x0, shell.height, z1]], float))
    walls, wall_n, wall_uv = [], [], []
    for a, b, n in shell.walls:
        length = float(np.linalg.norm(b - a))
        walls.append(np.array([[a[0], 0, a[1]], [b[0], 0, b[1]], [b[0], shell.height, b[1]],
                               [a[0], shell.height, a[1]]], float))
        wall_n.append(np.array([n[0], 0.0, n[1]]))
        u0 = float(a[0] + a[1])
        wall_uv.append(np.array([[u0, 0], [u0 + length, 0], [u0 + length, shell.height], [u0, shell.height]]))
    floor_uv = [q[:, [0, 2]] for q in floor]
    return {
        "floor": pyrender.Mesh([_textured_quads(pyrender, floor, [np.array([0, 1.0, 0])] * len(floor), floor_uv,
                                                texture_image(shell.floor_material, shell.floor_texture))]),
        "wall": pyrender.Mesh([_textured_quads(pyrender, walls, wall_n, wall_uv,
                                               texture_image(shell.wall_material, shell.wall_texture),
                                               tuple(np.asarray(shell.wall_color) / 0.88))]),
        "ceiling": pyrender.Mesh([_textured_quads(pyrender, ceil, [np.array([0, -1.0, 0])] * len(ceil),
                                                  [q[:, [0, 2]] for q in ceil], texture_image("ceiling", 0))]),
    }


def _pyrender_mesh(pyrender: Any, parts: tuple[Any, ...]) -> Any:
    mesh = pyrender.Mesh.from_trimesh(list(parts), smooth=False)
    for p in mesh.primitives:
        p.material.doubleSided = True
        if p.texcoord_0 is None and getattr(p.material, "baseColorTexture", None) is not None:
            p.material.baseColorTexture = None  # a texture without uvs (some models) fails to compile
        if hasattr(p.material, "alphaMode"):
            p.material.alphaMode = "OPAQUE"
    return mesh


class GLRenderer:
    """An offscreen GL context at one resolution, with the scene's meshes cached per model."""

    _shared: dict[tuple, "GLRenderer"] = {}

    def __init__(self, intrinsics: Intrinsics) -> None:
        self.pyrender = _pyrender()
        self.intrinsics = intrinsics
        self._renderer = self.pyrender.OffscreenRenderer(intrinsics.width, intrinsics.height)
        self._meshes: dict[str, Any] = {}
        self._shells: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._last_seg: tuple[tuple, tuple[np.ndarray, np.ndarray]] | None = None
        self._cam_from_world = np.eye(4)
        self._release()

    def _release(self) -> None:
        """Make the GL context current to no thread: the live world builds scenes in threads
        that end, and EGL refuses a context still current to another thread (pyrender's EGL
        make_uncurrent does nothing)."""
        platform = self._renderer._platform
        if self.platform == "egl":
            from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglMakeCurrent

            eglMakeCurrent(platform._egl_display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)
        else:
            platform.make_uncurrent()

    @contextmanager
    def _gl(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            finally:
                self._release()

    @classmethod
    def shared(cls, intrinsics: Intrinsics) -> "GLRenderer":
        """One renderer per process and camera (a GL context costs ~0.1 s to create)."""
        key = tuple(intrinsics.to_dict().values())
        if key not in cls._shared:
            cls._shared[key] = cls(intrinsics)
        return cls._shared[key]

    @property
    def platform(self) -> str:
        return os.environ.get("PYOPENGL_PLATFORM", "egl")

    def _mesh(self, key: str, parts: Any) -> Any:
        if key not in self._meshes:
            if len(self._meshes) > 200:
                self._meshes.clear()
            self._meshes[key] = _pyrender_mesh(self.pyrender, parts())
        return self._meshes[key]

    def _scene(self, scene: Any) -> tuple[Any, dict[Any, int]]:
        """A pyrender scene of the mesh scene and {node: instance id}."""
        from sim_bridge.mesh.scene import shell_instance_ids

        pr = self.pyrender
        s = _ordered_scene_class()(ambient_light=np.full(3, AMBIENT), bg_color=np.zeros(3))
        ids: dict[Any, int] = {}
        for i, spk in enumerate(scene.loudspeakers):
            mesh = self._mesh(f"spk:{spk.source}", lambda src=spk.source: loudspeaker_local_meshes(src))
            ids[s.add(mesh, pose=spk.world_from_local(), name=f"{len(ids):05d}")] = i + 1
        for obj in scene.objects:
            key = obj.source if obj.source != "box" else f"box:{obj.size.tolist()}:{obj.color}"
            mesh = self._mesh(key, lambda o=obj: object_local_meshes(o))
            ids[s.add(mesh, pose=obj.world_from_local(), name=f"{len(ids):05d}")] = obj.instance_id
        if scene.shell is not None:
            key = repr(scene.shell.to_dict())
            if key not in self._shells:
                if len(self._shells) > 16:
                    self._shells.clear()
                self._shells[key] = shell_meshes(pr, scene.shell)
            for name, iid in shell_instance_ids(scene).items():
                ids[s.add(self._shells[key][name], name=f"{len(ids):05d}")] = iid
        for extra, iid in getattr(scene, "extra_meshes", lambda: [])():
            ids[s.add(extra, name=f"{len(ids):05d}")] = iid
        intr = self.intrinsics
        cam = pr.IntrinsicsCamera(intr.fx, intr.fy, intr.cx + 0.5, intr.cy + 0.5, znear=ZNEAR, zfar=ZFAR)
        s.add(cam, pose=scene.world_from_camera())
        return s, ids

    def _lights(self, s: Any, scene: Any) -> None:
        pr = self.pyrender
        rng = np.random.default_rng(int(getattr(scene, "light_seed", 0)))
        size = np.asarray(scene.room.size)
        key = pr.DirectionalLight(color=np.ones(3), intensity=float(scene.light_intensity) * 0.8)
        tilt = np.eye(4)
        tilt[:3, :3] = _look_rotation(np.array([rng.uniform(-0.5, 0.5), -1.0, rng.uniform(-0.5, 0.5)]))
        s.add(key, pose=tilt, name="light0")
        for k in range(2):
            p = np.eye(4)
            p[:3, 3] = [rng.uniform(0.2, 0.8) * size[0], 0.6 * size[1], rng.uniform(0.2, 0.8) * size[2]]
            s.add(pr.PointLight(color=np.ones(3), intensity=float(scene.light_intensity) * 1.5), pose=p,
                  name=f"light{k + 1}")

    def _seg(self, s: Any, ids: dict[Any, int]) -> tuple[np.ndarray, np.ndarray]:
        colours = {node: np.array([iid & 255, (iid >> 8) & 255, 0], dtype=np.uint8) for node, iid in ids.items()}
        colour, depth = self._renderer.render(s, flags=self.pyrender.RenderFlags.SEG, seg_node_map=colours)
        objects = colour[..., 0].astype(np.int32) + 256 * colour[..., 1].astype(np.int32)
        return objects, np.asarray(depth, dtype=np.float32)

    def render(self, scene: Any, with_rgb: bool = True) -> MeshFrame:
        """RGB (zeros when with_rgb is False), planar depth and instance ids of the scene."""
        with self._gl():
            return self._render(scene, with_rgb)

    @staticmethod
    def _key(s: Any, ids: dict[Any, int]) -> tuple:
        """What a segmentation pass depends on: every node's mesh (by identity), pose and id,
        and the camera's pose."""
        nodes = tuple((node.mesh, node.matrix.tobytes(), iid) for node, iid in ids.items())
        return nodes, s.get_pose(s.main_camera_node).tobytes()

    def _render(self, scene: Any, with_rgb: bool) -> MeshFrame:
        s, ids = self._scene(scene)
        key = self._key(s, ids)
        if self._last_seg is not None and self._last_seg[0] == key:
            objects, depth = self._last_seg[1]  # the scene sampler's visibility pass of this very scene
        else:
            objects, depth = self._seg(s, ids)
        self._last_seg = None
        n = len(scene.loudspeakers)
        instance = np.where((objects >= 1) & (objects <= n), objects, 0).astype(np.int32)
        if with_rgb:
            self._lights(s, scene)
            rgb, _ = self._renderer.render(s, flags=self.pyrender.RenderFlags.NONE)
            rgb = np.ascontiguousarray(rgb[..., :3])
        else:
            rgb = np.zeros((*depth.shape, 3), np.uint8)
        return MeshFrame(rgb, depth, instance, objects)

    def visibility(self, scene: Any) -> tuple[MeshFrame, list[int]]:
        """render(scene, with_rgb=False) and pixels_alone for every loudspeaker, in one pyrender
        scene whose segmentation passes draw only the nodes in their map (removing meshes would
        free their GPU buffers and upload them again on the next render). The loudspeakers are
        rendered alone together in one pass; one whose screen box overlaps another's gets a
        pass of its own. The segmentation is kept for a render() of the same scene."""
        with self._gl():
            return self._visibility(scene)

    def _screen_box(self, node: Any) -> np.ndarray | None:
        """(u0, v0, u1, v1) pixel box of a node's mesh bounds, None when part of it is not in
        front of the camera (then its box is unknown: the caller renders it alone)."""
        pts = np.concatenate([prim.positions for prim in node.mesh.primitives])  # (Mesh.bounds needs numpy < 2)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        cam = transform_points(self._cam_from_world @ node.matrix, corners)
        if np.any(cam[:, 2] > -ZNEAR):
            return None
        u, v, _ = project(cam, self.intrinsics)
        return np.array([u.min() - 2, v.min() - 2, u.max() + 2, v.max() + 2])

    def _visibility(self, scene: Any) -> tuple[MeshFrame, list[int]]:
        s, ids = self._scene(scene)
        objects, depth = self._seg(s, ids)
        self._last_seg = (self._key(s, ids), (objects, depth))
        n = len(scene.loudspeakers)
        frame = MeshFrame(np.zeros((*depth.shape, 3), np.uint8), depth,
                          np.where((objects >= 1) & (objects <= n), objects, 0).astype(np.int32), objects)
        self._cam_from_world = np.linalg.inv(s.get_pose(s.main_camera_node))
        boxes = [(iid, self._screen_box(node)) for node, iid in ids.items() if 1 <= iid <= n]

        def overlaps(i: int) -> bool:
            return any(a is None or b is None or (a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])
                       for k, a in boxes if k == i for j, b in boxes if j != i)

        def seg_of(visible: set[int]) -> np.ndarray:  # a segmentation pass draws only its map's nodes
            return self._seg(s, {node: iid for node, iid in ids.items() if iid in visible})[0]

        alone = [0] * n
        together = [i + 1 for i in range(n) if not overlaps(i + 1)]
        if together:
            joint = seg_of(set(together))
            for iid in together:
                alone[iid - 1] = int(np.sum(joint == iid))
        for iid in (i + 1 for i in range(n) if overlaps(i + 1)):
            alone[iid - 1] = int(np.sum(seg_of({iid}) == iid))
        return frame, alone


def _look_rotation(direction: np.ndarray) -> np.ndarray:
    """A rotation whose -z axis points along `direction` (pyrender lights shine along -z)."""
    z = -direction / np.linalg.norm(direction)
    up = np.array([0.0, 0.0, 1.0]) if abs(z[1]) > 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def render(scene: Any, intrinsics: Intrinsics) -> MeshFrame:
    """RGB, depth and instance ids of a MeshScene (the procedural render()'s counterpart)."""
    return GLRenderer.shared(intrinsics).render(scene)
