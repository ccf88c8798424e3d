"""Point-cloud operators of PointNet++ (Qi et al., NeurIPS 2017): sampling, grouping, neighbours, interpolation.

Every function checks its arguments first (raising :class:`dlparts.errors.ShapeError` / :class:`ConfigError` with the
argument and value at fault), converts coordinates to contiguous float32 for the index search, and dispatches to a
backend: ``cpu`` (numba kernels) for CPU tensors, ``cuda`` (Triton kernels) for CUDA tensors, or the plain PyTorch
``reference`` (``dlparts.ops.reference``, the specification) when ``backend="reference"``, when the environment
variable ``DLPARTS_OPS_BACKEND`` says so, or when a fast backend cannot load.  All backends return identical indices.

Tracing: the index searches run as the custom ops of :mod:`dlparts.ops._library`, so every function here works under
``torch.export`` / ``torch.compile`` and on the meta device (:mod:`dlparts.summary`); checks that need the values of
the inputs are skipped there (:func:`dlparts.ops._checks.tracing`).  Layers call these functions in every forward:
beyond the metadata checks, that costs one min/max scan of the coordinates (finite in float32, squared distances
within float32) and one scan of the indices (in range).

Indices are never differentiable.  ``knn`` distances, ``three_interpolate``, ``gather_points`` and ``group_points`` are
differentiable in the features and in the coordinates: they recompute what they need from the indices with plain
torch ops, in the dtype of their inputs.

Ragged batches: ``lengths [B]`` gives the number of valid points of each cloud in the searched tensor (``xyz`` or
``ref``); points at ``n >= lengths[b]`` are ignored.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from dlparts.errors import ConfigError, ShapeError
from dlparts.ops import _checks, _library
from dlparts.ops.reference import sq_dist

__all__ = ["KNN", "BallQuery", "farthest_point_sample", "ball_query", "knn", "three_nn", "three_interpolate",
           "gather_points", "group_points"]

ORDERS = ("index", "nearest")


class KNN(NamedTuple):
    """``dists [B, S, k]`` squared distances (ascending), ``idx [B, S, k]`` int64 indices into the reference cloud."""

    dists: torch.Tensor
    idx: torch.Tensor


class BallQuery(NamedTuple):
    """``idx [B, S, k]`` int64 indices into the cloud, ``count [B, S]`` int64 number of valid entries of ``idx``."""

    idx: torch.Tensor
    count: torch.Tensor


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _start_indices(fn: str, start, xyz: torch.Tensor, lens: _checks.Lengths, generator) -> torch.Tensor:
    """Resolve ``start`` to ``int64 [B]`` with ``0 <= start[b] < lengths[b]``, on the device of ``xyz``."""
    b = xyz.shape[0]
    lengths = lens.values
    if isinstance(start, str):
        if start == "random":
            gen_device = generator.device if generator is not None else torch.device("cpu")
            u = torch.rand(b, generator=generator, dtype=torch.float64, device=gen_device).to(xyz.device)
            return torch.minimum((u * lengths).long(), lengths - 1)
        if start == "centroid-farthest":
            return _centroid_farthest(xyz, lengths)
        raise ConfigError(f"{fn}: start must be an integer, an int64 [B] tensor, 'random' or 'centroid-farthest', "
                          f"got {start!r}")
    if isinstance(start, torch.Tensor):
        s = _checks.tensor(fn, "start", start, floating=False)
        if s.shape != (b,):
            raise ShapeError(f"{fn}: start must be an int or have shape [{b}], got shape {list(s.shape)}")
        on_host = _checks.on_host(start) and _checks.on_host(lengths)  # the CPU path: compare on the host
        s = s.to(device=xyz.device, dtype=torch.int64).contiguous()
    else:
        first = _checks.integer(fn, "start", start, 0)
        s = torch.full((b,), first, dtype=torch.int64, device=xyz.device)
        # With the smallest cloud known on the host a valid start needs no read; a bad one is read for the message.
        on_host = lens.fewest is not None
        if on_host and first < lens.fewest:
            return s
    if _checks.tracing(s):
        return s
    if not on_host:
        _checks.require((s >= 0) & (s < lengths), f"{fn}: start must lie in [0, lengths[b]) for every cloud b")
        return s
    bad = (s < 0) | (s >= lengths)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ConfigError(f"{fn}: start={int(s[i])} for cloud {i} is outside its {int(lengths[i])} points")
    return s


def _centroid_farthest(xyz: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Index of the valid point farthest from the centroid of each cloud (float64, ties to the lowest index)."""
    valid = torch.arange(xyz.shape[1], device=xyz.device)[None, :] < lengths[:, None]  # [B, N]
    p = xyz.double() * valid[..., None]  # [B, N, 3], missing points zeroed
    centroid = p.sum(dim=1) / lengths[:, None].double()  # [B, 3]
    d = sq_dist(p, centroid[:, None, :])  # [B, N]
    return torch.where(valid, d, torch.full_like(d, -1.0)).argmax(dim=1)


