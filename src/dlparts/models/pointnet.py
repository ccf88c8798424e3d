"""PointNet: Qi, Su, Mo, Guibas, "PointNet: Deep Learning on Point Sets for 3D Classification and Segmentation",
CVPR 2017, with the authors' released TensorFlow code as the reference for what the paper leaves out.

Four registered models, all taking channels-last clouds ``[B, N, C]`` (xyz in channels 0..2):

* ``pointnet_cls`` (Fig. 2): input transform (3x3 T-Net), shared MLP (64, 64), feature transform (64x64 T-Net),
  shared MLP (64, 128, 1024), max pool, MLP (512, 256) with batch norm and dropout keep 0.7 after each, ``Linear ->
  K``.  3,480,049 parameters with 40 classes (the paper's "3.5M", Table 6).
* ``pointnet_cls_vanilla``: the same without the two transforms (Table 5's "no transformation" row): 819,624.
* ``pointnet_partseg`` (supplementary Fig. 9, ``part_seg/pointnet_part_seg.py``): per-point features of five levels
  (64, 128, 128, 512, 2048 channels, the 128-channel level after a 128x128 feature transform), the 2048-d global
  feature and the object category one-hot (16 ShapeNetPart categories) concatenated per point (4944 channels), then
  shared MLP (256, 256, 128) with dropout keep 0.8 after the first two, ``Linear -> 50`` parts.  The authors' auxiliary
  category classifier (trained jointly, discarded at test time) is left out.  7,979,451 parameters.
* ``pointnet_semseg`` (Sec. 5.1, ``sem_seg/model.py``): 9 input channels (xyz, rgb, normalized room xyz as in S3DIS),
  shared MLP (64, 64, 64, 128, 1024), max pool, MLP (256, 128) to a global feature concatenated to every point's
  1024-d local feature, shared MLP (512, 256), dropout keep 0.7, ``Linear -> 13`` classes.  No transforms.
  1,174,669 parameters.

The transforms apply to xyz only; extra channels (normals, colours) join the first MLP untransformed.  Models with a
feature transform expose ``regularization_loss()``: 0.001 ``||I - A A^T||_F^2`` of the most recent forward (batch
mean; zero when the transform is switched off).  :func:`critical_points` and :func:`upper_bound_mask` give the
critical point set and the upper-bound shape of Sec. 4.3 / Fig. 7.

Export: every model goes through ``torch.export.export`` (tested).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dlparts.errors import ConfigError, ShapeError
from dlparts.layers import route
from dlparts.layers.heads import ClassifierHead, check_classes
from dlparts.layers.mlp import MaxPool, SharedMLP
from dlparts.layers.tnet import REG_WEIGHT, TNet, orthogonality_loss
from dlparts.models.registry import random_inputs, register_model

PAPER = "Qi, Su, Mo, Guibas. PointNet: Deep Learning on Point Sets for 3D Classification and Segmentation. CVPR 2017"


def check_points(name: str, points: torch.Tensor, channels: int) -> None:
    if points.dim() != 3 or points.shape[-1] != channels:
        raise ShapeError(f"{name}: points must have shape [B, N, {channels}], got {list(points.shape)}")


def _transform_xyz(points: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``points [B, N, C]`` with its xyz multiplied by ``a [B, 3, 3]`` on the right, as the authors' ``x @ A``."""
    return torch.cat([points[..., :3] @ a, points[..., 3:]], dim=-1)  # [B, N, C]


def _record(model: nn.Module, reg: torch.Tensor) -> None:
    """Keep the regularizer for ``regularization_loss()``; an exported graph has no state to keep it in."""
    if not torch.compiler.is_exporting():
        model._reg = reg


