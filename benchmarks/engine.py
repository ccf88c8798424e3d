"""Engine overhead: training throughput of pointnet2_cls_ssg through ``dlparts.train`` (Lightning, metrics, callbacks,
progress bar, logs) against a bare PyTorch loop over the same model, data, optimizer and batches; and the time from
launching ``dlparts fit`` to the end of its first training step.

    .venv/bin/python benchmarks/engine.py                 # the CPU preset's model (configs/pointnet2_cls_ssg_cpu.yaml)
    .venv/bin/python benchmarks/engine.py --paper         # the paper's SSG table (1024 points; slow on a CPU)
    .venv/bin/python benchmarks/engine.py --steps 30 --rounds 3

Throughput is clouds per second between the end of the first step and the end of the last (the first step holds
one-time work: numba compilation, allocator warm-up), in wall time and in CPU time of this process (all its threads;
on a machine shared with other jobs the CPU-time figure is the stable one).  The two loops alternate ``--rounds``
times and the best round of each is compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from dlparts.train.config import load_config
from dlparts.train.data import DataModule, build_splits
from dlparts.train.engine import build_trainer
from dlparts.train.modules import build_model, build_module

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "pointnet2_cls_ssg_cpu.yaml"


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class StepTimes(pl.Callback):
    def __init__(self):
        self.times: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(now())


def rate(times: list[tuple[float, float]], batch: int) -> tuple[float, float]:
    """(wall, CPU) clouds per second from the end of the first step to the end of the last."""
    clouds = batch * (len(times) - 1)
    return clouds / (times[-1][0] - times[0][0]), clouds / (times[-1][1] - times[0][1])


def bare_loop(cfg: dict, splits, steps: int) -> tuple[float, float]:
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg, splits.info).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"], weight_decay=cfg["optim"]["weight_decay"])
    loader = DataModule(cfg, splits).train_dataloader()
    times = []
    for i, batch in enumerate(loader):
        if i == steps:
            break
        loss = F.cross_entropy(model(batch["points"]), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(now())
    return rate(times, cfg["data"]["batch_size"])


def engine_loop(cfg: dict, splits, steps: int, folder: Path) -> tuple[float, float]:
    torch.manual_seed(cfg["seed"])
    module = build_module(cfg, splits.info)
    timer = StepTimes()
    trainer = build_trainer(cfg, folder, module.monitor, "clouds", [timer])
    trainer.fit(module, datamodule=DataModule(cfg, splits))
    return rate(timer.times[:steps], cfg["data"]["batch_size"])


def first_step(folder: Path) -> tuple[float, float]:
    """(seconds from launching ``dlparts fit`` to the end of its first step, of which data + model setup)."""
    launched = time.time()
    cmd = [str(Path(sys.executable).with_name("dlparts")), "fit", "--config", str(PRESET), f"run.dir={folder}",
           "run.name=first-step", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.progress=false",
           "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "plots.enabled=false"]
    subprocess.run(cmd, check=True, capture_output=True)
    result = json.loads((folder / "first-step" / "results.json").read_text())
    return result["first_step_at"] - launched, result["setup_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="training steps per measured loop (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each loop (default 2)")
    parser.add_argument("--paper", action="store_true", help="the paper's SSG table at 1024 points")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = ["trainer.progress=true", "plots.enabled=false", "trainer.limit_val_batches=0",
                 "trainer.max_epochs=1", f"trainer.limit_train_batches={args.steps}", f"trainer.threads={args.threads}"]
    if args.paper:
        overrides += ["model.variant=null", "data.num_points=1024", "data.batch_size=16"]
    cfg = load_config(PRESET, overrides)
    splits = build_splits(cfg)
    label = "paper SSG, 1024 points" if args.paper else "CPU-preset SSG, 512 points"
    print(f"pointnet2_cls_ssg ({label}), batch {cfg['data']['batch_size']}, {args.steps} steps, "
          f"{args.threads} threads, {args.rounds} rounds")
    bare, engine = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            bare.append(bare_loop(cfg, splits, args.steps))
            engine.append(engine_loop(cfg, splits, args.steps, Path(tmp) / f"engine{r}"))
            print(f"round {r + 1}: bare loop {bare[-1][0]:.1f} clouds/s wall, {bare[-1][1]:.1f} per CPU-second; "
                  f"engine {engine[-1][0]:.1f} clouds/s wall, {engine[-1][1]:.1f} per CPU-second")
        for i, kind in enumerate(("wall", "CPU")):
            best_bare, best_engine = max(b[i] for b in bare), max(e[i] for e in engine)
            print(f"best ({kind} time): bare loop {best_bare:.1f} clouds/s, engine {best_engine:.1f} clouds/s -> "
                  f"engine overhead {100 * (best_bare / best_engine - 1):+.1f}% (target < 5%)")
        total, setup = first_step(Path(tmp))
        print(f"time to first training step after launching `dlparts fit`: {total:.1f} s "
              f"(imports and argument parsing {total - setup:.1f} s, data + model + trainer setup and the first step "
              f"{setup:.1f} s; the embedded data were already cached)")


if __name__ == "__main__":
    main()
