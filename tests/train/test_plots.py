"""The run's figures say what they show: titles name model, dataset and run; the segmentation note gives the table's
metrics, and explains when class and instance mIoU coincide."""

from types import SimpleNamespace

import torch

from dlparts.train.plots import _example_metric, _metrics_note, run_title


def test_title_names_model_dataset_and_run(tmp_path):
    module = SimpleNamespace(cfg={"model": {"name": "pointnet_cls"}, "data": {"name": "synthetic_shapes"}})
    title = run_title(module, tmp_path / "runs" / "try2" / "plots", "training")
    assert title == "training: pointnet_cls on synthetic_shapes, run try2"


def test_note_explains_coinciding_part_mious():
    same = _metrics_note("point_partseg", {"instance_miou": torch.tensor(0.8312), "class_miou": torch.tensor(0.8312)})
    assert same.startswith("test set: instance mIoU 83.1%, class mIoU 83.1% (class and instance mIoU coincide")
    other = _metrics_note("point_partseg", {"instance_miou": 0.83, "class_miou": 0.80})
    assert other == "test set: instance mIoU 83.0%, class mIoU 80.0%"
    assert _metrics_note("point_semseg", {"miou": 0.5, "oa": 0.75, "confmat": None}) == "test set: mIoU 50.0%, OA 75.0%"


def test_example_metric_is_the_shape_miou_by_hand():
    # category 0 owns parts 0 and 1; truth [0, 0, 1, 1], guess [0, 1, 1, 1]: IoU part 0 = 1/2, part 1 = 2/3
    module = SimpleNamespace(part_mask=torch.tensor([[True, True, False], [False, False, True]]),
                             info={"classes": ["a", "b", "c"]})
    truth, guess = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    assert _example_metric(module, "point_partseg", truth, guess, torch.tensor(0)) == "mIoU 58%, accuracy 75%"
    # semantic: classes 0 and 1 seen, IoU 1/2 and 2/3; class 2 in neither, left out
    assert _example_metric(module, "point_semseg", truth, guess, None) == "mIoU 58%, accuracy 75%"
