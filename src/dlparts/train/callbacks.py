"""Callbacks of the engine: BN momentum schedule, throughput, first-step time, plots; atomic checkpoint files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn


def bn_momentum(epoch: int, start: float = 0.5, decay: float = 0.5, step: int = 20, floor: float = 0.01) -> float:
    """PyTorch BN momentum at ``epoch`` under the PointNet/PointNet++ schedule.

    Their TensorFlow code uses ``bn_decay = min(0.99, 1 - 0.5 * 0.5 ** (samples_seen // 200000))`` (staircase; 200k
    samples is about 20 ModelNet40 epochs).  TensorFlow's decay is ``1 - momentum`` in PyTorch's convention, so the
    momentum starts at ``start`` and halves every ``step`` epochs down to ``floor`` (decay 0.5 -> 0.99).
    """
    return max(start * decay ** (epoch // step), floor)


class BNMomentumSchedule(pl.Callback):
    """Sets the momentum of every batch-norm layer at the start of each training epoch."""

    def __init__(self, start: float, decay: float, step: int, floor: float):
        self.start, self.decay, self.step, self.floor = start, decay, step, floor

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        momentum = bn_momentum(trainer.current_epoch, self.start, self.decay, self.step, self.floor)
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = momentum


class Throughput(pl.Callback):
    """Shows training throughput (``<unit>/s``, samples over wall time since the epoch began) in the progress bar."""

    def __init__(self, unit: str):
        self.unit = unit
        self.start, self.samples = 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[pl_module.input_key]) * trainer.world_size
        rate = self.samples / max(time.perf_counter() - self.start, 1e-9)
        pl_module.log(f"{self.unit}/s", rate, prog_bar=True, on_step=True, on_epoch=False, logger=False)


class FirstStep(pl.Callback):
    """Records the wall-clock time (``time.time()``) at which the first training step ended: the start-up figure."""

    def __init__(self):
        self.at: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.at is None:
            self.at = time.time()


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
