"""Headroom of the embedded datasets (issue 16): each CPU preset trained and tested, over seeds, against its target.

The rows and their targets:

- ``pointnet2_cls_ssg_cpu`` on ``synthetic_shapes``: 85-95% test top-1 (mean over seeds);
- ``pointnet_cls`` with the same budget (the same recipe with ``model.name=pointnet_cls``: data, augmentation,
  optimizer, schedule and epochs equal): at least 3 points below PointNet++ (PointNet++ Table 2 vs PointNet);
- ``alexnet_small_cpu`` on ``synthetic_images``: 80-95% test top-1;
- ``pointnet2_partseg_ssg_cpu`` (instance mIoU) and ``pointnet_semseg_cpu`` (mIoU): below 90%.

Each run is one ``dlparts fit`` (a separate process, the preset's two threads; ``--jobs`` runs several at once) into
``--out``; the table gives mean +- sample std over seeds, the range, the wall time and whether the target is met, and
``headroom.json`` beside the runs holds every number.  Not a speed comparison: run it under ``nice``.

``--diagnose`` then explains the classification rows (``pointnet2``, ``pointnet``) from each run's best checkpoint:
the confused class pairs of the test split, the accuracy on the training clouds as generated (no augmentation:
under-trained or over-fitted?) and on the test objects all whole and all single-view scans (what the scans cost).

    nice -n 10 .venv/bin/python benchmarks/datasets_headroom.py                      # all rows, 3 seeds each
    nice -n 10 .venv/bin/python benchmarks/datasets_headroom.py --only pointnet2 pointnet --seeds 3 --jobs 3
    nice -n 10 .venv/bin/python benchmarks/datasets_headroom.py --only pointnet2 pointnet --seeds 1 --diagnose
    nice -n 5 .venv/bin/python benchmarks/datasets_headroom.py --only pointnet2 pointnet --seeds 1 --jobs 2 \\
        --set trainer.threads=1 --out runs/headroom-try
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: row -> (recipe, extra overrides, headline metric)
ROWS = {"pointnet2": ("pointnet2_cls_ssg_cpu", [], "acc"),
        "pointnet": ("pointnet2_cls_ssg_cpu", ["model.name=pointnet_cls", "model.variant=null"], "acc"),
        "alexnet_small": ("alexnet_small_cpu", [], "acc"),
        "partseg": ("pointnet2_partseg_ssg_cpu", [], "instance_miou"),
        "semseg": ("pointnet_semseg_cpu", [], "miou")}


def fit(row: str, seed: int, out: Path, overrides: list[str] = ()) -> dict:
    """Train and test ``row`` with ``seed`` (and config ``overrides``) in its own process; its ``results.json`` plus
    the wall time."""
    recipe, extra, _ = ROWS[row]
    name = f"{row}-seed{seed}"
    command = [str(Path(sys.executable).with_name("dlparts")), "fit", "--config", recipe, f"seed={seed}",
               f"run.dir={out}", f"run.name={name}", *extra, *overrides]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads((out / name / "results.json").read_text())
    return {**result, "wall_seconds": time.time() - started, "seed": seed}


def verdicts(means: dict[str, float]) -> dict[str, str]:
    """Each row's target and whether its mean (in %) meets it."""
    def within(row, lo, hi):
        return f"{lo}-{hi}%: {'met' if lo <= means[row] <= hi else 'NOT met'}"

    out = {}
    if "pointnet2" in means:
        out["pointnet2"] = within("pointnet2", 85, 95)
    if "pointnet" in means:
        if "pointnet2" in means:
            gap = means["pointnet2"] - means["pointnet"]
            out["pointnet"] = f">= 3 points below PointNet++ ({gap:+.1f}): {'met' if gap >= 3 else 'NOT met'}"
        else:
            out["pointnet"] = "needs the pointnet2 row"
    if "alexnet_small" in means:
        out["alexnet_small"] = within("alexnet_small", 80, 95)
    for row in ("partseg", "semseg"):
        if row in means:
            out[row] = f"< 90%: {'met' if means[row] < 90 else 'NOT met'}"
    return out


