"""``dlparts demo``: three CPU runs on the embedded datasets, each trained then tested on its test split.

The presets are the shipped CPU recipes (``dlparts/configs/*_cpu.yaml``, package data, so that an installed package
runs the same demo as the repository's ``configs/``).  The demo adds only overrides: each run has a time cap
(``trainer.max_time``) so the demo ends within 10 minutes on two cores even on a slower machine; the budget is
at most 3 minutes of training for PointNet++, 100 s for part segmentation and 3 minutes for AlexNet-small.
"""

from __future__ import annotations

import time
from pathlib import Path

from dlparts.errors import ConfigError

#: demo part -> the shipped recipe it runs (:func:`dlparts.train.config.list_recipes`)
PRESETS: dict[str, str] = {"pointnet2": "pointnet2_cls_ssg_cpu", "partseg": "pointnet2_partseg_ssg_cpu",
                           "alexnet_small": "alexnet_small_cpu"}

#: Seconds of training each demo run may take at most (Lightning's max_time), within the 10-minute budget.
TIME_CAPS = {"pointnet2": 180, "partseg": 100, "alexnet_small": 180}


def preset_config(name: str, overrides: list[str] = ()) -> dict:
    """The resolved config of demo preset ``name`` (see :data:`PRESETS`)."""
    from dlparts.train.config import load_config

    if name not in PRESETS:
        raise ConfigError(f"demo part {name!r} is not one of {', '.join(PRESETS)}")
    return load_config(PRESETS[name], list(overrides))


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
