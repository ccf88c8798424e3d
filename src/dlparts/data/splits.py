"""Seeded randomness of the datasets: per-sample generators, torch generators from a seed, and the validation
hold-out of a training split."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from dlparts.errors import ConfigError


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A numpy generator determined by ``seed`` and ``keys`` alone (e.g. a sample index)."""
    return np.random.default_rng([int(seed), *map(int, keys)])


def torch_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """``generator`` when given, else a new one seeded by ``seed`` (0 when None)."""
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


class Holdout(NamedTuple):
    """Sorted ``train`` and ``val`` index lists of a split of ``range(n)``."""

    train: list[int]
    val: list[int]


def holdout(n: int, fraction: float, seed: int) -> Holdout:
    """Seeded split of ``range(n)`` into sorted (train, val) indices; ``round(n * fraction)`` (>= 1) go to val.

    The permutation comes from :func:`rng_for` ``(seed, 7919)``, so a dataset's split depends on the seed alone.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction={fraction} must be between 0 and 1")
    perm = rng_for(seed, 7919).permutation(n)
    k = max(1, round(n * fraction))
    return Holdout(sorted(perm[k:].tolist()), sorted(perm[:k].tolist()))