def farthest_point_sample(xyz: torch.Tensor, m: int, *, start=0, lengths=None, generator: torch.Generator | None = None,
                          backend: str | None = None) -> torch.Tensor:
    """Farthest point sampling, PointNet++ (Qi et al. 2017) Sec. 3.2: ``xyz [B, N, 3]`` -> ``idx int64 [B, m]``.

    The exact greedy sequence: ``idx[:, 0]`` is the start; each next point is the one not yet chosen whose squared
    float32 distance to its nearest chosen point is largest, ties to the lowest index.  ``start``: an index, an
    ``int64 [B]`` tensor, ``"random"`` (uniform over each cloud's valid points, drawn from ``generator``) or
    ``"centroid-farthest"`` (the point farthest from the cloud's centroid, which makes the chosen set independent of
    the order of the points, up to exact distance ties).  ``1 <= m <= lengths[b]``; ``m == lengths[b]`` returns a
    permutation of the valid points.
    """
    fn = "farthest_point_sample"
    xyz = _checks.coords(fn, "xyz", xyz)
    _checks.comparable(fn, ("xyz", xyz))
    b, n, _ = xyz.shape
    lens = _checks.lengths(fn, lengths, b, n, xyz.device)
    m = _checks.integer(fn, "m", m, 1)
    _checks.at_most_fewest(fn, "m", m, lens, "points")
    pts = _f32(xyz)
    return _library.fps(pts, lens.values, m, _start_indices(fn, start, pts, lens, generator), backend)


def ball_query(xyz: torch.Tensor, centers: torch.Tensor, radius: float, k: int, *, order: str = "index",
               lengths=None, backend: str | None = None) -> BallQuery:
    """Ball query, PointNet++ (Qi et al. 2017) Sec. 3.2: up to ``k`` points of ``xyz [B, N, 3]`` around each center.

    A point is in the ball when its squared float32 distance is strictly less than ``radius**2`` (as the original
    PointNet++ kernel and PyTorch3D).  Returns :class:`BallQuery` ``(idx [B, S, k], count [B, S])`` with
    ``count = min(points in the ball, k)``.  ``order="index"`` (PointNet++): the first ``count`` points in index
    order; ``order="nearest"``: the ``count`` nearest, by (distance, index), independent of the point order.  Slots
    past ``count`` repeat slot 0.  A center whose ball is empty gets its nearest point in every slot and ``count = 0``
    (never a silent index 0).
    """
    fn = "ball_query"
    xyz = _checks.coords(fn, "xyz", xyz)
    b, n, _ = xyz.shape
    centers = _checks.coords(fn, "centers", centers, batch=b)
    _checks.same_device(fn, ("xyz", xyz), ("centers", centers))
    _checks.comparable(fn, ("xyz", xyz), ("centers", centers))
    radius = _checks.positive_float(fn, "radius", radius)
    k = _checks.integer(fn, "k", k, 1)
    _checks.output_size(fn, "k", k, (b, centers.shape[1], k))
    if order not in ORDERS:
        raise ConfigError(f"{fn}: order must be one of {', '.join(ORDERS)}, got {order!r}")
    lens = _checks.lengths(fn, lengths, b, n, xyz.device)
    # Rounded to float32, as every backend compares in float32.  A radius beyond 1.8e19 would square to inf (or near):
    # every point is in the ball, as squared distances stay below _checks.MAX_SQUARED_SPAN.
    r = np.float32(min(radius, 1.8e19))
    radius2 = float("inf") if radius > 1.8e19 else float(r * r)
    # Slots past the N points can only repeat slot 0, so the kernels fill at most N and the rest is copied here.
    searched = k if _checks.tracing(xyz) else min(k, n)
    idx, count = _library.ball_query(_f32(xyz), _f32(centers), lens.values, radius2, searched, order == "nearest",
                                     backend)
    if searched < k:
        idx = torch.cat([idx, idx[:, :, :1].expand(-1, -1, k - searched)], dim=2)  # [B, S, k]
    return BallQuery(idx, count)


