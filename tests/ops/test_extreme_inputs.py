"""Extreme arguments of the point operators (issue 18): refused with a message, or answered as the reference answers.

Coordinates that are not finite in float32 (float64 beyond its range) and clouds whose squared distances overflow
float32 are refused; empty batches give empty results on every backend; ``ball_query``'s kernels fill at most N slots
and an absurd ``k`` is refused before anything is allocated.  The inputs that once hung the grid kernels run in a
subprocess with a time limit.
"""

import subprocess
import sys
import textwrap

import pytest
import torch

from dlparts import ops
from dlparts.errors import ConfigError
from dlparts.ops import _checks

from .conftest import cloud

BIG = 1e39  # finite in float64, inf in float32


@pytest.mark.parametrize("call", [
    lambda x: ops.farthest_point_sample(x, 2),
    lambda x: ops.ball_query(x, x[:, :2].float(), 0.5, 4),
    lambda x: ops.knn(cloud(1, 3, 1).double(), x, 2),
    lambda x: ops.three_interpolate(x, x, torch.ones(1, 4, 2)),
], ids=["fps", "ball_query", "knn", "three_interpolate"])
def test_float64_beyond_float32_range_is_refused(call):
    x = cloud(1, 4, 0).double()
    x[0, 1, 2] = BIG
    with pytest.raises(ConfigError, match=r"non-finite coordinates \(NaN or inf or beyond the float32 range\)"):
        call(x)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("call", [
    lambda x, be: ops.farthest_point_sample(x, 2, backend=be),
    lambda x, be: ops.ball_query(x, x, 1.0, 2, backend=be),
    lambda x, be: ops.knn(x, x, 2, backend=be),
    lambda x, be: ops.three_nn(x, x, backend=be),
], ids=["fps", "ball_query", "knn", "three_nn"])
def test_squared_distances_overflowing_float32_are_refused(call, backend_name):
    x = torch.tensor([[[3e19, 0.0, 0.0], [-3e19, 0.0, 0.0], [1.0, 2.0, 3.0]]])
    with pytest.raises(ConfigError, match=r"overflow float32: cloud 0 spans 6e\+19 \(at most 1.3e\+19\)"):
        call(x, backend_name)


def test_the_overflow_check_is_per_cloud_and_over_both_tensors():
    near = torch.tensor([[[7e18, 0.0, 0.0], [7e18, 1.0, 0.0], [7e18, 0.0, 1.0]]])
    far = -near
    both = torch.cat([near, far])  # each cloud spans little, the batch a lot
    assert ops.knn(both, both, 3).idx.shape == (2, 3, 3)
    with pytest.raises(ConfigError, match="squared distances between the points of query and ref overflow"):
        ops.knn(near, far, 1)


def test_largest_coordinates_allowed_give_the_reference_indices():
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(1, 40, 3, generator=g) * 2 - 1) * 3.7e18  # span^2 just under the limit
    expected = ops.knn(x, x, 40, backend="reference")
    got = ops.knn(x, x, 40, backend="cpu")
    assert torch.equal(got.idx, expected.idx)
    assert all(len(set(row)) == 40 for row in got.idx[0].tolist())  # no duplicate neighbours


def test_empty_batch_gives_empty_results(backend):
    x = torch.rand(0, 5, 3, device=backend.device)
    be = backend.name
    assert ops.farthest_point_sample(x, 2, backend=be).shape == (0, 2)
    ball = ops.ball_query(x, x[:, :3], 0.5, 7, backend=be)
    assert ball.idx.shape == (0, 3, 7) and ball.count.shape == (0, 3)
    near = ops.knn(x, x, 2, backend=be)
    assert near.dists.shape == (0, 5, 2) and near.idx.shape == (0, 5, 2)
    assert ops.three_interpolate(x, x, torch.ones(0, 5, 4, device=backend.device), backend=be).shape == (0, 5, 4)


def test_meta_tensors_give_shapes_only():
    x = torch.empty(2, 6, 3, device="meta")
    assert ops.farthest_point_sample(x, 3, lengths=torch.tensor([6, 4], device="meta")).shape == (2, 3)
    assert ops.farthest_point_sample(x, 3, start="centroid-farthest").device.type == "meta"
    assert ops.ball_query(x, x[:, :2], 0.5, 9).idx.shape == (2, 2, 9)
    assert ops.knn(x, x, 6).idx.shape == (2, 6, 6)
    assert ops.three_interpolate(x, x, torch.empty(2, 6, 5, device="meta")).shape == (2, 6, 5)


def test_ball_query_k_beyond_n_pads_as_the_rule_says(backend):
    x = cloud(2, 5, 4).to(backend.device)
    got = ops.ball_query(x, x[:, :3], 0.6, 12, order="nearest", backend=backend.name)
    expected = ops.ball_query(x.cpu(), x[:, :3].cpu(), 0.6, 12, order="nearest", backend="reference")
    assert torch.equal(got.idx.cpu(), expected.idx) and torch.equal(got.count.cpu(), expected.count)
    assert (got.idx[..., 5:] == got.idx[..., :1]).all()  # slots past N repeat slot 0


def test_ball_query_absurd_k_is_refused_before_allocating():
    x = cloud(1, 5, 0)
    with pytest.raises(ConfigError, match=r"k=1000000000000 would make an output of shape \[1, 5, 1000000000000\]"):
        ops.ball_query(x, x, 0.5, 10**12)
    assert _checks.MAX_OUTPUT_ENTRIES // 5 >= 10**8  # and a large but sane k still runs:
    assert ops.ball_query(x, x, 0.5, 10**5).idx.shape == (1, 5, 10**5)


# Each case runs on the numba grid (N * S >= 2^20 pairs), the numba scan and the reference; they must agree.
_EXTREMES = textwrap.dedent("""
    import torch
    from dlparts import ops
    g = torch.Generator().manual_seed(0)
    rand = torch.rand(1, 1100, 3, generator=g)
    cases = {
        "identical": (torch.zeros(1, 1100, 3), 0.1),
        "tiny radius": (rand, 1e-30),
        "huge radius": (rand, 1e30),
        "denormals": (rand * 1e-40, 1e-44),
        "huge coordinates": (rand * 3e18, 1e18),
        "tiny cloud, huge radius": (rand * 1e-30, 1e18),
    }
    for name, (x, r) in cases.items():
        small = x[:, :60]
        for pts in (x, small):
            k = min(8, pts.shape[1])
            ref_ball = ops.ball_query(pts, pts, r, k, order="nearest", backend="reference")
            ball = ops.ball_query(pts, pts, r, k, order="nearest", backend="cpu")
            assert torch.equal(ball.idx, ref_ball.idx) and torch.equal(ball.count, ref_ball.count), name
            ref_near = ops.knn(pts, pts, k, backend="reference")
            assert torch.equal(ops.knn(pts, pts, k, backend="cpu").idx, ref_near.idx), name
            fps = ops.farthest_point_sample(pts, pts.shape[1], backend="cpu")
            assert sorted(fps[0].tolist()) == list(range(pts.shape[1])), name
    one = torch.zeros(1, 1, 3)
    assert ops.knn(one, one, 1).idx.tolist() == [[[0]]]
    assert ops.ball_query(one, one, 1e-30, 3).idx.tolist() == [[[0, 0, 0]]]
    assert ops.farthest_point_sample(one, 1).tolist() == [[0]]
    print("extremes ok")
""")


def test_extreme_inputs_end_in_time():
    run = subprocess.run([sys.executable, "-c", _EXTREMES], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "extremes ok" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
