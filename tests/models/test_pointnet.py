"""PointNet: counts derived by formula, summary and torch; permutation invariance; the regularizer; critical points
and the upper-bound shape; gradients and export of every registered model; overfitting 8 clouds."""

import pytest
import torch
from torch.nn import functional as F

import dlparts
from dlparts.errors import ShapeError
from dlparts.layers import fused
from dlparts.layers.fold import fold_batch_norm
from dlparts.layers.tnet import orthogonality_loss
from dlparts.models import create_model, get_model_info
from dlparts.models.pointnet import critical_points, upper_bound_mask

NAMES = ["pointnet_cls", "pointnet_cls_vanilla", "pointnet_partseg", "pointnet_semseg"]

pytestmark = pytest.mark.usefixtures("one_thread")



def _lin(i, o):
    return i * o + o


def _mlp(i, widths):  # Linear (with bias) + batch norm (weight, bias) per layer
    total = 0
    for w in widths:
        total, i = total + _lin(i, w) + 2 * w, w
    return total


def _tnet(k, i, convs=(64, 128, 1024), fcs=(512, 256)):
    return _mlp(i, convs) + _mlp(convs[-1], fcs) + _lin(fcs[-1], k * k)


def test_parameter_counts_by_formula():
    vanilla = _mlp(3, (64, 64)) + _mlp(64, (64, 128, 1024)) + _mlp(1024, (512, 256)) + _lin(256, 40)
    cls = vanilla + _tnet(3, 3) + _tnet(64, 64)
    seg_width = 2048 + 16 + 64 + 128 + 128 + 512 + 2048
    partseg = (_tnet(3, 3, fcs=(128, 128)) + _mlp(3, (64, 128, 128)) + _tnet(128, 128, convs=(256, 1024))
               + _mlp(128, (512, 2048)) + _mlp(seg_width, (256, 256, 128)) + _lin(128, 50))
    semseg = _mlp(9, (64, 64, 64, 128, 1024)) + _mlp(1024, (256, 128)) + _mlp(1152, (512, 256)) + _lin(256, 13)
    expected = dict(zip(NAMES, (cls, vanilla, partseg, semseg)))
    for name in NAMES:
        model = create_model(name)
        assert expected[name] == sum(p.numel() for p in model.parameters()), name
    assert 3.4e6 < cls < 3.6e6  # the paper's "3.5M" (Table 6)


def test_summary_counts_macs_by_hand():
    # per point: input T-Net convs, MLP (64, 64), feature T-Net convs, MLP (64, 128, 1024)
    per_point = (3 * 64 + 64 * 128 + 128 * 1024) + (3 * 64 + 64 * 64) + (64 * 64 + 64 * 128 + 128 * 1024) \
        + (64 * 64 + 64 * 128 + 128 * 1024)
    fc = (1024 * 512 + 512 * 256 + 256 * 9) + (1024 * 512 + 512 * 256 + 256 * 4096) \
        + (1024 * 512 + 512 * 256 + 256 * 40)
    # the transforms applied (x @ A per point) and the feature transform's regularizer A A^T, seen by the summary's
    # matrix-product count although no module does them
    transforms = 1024 * (3 * 3 + 64 * 64) + 64 * 64 * 64
    s = dlparts.summarize(create_model("pointnet_cls"), (1024, 3))
    assert s.macs == 1024 * per_point + fc + transforms == 448_288_000  # the paper's "440M" (Table 6)
    assert s.total_params == 3_480_049 and not s.uncounted


def _inputs(name, b=2, n=64, seed=0):
    info = get_model_info(name)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n, info.input_spec[1], generator=gen) * 2 - 1
    return (x, torch.tensor([1, 15])[:b]) if info.task == "point_partseg" else (x,)


@pytest.mark.parametrize("name", NAMES)
def test_backward_features_determinism_and_export(name):
    torch.manual_seed(0)
    model = create_model(name)
    info = get_model_info(name)
    args = _inputs(name)
    out = model(*args)
    loss = out.square().mean() + getattr(model, "regularization_loss", lambda: 0.0)()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    feats = model.forward_features(*args)
    seg = info.task != "point_cls"
    assert feats.shape == ((2, 64, {"point_partseg": 4944, "point_semseg": 1152}[info.task]) if seg else (2, 1024))
    model.eval()
    with torch.no_grad():
        first = model(*args)
        torch.testing.assert_close(model(*args), first, rtol=0, atol=0)
        exported = torch.export.export(model, args).module()
        other = _inputs(name, seed=1)
        torch.testing.assert_close(exported(*other), model(*other))


@pytest.mark.parametrize("name", ["pointnet_cls", "pointnet_cls_vanilla", "pointnet_partseg", "pointnet_semseg"])
def test_output_invariant_to_point_order(name):
    model = create_model(name).eval()
    args = _inputs(name, n=50)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    permuted = (args[0][:, perm], *args[1:])
    with torch.no_grad():
        out, out_p = model(*args), model(*permuted)
    if get_model_info(name).task == "point_cls":
        torch.testing.assert_close(out, out_p)
    else:  # per-point outputs move with their points
        torch.testing.assert_close(out[:, perm], out_p)