def _knn(fn: str, query, ref, k: int, lengths, backend: str | None) -> KNN:
    query = _checks.coords(fn, "query", query)
    b = query.shape[0]
    ref = _checks.coords(fn, "ref", ref, batch=b)
    _checks.same_device(fn, ("query", query), ("ref", ref))
    _checks.comparable(fn, ("query", query), ("ref", ref))
    lens = _checks.lengths(fn, lengths, b, ref.shape[1], ref.device)
    k = _checks.integer(fn, "k", k, 1)
    _checks.at_most_fewest(fn, "k", k, lens, "reference points")
    return _search(query, ref, lens.values, k, backend)


def _search(query: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor, k: int, backend: str | None) -> KNN:
    """kNN of checked arguments; the distances recomputed differentiably when a coordinate tensor needs them."""
    dists, idx = _library.knn(_f32(query), _f32(ref), lens, k, backend)
    dtype = torch.promote_types(query.dtype, ref.dtype)
    if query.requires_grad or ref.requires_grad or dtype != torch.float32:
        near = _gather(ref.to(dtype), idx)  # [B, S, k, 3]
        dists = sq_dist(query.to(dtype)[:, :, None, :], near)  # [B, S, k], differentiable
    return KNN(dists, idx)


def knn(query: torch.Tensor, ref: torch.Tensor, k: int, lengths=None, *, backend: str | None = None) -> KNN:
    """The ``k`` nearest points of ``ref [B, N, 3]`` to each point of ``query [B, S, 3]``.

    Returns :class:`KNN` ``(dists [B, S, k], idx [B, S, k])``: squared distances, ascending, ties to the lowest index;
    ``1 <= k <= lengths[b]``.  ``dists`` is differentiable in both coordinate tensors.
    """
    return _knn("knn", query, ref, k, lengths, backend)


def three_nn(unknown: torch.Tensor, known: torch.Tensor, *, lengths=None, backend: str | None = None) -> KNN:
    """The 3 nearest ``known [B, M, 3]`` points of each ``unknown [B, n, 3]`` point (PointNet++ Sec. 3.4).

    :class:`KNN` ``(dists [B, n, 3] squared, idx [B, n, 3])``; ``lengths`` counts the valid known points (>= 3).
    """
    return _knn("three_nn", unknown, known, 3, lengths, backend)


