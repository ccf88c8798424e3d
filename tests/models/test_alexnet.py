"""AlexNet models: the paper's counts and shapes, the split form's parity, torchvision parity (the shared interface:
tests/models/test_interface.py)."""

import pytest
import torch
import torchvision
from torch import nn

from dlparts import arith, stacks
from dlparts.errors import ConfigError
from dlparts.layers.lrn import LocalResponseNorm
from dlparts.models import create_model, get_model_info, list_models
from dlparts.models.alexnet import paper_to_split_state_dict, split_to_paper_state_dict
from dlparts.summary import summarize

ALEXNETS = ["alexnet", "alexnet_paper", "alexnet_paper_split", "alexnet_small"]


@pytest.fixture(scope="module")
def paper():
    return create_model("alexnet_paper", generator=torch.Generator().manual_seed(0))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_registered():
    assert set(ALEXNETS) <= set(list_models("alexnet*"))


def test_paper_count_three_ways(paper):
    # 34,944 + 307,456 + 885,120 + 663,936 + 442,624 (conv1-5) + 37,752,832 + 16,781,312 + 4,097,000 (fc6-8)
    assert _count(paper) == 60_965_224
    stack = stacks.apply_stack(stacks.parse_stack(stacks.STACKS["alexnet-paper"]), arith.parse_volume("227x227x3"))
    assert stack.params == 60_965_224
    s = summarize(paper, (3, 227, 227))
    assert s.total_params == 60_965_224
    assert sum(r.flops for r in s.rows) == stack.flops  # LRN FLOPs counted through its attributes


def test_torchvision_count():
    assert _count(create_model("alexnet")) == _count(torchvision.models.alexnet()) == 61_100_840


def test_paper_figure_2_shapes(paper):
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
             for n, m in paper.features.named_children()]
    paper.eval()
    with torch.no_grad():
        out = paper(torch.zeros(1, 3, 227, 227))
    for h in hooks:
        h.remove()
    assert shapes["conv1"] == (96, 55, 55) and shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27) and shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == shapes["conv4"] == (384, 13, 13) and shapes["pool5"] == (256, 6, 6)
    assert out.shape == (1, 1000)


def test_paper_structure(paper):
    f = paper.features
    assert [f.conv1.groups, f.conv2.groups, f.conv3.groups, f.conv4.groups, f.conv5.groups] == [1, 2, 1, 2, 2]
    assert f.conv2.weight.shape == (256, 48, 5, 5) and f.conv4.weight.shape == (384, 192, 3, 3)
    for norm in (f.norm1, f.norm2):
        assert isinstance(norm, LocalResponseNorm)
        assert (norm.size, norm.alpha, norm.beta, norm.k, norm.groups) == (5, 1e-4, 0.75, 2.0, 2)
    names = list(f._modules)
    assert names.index("norm1") == names.index("relu1") + 1 and names.index("pool1") == names.index("norm1") + 1
    for pool in (f.pool1, f.pool2, f.pool5):
        assert (pool.kernel_size, pool.stride) == (3, 2)
    c = paper.classifier
    assert list(c._modules) == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert c.drop6.p == c.drop7.p == 0.5


def test_paper_initialization(paper):
    for name, module in list(paper.features.named_children()) + list(paper.classifier.named_children()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert module.weight.mean().abs() < 2e-3 and abs(module.weight.std().item() - 0.01) < 1e-3, name
            expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            assert torch.equal(module.bias, torch.full_like(module.bias, expected)), name


def test_small_uses_he_initialization():
    model = create_model("alexnet_small")
    conv3 = model.features.conv3  # fan-in 128 * 3 * 3
    assert abs(conv3.weight.std().item() - (2 / (128 * 9)) ** 0.5) < 0.003
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_split_equals_paper_outputs_and_gradients(paper):
    split = create_model("alexnet_paper_split", devices=("cpu", "cpu"), dropout=0.0)
    split.load_state_dict(paper_to_split_state_dict(paper.state_dict()))
    ref = create_model("alexnet_paper", dropout=0.0)
    ref.load_state_dict(paper.state_dict())
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(1)) * 50
    out_ref, out_split = ref(x), split(x)
    torch.testing.assert_close(out_split, out_ref, rtol=1e-5, atol=1e-6)
    assert out_ref.std() > 0.1  # the outputs are not trivially equal
    target = torch.tensor([3, 7])
    nn.functional.cross_entropy(out_ref, target).backward()
    nn.functional.cross_entropy(out_split, target).backward()
    ref_grads = {k: v.grad for k, v in ref.named_parameters()}
    split_grads = split_to_paper_state_dict({k: v.grad for k, v in split.named_parameters()})
    assert set(split_grads) == set(ref_grads)
    for key, grad in ref_grads.items():
        torch.testing.assert_close(split_grads[key], grad, rtol=1e-4, atol=1e-7, msg=key)
    torch.testing.assert_close(split.forward_features(x), ref.forward_features(x), rtol=1e-5, atol=1e-6)


