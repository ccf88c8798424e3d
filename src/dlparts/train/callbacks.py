"""Callbacks of the engine: BN momentum schedule, throughput, first-step time, plots, Ctrl-C, checkpoints every N
steps and what resuming within an epoch needs; atomic checkpoint files; the CSV logger that resumes a run's history."""

from __future__ import annotations

import csv
import os
import signal
import sys
import threading
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from torch import nn
from torchmetrics import Metric, MetricCollection


def bn_momentum(epoch: int, start: float = 0.5, decay: float = 0.5, step: int = 20, floor: float = 0.01) -> float:
    """PyTorch BN momentum at ``epoch`` under the PointNet/PointNet++ schedule.

    Their TensorFlow code uses ``bn_decay = min(0.99, 1 - 0.5 * 0.5 ** (samples_seen // 200000))`` (staircase; 200k
    samples is about 20 ModelNet40 epochs).  TensorFlow's decay is ``1 - momentum`` in PyTorch's convention, so the
    momentum starts at ``start`` and halves every ``step`` epochs down to ``floor`` (decay 0.5 -> 0.99).
    """
    return max(start * decay ** (epoch // step), floor)


class BNMomentumSchedule(pl.Callback):
    """Sets the momentum of every batch-norm layer at the start of each training epoch (and of a resumed one)."""

    def __init__(self, start: float, decay: float, step: int, floor: float):
        self.start, self.decay, self.step, self.floor = start, decay, step, floor

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        momentum = bn_momentum(trainer.current_epoch, self.start, self.decay, self.step, self.floor)
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = momentum

    # a fit resumed within an epoch does not start that epoch again (no on_train_epoch_start), but does start training
    on_train_start = on_train_epoch_start


class Throughput(pl.Callback):
    """Shows training throughput (``<unit>/s``, samples over wall time since the epoch began) in the progress bar."""

    def __init__(self, unit: str):
        self.unit = unit
        self.start, self.samples = 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.samples = time.perf_counter(), 0

    on_train_start = on_train_epoch_start  # also a fit resumed within an epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[pl_module.input_key]) * trainer.world_size
        rate = self.samples / max(time.perf_counter() - self.start, 1e-9)
        pl_module.log(f"{self.unit}/s", rate, prog_bar=True, on_step=True, on_epoch=False, logger=False)


class FirstStep(pl.Callback):
    """Records the wall-clock time (``time.time()``) at which the first training step ended: the start-up figure;
    with ``say``, also tells it (the first step is where kernels compile)."""

    def __init__(self, say=None):
        self.at: float | None = None
        self.say = say
        self.began = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.at is None:
            self.at = time.time()
            if self.say is not None:
                self.say(f"first training step done after {self.at - self.began:.0f} s")


class Plots(pl.Callback):
    """Writes PNGs into ``<run>/plots``: curves after fitting; after testing the confusion matrix (classification),
    example segmentations (prediction beside truth) and, for models that expose them, critical points."""

    def __init__(self, folder: str | Path, examples: int = 4):
        self.folder, self.examples = Path(folder), examples
        self.written: list[Path] = []

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and pl_module.history:
            from dlparts.train.plots import fit_plots

            self.written += fit_plots(pl_module, self.folder)

    def on_test_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        from dlparts.train.plots import test_plots

        self.written += test_plots(pl_module, trainer.datamodule.splits.test, self.folder, self.examples)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint files appear whole or not at all: written to a temporary file in the same folder, flushed to disk,
    then renamed over the target (``os.replace`` is atomic on POSIX and Windows)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


#: The file :class:`Interrupted` writes in a run's ``checkpoints/``.
INTERRUPTED = "interrupted.ckpt"


class Interrupted(pl.Callback):
    """Ctrl-C during ``fit`` saves a checkpoint to resume from, ``checkpoints/interrupted.ckpt``, and prints one line
    saying what was saved and how to continue; Lightning then exits with status 1.

    The first Ctrl-C is held until the training step under way ends, and the checkpoint is the state after that step
    (weights, optimizer, schedule, metrics so far, the training loader's position and random states), so resuming
    from it is exact, as from a step checkpoint.  An epoch's last step and its validation run on to the next step (see
    :func:`mid_epoch`).  A second Ctrl-C stops at once and saves the state of the moment (the rest of that epoch then
    does not replay exactly).  Under several processes Ctrl-C stops at once and nothing is saved (saving is
    collective, and the other processes are going)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.saved: Path | None = None
        self.requested = False
        self._previous = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._hold) or signal.default_int_handler

    def _hold(self, signum, frame) -> None:
        """The first Ctrl-C: noted; the next one interrupts at once."""
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def _stop(self) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._hold:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None
        if self.requested:
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.requested and mid_epoch(trainer):
            self.saved = self.folder / "checkpoints" / INTERRUPTED
            trainer.save_checkpoint(self.saved)
            self._stop()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self._previous is not None:  # another exception: the handler goes
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != "fit":
            return
        if self.saved is None and trainer.world_size == 1:
            self.saved = self.folder / "checkpoints" / INTERRUPTED
            trainer.save_checkpoint(self.saved)
        saved = (f"saved {self.saved} (epoch {trainer.current_epoch + 1}, step {trainer.global_step})"
                 if self.saved else "nothing saved (several processes)")
        last = self.folder / "checkpoints" / "last.ckpt"
        also = f"; {last} holds the last finished epoch" if last.exists() else ""
        print(f"interrupted: {saved}{also}; continue with: dlparts fit --resume {self.folder}", file=sys.stderr,
              flush=True)


def mid_epoch(trainer) -> bool:
    """Whether the training step that just ended leaves steps of its epoch to run: a checkpoint saved after an epoch's
    last step would resume without that epoch's validation (Lightning counts the epoch as done); ``last.ckpt``, saved
    after the validation, covers that moment."""
    return not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


class StepCheckpoint(ModelCheckpoint):
    """``checkpoints/step.ckpt`` every ``every`` training steps (``trainer.checkpoint_every_n_steps``), but not after an
    epoch's last step (:func:`mid_epoch`)."""

    def __init__(self, folder: Path, every: int):
        super().__init__(dirpath=folder, filename="step", monitor=None, save_top_k=1, every_n_train_steps=every,
                         enable_version_counter=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if mid_epoch(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class MidEpochState(pl.Callback):
    """What resuming within an epoch needs beyond Lightning's own restore: the running states of the module's
    torchmetrics (the epoch's training loss so far, ...), saved with each checkpoint and restored; and the training
    loader's position (:class:`dlparts.train.data.ResumableLoader`) handed to the loader even when it was built before
    the checkpoint was read (``estimated_stepping_batches`` in ``configure_optimizers`` builds it early, and Lightning
    hands the saved position only to a loader it builds afterwards)."""

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.fit_loop._load_combined_loader_states()  # a no-op once Lightning has handed it over

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # only single metrics holding updates not yet computed and reset (the training loss within an epoch):
        # replacing the states of a collection's members would cut the state sharing of its compute groups
        collections = tuple(f"{name}." for name, m in pl_module.named_modules() if isinstance(m, MetricCollection))
        checkpoint["dlparts_metric_states"] = {
            name: {**metric.metric_state, "_update_count": metric._update_count}
            for name, metric in pl_module.named_modules()
            if isinstance(metric, Metric) and metric._update_count and not name.startswith(collections)}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.state.fn != "fit":
            return
        states = checkpoint.get("dlparts_metric_states", {})
        for name, metric in pl_module.named_modules():
            if isinstance(metric, Metric) and name in states:
                for key, value in states[name].items():
                    setattr(metric, key, value.to(metric.device) if isinstance(value, torch.Tensor) else value)
                metric._computed = None


def kept_rows(rows: list[dict], ckpt: dict) -> list[dict]:
    """The rows of a run's ``metrics.csv`` (``csv.DictReader`` rows) logged up to checkpoint ``ckpt``: those of the
    epochs it finished and, for a checkpoint saved within an epoch, that epoch's rows of earlier steps; what came
    after is replayed by the resumed run."""
    done = ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
    step = ckpt["global_step"]

    def kept(row: dict) -> bool:
        epoch = int(float(row["epoch"])) if row.get("epoch") not in (None, "") else done
        return epoch < done or (epoch == done == ckpt["epoch"] and int(float(row["step"])) < step)

    return [row for row in rows if kept(row)]


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` ("previous log files ... will be deleted"); this
    one keeps its rows up to the checkpoint being resumed and appends after them."""

    def __init__(self, log_dir: str, ckpt: dict):
        self.ckpt = ckpt
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            header, rows = list(reader.fieldnames or []), list(reader)
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept_rows(rows, self.ckpt))
        self.metrics_keys = sorted(header)


class ResumingCSVLogger(CSVLogger):
    """A CSV logger that continues a run's ``logs/metrics.csv`` from checkpoint ``ckpt`` (see :func:`kept_rows`)."""

    def __init__(self, *args, ckpt: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.ckpt = ckpt

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self.ckpt)
        return self._experiment
