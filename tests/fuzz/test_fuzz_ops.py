"""Fuzzing the point operators' arguments: random shapes, dtypes, nasty coordinates (NaN, inf, beyond float32,
huge, denormal, all identical) and out-of-range integers and radii.  Every call must return a result of the
documented shape or raise a DlpartsError, and the numba backend must give the reference's indices whenever it
answers.  Clouds stay small (the scan kernels); the grid kernels' extreme inputs run in a subprocess with a time limit
in ``tests/ops/test_extreme_inputs.py``.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlparts import ops
from dlparts.errors import DlpartsError
from dlparts.ops import _checks

NASTY = [float("nan"), float("inf"), -float("inf"), 1e39, 3e19, -3e19, 1e-40, 0.0, 5e-324]
DTYPES = [torch.float32, torch.float64, torch.float16]


@st.composite
def clouds(draw, b: int):
    n = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 9, 9]))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["uniform", "identical", "scaled", "nasty"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x = torch.rand(b, n, 3, generator=g, dtype=torch.float64)
    if kind == "identical":
        x = torch.zeros_like(x) + 0.5
    elif kind == "scaled":
        x = x * 10.0 ** draw(st.integers(-45, 40))
    elif kind == "nasty" and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.sampled_from(NASTY))
    return x.to(dtype)


def _call(op: str, xyz: torch.Tensor, other: torch.Tensor, k: int, radius: float, backend: str):
    if op == "fps":
        return ops.farthest_point_sample(xyz, k, backend=backend)
    if op == "ball_query":
        return ops.ball_query(xyz, other, radius, k, order="nearest", backend=backend)
    if op == "knn":
        return ops.knn(other, xyz, k, backend=backend)
    return ops.three_interpolate(other, xyz, torch.ones(*xyz.shape[:2], 2), backend=backend)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # float16 casts of huge values, as the user asked for
@settings(max_examples=150, deadline=None)
@given(op=st.sampled_from(["fps", "ball_query", "knn", "three_interpolate"]), data=st.data(),
       b=st.sampled_from([0, 1, 1, 2, 2]), k=st.sampled_from([-1, 0, 1, 1, 2, 3, 3, 9, 10**6, 10**12, 2.5]),
       radius=st.sampled_from([0.0, -1.0, 1e-30, 1e-3, 0.5, 1e18, 1e30, float("nan"), float("inf")]))
def test_an_operator_returns_the_reference_or_refuses(op, data, b, k, radius):
    xyz = data.draw(clouds(b), "xyz")
    same_batch = data.draw(st.sampled_from([True, True, True, False]), "same batch")
    other = data.draw(clouds(b if same_batch else 1 - b % 2), "other")
    try:
        expected = _call(op, xyz, other, k, radius, "reference")
    except DlpartsError:
        with pytest.raises(DlpartsError):
            _call(op, xyz, other, k, radius, "cpu")
        return
    got = _call(op, xyz, other, k, radius, "cpu")
    if op == "three_interpolate":
        assert got.shape == expected.shape
        return
    pairs = zip(got, expected) if isinstance(got, tuple) else [(got, expected)]
    for g, e in pairs:
        assert g.shape == e.shape
        if not g.is_floating_point():
            assert torch.equal(g, e)


def test_the_device_checks_say_what_the_host_checks_say():
    """The GPU path's asserts (run here on CPU tensors, where ``torch._assert_async`` raises at once)."""
    wide = torch.tensor([[[1e39, 0.0, 0.0]]], dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"knn: query holds non-finite coordinates \(NaN or inf or beyond"):
        _checks._comparable_on_device("knn", [("query", wide), ("ref", wide)])
    far = torch.tensor([[[1e19, 0.0, 0.0], [-1e19, 0.0, 0.0]]])
    with pytest.raises(RuntimeError, match="knn: squared distances between the points of query and ref overflow"):
        _checks._comparable_on_device("knn", [("query", far[:, :1]), ("ref", far)])
    _checks._comparable_on_device("knn", [("query", far / 10), ("ref", far / 10)])
