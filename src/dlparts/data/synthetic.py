"""Embedded default point-cloud datasets, generated deterministically from a seed and cached (nothing downloaded).

- :class:`Shapes` (classification, like ModelNet): 12 classes of parametric objects (``SHAPE_CLASSES``), each sampled
  uniformly on its surface with random size, proportions, pose about the up axis (y, as ModelNet), noise and, for
  half the clouds, a missing region.  Primitives with random proportions overlap in simple statistics (a flat box and
  a table top, a long cylinder and a capsule), so telling them apart takes geometry.
- :class:`Parts` (part segmentation, ShapeNetPart conventions): the composite objects with a part label per point,
  numbered globally (``PART_CLASSES``), an object category per cloud, ``parts_of_category``.
- :class:`Rooms` (semantic segmentation, S3DIS conventions): rooms with floor, walls, ceiling, beams, columns, doors,
  windows, boards, tables, chairs, sofas, bookcases and clutter, coloured per class and instance, z up, cut into
  1 m x 1 m blocks of 4096 points with xyz + rgb + normalized location (:func:`dlparts.data.s3dis.room_to_blocks`).

Each cloud is drawn from ``numpy.random.default_rng([seed, split, index])`` alone, so any subset is reproducible.
The arrays are generated once into ``<cache_root>/synthetic/<settings hash>/`` (env ``DLPARTS_CACHE``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from dlparts.data._cache import cache_file, load_npz, save_npz
from dlparts.data._threads import single_thread
from dlparts.data.meshes import Mesh, face_areas, sample_surface
from dlparts.data.splits import rng_for
from dlparts.errors import ConfigError

SPLITS = ("train", "val", "test")
SHAPE_CLASSES = ["sphere", "box", "cylinder", "cone", "torus", "pyramid", "capsule", "table", "chair", "lamp", "mug",
                 "airplane"]
PART_CATEGORIES = ["table", "chair", "lamp", "mug", "airplane"]
PART_CLASSES = ["table_top", "table_leg", "chair_seat", "chair_back", "chair_leg", "lamp_base", "lamp_pole",
                "lamp_shade", "mug_body", "mug_handle", "airplane_body", "airplane_wing", "airplane_tail"]
PARTS_OF_CATEGORY = {c: [i for i, p in enumerate(PART_CLASSES) if p.startswith(name + "_")]
                     for c, name in enumerate(PART_CATEGORIES)}
_VERSION = 2  # bump when generation changes, so old caches are not reused


# ------------------------------------------------------------------------------------------------ unit primitives
@lru_cache(maxsize=None)
def _unit(key: str) -> tuple[np.ndarray, np.ndarray]:
    """A primitive fitted to the cube ``[-0.5, 0.5]^3``, axis along y: ``(vertices [V, 3], faces [F, 3])``."""
    import trimesh.creation as tc

    z_to_y = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # rotation taking the z axis to y (row vectors)
    if key == "box":
        m = tc.box(extents=(1, 1, 1))
    elif key in ("cylinder", "open_cylinder"):
        m = tc.cylinder(radius=0.5, height=1.0, sections=24)
    elif key == "cone":
        m = tc.cone(radius=0.5, height=1.0, sections=24)
    elif key == "sphere":
        m = tc.icosphere(subdivisions=2, radius=0.5)
    elif key == "capsule":
        m = tc.capsule(height=1.0, radius=0.3, count=(12, 12))
    elif key.startswith("torus"):
        m = tc.torus(major_radius=1.0, minor_radius=float(key[5:]), major_sections=24, minor_sections=12)
    elif key == "pyramid":
        v = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1.0]])
        f = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
        return _fit(v @ z_to_y, f)
    else:
        raise ConfigError(f"unknown primitive {key!r}")
    v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
    if key == "open_cylinder":
        top = v[f].mean(axis=1)[:, 2] > 0.49  # [F] faces of the top cap
        f = f[~top]
    if key.startswith("torus"):
        return _fit(v, f, keep_ratio=True)  # ring in the xy plane: a handle when upright
    return _fit(v @ z_to_y, f)


def _fit(v: np.ndarray, f: np.ndarray, keep_ratio: bool = False) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = v.min(axis=0), v.max(axis=0)
    size = (hi - lo).max() if keep_ratio else np.maximum(hi - lo, 1e-9)
    return (v - (lo + hi) / 2) / size, f


# A part: (primitive, size [3], centre [3], part label); composite builders return lists of them.
def _part(key, size, centre, label=0):
    return key, np.asarray(size, dtype=np.float64), np.asarray(centre, dtype=np.float64), label


def _legs(half_w: float, half_d: float, height: float, radius: float, label: int) -> list:
    return [_part("cylinder", (2 * radius, height, 2 * radius), (sx * half_w, height / 2, sz * half_d), label)
            for sx in (-1, 1) for sz in (-1, 1)]


def _table(rng) -> list:
    w, d, h, t = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2), rng.uniform(0.5, 0.9), rng.uniform(0.04, 0.08)
    top = "cylinder" if rng.random() < 0.3 else "box"
    r = rng.uniform(0.025, 0.05)
    return [_part(top, (w, t, d), (0, h + t / 2, 0), 0)] + _legs(w / 2 - 2 * r, d / 2 - 2 * r, h, r, 1)


def _chair(rng) -> list:
    w, d, h, t = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.07)
    back = rng.uniform(0.4, 0.7)
    r = rng.uniform(0.02, 0.035)
    return ([_part("box", (w, t, d), (0, h + t / 2, 0), 0),
             _part("box", (w, back, t), (0, h + t + back / 2, -d / 2 + t / 2), 1)]
            + _legs(w / 2 - r, d / 2 - r, h, r, 2))


def _lamp(rng) -> list:
    base_r, pole_h, shade_r = rng.uniform(0.15, 0.3), rng.uniform(0.6, 1.2), rng.uniform(0.15, 0.35)
    shade_h, base_h, pole_r = rng.uniform(0.15, 0.35), rng.uniform(0.03, 0.06), rng.uniform(0.015, 0.03)
    return [_part("cylinder", (2 * base_r, base_h, 2 * base_r), (0, base_h / 2, 0), 0),
            _part("cylinder", (2 * pole_r, pole_h, 2 * pole_r), (0, base_h + pole_h / 2, 0), 1),
            _part("cone", (2 * shade_r, shade_h, 2 * shade_r), (0, base_h + pole_h + shade_h / 2 - 0.05, 0), 2)]


def _mug(rng) -> list:
    r, h = rng.uniform(0.25, 0.4), rng.uniform(0.5, 0.9)
    ring = rng.uniform(0.25, 0.4) * h
    thick = rng.choice([0.15, 0.25])
    return [_part("open_cylinder", (2 * r, h, 2 * r), (0, h / 2, 0), 0),
            _part(f"torus{thick}", (2 * ring, 2 * ring, 2 * ring), (r + 0.6 * ring, h / 2, 0), 1)]


def _airplane(rng) -> list:
    length, radius = rng.uniform(1.5, 2.2), rng.uniform(0.08, 0.14)
    span, chord, fin = rng.uniform(1.2, 2.0), rng.uniform(0.2, 0.35), rng.uniform(0.2, 0.35)
    rear = -length / 2 + chord / 2
    return [_part("capsule", (length, 2 * radius, 2 * radius), (0, 0, 0), 0),
            _part("box", (chord, 0.03, span), (rng.uniform(-0.1, 0.15) * length, 0, 0), 1),
            _part("box", (chord * 0.8, fin, 0.03), (rear, radius + fin / 2, 0), 2),
            _part("box", (chord * 0.7, 0.03, span * 0.35), (rear, 0.02, 0), 2)]


def _primitive(key: str, lo: float = 0.4, hi: float = 1.0):
    def build(rng) -> list:
        sx, sy = rng.uniform(lo, hi, size=2)
        sz = sx if key in ("sphere", "cylinder", "cone", "capsule") and rng.random() < 0.5 else rng.uniform(lo, hi)
        return [_part(key, (sx, sy, sz), (0, 0, 0))]
    return build


def _torus(rng) -> list:
    key = f"torus{rng.choice([0.15, 0.25, 0.35])}"
    return [_part(key, (1.0, 1.0, rng.uniform(0.6, 1.0)), (0, 0, 0))]


def _capsule(rng) -> list:
    r = rng.uniform(0.25, 0.45)
    return [_part("capsule", (r, rng.uniform(0.8, 1.3), r), (0, 0, 0))]


_BUILDERS = {"sphere": _primitive("sphere", 0.7, 1.0), "box": _primitive("box"), "cylinder": _primitive("cylinder"),
             "cone": _primitive("cone"), "torus": _torus, "pyramid": _primitive("pyramid"), "capsule": _capsule,
             "table": _table, "chair": _chair, "lamp": _lamp, "mug": _mug, "airplane": _airplane}


def _assemble(parts: list) -> tuple[Mesh, np.ndarray]:
    """One mesh of all parts and ``int64 [F]`` part labels of its faces."""
    verts, faces, labels, offset = [], [], [], 0
    for key, size, centre, label in parts:
        v, f = _unit(key)
        verts.append(v * size + centre)
        faces.append(f + offset)
        labels.append(np.full(len(f), label, dtype=np.int64))
        offset += len(v)
    mesh = Mesh(torch.from_numpy(np.concatenate(verts)).float(), torch.from_numpy(np.concatenate(faces)))
    return mesh, np.concatenate(labels)


def _object_cloud(rng: np.random.Generator, name: str, n: int, missing: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 [n, 6] xyz+normals, part labels int64 [n])`` of one random object, unit sphere, y up."""
    mesh, face_labels = _assemble(_BUILDERS[name](rng))
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sample = sample_surface(mesh, 2 * n, generator=gen)
    xyz, nrm = sample.points.double().numpy(), sample.normals.double().numpy()
    labels = face_labels[sample.face.numpy()]
    angle = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # about the up axis y (row vectors)
    xyz, nrm = xyz @ rot, nrm @ rot
    xyz = xyz - xyz.mean(axis=0)
    xyz /= np.linalg.norm(xyz, axis=1).max()
    keep = np.ones(len(xyz), dtype=bool)
    if missing:  # cut away a random ball around a surface point (occlusion / scanning holes)
        centre = xyz[rng.integers(len(xyz))]
        keep = np.linalg.norm(xyz - centre, axis=1) > rng.uniform(0.1, 0.3)
    order = rng.permutation(np.nonzero(keep)[0])
    idx = order[:n] if len(order) >= n else np.concatenate([order, rng.choice(order, n - len(order))])
    xyz = xyz[idx] + rng.normal(0, rng.uniform(0, 0.01), size=(n, 3))  # [n, 3] with sensor noise
    xyz -= xyz.mean(axis=0)
    xyz /= np.linalg.norm(xyz, axis=1).max()
    return np.concatenate([xyz, nrm[idx]], axis=1).astype(np.float32), labels[idx]


