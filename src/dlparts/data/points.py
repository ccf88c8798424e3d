"""Reading files: bytes (missing and empty files named), text tables of numbers, and point files: ``.xyz`` /
``.txt`` / ``.pts`` (whitespace or comma separated), ``.npy``, ``.npz``, HDF5.

Columns are read by their number: 3 = xyz, 4 = xyz + label, 6 = xyz + normals, 7 = xyz + normals + label (the
layout of ShapeNetPart's ``.txt`` files; ModelNet40's ``modelnet40_normal_resampled`` has 6).  Arrays in ``.npz``
and HDF5 files are found by name (``points``/``xyz``/``data``/``pos``, ``normals``/``normal``, ``labels``/``label``/
``seg``) or, in an ``.npz`` holding one array, by being the only one.

Text is read in any encoding a user's tools write: by its byte-order mark (UTF-8, UTF-16 or UTF-32, as Windows
editors and assimp's ``box_UTF16BE.obj`` have it), else as UTF-8, else as Latin-1 (:func:`text_utf8`).

Bad input is one :class:`DataError` naming the file, found before any large allocation: archive and HDF5 arrays are
checked from their headers (:mod:`dlparts.data._arrays`), text by line length, counts and the ``DLPARTS_MAX_POINTS``
ceiling (:mod:`dlparts.data._limits`); coordinates must be finite after the cast to float32.
"""

from __future__ import annotations

import codecs
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dlparts.data._arrays import READ_ERRORS, Member, open_arrays, usable
from dlparts.data._limits import (as_float32, check_line_lengths, check_values, finite_rows, parse_count,
                                  parse_numbers)
from dlparts.errors import DataError, DataNotFoundError, DlpartsError

POINT_SUFFIXES = (".xyz", ".txt", ".pts", ".npy", ".npz", ".h5", ".hdf5")
_POINT_KEYS = ("points", "xyz", "data", "pos")
_NORMAL_KEYS = ("normals", "normal")
_LABEL_KEYS = ("labels", "label", "seg", "pid")
#: Byte-order marks and the codec each means; UTF-32's marks first, as UTF-32-LE's begins with UTF-16-LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class PointFile(NamedTuple):
    """``points float32 [N, 3]``, ``normals float32 [N, 3]`` or None, ``labels int64 [N]`` or None."""

    points: torch.Tensor
    normals: torch.Tensor | None
    labels: torch.Tensor | None


def read_bytes(path: str | Path) -> bytes:
    """The content of ``path``; missing files and empty files are errors naming the path."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data.strip():
        raise DataError(f"{path}: the file is empty")
    return data


def text_utf8(path: str | Path, data: bytes) -> bytes:
    """The bytes of a text file re-encoded as UTF-8: decoded by its byte-order mark when it has one, kept when they
    are UTF-8 already, else read as Latin-1 (every byte is a Latin-1 character, and in a mesh or table only comments
    and names hold any beyond ASCII).  The parsers and trimesh then never guess an encoding (trimesh's guess needs
    an optional module).  A file that its mark calls UTF-16/32 but that does not decode is a :class:`DataError`."""
    if data.isascii():
        return data
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if codec is not None:
        try:
            return data.decode(codec).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: starts with a {codec.upper()} byte-order mark but is not {codec.upper()} text "
                            f"({exc.reason} at byte {exc.start})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1").encode("utf-8")
    return data


def read_points(path: str | Path, *, drop_nonfinite: bool = False) -> PointFile:
    """Read a point file (by suffix) into a :class:`PointFile`; bad content is a :class:`DataError` naming it, and
    NaN/inf coordinates a :class:`NonFiniteError` with their count (with ``drop_nonfinite`` those rows are dropped
    instead)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        raise DataError(f"{path}: unknown point-file format {suffix!r}; expected one of {', '.join(POINT_SUFFIXES)}")
    if suffix in (".xyz", ".txt", ".pts"):
        table = read_table(path)
    elif suffix == ".npy":
        table = _read_npy(path)
    else:
        return _read_named(path, suffix, drop_nonfinite)
    return _split_columns(path, table, drop_nonfinite)


def read_table(path: str | Path) -> np.ndarray:
    """A text table of numbers, ``float64 [N, C]``; ``#`` comments and a leading point-count line are skipped.

    Lines longer than :data:`~dlparts.data._limits.MAX_LINE_BYTES` are refused before any is split; ragged rows are
    refused with their line number.
    """
    path = Path(path)
    data = text_utf8(path, read_bytes(path))
    check_line_lengths(path, data)
    data = data.replace(b",", b" ")
    table = _plain_table(data)
    table = table if table is not None else _table_lines(path, data)
    check_values(path, table.size, "the table")
    return table


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
    values = parse_numbers(body)
    if values is None or values.size != len(first) * rows:
        return None
    return values.reshape(rows, len(first))  # [N, C]


