"""Thread settings for the dataset preparation passes."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block: per-cloud work is thousands of tiny tensor ops, where waking the
    thread pool for each costs more than the op itself (``benchmarks/data.py`` measures it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
