import pytest
import torch

from dlparts import ops

from .conftest import cloud


def test_three_interpolate_hand_computed(backend):
    known = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [9, 9, 9]]])
    feats = torch.tensor([[[1.0, 10], [2, 20], [4, 40], [100, 100]]])
    unknown = torch.tensor([[[1.0, 0, 0], [0, 0, 0]]])
    out = ops.three_interpolate(unknown.to(backend.device), known.to(backend.device), feats.to(backend.device),
                                backend=backend.name).cpu()
    # Point (1,0,0): d2 = 1, 1, 5 -> w = 1, 1, .2 (eps negligible) -> (1 + 2 + .8) / 2.2.
    torch.testing.assert_close(out[0, 0], torch.tensor([3.8 / 2.2, 38 / 2.2]))
    # Point on a known point: its features, up to eps.
    torch.testing.assert_close(out[0, 1], torch.tensor([1.0, 10.0]), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(out).all()


def test_three_interpolate_fewer_known_points(backend):
    known = torch.tensor([[[0.0, 0, 0], [5, 5, 5]]])
    feats = torch.tensor([[[3.0], [7.0]]])
    unknown = cloud(1, 6, 0)
    out = ops.three_interpolate(unknown.to(backend.device), known.to(backend.device), feats.to(backend.device),
                                lengths=torch.tensor([1]).to(backend.device), backend=backend.name)
    assert out.cpu().tolist() == [[[3.0]] * 6]


def test_three_interpolate_gradcheck(backend):
    dev = backend.device
    unknown = cloud(2, 5, 1).double().to(dev).requires_grad_()
    known = cloud(2, 7, 2).double().to(dev).requires_grad_()
    feats = torch.randn(2, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(dev)
    feats.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda u, k, f: ops.three_interpolate(u, k, f, backend=backend.name), (unknown, known, feats))


def test_gather_points_hand_computed():
    pts = torch.arange(12.0).reshape(1, 4, 3)
    assert ops.gather_points(pts, torch.tensor([[3, 0, 3]])).tolist() == [[[9, 10, 11], [0, 1, 2], [9, 10, 11]]]


def test_group_points_shape_and_values():
    pts = torch.arange(24.0).reshape(2, 4, 3)
    idx = torch.tensor([[[0, 1], [2, 2]], [[3, 0], [1, 1]]])
    out = ops.group_points(pts, idx)
    assert out.shape == (2, 2, 2, 3)
    assert out[1, 0].tolist() == [[21, 22, 23], [12, 13, 14]]


def test_gather_group_gradcheck():
    pts = torch.randn(2, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    idx = torch.tensor([[[0, 5, 5], [1, 1, 2]], [[4, 4, 4], [3, 0, 1]]])
    assert torch.autograd.gradcheck(lambda p: ops.group_points(p, idx), (pts,))
    assert torch.autograd.gradcheck(lambda p: ops.gather_points(p, idx[:, 0]), (pts,))
    ops.group_points(pts, idx).sum().backward()
    assert pts.grad[0, 5].tolist() == [2.0] * 4 and pts.grad[0, 3].tolist() == [0.0] * 4


@pytest.mark.parametrize("fn", [ops.gather_points, ops.group_points])
def test_index_out_of_range(fn):
    from dlparts.errors import ConfigError

    idx = torch.tensor([[[0, 4]]]) if fn is ops.group_points else torch.tensor([[0, 4]])
    with pytest.raises(ConfigError, match=r"idx must lie in \[0, 3\], got values from 0 to 4"):
        fn(torch.zeros(1, 4, 2), idx)
