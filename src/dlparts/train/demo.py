"""``dlparts demo``: three CPU runs on the embedded datasets, each trained then tested on its test split.

The presets are the ``configs/*_cpu.yaml`` files, kept here as well so that an installed package (without the
repository's ``configs/``) runs the same demo; a test holds the two equal.  Each run has a time cap
(``trainer.max_time``) so the demo ends within 10 minutes on two cores even on a slower machine; the budget is
at most 3 minutes of training for PointNet++, 100 s for part segmentation and 3 minutes for AlexNet-small.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from dlparts.errors import ConfigError

_SSG_CPU_LEVELS = [[128, [0.2], [16], [[32, 32, 64]]], [32, [0.4], [32], [[64, 64, 128]]],
                   [None, [], [], [[128, 256, 512]]]]

#: name -> (config file in configs/, the preset as a mapping)
PRESETS: dict[str, tuple[str, dict]] = {
    "pointnet2": ("pointnet2_cls_ssg_cpu.yaml", {
        "seed": 0,
        "model": {"name": "pointnet2_cls_ssg", "variant": {"levels": _SSG_CPU_LEVELS, "head": [256, 128]}},
        "data": {"name": "synthetic_shapes", "num_points": 512, "batch_size": 32, "eval_batch_size": 64,
                 "transforms": [{"rotate_up": {"normals": True}}, "scale", "shift", "jitter"],
                 "args": {"normals": True}},
        "optim": {"name": "adam", "lr": 0.002, "weight_decay": 0.0001},
        "sched": {"name": "step", "step_size": 1, "gamma": 0.5, "min_lr": 0.00001},
        "bn_momentum": {"enabled": True, "start": 0.5, "decay": 0.5, "step": 1, "min": 0.01},
        "trainer": {"max_epochs": 3, "accelerator": "cpu", "devices": 1, "threads": 2},
    }),
    "partseg": ("pointnet2_partseg_ssg_cpu.yaml", {
        "seed": 0,
        "model": {"name": "pointnet2_partseg_ssg",
                  "variant": {"levels": _SSG_CPU_LEVELS, "fp": [[128, 128], [128, 64], [64, 64]], "head": [64]}},
        "data": {"name": "synthetic_parts", "num_points": 512, "batch_size": 32, "eval_batch_size": 64,
                 "transforms": "scale,shift,jitter"},
        "optim": {"name": "adam", "lr": 0.002, "weight_decay": 0.0001},
        "sched": {"name": "step", "step_size": 4, "gamma": 0.5, "min_lr": 0.00001},
        "bn_momentum": {"enabled": True, "start": 0.5, "decay": 0.5, "step": 4, "min": 0.01},
        "trainer": {"max_epochs": 8, "accelerator": "cpu", "devices": 1, "threads": 2},
    }),
    "alexnet_small": ("alexnet_small_cpu.yaml", {
        "seed": 0,
        "model": {"name": "alexnet_small"},
        "data": {"name": "synthetic_images", "batch_size": 32, "eval_batch_size": 256, "val_fraction": 0.1,
                 "args": {"image_size": 48, "crop_size": 40, "mean": "channel", "lighting_std": 0.1}},
        "optim": {"name": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 0.0005},
        "sched": {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0},
        "trainer": {"max_epochs": 15, "accelerator": "cpu", "devices": 1, "threads": 2},
    }),
}

#: Seconds of training each demo run may take at most (Lightning's max_time), within the 10-minute budget.
TIME_CAPS = {"pointnet2": 180, "partseg": 100, "alexnet_small": 180}


def preset_config(name: str, overrides: list[str] = ()) -> dict:
    """The resolved config of demo preset ``name`` (see :data:`PRESETS`)."""
    from dlparts.train.config import load_config

    if name not in PRESETS:
        raise ConfigError(f"demo part {name!r} is not one of {', '.join(PRESETS)}")
    return load_config(None, list(overrides), tree=copy.deepcopy(PRESETS[name][1]))


def run_demo(out: str | Path = "runs/demo", only: list[str] | None = None) -> list[dict]:
    """Train and test each preset into ``out/<name>-<time>``; returns the results (see ``engine.fit``)."""
    from dlparts.train.engine import fit

    names = only or list(PRESETS)
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"--only {name!r} is not one of {', '.join(PRESETS)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = []
    for name in names:
        cfg = preset_config(name, [f"run.dir={out}", f"run.name={name}-{stamp}",
                                   f"trainer.max_time={TIME_CAPS[name]}"])
        started = time.time()
        result = fit(cfg)
        result.pop("module")
        result["fit_seconds"] = time.time() - started
        results.append(result)
    return results
