"""S3DIS (Armeni et al., CVPR 2016) for semantic segmentation, prepared as PointNet (Qi et al., CVPR 2017) Sec. 5.2.

Reads ``Stanford3dDataset_v1.2_Aligned_Version`` as published: ``<root>/Area_<k>/<room>/Annotations/<class>_<i>.txt``
with lines ``x y z r g b``.  Each room is shifted to start at 0 and cut into ``block_size`` x ``block_size`` blocks
(stride ``stride``) of ``num_points`` points; each point has 9 channels: xyz with x, y relative to the block centre,
rgb in [0, 1], and the location normalized by the room's extent.  13 classes (``CLASSES``); ``stairs`` counts as
clutter, as in PointNet's preparation.  Areas other than ``test_area`` (5 by default) train; ``test_area`` tests.
Parsed rooms are cached per area under ``<cache_root>/s3dis/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from dlparts.data._cache import cache_file, load_npz, save_npz
from dlparts.data._dataset import SEGMENTATION_FIELDS, CloudDataset
from dlparts.data._progress import progress, report_skipped
from dlparts.data.points import read_table
from dlparts.data.splits import rng_for
from dlparts.errors import ConfigError, DataError, DataNotFoundError

CLASSES = ["ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase",
           "board", "clutter"]
LAYOUT = ("expected Stanford3dDataset_v1.2_Aligned_Version: <root>/Area_1..Area_6/<room>/Annotations/<class>_<i>.txt "
          "(published at http://buildingparser.stanford.edu/dataset.html)")
_VERSION = 1


class Room(NamedTuple):
    """One room as S3DIS's annotation files give it: ``xyz float32 [P, 3]``, ``rgb uint8 [P, 3]``, class
    ``labels int64 [P]``."""

    xyz: np.ndarray
    rgb: np.ndarray
    labels: np.ndarray


class Block(NamedTuple):
    """One block of a room: its corner ``origin`` (x0, y0) and the ascending indices ``inside int64 [n]`` of the
    points with x in ``[x0, x0 + block_size]`` and y in ``[y0, y0 + block_size]``."""

    origin: tuple[float, float]
    inside: np.ndarray


def room_blocks(xyz: np.ndarray, low: np.ndarray, block_size: float, stride: float) -> Iterator[Block]:
    """The blocks of a room ``xyz [P, 3]`` whose corner is ``low [3]`` (its minimum), PointNet's room2blocks grid:
    corners every ``stride`` from ``low`` along x and y, enough of them to cover the room; empty blocks are skipped.

    Points are sorted by x once, so each block looks only at its slab of x (not at the whole room): the cost is
    ``O(P log P)`` plus the slabs, whatever the number of blocks, and no shifted copy of the room is made.  Held
    while the blocks are in use: the int32 sort order (4 bytes a point) and the current column's points.
    """
    if block_size <= 0 or stride <= 0:
        raise ConfigError(f"room blocks: need block_size > 0 and stride > 0; got {block_size}, {stride}")
    extent = xyz.max(axis=0) - low
    nx = max(1, int(np.ceil((extent[0] - block_size) / stride)) + 1)
    ny = max(1, int(np.ceil((extent[1] - block_size) / stride)) + 1)
    order = np.argsort(xyz[:, 0], kind="stable")  # [P]
    if len(order) < 2**31:
        order = order.astype(np.int32)  # half the memory of a scene's sort order
    xs = xyz[order, 0]  # [P] ascending
    slack = 1e-3 * min(block_size, stride)  # the slab is a little wider; the exact test below decides
    slabs = [np.searchsorted(xs, [low[0] + i * stride - slack, low[0] + i * stride + block_size + slack],
                             side="left") for i in range(nx)]  # [lo, hi) into order, per column of blocks
    del xs  # not held while the caller uses the blocks (a whole-scene model runs between two of them)
    for i, (lo, hi) in enumerate(slabs):
        x0 = i * stride
        slab = np.sort(order[lo:hi])  # [s] ascending, as a mask over the whole room would give
        x = xyz[slab, 0] - low[0]
        in_x = slab[(x >= x0) & (x <= x0 + block_size)]
        del slab, x  # as xs: only the column's points and their y stay while its blocks are in use
        y = xyz[in_x, 1] - low[1]
        for j in range(ny):
            y0 = j * stride
            inside = in_x[(y >= y0) & (y <= y0 + block_size)]
            if len(inside):
                yield Block((x0, y0), inside)


def block_features(xyz: np.ndarray, rgb: np.ndarray | None, pick: np.ndarray, origin: tuple[float, float],
                   block_size: float, low: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """The model input of points ``pick [n]`` of one block, ``float32 [n, 9]`` (``[n, 6]`` when ``rgb`` is None):
    xyz with x, y relative to the block centre, rgb in [0, 1], and the location normalized by the room's ``extent``
    (``xyz [P, 3]`` with corner ``low``, :func:`room_extent`; ``rgb uint8 [P, 3]``)."""
    shifted = xyz[pick] - low  # [n, 3]
    local = shifted - np.array([origin[0] + block_size / 2, origin[1] + block_size / 2, 0.0])  # [n, 3]
    colour = [] if rgb is None else [rgb[pick] / 255.0]
    return np.concatenate([local, *colour, shifted / extent], axis=1).astype(np.float32)  # [n, 9] or [n, 6]


def room_extent(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(low, extent)``: the corner of the room ``xyz [P, 3]`` (its minimum) and its size per axis (>= 1e-9)."""
    low = xyz.min(axis=0)
    return low, np.maximum(xyz.max(axis=0) - low, 1e-9)


