"""Segmentation of one's own labelled files (:mod:`dlparts.data.labelled`): scenes (``data.name: scene_folder``) and
objects with part labels (``data.name: part_folder``).

Scenes: ``<root>/**/<scene>.<ply|txt|npy|...>``, one scene per file, cut into blocks exactly as S3DIS rooms are
(:func:`dlparts.data.s3dis.room_to_blocks`: ``num_points`` points of 9 channels, 6 when the files have no colours),
so every semantic segmentation model trains on them unchanged.  Objects: ``<root>/<category>/**/<object>.<...>``,
each resampled to ``num_points`` points (xyz centred, inside the unit sphere, as ShapeNetPart's) with a part label
per point.

Class names come from ``classes`` or ``<root>/classes.txt`` (one name per line; label ``k`` is line ``k``).  Split:
when ``<root>/train`` and ``<root>/test`` exist (scenes) or each category holds ``train/`` and ``test/`` (objects),
those; otherwise a seeded hold-out of ``test_fraction`` of the files (per category for objects,
:func:`dlparts.data.splits.holdout`), so a scene or object is wholly in one split.  The split is drawn from the file
list before any file is read, so a bad file, skipped or later fixed, moves no other file between splits.

Parsed files are cached (:func:`read_cached`: one cache file per source file, with its size, mtime and ctime), so a
later pass parses only new or changed files.  A file that cannot be read (corrupt, no label field, labels outside
the classes, NaN/inf coordinates without ``drop_nonfinite``) is reported once with its reason, skipped and listed in
the dataset's ``skipped``; it is met while the dataset is built, so an epoch never meets one.  What stops the build
at once, with one message: no class names, a category or split with too few files, a split (or a category) of which
no file can be read (then the message gives the first file's reason, e.g. the fields it has when ``label_field``
names none), a malformed ``columns`` setting, scenes with colours mixed with scenes without.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlparts.data._cache import cache_file, file_stamp, load_npz, save_npz
from dlparts.data._dataset import SEGMENTATION_FIELDS, CloudDataset
from dlparts.data._progress import progress, report_skipped
from dlparts.data.clouds import normalize_unit_sphere
from dlparts.data.labelled import LABELLED_SUFFIXES, LabelledCloud, check_labels, read_labelled
from dlparts.data.s3dis import room_to_blocks
from dlparts.data.splits import holdout, rng_for
from dlparts.errors import ConfigError, DataError, DataNotFoundError

CLASSES_FILE = "classes.txt"
#: What a file that cannot be used raises while a dataset is built (DataNotFoundError: removed since it was listed).
UNREADABLE = (DataError, DataNotFoundError)
_CACHE_VERSION = 1


def read_classes(root: Path, classes: list[str] | None) -> list[str]:
    """``classes`` when given, else the lines of ``<root>/classes.txt``."""
    if classes is not None:
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ConfigError(f"data.classes={classes!r} must be a list of class names")
        return list(classes)
    path = root / CLASSES_FILE
    if not path.is_file():
        raise ConfigError(f"{root}: no class names; set data.classes: [name, ...] or write {path} (one name per "
                          f"line, label k on line k)")
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not names:
        raise ConfigError(f"{path} holds no class names")
    return names


def labelled_files(folder: Path, root: Path) -> list[Path]:
    """The labelled files under ``folder`` (recursively, sorted), without ``<root>/classes.txt``."""
    skip = root / CLASSES_FILE
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in LABELLED_SUFFIXES and p != skip)


def split_files(root: Path, folder: Path, split: str, test_fraction: float, seed: int) -> list[Path]:
    """The files of ``split`` ("train" or "test") under ``folder``: its ``train/``/``test/`` subfolders when both
    exist, else a seeded hold-out of ``test_fraction`` of all its files."""
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return labelled_files(folder / split, root)
    files = labelled_files(folder, root)
    if len(files) < 2:
        raise DataError(f"{folder}: {len(files)} labelled file(s); a train/test split needs at least 2 (or "
                        f"train/ and test/ folders); readable suffixes: {', '.join(LABELLED_SUFFIXES)}")
    train, test = holdout(len(files), test_fraction, seed)
    return [files[i] for i in (train if split == "train" else test)]


def read_cached(path: Path, **options) -> LabelledCloud:
    """:func:`read_labelled` of ``path`` with ``options``, kept in the dlparts cache with the file's stamp
    (:func:`dlparts.data._cache.file_stamp`): while the stamp holds, the file is not read again, and one that could
    not be read raises its cached DataError again."""
    stamp = np.asarray(file_stamp(path), dtype=np.int64)
    where = cache_file("labelled", {"file": str(Path(path).resolve()), **options, "version": _CACHE_VERSION},
                       "cloud.npz")
    kept = load_npz(where)
    if kept is not None and np.array_equal(kept["stamp"], stamp):
        if kept["reason"][0]:
            raise DataError(str(kept["reason"][0]))
        return LabelledCloud(kept["xyz"], kept["rgb"] if len(kept["rgb"]) else None, kept["labels"],
                             int(kept["dropped"][0]))
    try:
        cloud = read_labelled(path, **options)
    except DataError as exc:
        save_npz(where, compress=False, stamp=stamp, reason=np.asarray([str(exc)]))
        raise
    rgb = np.zeros((0, 3), np.uint8) if cloud.rgb is None else cloud.rgb  # no points: the file has no colours
    save_npz(where, compress=False, stamp=stamp, reason=np.asarray([""]), xyz=cloud.xyz, rgb=rgb,
             labels=cloud.labels, dropped=np.asarray([cloud.dropped]))
    return cloud


def read_scene(path: Path, classes: list[str], **options) -> LabelledCloud:
    """A labelled file (:func:`read_cached`) whose labels are checked against ``classes``; ``options`` go to
    :func:`read_labelled`."""
    cloud = read_cached(path, **options)
    check_labels(path, cloud.labels, classes)
    return cloud


def _none_read(what: str, skipped: list[tuple[str, str]]) -> DataError:
    """The error of a split or category of which no file could be read: the count and the first file's reason."""
    if not skipped:
        return DataError(f"{what}: no labelled file ({', '.join(LABELLED_SUFFIXES)})")
    path, reason = skipped[0]
    return DataError(f"{what}: none of its {len(skipped)} file(s) could be read; {path}: {reason}")