def test_regularization_loss_is_the_weighted_orthogonality_term():
    model = create_model("pointnet_cls")
    with torch.no_grad():
        model.feature_tnet.transform.bias.add_(0.1 * torch.randn(64 * 64, generator=torch.Generator().manual_seed(0)))
    x = _inputs("pointnet_cls")[0]
    model(x)
    _, (_, a) = model.point_features(x)
    torch.testing.assert_close(model.regularization_loss(), 0.001 * orthogonality_loss(a))
    assert model.regularization_loss() > 0
    vanilla = create_model("pointnet_cls_vanilla")
    vanilla(x)
    assert vanilla.regularization_loss().item() == 0.0


def _trained_stats(model, x):
    model.train()
    with torch.no_grad():
        model(x)  # gives batch norm non-trivial running statistics
    return model.eval()


def test_critical_points_alone_give_the_same_global_feature():
    x = _inputs("pointnet_cls", n=100)[0]
    vanilla = _trained_stats(create_model("pointnet_cls_vanilla"), x)
    crit, _ = critical_points(vanilla, x)
    with torch.no_grad():
        full = vanilla.forward_features(x)
        for b, idx in enumerate(crit):
            assert 0 < len(idx) <= 100
            torch.testing.assert_close(vanilla.forward_features(x[b:b + 1, idx]), full[b:b + 1], rtol=0, atol=0)
    model = _trained_stats(create_model("pointnet_cls"), x)
    crit, transforms = critical_points(model, x)
    with torch.no_grad():
        full = model.point_features(x)[0].amax(1)
        for b, idx in enumerate(crit):
            own = tuple(t[b:b + 1] for t in transforms)
            torch.testing.assert_close(model.point_features(x[b:b + 1, idx], own)[0].amax(1), full[b:b + 1],
                                       rtol=0, atol=0)


def test_upper_bound_shape_leaves_the_global_feature_unchanged():
    two = _inputs("pointnet_cls", n=200)[0]
    model = _trained_stats(create_model("pointnet_cls_vanilla"), two)
    x = two[:1]
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-3, 3, 13)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    inside = upper_bound_mask(model, x, grid)
    assert upper_bound_mask(model, x, x).all()  # the cloud's own points are inside
    assert 0 < inside.sum() < grid.shape[1]
    with torch.no_grad():
        grown = torch.cat([x, grid[:, inside[0]]], dim=1)
        torch.testing.assert_close(model.forward_features(grown), model.forward_features(x), rtol=0, atol=0)
        outside = torch.cat([x, grid[:, ~inside[0]][:, :1]], dim=1)
        assert not torch.equal(model.forward_features(outside), model.forward_features(x))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ShapeError, match=r"points must have shape \[B, N, 3\]"):
        create_model("pointnet_cls")(torch.zeros(2, 10, 4))
    with pytest.raises(ShapeError, match="category must have shape"):
        create_model("pointnet_partseg")(torch.zeros(2, 10, 3), torch.zeros(3, dtype=torch.long))


def _fit(model, args, target, steps, lr):
    """Adam on cross-entropy plus the regularizer; returns the last cross-entropy."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        logits = model(*args)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        loss = ce + getattr(model, "regularization_loss", lambda: 0.0)()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ce.item()


@pytest.mark.parametrize("name", NAMES)
def test_overfits_eight_clouds(name):
    torch.manual_seed(0)
    info = get_model_info(name)
    model = create_model(name, dropout=0.0)
    x = torch.rand(8, 32, info.input_spec[1], generator=torch.Generator().manual_seed(0)) * 2 - 1
    if info.task == "point_cls":
        args, target = (x,), torch.arange(8)
    elif info.task == "point_partseg":
        category = torch.arange(8) * 2
        args, target = (x, category), category[:, None] + (x[..., 2] > 0).long()
    else:
        args, target = (x,), (x[..., 0] > 0).long() + 2 * (x[..., 1] > 0).long()
    # the 128x128 transform of the part net moves far from orthogonal under a larger step
    steps, lr = (40, 1e-3) if info.task == "point_partseg" else (30, 3e-3)
    assert _fit(model, args, target, steps, lr) < 0.15  # from ln(K) = 2.1 to 3.9 at the start


def test_cls_transforms_switch_off_as_table_5_rows():
    none = create_model("pointnet_cls", num_classes=40, input_transform=False, feature_transform=False)
    vanilla = create_model("pointnet_cls_vanilla", num_classes=40)
    assert sum(p.numel() for p in none.parameters()) == sum(p.numel() for p in vanilla.parameters()) == 819_624
    only_input = create_model("pointnet_cls", feature_transform=False)
    assert only_input.input_tnet is not None and only_input.feature_tnet is None
    only_input(torch.randn(2, 64, 3))
    assert only_input.regularization_loss().item() == 0.0


@pytest.mark.parametrize("fold", [False, True])
def test_semseg_inference_path_gives_the_plain_modules_logits(monkeypatch, fold):
    x = _inputs("pointnet_semseg", b=3, n=64)[0]
    model = _trained_stats(create_model("pointnet_semseg"), x)
    model = fold_batch_norm(model) if fold else model
    taken = []
    monkeypatch.setattr(type(model), "_forward_inference",
                        lambda self, p, _f=type(model)._forward_inference: taken.append(1) or _f(self, p))
    with torch.no_grad():
        fast = model(x)
        with fused.disabled():
            plain = model(x)
        assert taken == [1]
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast16 = model(x)
            with fused.disabled():
                plain16 = model(x)
    assert fast16.dtype == plain16.dtype == torch.bfloat16
    torch.testing.assert_close(fast16.float(), plain16.float(), rtol=0.05, atol=0.1)
    model(x)  # autograd on: the plain modules
    assert taken == [1, 1]
