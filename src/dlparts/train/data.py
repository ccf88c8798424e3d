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
from functools import partial
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dlparts.data import (S3DIS, ImageFolderDataset, ModelNet, ModelNet40H5, ModelNet40Normal, Parts, Rooms, Shapes,
                          ShapeNetPart, build_transforms, cache_root, compute_rgb_stats, make_synthetic_images)
from dlparts.data.images import build_transform, stats_sample
from dlparts.data.scene_folder import PartFolder, SceneFolder
from dlparts.data.splits import holdout
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


# ------------------------------------------------------------------------------------------------ image datasets
def _image_splits(cfg: dict, root, train_split: str, test_split: str, defaults: dict) -> Splits:
    """An image folder: preprocessing size ``S``, crop, mean mode and PCA lighting from ``data.args``."""
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
    train_idx, val_idx = holdout(len(fit), cfg["data"]["val_fraction"], cfg["seed"])
    chosen = stats_sample(train_idx, args["stats_images"], cfg["seed"])  # every class, never the hold-out
    stats = compute_rgb_stats(fit.load(i) for i in chosen)
    mean = args["mean"]
    lighting = args["lighting_std"] if cfg["data"]["augment"] else 0.0
    fit.transform = build_transform(cfg["data"]["augment"], crop=crop, stats=stats, mean=mean, lighting_std=lighting)
    held.transform = test.transform = build_transform(False, crop=crop, stats=stats, mean=mean)
    info = {"task": "image_cls", "num_classes": len(fit.classes), "classes": list(fit.classes),
            "input_spec": [3, crop, crop], "image_size": size, "mean": mean}
    extra = {"mean_image": stats.mean_image, "mean_rgb": stats.mean_rgb}
    return Splits(Subset(fit, train_idx), Subset(held, val_idx), test, info, extra)


_IMAGE_DEFAULTS = {"image_size": 256, "crop_size": 227, "mean": "image", "lighting_std": 0.1, "stats_images": 10_000}


def synthetic_images(cfg: dict) -> Splits:
    """The embedded shapes images (``dlparts.data.synthetic_images``); its ``val`` folder is our test split."""
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


# ------------------------------------------------------------------------------------------------ point datasets
#: Training augmentation when ``data.transforms`` is not set: PointNet++'s scaling and shift with PointNet's jitter
#: for objects; none for rooms (PointNet's S3DIS training used none).
DEFAULT_TRANSFORMS = {"point_cls": "scale,shift,jitter", "point_partseg": "scale,shift,jitter", "point_semseg": ""}


def _point_splits(cfg: dict, task: str, make: Callable, has_val: bool) -> Splits:
    """``make(split, transform) -> Dataset`` for a point dataset; without a published val split (``has_val``
    False) validation is held out of the training split."""
    d = cfg["data"]
    spec = d["transforms"] if d["transforms"] is not None else DEFAULT_TRANSFORMS[task]
    augment = build_transforms(spec if d["augment"] else "")
    train = make("train", augment if augment.transforms else None)
    test = make("test", None)
    if has_val:
        val = make("val", None)
    else:
        train_idx, val_idx = holdout(len(train), d["val_fraction"], cfg["seed"])
        val, train = Subset(make("train", None), val_idx), Subset(train, train_idx)
    first = test[0] if len(test) else train[0]
    info = {"task": task, "num_classes": len(test.classes), "classes": list(test.classes),
            "input_spec": list(first["points"].shape)}
    if task == "point_partseg":
        info["categories"] = list(test.categories)
        info["parts_of_category"] = {int(k): list(v) for k, v in test.parts_of_category.items()}
    return Splits(train, val, test, info)


def _dataset_args(cfg: dict, allowed: tuple[str, ...]) -> dict:
    args = dict(cfg["data"]["args"])
    unknown = set(args) - set(allowed)
    if unknown:
        raise ConfigError(f"data.args: unknown key(s) {', '.join(sorted(unknown))} for data.name="
                          f"{cfg['data']['name']}; known: {', '.join(allowed)}")
    return args


def _root(cfg: dict) -> str:
    if cfg["data"]["root"] is None:
        raise ConfigError(f"data.root is not set; data.name={cfg['data']['name']} reads a local folder, "
                          f"e.g. data.root=/data/{cfg['data']['name']}")
    return cfg["data"]["root"]


