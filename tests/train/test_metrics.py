"""Metrics on hand-computed cases, and the vectorized per-shape IoU against its plain loop."""

import math

import pytest
import torch

from dlparts.train import metrics as M


def test_classification_overall_accuracy_is_over_samples_not_batches():
    metric = M.classification_metrics(3)
    # batch 1: 1 sample, right; batch 2: 3 samples, 1 right -> 2/4 = 0.5 over samples (a mean of batch accuracies
    # would give (1 + 1/3) / 2 = 0.667)
    metric.update(torch.tensor([[5.0, 0, 0]]), torch.tensor([0]))
    metric.update(torch.tensor([[0, 5.0, 0], [5.0, 0, 0], [5.0, 0, 0]]), torch.tensor([1, 2, 2]))
    out = metric.compute()
    assert out["acc"].item() == pytest.approx(0.5)
    # per class: class 0 1/1, class 1 1/1, class 2 0/2 -> mean 2/3
    assert out["class_acc"].item() == pytest.approx(2 / 3)
    assert out["confmat"].tolist() == [[1, 0, 0], [0, 1, 0], [2, 0, 0]]
    assert "top5" not in out  # 3 classes: top-5 would always be 1


def test_top5():
    metric = M.classification_metrics(7)
    logits = torch.tensor([[7.0, 6, 5, 4, 3, 2, 1], [7.0, 6, 5, 4, 3, 2, 1]])
    metric.update(logits, torch.tensor([4, 5]))  # class 4 is 5th best (hit), class 5 is 6th (miss)
    out = metric.compute()
    assert out["top5"].item() == pytest.approx(0.5)
    assert out["acc"].item() == 0.0


PARTS = {0: [0, 1], 1: [2, 3, 4]}  # two categories, five parts numbered globally


def test_part_iou_hand_computed():
    preds = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 3]])
    target = torch.tensor([[0, 1, 1, 1], [2, 2, 3, 3]])
    category = torch.tensor([0, 1])
    # shape 0: part 0 I=1 U=2 -> 0.5; part 1 I=2 U=3 -> 2/3; mean 7/12
    # shape 1: part 2 I=2 U=3 -> 2/3; part 3 I=1 U=2 -> 1/2; part 4 absent from both -> 1; mean 13/18
    ious = M.shape_ious(preds, target, category, M.category_part_mask(PARTS, 5))
    assert ious.tolist() == pytest.approx([7 / 12, 13 / 18])
    metric = M.PartSegIoU(PARTS, 5)
    metric.update(preds, target, category)
    metric.update(torch.tensor([[2, 2, 2, 2]]), torch.tensor([[2, 2, 2, 2]]), torch.tensor([1]))  # perfect: 1
    out = metric.compute()
    assert out["instance_miou"].item() == pytest.approx((7 / 12 + 13 / 18 + 1) / 3)
    assert out["class_miou"].item() == pytest.approx((7 / 12 + (13 / 18 + 1) / 2) / 2)
    assert out["per_category"].tolist() == pytest.approx([7 / 12, (13 / 18 + 1) / 2])


def test_part_iou_prediction_outside_category_lowers_iou():
    # a point of part 0 predicted as part 3 (another category's part): part 0 keeps its union, loses intersection
    ious = M.shape_ious(torch.tensor([[3, 1]]), torch.tensor([[0, 1]]), torch.tensor([0]),
                        M.category_part_mask(PARTS, 5))
    assert ious.tolist() == pytest.approx([(0 + 1) / 2])


@pytest.mark.parametrize("seed", range(5))
def test_part_iou_matches_reference_loop(seed):
    g = torch.Generator().manual_seed(seed)
    parts = {0: [0, 1, 2], 1: [3, 4], 2: [5, 6, 7, 8]}
    category = torch.randint(0, 3, (6,), generator=g)
    n = int(torch.randint(1, 30, (), generator=g))
    target = torch.stack([torch.tensor(parts[int(c)])[torch.randint(0, len(parts[int(c)]), (n,), generator=g)]
                          for c in category])
    preds = torch.randint(0, 9, (6, n), generator=g)  # anything, parts of other categories included
    fast = M.shape_ious(preds, target, category, M.category_part_mask(parts, 9))
    assert fast.tolist() == pytest.approx(M.shape_ious_reference(preds, target, category, parts))


def test_semseg_iou_and_oa_hand_computed():
    metric = M.SemSegMetrics(3)
    metric.update(torch.tensor([0, 0, 1, 1, 1, 0]), torch.tensor([0, 1, 1, 1, 0, 0]))
    out = metric.compute()
    # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1, FN 1 -> 2/4; class 2 never occurs -> left out
    assert out["per_class_iou"][:2].tolist() == pytest.approx([0.5, 0.5])
    assert math.isnan(out["per_class_iou"][2].item())
    assert out["miou"].item() == pytest.approx(0.5)
    assert out["oa"].item() == pytest.approx(4 / 6)


def test_iou_from_confmat_hand_built_names_its_fields():
    cm = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])  # rows truth, columns prediction; class 2 absent
    out = M.iou_from_confmat(cm)
    # class 0: TP 3, FP 2, FN 1 -> 3/6; class 1: TP 4, FP 1, FN 2 -> 4/7
    assert out.per_class_iou[:2].tolist() == pytest.approx([3 / 6, 4 / 7])
    assert math.isnan(out.per_class_iou[2].item())
    assert out.miou.item() == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert out.oa.item() == pytest.approx(7 / 10)
    assert out._fields == ("miou", "oa", "per_class_iou")


def test_mean_class_accuracy_from_confmat():
    cm = torch.tensor([[3, 1], [0, 0]])  # class 1 has no samples: left out
    assert M.mean_class_accuracy(cm).item() == pytest.approx(0.75)
    cm = torch.tensor([[3, 1], [2, 2]])
    assert M.mean_class_accuracy(cm).item() == pytest.approx((0.75 + 0.5) / 2)


@pytest.mark.parametrize("seed", range(3))
def test_torchmetrics_class_accuracy_equals_confmat_formula(seed):
    g = torch.Generator().manual_seed(seed)
    logits, target = torch.randn(50, 6, generator=g), torch.randint(0, 6, (50,), generator=g)
    out = M.classification_metrics(6)(logits, target)
    assert out["class_acc"].item() == pytest.approx(M.mean_class_accuracy(out["confmat"]).item(), abs=1e-6)
    assert out["acc"].item() == pytest.approx((logits.argmax(1) == target).float().mean().item())
