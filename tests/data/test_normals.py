"""Normals estimated from neighbourhoods: exact on a plane, outward on a sphere, checked inputs."""

import pytest
import torch

from dlparts.data.normals import estimate_normals
from dlparts.errors import ConfigError


def test_plane_normals_are_its_axis():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 2 - 1
    plane = torch.cat([xy, torch.zeros(200, 1)], dim=1)  # z = 0
    normals = estimate_normals(plane + torch.tensor([0.0, 0.0, 0.5]), k=8)  # the centroid lies on the plane
    assert torch.allclose(normals[:, 2].abs(), torch.ones(200), atol=1e-5)
    assert torch.allclose(normals[:, :2], torch.zeros(200, 2), atol=1e-5)


def test_sphere_normals_point_outward():
    g = torch.Generator().manual_seed(1)
    xyz = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    xyz = xyz / xyz.norm(dim=1, keepdim=True)  # on the unit sphere: the true normal is the point itself
    normals = estimate_normals(xyz, k=16)
    assert normals.dtype == torch.float64 and normals.shape == (1000, 3)
    assert torch.allclose(normals.norm(dim=1), torch.ones(1000, dtype=torch.float64))
    assert (normals * xyz).sum(dim=1).min() > 0.98  # outward, and within 11 degrees of the truth everywhere


@pytest.mark.parametrize("xyz, message", [(torch.zeros(10, 2), "needs points [N, 3], got [10, 2]"),
                                          (torch.zeros(2, 3), "at least 3 points")])
def test_bad_inputs_are_named(xyz, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        estimate_normals(xyz)