def three_interpolate(unknown: torch.Tensor, known: torch.Tensor, features: torch.Tensor, *, lengths=None,
                      eps: float = 1e-8, backend: str | None = None) -> torch.Tensor:
    """Inverse-distance interpolation of PointNet++ feature propagation (Qi et al. 2017, Sec. 3.4, Eq. 2, p=2, k=3).

    ``features [B, M, C]`` live on ``known [B, M, 3]``; returns ``[B, n, C]`` on ``unknown [B, n, 3]``:
    ``sum_i w_i f_i / sum_i w_i`` over the 3 nearest known points with ``w_i = 1 / (d_i^2 + eps)``, so a point that
    coincides with a known point gets (almost exactly) its features and nothing divides by zero.  With fewer than 3
    known points (``min(lengths) < 3``, e.g. after a group-all layer) all of them are used.  Differentiable in
    ``features``, ``unknown`` and ``known``.
    """
    fn = "three_interpolate"
    unknown = _checks.coords(fn, "unknown", unknown)
    b = unknown.shape[0]
    known = _checks.coords(fn, "known", known, batch=b)
    feats = _checks.tensor(fn, "features", features)
    if feats.dim() != 3 or feats.shape[0] != b or feats.shape[1] != known.shape[1]:
        raise ShapeError(f"{fn}: features must have shape [B, M, C] = [{b}, {known.shape[1]}, C] to match known, "
                         f"got {_checks._shape(feats)}")
    _checks.same_device(fn, ("unknown", unknown), ("known", known), ("features", feats))
    _checks.comparable(fn, ("unknown", unknown), ("known", known))
    eps = _checks.positive_float(fn, "eps", eps)
    lens = _checks.lengths(fn, lengths, b, known.shape[1], known.device)
    fewest = lens.fewest
    if fewest is None:
        # The one host read left on the GPU path, only for lengths given on the GPU: the smallest cloud sizes k.
        fewest = known.shape[1] if _checks.tracing(lens.values) else int(lens.values.min())
    k = min(3, fewest)
    near = _search(unknown, known, lens.values, k, backend)
    dtype = torch.promote_types(torch.promote_types(unknown.dtype, known.dtype), feats.dtype)
    d2 = sq_dist(unknown.to(dtype)[:, :, None, :], _gather(known.to(dtype), near.idx))  # [B, n, k]
    w = 1.0 / (d2 + eps)
    w = w / w.sum(dim=2, keepdim=True)  # [B, n, k]
    feats = feats.to(dtype)
    out = w[:, :, 0, None] * _gather(feats, near.idx[:, :, 0])  # [B, n, C]
    for j in range(1, k):
        out = out + w[:, :, j, None] * _gather(feats, near.idx[:, :, j])  # [B, n, C]
    return out


def _gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, C]``, ``idx [B, *rest]`` -> ``[B, *rest, C]`` (differentiable in points): one ``index_select``
    of rows of the flattened points, whose backward adds the gradient rows straight into place."""
    b, n, c = points.shape
    offset = torch.arange(b, device=idx.device).view(b, *(1,) * (idx.dim() - 1)) * n  # [B, 1, ...]
    flat = points.reshape(b * n, c)  # [B*N, C]
    return flat.index_select(0, (idx + offset).reshape(-1)).reshape(*idx.shape, c)  # [B, *rest, C]


def _points(fn: str, points) -> torch.Tensor:
    t = _checks.tensor(fn, "points", points)
    if t.dim() != 3:
        raise ShapeError(f"{fn}: points must have shape [B, N, C], got {_checks._shape(t)}")
    return t


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select points: ``points [B, N, C]``, ``idx [B, M]`` (or any ``[B, ...]``) int -> ``[B, M, C]``.

    Differentiable in ``points`` (coordinates or features); e.g. the sampled centroids ``gather_points(xyz, fps_idx)``.
    """
    fn = "gather_points"
    t = _points(fn, points)
    idx = _checks.indices(fn, "idx", idx, t.shape[0], t.shape[1], t.device)
    return _gather(t, idx)


def group_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Group neighbourhoods: ``points [B, N, C]``, ``idx [B, S, k]`` int -> ``[B, S, k, C]`` (PointNet++ grouping).

    Differentiable in ``points``; the set-abstraction layer subtracts the centers from the grouped xyz itself.
    """
    fn = "group_points"
    t = _points(fn, points)
    idx = _checks.indices(fn, "idx", idx, t.shape[0], t.shape[1], t.device)
    if idx.dim() != 3:
        raise ShapeError(f"{fn}: idx must have shape [B, S, k], got {_checks._shape(idx)}")
    return _gather(t, idx)

