"""Ball query and kNN on a uniform grid for large clouds: the same indices as the brute-force scan.

The valid points of a cloud are counting-sorted into cells of side ``h >= radius`` (:func:`build_grid`, stable, so
each cell keeps index order).  A center visits the cells overlapping its ball, widened by a relative margin that covers
float rounding, and tests each candidate with the exact float32 distance of the reference.  The ``k`` smallest sort
keys of the in-ball candidates (the index, or ``(d2 bits << 32) | index`` for ``order="nearest"``) are kept by
insertion, so the answer does not depend on the order in which cells are visited.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from dlparts.ops._numba.config import FASTMATH, QUERY_CHUNK, kernel
from dlparts.ops._numba.primitives import MARGIN, block_dists, build_grid, cell, dist_key, finish_ball, keep_smallest

# Cell side over radius: smaller cells test fewer points outside the ball, at more (contiguous) row ranges per ball.
CELL_PER_RADIUS = 0.5


@kernel(fastmath=FASTMATH)
def _gather_ball(grid, cx, cy, cz, radius, radius2, nearest, keys, buf):
    """Count the points with d2 < radius2, keeping the ``keys.shape[0]`` smallest of their sort keys, ascending."""
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
                    j = grid.order[lo_i + i]
                    key = dist_key(buf[i], j) if nearest else j
                    if found < keys.shape[0] or key < keys[-1]:
                        keep_smallest(keys, min(found, keys.shape[0]), key)
                    found += 1
    return found


@kernel(parallel=True)
def _query(grid, soa, n, ctr, radius, radius2, k, nearest, idx, count):
    s = ctr.shape[0]
    chunks = (s + QUERY_CHUNK - 1) // QUERY_CHUNK
    r2 = np.float32(radius2)
    for task in prange(chunks):
        keys = np.empty(k, dtype=np.int64)
        buf = np.empty(n, dtype=np.float32)
        for q in range(task * QUERY_CHUNK, min((task + 1) * QUERY_CHUNK, s)):
            cx, cy, cz = ctr[q, 0], ctr[q, 1], ctr[q, 2]
            found = _gather_ball(grid, cx, cy, cz, radius, r2, nearest, keys, buf)
            cnt = min(found, k)
            for i in range(cnt):
                idx[q, i] = keys[i] & 0xFFFFFFFF
            finish_ball(idx[q], cnt, soa[0], soa[1], soa[2], n, cx, cy, cz, buf)
            count[q] = cnt


def ball_query_grid(xyz, centers, lengths, radius2: float, k: int, nearest: bool, idx, count) -> None:
    """Fill ``idx [B, S, k]`` and ``count [B, S]`` (numpy) for ``xyz [B, N, 3]``, ``centers [B, S, 3]`` float32."""
    radius = float(np.sqrt(np.float64(radius2)))
    for b in range(xyz.shape[0]):
        n = int(lengths[b])
        grid = build_grid(xyz[b], n, radius * CELL_PER_RADIUS)
        soa = np.ascontiguousarray(xyz[b, :n].T)  # [3, n]
        _query(grid, soa, n, centers[b], radius, radius2, k, nearest, idx[b], count[b])


@kernel(parallel=True)
def _knn_query(grid, ctr, k, dists, idx):
    """k nearest by growing balls: once a ball holds >= k points, nothing outside it can be nearer."""
    s = ctr.shape[0]
    n = grid.order.shape[0]
    chunks = (s + QUERY_CHUNK - 1) // QUERY_CHUNK
    for task in prange(chunks):
        keys = np.empty(k, dtype=np.int64)
        buf = np.empty(n, dtype=np.float32)
        for q in range(task * QUERY_CHUNK, min((task + 1) * QUERY_CHUNK, s)):
            cx, cy, cz = ctr[q, 0], ctr[q, 1], ctr[q, 2]
            radius = grid.h
            found = 0
            while found < k:
                r2 = np.float32(radius * radius)
                found = _gather_ball(grid, cx, cy, cz, radius, r2, True, keys, buf)
                if r2 == np.inf:
                    break
                radius *= 2.0
            for i in range(k):
                idx[q, i] = keys[i] & 0xFFFFFFFF
                dists[q, i] = np.int32(keys[i] >> 32)
    return 0


def knn_grid(query, ref, lengths, k: int, dists, idx) -> None:
    """Fill ``dists [B, S, k]`` (float32, via its int32 view) and ``idx [B, S, k]`` for numpy float32 clouds."""
    bits = dists.view(np.int32)
    for b in range(ref.shape[0]):
        n = int(lengths[b])
        pts = ref[b, :n]
        extent = np.maximum(pts.max(axis=0).astype(np.float64) - pts.min(axis=0), 1e-12)
        side = float(max((np.prod(extent) * max(k, 8) / 2 / n) ** (1 / 3), extent.max() * 1e-6))
        _knn_query(build_grid(ref[b], n, side), query[b], k, bits[b], idx[b])
