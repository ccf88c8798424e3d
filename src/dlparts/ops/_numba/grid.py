"""Ball query and kNN on a uniform grid for large clouds: the same indices as the brute-force scan.

The valid points of a cloud are counting-sorted into cells (:func:`build_grid`, stable, so each cell keeps index
order).  Ball query in index order: a center visits the cells overlapping its ball, widened by a relative margin that
covers float rounding, and tests each candidate with the exact float32 distance of the reference; the ``k`` smallest
in-ball indices are kept by insertion, so the answer does not depend on the order in which cells are visited.  kNN and
ball query in nearest order search nearest first (:mod:`~dlparts.ops._numba.nearest`) on cells sized from ``k``;
a batch with several clouds per thread gives each thread whole clouds, a smaller one spreads each cloud's queries.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from dlparts.ops._numba.config import FASTMATH, QUERY_CHUNK, kernel
from dlparts.ops._numba.nearest import nearest_cloud, nearest_query
from dlparts.ops._numba.primitives import MARGIN, block_dists, build_grid, cell, cell_side, finish_ball, keep_smallest

# Cell side over radius: smaller cells test fewer points outside the ball, at more (contiguous) row ranges per ball.
CELL_PER_RADIUS = 0.5
# Nearest-first searches: cells of about this many points per neighbour sought.
KNN_CELL_POINTS = 0.5
# Batches of at least this many clouds per thread spread whole clouds over the threads (grids built in parallel,
# one barrier per call instead of two per cloud); smaller ones spread each cloud's queries.
CLOUDS_PER_THREAD = 2


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


@kernel()
def _nearest_side(pts, n, k, radius):
    """Cells of about ``KNN_CELL_POINTS * k`` points, at most one ``radius`` wide (inf: kNN), so that a cell's
    3 x 3 x 3 block holds every ball centred in it."""
    return min(radius, cell_side(pts, n, KNN_CELL_POINTS * max(k, 2)))


@kernel()
def _knn_rows(keys, dists, idx):
    """``dists``, ``idx [S, k]`` from the keys ``[S, k]`` of a nearest-first search."""
    for q in range(keys.shape[0]):
        for i in range(keys.shape[1]):
            idx[q, i] = keys[q, i] & 0xFFFFFFFF
            dists[q, i] = np.int32(keys[q, i] >> 32).view(np.float32)


@kernel()
def _ball_row(keys, cnt, soa, n, cx, cy, cz, idx):
    """``idx [k]`` of one nearest-order ball from its ``cnt`` keys (padded, or the nearest point when empty)."""
    for i in range(cnt):
        idx[i] = keys[i] & 0xFFFFFFFF
    buf = np.empty(n if cnt == 0 else 1, dtype=np.float32)
    finish_ball(idx, cnt, soa[0], soa[1], soa[2], n, cx, cy, cz, buf)


@kernel(parallel=True)
def _finish_nearest(keys, count, soa, n, ctr, idx):
    for q in prange(ctr.shape[0]):
        _ball_row(keys[q], count[q], soa, n, ctr[q, 0], ctr[q, 1], ctr[q, 2], idx[q])


@kernel(parallel=True)
def _nearest_clouds(xyz, centers, lengths, radius, r2, bounded, dists, idx, count):
    """One whole cloud per task: kNN (``dists``, ``idx [B, S, k]``) or, when ``bounded``, nearest-order balls
    (``idx``, ``count [B, S]``) of ``centers [B, S, 3]`` in ``xyz [B, N, 3]``."""
    s, k = idx.shape[1], idx.shape[2]
    for b in prange(xyz.shape[0]):
        n = lengths[b]
        grid = build_grid(xyz[b], n, _nearest_side(xyz[b], n, k, radius))
        keys = np.empty((s, k), dtype=np.int64)
        nearest_cloud(grid, centers[b], r2, bounded, keys, count[b])
        if not bounded:
            _knn_rows(keys, dists[b], idx[b])
            continue
        soa = np.ascontiguousarray(xyz[b, :n].T)  # [3, n]
        for q in range(s):
            _ball_row(keys[q], count[b, q], soa, n, centers[b, q, 0], centers[b, q, 1], centers[b, q, 2], idx[b, q])


def _whole_clouds(batch: int) -> bool:
    """Whether a batch has enough clouds to give each thread whole clouds (no barrier per cloud)."""
    return batch >= CLOUDS_PER_THREAD * numba.get_num_threads()


def ball_query_grid(xyz, centers, lengths, radius2: float, k: int, nearest: bool, idx, count) -> None:
    """Fill ``idx [B, S, k]`` and ``count [B, S]`` (numpy) for ``xyz [B, N, 3]``, ``centers [B, S, 3]`` float32."""
    radius = float(np.sqrt(np.float64(radius2)))
    if nearest and _whole_clouds(xyz.shape[0]):
        _nearest_clouds(xyz, centers, lengths, radius, np.float32(radius2), True, np.empty((0, 0, 0), np.float32),
                        idx, count)
        return
    keys = np.empty((centers.shape[1], k), dtype=np.int64) if nearest else None
    for b in range(xyz.shape[0]):
        n = int(lengths[b])
        soa = np.ascontiguousarray(xyz[b, :n].T)  # [3, n]
        if not nearest:
            grid = build_grid(xyz[b], n, radius * CELL_PER_RADIUS)
            _query(grid, soa, n, centers[b], radius, radius2, k, idx[b], count[b])
            continue
        grid = build_grid(xyz[b], n, _nearest_side(xyz[b], n, k, radius))
        nearest_query(grid, centers[b], np.float32(radius2), True, keys, count[b])
        _finish_nearest(keys, count[b], soa, n, centers[b], idx[b])


def knn_grid(query, ref, lengths, k: int, dists, idx) -> None:
    """Fill ``dists [B, S, k]`` and ``idx [B, S, k]`` for numpy float32 clouds ``query [B, S, 3]``, ``ref [B, N, 3]``."""
    count = np.empty(query.shape[:2], dtype=np.int64)
    if _whole_clouds(ref.shape[0]):
        _nearest_clouds(ref, query, lengths, np.inf, np.float32(np.inf), False, dists, idx, count)
        return
    keys = np.empty((query.shape[1], k), dtype=np.int64)
    for b in range(ref.shape[0]):
        n = int(lengths[b])
        grid = build_grid(ref[b], n, _nearest_side(ref[b], n, k, np.inf))
        nearest_query(grid, query[b], np.float32(np.inf), False, keys, count[b])
        _knn_rows(keys, dists[b], idx[b])
