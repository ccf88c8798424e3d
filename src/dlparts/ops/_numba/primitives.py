"""The leaf of the numba kernels: the primitives every search shares, over structure-of-arrays float32 rows.

Distances are ``dx*dx + dy*dy + dz*dz`` in float32 with only the fast-math flags of
:data:`~dlparts.ops._numba.config.FASTMATH`, so every distance is bit-identical to the reference's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dlparts.ops._numba.config import ARGMAX_BLOCK, BLOCK, FASTMATH, kernel

# At most this many grid cells per valid point (a tiny radius in a wide cloud would otherwise make billions of cells).
CELLS_PER_POINT = 2
# Relative widening of a searched box: float32 d2 < r2 can hold for a real distance a few ulps above r.
MARGIN = 1e-4


@kernel(fastmath=FASTMATH)
def min_update(x, y, z, mind, px, py, pz):
    """``mind = min(mind, d2 to p)`` over whole arrays (one vectorized loop: a plain ``range`` over slices)."""
    for j in range(x.shape[0]):
        dx = x[j] - px
        dy = y[j] - py
        dz = z[j] - pz
        d = dx * dx + dy * dy + dz * dz
        v = mind[j]
        mind[j] = d if d < v else v


@kernel()
def first_argmax(bits):
    """First index of the maximum of ``bits``: the int32 view of float32 values that are >= 0 or exactly -1.

    Non-negative floats order like their bit patterns and -1.0 is a negative int32, so an integer maximum (which
    vectorizes, unlike a float one) finds the float maximum.  Block maxima first, then a scan of the first best block.
    """
    n = bits.shape[0]
    best = np.int32(-2147483647)
    best_lo = 0
    for lo in range(0, n, ARGMAX_BLOCK):
        seg = bits[lo:min(lo + ARGMAX_BLOCK, n)]
        top = np.int32(-2147483647)
        for j in range(seg.shape[0]):
            v = seg[j]
            top = v if v > top else top
        if top > best:  # strict: the first block holding the maximum wins
            best = top
            best_lo = lo
    for j in range(best_lo, n):
        if bits[j] == best:
            return j
    return best_lo


@kernel(fastmath=FASTMATH)
def block_dists(x, y, z, lo, hi, cx, cy, cz, buf):
    """``buf[:hi - lo]`` = squared distances of points [lo, hi) to c (slices keep the loop vectorizable)."""
    xs, ys, zs, out = x[lo:hi], y[lo:hi], z[lo:hi], buf[: hi - lo]
    for j in range(xs.shape[0]):
        dx = xs[j] - cx
        dy = ys[j] - cy
        dz = zs[j] - cz
        out[j] = dx * dx + dy * dy + dz * dz


@kernel(fastmath=FASTMATH)
def count_below(buf, n, limit):
    """How many of ``buf[:n]`` are < limit (a vectorized integer sum, so most blocks are skipped without a scan)."""
    c = 0
    vals = buf[:n]
    for j in range(vals.shape[0]):
        c += 1 if vals[j] < limit else 0
    return c


@kernel(fastmath=FASTMATH)
def count_at_most(buf, n, limit):
    """How many of ``buf[:n]`` are <= limit (vectorized)."""
    c = 0
    vals = buf[:n]
    for j in range(vals.shape[0]):
        c += 1 if vals[j] <= limit else 0
    return c


@kernel(fastmath=FASTMATH)
def nearest_point(x, y, z, n, cx, cy, cz, buf):
    """Index of the point of ``[0, n)`` nearest to (cx, cy, cz), ties to the lowest index."""
    best = np.float32(np.inf)
    arg = 0
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        block_dists(x, y, z, lo, hi, cx, cy, cz, buf)
        for j in range(hi - lo):
            if buf[j] < best:
                best = buf[j]
                arg = lo + j
    return arg


@kernel()
def dist_key(d, j):
    """Sort key of (squared distance d >= 0, index j): non-negative float32 bits order like the floats."""
    return (np.int64(np.float32(d).view(np.int32)) << 32) | j


@kernel()
def finish_ball(out, cnt, x, y, z, n, cx, cy, cz, buf):
    """Empty ball: the nearest point everywhere; otherwise repeat slot 0 past ``cnt``."""
    if cnt == 0:
        out[0] = nearest_point(x, y, z, n, cx, cy, cz, buf)
    for i in range(max(cnt, 1), out.shape[0]):
        out[i] = out[0]


@kernel()
def keep_smallest(keys, held, key):
    """Insert ``key`` into the ascending ``keys[:held]``, dropping the largest when ``keys`` is full."""
    i = min(held, keys.shape[0] - 1)
    while i > 0 and keys[i - 1] > key:
        keys[i] = keys[i - 1]
        i -= 1
    keys[i] = key


# ------------------------------------------------------------------------------------------------------ uniform grid
class Grid(NamedTuple):
    """The valid points of one cloud counting-sorted into cubic cells (each cell keeps increasing indices).

    ``lo [3]`` float64 corner and ``h`` the cell side; ``dims [3]`` cells per axis; ``start [cells + 1]`` the first
    sorted position of each cell (x fastest, then y, then z); ``order [n]`` the original index at each sorted
    position; ``sx, sy, sz [n]`` float32 coordinates in sorted order.
    """

    lo: np.ndarray
    h: float
    dims: np.ndarray
    start: np.ndarray
    order: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sz: np.ndarray


# Growth steps of the cell side: the side starts at >= 2^-40 of the cloud's widest extent and grows x1.26 a step, so
# after 121 steps one cell spans the cloud and the loop has returned.
_GROWTH_STEPS = 128


@kernel()
def _cell_size(lo, hi, n, side):
    """``side`` (>= 0), widened until there are at most ``CELLS_PER_POINT`` cells per point; kept within
    [widest extent * 2^-40, 2 * widest extent] and positive, so the loop ends and coordinates divide by it."""
    widest = max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2], 1e-300)
    h = min(max(side * (1.0 + MARGIN), widest * 2.0**-40), 2.0 * widest)
    for _ in range(_GROWTH_STEPS):
        cells = 1.0
        for a in range(3):
            cells *= np.floor((hi[a] - lo[a]) / h) + 1.0
        if cells <= CELLS_PER_POINT * n + 27:
            return h
        h *= 1.26  # about 2x fewer cells per step
    return h


@kernel()
def cell(v, lo, h, dim):
    """The cell along one axis holding coordinate ``v``, clamped to ``[0, dim)`` (``v`` may be infinite: a ball of
    infinite radius)."""
    c = np.floor((np.float64(v) - lo) / h)
    if c < 0.0:
        return 0
    if c >= dim:
        return dim - 1
    return int(c)


@kernel()
def cell_side(pts, n, per_cell):
    """Grid cell side giving about ``per_cell`` points per cell if the first ``n`` points of ``pts [N, 3]`` filled
    their bounding box."""
    volume = 1.0
    widest = 1e-12
    for a in range(3):
        extent = max(np.float64(pts[:n, a].max()) - np.float64(pts[:n, a].min()), 1e-12)
        volume *= extent
        widest = max(widest, extent)
    return max((volume * per_cell / n) ** (1.0 / 3.0), widest * 1e-6)


@kernel()
def build_grid(pts, n, side):
    """:class:`Grid` of the first ``n`` points of ``pts [N, 3]`` with cells of side about ``side`` (wider when that
    would make more than ``CELLS_PER_POINT`` cells per point)."""
    lo = np.empty(3)
    hi = np.empty(3)
    for a in range(3):
        lo[a] = pts[:n, a].min()
        hi[a] = pts[:n, a].max()
    h = _cell_size(lo, hi, n, side)
    dims = np.empty(3, dtype=np.int64)
    for a in range(3):
        dims[a] = int(np.floor((hi[a] - lo[a]) / h)) + 1
    cell_of = np.empty(n, dtype=np.int64)
    start = np.zeros(dims[0] * dims[1] * dims[2] + 1, dtype=np.int64)
    for j in range(n):
        cx = cell(pts[j, 0], lo[0], h, dims[0])
        cy = cell(pts[j, 1], lo[1], h, dims[1])
        cz = cell(pts[j, 2], lo[2], h, dims[2])
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
    return Grid(lo, h, dims, start, order, sx, sy, sz)
