"""``data.name: point_folder`` on a generated folder of meshes: the first pass (every file read and sampled, the cache
written) against trimesh's load + ``sample_surface`` on the same files, and the second pass (from the cache).

    .venv/bin/python benchmarks/folders.py                 # 1,000 meshes, ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/folders.py --files 200

The fixture: ``<root>/<class>/*`` with four classes of ModelNet-sized meshes (spheres, boxes, cylinders, capsules of
about 800-1300 faces, randomly scaled), written by trimesh in turn as OFF, PLY (binary), OBJ and STL (binary).  A pass
of dlparts is what a fit does before training: plan the split, then build the train, val and test datasets
(:meth:`dlparts.data.folders.PointFolder.all_splits`).  The peer is ``trimesh.load(path, force="mesh",
process=False)`` and ``trimesh.sample.sample_surface(mesh, n)``: reading and sampling alone, no split, no cache, no
normalization.  dlparts samples in worker processes (one per core, up to 8); the peer is the plain loop.
Targets (issue 13): first pass >= 2x the peer's files/s; second pass >= 50x faster than the first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

FORMATS = ("off", "ply", "obj", "stl")


def make_fixture(root: Path, files: int, seed: int = 0) -> list[Path]:
    """Write ``files`` meshes, classes and formats in turn; return their paths."""
    rng = np.random.default_rng(seed)
    shapes = {"sphere": trimesh.creation.icosphere(subdivisions=3),
              "box": trimesh.creation.box().subdivide().subdivide().subdivide(),
              "cylinder": trimesh.creation.cylinder(radius=0.5, height=2, sections=200),
              "capsule": trimesh.creation.capsule(height=1.5, radius=0.4, count=[24, 24])}
    paths = []
    for i in range(files):
        name = list(shapes)[i % len(shapes)]
        mesh = shapes[name].copy()
        mesh.apply_scale(rng.uniform(0.5, 2.0, 3))
        path = root / name / f"{name}_{i:04d}.{FORMATS[(i // len(shapes)) % len(FORMATS)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(path)
        paths.append(path)
    return paths


def peer_pass(paths: list[Path], n: int) -> tuple[float, int]:
    """trimesh read + area-weighted sampling of every file; (seconds, files it could not read)."""
    failures = 0
    start = time.perf_counter()
    for path in paths:
        try:
            mesh = trimesh.load(path, force="mesh", process=False)
            trimesh.sample.sample_surface(mesh, n)
        except Exception:
            failures += 1
    return time.perf_counter() - start, failures


def dlparts_pass(root: Path, n: int) -> tuple[float, int]:
    """The split and the three datasets of a fit; (seconds, clouds in them)."""
    from dlparts.data.folders import PointFolder

    start = time.perf_counter()
    clouds = sum(len(dataset) for dataset in PointFolder.all_splits(root, num_points=n).values())
    return time.perf_counter() - start, clouds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000, help="meshes in the fixture (default 1000)")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud (default 1024)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, trimesh {trimesh.__version__}, {torch.get_num_threads()} threads")
    tmp = Path(tempfile.mkdtemp(prefix="dlparts-bench-"))
    os.environ["DLPARTS_CACHE"] = str(tmp / "cache")
    try:
        paths = make_fixture(tmp / "shapes", args.files)
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1e3
        print(f"fixture: {len(paths)} meshes (OFF, PLY, OBJ, STL in turn; {size:.0f} kB each on average), "
              f"{args.points} points per cloud")
        peer_s, failed = peer_pass(paths, args.points)
        first_s, clouds = dlparts_pass(tmp / "shapes", args.points)
        second_s, again = dlparts_pass(tmp / "shapes", args.points)
        assert clouds == again == len(paths), (clouds, again)
        peer, first, second = len(paths) / peer_s, len(paths) / first_s, len(paths) / second_s
        print(f"  trimesh load + sample_surface    : {peer:9.1f} files/s  ({peer_s:.2f} s; {failed} unreadable)")
        print(f"  point_folder first pass (sample) : {first:9.1f} files/s  ({first_s:.2f} s)  "
              f"x{first / peer:.2f} vs trimesh (target >= 2)")
        print(f"  point_folder second pass (cache) : {second:9.1f} files/s  ({second_s:.3f} s)  "
              f"x{first_s / second_s:.0f} vs the first pass (target >= 50)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
