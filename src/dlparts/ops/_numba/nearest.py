"""Nearest-first search on a uniform grid: the k smallest ``(d2, index)`` keys, within a radius or not (kNN,
``three_nn``, ball query in ``order="nearest"``), equal to the brute-force scan bit for bit.

Queries go in cell order.  The queries of one cell share the points of its 3 x 3 x 3 block of cells, copied once into
a contiguous structure-of-arrays buffer; each query computes its distances to them in one vectorized loop and keeps
the k smallest keys of those within a threshold raised from the previous query's k-th distance.  Whether nothing
beyond the block can enter is decided with float32 bounds made of the points' own coordinates
(:func:`_slab_bounds`), which round like the distances they bound; a query that fails the test is searched again ring
by ring of cells (:func:`_nearest`), nearest first.  Keys are totally ordered, so the visiting order never changes
the answer.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from dlparts.ops._numba.config import FASTMATH, QUERY_CHUNK, kernel
from dlparts.ops._numba.primitives import block_dists, cell, count_at_most, dist_key, keep_smallest

# The next query's threshold: the previous query's k-th squared distance times this (a neighbour in cell order).
GUESS_GROWTH = 1.4
# Vectorized recounts that may lower the limit of a query's candidates towards its k-th distance.
TIGHTEN_STEPS = 2
# Candidates placed by rank up to this many (O(f^2) comparisons, vectorized); beyond, by insertion.
RANK_MAX = 64


@kernel()
def _slab_bounds(grid):
    """``lower [3, D]``, ``upper [3, D]`` (D = the most cells along an axis): along axis a, ``lower[a, c]`` is the
    smallest coordinate of the points in cells ``>= c`` and ``upper[a, c]`` the largest in cells ``<= c``.

    Being the points' own float32 coordinates, a gap from a query to them rounds like the differences it bounds, so the
    float32 bound of a block of cells never exceeds the float32 distance of a point inside it (no margin needed).
    """
    lower = np.full((3, grid.dims.max()), np.inf, dtype=np.float32)
    upper = np.full((3, grid.dims.max()), -np.inf, dtype=np.float32)
    for a, v in enumerate((grid.sx, grid.sy, grid.sz)):
        for i in range(v.shape[0]):
            c = cell(v[i], grid.lo[a], grid.h, grid.dims[a])
            lower[a, c] = min(lower[a, c], v[i])
            upper[a, c] = max(upper[a, c], v[i])
        for c in range(grid.dims[a] - 2, -1, -1):
            lower[a, c] = min(lower[a, c], lower[a, c + 1])
        for c in range(1, grid.dims[a]):
            upper[a, c] = max(upper[a, c], upper[a, c - 1])
    return lower, upper


@kernel(fastmath=FASTMATH)
def _gap(q, lower, upper, c0, c1):
    """float32 distance along one axis from ``q`` to the points of cells ``c0..c1`` (0 when q lies between them)."""
    lo, hi = lower[c0], upper[c1]
    return lo - q if q < lo else (q - hi if q > hi else np.float32(0.0))


@kernel()
def _useful(lb, r2, bounded, keys, held):
    """Whether points at squared distance >= ``lb`` could still enter ``keys`` (ties included: they order by index)."""
    if bounded and not lb < r2:
        return False
    return held < keys.shape[0] or np.int64(np.float32(lb).view(np.int32)) <= keys[-1] >> 32


@kernel(fastmath=FASTMATH)
def _visit(grid, lower, upper, row, x0, x1, gyz, cx, cy, cz, r2, bounded, keys, held, buf):
    """Offer the points of cells ``x0..x1`` of a row (``gyz``: its y and z gaps) unless their bound rules them out."""
    gx = _gap(cx, lower[0], upper[0], x0, x1)
    if not _useful(gx * gx + gyz[0] * gyz[0] + gyz[1] * gyz[1], r2, bounded, keys, held):
        return held
    lo_i, hi_i = grid.start[row + x0], grid.start[row + x1 + 1]
    block_dists(grid.sx, grid.sy, grid.sz, lo_i, hi_i, cx, cy, cz, buf)
    for i in range(hi_i - lo_i):
        d = buf[i]
        if bounded and not d < r2:
            continue
        key = dist_key(d, grid.order[lo_i + i])
        if held < keys.shape[0] or key < keys[-1]:
            keep_smallest(keys, held, key)
            held = min(held + 1, keys.shape[0])
    return held


@kernel(fastmath=FASTMATH)
def _beyond(lower, upper, dims, qc, q, ring):
    """Squared float32 lower bound of the distance from ``q`` to every cell more than ``ring`` cells from cell ``qc``
    along some axis (inf when there is none)."""
    beyond = np.float32(np.inf)
    for a in range(3):
        if qc[a] + ring + 1 < dims[a]:
            g = max(lower[a, qc[a] + ring + 1] - q[a], np.float32(0.0))
            beyond = min(beyond, g * g)
        if qc[a] - ring - 1 >= 0:
            g = max(q[a] - upper[a, qc[a] - ring - 1], np.float32(0.0))
            beyond = min(beyond, g * g)
    return beyond


@kernel(fastmath=FASTMATH)
def _nearest(grid, lower, upper, cx, cy, cz, r2, bounded, keys, buf):
    """The ``keys.shape[0]`` smallest ``(d2, index)`` keys (with d2 < r2 when ``bounded``), ascending; returns how many.

    Rings of cells around the query's cell, nearest first, so the k-th distance tightens early; a block of cells is
    skipped when its float32 bound cannot beat it, and the search ends when nothing beyond the ring can."""
    dims = grid.dims
    q = (cx, cy, cz)
    qc = np.empty(3, dtype=np.int64)
    for a in range(3):
        qc[a] = cell(q[a], grid.lo[a], grid.h, dims[a])
    gyz = np.empty(2, dtype=np.float32)
    held = 0
    ring = 0
    while True:
        for gz in range(max(qc[2] - ring, 0), min(qc[2] + ring, dims[2] - 1) + 1):
            gyz[1] = _gap(cz, lower[2], upper[2], gz, gz)
            for gy in range(max(qc[1] - ring, 0), min(qc[1] + ring, dims[1] - 1) + 1):
                gyz[0] = _gap(cy, lower[1], upper[1], gy, gy)
                row = (gz * dims[1] + gy) * dims[0]
                x0, x1 = qc[0] - ring, qc[0] + ring
                if max(abs(gz - qc[2]), abs(gy - qc[1])) == ring:  # on the ring's shell: the whole row of the ring
                    held = _visit(grid, lower, upper, row, max(x0, 0), min(x1, dims[0] - 1), gyz, cx, cy, cz, r2,
                                  bounded, keys, held, buf)
                else:  # inside the shell: its two end cells
                    if x0 >= 0:
                        held = _visit(grid, lower, upper, row, x0, x0, gyz, cx, cy, cz, r2, bounded, keys, held, buf)
                    if x1 < dims[0]:
                        held = _visit(grid, lower, upper, row, x1, x1, gyz, cx, cy, cz, r2, bounded, keys, held, buf)
        beyond = _beyond(lower, upper, dims, qc, q, ring)
        if beyond == np.inf or not _useful(beyond, r2, bounded, keys, held):
            return held
        ring += 1


@kernel()
def _gather_block(grid, qc, cand, cand_idx):
    """Copy the points of the 3 x 3 x 3 cells around cell ``qc`` into ``cand [3, :]`` (SoA) and their indices into
    ``cand_idx``; returns how many."""
    dims = grid.dims
    m = 0
    for gz in range(max(qc[2] - 1, 0), min(qc[2] + 1, dims[2] - 1) + 1):
        for gy in range(max(qc[1] - 1, 0), min(qc[1] + 1, dims[1] - 1) + 1):
            row = (gz * dims[1] + gy) * dims[0]
            lo_i, hi_i = grid.start[row + max(qc[0] - 1, 0)], grid.start[row + min(qc[0] + 1, dims[0] - 1) + 1]
            for i in range(lo_i, hi_i):
                cand[0, m], cand[1, m], cand[2, m] = grid.sx[i], grid.sy[i], grid.sz[i]
                cand_idx[m] = grid.order[i]
                m += 1
    return m


@kernel()
def _place_by_rank(cands, f, keys):
    """The smallest ``keys.shape[0]`` of the distinct keys ``cands[:f]`` into ``keys``, ascending: each key goes to
    its rank, counted with one vectorized comparison against all (no branches to mispredict, unlike insertion)."""
    ks = cands[:f]
    for i in range(f):
        key = ks[i]
        rank = 0
        for j in range(f):
            rank += 1 if ks[j] < key else 0
        if rank < keys.shape[0]:
            keys[rank] = key
    return min(f, keys.shape[0])


@kernel()
def _offer(buf, cand_idx, m, cap, guess, keys, cands):
    """The smallest keys of the candidates at squared distances ``buf[:m]`` that are ``<= cap`` into ``keys``,
    ascending; returns how many.

    The limit starts at ``guess`` (any value), is raised until at least k candidates lie within it and lowered while
    that stays true and many more do, all by vectorized counts; only the candidates within it are then placed, by rank
    when they are few (:func:`_place_by_rank`), else by insertion (many equal distances).
    """
    k = keys.shape[0]
    limit = min(guess, cap)
    found = count_at_most(buf, m, limit)
    while found < k and limit < cap:
        limit = min(limit * 4, cap) if limit > 0 else cap
        found = count_at_most(buf, m, limit)
    for _ in range(TIGHTEN_STEPS):
        if found <= k + k // 4:
            break
        # in 3-d, counts grow like the limit (a squared distance) to the power 3/2
        trial = limit * np.float32((k + k // 8 + 1) / found) ** np.float32(2 / 3)
        c = count_at_most(buf, m, trial)
        if c < k:
            break
        limit, found = trial, c
    f = 0
    for i in range(m):  # branch-free compaction of the candidates within the limit
        cands[f] = dist_key(buf[i], cand_idx[i])
        f += 1 if buf[i] <= limit else 0
    if f <= RANK_MAX:
        return _place_by_rank(cands, f, keys)
    held = 0
    for key in cands[:f]:
        if held < k or key < keys[-1]:
            keep_smallest(keys, held, key)
            held = min(held + 1, k)
    return held


@kernel(fastmath=FASTMATH)
def _cell_order(grid, ctr):
    """The queries of ``ctr [S, 3]`` counting-sorted by the grid cell holding them (clamped): (order, cell coords)."""
    s = ctr.shape[0]
    dims = grid.dims
    qc = np.empty((s, 3), dtype=np.int64)
    start = np.zeros(dims[0] * dims[1] * dims[2] + 1, dtype=np.int64)
    for q in range(s):
        for a in range(3):
            qc[q, a] = cell(ctr[q, a], grid.lo[a], grid.h, dims[a])
        start[(qc[q, 2] * dims[1] + qc[q, 1]) * dims[0] + qc[q, 0] + 1] += 1
    for c in range(1, start.shape[0]):
        start[c] += start[c - 1]
    order = np.empty(s, dtype=np.int64)
    for q in range(s):
        c = (qc[q, 2] * dims[1] + qc[q, 1]) * dims[0] + qc[q, 0]
        order[start[c]] = q
        start[c] += 1
    return order, qc


@kernel(fastmath=FASTMATH)
def _query_cells(grid, lower, upper, order, qcs, ctr, r2, bounded, p0, p1, keys_out, count):
    """:func:`nearest_query` for the queries at positions ``p0..p1`` of the cell order ``order``."""
    # d2 < r2 as d2 <= cap; towards -inf so that r2 = 0 (a radius whose square underflows) admits nothing
    cap = np.nextafter(r2, np.float32(-np.inf)) if bounded else r2
    k = keys_out.shape[1]
    n = grid.order.shape[0]
    cand = np.empty((3, n), dtype=np.float32)
    cand_idx = np.empty(n, dtype=np.int64)
    buf = np.empty(n, dtype=np.float32)
    cands = np.empty(n, dtype=np.int64)
    held_cell = np.full(3, -1, dtype=np.int64)
    m = 0
    guess = np.float32(np.inf)
    for p in range(p0, p1):
        q = order[p]
        qc = qcs[q]
        if qc[0] != held_cell[0] or qc[1] != held_cell[1] or qc[2] != held_cell[2]:
            m = _gather_block(grid, qc, cand, cand_idx)
            held_cell[:] = qc
        cx, cy, cz = ctr[q, 0], ctr[q, 1], ctr[q, 2]
        block_dists(cand[0], cand[1], cand[2], 0, m, cx, cy, cz, buf)
        held = _offer(buf, cand_idx, m, cap, guess, keys_out[q], cands)
        if _useful(_beyond(lower, upper, grid.dims, qc, (cx, cy, cz), 1), r2, bounded, keys_out[q], held):
            held = _nearest(grid, lower, upper, cx, cy, cz, r2, bounded, keys_out[q], buf)
        if held == k:  # the next query, nearby in cell order, has a k-th distance close to this one
            guess = np.int32(keys_out[q, k - 1] >> 32).view(np.float32) * np.float32(GUESS_GROWTH)
        count[q] = held


@kernel(parallel=True)
def nearest_query(grid, ctr, r2, bounded, keys_out, count):
    """``keys_out [S, k]``, ``count [S]`` of :func:`_nearest` for every center of ``ctr [S, 3]``, chunks of queries
    spread over the threads.

    Queries go in cell order; the queries of one cell share the points of its 3 x 3 x 3 block, copied once into a
    contiguous buffer and scanned in one vectorized loop per query.  A query whose answer could lie beyond that block
    (float32 bounds, as in :func:`_nearest`) is searched again ring by ring.
    """
    lower, upper = _slab_bounds(grid)
    order, qcs = _cell_order(grid, ctr)
    s = ctr.shape[0]
    for task in prange((s + QUERY_CHUNK - 1) // QUERY_CHUNK):
        _query_cells(grid, lower, upper, order, qcs, ctr, r2, bounded, task * QUERY_CHUNK,
                     min((task + 1) * QUERY_CHUNK, s), keys_out, count)


@kernel()
def nearest_cloud(grid, ctr, r2, bounded, keys_out, count):
    """:func:`nearest_query` on the calling thread (for kernels that spread whole clouds over the threads)."""
    lower, upper = _slab_bounds(grid)
    order, qcs = _cell_order(grid, ctr)
    _query_cells(grid, lower, upper, order, qcs, ctr, r2, bounded, 0, ctr.shape[0], keys_out, count)
