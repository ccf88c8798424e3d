"""Fused batch norm + ReLU (+ max pool) for training shared MLPs on the CPU: fewer passes over large activations.

A PointNet++ step spends most of its non-matmul time streaming ``[B, S, k, C]`` activations through memory: batch
norm reads them for its statistics, again to normalize, ReLU once more, the max pool once more, and their backward
passes several times over.  Two fused operations, numba kernels over channels-last ``[M, C]`` tensors (float32 or
bfloat16, statistics accumulated in float64), cut that traffic:

* :func:`bn_relu` -- ``relu(batch_norm(y))`` with batch statistics: one pass for the statistics and one to
  normalize forward; backward one pass for the two channel sums and one to write the input gradient.
* :func:`bn_relu_max` -- ``amax(relu(batch_norm(y)), dim=1)`` for ``y [G, k, C]``.  Per channel, batch norm with
  ``gamma >= 0`` and ReLU are non-decreasing (with ``gamma < 0``, non-increasing), so the maximum over ``k`` of the
  output is the output of the maximum (the minimum) of ``y``: one pass finds the statistics and, per group, the
  arg-max of ``sign(gamma) y``; normalization and ReLU then run on ``[G, C]``, ``k`` times fewer values.  Backward
  writes the input gradient in one pass: the batch statistics give every element a term affine in ``y``, the
  selected elements also the pooled gradient.  Exact algebra: values equal to the plain order up to float rounding.
  Where ``y`` ties within a group (padding repeats a neighbour) the whole gradient goes to the first of the tied
  elements, as the authors' TensorFlow max pool does, instead of being split; the gradients of the weights and of
  the points before grouping are the same.

The plain modules (``Linear -> BatchNorm -> ReLU -> amax``) are the reference, tested equal (values, gradients,
running statistics); :func:`applies` says when the fused path is taken (training, CPU, float32 or bfloat16) and
:func:`disabled` turns it off for a block of code, e.g. to compare.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload
from torch import nn

from dlparts.ops import cpu as _numba_setup  # noqa: F401  (numba's threading layer, set once for the package)

_ENABLED = [True]


@contextlib.contextmanager
def disabled():
    """Run the plain modules instead of the fused kernels inside this block."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def applies(y: torch.Tensor, bn: nn.BatchNorm1d) -> bool:
    """Whether the fused path computes ``relu(bn(y))`` for this call: ``bn`` in training mode with affine parameters
    and running statistics, ``y`` a contiguous ``[M, C]`` float32/bfloat16 CPU tensor with ``M > 1``, not tracing."""
    return (_ENABLED[-1] and bn.training and bn.affine and bn.track_running_stats and y.device.type == "cpu"
            and y.dtype in (torch.float32, torch.bfloat16) and y.dim() == 2 and y.shape[0] > 1
            and y.is_contiguous() and not torch.jit.is_scripting() and not torch.compiler.is_compiling())


# ------------------------------------------------------------------------------ element access, float32 or bfloat16
def _load(a, i, j):
    """``a[i, j]`` as float32; bfloat16 arrays come as their uint16 bits."""


