"""ModelNet10/40 (Wu et al., CVPR 2015) for classification, in the three layouts people have on disk.

- :class:`ModelNet`: the raw meshes, ``<root>/<class>/{train,test}/<class>_<id>.off`` (ModelNet10.zip /
  ModelNet40.zip).  Each mesh is sampled uniformly on its surface (PointNet Sec. 5.1), optionally oversampled and
  reduced by farthest point sampling (``fps``), and normalized into the unit sphere.  The clouds of a split are
  cached in one compressed file on first use (with a progress bar) and reused afterwards.
- :class:`ModelNet40Normal`: ``modelnet40_normal_resampled`` (PointNet++): ``<root>/<class>/<class>_<id>.txt`` with
  comma-separated xyz + normals (10,000 points), ``modelnet40_shape_names.txt``, ``modelnet40_{train,test}.txt``.
- :class:`ModelNet40H5`: ``modelnet40_ply_hdf5_2048`` (PointNet): ``ply_data_{train,test}<k>.h5`` with ``data``
  ``[B, 2048, 3]`` and ``label``, listed by ``{train,test}_files.txt``, names in ``shape_names.txt``.

Split ``"val"`` is a seeded hold-out (``val_fraction``) of the training files, and ``"train"`` the rest; the test
split is never used for choosing.  Items: ``{"points": float32 [num_points, 3 or 6], "label": int64 []}``.
Unreadable files are reported once through the ``dlparts.data`` logger and skipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from dlparts.data._arrays import READ_ERRORS, open_arrays, usable
from dlparts.data._cache import cache_file, load_npz, save_npz
from dlparts.data._dataset import CLASSIFICATION_FIELDS, CloudDataset
from dlparts.data._progress import progress, report_skipped
from dlparts.data._threads import single_thread
from dlparts.data.clouds import load_points
from dlparts.data.points import read_table
from dlparts.data.splits import holdout, rng_for
from dlparts.errors import ConfigError, DataError, DataNotFoundError

SPLITS = ("train", "val", "test")
_URL = "https://modelnet.cs.princeton.edu/"
_VERSION = 1


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def _select(split: str, n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Indices into the published train (for train/val) or test list."""
    if split == "test":
        return np.arange(n)
    train, val = holdout(n, val_fraction, seed)
    return train if split == "train" else val


class ModelNet(CloudDataset):
    """Raw-mesh ModelNet10/40: surface-sampled clouds, cached per split (see the module docstring)."""

    fields = CLASSIFICATION_FIELDS

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 1024, normals: bool = False,
                 fps: bool = False, val_fraction: float = 0.1, seed: int = 0, transform=None):
        root = Path(root)
        _check_split(split)
        if num_points < 1:
            raise ConfigError(f"num_points must be >= 1, got {num_points}")
        self.classes = _mesh_classes(root)
        published = "test" if split == "test" else "train"
        files = [(f, c) for c, name in enumerate(self.classes) for f in sorted((root / name / published).glob("*.off"))]
        if not files:
            raise DataNotFoundError(f"ModelNet root {root} has no {published} meshes; expected "
                                    f"<root>/<class>/{published}/<class>_<id>.off (published at {_URL})")
        settings = {"root": str(root.resolve()), "split": published, "n": num_points, "fps": fps, "seed": seed,
                    "version": _VERSION,
                    "files": [str(f.relative_to(root)) for f, _ in files]}  # a changed file list is a new cache
        arrays = _sampled(files, cache_file("modelnet", settings, f"{published}.npz"), num_points, fps, seed)
        keep = _select(split, len(arrays["labels"]), val_fraction, seed)
        self.points = torch.from_numpy(arrays["points"][keep, :, :6 if normals else 3])  # one copy [M, N, C]
        self.labels = torch.from_numpy(arrays["labels"][keep])
        self.files = [str(arrays["files"][i]) for i in keep]
        self.split, self.transform = split, transform


