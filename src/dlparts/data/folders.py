"""Classification from the user's own folder of files (``data.name: point_folder``).

Layout: ``<root>/<class>/**/<file>``, one subfolder per class (class names are the folder names, sorted, or
``classes`` to choose and order them); files in every format :func:`~dlparts.data.load_points` reads (meshes:
OFF, PLY, OBJ, STL; points: ``.xyz/.txt/.pts``, ``.npy/.npz``, HDF5), found recursively, formats mixed freely.

Splits (:func:`plan_splits`): when the class folders hold ``train/`` and ``test/`` (the ModelNet layout, any
format), those are the training and test files; otherwise each class's files are split by a seeded draw,
``test_fraction`` of them to test.  In both, validation is a seeded hold-out (``val_fraction``,
:func:`~dlparts.data.splits.holdout`) of each class's training files, so the split is stratified and a test file is
never chosen on.  The lists can be written to and read back from a run folder (:func:`write_splits`,
:func:`read_splits`) so that a resumed fit and ``dlparts test`` use exactly the same files.

Clouds (:class:`PointFolder`): each file is sampled once (meshes on their surface, point files by subset) and kept
in one cache file per root and sampling settings, each row stamped with its file's size, mtime and ctime; a later
pass re-samples only the files whose stamp changed and the new ones (a progress bar shows the sampling).  Unreadable
files are reported once, skipped and listed in :attr:`PointFolder.skipped`; they are found while caching, so an
epoch never meets one.  NaN/inf coordinates refuse the file, naming it and the count of bad points, unless
``drop_nonfinite`` drops those points (counted in :attr:`PointFolder.dropped`).
Items: ``{"points": float32 [num_points, 3 or 6], "label": int64 []}``.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlparts.data._cache import cache_file, file_stamp, load_npz, save_npz
from dlparts.data._dataset import CLASSIFICATION_FIELDS, CloudDataset
from dlparts.data._progress import progress, report_skipped
from dlparts.data._threads import single_thread
from dlparts.data.clouds import load_points
from dlparts.data.meshes import MESH_SUFFIXES
from dlparts.data.points import POINT_SUFFIXES
from dlparts.data.splits import holdout, rng_for
from dlparts.errors import ConfigError, DataError, DataNotFoundError, NonFiniteError

SPLITS = ("train", "val", "test")
SUFFIXES = MESH_SUFFIXES + POINT_SUFFIXES
_VERSION = 1


class FolderSplits(NamedTuple):
    """The files of each split: ``files[split]`` is a list of ``(path relative to the root, class index)``;
    ``layout`` is ``"train/test folders"`` or ``"seeded fractions"``."""

    classes: list[str]
    files: dict[str, list[tuple[str, int]]]
    layout: str


def _data_files(root: Path, folder: str) -> list[str]:
    """The files of a known format under ``root/folder`` (any depth, hidden files and folders left out), as sorted
    paths relative to ``root`` with ``/`` separators."""
    found = []
    for top, dirs, names in os.walk(root / folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(top).relative_to(root).as_posix()
        found += [f"{rel}/{n}" for n in names if not n.startswith(".") and os.path.splitext(n)[1].lower() in SUFFIXES]
    return sorted(found)


def _class_folders(root: Path, classes: list[str] | None) -> list[str]:
    if not root.is_dir():
        raise DataNotFoundError(f"data.root {root} does not exist; expected <root>/<class>/<files> (one folder per "
                                f"class)")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        if not found:
            raise DataNotFoundError(f"data.root {root} has no class folders; expected <root>/<class>/<files>")
        return found
    missing = [c for c in classes if c not in found]
    if missing:
        raise DataNotFoundError(f"data.classes names {', '.join(map(repr, missing))}, but {root} has no such folder "
                                f"(found: {', '.join(found) or 'none'})")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"data.classes names a class twice: {classes}")
    return list(classes)


def plan_splits(root: str | Path, *, classes: list[str] | None = None, val_fraction: float = 0.1,
                test_fraction: float = 0.2, seed: int = 0) -> FolderSplits:
    """The :class:`FolderSplits` of ``root`` (see the module docstring).  An empty class folder, or a class with
    fewer files than its splits need (one each of train, validation and test), is a :class:`DataError` naming it."""
    root = Path(root)
    names = _class_folders(root, classes)
    published = any((root / name / s).is_dir() for name in names for s in ("train", "test"))
    files: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for label, name in enumerate(names):
        if published:
            train, test = (_data_files(root, f"{name}/{s}") for s in ("train", "test"))
        else:
            train = _data_files(root, name)
            if not train:
                raise DataError(f"class {name!r}: its folder {root / name} holds no file of a known format "
                                f"({' '.join(SUFFIXES)})")
            k = max(1, round(len(train) * test_fraction))
            chosen = set(rng_for(seed, 104729, label).permutation(len(train))[:k].tolist())
            test = [f for i, f in enumerate(train) if i in chosen]
            train = [f for i, f in enumerate(train) if i not in chosen]
        if len(train) < 2 or not test:
            raise DataError(f"class {name!r} has {len(train)} training and {len(test)} test file(s) in "
                            f"{root / name}; it needs at least 2 training files (one is held out for validation) "
                            f"and 1 test file")
        kept, held = holdout(len(train), val_fraction, seed)
        for split, chosen_files in (("train", [train[i] for i in kept]), ("val", [train[i] for i in held]),
                                    ("test", test)):
            files[split] += [(f, label) for f in chosen_files]
    return FolderSplits(names, files, "train/test folders" if published else "seeded fractions")


def write_splits(path: str | Path, plan: FolderSplits, summary: dict | None = None) -> None:
    """Write ``plan`` (and any ``summary`` entries: counts, skipped files) as JSON to ``path``."""
    record = {"version": _VERSION, "classes": plan.classes, "layout": plan.layout, **(summary or {}),
              "files": {s: [[f, plan.classes[c]] for f, c in plan.files[s]] for s in SPLITS}}
    Path(path).write_text(json.dumps(record, indent=1))


def read_splits(path: str | Path) -> FolderSplits:
    """The :class:`FolderSplits` written by :func:`write_splits`."""
    try:
        record = json.loads(Path(path).read_text())
        classes = list(record["classes"])
        files = {s: [(str(f), classes.index(c)) for f, c in record["files"][s]] for s in SPLITS}
        return FolderSplits(classes, files, str(record["layout"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a split file written by dlparts ({type(exc).__name__}: {exc})") from None


def class_counts(plan: FolderSplits, labels: dict[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    """``{class: {split: number of usable samples}}`` from each split's ``labels``."""
    return {name: {s: int((labels[s] == c).sum()) for s in SPLITS} for c, name in enumerate(plan.classes)}


