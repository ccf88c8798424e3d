"""Shared helpers of the point-cloud datasets: the cache folder, seeded generators, bad-file reporting, progress."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
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


def save_npz(path: Path, **arrays) -> None:
    """Write a compressed ``.npz`` atomically (a crash never leaves a half file that looks complete).

    Like ``np.savez_compressed``, but streamed in ~1 MB pieces: numpy's own copies up to 16 MB chunks of each
    array (several times over) before compressing, which would add that much to the peak memory of a first pass.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
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


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block: per-cloud work is thousands of tiny tensor ops, where waking the
    thread pool costs 5-40x on a busy machine (measured in benchmarks/data.py)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A numpy generator determined by ``seed`` and ``keys`` alone (e.g. a sample index)."""
    return np.random.default_rng([int(seed), *map(int, keys)])


def report_skipped(what: str, skipped: list[tuple[str, str]]) -> None:
    """Log each bad file once (path and reason), then the count."""
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if skipped:
        log.warning("%s: skipped %d bad file(s)", what, len(skipped))


def progress(items, description: str, total: int):
    """Iterate ``items`` with a rich progress bar on an interactive terminal, plainly otherwise."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=total, transient=True)


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into sorted (train, val) indices; ``round(n * fraction)`` (>= 1) go to val."""
    if not 0 < fraction < 1:
        from dlparts.errors import ConfigError

        raise ConfigError(f"val_fraction={fraction} must be between 0 and 1")
    perm = rng_for(seed, 7919).permutation(n)
    k = max(1, round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])
