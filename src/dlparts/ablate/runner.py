"""Running one experiment: each setting over seeds through the engine (``dlparts.train.engine.fit`` with config
overrides, everything else equal), the numbers over seeds, the verdict, ``results.json`` and the figure.

Every run of an experiment starts from the same recipe and the same size overrides; a setting adds only its own
overrides, a seed only ``seed=``.  The embedded datasets are generated from their own fixed seed, so the seeds vary
initialization, batch order, augmentation and dropout, never the data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from dlparts.ablate import stats
from dlparts.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One arm of an experiment: its label in the table and its config overrides (``key=value``)."""

    label: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """What the paper says about ``metric``: ``effect = settings[b] - settings[a]`` (their means; with ``b=None``
    setting ``a``'s own metric) is of ``sign``, or at most ``bound`` (:func:`dlparts.ablate.stats.verdict`);
    ``paper_effect``: the paper's own figure, as text."""

    source: str
    text: str
    paper_effect: str
    a: int = 0
    b: int | None = 1
    sign: int = 0
    bound: float | None = None


@dataclass(frozen=True)
class Experiment:
    """One ablation: a recipe, its settings, how to read one run's numbers (``measure``) and draw them (``figure``).

    ``sizes`` maps ``"default"`` (at most 5 minutes on 2 CPU cores), ``"quick"`` (under a minute) and ``"tiny"``
    (the tests) to ``(overrides, seeds)``.  ``measure(run) -> dict`` returns at least ``"value"``, the metric."""

    name: str
    title: str
    recipe: str
    settings: tuple[Setting, ...]
    metric: str
    claim: Claim
    sizes: dict[str, tuple[tuple[str, ...], int]]
    measure: Callable[["Run"], dict]
    figure: Callable[[dict, Path], list[Path]]
    columns: tuple[tuple[str, str], ...] = ()  # (key in the measured dict, column title) shown beside the metric
    notes: Callable[[tuple[Setting, ...]], dict] | None = None  # per-setting facts (parameters, MACs)


class Recorder(pl.Callback):
    """Per epoch: the training error of the batches as they were trained on (train mode, running over the epoch, as
    AlexNet's figure 1 plots it) and the seconds since training began; keeps the run's data module for evaluations."""

    def __init__(self):
        self.rows: list[dict] = []
        self.wrong = self.seen = 0
        self.began = self.stamp = 0.0
        self.logits: torch.Tensor | None = None
        self.datamodule = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.datamodule = trainer.datamodule
        pl_module.model.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        if module.training:
            self.logits = output.detach()

    def on_train_start(self, trainer, pl_module) -> None:
        self.began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.wrong += int((self.logits.argmax(-1) != pl_module.target(batch)).sum())
        self.seen += int(pl_module.target(batch).numel())
        self.stamp = time.perf_counter() - self.began

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        error = 100.0 * self.wrong / max(self.seen, 1)
        self.rows.append({"epoch": trainer.current_epoch + 1, "train_error": error, "seconds": self.stamp})
        self.wrong = self.seen = 0


@dataclass
class Run:
    """One finished fit: its setting, seed, the engine's results, the trained module (best-on-validation weights)
    and its recorder."""

    setting: Setting
    seed: int
    result: dict
    module: torch.nn.Module
    recorder: Recorder
    cfg: dict = field(default_factory=dict)

    @property
    def splits(self):
        return self.recorder.datamodule.splits


def accuracy(run: Run, dataset, points: Callable | None = None, batch_size: int = 64) -> float:
    """Top-1 accuracy (%) of ``run``'s model on ``dataset`` in eval mode; ``points(batch_points, generator)`` may
    change each batch of clouds first (thinning), with a generator seeded by the run's seed."""
    module = run.module.eval()
    generator = torch.Generator().manual_seed(run.seed)
    right = total = 0
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            x = batch[module.input_key]
            if points is not None:
                x = points(x, generator)
            right += int((module.model(x).argmax(-1) == batch["label"]).sum())
            total += len(batch["label"])
    return 100.0 * right / max(total, 1)