class PointFolder(CloudDataset):
    """One split of a class-per-folder root, as clouds sampled once and cached (see the module docstring).

    ``plan``: the split lists to use (e.g. read back from a run folder); by default :func:`plan_splits` with
    ``classes``, ``val_fraction``, ``test_fraction`` and ``seed``.  ``normals`` adds the surface (or file) normals as
    channels 3-5; every file then must have them.  ``fps``: meshes are oversampled and reduced by farthest point
    sampling, as PointNet++ made its ModelNet40 clouds.  :meth:`all_splits` builds the three splits at once.
    """

    fields = CLASSIFICATION_FIELDS

    def __init__(self, root: str | Path, split: str = "train", *, num_points: int = 1024, normals: bool = False,
                 fps: bool = False, classes: list[str] | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, drop_nonfinite: bool = False,
                 plan: FolderSplits | None = None, transform=None):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        plan, cache = _prepare(Path(root), num_points, normals, fps, classes, val_fraction, test_fraction, seed,
                               drop_nonfinite, plan)
        self._fill(Path(root), split, plan, cache, transform)

    @classmethod
    def all_splits(cls, root: str | Path, *, num_points: int = 1024, normals: bool = False, fps: bool = False,
                   classes: list[str] | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
                   seed: int = 0, drop_nonfinite: bool = False,
                   plan: FolderSplits | None = None) -> dict[str, PointFolder]:
        """``{"train": ..., "val": ..., "test": ...}`` with the arguments of the constructor, the folder scanned
        and the cache read once for all three."""
        plan, cache = _prepare(Path(root), num_points, normals, fps, classes, val_fraction, test_fraction, seed,
                               drop_nonfinite, plan)
        splits = {split: cls.__new__(cls) for split in SPLITS}
        for split, dataset in splits.items():
            dataset._fill(Path(root), split, plan, cache, None)
        return splits

    def _fill(self, root: Path, split: str, plan: FolderSplits, cache: _FolderCache, transform) -> None:
        wanted = plan.files[split]
        rows = [(cache.rows[f], label) for f, label in wanted if f in cache.rows]
        self.points = torch.from_numpy(cache.points[np.asarray([r for r, _ in rows], dtype=np.int64)])  # [M, n, C]
        self.labels = torch.tensor([label for _, label in rows], dtype=torch.int64)
        self.files = [f for f, _ in wanted if f in cache.rows]
        self.skipped = [(f, cache.failed[f]) for f, _ in wanted if f in cache.failed]
        self.dropped = int(sum(cache.dropped.get(f, 0) for f in self.files))
        self.classes, self.layout, self.split, self.transform = list(plan.classes), plan.layout, split, transform
        report_skipped(f"point_folder {split}", [(str(root / f), why) for f, why in self.skipped])
        if not self.files:
            raise DataError(f"point_folder {root}: none of the {len(wanted)} {split} files could be read")


