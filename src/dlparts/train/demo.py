"""``dlparts demo``: four CPU runs on the embedded datasets, each trained then tested on its test split, and a line
per run saying what its figure shows.

The presets are the shipped CPU recipes (``dlparts/configs/*_cpu.yaml``, package data, so that an installed package
runs the same demo as the repository's ``configs/``); PointNet runs PointNet++'s classification recipe with only the
model changed, so the two are compared as the PointNet++ paper compares them: same data, augmentation and budget.
The budgets are epochs, so the figures do not depend on the machine's speed; a generous time cap per run
(``trainer.max_time``, about three times the run's estimated time on two idle cores, not yet measured) only stops
a run on a machine far slower or busier than that, and the results table then says so ("3 of 8 (time cap ...)").
"""

from __future__ import annotations

import time
from pathlib import Path

from dlparts.errors import ConfigError

#: demo part -> the shipped recipe it runs (:func:`dlparts.train.config.list_recipes`)
PRESETS: dict[str, str] = {"pointnet2": "pointnet2_cls_ssg_cpu", "pointnet": "pointnet2_cls_ssg_cpu",
                           "partseg": "pointnet2_partseg_ssg_cpu", "alexnet_small": "alexnet_small_cpu"}

#: demo part -> overrides of its recipe: PointNet on PointNet++'s recipe, everything but the model equal.
OVERRIDES: dict[str, list[str]] = {"pointnet": ["model.name=pointnet_cls", "model.variant=null"]}

#: Seconds of training after which a demo run stops early (Lightning's max_time); about three times the estimated
#: times on two idle cores, so that they cut only on a much slower or busier machine (the table says when they did).
TIME_CAPS = {"pointnet2": 400, "pointnet": 200, "partseg": 300, "alexnet_small": 400}

#: What each part's figure shows.
SHOWS = {"pointnet2": "PointNet++ SSG: features of local regions at growing scales (PointNet++ Sec. 3.2), on "
                      "classes told apart by drilled holes, knobs, bumps, ridges and thin parts on shared silhouettes; "
                      "compare with pointnet",
         "pointnet": "PointNet, the same recipe and budget: one max over per-point features, no local regions "
                     "(PointNet Sec. 4.2); PointNet++ Table 2 puts it 1.5 points below PointNet++ on ModelNet40; in "
                     "this short budget it also learns the local details more slowly",
         "partseg": "PointNet++ part segmentation: set abstraction then feature propagation back to every point "
                    "(PointNet++ Sec. 3.4); instance and class mIoU coincide here because the classes are balanced",
         "alexnet_small": "AlexNet's ideas at 40 px (ReLU, LRN, overlapping pooling, dropout, PCA lighting; AlexNet "
                          "Sec. 3-4) on the embedded shape images"}


def preset_config(name: str, overrides: list[str] = ()) -> dict:
    """The resolved config of demo part ``name`` (see :data:`PRESETS` and :data:`OVERRIDES`)."""
    from dlparts.train.config import load_config

    if name not in PRESETS:
        raise ConfigError(f"demo part {name!r} is not one of {', '.join(PRESETS)}")
    return load_config(PRESETS[name], [*OVERRIDES.get(name, []), *overrides])


def run_demo(out: str | Path = "runs/demo", only: list[str] | None = None) -> list[dict]:
    """Train and test each part into ``out/<name>-<time>``; returns the results (see ``engine.fit``), each with
    ``"part"`` and ``"fit_seconds"``."""
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
        result["part"], result["fit_seconds"] = name, time.time() - started
        results.append(result)
    return results


def demo_notes(results: list[dict]) -> list[str]:
    """One line per result of :func:`run_demo` saying what its figure shows, and the PointNet++ - PointNet gap when
    both ran."""
    lines = [f"{r['part']}: {SHOWS[r['part']]}" for r in results]
    acc = {r["part"]: 100 * r["test"]["acc"] for r in results if r["part"] in ("pointnet2", "pointnet")}
    if len(acc) == 2:
        lines.append(f"local features (PointNet++ - PointNet, same data and budget): "
                     f"{acc['pointnet2'] - acc['pointnet']:+.1f} points test top-1")
    return lines