def diagnose(run_dir: str) -> dict:
    """What a classification run on ``synthetic_shapes`` gets wrong: ``pairs`` (true, predicted, count) of the test
    split, most frequent first, and its accuracy (%) on ``test``, on ``train`` (the training clouds as generated) and on
    the test objects all ``whole`` or all ``scanned``."""
    import numpy as np
    import torch

    from dlparts.data.synthetic import SHAPE_CLASSES, make_shapes
    from dlparts.train.engine import load_checkpoint

    model, cfg = load_checkpoint(Path(run_dir) / "checkpoints" / "best.ckpt", training=False)
    model.eval()
    d = cfg["data"]
    per_class = d["args"].get("per_class", (100, 20, 30))
    channels = 6 if d["args"].get("normals") else 3

    def predict(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([model.model(torch.from_numpy(points[i:i + 64, :, :channels].copy())).argmax(-1)
                              for i in range(0, len(points), 64)]).numpy()

    out = {}
    for name, counts, scans in (("test", (0, 0, per_class[2]), None), ("train", (per_class[0], 0, 0), None),
                                ("whole", (0, 0, per_class[2]), 0.0), ("scanned", (0, 0, per_class[2]), 1.0)):
        split = "test" if counts[2] else "train"
        kw = {} if scans is None else {"scan_fraction": scans}
        arrays = make_shapes(seed=d["args"].get("seed", 0), num_points=d["num_points"], per_class=counts, **kw)
        predicted, truth = predict(arrays[f"{split}_points"]), arrays[f"{split}_label"]
        out[name] = 100.0 * float((predicted == truth).mean())
        if name == "test":
            wrong = np.stack([truth, predicted])[:, truth != predicted]  # [2, errors]
            pairs, counts_ = np.unique(wrong, axis=1, return_counts=True)
            order = np.argsort(-counts_)
            out["pairs"] = [(SHAPE_CLASSES[pairs[0, i]], SHAPE_CLASSES[pairs[1, i]], int(counts_[i])) for i in order]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 per row (default 3)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each uses the preset's 2 threads)")
    parser.add_argument("--out", type=Path, default=Path("runs/headroom"))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. trainer.threads=1 to run two at once on 2 cores")
    parser.add_argument("--diagnose", action="store_true", help="explain the classification rows' errors (above)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(row, seed) for row in args.only for seed in range(args.seeds)]
    started = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda run: fit(*run, args.out, args.set), runs))
    total = time.time() - started
    table, means = [], {}
    for row in args.only:
        metric = ROWS[row][2]
        mine = [r for r in results if r["run_dir"].endswith(tuple(f"/{row}-seed{s}" for s in range(args.seeds)))]
        values = [100 * r["test"][metric] for r in mine]
        means[row] = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        capped = sum(r["time_cap"] is not None for r in mine)
        table.append({"row": row, "recipe": ROWS[row][0], "metric": metric, "values": values, "mean": means[row],
                      "std": std, "epochs": [r["epochs"] for r in mine], "time_capped_runs": capped,
                      "wall_seconds": [r["wall_seconds"] for r in mine]})
    checks = verdicts(means)
    print(f"{'row':<14} {'recipe':<26} {'metric':<14} {'mean +- std (%)':<17} {'range':<13} {'runs':>4} "
          f"{'s/run':>6}  target")
    for t in table:
        spread = f"{min(t['values']):.1f}-{max(t['values']):.1f}"
        print(f"{t['row']:<14} {t['recipe']:<26} {t['metric']:<14} {t['mean']:6.1f} +- {t['std']:4.1f}     "
              f"{spread:<13} {len(t['values']):>4} {statistics.mean(t['wall_seconds']):6.0f}  {checks[t['row']]}"
              + (f" ({t['time_capped_runs']} run(s) cut by a time cap)" if t["time_capped_runs"] else ""))
    print(f"{len(runs)} runs, {args.jobs} at a time, {total:.0f} s in all")
    diagnoses = {}
    if args.diagnose:
        for r in results:
            if r["data"] == "synthetic_shapes":
                diagnoses[r["run_dir"]] = found = diagnose(r["run_dir"])
                pairs = ", ".join(f"{t} as {p} {n}" for t, p, n in found["pairs"][:6])
                print(f"{Path(r['run_dir']).name}: test {found['test']:.1f}%, training clouds {found['train']:.1f}%, "
                      f"whole {found['whole']:.1f}%, scanned {found['scanned']:.1f}%; most confused: {pairs}")
    (args.out / "headroom.json").write_text(json.dumps({"rows": table, "targets": checks, "seconds": total,
                                                        "diagnoses": diagnoses}, indent=2))


if __name__ == "__main__":
    main()
