"""The optimizer and learning-rate schedule of a recipe (``cfg["optim"]``, ``cfg["sched"]``)."""

from __future__ import annotations

import math

import torch


def build_optimizer(cfg: dict, params, monitor: str, steps_per_epoch: int):
    """The optimizer and schedule of ``cfg["optim"]`` / ``cfg["sched"]``, in Lightning's return format.

    ``step``: lr x ``gamma`` every ``step_size`` epochs, floored at ``min_lr`` (PointNet: 0.001 x 0.7 every ~20
    epochs, floor 1e-5).  ``plateau``: lr x ``factor`` when the validation metric stops improving for ``patience``
    epochs (AlexNet section 5 divides by 10).  ``cosine``: linear warm-up for ``warmup_epochs`` then cosine decay to
    ``min_lr``, per step (the PointNeXt recipe).
    """
    o, s = cfg["optim"], cfg["sched"]
    if o["name"] == "sgd":
        opt = torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    elif o["name"] == "adam":
        opt = torch.optim.Adam(params, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
    if s["name"] == "none":
        return opt
    if s["name"] == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=s["factor"],
                                                           patience=s["patience"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": "epoch"}}
    floor = s["min_lr"] / o["lr"]
    if s["name"] == "step":
        def step_factor(epoch: int) -> float:
            return max(s["gamma"] ** (epoch // s["step_size"]), floor)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, step_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
    warm = s["warmup_epochs"] * steps_per_epoch
    total = max(cfg["trainer"]["max_epochs"] * steps_per_epoch, warm + 1)

    def cosine_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
