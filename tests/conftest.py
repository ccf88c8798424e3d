"""Fixtures shared across the test folders."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: small tensors gain nothing from two, and spinning thread pools cost time on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
