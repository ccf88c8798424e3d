"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NeurIPS 2012, sections 3-5.

Four registered models:

* ``alexnet_paper``: the paper's network in one module.  The two GPU towers are convolution groups (``groups=2`` on
  conv2, conv4, conv5; conv3 and the FC layers see both towers).  60,965,224 parameters.
* ``alexnet_paper_split``: the same network on two devices, one tower each, exchanging activations only into conv3
  and into the FC layers, as the paper's GPUs did.  :func:`paper_to_split_state_dict` and
  :func:`split_to_paper_state_dict` convert weights between the two forms.
* ``alexnet``: ``torchvision.models.alexnet``'s layer shapes and ``state_dict`` keys (the one-tower "One weird
  trick" variant without LRN); 61,100,840 parameters.
* ``alexnet_small``: the paper's design (two towers, LRN, overlapping pooling, dropout) narrowed for 32-64 px images.

**224 or 227.**  The paper says the input is 224x224x3, but conv1 (11x11, stride 4, no padding) then gives
``(224 - 11) / 4 + 1 = 54.25`` maps, not the 55x55 its figure 2 draws; only a 227x227 input gives 55x55x96.  We take
227 for ``alexnet_paper`` (its ``input_spec``), which keeps every size in figure 2 and the 60,965,224 parameters; the
torchvision-compatible ``alexnet`` pads conv1 by 2 and takes 224.

**LRN and the towers.**  conv1's 96 maps live 48 on each GPU and the GPUs do not communicate before conv3, so each
tower normalizes its own 48 (and, after conv2, 128) maps: our LRN has ``groups=2`` in the one-module form, which
makes it equal to the split form.

**Initialization** (section 5): weights ``N(0, 0.01)``; biases 1 in conv2, conv4, conv5 and the fully connected
*hidden* layers (fc6, fc7); 0 in conv1, conv3 and the output layer fc8, as the paper says ("the remaining layers").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

from dlparts.errors import ConfigError
from dlparts.layers.heads import check_classes
from dlparts.layers.lrn import LocalResponseNorm
from dlparts.models.registry import random_inputs, register_model

PAPER = "Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural Networks. NeurIPS 2012"


@dataclass(frozen=True)
class TowerSpec:
    """Widths and geometry of a two-tower AlexNet; the numbers are whole-network widths (both towers together).

    ``conv`` holds ``(out_channels, kernel, stride, padding, groups)`` for conv1..conv5; LRN follows the ReLU of
    conv1 and conv2; max pooling (3, stride 2) follows both LRNs and conv5.
    """

    conv: tuple[tuple[int, int, int, int, int], ...]
    fc: tuple[int, int]
    pool_out: int | None  # adaptive average pool to this size before the FC layers (None: no pool)
    input_size: int  # the side of the square input images it is designed for


PAPER_SPEC = TowerSpec(
    conv=((96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2)),
    fc=(4096, 4096), pool_out=None, input_size=227,
)
SMALL_SPEC = TowerSpec(
    conv=((48, 5, 2, 2, 1), (128, 5, 1, 2, 2), (192, 3, 1, 1, 1), (192, 3, 1, 1, 2), (128, 3, 1, 1, 2)),
    fc=(512, 512), pool_out=2, input_size=40,
)


def _lrn(towers: int) -> LocalResponseNorm:
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=towers)


_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}


def one_tower(spec: TowerSpec) -> TowerSpec:
    """Section 3.2's one-GPU comparison net: half the kernels of conv1..conv4 in one tower; conv5 and the FC layers
    keep their widths, as the paper did so that both nets have about as many parameters."""
    conv = tuple((out // 2 if i < 4 else out, k, s, p, 1) for i, (out, k, s, p, _) in enumerate(spec.conv))
    return replace(spec, conv=conv)


def _tower_features(spec: TowerSpec, towers: int, act, kernel: int, lrn: bool) -> nn.Sequential:
    """conv1..pool5 of ``spec``; ``towers=2`` is the paper's layout, ``towers=1`` merges the groups; ``act`` makes
    the activation, ``kernel`` is the max pools' (stride 2), ``lrn`` whether conv1 and conv2 are normalized."""
    layers: list[tuple[str, nn.Module]] = []
    in_ch = 3
    for i, (out_ch, kernel_size, stride, padding, groups) in enumerate(spec.conv, start=1):
        g = towers if groups > 1 else 1
        layers += [(f"conv{i}", nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=g)),
                   (f"relu{i}", act())]
        if i <= 2:
            layers += [(f"norm{i}", _lrn(towers))] if lrn else []
            layers += [(f"pool{i}", nn.MaxPool2d(kernel, 2))]
        in_ch = out_ch
    layers.append(("pool5", nn.MaxPool2d(kernel, 2)))
    return nn.Sequential(OrderedDict(layers))


def _classifier(in_features: int, fc: Sequence[int], num_classes: int, dropout: float, act) -> nn.Sequential:
    """fc6, fc7 (``act``, then dropout on their outputs, as section 4.2 says) and fc8."""
    return nn.Sequential(OrderedDict([
        ("fc6", nn.Linear(in_features, fc[0])), ("relu6", act()), ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Linear(fc[0], fc[1])), ("relu7", act()), ("drop7", nn.Dropout(dropout)),
        ("fc8", nn.Linear(fc[1], num_classes)),
    ]))


