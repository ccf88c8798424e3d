"""Shared helpers of the point-cloud datasets: the cache folder, seeded generators, bad-file reporting, progress."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
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
    """Write a compressed ``.npz`` atomically (a crash never leaves a half file that looks complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
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
