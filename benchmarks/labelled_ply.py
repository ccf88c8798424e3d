"""Reading labelled PLY files (issue 13): :func:`dlparts.data.labelled.read_labelled` against plyfile and trimesh
reading the same file, a 1 M-point binary PLY and a 100 k-point text PLY (x y z and an int ``class``), interleaved
rounds, medians and ratios.

    .venv/bin/python benchmarks/labelled_ply.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh
from plyfile import PlyData, PlyElement

from dlparts.data.labelled import read_labelled


def write(path: Path, n: int, text: bool) -> Path:
    rng = np.random.default_rng(0)
    vertex = np.empty(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("class", "i4")])
    for name in "xyz":
        vertex[name] = rng.random(n, dtype=np.float32)
    vertex["class"] = rng.integers(0, 13, n)
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    readers = {"dlparts read_labelled": lambda p: read_labelled(p, label_field="class"),
               "plyfile": lambda p: PlyData.read(str(p))["vertex"]["class"],
               "trimesh load": lambda p: trimesh.load(str(p), process=False)}
    with tempfile.TemporaryDirectory() as tmp:
        for path in (write(Path(tmp) / "binary.ply", 1_000_000, False), write(Path(tmp) / "text.ply", 100_000, True)):
            times: dict[str, list[float]] = {name: [] for name in readers}
            for _ in range(rounds):
                for name, read in readers.items():
                    start = time.perf_counter()
                    read(path)
                    times[name].append(time.perf_counter() - start)
            ours = statistics.median(times["dlparts read_labelled"])
            for name, ts in times.items():
                print(f"{path.name:<11} {name:<22} {statistics.median(ts) * 1e3:8.1f} ms  "
                      f"{statistics.median(ts) / ours:5.2f}x ours")


if __name__ == "__main__":
    main()