_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


def init_paper_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Section 5's initialization, in place: every conv/linear weight ``N(0, 0.01)``; biases 1 in layers whose name
    ends in conv2, conv4, conv5, fc6 or fc7 (also ``conv2_a`` etc. in the split form), 0 elsewhere."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                module.weight.normal_(0.0, 0.01, generator=generator)
                leaf = name.rsplit(".", 1)[-1].split("_")[0]
                module.bias.fill_(1.0 if leaf in _BIAS_ONE else 0.0)
    return model


def init_kaiming_(model: nn.Module) -> nn.Module:
    """He et al. (2015) normal initialization for ReLU nets (fan-in), biases 0, in place: keeps the signal's scale
    through ``alexnet_small`` so that it starts learning in its first epoch, where ``N(0, 0.01)`` stalls for many."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


_INITS = ("paper", "kaiming", "default")


class AlexNetPaper(nn.Module):
    """The paper's AlexNet in one module: ``[B, 3, 227, 227] -> [B, num_classes]`` logits (``alexnet_small``: 64).

    ``features`` holds conv1..pool5 (named ``conv1``, ``relu1``, ``norm1``, ``pool1``, ...), ``classifier`` holds
    fc6, fc7, fc8 with dropout after fc6 and fc7.  Section 3's switches, the paper's by default: ``activation`` "relu"
    (3.1) or "tanh"; ``pool_kernel`` 3 (overlapping, 3.4) or 2; ``lrn`` (3.3) on or off (``dlparts ablate``).
    """

    def __init__(self, num_classes: int = 1000, *, spec: TowerSpec = PAPER_SPEC, towers: int = 2,
                 dropout: float = 0.5, init: str = "paper", generator: torch.Generator | None = None,
                 activation: str = "relu", pool_kernel: int = 3, lrn: bool = True):
        super().__init__()
        check_classes("num_classes", num_classes)
        if init not in _INITS:
            raise ConfigError(f"init={init!r} must be 'paper' (N(0, 0.01), section 5), 'kaiming' or 'default' "
                              "(PyTorch's)")
        if activation not in _ACTIVATIONS or pool_kernel not in (2, 3):
            raise ConfigError(f"activation={activation!r} must be relu or tanh, pool_kernel={pool_kernel!r} 3 or 2")
        self.spec, self.init = spec, init
        self.features = _tower_features(spec, towers, _ACTIVATIONS[activation], pool_kernel, lrn)
        self.avgpool = nn.AdaptiveAvgPool2d(spec.pool_out) if spec.pool_out else nn.Identity()
        side = spec.pool_out or 6
        self.classifier = _classifier(spec.conv[-1][0] * side * side, spec.fc, num_classes, dropout,
                                      _ACTIVATIONS[activation])
        if init == "paper":
            init_paper_(self, generator)
        elif init == "kaiming":
            init_kaiming_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 256, 6, 6]`` (pool5 maps; ``[B, 128, h, w]`` for ``alexnet_small``)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """pool5 maps ``[B, C, h, w]`` -> logits ``[B, K]`` (or fc7's ``[B, 4096]`` with ``pre_logits``)."""
        x = torch.flatten(self.avgpool(features), 1)  # [B, C*6*6]
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None,
                       **kwargs) -> tuple[torch.Tensor]:
        """``(images [batch, 3, H, W],)``, by default of the spec's side (227 for the paper, 40 for the small net)."""
        side = self.spec.input_size
        return random_inputs(batch, shape or (3, side, side), **kwargs)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace fc8 by a fresh ``Linear(fc7 width, num_classes)`` (paper init: ``N(0, 0.01)``, bias 0)."""
        check_classes("num_classes", num_classes)
        fc8 = nn.Linear(self.classifier.fc8.in_features, num_classes, device=self.classifier.fc8.weight.device)
        if self.init == "paper":
            nn.init.normal_(fc8.weight, 0.0, 0.01)
            nn.init.zeros_(fc8.bias)
        self.classifier.fc8 = fc8


class AlexNetPaperSplit(nn.Module):
    """The paper's AlexNet with one tower per device (the paper's two GPUs): ``[B, 3, 227, 227] -> [B, K]`` logits
    on ``devices[0]``.

    Tower ``t`` (0 or 1) on ``devices[t]`` holds half of conv1..conv5 (``conv1_a`` / ``conv1_b``...) and half of the
    neurons of fc6 and fc7; fc8 sits on ``devices[0]``.  Activations cross devices only where the paper's GPUs
    communicated: conv2's output into conv3, pool5's output into fc6, fc6's into fc7, and fc7's into fc8.
    Given the same weights (:func:`paper_to_split_state_dict`) it computes what ``alexnet_paper`` computes.
    """

    def __init__(self, num_classes: int = 1000, *, devices: Sequence[str | torch.device] = ("cpu", "cpu"),
                 dropout: float = 0.5, init: str = "paper", generator: torch.Generator | None = None):
        super().__init__()
        check_classes("num_classes", num_classes)
        if len(devices) != 2:
            raise ConfigError(f"devices={devices!r} must name exactly two devices, one per tower")
        self.devices = tuple(torch.device(d) for d in devices)
        self.init = init
        (c1, *_), (c2, *_), (c3, *_), (c4, *_), (c5, *_) = PAPER_SPEC.conv
        fc6, fc7 = PAPER_SPEC.fc
        self.stems, self.tops = nn.ModuleList(), nn.ModuleList()
        self.fc6, self.fc7 = nn.ModuleList(), nn.ModuleList()
        for suffix in "ab":
            self.stems.append(nn.Sequential(OrderedDict([
                (f"conv1_{suffix}", nn.Conv2d(3, c1 // 2, 11, 4)), ("relu1", nn.ReLU(inplace=True)),
                ("norm1", _lrn(1)), ("pool1", nn.MaxPool2d(3, 2)),
                (f"conv2_{suffix}", nn.Conv2d(c1 // 2, c2 // 2, 5, padding=2)), ("relu2", nn.ReLU(inplace=True)),
                ("norm2", _lrn(1)), ("pool2", nn.MaxPool2d(3, 2)),
            ])))
            self.tops.append(nn.Sequential(OrderedDict([
                (f"conv3_{suffix}", nn.Conv2d(c2, c3 // 2, 3, padding=1)), ("relu3", nn.ReLU(inplace=True)),
                (f"conv4_{suffix}", nn.Conv2d(c3 // 2, c4 // 2, 3, padding=1)), ("relu4", nn.ReLU(inplace=True)),
                (f"conv5_{suffix}", nn.Conv2d(c4 // 2, c5 // 2, 3, padding=1)), ("relu5", nn.ReLU(inplace=True)),
                ("pool5", nn.MaxPool2d(3, 2)),
            ])))
            self.fc6.append(nn.Linear(c5 * 36, fc6 // 2))
            self.fc7.append(nn.Linear(fc6, fc7 // 2))
        self.fc8 = nn.Linear(fc7, num_classes)
        self.dropout = nn.Dropout(dropout)
        if init == "paper":
            init_paper_(self, generator)
        self._place()

    def _place(self) -> None:
        for t, device in enumerate(self.devices):
            for part in (self.stems[t], self.tops[t], self.fc6[t], self.fc7[t]):
                part.to(device)
        self.fc8.to(self.devices[0])

    def _both(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exchange: each device gets ``cat([a, b], 1)``, sending only the other tower's half."""
        d0, d1 = self.devices
        return torch.cat([a, b.to(d0)], 1), torch.cat([a.to(d1), b], 1)

    def _towers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, 227, 227]`` -> pool5 maps ``[B, 128, 6, 6]`` on each tower's device."""
        a, b = (self.stems[t](x.to(d)) for t, d in enumerate(self.devices))
        both = self._both(a, b)  # [B, 256, 13, 13] on each device
        return self.tops[0](both[0]), self.tops[1](both[1])

    def _head(self, flat: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """``[B, 9216]`` on each device -> logits ``[B, K]`` on ``devices[0]``."""
        h6 = [self.dropout(torch.relu(self.fc6[t](flat[t]))) for t in range(2)]  # [B, 2048] each
        both = self._both(*h6)  # [B, 4096] on each device
        h7 = [self.dropout(torch.relu(self.fc7[t](both[t]))) for t in range(2)]  # [B, 2048] each
        fc7_out = torch.cat([h7[0], h7[1].to(self.devices[0])], 1)  # [B, 4096]
        return fc7_out if pre_logits else self.fc8(fc7_out)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 227, 227] -> [B, 256, 6, 6]`` on ``devices[0]`` (tower a's maps first, like ``alexnet_paper``)."""
        a, b = self._towers(x)
        return torch.cat([a, b.to(self.devices[0])], 1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        flat = torch.flatten(features, 1)  # [B, 9216]
        return self._head((flat.to(self.devices[0]), flat.to(self.devices[1])), pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._towers(x)
        return self._head(self._both(torch.flatten(a, 1), torch.flatten(b, 1)))  # [B, 4608] halves -> [B, K]

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None,
                       **kwargs) -> tuple[torch.Tensor]:
        """``(images [batch, 3, 227, 227],)`` (the paper's side)."""
        side = PAPER_SPEC.input_size
        return random_inputs(batch, shape or (3, side, side), **kwargs)

    def reset_classifier(self, num_classes: int) -> None:
        check_classes("num_classes", num_classes)
        fc8 = nn.Linear(self.fc8.in_features, num_classes, device=self.devices[0])
        if self.init == "paper":
            nn.init.normal_(fc8.weight, 0.0, 0.01)
            nn.init.zeros_(fc8.bias)
        self.fc8 = fc8


# Where each tensor of the one-module form goes in the split form: (paper key, split key pattern, axis split on).
# Output channels/neurons split on axis 0 for every layer; grouped convolutions keep their per-group input width.
_SPLIT_MAP = (
    ("features.conv1", "stems.{t}.conv1_{s}"), ("features.conv2", "stems.{t}.conv2_{s}"),
    ("features.conv3", "tops.{t}.conv3_{s}"), ("features.conv4", "tops.{t}.conv4_{s}"),
    ("features.conv5", "tops.{t}.conv5_{s}"), ("classifier.fc6", "fc6.{t}"), ("classifier.fc7", "fc7.{t}"),
)


def paper_to_split_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``alexnet_paper`` weights -> ``alexnet_paper_split`` weights (tower a takes the first half of every layer's
    outputs, as the grouped convolutions already assign them)."""
    out: dict[str, torch.Tensor] = {}
    for paper_key, split_key in _SPLIT_MAP:
        for kind in ("weight", "bias"):
            halves = state[f"{paper_key}.{kind}"].chunk(2, dim=0)
            for t, s in enumerate("ab"):
                out[f"{split_key.format(t=t, s=s)}.{kind}"] = halves[t].clone()
    for kind in ("weight", "bias"):
        out[f"fc8.{kind}"] = state[f"classifier.fc8.{kind}"].clone()
    return out


def split_to_paper_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``alexnet_paper_split`` weights -> ``alexnet_paper`` weights (the inverse of :func:`paper_to_split_state_dict`;
    tensors are gathered on the device of tower a's)."""
    out: dict[str, torch.Tensor] = {}
    for paper_key, split_key in _SPLIT_MAP:
        for kind in ("weight", "bias"):
            a, b = (state[f"{split_key.format(t=t, s=s)}.{kind}"] for t, s in enumerate("ab"))
            out[f"{paper_key}.{kind}"] = torch.cat([a, b.to(a.device)], 0)
    for kind in ("weight", "bias"):
        out[f"classifier.fc8.{kind}"] = state[f"fc8.{kind}"].clone()
    return out


class AlexNet(nn.Module):
    """torchvision's AlexNet (same modules, shapes and ``state_dict`` keys): ``[B, 3, 224, 224] -> [B, K]``.

    One tower, no LRN, 64-192-384-256-256 kernels, dropout *before* fc6 and fc7, adaptive average pooling to 6x6.
    The pooling is skipped when pool5 is already 6x6 (it is the identity there), which saves a pass over the maps.
    """

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5):
        super().__init__()
        check_classes("num_classes", num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 256, h, w]`` pool5 maps (6x6 at 224x224)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """pool5 maps ``[B, 256, h, w]`` -> logits ``[B, K]`` (or ``[B, 4096]`` with ``pre_logits``)."""
        if features.shape[-2:] != (6, 6):
            features = self.avgpool(features)
        x = torch.flatten(features, 1)  # [B, 9216]
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None,
                       **kwargs) -> tuple[torch.Tensor]:
        """``(images [batch, 3, 224, 224],)`` (torchvision's side)."""
        return random_inputs(batch, shape or (3, 224, 224), **kwargs)

    def reset_classifier(self, num_classes: int) -> None:
        check_classes("num_classes", num_classes)
        self.classifier[-1] = nn.Linear(4096, num_classes, device=self.classifier[-1].weight.device)


