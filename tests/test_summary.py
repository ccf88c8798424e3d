"""Model summaries: exact counts on real modules, agreement with ``dlparts.arith``, the meta-device run and its
fallback, and the output formats."""

import csv
import io
import json

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlparts import arith, stacks
from dlparts.errors import ConfigError, ShapeError
from dlparts.summary import summarize


def test_torchvision_alexnet_counts():
    with torch.device("meta"):
        model = torchvision.models.alexnet()
    result = summarize(model, (3, 224, 224))
    assert result.device == "meta"
    assert result.total_params == 61_100_840
    assert result.macs == 714_188_480
    stack = stacks.apply_stack(stacks.parse_stack("alexnet-torchvision"), arith.parse_volume("224x224x3"))
    assert result.macs == stack.macs and result.total_params == stack.params
    pool5 = next(r for r in result.rows if r.name == "features.12")
    assert (pool5.rf, pool5.jump) == (195, 32.0)


def _paper_alexnet_sequential() -> nn.Sequential:
    """The paper's net written with plain torch layers (torch's LRN takes alpha/n, so alpha is scaled)."""
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2), nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(4096, 1000),
    )


def test_paper_alexnet_summary_equals_spec_arithmetic():
    with torch.device("meta"):
        model = _paper_alexnet_sequential()
    result = summarize(model, (3, 227, 227))
    stack = stacks.apply_stack(stacks.parse_stack("alexnet-paper"), arith.parse_volume("227x227x3"))
    assert result.total_params == stack.params == 60_965_224
    assert result.macs == stack.macs == 724_406_816
    assert result.flops == stack.flops  # pooling, LRN and ReLU FLOPs counted the same way in both
    in_place = sum(r.activation_bytes for r in result.rows if r.inplace)
    assert in_place > 0 and result.activation_bytes == sum(r.activation_bytes for r in result.rows) - in_place


def test_registered_alexnet_paper_matches_arith():
    from dlparts.models import create_model

    with torch.device("meta"):
        model = create_model("alexnet_paper")
    result = summarize(model, (3, 227, 227))
    assert result.total_params == 60_965_224
    assert result.macs == 724_406_816


@st.composite
def layer_configs(draw):
    dims = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    return dict(dims=dims, size=draw(st.integers(5, 9)), cin=groups * draw(st.integers(1, 3)),
                cout=groups * draw(st.integers(1, 3)), k=draw(st.integers(1, 3)), s=draw(st.integers(1, 2)),
                p=draw(st.integers(0, 1)), d=draw(st.integers(1, 2)), groups=groups, transposed=draw(st.booleans()),
                bias=draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(layer_configs(), st.integers(1, 3))
def test_summary_equals_arith_on_random_convolutions(cfg, batch):
    dims = cfg["dims"]
    cls = {False: (nn.Conv1d, nn.Conv2d, nn.Conv3d), True: (nn.ConvTranspose1d, nn.ConvTranspose2d,
                                                              nn.ConvTranspose3d)}[cfg["transposed"]][dims - 1]
    with torch.device("meta"):
        module = cls(cfg["cin"], cfg["cout"], cfg["k"], cfg["s"], cfg["p"], dilation=cfg["d"], groups=cfg["groups"],
                     bias=cfg["bias"])
    layer = arith.Conv(cfg["cout"], cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["groups"], cfg["bias"],
                       cfg["transposed"])
    cost, _ = layer.apply(arith.Volume((cfg["size"],) * dims, cfg["cin"], batch))
    result = summarize(module, (cfg["cin"],) + (cfg["size"],) * dims, batch_size=batch)
    assert result.rows[0].output_shape == [batch, cfg["cout"], *cost.output.spatial]
    assert (result.total_params, result.macs, result.flops) == (cost.params, cost.macs, cost.flops)


def test_pool_lrn_batchnorm_activation_flops():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.LocalResponseNorm(3), nn.MaxPool2d(2), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1))
    result = summarize(model, (4, 4, 4), device="cpu")
    flops = {r.type: r.flops for r in result.rows}
    assert flops == {"BatchNorm2d": 2 * 64, "ReLU": 64, "LocalResponseNorm": 64 * (2 * 3 + 3),
                     "MaxPool2d": 16 * 3, "AvgPool2d": 4 * 4, "Flatten": 0, "Linear": 2 * 12, "Softmax": 3 * 3}
    assert result.macs == 12 and result.total_params == 8 + 15
    assert result.uncounted == []


def test_frozen_parameters_and_model_left_unchanged():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    model[0].weight.requires_grad_(False)
    model.train()
    before = [p.clone() for p in model.parameters()]
    result = summarize(model, (3, 8, 8))
    assert (result.total_params, result.trainable_params, result.frozen_params) == (260, 44, 216)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


