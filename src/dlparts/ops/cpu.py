"""Fast CPU backend: numba kernels, parallel over clouds and query blocks, compiled on first use and cached on disk.

Implements the backend interface documented in :mod:`dlparts.ops.reference` and returns exactly what the reference
returns.  Coordinates are copied to structure-of-arrays ``[B, 3, N]`` so the inner loops run over contiguous x, y and z
rows and vectorize.  Distances are ``dx*dx + dy*dy + dz*dz`` in float32; the kernels allow only the fast-math flags
that cannot change a finite result (no NaN/inf/signed-zero care), never ``contract`` (FMA) or ``reassoc``, so every
distance is bit-identical to the reference's.

Large clouds: farthest point sampling switches to :mod:`dlparts.ops._fps_buckets` (exact, bucket
pruning), ball query and kNN to a uniform grid (:mod:`dlparts.ops._grid`); they return the same indices as the
brute-force loops.  Small kNN scans every point in index order, skipping blocks that cannot hold a neighbour under a
bound taken from nearby points in Morton order.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
from numba import njit, prange

if "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's OpenMP layer shares libgomp with torch, whose spinning pool then fights the kernels for the same cores
    # (measured: 3x slower batched FPS on 2 cores).  Set NUMBA_THREADING_LAYER to choose another layer.
    numba.config.THREADING_LAYER = "workqueue"

DEVICE_TYPES: tuple[str, ...] = ("cpu",)

# Fast-math flags that leave finite results unchanged; "contract" (FMA) and "reassoc" would change distances.
FASTMATH = {"nnan", "ninf", "nsz"}
# Points per block: distances of a block are computed in one vectorized loop, then scanned.
BLOCK = 64
# Points per block of the kNN scan (most blocks are skipped after one vectorized count).
KNN_BLOCK = 256
# Values per block of the FPS maximum search.
ARGMAX_BLOCK = 256
# Query points per parallel task.
QUERY_CHUNK = 64
# Clouds at least this large use bucket-pruned FPS (measured faster from 4096 points at m = N/4).
BUCKET_FPS_MIN_POINTS = 4096
# Ball queries and kNN with at least this many query-point pairs search a grid instead of scanning every point.
GRID_MIN_WORK = 1 << 20


def soa(t: torch.Tensor) -> np.ndarray:
    """``[B, N, 3]`` float32 tensor -> ``[B, 3, N]`` contiguous numpy array (x, y, z rows)."""
    return np.ascontiguousarray(t.numpy().transpose(0, 2, 1))  # [B, 3, N]


@njit(cache=True, fastmath=FASTMATH)
def min_update(x, y, z, mind, px, py, pz):
    """``mind = min(mind, d2 to p)`` over whole arrays (one vectorized loop: a plain ``range`` over slices)."""
    for j in range(x.shape[0]):
        dx = x[j] - px
        dy = y[j] - py
        dz = z[j] - pz
        d = dx * dx + dy * dy + dz * dz
        v = mind[j]
        mind[j] = d if d < v else v


@njit(cache=True)
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


@njit(cache=True, fastmath=FASTMATH)
def _fps_cloud(x, y, z, n, m, start, out):
    x, y, z = x[:n], y[:n], z[:n]
    mind = np.full(n, np.inf, dtype=np.float32)
    bits = mind.view(np.int32)
    cur = start
    for i in range(m):
        out[i] = cur
        mind[cur] = np.float32(-1.0)  # chosen: never chosen again (min with d >= 0 keeps -1)
        min_update(x, y, z, mind, x[cur], y[cur], z[cur])
        cur = first_argmax(bits)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _fps_kernel(pts, lengths, m, start, out):
    for b in prange(pts.shape[0]):
        _fps_cloud(pts[b, 0], pts[b, 1], pts[b, 2], lengths[b], m, start[b], out[b])


def fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor) -> torch.Tensor:
    b, n, _ = xyz.shape
    if n >= BUCKET_FPS_MIN_POINTS:
        from dlparts.ops._fps_buckets import fps_buckets

        return fps_buckets(xyz, lengths, m, start, leaf=64 if n < 32768 else 128)
    out = np.empty((b, m), dtype=np.int64)
    _fps_kernel(soa(xyz), lengths.numpy(), m, start.numpy(), out)
    return torch.from_numpy(out)


@njit(cache=True, fastmath=FASTMATH)
def block_dists(x, y, z, lo, hi, cx, cy, cz, buf):
    """``buf[:hi - lo]`` = squared distances of points [lo, hi) to c (slices keep the loop vectorizable)."""
    xs, ys, zs, out = x[lo:hi], y[lo:hi], z[lo:hi], buf[: hi - lo]
    for j in range(xs.shape[0]):
        dx = xs[j] - cx
        dy = ys[j] - cy
        dz = zs[j] - cz
        out[j] = dx * dx + dy * dy + dz * dz


@njit(cache=True, fastmath=FASTMATH)
def count_below(buf, n, limit):
    """How many of ``buf[:n]`` are < limit (a vectorized integer sum, so most blocks are skipped without a scan)."""
    c = 0
    vals = buf[:n]
    for j in range(vals.shape[0]):
        c += 1 if vals[j] < limit else 0
    return c


@njit(cache=True, fastmath=FASTMATH)
def count_at_most(buf, n, limit):
    """How many of ``buf[:n]`` are <= limit (vectorized)."""
    c = 0
    vals = buf[:n]
    for j in range(vals.shape[0]):
        c += 1 if vals[j] <= limit else 0
    return c


@njit(cache=True, fastmath=FASTMATH)
def _nearest_point(x, y, z, n, cx, cy, cz, buf):
    """Index of the point nearest to (cx, cy, cz), ties to the lowest index."""
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


@njit(cache=True)
def dist_key(d, j):
    """Sort key of (squared distance d >= 0, index j): non-negative float32 bits order like the floats."""
    return (np.int64(np.float32(d).view(np.int32)) << 32) | j


@njit(cache=True, fastmath=FASTMATH)
def _ball_center(x, y, z, n, cx, cy, cz, radius2, k, nearest, out, buf, keys):
    """Fill ``out [k]`` for one center by a scan in index order; returns the count."""
    cnt = 0
    found = 0
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        block_dists(x, y, z, lo, hi, cx, cy, cz, buf)
        if count_below(buf, hi - lo, radius2) == 0:
            continue
        for j in range(hi - lo):
            if buf[j] < radius2:
                if nearest:
                    keys[found] = dist_key(buf[j], lo + j)
                    found += 1
                else:
                    out[cnt] = lo + j
                    cnt += 1
                    if cnt == k:
                        return cnt
    if nearest and found > 0:
        cnt = min(found, k)
        chosen = np.sort(keys[:found])[:cnt]
        for i in range(cnt):
            out[i] = chosen[i] & 0xFFFFFFFF
    return cnt


@njit(cache=True)
def finish_ball(out, cnt, x, y, z, n, cx, cy, cz, buf):
    """Empty ball: the nearest point everywhere; otherwise repeat slot 0 past ``cnt``."""
    if cnt == 0:
        out[0] = _nearest_point(x, y, z, n, cx, cy, cz, buf)
    for i in range(max(cnt, 1), out.shape[0]):
        out[i] = out[0]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _ball_kernel(pts, ctr, lengths, radius2, k, nearest, idx, count):
    nb, s = ctr.shape[0], ctr.shape[2]
    chunks = (s + QUERY_CHUNK - 1) // QUERY_CHUNK
    r2 = np.float32(radius2)
    for task in prange(nb * chunks):
        b = task // chunks
        lo = (task % chunks) * QUERY_CHUNK
        n = lengths[b]
        x, y, z = pts[b, 0], pts[b, 1], pts[b, 2]
        buf = np.empty(BLOCK, dtype=np.float32)
        keys = np.empty(n if nearest else 1, dtype=np.int64)
        for q in range(lo, min(lo + QUERY_CHUNK, s)):
            cx, cy, cz = ctr[b, 0, q], ctr[b, 1, q], ctr[b, 2, q]
            cnt = _ball_center(x, y, z, n, cx, cy, cz, r2, k, nearest, idx[b, q], buf, keys)
            finish_ball(idx[b, q], cnt, x, y, z, n, cx, cy, cz, buf)
            count[b, q] = cnt


def ball_query(xyz, centers, lengths, radius2: float, k: int, nearest: bool):
    b, n, _ = xyz.shape
    s = centers.shape[1]
    idx = np.empty((b, s, k), dtype=np.int64)
    count = np.empty((b, s), dtype=np.int64)
    if n * s >= GRID_MIN_WORK:
        from dlparts.ops._grid import ball_query_grid

        ball_query_grid(xyz.numpy(), centers.numpy(), lengths.numpy(), radius2, k, nearest, idx, count)
    else:
        _ball_kernel(soa(xyz), soa(centers), lengths.numpy(), radius2, k, nearest, idx, count)
    return torch.from_numpy(idx), torch.from_numpy(count)


@njit(cache=True)
def _insert(dist, idx, d, j):
    """Insert (d, j) into the sorted lists, after entries with distance <= d (j exceeds every index already held)."""
    i = dist.shape[0] - 1
    while i > 0 and dist[i - 1] > d:
        dist[i] = dist[i - 1]
        idx[i] = idx[i - 1]
        i -= 1
    dist[i] = d
    idx[i] = j


@njit(cache=True)
def _morton(px, py, pz, box, scale):
    """30-bit Morton code of a point quantized to a 1024^3 lattice over ``box`` (xmin, ymin, zmin)."""
    qx = min(max(int((px - box[0]) * scale), 0), 1023)
    qy = min(max(int((py - box[1]) * scale), 0), 1023)
    qz = min(max(int((pz - box[2]) * scale), 0), 1023)
    code = 0
    for bit in range(10):
        code |= (((qx >> bit) & 1) << (3 * bit)) | (((qy >> bit) & 1) << (3 * bit + 1)) | (((qz >> bit) & 1) << (3 * bit + 2))
    return code


@njit(parallel=True, cache=True)
def _morton_sort(pts, lengths, boxes, scales, order, codes):
    """Per cloud: the valid points' box and scale, and their indices sorted by Morton code (``order``, ``codes``)."""
    for b in prange(pts.shape[0]):
        n = lengths[b]
        x, y, z = pts[b, 0, :n], pts[b, 1, :n], pts[b, 2, :n]
        boxes[b, 0], boxes[b, 1], boxes[b, 2] = x.min(), y.min(), z.min()
        extent = max(x.max() - boxes[b, 0], y.max() - boxes[b, 1], z.max() - boxes[b, 2])
        scales[b] = 1023.0 / max(extent, 1e-30)
        raw = np.empty(n, dtype=np.int64)
        for j in range(n):
            raw[j] = _morton(x[j], y[j], z[j], boxes[b], scales[b])
        perm = np.argsort(raw)
        order[b, :n] = perm
        codes[b, :n] = raw[perm]


