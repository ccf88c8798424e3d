"""Fast CPU backend: the front of the numba kernels of :mod:`dlparts.ops._numba`, compiled on first use and cached.

Implements the backend interface documented in :mod:`dlparts.ops.reference` and returns exactly what the reference
returns: tensors become numpy arrays (structure-of-arrays ``[B, 3, N]`` for the scans, so their inner loops run over
contiguous x, y and z rows), the size of the work picks the kernel, and the arrays come back as tensors.

Small clouds are scanned (:mod:`~dlparts.ops._numba.scan`).  Large clouds: farthest point sampling switches to bucket
pruning (:mod:`~dlparts.ops._numba.buckets`), ball query and kNN to a uniform grid (:mod:`~dlparts.ops._numba.grid`,
nearest first for kNN and nearest-order balls); they return the same indices as the scans.
"""

from __future__ import annotations

import numpy as np
import torch

from dlparts.ops._numba import buckets, config, grid, scan

config.configure()

DEVICE_TYPES: tuple[str, ...] = ("cpu",)

# Clouds at least this large use bucket-pruned FPS (the crossover of the two, measured at m = N/4).
BUCKET_FPS_MIN_POINTS = 4096
# Bucket-pruned FPS: target points per bucket below and from this many points (fewer, larger buckets pay off on large
# clouds: 1M -> 4096 on one core took 224, 182, 150, 162 ms with 128, 256, 384, 512 points per bucket).
LARGE_CLOUD_POINTS = 32768
LARGE_CLOUD_LEAF = 384
# Ball queries in index order with at least this many query-point pairs search a grid instead of scanning every point.
GRID_MIN_WORK = 1 << 20
# The same for the nearest-first searches (kNN, ball query in nearest order), whose scans cost more per pair.
NEAREST_GRID_MIN_WORK = 1 << 16


def soa(t: torch.Tensor) -> np.ndarray:
    """``[B, N, 3]`` float32 tensor -> ``[B, 3, N]`` contiguous numpy array (x, y, z rows)."""
    return np.ascontiguousarray(t.numpy().transpose(0, 2, 1))  # [B, 3, N]


def fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor) -> torch.Tensor:
    b, n, _ = xyz.shape
    if n >= BUCKET_FPS_MIN_POINTS:
        leaf = 64 if n < LARGE_CLOUD_POINTS else LARGE_CLOUD_LEAF
        return torch.from_numpy(buckets.fps_buckets(xyz.numpy(), lengths.numpy(), m, start.numpy(), leaf))
    out = np.empty((b, m), dtype=np.int64)
    scan.fps_kernel(soa(xyz), lengths.numpy(), m, start.numpy(), out)
    return torch.from_numpy(out)


def ball_query(xyz, centers, lengths, radius2: float, k: int, nearest: bool):
    b, n, _ = xyz.shape
    s = centers.shape[1]
    idx = np.empty((b, s, k), dtype=np.int64)
    count = np.empty((b, s), dtype=np.int64)
    if n * s >= (NEAREST_GRID_MIN_WORK if nearest else GRID_MIN_WORK):
        grid.ball_query_grid(xyz.numpy(), centers.numpy(), lengths.numpy(), radius2, k, nearest, idx, count)
    else:
        scan.ball_kernel(soa(xyz), soa(centers), lengths.numpy(), radius2, k, nearest, idx, count)
    return torch.from_numpy(idx), torch.from_numpy(count)


def knn(query, ref, lengths, k: int):
    b, s, _ = query.shape
    dists = np.empty((b, s, k), dtype=np.float32)
    idx = np.empty((b, s, k), dtype=np.int64)
    if ref.shape[1] * s >= NEAREST_GRID_MIN_WORK:
        grid.knn_grid(query.numpy(), ref.numpy(), lengths.numpy(), k, dists, idx)
    else:
        scan.knn_kernel(soa(query), soa(ref), lengths.numpy(), k, dists, idx)
    return torch.from_numpy(dists), torch.from_numpy(idx)