def _mesh_classes(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataNotFoundError(f"ModelNet root {root} does not exist; expected <root>/<class>/{{train,test}}/*.off "
                                f"(ModelNet10.zip / ModelNet40.zip, published at {_URL})")
    classes = sorted(d.name for d in root.iterdir() if (d / "train").is_dir() or (d / "test").is_dir())
    if not classes:
        raise DataNotFoundError(f"ModelNet root {root} has no <class>/train or <class>/test folders; expected "
                                f"<root>/<class>/{{train,test}}/*.off (published at {_URL})")
    return classes


def sample_files(files: list[tuple[Path, int]], num_points: int, fps: bool, seed: int,
                 what: str = "ModelNet") -> dict[str, np.ndarray]:
    """Sample every mesh of ``files`` (path, label): ``points float32 [M, n, 6]``, ``labels``, ``files``; bad files
    are logged and skipped.  Each file's randomness comes from ``(seed, its position)``."""
    points = np.empty((len(files), num_points, 6), dtype=np.float32)  # filled in place: no second copy at the end
    good, skipped = [], []
    with single_thread():
        for i, (path, label) in enumerate(progress(files, f"sampling {what}")):
            gen = torch.Generator().manual_seed(int(rng_for(seed, i).integers(2**62)))
            try:
                cloud = load_points(path, num_points, normals=True, fps=fps, generator=gen)
            except DataError as exc:
                skipped.append((str(path), str(exc)))
                continue
            points[len(good)] = cloud.numpy()
            good.append(i)
    report_skipped(what, skipped)
    if not good:
        raise DataError(f"{what}: none of the {len(files)} files could be read")
    return {"points": points[:len(good)], "labels": np.asarray([files[i][1] for i in good], dtype=np.int64),
            "files": np.asarray([str(files[i][0]) for i in good])}


def _sampled(files, path: Path, num_points: int, fps: bool, seed: int) -> dict[str, np.ndarray]:
    arrays = load_npz(path)
    if arrays is None:
        arrays = sample_files(files, num_points, fps, seed)
        save_npz(path, **arrays)
    return arrays


class ModelNet40Normal(CloudDataset):
    """``modelnet40_normal_resampled``: the first ``num_points`` of each 10k-point file (already FPS-ordered by
    PointNet++), xyz or xyz + normals; ``num_classes`` 40 or 10 (``modelnet10_*`` lists)."""

    fields = CLASSIFICATION_FIELDS

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 1024, normals: bool = False,
                 num_classes: int = 40, val_fraction: float = 0.1, seed: int = 0, transform=None):
        root = Path(root)
        _check_split(split)
        if num_classes not in (10, 40):
            raise ConfigError(f"num_classes must be 10 or 40, got {num_classes}")
        prefix = f"modelnet{num_classes}"
        names_file = root / f"{prefix}_shape_names.txt"
        list_file = root / f"{prefix}_{'test' if split == 'test' else 'train'}.txt"
        for f in (names_file, list_file):
            if not f.is_file():
                raise DataNotFoundError(f"{f} is missing; expected modelnet40_normal_resampled: <root>/"
                                        f"{prefix}_shape_names.txt, {prefix}_train.txt, {prefix}_test.txt and "
                                        "<root>/<class>/<class>_<id>.txt (published with PointNet++)")
        self.classes = names_file.read_text().split()
        shapes = list_file.read_text().split()
        keep = _select(split, len(shapes), val_fraction, seed)
        points, labels, skipped = [], [], []
        for shape in (shapes[i] for i in keep):
            name = shape.rsplit("_", 1)[0]
            path = root / name / f"{shape}.txt"
            try:
                if name not in self.classes:
                    raise DataError(f"class {name!r} is not in {names_file.name}")
                table = read_table(path)
                if table.shape[1] < 6 or len(table) < num_points or not np.isfinite(table[:num_points, :6]).all():
                    raise DataError(f"expected >= {num_points} finite rows of 6 values, got {list(table.shape)}")
            except DataError as exc:
                skipped.append((str(path), str(exc)))
                continue
            points.append(table[:num_points, :6 if normals else 3].astype(np.float32))
            labels.append(self.classes.index(name))
        report_skipped("ModelNet40Normal", skipped)
        if not points:
            raise DataError(f"{root}: no readable shape in {list_file.name}")
        self.points, self.labels = torch.from_numpy(np.stack(points)), torch.tensor(labels, dtype=torch.int64)
        self.split, self.transform = split, transform


class ModelNet40H5(CloudDataset):
    """``modelnet40_ply_hdf5_2048``: the first ``num_points`` of each 2048-point cloud, xyz only."""

    fields = CLASSIFICATION_FIELDS

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 1024, val_fraction: float = 0.1,
                 seed: int = 0, transform=None):
        root = Path(root)
        _check_split(split)
        published = "test" if split == "test" else "train"
        list_file = root / f"{published}_files.txt"
        if not list_file.is_file() or not (root / "shape_names.txt").is_file():
            raise DataNotFoundError(f"{root}: expected modelnet40_ply_hdf5_2048 with shape_names.txt, "
                                    f"{published}_files.txt and ply_data_{published}<k>.h5 (published with PointNet)")
        self.classes = _words(root / "shape_names.txt")
        points, labels, skipped = [], [], []
        for listed in _words(list_file):
            path = root / Path(listed).name  # the lists hold paths of the authors' machine: keep the file name
            try:
                data, label = _read_h5(path, num_points, len(self.classes))
            except DataError as exc:
                skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
                continue
            points.append(data)
            labels.append(label)
        report_skipped("ModelNet40H5", skipped)
        if not points:
            raise DataError(f"{root}: no readable file in {list_file.name}")
        all_points, all_labels = np.concatenate(points), np.concatenate(labels)
        keep = _select(split, len(all_labels), val_fraction, seed)
        self.points, self.labels = torch.from_numpy(all_points[keep]), torch.from_numpy(all_labels[keep])
        self.split, self.transform = split, transform


def _words(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None


def _read_h5(path: Path, num_points: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``data float32 [B, num_points, 3]`` and ``label int64 [B]`` of one file, through the validating reader of
    :mod:`dlparts.data._arrays`: shapes, dtypes and sizes checked from the headers before anything is read."""
    try:
        with open_arrays(path, ".h5") as arrays:
            missing = [key for key in ("data", "label") if key not in arrays]
            if missing:
                raise DataError(f"{path}: no array {missing[0]!r} (found {', '.join(sorted(arrays)) or 'none'})")
            data, label = usable(arrays["data"]), usable(arrays["label"])
            if len(data.shape) != 3 or data.shape[2] < 3:
                raise DataError(f"{path}: array 'data' has shape {list(data.shape)}, expected [B, N, 3]")
            if data.shape[1] < num_points:
                raise DataError(f"{path}: clouds of {data.shape[1]} points, fewer than num_points={num_points}")
            if math.prod(label.shape) != data.shape[0]:
                raise DataError(f"{path}: {data.shape[0]} clouds but {math.prod(label.shape)} labels")
            with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values are refused below
                points = data.read()[:, :num_points, :3].astype(np.float32)
                values = label.read().reshape(-1)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {exc})") from None
    if not np.isfinite(points).all():
        raise DataError(f"{path}: NaN or inf coordinates (or beyond the float32 range)")
    if len(values) and not (values.min() >= 0 and values.max() < classes and np.all(values == np.round(values))):
        raise DataError(f"{path}: labels must be whole numbers in [0, {classes}) (the classes of shape_names.txt)")
    return points, values.astype(np.int64)
