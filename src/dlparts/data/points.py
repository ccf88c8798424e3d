"""Reading files: bytes (missing and empty files named), text tables of numbers, and point files: ``.xyz`` /
``.txt`` / ``.pts`` (whitespace or comma separated), ``.npy``, ``.npz``, HDF5.

Columns are read by their number: 3 = xyz, 4 = xyz + label, 6 = xyz + normals, 7 = xyz + normals + label (the
layout of ShapeNetPart's ``.txt`` files; ModelNet40's ``modelnet40_normal_resampled`` has 6).  Arrays in ``.npz``
and HDF5 files are found by name (``points``/``xyz``/``data``/``pos``, ``normals``/``normal``, ``labels``/``label``/
``seg``) or, in an ``.npz`` holding one array, by being the only one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dlparts.errors import DataError, DataNotFoundError

POINT_SUFFIXES = (".xyz", ".txt", ".pts", ".npy", ".npz", ".h5", ".hdf5")
_POINT_KEYS = ("points", "xyz", "data", "pos")
_NORMAL_KEYS = ("normals", "normal")
_LABEL_KEYS = ("labels", "label", "seg", "pid")


class PointFile(NamedTuple):
    """``points float32 [N, 3]``, ``normals float32 [N, 3]`` or None, ``labels int64 [N]`` or None."""

    points: torch.Tensor
    normals: torch.Tensor | None
    labels: torch.Tensor | None


def read_bytes(path: str | Path) -> bytes:
    """The content of ``path``; missing files and empty files are errors naming the path."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{path}: the file is empty")
    return data


def read_points(path: str | Path) -> PointFile:
    """Read a point file (by suffix) into a :class:`PointFile`; bad content is a :class:`DataError` naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        raise DataError(f"{path}: unknown point-file format {suffix!r}; expected one of {', '.join(POINT_SUFFIXES)}")
    if suffix in (".xyz", ".txt", ".pts"):
        table = read_table(path)
    elif suffix == ".npy":
        table = _read_npy(path)
    else:
        return _read_named(path, suffix)
    return _split_columns(path, table)


def read_table(path: str | Path) -> np.ndarray:
    """A text table of numbers, ``float64 [N, C]``; ``#`` comments and a leading point-count line are skipped."""
    path = Path(path)
    data = read_bytes(path).replace(b",", b" ")
    fast = _plain_table(data)
    return fast if fast is not None else _table_lines(path, data)


def _plain_table(data: bytes) -> np.ndarray | None:
    """Fast path for a plain table (no comments, blank lines or count line): one C parse, no Python string per
    number (S3DIS rooms hold millions of lines).  None when the file needs :func:`_table_lines`, the reference."""
    body = data.strip()
    if b"#" in body or b"\n\n" in body.replace(b"\r", b""):
        return None
    first = body.split(b"\n", 1)[0].split()
    rows = body.count(b"\n") + 1
    if len(first) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy only warns when a token is not a number
        try:
            values = np.fromstring(body, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if values.size != len(first) * rows:
        return None
    return values.reshape(rows, len(first))  # [N, C]


def _table_lines(path: Path, data: bytes) -> np.ndarray:
    """The line-by-line table reader: comments, blank lines, a count line, and precise errors."""
    text = data.decode("latin-1")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    first = lines[0].split()
    if len(first) == 1 and first[0].isdigit():  # .pts files may start with their point count
        if int(first[0]) > len(lines) - 1:
            raise DataError(f"{path}: truncated: the first line promises {first[0]} points, "
                            f"the file has {len(lines) - 1}")
        lines = lines[1:]
        if not lines:
            raise DataError(f"{path}: the file holds no points")
        first = lines[0].split()
    width = len(first)
    try:
        flat = np.array(" ".join(lines).split(), dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: holds something that is not a number") from None
    if flat.size != width * len(lines):
        bad = next(i for i, line in enumerate(lines) if len(line.split()) != width)
        raise DataError(f"{path}: line {bad + 1} of the points has {len(lines[bad].split())} values, "
                        f"the first has {width}")
    return flat.reshape(len(lines), width)  # [N, C]


def _read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)  # header only: the shape is checked first
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if array.ndim != 2:
        raise DataError(f"{path}: expected a [N, C] array, got shape {list(array.shape)}")
    return np.asarray(array, dtype=np.float64)


def _split_columns(path: Path, table: np.ndarray) -> PointFile:
    width = table.shape[1] if table.ndim == 2 else 0
    if width not in (3, 4, 6, 7) or len(table) == 0:
        raise DataError(f"{path}: expected 3 (xyz), 4 (+label), 6 (+normals) or 7 (+normals+label) columns, "
                        f"got shape {list(table.shape)}")
    _check_finite(path, table[:, :6 if width >= 6 else 3])
    points = torch.from_numpy(np.ascontiguousarray(table[:, :3], dtype=np.float32))
    normals = torch.from_numpy(np.ascontiguousarray(table[:, 3:6], dtype=np.float32)) if width >= 6 else None
    labels = torch.from_numpy(table[:, -1].astype(np.int64)) if width in (4, 7) else None
    return PointFile(points, normals, labels)


def _check_finite(path: Path, values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        row = int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
        raise DataError(f"{path}: point {row} has a NaN or infinite value")


def _read_named(path: Path, suffix: str) -> PointFile:
    """``.npz`` / HDF5: arrays by name; one cloud per file (``[N, C]`` or ``[1, N, C]``)."""
    arrays = _open_named(path, suffix)
    key = next((k for k in _POINT_KEYS if k in arrays), None)
    if key is None and len(arrays) == 1:
        key = next(iter(arrays))
    if key is None:
        raise DataError(f"{path}: no point array; expected one named {', '.join(_POINT_KEYS)} "
                        f"(found {', '.join(sorted(arrays)) or 'none'})")
    points = _one_cloud(path, key, arrays[key])
    if points.shape[1] >= 6:
        return _split_columns(path, points[:, :7] if points.shape[1] == 7 else points[:, :6])
    nkey = next((k for k in _NORMAL_KEYS if k in arrays), None)
    lkey = next((k for k in _LABEL_KEYS if k in arrays), None)
    normals = _one_cloud(path, nkey, arrays[nkey]) if nkey else None
    labels = np.asarray(arrays[lkey]).reshape(-1) if lkey else None
    for name, extra in (("normals", normals), ("labels", labels)):
        if extra is not None and len(extra) != len(points):
            raise DataError(f"{path}: {len(points)} points but {len(extra)} {name}")
    table = np.concatenate([a for a in (points[:, :3], normals, None if labels is None else labels[:, None])
                            if a is not None], axis=1)
    return _split_columns(path, table)


def _open_named(path: Path, suffix: str) -> dict:
    """Name -> array of every array in the file."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        import h5py

        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable {suffix} file ({exc})") from None


def _one_cloud(path: Path, key: str, array) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # [1, N, C] -> [N, C]
    if array.ndim != 2:
        raise DataError(f"{path}: array {key!r} has shape {list(array.shape)}; expected one cloud [N, C] "
                        "(files of many clouds are read by the dataset classes)")
    return array
