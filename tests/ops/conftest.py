"""Backends that every operator test body runs against.

``backend_params()`` is the one list to extend: each entry is ``(backend name, device of the tensors)``.  CUDA cases
skip cleanly on machines without a GPU.
"""

import os
import subprocess
import sys
from typing import NamedTuple

import pytest
import torch


class Backend(NamedTuple):
    name: str
    device: str


def backend_params() -> list:
    no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
    # Every body through the Triton kernels on CPU tensors: TRITON_INTERPRET=1 pytest tests/ops -k triton-interpret
    interpret = [pytest.param(Backend("cuda", "cpu"), id="triton-interpret")]
    return [
        pytest.param(Backend("reference", "cpu"), id="reference"),
        pytest.param(Backend("cpu", "cpu"), id="cpu"),
        pytest.param(Backend("cuda", "cuda"), id="cuda", marks=no_gpu),
    ] + (interpret if os.environ.get("TRITON_INTERPRET") == "1" else [])


@pytest.fixture(params=backend_params())
def backend(request) -> Backend:
    return request.param


def cloud(b: int, n: int, seed: int, *, grid: float | None = None) -> torch.Tensor:
    """Random ``[b, n, 3]`` points in the unit cube; ``grid`` snaps them to a lattice (duplicates and distance ties)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n, 3, generator=g)
    return x if grid is None else torch.round(x / grid) * grid


def ragged(b: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randint(max(1, n // 2), n + 1, (b,), generator=g)


def spread(monkeypatch, whole_clouds: bool) -> None:
    """Make the nearest-first grid give each thread whole clouds (any batch) or chunks of one cloud's queries."""
    from dlparts.ops._numba import grid

    monkeypatch.setattr(grid, "CLOUDS_PER_THREAD", 0 if whole_clouds else 1 << 30)


def run_in_interpreter(test_file: str) -> None:
    """Run the tests of ``test_file`` again in a process with ``TRITON_INTERPRET=1`` (Triton reads it at import, so it
    cannot be switched on inside this process), and fail with their output if any fails."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