def _default_devices() -> tuple[str, str]:
    return ("cuda:0", "cuda:1") if torch.cuda.device_count() >= 2 else ("cpu", "cpu")


#: ``extra["recipe"]`` names the shipped training recipe of each model (``dlparts.train.config.load_config(name)``,
#: ``dlparts fit --config NAME``): section 5 of the paper for the full-size nets, the CPU recipe for the small one.
_COMMON = dict(family="alexnet", task="image_cls", paper=PAPER, num_classes=1000)


@register_model("alexnet_paper", num_params=60_965_224, input_spec=(3, 227, 227), recipe="alexnet_imagenet",
                **_COMMON)
def alexnet_paper(*, num_classes: int = 1000, dropout: float = 0.5, init: str = "paper",
                  generator: torch.Generator | None = None) -> AlexNetPaper:
    """The paper's two-tower AlexNet in one module (towers as ``groups=2``), 227x227 input."""
    return AlexNetPaper(num_classes, dropout=dropout, init=init, generator=generator)


@register_model("alexnet_paper_split", num_params=60_965_224, input_spec=(3, 227, 227), recipe="alexnet_imagenet",
                **_COMMON)
def alexnet_paper_split(*, num_classes: int = 1000, devices: Sequence[str] | None = None, dropout: float = 0.5,
                        init: str = "paper", generator: torch.Generator | None = None) -> AlexNetPaperSplit:
    """The paper's AlexNet with its towers on two devices (default: two GPUs when there are, else the CPU twice)."""
    return AlexNetPaperSplit(num_classes, devices=devices or _default_devices(), dropout=dropout, init=init,
                             generator=generator)


