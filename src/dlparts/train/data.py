"""Data modules: the datasets of ``dlparts.data`` split into train / val / test and served in batches.

Validation is a seeded hold-out (``data.val_fraction``) of the training split, never the test split, so the best
checkpoint is chosen without looking at the test set (ModelNet40, ShapeNetPart's and S3DIS's published protocols give
no validation set of their own).  Training batches are ordered by :class:`EpochSampler`: a permutation drawn from
``(seed, epoch)`` alone, of which each DDP process takes every ``world``-th sample.  The sampler also reseeds the
random generators when an epoch's first batch is requested, so augmentation and dropout depend on the epoch alone:
a run resumed from the last epoch's checkpoint replays the interrupted epoch exactly.  Within an epoch, the training
loader (:class:`ResumableLoader`) is what Lightning calls a resumable loader: its state in a checkpoint saved after a
training step (``trainer.checkpoint_every_n_steps``, Ctrl-C) holds the batches served and the random states of that
moment, and a run resumed from it skips those batches and restores those states, so the rest of the epoch replays
exactly too (with ``data.workers=0``; worker processes draw from random states a checkpoint does not hold).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dlparts.data import (S3DIS, ImageFolderDataset, ModelNet, ModelNet40H5, ModelNet40Normal, Parts, Rooms, Shapes,
                          ShapeNetPart, build_transforms, cache_root, compute_rgb_stats, make_synthetic_images)
from dlparts.data._progress import skipped_summary
from dlparts.data.folders import SPLITS, PointFolder, class_counts, plan_splits, read_splits, write_splits
from dlparts.data.images import build_transform, stats_sample
from dlparts.data.scene_folder import PartFolder, SceneFolder
from dlparts.data.splits import holdout
from dlparts.errors import ConfigError


@dataclass
class Splits:
    """The datasets of a run, what the model must know of them (``info``, saved with checkpoints) and ``files``."""

    train: Dataset
    val: Dataset
    test: Dataset
    info: dict[str, Any]
    extra_state: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


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
        self.skipped = 0  # indices the current epoch's order left out (a resumed epoch)
        self._resume: tuple[int, int, dict] | None = None

    def resume(self, epoch: int, skip: int, rng: dict) -> None:
        """If the next order is epoch ``epoch``'s (Lightning restarts that epoch), serve it without its first ``skip``
        indices and restore the random states ``rng`` (:func:`rng_state`): the moment a mid-epoch checkpoint was
        saved.  Any other epoch is served whole."""
        self._resume = (epoch, skip, rng)

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
        order = perm[:usable][self.rank::self.world].tolist()
        self.skipped = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            self.skipped = self._resume[1]
            set_rng_state(self._resume[2])
        self._resume = None
        return order[self.skipped:]

    def __iter__(self):
        return iter(self._order())

    def __len__(self) -> int:
        if self.shuffle:
            return self.n // self.world
        return len(range(self.rank, self.n, self.world))


def rng_state() -> dict:
    """The global random states (Python, NumPy, torch CPU and CUDA) as plain values and tensors, which a checkpoint
    read with ``weights_only=True`` can hold."""
    numpy = np.random.get_state(legacy=False)
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)), "pos": numpy["state"]["pos"],
                      "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    n = state["numpy"]
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                                "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableLoader(DataLoader):
    """The training loader, resumable within an epoch (Lightning saves ``state_dict()`` in each checkpoint and gives
    it back to ``load_state_dict`` on resume): the epoch, the batches served so far in it and the random states of
    the moment, which, in a checkpoint saved after a training step, are those the next batch starts from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = 0

    def __iter__(self):
        batches = super().__iter__()
        self.served = 0

        def counted():
            for i, batch in enumerate(batches):
                self.served = self.sampler.skipped // self.batch_size + i + 1  # skipped: known once iterating
                yield batch

        return counted()

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self.served, "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.resume(state["epoch"], state["batches"] * self.batch_size, state["rng"])


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

