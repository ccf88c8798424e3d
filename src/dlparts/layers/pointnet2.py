"""PointNet++ layers: set abstraction (single- and multi-scale grouping, group-all) and feature propagation.

Qi, Yi, Su, Guibas, "PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric Space", NeurIPS 2017,
Sec. 3.2 (set abstraction), 3.3 (MSG) and 3.4 (feature propagation); details from the authors' TensorFlow code
(``pointnet_util.py``).  Coordinates are ``[B, N, 3]``, features ``[B, N, C]`` (channels last); sampling, ball query and
three-NN are ``dlparts.ops``.

**The first layer once per point.**  The first layer of a set abstraction MLP is linear in its input
``[(x_j - c_i) / r, f_j]`` (the neighbour's offset from its centre, optionally divided by the radius, and the
neighbour's features), so ``W [(x_j - c_i) / r, f_j] + b = (W [x_j / r, f_j] + b) - W_xyz c_i / r``: the first term
is computed once per *point* and gathered, the second once per *centre*, instead of the whole product once per
(centre, neighbour) pair: ``k`` times fewer multiply-adds on that layer (32-64x at the paper's settings) and the same
values up to float rounding.  ``first_layer_per_point=False`` selects the plain order (group, concatenate, MLP).

**Training on the CPU.**  The shared MLPs run each ``Linear -> BatchNorm -> ReLU`` and, last, the max over the
neighbours through the kernels of :mod:`dlparts.layers.fused` where :mod:`dlparts.layers.route` finds they apply
(fewer passes over the ``[B, S, k, C]`` activations, same values).

**Inference on the CPU.**  In evaluation without autograd, with batch norms folded
(:func:`dlparts.layers.fold.fold_batch_norm`), the shared MLPs, the pair rows of the first layer and feature
propagation take the paths of :mod:`dlparts.layers.infer` (fewer passes over memory, exact algebra, the same values up
to float rounding); :mod:`dlparts.layers.route` decides.

**Export.**  Sampling, ball query, grouping and interpolation are the public :mod:`dlparts.ops` functions, which
trace (their index searches are custom ops with fake implementations), so ``torch.export`` and ``dlparts.summary``
(on the meta device) go through these layers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dlparts import ops
from dlparts.errors import ConfigError
from dlparts.layers import infer, route
from dlparts.layers.mlp import MaxPool, SharedMLP

STARTS = (0, "centroid-farthest")


def _check_start_order(start, order: str) -> None:
    if start not in STARTS:
        raise ConfigError(f"start={start!r} must be 0 (the paper's) or 'centroid-farthest'")
    if order not in ops.ORDERS:
        raise ConfigError(f"order={order!r} must be one of {', '.join(ops.ORDERS)}")


# --------------------------------------------------------------------------------------------------- set abstraction
class SetAbstraction(nn.Module):
    """One set abstraction level with one scale (SSG) or several (MSG, Sec. 3.3).

    ``xyz [B, N, 3]``, ``features [B, N, D]`` (or ``None``) -> ``(centres [B, S, 3], [B, S, sum(mlp[-1])])``:
    ``S = npoint`` centres by farthest point sampling; per scale, ``nsample`` neighbours within ``radius`` by ball
    query, their offsets from the centre (divided by ``radius`` when ``normalize_xyz``) concatenated before their
    features, a shared MLP, max over the neighbours; the scales' outputs concatenated in order.

    The paper's defaults (``start=0``, ``order="index"``: the first neighbours in the input order) depend on the order
    of the input points; ``start="centroid-farthest"`` with ``order="nearest"`` makes the level order invariant.
    """

    def __init__(self, npoint: int, radii: Sequence[float], nsamples: Sequence[int], mlps: Sequence[Sequence[int]],
                 in_channels: int = 0, *, normalize_xyz: bool = False, start: int | str = 0, order: str = "index",
                 first_layer_per_point: bool = True):
        super().__init__()
        if not (len(radii) == len(nsamples) == len(mlps) >= 1):
            raise ConfigError(f"SetAbstraction: radii {list(radii)}, nsamples {list(nsamples)} and mlps "
                              f"{[list(m) for m in mlps]} need one entry per scale")
        _check_start_order(start, order)
        self.npoint, self.radii, self.nsamples = int(npoint), tuple(float(r) for r in radii), tuple(nsamples)
        self.normalize_xyz, self.start, self.order = normalize_xyz, start, order
        self.first_layer_per_point = first_layer_per_point
        self.mlps = nn.ModuleList(SharedMLP(3 + in_channels, widths) for widths in mlps)
        self.pool = MaxPool(dim=2)
        self.out_channels = sum(m.out_channels for m in self.mlps)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None):
        centres = ops.gather_points(xyz, ops.farthest_point_sample(xyz, self.npoint, start=self.start))  # [B, S, 3]
        outs = []
        for radius, k, mlp in zip(self.radii, self.nsamples, self.mlps):
            idx = ops.ball_query(xyz, centres, radius, k, order=self.order).idx  # [B, S, k]
            scale = radius if self.normalize_xyz else 1.0
            if self.first_layer_per_point:
                outs.append(self._per_point(mlp, self.pool, xyz, centres, features, idx, scale))  # [B, S, C]
            else:
                outs.append(mlp.forward_max(self._grouped(xyz, centres, features, idx, scale), self.pool))
        return centres, outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)  # [B, S, sum(mlp[-1])]

    @staticmethod
    def _grouped(xyz, centres, features, idx, scale: float) -> torch.Tensor:
        """The plain grouping: ``[B, S, k, 3 + D]`` offsets (over ``scale``) then neighbour features."""
        offsets = (ops.group_points(xyz, idx) - centres[:, :, None, :]) / scale  # [B, S, k, 3]
        return offsets if features is None else torch.cat([offsets, ops.group_points(features, idx)], dim=-1)

    @staticmethod
    def _per_point(mlp: SharedMLP, pool: MaxPool, xyz, centres, features, idx, scale: float) -> torch.Tensor:
        """The first layer per point and per centre (module docstring), then the rest of ``mlp`` per pair and the
        max over the neighbours: ``[B, S, C]``."""
        first = mlp.layers[0]
        inputs = xyz / scale if features is None else torch.cat([xyz / scale, features], dim=-1)  # [B, N, 3 + D]
        per_point = first(inputs)  # [B, N, C1]
        per_centre = F.linear(centres / scale, first.weight[:, :3])  # [B, S, C1]
        layers = route.inference_plan(per_point, list(mlp))
        if layers is not None and infer.pair_applies(per_point, per_centre):
            return infer.pair_mlp_max(per_point, idx, per_centre, layers[1:])  # [B, S, C]
        h, skip = route.grouped_first_layer(per_point, idx, per_centre, list(mlp))  # [B, S, k, C1]
        return mlp.forward_max(h, pool, skip=skip)  # [B, S, C]

    def dlparts_cost(self, inputs: tuple, output) -> dict:
        """FPS (9 flops per centre-point distance update, 1 per argmax step), ball query (9 per centre-point test),
        offsets (3 per pair) or, with the first layer per point, the per-centre product and its subtraction per
        pair.  The MLPs and the max pool are counted on their own rows."""
        b, n = inputs[0].shape[:2]
        s = self.npoint
        flops = b * s * n * 10
        macs = 0
        for k, mlp in zip(self.nsamples, self.mlps):
            flops += b * s * n * 9
            c1 = mlp.layers[0].out_features
            if self.first_layer_per_point:
                macs += b * s * 3 * c1
                flops += b * s * k * c1
            else:
                flops += b * s * k * 3
        return {"macs": macs, "flops": flops + 2 * macs}


class GroupAll(nn.Module):
    """The last set abstraction level: one centre at the origin holding every point (the authors' ``group_all``).

    ``xyz [B, N, 3]``, ``features [B, N, D]`` or ``None`` -> ``(zeros [B, 1, 3], [B, 1, mlp[-1]])``: shared MLP over
    ``[xyz, features]`` (coordinates as they are, not re-centred) and max over all points.
    """

    def __init__(self, mlp: Sequence[int], in_channels: int = 0):
        super().__init__()
        self.mlp = SharedMLP(3 + in_channels, mlp)
        self.pool = MaxPool(dim=1)
        self.out_channels = self.mlp.out_channels

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None):
        inputs = xyz if features is None else torch.cat([xyz, features], dim=-1)  # [B, N, 3 + D]
        return xyz.new_zeros(xyz.shape[0], 1, 3), self.mlp.forward_max(inputs, self.pool)[:, None, :]  # [B, 1, C]


# ----------------------------------------------------------------------------------------------- feature propagation
class FeaturePropagation(nn.Module):
    """Feature propagation (Sec. 3.4): coarse features interpolated to the finer points by their three nearest
    coarse points, concatenated before the finer level's skip features, then a unit PointNet (shared MLP).

    ``xyz [B, n, 3]``, ``coarse_xyz [B, m, 3]``, ``skip [B, n, D]`` or ``None``, ``coarse [B, m, C]`` ->
    ``[B, n, mlp[-1]]``; ``in_channels = C + D``.  With one coarse point (after group-all) every point gets its
    features.
    """

    def __init__(self, in_channels: int, mlp: Sequence[int]):
        super().__init__()
        self.mlp = SharedMLP(in_channels, mlp)
        self.out_channels = self.mlp.out_channels

    def forward(self, xyz, coarse_xyz, skip, coarse):
        layers = route.inference_plan(coarse, list(self.mlp)) if route.inference(xyz, self) else None
        if layers is not None and xyz.dtype == coarse_xyz.dtype == torch.float32:
            return infer.propagate(xyz, coarse_xyz, skip, coarse, layers)  # [B, n, C']
        h = ops.three_interpolate(xyz, coarse_xyz, coarse)  # [B, n, C]
        return self.mlp(h if skip is None else torch.cat([h, skip], dim=-1))

    def dlparts_cost(self, inputs: tuple, output) -> dict:
        """Three-NN (9 flops per fine-coarse pair), weights (10 per neighbour), weighted sum (2 per neighbour and
        channel); the MLP is counted on its own rows."""
        xyz, coarse_xyz, _, coarse = inputs
        b, n = xyz.shape[:2]
        m, c = coarse_xyz.shape[1], coarse.shape[-1]
        k = min(3, m)
        return {"macs": 0, "flops": b * n * (m * 9 + k * 10 + k * c * 2)}
