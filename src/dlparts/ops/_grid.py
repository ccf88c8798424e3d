"""Ball query on a uniform grid for large clouds (numba, CPU): the same indices as the brute-force scan.

The valid points of a cloud are counting-sorted into cells of side ``h >= radius`` (stable, so each cell keeps index
order).  A center visits the cells overlapping its ball, widened by a relative margin that covers float rounding, and
tests each candidate with the exact float32 distance of the reference.  The ``k`` smallest sort keys of the in-ball
candidates (the index, or ``(d2 bits << 32) | index`` for ``order="nearest"``) are kept by insertion, so the answer
does not depend on the order in which cells are visited.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dlparts.ops.cpu import FASTMATH, QUERY_CHUNK, block_dists, dist_key, finish_ball

# At most this many cells per valid point (a tiny radius in a wide cloud would otherwise make billions of cells).
CELLS_PER_POINT = 2
# Cell side over radius: smaller cells test fewer points outside the ball, at more (contiguous) row ranges per ball.
CELL_PER_RADIUS = 0.5
# Relative widening of the searched box: float32 d2 < r2 can hold for a real distance a few ulps above r.
MARGIN = 1e-4


@njit(cache=True)
def _cell_size(lo, hi, n, radius):
    h = radius * (1.0 + MARGIN)
    while True:
        cells = 1.0
        for a in range(3):
            cells *= np.floor((hi[a] - lo[a]) / h) + 1.0
        if cells <= CELLS_PER_POINT * n + 27:
            return h
        h *= 1.26  # about 2x fewer cells per step


@njit(cache=True)
def _cell(v, lo, h, dim):
    c = int(np.floor((np.float64(v) - lo) / h))
    return min(max(c, 0), dim - 1)


@njit(cache=True)
def build_grid(pts, n, radius):
    """Sort the first ``n`` points of ``pts [N, 3]`` into cells; returns (lo, h, dims, cell_start, order, sx, sy, sz)."""
    lo = np.empty(3)
    hi = np.empty(3)
    for a in range(3):
        lo[a] = pts[:n, a].min()
        hi[a] = pts[:n, a].max()
    h = _cell_size(lo, hi, n, radius)
    dims = np.empty(3, dtype=np.int64)
    for a in range(3):
        dims[a] = int(np.floor((hi[a] - lo[a]) / h)) + 1
    cell_of = np.empty(n, dtype=np.int64)
    start = np.zeros(dims[0] * dims[1] * dims[2] + 1, dtype=np.int64)
    for j in range(n):
        cx = _cell(pts[j, 0], lo[0], h, dims[0])
        cy = _cell(pts[j, 1], lo[1], h, dims[1])
        cz = _cell(pts[j, 2], lo[2], h, dims[2])
        cell_of[j] = (cz * dims[1] + cy) * dims[0] + cx
        start[cell_of[j] + 1] += 1
    for c in range(1, start.shape[0]):
        start[c] += start[c - 1]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for j in range(n):  # stable: each cell keeps increasing indices
        order[fill[cell_of[j]]] = j
        fill[cell_of[j]] += 1
    sx = np.empty(n, dtype=np.float32)
    sy = np.empty(n, dtype=np.float32)
    sz = np.empty(n, dtype=np.float32)
    for i in range(n):
        sx[i], sy[i], sz[i] = pts[order[i], 0], pts[order[i], 1], pts[order[i], 2]
    return lo, h, dims, start, order, sx, sy, sz


@njit(cache=True)
def _keep_smallest(keys, held, key):
    """Insert ``key`` into the ascending ``keys[:held]``, dropping the largest when ``keys`` is full."""
    i = min(held, keys.shape[0] - 1)
    while i > 0 and keys[i - 1] > key:
        keys[i] = keys[i - 1]
        i -= 1
    keys[i] = key


@njit(cache=True, fastmath=FASTMATH)
def _gather_ball(grid, cx, cy, cz, radius, radius2, nearest, keys, buf):
    """Count the points with d2 < radius2, keeping the ``keys.shape[0]`` smallest of their sort keys, ascending."""
    lo, h, dims, start, order, sx, sy, sz = grid
    reach = radius * (1.0 + MARGIN)
    c0 = np.empty(3, dtype=np.int64)
    c1 = np.empty(3, dtype=np.int64)
    center = (cx, cy, cz)
    for a in range(3):
        c0[a] = _cell(center[a] - reach, lo[a], h, dims[a])
        c1[a] = _cell(center[a] + reach, lo[a], h, dims[a])
    found = 0
    for gz in range(c0[2], c1[2] + 1):
        for gy in range(c0[1], c1[1] + 1):
            row = (gz * dims[1] + gy) * dims[0]
            lo_i, hi_i = start[row + c0[0]], start[row + c1[0] + 1]
            block_dists(sx, sy, sz, lo_i, hi_i, cx, cy, cz, buf)  # vectorized over the row's contiguous cells
            for i in range(hi_i - lo_i):
                if buf[i] < radius2:
                    j = order[lo_i + i]
                    key = dist_key(buf[i], j) if nearest else j
                    if found < keys.shape[0] or key < keys[-1]:
                        _keep_smallest(keys, min(found, keys.shape[0]), key)
                    found += 1
    return found


@njit(parallel=True, cache=True)
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


@njit(parallel=True, cache=True)
def _knn_query(grid, ctr, k, dists, idx):
    """k nearest by growing balls: once a ball holds >= k points, nothing outside it can be nearer."""
    s = ctr.shape[0]
    n = grid[4].shape[0]
    chunks = (s + QUERY_CHUNK - 1) // QUERY_CHUNK
    for task in prange(chunks):
        keys = np.empty(k, dtype=np.int64)
        buf = np.empty(n, dtype=np.float32)
        for q in range(task * QUERY_CHUNK, min((task + 1) * QUERY_CHUNK, s)):
            cx, cy, cz = ctr[q, 0], ctr[q, 1], ctr[q, 2]
            radius = grid[1]
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
