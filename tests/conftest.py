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


@pytest.fixture
def count_calls(monkeypatch):
    """``count(module, names) -> {name: calls so far}``: each function ``module.<name>`` wrapped (for this test) so
    that its calls are counted, e.g. to see which path a layer took."""

    def count(module, names) -> dict:
        calls = dict.fromkeys(names, 0)
        for name in names:
            original = getattr(module, name)

            def wrapper(*args, _name=name, _original=original, **kwargs):
                calls[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(module, name, wrapper)
        return calls

    return count
