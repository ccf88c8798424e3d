"""Inference paths of the shared MLPs and PointNet++ layers on the CPU: the plain modules' values up to float
rounding, with fewer passes over the large activations.  :func:`dlparts.layers.route.inference` says when a layer may
take them (evaluation without autograd on the CPU, not tracing, not inside :func:`dlparts.layers.fused.disabled`);
:func:`plan` when its modules can (every ``Linear`` followed by a ``ReLU``, batch norms folded away by
:func:`dlparts.layers.fold.fold_batch_norm`).  Exact algebra throughout:

* ``Linear -> ReLU`` as one oneDNN product with the bias and the ReLU applied as it writes its output
  (``torch.addmm`` first copies the broadcast bias into its whole output, then the ReLU is one more pass).
* The last layer before a max over ``k`` neighbours (PointNet's symmetric function): rounding is monotonic, so
  ``max_k relu(x W^T + b) = relu(max_k(x W^T) + b)``: the product without bias, the max, then bias and ReLU on
  ``k`` times fewer values.
* A set abstraction's first layer per point (:mod:`dlparts.layers.pointnet2`): the gather of the neighbours' rows,
  the subtraction of the centre's and the ReLU in one numba pass (:func:`pair_relu`), then the rest of the MLP and
  the max, a block of rows at a time (:func:`pair_mlp_max`).
* Feature propagation (PointNet++ Sec. 3.4): interpolation is linear with weights summing to 1 and the first layer
  is linear in ``[interpolated, skip]``, so ``W [interp(f), s] + b = interp(f W_f^T) + s W_s^T + b``: the coarse
  features go through ``W_f`` on the ``m`` coarse points (4x fewer rows than the ``n`` fine ones), and one numba
  pass adds the interpolated rows, the bias and the ReLU to ``s W_s^T`` (:func:`propagate`), with no concatenation.

Under CPU bfloat16 autocast the products run in bfloat16 as autocast runs ``nn.Linear``; other dtypes and autocast
to float16 keep the plain modules.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlparts import ops
from dlparts.layers import _infer_kernels as kernels
from dlparts.layers.fused import _array, _chunks

# Pair rows per block of pair_mlp_max.  Smaller blocks (65536) are faster still on idle cores, but every block costs
# a few more parallel regions, each of which waits for a descheduled thread when the cores are shared.
ROWS = 131072
EPS = ops.three_interpolate.__kwdefaults__["eps"]  # the interpolation's, which feature propagation uses


def _dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype the products run in for ``x`` (autocast's when on), or ``None`` where the plain modules run."""
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if torch.get_autocast_dtype("cpu") == torch.bfloat16 and _bf16() else None
    return x.dtype if x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _bf16()) else None