def room_to_blocks(xyz: np.ndarray, rgb: np.ndarray | None, labels: np.ndarray, rng: np.random.Generator, *,
                   num_points: int = 4096, block_size: float = 1.0, stride: float = 1.0,
                   min_points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Cut one room (``xyz [P, 3]``, ``rgb [P, 3]`` in 0..255 or None, ``labels [P]``) into blocks, PointNet's
    room2blocks.

    Returns ``points float32 [B, num_points, 9]`` (``[B, num_points, 6]`` without rgb, :func:`block_features`) and
    ``seg int64 [B, num_points]``.  Blocks with fewer than ``min_points`` points are dropped; the others are sampled
    to ``num_points`` (without replacement when they have enough points, else all points plus random repeats).
    """
    if num_points < 1 or block_size <= 0 or stride <= 0:
        raise ConfigError(f"room_to_blocks: need num_points >= 1, block_size > 0, stride > 0; got {num_points}, "
                          f"{block_size}, {stride}")
    low, extent = room_extent(xyz)
    points, segs = [], []
    for origin, inside in room_blocks(xyz, low, block_size, stride):
        if len(inside) < min_points:
            continue
        if len(inside) >= num_points:
            pick = rng.choice(inside, num_points, replace=False)
        else:
            pick = np.concatenate([inside, rng.choice(inside, num_points - len(inside))])
        points.append(block_features(xyz, rgb, pick, origin, block_size, low, extent))  # [n, 9] or [n, 6]
        segs.append(labels[pick])
    if not points:
        channels = 6 if rgb is None else 9
        return np.zeros((0, num_points, channels), np.float32), np.zeros((0, num_points), np.int64)
    return np.stack(points), np.stack(segs).astype(np.int64)


def class_of(annotation: str) -> int:
    """Class index of an annotation file name such as ``chair_3.txt`` (``stairs`` and unknown names: clutter)."""
    name = annotation.rsplit("_", 1)[0].lower()
    return CLASSES.index(name) if name in CLASSES else CLASSES.index("clutter")


def read_room(room: Path, skipped: list) -> Room | None:
    """The :class:`Room` in folder ``room`` (None when no annotation file is readable); bad files go to
    ``skipped``."""
    parts = []
    for f in sorted((room / "Annotations").glob("*.txt")):
        try:
            table = read_table(f)
            if table.shape[1] < 6 or not np.isfinite(table[:, :6]).all():
                raise DataError(f"{f}: expected rows of 6 finite numbers x y z r g b, got shape {list(table.shape)}")
        except DataError as exc:
            skipped.append((str(f), str(exc)))
            continue
        parts.append((table[:, :6], class_of(f.stem)))
    if not parts:
        return None
    xyz = np.concatenate([t[:, :3] for t, _ in parts]).astype(np.float32)
    rgb = np.clip(np.concatenate([t[:, 3:6] for t, _ in parts]), 0, 255).astype(np.uint8)
    labels = np.concatenate([np.full(len(t), c, dtype=np.int64) for t, c in parts])
    return Room(xyz, rgb, labels)


def _area_rooms(root: Path, area: int) -> dict[str, np.ndarray]:
    """The parsed rooms of one area as flat arrays plus room offsets (cached)."""
    folder = root / f"Area_{area}"
    path = cache_file("s3dis", {"root": str(root.resolve()), "area": area, "version": _VERSION}, "rooms.npz")
    cached = load_npz(path)
    if cached is not None:
        return cached
    skipped: list = []
    rooms = [r for r in sorted(folder.iterdir()) if (r / "Annotations").is_dir()]
    read = [read_room(r, skipped) for r in progress(rooms, f"S3DIS Area_{area}")]
    report_skipped(f"S3DIS Area_{area}", skipped)
    read = [r for r in read if r is not None]
    if not read:
        raise DataError(f"{folder}: no readable room; {LAYOUT}")
    arrays = {"xyz": np.concatenate([r.xyz for r in read]), "rgb": np.concatenate([r.rgb for r in read]),
              "labels": np.concatenate([r.labels for r in read]),
              "offsets": np.cumsum([0] + [len(r.xyz) for r in read]).astype(np.int64)}
    save_npz(path, **arrays)
    return arrays


def area_rooms(root: str | Path, area: int) -> Iterator[Room]:
    """The rooms of ``Area_<area>`` at full resolution (parsed once, then cached), for whole-room evaluation."""
    root = Path(root)
    if not (root / f"Area_{area}").is_dir():
        raise DataNotFoundError(f"S3DIS root {root} has no Area_{area}; {LAYOUT}")
    rooms = _area_rooms(root, area)
    for lo, hi in zip(rooms["offsets"][:-1], rooms["offsets"][1:]):
        yield Room(rooms["xyz"][lo:hi], rooms["rgb"][lo:hi], rooms["labels"][lo:hi])


class S3DIS(CloudDataset):
    """S3DIS blocks: items ``{"points": float32 [num_points, 9], "seg": int64 [num_points]}``; ``classes``."""

    fields = SEGMENTATION_FIELDS

    def __init__(self, root: str | Path, split: str = "train", *, test_area: int = 5, num_points: int = 4096,
                 block_size: float = 1.0, stride: float = 1.0, seed: int = 0, transform=None):
        root = Path(root)
        if split not in ("train", "test"):
            raise ConfigError(f"S3DIS split must be 'train' or 'test', got {split!r}")
        if test_area not in range(1, 7):
            raise ConfigError(f"S3DIS test_area must be 1..6, got {test_area}")
        if not root.is_dir():
            raise DataNotFoundError(f"S3DIS root {root} does not exist; {LAYOUT}")
        areas = [a for a in range(1, 7) if (root / f"Area_{a}").is_dir()]
        wanted = [test_area] if split == "test" else [a for a in areas if a != test_area]
        if not wanted or any(a not in areas for a in wanted):
            raise DataNotFoundError(f"S3DIS root {root} has no Area_{test_area if split == 'test' else 'k'} "
                                    f"for the {split} split (found {', '.join(f'Area_{a}' for a in areas) or 'none'})"
                                    f"; {LAYOUT}")
        points, segs = [], []
        for area in wanted:
            rooms = _area_rooms(root, area)
            for r in range(len(rooms["offsets"]) - 1):
                lo, hi = rooms["offsets"][r], rooms["offsets"][r + 1]
                p, s = room_to_blocks(rooms["xyz"][lo:hi], rooms["rgb"][lo:hi], rooms["labels"][lo:hi],
                                      rng_for(seed, area, r), num_points=num_points, block_size=block_size,
                                      stride=stride)
                points.append(p)
                segs.append(s)
        self.points = torch.from_numpy(np.concatenate(points))
        self.seg = torch.from_numpy(np.concatenate(segs))
        self.classes, self.split, self.transform = list(CLASSES), split, transform