def test_weight_conversion_both_ways(paper):
    state = paper.state_dict()
    split_state = paper_to_split_state_dict(state)
    split = create_model("alexnet_paper_split")
    assert set(split_state) == set(split.state_dict())
    assert all(split_state[k].shape == v.shape for k, v in split.state_dict().items())
    assert torch.equal(split_state["stems.1.conv2_b.weight"], state["features.conv2.weight"][128:])
    assert torch.equal(split_state["fc7.0.weight"], state["classifier.fc7.weight"][:2048])
    back = split_to_paper_state_dict(split_state)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    other = split.state_dict()
    again = paper_to_split_state_dict(split_to_paper_state_dict(other))
    assert all(torch.equal(again[k], other[k]) for k in other)


def test_torchvision_state_dict_gives_identical_outputs():
    torch.manual_seed(0)
    tv = torchvision.models.alexnet(weights=None).eval()
    ours = create_model("alexnet").eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), tv(x))
        y = torch.randn(1, 3, 256, 300)  # pool5 is not 6x6: the adaptive pooling is used
        assert torch.equal(ours(y), tv(y))


@pytest.mark.parametrize("side", [32, 40, 64])
def test_small_takes_32_to_64_pixels(side):
    model = create_model("alexnet_small", num_classes=10)
    assert model(torch.randn(2, 3, side, side)).shape == (2, 10)


def test_recipes_in_metadata_name_the_shipped_recipes():
    from dlparts.train.config import load_config

    paper = load_config(get_model_info("alexnet_paper").extra["recipe"])  # section 5 of the paper
    assert paper["model"]["name"] == "alexnet_paper" and paper["optim"] == {
        "name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "betas": [0.9, 0.999]}
    assert (paper["data"]["batch_size"], paper["sched"]["name"], paper["sched"]["factor"]) == (128, "plateau", 0.1)
    assert paper["trainer"]["max_epochs"] == 90
    small = load_config(get_model_info("alexnet_small").extra["recipe"])
    assert small["model"]["name"] == "alexnet_small" and small["data"]["args"]["image_size"] == 48


def test_bad_arguments():
    with pytest.raises(ConfigError, match="num_classes=-1"):
        create_model("alexnet", num_classes=-1)
    with pytest.raises(ConfigError, match="init='xavier'"):
        create_model("alexnet_paper", init="xavier")
    with pytest.raises(ConfigError, match="exactly two devices"):
        create_model("alexnet_paper_split", devices=("cpu",))


# ------------------------------------------------------------------------- section 3's switches (dlparts ablate)
def test_small_switches_change_only_what_they_name():
    base = create_model("alexnet_small")
    tanh = create_model("alexnet_small", activation="tanh")
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7 and not any(
        isinstance(m, nn.ReLU) for m in tanh.modules())
    no_lrn = create_model("alexnet_small", lrn=False)
    assert not any(isinstance(m, LocalResponseNorm) for m in no_lrn.modules())
    assert sum(isinstance(m, LocalResponseNorm) for m in base.modules()) == 2
    pools = [m for m in create_model("alexnet_small", pool_kernel=2).modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    for model in (tanh, no_lrn):  # parameters untouched: the same count and layer names as the paper's design
        assert [n for n, _ in model.named_parameters()] == [n for n, _ in base.named_parameters()]
    # 40 px: conv1 20x20; overlapping 3x3/2 pools 20 -> 9 -> 4 -> 1, non-overlapping 2x2/2 20 -> 10 -> 5 -> 2
    assert base.forward_features(torch.randn(1, 3, 40, 40)).shape[-1] == 1
    assert create_model("alexnet_small", pool_kernel=2).forward_features(torch.randn(1, 3, 40, 40)).shape[-1] == 2


def test_one_tower_has_half_the_kernels_in_conv1_to_conv4():
    one = create_model("alexnet_small", towers=1)
    convs = [m for m in one.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.groups) for c in convs] == [(24, 1), (64, 1), (96, 1), (96, 1), (128, 1)]
    # by hand: convs 1824 + 38464 + 55392 + 83040 + 110720, fc6 262656, fc7 262656, fc8 5130
    assert _count(one) == 819_882 == summarize(one, (3, 40, 40)).total_params
    assert one(torch.randn(2, 3, 40, 40)).shape == (2, 10)


def test_bad_switches():
    with pytest.raises(ConfigError, match="activation='gelu'"):
        create_model("alexnet_small", activation="gelu")
    with pytest.raises(ConfigError, match="pool_kernel=4"):
        create_model("alexnet_small", pool_kernel=4)
    with pytest.raises(ConfigError, match="towers=3"):
        create_model("alexnet_small", towers=3)
