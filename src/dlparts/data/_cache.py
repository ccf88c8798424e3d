"""The dlparts cache folder and its compressed array files (written atomically, rebuilt when unreadable)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger("dlparts.data")


def cache_root() -> Path:
    """The dlparts cache folder: ``$DLPARTS_CACHE``, or ``~/.cache/dlparts``."""
    return Path(os.environ.get("DLPARTS_CACHE") or Path.home() / ".cache" / "dlparts").expanduser()


def cache_file(kind: str, settings: dict, name: str) -> Path:
    """``<cache_root>/<kind>/<hash of settings>/<name>``: one folder per distinct set of settings."""
    key = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_root() / kind / key / name


def file_stamp(path: str | Path) -> tuple[int, int, int]:
    """``(size, mtime_ns, ctime_ns)`` of ``path``, ``(-1, -1, -1)`` when it cannot be stat'ed: what a cache keeps
    per source file, re-reading those whose stamp changed (ctime catches content rewritten with its mtime restored)."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def save_npz(path: Path, compress: bool = True, **arrays) -> None:
    """Write a compressed ``.npz`` atomically (a crash never leaves a half file that looks complete); with
    ``compress`` False a stored one (float samples barely compress, and inflating them would dominate a load).

    Like ``np.savez_compressed``, but streamed in ~1 MB pieces: numpy's own copies up to 16 MB chunks of each
    array (several times over) before compressing, which would add that much to the peak memory of a first pass.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            array = np.asarray(array)
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_2_0(fh, np.lib.format.header_data_from_array_1_0(array))
                rows = max(1, (1 << 20) // max(1, array[:1].nbytes))
                for start in range(0, len(array), rows):
                    fh.write(np.ascontiguousarray(array[start:start + rows]).tobytes())
    os.replace(tmp, path)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None when it is missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # a damaged cache is rebuilt, never fatal
        log.warning("cache %s is unreadable (%s); rebuilding it", path, exc)
        return None
