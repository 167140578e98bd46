"""Convert Habitat semantic annotations (Replica, HM3D) into an importable home: a GLB with one
node per annotated object and the JSON sidecar of sim_bridge.mesh.import_scene.

Formats used (facts from the dataset READMEs, facebookresearch/Replica-Dataset README.md and
habitat-sim's semantic scene loaders):

* Replica: ``habitat/mesh_semantic.ply`` is a quad mesh (PLY, usually binary little endian)
  whose vertices carry x, y, z (+ colour) and whose faces carry ``vertex_indices`` (a list) and an
  integer ``object_id``; ``habitat/info_semantic.json`` holds ``{"classes": [{"id", "name"}],
  "objects": [{"id", "class_id", "class_name", ...}]}``. Replica is z up.
* HM3D: ``*.semantic.glb`` encodes each object as a flat colour and ``*.semantic.txt`` maps it:
  a header line, then ``id,HEXCOLOR,"category",region`` per object. HM3D-semantics v0.2 paints
  the colours into textures, not vertices; a face takes the texel under its centroid's UV (or
  its first vertex's colour where the GLB has vertex colours). A face straddling two objects
  in the texture goes whole to the object under its centroid: object borders are jagged by up
  to one triangle. Textures must be ones Pillow decodes (PNG/JPEG; a KTX2/Basis-compressed
  texture is not read, and its faces end up "unknown"). glTF is y up.

The output is y up in metres with the main floor at y = 0 and the bounding box starting at
x = z = 0 (the frame import_scene and its samplers assume). The sidecar gives no camera and no
loudspeakers, so every generated sample places them anew (import_scene.sample_in_home).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

CATEGORY_TABLE: tuple[tuple[str, str, str], ...] = (
    # (keyword(s) that must all appear as words of the class name, category, material label of
    #  config/materials_mesh.json); first match wins, so specific words precede generic ones.
    ("plug", "fixture", "plastic"), ("switch", "fixture", "plastic"), ("vent", "fixture", "metal"),
    ("rug", "rug", "carpet"), ("mat", "rug", "carpet"), ("carpet", "rug", "carpet"),
    ("curtain", "curtain", "fabric"), ("blind", "curtain", "fabric"), ("blinds", "curtain", "fabric"),
    ("window", "window", "glass"), ("mirror", "window", "glass"), ("door", "door", "wood"),
    ("sofa", "sofa", "fabric"), ("couch", "sofa", "fabric"), ("cushion", "sofa", "fabric"),
    ("pillow", "sofa", "fabric"), ("comforter", "bed", "fabric"), ("blanket", "bed", "fabric"),
    ("bed", "bed", "fabric"), ("chair", "chair", "wood"), ("stool", "chair", "wood"), ("bench", "chair", "wood"),
    ("seating", "chair", "fabric"),
    ("cabinet", "cabinet", "wood"), ("wardrobe", "cabinet", "wood"), ("drawers", "cabinet", "wood"),
    ("dresser", "cabinet", "wood"), ("nightstand", "cabinet", "wood"), ("shelf", "shelf", "wood"),
    ("bookshelf", "shelf", "wood"), ("book", "shelf", "wood"), ("lamp", "lamp", "metal"),
    ("light", "lamp", "metal"), ("counter", "table", "wood"),
    ("table", "table", "wood"), ("desk", "table", "wood"),
    ("plant", "plant", "foliage"), ("flower", "plant", "foliage"), ("tv", "tv", "plastic"),
    ("monitor", "tv", "plastic"),
    ("screen", "tv", "plastic"), ("computer", "tv", "plastic"),
    ("speaker", "audio", "plastic"), ("refrigerator", "appliance", "metal"), ("fridge", "appliance", "metal"),
    ("microwave", "appliance", "metal"), ("oven", "appliance", "metal"), ("stove", "appliance", "metal"),
    ("sink", "appliance", "metal"), ("toilet", "appliance", "plastic"), ("bathtub", "appliance", "plastic"),
    ("bin", "bin", "plastic"), ("basket", "bin", "plastic"), ("box", "box", "wood"),
    ("person", "person", "human"), ("picture", "picture", "wood"), ("frame", "picture", "wood"),
    ("ceiling", "ceiling", "plaster"), ("floor", "floor", "parquet"), ("stair", "floor", "parquet"),
    ("wall", "wall", "plaster"), ("beam", "wall", "plaster"), ("column", "wall", "plaster"),
)
"""Habitat class names (Replica's 88 classes, HM3D's free-text categories) -> the project's
semantic category and acoustic material. Unmatched names keep their own name as category with
material "default" (plaster)."""

UP_AXES = ("y", "z")


def classify(class_name: str) -> tuple[str, str]:
    """(category, material) of a Habitat class name by CATEGORY_TABLE."""
    words = set(re.findall(r"[a-z]+", class_name.lower()))
    words |= {w[:-1] for w in words if w.endswith("s")}  # plurals: "books", "cushions"
    for key, category, material in CATEGORY_TABLE:
        if key in words:
            return category, material
    return (class_name.strip().lower() or "unknown"), "default"


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray], dict[str, np.ndarray]]:
    """(vertices (V, 3), vertex colours (V, 3) uint8 or None, faces (each an index array),
    per-face scalar properties) of an ASCII or binary PLY. Faces of one size (Replica's quads)
    are read in one numpy pass; mixed sizes fall back to a loop."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    body = data[data.index(b"\n", end) + 1:]
    fmt, elements = "ascii", []
    types = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
             "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
             "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}
    for line in data[:end].decode("ascii", "replace").splitlines():
        tok = line.split()
        if tok[:1] == ["format"]:
            fmt = tok[1]
        elif tok[:1] == ["element"]:
            elements.append((tok[1], int(tok[2]), []))
        elif tok[:1] == ["property"]:
            prop = ("list", types[tok[2]], types[tok[3]], tok[4]) if tok[1] == "list" else (types[tok[1]], tok[2])
            elements[-1][2].append(prop)
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    out: dict[str, Any] = {}
    if order is None:  # ascii
        rows = iter(body.decode("ascii").split("\n"))
        for name, count, props in elements:
            recs = [next(rows).split() for _ in range(count)]
            out[name] = _ascii_element(recs, props)
    else:
        pos = 0
        for name, count, props in elements:
            out[name], pos = _binary_element(body, pos, count, props, order)
    v = out["vertex"]
    verts = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    colours = (np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
               if {"red", "green", "blue"} <= set(v) else None)
    f = out.get("face", {})
    key = next((k for k in ("vertex_indices", "vertex_index") if k in f), None)
    if key is None:
        raise ValueError(f"{path}: no face element with vertex_indices")
    faces = f.pop(key)
    return verts, colours, faces, f


def _ascii_element(recs: list[list[str]], props: list[tuple]) -> dict[str, Any]:
    cols: dict[str, list] = {p[-1]: [] for p in props}
    for rec in recs:
        k = 0
        for p in props:
            if p[0] == "list":
                n = int(rec[k])
                cols[p[-1]].append(np.array(rec[k + 1:k + 1 + n], dtype=np.int64))
                k += 1 + n
            else:
                cols[p[-1]].append(float(rec[k]))
                k += 1
    return {n: (c if props[i][0] == "list" else np.asarray(c)) for i, (n, c) in enumerate(cols.items())}


def _binary_element(body: bytes, pos: int, count: int, props: list[tuple], order: str) -> tuple[dict[str, Any], int]:
    if not any(p[0] == "list" for p in props):
        dt = np.dtype([(p[1], order + p[0]) for p in props])
        arr = np.frombuffer(body, dtype=dt, count=count, offset=pos)
        return {p[1]: arr[p[1]] for p in props}, pos + dt.itemsize * count
    # Try "every list has the length of the first one" (quads or triangles throughout).
    fields, k = [], pos
    for p in props:
        if p[0] == "list":
            n = int(np.frombuffer(body, dtype=order + p[1], count=1, offset=k)[0])
            size = np.dtype(p[1]).itemsize + n * np.dtype(p[2]).itemsize
            fields += [(p[3] + "#n", order + p[1]), (p[3], order + p[2], (n,))]
            k += size
        else:
            fields.append((p[1], order + p[0]))
            k += np.dtype(p[0]).itemsize
    dt = np.dtype(fields)
    if pos + dt.itemsize * count <= len(body):
        arr = np.frombuffer(body, dtype=dt, count=count, offset=pos)
        if all(np.all(arr[p[3] + "#n"] == arr[p[3]].shape[1]) for p in props if p[0] == "list"):
            return ({(p[3] if p[0] == "list" else p[1]): np.asarray(arr[p[3] if p[0] == "list" else p[1]])
                     for p in props}, pos + dt.itemsize * count)
    cols: dict[str, list] = {p[-1]: [] for p in props}
    for _ in range(count):  # mixed polygon sizes
        for p in props:
            if p[0] == "list":
                n = int(np.frombuffer(body, dtype=order + p[1], count=1, offset=pos)[0])
                pos += np.dtype(p[1]).itemsize
                cols[p[3]].append(np.frombuffer(body, dtype=order + p[2], count=n, offset=pos).astype(np.int64))
                pos += n * np.dtype(p[2]).itemsize
            else:
                cols[p[1]].append(np.frombuffer(body, dtype=order + p[0], count=1, offset=pos)[0])
                pos += np.dtype(p[0]).itemsize
    return {n: (c if any(p[0] == "list" and p[3] == n for p in props) else np.asarray(c))
            for n, c in cols.items()}, pos


def _triangulate(faces: Any) -> tuple[np.ndarray, np.ndarray]:
    """(triangles (T, 3), index of the polygon each came from) by fanning every polygon."""
    if isinstance(faces, np.ndarray) and faces.ndim == 2:
        n = faces.shape[1]
        tris = np.concatenate([faces[:, [0, k, k + 1]] for k in range(1, n - 1)])
        return tris.astype(np.int64), np.tile(np.arange(len(faces)), n - 2)
    tris, src = [], []
    for i, f in enumerate(faces):
        for k in range(1, len(f) - 1):
            tris.append((f[0], f[k], f[k + 1]))
            src.append(i)
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3), np.asarray(src, dtype=np.int64)


