"""Shared parts of the embedded synthetic datasets: unit primitives assembled into labelled meshes, and the
generate-once cache of a dataset's arrays (``<cache_root>/synthetic/<settings hash>/``, env ``DLPARTS_CACHE``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from dlparts.data._cache import cache_file, load_npz, save_npz
from dlparts.data._threads import single_thread
from dlparts.data.meshes import Mesh
from dlparts.errors import ConfigError

SPLITS = ("train", "val", "test")


@lru_cache(maxsize=None)
def _unit(key: str) -> tuple[np.ndarray, np.ndarray]:
    """A primitive fitted to the cube ``[-0.5, 0.5]^3``, axis along y: ``(vertices [V, 3], faces [F, 3])``."""
    import trimesh.creation as tc

    z_to_y = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # rotation taking the z axis to y (row vectors)
    if key == "box":
        m = tc.box(extents=(1, 1, 1))
    elif key in ("cylinder", "open_cylinder"):
        m = tc.cylinder(radius=0.5, height=1.0, sections=24)
    elif key == "cone":
        m = tc.cone(radius=0.5, height=1.0, sections=24)
    elif key == "sphere":
        m = tc.icosphere(subdivisions=2, radius=0.5)
    elif key == "capsule":
        m = tc.capsule(height=1.0, radius=0.3, count=(12, 12))
    elif key.startswith("torus"):
        m = tc.torus(major_radius=1.0, minor_radius=float(key[5:]), major_sections=24, minor_sections=12)
    elif key == "pyramid":
        v = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1.0]])
        f = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
        return _fit(v @ z_to_y, f)
    else:
        raise ConfigError(f"unknown primitive {key!r}")
    v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
    if key == "open_cylinder":
        top = v[f].mean(axis=1)[:, 2] > 0.49  # [F] faces of the top cap
        f = f[~top]
    if key.startswith("torus"):
        return _fit(v, f, keep_ratio=True)  # ring in the xy plane: a handle when upright
    return _fit(v @ z_to_y, f)


def _fit(v: np.ndarray, f: np.ndarray, keep_ratio: bool = False) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = v.min(axis=0), v.max(axis=0)
    size = (hi - lo).max() if keep_ratio else np.maximum(hi - lo, 1e-9)
    return (v - (lo + hi) / 2) / size, f


# A part: (primitive, size [3], centre [3], part label); composite builders return lists of them.
def part(key, size, centre, label=0):
    return key, np.asarray(size, dtype=np.float64), np.asarray(centre, dtype=np.float64), label


def assemble(parts: list) -> tuple[Mesh, np.ndarray]:
    """One mesh of all parts and ``int64 [F]`` part labels of its faces."""
    verts, faces, labels, offset = [], [], [], 0
    for key, size, centre, label in parts:
        v, f = _unit(key)
        verts.append(v * size + centre)
        faces.append(f + offset)
        labels.append(np.full(len(f), label, dtype=np.int64))
        offset += len(v)
    mesh = Mesh(torch.from_numpy(np.concatenate(verts)).float(), torch.from_numpy(np.concatenate(faces)))
    return mesh, np.concatenate(labels)


def check(split: str, num_points: int, per_class) -> None:
    """Refuse an unknown split, fewer than one point, or ``per_class`` other than three counts >= 0 (train, val,
    test)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if num_points < 1:
        raise ConfigError(f"num_points must be >= 1, got {num_points}")
    if len(per_class) != 3 or min(per_class) < 0:
        raise ConfigError(f"per_class must be three counts >= 0 (train, val, test), got {per_class}")


def cached(kind: str, version: int, settings: dict, build: Callable[[], dict]) -> dict[str, np.ndarray]:
    """The arrays of one synthetic dataset: read from its cache file, or built (on one thread) and saved there."""
    path = cache_file("synthetic", {"kind": kind, "version": version, **settings}, f"{kind}.npz")
    arrays = load_npz(path)
    if arrays is None:
        with single_thread():
            arrays = build()
        save_npz(path, **arrays)
    return arrays
