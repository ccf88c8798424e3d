"""The index searches as ``torch.library`` custom ops (namespace ``dlparts``), with shape-only fake implementations.

Farthest point sampling, ball query and kNN return indices computed by numba or Triton kernels, which neither
``torch.export`` / ``torch.compile`` nor the meta device (:mod:`dlparts.summary`) can look into.  As custom ops they
are opaque nodes of a traced graph whose output shapes the fake implementations give; everything differentiable
(gathers, distances, interpolation weights) is plain torch around them, in :mod:`dlparts.ops`.

Each op takes what the backend interface of :mod:`dlparts.ops.reference` takes (already checked: contiguous float32
coordinates, ``int64`` lengths and starts) plus the name of the requested backend (``None``: ``DLPARTS_OPS_BACKEND``
or by device), resolved when the op runs, so a graph traced on one device runs on another.
"""

from __future__ import annotations

import torch

from dlparts.ops._dispatch import resolve


@torch.library.custom_op("dlparts::fps", mutates_args=())
def fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor, backend: str | None) -> torch.Tensor:
    """``xyz [B, N, 3]``, ``lengths [B]``, ``start [B]`` -> ``idx int64 [B, m]``."""
    return resolve("farthest_point_sample", backend, xyz.device).fps(xyz, lengths, m, start)


@fps.register_fake
def _(xyz, lengths, m, start, backend):
    return xyz.new_empty((xyz.shape[0], m), dtype=torch.int64)


@torch.library.custom_op("dlparts::ball_query", mutates_args=())
def ball_query(xyz: torch.Tensor, centers: torch.Tensor, lengths: torch.Tensor, radius2: float, k: int, nearest: bool,
               backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``xyz [B, N, 3]``, ``centers [B, S, 3]`` -> ``(idx int64 [B, S, k], count int64 [B, S])``."""
    return resolve("ball_query", backend, xyz.device).ball_query(xyz, centers, lengths, radius2, k, nearest)


@ball_query.register_fake
def _(xyz, centers, lengths, radius2, k, nearest, backend):
    b, s = centers.shape[:2]
    return centers.new_empty((b, s, k), dtype=torch.int64), centers.new_empty((b, s), dtype=torch.int64)


@torch.library.custom_op("dlparts::knn", mutates_args=())
def knn(query: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, k: int,
        backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``query [B, S, 3]``, ``ref [B, N, 3]`` -> ``(dists float32 [B, S, k], idx int64 [B, S, k])``."""
    return resolve("knn", backend, ref.device).knn(query, ref, lengths, k)


@knn.register_fake
def _(query, ref, lengths, k, backend):
    b, s = query.shape[:2]
    return query.new_empty((b, s, k), dtype=torch.float32), query.new_empty((b, s, k), dtype=torch.int64)
