"""Local response normalization as Krizhevsky, Sutskever and Hinton define it (NeurIPS 2012, section 3.3, eq. 3).

For the activity ``a[i]`` of kernel map ``i`` at one position, with ``N`` maps::

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ^ beta

``n/2`` is integer division, so the window is centred on ``i`` and ``n`` maps wide for odd ``n``; it is cut short at
the first and last map.  The paper's constants are ``k = 2, n = 5, alpha = 1e-4, beta = 0.75``.

``torch.nn.LocalResponseNorm`` divides its ``alpha`` by ``n`` (it averages the squares); ours is the paper's sum, so
``LocalResponseNorm(5, alpha=1e-4)`` here equals ``torch.nn.LocalResponseNorm(5, alpha=5e-4)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlparts.errors import ConfigError, ShapeError


def local_response_norm_reference(x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                                  k: float = 2.0, groups: int = 1) -> torch.Tensor:
    """Equation (3) written out map by map; the specification the fast path is tested against.

    ``x``: ``[B, C, ...]``; returns the same shape.  With ``groups > 1`` the ``C`` maps are split into that many
    consecutive blocks and no window crosses a block boundary.
    """
    out = torch.empty_like(x)
    per_group = x.shape[1] // groups
    for g in range(groups):
        for i in range(per_group):
            lo, hi = max(0, i - size // 2), min(per_group - 1, i + size // 2)
            window = x[:, g * per_group + lo: g * per_group + hi + 1]
            denom = (k + alpha * (window * window).sum(dim=1)) ** beta
            out[:, g * per_group + i] = x[:, g * per_group + i] / denom
    return out


def _window_sum(t: torch.Tensor, half: int) -> torch.Tensor:
    """Sum over channels ``i - half .. i + half`` of ``t`` ``[B, C, ...]``, zero outside ``0 .. C-1``."""
    c = t.shape[1]
    padded = F.pad(t, (0, 0) * (t.dim() - 2) + (half, half))  # [B, C + 2 half, ...]
    total = padded[:, :c].clone()
    for j in range(1, 2 * half + 1):
        total.add_(padded[:, j: j + c])
    return total


class _LRN(torch.autograd.Function):
    """Eq. (3) with its gradient written by hand: one window sum forward, one backward, few temporaries.

    With ``D[i] = k + alpha * sum_{j in W(i)} a[j]^2`` and ``b[i] = a[i] D[i]^-beta``, the windows are symmetric
    (``j in W(i)`` iff ``i in W(j)``), so
    ``dL/da[j] = g[j] D[j]^-beta - 2 alpha beta a[j] sum_{i in W(j)} g[i] b[i] / D[i]``.
    """

    @staticmethod
    def forward(ctx, x, half: int, alpha: float, beta: float, k: float):
        denom = _window_sum(x * x, half).mul_(alpha).add_(k)
        scale = denom.pow(-beta)
        ctx.save_for_backward(x, denom, scale)
        ctx.constants = (half, alpha, beta)
        return x * scale

    @staticmethod
    def backward(ctx, grad):
        x, denom, scale = ctx.saved_tensors
        half, alpha, beta = ctx.constants
        grad_scaled = grad * scale
        cross = _window_sum(grad_scaled * x / denom, half)
        return grad_scaled - (2 * alpha * beta) * x * cross, None, None, None, None


def local_response_norm(x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                        groups: int = 1) -> torch.Tensor:
    """Equation (3) in a few tensor operations; see :func:`local_response_norm_reference` for the arguments.

    The window runs over maps ``i - n/2 .. i + n/2`` as the formula says (``n + 1`` maps when ``n`` is even, where
    PyTorch takes ``n``).  Faster than ``torch.nn.functional.local_response_norm`` for a training step on the CPU
    (``benchmarks/alexnet.py``), because the gradient is written out instead of traced through an average pool.
    """
    if x.dim() < 3:
        raise ShapeError(f"local response norm needs [B, C, ...] input, got shape {list(x.shape)}")
    if x.shape[1] % groups:
        raise ShapeError(f"local response norm: {x.shape[1]} channels do not split into {groups} groups")
    b, c = x.shape[:2]
    grouped = x.reshape(b * groups, c // groups, *x.shape[2:])  # [B*g, C/g, ...]
    out = _LRN.apply(grouped, size // 2, float(alpha), float(beta), float(k))
    return out.reshape(x.shape)  # [B, C, ...]


class LocalResponseNorm(nn.Module):
    """The paper's local response normalization over channels of ``[B, C, H, W]`` maps (output has the input's shape).

    ``size``, ``alpha``, ``beta`` and ``k`` are the paper's ``n``, ``alpha``, ``beta``, ``k`` (``alpha`` is *not*
    divided by ``n``).  ``dlparts.summary`` recognizes an LRN by these four attributes (duck typing, as it does for
    ``torch.nn.LocalResponseNorm``) and counts ``2 n + 3`` FLOPs per element.  ``groups`` splits the maps into
    towers that normalize separately, as the two GPUs of the paper did.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1):
        super().__init__()
        if size < 1:
            raise ConfigError(f"LRN size n={size} must be a positive integer")
        if groups < 1:
            raise ConfigError(f"LRN groups={groups} must be a positive integer")
        self.size, self.alpha, self.beta, self.k, self.groups = int(size), float(alpha), float(beta), float(k), groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.groups > 1 else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{groups}"
