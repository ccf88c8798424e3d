"""Whole-scene semantic segmentation: every point of generated labelled rooms of 1 M and 5 M points labelled by
``pointnet_semseg`` and ``pointnet2_semseg_ssg`` (random-init weights, or trained ones with ``--ckpt``), against a
peer loop written the way the popular PointNet/PointNet++ repositories write their whole-room test.

    .venv/bin/python benchmarks/scenes.py                     # 1 M and 5 M points, both models (~15 min on 2 cores)
    .venv/bin/python benchmarks/scenes.py --sizes 1000000 --precisions fp32 bf16
    .venv/bin/python benchmarks/scenes.py --sizes 200000 1000000 --models pointnet_semseg
    .venv/bin/python benchmarks/scenes.py --no-peer --live-memory     # the memory row (see --live-memory)
    .venv/bin/python benchmarks/scenes.py --sizes 1000000 --precisions fp32 bf16 \
        --ckpt pointnet_semseg=runs/pn/checkpoints/best.ckpt pointnet2_semseg_ssg=runs/pn2/checkpoints/best.ckpt

Trained weights: ``dlparts fit --config configs/pointnet_semseg_cpu.yaml data.num_points=4096`` (add
``model.name=pointnet2_semseg_ssg`` for PointNet++) trains on the embedded Rooms, whose rooms are drawn from other
seeds than the benchmark's room; each method's OA and mIoU against the room's labels are printed beside its speed.

Rooms: :func:`dlparts.data.synthetic_rooms.make_room` with the same seed at the density that gives the size (the
same room, more densely scanned), written as binary PLY with a ``label`` property.  Each (model, size, method) runs
in a fresh subprocess that reads the PLY (:func:`dlparts.data.labelled.read_labelled`), labels every point and
reports the labelling time and its peak RSS (``VmHWM``, reset after the model's set-up) over the RSS just before
the scene was read.  The model has random weights and batch norm statistics from one pass over blocks of the room
(:func:`calibrated_model`), so that its labels vary from point to point as a trained model's do; with ``--ckpt`` the
model is the checkpoint's (its ``data.num_points`` must be ``--num-points``).

Ours: :func:`dlparts.train.whole_scene.label_scene` (x-sorted block search, batches of ``--batch-size`` blocks,
probabilities of sampled points only, nearest sampled neighbour by ``dlparts.ops.knn``) on the model with batch norm
folded into the layers before it (:func:`dlparts.layers.fold.fold_batch_norm`), in fp32 (``ours-fp32``) and, with
``--precisions bf16``, under bfloat16 autocast (``ours-bf16``; its labels are compared with fp32's).  Peer: one block
at a time in Python, in fp32, with the model as trained (batch norm as a layer), a dense mask over the whole scene
per block, a dense per-block feature array filled column by column, the class scores of every sampled point in a
Python dict, unsampled points from a SciPy k-d tree, the labels gathered in a Python loop; same blocks (1 m, stride
0.5 m, 4096 points, one sample per block), same weights, the plain modules (inside ``fused.disabled()``: none of the
inference paths of :func:`dlparts.layers.route.inference`).

Targets (issue 13): ours >= 3x the peer's points/s; the 5 M scene's peak RSS growth over the 1 M scene's no more than
the scene arrays' own growth (xyz float32, rgb uint8, truth and predicted labels int64: 31 bytes a point) + 25%.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCENE_BYTES_PER_POINT = 12 + 3 + 8 + 8  # xyz float32, rgb uint8, truth and predicted labels int64
BATCH_SIZE = 16


def write_room(path: Path, points: int, seed: int = 0) -> int:
    """One generated room with about ``points`` points as a binary labelled PLY; returns the point count."""
    from dlparts.data.labelled import write_labelled_ply
    from dlparts.data.splits import rng_for
    from dlparts.data.synthetic_rooms import make_room

    probe = make_room(rng_for(seed, 0), 100.0)  # the same room at 100 points per square metre
    room = make_room(rng_for(seed, 0), 100.0 * points / len(probe.xyz))
    write_labelled_ply(path, room.xyz, room.rgb, room.labels)
    return len(room.xyz)


def _rss_mib() -> float:
    """Peak RSS since :func:`_reset_peak` (``VmHWM``), MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def _reset_peak() -> None:
    """Peak RSS back to the current RSS (Linux ``clear_refs``), so that the model's set-up does not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peer_label(model, xyz: np.ndarray, rgb: np.ndarray, num_points: int, block: float, stride: float,
               seed: int) -> np.ndarray:
    """The popular repositories' whole-room loop (see the module docstring)."""
    import torch
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    low = xyz.min(axis=0)
    shifted = xyz - low
    extent = np.maximum(shifted.max(axis=0), 1e-9)
    nx = max(1, int(np.ceil((extent[0] - block) / stride)) + 1)
    ny = max(1, int(np.ceil((extent[1] - block) / stride)) + 1)
    votes: dict[int, np.ndarray] = {}
    for i in range(nx):
        for j in range(ny):
            x0, y0 = i * stride, j * stride
            mask = ((shifted[:, 0] >= x0) & (shifted[:, 0] <= x0 + block) & (shifted[:, 1] >= y0)
                    & (shifted[:, 1] <= y0 + block))
            inside = np.where(mask)[0]
            if len(inside) == 0:
                continue
            pick = rng.choice(inside, num_points, replace=len(inside) < num_points)
            data = np.zeros((num_points, 9), dtype=np.float32)
            data[:, 0] = shifted[pick, 0] - (x0 + block / 2)
            data[:, 1] = shifted[pick, 1] - (y0 + block / 2)
            data[:, 2] = shifted[pick, 2]
            data[:, 3:6] = rgb[pick] / 255.0
            data[:, 6:9] = shifted[pick] / extent
            with torch.no_grad():
                probs = torch.softmax(model(torch.from_numpy(data)[None]), dim=-1)[0].numpy()  # [n, K]
            for idx, p in zip(pick.tolist(), probs):
                if idx in votes:
                    votes[idx] = votes[idx] + p
                else:
                    votes[idx] = p.copy()
    sampled = np.fromiter(votes.keys(), dtype=np.int64)
    best = {idx: int(np.argmax(v)) for idx, v in votes.items()}
    _, nearest = cKDTree(xyz[sampled]).query(xyz, k=1)
    return np.array([best[i] if i in best else best[int(sampled[k])] for i, k in enumerate(nearest.tolist())])


