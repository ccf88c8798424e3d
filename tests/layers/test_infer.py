"""The inference paths of the shared MLPs and PointNet++ layers (dlparts.layers.infer): the plain modules' values
(under ``fused.disabled()``) up to float rounding, taken only in evaluation without autograd."""

import pytest
import torch
from torch import nn

from dlparts import ops
from dlparts.layers import fused, infer
from dlparts.layers.fold import fold_batch_norm
from dlparts.layers.mlp import MaxPool, SharedMLP
from dlparts.layers.pointnet2 import FeaturePropagation, GroupAll, SetAbstraction
from dlparts.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _calibrated(model: nn.Module, *inputs) -> nn.Module:
    """``model`` with the running statistics of one training pass over ``inputs`` (so that activations vary as a
    trained model's do, ReLUs cutting some), batch norm folded, eval mode."""
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm1d):
            bn.momentum = 1.0
    with torch.no_grad():
        model.train()(*inputs)
    return fold_batch_norm(model)


CALLS = ["mlp", "mlp_max", "pair_relu", "pair_mlp_max", "propagate"]  # the counted functions


def _both(module: nn.Module, *inputs, autocast: bool = False):
    """``(fast, plain)`` outputs of ``module`` under ``torch.no_grad`` (and bfloat16 autocast)."""
    with torch.no_grad(), (BF16 if autocast else torch.autocast("cpu", enabled=False)):
        fast = module(*inputs)
        with fused.disabled():
            plain = module(*inputs)
    return fast, plain


def _cloud(b, n, c=6, seed=0):
    g = _gen(seed)
    return torch.rand(b, n, 3, generator=g), torch.rand(b, n, c, generator=g)


