"""Voting evaluation (PointNet section 5.1, PointNet++ section 4.1): the mean of a model's logits over rotated and
scaled copies of each cloud."""

from __future__ import annotations

import math

import torch

from dlparts.data.transforms import axis_rotation


def vote_logits(forward, points: torch.Tensor, votes: int, axis: int = 2, scale: tuple[float, float] = (0.8, 1.25),
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The mean of ``forward`` over ``votes`` copies of ``points [B, N, C]``: copy ``i`` rotated by ``2 pi i / votes``
    about the up ``axis`` (0, 1 or 2; the rotation of the data layer's augmentation,
    :func:`~dlparts.data.transforms.axis_rotation`) and, for ``i > 0``, scaled by a factor drawn uniformly from
    ``scale``.  Only xyz (channels 0..2) moves.  ``votes=1`` is the plain forward."""
    total = None
    for i in range(votes):
        rot = axis_rotation(2 * math.pi * i / votes, axis).to(points.device, points.dtype)  # [3, 3]
        factor = 1.0 if i == 0 else float(torch.empty(()).uniform_(*scale, generator=generator))
        copy = points.clone()
        copy[..., :3] = points[..., :3] @ rot * factor  # [B, N, 3]
        logits = forward(copy)
        total = logits if total is None else total + logits
    return total / votes
