"""ShapeNetPart (Yi et al., SIGGRAPH Asia 2016) for part segmentation, as PointNet++ (Qi et al., NeurIPS 2017) used it.

Reads ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` as published: ``synsetoffset2category.txt``
(``Airplane<TAB>02691156``), ``train_test_split/shuffled_{train,val,test}_file_list.json`` (entries
``shape_data/<synset>/<id>``) and ``<root>/<synset>/<id>.txt`` with rows ``x y z nx ny nz part``, where ``part`` is
the global part number (16 categories, 50 parts; ``PARTS_OF_CATEGORY``).  Items: ``{"points": float32
[num_points, 3 or 6], "seg": int64 [num_points], "category": int64 []}``; each cloud is resampled to ``num_points``
(a random subset, or all points plus random repeats) from ``(seed, index)``.  Bad files are logged and skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dlparts.data._dataset import CloudDataset
from dlparts.data._progress import report_skipped
from dlparts.data.points import read_table
from dlparts.data.splits import rng_for
from dlparts.errors import ConfigError, DataError, DataNotFoundError

CATEGORIES = ["Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife", "Lamp", "Laptop", "Motorbike",
              "Mug", "Pistol", "Rocket", "Skateboard", "Table"]
_PART_COUNTS = [4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3]
_FIRST = np.cumsum([0] + _PART_COUNTS)
PARTS_OF_CATEGORY = {c: list(range(_FIRST[c], _FIRST[c + 1])) for c in range(len(CATEGORIES))}
PART_CLASSES = [f"{CATEGORIES[c]}_{k}" for c in range(len(CATEGORIES)) for k in range(_PART_COUNTS[c])]
LAYOUT = ("expected shapenetcore_partanno_segmentation_benchmark_v0_normal: synsetoffset2category.txt, "
          "train_test_split/shuffled_{train,val,test}_file_list.json and <synset>/<id>.txt "
          "(published with PointNet++, https://shapenet.cs.stanford.edu/media/)")


class ShapeNetPart(CloudDataset):
    """ShapeNetPart with the official splits; ``classes`` = 50 part names, ``categories`` = 16 objects."""

    fields = {"category": "category"}  # points and seg are resampled per item (see _item)

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 2048, normals: bool = False,
                 seed: int = 0, transform=None):
        root = Path(root)
        if split not in ("train", "val", "test", "trainval"):
            raise ConfigError(f"ShapeNetPart split must be train, val, test or trainval, got {split!r}")
        if num_points < 1:
            raise ConfigError(f"num_points must be >= 1, got {num_points}")
        synsets = _synsets(root)
        points, segs, cats, skipped = [], [], [], []
        for entry in _entries(root, split):
            _, synset, shape = entry.strip("/").split("/")[-3:]
            path = root / synset / f"{shape}.txt"
            try:
                if synset not in synsets:
                    raise DataError(f"synset {synset} is not in synsetoffset2category.txt")
                cat = synsets[synset]
                table = _check_table(path, read_table(path), cat)
            except DataError as exc:
                skipped.append((str(path), str(exc)))
                continue
            points.append(table[:, :6].astype(np.float32))
            segs.append(table[:, 6].astype(np.int64))
            cats.append(cat)
        report_skipped(f"ShapeNetPart {split}", skipped)
        if not points:
            raise DataError(f"ShapeNetPart {root}: no readable shape in the {split} split; {LAYOUT}")
        self.clouds, self.segs = points, segs
        self.category = torch.tensor(cats, dtype=torch.int64)
        self.classes, self.categories = list(PART_CLASSES), list(CATEGORIES)
        self.parts_of_category = {c: list(p) for c, p in PARTS_OF_CATEGORY.items()}
        self.num_points, self.normals, self.seed = num_points, normals, seed
        self.split, self.transform = split, transform

    def _item(self, i: int) -> dict:
        cloud, seg = self.clouds[i], self.segs[i]
        rng = rng_for(self.seed, i)
        m = len(cloud)
        idx = rng.permutation(m)[:self.num_points]
        if m < self.num_points:
            idx = np.concatenate([idx, rng.integers(0, m, self.num_points - m)])
        return {"points": torch.from_numpy(cloud[idx, :6 if self.normals else 3]),  # [num_points, C]
                "seg": torch.from_numpy(seg[idx]), "category": self.category[i]}


def _synsets(root: Path) -> dict[str, int]:
    mapping = root / "synsetoffset2category.txt"
    if not mapping.is_file():
        raise DataNotFoundError(f"{mapping} is missing; {LAYOUT}")
    synsets = {}
    for line in mapping.read_text().splitlines():
        if line.strip():
            name, synset = line.split()
            if name not in CATEGORIES:
                raise DataError(f"{mapping}: unknown category {name!r}; expected one of {', '.join(CATEGORIES)}")
            synsets[synset] = CATEGORIES.index(name)
    return synsets


def _entries(root: Path, split: str) -> list[str]:
    entries = []
    for part in (("train", "val") if split == "trainval" else (split,)):
        path = root / "train_test_split" / f"shuffled_{part}_file_list.json"
        if not path.is_file():
            raise DataNotFoundError(f"{path} is missing; {LAYOUT}")
        try:
            entries += json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
    return entries


def _check_table(path: Path, table: np.ndarray, cat: int) -> np.ndarray:
    if table.shape[1] != 7:
        raise DataError(f"{path}: expected 7 columns (x y z nx ny nz part), got {table.shape[1]}")
    if not np.isfinite(table).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    parts = PARTS_OF_CATEGORY[cat]
    bad = (table[:, 6] < parts[0]) | (table[:, 6] > parts[-1])
    if bad.any():
        raise DataError(f"{path}: part label {int(table[bad][0, 6])} is not a {CATEGORIES[cat]} part "
                        f"({parts[0]}..{parts[-1]})")
    return table
