"""Batch norm folded into the layer before it, for inference: a model in eval mode computes ``BN(W x + b)`` with fixed
statistics, which is the affine map ``s * (W x + b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``, so the
``Linear`` can carry it (``W' = s W``, ``b' = s (b - mean) + beta``) and the batch norm's own pass over the
activations goes away (the usual conv/BN fusion of deployment tools, here for the shared MLPs' ``Linear``).

Only a ``Linear`` immediately followed by a ``BatchNorm1d`` in the same ``nn.Sequential`` is folded (every shared MLP
and head of :mod:`dlparts.layers`); the batch norm is replaced by ``nn.Identity`` so that module indices stay where
they were (PointNet++ set abstraction runs its MLP's first ``Linear`` on its own, then the rest from index 1:
folding holds there too, the grouping between them being a gather and a subtraction, both linear).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A folded copy of ``model`` in eval mode (``model`` itself is left as it is): the same outputs up to float
    rounding, without the batch norms that follow a ``Linear``.  Batch norms without running statistics (which
    normalise by the batch even in eval mode) are kept."""
    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            linear, bn = seq[i], seq[i + 1]
            if isinstance(linear, nn.Linear) and isinstance(bn, nn.BatchNorm1d) and bn.running_var is not None:
                _fold_into(linear, bn)
                seq[i + 1] = nn.Identity()
    return folded


@torch.no_grad()
def _fold_into(linear: nn.Linear, bn: nn.BatchNorm1d) -> None:
    """``linear`` (``weight [C_out, C_in]``) becomes ``bn(linear(x))`` for ``bn`` in eval mode."""
    scale = torch.rsqrt(bn.running_var + bn.eps)  # [C_out]
    shift = -bn.running_mean * scale  # [C_out]
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    bias = linear.bias if linear.bias is not None else torch.zeros_like(shift)
    linear.bias = nn.Parameter(bias * scale + shift)
    linear.weight.mul_(scale[:, None])
