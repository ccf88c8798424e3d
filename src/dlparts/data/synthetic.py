"""Embedded object datasets, generated deterministically from a seed and cached (nothing downloaded).

- :class:`Shapes` (classification, hard the way ModelNet is): 12 classes (``SHAPE_CLASSES``) in groups that share
  a silhouette and differ in local structure: boxes plain, with drilled through-holes (inner walls included) or
  with bumps; cylinders plain, ribbed or with holes, and the mug (a cylinder with a thin handle); ellipsoids plain or
  with knobs; tables, chairs and lamps (thin parts).  The holes and knobs are sized for PointNet++'s first ball
  (radius 0.2 in the unit sphere), whatever the object's size.  Every cloud has random proportions and detail (sizes,
  counts, places), a random turn about the up axis (y, as ModelNet), uneven density (up to 5x across an object) and
  sensor noise; 60% are single-view scans (``SCAN_FRACTION``: only what a sensor sees from one random direction,
  self-occlusion included; :mod:`dlparts.data.synthetic_scan`).
- :class:`Parts` (part segmentation, ShapeNetPart conventions): the composite objects with a part label per point,
  numbered globally (``PART_CLASSES``), an object category per cloud, ``parts_of_category``.

The embedded rooms (semantic segmentation) are in :mod:`dlparts.data.synthetic_rooms`.

Each cloud is drawn from ``numpy.random.default_rng([seed, split, index])`` alone, so any subset is reproducible.
The arrays are generated once into ``<cache_root>/synthetic/<settings hash>/`` (env ``DLPARTS_CACHE``).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from dlparts.data._dataset import CLASSIFICATION_FIELDS, CloudDataset
from dlparts.data._synthetic import SPLITS, assemble, cached, check, part
from dlparts.data.clouds import normalize_unit_sphere
from dlparts.data.meshes import sample_surface
from dlparts.data.splits import rng_for
from dlparts.data.synthetic_scan import bumps, drill, ridges, uneven_choice, visible
from dlparts.data.transforms import axis_rotation

SHAPE_CLASSES = ["box", "box_holes", "box_bumps", "cylinder", "cylinder_ridges", "cylinder_holes", "sphere",
                 "sphere_bumps", "mug", "table", "chair", "lamp"]
PART_CATEGORIES = ["table", "chair", "lamp", "mug", "airplane"]
PART_CLASSES = ["table_top", "table_leg", "chair_seat", "chair_back", "chair_leg", "lamp_base", "lamp_pole",
                "lamp_shade", "mug_body", "mug_handle", "airplane_body", "airplane_wing", "airplane_tail"]
PARTS_OF_CATEGORY = {c: [i for i, p in enumerate(PART_CLASSES) if p.startswith(name + "_")]
                     for c, name in enumerate(PART_CATEGORIES)}
_VERSION = 4  # bump when generation changes, so old caches are not reused


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
        sz = sx if key in ("sphere", "cylinder") and rng.random() < 0.5 else rng.uniform(lo, hi)
        return [part(key, (sx, sy, sz), (0, 0, 0))]
    return build


_BUILDERS = {"sphere": _primitive("sphere", 0.7, 1.0), "box": _primitive("box"), "cylinder": _primitive("cylinder"),
             "table": _table, "chair": _chair, "lamp": _lamp, "mug": _mug, "airplane": _airplane}


def _object_cloud(rng: np.random.Generator, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 [n, 6] xyz+normals, part labels int64 [n])`` of one whole object (:class:`Parts`), sampled
    uniformly on its surface, turned about the up axis, unit sphere, y up, with mild sensor noise."""
    mesh, face_labels = assemble(_BUILDERS[name](rng))
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sample = sample_surface(mesh, 2 * n, generator=gen)
    xyz, nrm = sample.points.double().numpy(), sample.normals.double().numpy()
    labels = face_labels[sample.face.numpy()]
    rot = axis_rotation(rng.uniform(0, 2 * math.pi), 1).numpy()  # about the up axis y (row vectors)
    xyz, nrm = _unit_sphere(xyz @ rot), nrm @ rot
    idx = rng.permutation(len(xyz))[:n]
    xyz = _unit_sphere(xyz[idx] + rng.normal(0, rng.uniform(0, 0.01), size=(n, 3)))  # [n, 3] with sensor noise
    return np.concatenate([xyz, nrm[idx]], axis=1).astype(np.float32), labels[idx]


