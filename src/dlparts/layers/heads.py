"""The classifier head of the point models, and the one check of a class count that every model uses.

PointNet (Qi et al., CVPR 2017, Fig. 2 and its segmentation nets) and PointNet++ (Qi et al., NeurIPS 2017) end in the
same head: fully connected (or per-point shared) hidden layers ``Linear -> BatchNorm -> ReLU [-> Dropout]`` and a last
``Linear`` to the logits without batch norm or ReLU.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlparts.errors import ConfigError
from dlparts.layers.mlp import SharedMLP


def check_classes(name: str, num_classes: int) -> None:
    """Refuse a class (or category) count that is not a positive integer, naming the argument ``name``."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"{name}={num_classes!r} must be a positive integer")


class ClassifierHead(nn.Sequential):
    """Hidden layers ``in_channels -> widths`` (a :class:`~dlparts.layers.mlp.SharedMLP`, ``dropout`` per layer) then
    ``Linear -> num_classes``: ``[..., C] -> [..., K]`` (``[B, C]`` global or ``[B, N, C]`` per-point features).

    ``self[0]`` is the hidden MLP and ``self[1]`` the logits layer (the ``state_dict`` keys ``0.*`` and ``1.*``).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], num_classes: int, dropout: Sequence[float]):
        check_classes("num_classes", num_classes)
        hidden = SharedMLP(in_channels, widths, dropout=dropout)
        super().__init__(hidden, nn.Linear(hidden.out_channels, num_classes))

    def forward(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[..., C] -> [..., K]`` logits, or the last hidden layer ``[..., widths[-1]]`` with ``pre_logits``."""
        hidden = self[0](features)
        return hidden if pre_logits else self[1](hidden)

    def reset(self, num_classes: int) -> None:
        """A fresh logits layer for ``num_classes`` classes, on the device of the old one."""
        check_classes("num_classes", num_classes)
        self[1] = nn.Linear(self[1].in_features, num_classes, device=self[1].weight.device)
