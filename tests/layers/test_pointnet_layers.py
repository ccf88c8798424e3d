"""Shared MLP, max pool, T-Net and the PointNet++ layers: exact values, the first layer per point against the plain
order, invariances."""

import pytest
import torch
from torch import nn

from dlparts.errors import ConfigError
from dlparts.layers.mlp import MaxPool, PointBatchNorm, SharedMLP
from dlparts.layers.pointnet2 import FeaturePropagation, GroupAll, SetAbstraction
from dlparts.layers.tnet import TNet, orthogonality_loss

pytestmark = pytest.mark.usefixtures("one_thread")



def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_shared_mlp_is_the_same_function_for_every_point():
    mlp = SharedMLP(5, (8, 4)).eval()
    x = torch.randn(2, 7, 5, generator=_gen())
    out = mlp(x)
    assert out.shape == (2, 7, 4)
    one_by_one = torch.stack([torch.stack([mlp(x[b, n][None])[0] for n in range(7)]) for b in range(2)])
    torch.testing.assert_close(out, one_by_one)


def test_point_batch_norm_matches_conv_layout_batch_norm_in_training():
    ours, theirs = PointBatchNorm(6), nn.BatchNorm2d(6)
    x = torch.randn(3, 5, 4, 6, generator=_gen()) * 3 + 1  # [B, S, k, C]
    torch.testing.assert_close(ours(x), theirs(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
    torch.testing.assert_close(ours.running_var, theirs.running_var)


def test_shared_mlp_rejects_bad_dropout_list():
    with pytest.raises(ConfigError, match="one probability per layer"):
        SharedMLP(3, (8, 8), dropout=(0.5,))


def test_max_pool_is_order_invariant_and_counts_comparisons():
    x = torch.randn(2, 10, 3, generator=_gen())
    pool = MaxPool(dim=1)
    perm = torch.randperm(10, generator=_gen(1))
    torch.testing.assert_close(pool(x), pool(x[:, perm]), rtol=0, atol=0)
    assert pool(torch.tensor([[[1.0, -2.0], [3.0, -5.0]]])).tolist() == [[3.0, -2.0]]
    assert pool.dlparts_cost((x,), pool(x)) == {"macs": 0, "flops": 2 * 9 * 3}


def test_tnet_starts_at_identity():
    tnet = TNet(3)
    a = tnet(torch.randn(2, 16, 3, generator=_gen()))
    torch.testing.assert_close(a, torch.eye(3).expand(2, 3, 3))


def test_orthogonality_loss_exact_values():
    q, _ = torch.linalg.qr(torch.randn(4, 64, 64, generator=_gen(), dtype=torch.float64))
    assert orthogonality_loss(q).item() == pytest.approx(0.0, abs=1e-20)
    two = 2 * torch.eye(3).expand(2, 3, 3)  # I - 4I = -3I: 3 entries of 9
    assert orthogonality_loss(two).item() == 27.0
    rot_and_scale = torch.stack([torch.eye(3), torch.diag(torch.tensor([1.0, 1.0, 3.0]))])  # 0 and 8^2, mean 32
    assert orthogonality_loss(rot_and_scale).item() == 32.0


def test_feature_propagation_from_one_point_broadcasts():
    fp = FeaturePropagation(6 + 2, (5,)).eval()
    coarse = torch.randn(2, 1, 6, generator=_gen())
    skip = torch.randn(2, 9, 2, generator=_gen(1))
    out = fp(torch.rand(2, 9, 3), torch.zeros(2, 1, 3), skip, coarse)
    torch.testing.assert_close(out, fp.mlp(torch.cat([coarse.expand(-1, 9, -1), skip], -1)))


def _cloud(b=2, n=64, d=4, seed=0, dtype=torch.float64):
    xyz = torch.rand(b, n, 3, generator=_gen(seed), dtype=dtype)
    return xyz, torch.randn(b, n, d, generator=_gen(seed + 1), dtype=dtype)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("with_features", [False, True])
def test_first_layer_per_point_equals_plain_order_values_and_gradients(normalize, with_features):
    xyz, feats = _cloud()
    feats = feats if with_features else None
    d = 4 if with_features else 0
    plain = SetAbstraction(16, (0.2, 0.4), (8, 16), ((8, 8), (6, 10)), d, normalize_xyz=normalize,
                           first_layer_per_point=False).double()
    per_point = SetAbstraction(16, (0.2, 0.4), (8, 16), ((8, 8), (6, 10)), d, normalize_xyz=normalize).double()
    per_point.load_state_dict(plain.state_dict())
    results = []
    for layer in (plain, per_point):
        x = xyz.clone().requires_grad_()
        centres, out = layer(x, feats)
        out.square().sum().backward()
        results.append((centres, out, x.grad, [p.grad for p in layer.parameters()]))
    (c0, o0, g0, p0), (c1, o1, g1, p1) = results
    assert o0.shape == (2, 16, 18)
    torch.testing.assert_close(c0, c1, rtol=0, atol=0)
    torch.testing.assert_close(o0, o1)
    torch.testing.assert_close(g0, g1)
    for a, b in zip(p0, p1):
        torch.testing.assert_close(a, b)


def test_set_abstraction_groups_relative_coordinates_exactly():
    # one cloud on a line; centre 0 is point 0 (the paper's start); radius 1.5 holds points 0 and 1 only
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [9, 0, 0]]])
    sa = SetAbstraction(2, (1.5,), (3,), ((1,),), first_layer_per_point=False)
    grouped = sa._grouped(xyz, xyz[:, [0, 3]], None, torch.tensor([[[0, 1, 0], [3, 3, 3]]]), 1.0)
    assert grouped[0, 0].tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert grouped[0, 1].tolist() == [[0, 0, 0]] * 3


