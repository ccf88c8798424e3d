"""Seeded randomness of the data layer: the one validation hold-out, per-sample generators, progress."""

import numpy as np
import pytest
import torch

from dlparts.data._progress import progress
from dlparts.data.splits import Holdout, holdout, rng_for, torch_generator
from dlparts.errors import ConfigError


def test_holdout_is_the_seeded_numpy_split():
    # numpy's permutation from rng_for(seed, 7919): ModelNet's cached val splits and the engine's depend on it
    assert holdout(10, 0.3, seed=0) == Holdout(train=[1, 2, 3, 4, 6, 7, 9], val=[0, 5, 8])
    split = holdout(10, 0.3, seed=1)
    assert split.val == [4, 6, 9] and sorted(split.train + split.val) == list(range(10))
    assert len(holdout(3, 0.01, seed=0).val) == 1  # at least one sample for validation


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_holdout_refuses_fractions_outside_0_1(fraction):
    with pytest.raises(ConfigError, match=f"val_fraction={fraction} must be between 0 and 1"):
        holdout(10, fraction, seed=0)


def test_generators_depend_on_their_seed_alone():
    assert rng_for(3, 1, 2).integers(1 << 30) == rng_for(3, 1, 2).integers(1 << 30)
    assert rng_for(3, 1, 2).integers(1 << 30) != rng_for(3, 2, 1).integers(1 << 30)
    given = torch.Generator()
    assert torch_generator(5, given) is given
    expected = torch.rand(4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(4, generator=torch_generator(5)), expected)
    default = torch.rand(4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(4, generator=torch_generator()), default)


def test_progress_yields_every_item_without_a_terminal():
    assert list(progress(range(5), "counting")) == [0, 1, 2, 3, 4]
    assert list(progress(np.arange(3), "counting", enabled=False)) == [0, 1, 2]