def _to_y_up(verts: np.ndarray, up: str) -> np.ndarray:
    """z-up (Replica) to y-up by a +90 degree turn about x: (x, y, z) -> (x, z, -y)."""
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {UP_AXES}, got {up!r}")
    return verts if up == "y" else np.stack([verts[:, 0], verts[:, 2], -verts[:, 1]], axis=1)


def write_home(out: str | Path, verts: np.ndarray, colours: np.ndarray | None, tris: np.ndarray,
               labels: np.ndarray, names: dict[int, str], source: dict[str, Any]) -> dict[str, Any]:
    """Write OUT (.glb) with one node per label and OUT.json (the sidecar); returns the sidecar.
    verts are y up; the scene is moved so the floor (lowest decile of "floor" faces, else the
    lowest vertex) is y = 0 and the bounding box starts at x = z = 0."""
    import trimesh

    out = Path(out)
    if out.suffix.lower() != ".glb":
        raise ValueError(f"{out}: the converter writes a .glb")
    cats = {lab: classify(names.get(int(lab), "unknown")) for lab in np.unique(labels)}
    floor_tris = np.isin(labels, [lab for lab, c in cats.items() if c[0] == "floor"])
    floor_y = (float(np.percentile(verts[tris[floor_tris]][..., 1], 10)) if floor_tris.any()
               else float(verts[:, 1].min()))
    verts = verts - np.array([verts[:, 0].min(), floor_y, verts[:, 2].min()])
    scene = trimesh.Scene()
    instances = {}
    for lab, (category, material) in sorted(cats.items()):
        sel = tris[labels == lab]
        used, local = np.unique(sel, return_inverse=True)
        mesh = trimesh.Trimesh(verts[used], local.reshape(-1, 3), process=False,
                               vertex_colors=None if colours is None else colours[used])
        name = f"obj_{int(lab):05d}_{re.sub(r'[^a-z0-9]+', '-', names.get(int(lab), 'unknown').lower()).strip('-')}"
        scene.add_geometry(mesh, node_name=name, geom_name=name)
        instances[name] = {"category": category, "material": material, "habitat_id": int(lab),
                           "habitat_class": names.get(int(lab), "unknown")}
    out.parent.mkdir(parents=True, exist_ok=True)
    scene.export(str(out))
    sidecar = {"instances": instances, "converted_from": source}
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1))
    return sidecar


