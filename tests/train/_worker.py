"""A training process for the engine tests: a tiny two-class point dataset, pointnet_cls_vanilla, one fit.

    python _worker.py RUN_DIR [--resume] [--hang-at EPOCH] [KEY=VALUE ...]   (also under torchrun)

Writes ``final_rank<r>.pt`` (the weights each process ends with) and ``test_rank<r>.pt`` (the confusion matrix that
process computed) into RUN_DIR.  ``--hang-at E`` writes ``RUN_DIR/midepoch`` after the 3rd step of epoch E and
sleeps (until a Ctrl-C, which ends that step), so a test can kill the process in the middle of that epoch.
"""

import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from dlparts.train import data as D
from dlparts.train.config import load_config
from dlparts.train.callbacks import Interrupted
from dlparts.train.engine import fit

TRAIN, TEST, POINTS = 96, 21, 32  # 21 test clouds: uneven shares for 2 processes


class TinyClouds(torch.utils.data.Dataset):
    """Class 0: points on the unit sphere; class 1: points in the unit cube; jittered from the global RNG."""

    def __init__(self, n: int, seed: int, augment: bool):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        sphere = torch.nn.functional.normalize(torch.randn(n, POINTS, 3, generator=g), dim=-1)
        cube = torch.rand(n, POINTS, 3, generator=g) * 2 - 1
        self.points = torch.where(self.labels[:, None, None] == 0, sphere, cube)  # [n, POINTS, 3]
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        points = self.points[i]
        if self.augment:
            points = points + 0.02 * torch.randn_like(points)  # global RNG: must replay identically on resume
        return {"points": points, "label": self.labels[i]}


def tiny_points(cfg):
    train_idx, val_idx = D.holdout(TRAIN, cfg["data"]["val_fraction"], cfg["seed"])
    full = TinyClouds(TRAIN, 0, augment=True)
    info = {"task": "point_cls", "num_classes": 2, "classes": ["sphere", "cube"], "input_spec": [POINTS, 3]}
    return D.Splits(torch.utils.data.Subset(full, train_idx), torch.utils.data.Subset(TinyClouds(TRAIN, 0, False),
                    val_idx), TinyClouds(TEST, 1, augment=False), info)


class Hang(pl.Callback):
    def __init__(self, folder: Path, epoch: int):
        self.folder, self.epoch = folder, epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 2:
            (self.folder / "midepoch").write_text("now")
            interrupted = next(c for c in trainer.callbacks if isinstance(c, Interrupted))
            end = time.time() + 120
            while time.time() < end and not interrupted.requested:  # a Ctrl-C lets the step end
                time.sleep(0.05)


def main(argv):
    folder = Path(argv[0])
    resume = "--resume" in argv
    hang = int(argv[argv.index("--hang-at") + 1]) if "--hang-at" in argv else None
    overrides = [a for a in argv[1:] if "=" in a]
    D.DATASETS["tiny_points"] = tiny_points
    cfg = load_config(None, ["model.name=pointnet_cls_vanilla", "data.name=tiny_points", "data.batch_size=8",
                             "data.val_fraction=0.25", "trainer.max_epochs=4", "trainer.accelerator=cpu",
                             "trainer.devices=1", "trainer.progress=false", "trainer.threads=1", "optim.lr=0.01",
                             "bn_momentum.enabled=true", "bn_momentum.step=2", "plots.enabled=false",
                             f"run.dir={folder.parent}", f"run.name={folder.name}", *overrides])
    callbacks = [Hang(folder, hang)] if hang is not None else []
    result = fit(cfg, resume=folder if resume else None, callbacks=callbacks)
    module = result["module"]
    rank = module.global_rank
    torch.save({k: v.cpu() for k, v in module.model.state_dict().items()}, folder / f"final_rank{rank}.pt")
    torch.save(module.last_test["confmat"], folder / f"test_rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
