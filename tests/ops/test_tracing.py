"""The public operators under torch.export, torch.compile and on the meta device: the index searches are opaque
custom ops with the right output shapes, and the traced graphs compute what the eager calls do."""

import pytest
import torch
from torch import nn

from dlparts import ops
from dlparts.errors import ConfigError

from .conftest import cloud


class _Ops(nn.Module):
    """Every public operator once, as a PointNet++ level uses them."""

    def forward(self, xyz, feats):
        centres = ops.gather_points(xyz, ops.farthest_point_sample(xyz, 8, start="centroid-farthest"))  # [B, 8, 3]
        idx = ops.ball_query(xyz, centres, 0.3, 4, order="nearest").idx  # [B, 8, 4]
        grouped = ops.group_points(feats, idx).amax(dim=2)  # [B, 8, C]
        near = ops.knn(centres, xyz, 2)
        up = ops.three_interpolate(xyz, centres, grouped)  # [B, N, C]
        return up, near.dists, near.idx, ops.three_nn(xyz, centres).idx


def _inputs(seed: int):
    return cloud(2, 40, seed), torch.randn(2, 40, 5, generator=torch.Generator().manual_seed(seed))


def test_export_equals_eager_on_other_inputs():
    model = _Ops()
    program = torch.export.export(model, _inputs(0))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"dlparts.fps.default", "dlparts.ball_query.default", "dlparts.knn.default"} <= targets
    other = _inputs(1)
    for got, want in zip(program.module()(*other), model(*other)):
        assert torch.equal(got, want)


def test_compiles_without_graph_breaks():
    model = _Ops()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a break (e.g. a value check) fails
    for got, want in zip(compiled(*_inputs(2)), model(*_inputs(2))):
        assert torch.equal(got, want)


def test_meta_device_gives_shapes_and_dtypes():
    xyz, feats = (t.to("meta") for t in _inputs(0))
    up, dists, idx, three = _Ops()(xyz, feats)
    assert up.shape == (2, 40, 5) and up.device.type == "meta"
    assert dists.shape == (2, 8, 2) and dists.dtype == torch.float32 and idx.dtype == torch.int64
    assert three.shape == (2, 40, 3) and three.dtype == torch.int64


def test_value_checks_still_run_eagerly():
    xyz = cloud(1, 10, 0)
    xyz[0, 3, 1] = float("nan")
    with pytest.raises(ConfigError, match="non-finite"):
        ops.farthest_point_sample(xyz, 3)
    with pytest.raises(ConfigError, match=r"idx must lie in \[0, 9\]"):
        ops.group_points(cloud(1, 10, 0), torch.tensor([[[0, 10]]]))
