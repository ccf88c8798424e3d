import pytest
import torch

from dlparts import ops
from dlparts.ops import reference

from . import oracle
from .conftest import cloud, ragged

LINE = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [3, 3, 3], [0.1, 0, 0]]])


def test_hand_computed(backend):
    # From 0: d2 = 1, 4, 27, .01 -> 3; then min(1, 22)=1, min(4, 19)=4, .01 -> 2; then 1 (1 > .01), then 4.
    idx = ops.farthest_point_sample(LINE.to(backend.device), 5, backend=backend.name)
    assert idx.tolist() == [[0, 3, 2, 1, 4]]
    assert ops.farthest_point_sample(LINE.to(backend.device), 2, start=2, backend=backend.name).tolist() == [[2, 3]]


def test_centroid_farthest_start(backend):
    # Centroid (0.82, 1, 0.6): point 3 is farthest.
    idx = ops.farthest_point_sample(LINE.to(backend.device), 3, start="centroid-farthest", backend=backend.name)
    assert idx.tolist() == [[3, 0, 2]]


def test_ties_go_to_lowest_index(backend):
    # Corners of a unit square; from 0: d2 = 1, 2, 1 -> 2; then 1 and 3 tie at 1 -> the lower index, 1.
    sq = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    assert ops.farthest_point_sample(sq.to(backend.device), 4, backend=backend.name).tolist() == [[0, 2, 1, 3]]


def test_m_equal_n_is_permutation_with_duplicates(backend):
    x = torch.zeros(2, 7, 3)
    x[:, 3:] = 1.0  # two groups of identical points
    idx = ops.farthest_point_sample(x.to(backend.device), 7, backend=backend.name).cpu()
    assert idx.tolist() == [[0, 3, 1, 2, 4, 5, 6]] * 2


@pytest.mark.parametrize("b,n,m,grid", [(1, 1, 1, None), (3, 17, 9, None), (4, 200, 64, None), (2, 300, 300, 0.25),
                                        (5, 1000, 100, 0.05), (2, 64, 64, None)])
def test_equals_oracle(backend, b, n, m, grid):
    x = cloud(b, n, seed=n + m, grid=grid)
    lengths = ragged(b, n, n) if m <= n // 2 else None
    g = torch.Generator().manual_seed(3)
    start = torch.randint(0, max(1, n // 2), (b,), generator=g) if lengths is not None else 0
    want = oracle.fps(x, m, start, lengths)
    got = ops.farthest_point_sample(x.to(backend.device), m, start=start, backend=backend.name,
                                    lengths=None if lengths is None else lengths.to(backend.device))
    assert got.dtype == torch.int64 and got.shape == (b, m)
    assert torch.equal(got.cpu(), want)
    if lengths is not None:
        assert bool((want < lengths[:, None]).all())


def test_random_start_uses_generator(backend):
    x = cloud(3, 50, 1).to(backend.device)
    runs = [ops.farthest_point_sample(x, 5, start="random", generator=torch.Generator().manual_seed(7),
                                      backend=backend.name) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    first = torch.minimum((torch.rand(3, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 50).long(),
                          torch.tensor(49))
    assert runs[0][:, 0].cpu().tolist() == first.tolist()


def test_centroid_farthest_set_is_order_independent(backend):
    x = cloud(2, 300, 5)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    a = ops.farthest_point_sample(x.to(backend.device), 40, start="centroid-farthest", backend=backend.name).cpu()
    b = ops.farthest_point_sample(x[:, perm].to(backend.device), 40, start="centroid-farthest",
                                  backend=backend.name).cpu()
    assert torch.equal(perm[b], a)  # same points, same order


def test_reference_is_greedy_by_definition():
    # Brute-force restatement of the definition on a tiny cloud, in float32 with the fixed distance arithmetic.
    x = cloud(1, 40, 11, grid=0.2)[0]
    chosen = [0]
    while len(chosen) < 40:
        d = torch.stack([reference.sq_dist(x, x[c][None]) for c in chosen]).min(dim=0).values
        d[chosen] = -1
        chosen.append(int(torch.argmax(d)))
    assert ops.farthest_point_sample(x[None], 40, backend="reference")[0].tolist() == chosen


@pytest.mark.parametrize("n,m,leaf,grid", [(2000, 300, 8, None), (1500, 1500, 16, 0.1), (800, 200, 4, 0.02)])
def test_bucket_fps_equals_plain_sequence(n, m, leaf, grid):
    from dlparts.ops._numba.buckets import fps_buckets

    x = cloud(2, n, seed=n, grid=grid)
    x[1, :, 2] *= 0.01  # a nearly flat cloud: thin buckets
    lengths = torch.tensor([n, n - 37]) if m < n - 37 else torch.tensor([n, n])
    start = torch.tensor([5, n // 3])
    want = ops.farthest_point_sample(x, m, start=start, lengths=lengths, backend="reference")
    assert torch.equal(torch.from_numpy(fps_buckets(x.numpy(), lengths.numpy(), m, start.numpy(), leaf=leaf)), want)


def test_cpu_dispatches_large_clouds_to_buckets(monkeypatch):
    from dlparts.ops import cpu

    monkeypatch.setattr(cpu, "BUCKET_FPS_MIN_POINTS", 100)
    x = cloud(1, 700, 9)
    want = ops.farthest_point_sample(x, 150, start="centroid-farthest", backend="reference")
    assert torch.equal(ops.farthest_point_sample(x, 150, start="centroid-farthest", backend="cpu"), want)