def test_set_abstraction_order_invariant_with_centroid_farthest_and_nearest():
    xyz, feats = _cloud(n=96)
    sa = SetAbstraction(24, (0.3,), (8,), ((16, 16),), 4, start="centroid-farthest", order="nearest").double().eval()
    perm = torch.randperm(96, generator=_gen(5))
    c0, o0 = sa(xyz, feats)
    c1, o1 = sa(xyz[:, perm], feats[:, perm])
    torch.testing.assert_close(c0, c1)
    torch.testing.assert_close(o0, o1)


def test_group_all_is_a_pointnet_over_xyz_and_features():
    xyz, feats = _cloud(n=10, dtype=torch.float32)
    layer = GroupAll((8, 16), 4).eval()
    centre, out = layer(xyz, feats)
    assert centre.tolist() == [[[0.0, 0.0, 0.0]]] * 2
    torch.testing.assert_close(out[:, 0], layer.mlp(torch.cat([xyz, feats], -1)).amax(1))


def test_set_abstraction_cost_by_hand():
    sa = SetAbstraction(4, (0.2,), (8,), ((16,),), 2)
    # FPS 10 * S * N, ball query 9 * S * N, first layer per point: S * 3 * C1 MACs and S * k * C1 subtractions
    assert sa.dlparts_cost((torch.zeros(1, 32, 3),), None) == {
        "macs": 4 * 3 * 16, "flops": 4 * 32 * 19 + 4 * 8 * 16 + 2 * 4 * 3 * 16}
    sa.first_layer_per_point = False
    assert sa.dlparts_cost((torch.zeros(1, 32, 3),), None) == {"macs": 0, "flops": 4 * 32 * 19 + 4 * 8 * 3}


@pytest.mark.parametrize("kwargs, message", [
    (dict(start="random"), "start='random'"),
    (dict(order="far"), "order='far'"),
])
def test_set_abstraction_rejects_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SetAbstraction(4, (0.2,), (8,), ((16,),), **kwargs)
    with pytest.raises(ConfigError, match="one entry per scale"):
        SetAbstraction(4, (0.2, 0.4), (8,), ((16,),))

