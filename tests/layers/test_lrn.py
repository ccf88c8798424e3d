"""Local response normalization: the paper's equation (3), by hand, against the reference, PyTorch and summary."""

import pytest
import torch
from torch import nn

from dlparts.errors import ConfigError, ShapeError
from dlparts.layers.lrn import LocalResponseNorm, local_response_norm, local_response_norm_reference
from dlparts.summary import summarize


def test_hand_computed_values():
    # One position, three maps a = (1, 2, 3); n = 3, k = 0, alpha = 1, beta = 1:
    # b0 = 1 / (1 + 4) , b1 = 2 / (1 + 4 + 9), b2 = 3 / (4 + 9): the window is cut short at both ends.
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    expected = [1 / 5, 2 / 14, 3 / 13]
    for fn in (local_response_norm, local_response_norm_reference):
        out = fn(x, size=3, alpha=1.0, beta=1.0, k=0.0).flatten().tolist()
        assert out == pytest.approx(expected, abs=1e-15)


def test_paper_constants_hand_computed():
    # a = 10 everywhere, 5 maps, paper constants: map 2 sees 5 maps, map 0 sees 3.
    x = torch.full((1, 5, 1, 1), 10.0, dtype=torch.float64)
    out = LocalResponseNorm()(x).flatten()
    assert out[2].item() == pytest.approx(10 / (2 + 1e-4 * 500) ** 0.75, rel=1e-14)
    assert out[0].item() == pytest.approx(10 / (2 + 1e-4 * 300) ** 0.75, rel=1e-14)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 7, 20])
@pytest.mark.parametrize("groups", [1, 2, 3])
def test_fast_path_equals_reference(size, groups):
    gen = torch.Generator().manual_seed(size * 10 + groups)
    x = torch.randn(2, 12, 5, 4, generator=gen, dtype=torch.float64) * 30
    x[0, 3] = 0.0  # a whole zero map
    fast = local_response_norm(x, size, 1e-3, 0.75, 2.0, groups)
    ref = local_response_norm_reference(x, size, 1e-3, 0.75, 2.0, groups)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 7, 11), (2, 9, 4, 5), (1, 6, 2, 3, 4)])
def test_gradient_equals_reference(shape):
    gen = torch.Generator().manual_seed(len(shape))
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64)
    g_fast, = torch.autograd.grad(local_response_norm(x, 5, 1e-2, 0.75, 2.0), x, grad_out)
    g_ref, = torch.autograd.grad(local_response_norm_reference(x, 5, 1e-2, 0.75, 2.0), x, grad_out)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-11, atol=1e-12)


def test_gradcheck_grouped():
    x = (torch.randn(2, 6, 3, 3, dtype=torch.float64) * 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, 3, 0.05, 0.75, 1.0, groups=2), (x,))


def test_torch_divides_alpha_by_n_and_we_do_not():
    x = torch.randn(4, 16, 6, 6) * 20
    ours = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x)
    torch.testing.assert_close(ours, nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(x))
    assert not torch.allclose(ours, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x))


def test_groups_never_mix_towers():
    x = torch.randn(1, 8, 2, 2) * 50
    grouped = LocalResponseNorm(groups=2)(x)
    halves = torch.cat([LocalResponseNorm()(x[:, :4]), LocalResponseNorm()(x[:, 4:])], 1)
    torch.testing.assert_close(grouped, halves)
    assert not torch.allclose(grouped, LocalResponseNorm()(x))


def test_module_attributes_and_summary_flops():
    lrn = LocalResponseNorm()
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert "alpha=0.0001" in repr(lrn)
    s = summarize(nn.Sequential(lrn), (96, 55, 55))  # runs on the meta device
    assert s.rows[-1].flops == 96 * 55 * 55 * (2 * 5 + 3)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="size n=0"):
        LocalResponseNorm(0)
    with pytest.raises(ConfigError, match="groups=0"):
        LocalResponseNorm(groups=0)
    with pytest.raises(ShapeError, match="10 channels do not split into 3 groups"):
        LocalResponseNorm(groups=3)(torch.zeros(1, 10, 2, 2))
    with pytest.raises(ShapeError, match=r"\[B, C, ...\] input, got shape \[4, 5\]"):
        LocalResponseNorm()(torch.zeros(4, 5))
