"""The figures of a run: training curves after fitting; after testing the confusion matrix, example segmentations
(truth beside prediction, each labelled with the metric the results table reports) and the critical points of models
that offer them (``model.critical_points(points)``, PointNet's Sec. 4.3).  Every title names the model, the dataset
and the run (the folder above ``plots/``)."""

from __future__ import annotations

from pathlib import Path

import torch

from dlparts import viz
from dlparts.train import metrics as M
from dlparts.train.report import LABELS


def run_title(module, folder: Path, what: str) -> str:
    """``"<what>: <model> on <dataset>, run <name>"``; the run is the folder holding ``folder`` (``<run>/plots``)."""
    cfg = module.cfg
    return f"{what}: {cfg['model']['name']} on {cfg['data']['name']}, run {Path(folder).resolve().parent.name}"


def fit_plots(module, folder: Path) -> list[Path]:
    """The training curves of a fitted ``module`` (its ``history``), as ``folder/curves.png``."""
    return [viz.plot_curves(module.history, folder / "curves.png", title=run_title(module, folder, "training"),
                            labels=LABELS)]


def _examples(dataset, count: int) -> dict[str, torch.Tensor]:
    """``count`` items spread evenly over ``dataset`` (test sets are often ordered by class) stacked into a batch."""
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().long().tolist()
    items = [dataset[i] for i in picks]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _example_metric(module, task: str, truth: torch.Tensor, guess: torch.Tensor, category) -> str:
    """The table's metric on one cloud, labelled: the shape's mIoU over its category's parts (part segmentation) or
    the mIoU over the classes present (semantic segmentation), and the point accuracy."""
    if task == "point_partseg":
        miou = M.shape_ious(guess[None], truth[None], category[None], module.part_mask.cpu())[0]
    else:
        k = len(module.info["classes"])
        confmat = torch.bincount(truth * k + guess, minlength=k * k).reshape(k, k)  # [K, K], rows truth
        miou = M.iou_from_confmat(confmat).miou
    return f"mIoU {float(miou):.0%}, accuracy {float((truth == guess).double().mean()):.0%}"


def _metrics_note(task: str, last: dict) -> str:
    """The test set's figures as the results table gives them; when part segmentation's class and instance mIoU
    coincide, why that is no bug."""
    keys = ("instance_miou", "class_miou") if task == "point_partseg" else ("miou", "oa")
    values = {k: float(last[k]) for k in keys if k in last}
    note = "test set: " + ", ".join(f"{LABELS[k]} {v:.1%}" for k, v in values.items())
    if task == "point_partseg" and len(values) == 2 and abs(values["instance_miou"] - values["class_miou"]) < 5e-5:
        note += (" (class and instance mIoU coincide, as they must when every category has as many test shapes: "
                 "the mean over shapes is then the mean over categories; the embedded data is balanced)")
    return note


@torch.no_grad()
def test_plots(module, dataset, folder: Path, examples: int) -> list[Path]:
    """PNGs for a tested ``module`` (whose ``last_test`` holds the computed test metrics); returns their paths."""
    written = []
    info, last = module.info, getattr(module, "last_test", {})
    task = info["task"]
    if "confmat" in last and task in ("image_cls", "point_cls"):
        written.append(viz.plot_confusion(last["confmat"], info["classes"], folder / "confusion_matrix.png",
                                          title=run_title(module, folder, "test confusion matrix")))
    if examples <= 0 or len(dataset) == 0 or task == "image_cls":
        return written
    batch = _examples(dataset, examples)
    # the module's float dtype: Lightning casts the batches it feeds (float64 under precision 64), not this one
    batch = {k: v.to(module.device, module.dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}
    was_training = module.training
    module.eval()
    logits = module(batch)
    if task == "point_partseg":
        pred = module.predict_parts(logits, batch["category"])
    else:
        pred = logits.argmax(dim=-1)
    points = batch["points"].cpu().numpy()
    if task in ("point_partseg", "point_semseg"):
        clouds = []
        for i in range(len(points)):
            truth, guess = batch["seg"][i].cpu(), pred[i].cpu()
            category = batch["category"][i].cpu() if task == "point_partseg" else None
            score = _example_metric(module, task, truth, guess, category)
            clouds += [(points[i], truth.numpy(), f"#{i} truth"),
                       (points[i], guess.numpy(), f"#{i} predicted: {score}")]
        written.append(viz.plot_point_clouds(clouds, folder / "segmentations.png", columns=2, names=info["classes"],
                                             title=run_title(module, folder, "test segmentations"),
                                             note=_metrics_note(task, last)))
    if task == "point_cls" and hasattr(module.model, "critical_points"):
        sets, _ = module.model.critical_points(batch["points"])
        names = info["classes"]
        items = [(points[i], sets[i].cpu().numpy(), f"{names[int(batch['label'][i])]} -> {names[int(pred[i])]}")
                 for i in range(len(points))]
        written.append(viz.plot_critical_points(items, folder / "critical_points.png",
                                                title=run_title(module, folder, "critical points")))
    module.train(was_training)
    return written