@register_model("alexnet", num_params=61_100_840, input_spec=(3, 224, 224), recipe="alexnet_imagenet", **_COMMON)
def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision-compatible AlexNet: loads ``torchvision.models.alexnet().state_dict()`` as is."""
    return AlexNet(num_classes, dropout=dropout)


@register_model("alexnet_small", family="alexnet", task="image_cls", paper=PAPER, num_params=1_109_194,
                input_spec=(3, 40, 40), num_classes=10, recipe="alexnet_small_cpu")
def alexnet_small(*, num_classes: int = 10, dropout: float = 0.5, init: str = "kaiming",
                  generator: torch.Generator | None = None, activation: str = "relu", pool_kernel: int = 3,
                  lrn: bool = True, towers: int = 2) -> AlexNetPaper:
    """The paper's design for 32-64 px images: conv1 5x5 stride 2, widths 48-128-192-192-128, FC 512-512, average
    pooling to 2x2 before fc6; He initialization (the paper's N(0, 0.01) stalls at this size).  40 px crops of 48 px
    images train to >= 90% on the embedded shapes in minutes (the ``alexnet_small_cpu`` recipe).  Section 3's switches
    (:class:`AlexNetPaper`), and ``towers=1``: section 3.2's one-tower net (:func:`one_tower`)."""
    if towers not in (1, 2):
        raise ConfigError(f"towers={towers!r} must be 2 (the paper's) or 1 (half the kernels, one tower)")
    spec = SMALL_SPEC if towers == 2 else one_tower(SMALL_SPEC)
    return AlexNetPaper(num_classes, spec=spec, towers=towers, dropout=dropout, init=init, generator=generator,
                        activation=activation, pool_kernel=pool_kernel, lrn=lrn)
