"""The test-time figures of a run: confusion matrix, example segmentations, and the critical points of models that
offer them (``model.critical_points(points)``, PointNet's Sec. 4.3)."""

from __future__ import annotations

from pathlib import Path

import torch

from dlparts import viz


def _examples(dataset, count: int) -> dict[str, torch.Tensor]:
    """``count`` items spread evenly over ``dataset`` (test sets are often ordered by class) stacked into a batch."""
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().long().tolist()
    items = [dataset[i] for i in picks]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@torch.no_grad()
def test_plots(module, dataset, folder: Path, examples: int) -> list[Path]:
    """PNGs for a tested ``module`` (whose ``last_test`` holds the computed test metrics); returns their paths."""
    written = []
    info, last = module.info, getattr(module, "last_test", {})
    if "confmat" in last and info["task"] in ("image_cls", "point_cls"):
        written.append(viz.plot_confusion(last["confmat"], info["classes"], folder / "confusion_matrix.png",
                                          title=f"{module.cfg['model']['name']} test confusion matrix"))
    if examples <= 0 or len(dataset) == 0 or info["task"] == "image_cls":
        return written
    batch = _examples(dataset, examples)
    # the module's float dtype: Lightning casts the batches it feeds (float64 under precision 64), not this one
    batch = {k: v.to(module.device, module.dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}
    was_training = module.training
    module.eval()
    logits = module(batch)
    if info["task"] == "point_partseg":
        pred = module.predict_parts(logits, batch["category"])
    else:
        pred = logits.argmax(dim=-1)
    points = batch["points"].cpu().numpy()
    if info["task"] in ("point_partseg", "point_semseg"):
        clouds = []
        for i in range(len(points)):
            truth, guess = batch["seg"][i].cpu().numpy(), pred[i].cpu().numpy()
            accuracy = float((truth == guess).mean())
            clouds += [(points[i], truth, f"#{i} truth"), (points[i], guess, f"#{i} predicted ({accuracy:.0%} right)")]
        written.append(viz.plot_point_clouds(clouds, folder / "segmentations.png", columns=2))
    if info["task"] == "point_cls" and hasattr(module.model, "critical_points"):
        sets, _ = module.model.critical_points(batch["points"])
        names = info["classes"]
        items = [(points[i], sets[i].cpu().numpy(), f"{names[int(batch['label'][i])]} -> {names[int(pred[i])]}")
                 for i in range(len(points))]
        written.append(viz.plot_critical_points(items, folder / "critical_points.png"))
    module.train(was_training)
    return written
