"""Normals of a point cloud that has none, estimated from its neighbourhoods.

Each point's normal is the direction of least variance of its ``k`` nearest neighbours (principal component analysis
of the local covariance, Hoppe et al., "Surface reconstruction from unorganized points", SIGGRAPH 1992).  PCA gives
the normal's line but not its side; the side chosen points away from the cloud's centroid, which is right for the
closed, roughly convex shapes of ModelNet and ShapeNet and for every point of a sphere.
"""

from __future__ import annotations

import torch

from dlparts.errors import ConfigError
from dlparts.ops import knn


def estimate_normals(xyz: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Unit normals ``[N, 3]`` (xyz's dtype) of the points ``xyz [N, 3]`` from their ``k`` nearest neighbours (the
    point itself included), oriented away from the centroid.  ``k`` is clipped to ``N``; at least 3 points."""
    if xyz.dim() != 2 or xyz.shape[1] != 3:
        raise ConfigError(f"estimate_normals needs points [N, 3], got {list(xyz.shape)}")
    if len(xyz) < 3:
        raise ConfigError(f"estimate_normals needs at least 3 points to fit a plane, got {len(xyz)}")
    pts = xyz.double()
    idx = knn(xyz[None].float(), xyz[None].float(), min(k, len(xyz))).idx[0]  # [N, k]
    near = pts[idx]  # [N, k, 3]
    centred = near - near.mean(dim=1, keepdim=True)  # [N, k, 3]
    cov = centred.transpose(1, 2) @ centred  # [N, 3, 3]
    normals = torch.linalg.eigh(cov).eigenvectors[:, :, 0]  # [N, 3], eigenvalues ascending: the least variance
    inward = ((pts - pts.mean(dim=0)) * normals).sum(dim=1) < 0  # [N]
    normals[inward] = -normals[inward]
    return normals.to(xyz.dtype)