def _store(a, i, j, v):
    """``a[i, j] = v`` from float32; to bfloat16 bits with round-to-nearest-even, as torch converts."""


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
            else:
                a[i, j] = np.uint16(np.uint32(u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
        return store_bf16

    def store_f32(a, i, j, v):
        a[i, j] = v
    return store_f32


def _array(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a contiguous CPU tensor; bfloat16 as uint16 bits."""
    return t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()


def _chunks() -> int:
    return 4 * numba.get_num_threads()


# ---------------------------------------------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True)
def _stats(y, chunks):
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
def _stats_max(y, sign, k, chunks):
    """``y [G*k, C]`` read once: the :func:`_stats` triple and, per group of ``k`` rows, the first row index (0..k-1)
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
def _affine_relu(y, a, b, out, chunks):
    """``out = max(a * y + b, 0)`` per column, ``y``, ``out`` ``[M, C]``."""
    m, c = y.shape
    step = (m + chunks - 1) // chunks
    for t in prange(chunks):
        for i in range(t * step, min(m, (t + 1) * step)):
            for j in range(c):
                _store(out, i, j, max(_load(y, i, j) * a[j] + b[j], np.float32(0.0)))


@njit(parallel=True, cache=True)
def _relu_grad_sums(y, dz, a, b, mean, chunks):
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
def _bn_relu_grad(y, dz, a, b, mean, k1, k2, out, chunks):
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
def _bn_max_grad(y, arg, gp, k, mean, k1, k2, out, chunks):
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


# ----------------------------------------------------------------------------------------------- autograd functions
def _moments(shift: np.ndarray, sums: np.ndarray, squares: np.ndarray, m: int):
    """Mean and biased variance (float64 tensors) from shifted sums."""
    mean_shifted = sums / m
    var = np.maximum(squares / m - mean_shifted**2, 0.0)
    return torch.from_numpy(shift + mean_shifted), torch.from_numpy(var)


def _update_running(bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
    """What ``F.batch_norm`` does to the running statistics in training (unbiased variance, momentum or, with
    ``momentum=None``, the cumulative average)."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
        bn.running_var.mul_(1 - momentum).add_((var * m / (m - 1)).to(bn.running_var.dtype), alpha=momentum)


class _BNReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, gamma, beta, eps):
        m = y.shape[0]
        arr = _array(y)
        mean, var = _moments(*_stats(arr, _chunks()), m)
        invstd = (var + eps).rsqrt()
        a = gamma.detach().double() * invstd
        b = beta.detach().double() - mean * a
        a32, b32 = a.float(), b.float()
        out = torch.empty_like(y)
        _affine_relu(arr, a32.numpy(), b32.numpy(), _array(out), _chunks())
        ctx.save_for_backward(y)
        ctx.stats = (mean, invstd, a32, b32)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, dz, _dmean, _dvar):
        (y,) = ctx.saved_tensors
        mean, invstd, a32, b32 = ctx.stats
        m = y.shape[0]
        dz = dz.to(y.dtype).contiguous()
        mean32 = mean.float().numpy()
        sums, moments = _relu_grad_sums(_array(y), _array(dz), a32.numpy(), b32.numpy(), mean32, _chunks())
        sg, sgx = torch.from_numpy(sums), torch.from_numpy(moments)
        a = a32.double()
        k1, k2 = (a * sg / m).float(), (a * invstd**2 * sgx / m).float()
        dy = torch.empty_like(y)
        _bn_relu_grad(_array(y), _array(dz), a32.numpy(), b32.numpy(), mean32, k1.numpy(), k2.numpy(), _array(dy),
                      _chunks())
        return dy, (sgx * invstd).float(), sg.float(), None


class _BNReLUMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, gamma, beta, eps, k):
        m = y.shape[0]
        sign = torch.where(gamma.detach() < 0, -1.0, 1.0).float()
        shift, sums, squares, best, arg = _stats_max(_array(y), sign.numpy(), k, _chunks())
        mean, var = _moments(shift, sums, squares, m)
        invstd = (var + eps).rsqrt()
        a = (gamma.detach().double() * invstd).float()
        b = (beta.detach().double() - mean * gamma.detach().double() * invstd).float()
        best = torch.from_numpy(best)  # [G, C]: y at the selected rows
        pre = best * a + b  # [G, C]
        ctx.save_for_backward(y)
        ctx.stats = (mean, invstd, a, best, pre, torch.from_numpy(arg), k)
        ctx.mark_non_differentiable(mean, var)
        return pre.clamp_min(0).to(y.dtype), mean, var

    @staticmethod
    def backward(ctx, dz, _dmean, _dvar):
        (y,) = ctx.saved_tensors
        mean, invstd, a, best, pre, arg, k = ctx.stats
        m = y.shape[0]
        g = dz.float() * (pre > 0)  # [G, C]
        sg = g.double().sum(0)
        sgx = (g.double() * (best.double() - mean)).sum(0)
        ad = a.double()
        k1, k2 = (ad * sg / m).float(), (ad * invstd**2 * sgx / m).float()
        dy = torch.empty_like(y)
        _bn_max_grad(_array(y), arg.numpy(), (g * a).numpy(), k, mean.float().numpy(), k1.numpy(), k2.numpy(),
                     _array(dy), _chunks())
        return dy, (sgx * invstd).float(), sg.float(), None, None


def bn_relu(y: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """``relu(bn(y))`` for ``y [M, C]`` in training mode (see :func:`applies`), running statistics updated."""
    out, mean, var = _BNReLU.apply(y, bn.weight, bn.bias, bn.eps)
    _update_running(bn, mean, var, y.shape[0])
    return out


def bn_relu_max(y: torch.Tensor, bn: nn.BatchNorm1d, k: int) -> torch.Tensor:
    """``amax(relu(bn(y)).view(G, k, C), dim=1)`` for ``y [G*k, C]`` in training mode -> ``[G, C]``."""
    out, mean, var = _BNReLUMax.apply(y, bn.weight, bn.bias, bn.eps, k)
    _update_running(bn, mean, var, y.shape[0])
    return out
