"""The T-Net alignment network and its orthogonality regularizer (PointNet, Qi et al., CVPR 2017, Sec. 4.2).

A T-Net is a mini-PointNet (shared MLP, max pool, fully connected layers) that predicts a ``k x k`` matrix ``A``
applied to the points (``k = 3``, the input transform) or to their features (``k = 64``, the feature transform):
``x [B, N, k] -> x @ A``.  As in the authors' code the last layer starts at zero weights and the identity as bias, so
training starts from ``A = I``.  The feature transform is kept near orthogonal by ``L_reg = ||I - A A^T||_F^2``
(Eq. 2), weighted 0.001.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlparts.layers.mlp import MaxPool, SharedMLP

#: The paper's weight of the feature-transform regularizer.
REG_WEIGHT = 0.001


class TNet(nn.Module):
    """``x [B, N, in_channels] -> A [B, k, k]``: shared MLP ``convs``, max pool, MLP ``fcs``, ``Linear -> k*k``.

    The classification net uses ``convs=(64, 128, 1024), fcs=(512, 256)`` for both transforms; the authors' part
    segmentation net uses ``fcs=(128, 128)`` for its 3x3 and ``convs=(256, 1024)`` for its 128x128 transform.
    """

    def __init__(self, k: int, in_channels: int | None = None, *, convs: Sequence[int] = (64, 128, 1024),
                 fcs: Sequence[int] = (512, 256)):
        super().__init__()
        self.k = k
        self.mlp = SharedMLP(in_channels or k, convs)
        self.pool = MaxPool(dim=1)
        self.fc = SharedMLP(convs[-1], fcs)
        self.transform = nn.Linear(fcs[-1], k * k)
        self.reset_transform()

    def reset_transform(self) -> None:
        """Zero weights and identity bias: the predicted matrix is ``I`` until training moves it."""
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(self.k).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.fc(self.mlp.forward_max(x, self.pool))  # [B, fcs[-1]]
        return self.transform(g).reshape(-1, self.k, self.k)  # [B, k, k]


def orthogonality_loss(a: torch.Tensor) -> torch.Tensor:
    """``||I - A A^T||_F^2`` of ``a [B, k, k]``, averaged over the batch (PointNet Eq. 2); 0-dim.

    The authors' TensorFlow code adds ``tf.nn.l2_loss`` of the same matrices, i.e. half the *sum* over the batch; the
    mean of the full squared norm keeps the term's size independent of the batch size, as the paper's formula does.
    """
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    diff = eye - a @ a.transpose(1, 2)  # [B, k, k]
    return diff.square().sum(dim=(1, 2)).mean()
