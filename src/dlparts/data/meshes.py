"""Reading meshes (OFF, PLY, OBJ, STL) and sampling points uniformly on their surfaces.

PointNet (Qi et al., CVPR 2017) Sec. 5.1 and PointNet++ (Qi et al., NeurIPS 2017) Sec. 4 sample ModelNet40 points
uniformly on the mesh *surfaces* (by face area), not at the vertices; :mod:`dlparts.data.clouds` turns the samples
(or any point file) into normalized clouds.

OFF is parsed here: about a tenth of ModelNet40 starts with ``OFF1234 5678 0`` (keyword and counts on one line),
which older readers reject, and on the rest a one-call numeric parse is faster than trimesh's reader
(``benchmarks/data.py`` measures it) while the line-by-line reader beside it says exactly what is wrong with a bad
file.  PLY, OBJ
and STL go to trimesh after we check, from the header and the file size alone, that the counts can be true: a header
promising a billion vertices is refused before any large allocation.  Every problem is a
:class:`dlparts.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dlparts.data._limits import (as_float32, check_line_lengths, check_values, finite_rows, parse_count,
                                  parse_numbers)
from dlparts.data.points import read_bytes, text_utf8
from dlparts.data.splits import torch_generator
from dlparts.errors import ConfigError, DataError

MESH_SUFFIXES = (".off", ".ply", ".obj", ".stl")
_OFF_KEYWORD = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF", re.IGNORECASE)
_OFF_PLAIN_HEADER = re.compile(rb"\s*OFF\s*(\d+)[ \t]+(\d+)(?:[ \t]+\d+)?[ \t]*\r?\n")
_COUNT_TOKEN = re.compile(r"[0-9]{1,18}")  # a vertex count or index: plain digits, below 2**63
_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


class SurfaceSample(NamedTuple):
    """``points float32 [n, 3]``, unit ``normals float32 [n, 3]`` and the ``face int64 [n]`` each point lies on."""

    points: torch.Tensor
    normals: torch.Tensor
    face: torch.Tensor


class Mesh(NamedTuple):
    """``vertices float32 [V, 3]`` and triangle ``faces int64 [F, 3]`` (``F == 0`` for a point-only file)."""

    vertices: torch.Tensor
    faces: torch.Tensor


def read_mesh(path: str | Path, *, drop_nonfinite: bool = False) -> Mesh:
    """Read an OFF, PLY, OBJ or STL file (by suffix) into a triangle :class:`Mesh`; polygons are fan-triangulated.

    Raises :class:`DataError` for empty or truncated files, counts the file cannot hold, faces indexing missing
    vertices, NaN/inf coordinates (a :class:`NonFiniteError` with their count; with ``drop_nonfinite`` those
    vertices and the faces using them are dropped instead) and unknown formats; :class:`DataNotFoundError` when the
    file does not exist.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise DataError(f"{path}: unknown mesh format {suffix!r}; expected one of {', '.join(MESH_SUFFIXES)}")
    data = read_bytes(path)
    if suffix in (".off", ".obj"):
        data = text_utf8(path, data)
        check_line_lengths(path, data)
    if suffix == ".off":
        vertices, faces = _parse_off(path, data)
    else:
        if suffix == ".ply":
            data = _ply_utf8(path, data)
            _check_ply_header(path, data)
        elif suffix == ".stl":
            _check_stl(path, data)
        vertices, faces = _trimesh_load(path, data, suffix[1:])
    return _checked(path, vertices, faces, drop_nonfinite)


def _checked(path: Path, vertices: np.ndarray, faces: np.ndarray, drop_nonfinite: bool = False) -> Mesh:
    if len(vertices) == 0:
        raise DataError(f"{path}: the file holds no vertices")
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise DataError(f"{path}: the vertices have {vertices.shape[-1]} coordinates, not 3 (a 2-D drawing or a "
                        f"truncated file?)")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        bad = int(faces.max() if faces.max() >= len(vertices) else faces.min())
        raise DataError(f"{path}: a face refers to vertex {bad}, but the file has {len(vertices)} vertices "
                        f"(0..{len(vertices) - 1})")
    if drop_nonfinite:
        vertices, faces = _finite_part(vertices, faces.reshape(-1, 3))
        if len(vertices) == 0:
            raise DataError(f"{path}: every vertex has a NaN or infinite coordinate")
    vertices = as_float32(path, vertices, "vertex")
    return Mesh(torch.from_numpy(vertices),
                torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)))


