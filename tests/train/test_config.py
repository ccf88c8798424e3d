"""Config loading: YAML defaults, command-line overrides, clear errors for unknown keys and bad values."""

import pytest
import yaml

from dlparts.errors import ConfigError, DataNotFoundError
from dlparts.train.config import DEFAULTS, list_recipes, load_config, parse_override, save_config


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: alexnet_small}\ndata: {name: synthetic_images, batch_size: 8}\n"
                    "optim: {lr: 0.1}\n")
    return path


def test_yaml_then_overrides(recipe):
    cfg = load_config(recipe, ["trainer.max_epochs=2", "optim.lr=1e-3", "optim.name=sgd", "model.args.dropout=0.1",
                               "eval.vote_scale=[0.9, 1.1]"])
    assert cfg["data"]["batch_size"] == 8
    assert cfg["trainer"]["max_epochs"] == 2
    assert cfg["optim"]["lr"] == 0.001 and isinstance(cfg["optim"]["lr"], float)  # YAML reads 1e-3 as text
    assert cfg["optim"]["name"] == "sgd"
    assert cfg["model"]["args"] == {"dropout": 0.1}
    assert cfg["eval"]["vote_scale"] == [0.9, 1.1]
    assert cfg["sched"] == DEFAULTS["sched"]


def test_int_accepted_for_float_but_not_bool_for_int(recipe):
    assert load_config(recipe, ["optim.lr=1"])["optim"]["lr"] == 1
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=True must be int"):
        load_config(recipe, ["trainer.max_epochs=true"])


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", r"unknown key 'optim.lrr'; did you mean optim.lr"),
    ("trainer.max_epochs=two", r"trainer.max_epochs='two' must be int"),
    ("optim.name=rmsprop", r"optim.name='rmsprop' must be one of sgd, adam, adamw"),
    ("data.batch_size=0", r"data.batch_size=0 must be positive"),
    ("optim.lr", r"override 'optim.lr' is not key=value"),
    ("model.args=3", r"model.args must be a mapping"),
])
def test_bad_overrides_name_the_key(recipe, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(recipe, [override])


def test_bad_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x}\ndata: {name: y}\ntrainer: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'trainer.epochs'"):
        load_config(path)


def test_missing_file_and_missing_model(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="model.name is not set"):
        load_config(None, ["data.name=synthetic_images"])


def test_resolved_config_round_trips(recipe, tmp_path):
    cfg = load_config(recipe, ["seed=3"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text()) == cfg
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=false") == ("a", False)


def test_every_recipe_in_configs_loads_with_a_registered_model_and_dataset():
    from pathlib import Path

    from dlparts.models import get_model_info
    from dlparts.train.data import DATASETS

    files = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))  # the link to the package's
    assert len(files) >= 12 and [p.stem for p in files] == list_recipes()
    for path in files:
        cfg = load_config(path.stem)  # by bare name, as `dlparts fit --config NAME`
        assert cfg == load_config(path)
        assert get_model_info(cfg["model"]["name"]).name == cfg["model"]["name"]
        assert cfg["data"]["name"] in DATASETS, path.name


def test_a_name_that_is_no_recipe_lists_the_recipes():
    with pytest.raises(DataNotFoundError, match="pointnet2_cls_ssg_cpu_typo does not exist and is not a recipe "
                                                r"name \(one of alexnet_imagenet, "):
        load_config("pointnet2_cls_ssg_cpu_typo")
