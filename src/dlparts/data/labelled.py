"""Labelled point files: one scene or object per file with a class per point, for segmentation of one's own data.

Two kinds of file:

- PLY (binary of either byte order, or text) with a per-vertex label property: ``label_field`` names it, else the
  first of :data:`LABEL_FIELDS` present; colours from ``red``/``green``/``blue`` (or ``r``/``g``/``b``).  The
  header's counts are first checked against the file's size (:mod:`dlparts.data.meshes`).  Vertices that come first
  with scalar properties only are parsed in one C parse (text) or read a chunk at a time (binary), equal to
  plyfile's reading; plyfile reads every other shape.  A large scene is never held twice: each column is freed once
  copied into the arrays returned.
- Tables (``.txt``/``.xyz``/``.pts``/``.csv`` text, ``.npy``, or an ``.npz`` holding one ``[N, C]`` array):
  ``columns`` maps ``xyz`` (3 column numbers), optional ``rgb`` (3) and ``label`` (1) to the table's columns; the
  default reads 7 columns as xyz rgb label, 6 as xyz rgb, 4 as xyz label, 3 as xyz.

Colours in ``[0, 1]`` (all at most 1) are scaled to 0..255.  Coordinates that are NaN or infinite are refused with
the file and their count, or dropped and counted (``drop_nonfinite``).  Every problem is a :class:`DataError`
naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from dlparts.data._arrays import READ_ERRORS, open_arrays, usable
from dlparts.data._limits import check_values, parse_numbers
from dlparts.data.meshes import _check_ply_header, _ply_utf8
from dlparts.data.points import _labels, read_bytes, read_table
from dlparts.errors import ConfigError, DataError

#: Bytes read for a PLY header (its counts are checked before the body is parsed).
_PLY_HEAD = 1 << 20
_CHUNK = 1 << 18  # vertices a binary PLY body is read by (a few MiB)

#: Property names tried, in order, for the per-vertex class of a PLY file when ``label_field`` is not given.
LABEL_FIELDS = ("label", "class", "semantic", "scalar_Label")
_RGB_FIELDS = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
TABLE_SUFFIXES = (".txt", ".xyz", ".pts", ".csv", ".npy", ".npz")
LABELLED_SUFFIXES = (".ply",) + TABLE_SUFFIXES
#: numpy types of the PLY scalar property types.
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
              "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4",
              "float32": "f4", "double": "f8", "float64": "f8"}
_DEFAULT_COLUMNS = {7: {"xyz": [0, 1, 2], "rgb": [3, 4, 5], "label": 6}, 6: {"xyz": [0, 1, 2], "rgb": [3, 4, 5]},
                    4: {"xyz": [0, 1, 2], "label": 3}, 3: {"xyz": [0, 1, 2]}}


class LabelledCloud(NamedTuple):
    """``xyz float32 [N, 3]``, ``rgb uint8 [N, 3]`` or None, ``labels int64 [N]`` or None, and the number of
    points ``dropped`` for non-finite coordinates (0 unless ``drop_nonfinite``)."""

    xyz: np.ndarray
    rgb: np.ndarray | None
    labels: np.ndarray | None
    dropped: int = 0


def read_labelled(path: str | Path, *, label_field: str | None = None, columns: dict | None = None,
                  need_labels: bool = True, drop_nonfinite: bool = False) -> LabelledCloud:
    """The :class:`LabelledCloud` of a PLY or table file (see the module docstring).  ``need_labels``: a file
    without labels is an error naming the fields or columns it has; else its ``labels`` are None."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        xyz, rgb, labels = _read_ply(path, label_field, need_labels)
    elif suffix in TABLE_SUFFIXES:
        xyz, rgb, labels = _read_columns(path, _table(path, suffix), columns, need_labels)
    else:
        raise DataError(f"{path}: unknown labelled-file format {suffix!r}; expected one of "
                        f"{', '.join(LABELLED_SUFFIXES)}")
    if len(xyz) == 0:
        raise DataError(f"{path}: the file holds no points")
    with np.errstate(over="ignore", invalid="ignore"):
        xyz = np.asarray(xyz, dtype=np.float32)
    finite = np.isfinite(xyz).all(axis=1)  # [N]
    dropped = int(len(finite) - np.count_nonzero(finite))
    if dropped and not drop_nonfinite:
        raise DataError(f"{path}: {dropped} of {len(xyz)} points have NaN or infinite coordinates (or beyond "
                        f"float32); set data.drop_nonfinite: true to drop them")
    if dropped:
        xyz, rgb = xyz[finite], None if rgb is None else rgb[finite]
        labels = None if labels is None else labels[finite]
        if len(xyz) == 0:
            raise DataError(f"{path}: all {dropped} points have NaN or infinite coordinates")
    return LabelledCloud(np.ascontiguousarray(xyz), _colours(path, rgb), labels, dropped)