@dataclass(frozen=True)
class PointDataset:
    """How a ``data.name`` builds a point dataset: ``make(*root, split, num_points=, transform=, **kwargs)`` for
    each split, with ``args`` the ``data.args`` keys it accepts.  ``root``: it reads ``data.root``; ``seed``: the
    run's seed goes to the dataset (sampling, and with ``val_fraction`` the dataset's own train/val hold-out);
    ``has_val``: it has a val split (else validation is held out of its training split here)."""

    make: Callable[..., Dataset]
    task: str
    args: tuple[str, ...] = ()
    root: bool = False
    seed: bool = False
    val_fraction: bool = False
    has_val: bool = True


#: ``data.args`` given as YAML lists that the datasets take as tuples.
_TUPLE_ARGS = ("per_class", "rooms")


def _point_dataset(spec: PointDataset, cfg: dict) -> Splits:
    args = _dataset_args(cfg, spec.args)
    args.update({k: tuple(v) for k, v in args.items() if k in _TUPLE_ARGS})
    args["num_points"] = cfg["data"]["num_points"]
    if spec.seed:
        args["seed"] = cfg["seed"]
    if spec.val_fraction:
        args["val_fraction"] = cfg["data"]["val_fraction"]
    head = (_root(cfg),) if spec.root else ()
    return _point_splits(cfg, spec.task, lambda split, t: spec.make(*head, split, transform=t, **args), spec.has_val)


#: data.name -> builder(cfg) -> Splits (``register_dataset`` adds one; a name is registered once).
DATASETS: dict[str, Callable[[dict], Splits]] = {}


def register_dataset(name: str, builder: Callable[[dict], Splits]) -> None:
    """Make ``data.name=<name>`` build its splits with ``builder(cfg)``; a name already taken is refused."""
    if name in DATASETS:
        raise ConfigError(f"dataset {name!r} is already registered")
    DATASETS[name] = builder


register_dataset("synthetic_images", synthetic_images)
register_dataset("imagefolder", imagefolder)
#: The point datasets of ``dlparts.data``: the embedded ones (``data.args.seed`` sets their generation seed), ModelNet
#: in its three layouts (raw meshes; PointNet++'s ``modelnet40_normal_resampled``; PointNet's
#: ``modelnet40_ply_hdf5_2048``), ShapeNetPart with its official splits, and S3DIS (test on ``test_area``, 5 as
#: PointNet++ and most since; validation held out of the training areas).
POINT_DATASETS = {
    "synthetic_shapes": PointDataset(Shapes, "point_cls", ("per_class", "normals", "tiny", "seed")),
    "synthetic_parts": PointDataset(Parts, "point_partseg", ("per_class", "normals", "tiny", "seed")),
    "synthetic_rooms": PointDataset(Rooms, "point_semseg", ("rooms", "density", "tiny", "seed")),
    "modelnet": PointDataset(ModelNet, "point_cls", ("normals", "fps"), root=True, seed=True, val_fraction=True),
    "modelnet40_normal": PointDataset(ModelNet40Normal, "point_cls", ("normals", "num_classes"), root=True, seed=True,
                                      val_fraction=True),
    "modelnet40_h5": PointDataset(ModelNet40H5, "point_cls", root=True, seed=True, val_fraction=True),
    "shapenetpart": PointDataset(ShapeNetPart, "point_partseg", ("normals",), root=True, seed=True),
    "s3dis": PointDataset(S3DIS, "point_semseg", ("test_area", "block_size", "stride"), root=True, seed=True,
                          has_val=False),
}
for _name, _spec in POINT_DATASETS.items():
    register_dataset(_name, partial(_point_dataset, _spec))

#: The ``data`` keys of the user's labelled folders (``dlparts.data.scene_folder``), passed to their datasets.
LABELLED_KEYS = ("classes", "test_fraction", "label_field", "columns", "drop_nonfinite")


def _labelled_folder(make: Callable, task: str, args: tuple[str, ...], cfg: dict) -> Splits:
    """``scene_folder`` / ``part_folder``: the labelled-file keys of ``data`` go to the dataset; validation is
    held out of the training split."""
    options = {key: cfg["data"][key] for key in LABELLED_KEYS}
    spec = PointDataset(partial(make, **options), task, args, root=True, seed=True, has_val=False)
    return _point_dataset(spec, cfg)


register_dataset("scene_folder", partial(_labelled_folder, SceneFolder, "point_semseg", ("block_size", "stride")))
register_dataset("part_folder", partial(_labelled_folder, PartFolder, "point_partseg", ()))


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
