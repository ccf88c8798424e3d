"""A brute-force numpy oracle of the point operators, written from their definitions one cloud and one query at a
time, independent of every backend (the reference included).

Distances are float32 ``dx*dx + dy*dy + dz*dz`` with every operation rounded on its own, the arithmetic that the
backends promise, so indices and distances must match exactly.
"""

import numpy as np
import torch


def _d2(points: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Squared float32 distances of ``points [N, 3]`` to ``p [3]``."""
    dx, dy, dz = points[:, 0] - p[0], points[:, 1] - p[1], points[:, 2] - p[2]
    return dx * dx + dy * dy + dz * dz


def _arrays(*tensors):
    return [t.detach().cpu().numpy() for t in tensors]


def _lengths(lengths, b: int, n: int) -> list[int]:
    return [n] * b if lengths is None else [int(v) for v in lengths]


def fps(xyz: torch.Tensor, m: int, start, lengths=None) -> torch.Tensor:
    """Greedy FPS: each next point the unchosen one farthest from the chosen set, ties to the lowest index."""
    (x,) = _arrays(xyz.float())
    starts = [int(start)] * x.shape[0] if isinstance(start, int) else [int(s) for s in start]
    out = []
    for cloud, n, cur in zip(x, _lengths(lengths, *x.shape[:2]), starts):
        pts = cloud[:n]
        chosen = [cur]
        mind = _d2(pts, pts[cur])
        while len(chosen) < m:
            score = mind.copy()
            score[chosen] = -1.0
            cur = int(np.argmax(score))  # the first maximum
            chosen.append(cur)
            mind = np.minimum(mind, _d2(pts, pts[cur]))
        out.append(chosen)
    return torch.tensor(out, dtype=torch.int64)


def ball_query(xyz: torch.Tensor, centers: torch.Tensor, radius: float, k: int, *, order: str = "index",
               lengths=None):
    """``(idx [B, S, k], count [B, S])``: the points with ``d2 < float32(radius)**2``, first ``k`` in index order or
    by ``(d2, index)``; slots past the count repeat slot 0; an empty ball holds its nearest point, count 0."""
    x, c = _arrays(xyz.float(), centers.float())
    r2 = np.float32(radius) * np.float32(radius)
    idx, count = [], []
    for cloud, ctrs, n in zip(x, c, _lengths(lengths, *x.shape[:2])):
        rows, counts = [], []
        for center in ctrs:
            d = _d2(cloud[:n], center)
            inside = [j for j in range(n) if d[j] < r2]
            if order == "nearest":
                inside.sort(key=lambda j: (d[j], j))
            chosen = inside[:k]
            first = chosen[0] if chosen else int(np.argmin(d))
            rows.append(chosen + [first] * (k - len(chosen)))
            counts.append(len(chosen))
        idx.append(rows)
        count.append(counts)
    return torch.tensor(idx, dtype=torch.int64), torch.tensor(count, dtype=torch.int64)


def knn(query: torch.Tensor, ref: torch.Tensor, k: int, lengths=None):
    """``(dists float32 [B, S, k], idx [B, S, k])``: the ``k`` smallest ``(d2, index)`` pairs of each query."""
    q, r = _arrays(query.float(), ref.float())
    dists, idx = [], []
    for qs, cloud, n in zip(q, r, _lengths(lengths, *r.shape[:2])):
        pairs = [sorted((float(dj), j) for j, dj in enumerate(_d2(cloud[:n], p)))[:k] for p in qs]
        dists.append([[dj for dj, _ in row] for row in pairs])
        idx.append([[j for _, j in row] for row in pairs])
    return torch.tensor(dists, dtype=torch.float32), torch.tensor(idx, dtype=torch.int64)
