"""ImageNet-style image folders: ``<root>/<split>/<class>/**/<image>``, read the way AlexNet's section 2 prepares them.

Items are ``{"image": float32 [3, H, W], "label": int64 []}`` (``docs/contracts.md``).  Every image is decoded, made
RGB and preprocessed to ``uint8 [3, S, S]`` (shorter side to ``S``, centre crop; ``S = 256`` as the paper), then
passed to ``transform`` (``dlparts.data.images.build_transform``; without one, scaled to ``[0, 1]``).

Bad input never stops an epoch: a file that cannot be decoded (empty, truncated, not an image) is reported once, with
its path, through the ``dlparts.data`` logger and replaced by the next good item; files without an image extension
are reported once when the folder is scanned; images smaller than ``S`` are reported and scaled up.  A missing
folder, a folder without class sub-folders, a class folder without images, or a split without any image is a
:mod:`dlparts.errors` error when the dataset is built, before training starts.

``cache_dir`` enables a one-time cache: the first use preprocesses every image (with a progress bar) into one
``uint8`` array on disk, which later epochs and runs read instead of the JPEGs; bad files found then are dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dlparts.data._progress import progress
from dlparts.data.images import load_rgb, preprocess
from dlparts.errors import DataError, DataNotFoundError

log = logging.getLogger("dlparts.data")

#: Extensions Pillow can open (``.jpg``, ``.png``, ``.webp``, ``.tif``, ...).
IMAGE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _class_dirs(split_dir: Path) -> list[Path]:
    if not split_dir.is_dir():
        raise DataNotFoundError(f"{split_dir}: no such folder (expected <root>/<split>/<class>/<images>)")
    entries = [p for p in sorted(split_dir.iterdir()) if not p.name.startswith(".")]
    loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        raise DataNotFoundError(f"{split_dir}: images such as {loose[0]!r} lie directly in the split folder; "
                                f"expected one sub-folder per class, {split_dir}/<class>/<images>")
    dirs = [p for p in entries if p.is_dir()]
    if not dirs:
        raise DataNotFoundError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<images>)")
    return dirs


def scan_image_folder(split_dir: str | Path, classes: Sequence[str] | None = None
                      ) -> tuple[list[str], list[tuple[str, int]]]:
    """List ``(path, label)`` of every image file under ``split_dir/<class>/``, sorted, and the class names.

    ``classes`` fixes the names and their order (pass the training set's for the validation set); a class folder
    outside that list is an error.  Files without an image extension are reported once and left out; dot-files are
    ignored.
    """
    split_dir = Path(split_dir)
    dirs = _class_dirs(split_dir)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataNotFoundError(f"{split_dir}: class folder {unknown[0]!r} is not one of the {len(classes)} "
                                    f"training classes")
    index = {c: i for i, c in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    empty = []
    for d in dirs:
        found = 0
        for path in sorted(d.rglob("*")):
            if path.is_symlink() and not path.exists():
                log.warning("%s: skipped, a symbolic link to %s, which does not exist", path, os.readlink(path))
                continue
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                log.warning("%s: skipped, not an image file (extension %r)", path, path.suffix)
                continue
            samples.append((str(path), index[d.name]))
            found += 1
        if not found:
            empty.append(d.name)
    if not samples:
        raise DataNotFoundError(f"{split_dir}: no image files in any of its {len(dirs)} class folders")
    if empty:
        raise DataNotFoundError(f"{split_dir}: class folder {empty[0]!r} has no image files "
                                f"({len(empty)} empty class folder(s) in all)")
    return list(classes), samples


class ImageFolderDataset(Dataset):
    """``<root>/<split>/<class>/<image>`` as ``{"image": float32 [3, H, W], "label": int64 []}`` items.

    ``size`` is the preprocessing size ``S`` (256 as the paper); ``transform`` maps ``uint8 [3, S, S]`` to the
    float image (e.g. ``build_transform(train=True, ...)``).  ``classes`` (names, in label order) defaults to the
    sorted class folder names.  Bad files are reported once per process and skipped (see the module docstring).
    """

    def __init__(self, root: str | Path, split: str = "train", *, transform: Callable | None = None,
                 size: int = 256, classes: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                 progress: bool = True):
        self.root, self.split, self.size, self.transform = Path(root), split, size, transform
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: dataset root folder does not exist")
        self.classes, self.samples = scan_image_folder(self.root / split, classes)
        self._reported: set[str] = set()
        self._cache_path: Path | None = None
        self._cache: np.ndarray | None = None
        if cache_dir is not None:
            self._cache_path = self._build_cache(Path(cache_dir), show_progress=progress)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _report(self, path: str, reason: str) -> None:
        if path not in self._reported:
            self._reported.add(path)
            log.warning("%s: %s", path, reason)

    def decode(self, index: int) -> torch.Tensor:
        """Read and preprocess sample ``index`` from its file: ``uint8 [3, S, S]``; :class:`DataError` if bad."""
        path = self.samples[index][0]
        img = load_rgb(path)
        if min(img.size) < self.size:
            self._report(path, f"image is {img.size[0]}x{img.size[1]}, smaller than {self.size}; scaled up")
        return preprocess(img, self.size)

    def load(self, index: int) -> torch.Tensor:
        """Sample ``index`` as ``uint8 [3, S, S]``, from the cache when there is one."""
        if self._cache_path is None:
            return self.decode(index)
        if self._cache is None:  # opened lazily, so that DataLoader workers each map the file themselves
            self._cache = np.load(self._cache_path, mmap_mode="r", allow_pickle=False)
        return torch.from_numpy(np.array(self._cache[index]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for offset in range(len(self.samples)):
            i = (index + offset) % len(self.samples)
            try:
                image = self.load(i)
            except DataError as exc:
                self._report(self.samples[i][0], f"skipped ({exc.args[0].split(': ', 1)[-1]})")
                continue
            if self.transform is not None:
                image = self.transform(image)
            else:
                image = image.to(torch.float32) / 255.0
            return {"image": image, "label": torch.tensor(self.samples[i][1], dtype=torch.int64)}
        raise DataError(f"{self.root / self.split}: none of the {len(self.samples)} image files could be read")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = None  # a memory map is re-opened in each worker, not pickled
        return state

    # ------------------------------------------------------------------------------------------------------- cache
    def _cache_key(self) -> str:
        digest = hashlib.sha1(f"{self.root.resolve()}|{self.split}|{self.size}|{self.classes}".encode())
        for path, label in self.samples:
            stat = os.stat(path)
            digest.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    def _build_cache(self, cache_dir: Path, show_progress: bool) -> Path:
        """Preprocess every sample once into ``<cache_dir>/<key>.npy`` (``uint8 [N, 3, S, S]``); keep the list of
        good samples in ``<key>.json``.  A cache whose key matches (same files, sizes and times) is reused."""
        key = self._cache_key()
        array_path, index_path = cache_dir / f"{self.split}-{key}.npy", cache_dir / f"{self.split}-{key}.json"
        if array_path.exists() and index_path.exists():
            self.samples = [tuple(s) for s in json.loads(index_path.read_text())["samples"]]
            return array_path
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = array_path.with_suffix(".partial.npy")
        try:
            good = self._fill_cache(partial, show_progress)
        except BaseException:  # an interrupted or failed build leaves no half-written cache behind
            partial.unlink(missing_ok=True)
            raise
        _truncate_npy(partial, array_path, len(good))
        index_path.write_text(json.dumps({"samples": good, "classes": self.classes}))
        self.samples = good
        return array_path

    def _fill_cache(self, partial: Path, show_progress: bool) -> list[tuple[str, int]]:
        """Decode every sample into the ``.npy`` at ``partial``; the samples that could be read, in order."""
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                          shape=(len(self.samples), 3, self.size, self.size))
        good: list[tuple[str, int]] = []
        for i in progress(range(len(self.samples)), f"caching {self.split} images", enabled=show_progress):
            try:
                array[len(good)] = self.decode(i).numpy()
            except DataError as exc:
                self._report(self.samples[i][0], f"skipped ({exc.args[0].split(': ', 1)[-1]})")
                continue
            good.append(self.samples[i])
        if not good:
            raise DataError(f"{self.root / self.split}: none of the {len(self.samples)} image files could be read")
        array.flush()
        return good


def _truncate_npy(partial: Path, final: Path, rows: int) -> None:
    """Keep the first ``rows`` rows of the ``.npy`` at ``partial`` and move it to ``final`` atomically."""
    full = np.load(partial, mmap_mode="r", allow_pickle=False)
    if rows == full.shape[0]:
        del full
        os.replace(partial, final)
        return
    trimmed = np.lib.format.open_memmap(final.with_suffix(".tmp.npy"), mode="w+", dtype=np.uint8,
                                        shape=(rows, *full.shape[1:]))
    trimmed[:] = full[:rows]
    trimmed.flush()
    del trimmed, full
    os.replace(final.with_suffix(".tmp.npy"), final)
    partial.unlink()
