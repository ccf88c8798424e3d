"""Numba kernels of :mod:`dlparts.layers.infer` over channels-last arrays: float32, or bfloat16 as its uint16 bits
(the element access of :mod:`dlparts.layers._fused_kernels`).  Kept apart from the torch code so that editing that
code does not invalidate numba's on-disk cache of these."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dlparts.layers._fused_kernels import _load, _store


@njit(parallel=True, cache=True)
def pair_relu(points, idx, centres, start, out):
    """``out[(g - start) k + r] = relu(points[b N + idx[b, s, r]] - centres[g])`` for the groups ``g = b S + s`` from
    ``start`` on, ``points [B*N, C]``, ``idx [B, S, k]``, ``centres [B*S, C]``, ``out [G*k, C]``: the gather, the
    subtraction and the ReLU of a set abstraction's first layer in one pass.  Rounding to bfloat16 keeps signs, so
    rounding after the ReLU gives torch's values (which round the difference first)."""
    b_, s_, k_ = idx.shape
    n = points.shape[0] // b_
    c = points.shape[1]
    for t in prange(out.shape[0] // k_):
        g = start + t
        b = g // s_
        s = g - b * s_
        for r in range(k_):
            row = b * n + idx[b, s, r]
            o = t * k_ + r
            for j in range(c):
                v = _load(points, row, j) - _load(centres, g, j)
                if v < 0:  # NaN stays, as torch's ReLU keeps it
                    v = np.float32(0.0)
                _store(out, o, j, v)


@njit
def _weight(xyz, coarse_xyz, r, row, eps):
    """``1 / (d^2 + eps)`` in float32 for ``xyz[r]`` and ``coarse_xyz[row]``, rounded as
    :func:`dlparts.ops.three_interpolate` rounds it (``dx*dx + dy*dy + dz*dz``, then ``+ eps``)."""
    dx = xyz[r, 0] - coarse_xyz[row, 0]
    dy = xyz[r, 1] - coarse_xyz[row, 1]
    dz = xyz[r, 2] - coarse_xyz[row, 2]
    return np.float32(1.0) / (dx * dx + dy * dy + dz * dz + eps)


@njit(parallel=True, cache=True)
def interpolate_relu(xyz, coarse_xyz, idx, eps, proj, bias, out, accumulate):
    """``out[b n + i] = relu([out[b n + i] +] bias + sum_j w_j proj[b m + idx[b, i, j]])`` with PointNet++'s
    inverse-distance weights ``w_j = (1 / (d_j^2 + eps)) / sum_j (...)``, ``d_j`` from ``xyz [B*n, 3]`` to
    ``coarse_xyz [B*m, 3]`` (float32).  ``idx [B, n, k]`` (``1 <= k <= 3``), ``eps`` float32, ``proj [B*m, C]``,
    ``bias [C]`` float32, ``out [B*n, C]``; ``accumulate``: add to ``out``'s values rather than overwrite them."""
    b_, n_, k_ = idx.shape
    m = coarse_xyz.shape[0] // b_
    c = proj.shape[1]
    for r in prange(b_ * n_):
        b = r // n_
        i = r - b * n_
        r0 = b * m + idx[b, i, 0]
        r1 = b * m + idx[b, i, min(1, k_ - 1)]
        r2 = b * m + idx[b, i, min(2, k_ - 1)]
        w0 = _weight(xyz, coarse_xyz, r, r0, eps)
        w1 = _weight(xyz, coarse_xyz, r, r1, eps) if k_ > 1 else np.float32(0.0)
        w2 = _weight(xyz, coarse_xyz, r, r2, eps) if k_ > 2 else np.float32(0.0)
        total = w0 + w1 + w2
        w0, w1, w2 = w0 / total, w1 / total, w2 / total
        for ch in range(c):
            v = bias[ch] + w0 * _load(proj, r0, ch) + w1 * _load(proj, r1, ch) + w2 * _load(proj, r2, ch)
            if accumulate:
                v += _load(out, r, ch)
            if v < 0:
                v = np.float32(0.0)
            _store(out, r, ch, v)