# ------------------------------------------------------------------------------------------------------- generation
def make_shapes(*, seed: int = 0, num_points: int = 1024, per_class: tuple[int, int, int] = (100, 20, 30),
                classes: list[str] | None = None, parts: bool = False) -> dict[str, np.ndarray]:
    """Arrays of every split: ``<split>_points float32 [M, N, 6]``, ``<split>_label int64 [M]`` and, with
    ``parts``, ``<split>_seg int64 [M, N]`` (global part numbers).  ``per_class`` = clouds per class in train, val,
    test.  Deterministic in ``seed``; not cached (see :class:`Shapes` / :class:`Parts`).
    """
    classes = classes or (PART_CATEGORIES if parts else SHAPE_CLASSES)
    out = {}
    for s, (split, count) in enumerate(zip(SPLITS, per_class)):
        points, labels, segs = [], [], []
        for c, name in enumerate(classes):
            for i in range(count):
                rng = rng_for(seed, s, c, i)
                cloud, part = _object_cloud(rng, name, num_points, missing=not parts and rng.random() < 0.5)
                points.append(cloud)
                labels.append(c)
                segs.append(np.asarray(PARTS_OF_CATEGORY[c])[part] if parts else part)
        out[f"{split}_points"] = np.stack(points) if points else np.zeros((0, num_points, 6), np.float32)
        out[f"{split}_label"] = np.asarray(labels, dtype=np.int64)
        if parts:
            out[f"{split}_seg"] = np.stack(segs) if segs else np.zeros((0, num_points), np.int64)
    return out


