"""Peers shared by more than one benchmark, written the way the popular PyTorch PointNet++ repository writes them."""

from __future__ import annotations

import torch


def torch_loop_fps(xyz: torch.Tensor, m: int) -> torch.Tensor:
    """The popular repository's FPS: a Python loop over samples, a masked distance update per step (on a GPU the
    mask costs a host sync per step, as it does there), start 0 here rather than random: ``[B, N, 3] -> [B, m]``."""
    b, n, _ = xyz.shape
    idx = torch.zeros(b, m, dtype=torch.long, device=xyz.device)
    distance = torch.full((b, n), 1e10, device=xyz.device)
    farthest = torch.zeros(b, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(m):
        idx[:, i] = farthest
        centroid = xyz[rows, farthest][:, None, :]  # [B, 1, 3]
        dist = torch.sum((xyz - centroid) ** 2, -1)
        mask = dist < distance
        distance[mask] = dist[mask]
        farthest = torch.max(distance, -1)[1]
    return idx
