import pytest
import torch

from dlparts import ops
from dlparts.ops import cpu

from . import oracle
from .conftest import cloud, ragged, spread

# Points on the x axis at 0, 1, 2, 3, 0.5.
AXIS = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [0.5, 0, 0]]])


def _bq(backend, xyz, centers, radius, k, **kw):
    lengths = kw.pop("lengths", None)
    if lengths is not None:
        lengths = lengths.to(backend.device)
    idx, count = ops.ball_query(xyz.to(backend.device), centers.to(backend.device), radius, k, lengths=lengths,
                                backend=backend.name, **kw)
    return idx.cpu(), count.cpu()


def test_hand_computed_index_order(backend):
    # Center 0, radius 2: d2 = 0, 1, 4, 9, .25; strictly inside: 0, 1, 4 (d2 = 4 is on the sphere, outside).
    idx, count = _bq(backend, AXIS, torch.zeros(1, 1, 3), 2.0, 5)
    assert idx.tolist() == [[[0, 1, 4, 0, 0]]] and count.tolist() == [[3]]
    idx, count = _bq(backend, AXIS, torch.zeros(1, 1, 3), 2.0, 2)
    assert idx.tolist() == [[[0, 1]]] and count.tolist() == [[2]]


def test_hand_computed_nearest_order(backend):
    # Center 2.9: d2 = 8.41, 3.61, .81, .01, 5.76; inside radius 2: 3, 2, 1 (by distance).
    c = torch.tensor([[[2.9, 0, 0]]])
    idx, count = _bq(backend, AXIS, c, 2.0, 4, order="nearest")
    assert idx.tolist() == [[[3, 2, 1, 3]]] and count.tolist() == [[3]]
    idx, count = _bq(backend, AXIS, c, 2.0, 4)
    assert idx.tolist() == [[[1, 2, 3, 1]]] and count.tolist() == [[3]]


def test_empty_ball_gets_nearest_point(backend):
    c = torch.tensor([[[10.0, 0, 0], [0.4, 5, 0]]])
    for order in ("index", "nearest"):
        idx, count = _bq(backend, AXIS, c, 1.0, 3, order=order)
        assert idx.tolist() == [[[3, 3, 3], [4, 4, 4]]] and count.tolist() == [[0, 0]]


def test_ragged_ignores_missing_points(backend):
    # Only the first 3 points exist: center 3 finds nothing of its own and takes 2.
    idx, count = _bq(backend, AXIS, torch.tensor([[[3.0, 0, 0]]]), 0.5, 2, lengths=torch.tensor([3]))
    assert idx.tolist() == [[[2, 2]]] and count.tolist() == [[0]]


@pytest.mark.parametrize("order", ["index", "nearest"])
@pytest.mark.parametrize("b,n,s,radius,k,grid", [(1, 1, 1, 0.5, 1, None), (2, 50, 20, 0.3, 4, None),
                                                 (3, 400, 90, 0.2, 16, None), (2, 300, 70, 0.25, 8, 0.1),
                                                 (2, 200, 33, 0.05, 3, None), (1, 100, 10, 2.0, 130, None)])
def test_equals_oracle(backend, order, b, n, s, radius, k, grid):
    x = cloud(b, n, seed=n, grid=grid)
    centers = torch.cat([x[:, : s // 2], cloud(b, s - s // 2, seed=s)], dim=1)  # half the centers are points
    lengths = ragged(b, n, n)
    want_idx, want_count = oracle.ball_query(x, centers, radius, k, order=order, lengths=lengths)
    got = _bq(backend, x, centers, radius, k, order=order, lengths=lengths)
    assert torch.equal(got[0], want_idx) and torch.equal(got[1], want_count)
    assert got[0].dtype == torch.int64 and got[1].dtype == torch.int64


@pytest.mark.parametrize("whole_clouds", [False, True])
@pytest.mark.parametrize("order", ["index", "nearest"])
def test_cpu_grid_path_equals_reference(monkeypatch, order, whole_clouds):
    spread(monkeypatch, whole_clouds)
    monkeypatch.setattr(cpu, "GRID_MIN_WORK", 0)
    monkeypatch.setattr(cpu, "NEAREST_GRID_MIN_WORK", 0)
    for seed, (n, s, radius, k, grid) in enumerate([(500, 80, 0.15, 8, None), (400, 60, 0.2, 40, 0.1),
                                                    (300, 30, 0.01, 4, None), (200, 20, 3.0, 16, None)]):
        x = cloud(2, n, seed, grid=grid)
        centers = torch.cat([x[:, :10], cloud(2, s, seed + 50) * 1.4 - 0.2], dim=1)  # some centers outside
        lengths = ragged(2, n, seed)
        want = ops.ball_query(x, centers, radius, k, order=order, lengths=lengths, backend="reference")
        got = ops.ball_query(x, centers, radius, k, order=order, lengths=lengths, backend="cpu")
        assert torch.equal(got.idx, want.idx) and torch.equal(got.count, want.count)


@pytest.mark.parametrize("whole_clouds", [False, True])
@pytest.mark.parametrize("radius,k", [(0.05, 4), (0.3, 16), (0.9, 120), (1e-4, 8)])
def test_cpu_nearest_grid_awkward_clouds(monkeypatch, radius, k, whole_clouds):
    from .test_knn import _awkward_clouds

    spread(monkeypatch, whole_clouds)
    monkeypatch.setattr(cpu, "NEAREST_GRID_MIN_WORK", 0)
    for x, c in _awkward_clouds():
        scale = float((x.amax(dim=1) - x.amin(dim=1)).max())  # the radius relative to the cloud's extent
        want = ops.ball_query(x, c, radius * scale, k, order="nearest", backend="reference")
        got = ops.ball_query(x, c, radius * scale, k, order="nearest", backend="cpu")
        assert torch.equal(got.idx, want.idx) and torch.equal(got.count, want.count)


def test_reference_matches_definition():
    x = cloud(1, 60, 3, grid=0.1)
    c = x[:, :5] + 0.01
    r2 = float(torch.tensor(0.3, dtype=torch.float32) ** 2)
    idx, count = ops.ball_query(x, c, 0.3, 8, order="nearest", backend="reference")
    for s in range(5):
        d = ((x[0] - c[0, s]) ** 2).sum(dim=1)
        inside = [j for j in range(60) if d[j] < r2]
        best = sorted(inside, key=lambda j: (float(d[j]), j))[:8]
        assert count[0, s] == len(best)
        assert idx[0, s, : len(best)].tolist() == best
