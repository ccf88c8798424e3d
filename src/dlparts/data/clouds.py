"""Any mesh or point file to a point cloud: ``n`` points, centred and scaled into the unit sphere.

PointNet (Qi et al., CVPR 2017) Sec. 5.1 and PointNet++ (Qi et al., NeurIPS 2017) Sec. 4 normalize each ModelNet40
cloud into the unit sphere; PointNet++'s 2048/10k-point files were made by oversampling the surface and keeping points
by farthest point sampling.  :func:`load_points` does the same for any file :mod:`dlparts.data.meshes` or
:mod:`dlparts.data.points` reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dlparts.data._limits import ENV_MAX_POINTS, max_values
from dlparts.data.meshes import MESH_SUFFIXES, read_mesh, sample_surface
from dlparts.data.points import POINT_SUFFIXES, read_points
from dlparts.data.splits import torch_generator
from dlparts.errors import ConfigError, DataError
from dlparts.ops import farthest_point_sample


def normalize_unit_sphere(points: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` -> ``[N, C]``: xyz centred on its mean and scaled so the farthest point lies on the unit sphere.

    Channels after xyz (normals, colours) are unchanged.  A cloud of one repeated point is only centred.
    """
    xyz = points[:, :3].double()
    xyz = xyz - xyz.mean(dim=0)
    radius = float(xyz.norm(dim=1).max())
    if radius > 0:
        xyz = xyz / radius
    return torch.cat([xyz.to(points.dtype), points[:, 3:]], dim=1)


def farthest_subset(points: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``int64 [n]`` indices of ``points [M, 3]`` chosen by farthest point sampling from a random start."""
    idx = farthest_point_sample(points[None, :, :3], n, start="random", generator=generator)  # [1, n]
    return idx[0]


def load_points(path: str | Path, n: int, *, normals: bool = False, fps: bool = False, oversample: int = 4,
                seed: int | None = None, generator: torch.Generator | None = None,
                drop_nonfinite: bool = False) -> torch.Tensor:
    """A cloud of ``n`` points from any mesh or point file: ``float32 [n, 3]`` (``[n, 6]`` with ``normals``).

    Meshes are sampled on their surface (:func:`sample_surface`); with ``fps``, ``oversample * n`` points are sampled
    first and ``n`` kept by farthest point sampling, as PointNet++ made its ModelNet40 files.  Point files with more
    than ``n`` points give a random subset (or FPS), with fewer a random subset repeated.  The result is centred and
    inside the unit sphere (:func:`normalize_unit_sphere`).  Randomness: ``generator``, else ``seed`` (default 0).
    NaN/inf coordinates are a :class:`~dlparts.errors.NonFiniteError` with their count, or with ``drop_nonfinite``
    dropped (points, or mesh vertices with the faces using them).
    """
    path = Path(path)
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if oversample < 1:
        raise ConfigError(f"oversample must be >= 1, got {oversample}")
    if 6 * n * oversample > max_values():
        raise ConfigError(f"n={n} points (x oversample={oversample}) is beyond the limit of {max_values()} values "
                          f"({ENV_MAX_POINTS})")
    gen = torch_generator(seed, generator)
    suffix = path.suffix.lower()
    if suffix in MESH_SUFFIXES:
        mesh = read_mesh(path, drop_nonfinite=drop_nonfinite)
        if mesh.faces.numel() == 0:
            return _from_points(path, mesh.vertices, None, n, normals, fps, gen)
        pts, nrm, _ = sample_surface(mesh, n * oversample if fps else n, generator=gen, name=str(path))
        cloud = torch.cat([pts, nrm], dim=1) if normals else pts
        if fps and oversample > 1:
            cloud = cloud[farthest_subset(pts, n, gen)]  # [n, C]
        return normalize_unit_sphere(cloud)
    if suffix in POINT_SUFFIXES:
        data = read_points(path, drop_nonfinite=drop_nonfinite)
        return _from_points(path, data.points, data.normals, n, normals, fps, gen)
    raise DataError(f"{path}: unknown format {suffix!r}; expected a mesh ({', '.join(MESH_SUFFIXES)}) "
                    f"or a point file ({', '.join(POINT_SUFFIXES)})")


def _from_points(path: Path, xyz: torch.Tensor, nrm: torch.Tensor | None, n: int, normals: bool, fps: bool,
                 gen: torch.Generator) -> torch.Tensor:
    if normals and nrm is None:
        raise DataError(f"{path}: normals were asked for, but the file holds only xyz")
    cloud = torch.cat([xyz, nrm], dim=1) if normals else xyz
    m = len(cloud)
    if m > n:
        idx = farthest_subset(xyz, n, gen) if fps else torch.randperm(m, generator=gen)[:n]
    else:
        idx = torch.cat([torch.randperm(m, generator=gen), torch.randint(m, (n - m,), generator=gen)])
    return normalize_unit_sphere(cloud[idx].float())  # [n, C]