class PointNetCls(nn.Module):
    """PointNet classification: ``points [B, N, C] -> logits [B, K]`` (global feature ``[B, 1024]``)."""

    def __init__(self, num_classes: int = 40, *, in_channels: int = 3, input_transform: bool = True,
                 feature_transform: bool = True, dropout: float = 0.3):
        super().__init__()
        if in_channels < 3:
            raise ConfigError(f"in_channels={in_channels} must be at least 3 (xyz)")
        self.in_channels = in_channels
        self.input_tnet = TNet(3) if input_transform else None
        self.mlp1 = SharedMLP(in_channels, (64, 64))
        self.feature_tnet = TNet(64) if feature_transform else None
        self.mlp2 = SharedMLP(64, (64, 128, 1024))
        self.pool = MaxPool(dim=1)
        self.head = ClassifierHead(1024, (512, 256), num_classes, (dropout, dropout))
        self._reg = torch.zeros(())

    def point_features(self, points: torch.Tensor, transforms: tuple | None = None):
        """Per-point features before the max pool, ``[B, N, 1024]``, and the ``(input, feature)`` transforms used
        (``[B, 3, 3]``, ``[B, 64, 64]`` or ``None``).  Given ``transforms``, the T-Nets are not run: each point's
        feature then depends on that point alone (what Sec. 4.3's critical-set analysis needs)."""
        h, transforms = self._aligned_features(points, transforms)
        return self.mlp2(h), transforms

    def _aligned_features(self, points: torch.Tensor, transforms: tuple | None):
        """The ``[B, N, 64]`` features that ``mlp2`` takes (after both transforms) and the transforms used."""
        check_points(type(self).__name__, points, self.in_channels)
        a_in, a_feat = transforms if transforms is not None else (None, None)
        if self.input_tnet is not None:
            a_in = self.input_tnet(points[..., :3]) if a_in is None else a_in
            points = _transform_xyz(points, a_in)
        h = self.mlp1(points)  # [B, N, 64]
        if self.feature_tnet is not None:
            a_feat = self.feature_tnet(h) if a_feat is None else a_feat
            h = h @ a_feat  # [B, N, 64]
        return h, (a_in, a_feat)

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """``[B, N, C] -> [B, 1024]`` global feature; records the feature-transform regularizer."""
        h, (_, a_feat) = self._aligned_features(points, None)
        _record(self, REG_WEIGHT * orthogonality_loss(a_feat) if a_feat is not None else h.new_zeros(()))
        return self.mlp2.forward_max(h, self.pool)  # [B, 1024]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, 1024] -> [B, K]`` logits (or the ``[B, 256]`` last hidden layer with ``pre_logits``)."""
        return self.head(features, pre_logits)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(points))

    def regularization_loss(self) -> torch.Tensor:
        """0.001 ``||I - A A^T||^2`` of the most recent forward's feature transform (0 without one); 0-dim."""
        return self._reg

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None, **kwargs) -> tuple[torch.Tensor]:
        """``(points [batch, N, C],)``, by default 1024 points (:func:`~dlparts.models.registry.random_inputs`)."""
        return random_inputs(batch, shape or (1024, self.in_channels), **kwargs)

    def critical_points(self, points: torch.Tensor) -> tuple[list[torch.Tensor], tuple]:
        """The critical point set of each cloud of ``points [B, N, C]`` (see :func:`critical_points`)."""
        return critical_points(self, points)


