"""Batch norm folded into the preceding Linear for inference: the same outputs up to float rounding, the same labels
of a whole scene, and the original model left as it was."""

import numpy as np
import pytest
import torch
from torch import nn

from dlparts.layers.fold import fold_batch_norm
from dlparts.models import create_model
from dlparts.train.whole_scene import _sampled_blocks, label_scene, module_scores


def with_statistics(model: nn.Module, seed: int = 0, data: torch.Tensor | None = None) -> nn.Module:
    """``model`` in eval mode with batch norm affine parameters away from their initial 1/0 and running statistics
    random, or those of one training-mode pass over ``data`` (then the labels of a random model vary from point to
    point as a trained model's do), so that folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm1d):
            c = bn.num_features
            bn.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
            bn.momentum = 1.0  # the running statistics become those of the one pass over data
    if data is not None:
        with torch.no_grad():
            model.train()(data)
    return model.eval()


@pytest.mark.parametrize("name, shape", [("pointnet_semseg", (2, 256, 9)), ("pointnet2_semseg_ssg", (1, 1024, 9)),
                                         ("pointnet_cls", (2, 128, 3))])
def test_folded_model_gives_the_same_outputs_without_batch_norm(name, shape):
    torch.manual_seed(0)
    model = with_statistics(create_model(name, num_classes=13 if "semseg" in name else 10, in_channels=shape[-1]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batch_norm(model)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(x), folded(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert bns and not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched


def test_batch_norm_without_running_statistics_is_kept():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))
    folded = fold_batch_norm(model)
    assert isinstance(folded[1], nn.BatchNorm1d)
    x = torch.rand(5, 3)
    torch.testing.assert_close(folded(x), model.eval()(x))


def test_whole_scene_labels_are_the_same_with_the_folded_model_and_nearly_so_in_bf16():
    rng = np.random.default_rng(0)
    xyz = (rng.random((4000, 3)) * [2.0, 2.0, 1.0]).astype(np.float32)
    rgb = rng.integers(0, 256, (4000, 3), dtype=np.uint8)
    blocks = np.stack([f for _, f in _sampled_blocks(xyz, rgb, np.random.default_rng(1), 256, 1.0, 0.5, 1)])
    torch.manual_seed(0)
    model = create_model("pointnet_semseg", num_classes=13, in_channels=9)
    model = with_statistics(model, data=torch.from_numpy(blocks))
    plain = label_scene(module_scores(model), xyz, rgb, num_points=256, batch_size=4)
    folded = label_scene(module_scores(fold_batch_norm(model)), xyz, rgb, num_points=256, batch_size=4)
    assert np.array_equal(folded.labels, plain.labels) and len(np.unique(plain.labels)) >= 10
    bf16 = label_scene(module_scores(fold_batch_norm(model), precision="bf16"), xyz, rgb, num_points=256, batch_size=4)
    assert (bf16.labels == plain.labels).mean() > 0.9  # rounding moves only near-ties