def _check(split: str, num_points: int, per_class) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if num_points < 1:
        raise ConfigError(f"num_points must be >= 1, got {num_points}")
    if len(per_class) != 3 or min(per_class) < 0:
        raise ConfigError(f"per_class must be three counts >= 0 (train, val, test), got {per_class}")


def _cached(kind: str, settings: dict, build) -> dict[str, np.ndarray]:
    path = cache_file("synthetic", {"kind": kind, "version": _VERSION, **settings}, f"{kind}.npz")
    arrays = load_npz(path)
    if arrays is None:
        with single_thread():
            arrays = build()
        save_npz(path, **arrays)
    return arrays


class Shapes(Dataset):
    """Embedded classification dataset: items ``{"points": float32 [N, 3 or 6], "label": int64 []}``.

    ``per_class`` clouds per class for (train, val, test); ``tiny`` = 4/2/2 clouds of 128 points (for tests).
    """

    def __init__(self, split: str = "train", *, seed: int = 0, num_points: int = 1024,
                 per_class: tuple[int, int, int] = (100, 20, 30), normals: bool = False, transform=None,
                 tiny: bool = False):
        if tiny:
            num_points, per_class = 128, (4, 2, 2)
        _check(split, num_points, per_class)
        settings = {"seed": seed, "num_points": num_points, "per_class": list(per_class)}
        arrays = _cached("shapes", settings, lambda: make_shapes(seed=seed, num_points=num_points,
                                                                 per_class=tuple(per_class)))
        self.points = torch.from_numpy(arrays[f"{split}_points"][:, :, :6 if normals else 3].copy())
        self.labels = torch.from_numpy(arrays[f"{split}_label"])
        self.classes, self.split, self.transform = list(SHAPE_CLASSES), split, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"points": self.points[i], "label": self.labels[i]}
        return self.transform(item) if self.transform else item


