"""Embedded rooms for semantic segmentation (S3DIS conventions), generated deterministically from a seed and cached.

:class:`Rooms`: rooms with floor, walls, ceiling, beams, columns, doors, windows, boards, tables, chairs, sofas,
bookcases and clutter (S3DIS's 13 classes, :data:`dlparts.data.s3dis.CLASSES`), coloured per instance from palettes
the classes share, z up, cut into 1 m x 1 m blocks of 4096 points with xyz + rgb + normalized location
(:func:`dlparts.data.s3dis.room_to_blocks`).  Each room is drawn from ``numpy.random.default_rng([seed, split,
index])`` alone; the blocks are generated once into ``<cache_root>/synthetic/<settings hash>/``.
"""

from __future__ import annotations

import numpy as np
import torch

from dlparts.data._dataset import SEGMENTATION_FIELDS, CloudDataset
from dlparts.data._synthetic import SPLITS, assemble, cached, check, part
from dlparts.data.meshes import face_areas, sample_surface
from dlparts.data.s3dis import CLASSES, Room, room_to_blocks
from dlparts.data.splits import rng_for
from dlparts.errors import ConfigError

_VERSION = 3  # bump when generation changes, so old caches are not reused
_WHITES = [(200, 200, 195), (190, 185, 170), (215, 210, 200), (170, 170, 160)]
_WOODS = [(160, 120, 70), (140, 90, 50), (110, 80, 50), (180, 150, 110)]
_FABRICS = [(60, 60, 70), (90, 40, 40), (50, 70, 110), (120, 120, 120), (150, 140, 120)]
#: class -> the colours an instance of it may have; the palettes are shared between classes (walls, ceilings, beams,
#: columns and boards are all whitish; tables, doors and bookcases wooden; floors wooden or carpeted like the chairs
#: and sofas), so that colour alone does not give the class away, as in S3DIS.
_PALETTES = {"ceiling": _WHITES, "floor": _WOODS + _FABRICS, "wall": _WHITES, "beam": _WHITES, "column": _WHITES,
             "window": [(140, 170, 200), (170, 180, 190), (120, 130, 140)], "door": _WOODS + _WHITES,
             "table": _WOODS + _WHITES, "chair": _FABRICS + _WOODS, "sofa": _FABRICS, "bookcase": _WOODS,
             "board": _WHITES, "clutter": None}


def _furniture(rng, cls: str, x: float, y: float) -> list:
    """Boxes ``(size, centre, class)`` of one table, chair or sofa standing at ``(x, y)`` (z up)."""
    if cls == "table":
        w, d = rng.uniform(1.0, 1.8), rng.uniform(0.6, 1.0)
        legs = [((0.05, 0.05, 0.72), (x + sx * (w / 2 - 0.05), y + sy * (d / 2 - 0.05), 0.36), cls)
                for sx in (-1, 1) for sy in (-1, 1)]
        return [((w, d, 0.05), (x, y, 0.745), cls)] + legs
    if cls == "chair":  # its back on a random one of the four sides
        legs = [((0.04, 0.04, 0.43), (x + sx * 0.2, y + sy * 0.2, 0.215), cls) for sx in (-1, 1) for sy in (-1, 1)]
        side = rng.integers(4)
        dx, dy = [(0, -0.2), (0.2, 0), (0, 0.2), (-0.2, 0)][side]
        back = (0.45, 0.05, 0.45) if side % 2 == 0 else (0.05, 0.45, 0.45)
        return [((0.45, 0.45, 0.05), (x, y, 0.455), cls), (back, (x + dx, y + dy, 0.7), cls)] + legs
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