def _table_lines(path: Path, data: bytes) -> np.ndarray:
    """The line-by-line table reader: comments, blank lines, a count line, and errors naming the line at fault."""
    rows = [(number, line) for number, line in enumerate(
        (raw.split("#", 1)[0].strip() for raw in data.decode("latin-1").splitlines()), 1) if line]
    if not rows:
        raise DataError(f"{path}: holds no numbers (only comments or blank lines)")
    first = rows[0][1].split()
    if len(first) == 1 and first[0].isascii() and first[0].isdigit():  # .pts files may start with their point count
        count = parse_count(path, first[0], "the point-count line")
        if count > len(rows) - 1:
            raise DataError(f"{path}: truncated: the first line promises {count} points, the file has {len(rows) - 1}")
        rows = rows[1:]
        if not rows:
            raise DataError(f"{path}: the file holds no points")
    width = len(rows[0][1].split())
    for number, line in rows:
        if len(line.split()) != width:
            raise DataError(f"{path}: line {number} has {len(line.split())} values where line {rows[0][0]} "
                            f"has {width} (ragged rows)")
    values = parse_numbers(" ".join(line for _, line in rows))
    if values is None or values.size != width * len(rows):
        number, token = next(((n, t) for n, line in rows for t in line.split()
                              if parse_numbers(t) is None or parse_numbers(t).size != 1), (rows[0][0], rows[0][1]))
        raise DataError(f"{path}: line {number} holds something that is not a number: {token[:40]!r}")
    return values.reshape(len(rows), width)  # [N, C]


def _split_columns(path: Path, table: np.ndarray, drop_nonfinite: bool = False) -> PointFile:
    width = table.shape[1] if table.ndim == 2 else 0
    if width not in (3, 4, 6, 7) or len(table) == 0:
        raise DataError(f"{path}: expected 3 (xyz), 4 (+label), 6 (+normals) or 7 (+normals+label) columns, "
                        f"got shape {list(table.shape)}")
    if drop_nonfinite:
        table = table[finite_rows(table[:, :6])]  # xyz and normals; the label column is checked by _labels
        if len(table) == 0:
            raise DataError(f"{path}: every point has a NaN or infinite coordinate")
    points = torch.from_numpy(as_float32(path, table[:, :3], "point"))
    normals = torch.from_numpy(as_float32(path, table[:, 3:6], "the normal of point")) if width >= 6 else None
    labels = torch.from_numpy(_labels(path, table[:, -1])) if width in (4, 7) else None
    return PointFile(points, normals, labels)


def _labels(path: Path, column: np.ndarray) -> np.ndarray:
    """``int64 [N]`` from a column of labels that must be whole numbers."""
    column = np.asarray(column, dtype=np.float64)
    bad = ~(np.isfinite(column) & (np.abs(column) < 2.0 ** 62) & (column == np.round(column)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: the label of point {row} is {float(column[row])!r}, not a whole number")
    return column.astype(np.int64)


def _arrays(path: Path, suffix: str, use):
    """``use(arrays)`` on the name -> :class:`~dlparts.data._arrays.Member` mapping of ``path``; what the parsers
    raise on a damaged file becomes a :class:`DataError` naming it."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        with open_arrays(path, suffix) as arrays:
            return use(arrays)
    except DlpartsError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable {suffix} file ({type(exc).__name__}: {exc})") from None


def _read_npy(path: Path) -> np.ndarray:
    def use(arrays: dict[str, Member]) -> np.ndarray:
        member = usable(arrays[""])
        if len(member.shape) != 2:  # from the header: nothing is read yet
            raise DataError(f"{path}: expected a [N, C] array, got shape {list(member.shape)}")
        return np.asarray(member.read(), dtype=np.float64)

    return _arrays(path, ".npy", use)


def _read_named(path: Path, suffix: str, drop_nonfinite: bool = False) -> PointFile:
    """``.npz`` / HDF5: arrays by name; one cloud per file (``[N, C]`` or ``[1, N, C]``).  Only the arrays used are
    read, each after its header is checked."""
    def use(arrays: dict[str, Member]) -> np.ndarray:
        key = next((k for k in _POINT_KEYS if k in arrays), None)
        if key is None and len(arrays) == 1:
            key = next(iter(arrays))
        if key is None:
            raise DataError(f"{path}: no point array; expected one named {', '.join(_POINT_KEYS)} "
                            f"(found {', '.join(sorted(arrays)) or 'none'})")
        points = _one_cloud(path, key, usable(arrays[key]))
        if points.shape[1] >= 6:
            return points[:, :7] if points.shape[1] == 7 else points[:, :6]
        nkey = next((k for k in _NORMAL_KEYS if k in arrays), None)
        lkey = next((k for k in _LABEL_KEYS if k in arrays), None)
        columns = [points[:, :3]]
        if nkey:
            columns.append(_one_cloud(path, nkey, usable(arrays[nkey]), rows=len(points))[:, :3])
        if lkey:
            labels = usable(arrays[lkey])
            if math.prod(labels.shape) != len(points):
                raise DataError(f"{path}: {len(points)} points but {math.prod(labels.shape)} labels")
            columns.append(np.asarray(labels.read(), dtype=np.float64).reshape(-1, 1))
        return np.concatenate(columns, axis=1)

    return _split_columns(path, _arrays(path, suffix, use), drop_nonfinite)


def _one_cloud(path: Path, key: str, member: Member, rows: int | None = None) -> np.ndarray:
    """``float64 [N, C]`` of array ``key``, its shape checked from the header before it is read."""
    shape = member.shape[1:] if len(member.shape) == 3 and member.shape[0] == 1 else member.shape  # [1, N, C]
    if len(shape) != 2 or (rows is not None and shape[0] != rows) or (rows is not None and shape[1] < 3):
        expected = "one cloud [N, C]" if rows is None else f"[{rows}, 3] like the points"
        raise DataError(f"{path}: array {key!r} has shape {list(member.shape)}; expected {expected} "
                        "(files of many clouds are read by the dataset classes)")
    return np.asarray(member.read(), dtype=np.float64).reshape(shape)
