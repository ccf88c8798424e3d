"""Numba kernels of :mod:`dlparts.layers.fused` over channels-last ``[M, C]`` arrays: float32, or bfloat16 passed
as its uint16 bits (loaded by widening, stored with round-to-nearest-even as torch converts).  Kept apart from the
autograd code so that editing that code does not invalidate numba's on-disk cache of these."""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from dlparts.ops._numba import config

config.configure()


# ------------------------------------------------------------------------------ element access, float32 or bfloat16
def _load(a, i, j):
    """``a[i, j]`` as float32; bfloat16 arrays come as their uint16 bits."""


def _store(a, i, j, v):
    """``a[i, j] = v`` from float32; to bfloat16 bits with round-to-nearest-even, as torch converts."""


def _load3(a, i, j, k):
    """``a[i, j, k]`` as float32, as :func:`_load`."""


@overload(_load3, inline="always")
def _load3_impl(a, i, j, k):
    if a.dtype == types.uint16:
        return lambda a, i, j, k: np.uint32(np.uint32(a[i, j, k]) << np.uint32(16)).view(np.float32)
    return lambda a, i, j, k: a[i, j, k]


@overload(_load, inline="always")
def _load_impl(a, i, j):
    if a.dtype == types.uint16:
        return lambda a, i, j: np.uint32(np.uint32(a[i, j]) << np.uint32(16)).view(np.float32)
    return lambda a, i, j: a[i, j]


