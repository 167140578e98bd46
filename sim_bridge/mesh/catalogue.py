"""Index of Debian's `sweethome3d-furniture` models: semantic category, size, licence, split.

The package ships five Sweet Home 3D furniture libraries (.sh3f zip archives) under
/usr/share/sweethome3d/furniture: textured OBJ models (units cm, y up, front towards +z) and a
PluginFurnitureCatalog.properties per archive naming each model, its catalogue category,
width/depth/height (cm, the size Sweet Home 3D scales the model to), an optional
modelRotation and its creator. Licences are per archive (CC0 or CC-BY 3.0: see ATTRIBUTION).

Semantic categories come from the model names (first matching rule of _RULES). Splits are per
model, stratified by category like the loudspeaker shapes and voices: in each category the
models are ordered by a hash of their id; with 3 or more, the last is test and the one before
it val, the rest 80/10/10 by rank -- so unseen furniture kinds exist at test time wherever a
category allows it.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

FURNITURE_DIR = Path(os.environ.get("JAEGER_FURNITURE_DIR", "/usr/share/sweethome3d/furniture"))
SPLITS = ("train", "val", "test")
ARCHIVE_LICENCES = {
    "BlendSwap-CC-0.sh3f": "CC0-1.0",
    "BlendSwap-CC-BY.sh3f": "CC-BY-3.0",
    "KatorLegaz.sh3f": "CC-BY-3.0-US",
    "Reallusion.sh3f": "CC-BY-3.0-US",
    "Scopia.sh3f": "CC-BY-3.0",
}
SKIPPED_SH3D_CATEGORIES = ("Exterior", "Vehicles", "Staircases", "Doors and windows", "Bathroom")
MAX_FACES = 60_000
"""Heavier models are left out when loaded (a few plants have 170k faces; they cost render and
acoustic time and add nothing at 672x378)."""

# (semantic category, name regex, acoustic material category). First match wins.
_RULES: tuple[tuple[str, str, str], ...] = (
    ("loudspeaker", r"\bspeaker\b", "wood"),
    ("audio", r"amplifier|stereo|mp3 (station|base)|radio|dvd player", "plastic"),
    ("tv", r"^(wall flat )?tv( 16:9)?$|television$|^screen$|video projector|imac", "glass"),
    ("plant", r"plant|ficus|yucca|bamboo|cactus|bonsai|spathiphyllum|orchid|flowers|tulips|lily|"
              r"christmas tree|peach blossom|flower box", "foliage"),
    ("lamp", r"lamp|light|chandelier|lantern", "metal"),
    ("bin", r"\bbin\b|trash|dustbin|basket", "plastic"),
    ("box", r"\bbox\b|crate|cardboard|suitcase|gift|chest$|trunck|barrel", "wood"),
    ("person", r"^(sitting |holding |lying down )?(male|female|boy|girl)$|mannequin", "human"),
    ("sofa", r"sofa|couch|futon|day bed", "fabric"),
    ("bed", r"\bbed\b|crib", "fabric"),
    ("chair", r"chair|stool|bench|puff|ottoman", "fabric"),
    ("table", r"table|desk|island", "wood"),
    ("shelf", r"shel(f|ves)|bookcase", "wood"),
    ("cabinet", r"cabinet|wardrobe|dresser|cupboard|drawers|stand|vanity|safe|locker", "wood"),
    ("appliance", r"fridge|refrigerator|washing|dryer|oven|stove|microwave|radiator|piano|aquarium|"
                  r"freezer|cooker|water (cooler|heater)|boiler|treadmill|fireplace", "metal"),
)
SEMANTIC_CATEGORIES = tuple(r[0] for r in _RULES)


@dataclass(frozen=True)
class CatalogueModel:
    """One furniture model of the package (metadata only; load_model reads the mesh)."""

    model_id: str
    name: str
    category: str
    material: str
    sh3d_category: str
    archive: str
    path: str
    size_m: tuple[float, float, float]
    """(width x, height y, depth z) Sweet Home 3D scales the model to, metres."""
    rotation: tuple[float, ...] | None
    creator: str
    licence: str
    split: str

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "name": self.name, "category": self.category,
                "archive": self.archive, "path": self.path, "creator": self.creator,
                "licence": self.licence, "split": self.split}


def _unescape(value: str) -> str:
    """Java .properties escapes (\\uXXXX, \\:, \\=) used by the catalogues."""
    value = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), value)
    return re.sub(r"\\(.)", r"\1", value)


def _parse_properties(text: str) -> dict[int, dict[str, str]]:
    """{index: {key: value}} of the `key#index=value` lines."""
    items: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)#(\d+)\s*=\s*(.*)$", line.strip())
        if m:
            items.setdefault(int(m.group(2)), {})[m.group(1)] = _unescape(m.group(3))
    return items


def classify(name: str, sh3d_category: str) -> tuple[str, str] | None:
    """(semantic category, material category) of a model, None when it is not indoor furniture."""
    if sh3d_category in SKIPPED_SH3D_CATEGORIES:
        return None
    low = name.lower()
    if sh3d_category == "Characters":
        return ("person", "human") if re.search(_RULES[7][1], low) else None
    for category, pattern, material in _RULES:
        if category != "person" and re.search(pattern, low):
            return category, material
    return None


def _rank_key(model_id: str) -> str:
    return hashlib.sha1(model_id.encode()).hexdigest()


def _assign_splits(by_category: dict[str, list[str]]) -> dict[str, str]:
    split: dict[str, str] = {}
    for ids in by_category.values():
        ordered = sorted(ids, key=_rank_key)
        n = len(ordered)
        for rank, mid in enumerate(ordered):
            if n >= 3 and rank == n - 1:
                split[mid] = "test"
            elif n >= 3 and rank == n - 2:
                split[mid] = "val"
            else:
                frac = (rank + 0.5) / n
                split[mid] = "train" if frac < 0.8 else "val" if frac < 0.9 else "test"
    return split


@lru_cache(maxsize=4)
def load_catalogue(furniture_dir: str | None = None) -> tuple[CatalogueModel, ...]:
    """Every indoor model of the installed package, sorted by id. Empty when not installed."""
    folder = Path(furniture_dir) if furniture_dir else FURNITURE_DIR
    raw: list[dict[str, Any]] = []
    for archive in sorted(ARCHIVE_LICENCES):
        path = folder / archive
        if not path.is_file():
            continue
        with zipfile.ZipFile(path) as z:
            text = z.read("PluginFurnitureCatalog.properties").decode("utf-8", "replace")
        for item in _parse_properties(text).values():
            kind = classify(item.get("name", ""), item.get("category", ""))
            if kind is None or item.get("doorOrWindow") == "true":
                continue
            rot = tuple(float(v) for v in item["modelRotation"].split()) if "modelRotation" in item else None
            raw.append({"model_id": item["id"], "name": item["name"], "category": kind[0], "material": kind[1],
                        "sh3d_category": item["category"], "archive": archive, "path": item["model"].lstrip("/"),
                        "size_m": tuple(float(item[k]) / 100.0 for k in ("width", "height", "depth")),
                        "rotation": rot, "creator": item.get("creator", ""), "licence": ARCHIVE_LICENCES[archive]})
    by_category: dict[str, list[str]] = {}
    for r in raw:
        by_category.setdefault(r["category"], []).append(r["model_id"])
    splits = _assign_splits(by_category)
    return tuple(sorted((CatalogueModel(split=splits[r["model_id"]], **r) for r in raw), key=lambda m: m.model_id))


def models(split: str, category: str, furniture_dir: str | None = None) -> list[CatalogueModel]:
    """Models of one split and semantic category (sorted by id)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    return [m for m in load_catalogue(furniture_dir) if m.split == split and m.category == category]


