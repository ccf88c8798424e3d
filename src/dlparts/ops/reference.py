"""Plain-PyTorch point operators: the specification that every backend must reproduce exactly.

Written for clarity, on any device.  Distances are squared Euclidean in float32, computed as ``dx*dx + dy*dy + dz*dz``
in that order with every product and sum rounded on its own (separate tensor ops, so nothing is contracted into an FMA);
a backend that does the same arithmetic gets bit-identical distances and therefore identical indices.

Backend interface
-----------------
A backend is a module (``reference``, ``cpu``, ``cuda``) defining ``DEVICE_TYPES`` and three functions.  The front
(``dlparts.ops``) has already checked and normalized every argument, so a backend does no checks of its own:

- ``xyz``, ``centers``, ``query``, ``ref``: contiguous ``float32`` tensors of shape ``[B, N, 3]`` (``[B, S, 3]``) on one
  device; every coordinate is finite.
- ``lengths``: contiguous ``int64 [B]`` on the same device, always present, ``1 <= lengths[b] <= N``; points ``n >=
  lengths[b]`` of cloud ``b`` do not exist (their coordinates are arbitrary and must be ignored).
- Python ``int`` / ``float`` scalars, already range-checked.

``DEVICE_TYPES: tuple[str, ...]``
    Device types (``"cpu"``, ``"cuda"``) whose tensors the backend accepts; ``()`` means any device.

``fps(xyz, lengths, m, start) -> idx``
    ``start``: ``int64 [B]`` with ``0 <= start[b] < lengths[b]``; ``1 <= m <= min(lengths)``.
    Returns ``int64 [B, m]``: ``idx[b, 0] = start[b]``; each following index is the not-yet-chosen valid point whose
    squared distance to the nearest chosen point is largest, ties to the lowest index (so ``m == lengths[b]`` gives a
    permutation even with duplicate points).
``ball_query(xyz, centers, lengths, radius2, k, nearest) -> (idx, count)``
    ``radius2``: float32-representable Python float (``float32(r) * float32(r)`` rounded to float32), ``k >= 1``.
    A point is in the ball when ``d2 < radius2``.  Returns ``idx int64 [B, S, k]``, ``count int64 [B, S]`` with
    ``count = min(points in ball, k)``.  ``nearest=False``: the first ``count`` points in index order;
    ``nearest=True``: the ``count`` nearest, sorted by ``(d2, index)``.  Slots ``>= count`` repeat slot 0; a center
    with an empty ball gets its nearest valid point (ties to the lowest index) in every slot and ``count = 0``.
``knn(query, ref, lengths, k) -> (dists, idx)``
    ``1 <= k <= min(lengths)`` (lengths of ``ref``).  Returns ``float32 [B, S, k]`` squared distances and
    ``int64 [B, S, k]`` indices of the ``k`` nearest valid ref points, sorted by ``(d2, index)``.

Gathering, grouping, interpolation weights and autograd live in the front and are plain torch on every device.
"""

from __future__ import annotations

import torch

DEVICE_TYPES: tuple[str, ...] = ()

# Rows of the dense [rows, N] distance matrix computed at once; bounds the reference's memory on large clouds.
_CHUNK_ELEMENTS = 1 << 22


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances ``a [..., 3]`` to ``b [..., 3]`` (broadcast) as ``dx*dx + dy*dy + dz*dz``, each op rounded."""
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    dz = a[..., 2] - b[..., 2]
    return dx * dx + dy * dy + dz * dz


def _valid_mask(lengths: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, N]`` bool, True where point ``n`` exists in cloud ``b``."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor) -> torch.Tensor:
    """Farthest point sampling (PointNet++, Qi et al. 2017, Sec. 3.2): ``xyz [B, N, 3]`` -> ``idx [B, m]``.

    The plain greedy loop, batched: ``mind[b, n]`` is the squared distance of point ``n`` to the chosen set; chosen
    and missing points are held at -1 so they are never chosen (again).
    """
    b, n, _ = xyz.shape
    rows = torch.arange(b, device=xyz.device)
    valid = _valid_mask(lengths, n)
    mind = torch.where(valid, torch.full_like(xyz[..., 0], float("inf")), torch.full_like(xyz[..., 0], -1.0))
    idx = torch.empty(b, m, dtype=torch.int64, device=xyz.device)
    cur = start.clone()
    for i in range(m):
        idx[:, i] = cur
        d = sq_dist(xyz, xyz[rows, cur][:, None, :])  # [B, N]
        mind = torch.where(mind >= 0, torch.minimum(mind, d), mind)
        mind[rows, cur] = -1.0
        cur = torch.argmax(mind, dim=1)  # first maximum: ties go to the lowest index
    return idx


def _chunks(s: int, n: int):
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for lo in range(0, s, step):
        yield lo, min(s, lo + step)


def ball_query(
    xyz: torch.Tensor, centers: torch.Tensor, lengths: torch.Tensor, radius2: float, k: int, nearest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ball query (PointNet++ Sec. 3.2 grouping): ``idx [B, S, k]``, ``count [B, S]``; see the module docstring."""
    b, n, _ = xyz.shape
    s = centers.shape[1]
    valid = _valid_mask(lengths, n)[:, None, :]  # [B, 1, N]
    arange = torch.arange(n, device=xyz.device)
    idx = torch.empty(b, s, k, dtype=torch.int64, device=xyz.device)
    count = torch.empty(b, s, dtype=torch.int64, device=xyz.device)
    for lo, hi in _chunks(s, n):
        d = sq_dist(centers[:, lo:hi, None, :], xyz[:, None, :, :])  # [B, s, N]
        inside = (d < radius2) & valid
        if nearest:
            key = torch.where(inside, d, torch.full_like(d, float("inf")))
            order = torch.sort(key, dim=2, stable=True).indices  # [B, s, N], by (d2, index)
        else:
            key = torch.where(inside, arange, n)
            order = torch.sort(key, dim=2).values  # [B, s, N], inside indices first, ascending
        order = order[:, :, :k]
        if order.shape[2] < k:
            order = torch.cat([order, order[:, :, :1].expand(-1, -1, k - order.shape[2])], dim=2)  # [B, s, k]
        cnt = inside.sum(dim=2).clamp(max=k)  # [B, s]
        nearest_any = torch.argmin(torch.where(valid, d, torch.full_like(d, float("inf"))), dim=2)  # [B, s]
        first = torch.where(cnt > 0, order[:, :, 0], nearest_any)  # [B, s]
        slot = torch.arange(k, device=xyz.device)
        idx[:, lo:hi] = torch.where(slot[None, None, :] < cnt[:, :, None], order, first[:, :, None])
        count[:, lo:hi] = cnt
    return idx, count


def knn(query: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours: ``dists float32 [B, S, k]`` (squared), ``idx int64 [B, S, k]``, sorted by (d2, index)."""
    b, n, _ = ref.shape
    s = query.shape[1]
    valid = _valid_mask(lengths, n)[:, None, :]  # [B, 1, N]
    dists = torch.empty(b, s, k, dtype=torch.float32, device=ref.device)
    idx = torch.empty(b, s, k, dtype=torch.int64, device=ref.device)
    for lo, hi in _chunks(s, n):
        d = sq_dist(query[:, lo:hi, None, :], ref[:, None, :, :])  # [B, s, N]
        d = torch.where(valid, d, torch.full_like(d, float("inf")))
        sorted_d, order = torch.sort(d, dim=2, stable=True)  # [B, s, N], by (d2, index)
        dists[:, lo:hi] = sorted_d[:, :, :k]
        idx[:, lo:hi] = order[:, :, :k]
    return dists, idx