def run_config(experiment: Experiment, setting: Setting, seed: int, size: str, folder: Path) -> dict:
    """The resolved config of one run: the recipe, the size's overrides, the setting's, the seed, the run folder."""
    from dlparts.train.config import load_config

    overrides, _ = experiment.sizes[size]
    return load_config(experiment.recipe, [*overrides, *setting.overrides, f"seed={seed}", f"run.dir={folder}",
                                           f"run.name={slug(setting.label)}-seed{seed}", "trainer.progress=false",
                                           "plots.enabled=false"])


def fit_one(experiment: Experiment, setting: Setting, seed: int, size: str, folder: Path) -> Run:
    """Train one setting with one seed (``dlparts.train.engine.fit``)."""
    from dlparts.train import engine

    cfg = run_config(experiment, setting, seed, size, folder)
    recorder = Recorder()
    result = engine.fit(cfg, callbacks=[recorder])
    module = result.pop("module")
    return Run(setting, seed, result, module, recorder, cfg)


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def experiment_folder(out: str | Path, name: str) -> Path:
    """``out/name``, or ``out/name-2``, ``-3``, ... while that is a folder with anything in it."""
    base = Path(out) / name
    folder, n = base, 1
    while folder.exists() and any(folder.iterdir()):
        n += 1
        folder = base.with_name(f"{name}-{n}")
    return folder


def run_experiment(experiment: Experiment, *, seeds: int | None = None, size: str = "default",
                   out: str | Path = "runs/ablate", say: Callable[[str], None] = lambda line: None) -> dict:
    """Train every setting of ``experiment`` over ``seeds`` seeds (the size's number by default), write
    ``results.json`` and the figure into a new folder under ``out``; return the results (as written)."""
    if size not in experiment.sizes:
        raise ConfigError(f"size={size!r} must be one of {', '.join(experiment.sizes)}")
    seeds = experiment.sizes[size][1] if seeds is None else seeds
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} must be at least 1")
    folder = experiment_folder(out, experiment.name)
    folder.mkdir(parents=True)
    started = time.time()
    settings = []
    for setting in experiment.settings:
        runs = []
        for seed in range(seeds):
            say(f"{experiment.name}: {setting.label}, seed {seed} ({time.time() - started:.0f} s so far)")
            run = fit_one(experiment, setting, seed, size, folder / "runs")
            runs.append({"seed": seed, "run_dir": run.result["run_dir"], "fit_seconds": run.result["fit_seconds"],
                         **experiment.measure(run)})
            del run
        settings.append({"label": setting.label, "overrides": list(setting.overrides), "runs": runs})
    results = summarize(experiment, settings, size=size, seeds=seeds)
    results["seconds"] = time.time() - started
    results["figures"] = [str(p) for p in experiment.figure(results, folder)]
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    results["folder"] = str(folder)
    return results


def summarize(experiment: Experiment, settings: list[dict], *, size: str, seeds: int) -> dict:
    """The numbers over seeds, the effect and the verdict of ``settings`` (each with its ``runs``' measured dicts)."""
    notes = experiment.notes(experiment.settings) if experiment.notes else {}
    for entry in settings:
        entry["stat"] = vars(stats.stat([r["value"] for r in entry["runs"]]))
        entry["columns"] = {key: vars(stats.stat([r[key] for r in entry["runs"]])) for key, _ in experiment.columns}
        entry["notes"] = notes.get(entry["label"], {})
    c = experiment.claim
    a = stats.Stat(**settings[c.a]["stat"])
    e = stats.effect(a, None if c.b is None else stats.Stat(**settings[c.b]["stat"]))
    return {"experiment": experiment.name, "title": experiment.title, "recipe": experiment.recipe, "size": size,
            "seeds": seeds, "metric": experiment.metric, "columns": [list(col) for col in experiment.columns],
            "claim": {"source": c.source, "text": c.text, "paper_effect": c.paper_effect, "sign": c.sign,
                      "bound": c.bound, "a": settings[c.a]["label"],
                      "b": None if c.b is None else settings[c.b]["label"]},
            "settings": settings, "effect": {"diff": e.diff, "se": e.se},
            "verdict": stats.verdict(e, sign=c.sign, bound=c.bound), "rule": stats.RULE}