def _unit_sphere(xyz: np.ndarray) -> np.ndarray:
    """``float64 [n, 3]`` centred and scaled into the unit sphere (:func:`normalize_unit_sphere` on numpy)."""
    return normalize_unit_sphere(torch.from_numpy(xyz)).numpy()


# ------------------------------------------------------------------------------------- classification: scanned objects
def _radius(xyz) -> float:
    """What the unit-sphere normalisation will divide ``xyz [P, 3]`` by: its largest distance from its centroid."""
    return float(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1).max())


def _solid(shape: str, size: np.ndarray) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """The surface area of the centred box or (elliptic, axis y) cylinder of ``size [3]``, and its inside test on
    ``xyz [P, 3]`` (``bool [P]``)."""
    a, h, b = size / 2
    if shape == "box":
        return 2 * (size[0] * size[1] + size[1] * size[2] + size[0] * size[2]), lambda p: np.ones(len(p), dtype=bool)
    rim = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan's ellipse perimeter
    return rim * 2 * h + 2 * math.pi * a * b, lambda p: (p[:, 0] / a) ** 2 + (p[:, 2] / b) ** 2 <= 1


def _holes(shape: str):
    """Details of ``shape`` (box or cylinder): 2-4 horizontal through-holes, each of radius 0.12-0.2 once in the
    unit sphere (a 0.2 ball at the rim, PointNet++'s first radius, sees the gap and the wall) and at most 0.3 of
    the pierced face, inside that face, with its inner wall sampled as densely as the surface (a drilled solid, as
    a mesh or a scanner has it: normals facing into the hole)."""
    def drill_holes(rng, xyz, nrm, size) -> tuple[np.ndarray, np.ndarray]:
        area, inside = _solid(shape, size)
        density, unit = len(xyz) / area, _radius(xyz)
        lines = []
        for _ in range(rng.integers(2, 5)):
            axis = rng.choice([0, 2])  # along x or z
            face = np.array([size[2 - axis], size[1]])  # the pierced face's width and height
            radius = min(rng.uniform(0.12, 0.2) * unit, 0.3 * face.min())
            origin = np.zeros(3)
            origin[[2 - axis, 1]] = rng.uniform(-1, 1, size=2) * (face / 2 - radius)
            lines.append((origin, axis, radius))
        walls = [_wall(rng, *line, size[line[1]], density) for line in lines]
        owner = np.concatenate([np.full(len(xyz), -1), *(np.full(len(w[0]), i) for i, w in enumerate(walls))])
        xyz, nrm = np.concatenate([xyz, *(w[0] for w in walls)]), np.concatenate([nrm, *(w[1] for w in walls)])
        keep = (owner < 0) | inside(xyz)  # [P + walls]: the walls within the solid
        for i, (origin, axis, radius) in enumerate(lines):
            keep &= (owner == i) | drill(xyz, origin, np.eye(3)[axis], radius)  # a hole's own wall stays
        return xyz[keep], nrm[keep]
    return drill_holes


def _wall(rng, origin, axis, radius, length, density) -> tuple[np.ndarray, np.ndarray]:
    """``(xyz [M, 3], normals [M, 3])``: the tube of ``radius`` around the line through ``origin`` along coordinate
    ``axis``, ``length`` long and centred on the object, ``density`` points per unit area; normals towards the line."""
    m = rng.poisson(density * 2 * math.pi * radius * length)
    t, angle = rng.uniform(-length / 2, length / 2, m), rng.uniform(0, 2 * math.pi, m)
    u, v = np.eye(3)[[1, 2 - axis]]  # [3] each: the two directions across the hole
    out = np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * v  # [M, 3] unit, from the line outwards
    return origin + t[:, None] * np.eye(3)[axis] + radius * out, -out


def _bumps(rng, xyz, nrm, size) -> tuple[np.ndarray, np.ndarray]:
    s = size.max()
    return bumps(rng, xyz, nrm, int(rng.integers(5, 13)), (0.03 * s, 0.07 * s), (0.04 * s, 0.08 * s))


def _knobs(rng, xyz, nrm, size) -> tuple[np.ndarray, np.ndarray]:
    """4-8 knobs on a smooth ellipsoid, 0.1-0.18 high and 0.07-0.1 wide (sigma) once in the unit sphere: each a clear
    local bulge in a 0.2 ball, while the ellipsoid's own curvature there stays gentle."""
    unit = _radius(xyz)
    return bumps(rng, xyz, nrm, int(rng.integers(4, 9)), (0.1 * unit, 0.18 * unit), (0.07 * unit, 0.1 * unit))


