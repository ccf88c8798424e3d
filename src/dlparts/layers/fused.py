"""Fused batch norm + ReLU (+ max pool) for training shared MLPs on the CPU: fewer passes over large activations.

A PointNet++ step spends most of its non-matmul time streaming ``[B, S, k, C]`` activations through memory: batch
norm reads them for its statistics, again to normalize, ReLU once more, the max pool once more, and their backward
passes several times over.  Three fused operations, numba kernels over channels-last ``[M, C]`` tensors (float32 or
bfloat16, statistics accumulated in float64), cut that traffic:

* :func:`bn_relu` -- ``relu(batch_norm(y))`` with batch statistics: one pass for the statistics and one to
  normalize forward; backward one pass for the two channel sums and one to write the input gradient.
* :func:`pair_bn_relu` -- :func:`bn_relu` over the ``[B*S*k, C]`` rows ``points[b, idx] - centres[b, s]`` of a
  set abstraction's first layer (applied per point, see :mod:`dlparts.layers.pointnet2`), gathered by the kernels
  as they go instead of formed; backward adds the rows' gradients straight into the points and centres.
* :func:`bn_relu_max` -- ``amax(relu(batch_norm(y)), dim=1)`` for ``y [G, k, C]``.  Per channel, batch norm with
  ``gamma >= 0`` and ReLU are non-decreasing (with ``gamma < 0``, non-increasing), so the maximum over ``k`` of the
  output is the output of the maximum (the minimum) of ``y``: one pass finds the statistics and, per group, the
  arg-max of ``sign(gamma) y``; normalization and ReLU then run on ``[G, C]``, ``k`` times fewer values.  Backward
  writes the input gradient in one pass: the batch statistics give every element a term affine in ``y``, the
  selected elements also the pooled gradient.  Exact algebra: values equal to the plain order up to float rounding.
  Where ``y`` ties within a group (padding repeats a neighbour) the whole gradient goes to the first of the tied
  elements, as the authors' TensorFlow max pool does, instead of being split; the gradients of the weights and of
  the points before grouping are the same.

:func:`bn_relu` and :func:`bn_relu_max` take the ``Linear`` before the batch norm too (matmul by torch, in the CPU
autocast dtype when autocast is on), so that its bias gradient comes from the channel sums already at hand instead of
one more pass over ``dy``, and its bias, which the batch mean cancels, is added to the running mean only.

The plain modules (``Linear -> BatchNorm -> ReLU -> amax``) are the reference, tested equal (values, gradients,
running statistics); :func:`applies` says when the fused path can be taken (training, CPU, float32 or bfloat16),
:mod:`dlparts.layers.route` takes it for the shared MLPs, and :func:`disabled` turns it off for a block of code, e.g.
to compare.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import torch
from torch import nn

from dlparts.layers import _fused_kernels as kernels

_ENABLED = [True]


@contextlib.contextmanager
def disabled():
    """Run the plain modules instead of the fused kernels (and the inference paths of
    :func:`dlparts.layers.route.inference`) inside this block."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def enabled() -> bool:
    """Whether the fast paths are on (outside every :func:`disabled` block)."""
    return _ENABLED[-1]