def _bf16() -> bool:
    """Whether oneDNN runs bfloat16 products on this CPU."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def plan(modules: list[nn.Module], x: torch.Tensor) -> list[nn.Linear] | None:
    """The ``Linear`` layers of ``modules`` when they are ``(Linear -> [Identity] -> ReLU [-> Dropout])*`` with
    dropout in eval mode and weights in the dtype of ``x`` (or under bfloat16 autocast), and ``x`` is float32 or
    bfloat16 on a CPU with oneDNN; else ``None``."""
    if not modules or _dtype(x) is None or not torch.backends.mkldnn.is_available():
        return None
    if any(isinstance(module, nn.Dropout) and module.training for module in modules):
        return None
    layers, i = [], 0
    while i < len(modules):
        if not isinstance(modules[i], nn.Linear) or modules[i].weight.device != x.device:
            return None
        if not torch.is_autocast_enabled("cpu") and modules[i].weight.dtype != x.dtype:
            return None
        layers.append(modules[i])
        i += 1
        while i < len(modules) and isinstance(modules[i], (nn.Identity, nn.Dropout)):
            i += 1
        if i == len(modules) or not isinstance(modules[i], nn.ReLU):
            return None
        i += 1
        while i < len(modules) and isinstance(modules[i], nn.Dropout):
            i += 1
    return layers


def linear(x: torch.Tensor, layer: nn.Linear, *, relu: bool = True, bias: bool = True) -> torch.Tensor:
    """``relu(x W^T + b)`` (without ``relu``: ``x W^T + b``; without ``bias``: no ``b``) for ``x [..., C_in]`` ->
    ``[..., C]`` in :func:`_dtype`."""
    return _product(x, layer.weight, layer.bias if bias else None, relu)


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    """``[relu](x W^T [+ b])`` in :func:`_dtype`, one oneDNN call with the bias and ReLU applied as it writes."""
    dtype = _dtype(x)
    b = bias.detach().to(dtype) if bias is not None else None
    w = weight.detach().to(dtype).contiguous()  # oneDNN falls back to a reference loop on strided weights
    return torch.ops.mkldnn._linear_pointwise(x.to(dtype).contiguous(), w, b, "relu" if relu else "none",
                                              [], "")


def mlp(x: torch.Tensor, layers: list[nn.Linear]) -> torch.Tensor:
    """``relu(... relu(x W_1^T + b_1) ...)`` for ``x [..., C]`` -> ``[..., C']``."""
    for layer in layers:
        x = linear(x, layer)
    return x


def mlp_max(x: torch.Tensor, layers: list[nn.Linear], dim: int) -> torch.Tensor:
    """``amax(mlp(x, layers), dim)``, the last layer's bias and ReLU after the max (module docstring)."""
    if not layers:
        return x.amax(dim=dim)
    h = linear(mlp(x, layers[:-1]), layers[-1], relu=False, bias=False).amax(dim=dim)
    last = layers[-1]
    return (h if last.bias is None else h.add_(last.bias.to(h.dtype))).relu_()


def pair_applies(per_point: torch.Tensor, per_centre: torch.Tensor) -> bool:
    """Whether :func:`pair_relu` takes these (float32 or bfloat16 tensors of one dtype)."""
    return per_point.dtype == per_centre.dtype and per_point.dtype in (torch.float32, torch.bfloat16)


def pair_relu(per_point: torch.Tensor, idx: torch.Tensor, per_centre: torch.Tensor, start: int = 0,
              groups: int | None = None) -> torch.Tensor:
    """``relu(per_point[b, idx[b, s, r]] - per_centre[b, s])`` for ``per_point [B, N, C]``, ``idx [B, S, k]``,
    ``per_centre [B, S, C]`` (contiguous) and the ``groups`` groups ``b S + s`` from ``start`` on (all by default)
    -> ``[groups, k, C]``, one pass (:func:`_infer_kernels.pair_relu`)."""
    b, s, k = idx.shape
    c = per_point.shape[-1]
    groups = b * s - start if groups is None else groups
    out = per_point.new_empty((groups, k, c))  # [G, k, C]
    _chunks()  # numba's thread count
    kernels.pair_relu(_array(per_point.view(-1, c)), idx.numpy(), _array(per_centre.view(-1, c)), start,
                      _array(out.view(-1, c)))
    return out


def pair_mlp_max(per_point: torch.Tensor, idx: torch.Tensor, per_centre: torch.Tensor,
                 layers: list[nn.Linear]) -> torch.Tensor:
    """``amax(mlp(pair_relu(per_point, idx, per_centre), layers), dim=2)`` -> ``[B, S, C']``: :data:`ROWS` pair
    rows at a time, so that the activations between the layers stay in the CPU's caches rather than make a round
    trip through memory per layer (the first level of ``pointnet2_semseg_ssg`` on 16 blocks of 4096 points, 2 idle
    cores: 1.3x faster in fp32, 1.5x in bf16)."""
    b, s, k = idx.shape
    per_point, idx, per_centre = per_point.contiguous(), idx.contiguous(), per_centre.contiguous()
    step = max(1, ROWS // k)
    blocks = [mlp_max(pair_relu(per_point, idx, per_centre, start, min(step, b * s - start)), layers, dim=1)
              for start in range(0, b * s, step)]  # [G, C'] each
    return torch.cat(blocks).view(b, s, -1)  # [B, S, C']


def propagate(xyz: torch.Tensor, coarse_xyz: torch.Tensor, skip: torch.Tensor | None, coarse: torch.Tensor,
              layers: list[nn.Linear]) -> torch.Tensor:
    """Feature propagation's interpolation and MLP (module docstring): ``xyz [B, n, 3]``, ``coarse_xyz [B, m, 3]``
    float32, ``skip [B, n, D]`` or ``None``, ``coarse [B, m, C]`` -> ``[B, n, C']``."""
    b, n, _ = xyz.shape
    m, c = coarse.shape[1:]
    idx = ops.knn(xyz, coarse_xyz, min(3, m)).idx  # [B, n, k], the neighbours ops.three_interpolate takes
    first = layers[0]
    proj = _product(coarse.reshape(b * m, c), first.weight[:, :c], None, False)  # [B*m, C1]
    if skip is None:
        out = proj.new_empty((b * n, proj.shape[1]))  # [B*n, C1]
    else:
        out = _product(skip.reshape(b * n, -1), first.weight[:, c:], None, False)  # [B*n, C1]
    bias = first.bias.detach().float() if first.bias is not None else torch.zeros(proj.shape[1])  # [C1]
    _chunks()  # numba's thread count
    kernels.interpolate_relu(xyz.contiguous().view(b * n, 3).numpy(), coarse_xyz.contiguous().view(b * m, 3).numpy(),
                             idx.contiguous().numpy(), np.float32(EPS), _array(proj), bias.numpy(),
                             _array(out), skip is not None)
    return mlp(out, layers[1:]).view(b, n, -1)  # [B, n, C']
