"""Lightning modules, one per task, each wrapping any registered model of that task (``docs/contracts.md``); the
optimizers come from :mod:`dlparts.train.optim`, voting from :mod:`dlparts.train.voting`.

The loss is cross-entropy (with optional label smoothing) plus the model's ``regularization_loss()`` when it has one
(PointNet's feature-transform term, section 4.2 / appendix B).  Validation and test update torchmetrics objects whose
states are summed over DDP processes when computed, so reported accuracies are over all samples of all processes.
The module keeps a per-epoch ``history`` (saved in checkpoints) that the plot callback draws.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from dlparts.errors import ConfigError
from dlparts.train import metrics as M
from dlparts.train.inference import build_model, predict_parts, restore_extras, task_forward
from dlparts.train.optim import build_optimizer
from dlparts.train.voting import vote_logits


class TaskModule(pl.LightningModule):
    """What every task shares: the model, the loss, optimizers and schedules from the config, the history."""

    input_key = "points"

    def __init__(self, cfg: dict, info: dict):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg, "info": info})
        self.cfg, self.info = cfg, info
        self.model = build_model(cfg, info)
        self.train_loss = MeanMetric()
        self.history: list[dict] = []
        self.extra_state: dict = {}  # saved with checkpoints: e.g. the RGB statistics of an image dataset

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, batch: dict) -> torch.Tensor:
        return task_forward(self.model, self.info["task"], batch)

    def eval_logits(self, batch: dict) -> torch.Tensor:
        votes = self.cfg["eval"]["votes"]
        if votes == 1 or self.input_key != "points":
            return self(batch)
        generator = torch.Generator().manual_seed(self.cfg["seed"])
        return vote_logits(lambda pts: self({**batch, "points": pts}), batch["points"], votes,
                           self.cfg["eval"]["vote_axis"], tuple(self.cfg["eval"]["vote_scale"]), generator)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over ``[B, K]`` or ``[B, N, K]`` logits, plus the model's regularizer when it has one."""
        if logits.dim() == 3:
            logits = logits.reshape(-1, logits.shape[-1])  # [B*N, K]
            target = target.reshape(-1)  # [B*N]
        loss = F.cross_entropy(logits, target, label_smoothing=self.cfg["loss"]["label_smoothing"])
        regularizer = getattr(self.model, "regularization_loss", None)
        return loss + regularizer() if regularizer is not None else loss

    def target(self, batch: dict) -> torch.Tensor:
        return batch["label"]

    # ------------------------------------------------------------------------------------------------ steps
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), self.target(batch))
        size = len(batch[self.input_key])
        self.train_loss.update(loss.detach(), size)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.update_metrics(self.val_metrics, batch, self.eval_logits(batch))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.update_metrics(self.test_metrics, batch, self.eval_logits(batch))

    def on_validation_epoch_end(self) -> None:
        values = self.compute_metrics(self.val_metrics, "val")
        if not self.trainer.sanity_checking:
            row = {"epoch": self.current_epoch, "train_loss": float(self.train_loss.compute()),
                   "lr": self.trainer.optimizers[0].param_groups[0]["lr"], **values}
            self.history.append(row)
            self.train_loss.reset()

    def on_test_epoch_end(self) -> None:
        self.compute_metrics(self.test_metrics, "test")

    def compute_metrics(self, metrics, stage: str) -> dict[str, float]:
        """Compute (summed over processes), log the scalars as ``<stage>/<name>``, keep the rest in
        ``self.last_<stage>`` (confusion matrices, per-class values) for plots and tables; reset."""
        values = self.metric_values(metrics)
        metrics.reset()
        scalars = {k: float(v) for k, v in values.items() if torch.is_tensor(v) and v.dim() == 0}
        for name, value in scalars.items():
            self.log(f"{stage}/{name}", value, sync_dist=False)  # already reduced across processes
        setattr(self, f"last_{stage}", {k: v.cpu() if torch.is_tensor(v) else v for k, v in values.items()})
        return scalars

    # -------------------------------------------------------------------------------------------- optimizers
    def configure_optimizers(self):
        return build_optimizer(self.cfg, self.model.parameters(), self.monitor, self.steps_per_epoch())

    def steps_per_epoch(self) -> int:
        return max(1, self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs))

    # ------------------------------------------------------------------------------------ checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dlparts_history"] = self.history
        checkpoint["dlparts_extra"] = self.extra_state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_extras(self, checkpoint)


class ClassificationModule(TaskModule):
    """Point cloud classification (``point_cls``): ``{"points" [B,N,C], "label" [B]}`` batches."""

    monitor = "val/acc"

    def __init__(self, cfg: dict, info: dict):
        super().__init__(cfg, info)
        self.val_metrics = M.classification_metrics(info["num_classes"])
        self.test_metrics = self.val_metrics.clone()

    def update_metrics(self, metrics, batch: dict, logits: torch.Tensor) -> None:
        metrics.update(logits, batch["label"])

    def metric_values(self, metrics) -> dict:
        return metrics.compute()


class ImageClassificationModule(ClassificationModule):
    """Image classification (``image_cls``): ``{"image" [B,3,H,W], "label" [B]}`` batches."""

    input_key = "image"


class PartSegModule(TaskModule):
    """Part segmentation (``point_partseg``): ``{"points", "seg" [B,N], "category" [B]}``; predictions are the argmax
    over the parts of the shape's category, as the ShapeNetPart evaluation of PointNet and PointNet++ does."""

    monitor = "val/instance_miou"

    def __init__(self, cfg: dict, info: dict):
        super().__init__(cfg, info)
        parts = {int(k): v for k, v in info["parts_of_category"].items()}
        self.val_metrics = M.PartSegIoU(parts, info["num_classes"])
        self.test_metrics = M.PartSegIoU(parts, info["num_classes"])
        self.register_buffer("part_mask", M.category_part_mask(parts, info["num_classes"]), persistent=False)

    def target(self, batch: dict) -> torch.Tensor:
        return batch["seg"]

    def predict_parts(self, logits: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return predict_parts(logits, self.part_mask, category)

    def update_metrics(self, metrics, batch: dict, logits: torch.Tensor) -> None:
        metrics.update(self.predict_parts(logits, batch["category"]), batch["seg"], batch["category"])

    def metric_values(self, metrics) -> dict:
        return metrics.compute()


class SemSegModule(TaskModule):
    """Semantic segmentation (``point_semseg``): ``{"points" [B,N,C], "seg" [B,N]}`` batches."""

    monitor = "val/miou"

    def __init__(self, cfg: dict, info: dict):
        super().__init__(cfg, info)
        self.val_metrics = M.SemSegMetrics(info["num_classes"])
        self.test_metrics = M.SemSegMetrics(info["num_classes"])

    def target(self, batch: dict) -> torch.Tensor:
        return batch["seg"]

    def update_metrics(self, metrics, batch: dict, logits: torch.Tensor) -> None:
        metrics.update(logits.argmax(dim=-1).reshape(-1), batch["seg"].reshape(-1))  # [B*N] each

    def metric_values(self, metrics) -> dict:
        return metrics.compute()


MODULES = {"point_cls": ClassificationModule, "image_cls": ImageClassificationModule,
           "point_partseg": PartSegModule, "point_semseg": SemSegModule}


def build_module(cfg: dict, info: dict) -> TaskModule:
    if info["task"] not in MODULES:
        raise ConfigError(f"task {info['task']!r} has no training module")
    return MODULES[info["task"]](cfg, info)
