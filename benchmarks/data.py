"""Point-cloud data benchmarks: ModelNet-style raw OFF loading (cache cold / warm, vs trimesh), synthetic dataset build
times, and the peak memory of a first ModelNet40-sized pass, extrapolated from a fixture.

    .venv/bin/python benchmarks/data.py            # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/data.py --files 100 --skip-synthetic

The fixture: ModelNet-layout OFF files (``<root>/<class>/train/*.off``) of subdivided spheres, boxes and cylinders
with 2-10k faces (ModelNet40 meshes have a median of a few thousand), a third with ModelNet's ``OFF<nv> <nf> 0``
header.  The peer is trimesh's own OFF reader and ``trimesh.sample.sample_surface`` on the same files (files it cannot
read are counted and printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import trimesh

MODELNET40_TRAIN = 9843  # meshes in ModelNet40's train split


def write_off(path: Path, mesh: trimesh.Trimesh, joined: bool) -> None:
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    head = f"OFF{len(v)} {len(f)} 0\n" if joined else f"OFF\n{len(v)} {len(f)} 0\n"
    body = "\n".join(f"{a:.6f} {b:.6f} {c:.6f}" for a, b, c in v)
    faces = "\n".join(f"3 {a} {b} {c}" for a, b, c in f)
    path.write_text(f"{head}{body}\n{faces}\n")


def make_fixture(root: Path, files: int) -> tuple[list[Path], float]:
    """Write the files; return their paths and the mean face count."""
    shapes = {"sphere": lambda: trimesh.creation.icosphere(subdivisions=4),
              "box": lambda: trimesh.creation.box().subdivide().subdivide().subdivide().subdivide(),
              "cylinder": lambda: trimesh.creation.cylinder(radius=0.5, height=2, sections=400)}
    meshes = {name: make() for name, make in shapes.items()}
    paths, faces = [], 0
    for i in range(files):
        name = list(meshes)[i % 3]
        folder = root / name / "train"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}_{i:04d}.off"
        write_off(path, meshes[name], joined=i % 3 == 0)
        paths.append(path)
        faces += len(meshes[name].faces)
    return paths, faces / files


def peer_pass(paths: list[Path], n: int) -> tuple[float, int]:
    """trimesh read + area-weighted sampling; returns (seconds, failures)."""
    failures = 0
    start = time.perf_counter()
    for p in paths:
        try:
            mesh = trimesh.load(p, file_type="off", process=False)
            trimesh.sample.sample_surface(mesh, n, seed=0)
        except Exception:
            failures += 1
    return time.perf_counter() - start, failures


def modelnet_pass(root: Path, n: int) -> tuple[float, int]:
    from dlparts.data import ModelNet

    start = time.perf_counter()
    ds = ModelNet(root, "train", num_points=n, val_fraction=0.01)
    for i in range(len(ds)):
        ds[i]
    return time.perf_counter() - start, len(ds)


def loader_benchmark(files: int, n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dlparts-bench-"))
    os.environ["DLPARTS_CACHE"] = str(tmp / "cache")
    try:
        paths, faces = make_fixture(tmp / "ModelNet", files)
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        print(f"fixture: {files} OFF files, ~{faces:.0f} faces, {size:.2f} MB each; {n} points per cloud")
        peer_s, peer_fail = peer_pass(paths, n)
        cold_s, kept = modelnet_pass(tmp / "ModelNet", n)
        warm_s, _ = modelnet_pass(tmp / "ModelNet", n)
        peer = files / peer_s
        print(f"  trimesh load + sample_surface : {peer:8.1f} clouds/s  ({peer_fail} files it could not read)")
        print(f"  dlparts ModelNet, cache cold  : {kept / cold_s:8.1f} clouds/s  (x{kept / cold_s / peer:.2f} vs trimesh)")
        print(f"  dlparts ModelNet, cache warm  : {kept / warm_s:8.1f} clouds/s  (x{kept / warm_s / peer:.0f} vs trimesh)")
        memory_benchmark(tmp, paths, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def memory_benchmark(tmp: Path, paths: list[Path], n: int) -> None:
    """Python-heap peak (tracemalloc, numpy and torch CPU allocations included) of a cold pass at two sizes,
    extrapolated linearly to ModelNet40's train split."""
    from dlparts.data import ModelNet

    peaks = []
    sizes = (len(paths) // 2, len(paths))
    for count in sizes:
        root = tmp / f"mem{count}"
        for p in paths[:count]:
            target = root / p.parent.parent.name / "train" / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)
        tracemalloc.start()
        ModelNet(root, "train", num_points=n, val_fraction=0.01)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    slope = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    estimate = peaks[1] + slope * (MODELNET40_TRAIN - sizes[1])
    print(f"  peak memory of a cold pass: {peaks[0] / 1e6:.1f} MB at {sizes[0]} files, {peaks[1] / 1e6:.1f} MB at "
          f"{sizes[1]}; {slope / 1e3:.1f} kB per file -> ModelNet40 train ({MODELNET40_TRAIN} meshes) "
          f"~{estimate / 1e6:.0f} MB")


def synthetic_benchmark() -> None:
    from dlparts.data import Parts, Rooms, Shapes

    tmp = Path(tempfile.mkdtemp(prefix="dlparts-bench-"))
    os.environ["DLPARTS_CACHE"] = str(tmp)
    try:
        for cls in (Shapes, Parts, Rooms):
            start = time.perf_counter()
            ds = cls("train")
            built = time.perf_counter() - start
            start = time.perf_counter()
            cls("train")
            cached = time.perf_counter() - start
            print(f"  {cls.__name__:6s}: built in {built:5.1f} s (all splits; {len(ds)} train items of "
                  f"{list(ds[0]['points'].shape)}), from cache {cached:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=150, help="OFF files in the fixture (default 150)")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud (default 1024)")
    parser.add_argument("--skip-synthetic", action="store_true", help="skip the synthetic dataset build times")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, trimesh {trimesh.__version__}, {torch.get_num_threads()} threads")
    print("ModelNet-style raw OFF loading:")
    loader_benchmark(args.files, args.points)
    if not args.skip_synthetic:
        print("Embedded datasets (default sizes, default settings):")
        synthetic_benchmark()


if __name__ == "__main__":
    main()
