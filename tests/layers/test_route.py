"""The routing of shared MLPs between the plain modules and the fused kernels (dlparts.layers.route)."""

import pytest
import torch

from dlparts.layers import fused, route
from dlparts.layers.mlp import MaxPool, SharedMLP


CALLS = ["bn_relu", "bn_relu_max"]  # the counted functions


@pytest.mark.parametrize("training, dtype, want", [
    (True, torch.float32, {"bn_relu": 1, "bn_relu_max": 1}),  # first layer alone, last layer with the max
    (False, torch.float32, {"bn_relu": 0, "bn_relu_max": 0}),  # eval: batch norm uses running statistics
    (True, torch.float64, {"bn_relu": 0, "bn_relu_max": 0}),  # the kernels are float32 / bfloat16 only
])
def test_fused_path_taken_where_it_applies(count_calls, training, dtype, want):
    calls = count_calls(fused, CALLS)
    mlp = SharedMLP(3, (8, 4)).to(dtype).train(training)
    x = torch.rand(2, 5, 6, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    out = mlp.forward_max(x, MaxPool(dim=2))
    assert out.shape == (2, 5, 4) and calls == want
    with fused.disabled():
        plain = SharedMLP(3, (8, 4)).to(dtype).train(training)
        plain.load_state_dict(mlp.state_dict())
        torch.testing.assert_close(out, plain.forward_max(x, MaxPool(dim=2)))


def test_run_max_after_every_module_is_the_max():
    # A set abstraction's first layer alone: the per-point path has run Linear, BatchNorm and ReLU already.
    x = torch.rand(2, 3, 4, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(SharedMLP(3, (8,)).forward_max(x, MaxPool(dim=2), skip=3), x.amax(dim=2))
    assert torch.equal(route.run_max(x, [], MaxPool(dim=2)), x.amax(dim=2))


def test_inference_paths_only_in_evaluation_without_autograd_on_the_cpu():
    mlp, x = SharedMLP(3, (4,)), torch.rand(2, 3)
    with torch.no_grad():
        assert not route.inference(x, mlp.train())  # training mode: batch statistics, dropout
        assert route.inference(x, mlp.eval())
        with fused.disabled():
            assert not route.inference(x, mlp)
        assert not route.inference(x.to("meta"), mlp)  # dlparts.summary runs the plain modules on meta tensors
    with torch.inference_mode():
        assert route.inference(x, mlp)
    assert not route.inference(x, mlp)  # autograd records: the plain modules