@njit(cache=True, fastmath=FASTMATH)
def _knn_bound(x, y, z, order, codes, code, k, cx, cy, cz, near):
    """An upper bound of the k-th nearest squared distance: the k-th smallest over 2k points near in Morton order."""
    n = order.shape[0]
    pos = np.searchsorted(codes, code)
    lo = min(max(pos - k, 0), n - min(2 * k, n))
    hi = min(lo + 2 * k, n)
    for i in range(lo, hi):
        j = order[i]
        dx = x[j] - cx
        dy = y[j] - cy
        dz = z[j] - cz
        near[i - lo] = dx * dx + dy * dy + dz * dz
    return np.sort(near[: hi - lo])[k - 1]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _knn_kernel(qry, pts, lengths, k, dists, idx):
    nb, s = qry.shape[0], qry.shape[2]
    boxes = np.empty((nb, 3))
    scales = np.empty(nb)
    order = np.empty((nb, pts.shape[2]), dtype=np.int64)
    codes = np.empty((nb, pts.shape[2]), dtype=np.int64)
    _morton_sort(pts, lengths, boxes, scales, order, codes)
    chunks = (s + QUERY_CHUNK - 1) // QUERY_CHUNK
    for task in prange(nb * chunks):
        b = task // chunks
        lo = (task % chunks) * QUERY_CHUNK
        n = lengths[b]
        x, y, z = pts[b, 0, :n], pts[b, 1, :n], pts[b, 2, :n]
        buf = np.empty(KNN_BLOCK, dtype=np.float32)
        near = np.empty(2 * k, dtype=np.float32)
        for q in range(lo, min(lo + QUERY_CHUNK, s)):
            cx, cy, cz = qry[b, 0, q], qry[b, 1, q], qry[b, 2, q]
            dq, iq = dists[b, q], idx[b, q]
            dq[:] = np.inf
            iq[:] = 0
            code = _morton(cx, cy, cz, boxes[b], scales[b])
            # Only points with d2 <= limit can be among the k nearest; scanning in index order and inserting after
            # equal distances keeps ties in index order.
            limit = _knn_bound(x, y, z, order[b, :n], codes[b, :n], code, k, cx, cy, cz, near)
            for blk in range(0, n, KNN_BLOCK):
                hi = min(blk + KNN_BLOCK, n)
                block_dists(x, y, z, blk, hi, cx, cy, cz, buf)
                if count_at_most(buf, hi - blk, limit) == 0:
                    continue
                for j in range(hi - blk):
                    d = buf[j]
                    if d <= limit and d < dq[k - 1]:
                        _insert(dq, iq, d, blk + j)
                        limit = min(limit, dq[k - 1])


def knn(query, ref, lengths, k: int):
    b, s, _ = query.shape
    dists = np.empty((b, s, k), dtype=np.float32)
    idx = np.empty((b, s, k), dtype=np.int64)
    if ref.shape[1] * s >= GRID_MIN_WORK:
        from dlparts.ops._grid import knn_grid

        knn_grid(query.numpy(), ref.numpy(), lengths.numpy(), k, dists, idx)
    else:
        _knn_kernel(soa(query), soa(ref), lengths.numpy(), k, dists, idx)
    return torch.from_numpy(dists), torch.from_numpy(idx)