class _DataDependent(nn.Module):
    """Keeps the inputs above their mean: the output size depends on values, so it cannot run on meta."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        keep = x[x[:, :, 0] > x[:, :, 0].mean()]  # (M, 3), M read from the data
        return self.fc(keep).max(dim=0).values


def test_data_dependent_model_falls_back_to_cpu():
    result = summarize(_DataDependent(), (64, 3))
    assert result.device == "cpu"
    assert result.total_params == 20 and result.rows[0].macs == result.rows[0].output_shape[0] * 15


def test_meta_built_model_is_materialized_for_the_fallback():
    with torch.device("meta"):
        model = _DataDependent()
    assert summarize(model, (64, 3)).device == "cpu"


def test_formats_round_trip():
    result = summarize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (3, 8, 8))
    data = json.loads(result.to_json())
    assert data["totals"]["macs"] == 6 * 6 * 8 * 27 and data["units"]["macs"] == "multiply-accumulates"
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert rows[-1]["name"] == "TOTAL" and int(rows[-1]["params"]) == 224


def test_uncounted_layer_types_are_reported():
    result = summarize(nn.Sequential(nn.Linear(4, 4), nn.Upsample(scale_factor=2)), (2, 4), device="cpu")
    assert result.uncounted == ["Upsample"]


@pytest.mark.parametrize("shape", [(), (0, 3), (-1, 2)])
def test_bad_input_shapes(shape):
    with pytest.raises(ConfigError, match="input shape"):
        summarize(nn.Linear(3, 3), shape)


def test_meta_run_equals_cpu_run_row_for_row():
    model = torchvision.models.resnet18(num_classes=10)
    meta = summarize(model, (3, 64, 64), batch_size=2, device="meta")
    cpu = summarize(model, (3, 64, 64), batch_size=2, device="cpu")
    assert meta.device == "meta" and cpu.device == "cpu"
    strip = lambda rows: [(r.name, r.output_shape, r.params, r.macs, r.flops, r.rf) for r in rows]  # noqa: E731
    assert strip(meta.rows) == strip(cpu.rows)
    assert meta.totals() == cpu.totals()
    assert all(not hasattr(m, "forward") or "forward" not in vars(m) for m in model.modules())


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_summary_leaves_modes_and_methods_as_they_were(device):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm2d(8))
    model.train()
    model[1].eval()  # a frozen batch norm inside a training model
    own = lambda x: x  # noqa: E731  an instance forward of the caller's own
    model[4].forward = own
    before = [m.training for m in model.modules()]
    summarize(model, (3, 8, 8), device=device)
    assert [m.training for m in model.modules()] == before == [True, True, False, True, True, True]
    assert "forward" not in vars(model[1]) and vars(model[4])["forward"] is own


def test_point_model_runs_on_its_own_example_inputs():
    from dlparts.models import create_model

    model = create_model("pointnet_partseg")  # forward needs a category besides the points
    result = summarize(model, (256, 3), batch_size=2)
    rows = {r.name: r for r in result.rows}
    assert result.input_shape == [256, 3] and rows["head.1"].output_shape == [2, 256, 50]


# ------------------------------------------------------------------------------------------------ depth roll-up (#19)
def _rolled_models():
    from dlparts.models import create_model

    with torch.device("meta"):
        resnet, vit = torchvision.models.resnet50(), torchvision.models.vit_b_16()
    return [(resnet, (3, 224, 224)), (vit, (3, 224, 224)), (create_model("pointnet2_partseg_msg"), (2048, 6))]


@pytest.fixture(scope="module")
def rolled_summaries():
    return [summarize(model, shape) for model, shape in _rolled_models()]


@pytest.mark.parametrize("depth", [0, 1, 2, 3, None])
def test_rows_at_every_depth_add_up_to_the_totals(rolled_summaries, depth):
    for result in rolled_summaries:
        rows = result.at_depth(depth)
        assert all(depth is None or r.depth <= depth for r in rows)
        assert sum(r.params for r in rows) == result.total_params, (result.model, depth)
        assert sum(r.trainable for r in rows) == result.trainable_params
        assert sum(r.macs for r in rows) == result.macs and sum(r.flops for r in rows) == result.flops
        assert sum(r.activation_bytes for r in rows if not r.inplace) == result.activation_bytes
    if depth == 0:
        assert [len(s.at_depth(0)) for s in rolled_summaries] == [1, 1, 1]


def test_cut_off_rows_carry_their_submodules_totals(rolled_summaries):
    resnet = rolled_summaries[0]
    rows = {r.name: r for r in resnet.at_depth(1)}
    assert list(rows) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    layer4 = [r for r in resnet.rows if r.name.startswith("layer4.")]
    assert rows["layer4"].type == "Sequential" and rows["layer4"].output_shape == [1, 2048, 7, 7]
    assert rows["layer4"].macs == sum(r.macs for r in layer4) > 0
    assert rows["layer4"].params == 14_964_736  # torchvision's layer4: 3 bottlenecks of 512 -> 2048
    assert len(resnet.at_depth(2)) > len(resnet.at_depth(1)) > len(resnet.at_depth(0))
    with pytest.raises(ConfigError, match="depth -1"):
        resnet.at_depth(-1)


def test_print_summary_prints_the_table(rolled_summaries, capsys):
    print(rolled_summaries[0])
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "ResNet on 1x3x224x224 (meta device)"
    assert text[1].split() == ["layer", "type", "output", "params", "MACs", "FLOPs", "RF", "activations"]
    assert text[-1].startswith("parameters 25,557,032 (trainable 25,557,032, frozen 0;")
    assert rolled_summaries[0].table(1).count("\n") == 1 + 10 + 1


def test_input_with_the_batch_dimension_torchinfo_style():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    plain = summarize(model, (3, 8, 8), batch_size=2)
    given = summarize(model, input_size=(2, 3, 8, 8))
    read = summarize(model, (2, 3, 8, 8))  # no 4-D input runs: the first size is read as the batch
    assert (given.batch_size, given.input_shape) == (read.batch_size, read.input_shape) == (2, [3, 8, 8])
    assert given.totals() == read.totals() == plain.totals()
    with pytest.raises(ShapeError, match=r"input shape \[5, 7\] \(a shape without the batch dimension"):
        summarize(model, (5, 7))
    with pytest.raises(ConfigError, match="input_size"):
        summarize(model, (3, 8, 8), input_size=(1, 3, 8, 8))
    checked = summarize(_Unpacking(), (1, 3, 8, 8))  # a model whose own shape check is a ValueError
    assert (checked.batch_size, checked.input_shape, checked.macs) == (1, [3, 8, 8], 6 * 6 * 2 * 27)


class _Unpacking(nn.Module):
    """Checks its input as torchvision's ViT does: ``n, c, h, w = x.shape`` raises ValueError on a 5-D tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        n, c, h, w = x.shape
        return self.conv(x)