class Parts(Dataset):
    """Embedded part-segmentation dataset (ShapeNetPart conventions): items ``{"points": float32 [N, 3 or 6],
    "seg": int64 [N], "category": int64 []}``; ``classes`` are the global part names, ``categories`` the objects.
    """

    def __init__(self, split: str = "train", *, seed: int = 0, num_points: int = 1024,
                 per_class: tuple[int, int, int] = (120, 20, 40), normals: bool = False, transform=None,
                 tiny: bool = False):
        if tiny:
            num_points, per_class = 128, (4, 2, 2)
        _check(split, num_points, per_class)
        settings = {"seed": seed, "num_points": num_points, "per_class": list(per_class)}
        arrays = _cached("parts", settings, lambda: make_shapes(seed=seed, num_points=num_points,
                                                                per_class=tuple(per_class), parts=True))
        self.points = torch.from_numpy(arrays[f"{split}_points"][:, :, :6 if normals else 3].copy())
        self.category = torch.from_numpy(arrays[f"{split}_label"])
        self.seg = torch.from_numpy(arrays[f"{split}_seg"])
        self.classes, self.categories = list(PART_CLASSES), list(PART_CATEGORIES)
        self.parts_of_category = {c: list(p) for c, p in PARTS_OF_CATEGORY.items()}
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.category)

    def __getitem__(self, i: int) -> dict:
        item = {"points": self.points[i], "seg": self.seg[i], "category": self.category[i]}
        return self.transform(item) if self.transform else item


# ------------------------------------------------------------------------------------------------------------ rooms
ROOM_CLASSES = ["ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase",
                "board", "clutter"]  # S3DIS's 13 classes, same order
