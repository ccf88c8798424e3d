"""Embedded object datasets, generated deterministically from a seed and cached (nothing downloaded).

- :class:`Shapes` (classification, like ModelNet): 12 classes of parametric objects (``SHAPE_CLASSES``), each sampled
  uniformly on its surface with random size, proportions, pose about the up axis (y, as ModelNet), noise and, for
  half the clouds, a missing region.  Primitives with random proportions overlap in simple statistics (a flat box and
  a table top, a long cylinder and a capsule), so telling them apart takes geometry.
- :class:`Parts` (part segmentation, ShapeNetPart conventions): the composite objects with a part label per point,
  numbered globally (``PART_CLASSES``), an object category per cloud, ``parts_of_category``.

The embedded rooms (semantic segmentation) are in :mod:`dlparts.data.synthetic_rooms`.

Each cloud is drawn from ``numpy.random.default_rng([seed, split, index])`` alone, so any subset is reproducible.
The arrays are generated once into ``<cache_root>/synthetic/<settings hash>/`` (env ``DLPARTS_CACHE``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dlparts.data._dataset import CLASSIFICATION_FIELDS, CloudDataset
from dlparts.data._synthetic import SPLITS, assemble, cached, check, part
from dlparts.data.clouds import normalize_unit_sphere
from dlparts.data.meshes import sample_surface
from dlparts.data.splits import rng_for
from dlparts.data.transforms import axis_rotation

SHAPE_CLASSES = ["sphere", "box", "cylinder", "cone", "torus", "pyramid", "capsule", "table", "chair", "lamp", "mug",
                 "airplane"]
PART_CATEGORIES = ["table", "chair", "lamp", "mug", "airplane"]
PART_CLASSES = ["table_top", "table_leg", "chair_seat", "chair_back", "chair_leg", "lamp_base", "lamp_pole",
                "lamp_shade", "mug_body", "mug_handle", "airplane_body", "airplane_wing", "airplane_tail"]
PARTS_OF_CATEGORY = {c: [i for i, p in enumerate(PART_CLASSES) if p.startswith(name + "_")]
                     for c, name in enumerate(PART_CATEGORIES)}
_VERSION = 2  # bump when generation changes, so old caches are not reused


def _legs(half_w: float, half_d: float, height: float, radius: float, label: int) -> list:
    return [part("cylinder", (2 * radius, height, 2 * radius), (sx * half_w, height / 2, sz * half_d), label)
            for sx in (-1, 1) for sz in (-1, 1)]


def _table(rng) -> list:
    w, d, h, t = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2), rng.uniform(0.5, 0.9), rng.uniform(0.04, 0.08)
    top = "cylinder" if rng.random() < 0.3 else "box"
    r = rng.uniform(0.025, 0.05)
    return [part(top, (w, t, d), (0, h + t / 2, 0), 0)] + _legs(w / 2 - 2 * r, d / 2 - 2 * r, h, r, 1)


def _chair(rng) -> list:
    w, d, h, t = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.07)
    back = rng.uniform(0.4, 0.7)
    r = rng.uniform(0.02, 0.035)
    return ([part("box", (w, t, d), (0, h + t / 2, 0), 0),
             part("box", (w, back, t), (0, h + t + back / 2, -d / 2 + t / 2), 1)]
            + _legs(w / 2 - r, d / 2 - r, h, r, 2))


def _lamp(rng) -> list:
    base_r, pole_h, shade_r = rng.uniform(0.15, 0.3), rng.uniform(0.6, 1.2), rng.uniform(0.15, 0.35)
    shade_h, base_h, pole_r = rng.uniform(0.15, 0.35), rng.uniform(0.03, 0.06), rng.uniform(0.015, 0.03)
    return [part("cylinder", (2 * base_r, base_h, 2 * base_r), (0, base_h / 2, 0), 0),
            part("cylinder", (2 * pole_r, pole_h, 2 * pole_r), (0, base_h + pole_h / 2, 0), 1),
            part("cone", (2 * shade_r, shade_h, 2 * shade_r), (0, base_h + pole_h + shade_h / 2 - 0.05, 0), 2)]


def _mug(rng) -> list:
    r, h = rng.uniform(0.25, 0.4), rng.uniform(0.5, 0.9)
    ring = rng.uniform(0.25, 0.4) * h
    thick = rng.choice([0.15, 0.25])
    return [part("open_cylinder", (2 * r, h, 2 * r), (0, h / 2, 0), 0),
            part(f"torus{thick}", (2 * ring, 2 * ring, 2 * ring), (r + 0.6 * ring, h / 2, 0), 1)]


def _airplane(rng) -> list:
    length, radius = rng.uniform(1.5, 2.2), rng.uniform(0.08, 0.14)
    span, chord, fin = rng.uniform(1.2, 2.0), rng.uniform(0.2, 0.35), rng.uniform(0.2, 0.35)
    rear = -length / 2 + chord / 2
    return [part("capsule", (length, 2 * radius, 2 * radius), (0, 0, 0), 0),
            part("box", (chord, 0.03, span), (rng.uniform(-0.1, 0.15) * length, 0, 0), 1),
            part("box", (chord * 0.8, fin, 0.03), (rear, radius + fin / 2, 0), 2),
            part("box", (chord * 0.7, 0.03, span * 0.35), (rear, 0.02, 0), 2)]


def _primitive(key: str, lo: float = 0.4, hi: float = 1.0):
    def build(rng) -> list:
        sx, sy = rng.uniform(lo, hi, size=2)
        sz = sx if key in ("sphere", "cylinder", "cone", "capsule") and rng.random() < 0.5 else rng.uniform(lo, hi)
        return [part(key, (sx, sy, sz), (0, 0, 0))]
    return build


def _torus(rng) -> list:
    key = f"torus{rng.choice([0.15, 0.25, 0.35])}"
    return [part(key, (1.0, 1.0, rng.uniform(0.6, 1.0)), (0, 0, 0))]


def _capsule(rng) -> list:
    r = rng.uniform(0.25, 0.45)
    return [part("capsule", (r, rng.uniform(0.8, 1.3), r), (0, 0, 0))]


_BUILDERS = {"sphere": _primitive("sphere", 0.7, 1.0), "box": _primitive("box"), "cylinder": _primitive("cylinder"),
             "cone": _primitive("cone"), "torus": _torus, "pyramid": _primitive("pyramid"), "capsule": _capsule,
             "table": _table, "chair": _chair, "lamp": _lamp, "mug": _mug, "airplane": _airplane}


def _object_cloud(rng: np.random.Generator, name: str, n: int, missing: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 [n, 6] xyz+normals, part labels int64 [n])`` of one random object, unit sphere, y up."""
    mesh, face_labels = assemble(_BUILDERS[name](rng))
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sample = sample_surface(mesh, 2 * n, generator=gen)
    xyz, nrm = sample.points.double().numpy(), sample.normals.double().numpy()
    labels = face_labels[sample.face.numpy()]
    rot = axis_rotation(rng.uniform(0, 2 * math.pi), 1).numpy()  # about the up axis y (row vectors)
    xyz, nrm = _unit_sphere(xyz @ rot), nrm @ rot
    keep = np.ones(len(xyz), dtype=bool)
    if missing:  # cut away a random ball around a surface point (occlusion / scanning holes)
        centre = xyz[rng.integers(len(xyz))]
        keep = np.linalg.norm(xyz - centre, axis=1) > rng.uniform(0.1, 0.3)
    order = rng.permutation(np.nonzero(keep)[0])
    idx = order[:n] if len(order) >= n else np.concatenate([order, rng.choice(order, n - len(order))])
    xyz = _unit_sphere(xyz[idx] + rng.normal(0, rng.uniform(0, 0.01), size=(n, 3)))  # [n, 3] with sensor noise
    return np.concatenate([xyz, nrm[idx]], axis=1).astype(np.float32), labels[idx]