def _finite_part(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vertices [V, 3]`` without the non-finite ones and ``faces [F, 3]`` without those using them, renumbered."""
    keep = finite_rows(vertices)  # [V]
    if keep.all():
        return vertices, faces
    renumber = np.cumsum(keep) - 1  # [V]: the new index of each kept vertex
    return vertices[keep], renumber[faces[keep[faces].all(axis=1)]]


# ------------------------------------------------------------------------------------------------------------------ OFF
def _parse_off(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """OFF, with comments, colours, n-gons and ModelNet's ``OFF<nv> <nf> <ne>`` header on one line."""
    fast = _parse_plain_off(data)
    return fast if fast is not None else _parse_off_lines(path, data)


def _parse_plain_off(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path for the common file (xyz vertices, triangles, no comments or colours), or None to fall back.

    All numbers are parsed in one C call; :func:`_parse_off_lines` is the reference, and the one that explains
    what is wrong with a bad file.
    """
    header = _OFF_PLAIN_HEADER.match(data)
    if header is None or b"#" in data or max(len(header.group(1)), len(header.group(2))) > 18:
        return None  # 18 digits: Python's int() has a digit limit, and no real count comes near it
    nv, nf = int(header.group(1)), int(header.group(2))
    if 6 * nv + 8 * nf > len(data):
        return None
    values = parse_numbers(data[header.end():])
    if values is None or values.size != 3 * nv + 4 * nf:
        return None
    faces = values[3 * nv:].reshape(nf, 4)  # [F, 4] rows "3 a b c"
    if not (faces[:, 0] == 3).all() or not (faces == np.floor(faces)).all() or \
            not ((faces[:, 1:] >= 0) & (faces[:, 1:] < nv)).all():
        return None
    return values[:3 * nv].reshape(nv, 3), faces[:, 1:].astype(np.int64)


def _parse_off_lines(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The line-by-line OFF reader: any valid file, and a precise error for any invalid one."""
    lines = [line.split("#", 1)[0].strip() for line in data.decode("latin-1").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path}: holds only comments, no OFF header")
    match = _OFF_KEYWORD.match(lines[0])
    if match is None:
        raise DataError(f"{path}: not an OFF file (the first line {lines[0][:40]!r} does not start with OFF)")
    if match.group(4):
        raise DataError(f"{path}: 4-D OFF ({match.group(0)}) is not a 3-D mesh")
    rest, start = lines[0][match.end():].split(), 1
    if not rest:
        if len(lines) < 2:
            raise DataError(f"{path}: truncated: no vertex and face counts after {match.group(0)}")
        rest, start = lines[1].split(), 2
    if len(rest) < 2:
        raise DataError(f"{path}: bad OFF counts {' '.join(rest)[:60]!r}; expected 'vertices faces edges'")
    if rest[0].startswith("-") or rest[1].startswith("-"):
        raise DataError(f"{path}: negative counts in the OFF header ({rest[0][:20]} vertices, {rest[1][:20]} faces)")
    nv, nf = (parse_count(path, token, "the OFF count") for token in rest[:2])
    check_values(path, 3 * nv + 3 * nf, f"the OFF header ({nv} vertices, {nf} faces)")
    # A vertex takes at least 6 bytes ("0 0 0\n") and a face 8 ("3 0 1 2\n"): refuse impossible counts up front.
    if 6 * nv + 8 * nf > len(data):
        raise DataError(f"{path}: the header promises {nv} vertices and {nf} faces, more than the "
                        f"{len(data)} bytes of the file can hold")
    if len(lines) < start + nv + nf:
        raise DataError(f"{path}: truncated: the header promises {nv} vertices and {nf} faces, "
                        f"but the file has only {len(lines) - start} data lines")
    vertices = _off_vertices(path, lines[start:start + nv])
    faces = _off_faces(path, lines[start + nv:start + nv + nf], nv)
    return vertices, faces


def _off_vertices(path: Path, lines: list[str]) -> np.ndarray:
    if not lines:
        return np.zeros((0, 3))
    widths = [len(line.split()) for line in lines]
    short = next((i for i, width in enumerate(widths) if width < 3), None)
    if short is not None:
        raise DataError(f"{path}: vertex {short} has fewer than 3 coordinates: {lines[short][:60]!r}")
    if min(widths) == max(widths):
        flat = parse_numbers(" ".join(lines))
        if flat is not None and flat.size == widths[0] * len(lines):
            return flat.reshape(len(lines), widths[0])[:, :3]  # [V, width] -> xyz; extra columns: colours/normals
    xyz = parse_numbers(" ".join(" ".join(line.split()[:3]) for line in lines))  # ragged rows (some coloured)
    if xyz is None or xyz.size != 3 * len(lines):
        raise DataError(f"{path}: a vertex line holds something that is not a number")
    return xyz.reshape(len(lines), 3)  # [V, 3]


def _off_faces(path: Path, lines: list[str], nv: int) -> np.ndarray:
    """``int64 [F, 3]`` triangles of the face lines (``k i1 .. ik [colour]``), n-gons fan-triangulated; an index
    outside ``0..nv-1`` is named."""
    if not lines:
        return np.zeros((0, 3), dtype=np.int64)
    flat = parse_numbers(" ".join(lines))
    if flat is not None and flat.size == 4 * len(lines):
        rows = flat.reshape(-1, 4)  # [F, 4] "3 a b c"
        if (rows[:, 0] == 3).all() and (rows[:, 1:] == np.round(rows[:, 1:])).all() and \
                (rows[:, 1:] >= 0).all() and (rows[:, 1:] < nv).all():
            return rows[:, 1:].astype(np.int64)
    triangles = []
    for i, line in enumerate(lines):
        tokens = line.split()
        if not all(_COUNT_TOKEN.fullmatch(t) for t in tokens[:1]):
            raise DataError(f"{path}: face {i} does not start with its vertex count: {line[:60]!r}")
        k = int(tokens[0])
        ids = tokens[1:1 + k]
        if k < 3 or len(ids) < k:
            raise DataError(f"{path}: face {i} needs at least 3 vertex indices: {line[:60]!r}")
        bad = next((t for t in ids if not _COUNT_TOKEN.fullmatch(t) or int(t) >= nv), None)
        if bad is not None:
            raise DataError(f"{path}: face {i} refers to vertex {bad[:24]}, but the file has {nv} vertices "
                            f"(0..{nv - 1})")
        ids = [int(t) for t in ids]
        triangles.extend((ids[0], ids[j], ids[j + 1]) for j in range(1, k - 1))  # fan triangulation of an n-gon
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


# --------------------------------------------------------------------------------------------------- PLY / STL / OBJ
def _ply_utf8(path: Path, data: bytes) -> bytes:
    """A PLY with its text in UTF-8: a text PLY with a byte-order mark decoded whole; otherwise only the header
    (whose comments may be Latin-1), as the body of a binary PLY is not text."""
    if not data.startswith(b"ply"):
        return text_utf8(path, data)
    end = data.find(b"end_header")
    return data if end < 0 else text_utf8(path, data[:end]) + data[end:]


def _check_ply_header(path: Path, data: bytes, size: int | None = None) -> None:
    """Refuse PLY element counts that the bytes after the header cannot hold (before a parser allocates them);
    ``data``: the file, or its first bytes (the header) when ``size`` gives the file's size."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    header = data[:end].decode("latin-1").split("\n")
    size = len(data) if size is None else size
    body = size - data.find(b"\n", end) - 1 if data.find(b"\n", end) >= 0 else 0
    binary = any(line.startswith("format binary") for line in header)
    elements: list[list] = []  # [name, count, least bytes per row, values per row]
    for line in header:
        tokens = line.split()
        if tokens[:1] == ["element"] and len(tokens) == 3:
            if tokens[2].startswith("-"):
                raise DataError(f"{path}: negative PLY count for element {tokens[1]!r}")
            elements.append([tokens[1], parse_count(path, tokens[2], f"the PLY count of element {tokens[1]!r}"), 0, 0])
        elif tokens[:1] == ["property"] and elements:
            if len(tokens) < 3 or (tokens[1] == "list" and len(tokens) != 5):
                raise DataError(f"{path}: malformed PLY header line {line.strip()[:60]!r}; expected 'property TYPE "
                                f"NAME' or 'property list COUNT_TYPE INDEX_TYPE NAME'")
            elements[-1][3] += 3 if tokens[1] == "list" else 1
            if tokens[1] == "list":  # count + at least 3 indices (binary) or "3 a b c" (ascii)
                elements[-1][2] += _PLY_SIZES.get(tokens[2], 1) + 3 * _PLY_SIZES.get(tokens[3], 4) if binary else 8
            else:
                elements[-1][2] += _PLY_SIZES.get(tokens[1], 4) if binary else 2
    need = sum(count * size for _, count, size, _ in elements)
    if need > body:
        counts = ", ".join(f"{count} {name}" for name, count, _, _ in elements)
        raise DataError(f"{path}: the header promises {counts}, more than the {body} bytes after it can hold")
    for name, count, _, values in elements:
        check_values(path, count * values, f"PLY element {name!r} ({count} rows)")


def _check_stl(path: Path, data: bytes) -> None:
    """Binary STL holds exactly ``84 + 50 * n`` bytes; anything else must be ascii (``solid ...``)."""
    if len(data) >= 84:
        count = int(np.frombuffer(data[80:84], dtype="<u4")[0])
        if 84 + 50 * count == len(data):
            return
    if data.lstrip()[:5].lower() == b"solid":
        return
    if len(data) < 84:
        raise DataError(f"{path}: truncated: {len(data)} bytes is shorter than a binary STL header (84)")
    raise DataError(f"{path}: the binary STL header promises {count} triangles ({84 + 50 * count} bytes), "
                    f"but the file has {len(data)} bytes")


def _trimesh_load(path: Path, data: bytes, file_type: str) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=file_type, process=False)
    except Exception as exc:  # trimesh raises many types; all mean "cannot parse"
        raise DataError(f"{path}: cannot read as {file_type.upper()}: {exc}") from None
    if isinstance(loaded, trimesh.Scene):
        geometries = list(loaded.dump()) if loaded.geometry else []
        if not geometries:
            raise DataError(f"{path}: the file holds no geometry")
        loaded = trimesh.util.concatenate(geometries)
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(loaded, "faces", None) if getattr(loaded, "faces", None) is not None
                       else np.zeros((0, 3)), dtype=np.int64)
    if faces.size and (faces.ndim != 2 or faces.shape[1] != 3):
        raise DataError(f"{path}: the faces came out of shape {list(faces.shape)}, not triangles")
    return vertices, faces.reshape(-1, 3)


# ------------------------------------------------------------------------------------------------------------ sampling
def face_areas(mesh: Mesh) -> torch.Tensor:
    """``float64 [F]`` triangle areas."""
    tri = mesh.vertices.double()[mesh.faces]  # [F, 3 corners, 3]
    return 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)


# torch.multinomial draws from at most 2^24 categories.
_MULTINOMIAL_MAX = 1 << 24


def _draw_faces(areas: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``int64 [n]`` faces drawn with probability proportional to ``areas float64 [F]`` (positive sum): by
    ``torch.multinomial`` within its limit, beyond it by searching uniform draws in the cumulative areas."""
    if len(areas) <= _MULTINOMIAL_MAX:
        return torch.multinomial(areas, n, replacement=True, generator=gen)
    cdf = torch.cumsum(areas, dim=0)  # [F]
    u = torch.rand(n, generator=gen, dtype=torch.float64) * cdf[-1]  # [n] in [0, total)
    # right=True skips zero-area faces (empty intervals); the clamp catches a draw rounded up to the total.
    return torch.searchsorted(cdf, u, right=True).clamp_(max=int(areas.nonzero().max()))


def sample_surface(mesh: Mesh, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                   name: str = "mesh") -> SurfaceSample:
    """``n`` points uniform over the surface area of ``mesh``, as a :class:`SurfaceSample`.

    A face is drawn with probability proportional to its area, then a point uniformly inside it with the
    square-root barycentric rule (Osada et al., "Shape distributions", 2002, Sec. 4.2); its normal is the face's.
    """
    if n < 1:
        raise ConfigError(f"number of points must be >= 1, got {n}")
    if mesh.faces.numel() == 0:
        raise DataError(f"{name}: has no faces to sample a surface from")
    areas = face_areas(mesh)
    if not float(areas.sum()) > 0:
        raise DataError(f"{name}: the total surface area is zero")
    gen = torch_generator(seed, generator)
    face = _draw_faces(areas, n, gen)  # [n]
    tri = mesh.vertices.double()[mesh.faces[face]]  # [n, 3 corners, 3]
    r1, r2 = torch.rand(2, n, 1, generator=gen, dtype=torch.float64)
    s = r1.sqrt()
    points = (1 - s) * tri[:, 0] + s * (1 - r2) * tri[:, 1] + s * r2 * tri[:, 2]  # [n, 3]
    normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = normals / normals.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return SurfaceSample(points.float(), normals.float(), face)
