"""PointNet++: Qi, Yi, Su, Guibas, "PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric Space",
NeurIPS 2017; layer settings from the authors' TensorFlow code (``models/pointnet2_*.py``).

Every variant is a row of :data:`VARIANTS`: set abstraction levels ``(npoint, radii, nsamples, mlps)`` (one radius for
SSG, several for MSG, ``npoint=None`` for the group-all level), feature propagation MLPs (segmentation only, coarsest
first), the head's hidden widths and dropout.  A builder's ``variant`` argument replaces its row by another of the
same form (:func:`table`; the CPU recipes' narrower tables).  One class, :class:`PointNet2`, reads a row for every task:

* ``point_cls``: ``points [B, N, C] -> logits [B, K]``; the global feature of the group-all level, then MLP
  (512, 256) with batch norm and dropout 0.5, ``Linear -> K`` (40 ModelNet classes).
* ``point_partseg``: ``points [B, N, C]``, ``category [B] -> [B, N, P]``; ShapeNetPart conventions (16 categories,
  50 parts): the category's one-hot, xyz and the extra input channels are the skip features of the last
  propagation level (as the authors' ``pointnet2_part_seg_msg_one_hot.py``; we do the same for SSG).  Input xyz plus
  normals (6 channels) as in the paper.
* ``point_semseg``: ``points [B, N, C] -> [B, N, K]``; S3DIS blocks of 9 channels (xyz, rgb, normalized room xyz)
  and 13 classes by default; the extra channels are features of the first level and skip features of the last.
  The authors released only the SSG net (for ScanNet); the MSG table is the one of the most used PyTorch port
  (yanx27/Pointnet_Pointnet2_pytorch, ``pointnet2_sem_seg_msg.py``).

Extra input channels (normals, colours, height) follow xyz: ``in_channels = 3 + extra``.  Sampling starts at point 0
and neighbours come in index order by default, as the paper's kernels do, which makes the output depend on the order
of the input points; ``start="centroid-farthest", order="nearest"`` makes every variant order invariant.  All variants
go through ``torch.export.export`` (tested), with sampling and grouping as opaque custom ops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from dlparts.errors import ConfigError, ShapeError
from dlparts.layers.heads import ClassifierHead
from dlparts.layers.pointnet2 import FeaturePropagation, GroupAll, SetAbstraction
from dlparts.models.registry import random_inputs, register_model

PAPER = ("Qi, Yi, Su, Guibas. PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric Space. "
         "NeurIPS 2017")


@dataclass(frozen=True)
class Level:
    """One set abstraction level: ``npoint`` centres (``None``: group all), and per scale a radius, a neighbour
    count and the widths of its shared MLP."""

    npoint: int | None
    radii: tuple[float, ...]
    nsamples: tuple[int, ...]
    mlps: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Variant:
    levels: tuple[Level, ...]
    fp: tuple[tuple[int, ...], ...] = ()
    head: tuple[int, ...] = (512, 256)
    dropout: float = 0.5


def _all(*mlp: int) -> Level:
    return Level(None, (), (), (mlp,))


VARIANTS: dict[str, Variant] = {
    "cls_ssg": Variant((
        Level(512, (0.2,), (32,), ((64, 64, 128),)),
        Level(128, (0.4,), (64,), ((128, 128, 256),)),
        _all(256, 512, 1024))),
    "cls_msg": Variant((
        Level(512, (0.1, 0.2, 0.4), (16, 32, 128), ((32, 32, 64), (64, 64, 128), (64, 96, 128))),
        Level(128, (0.2, 0.4, 0.8), (32, 64, 128), ((64, 64, 128), (128, 128, 256), (128, 128, 256))),
        _all(256, 512, 1024))),
    "partseg_ssg": Variant((
        Level(512, (0.2,), (64,), ((64, 64, 128),)),
        Level(128, (0.4,), (64,), ((128, 128, 256),)),
        _all(256, 512, 1024)), fp=((256, 256), (256, 128), (128, 128, 128)), head=(128,)),
    "partseg_msg": Variant((
        Level(512, (0.1, 0.2, 0.4), (32, 64, 128), ((32, 32, 64), (64, 64, 128), (64, 96, 128))),
        Level(128, (0.4, 0.8), (64, 128), ((128, 128, 256), (128, 196, 256))),
        _all(256, 512, 1024)), fp=((256, 256), (256, 128), (128, 128)), head=(128,)),
    "semseg_ssg": Variant((
        Level(1024, (0.1,), (32,), ((32, 32, 64),)),
        Level(256, (0.2,), (32,), ((64, 64, 128),)),
        Level(64, (0.4,), (32,), ((128, 128, 256),)),
        Level(16, (0.8,), (32,), ((256, 256, 512),))),
        fp=((256, 256), (256, 256), (256, 128), (128, 128, 128)), head=(128,)),
    "semseg_msg": Variant((
        Level(1024, (0.05, 0.1), (16, 32), ((16, 16, 32), (32, 32, 64))),
        Level(256, (0.1, 0.2), (16, 32), ((64, 64, 128), (64, 96, 128))),
        Level(64, (0.2, 0.4), (16, 32), ((128, 196, 256), (128, 196, 256))),
        Level(16, (0.4, 0.8), (16, 32), ((256, 256, 512), (256, 384, 512)))),
        fp=((256, 256), (256, 256), (256, 128), (128, 128, 128)), head=(128,)),
}


class PointNet2(nn.Module):
    """PointNet++ for one task, built from a :class:`Variant` row (module docstring)."""

    def __init__(self, variant: Variant, task: str, num_classes: int, *, in_channels: int = 3,
                 num_categories: int = 16, normalize_xyz: bool = False, start: int | str = 0, order: str = "index",
                 first_layer_per_point: bool = True):
        super().__init__()
        if in_channels < 3:
            raise ConfigError(f"in_channels={in_channels} must be at least 3 (xyz)")
        if task not in ("point_cls", "point_partseg", "point_semseg"):
            raise ConfigError(f"task={task!r} must be point_cls, point_partseg or point_semseg")
        self.task, self.in_channels, self.num_categories = task, in_channels, num_categories
        self.sa = nn.ModuleList()
        widths = [in_channels - 3]  # feature channels at each level, the input first
        for level in variant.levels:
            if level.npoint is None:
                layer = GroupAll(level.mlps[0], widths[-1])
            else:
                layer = SetAbstraction(level.npoint, level.radii, level.nsamples, level.mlps, widths[-1],
                                       normalize_xyz=normalize_xyz, start=start, order=order,
                                       first_layer_per_point=first_layer_per_point)
            self.sa.append(layer)
            widths.append(layer.out_channels)
        self.fp = nn.ModuleList()
        coarse = widths[-1]
        for i, mlp in enumerate(variant.fp):
            skip = widths[len(variant.fp) - 1 - i]
            if i == len(variant.fp) - 1 and task == "point_partseg":
                skip += num_categories + 3
            self.fp.append(FeaturePropagation(coarse + skip, mlp))
            coarse = self.fp[-1].out_channels
        dropout = (variant.dropout,) * len(variant.head)
        self.head = ClassifierHead(coarse, variant.head, num_classes, dropout)

    def _check(self, points: torch.Tensor, category: torch.Tensor | None) -> None:
        if points.dim() != 3 or points.shape[-1] != self.in_channels:
            raise ShapeError(f"{self.task}: points must have shape [B, N, {self.in_channels}], "
                             f"got {list(points.shape)}")
        if self.task == "point_partseg" and (category is None or category.shape != points.shape[:1]):
            got = None if category is None else list(category.shape)
            raise ShapeError(f"point_partseg: category must have shape [{points.shape[0]}], got {got}")

    def forward_features(self, points: torch.Tensor, category: torch.Tensor | None = None) -> torch.Tensor:
        """Classification: ``[B, N, C] -> [B, 1024]``; segmentation: ``-> [B, N, fp[-1][-1]]`` per point."""
        self._check(points, category)
        xyz = points[..., :3].contiguous()  # [B, N, 3]
        feats = points[..., 3:] if self.in_channels > 3 else None  # [B, N, C - 3]
        levels = [(xyz, feats)]
        for layer in self.sa:
            levels.append(layer(*levels[-1]))
        if not len(self.fp):
            return levels[-1][1][:, 0, :]  # [B, 1024]
        h = levels[-1][1]
        for i, layer in enumerate(self.fp):
            fine_xyz, skip = levels[len(self.fp) - 1 - i]
            if i == len(self.fp) - 1 and self.task == "point_partseg":
                one_hot = F.one_hot(category, self.num_categories).to(xyz.dtype)  # [B, 16]
                parts = [one_hot[:, None, :].expand(-1, xyz.shape[1], -1), xyz]  # [B, N, 16], [B, N, 3]
                skip = torch.cat(parts if skip is None else [*parts, skip], dim=-1)  # [B, N, 16 + C]
            h = layer(fine_xyz, levels[len(self.fp) - i][0], skip, h)
        return h

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[..., F] -> [..., K]`` logits (or the last hidden layer with ``pre_logits``)."""
        return self.head(features, pre_logits)

    def forward(self, points: torch.Tensor, category: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(points, category))

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def example_inputs(self, batch: int = 1, shape: tuple[int, ...] | None = None,
                       **kwargs) -> tuple[torch.Tensor, ...]:
        """``(points [batch, N, C],)`` and for part segmentation ``category [batch]``; by default the task's point
        count of the paper (1024 ModelNet, 2048 ShapeNetPart, 4096 S3DIS points)."""
        shape = shape or (_NUM_POINTS[self.task], self.in_channels)
        categories = self.num_categories if self.task == "point_partseg" else 0
        return random_inputs(batch, shape, categories=categories, **kwargs)