def _unit_sphere(xyz: np.ndarray) -> np.ndarray:
    """``float64 [n, 3]`` centred and scaled into the unit sphere (:func:`normalize_unit_sphere` on numpy)."""
    return normalize_unit_sphere(torch.from_numpy(xyz)).numpy()


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
                cloud, local = _object_cloud(rng, name, num_points, missing=not parts and rng.random() < 0.5)
                points.append(cloud)
                labels.append(c)
                segs.append(np.asarray(PARTS_OF_CATEGORY[c])[local] if parts else local)
        out[f"{split}_points"] = np.stack(points) if points else np.zeros((0, num_points, 6), np.float32)
        out[f"{split}_label"] = np.asarray(labels, dtype=np.int64)
        if parts:
            out[f"{split}_seg"] = np.stack(segs) if segs else np.zeros((0, num_points), np.int64)
    return out


class Shapes(CloudDataset):
    """Embedded classification dataset: items ``{"points": float32 [N, 3 or 6], "label": int64 []}``.

    ``per_class`` clouds per class for (train, val, test); ``tiny`` = 4/2/2 clouds of 128 points (for tests).
    """

    fields = CLASSIFICATION_FIELDS

    def __init__(self, split: str = "train", *, seed: int = 0, num_points: int = 1024,
                 per_class: tuple[int, int, int] = (100, 20, 30), normals: bool = False, transform=None,
                 tiny: bool = False):
        if tiny:
            num_points, per_class = 128, (4, 2, 2)
        check(split, num_points, per_class)
        settings = {"seed": seed, "num_points": num_points, "per_class": list(per_class)}
        arrays = cached("shapes", _VERSION, settings,
                        lambda: make_shapes(seed=seed, num_points=num_points, per_class=tuple(per_class)))
        self.points = torch.from_numpy(arrays[f"{split}_points"][:, :, :6 if normals else 3].copy())
        self.labels = torch.from_numpy(arrays[f"{split}_label"])
        self.classes, self.split, self.transform = list(SHAPE_CLASSES), split, transform


class Parts(CloudDataset):
    """Embedded part-segmentation dataset (ShapeNetPart conventions): items ``{"points": float32 [N, 3 or 6],
    "seg": int64 [N], "category": int64 []}``; ``classes`` are the global part names, ``categories`` the objects.
    """

    fields = {"points": "points", "seg": "seg", "category": "category"}

    def __init__(self, split: str = "train", *, seed: int = 0, num_points: int = 1024,
                 per_class: tuple[int, int, int] = (120, 20, 40), normals: bool = False, transform=None,
                 tiny: bool = False):
        if tiny:
            num_points, per_class = 128, (4, 2, 2)
        check(split, num_points, per_class)
        settings = {"seed": seed, "num_points": num_points, "per_class": list(per_class)}
        arrays = cached("parts", _VERSION, settings,
                        lambda: make_shapes(seed=seed, num_points=num_points, per_class=tuple(per_class), parts=True))
        self.points = torch.from_numpy(arrays[f"{split}_points"][:, :, :6 if normals else 3].copy())
        self.category = torch.from_numpy(arrays[f"{split}_label"])
        self.seg = torch.from_numpy(arrays[f"{split}_seg"])
        self.classes, self.categories = list(PART_CLASSES), list(PART_CATEGORIES)
        self.parts_of_category = {c: list(p) for c, p in PARTS_OF_CATEGORY.items()}
        self.split, self.transform = split, transform