def calibrated_model(model_name: str, num_points: int, seed: int = 0):
    """The model, random-init but with batch norm statistics from one training-mode pass over blocks of the room at
    a low density (a stand-in for trained statistics: a random model with the initial 0/1 statistics labels whole
    blocks alike, so agreement between precisions would mean little); eval mode."""
    import torch
    from torch import nn

    from dlparts.data.s3dis import room_to_blocks
    from dlparts.data.splits import rng_for
    from dlparts.data.synthetic_rooms import make_room
    from dlparts.models import create_model

    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=13, in_channels=9)
    room = make_room(rng_for(seed, 0), 20.0)
    blocks, _ = room_to_blocks(room.xyz, room.rgb, room.labels, np.random.default_rng(seed), num_points=num_points)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm1d):
            bn.momentum = 1.0  # the running statistics become those of the one pass
    with torch.no_grad():
        model.train()(torch.from_numpy(blocks[:8]))
    return model.eval()


def trained_model(model_name: str, ckpt: str, num_points: int):
    """The model of a ``dlparts fit`` checkpoint (eval mode), checked to be ``model_name`` trained on blocks of
    ``num_points`` points."""
    from dlparts.train.engine import load_checkpoint

    module, cfg = load_checkpoint(ckpt, training=False)
    if cfg["model"]["name"] != model_name or cfg["data"]["num_points"] != num_points:
        raise SystemExit(f"{ckpt} holds {cfg['model']['name']} on {cfg['data']['num_points']} points per block, "
                         f"not {model_name} on {num_points}")
    return module.model.eval()