_NUM_POINTS = {"point_cls": 1024, "point_partseg": 2048, "point_semseg": 4096}


def table(base: Variant, spec: Variant | dict | None) -> Variant:
    """The table row that a builder's ``variant`` argument names: ``None`` is ``base``; a :class:`Variant` is itself;
    a mapping in the YAML form of the recipes, ``{"levels": [[npoint or None, radii, nsamples, mlps], ...], "fp":
    [...], "head": [...], "dropout": p}``, replaces ``base``'s levels and, where given, the rest.  A mapping that is
    not such a table is a :class:`~dlparts.errors.ConfigError` naming ``model.variant``."""
    if spec is None or isinstance(spec, Variant):
        return spec or base
    try:
        unknown = set(spec) - {"levels", "fp", "head", "dropout"}
        if unknown:
            raise KeyError(f"unknown keys {sorted(unknown)}")
        return replace(base, levels=tuple(_level(row) for row in spec["levels"]),
                       fp=tuple(_widths(f) for f in spec.get("fp", base.fp)),
                       head=_widths(spec.get("head", base.head)), dropout=float(spec.get("dropout", base.dropout)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"model.variant {spec!r} is not a PointNet++ table ({type(exc).__name__}: {exc}); "
                          "levels are [npoint or null, radii, nsamples, mlps] rows") from None


def _level(row) -> Level:
    npoint, radii, nsamples, mlps = row
    if npoint is not None and (not isinstance(npoint, int) or npoint < 1):
        raise ValueError(f"npoint {npoint!r} must be a positive integer or null (group all)")
    level = Level(npoint, tuple(float(r) for r in radii), _widths(nsamples), tuple(_widths(m) for m in mlps))
    scales = 1 if npoint is None else len(level.radii)
    if not len(level.mlps) == len(level.nsamples) + (npoint is None) == scales:
        raise ValueError(f"row {row!r} needs one radius, neighbour count and MLP per scale")
    return level


def _widths(values) -> tuple[int, ...]:
    widths = tuple(values)
    if not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"{values!r} must be positive integers")
    return widths


