"""Brute-force kernels for small clouds: FPS, ball query and kNN by scanning the points, parallel over clouds and
query blocks.  Arrays are structure-of-arrays ``[B, 3, N]`` float32 so the inner loops run over contiguous x, y and z
rows and vectorize; every result is the reference's (:mod:`dlparts.ops.reference`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from dlparts.ops._numba.config import BLOCK, FASTMATH, KNN_BLOCK, QUERY_CHUNK, kernel
from dlparts.ops._numba.primitives import (block_dists, count_at_most, count_below, dist_key, finish_ball,
                                           first_argmax, min_update)


@kernel(fastmath=FASTMATH)
def fps_cloud(x, y, z, n, m, start, out):
    """Plain greedy FPS of the first ``n`` points from ``start``: ``out [m]`` indices."""
    x, y, z = x[:n], y[:n], z[:n]
    mind = np.full(n, np.inf, dtype=np.float32)
    bits = mind.view(np.int32)
    cur = start
    for i in range(m):
        out[i] = cur
        mind[cur] = np.float32(-1.0)  # chosen: never chosen again (min with d >= 0 keeps -1)
        min_update(x, y, z, mind, x[cur], y[cur], z[cur])
        cur = first_argmax(bits)


@kernel(parallel=True, fastmath=FASTMATH)
def fps_kernel(pts, lengths, m, start, out):
    """``pts [B, 3, N]``, ``lengths``, ``start [B]`` -> ``out [B, m]``, one cloud per task."""
    for b in prange(pts.shape[0]):
        fps_cloud(pts[b, 0], pts[b, 1], pts[b, 2], lengths[b], m, start[b], out[b])


@kernel(fastmath=FASTMATH)
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


@kernel(parallel=True, fastmath=FASTMATH)
def ball_kernel(pts, ctr, lengths, radius2, k, nearest, idx, count):
    """``pts [B, 3, N]``, ``ctr [B, 3, S]`` -> ``idx [B, S, k]``, ``count [B, S]``."""
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


@kernel()
def _insert(dist, idx, d, j):
    """Insert (d, j) into the sorted lists, after entries with distance <= d (j exceeds every index already held)."""
    i = dist.shape[0] - 1
    while i > 0 and dist[i - 1] > d:
        dist[i] = dist[i - 1]
        idx[i] = idx[i - 1]
        i -= 1
    dist[i] = d
    idx[i] = j


@kernel()
def _morton(px, py, pz, box, scale):
    """30-bit Morton code of a point quantized to a 1024^3 lattice over ``box`` (xmin, ymin, zmin)."""
    qx = min(max(int((px - box[0]) * scale), 0), 1023)
    qy = min(max(int((py - box[1]) * scale), 0), 1023)
    qz = min(max(int((pz - box[2]) * scale), 0), 1023)
    code = 0
    for bit in range(10):
        code |= ((((qx >> bit) & 1) << (3 * bit)) | (((qy >> bit) & 1) << (3 * bit + 1))
                 | (((qz >> bit) & 1) << (3 * bit + 2)))
    return code


@kernel(parallel=True)
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


@kernel(fastmath=FASTMATH)
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


@kernel(parallel=True, fastmath=FASTMATH)
def knn_kernel(qry, pts, lengths, k, dists, idx):
    """``qry [B, 3, S]``, ``pts [B, 3, N]`` -> ``dists [B, S, k]``, ``idx [B, S, k]``: each query scans every point in
    index order, skipping blocks that cannot hold a neighbour under a bound from nearby points in Morton order."""
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
