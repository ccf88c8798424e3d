import sys
import warnings

import pytest
import torch

from dlparts import ops
from dlparts.errors import ConfigError, ShapeError
from dlparts.ops import _dispatch

X = torch.rand(2, 10, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("call,error,message", [
    (lambda: ops.farthest_point_sample(X[0], 2), ShapeError, r"xyz must have shape \[B, N, 3\], got \[10, 3\]"),
    (lambda: ops.farthest_point_sample(X[..., :2], 2), ShapeError, r"got \[2, 10, 2\]"),
    (lambda: ops.farthest_point_sample(X.long(), 2), ConfigError, "xyz must be a floating-point tensor"),
    (lambda: ops.farthest_point_sample(X.numpy(), 2), ConfigError, "xyz must be a torch.Tensor, got ndarray"),
    (lambda: ops.farthest_point_sample(X[:, :0], 1), ShapeError, "xyz holds no points"),
    (lambda: ops.farthest_point_sample(X.index_fill(1, torch.tensor([3]), float("nan")), 2), ConfigError,
     "xyz holds non-finite"),
    (lambda: ops.farthest_point_sample(X, 11), ConfigError, r"m=11 exceeds the number of points \(10\)"),
    (lambda: ops.farthest_point_sample(X, 0), ConfigError, "m must be >= 1, got 0"),
    (lambda: ops.farthest_point_sample(X, 2.5), ConfigError, "m must be an integer, got 2.5"),
    (lambda: ops.farthest_point_sample(X, 5, lengths=torch.tensor([4, 10])), ConfigError,
     r"m=5 exceeds the number of points \(4\)"),
    (lambda: ops.farthest_point_sample(X, 2, lengths=torch.tensor([0, 10])), ConfigError,
     r"lengths must lie in \[1, 10\].*from 0 to 10"),
    (lambda: ops.farthest_point_sample(X, 2, lengths=torch.tensor([3])), ShapeError, r"lengths must have shape \[2\]"),
    (lambda: ops.farthest_point_sample(X, 2, lengths=torch.tensor([3.0, 4.0])), ConfigError,
     "lengths must be an integer tensor"),
    (lambda: ops.farthest_point_sample(X, 2, start=10), ConfigError, "start=10 for cloud 0 is outside its 10 points"),
    (lambda: ops.farthest_point_sample(X, 2, start=-1), ConfigError, "start must be >= 0, got -1"),
    (lambda: ops.farthest_point_sample(X, 2, start=True), ConfigError, "start must be an integer, got True"),
    (lambda: ops.farthest_point_sample(X, 2, start="middle"), ConfigError, "start must be .*got 'middle'"),
    (lambda: ops.farthest_point_sample(X, 2, start=torch.tensor([1, 6]), lengths=torch.tensor([10, 5])), ConfigError,
     "start=6 for cloud 1 is outside its 5 points"),
    (lambda: ops.ball_query(X, X[:1], 0.1, 4), ShapeError, "centers has batch size 1 but the first argument has 2"),
    (lambda: ops.ball_query(X, X, 0.0, 4), ConfigError, "radius must be a positive finite number, got 0.0"),
    (lambda: ops.ball_query(X, X, float("inf"), 4), ConfigError, "radius must be a positive finite number, got inf"),
    (lambda: ops.ball_query(X, X, "0.1", 4), ConfigError, "radius must be a number, got '0.1'"),
    (lambda: ops.ball_query(X, X, 0.1, 0), ConfigError, "k must be >= 1, got 0"),
    (lambda: ops.ball_query(X, X, 0.1, 4, order="random"), ConfigError, "order must be one of index, nearest"),
    (lambda: ops.knn(X, X, 11), ConfigError, r"k=11 exceeds the number of reference points \(10\)"),
    (lambda: ops.knn(X, X[:, :, :2], 1), ShapeError, r"ref must have shape \[B, N, 3\]"),
    (lambda: ops.three_nn(X, X[:, :2]), ConfigError, r"three_nn: k=3 exceeds the number of reference points \(2\)"),
    (lambda: ops.three_interpolate(X, X, torch.zeros(2, 9, 4)), ShapeError,
     r"features must have shape \[B, M, C\] = \[2, 10, C\]"),
    (lambda: ops.three_interpolate(X, X, torch.zeros(2, 10, 4), eps=-1), ConfigError, "eps must be a positive"),
    (lambda: ops.gather_points(torch.zeros(4, 3), torch.zeros(4, 2, dtype=torch.long)), ShapeError,
     r"points must have shape \[B, N, C\], got \[4, 3\]"),
    (lambda: ops.gather_points(X, torch.zeros(2, 3)), ConfigError, "idx must be an integer tensor, got dtype"),
    (lambda: ops.gather_points(X, torch.zeros(3, 3, dtype=torch.long)), ShapeError, "idx must have shape"),
    (lambda: ops.group_points(X, torch.zeros(2, 3, dtype=torch.long)), ShapeError,
     r"idx must have shape \[B, S, k\], got \[2, 3\]"),
    (lambda: ops.knn(X, X, 2, backend="gpu"), ConfigError, "backend must be one of auto, reference, cpu, cuda, got 'gpu'"),
    (lambda: _dispatch.resolve("knn", "cpu", torch.device("meta")), ConfigError,
     "knn: backend='cpu' runs on cpu tensors, got tensors on meta"),
])
def test_errors_name_argument_and_value(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_messages_name_the_function():
    with pytest.raises(ConfigError, match=r"^ball_query: k must be >= 1"):
        ops.ball_query(X, X, 0.1, 0)


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "reference")
    assert _dispatch.resolve("knn", None, torch.device("cpu")).__name__ == "dlparts.ops.reference"
    monkeypatch.setenv(_dispatch.ENV_VAR, "nope")
    with pytest.raises(ConfigError, match="DLPARTS_OPS_BACKEND must be one of .* got 'nope'"):
        ops.knn(X, X, 2)
    assert _dispatch.resolve("knn", "cpu", torch.device("cpu")).__name__ == "dlparts.ops.cpu"  # argument wins


def test_auto_picks_by_device(monkeypatch):
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    assert _dispatch.resolve("knn", None, torch.device("cpu")).__name__ == "dlparts.ops.cpu"


def test_broken_backend_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_dispatch, "_loaded", {})
    monkeypatch.setattr(_dispatch, "_warned", set())
    monkeypatch.setitem(sys.modules, "dlparts.ops.cpu", None)  # makes the import fail
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = ops.farthest_point_sample(X, 4, backend="cpu")
        b = ops.knn(X, X, 2, backend="cpu")
    assert len(caught) == 1 and issubclass(caught[0].category, RuntimeWarning)
    assert str(caught[0].message).startswith("dlparts.ops: the 'cpu' backend cannot load (ModuleNotFoundError")
    assert torch.equal(a, ops.farthest_point_sample(X, 4, backend="reference"))
    assert torch.equal(b.idx, ops.knn(X, X, 2, backend="reference").idx)