@dataclass
class ModelMesh:
    """A loaded model in metres, local frame: floor centre of its bounding box at the origin, y
    up, front +z; `parts` keep their own visuals (colours or textures) for the renderer."""

    model: CatalogueModel
    parts: list[Any]
    """trimesh.Trimesh parts."""

    def bounds(self) -> np.ndarray:
        """(2, 3) local axis-aligned bounds."""
        b = np.array([p.bounds for p in self.parts])
        return np.stack([b[:, 0].min(axis=0), b[:, 1].max(axis=0)])


class ModelTooHeavy(ValueError):
    """A model over MAX_FACES."""


CACHE_FORMAT = 1
"""Bump when load_model's output changes: parsed models cached on disk under an older number are
not used."""


def model_cache_dir() -> Path | None:
    """Where parsed models are kept between processes: $JAEGER_MODEL_CACHE ("" or "off": no disk
    cache), else $XDG_CACHE_HOME/jaeger_ros/furniture (~/.cache/...). Parsing an OBJ costs
    0.1-0.3 s and every generator worker and live simulator would pay it again per model."""
    env = os.environ.get("JAEGER_MODEL_CACHE")
    if env is not None:
        return Path(env) if env.strip() and env.strip().lower() != "off" else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaeger_ros" / "furniture"


