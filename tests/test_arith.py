"""Convolution arithmetic: hand-computed cases (Dumoulin & Visin 2016), the AlexNet anchors, and a property test
holding the formulas to the output shapes and parameter counts of real torch.nn layers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlparts import arith
from dlparts.arith import LRN, Conv, Field, Pool, Volume, field_after, parse_volume
from dlparts.stacks import apply_stack, parse_stack
from dlparts.errors import ConfigError, ShapeError


@pytest.mark.parametrize(
    "i, k, s, p, d, expected",
    [
        (4, 3, 1, 0, 1, 2),  # no padding, unit strides (D&V fig. 2.1)
        (5, 4, 1, 2, 1, 6),  # arbitrary padding (fig. 2.2)
        (5, 3, 1, 1, 1, 5),  # half / same padding (fig. 2.3)
        (5, 3, 1, 2, 1, 7),  # full padding (fig. 2.4)
        (5, 3, 2, 0, 1, 2),  # no padding, strided (fig. 2.6)
        (5, 3, 2, 1, 1, 3),  # padding, strided (fig. 2.7)
        (6, 3, 2, 1, 1, 3),  # padding, strided, odd (fig. 2.8)
        (7, 3, 1, 0, 2, 3),  # dilated (fig. 5.1)
    ],
)
def test_dumoulin_visin_conv_cases(i, k, s, p, d, expected):
    assert arith.conv_output_size(i, k, s, (p, p), d) == expected


@pytest.mark.parametrize(
    "i, k, s, p, op, expected",
    [
        (2, 3, 1, 0, 0, 4),  # transpose of 4 -> 2 (fig. 4.1)
        (6, 4, 1, 2, 0, 5),  # transpose of 5 -> 6 with padding 2 (fig. 4.2)
        (2, 3, 2, 0, 0, 5),  # transpose of strided 5 -> 2 (fig. 4.5)
        (3, 3, 2, 1, 0, 5),  # transpose of 5 -> 3 (fig. 4.6)
        (3, 3, 2, 1, 1, 6),  # transpose of 6 -> 3 needs output_padding 1 (fig. 4.7)
    ],
)
def test_dumoulin_visin_transposed_cases(i, k, s, p, op, expected):
    assert arith.transposed_output_size(i, k, s, (p, p), 1, op) == expected


def test_pooling_cases():
    assert arith.pool_output_size(5, 3, 1) == 3
    assert arith.pool_output_size(6, 3, 2) == 2
    assert arith.pool_output_size(6, 3, 2, ceil_mode=True) == 3
    # ceil mode: the window that would start in the right padding is dropped (PyTorch's rule)
    assert arith.pool_output_size(5, 2, 2, (1, 1), ceil_mode=True) == 3
    assert arith.pool_output_size(1, 2, 2, ceil_mode=True) == 1  # in ceil mode a window may overhang the end


def test_seed_example_55x55x3_to_55x55x32():
    cost, _ = Conv(32, 5, padding="same").apply(parse_volume("55x55x3"))
    assert cost.output == Volume((55, 55), 32)
    assert cost.params == 32 * (5 * 5 * 3 + 1) == 2432
    assert cost.padding == ((2, 2), (2, 2))
    assert cost.macs == 55 * 55 * 32 * 75
    assert cost.flops == 2 * cost.macs
    assert cost.activation_bytes("float32") == 55 * 55 * 32 * 4


def test_same_padding_is_tensorflow_rule_with_extra_pixel_at_end():
    assert arith.same_padding(10, 3, 2) == (0, 1)
    assert arith.same_padding(11, 3, 2) == (1, 1)
    assert arith.same_padding(7, 4, 1) == (1, 2)
    assert arith.same_padding(5, 3, 1, dilation=2) == (2, 2)
    cost, _ = Conv(4, 3, 2, "same").apply(parse_volume("10x10x3"))
    assert cost.output.spatial == (5, 5)
    assert cost.notes and "F.pad(x, (0, 1, 0, 1))" in cost.notes[0]


def test_full_and_per_side_padding():
    cost, _ = Conv(1, 3, padding="full").apply(parse_volume("5x5x1"))
    assert cost.output.spatial == (7, 7)
    cost, _ = Conv(1, 3, padding=[0, 1, 2, 3]).apply(parse_volume("5x5x1"))
    assert cost.padding == ((0, 1), (2, 3)) and cost.output.spatial == (4, 8)


def test_volume_layouts():
    assert parse_volume("55x55x3") == Volume((55, 55), 3)
    assert parse_volume("3x224x224", channels_first=True) == Volume((224, 224), 3)
    assert parse_volume("100x3") == Volume((100,), 3)
    assert parse_volume("16x112x112x3", batch=8) == Volume((16, 112, 112), 3, 8)


def test_batch_scales_macs_not_params():
    one, _ = Conv(8, 3).apply(parse_volume("9x9x3"))
    four, _ = Conv(8, 3).apply(parse_volume("9x9x3", batch=4))
    assert four.params == one.params and four.macs == 4 * one.macs


def test_alexnet_paper_totals():
    report = apply_stack(parse_stack("alexnet-paper"), parse_volume("227x227x3"))
    assert report.params == 60_965_224
    assert report.macs == 724_406_816
    assert report.output == Volume((), 1000)
    pool5 = report.rows[14]
    assert pool5.spec.startswith("maxpool") and pool5.cost.output.spatial == (6, 6)
    assert (pool5.cost.rf, pool5.cost.jump) == (195, 32)


def test_alexnet_paper_without_grouping():
    report = apply_stack(parse_stack("alexnet-paper-ungrouped"), parse_volume("227x227x3"))
    assert report.params == 62_378_344


def test_alexnet_torchvision_stack_totals():
    report = apply_stack(parse_stack("alexnet-torchvision"), parse_volume("224x224x3"))
    assert report.params == 61_100_840
    assert report.macs == 714_188_480


def test_field_after_by_hand():
    # conv k=3 s=1 on the input: r = 1 + 2 * 1 = 3; then pool k=2 s=2: r = 3 + 1 * 1 = 4, jump 2
    f = field_after(field_after(Field(), 3, 1), 2, 2)
    assert f == Field(4, 2)
    assert field_after(f, 3, 1, dilation=2) == Field(4 + 4 * 2, 2)  # k_eff = 5
    assert field_after(Field(7, 4), 4, 2, transposed=True) == Field(7 + 1 * 4, 2)  # ceil(4 / 2) - 1 = 1 step of 4
    assert field_after(Field(None, None), 3, 1) == Field(None, None)


def test_lrn_and_pool_flops_are_counted():
    lrn, _ = LRN().apply(parse_volume("2x2x4"))
    assert (lrn.params, lrn.macs, lrn.flops) == (0, 0, 16 * (2 * 5 + 3))
    mp, _ = Pool("max", 3, 2).apply(parse_volume("5x5x2"))
    assert mp.output.spatial == (2, 2) and mp.flops == 2 * 2 * 2 * 8
    ap, _ = Pool("avg", 2).apply(parse_volume("4x4x1"))
    assert ap.flops == 4 * 4


def test_stack_from_yaml_style_mappings():
    layers = parse_stack([{"type": "conv", "filters": 8, "kernel": 3, "padding": "same"}, "relu",
                          {"type": "maxpool", "kernel": 2}, {"type": "lrn", "size": 3, "k": 1},
                          {"type": "fc", "features": 10}])
    report = apply_stack(layers, parse_volume("8x8x3"))
    assert report.params == 8 * 28 + (4 * 4 * 8) * 10 + 10
    assert layers[3][1] == LRN(size=3, k=1)


@pytest.mark.parametrize(
    "spec, volume, message",
    [
        ("conv(4, k=12)", "10x10x3", "larger than the padded input"),
        ("conv(4, k=3, g=2)", "10x10x3", "groups 2 must divide"),
        ("convT(4, k=3, s=2, op=2)", "10x10x4", "output_padding 2 must be smaller than stride 2"),
        ("conv(0, k=3)", "10x10x3", "filters 0 must be positive"),
        ("conv(4, k=3, s=0)", "10x10x3", "stride 0 must be positive"),
        ("conv(4, k=3", "10x10x3", "unmatched '('"),
        ("conv(4, q=3)", "10x10x3", "unknown option 'q'"),
        ("blur(3)", "10x10x3", "unknown layer type 'blur'"),
        ("conv(k=3)", "10x10x3", "needs the number of filters"),
        ("conv(4, k=3, p=wide)", "10x10x3", "padding 'wide'"),
    ],
)
def test_impossible_layers_name_the_value(spec, volume, message):
    with pytest.raises((ConfigError, ShapeError), match=message.replace("(", r"\(")):
        apply_stack(parse_stack(spec), parse_volume(volume))


@pytest.mark.parametrize("text", ["0x5x3", "55", "axb", "1x2x3x4x5"])
def test_bad_volumes(text):
    with pytest.raises(ConfigError, match="input"):
        parse_volume(text)


def test_arith_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, dlparts.arith; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------- property vs torch.nn
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: (nn.MaxPool1d, nn.AvgPool1d), 2: (nn.MaxPool2d, nn.AvgPool2d), 3: (nn.MaxPool3d, nn.AvgPool3d)}


@st.composite
def conv_configs(draw):
    dims = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    return dict(
        dims=dims,
        size=draw(st.lists(st.integers(1, 12), min_size=dims, max_size=dims)),
        cin=groups * draw(st.integers(1, 3)),
        cout=groups * draw(st.integers(1, 3)),
        k=draw(st.integers(1, 5)),
        s=draw(st.integers(1, 3)),
        p=draw(st.integers(0, 3)),
        d=draw(st.integers(1, 3)),
        groups=groups,
        bias=draw(st.booleans()),
        transposed=draw(st.booleans()),
        op=draw(st.integers(0, 2)),
    )


def _torch_shape(layer: nn.Module, shape):
    """Output shape of a real CPU forward (the meta kernels skip some of the checks, e.g. output_padding's)."""
    with torch.no_grad():
        return tuple(layer(torch.zeros(shape)).shape)


@settings(max_examples=150, deadline=None)
@given(conv_configs())
def test_conv_arithmetic_matches_torch(cfg):
    dims = cfg["dims"]
    volume = Volume(tuple(cfg["size"]), cfg["cin"], 2)
    op = cfg["op"] if cfg["transposed"] else 0
    layer = Conv(cfg["cout"], cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["groups"], cfg["bias"],
                 cfg["transposed"], op)
    cls = (_CONVT if cfg["transposed"] else _CONV)[dims]
    extra = {"output_padding": op} if cfg["transposed"] else {}
    module = cls(cfg["cin"], cfg["cout"], cfg["k"], cfg["s"], cfg["p"], dilation=cfg["d"], groups=cfg["groups"],
                 bias=cfg["bias"], **extra)
    try:
        cost, _ = layer.apply(volume)
    except (ShapeError, ConfigError):
        try:  # torch either refuses the layer or (transposed, padding too large) returns an empty output
            shape = _torch_shape(module, (2, cfg["cin"], *cfg["size"]))
        except (RuntimeError, ValueError):
            return
        assert cfg["transposed"] and min(shape[2:]) <= 0
        return
    assert _torch_shape(module, (2, cfg["cin"], *cfg["size"])) == (2, cfg["cout"], *cost.output.spatial)
    assert cost.params == sum(p.numel() for p in module.parameters())


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.lists(st.integers(1, 14), min_size=3, max_size=3), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 2), st.booleans(), st.booleans())
def test_pool_arithmetic_matches_torch(dims, size, k, s, p, ceil_mode, is_max):
    size = size[:dims]
    layer = Pool("max" if is_max else "avg", k, s, p, 1, ceil_mode)
    cls = _POOL[dims][0 if is_max else 1]
    module = cls(k, s, p, ceil_mode=ceil_mode)
    try:
        cost, _ = layer.apply(Volume(tuple(size), 2, 1))
    except (ShapeError, ConfigError):
        with pytest.raises((RuntimeError, ValueError)):
            _torch_shape(module, (1, 2, *size))
        return
    if dims == 3 and not is_max and min(size) < k:
        # avg_pool3d checks the *unpadded* input against the kernel (AvgPool1d/2d do not): a torch quirk, not ours
        with pytest.raises(RuntimeError, match="smaller than kernel size"):
            _torch_shape(module, (1, 2, *size))
        return
    assert _torch_shape(module, (1, 2, *size)) == (1, 2, *cost.output.spatial)


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))
def test_same_padding_gives_ceil_output(i, k, s, d):
    lo, hi = arith.same_padding(i, k, s, d)
    assert lo <= hi <= lo + 1
    out = arith.conv_output_size(i, k, s, (lo, hi), d)
    assert out == math.ceil(i / s)
    if s == 1:  # PyTorch's own padding="same" (stride 1 only) agrees, including the extra pixel at the end
        conv = nn.Conv1d(1, 1, k, padding="same", dilation=d)
        assert _torch_shape(conv, (1, 1, i))[-1] == out
