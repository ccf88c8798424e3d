"""PointNet++: the SSG classifier's count and MACs by hand and by dlparts.summary, the fused first layer against the
plain order, order invariance, gradients and export of every variant, overfitting 8 clouds."""

import pytest
import torch
from torch.nn import functional as F

import dlparts
from dlparts.models import create_model, get_model_info, list_models
from dlparts.models.pointnet2 import Level, PointNet2, Variant

NAMES = ["pointnet2_cls_ssg", "pointnet2_cls_msg", "pointnet2_partseg_ssg", "pointnet2_partseg_msg",
         "pointnet2_semseg_ssg", "pointnet2_semseg_msg"]

pytestmark = pytest.mark.usefixtures("one_thread")



def test_every_variant_is_registered():
    assert list_models("pointnet2_*") == sorted(NAMES)


def test_cls_ssg_macs_by_hand_and_by_summary():
    sa1 = 512 * 32 * (3 * 64 + 64 * 64 + 64 * 128)
    sa2 = 128 * 64 * (131 * 128 + 128 * 128 + 128 * 256)
    sa3 = 128 * (259 * 256 + 256 * 512 + 512 * 1024)
    head = 1024 * 512 + 512 * 256 + 256 * 40
    plain = dlparts.summarize(create_model("pointnet2_cls_ssg", first_layer_per_point=False), (1024, 3))
    assert plain.macs == sa1 + sa2 + sa3 + head == 837_527_552  # PointNeXt's 0.84 GMACs
    assert plain.total_params == 1_475_688 and not plain.uncounted
    fused = dlparts.summarize(create_model("pointnet2_cls_ssg"), (1024, 3))
    # the first layers of SA1 and SA2 per point (1024 and 512 points) plus a 3-column product per centre
    first = 512 * 32 * 3 * 64 + 128 * 64 * 131 * 128
    assert fused.macs == plain.macs - first + 1024 * 3 * 64 + 512 * 3 * 64 + 512 * 131 * 128 + 128 * 3 * 128
    assert fused.macs == 705_947_648
    point_ops = sum(r.flops for r in fused.rows if r.type == "SetAbstraction")
    assert point_ops == 1024 * 512 * 19 + 512 * 32 * 64 + 2 * 512 * 3 * 64 + 512 * 128 * 19 + 128 * 64 * 128 \
        + 2 * 128 * 3 * 128


def _inputs(name, b=2, seed=0, dtype=torch.float32):
    info = get_model_info(name)
    n = 1024 if info.task == "point_semseg" else 512
    x = torch.rand(b, n, info.input_spec[1], generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1
    return (x, torch.tensor([0, 15])[:b]) if info.task == "point_partseg" else (x,)


@pytest.mark.parametrize("name", NAMES)
def test_backward_determinism_and_export(name):
    torch.manual_seed(0)
    model = create_model(name)
    args = _inputs(name)
    model(*args).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(*args), model(*args), rtol=0, atol=0)
        exported = torch.export.export(model, args).module()
        other = _inputs(name, seed=1)
        torch.testing.assert_close(exported(*other), model(*other))


def test_first_layer_per_point_equals_plain_order_in_the_whole_model():
    args = _inputs("pointnet2_partseg_msg", b=1, dtype=torch.float64)
    plain = create_model("pointnet2_partseg_msg", first_layer_per_point=False).double().eval()
    fused = create_model("pointnet2_partseg_msg").double().eval()
    fused.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fused(*args), plain(*args))


def test_order_invariance_with_centroid_farthest_and_nearest_only():
    x = _inputs("pointnet2_cls_ssg")[0]
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(2))
    invariant = create_model("pointnet2_cls_ssg", start="centroid-farthest", order="nearest").eval()
    with torch.no_grad():
        torch.testing.assert_close(invariant(x[:, perm]), invariant(x), rtol=1e-4, atol=1e-5)
        paper = create_model("pointnet2_cls_ssg").eval()
        assert not torch.allclose(paper(x[:, perm]), paper(x), rtol=1e-4, atol=1e-5)  # documented: not invariant


def _tiny(kind: str, task: str) -> Variant:
    """The registered tables' structure at a size that trains in seconds (same layer code paths)."""
    if kind == "ssg":
        levels = (Level(16, (0.5,), (8,), ((16, 32),)), Level(4, (1.0,), (8,), ((32, 64),)))
    else:
        levels = (Level(16, (0.3, 0.6), (4, 8), ((16,), (16, 16))), Level(4, (0.8, 1.6), (4, 8), ((32,), (32,))))
    if task == "point_cls":
        return Variant((*levels, Level(None, (), (), ((64, 64),))), head=(32,), dropout=0.0)
    return Variant(levels, fp=((64,), (32,)), head=(32,), dropout=0.0)


@pytest.mark.parametrize("kind", ["ssg", "msg"])
@pytest.mark.parametrize("task", ["point_cls", "point_partseg", "point_semseg"])
def test_overfits_eight_clouds(kind, task):
    torch.manual_seed(0)
    x = torch.rand(8, 48, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = PointNet2(_tiny(kind, task), task, 8 if task == "point_cls" else 20, num_categories=8)
    if task == "point_cls":
        args, target = (x,), torch.arange(8)
    elif task == "point_partseg":
        args, target = (x, torch.arange(8)), torch.arange(8)[:, None] * 2 + (x[..., 2] > 0).long()
    else:
        args, target = (x,), (x[..., 0] > 0).long() + 2 * (x[..., 1] > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        logits = model(*args)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
