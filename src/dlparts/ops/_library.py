"""The index searches as ``torch.library`` custom ops (namespace ``dlparts``), with shape-only fake implementations.

Farthest point sampling, ball query and kNN return indices computed by numba or Triton kernels, which neither
``torch.export`` / ``torch.compile`` nor the meta device (:mod:`dlparts.summary`) can look into.  As custom ops they
are opaque nodes of a traced graph whose output shapes the fake implementations give; everything differentiable
(gathers, distances, interpolation weights) is plain torch around them, in :mod:`dlparts.ops`.

Each op takes what the backend interface of :mod:`dlparts.ops.reference` takes (already checked: contiguous float32
coordinates, ``int64`` lengths and starts) plus the name of the requested backend (``None``: ``DLPARTS_OPS_BACKEND``
or by device), resolved when the op runs, so a graph traced on one device runs on another.

Eager calls on plain tensors (no tracing, compiling, fake tensors or dispatch mode; not on the meta device) run the
backend directly, as the op would: torch wraps every custom op's kernel in ``torch._disable_dynamo``, whose first
call imports ``torch._dynamo``, as long as importing torch itself and a third of a ``dlparts predict``'s start-up.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from dlparts.ops._dispatch import resolve


def _eager(*tensors: torch.Tensor) -> bool:
    """Whether a call may skip its custom op: plain tensors off the meta device, nothing tracing or compiling."""
    return (not torch.compiler.is_compiling() and not torch.jit.is_tracing() and _get_current_dispatch_mode() is None
            and all(type(t) is torch.Tensor and t.device.type != "meta" for t in tensors))


def _fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor, backend: str | None) -> torch.Tensor:
    return resolve("farthest_point_sample", backend, xyz.device).fps(xyz, lengths, m, start)


def _ball_query(xyz: torch.Tensor, centers: torch.Tensor, lengths: torch.Tensor, radius2: float, k: int,
                nearest: bool, backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    return resolve("ball_query", backend, xyz.device).ball_query(xyz, centers, lengths, radius2, k, nearest)


def _knn(query: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, k: int,
         backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    return resolve("knn", backend, ref.device).knn(query, ref, lengths, k)


fps_op = torch.library.custom_op("dlparts::fps", _fps, mutates_args=())
ball_query_op = torch.library.custom_op("dlparts::ball_query", _ball_query, mutates_args=())
knn_op = torch.library.custom_op("dlparts::knn", _knn, mutates_args=())


@fps_op.register_fake
def _(xyz, lengths, m, start, backend):
    return xyz.new_empty((xyz.shape[0], m), dtype=torch.int64)


@ball_query_op.register_fake
def _(xyz, centers, lengths, radius2, k, nearest, backend):
    b, s = centers.shape[:2]
    return centers.new_empty((b, s, k), dtype=torch.int64), centers.new_empty((b, s), dtype=torch.int64)


@knn_op.register_fake
def _(query, ref, lengths, k, backend):
    b, s = query.shape[:2]
    return query.new_empty((b, s, k), dtype=torch.float32), query.new_empty((b, s, k), dtype=torch.int64)


def fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor, backend: str | None) -> torch.Tensor:
    """``xyz [B, N, 3]``, ``lengths [B]``, ``start [B]`` -> ``idx int64 [B, m]``."""
    if _eager(xyz, lengths, start):
        return _fps(xyz.detach(), lengths, m, start, backend)
    return fps_op(xyz, lengths, m, start, backend)


def ball_query(xyz: torch.Tensor, centers: torch.Tensor, lengths: torch.Tensor, radius2: float, k: int, nearest: bool,
               backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``xyz [B, N, 3]``, ``centers [B, S, 3]`` -> ``(idx int64 [B, S, k], count int64 [B, S])``."""
    if _eager(xyz, centers, lengths):
        return _ball_query(xyz.detach(), centers.detach(), lengths, radius2, k, nearest, backend)
    return ball_query_op(xyz, centers, lengths, radius2, k, nearest, backend)


def knn(query: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, k: int,
        backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``query [B, S, 3]``, ``ref [B, N, 3]`` -> ``(dists float32 [B, S, k], idx int64 [B, S, k])``."""
    if _eager(query, ref, lengths):
        return _knn(query.detach(), ref.detach(), lengths, k, backend)
    return knn_op(query, ref, lengths, k, backend)