def _ridges(rng, xyz, nrm, size) -> tuple[np.ndarray, np.ndarray]:
    return ridges(rng, xyz, nrm, 1, (4, 9), (0.03 * size.max(), 0.06 * size.max()))


#: class -> (base shape, local detail or None).  Classes come in groups on one silhouette (box, cylinder, ellipsoid;
#: the mug is a cylinder with a thin handle), so only the detail tells them apart; the furniture has thin parts.
_SCANNED = {"box": ("box", None), "box_holes": ("box", _holes("box")), "box_bumps": ("box", _bumps),
            "cylinder": ("cylinder", None), "cylinder_ridges": ("cylinder", _ridges),
            "cylinder_holes": ("cylinder", _holes("cylinder")), "sphere": ("sphere", None),
            "sphere_bumps": ("sphere", _knobs),
            "mug": ("mug", None), "table": ("table", None), "chair": ("chair", None), "lamp": ("lamp", None)}
SCAN_FRACTION = 0.6  # the share of classification clouds that are single-view scans rather than whole objects


def _scanned_cloud(rng: np.random.Generator, name: str, n: int, scan_fraction: float) -> np.ndarray:
    """``float32 [n, 6]`` xyz + normals of one object of class ``name`` as a sensor delivers it (:data:`_SCANNED`):
    local detail, a turn about the up axis, for ``scan_fraction`` of the clouds a single view from a random
    direction (self-occlusion), uneven density, noise; unit sphere, y up."""
    base, detail = _SCANNED[name]
    mesh, _ = assemble(_BUILDERS[base](rng))
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sample = sample_surface(mesh, 4 * n, generator=gen)
    xyz, nrm = sample.points.double().numpy(), sample.normals.double().numpy()
    xyz -= (xyz.max(axis=0) + xyz.min(axis=0)) / 2
    if detail is not None:
        xyz, nrm = detail(rng, xyz, nrm, np.ptp(xyz, axis=0))
    rot = axis_rotation(rng.uniform(0, 2 * math.pi), 1).numpy()  # about the up axis y (row vectors)
    xyz, nrm = _unit_sphere(xyz @ rot), nrm @ rot
    if rng.random() < scan_fraction:
        azimuth, elevation = rng.uniform(0, 2 * math.pi), rng.uniform(-0.2, 0.9)
        view = -np.array([math.cos(elevation) * math.cos(azimuth), math.sin(elevation),
                          math.cos(elevation) * math.sin(azimuth)])  # from the sensor towards the object
        seen = visible(xyz, nrm, view)
        xyz, nrm = xyz[seen], nrm[seen]
    idx = uneven_choice(rng, xyz, n, rng.uniform(0, 0.8))
    xyz = _unit_sphere(xyz[idx] + rng.normal(0, rng.uniform(0.002, 0.015), size=(n, 3)))  # [n, 3] sensor noise
    return np.concatenate([xyz, nrm[idx]], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- generation
def make_shapes(*, seed: int = 0, num_points: int = 1024, per_class: tuple[int, int, int] = (100, 20, 30),
                classes: list[str] | None = None, parts: bool = False,
                scan_fraction: float = SCAN_FRACTION) -> dict[str, np.ndarray]:
    """Arrays of every split: ``<split>_points float32 [M, N, 6]``, ``<split>_label int64 [M]`` and, with
    ``parts``, ``<split>_seg int64 [M, N]`` (global part numbers).  ``per_class`` = clouds per class in train, val,
    test.  ``scan_fraction``: the share of classification clouds that are single-view scans; 0 or 1 give the same
    objects all whole or all scanned (to see what the scans cost a model).  Deterministic in ``seed``; not cached
    (see :class:`Shapes` / :class:`Parts`).
    """
    classes = classes or (PART_CATEGORIES if parts else SHAPE_CLASSES)
    out = {}
    for s, (split, count) in enumerate(zip(SPLITS, per_class)):
        points, labels, segs = [], [], []
        for c, name in enumerate(classes):
            for i in range(count):
                rng = rng_for(seed, s, c, i)
                if parts:
                    cloud, local = _object_cloud(rng, name, num_points)
                    segs.append(np.asarray(PARTS_OF_CATEGORY[c])[local])
                else:
                    cloud = _scanned_cloud(rng, name, num_points, scan_fraction)
                points.append(cloud)
                labels.append(c)
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