@pytest.mark.parametrize("b", [1, 2])
def test_set_abstraction_with_padded_neighbourhoods_is_the_plain_one(count_calls, monkeypatch, b):
    # A small radius leaves most neighbourhoods short: ball query pads them by repeating a neighbour, so the max
    # sees ties.
    xyz, feats = _cloud(b, 128)
    layer = _calibrated(SetAbstraction(32, [0.1, 0.3], [8, 16], [[16, 16, 32], [16, 32]], 6), xyz, feats)
    calls = count_calls(infer, CALLS)
    monkeypatch.setattr(infer, "ROWS", 100)  # blocks of 12 and 6 groups (k = 8, 16), the last ones shorter
    (centres, fast), (_, plain) = _both(layer, xyz, feats)
    assert calls["pair_mlp_max"] == 2 and calls["pair_relu"] == -(-32 * b // 12) - (-32 * b // 6)
    assert fast.shape == (b, 32, 64) and (plain == 0).any() and (plain > 0).any()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    idx = ops.ball_query(xyz, centres, 0.1, 8).idx
    assert (idx[..., 1:] == idx[..., :1]).any()  # repeats from padding were there


@pytest.mark.parametrize("mlp", [[8, 16], [16]])
def test_set_abstraction_without_features_and_with_normalized_offsets(count_calls, mlp):
    xyz, _ = _cloud(2, 64)
    layer = _calibrated(SetAbstraction(16, [0.25], [8], [mlp], normalize_xyz=True), xyz)
    calls = count_calls(infer, CALLS)
    fast, plain = _both(layer, xyz)
    assert calls["pair_mlp_max"] == 1
    torch.testing.assert_close(fast[1], plain[1], rtol=1e-5, atol=1e-5)


def test_group_all_gives_one_coarse_point_and_the_plain_max(count_calls):
    xyz, feats = _cloud(2, 32)
    layer = _calibrated(GroupAll([16, 32], 6), xyz, feats)
    calls = count_calls(infer, CALLS)
    (zeros, fast), (_, plain) = _both(layer, xyz, feats)
    assert calls["mlp_max"] == 1 and fast.shape == (2, 1, 32) and not zeros.any()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m, with_skip", [(16, True), (16, False), (1, False), (2, True)])
def test_feature_propagation_is_the_plain_interpolation_and_mlp(count_calls, m, with_skip):
    # m = 1 follows a group-all layer (every point gets its features), m = 2 has fewer than 3 neighbours.
    xyz, skip = _cloud(2, 64, 5)
    coarse_xyz, coarse = _cloud(2, m, 12, seed=1)
    coarse_xyz[:, 0] = xyz[:, 0]  # a fine point on a coarse one: its weight is almost all there is
    skip = skip if with_skip else None
    layer = _calibrated(FeaturePropagation(12 + (5 if with_skip else 0), [16, 8]), xyz, coarse_xyz, skip, coarse)
    calls = count_calls(infer, CALLS)
    fast, plain = _both(layer, xyz, coarse_xyz, skip, coarse)
    assert calls["propagate"] == 1 and fast.shape == (2, 64, 8) and (plain == 0).any()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_pair_relu_equals_torch_in_float32_and_bfloat16():
    g = _gen(3)
    per_point, per_centre = torch.randn(2, 20, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    idx = torch.randint(0, 20, (2, 5, 4), generator=g)
    for dtype in (torch.float32, torch.bfloat16):
        p, c = per_point.to(dtype), per_centre.to(dtype)
        want = torch.relu(ops.group_points(p, idx) - c[:, :, None, :])  # [2, 5, 4, 8]
        assert torch.equal(infer.pair_relu(p, idx, c).view(2, 5, 4, 8), want)
        assert torch.equal(infer.pair_relu(p, idx, c, start=3, groups=4).view(4, 4, 8), want.view(10, 4, 8)[3:7])


@pytest.mark.parametrize("name, shape", [("pointnet2_semseg_ssg", (2, 1024, 9)), ("pointnet2_cls_ssg", (1, 512, 3)),
                                         ("pointnet2_cls_msg", (2, 512, 3))])
def test_whole_models_match_the_plain_modules_in_fp32_and_bf16(count_calls, name, shape):
    torch.manual_seed(0)
    x = torch.rand(2, *shape[1:], generator=_gen(4))
    kwargs = {"num_classes": 13, "in_channels": 9} if "semseg" in name else {}
    model = _calibrated(create_model(name, **kwargs), x)  # the head's batch norm needs 2 clouds in training
    x = x[:shape[0]]
    calls = count_calls(infer, CALLS)
    fast, plain = _both(model, x)
    assert calls["mlp_max"] > 0 and calls["mlp"] > 0 and calls["pair_relu"] > 0
    assert calls["propagate"] == (4 if "semseg" in name else 0)
    # These statistics amplify rounding many times over (the plain modules with the first layer per pair rather than
    # per point move the logits by 3e-3 too), so the labels are compared here, the values at the initial statistics.
    assert (fast.argmax(-1) == plain.argmax(-1)).float().mean() >= 0.98
    model = fold_batch_norm(create_model(name, **kwargs))
    fast, plain = _both(model, x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5 * plain.abs().max().item())
    # Under autocast the fast path's rounding is to be no worse than the plain modules'.
    fast16, plain16 = _both(model, x, autocast=True)
    assert fast16.dtype == plain16.dtype == torch.bfloat16
    error, plain_error = (fast16.float() - plain).abs().mean(), (plain16.float() - plain).abs().mean()
    assert error < 1.5 * plain_error and error < 0.01 * plain.abs().max()
    assert (fast16.argmax(-1) == plain16.argmax(-1)).float().mean() >= 0.98


def test_training_autograd_and_unfolded_batch_norm_keep_the_plain_modules(count_calls):
    xyz, feats = _cloud(2, 64)
    layer = SetAbstraction(16, [0.3], [8], [[8, 16]], 6)
    calls = count_calls(infer, CALLS)
    layer.eval()(xyz, feats)  # autograd records
    with torch.no_grad():
        layer.train()(xyz, feats)  # batch statistics
        layer.eval()(xyz, feats)  # batch norm not folded: its own pass
        with fused.disabled():
            fold_batch_norm(layer)(xyz, feats)
    assert not any(calls.values())
    with torch.no_grad():
        fold_batch_norm(layer)(xyz, feats)
    assert calls["pair_mlp_max"] == 1


def test_shared_mlp_with_dropout_in_eval_takes_the_path_and_not_in_training(count_calls):
    mlp = fold_batch_norm(SharedMLP(4, (8, 6), dropout=(0.5, 0.0)))
    x = torch.randn(3, 7, 4, generator=_gen(5))
    calls = count_calls(infer, CALLS)
    fast, plain = _both(mlp, x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert calls["mlp"] == 1
    fast_max, plain_max = _both(lambda h: mlp.forward_max(h, MaxPool(dim=1)), x)
    torch.testing.assert_close(fast_max, plain_max, rtol=1e-5, atol=1e-5)
    assert calls["mlp_max"] == 1
    taken = dict(calls)
    with torch.no_grad():
        mlp[3].train()  # the dropout alone in training mode
        mlp(x)
        mlp.forward_max(x, MaxPool(dim=1))
    assert calls == taken