class PointNetPartSeg(nn.Module):
    """PointNet part segmentation: ``points [B, N, C]``, ``category [B]`` int64 -> logits ``[B, N, P]``."""

    def __init__(self, num_classes: int = 50, *, num_categories: int = 16, in_channels: int = 3,
                 input_transform: bool = True, feature_transform: bool = True, dropout: float = 0.2):
        super().__init__()
        check_classes("num_categories", num_categories)
        self.in_channels, self.num_categories = in_channels, num_categories
        self.input_tnet = TNet(3, fcs=(128, 128)) if input_transform else None
        self.conv1 = SharedMLP(in_channels, (64,))
        self.conv2 = SharedMLP(64, (128,))
        self.conv3 = SharedMLP(128, (128,))
        self.feature_tnet = TNet(128, convs=(256, 1024), fcs=(512, 256)) if feature_transform else None
        self.conv4 = SharedMLP(128, (512,))
        self.conv5 = SharedMLP(512, (2048,))
        self.pool = MaxPool(dim=1)
        width = 2048 + num_categories + 64 + 128 + 128 + 512 + 2048
        self.head = ClassifierHead(width, (256, 256, 128), num_classes, (dropout, dropout, 0.0))
        self._reg = torch.zeros(())

    def forward_features(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]``, ``[B]`` -> ``[B, N, 4944]``: global feature and one-hot, then the five point levels."""
        check_points(type(self).__name__, points, self.in_channels)
        if category.shape != points.shape[:1]:
            raise ShapeError(f"{type(self).__name__}: category must have shape [{points.shape[0]}], "
                             f"got {list(category.shape)}")
        if self.input_tnet is not None:
            points = _transform_xyz(points, self.input_tnet(points[..., :3]))
        out1 = self.conv1(points)  # [B, N, 64]
        out2 = self.conv2(out1)  # [B, N, 128]
        out3 = self.conv3(out2)  # [B, N, 128]
        h, reg = out3, out3.new_zeros(())
        if self.feature_tnet is not None:
            a = self.feature_tnet(out3)  # [B, 128, 128]
            h, reg = out3 @ a, REG_WEIGHT * orthogonality_loss(a)  # [B, N, 128], []
        _record(self, reg)
        out4 = self.conv4(h)  # [B, N, 512]
        out5 = self.conv5(out4)  # [B, N, 2048]
        one_hot = F.one_hot(category, self.num_categories).to(out5.dtype)  # [B, 16]
        glob = torch.cat([self.pool(out5), one_hot], dim=-1)  # [B, 2064]
        expand = glob[:, None, :].expand(-1, points.shape[1], -1)  # [B, N, 2064]
        return torch.cat([expand, out1, out2, out3, out4, out5], dim=-1)  # [B, N, 4944]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, N, 4944] -> [B, N, P]`` logits (or ``[B, N, 128]`` with ``pre_logits``)."""
        return self.head(features, pre_logits)

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(points, category))

    def regularization_loss(self) -> torch.Tensor:
        """0.001 ``||I - A A^T||^2`` of the most recent forward's 128x128 transform (0 without one); 0-dim."""
        return self._reg

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None,
                       **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(points [batch, N, C], category [batch])``, by default 2048 points (ShapeNetPart's)."""
        return random_inputs(batch, shape or (2048, self.in_channels), categories=self.num_categories, **kwargs)


class PointNetSemSeg(nn.Module):
    """PointNet semantic segmentation: ``points [B, N, C] -> logits [B, N, K]`` (no transforms, as the paper)."""

    def __init__(self, num_classes: int = 13, *, in_channels: int = 9, dropout: float = 0.3):
        super().__init__()
        self.in_channels = in_channels
        self.mlp = SharedMLP(in_channels, (64, 64, 64, 128, 1024))
        self.pool = MaxPool(dim=1)
        self.global_fc = SharedMLP(1024, (256, 128))
        self.head = ClassifierHead(1024 + 128, (512, 256), num_classes, (0.0, dropout))

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """``[B, N, C] -> [B, N, 1152]``: each point's 1024-d feature and the 128-d global feature."""
        check_points(type(self).__name__, points, self.in_channels)
        local = self.mlp(points)  # [B, N, 1024]
        glob = self.global_fc(self.pool(local))  # [B, 128]
        return torch.cat([local, glob[:, None, :].expand(-1, points.shape[1], -1)], dim=-1)  # [B, N, 1152]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(features, pre_logits)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if route.inference(points, self):
            return self._forward_inference(points)
        return self.forward_head(self.forward_features(points))

    def _forward_inference(self, points: torch.Tensor) -> torch.Tensor:
        """``forward`` in evaluation (:func:`dlparts.layers.route.inference`), the same logits up to float rounding:
        one cloud at a time, so that its activations stay in cache rather than a batch's streaming through memory,
        and the head's first layer split as ``W [local, global] + b = W_l local + (W_g global + b)``, the global
        part computed once per cloud instead of once per point (no ``[N, 1152]`` concatenation)."""
        check_points(type(self).__name__, points, self.in_channels)
        hidden, logits = list(self.head[0]), self.head[1]
        first, width = hidden[0], self.mlp.out_channels
        out = []
        for cloud in points:  # [N, C]
            local = self.mlp(cloud)  # [N, 1024]
            glob = self.global_fc(self.pool(local[None]))  # [1, 128]
            h = torch.addmm(F.linear(glob, first.weight[:, width:], first.bias), local, first.weight[:, :width].t())
            out.append(logits(route.run(h, hidden[1:])))  # [N, K]
        return torch.stack(out)  # [B, N, K]

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None, **kwargs) -> tuple[torch.Tensor]:
        """``(points [batch, N, C],)``, by default an S3DIS block of 4096 points."""
        return random_inputs(batch, shape or (4096, self.in_channels), **kwargs)