def _fixed_mmap_threshold(size: int = 1 << 20) -> None:
    """glibc's mmap threshold fixed at ``size``: every larger block is mapped and unmapped on free.  By default
    glibc raises the threshold after freeing a large block, after which blocks of that size stay in the heap when
    freed, so a process's peak RSS holds a varying share of freed activations (tens of MiB from run to run here);
    fixed, the peak is the memory the process really held at once."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if libc.mallopt(-3, size) != 1:  # M_MMAP_THRESHOLD
        raise SystemExit("mallopt(M_MMAP_THRESHOLD) refused: --live-memory needs glibc")


def run_one(ply: str, model_name: str, method: str, num_points: int, threads: int, batch_size: int,
            labels_out: str | None, ckpt: str | None = None, live_memory: bool = False) -> dict:
    """In this (fresh) process: read the scene, label every point, report time, memory, OA and mIoU against the
    scene's labels; the labels go to ``labels_out`` (``.npy``) when given."""
    import torch

    from dlparts.data.labelled import read_labelled
    from dlparts.layers import fused
    from dlparts.layers.fold import fold_batch_norm
    from dlparts.ops import knn
    from dlparts.train.whole_scene import confusion, confusion_figures, label_scene, module_scores

    torch.set_num_threads(threads)
    if live_memory:
        _fixed_mmap_threshold()
    model = trained_model(model_name, ckpt, num_points) if ckpt else calibrated_model(model_name, num_points)
    if method != "peer":
        model = fold_batch_norm(model)
    knn(torch.rand(1, 64, 3), torch.rand(1, 64, 3), 1)  # compile / load the kernels before measuring
    with torch.no_grad():
        model(torch.rand(2, num_points, 9))
    _reset_peak()
    before = _current_rss_mib()
    started = time.perf_counter()
    scene = read_labelled(ply)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    if method == "peer":
        with fused.disabled():  # the plain modules, as the popular repositories run them
            labels = peer_label(model, scene.xyz, scene.rgb, num_points, 1.0, 0.5, 0)
    else:
        scores = module_scores(model, precision=method.removeprefix("ours-"))
        labels = label_scene(scores, scene.xyz, scene.rgb, num_points=num_points, block_size=1.0, stride=0.5,
                             batch_size=batch_size).labels
    label_s = time.perf_counter() - started
    peak = _rss_mib()  # before the scoring below, whose temporaries are no part of labelling
    assert labels.shape == (len(scene.xyz),)
    if labels_out:
        np.save(labels_out, labels)
    figures = confusion_figures(confusion(labels, scene.labels, 13), [str(k) for k in range(13)])
    return {"points": len(scene.xyz), "read_s": read_s, "label_s": label_s, "peak_mib": peak,
            "before_mib": before, "growth_mib": peak - before, "oa": figures["oa"], "miou": figures["miou"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument("--models", nargs="+", default=["pointnet_semseg", "pointnet2_semseg_ssg"])
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32"],
                   help="ours in each (the peer is fp32); with bf16, fp32 runs too and the labels are compared")
    p.add_argument("--no-peer", action="store_true", help="ours only (enough for the memory row)")
    p.add_argument("--num-points", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="blocks per forward pass (ours)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ckpt", nargs="+", default=[], metavar="MODEL=PATH", help="trained weights of a model (a dlparts "
                   "fit checkpoint) in place of the calibrated random ones")
    p.add_argument("--live-memory", action="store_true", help="fix glibc's mmap threshold in every run, so that "
                   "peak RSS counts live memory, not freed blocks glibc kept (see _fixed_mmap_threshold)")
    p.add_argument("--one", nargs=4, metavar=("PLY", "MODEL", "METHOD", "LABELS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    ckpts = dict(item.split("=", 1) for item in args.ckpt)
    if args.one:
        print(json.dumps(run_one(*args.one[:3], args.num_points, args.threads, args.batch_size, args.one[3],
                                 ckpts.get(args.one[1]), args.live_memory)))
        return
    methods = [f"ours-{q}" for q in dict.fromkeys(["fp32", *args.precisions] if "bf16" in args.precisions
                                                   else args.precisions)] + ([] if args.no_peer else ["peer"])
    with tempfile.TemporaryDirectory() as tmp:
        plys = {}
        for size in args.sizes:
            plys[size] = Path(tmp) / f"room_{size}.ply"
            n = write_room(plys[size], size)
            print(f"room of {n} points: {plys[size].stat().st_size / 2**20:.0f} MiB binary PLY", flush=True)
        rows = {}
        for model in args.models:
            for size in args.sizes:
                for method in methods:
                    labels = Path(tmp) / f"{model}_{size}_{method}.npy"
                    out = subprocess.run([sys.executable, __file__, "--one", str(plys[size]), model, method,
                                          str(labels), "--num-points", str(args.num_points), "--threads",
                                          str(args.threads), "--batch-size", str(args.batch_size),
                                          *(["--live-memory"] if args.live_memory else []),
                                          *(["--ckpt", f"{model}={ckpts[model]}"] if model in ckpts else [])],
                                         capture_output=True, text=True, check=True)
                    r = rows[model, size, method] = json.loads(out.stdout.splitlines()[-1])
                    print(f"{model:22s} {r['points']:>9d} pts {method:9s}: labelled in {r['label_s']:7.1f} s = "
                          f"{r['points'] / r['label_s']:>9.0f} points/s (read {r['read_s']:.1f} s); peak RSS "
                          f"{r['peak_mib']:.0f} MiB, growth {r['growth_mib']:.0f} MiB; "
                          f"{'trained' if model in ckpts else 'random'} weights: OA {r['oa']:.1%}, "
                          f"mIoU {r['miou']:.1%}", flush=True)
                if "ours-bf16" in methods:
                    same = np.mean(np.load(Path(tmp) / f"{model}_{size}_ours-bf16.npy")
                                   == np.load(Path(tmp) / f"{model}_{size}_ours-fp32.npy"))
                    print(f"{model} {size}: bf16 labels agree with fp32 on {100 * same:.3f}% of points", flush=True)
            for size in [] if args.no_peer else args.sizes:
                for method in methods[:-1]:
                    ours, peer = rows[model, size, method], rows[model, size, "peer"]
                    print(f"{model} {ours['points']} points: {method} {peer['label_s'] / ours['label_s']:.2f}x the "
                          f"peer's points/s (target >= 3x)")
            if len(args.sizes) >= 2:
                small, large = rows[model, args.sizes[0], methods[0]], rows[model, args.sizes[-1], methods[0]]
                arrays = (large["points"] - small["points"]) * SCENE_BYTES_PER_POINT / 2**20
                growth = large["growth_mib"] - small["growth_mib"]
                print(f"{model} {methods[0]}: peak RSS growth {large['points']} vs {small['points']} points: "
                      f"{growth:.0f} MiB; the scene arrays grow {arrays:.0f} MiB (target <= {1.25 * arrays:.0f} MiB)")


if __name__ == "__main__":
    main()