def _register(key: str, task: str, num_params: int, input_spec: tuple[int, int], num_classes: int, doc: str):
    def builder(*, variant: Variant | dict | None = None, num_classes: int = num_classes,
                in_channels: int = input_spec[1], num_categories: int = 16,
                normalize_xyz: bool = False, start: int | str = 0, order: str = "index",
                first_layer_per_point: bool = True) -> PointNet2:
        return PointNet2(table(VARIANTS[key], variant), task, num_classes, in_channels=in_channels,
                         num_categories=num_categories, normalize_xyz=normalize_xyz, start=start, order=order,
                         first_layer_per_point=first_layer_per_point)

    name = f"pointnet2_{key}"
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    extra = {"num_categories": 16} if task == "point_partseg" else {}
    register_model(name, family="pointnet2", task=task, paper=PAPER, num_params=num_params, input_spec=input_spec,
                   num_classes=num_classes, **extra)(builder)
    return builder


_CLS_SSG_DOC = """PointNet++ SSG classifier (Sec. 4.1; ``pointnet2_cls_ssg.py``): SA(512, 0.2, 32, [64, 64, 128]),
SA(128, 0.4, 64, [128, 128, 256]), SA(all, [256, 512, 1024]), MLP (512, 256), dropout 0.5, 40 classes.

**1,475,688 parameters** (``sum(p.numel())``, checked by the tests and ``dlparts summary``).  PointNeXt's model zoo
lists 1.466M.  The difference is in layers that do not change the function: the authors' 1x1 convolutions and
hidden fully connected layers carry a bias before their batch norm (2,560 in the set abstraction MLPs, 768 in the
head), which PointNeXt's re-implementation drops (1,472,360 left with 40 classes); with its 15-class ScanObjectNN
head (``256*15 + 15`` instead of ``256*40 + 40``) the count is 1,465,935, PointNeXt's 1.466M to the digit shown.  We
keep the authors' layers.

**MACs for one 1024-point cloud** (multiply-accumulates of the shared MLPs and FC layers, biases excluded), by hand:
SA1 ``512 x 32 x (3*64 + 64*64 + 64*128) = 204,472,320``; SA2 ``128 x 64 x (131*128 + 128*128 + 128*256) =
540,016,640``; SA3 ``128 x (259*256 + 256*512 + 512*1024) = 92,372,992``; head ``1024*512 + 512*256 + 256*40 =
665,600``: **837,527,552 = 0.84 GMACs**, PointNeXt's figure, which is what ``dlparts.summarize(model, (1024, 3))``
reports with ``first_layer_per_point=False``.  The default ``first_layer_per_point=True`` computes the first layer of
SA1 and SA2 once per point (1024 and 512 points) instead of once per (centre, neighbour) pair (16,384 and 8,192 pairs),
plus a 3-column product per centre: **705,947,648 MACs** executed (``dlparts summary`` counts what runs), the same
outputs.  Sampling, ball query and grouping add about 0.03 GFLOPs (``dlparts_cost`` of the set abstraction rows).
"""

