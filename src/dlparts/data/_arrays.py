"""The arrays of ``.npy``, ``.npz`` and HDF5 files, each known by its header (shape, dtype) before a byte of it is
read, so the reader in :mod:`dlparts.data.points` decides which ones it needs and refuses bad ones unallocated.

What is refused, with a :class:`DataError` naming the file and array: dtypes that are not plain numbers (strings,
structured records, Python objects: ``np.load`` never unpickles here), sizes beyond :func:`max_values`, members whose
header promises more bytes than the archive says it holds, HDF5 links (soft, external: the data must be in the file)
and HDF5 datasets stored outside the file, virtual, or declared but never written.  Only the member asked for is
decompressed, and never more than its header's size.
"""

from __future__ import annotations

import contextlib
import lzma
import math
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dlparts.data._limits import check_values
from dlparts.errors import DataError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_NUMERIC_KINDS = "biuf"
#: What the parsers (numpy's header reader, zipfile, zlib, lzma, h5py) raise on a damaged file.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, RuntimeError, TypeError, NotImplementedError, SyntaxError,
               tokenize.TokenError, zipfile.BadZipFile, zlib.error, lzma.LZMAError)


class Member(NamedTuple):
    """One array of a file: its header's ``shape`` and ``dtype``, and ``read()`` for the checked data; or, for an
    array that must not be read, the ``error`` saying why (raised by :func:`usable` when the array is needed)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[], np.ndarray]
    error: str | None = None


def usable(member: Member) -> Member:
    """``member``, or its refusal as a :class:`DataError` when it is one."""
    if member.error is not None:
        raise DataError(member.error)
    return member


def _refused(message: str) -> Member:
    return Member((), np.dtype("f8"), _never, message)


def _never() -> np.ndarray:
    raise AssertionError("a refused member is never read: usable() raises first")


def _checked_header(path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The byte size of a numeric array with this header; other dtypes and sizes beyond the ceiling are refused."""
    if dtype.kind not in _NUMERIC_KINDS or dtype.names is not None or dtype.subdtype is not None:
        raise DataError(f"{path}: array {name!r} has dtype {dtype}; expected plain numbers (int, uint, float, bool)")
    count = math.prod(shape)
    check_values(path, count, f"array {name!r} of shape {list(shape)}")
    return count * dtype.itemsize


def _npy_member(path: Path, name: str, fh, available: int) -> Member:
    """The array in the ``.npy`` stream ``fh`` (positioned at its start), of at most ``available`` bytes."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise DataError(f"{path}: array {name!r} is in .npy format version {version}, which dlparts does not read")
    nbytes = _checked_header(path, name, shape, dtype)
    header = fh.tell()
    if header + nbytes > available:
        raise DataError(f"{path}: array {name!r} of shape {list(shape)} needs {nbytes} bytes, but only "
                        f"{max(available - header, 0)} follow its header (truncated?)")

    def read() -> np.ndarray:
        fh.seek(header)
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise DataError(f"{path}: array {name!r} is truncated ({len(data)} of {nbytes} bytes)")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    return Member(tuple(shape), dtype, read)


@contextlib.contextmanager
def open_arrays(path: Path, suffix: str) -> Iterator[dict[str, Member]]:
    """Name -> :class:`Member` of every array in the ``.npy`` (one, named ``""``), ``.npz`` or HDF5 file ``path``;
    the members can be read while the context is open."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
        fh.seek(0)
        if suffix == ".npy":
            if magic.startswith(_ZIP_MAGIC):
                raise DataError(f"{path}: this is an .npz archive named .npy")
            yield {"": _npy_member(path, "", fh, path.stat().st_size)}
        elif suffix == ".npz":
            if magic.startswith(_NPY_MAGIC):
                raise DataError(f"{path}: this is a single .npy array named .npz")
            with zipfile.ZipFile(fh) as archive:
                yield _npz_members(path, archive)
        else:
            import h5py

            with h5py.File(fh, "r") as f:
                yield _h5_members(path, f, h5py)


def _npz_members(path: Path, archive: zipfile.ZipFile) -> dict[str, Member]:
    """Every member's header is read now (a few hundred bytes decompressed), its data only on ``read()``; a member
    that is not a plain numeric array is refused only if it is read."""
    members = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        members[name] = _kept(path, name, lambda info=info, name=name: _npz_member(path, archive, info, name))
    return members


def _npz_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Member:
    with archive.open(info) as fh:
        header = _npy_member(path, name, fh, info.file_size)

    def read() -> np.ndarray:
        with archive.open(info) as fh:
            return _npy_member(path, name, fh, info.file_size).read()

    return Member(header.shape, header.dtype, read)


def _kept(path: Path, name: str, member: Callable[[], Member]) -> Member:
    """``member()``, or a member that raises its error when read: a bad array matters only if it is needed."""
    try:
        return member()
    except DataError as exc:
        return _refused(str(exc))
    except READ_ERRORS as exc:
        return _refused(f"{path}: array {name!r} cannot be read ({type(exc).__name__}: {exc})")


def _h5_members(path: Path, f, h5py) -> dict[str, Member]:
    members = {}
    for name in f.keys():
        link = f.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            members[name] = _refused(f"{path}: array {name!r} is a {type(link).__name__} ({link}); dlparts reads "
                                     f"only data stored in the file")
        elif isinstance(f[name], h5py.Dataset):
            members[name] = _kept(path, name, lambda ds=f[name], name=name: _h5_member(path, name, ds))
    return members


def _h5_member(path: Path, name: str, ds) -> Member:
    if ds.shape is None:
        raise DataError(f"{path}: dataset {name!r} has no dataspace (an empty HDF5 dataset)")
    _checked_header(path, name, ds.shape, ds.dtype)
    if ds.external is not None or ds.is_virtual:
        raise DataError(f"{path}: dataset {name!r} keeps its data outside the file (external or virtual storage)")
    if ds.size and ds.id.get_storage_size() == 0:
        raise DataError(f"{path}: dataset {name!r} declares shape {list(ds.shape)} but none of it was ever written")
    return Member(ds.shape, ds.dtype, lambda: np.asarray(ds[()]))
