"""The main job: ``fit`` (train, keep last and best-on-validation checkpoints, then test the best), ``test`` and
``load_checkpoint``; what ``dlparts fit`` and ``dlparts test`` call.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoints/{last,best}.ckpt``, ``logs/metrics.csv``,
TensorBoard event files under ``tb/``, ``plots/*.png`` and ``results.json`` (from the user's folders also the
unreadable files skipped and the non-finite points dropped, :func:`dlparts.data._progress.skipped_summary`); with
``trainer.checkpoint_every_n_steps`` also ``checkpoints/step.ckpt`` (the newest of every N training steps within an
epoch); after Ctrl-C ``checkpoints/interrupted.ckpt``; after ``dlparts test`` its own ``test-<checkpoint>.json`` and
``plots/test-<checkpoint>/``.

Resuming is exact from each of them: the run ends as the uninterrupted one would, weights, metrics and
``logs/metrics.csv`` alike.  ``last.ckpt`` is the end of an epoch (the next one is seeded by its number); ``step.ckpt``
and ``interrupted.ckpt`` are saved after a training step, within an epoch, and hold the training loader's position
and random states (:class:`dlparts.train.data.ResumableLoader`) and the running metrics, so the resumed run skips the
batches done and replays the rest of the epoch as it would have run (with ``data.workers=0``: workers' random states
are not saved; and in a single process: a Ctrl-C under DDP saves nothing).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

from dlparts.errors import ConfigError, DataError, DataNotFoundError
from dlparts.train.config import load_config, save_config

UNITS = {"image_cls": "images", "point_cls": "clouds", "point_partseg": "clouds", "point_semseg": "blocks"}


def _holds_run(folder: Path) -> bool:
    return any((folder / "checkpoints").glob("*.ckpt"))


def run_folder(cfg: dict, resume: str | Path | None = None) -> Path:
    """The folder of a run: the resumed one; else ``run.dir/run.name``, refused when it already holds a run; by
    default (no ``run.name``) ``run.dir/<model>-<data>``, then ``-2``, ``-3``, ... while that already holds a run."""
    if resume is not None:
        return Path(resume)
    if cfg["run"]["name"]:
        folder = Path(cfg["run"]["dir"]) / cfg["run"]["name"]
        if _holds_run(folder):
            raise ConfigError(f"run folder {folder} already holds a run; continue it with --resume {folder} "
                              f"or start another with run.name=NEW_NAME")
        return folder
    base = f"{cfg['model']['name']}-{cfg['data']['name']}"
    folder, n = Path(cfg["run"]["dir"]) / base, 1
    while _holds_run(folder):
        n += 1
        folder = folder.with_name(f"{base}-{n}")
    return folder


def check_task(cfg: dict, info: dict) -> None:
    """The model's registered task must be the dataset's (checked before any training)."""
    from dlparts.models import get_model_info

    model_task = get_model_info(cfg["model"]["name"]).task
    if cfg["task"] is not None and cfg["task"] != info["task"]:
        raise ConfigError(f"task={cfg['task']!r} but data.name={cfg['data']['name']!r} is a {info['task']} dataset")
    if model_task != info["task"]:
        raise ConfigError(f"model.name={cfg['model']['name']!r} is a {model_task} model but "
                          f"data.name={cfg['data']['name']!r} is a {info['task']} dataset")


def _precision(cfg: dict) -> str:
    """Lightning's precision setting; ``64`` trains in float64 (the plain modules: a reference run for the fused
    float32 kernels, see ``benchmarks/fused_training.py``)."""
    precision = str(cfg["trainer"]["precision"])
    if precision == "auto":
        return "16-mixed" if torch.cuda.is_available() and cfg["trainer"]["accelerator"] != "cpu" else "32-true"
    return {"32": "32-true", "64": "64-true"}.get(precision, precision)


def build_trainer(cfg: dict, folder: Path, monitor: str, unit: str, extra_callbacks=(), logs: bool = True,
                  plots: Path | None = None, resumed: dict | None = None):
    """A Lightning trainer for ``cfg`` writing into ``folder`` (CSV and TensorBoard logs unless ``logs`` is False:
    ``dlparts test`` must not replace the logs of the fit), its plots into ``plots`` (default ``folder/plots``);
    ``resumed``: the checkpoint a resumed fit starts from, whose ``logs/metrics.csv`` rows are kept."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from dlparts.train import callbacks as cb

    t = cfg["trainer"]
    # two callbacks: Lightning's save_last writes last.ckpt only in epochs that improved the best
    best = ModelCheckpoint(dirpath=folder / "checkpoints", filename="best", monitor=monitor, mode="max",
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=folder / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    callbacks = [best, last, cb.Throughput(unit), cb.MidEpochState(), *extra_callbacks]
    if t["checkpoint_every_n_steps"]:  # its own file: a ModelCheckpoint saves by steps or by epochs
        callbacks.append(cb.StepCheckpoint(folder / "checkpoints", t["checkpoint_every_n_steps"]))
    if cfg["bn_momentum"]["enabled"]:
        b = cfg["bn_momentum"]
        callbacks.append(cb.BNMomentumSchedule(b["start"], b["decay"], b["step"], b["min"]))
    if cfg["plots"]["enabled"]:
        callbacks.append(cb.Plots(plots or folder / "plots", cfg["plots"]["examples"]))
    csv_logger = CSVLogger(folder, name="logs", version="") if resumed is None else \
        cb.ResumingCSVLogger(folder, name="logs", version="", ckpt=resumed)
    loggers = [csv_logger, TensorBoardLogger(folder, name="tb", version="")] if logs else False
    return pl.Trainer(
        max_epochs=t["max_epochs"], max_time=None if t["max_time"] is None else {"seconds": t["max_time"]},
        accelerator=t["accelerator"], devices=t["devices"], num_nodes=t["num_nodes"],
        strategy=t["strategy"], precision=_precision(cfg), gradient_clip_val=t["gradient_clip_val"] or None,
        sync_batchnorm=t["sync_batchnorm"], log_every_n_steps=t["log_every_n_steps"],
        limit_train_batches=t["limit_train_batches"], limit_val_batches=t["limit_val_batches"],
        limit_test_batches=t["limit_test_batches"], check_val_every_n_epoch=t["check_val_every_n_epoch"],
        enable_progress_bar=t["progress"], enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False, callbacks=callbacks, logger=loggers, default_root_dir=folder,
        plugins=[cb.AtomicCheckpointIO()],
    )


def _quiet_lightning() -> None:
    """Lightning's start-up tips (GPU available, worker counts, ...) are noise in a CLI run."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def fit(cfg: dict, *, resume: str | Path | None = None, callbacks=()) -> dict:
    """Train ``cfg``, test the best-on-validation checkpoint, write ``results.json``; return the results.

    ``resume``: a run folder to continue from its newest checkpoint (:func:`resume_checkpoint`), exactly (epoch,
    step, optimizer, scheduler, BN momentum, history, the rows of ``logs/metrics.csv``; the data order and random
    states from that point on; see the module docstring).  ``callbacks``: extra Lightning callbacks.  The trained
    module is returned under ``"module"`` (not written to ``results.json``).
    """
    import lightning.pytorch as pl

    from dlparts.train.allocator import keep_freed_memory
    from dlparts.train.data import DataModule, build_splits
    from dlparts.train.modules import build_module

    _quiet_lightning()
    keep_freed_memory()
    if cfg["trainer"]["threads"]:
        torch.set_num_threads(cfg["trainer"]["threads"])
    folder = run_folder(cfg, resume)
    ckpt = None if resume is None else resume_checkpoint(resume)
    resumed = None
    if ckpt is not None:  # refused here, not inside Lightning's own load
        resumed = read_checkpoint(ckpt)
        _checkpoint_parts(ckpt, resumed)
    cfg = {**cfg, "run": {**cfg["run"], "dir": str(folder.parent), "name": folder.name}}  # saved as resolved
    pl.seed_everything(cfg["seed"], verbose=False)
    started = time.time()
    say = _progress(cfg)
    say(f"preparing {cfg['data']['name']} (the embedded datasets are generated on first use, then cached)")
    splits = build_splits(cfg)
    say(f"data ready after {time.time() - started:.0f} s: {len(splits.train)} train, {len(splits.val)} validation, "
        f"{len(splits.test)} test samples")
    check_task(cfg, splits.info)
    module = build_module(cfg, splits.info)
    module.extra_state = splits.extra_state
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    from dlparts.train.callbacks import FirstStep, Interrupted

    first = FirstStep(say)
    trainer = build_trainer(cfg, folder, module.monitor, UNITS[splits.info["task"]],
                            [first, *callbacks, Interrupted(folder)], resumed=resumed)  # last: after others' step end
    del resumed
    datamodule = DataModule(cfg, splits)
    say("training; the first step compiles the point kernels when their cache is cold (up to a minute)"
        if splits.info["task"].startswith("point") else "training")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)  # never runs code
    fit_s = time.time() - started
    best = trainer.checkpoint_callback.best_model_path or str(folder / "checkpoints" / "last.ckpt")
    best_val = _best_row(module.history, module.monitor)
    test_metrics = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False,
                                weights_only=True)[0]
    result = {"run_dir": str(folder), "best_ckpt": str(best), "ckpt_kind": checkpoint_kind(best),
              "last_ckpt": str(folder / "checkpoints" / "last.ckpt"),
              "task": splits.info["task"], "model": cfg["model"]["name"], "data": cfg["data"]["name"],
              "epochs": trainer.current_epoch, "max_epochs": cfg["trainer"]["max_epochs"],
              "time_cap": _time_cap_hit(trainer, cfg), "best_val": best_val,
              "test": {k.removeprefix("test/"): float(v) for k, v in test_metrics.items()},
              "fit_seconds": fit_s, "first_step_at": first.at, "setup_seconds": (first.at or time.time()) - started,
              "plots": [str(p) for c in trainer.callbacks if hasattr(c, "written") for p in c.written],
              **splits.files}
    if trainer.is_global_zero:
        (folder / "results.json").write_text(json.dumps(result, indent=2))
    return {**result, "module": module}


def _progress(cfg: dict):
    """A function printing one progress line to stderr, or doing nothing when ``trainer.progress`` is off."""
    def say(line: str) -> None:
        if cfg["trainer"]["progress"]:
            print(f"dlparts: {line}", file=sys.stderr, flush=True)

    return say


def _time_cap_hit(trainer, cfg: dict) -> float | None:
    """``trainer.max_time`` in seconds when it ended the fit before ``max_epochs``, else None."""
    cap = cfg["trainer"]["max_time"]
    return cap if cap is not None and trainer.current_epoch < cfg["trainer"]["max_epochs"] else None


def _best_row(history: list[dict], monitor: str) -> dict:
    key = monitor.removeprefix("val/")
    rows = [r for r in history if key in r]
    return max(rows, key=lambda r: r[key]) if rows else {}


def load_checkpoint(path: str | Path, overrides: list[str] = (), *, training: bool = True):
    """``(module, cfg)`` from a dlparts checkpoint; ``overrides`` apply to its saved config (e.g. ``eval.votes=12``
    or ``data.root=...``).  A checkpoint whose weights do not fit the configured model is a ConfigError.  The module
    is the task's Lightning module, or with ``training=False`` a :class:`dlparts.train.inference.TaskModel` (no
    Lightning imported: prediction and export).

    The file is read by :func:`read_checkpoint`: a checkpoint from anywhere never runs code.
    """
    from dlparts.train.inference import TaskModel

    if training:
        from dlparts.train.modules import build_module
    build = build_module if training else TaskModel
    path = Path(path)
    state = read_checkpoint(path)
    hparams = _checkpoint_parts(path, state)
    try:
        saved = load_config(None, tree=hparams["cfg"])
    except ConfigError as exc:
        raise DataError(f"checkpoint {path} is malformed: its saved config is refused ({exc})") from None
    cfg = load_config(None, list(overrides), base=saved)
    try:
        module = build(cfg, hparams["info"])
    except (KeyError, TypeError) as exc:  # info written by hand or by another program
        raise DataError(f"checkpoint {path} is malformed: hyper_parameters.info does not describe the dataset "
                        f"({type(exc).__name__}: {exc})") from None
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ConfigError(f"checkpoint {path} holds weights of another model than {cfg['model']['name']!r} "
                          f"({first})") from None
    module.on_load_checkpoint(state)
    module.eval()
    return module, cfg


def checkpoint_kind(path: str | Path) -> str:
    """What a checkpoint of a run holds: ``"best"`` (on validation), ``"last"`` (the last finished epoch),
    ``"step"`` (the newest of every ``trainer.checkpoint_every_n_steps``), ``"interrupted"`` (Ctrl-C), or its file
    name for any other."""
    from dlparts.train.callbacks import INTERRUPTED

    name = Path(path).name
    return {"best.ckpt": "best", "last.ckpt": "last", "step.ckpt": "step", INTERRUPTED: "interrupted"}.get(name, name)


def read_checkpoint(path: Path) -> dict:
    """The content of checkpoint ``path``, read with ``torch.load(weights_only=True)``: tensors and plain values
    only, so a checkpoint from anywhere never runs code; one that would need a Python object rebuilt is refused
    (a :class:`DataError`) before anything in it runs."""
    import pickle
    import zipfile

    if path.is_dir():
        raise DataError(f"checkpoint {path} is a folder, not a checkpoint file (e.g. {path}/checkpoints/best.ckpt)")
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):  # torch's own format is a zip archive; this is something else
            raise DataError(f"checkpoint {path} cannot be read (not a PyTorch checkpoint file)") from None
        why = next((line.split(":", 1)[1].split(" was not")[0].strip() for line in str(exc).splitlines()
                    if "WeightsUnpickler error:" in line), "an object that is not plain data")
        raise DataError(f"checkpoint {path} is refused: it holds Python objects beyond weights and plain values, "
                        f"which dlparts never unpickles ({why})") from None
    except Exception as exc:  # a truncated or foreign file fails in many ways
        raise DataError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None


def _checkpoint_parts(path: Path, state) -> dict:
    """The saved hyper-parameters of a loaded checkpoint, once its inside has the layout dlparts writes: a mapping
    with ``hyper_parameters`` (``cfg`` and ``info`` mappings), a ``state_dict`` of tensors, a list of history rows
    and a mapping of extra state."""
    hparams = state.get("hyper_parameters", {}) if isinstance(state, dict) else {}
    if not isinstance(hparams, dict) or "cfg" not in hparams or "info" not in hparams:
        raise DataError(f"checkpoint {path} is not a dlparts checkpoint (no saved config)")
    weights = state.get("state_dict")
    parts = {"hyper_parameters.cfg": (hparams["cfg"], dict), "hyper_parameters.info": (hparams["info"], dict),
             "state_dict": (weights, dict), "dlparts_history": (state.get("dlparts_history", []), list),
             "dlparts_extra": (state.get("dlparts_extra", {}), dict)}
    for name, (value, kind) in parts.items():
        if not isinstance(value, kind):
            raise DataError(f"checkpoint {path} is malformed: {name} is a {type(value).__name__}, "
                            f"expected a {kind.__name__}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise DataError(f"checkpoint {path} is malformed: state_dict holds something other than named tensors")
    if not isinstance(hparams["info"].get("task"), str):
        raise DataError(f"checkpoint {path} is malformed: hyper_parameters.info names no task")
    return hparams


def test(ckpt: str | Path, overrides: list[str] = ()) -> dict:
    """Evaluate a checkpoint on its dataset's test split.  Its outputs go beside the fit's without replacing them:
    ``<run>/test-<checkpoint>.json`` and ``<run>/plots/test-<checkpoint>/``."""
    from dlparts.train.data import DataModule, build_splits

    _quiet_lightning()
    started = time.time()
    module, cfg = load_checkpoint(ckpt, overrides)
    folder = Path(ckpt).resolve().parent.parent
    # the run folder is the checkpoint's, wherever it was moved: datasets read their split lists from it
    cfg = {**cfg, "run": {**cfg["run"], "dir": str(folder.parent), "name": folder.name},
           "trainer": {**cfg["trainer"], "devices": 1, "strategy": "auto", "num_nodes": 1}}
    splits = build_splits(cfg)
    check_task(cfg, splits.info)
    stem = Path(ckpt).stem
    trainer = build_trainer(cfg, folder, module.monitor, UNITS[splits.info["task"]], logs=False,
                            plots=folder / "plots" / f"test-{stem}")
    metrics = trainer.test(module, datamodule=DataModule(cfg, splits), verbose=False)[0]
    result = {"ckpt": str(ckpt), "ckpt_kind": checkpoint_kind(ckpt), "task": splits.info["task"],
              "model": cfg["model"]["name"], "data": cfg["data"]["name"],
              "epochs": module.history[-1]["epoch"] + 1 if module.history else 0,
              "best_val": _best_row(module.history, module.monitor),
              "test": {k.removeprefix("test/"): float(v) for k, v in metrics.items()},
              "test_seconds": time.time() - started,
              "plots": [str(p) for c in trainer.callbacks if hasattr(c, "written") for p in c.written],
              "run_dir": str(folder), **splits.files}
    if folder.is_dir():
        (folder / f"test-{stem}.json").write_text(json.dumps(result, indent=2))
    return result


def resume_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint ``--resume run_dir`` continues from: the newest of ``checkpoints/last.ckpt`` (the end of the
    last finished epoch), ``step.ckpt`` (every N steps) and ``interrupted.ckpt`` (Ctrl-C); a DataNotFoundError when
    none is there."""
    from dlparts.train.callbacks import INTERRUPTED

    folder = Path(run_dir) / "checkpoints"
    found = [p for p in (folder / "last.ckpt", folder / "step.ckpt", folder / INTERRUPTED) if p.is_file()]
    if not found:
        raise DataNotFoundError(f"--resume {run_dir}: none of {folder / 'last.ckpt'}, step.ckpt or {INTERRUPTED} "
                                f"exists there")
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> dict:
    """The saved config of run folder ``run_dir`` with ``overrides`` (e.g. more epochs) applied."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DataNotFoundError(f"--resume {run_dir}: no config.yaml there (not a dlparts run folder)")
    return load_config(path, list(overrides))