pointnet2_cls_ssg = _register("cls_ssg", "point_cls", 1_475_688, (1024, 3), 40, _CLS_SSG_DOC)
pointnet2_cls_msg = _register("cls_msg", "point_cls", 1_747_368, (1024, 3), 40,
                              "PointNet++ MSG classifier (Sec. 3.3, ``pointnet2_cls_msg.py``), 40 classes.")
pointnet2_partseg_ssg = _register("partseg_ssg", "point_partseg", 1_411_250, (2048, 6), 50,
                                  "PointNet++ SSG part segmentation, xyz + normals, 16 categories, 50 parts.")
pointnet2_partseg_msg = _register("partseg_msg", "point_partseg", 1_740_958, (2048, 6), 50,
                                  "PointNet++ MSG part segmentation (``pointnet2_part_seg_msg_one_hot.py``).")
pointnet2_semseg_ssg = _register("semseg_ssg", "point_semseg", 968_941, (4096, 9), 13,
                                 "PointNet++ SSG semantic segmentation (``pointnet2_sem_seg.py``), S3DIS blocks.")
pointnet2_semseg_msg = _register("semseg_msg", "point_semseg", 1_883_893, (4096, 9), 13,
                                 "PointNet++ MSG semantic segmentation (the yanx27 port's table), S3DIS blocks.")
