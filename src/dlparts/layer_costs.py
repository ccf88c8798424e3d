"""The cost of one module call, for :mod:`dlparts.summary`: formulas per layer type, and the matrix products a
module does with tensors rather than through child modules (attention scores, ``q @ k.T``, ``einsum``), measured
with :class:`torch.utils.flop_counter.FlopCounterMode`.

Units as in :mod:`dlparts.summary`: MACs are multiply-accumulates, FLOPs count 2 per MAC plus the operations of
layers without weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlparts.arith import lrn_flops_per_element

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
          nn.InstanceNorm3d)
_FREE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten,
         nn.Unflatten, nn.Embedding)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVTS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def _pool_window(module: nn.Module, dims: int) -> int:
    k = module.kernel_size
    return math.prod((k,) * dims if isinstance(k, int) else k)


def attention_cost(module: nn.MultiheadAttention, inputs: tuple) -> tuple[int, int]:
    """``(macs, flops)`` of one :class:`nn.MultiheadAttention` call (Vaswani et al. 2017, Sec. 3.2) on
    ``query [L, N, E]``, ``key [S, N, kdim]``, ``value [S, N, vdim]`` (``[N, L, E]`` ... with ``batch_first``; an
    unbatched ``[L, E]`` is ``N = 1``): the Q, K, V projections ``N (L E + S kdim + S vdim) E``, the scores
    ``Q K^T`` and the weighted sum ``A V`` ``N L S E`` each (``E = heads x head_dim``), the output projection
    ``N L E E``.  FLOPs are ``2 x MACs`` plus the softmax (3 per score, ``N heads L S`` scores)."""
    query, key, value = inputs[:3]
    seq_dim = 1 if module.batch_first and query.dim() == 3 else 0
    n = query.shape[1 - seq_dim] if query.dim() == 3 else 1
    lq, ls, e = query.shape[seq_dim], key.shape[seq_dim], module.embed_dim
    macs = n * (lq * e + ls * key.shape[-1] + ls * value.shape[-1]) * e + 2 * n * lq * ls * e + n * lq * e * e
    return macs, 2 * macs + 3 * n * module.num_heads * lq * ls


def layer_cost(module: nn.Module, inputs: tuple, output: Any) -> tuple[int, int, bool]:
    """``(macs, flops, counted)`` of one call of ``module`` by its type; ``counted`` is False for types without a
    formula here (their matrix products are measured by :class:`MatmulTally` instead)."""
    x = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
    out = output if isinstance(output, torch.Tensor) else None
    in_n, out_n = (x.numel() if x is not None else 0), (out.numel() if out is not None else 0)
    if hasattr(module, "dlparts_cost"):
        cost = module.dlparts_cost(inputs, output)
        return int(cost.get("macs", 0)), int(cost.get("flops", 2 * cost.get("macs", 0))), True
    if isinstance(module, nn.MultiheadAttention):
        return (*attention_cost(module, inputs), True)
    if isinstance(module, _CONVS):
        macs = out_n * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return macs, 2 * macs, True
    if isinstance(module, _CONVTS):
        macs = in_n * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return macs, 2 * macs, True
    if isinstance(module, nn.Linear):
        macs = out_n * module.in_features
        return macs, 2 * macs, True
    if isinstance(module, _POOLS):
        dims = x.dim() - 2
        window = _pool_window(module, dims)
        return 0, out_n * (window - 1 if "Max" in type(module).__name__ else window), True
    if isinstance(module, _ADAPTIVE):
        return 0, in_n, True
    if all(hasattr(module, a) for a in ("size", "alpha", "beta", "k")):  # LRN, torch's or the paper's
        return 0, out_n * lrn_flops_per_element(int(module.size)), True
    if isinstance(module, _NORMS):
        return 0, 2 * out_n, True
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return 0, 5 * out_n, True
    if isinstance(module, _ACTIVATIONS):
        return 0, out_n, True
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return 0, 3 * out_n, True
    if isinstance(module, _FREE):
        return 0, 0, True
    return 0, 0, False


class MatmulTally:
    """The matrix-product FLOPs (mm, bmm, addmm, einsum, convolution, scaled dot-product attention: whatever
    :class:`FlopCounterMode` has a formula for, at 2 per MAC) each module call does itself, beyond its child modules'
    calls: module hooks see a module's inputs and output, not the ``q @ k.transpose(-2, -1)`` inside its forward.

    Use as a context manager around the forward; :meth:`enter` from a forward pre-hook and :meth:`leave` from the
    forward hook of every module, in call order.
    """

    def __init__(self):
        self.counter = FlopCounterMode(display=False)
        self.stack: list[list[int]] = []  # per open call: [counter total at entry, children's inclusive FLOPs]

    def __enter__(self) -> MatmulTally:
        self.counter.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.counter.__exit__(*exc)

    def enter(self) -> None:
        self.stack.append([self.counter.get_total_flops(), 0])

    def leave(self) -> int:
        """The FLOPs of the call just ended, less those of the module calls inside it."""
        start, children = self.stack.pop()
        inclusive = self.counter.get_total_flops() - start
        if self.stack:
            self.stack[-1][1] += inclusive
        return inclusive - children