_ROOM_COLOURS = {"ceiling": (200, 200, 195), "floor": (120, 100, 80), "wall": (190, 185, 170), "beam": (170, 170, 160),
                 "column": (180, 175, 165), "window": (140, 170, 200), "door": (140, 90, 50),
                 "table": (160, 120, 70), "chair": (60, 60, 70), "sofa": (90, 40, 40), "bookcase": (110, 80, 50),
                 "board": (235, 235, 235), "clutter": (100, 140, 90)}


def _furniture(rng, cls: str, x: float, y: float) -> list:
    """Boxes ``(size, centre, class)`` of one table, chair or sofa standing at ``(x, y)`` (z up)."""
    if cls == "table":
        w, d = rng.uniform(1.0, 1.8), rng.uniform(0.6, 1.0)
        legs = [((0.05, 0.05, 0.72), (x + sx * (w / 2 - 0.05), y + sy * (d / 2 - 0.05), 0.36), cls)
                for sx in (-1, 1) for sy in (-1, 1)]
        return [((w, d, 0.05), (x, y, 0.745), cls)] + legs
    if cls == "chair":
        legs = [((0.04, 0.04, 0.43), (x + sx * 0.2, y + sy * 0.2, 0.215), cls) for sx in (-1, 1) for sy in (-1, 1)]
        return [((0.45, 0.45, 0.05), (x, y, 0.455), cls), ((0.45, 0.05, 0.45), (x, y - 0.2, 0.7), cls)] + legs
    w = rng.uniform(1.6, 2.2)
    return [((w, 0.8, 0.45), (x, y, 0.225), cls), ((w, 0.2, 0.4), (x, y + 0.3, 0.65), cls)]


def _room_boxes(rng) -> list:
    """The boxes ``(size, centre, class)`` of one random room, x, y in ``[0, W] x [0, D]``, floor at z = 0."""
    w, d, h = rng.uniform(4, 7), rng.uniform(4, 7), rng.uniform(2.7, 3.2)
    t = 0.02
    shelf = (0.4, rng.uniform(0.8, 1.5), rng.uniform(1.6, 2.2))
    boxes = [((w, d, t), (w / 2, d / 2, -t / 2), "floor"), ((w, d, t), (w / 2, d / 2, h + t / 2), "ceiling"),
             ((w, t, h), (w / 2, -t / 2, h / 2), "wall"), ((w, t, h), (w / 2, d + t / 2, h / 2), "wall"),
             ((t, d, h), (-t / 2, d / 2, h / 2), "wall"), ((t, d, h), (w + t / 2, d / 2, h / 2), "wall"),
             ((0.9, 0.05, 2.1), (rng.uniform(0.6, w - 0.6), 0.025, 1.05), "door"),
             ((rng.uniform(1, 2), 0.05, 1.2), (rng.uniform(1.1, w - 1.1), d - 0.025, 1.5), "window"),
             ((0.05, rng.uniform(1.5, 3), 1.0), (0.025, rng.uniform(1.6, d - 1.6), 1.5), "board"),
             (shelf, (w - 0.2, rng.uniform(1, d - 1), shelf[2] / 2), "bookcase")]
    if rng.random() < 0.5:
        boxes.append(((w, 0.3, 0.3), (w / 2, rng.uniform(1, d - 1), h - 0.15), "beam"))
    if rng.random() < 0.5:
        boxes.append(((0.4, 0.4, h), (0.2, d - 0.2, h / 2), "column"))
    for _ in range(rng.integers(1, 4)):
        x, y = rng.uniform(1.2, w - 1.4), rng.uniform(1.2, d - 1.2)
        boxes += _furniture(rng, "table", x, y)
        boxes.append(((rng.uniform(0.1, 0.4),) * 2 + (rng.uniform(0.05, 0.3),), (x, y, 0.9), "clutter"))
    for _ in range(rng.integers(2, 7)):
        boxes += _furniture(rng, "chair", rng.uniform(0.6, w - 0.8), rng.uniform(0.6, d - 0.6))
    if rng.random() < 0.5:
        boxes += _furniture(rng, "sofa", rng.uniform(1.5, w - 1.5), rng.uniform(1, d - 1))
    for _ in range(rng.integers(1, 4)):
        s = rng.uniform(0.15, 0.5, size=3)
        boxes.append((tuple(s), (rng.uniform(0.5, w - 0.5), rng.uniform(0.5, d - 0.5), s[2] / 2), "clutter"))
    return boxes