def convert_replica(replica_dir: str | Path, out: str | Path, up: str = "z") -> dict[str, Any]:
    """A Replica scene folder (its habitat/mesh_semantic.ply + info_semantic.json) -> OUT.glb +
    OUT.json. Faces whose object_id has no entry become category "unknown"."""
    root = Path(replica_dir)
    ply, info = root / "habitat" / "mesh_semantic.ply", root / "habitat" / "info_semantic.json"
    for p in (ply, info):
        if not p.is_file():
            raise ValueError(f"{replica_dir}: no {p.relative_to(root)} (a Replica scene folder has habitat/)")
    try:
        meta = json.loads(info.read_text())
        classes = {int(c["id"]): str(c["name"]) for c in meta.get("classes", [])}
        names = {int(o["id"]): str(o.get("class_name") or classes.get(int(o["class_id"]), "unknown"))
                 for o in meta["objects"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{info}: not a Habitat info_semantic.json ({type(e).__name__}: {e})") from None
    verts, colours, faces, props = read_ply(ply)
    if "object_id" not in props:
        raise ValueError(f"{ply}: faces carry no object_id")
    tris, src = _triangulate(faces)
    labels = np.asarray(props["object_id"]).astype(np.int64)[src]
    return write_home(out, _to_y_up(verts, up), colours, tris, labels, names,
                      {"dataset": "Replica", "mesh": str(ply), "info": str(info), "up": up})


def read_hm3d_txt(path: str | Path) -> dict[int, tuple[int, str]]:
    """HM3D semantic.txt: packed RGB colour -> (object id, category); the header is skipped."""
    table = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r'\s*(\d+)\s*,\s*([0-9A-Fa-f]{6})\s*,\s*"([^"]*)"', line)
        if m:
            table[int(m.group(2), 16)] = (int(m.group(1)), m.group(3))
    if not table:
        raise ValueError(f"{path}: no `id,HEXCOLOR,\"category\",region` lines")
    return table


def _face_colours(mesh: Any) -> np.ndarray:
    """(F, 3) uint8 annotation colour per face: first vertex colour, or the texel at the centroid UV."""
    visual = mesh.visual
    if visual.kind == "vertex":
        return np.asarray(visual.vertex_colors)[mesh.faces[:, 0], :3]
    material = getattr(visual, "material", None)
    image = getattr(material, "baseColorTexture", None)
    image = getattr(material, "image", None) if image is None else image
    uv = getattr(visual, "uv", None)
    if image is not None and uv is not None:
        img = np.asarray(image.convert("RGB"))
        c = np.asarray(uv)[mesh.faces].mean(axis=1) % 1.0
        cols = np.clip((c[:, 0] * img.shape[1]).astype(int), 0, img.shape[1] - 1)
        rows = np.clip(((1.0 - c[:, 1]) * img.shape[0]).astype(int), 0, img.shape[0] - 1)
        return img[rows, cols]
    colour = np.asarray(getattr(material, "baseColorFactor", None) or [0, 0, 0])[:3]
    return np.tile(np.asarray(colour, dtype=np.uint8), (len(mesh.faces), 1))


def convert_hm3d(semantic_glb: str | Path, semantic_txt: str | Path, out: str | Path, up: str = "y") -> dict[str, Any]:
    """An HM3D *.semantic.glb + *.semantic.txt -> OUT.glb + OUT.json. Colours not in the table
    (HM3D leaves some surfaces unannotated) become category "unknown" (label -1)."""
    import trimesh

    table = read_hm3d_txt(semantic_txt)
    try:
        loaded = trimesh.load(str(semantic_glb), force="scene", process=False)
    except Exception as e:  # trimesh raises many kinds for a broken file
        raise ValueError(f"{semantic_glb}: not a readable GLB ({type(e).__name__}: {e})") from None
    verts, tris, labels, base = [], [], [], 0
    for node in sorted(loaded.graph.nodes_geometry):
        transform, geom = loaded.graph[node]
        mesh = loaded.geometry[geom]
        if not hasattr(mesh, "faces"):
            continue
        rgb = _face_colours(mesh).astype(np.int64)
        packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        labels.append(np.array([table.get(int(p), (-1, ""))[0] for p in packed], dtype=np.int64))
        v = np.asarray(mesh.vertices, dtype=np.float64)
        verts.append(v @ transform[:3, :3].T + transform[:3, 3])
        tris.append(np.asarray(mesh.faces, dtype=np.int64) + base)
        base += len(v)
    if not verts:
        raise ValueError(f"{semantic_glb}: no geometry")
    names = {oid: cat for oid, cat in table.values()}
    names[-1] = "unknown"
    return write_home(out, _to_y_up(np.concatenate(verts), up), None, np.concatenate(tris), np.concatenate(labels),
                      names, {"dataset": "HM3D", "mesh": str(semantic_glb), "table": str(semantic_txt), "up": up})
