"""What a trained model needs to run on new inputs, without Lightning or torchmetrics: the task's model built from a
run's config, its forward over batch dicts and part segmentation's argmax over the parts of a shape's category.

The Lightning modules of :mod:`dlparts.train.modules` train and test with these; :class:`TaskModel` holds them alone,
with the same ``state_dict`` keys, for ``dlparts predict`` and ``dlparts export``
(:func:`dlparts.train.engine.load_checkpoint` with ``training=False``): importing Lightning and torchmetrics is two
thirds of the start-up of a prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from dlparts.errors import ConfigError

#: The tasks of the registered models, each with a Lightning module in :mod:`dlparts.train.modules`.
TASKS = ("point_cls", "image_cls", "point_partseg", "point_semseg")


def build_model(cfg: dict, info: dict) -> nn.Module:
    """The registered model ``cfg["model"]["name"]`` sized for the dataset ``info`` (``num_classes``, input
    channels, and for part segmentation ``num_categories``); ``model.args`` go to the builder, and so does
    ``model.variant`` when set (a table row of the model's family, e.g. the narrower PointNet++ of the CPU recipes)."""
    from dlparts.models import create_model

    kwargs = dict(cfg["model"]["args"])
    kwargs.setdefault("num_classes", info["num_classes"])
    if info["task"] != "image_cls":
        kwargs.setdefault("in_channels", info["input_spec"][-1])
    if info["task"] == "point_partseg":
        kwargs.setdefault("num_categories", len(info["categories"]))
    if cfg["model"]["variant"] is not None:
        kwargs["variant"] = cfg["model"]["variant"]
    return create_model(cfg["model"]["name"], **kwargs)


def category_part_mask(parts_of_category: dict[int, list[int]], num_parts: int) -> torch.Tensor:
    """``bool [num_categories, num_parts]``: which global part indices belong to each category."""
    mask = torch.zeros(len(parts_of_category), num_parts, dtype=torch.bool)
    for cat, parts in parts_of_category.items():
        mask[int(cat), list(parts)] = True
    return mask


def task_forward(model: nn.Module, task: str, batch: dict) -> torch.Tensor:
    """``model`` on a batch dict of ``task``: ``batch["image"] [B, 3, H, W]`` for images, ``batch["points"]
    [B, N, C]`` (and ``batch["category"] [B]`` for part segmentation) for point clouds -> logits ``[B, K]`` or
    ``[B, N, K]``."""
    if task == "point_partseg":
        return model(batch["points"], batch["category"])
    return model(batch["image" if task == "image_cls" else "points"])


def predict_parts(logits: torch.Tensor, part_mask: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """``[B, N, P]`` logits -> ``[B, N]`` part indices, restricted to the parts of each shape's category (``part_mask``
    of :func:`category_part_mask`), as the ShapeNetPart evaluation of PointNet and PointNet++ does."""
    allowed = part_mask[category][:, None, :]  # [B, 1, P]
    return logits.masked_fill(~allowed, float("-inf")).argmax(dim=-1)


def restore_extras(module: nn.Module, checkpoint: dict) -> None:
    """The per-epoch ``history`` and the ``extra_state`` (e.g. an image dataset's RGB statistics) of a checkpoint."""
    module.history = list(checkpoint.get("dlparts_history", []))
    module.extra_state = dict(checkpoint.get("dlparts_extra", {}))


class TaskModel(nn.Module):
    """A run's model for prediction: ``cfg``, ``info``, ``model``, ``extra_state``, ``part_mask`` (part segmentation)
    and ``forward(batch)`` as the Lightning module of the task has them, and its ``state_dict`` keys."""

    def __init__(self, cfg: dict, info: dict):
        super().__init__()
        if info["task"] not in TASKS:
            raise ConfigError(f"task {info['task']!r} is not one of {', '.join(TASKS)}")
        self.cfg, self.info = cfg, info
        self.model = build_model(cfg, info)
        self.history: list[dict] = []
        self.extra_state: dict = {}
        if info["task"] == "point_partseg":
            parts = {int(k): v for k, v in info["parts_of_category"].items()}
            self.register_buffer("part_mask", category_part_mask(parts, info["num_classes"]), persistent=False)

    def forward(self, batch: dict) -> torch.Tensor:
        return task_forward(self.model, self.info["task"], batch)

    def predict_parts(self, logits: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return predict_parts(logits, self.part_mask, category)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_extras(self, checkpoint)
