"""Bounds every reader checks before it allocates: a ceiling on the values one file may hold, counts parsed without
Python's unbounded ``int``, text lines of bounded length, and numbers that stay finite in float32.

The ceiling is ``DLPARTS_MAX_POINTS`` values (default ``2**28``, 2 GiB of float64): a header, archive member or
dataset that declares more is refused before anything of that size exists, so a 2 MB file cannot ask for gigabytes.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from dlparts.errors import ConfigError, DataError, NonFiniteError

ENV_MAX_POINTS = "DLPARTS_MAX_POINTS"
DEFAULT_MAX_VALUES = 2 ** 28
#: The longest text line a reader accepts: a table row or a polygon is far shorter, and a line is parsed in one piece.
MAX_LINE_BYTES = 1 << 20
_COUNT = re.compile(r"[0-9]{1,18}")  # 18 digits stay below 2**63: no int-string limit, no overflow


def max_values() -> int:
    """The ceiling on the numbers one file may hold: ``$DLPARTS_MAX_POINTS``, else :data:`DEFAULT_MAX_VALUES`."""
    raw = os.environ.get(ENV_MAX_POINTS, "").strip()
    if not raw:
        return DEFAULT_MAX_VALUES
    if _COUNT.fullmatch(raw) is None or int(raw) < 1:
        raise ConfigError(f"{ENV_MAX_POINTS}={raw!r} must be a positive whole number of values")
    return int(raw)


def check_values(path: Path | str, count: int, what: str) -> None:
    """Refuse a file declaring ``count`` values (``what`` says of which thing) beyond :func:`max_values`."""
    ceiling = max_values()
    if count > ceiling:
        raise DataError(f"{path}: {what} declares {count} values, more than the limit of {ceiling} "
                        f"(raise it with {ENV_MAX_POINTS} if the file is genuine)")


def parse_count(path: Path | str, token: str, what: str) -> int:
    """A non-negative count from a header token; a token that is not plain digits or is absurdly long is an error."""
    if _COUNT.fullmatch(token) is None:
        shown = token if len(token) <= 24 else token[:20] + f"... ({len(token)} characters)"
        raise DataError(f"{path}: {what} {shown!r} is not a count (0 to 18 plain digits)")
    return int(token)


def check_line_lengths(path: Path | str, data: bytes) -> None:
    """Refuse text with a line longer than :data:`MAX_LINE_BYTES`, naming the line, before any line is split."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))  # [lines - 1]
    bounds = np.concatenate([[-1], ends, [len(data)]])
    lengths = np.diff(bounds) - 1  # [lines]
    worst = int(np.argmax(lengths))
    if lengths[worst] > MAX_LINE_BYTES:
        raise DataError(f"{path}: line {worst + 1} is {int(lengths[worst])} bytes long, more than the "
                        f"{MAX_LINE_BYTES} a text line of numbers may have")


def finite_rows(values: np.ndarray) -> np.ndarray:
    """``bool [N]``: the rows of ``values [N, C]`` that are finite after the cast to float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.asarray(values, dtype=np.float32)
    return np.isfinite(cast).reshape(len(cast), -1).all(axis=1)


def as_float32(path: Path | str, values: np.ndarray, what: str) -> np.ndarray:
    """``values [N, C]`` cast to float32, refusing rows that are NaN or infinite *after* the cast (beyond the float32
    range of about 3.4e38 in a float64 or text file): a :class:`NonFiniteError` naming the first bad row and the
    count of bad rows."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.ascontiguousarray(values, dtype=np.float32)
    finite = finite_rows(cast)
    if not finite.all():
        row, count = int(np.flatnonzero(~finite)[0]), int((~finite).sum())
        raise NonFiniteError(f"{path}: {what} {row} has a NaN or infinite value, or one beyond the float32 range "
                             f"(about 3.4e38); {count} of {len(finite)} rows have one", count)
    return cast


def parse_numbers(text: bytes | str) -> np.ndarray | None:
    """``float64`` of all numbers in ``text`` in one C parse (no Python object per number), or None if a token is
    not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy only warns when a token is not a number
        try:
            return np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