def make_room(rng: np.random.Generator, density: float = 300.0) -> Room:
    """One room sampled at ``density`` points per square metre of surface, as S3DIS's annotation files give it
    (:class:`dlparts.data.s3dis.Room`: xyz with 5 mm sensor noise, rgb in 0..255, class labels).  Every box is one
    instance coloured from its class's palette (:data:`_PALETTES`, shared between classes), shaded per instance,
    lit unevenly across the room, with per-point colour noise."""
    boxes = _room_boxes(rng)
    mesh, face_box = assemble([part("box", size, centre, i) for i, (size, centre, _) in enumerate(boxes)])
    area = float(face_areas(mesh).sum())
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sample = sample_surface(mesh, max(1, int(area * density)), generator=gen)
    box = face_box[sample.face.numpy()]  # [P] box of each point
    palettes = [_PALETTES[c] for _, _, c in boxes]
    colours = np.array([rng.uniform(0, 255, 3) if p is None else p[rng.integers(len(p))] for p in palettes],
                       dtype=np.float64)  # [boxes, 3]
    colours += rng.uniform(-35, 35, size=colours.shape)  # per-instance shade
    xyz = sample.points.numpy().astype(np.float64)
    towards = rng.normal(size=3)
    light = 0.9 + 0.2 * np.tanh((xyz - xyz.mean(axis=0)) @ (towards / np.linalg.norm(towards)))  # [P] in 0.7..1.1
    rgb = colours[box] * light[:, None] + rng.normal(0, 12, size=(len(box), 3))
    xyz += rng.normal(0, 0.005, size=xyz.shape)
    labels = np.array([CLASSES.index(c) for _, _, c in boxes], dtype=np.int64)[box]
    return Room(xyz.astype(np.float32), np.clip(rgb, 0, 255).astype(np.uint8), labels)


def make_rooms(*, seed: int = 0, rooms: tuple[int, int, int] = (12, 2, 4), num_points: int = 4096,
               density: float = 300.0, block_size: float = 1.0, stride: float = 1.0) -> dict[str, np.ndarray]:
    """Blocks of every split: ``<split>_points float32 [B, num_points, 9]``, ``<split>_seg int64 [B, num_points]``."""
    out = {}
    for s, (split, count) in enumerate(zip(SPLITS, rooms)):
        points, segs = [np.zeros((0, num_points, 9), np.float32)], [np.zeros((0, num_points), np.int64)]
        for r in range(count):
            rng = rng_for(seed, 100 + s, r)
            room = make_room(rng, density)
            p, g = room_to_blocks(room.xyz, room.rgb, room.labels, rng, num_points=num_points, block_size=block_size,
                                  stride=stride, min_points=min(100, num_points // 4))
            points.append(p)
            segs.append(g)
        out[f"{split}_points"], out[f"{split}_seg"] = np.concatenate(points), np.concatenate(segs)
    return out


class Rooms(CloudDataset):
    """Embedded semantic-segmentation dataset (S3DIS conventions): items ``{"points": float32 [num_points, 9],
    "seg": int64 [num_points]}``; ``classes`` are S3DIS's 13.  ``rooms`` = rooms in (train, val, test); ``tiny`` =
    1/1/1 rooms at 40 points per square metre, blocks of 256 points (for tests).
    """

    fields = SEGMENTATION_FIELDS

    def __init__(self, split: str = "train", *, seed: int = 0, rooms: tuple[int, int, int] = (12, 2, 4),
                 num_points: int = 4096, density: float = 300.0, transform=None, tiny: bool = False):
        if tiny:
            rooms, num_points, density = (1, 1, 1), 256, 40.0
        check(split, num_points, rooms)
        if density <= 0:
            raise ConfigError(f"density must be > 0 points per square metre, got {density}")
        settings = {"seed": seed, "rooms": list(rooms), "num_points": num_points, "density": density}
        arrays = cached("rooms", _VERSION, settings, lambda: make_rooms(seed=seed, rooms=tuple(rooms),
                                                                        num_points=num_points, density=density))
        self.points = torch.from_numpy(arrays[f"{split}_points"])
        self.seg = torch.from_numpy(arrays[f"{split}_seg"])
        self.classes, self.split, self.transform = list(CLASSES), split, transform
