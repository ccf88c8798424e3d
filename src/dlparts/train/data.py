"""Data modules: the datasets of ``dlparts.data`` split into train / val / test and served in batches.

Validation is a seeded hold-out (``data.val_fraction``) of the training split, never the test split, so the best
checkpoint is chosen without looking at the test set (ModelNet40, ShapeNetPart's and S3DIS's published protocols give
no validation set of their own).  Training batches are ordered by :class:`EpochSampler`: a permutation drawn from
``(seed, epoch)`` alone, of which each DDP process takes every ``world``-th sample.  The sampler also reseeds the
random generators when an epoch's first batch is requested, so augmentation and dropout depend on the epoch alone:
a run resumed from the last epoch's checkpoint replays the interrupted epoch exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dlparts.errors import ConfigError


@dataclass
class Splits:
    """The datasets of a run and what the model must know about them (``info``, saved with checkpoints)."""

    train: Dataset
    val: Dataset
    test: Dataset
    info: dict[str, Any]
    extra_state: dict[str, Any] = field(default_factory=dict)


def seed_for(seed: int, epoch: int, rank: int) -> int:
    """The seed of one process's epoch."""
    return (seed * 1_000_003 + epoch * 7919 + rank) % 2**31


class EpochSampler(Sampler[int]):
    """Indices of ``n`` samples for process ``rank`` of ``world``: shuffled by ``(seed, epoch)`` when ``shuffle``.

    Shuffled (training) orders drop the last ``n % world`` samples so every process runs the same number of steps;
    evaluation orders keep every sample exactly once across the processes (no padding, so no double counting).

    A shuffling sampler is the first thing an epoch runs, before any batch is fetched (Lightning fetches the first
    batch before the epoch's callbacks run), so it is where each epoch is seeded: it reseeds Python, NumPy and torch
    from :func:`seed_for`, and ``generator`` (the DataLoader's, which seeds its workers) in :meth:`set_epoch`.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1,
                 generator: torch.Generator | None = None):
        self.n, self.shuffle, self.seed, self.rank, self.world = n, shuffle, seed, rank, world
        self.generator = generator
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before each epoch
        self.epoch = epoch
        if self.generator is not None:
            self.generator.manual_seed(seed_for(self.seed, epoch, self.rank))

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world))
        value = seed_for(self.seed, self.epoch, self.rank)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        usable = self.n - self.n % self.world
        return perm[:usable][self.rank::self.world].tolist()

    def __iter__(self):
        return iter(self._order())

    def __len__(self) -> int:
        if self.shuffle:
            return self.n // self.world
        return len(range(self.rank, self.n, self.world))


def holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into (train, val) index lists, ``round(n * fraction)`` (at least 1) for val."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.val_fraction={fraction} must be between 0 and 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, round(n * fraction))
    return sorted(perm[k:]), sorted(perm[:k])


# ------------------------------------------------------------------------------------------------ image datasets
def _image_splits(cfg: dict, root, train_split: str, test_split: str, defaults: dict) -> Splits:
    """An image folder: preprocessing size ``S``, crop, mean mode and PCA lighting from ``data.args``."""
    from dlparts.data.imagefolder import ImageFolderDataset
    from dlparts.data.images import build_transform, compute_rgb_stats
    from dlparts.data.synthetic_images import cache_root

    args = {**defaults, **cfg["data"]["args"]}
    unknown = set(args) - set(defaults)
    if unknown:
        raise ConfigError(f"data.args: unknown key(s) {', '.join(sorted(unknown))} for an image dataset; "
                          f"known: {', '.join(defaults)}")
    size, crop = args["image_size"], args["crop_size"]
    cache = cache_root() / "image_cache"
    fit = ImageFolderDataset(root, train_split, size=size, cache_dir=cache, progress=False)
    held = ImageFolderDataset(root, train_split, size=size, cache_dir=cache, progress=False)
    test = ImageFolderDataset(root, test_split, size=size, classes=fit.classes, cache_dir=cache, progress=False)
    stats = compute_rgb_stats((fit.load(i) for i in range(len(fit))), max_images=args["stats_images"])
    mean = args["mean"]
    lighting = args["lighting_std"] if cfg["data"]["augment"] else 0.0
    fit.transform = build_transform(cfg["data"]["augment"], crop=crop, stats=stats, mean=mean, lighting_std=lighting)
    held.transform = test.transform = build_transform(False, crop=crop, stats=stats, mean=mean)
    train_idx, val_idx = holdout(len(fit), cfg["data"]["val_fraction"], cfg["seed"])
    info = {"task": "image_cls", "num_classes": len(fit.classes), "classes": list(fit.classes),
            "input_spec": [3, crop, crop], "image_size": size, "mean": mean}
    extra = {"mean_image": stats.mean_image, "mean_rgb": stats.mean_rgb}
    return Splits(Subset(fit, train_idx), Subset(held, val_idx), test, info, extra)


_IMAGE_DEFAULTS = {"image_size": 256, "crop_size": 227, "mean": "image", "lighting_std": 0.1, "stats_images": 10_000}


def synthetic_images(cfg: dict) -> Splits:
    """The embedded shapes images (``dlparts.data.synthetic_images``); its ``val`` folder is our test split."""
    from dlparts.data.synthetic_images import make_synthetic_images

    defaults = {**_IMAGE_DEFAULTS, "image_size": 64, "crop_size": 56, "mean": "channel", "train_per_class": 300,
                "val_per_class": 50}
    args = {**defaults, **cfg["data"]["args"]}
    root = make_synthetic_images(seed=0, size=args["image_size"], train_per_class=args["train_per_class"],
                                 val_per_class=args["val_per_class"])
    return _image_splits(cfg, root, "train", "val", defaults)


def imagefolder(cfg: dict) -> Splits:
    """An ImageNet-layout folder ``data.root`` with ``train/`` and ``val/``; ``val/`` is the test split (the paper
    reports ILSVRC validation results), validation is held out of ``train/``."""
    if cfg["data"]["root"] is None:
        raise ConfigError("data.root is not set; give the folder holding train/ and val/, e.g. data.root=/data/imagenet")
    return _image_splits(cfg, cfg["data"]["root"], "train", "val", _IMAGE_DEFAULTS)


#: data.name -> builder(cfg) -> Splits.
DATASETS: dict[str, Callable[[dict], Splits]] = {
    "synthetic_images": synthetic_images,
    "imagefolder": imagefolder,
}


def build_splits(cfg: dict) -> Splits:
    name = cfg["data"]["name"]
    if name not in DATASETS:
        raise ConfigError(f"data.name={name!r} is not one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](cfg)


class DataModule(pl.LightningDataModule):
    """Batches of :class:`Splits` for Lightning, ordered by :class:`EpochSampler` (Lightning's own distributed
    sampler is switched off: ours needs no padding and is shared by single- and multi-process runs)."""

    def __init__(self, cfg: dict, splits: Splits):
        super().__init__()
        self.cfg, self.splits = cfg, splits

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        d = self.cfg["data"]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        generator = torch.Generator().manual_seed(self.cfg["seed"])
        sampler = EpochSampler(len(dataset), shuffle=train, seed=self.cfg["seed"], rank=rank, world=world,
                               generator=generator)
        batch = d["batch_size"] if train else (d["eval_batch_size"] or d["batch_size"])
        return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=train and len(sampler) >= batch,
                          num_workers=d["workers"], persistent_workers=d["workers"] > 0, generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, False)