@overload(_store, inline="always")
def _store_impl(a, i, j, v):
    if a.dtype == types.uint16:
        def store_bf16(a, i, j, v):
            u = np.float32(v).view(np.uint32)
            if v != v:
                a[i, j] = np.uint16(0x7FC0)
            else:  # add half an ulp of bfloat16, minus one unless the kept bits are odd (ties to even), truncate
                rounded = np.uint32(u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
                a[i, j] = np.uint16(rounded >> np.uint32(16))
        return store_bf16

    def store_f32(a, i, j, v):
        a[i, j] = v
    return store_f32


# ---------------------------------------------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True)
def stats(y, chunks):
    """Per-column ``(shift, sum(y - shift), sum((y - shift)^2))`` of ``y [M, C]`` in float64, ``shift = y[0]``."""
    m, c = y.shape
    shift = np.empty(c)
    for j in range(c):
        shift[j] = _load(y, 0, j)
    sums = np.zeros((chunks, c))
    squares = np.zeros((chunks, c))
    step = (m + chunks - 1) // chunks
    for t in prange(chunks):
        s = np.zeros(c)
        q = np.zeros(c)
        for i in range(t * step, min(m, (t + 1) * step)):
            for j in range(c):
                d = _load(y, i, j) - shift[j]
                s[j] += d
                q[j] += d * d
        sums[t] = s
        squares[t] = q
    return shift, sums.sum(axis=0), squares.sum(axis=0)


@njit(parallel=True, cache=True)
def stats_max(y, sign, k, chunks):
    """``y [G*k, C]`` read once: the :func:`stats` triple and, per group of ``k`` rows, the first row index (0..k-1)
    of the maximum of ``sign * y`` per column and ``y`` there: ``(shift, sums, squares, best [G, C], arg [G, C])``."""
    m, c = y.shape
    g = m // k
    shift = np.empty(c)
    for j in range(c):
        shift[j] = _load(y, 0, j)
    sums = np.zeros((chunks, c))
    squares = np.zeros((chunks, c))
    best = np.empty((g, c), np.float32)
    arg = np.zeros((g, c), np.int32)
    step = (g + chunks - 1) // chunks
    for t in prange(chunks):
        s = np.zeros(c)
        q = np.zeros(c)
        top = np.empty(c, np.float32)
        for grp in range(t * step, min(g, (t + 1) * step)):
            top[:] = -np.inf
            for r in range(k):
                i = grp * k + r
                for j in range(c):
                    v = _load(y, i, j)
                    d = v - shift[j]
                    s[j] += d
                    q[j] += d * d
                    sv = v * sign[j]
                    if sv > top[j]:
                        top[j] = sv
                        arg[grp, j] = r
            for j in range(c):
                best[grp, j] = top[j] * sign[j]
        sums[t] = s
        squares[t] = q
    return shift, sums.sum(axis=0), squares.sum(axis=0), best, arg


@njit(parallel=True, cache=True)
def affine_relu(y, a, b, out, chunks):
    """``out = max(a * y + b, 0)`` per column, ``y``, ``out`` ``[M, C]``."""
    m, c = y.shape
    step = (m + chunks - 1) // chunks
    for t in prange(chunks):
        for i in range(t * step, min(m, (t + 1) * step)):
            for j in range(c):
                _store(out, i, j, max(_load(y, i, j) * a[j] + b[j], np.float32(0.0)))


@njit(parallel=True, cache=True)
def relu_grad_sums(y, dz, a, b, mean, chunks):
    """Per column, over the rows where ``a * y + b > 0``: ``sum(dz)`` and ``sum(dz * (y - mean))`` in float64."""
    m, c = y.shape
    sums = np.zeros((chunks, c))
    moments = np.zeros((chunks, c))
    step = (m + chunks - 1) // chunks
    for t in prange(chunks):
        s = np.zeros(c)
        q = np.zeros(c)
        for i in range(t * step, min(m, (t + 1) * step)):
            for j in range(c):
                v = _load(y, i, j)
                g = _load(dz, i, j) if v * a[j] + b[j] > 0 else np.float32(0.0)
                s[j] += g
                q[j] += g * (v - mean[j])
        sums[t] = s
        moments[t] = q
    return sums.sum(axis=0), moments.sum(axis=0)


@njit(parallel=True, cache=True)
def bn_relu_grad(y, dz, a, b, mean, k1, k2, out, chunks):
    """``out = a * g - k1 - k2 * (y - mean)``, ``g = dz`` where ``a * y + b > 0``, else 0."""
    m, c = y.shape
    step = (m + chunks - 1) // chunks
    for t in prange(chunks):
        for i in range(t * step, min(m, (t + 1) * step)):
            for j in range(c):
                v = _load(y, i, j)
                g = _load(dz, i, j) if v * a[j] + b[j] > 0 else np.float32(0.0)
                _store(out, i, j, a[j] * g - k1[j] - k2[j] * (v - mean[j]))


@njit(parallel=True, cache=True)
def bn_max_grad(y, arg, gp, k, mean, k1, k2, out, chunks):
    """``out [G*k, C] = -k1 - k2 * (y - mean)``, plus ``gp [G, C]`` at each group's selected row ``arg``."""
    m, c = y.shape
    g = m // k
    step = (g + chunks - 1) // chunks
    for t in prange(chunks):
        for grp in range(t * step, min(g, (t + 1) * step)):
            for r in range(k):
                i = grp * k + r
                for j in range(c):
                    v = -k1[j] - k2[j] * (_load(y, i, j) - mean[j])
                    if arg[grp, j] == r:
                        v += gp[grp, j]
                    _store(out, i, j, v)


@njit(parallel=True, cache=True)
def max_grad_sparse(x, w, arg, gp, k, shift, dx, chunks):
    """The pooled gradient through a ``Linear``: ``shift [C_in]`` added to every row of ``dx``, then for each group
    ``g`` and output channel ``c`` with selected row ``i = g*k + arg[g, c]``, ``dx[i] += gp[g, c] * w[c]`` (in place;
    groups own disjoint rows, each group's read while in cache) and, returned, the weight gradient
    ``sum_g gp[g, c] * x[i]`` as ``[C, C_in]`` float64, summed over each task's groups in float32 (as a float32
    matrix product sums ``dy^T x`` over its rows) and over the tasks in float64.  ``x``, ``dx`` ``[G*k, C_in]``
    float32."""
    g, c = arg.shape
    cin = x.shape[1]
    parts = np.zeros((chunks, c, cin), np.float32)
    step = (g + chunks - 1) // chunks
    for t in prange(chunks):
        part = parts[t]
        for grp in range(t * step, min(g, (t + 1) * step)):
            for r in range(grp * k, (grp + 1) * k):
                row = dx[r]
                for q in range(cin):
                    row[q] += shift[q]
            for j in range(c):
                i = grp * k + arg[grp, j]
                coef = gp[grp, j]
                dxi, xi, wj, pj = dx[i], x[i], w[j], part[j]  # [C_in] rows: one vector loop each
                for q in range(cin):
                    dxi[q] += coef * wj[q]
                    pj[q] += coef * xi[q]
    total = np.zeros((c, cin))
    for t in range(chunks):
        total += parts[t]
    return total


@njit(parallel=True, cache=True)
def pair_stats(points, idx, centres, chunks):
    """:func:`stats` of the pair rows ``points[b, idx[b, s, r]] - centres[b, s]`` (``points [B, N, C]``,
    ``idx [B, S, k]``, ``centres [B, S, C]``) without forming them; the shift is the first centre."""
    nb, ns, k = idx.shape
    c = points.shape[2]
    shift = np.empty(c)
    for j in range(c):
        shift[j] = _load3(points, 0, idx[0, 0, 0], j) - _load3(centres, 0, 0, j)
    sums = np.zeros((chunks, c))
    squares = np.zeros((chunks, c))
    groups = nb * ns
    step = (groups + chunks - 1) // chunks
    for t in prange(chunks):
        s = np.zeros(c)
        q = np.zeros(c)
        for grp in range(t * step, min(groups, (t + 1) * step)):
            b, ctr = grp // ns, grp % ns
            for r in range(k):
                i = idx[b, ctr, r]
                for j in range(c):
                    d = (_load3(points, b, i, j) - _load3(centres, b, ctr, j)) - shift[j]
                    s[j] += d
                    q[j] += d * d
        sums[t] = s
        squares[t] = q
    return shift, sums.sum(axis=0), squares.sum(axis=0)


@njit(parallel=True, cache=True)
def pair_affine_relu(points, idx, centres, a, b, out, chunks):
    """``out [B*S*k, C] = max(a * (points[b, idx] - centres[b, s]) + b, 0)``."""
    nb, ns, k = idx.shape
    c = points.shape[2]
    groups = nb * ns
    step = (groups + chunks - 1) // chunks
    for t in prange(chunks):
        for grp in range(t * step, min(groups, (t + 1) * step)):
            bb, ctr = grp // ns, grp % ns
            for r in range(k):
                i = idx[bb, ctr, r]
                row = grp * k + r
                for j in range(c):
                    v = _load3(points, bb, i, j) - _load3(centres, bb, ctr, j)
                    _store(out, row, j, max(v * a[j] + b[j], np.float32(0.0)))


@njit(parallel=True, cache=True)
def pair_relu_grad_sums(points, idx, centres, dz, a, b, mean, chunks):
    """:func:`relu_grad_sums` over the pair rows, recomputed from ``points`` and ``centres``."""
    nb, ns, k = idx.shape
    c = points.shape[2]
    sums = np.zeros((chunks, c))
    moments = np.zeros((chunks, c))
    groups = nb * ns
    step = (groups + chunks - 1) // chunks
    for t in prange(chunks):
        s = np.zeros(c)
        q = np.zeros(c)
        for grp in range(t * step, min(groups, (t + 1) * step)):
            bb, ctr = grp // ns, grp % ns
            for r in range(k):
                i = idx[bb, ctr, r]
                row = grp * k + r
                for j in range(c):
                    v = _load3(points, bb, i, j) - _load3(centres, bb, ctr, j)
                    g = _load(dz, row, j) if v * a[j] + b[j] > 0 else np.float32(0.0)
                    s[j] += g
                    q[j] += g * (v - mean[j])
        sums[t] = s
        moments[t] = q
    return sums.sum(axis=0), moments.sum(axis=0)


@njit(parallel=True, cache=True)
def pair_bn_relu_grad(points, idx, centres, dz, a, b, mean, k1, k2, dpoints, dcentres):
    """The pair rows' gradient ``dy = a * g - k1 - k2 * (v - mean)`` (``g = dz`` where ``a v + b > 0``) added into
    ``dpoints[b, idx]`` and subtracted from ``dcentres[b, s]`` (float32 ``[B, N, C]``, ``[B, S, C]``, zeroed by the
    caller); parallel over clouds, whose rows of ``dpoints`` are their own."""
    nb, ns, k = idx.shape
    c = points.shape[2]
    for bb in prange(nb):
        for ctr in range(ns):
            grp = bb * ns + ctr
            for r in range(k):
                i = idx[bb, ctr, r]
                row = grp * k + r
                for j in range(c):
                    v = _load3(points, bb, i, j) - _load3(centres, bb, ctr, j)
                    g = _load(dz, row, j) if v * a[j] + b[j] > 0 else np.float32(0.0)
                    dy = a[j] * g - k1[j] - k2[j] * (v - mean[j])
                    dpoints[bb, i, j] += dy
                    dcentres[bb, ctr, j] -= dy
