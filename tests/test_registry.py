"""The model registry: names, metadata, refusals (declared counts: tests/models/test_interface.py)."""

import pytest
from torch import nn

from dlparts.errors import ModelNotFoundError, RegistryError
from dlparts.models import create_model, get_model_info, list_models, register_model
from dlparts.models import registry


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_INFOS", dict(registry._INFOS))


def _tiny(**kwargs):
    return nn.Linear(4, kwargs.get("num_classes", 2))


def test_register_create_and_list(scratch_registry):
    register_model("tiny_test", family="test", task="point_cls", paper="none", num_params=10, input_spec=(4,),
                   num_classes=2)(_tiny)
    model = create_model("tiny_test", num_classes=3)
    assert model.out_features == 3 and model.model_info.name == "tiny_test"
    assert "tiny_test" in list_models("tiny_*")
    assert get_model_info("tiny_test").input_spec == (4,)


def test_registering_a_name_twice_is_refused(scratch_registry):
    decorate = register_model("tiny_twice", family="test", task="point_cls", paper="", num_params=10,
                              input_spec=(4,), num_classes=2)
    decorate(_tiny)
    with pytest.raises(RegistryError, match="'tiny_twice' is already registered"):
        register_model("tiny_twice", family="test", task="point_cls", paper="", num_params=10, input_spec=(4,),
                       num_classes=2)(_tiny)


def test_unknown_task_is_refused():
    with pytest.raises(RegistryError, match="task must be one of"):
        register_model("bad", family="x", task="detection", paper="", num_params=0, input_spec=(1,), num_classes=1)


def test_unknown_model_suggests_close_names(scratch_registry):
    register_model("tiny_close", family="test", task="point_cls", paper="", num_params=10, input_spec=(4,),
                   num_classes=2)(_tiny)
    with pytest.raises(ModelNotFoundError, match="did you mean tiny_close"):
        create_model("tiny_closr")


def test_bad_builder_argument_names_the_model(scratch_registry):
    register_model("tiny_args", family="test", task="point_cls", paper="", num_params=10, input_spec=(4,),
                   num_classes=2)(lambda *, num_classes=2: nn.Linear(4, num_classes))
    with pytest.raises(RegistryError, match="model 'tiny_args'"):
        create_model("tiny_args", depth=3)

