"""Accuracy of training with the fused batch norm kernels (``dlparts.layers.fused``) against torch's float32 modules
and against float64 (exact enough to be the arithmetic's answer), on a CPU demo preset over several seeds.

    .venv/bin/python benchmarks/fused_training.py                          # partseg preset, seeds 0-2, 8 epochs
    .venv/bin/python benchmarks/fused_training.py --seeds 0 5 --epochs 24 --modes fused plain
    .venv/bin/python benchmarks/fused_training.py --preset pointnet2 --seeds 0 1

A training step's gradients are tested against float64 in ``tests/layers/test_fused.py``; this checks where whole
runs end.  Each (seed, mode) trains from the same initial weights on the same batches (per-epoch seeding) and is
tested on its best-on-validation checkpoint.  ``fused`` is what ``dlparts fit`` runs on a CPU in float32;
``plain`` the same run under ``fused.disabled()``; ``float64`` ``trainer.precision=64`` (plain modules).  Prints one
row per run, then per mode the mean of the first test metric, and the paired differences between modes.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

from dlparts.layers import fused
from dlparts.train.demo import PRESETS, preset_config
from dlparts.train.engine import fit

PRECISION = {"fused": "32", "plain": "32", "float64": "64"}


def train(preset: str, seed: int, mode: str, epochs: int | None, out: str) -> dict:
    overrides = [f"run.dir={out}", f"run.name={preset}-{mode}-{seed}", f"seed={seed}",
                 f"trainer.precision={PRECISION[mode]}", "trainer.progress=false", "plots.enabled=false"]
    if epochs:
        overrides.append(f"trainer.max_epochs={epochs}")
    started = time.perf_counter()
    with fused.disabled() if mode != "fused" else contextlib.nullcontext():
        result = fit(preset_config(preset, overrides))
    return {"seed": seed, "mode": mode, "test": result["test"], "best_val": result["best_val"],
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="partseg", choices=list(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--modes", nargs="+", default=list(PRECISION), choices=list(PRECISION))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            for mode in args.modes:
                row = train(args.preset, seed, mode, args.epochs, out)
                rows.append(row)
                metric = next(iter(row["test"]))
                print(f"seed {seed:3d}  {mode:8s} test {metric} {row['test'][metric]:.4f}  best val "
                      f"{row['best_val'].get(metric, float('nan')):.4f} (epoch {row['best_val'].get('epoch')}), "
                      f"train loss there {row['best_val'].get('train_loss', float('nan')):.4f}, "
                      f"{row['seconds']:.0f} s", flush=True)
    metric = next(iter(rows[0]["test"]))
    value = {(r["seed"], r["mode"]): r["test"][metric] for r in rows}

    def paired(a: str, b: str) -> str:
        diffs = [value[s, a] - value[s, b] for s in args.seeds]
        return f"{a} minus {b}: mean {statistics.mean(diffs):+.4f}, per seed " + " ".join(f"{d:+.4f}" for d in diffs)

    print(f"\n{args.preset}, {len(args.seeds)} seeds, test {metric}:")
    for mode in args.modes:
        print(f"  {mode:8s} mean {statistics.mean(value[s, mode] for s in args.seeds):.4f}")
    for a, b in (("fused", "float64"), ("plain", "float64"), ("fused", "plain")):
        if {a, b} <= set(args.modes):
            print("  " + paired(a, b))

if __name__ == "__main__":
    main()
