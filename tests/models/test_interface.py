"""One interface for every registered model (timm's): example inputs, forward, forward_features + forward_head,
reset_classifier, and the declared parameter count; the one place where declared counts are checked."""

import pytest
import torch

from dlparts.errors import ConfigError
from dlparts.models import create_model, get_model_info, list_models
from dlparts.models.registry import create_model_for_counting

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list_models())
def test_declared_parameter_count_is_exact(name):
    model = create_model_for_counting(name)
    assert sum(p.numel() for p in model.parameters()) == get_model_info(name).num_params


def _small_inputs(model, info, batch=2):
    """The model's example inputs, point clouds cut to 1024 points (every table's first level samples at most 1024)."""
    gen = torch.Generator().manual_seed(0)
    if info.task == "image_cls":
        return model.example_inputs(batch, generator=gen)
    return model.example_inputs(batch, (1024, info.input_spec[-1]), generator=gen)


@pytest.mark.parametrize("name", list_models())
def test_interface(name):
    torch.manual_seed(0)
    info = get_model_info(name)
    model = create_model(name).eval()
    default = model.example_inputs(2, device="meta")
    assert [list(t.shape) for t in default] == [[2, *info.input_spec]] + ([[2]] if info.task == "point_partseg" else [])
    args = _small_inputs(model, info)
    assert args[0].dtype == torch.float32 and (args[0].abs() <= 1).all()
    with torch.no_grad():
        logits = model(*args)
        points = args[0].shape[1]
        assert logits.shape == ((2, info.num_classes) if info.task.endswith("cls") else (2, points, info.num_classes))
        features = model.forward_features(*args)
        torch.testing.assert_close(model.forward_head(features), logits)
        hidden = model.forward_head(features, pre_logits=True)
        assert hidden.shape[:-1] == logits.shape[:-1]
        model.reset_classifier(7)
        assert model.forward_head(features).shape == (*logits.shape[:-1], 7)
        torch.testing.assert_close(model.forward_head(features, pre_logits=True), hidden)  # only the last layer new
    with pytest.raises(ConfigError, match="num_classes=0 must be a positive integer"):
        model.reset_classifier(0)


def test_variant_builds_another_table_row_and_counts_it():
    levels = [[64, [0.4], [8], [[16, 32]]], [None, [], [], [[32, 64]]]]
    model = create_model("pointnet2_cls_ssg", variant={"levels": levels, "head": [32]}, num_classes=5)
    assert model.model_info.num_params == sum(p.numel() for p in model.parameters()) < 20_000
    assert model.model_info.extra["variant"]["head"] == [32]
    assert model(*model.example_inputs(2, (128, 3))).shape == (2, 5)
    with pytest.raises(ConfigError, match=r"model.variant .* is not a PointNet\+\+ table .*positive integers"):
        create_model("pointnet2_cls_ssg", variant={"levels": [[64, [0.4], [8], [["a"]]]]})
    with pytest.raises(ConfigError, match="model.variant .*unknown keys"):
        create_model("pointnet2_cls_ssg", variant={"levels": levels, "heads": [32]})