def applies(x: torch.Tensor, bn: nn.BatchNorm1d) -> bool:
    """Whether the fused path computes ``relu(bn(x))`` or ``relu(bn(linear(x)))`` for this call: ``bn`` in training
    mode with affine parameters and running statistics, ``x`` a contiguous ``[M, C]`` float32/bfloat16 CPU tensor
    with ``M > 1``, CPU autocast off or to bfloat16, not tracing."""
    return (enabled() and bn.training and bn.affine and bn.track_running_stats and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16) and x.dim() == 2 and x.shape[0] > 1
            and x.is_contiguous() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
            and (not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") == torch.bfloat16))


def _array(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a contiguous CPU tensor; bfloat16 as uint16 bits."""
    return t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()


def _chunks() -> int:
    """Parallel tasks per kernel call, after giving numba as many threads as torch has (``torch.set_num_threads``
    then governs both, as it does in DDP workers and in the tests)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return 4 * numba.get_num_threads()


# ----------------------------------------------------------------------------------------------- autograd functions
def _moments(shift: np.ndarray, sums: np.ndarray, squares: np.ndarray, m: int):
    """Mean and biased variance (float64 tensors) from shifted sums."""
    mean_shifted = sums / m
    var = np.maximum(squares / m - mean_shifted**2, 0.0)
    return torch.from_numpy(shift + mean_shifted), torch.from_numpy(var)


def _affine(mean: torch.Tensor, var: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
    """Batch norm as ``a y + b`` per channel: ``(invstd, a, b)``, ``a`` and ``b`` in float32 for the kernels."""
    invstd = (var + eps).rsqrt()
    a = gamma.detach().double() * invstd
    return invstd, a.float(), (beta.detach().double() - mean * a).float()


def _coefficients(sg: torch.Tensor, sgx: torch.Tensor, a32: torch.Tensor, invstd: torch.Tensor, m: int):
    """``dy = a g - k1 - k2 (y - mean)``, batch norm's backward, from the channel sums ``sg = sum(g)`` and
    ``sgx = sum(g (y - mean))``: ``(k1, k2)`` in float32."""
    a = a32.double()
    return (a * sg / m).float(), (a * invstd**2 * sgx / m).float()


def _update_running(bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
    """What ``F.batch_norm`` does to the running statistics in training (unbiased variance, momentum or, with
    ``momentum=None``, the cumulative average)."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
        bn.running_var.mul_(1 - momentum).add_((var * m / (m - 1)).to(bn.running_var.dtype), alpha=momentum)


def _linear(x: torch.Tensor, weight: torch.Tensor | None):
    """``(x, W, y = x W^T)`` with ``x`` and ``W`` cast to the CPU autocast dtype when autocast is on, as
    ``nn.Linear`` would run; without ``weight``, ``y`` is ``x``.

    The ``Linear``'s bias is left out: batch norm subtracts the batch mean, which takes the bias with it, so only the
    running mean sees it (:func:`_with_bias`).  Adding it would cost a pass over ``y`` (``addmm`` first copies the
    broadcast bias into its ``[M, C]`` output), a fifth of a PointNet++ training step."""
    if weight is None:
        return x, None, x
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    xc, wc = x.to(dtype), weight.to(dtype)
    return xc, wc, xc @ wc.t()  # [M, C]


def _with_bias(mean: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The batch mean of ``x W^T + b`` from that of ``x W^T`` (float64), for the running statistics."""
    return mean if bias is None else mean + bias.detach().double()


def _linear_grads(ctx, x: torch.Tensor, w: torch.Tensor | None, dy: torch.Tensor, dbias: torch.Tensor):
    """Gradients of ``x``, ``W`` and ``b`` from ``dy [M, C]`` (``dbias`` already summed) for :func:`_linear`."""
    if w is None:
        return dy, None, None
    dx = dy @ w if ctx.needs_input_grad[0] else None  # [M, C_in]
    dw = dy.t() @ x if ctx.needs_input_grad[1] else None  # [C, C_in]
    return _cast_grads(ctx, dx, dw, dbias)


def _cast_grads(ctx, dx, dw, dbias):
    """The gradients in the dtypes of the inputs they belong to (autocast computed them in its own)."""
    x_dtype, w_dtype, has_bias = ctx.dtypes
    return (dx.to(x_dtype) if dx is not None else None, dw.to(w_dtype) if dw is not None else None,
            dbias.to(w_dtype) if has_bias else None)


def _save(ctx, x, weight, bias, xc, wc, y) -> None:
    """Keep ``(xc, wc, y)`` for backward (``y`` may be ``None``) and the dtypes of the inputs."""
    ctx.save_for_backward(xc, wc, y)
    ctx.dtypes = (x.dtype, weight.dtype if weight is not None else None, bias is not None)


class _BNReLU(torch.autograd.Function):
    """``relu(bn(x W^T + b))`` (or ``relu(bn(x))`` without ``W``) with batch statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, eps):
        xc, wc, y = _linear(x, weight)
        m = y.shape[0]
        arr = _array(y)
        mean, var = _moments(*kernels.stats(arr, _chunks()), m)
        invstd, a32, b32 = _affine(mean, var, gamma, beta, eps)
        out = torch.empty_like(y)
        kernels.affine_relu(arr, a32.numpy(), b32.numpy(), _array(out), _chunks())
        _save(ctx, x, weight, bias, xc, wc, y)
        ctx.stats = (mean, invstd, a32, b32)
        running_mean = _with_bias(mean, bias)
        ctx.mark_non_differentiable(running_mean, var)
        return out, running_mean, var

    @staticmethod
    def backward(ctx, dz, _dmean, _dvar):
        xc, wc, y = ctx.saved_tensors
        mean, invstd, a32, b32 = ctx.stats
        m = y.shape[0]
        dz = dz.to(y.dtype).contiguous()
        mean32 = mean.float().numpy()
        sums, moments = kernels.relu_grad_sums(_array(y), _array(dz), a32.numpy(), b32.numpy(), mean32, _chunks())
        sg, sgx = torch.from_numpy(sums), torch.from_numpy(moments)
        k1, k2 = _coefficients(sg, sgx, a32, invstd, m)
        dy = torch.empty_like(y)
        kernels.bn_relu_grad(_array(y), _array(dz), a32.numpy(), b32.numpy(), mean32, k1.numpy(), k2.numpy(),
                             _array(dy), _chunks())
        dbias = a32.double() * sg - m * k1.double()  # the column sums of dy: sum(y - mean) is 0
        return (*_linear_grads(ctx, xc, wc, dy, dbias), (sgx * invstd).float(), sg.float(), None)


class _BNReLUMax(torch.autograd.Function):
    """``amax(relu(bn(x W^T + b)).view(G, k, C), dim=1)`` (or of ``x`` without ``W``) with batch statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, eps, k):
        xc, wc, y = _linear(x, weight)
        m = y.shape[0]
        sign = torch.where(gamma.detach() < 0, -1.0, 1.0).float()
        shift, sums, squares, best, arg = kernels.stats_max(_array(y), sign.numpy(), k, _chunks())
        mean, var = _moments(shift, sums, squares, m)
        invstd, a, b = _affine(mean, var, gamma, beta, eps)
        best = torch.from_numpy(best)  # [G, C]: y at the selected rows
        pre = best * a + b  # [G, C]
        _save(ctx, x, weight, bias, xc, wc, None if _gram_backward(xc, wc) else y)  # that one needs x and W only
        ctx.stats = (mean, invstd, a, b, best, pre, torch.from_numpy(arg), k, m)
        running_mean = _with_bias(mean, bias)
        ctx.mark_non_differentiable(running_mean, var)
        return pre.clamp_min(0).to(y.dtype), running_mean, var

    @staticmethod
    def backward(ctx, dz, _dmean, _dvar):
        xc, wc, y = ctx.saved_tensors
        mean, invstd, a, b, best, pre, arg, k, m = ctx.stats
        dz = dz.float().contiguous()  # [G, C]
        mean32 = mean.float().numpy()
        sums, moments = kernels.relu_grad_sums(best.numpy(), dz.numpy(), a.numpy(), b.numpy(), mean32, _chunks())
        sg, sgx = torch.from_numpy(sums), torch.from_numpy(moments)  # one pass, not a chain of float64 copies
        k1, k2 = _coefficients(sg, sgx, a, invstd, m)
        gp = torch.where(pre > 0, dz * a, 0.0)  # [G, C]
        dbias = a.double() * sg - m * k1.double()  # the column sums of dy: sum(y - mean) is 0
        if _gram_backward(xc, wc):
            grads = _cast_grads(ctx, *_max_linear_grads(xc, wc, arg, gp, k, k1.double(), k2.double()), dbias)
        else:
            dy = torch.empty_like(y)
            kernels.bn_max_grad(_array(y), arg.numpy(), gp.numpy(), k, mean32, k1.numpy(),
                                k2.numpy(), _array(dy), _chunks())
            grads = _linear_grads(ctx, xc, wc, dy, dbias)
        return (*grads, (sgx * invstd).float(), sg.float(), None, None)


class _PairBNReLU(torch.autograd.Function):
    """``relu(bn(points[b, idx[b, s, r]] - centres[b, s]))`` over the ``[B*S*k, C]`` pair rows, which are never
    formed: the kernels gather each row as they go, and backward adds its gradient into ``points`` and ``centres``."""

    @staticmethod
    def forward(ctx, points, idx, centres, gamma, beta, eps):
        arrays = (_array(points), idx.numpy(), _array(centres))
        m = idx.numel()
        mean, var = _moments(*kernels.pair_stats(*arrays, _chunks()), m)
        invstd, a32, b32 = _affine(mean, var, gamma, beta, eps)
        out = points.new_empty((m, points.shape[-1]))  # [B*S*k, C]
        kernels.pair_affine_relu(*arrays, a32.numpy(), b32.numpy(), _array(out), _chunks())
        ctx.save_for_backward(points, idx, centres)
        ctx.stats = (mean, invstd, a32, b32)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, dz, _dmean, _dvar):
        points, idx, centres = ctx.saved_tensors
        mean, invstd, a32, b32 = ctx.stats
        m = idx.numel()
        arrays = (_array(points), idx.numpy(), _array(centres), _array(dz.to(points.dtype).contiguous()))
        mean32 = mean.float().numpy()
        sums, moments = kernels.pair_relu_grad_sums(*arrays, a32.numpy(), b32.numpy(), mean32, _chunks())
        sg, sgx = torch.from_numpy(sums), torch.from_numpy(moments)
        k1, k2 = _coefficients(sg, sgx, a32, invstd, m)
        dpoints = torch.zeros(points.shape, dtype=torch.float32)  # [B, N, C]
        dcentres = torch.zeros(centres.shape, dtype=torch.float32)  # [B, S, C]
        _chunks()  # numba's thread count
        kernels.pair_bn_relu_grad(*arrays, a32.numpy(), b32.numpy(), mean32, k1.numpy(), k2.numpy(),
                                  dpoints.numpy(), dcentres.numpy())
        return (dpoints.to(points.dtype), None, dcentres.to(centres.dtype), (sgx * invstd).float(), sg.float(),
                None)


def _gram_backward(x: torch.Tensor, w: torch.Tensor | None) -> bool:
    """Whether :func:`_max_linear_grads` gives the gradients: a ``Linear`` in float32 (in bfloat16, ``x^T x``
    would come back rounded to bfloat16, and the dense products are cheap there anyway)."""
    return w is not None and x.dtype == torch.float32


def _max_linear_grads(x: torch.Tensor, w: torch.Tensor, arg: torch.Tensor, gp: torch.Tensor, k: int,
                      k1: torch.Tensor, k2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``dx = dy W`` and ``dW = dy^T x`` for ``y = x W^T + b`` without forming ``dy [M, C]``, in float32.

    Here ``dy = -k1 - k2 (y - mean) + (gp at the selected rows)``, and ``y - mean = (x - mean(x)) W^T``, so
    ``dx = -(x - mean(x)) W^T diag(k2) W - k1 W + sparse`` and ``dW = -k1 sum(x)^T - diag(k2) W Cov(x) + sparse``
    with ``Cov(x) = (x - mean(x))^T (x - mean(x))``: matrices of ``C_in x C_in`` in place of ``C x C_in`` products
    over all ``M`` rows (``C = 2 C_in`` at the paper's last layers), plus ``k`` times fewer terms for the pooled
    part.  ``x [M, C_in]``, ``w [C, C_in]``, ``arg``, ``gp [G, C]``, ``k1``, ``k2 [C]`` float64."""
    m = x.shape[0]
    w64 = w.detach().double()
    sx = x.sum(0).double()  # [C_in]
    mx = sx / m
    cov = _covariance(x, mx)  # [C_in, C_in]
    q = w64.t() @ (k2[:, None] * w64)  # [C_in, C_in]
    shift = mx @ q - k1 @ w64  # [C_in]
    dx = x @ (-q).float()  # [M, C_in]; not addmm, which would first copy the broadcast shift into all M rows
    sparse_dw = kernels.max_grad_sparse(x.numpy(), w.detach().float().numpy(), arg.numpy(), gp.numpy(), k,
                                        shift.float().numpy(), dx.numpy(), _chunks())
    dw = -torch.outer(k1, sx) - k2[:, None] * (w64 @ cov) + torch.from_numpy(sparse_dw)  # [C, C_in]
    return dx, dw.float()


def _covariance(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``(x - mean)^T (x - mean)`` in float64 from float32 products, ``x [M, C]``, ``mean [C]`` float64.

    It is ``x^T x - M mean mean^T``, one product and no copy of ``x``, while no column's mean is over 3 standard
    deviations (post-ReLU features sit near 0.7): past that the subtraction cancels digits of the float32 sums
    (1e-5 relative at 6, 1e-3 at 50), so ``x`` is centred first at the cost of one more pass and a copy."""
    m = x.shape[0]
    cov = (x.t() @ x).double() - m * torch.outer(mean, mean)
    if bool((m * mean.square() <= 9 * cov.diagonal()).all()):
        return cov
    xc = x - mean.float()  # [M, C]
    mc = xc.sum(0).double() / m  # [C], the rounding left in the centring
    return (xc.t() @ xc).double() - m * torch.outer(mc, mc)


def bn_relu(x: torch.Tensor, bn: nn.BatchNorm1d, linear: nn.Linear | None = None) -> torch.Tensor:
    """``relu(bn(linear(x)))`` (``relu(bn(x))`` without ``linear``) for ``x [M, C]`` in training mode (see
    :func:`applies`), running statistics updated."""
    weight, bias = (linear.weight, linear.bias) if linear is not None else (None, None)
    out, mean, var = _BNReLU.apply(x, weight, bias, bn.weight, bn.bias, bn.eps)
    _update_running(bn, mean, var, x.shape[0])
    return out


def bn_relu_max(x: torch.Tensor, bn: nn.BatchNorm1d, k: int, linear: nn.Linear | None = None) -> torch.Tensor:
    """``amax(relu(bn(linear(x))).view(G, k, C), dim=1)`` for ``x [G*k, C]`` in training mode -> ``[G, C]``."""
    weight, bias = (linear.weight, linear.bias) if linear is not None else (None, None)
    out, mean, var = _BNReLUMax.apply(x, weight, bias, bn.weight, bn.bias, bn.eps, k)
    _update_running(bn, mean, var, x.shape[0])
    return out


def pair_bn_relu(points: torch.Tensor, idx: torch.Tensor, centres: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """``relu(bn(points[b, idx] - centres[b, s]))`` -> ``[B*S*k, C]`` in training mode, for ``points [B, N, C]``,
    ``idx [B, S, k]`` int64 and ``centres [B, S, C]`` contiguous CPU tensors (:func:`applies` on ``points`` viewed as
    ``[B*N, C]``): the first layer of a set abstraction applied per point (see :mod:`dlparts.layers.pointnet2`)."""
    out, mean, var = _PairBNReLU.apply(points, idx, centres.contiguous(), bn.weight, bn.bias, bn.eps)
    _update_running(bn, mean, var, idx.numel())
    return out