def make_room(rng: np.random.Generator, density: float = 300.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One room sampled at ``density`` points per square metre of surface: ``(xyz float32 [P, 3], rgb uint8 [P, 3],
    labels int64 [P])``, as S3DIS's annotation files give it; every box is one coloured instance."""
    boxes = _room_boxes(rng)
    mesh, face_box = _assemble([_part("box", size, centre, i) for i, (size, centre, _) in enumerate(boxes)])
    area = float(face_areas(mesh).sum())
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sample = sample_surface(mesh, max(1, int(area * density)), generator=gen)
    box = face_box[sample.face.numpy()]  # [P] box of each point
    colours = np.array([_ROOM_COLOURS[c] for _, _, c in boxes], dtype=np.float64)
    colours += rng.uniform(-30, 30, size=colours.shape)  # per-instance shade
    rgb = colours[box] + rng.normal(0, 8, size=(len(box), 3))
    labels = np.array([ROOM_CLASSES.index(c) for _, _, c in boxes], dtype=np.int64)[box]
    return sample.points.numpy(), np.clip(rgb, 0, 255).astype(np.uint8), labels


def make_rooms(*, seed: int = 0, rooms: tuple[int, int, int] = (12, 2, 4), num_points: int = 4096,
               density: float = 300.0, block_size: float = 1.0, stride: float = 1.0) -> dict[str, np.ndarray]:
    """Blocks of every split: ``<split>_points float32 [B, num_points, 9]``, ``<split>_seg int64 [B, num_points]``."""
    from dlparts.data.s3dis import room_to_blocks

    out = {}
    for s, (split, count) in enumerate(zip(SPLITS, rooms)):
        points, segs = [np.zeros((0, num_points, 9), np.float32)], [np.zeros((0, num_points), np.int64)]
        for r in range(count):
            rng = rng_for(seed, 100 + s, r)
            p, g = room_to_blocks(*make_room(rng, density), rng, num_points=num_points, block_size=block_size,
                                  stride=stride, min_points=min(100, num_points // 4))
            points.append(p)
            segs.append(g)
        out[f"{split}_points"], out[f"{split}_seg"] = np.concatenate(points), np.concatenate(segs)
    return out


class Rooms(Dataset):
    """Embedded semantic-segmentation dataset (S3DIS conventions): items ``{"points": float32 [num_points, 9],
    "seg": int64 [num_points]}``; ``classes`` are S3DIS's 13.  ``rooms`` = rooms in (train, val, test); ``tiny`` =
    1/1/1 rooms at 40 points per square metre, blocks of 256 points (for tests).
    """

    def __init__(self, split: str = "train", *, seed: int = 0, rooms: tuple[int, int, int] = (12, 2, 4),
                 num_points: int = 4096, density: float = 300.0, transform=None, tiny: bool = False):
        if tiny:
            rooms, num_points, density = (1, 1, 1), 256, 40.0
        _check(split, num_points, rooms)
        if density <= 0:
            raise ConfigError(f"density must be > 0 points per square metre, got {density}")
        settings = {"seed": seed, "rooms": list(rooms), "num_points": num_points, "density": density}
        arrays = _cached("rooms", settings, lambda: make_rooms(seed=seed, rooms=tuple(rooms), num_points=num_points,
                                                               density=density))
        self.points = torch.from_numpy(arrays[f"{split}_points"])
        self.seg = torch.from_numpy(arrays[f"{split}_seg"])
        self.classes, self.split, self.transform = list(ROOM_CLASSES), split, transform

    def __len__(self) -> int:
        return len(self.seg)

    def __getitem__(self, i: int) -> dict:
        item = {"points": self.points[i], "seg": self.seg[i]}
        return self.transform(item) if self.transform else item