# ---------------------------------------------------------------------------------------- critical points (Sec. 4.3)
def _frozen_features(model: PointNetCls, points: torch.Tensor, transforms: tuple | None):
    if not isinstance(model, PointNetCls):
        raise ConfigError(f"critical points need a PointNet classifier (pointnet_cls*), got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.point_features(points, transforms)
    finally:
        model.train(was_training)


def critical_points(model: PointNetCls, points: torch.Tensor) -> tuple[list[torch.Tensor], tuple]:
    """The critical point set C_S of each cloud (Sec. 4.3, Thm. 2): the points whose features reach the max in at
    least one of the 1024 channels, so the global feature of C_S alone equals that of the whole cloud.

    ``points [B, N, C]``; returns one sorted ``int64 [n_b]`` index tensor per cloud and the ``(input, feature)``
    transforms of the whole cloud.  With T-Nets the transforms depend on the whole cloud: the equality holds with
    these transforms held fixed (``model.point_features(subset, transforms)``); for ``pointnet_cls_vanilla`` it holds
    for the plain forward.  The model runs in eval mode (batch norm with its running statistics).
    """
    h, transforms = _frozen_features(model, points, None)
    arg = h.argmax(dim=1)  # [B, 1024]: which point holds each channel's max
    return [torch.unique(a) for a in arg], transforms


def upper_bound_mask(model: PointNetCls, points: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """Which probe points lie in the upper-bound shape N_S (Sec. 4.3, Fig. 7): those whose per-point feature is at
    most the cloud's global feature in every channel, so adding any of them leaves the global feature unchanged.

    ``points [B, N, C]``, ``probes [B, P, C]`` (e.g. a grid) -> ``bool [B, P]``.  Probes are embedded with the cloud's
    own transforms (see :func:`critical_points`).
    """
    h, transforms = _frozen_features(model, points, None)
    g = h.amax(dim=1)  # [B, 1024]
    hp, _ = _frozen_features(model, probes, transforms)  # [B, P, 1024]
    return (hp <= g[:, None, :]).all(dim=-1)


# ----------------------------------------------------------------------------------------------------- the registry
_CLS = dict(family="pointnet", task="point_cls", paper=PAPER, input_spec=(1024, 3), num_classes=40)


@register_model("pointnet_cls", num_params=3_480_049, **_CLS)
def pointnet_cls(*, num_classes: int = 40, in_channels: int = 3, dropout: float = 0.3, input_transform: bool = True,
                 feature_transform: bool = True) -> PointNetCls:
    """PointNet classifier with input and feature transforms (Fig. 2), ModelNet40 by default; either transform can
    be switched off, as in Table 5's rows (the feature transform brings its orthogonality regularizer)."""
    return PointNetCls(num_classes, in_channels=in_channels, dropout=dropout, input_transform=input_transform,
                       feature_transform=feature_transform)


@register_model("pointnet_cls_vanilla", num_params=819_624, **_CLS)
def pointnet_cls_vanilla(*, num_classes: int = 40, in_channels: int = 3, dropout: float = 0.3) -> PointNetCls:
    """PointNet classifier without transforms (shared MLPs and max pool only)."""
    return PointNetCls(num_classes, in_channels=in_channels, input_transform=False, feature_transform=False,
                       dropout=dropout)


@register_model("pointnet_partseg", family="pointnet", task="point_partseg", paper=PAPER, num_params=7_979_451,
                input_spec=(2048, 3), num_classes=50, num_categories=16)
def pointnet_partseg(*, num_classes: int = 50, num_categories: int = 16, in_channels: int = 3,
                     dropout: float = 0.2) -> PointNetPartSeg:
    """PointNet part segmentation for ShapeNetPart (16 categories, 50 parts, 2048 points)."""
    return PointNetPartSeg(num_classes, num_categories=num_categories, in_channels=in_channels, dropout=dropout)


@register_model("pointnet_semseg", family="pointnet", task="point_semseg", paper=PAPER, num_params=1_174_669,
                input_spec=(4096, 9), num_classes=13)
def pointnet_semseg(*, num_classes: int = 13, in_channels: int = 9, dropout: float = 0.3) -> PointNetSemSeg:
    """PointNet semantic segmentation for S3DIS blocks (4096 points, 9 channels, 13 classes)."""
    return PointNetSemSeg(num_classes, in_channels=in_channels, dropout=dropout)