def _prepare(root: Path, num_points: int, normals: bool, fps: bool, classes, val_fraction: float,
             test_fraction: float, seed: int, drop_nonfinite: bool, plan: FolderSplits | None):
    """The plan (given, or drawn) and the cache holding a cloud of every file in it."""
    if num_points < 1:
        raise ConfigError(f"num_points must be >= 1, got {num_points}")
    plan = plan or plan_splits(root, classes=classes, val_fraction=val_fraction, test_fraction=test_fraction,
                               seed=seed)
    settings = {"root": str(root.resolve()), "n": num_points, "normals": normals, "fps": fps, "seed": seed,
                "drop_nonfinite": drop_nonfinite, "version": _VERSION}
    cache = _FolderCache(root, cache_file("point_folder", settings, "clouds.npz"), settings)
    cache.update(sorted({f for s in SPLITS for f, _ in plan.files[s]}))
    return plan, cache


class _FolderCache:
    """The sampled clouds of a root's files: ``points [M, n, C]``, ``rows`` (file -> row), ``failed`` (file ->
    reason) and ``dropped`` (file -> non-finite points dropped), kept in one ``.npz`` with each file's stamp."""

    def __init__(self, root: Path, path: Path, settings: dict):
        self.root, self.path, self.settings = root, path, settings
        arrays = load_npz(path) or {}
        names = [str(f) for f in arrays.get("files", [])]
        self.stamps = {f: tuple(s) for f, s in zip(names, arrays.get("stamps", np.zeros((0, 3), np.int64)).tolist())}
        self.rows = {f: i for i, (f, ok) in enumerate(zip(names, arrays.get("ok", []))) if ok}
        self.failed = {f: str(why) for f, ok, why in zip(names, arrays.get("ok", []), arrays.get("reasons", []))
                       if not ok}
        self.dropped = {f: int(d) for f, d in zip(names, arrays.get("dropped", [])) if d}
        self.points = arrays.get("points", np.zeros((0, settings["n"], 6 if settings["normals"] else 3), np.float32))

    def update(self, files: list[str]) -> None:
        """Sample the files of ``files`` that are new or whose stamp changed, then keep exactly ``files``."""
        stamps = {f: file_stamp(self.root / f) for f in files}
        todo = [f for f in files if self.stamps.get(f) != stamps[f]]
        if not todo and len(self.stamps) == len(files):
            return
        fresh = _sample(self.root, todo, self.settings)
        n, channels = self.points.shape[1:]
        points = np.empty((len(files), n, channels), dtype=np.float32)  # filled in place: no second copy
        ok, reasons, dropped = np.zeros(len(files), bool), [""] * len(files), np.zeros(len(files), np.int64)
        for i, f in enumerate(files):
            if f in fresh:
                cloud, why, dropped[i] = fresh[f]
            else:
                cloud, why, dropped[i] = (self.points[self.rows[f]] if f in self.rows else None,
                                          self.failed.get(f, ""), self.dropped.get(f, 0))
            ok[i], reasons[i] = cloud is not None, why
            if cloud is not None:
                points[i] = cloud
        save_npz(self.path, compress=False, points=points, files=np.asarray(files), ok=ok,
                 reasons=np.asarray(reasons), dropped=dropped,
                 stamps=np.asarray([stamps[f] for f in files], dtype=np.int64).reshape(-1, 3))
        self.points, self.stamps = points, {f: stamps[f] for f in files}
        self.rows = {f: i for i, f in enumerate(files) if ok[i]}
        self.failed = {f: reasons[i] for i, f in enumerate(files) if not ok[i]}
        self.dropped = {f: int(d) for f, d in zip(files, dropped) if d}