#: The file in a ``point_folder`` run's folder that keeps its split lists, class counts and skipped files.
SPLIT_FILE = "splits.json"


def point_folder(cfg: dict) -> Splits:
    """``data.root`` with a folder per class (:mod:`dlparts.data.folders`; ``data.args``: ``normals``, ``fps``).

    A new run draws the split and writes its file lists, per-class counts and skipped files to ``<run folder>/
    splits.json``; a run folder that already holds checkpoints (a resumed fit, ``dlparts test``) reads the lists
    back from there, so its test files stay its test files whatever was added to the folder since."""
    d = cfg["data"]
    args = _dataset_args(cfg, ("normals", "fps"))
    root = _root(cfg)
    run = Path(cfg["run"]["dir"]) / cfg["run"]["name"] if cfg["run"]["name"] else None
    saved = run is not None and (run / SPLIT_FILE).is_file() and any(run.glob("checkpoints/*.ckpt"))
    plan = read_splits(run / SPLIT_FILE) if saved else \
        plan_splits(root, classes=d["classes"], val_fraction=d["val_fraction"], test_fraction=d["test_fraction"],
                    seed=cfg["seed"])
    datasets = PointFolder.all_splits(root, num_points=d["num_points"], seed=cfg["seed"], plan=plan,
                                      drop_nonfinite=d["drop_nonfinite"], **args)

    def make(split: str, transform) -> PointFolder:
        datasets[split].transform = transform
        return datasets[split]

    splits = _point_splits(cfg, "point_cls", make, has_val=True)
    splits.files = skipped_summary(datasets.values(), paths=False)  # each reason names its file
    summary = {"counts": class_counts(plan, {s: datasets[s].labels for s in SPLITS}), **splits.files}
    if run is not None and not saved:
        run.mkdir(parents=True, exist_ok=True)
        write_splits(run / SPLIT_FILE, plan, summary)
    if cfg["trainer"]["progress"]:
        _print_counts(root, plan.layout, summary, None if run is None else run / SPLIT_FILE)
    return splits


def _print_counts(root: str, layout: str, summary: dict, where: Path | None) -> None:
    """The per-class sample counts of each split (class imbalance in sight before training), and what was
    skipped."""
    counts = summary["counts"]
    width = max(map(len, counts))
    lines = [f"dlparts: point_folder {root}: {len(counts)} classes ({layout}); samples train / val / test:"]
    lines += [f"  {name:<{width}}  {c['train']:>6} / {c['val']:>5} / {c['test']:>5}" for name, c in counts.items()]
    if summary["skipped"]:
        lines.append(f"dlparts: {len(summary['skipped'])} unreadable file(s) skipped"
                     + (f" (listed in {where})" if where else ""))
    if summary["dropped_nonfinite_points"]:
        lines.append(f"dlparts: {summary['dropped_nonfinite_points']} non-finite point(s) dropped")
    print("\n".join(lines), file=sys.stderr, flush=True)


register_dataset("point_folder", point_folder)


#: The ``data`` keys of the user's labelled folders (``dlparts.data.scene_folder``), passed to their datasets.
LABELLED_KEYS = ("classes", "test_fraction", "label_field", "columns", "drop_nonfinite")


def _labelled_folder(make: Callable, task: str, args: tuple[str, ...], cfg: dict) -> Splits:
    """``scene_folder`` / ``part_folder``: ``data``'s labelled-file keys go to the dataset; validation is held out."""
    options = {key: cfg["data"][key] for key in LABELLED_KEYS}
    spec = PointDataset(partial(make, **options), task, args, root=True, seed=True, has_val=False)
    splits = _point_dataset(spec, cfg)
    splits.files = skipped_summary([splits.train.dataset, splits.test])  # train: a Subset (validation held out)
    return splits


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
        return (ResumableLoader if train else DataLoader)(
            dataset, batch_size=batch, sampler=sampler, drop_last=train and len(sampler) >= batch,
            num_workers=d["workers"], persistent_workers=d["workers"] > 0, generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, False)
