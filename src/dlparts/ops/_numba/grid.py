"""Ball query and kNN on a uniform grid for large clouds: the same indices as the brute-force scan.

The valid points of a cloud are counting-sorted into cells (:func:`build_grid`, stable, so each cell keeps index
order).  Ball query in index order: a center visits the cells overlapping its ball, widened by a relative margin that
covers float rounding, and tests each candidate with the exact float32 distance of the reference; the ``k`` smallest
in-ball indices are kept by insertion, so the answer does not depend on the order in which cells are visited.  kNN and
ball query in nearest order search nearest first (:mod:`~dlparts.ops._numba.nearest`) on cells sized from ``k``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from dlparts.ops._numba.config import FASTMATH, QUERY_CHUNK, kernel
from dlparts.ops._numba.nearest import nearest_query
from dlparts.ops._numba.primitives import MARGIN, block_dists, build_grid, cell, finish_ball, keep_smallest

# Cell side over radius: smaller cells test fewer points outside the ball, at more (contiguous) row ranges per ball.
CELL_PER_RADIUS = 0.5
# Nearest-first searches: cells of about this many points per neighbour sought.
KNN_CELL_POINTS = 0.5


@kernel(fastmath=FASTMATH)
def _gather_ball(grid, cx, cy, cz, radius, radius2, keys, buf):
    """Count the points with d2 < radius2, keeping the ``keys.shape[0]`` smallest of their indices, ascending."""
    reach = radius * (1.0 + MARGIN)
    c0 = np.empty(3, dtype=np.int64)
    c1 = np.empty(3, dtype=np.int64)
    center = (cx, cy, cz)
    for a in range(3):
        c0[a] = cell(center[a] - reach, grid.lo[a], grid.h, grid.dims[a])
        c1[a] = cell(center[a] + reach, grid.lo[a], grid.h, grid.dims[a])
    found = 0
    for gz in range(c0[2], c1[2] + 1):
        for gy in range(c0[1], c1[1] + 1):
            row = (gz * grid.dims[1] + gy) * grid.dims[0]
            lo_i, hi_i = grid.start[row + c0[0]], grid.start[row + c1[0] + 1]
            block_dists(grid.sx, grid.sy, grid.sz, lo_i, hi_i, cx, cy, cz, buf)  # vectorized over the row's cells
            for i in range(hi_i - lo_i):
                if buf[i] < radius2:
                    key = grid.order[lo_i + i]
                    if found < keys.shape[0] or key < keys[-1]:
                        keep_smallest(keys, min(found, keys.shape[0]), key)
                    found += 1
    return found


@kernel(parallel=True)
def _query(grid, soa, n, ctr, radius, radius2, k, idx, count):
    s = ctr.shape[0]
    chunks = (s + QUERY_CHUNK - 1) // QUERY_CHUNK
    r2 = np.float32(radius2)
    for task in prange(chunks):
        keys = np.empty(k, dtype=np.int64)
        buf = np.empty(n, dtype=np.float32)
        for q in range(task * QUERY_CHUNK, min((task + 1) * QUERY_CHUNK, s)):
            cx, cy, cz = ctr[q, 0], ctr[q, 1], ctr[q, 2]
            found = _gather_ball(grid, cx, cy, cz, radius, r2, keys, buf)
            cnt = min(found, k)
            for i in range(cnt):
                idx[q, i] = keys[i]
            finish_ball(idx[q], cnt, soa[0], soa[1], soa[2], n, cx, cy, cz, buf)
            count[q] = cnt


def _side_for(pts, n: int, k: int) -> float:
    """Cell side holding about ``KNN_CELL_POINTS * k`` points if the cloud filled its bounding box."""
    extent = np.maximum(pts.max(axis=0).astype(np.float64) - pts.min(axis=0), 1e-12)
    per_cell = KNN_CELL_POINTS * max(k, 2)
    return float(max((np.prod(extent) * per_cell / n) ** (1 / 3), extent.max() * 1e-6))


def ball_query_grid(xyz, centers, lengths, radius2: float, k: int, nearest: bool, idx, count) -> None:
    """Fill ``idx [B, S, k]`` and ``count [B, S]`` (numpy) for ``xyz [B, N, 3]``, ``centers [B, S, 3]`` float32."""
    radius = float(np.sqrt(np.float64(radius2)))
    keys = np.empty((centers.shape[1], k), dtype=np.int64) if nearest else None
    for b in range(xyz.shape[0]):
        n = int(lengths[b])
        soa = np.ascontiguousarray(xyz[b, :n].T)  # [3, n]
        if not nearest:
            grid = build_grid(xyz[b], n, radius * CELL_PER_RADIUS)
            _query(grid, soa, n, centers[b], radius, radius2, k, idx[b], count[b])
            continue
        # Cells from k when the k nearest lie well inside the ball; else one radius, so a cell's 3 x 3 x 3 block
        # holds every ball centred in it.
        grid = build_grid(xyz[b], n, min(radius, _side_for(xyz[b, :n], n, k)))
        nearest_query(grid, centers[b], np.float32(radius2), True, k, keys, count[b])
        _finish_nearest(keys, count[b], soa, n, centers[b], idx[b])


@kernel(parallel=True)
def _finish_nearest(keys, count, soa, n, ctr, idx):
    for q in prange(ctr.shape[0]):
        for i in range(count[q]):
            idx[q, i] = keys[q, i] & 0xFFFFFFFF
        buf = np.empty(n if count[q] == 0 else 1, dtype=np.float32)
        finish_ball(idx[q], count[q], soa[0], soa[1], soa[2], n, ctr[q, 0], ctr[q, 1], ctr[q, 2], buf)


def knn_grid(query, ref, lengths, k: int, dists, idx) -> None:
    """Fill ``dists [B, S, k]`` and ``idx [B, S, k]`` for numpy float32 clouds ``query [B, S, 3]``, ``ref [B, N, 3]``."""
    keys = np.empty((query.shape[1], k), dtype=np.int64)
    count = np.empty(query.shape[1], dtype=np.int64)
    for b in range(ref.shape[0]):
        n = int(lengths[b])
        grid = build_grid(ref[b], n, _side_for(ref[b, :n], n, k))
        nearest_query(grid, query[b], np.float32(np.inf), False, k, keys, count)
        idx[b] = keys & 0xFFFFFFFF
        dists[b] = (keys >> 32).astype(np.int32).view(np.float32)


