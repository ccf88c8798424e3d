"""Whole-scene semantic segmentation: every point of generated labelled rooms of 1 M and 5 M points labelled by
``pointnet_semseg`` and ``pointnet2_semseg_ssg`` (random-init weights: speed and memory only), against a peer loop
written the way the popular PointNet/PointNet++ repositories write their whole-room test.

    .venv/bin/python benchmarks/scenes.py                     # 1 M and 5 M points, both models (~15 min on 2 cores)
    .venv/bin/python benchmarks/scenes.py --sizes 200000 1000000 --models pointnet_semseg

Rooms: :func:`dlparts.data.synthetic_rooms.make_room` with the same seed at the density that gives the size (the
same room, more densely scanned), written as binary PLY with a ``label`` property.  Each (model, size, method) runs
in a fresh subprocess that reads the PLY (:func:`dlparts.data.labelled.read_labelled`), labels every point and
reports the labelling time and its peak RSS (``ru_maxrss``) over the RSS just before the scene was read.

Ours: :func:`dlparts.train.whole_scene.label_scene` (x-sorted block search, batches of 16 blocks, probabilities of
sampled points only, nearest sampled neighbour by ``dlparts.ops.knn``).  Peer: one block at a time in Python, a dense
mask over the whole scene per block, a dense per-block feature array filled column by column, the class scores of
every sampled point in a Python dict, unsampled points from a SciPy k-d tree, the labels gathered in a Python loop;
same blocks (1 m, stride 0.5 m, 4096 points, one sample per block), same model.

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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def run_one(ply: str, model_name: str, method: str, num_points: int, threads: int) -> dict:
    """In this (fresh) process: read the scene, label every point, report time and memory."""
    import torch

    from dlparts.data.labelled import read_labelled
    from dlparts.models import create_model
    from dlparts.ops import knn
    from dlparts.train.whole_scene import label_scene, module_scores

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=13, in_channels=9).eval()
    knn(torch.rand(1, 64, 3), torch.rand(1, 64, 3), 1)  # compile / load the kernels before measuring
    with torch.no_grad():
        model(torch.rand(2, num_points, 9))
    before = _current_rss_mib()
    started = time.perf_counter()
    scene = read_labelled(ply)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    if method == "ours":
        labels = label_scene(module_scores(model), scene.xyz, scene.rgb, num_points=num_points, block_size=1.0,
                             stride=0.5).labels
    else:
        labels = peer_label(model, scene.xyz, scene.rgb, num_points, 1.0, 0.5, 0)
    label_s = time.perf_counter() - started
    assert labels.shape == (len(scene.xyz),)
    return {"points": len(scene.xyz), "read_s": read_s, "label_s": label_s, "peak_mib": _rss_mib(),
            "before_mib": before, "growth_mib": _rss_mib() - before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument("--models", nargs="+", default=["pointnet_semseg", "pointnet2_semseg_ssg"])
    p.add_argument("--num-points", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", nargs=3, metavar=("PLY", "MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.num_points, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        plys = {}
        for size in args.sizes:
            plys[size] = Path(tmp) / f"room_{size}.ply"
            n = write_room(plys[size], size)
            print(f"room of {n} points: {plys[size].stat().st_size / 2**20:.0f} MiB binary PLY", flush=True)
        rows = {}
        for model in args.models:
            for size in args.sizes:
                for method in ("ours", "peer"):
                    out = subprocess.run([sys.executable, __file__, "--one", str(plys[size]), model, method,
                                          "--num-points", str(args.num_points), "--threads", str(args.threads)],
                                         capture_output=True, text=True, check=True)
                    r = rows[model, size, method] = json.loads(out.stdout.splitlines()[-1])
                    print(f"{model:22s} {r['points']:>9d} pts {method:4s}: labelled in {r['label_s']:7.1f} s = "
                          f"{r['points'] / r['label_s']:>9.0f} points/s (read {r['read_s']:.1f} s); peak RSS "
                          f"{r['peak_mib']:.0f} MiB, growth {r['growth_mib']:.0f} MiB", flush=True)
            for size in args.sizes:
                ours, peer = rows[model, size, "ours"], rows[model, size, "peer"]
                print(f"{model} {ours['points']} points: ours {peer['label_s'] / ours['label_s']:.1f}x the peer's "
                      f"points/s (target >= 3x)")
            if len(args.sizes) >= 2:
                small, large = rows[model, args.sizes[0], "ours"], rows[model, args.sizes[-1], "ours"]
                arrays = (large["points"] - small["points"]) * SCENE_BYTES_PER_POINT / 2**20
                growth = large["growth_mib"] - small["growth_mib"]
                print(f"{model}: peak RSS growth {large['points']} vs {small['points']} points: {growth:.0f} MiB; "
                      f"the scene arrays grow {arrays:.0f} MiB (target <= {1.25 * arrays:.0f} MiB)")


if __name__ == "__main__":
    main()
