"""Shared MLPs and symmetric max pooling: the two building blocks of PointNet (Qi et al., CVPR 2017, Sec. 4.2).

Every module here works on channels-last tensors ``[..., C]`` (``[B, N, C]`` point features, ``[B, S, k, C]``
neighbourhoods, ``[B, C]`` global features), the layout of the public point-cloud API.  A "shared" MLP is then a
plain ``nn.Linear`` over the last dimension: the same weights for every point, which is what the authors' 1x1
convolutions compute, with one large matrix product instead of a convolution call.  Batch norm statistics are taken
over every leading dimension (all points of all clouds), as a 1x1 convolution followed by ``BatchNorm2d`` does.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlparts.errors import ConfigError
from dlparts.layers import route


class PointBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the last dimension of ``[..., C]``: statistics over all leading dimensions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # no reshape: an in-place op on a view of the output would copy its gradient back
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])  # [M, C], M = product of the leading dims
        return super().forward(flat).reshape(x.shape)  # [..., C]


class SharedMLP(nn.Sequential):
    """``in_channels -> widths[0] -> ... -> widths[-1]``, each layer ``Linear -> BatchNorm -> ReLU [-> Dropout]``.

    ``[..., in_channels] -> [..., widths[-1]]``.  ``dropout`` gives one drop probability per layer (0 for none),
    applied after that layer's ReLU as the authors' code does.  ``bias=True`` keeps the authors' biases before batch
    norm (redundant in the function they compute, but part of their parameter counts).  ``layers[i]`` is the ``i``-th
    ``Linear``; PointNet++ set abstraction reads ``layers[0]`` to apply it once per point (see
    :mod:`dlparts.layers.pointnet2`).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], *, dropout: Sequence[float] | None = None,
                 bias: bool = True, batch_norm: bool = True):
        if not widths or any(int(w) < 1 for w in widths) or in_channels < 1:
            raise ConfigError(f"SharedMLP: widths {list(widths)!r} and in_channels {in_channels} must be positive")
        dropout = tuple(dropout) if dropout is not None else (0.0,) * len(widths)
        if len(dropout) != len(widths):
            raise ConfigError(f"SharedMLP: dropout {dropout!r} needs one probability per layer of {list(widths)!r}")
        modules: list[nn.Module] = []
        for width, p in zip(widths, dropout):
            modules += [nn.Linear(in_channels, width, bias=bias)]
            modules += [PointBatchNorm(width)] if batch_norm else []
            modules += [nn.ReLU(inplace=True)]
            modules += [nn.Dropout(p)] if p > 0 else []
            in_channels = width
        super().__init__(*modules)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return route.run(x, list(self))

    @property
    def layers(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def forward_max(self, x: torch.Tensor, pool: MaxPool, *, skip: int = 0) -> torch.Tensor:
        """``pool(self(x))`` for ``x [..., k, C]`` and a ``pool`` over ``k`` (dim -2) -> ``[..., C']``; ``x`` is the
        output of the first ``skip`` modules, when the caller ran them its own way (PointNet++ applies the first
        ``Linear`` per point).  :func:`dlparts.layers.route.run_max` picks the path."""
        return route.run_max(x, list(self)[skip:], pool)


class MaxPool(nn.Module):
    """Max over one dimension, the symmetric function of PointNet (Sec. 4.2): ``[B, N, C] -> [B, C]`` for
    ``dim=1``, ``[B, S, k, C] -> [B, S, C]`` for ``dim=2``.  Invariant to the order along ``dim``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(x, dim=self.dim)

    def dlparts_cost(self, inputs: tuple, output: torch.Tensor) -> dict:
        """``n - 1`` comparisons for each output of a max over ``n`` values."""
        return {"macs": 0, "flops": inputs[0].numel() - output.numel()}