# --------------------------------------------------------------------------------------- attention and matrix products
def test_multihead_attention_by_hand():
    n, length, source, e, heads = 2, 5, 7, 8, 2
    attention = nn.MultiheadAttention(e, heads, kdim=3, vdim=4, batch_first=True)
    q, k, v = torch.randn(n, length, e), torch.randn(n, source, 3), torch.randn(n, source, 4)
    result = summarize(attention, inputs=(q, k, v))
    projections = n * (length * e + source * 3 + source * 4) * e + n * length * e * e
    assert result.macs == projections + 2 * n * length * source * e
    assert result.flops == 2 * result.macs + 3 * n * heads * length * source
    assert result.total_params == sum(r.params for r in result.rows)  # out_proj's weights, used but never called


class _Attention(nn.Module):
    """Attention with the products done by tensors, not child modules: einsum scores, SDPA, a matmul."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, T, C]
        scores = torch.einsum("btc,bsc->bts", q, k).softmax(-1)  # [B, T, T]
        return scores @ v + nn.functional.scaled_dot_product_attention(q, k, v)  # [B, T, C]


def test_products_inside_modules_are_counted():
    b, t, c = 2, 6, 4
    result = summarize(_Attention(c), (t, c), batch_size=b)
    rows = {r.name: r for r in result.rows}
    products = 2 * b * t * t * c + 2 * b * t * t * c  # einsum and matmul; SDPA's Q K^T and A V
    assert rows["(model)"].macs == products and rows["qkv"].macs == b * t * c * 3 * c
    assert result.uncounted == []


def _family_samples() -> list[str]:
    """One model per torchvision family (the first listed), and those the issue names; every model with
    ``DLPARTS_ALL_TORCHVISION=1`` (about 30 s more)."""
    import os
    import re

    names = torchvision.models.list_models(module=torchvision.models)
    if os.environ.get("DLPARTS_ALL_TORCHVISION") == "1":
        return names
    first = {}
    for name in names:
        first.setdefault(re.match(r"[a-z]+", name).group(), name)
    return sorted({*first.values(), "resnet50", "vit_b_16", "vit_h_14", "googlenet"})


@pytest.mark.parametrize("name", _family_samples())
def test_totals_match_torchvision_published_gflops(name, monkeypatch):
    """torchvision's ``_ops`` ("GFLOPS") are multiply-accumulates, fvcore's convention: they equal our MACs (to the
    3 decimals published), not our FLOPs (2 per MAC).  Built on meta without weights: regnet's builder computes
    with tensors, so parameters are moved to meta as they are registered instead of building under a meta device;
    the published sizes need ViT-H/14's 518 px and GoogLeNet without its training-only auxiliary classifiers."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    crop = weights.transforms.keywords["crop_size"]
    register = nn.Module.register_parameter
    monkeypatch.setattr(nn.Module, "register_parameter", lambda self, key, p: register(
        self, key, None if p is None else nn.Parameter(p.to("meta"), p.requires_grad)))
    kwargs = {"image_size": crop} if name.startswith("vit_") else {"aux_logits": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, **kwargs)
    result = summarize(model, (3, crop, crop), device="meta")
    assert round(result.macs / 1e9, 3) == pytest.approx(weights.meta["_ops"], abs=1e-9), name
    assert result.total_params == weights.meta["num_params"]