def _cache_file(model: CatalogueModel, folder: Path) -> Path | None:
    """The model's cache file, keyed by what its parse depends on (archive size and time,
    trimesh version, CACHE_FORMAT), so a new package or library never reads a stale entry."""
    import trimesh

    root = model_cache_dir()
    archive = folder / model.archive
    if root is None or not archive.is_file():
        return None
    st = archive.stat()
    key = repr((str(archive.resolve()), st.st_size, st.st_mtime_ns, model.path, model.rotation, model.size_m,
                trimesh.__version__, CACHE_FORMAT))
    return root / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.pkl"


def _read_cached(path: Path | None) -> list[Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            return pickle.load(f)  # our own cache folder, written by _write_cached below
    except Exception:  # a truncated or foreign file: parse again (and overwrite it)
        return None


def _write_cached(path: Path | None, parts: list[Any]) -> None:
    """Best effort: a read-only home or a full disk only costs the next process a parse."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(parts, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)  # atomic: parallel workers never read a half-written file
    except OSError:
        pass


@lru_cache(maxsize=8)
def _archive(path: Path) -> tuple[zipfile.ZipFile, frozenset[str]]:
    """An open furniture archive and its member names (reading a 1000-entry central directory
    costs ~40 ms, once per process instead of once per model)."""
    z = zipfile.ZipFile(path)
    return z, frozenset(z.namelist())


@lru_cache(maxsize=128)
def load_model(model: CatalogueModel, furniture_dir: str | None = None) -> ModelMesh:
    """Read a model's OBJ (and its MTL/textures) out of its archive, rotated by modelRotation and
    scaled to the catalogue size as Sweet Home 3D does. Cached per process, and its parsed
    parts on disk (model_cache_dir)."""
    folder = Path(furniture_dir) if furniture_dir else FURNITURE_DIR
    cache = _cache_file(model, folder)
    parts = _read_cached(cache)
    if parts is None:
        parts = _parse_model(model, folder)
        _write_cached(cache, parts)
    faces = sum(len(p.faces) for p in parts)
    if not parts or faces > MAX_FACES:
        raise ModelTooHeavy(f"{model.model_id}: {faces} faces (limit {MAX_FACES})")
    return ModelMesh(model, parts)


def _parse_model(model: CatalogueModel, folder: Path) -> list[Any]:
    """The model's trimesh parts in metres, rotated and scaled (load_model's uncached work)."""
    import trimesh

    z, names = _archive(folder / model.archive)
    base = model.path.rsplit("/", 1)[0]

    class _Resolver(trimesh.resolvers.Resolver):
        """MTL and texture files beside the OBJ inside the archive (trimesh ignores a
        resolver that is not a Resolver)."""

        def __init__(self) -> None:
            pass

        def get(self, name: str) -> bytes:
            for candidate in (f"{base}/{name}", f"{base}/{name.replace(chr(92), '/').rsplit('/', 1)[-1]}"):
                if candidate in names:
                    return z.read(candidate)
            raise KeyError(name)

        def keys(self) -> list[str]:
            return [n for n in names if n.startswith(base + "/")]

        def namespaced(self, namespace: str) -> "_Resolver":
            return self

        def write(self, name: str, data: bytes) -> None:
            raise OSError("the furniture archives are read-only")

    loaded = trimesh.load(io.BytesIO(z.read(model.path)), file_type="obj", resolver=_Resolver(),
                          force="scene", process=False)
    parts = [g for g in loaded.dump() if len(g.faces)] if hasattr(loaded, "dump") else [loaded]
    if not parts or sum(len(p.faces) for p in parts) > MAX_FACES:
        return parts  # load_model refuses it (cached as it is: no second parse)
    transform = np.eye(4)
    if model.rotation is not None:
        transform[:3, :3] = np.asarray(model.rotation, dtype=float).reshape(3, 3)
    for p in parts:
        p.apply_transform(transform)
    lo = np.min([p.bounds[0] for p in parts], axis=0)
    hi = np.max([p.bounds[1] for p in parts], axis=0)
    scale = np.asarray(model.size_m) / np.maximum(hi - lo, 1e-6)
    shift = -np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2]) * scale
    fit = np.diag([*scale, 1.0])
    fit[:3, 3] = shift
    for p in parts:
        p.apply_transform(fit)
    return parts