#: Files per worker process below which sampling stays in this process (a worker costs a fork and a pipe).
_FILES_PER_WORKER = 64


def _sample(root: Path, files: list[str], settings: dict) -> dict[str, tuple[np.ndarray | None, str, int]]:
    """``{file: (cloud [n, C] or None, reason it failed, non-finite points dropped)}``, in worker processes (a torch
    DataLoader, one per core up to 8) when there are many files: reading and sampling are per-file Python and small
    tensor work that one process cannot spread over cores."""
    workers = min(len(files) // _FILES_PER_WORKER, os.cpu_count() or 1, 8)
    loader = DataLoader(_Files(root, files, settings), batch_size=None, num_workers=workers,
                        collate_fn=_as_is, worker_init_fn=_one_thread)
    with single_thread():
        return dict(progress(loader, f"sampling {len(files)} file(s) of {root}"))


class _Files(Dataset):
    """Item ``i``: ``(files[i], (cloud or None, reason, dropped))`` of :func:`_sample_file`."""

    def __init__(self, root: Path, files: list[str], settings: dict):
        self.root, self.files, self.settings = root, files, settings

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.files[i], _sample_file(self.root, self.files[i], self.settings)


def _as_is(item):
    return item


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


def _sample_file(root: Path, name: str, settings: dict) -> tuple[np.ndarray | None, str, int]:
    """The cloud of one file; its randomness comes from ``(seed, its name)``, so adding or changing one file leaves
    the others' clouds as they were."""
    gen = torch.Generator().manual_seed(int(rng_for(settings["seed"], zlib.crc32(name.encode())).integers(2**62)))
    options = {"normals": settings["normals"], "fps": settings["fps"], "generator": gen}
    try:
        return load_points(root / name, settings["n"], **options).numpy(), "", 0
    except NonFiniteError as exc:
        if not settings["drop_nonfinite"]:
            return None, f"{exc}; set data.drop_nonfinite=true to drop those points", 0
        count = exc.count
    except DataError as exc:  # DataNotFoundError too: a file removed while we sample
        return None, str(exc), 0
    try:
        return load_points(root / name, settings["n"], drop_nonfinite=True, **options).numpy(), "", count
    except DataError as exc:
        return None, str(exc), 0
