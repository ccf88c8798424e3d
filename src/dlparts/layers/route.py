"""Which path a shared MLP takes: the fused numba kernels of :mod:`dlparts.layers.fused` where they apply, the plain
modules everywhere else.  The MLP (:class:`dlparts.layers.mlp.SharedMLP`) only holds its modules; this decides, per
call, how they run.

The fused training paths apply to ``[Linear ->] BatchNorm -> ReLU`` runs of modules on channels-last inputs
flattened to ``[M, C]`` (:func:`dlparts.layers.fused.applies`: training on the CPU in float32 or bfloat16, not
tracing); each gives the plain modules' values up to float rounding.  :func:`inference` says when a model or layer
may take its inference path instead (evaluation on the CPU without autograd).
"""

from __future__ import annotations

import torch
from torch import nn

from dlparts import ops
from dlparts.layers import fused, infer


def inference(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether ``module`` may run its inference path on ``x``: eval mode, no autograd recording (``torch.no_grad`` or
    ``torch.inference_mode``), a CPU tensor, not tracing, scripting or compiling, and not inside
    :func:`dlparts.layers.fused.disabled`.  An inference path computes the plain modules' values up to float rounding
    with fewer passes over memory (or fewer multiply-adds, by exact algebra); the plain order stays the reference."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu" and fused.enabled()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling())


def inference_plan(x: torch.Tensor, modules: list[nn.Module]) -> list[nn.Linear] | None:
    """The ``Linear`` layers of ``modules`` when they may run on ``x`` by the inference paths of
    :mod:`dlparts.layers.infer` (:func:`inference` and :func:`dlparts.layers.infer.plan`), else ``None``."""
    return infer.plan(modules, x) if modules and inference(x, modules[0]) else None


def _bn_relu_at(modules: list[nn.Module], j: int) -> bool:
    """Whether ``modules[j], modules[j + 1]`` are a batch norm and a ReLU."""
    return (0 <= j and j + 1 < len(modules) and isinstance(modules[j], nn.BatchNorm1d)
            and isinstance(modules[j + 1], nn.ReLU))


def run(x: torch.Tensor, modules: list[nn.Module]) -> torch.Tensor:
    """``modules`` in order on ``x [..., C]`` -> ``[..., C']``, on ``x`` flattened to ``[M, C]``: batch norm then
    returns a tensor of its own rather than a view, so the in-place ReLU after it does not make autograd copy the
    whole gradient back (``CopySlices``).  ``[Linear ->] BatchNorm -> ReLU`` runs as one
    :func:`~dlparts.layers.fused.bn_relu` where that applies."""
    h = x.reshape(-1, x.shape[-1])  # [M, C]
    if (layers := inference_plan(h, modules)) is not None:
        return infer.mlp(h, layers).reshape(*x.shape[:-1], -1)  # [..., C']
    i = 0
    while i < len(modules):
        linear = modules[i] if isinstance(modules[i], nn.Linear) else None
        j = i + (linear is not None)  # the batch norm's place, if one follows
        if _bn_relu_at(modules, j) and fused.applies(h, modules[j]):
            h = fused.bn_relu(h, modules[j], linear)
            i = j + 2
            continue
        h = modules[i](h)
        i += 1
    return h.reshape(*x.shape[:-1], h.shape[-1])  # [..., C']


def run_max(x: torch.Tensor, modules: list[nn.Module], pool: nn.Module) -> torch.Tensor:
    """``pool(run(x, modules))`` for ``x [..., k, C]`` and a ``pool`` over ``k`` (dim -2) -> ``[..., C']``.  When the
    modules end in ``[Linear ->] BatchNorm -> ReLU`` and the fused path applies, that end and the max run as one
    :func:`~dlparts.layers.fused.bn_relu_max`; in inference, :func:`~dlparts.layers.infer.mlp_max`."""
    if (layers := inference_plan(x, modules)) is not None:
        return infer.mlp_max(x, layers, dim=-2)
    if not _bn_relu_at(modules, len(modules) - 2):
        return pool(run(x, modules))
    linear = modules[-3] if len(modules) >= 3 and isinstance(modules[-3], nn.Linear) else None
    tail = 3 if linear is not None else 2
    h = run(x, modules[:-tail])  # [..., k, C], the last input
    flat = h.reshape(-1, h.shape[-1])  # [M, C]
    if fused.applies(flat, modules[-2]):
        out = fused.bn_relu_max(flat, modules[-2], h.shape[-2], linear)  # [G, C']
        return out.reshape(*h.shape[:-2], out.shape[-1])  # [..., C']
    return pool(run(h, modules[-tail:]))


def grouped_first_layer(per_point: torch.Tensor, idx: torch.Tensor, per_centre: torch.Tensor,
                        modules: list[nn.Module]) -> tuple[torch.Tensor, int]:
    """The pair rows ``per_point[b, idx[b, s, r]] - per_centre[b, s]`` of a set abstraction's first layer applied per
    point (:mod:`dlparts.layers.pointnet2`), ``per_point [B, N, C1]``, ``idx [B, S, k]``, ``per_centre [B, S, C1]``
    -> ``([B, S, k, C], how many of modules they have been through)``: 1 (the ``Linear``) as plain torch, or 3 with
    the batch norm and ReLU after it when :func:`~dlparts.layers.fused.pair_bn_relu` applies."""
    if _bn_relu_at(modules, 1) and fused.applies(per_point.view(-1, per_point.shape[-1]), modules[1]):
        return fused.pair_bn_relu(per_point, idx, per_centre, modules[1]).view(*idx.shape, -1), 3  # [B, S, k, C1]
    return ops.group_points(per_point, idx) - per_centre[:, :, None, :], 1  # [B, S, k, C1]
