import pytest
import torch

from dlparts import ops

from . import oracle
from .conftest import cloud, ragged, spread


def test_hand_computed(backend):
    ref = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [1, 0, 0]]])  # 1 and 3 coincide: tie -> lower index
    q = torch.tensor([[[1.0, 0.5, 0]]])
    dists, idx = ops.knn(q.to(backend.device), ref.to(backend.device), 3, backend=backend.name)
    assert idx.cpu().tolist() == [[[1, 3, 0]]]
    assert dists.cpu().tolist() == [[[0.25, 0.25, 1.25]]]


@pytest.mark.parametrize("b,s,n,k,grid", [(1, 1, 1, 1, None), (2, 30, 50, 5, None), (3, 100, 257, 16, None),
                                          (2, 64, 200, 20, 0.1), (1, 10, 40, 40, None)])
def test_equals_oracle(backend, b, s, n, k, grid):
    ref = cloud(b, n, seed=n, grid=grid)
    q = torch.cat([ref[:, : s // 2], cloud(b, s - s // 2, seed=s)], dim=1)
    lengths = ragged(b, n, n) if k <= n // 2 else None
    want_dists, want_idx = oracle.knn(q, ref, k, lengths)
    got = ops.knn(q.to(backend.device), ref.to(backend.device), k,
                  None if lengths is None else lengths.to(backend.device), backend=backend.name)
    assert torch.equal(got.idx.cpu(), want_idx)
    assert torch.equal(got.dists.cpu(), want_dists)  # bit-identical float32 distances
    if lengths is not None:
        assert bool((want_idx < lengths[:, None, None]).all())


@pytest.mark.parametrize("whole_clouds", [False, True])
def test_cpu_grid_path_equals_reference(monkeypatch, whole_clouds):
    from dlparts.ops import cpu

    spread(monkeypatch, whole_clouds)
    monkeypatch.setattr(cpu, "GRID_MIN_WORK", 0)
    monkeypatch.setattr(cpu, "NEAREST_GRID_MIN_WORK", 0)
    for seed, (n, s, k, grid) in enumerate([(500, 80, 8, None), (400, 60, 40, 0.1), (300, 30, 1, None),
                                            (64, 50, 64, 0.5)]):
        ref = cloud(2, n, seed, grid=grid)
        ref[1, :, 2] *= 1e-3  # a flat cloud
        q = torch.cat([ref[:, :10], cloud(2, s, seed + 50) * 3 - 1], dim=1)  # some queries far outside
        lengths = ragged(2, n, seed) if k <= n // 2 else None
        want = ops.knn(q, ref, k, lengths, backend="reference")
        got = ops.knn(q, ref, k, lengths, backend="cpu")
        assert torch.equal(got.idx, want.idx) and torch.equal(got.dists, want.dists)


def _awkward_clouds():
    """Clouds for the nearest-first grid's other paths: two far clusters (empty cells, queries between them searched
    ring by ring), a coarse lattice (duplicates and distance ties across cells), a small cloud far from the origin
    (cell bounds that round), a line (one cell wide), a cloud with half its points on one spot (more equal distances
    than the placement by rank takes: inserted instead)."""
    g = torch.Generator().manual_seed(7)
    clusters = torch.cat([torch.rand(1, 150, 3, generator=g) * 0.05, torch.rand(1, 150, 3, generator=g) * 0.05 + 1])
    lattice = torch.round(torch.rand(1, 300, 3, generator=g) * 3) / 3
    far = torch.rand(1, 300, 3, generator=g) * 1e-3 + 1e4
    line = torch.zeros(1, 300, 3)
    line[0, :, 0] = torch.rand(300, generator=g)
    piled = torch.rand(1, 300, 3, generator=g)
    piled[:, 150:] = piled[:, 3:4]
    for x in (clusters.reshape(1, 300, 3), lattice, far, line, piled):
        lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
        between = lo + (hi - lo) * (torch.rand(1, 40, 3, generator=g) * 1.6 - 0.3)  # some outside the cloud's box
        yield x, torch.cat([x[:, :20], between], dim=1)


@pytest.mark.parametrize("whole_clouds", [False, True])
@pytest.mark.parametrize("k", [1, 3, 16, 120])
def test_cpu_nearest_grid_awkward_clouds(monkeypatch, k, whole_clouds):
    from dlparts.ops import cpu

    spread(monkeypatch, whole_clouds)
    monkeypatch.setattr(cpu, "NEAREST_GRID_MIN_WORK", 0)
    for x, q in _awkward_clouds():
        lengths = torch.tensor([290])  # k may exceed the points of the 3 x 3 x 3 block: searched further out
        want = ops.knn(q, x, k, lengths, backend="reference")
        got = ops.knn(q, x, k, lengths, backend="cpu")
        assert torch.equal(got.idx, want.idx) and torch.equal(got.dists, want.dists)


def test_reference_matches_sort():
    ref, q = cloud(2, 70, 1, grid=0.2), cloud(2, 9, 2)
    d = ((q[:, :, None] - ref[:, None]) ** 2).sum(-1)  # [2, 9, 70]
    want = torch.sort(d, dim=2, stable=True)
    got = ops.knn(q, ref, 6, backend="reference")
    assert torch.equal(got.idx, want.indices[:, :, :6])
    torch.testing.assert_close(got.dists, want.values[:, :, :6])


def test_three_nn(backend):
    known = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 3, 0], [9, 9, 9]]])
    unknown = torch.tensor([[[1.0, 0, 0]]])
    dists, idx = ops.three_nn(unknown.to(backend.device), known.to(backend.device), backend=backend.name)
    assert idx.cpu().tolist() == [[[0, 1, 2]]] and dists.cpu().tolist() == [[[1.0, 1.0, 10.0]]]


def test_dists_gradcheck(backend):
    q = cloud(1, 4, 3).double().to(backend.device).requires_grad_()
    ref = cloud(1, 9, 4).double().to(backend.device).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.knn(a, b, 3, backend=backend.name).dists, (q, ref))
    out = ops.knn(q, ref, 3, backend=backend.name)
    assert out.dists.dtype == torch.float64 and not out.idx.requires_grad