def check_labels(path: str | Path, labels: np.ndarray, classes: list[str]) -> None:
    """Refuse labels outside ``0 .. len(classes) - 1``, naming the file, the values and how many points hold them."""
    bad = (labels < 0) | (labels >= len(classes))
    if bad.any():
        values = np.unique(labels[bad])
        shown = ", ".join(map(str, values[:10].tolist())) + (", ..." if len(values) > 10 else "")
        raise DataError(f"{path}: {int(bad.sum())} points have labels outside the {len(classes)} classes "
                        f"(0..{len(classes) - 1}): {shown}")


def write_labelled_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None, labels: np.ndarray) -> Path:
    """A binary PLY of the points ``xyz [N, 3]`` (as doubles) in their order, with colours ``rgb uint8 [N, 3]``
    (``red``/``green``/``blue``, when given) and an integer ``label`` property per vertex, written by plyfile (the
    library that reads it back in :func:`read_labelled`; trimesh's import alone costs a prediction seconds)."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f8"), ("y", "f8"), ("z", "f8")]
    fields += [] if rgb is None else [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(xyz), dtype=fields + [("label", "i4")])  # [N] records
    for axis, name in enumerate("xyz"):
        vertex[name] = xyz[:, axis]
    if rgb is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertex[name] = rgb[:, channel]
    vertex["label"] = labels
    path = Path(path)
    PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(path))
    return path


def _ply_vertices(path: Path) -> dict[str, np.ndarray]:
    """The scalar vertex properties of a PLY file (ascii, binary of either byte order) by name, each ``[N]``, read
    by plyfile.  The header's counts are first checked against the file's size (:mod:`dlparts.data.meshes`), so a
    lying header allocates nothing.  A body whose first element is the vertices goes through
    :func:`_ascii_vertices` (text) or :func:`_binary_vertices`; plyfile reads every other shape (a binary body
    memory-mapped, copy-on-write)."""
    from plyfile import PlyData, PlyListProperty

    if not path.is_file():
        read_bytes(path)  # the error naming a missing path or a folder
    with open(path, "rb") as fh:
        head = fh.read(_PLY_HEAD)
    _check_ply_header(path, head, size=path.stat().st_size)
    if b"format ascii" in head.split(b"end_header", 1)[0]:
        vertex = _ascii_vertices(_ply_utf8(path, read_bytes(path)))
        if vertex is not None:
            return vertex
    elif b"format binary_" in head.split(b"end_header", 1)[0]:
        vertex = _binary_vertices(path, head)
        if vertex is not None:
            return vertex
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises its parse errors, ValueError, UnicodeDecodeError...
        raise DataError(f"{path}: not a readable PLY file ({type(exc).__name__}: {exc})") from None
    if "vertex" not in {element.name for element in ply.elements}:
        raise DataError(f"{path}: the PLY file has no vertex element (it has "
                        f"{', '.join(e.name for e in ply.elements) or 'none'})")
    vertex = ply["vertex"]
    return {p.name: vertex[p.name] for p in vertex.properties if not isinstance(p, PlyListProperty)}  # [N]


def _vertex_header(header: bytes) -> tuple[list[str], list[str], int | None]:
    """``(names, numpy types, count)`` of a PLY header's first element when it is ``vertex`` with scalar properties
    of distinct names only (``count`` None for any other shape, which plyfile then reads or names the fault of)."""
    names, types, count = [], [], None
    for tokens in (line.split() for line in header.decode("latin-1").split("\n")):
        if tokens[:1] == ["element"]:
            if count is not None:
                break
            if tokens[1:2] != ["vertex"] or len(tokens) != 3 or not tokens[2].isdigit():
                return [], [], None
            count = int(tokens[2])
        elif tokens[:1] == ["property"] and count is not None:
            if len(tokens) != 3 or tokens[1] not in _PLY_TYPES:
                return [], [], None  # a list property, or a type plyfile should judge
            names.append(tokens[2])
            types.append(_PLY_TYPES[tokens[1]])
    if not names or len(set(names)) != len(names):
        return [], [], None
    return names, types, count


def _binary_vertices(path: Path, head: bytes) -> dict[str, np.ndarray] | None:
    """The vertex properties of a binary PLY whose first element is ``vertex`` with scalar properties only, read
    :data:`_CHUNK` vertices at a time into arrays of their own: a memory map of the body would count every page of
    the file in the process's memory as the columns are copied out (the whole file beside the arrays, the peak of a
    whole-scene run).  None for any other shape or a body shorter than the header says, which plyfile then reads
    (or names the fault of)."""
    end = head.find(b"end_header")
    if end < 0:
        return None
    names, types, count = _vertex_header(head[:end])
    order = "<" if b"binary_little_endian" in head[:end] else ">"
    start = head.find(b"\n", end) + 1
    if count is None or start == 0:
        return None
    record = np.dtype([(name, order + kind) for name, kind in zip(names, types)])
    if path.stat().st_size < start + count * record.itemsize:
        return None
    out = {name: np.empty(count, np.dtype(kind)) for name, kind in zip(names, types)}  # native byte order
    with open(path, "rb") as fh:
        fh.seek(start)
        for lo in range(0, count, _CHUNK):
            rows = np.fromfile(fh, dtype=record, count=min(_CHUNK, count - lo))  # [chunk]
            for name in names:
                out[name][lo:lo + len(rows)] = rows[name]
    return out


def _ascii_vertices(data: bytes) -> dict[str, np.ndarray] | None:
    """The vertex properties of a text PLY whose first element is ``vertex`` with scalar properties only, its rows
    parsed in one C parse (plyfile parses text a token at a time: about 25 s a million points); None for any other
    shape or a body that does not parse, which plyfile then reads (or names the fault of)."""
    end = data.find(b"end_header")
    names, types, count = _vertex_header(data[:end])
    if count is None:
        return None
    start = data.find(b"\n", end) + 1
    body = np.frombuffer(data, dtype=np.uint8, offset=start)
    ends = np.flatnonzero(body == ord("\n"))  # [lines]
    if count == 0 or len(ends) < count - 1:
        return None
    rows = body[:ends[count - 1] if len(ends) >= count else len(body)]
    blank = rows <= ord(" ")  # [bytes] whitespace (and control bytes, which no number holds)
    starts = np.flatnonzero(~blank & np.concatenate(([True], blank[:-1])))  # [tokens] where each token begins
    line_ends = np.append(ends[:count - 1], len(rows))  # [N] one past the last byte of each row
    if np.any(np.diff(np.searchsorted(starts, line_ends), prepend=0) != len(names)):
        return None  # ragged rows: plyfile names the line
    values = parse_numbers(rows.tobytes())
    if values is None or values.size != count * len(names):
        return None
    table = values.reshape(count, len(names))  # [N, properties]
    return {name: table[:, column].astype(kind) for column, (name, kind) in enumerate(zip(names, types))}


def _read_ply(path: Path, label_field: str | None, need_labels: bool):
    vertex = _ply_vertices(path)
    names = tuple(vertex)
    if not {"x", "y", "z"} <= set(names):
        raise DataError(f"{path}: the vertices have no x, y, z properties (they have {', '.join(names) or 'none'})")
    xyz = _take_columns(vertex, ("x", "y", "z"), np.float32)  # [N, 3], as read_labelled keeps it
    rgb_names = next((f for f in _RGB_FIELDS if set(f) <= set(names)), None)
    rgb = None if rgb_names is None else _take_columns(vertex, rgb_names)  # [N, 3]
    wanted = (label_field,) if label_field else LABEL_FIELDS
    field = next((f for f in wanted if f in names), None)
    if field is None:
        if need_labels:
            raise DataError(f"{path}: no per-vertex label property {' or '.join(wanted)}; the vertices have "
                            f"{', '.join(names)} (set data.label_field to the one holding the classes)")
        return xyz, rgb, None
    column = vertex.pop(field)
    return xyz, rgb, column.astype(np.int64) if column.dtype.kind in "iu" else _labels(path, column)


def _take_columns(vertex: dict[str, np.ndarray], names, dtype=None) -> np.ndarray:
    """``[N, len(names)]`` of the named ``[N]`` columns (in ``dtype``, default theirs; values beyond a float
    ``dtype`` become inf, which :func:`read_labelled` refuses), each removed from ``vertex`` once copied, so that a
    large scene's columns are not all held beside the arrays made of them."""
    dtype = np.result_type(*(vertex[n] for n in names)) if dtype is None else dtype
    out = np.empty((len(vertex[names[0]]), len(names)), dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for k, name in enumerate(names):
            out[:, k] = vertex.pop(name)
    return out


def _table(path: Path, suffix: str) -> np.ndarray:
    """``[N, C]`` numbers of a text table, ``.npy`` or one-array ``.npz``, shapes checked before reading."""
    if suffix not in (".npy", ".npz"):
        return read_table(path)
    try:
        with open_arrays(path, suffix) as arrays:
            key = "" if suffix == ".npy" else next((k for k in ("points", "data") if k in arrays),
                                                   next(iter(arrays)) if len(arrays) == 1 else None)
            if key is None:
                raise DataError(f"{path}: expected one [N, C] array (or one named points or data), found "
                                f"{', '.join(sorted(arrays)) or 'none'}")
            member = usable(arrays[key])
            if len(member.shape) != 2:
                raise DataError(f"{path}: expected a [N, C] table, got shape {list(member.shape)}")
            check_values(path, int(np.prod(member.shape)), "the table")
            return np.asarray(member.read(), dtype=np.float64)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable {suffix} file ({type(exc).__name__}: {exc})") from None


def _read_columns(path: Path, table: np.ndarray, columns: dict | None, need_labels: bool):
    width = table.shape[1]
    if columns is None:
        if width not in _DEFAULT_COLUMNS:
            raise DataError(f"{path}: a table of {width} columns needs data.columns (e.g. {{xyz: [0, 1, 2], "
                            f"rgb: [3, 4, 5], label: 6}}); without it 3, 4, 6 or 7 columns are read")
        columns = _DEFAULT_COLUMNS[width]
    check_columns(columns)
    used = [*columns["xyz"], *columns.get("rgb", []), *([columns["label"]] if "label" in columns else [])]
    if max(used) >= width:
        raise DataError(f"{path}: data.columns {columns} names column {max(used)}, but the table has {width} "
                        f"columns (0..{width - 1})")
    if "label" not in columns:
        if need_labels:
            raise DataError(f"{path}: no label column; the table has {width} columns (0..{width - 1}) and "
                            f"data.columns {columns} names none (add label: COLUMN)")
        labels = None
    else:
        labels = _labels(path, table[:, columns["label"]])
    rgb = table[:, columns["rgb"]] if "rgb" in columns else None
    return table[:, columns["xyz"]], rgb, labels


def check_columns(columns: dict) -> None:
    """``data.columns``: ``xyz`` 3 column numbers, optional ``rgb`` 3 and ``label`` 1; a ConfigError otherwise."""
    def numbers(value, count) -> bool:
        value = value if isinstance(value, list) else [value]
        return len(value) == count and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)

    label = columns.get("label", 0)
    ok = not set(columns) - {"xyz", "rgb", "label"} and numbers(columns.get("xyz"), 3)
    ok = ok and numbers(columns.get("rgb", [0, 1, 2]), 3) and not isinstance(label, list) and numbers(label, 1)
    if not ok:
        raise ConfigError(f"data.columns={columns!r} must map xyz to 3 column numbers, and optionally rgb to 3 and "
                          f"label to one, e.g. {{xyz: [0, 1, 2], rgb: [3, 4, 5], label: 6}}")


def _colours(path: Path, rgb: np.ndarray | None) -> np.ndarray | None:
    """``uint8 [N, 3]`` from colours in 0..255, or in [0, 1] when none is above 1."""
    if rgb is None:
        return None
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    rgb = np.asarray(rgb, dtype=np.float64)
    if not np.isfinite(rgb).all():
        raise DataError(f"{path}: {int((~np.isfinite(rgb)).any(axis=1).sum())} points have NaN or infinite colours")
    scale = 255.0 if len(rgb) and rgb.max() <= 1.0 else 1.0
    return np.clip(np.rint(rgb * scale), 0, 255).astype(np.uint8)
