"""One tiny fit per task on the embedded datasets, in process; the engine's test metrics are recomputed by hand
from the best checkpoint with the plain references."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dlparts.train import metrics as M
from dlparts.train.config import load_config
from dlparts.train.data import build_splits
from dlparts.train.engine import fit, load_checkpoint

# Tiny batches gain nothing from a second thread (conftest's one_thread), and on a busy machine lose the most to it.
pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["trainer.max_epochs=1", "trainer.progress=false", "trainer.accelerator=cpu", "trainer.devices=1",
          "data.args.tiny=true", "data.num_points=128", "data.batch_size=4", "plots.examples=2",
          "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"]


def _fit(tmp_path, *overrides):
    cfg = load_config(None, [*COMMON, f"run.dir={tmp_path}", *overrides])
    return cfg, fit(cfg)


@torch.no_grad()
def _test_logits(result, cfg, dtype=torch.float32):
    module, _ = load_checkpoint(result["best_ckpt"])
    module.to(dtype)
    test = build_splits(cfg).test
    batch = {k: torch.stack([test[i][k] for i in range(len(test))]) for k in test[0]}
    batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    return module, batch, module(batch)


@pytest.mark.parametrize("precision, dtype", [("32", torch.float32), ("64", torch.float64)])
def test_part_segmentation_metrics_match_the_protocol_by_hand(tmp_path, precision, dtype):
    """Also in float64 (the reference runs for the fused float32 kernels): trained, tested and plotted in it."""
    cfg, result = _fit(tmp_path, "model.name=pointnet_partseg", "data.name=synthetic_parts",
                       f"trainer.precision={precision}")
    assert next(result["module"].parameters()).dtype == dtype
    module, batch, logits = _test_logits(result, cfg, dtype)
    parts = module.info["parts_of_category"]
    allowed = M.category_part_mask(parts, module.info["num_classes"])[batch["category"]]  # [B, P]
    pred = logits.masked_fill(~allowed[:, None, :], float("-inf")).argmax(-1)  # [B, N]
    ious = M.shape_ious_reference(pred, batch["seg"], batch["category"], parts)
    assert result["test"]["instance_miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)
    assert {p.rsplit("/", 1)[-1] for p in result["plots"]} == {"curves.png", "segmentations.png"}


def test_semantic_segmentation_oa_by_hand(tmp_path):
    cfg, result = _fit(tmp_path, "model.name=pointnet_semseg", "data.name=synthetic_rooms",
                       "data.num_points=256")
    module, batch, logits = _test_logits(result, cfg)
    pred, truth = logits.argmax(-1), batch["seg"]
    oa = (pred == truth).double().mean().item()
    assert result["test"]["oa"] == pytest.approx(oa, abs=1e-6)
    ious = []  # the S3DIS protocol point by point: TP / (TP + FP + FN) of each class seen in truth or prediction
    for c in range(module.info["num_classes"]):
        tp = ((pred == c) & (truth == c)).sum().item()
        union = ((pred == c) | (truth == c)).sum().item()
        if union:
            ious.append(tp / union)
    assert result["test"]["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)


def test_point_classification_with_votes_and_critical_points(tmp_path):
    cfg, result = _fit(tmp_path, "model.name=pointnet_cls", "data.name=synthetic_shapes", "eval.votes=3")
    module, batch, _ = _test_logits(result, cfg)
    voted = module.eval_logits(batch)
    acc = (voted.argmax(-1) == batch["label"]).double().mean().item()
    assert result["test"]["acc"] == pytest.approx(acc, abs=1e-6)
    names = {p.rsplit("/", 1)[-1] for p in result["plots"]}
    assert names == {"curves.png", "confusion_matrix.png", "critical_points.png"}
    assert result["run_dir"] == str(tmp_path / "pointnet_cls-synthetic_shapes")  # run.name unset: model-data
    # the saved config names the run it resolved, so that --resume finds it again
    assert load_config(Path(result["run_dir"]) / "config.yaml") == {**cfg, "run": {**cfg["run"],
                                                                             "name": "pointnet_cls-synthetic_shapes"}}
