"""Evaluation metrics, as torchmetrics ``Metric`` objects (their states are summed across DDP processes).

* Classification (PointNet section 5.1, AlexNet section 6): overall accuracy over all samples (``acc``), mean of the
  per-class accuracies (``class_acc``), top-5 accuracy and the confusion matrix.
* Part segmentation, the ShapeNetPart protocol of PointNet (section 5.1) and PointNet++: for each shape, the IoU of each
  part *of its category* (a part absent from both prediction and ground truth counts IoU 1), averaged over those parts;
  instance mIoU = mean over all shapes, class mIoU = mean over categories of the mean over their shapes.
* Semantic segmentation (PointNet section 5.1, S3DIS): overall point accuracy and the mean over classes of
  ``TP / (TP + FP + FN)`` from one confusion matrix (classes that occur in neither prediction nor truth are left out).

The vectorized per-shape IoU has a plain loop beside it (:func:`shape_ious_reference`); the tests hold the two
equal and check all of them on hand-computed cases.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from dlparts.train.inference import category_part_mask


def classification_metrics(num_classes: int) -> MetricCollection:
    """``acc``, ``class_acc``, ``top5`` (when there are more than 5 classes) and ``confmat`` over ``[B, K]`` logits."""
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "class_acc": MulticlassAccuracy(num_classes, average="macro"),
        "confmat": MulticlassConfusionMatrix(num_classes),
    }
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


def shape_ious(preds: torch.Tensor, target: torch.Tensor, category: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-shape mIoU over the parts of each shape's category.

    ``preds``, ``target``: int64 ``[B, N]`` global part indices; ``category``: int64 ``[B]``; ``mask``: bool
    ``[num_categories, P]`` from :func:`category_part_mask`.  Returns float64 ``[B]``.
    """
    num_parts = mask.shape[1]
    parts = torch.arange(num_parts, device=preds.device)
    pred_oh = preds[..., None] == parts  # [B, N, P]
    true_oh = target[..., None] == parts  # [B, N, P]
    inter = (pred_oh & true_oh).sum(dim=1).double()  # [B, P]
    union = (pred_oh | true_oh).sum(dim=1).double()  # [B, P]
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))  # [B, P]
    own = mask.to(preds.device)[category].double()  # [B, P]
    return (iou * own).sum(dim=1) / own.sum(dim=1)


def shape_ious_reference(preds, target, category, parts_of_category: dict[int, list[int]]) -> list[float]:
    """The protocol written out: one shape at a time, one part at a time (the loop of PointNet's ``test.py``)."""
    result = []
    for p, t, c in zip(preds.tolist(), target.tolist(), category.tolist()):
        ious = []
        for part in parts_of_category[c]:
            inter = sum(1 for a, b in zip(p, t) if a == part and b == part)
            union = sum(1 for a, b in zip(p, t) if a == part or b == part)
            ious.append(1.0 if union == 0 else inter / union)
        result.append(sum(ious) / len(ious))
    return result


class PartSegIoU(Metric):
    """ShapeNetPart instance and class mIoU; ``compute()`` returns ``{"instance_miou", "class_miou", "per_category"}``."""

    full_state_update = False

    def __init__(self, parts_of_category: dict[int, list[int]], num_parts: int, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("mask", category_part_mask(parts_of_category, num_parts), persistent=False)
        num_categories = self.mask.shape[0]
        self.add_state("iou_sum", torch.zeros(num_categories, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_categories, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, category: torch.Tensor) -> None:
        ious = shape_ious(preds, target, category, self.mask)
        self.iou_sum.index_add_(0, category, ious)
        self.count.index_add_(0, category, torch.ones_like(ious))

    def compute(self) -> dict[str, torch.Tensor]:
        seen = self.count > 0
        per_category = self.iou_sum / self.count.clamp_min(1)
        return {"instance_miou": self.iou_sum.sum() / self.count.sum().clamp_min(1),
                "class_miou": per_category[seen].mean() if seen.any() else per_category.sum(),
                "per_category": torch.where(seen, per_category, torch.full_like(per_category, float("nan")))}


class ConfmatIoU(NamedTuple):
    """What :func:`iou_from_confmat` reads off a confusion matrix; float64 tensors."""

    miou: torch.Tensor  # [] mean over the classes with a non-empty union
    oa: torch.Tensor  # [] overall accuracy
    per_class_iou: torch.Tensor  # [K], NaN where a class is in neither truth nor prediction


def iou_from_confmat(confmat: torch.Tensor) -> ConfmatIoU:
    """``(miou, oa, per_class_iou)`` from a ``[K, K]`` confusion matrix (rows truth, columns prediction); classes
    with an empty union get NaN and are left out of the mean."""
    cm = confmat.double()
    tp = cm.diag()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    oa = tp.sum() / cm.sum().clamp_min(1)
    return ConfmatIoU(iou.nanmean(), oa, iou)


def mean_class_accuracy(confmat: torch.Tensor) -> torch.Tensor:
    """Mean over the classes present in the truth of ``TP / row total``, from a ``[K, K]`` confusion matrix."""
    cm = confmat.double()
    support = cm.sum(dim=1)
    return (cm.diag()[support > 0] / support[support > 0]).mean()


class SemSegMetrics(MulticlassConfusionMatrix):
    """Semantic segmentation: ``compute()`` returns ``{"miou", "oa", "per_class_iou", "confmat"}`` over flat points."""

    def compute(self) -> dict[str, torch.Tensor]:
        confmat = super().compute()
        return {**iou_from_confmat(confmat)._asdict(), "confmat": confmat}