def _root(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"data.root {root} does not exist or is not a folder")
    return root


def scene_files(root: str | Path, split: str, *, test_fraction: float = 0.2, seed: int = 0) -> list[Path]:
    """The scene files of ``split`` (see the module docstring)."""
    root = _root(root)
    files = split_files(root, root, split, test_fraction, seed)
    if not files:
        raise DataError(f"{root}: no labelled file in the {split} split ({', '.join(LABELLED_SUFFIXES)})")
    return files


class SceneFolder(CloudDataset):
    """Blocks of labelled scenes: items ``{"points": float32 [num_points, 9 or 6], "seg": int64 [num_points]}``;
    ``classes``; ``files`` (the scenes of the split); ``skipped``: the ``(path, reason)`` of those that could not be
    read; ``dropped``: non-finite points dropped.  ``options``: ``label_field``, ``columns``, ``drop_nonfinite`` of
    :func:`dlparts.data.labelled.read_labelled`."""

    fields = SEGMENTATION_FIELDS

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 4096, block_size: float = 1.0,
                 stride: float = 1.0, seed: int = 0, classes: list[str] | None = None, test_fraction: float = 0.2,
                 transform=None, **options):
        root = _root(root)
        self.classes = read_classes(root, classes)
        self.files = scene_files(root, split, test_fraction=test_fraction, seed=seed)
        points, segs, channels, self.skipped, self.dropped = [], [], {}, [], 0
        for k, path in enumerate(progress(self.files, f"scene_folder {split}")):
            try:
                scene = read_scene(path, self.classes, **options)
            except UNREADABLE as exc:
                self.skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
                continue
            self.dropped += scene.dropped
            channels[9 if scene.rgb is not None else 6] = path
            p, s = room_to_blocks(scene.xyz, scene.rgb, scene.labels, rng_for(seed, k), num_points=num_points,
                                  block_size=block_size, stride=stride, min_points=min(100, max(1, num_points // 4)))
            points.append(p)
            segs.append(s)
        report_skipped(f"scene_folder {split}", self.skipped)
        if not channels:
            raise _none_read(f"scene_folder {root}, {split} split", self.skipped)
        if len(channels) > 1:
            raise DataError(f"{root}: some scenes have colours and some do not (e.g. {channels[9]} has, "
                            f"{channels[6]} has not); a model takes one or the other")
        self.points = torch.from_numpy(np.concatenate(points))
        self.seg = torch.from_numpy(np.concatenate(segs))
        if len(self.points) == 0:
            raise DataError(f"{root}: the {split} scenes give no block of {block_size} m with enough points")
        self.split, self.transform = split, transform


class PartFolder(CloudDataset):
    """Objects with part labels: items ``{"points": float32 [num_points, 3], "seg": int64 [num_points],
    "category": int64 []}``; ``classes`` (part names), ``categories`` (the folder names, sorted) and
    ``parts_of_category`` (the labels found in each category's readable files, both splits); ``skipped``: the
    ``(path, reason)`` of this split's unreadable files; ``dropped``: non-finite points dropped."""

    fields = {"category": "category"}  # points and seg are resampled per item (see _item)

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 2048, seed: int = 0,
                 classes: list[str] | None = None, test_fraction: float = 0.2, transform=None, **options):
        root = _root(root)
        self.classes = read_classes(root, classes)
        self.categories = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.categories:
            raise DataError(f"{root}: no category folder (expected <root>/<category>/<object files>)")
        self.clouds, self.segs, cats, self.parts_of_category = [], [], [], {}
        bad: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
        self.dropped = 0
        for c, name in enumerate(self.categories):
            seen: set[int] = set()
            mine: list[tuple[str, str]] = []
            for which in ("train", "test"):
                for path in split_files(root, root / name, which, test_fraction, seed):
                    try:
                        cloud = read_scene(path, self.classes, **options)
                    except UNREADABLE as exc:
                        mine.append((str(path), str(exc).removeprefix(f"{path}: ")))
                        bad[which].append(mine[-1])
                        continue
                    seen.update(np.unique(cloud.labels).tolist())
                    if which == split:
                        self.clouds.append(cloud.xyz)
                        self.segs.append(cloud.labels)
                        self.dropped += cloud.dropped
                        cats.append(c)
            if not seen:
                raise _none_read(f"part_folder category {name!r} ({root / name})", mine)
            self.parts_of_category[c] = sorted(seen)
        report_skipped("part_folder", bad["train"] + bad["test"])  # both splits are read for the parts
        self.skipped = bad[split]
        if not self.clouds:
            raise _none_read(f"part_folder {root}, {split} split", self.skipped)
        self.category = torch.tensor(cats, dtype=torch.int64)
        self.num_points, self.seed, self.split, self.transform = num_points, seed, split, transform

    def _item(self, i: int) -> dict:
        cloud, seg = self.clouds[i], self.segs[i]
        rng = rng_for(self.seed, i)
        idx = rng.permutation(len(cloud))[:self.num_points]
        if len(cloud) < self.num_points:
            idx = np.concatenate([idx, rng.integers(0, len(cloud), self.num_points - len(cloud))])
        return {"points": normalize_unit_sphere(torch.from_numpy(cloud[idx])),  # [num_points, 3]
                "seg": torch.from_numpy(seg[idx]), "category": self.category[i]}
