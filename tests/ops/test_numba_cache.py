"""Numba's on-disk cache of the CPU kernels goes stale on no edit: a kernel is recompiled when a primitive it inlines
from another file changes, which numba's own per-file stamp would miss."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dlparts
from dlparts.ops._numba.config import COMPILE_NOTICE

SRC = Path(dlparts.__file__).resolve().parent

# FPS from point 0 over (0,0,0), (1,0,0), (0,5,0): d2 = 1, 25 picks point 2; with only dx*dx, d2 = 1, 0 picks 1.
RUN = """
import json
import numpy as np
from dlparts.ops._numba import scan
pts = np.array([[0.0, 1, 0], [0, 0, 5], [0, 0, 0]], dtype=np.float32)
out = np.empty(3, dtype=np.int64)
scan.fps_cloud(pts[0], pts[1], pts[2], 3, 3, 0, out)
stats = scan.fps_cloud.stats
print(json.dumps({"idx": out.tolist(), "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""

FULL = "        d = dx * dx + dy * dy + dz * dz\n"
X_ONLY = "        d = dx * dx\n"


def _run(src: Path, cache: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # One line while compiling (the cache was missed), none when the cache was used.
    assert out.stderr.count(COMPILE_NOTICE) == (1 if result["misses"] else 0), out.stderr
    return result


def test_editing_a_primitive_recompiles_its_dependants(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SRC, src / "dlparts", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    first = _run(src, cache)
    assert first == {"idx": [0, 2, 1], "hits": 0, "misses": 1}
    assert _run(src, cache) == {"idx": [0, 2, 1], "hits": 1, "misses": 0}  # the cache is used when nothing changed

    leaf = src / "dlparts" / "ops" / "_numba" / "primitives.py"
    text = leaf.read_text()
    assert text.count(FULL) == 1  # the squared distance of min_update, inlined into scan.fps_cloud
    leaf.write_text(text.replace(FULL, X_ONLY))
    assert _run(src, cache) == {"idx": [0, 1, 2], "hits": 0, "misses": 1}  # scan.py itself is unchanged


KERNELS = """
from dlparts.ops._numba.config import kernel


@kernel()
def add(a, b):
    return a + b


@kernel()
def twice_plus_zero(x):
    return add(x, 0) + add(x, x)
"""


def test_a_kernel_called_with_a_constant_compiles_once_per_plain_type(tmp_path):
    """A constant argument (``Literal[int](0)`` to numba) does not compile a second copy of the kernel it calls."""
    (tmp_path / "kernels.py").write_text(KERNELS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(SRC.parent)]),
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    code = "import kernels; print(kernels.twice_plus_zero(3), [str(s) for s in kernels.add.signatures])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split(None, 1) == ["9", "['(int64, int64)']\n"]
