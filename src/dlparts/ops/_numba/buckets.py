"""Exact farthest point sampling for large clouds by bucket pruning, in the manner of QuickFPS (Han et al., 2023).

The valid points are counting-sorted into the cells of a uniform grid (about ``LEAF`` points per cell when the cloud
fills its box); each non-empty cell is a bucket with its bounding box and the maximum (and its first holder) of its
points' distances to the chosen set.  When a point is chosen, a bucket whose box lies at squared distance ``lb`` from it
with ``lb >= bucket maximum`` cannot change: every point in it is at least ``lb`` away, and the float32 ``lb`` is
computed with the same monotone roundings as each point's distance, so it never exceeds one.  Other buckets are updated
point by point exactly as in the plain loop.  The next point is the bucket maximum that is largest, ties to the lowest
original index, so the sequence is the plain algorithm's from the same start.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from dlparts.ops._numba.config import FASTMATH, kernel
from dlparts.ops._numba.primitives import build_grid, cell_side, first_argmax, min_update

# Target points per bucket.
LEAF = 128


@kernel()
def _buckets(start, sx, sy, sz):
    """Non-empty cells as buckets: (first, last) point ranges and float32 boxes (min/max per axis)."""
    nonempty = 0
    for c in range(start.shape[0] - 1):
        if start[c + 1] > start[c]:
            nonempty += 1
    first = np.empty(nonempty, dtype=np.int64)
    last = np.empty(nonempty, dtype=np.int64)
    box = np.empty((6, nonempty), dtype=np.float32)  # [xmin, ymin, zmin, xmax, ymax, zmax] x buckets
    j = 0
    for c in range(start.shape[0] - 1):
        if start[c + 1] > start[c]:
            lo, hi = start[c], start[c + 1]
            first[j], last[j] = lo, hi
            box[0, j], box[1, j], box[2, j] = sx[lo:hi].min(), sy[lo:hi].min(), sz[lo:hi].min()
            box[3, j], box[4, j], box[5, j] = sx[lo:hi].max(), sy[lo:hi].max(), sz[lo:hi].max()
            j += 1
    return first, last, box


@kernel(fastmath=FASTMATH)
def _box_bounds(box, px, py, pz, lb):
    """``lb[j]``: squared distance from p to box j, each axis gap rounded like the point differences it bounds."""
    x0, y0, z0, x1, y1, z1 = box[0], box[1], box[2], box[3], box[4], box[5]
    zero = np.float32(0.0)
    for j in range(lb.shape[0]):
        gx = x0[j] - px if px < x0[j] else (px - x1[j] if px > x1[j] else zero)
        gy = y0[j] - py if py < y0[j] else (py - y1[j] if py > y1[j] else zero)
        gz = z0[j] - pz if pz < z0[j] else (pz - z1[j] if pz > z1[j] else zero)
        lb[j] = gx * gx + gy * gy + gz * gz


@kernel()
def _count_equal(bits, value):
    c = 0
    for j in range(bits.shape[0]):
        c += 1 if bits[j] == value else 0
    return c


@kernel(fastmath=FASTMATH)
def _update_bucket(lo, hi, sx, sy, sz, mind, bits, px, py, pz):
    """Plain FPS update of sorted points [lo, hi); returns (maximum, first position holding it)."""
    min_update(sx[lo:hi], sy[lo:hi], sz[lo:hi], mind[lo:hi], px, py, pz)
    arg = lo + first_argmax(bits[lo:hi])
    return mind[arg], arg


@kernel(fastmath=FASTMATH)
def _fps_sorted(sx, sy, sz, order, where, bucket_of, first, last, box, m, start, out):
    nb = first.shape[0]
    mind = np.full(sx.shape[0], np.inf, dtype=np.float32)
    bits = mind.view(np.int32)
    top = np.full(nb, np.inf, dtype=np.float32)
    top_bits = top.view(np.int32)
    lb = np.empty(nb, dtype=np.float32)
    arg = first.copy()
    cur = where[start]
    for i in range(m):
        out[i] = order[cur]
        mind[cur] = np.float32(-1.0)
        own = bucket_of[cur]
        px, py, pz = sx[cur], sy[cur], sz[cur]
        _box_bounds(box, px, py, pz, lb)
        for j in range(nb):
            if lb[j] < top[j] or j == own:
                top[j], arg[j] = _update_bucket(first[j], last[j], sx, sy, sz, mind, bits, px, py, pz)
        best = first_argmax(top_bits)
        if _count_equal(top_bits, top_bits[best]) > 1:  # equal maxima in several buckets: lowest original index
            for j in range(best + 1, nb):
                if top_bits[j] == top_bits[best] and order[arg[j]] < order[arg[best]]:
                    best = j
        cur = arg[best]


@kernel()
def _fps_cloud(pts, n, m, start, leaf, out):
    grid = build_grid(pts, n, cell_side(pts, n, leaf))
    order, sx, sy, sz = grid.order, grid.sx, grid.sy, grid.sz
    first, last, box = _buckets(grid.start, sx, sy, sz)
    where = np.empty(n, dtype=np.int64)
    bucket_of = np.empty(n, dtype=np.int64)
    for i in range(n):
        where[order[i]] = i  # sorted position of each original index
    for j in range(first.shape[0]):
        bucket_of[first[j]:last[j]] = j
    _fps_sorted(sx, sy, sz, order, where, bucket_of, first, last, box, m, start, out)


@kernel(parallel=True)
def _fps_batch(pts, lengths, m, start, leaf, out):
    for b in prange(pts.shape[0]):
        _fps_cloud(pts[b], lengths[b], m, start[b], leaf, out[b])


def fps_buckets(xyz, lengths, m: int, start, leaf: int = LEAF):
    """FPS of the backend interface (see :mod:`dlparts.ops.reference`) on numpy arrays: ``xyz [B, N, 3]`` float32,
    ``lengths``, ``start [B]`` int64 -> ``int64 [B, m]``."""
    out = np.empty((xyz.shape[0], m), dtype=np.int64)
    _fps_batch(xyz, lengths, m, start, leaf, out)
    return out
