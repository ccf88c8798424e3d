"""The dataset registry of the engine: one builder per data.name, a name registered once, table-driven adapters."""

import pytest
import torch

from dlparts.errors import ConfigError
from dlparts.train.data import DATASETS, POINT_DATASETS, PointDataset, _point_dataset, build_splits, register_dataset


def _cfg(name: str, **data) -> dict:
    return {"seed": 3, "data": {"name": name, "root": None, "args": {}, "num_points": 128, "val_fraction": 0.25,
                                "transforms": None, "augment": False, **data}}


def test_a_name_is_registered_once():
    with pytest.raises(ConfigError, match="dataset 'modelnet' is already registered"):
        register_dataset("modelnet", DATASETS["synthetic_shapes"])
    assert set(POINT_DATASETS) | {"synthetic_images", "imagefolder", "point_folder", "scene_folder",
                                  "part_folder"} == set(DATASETS)


class _Recorder(torch.utils.data.Dataset):
    """A point dataset that records how the adapter made it."""

    calls: list = []
    classes = ["a", "b"]

    def __init__(self, *args, **kwargs):
        self.calls.append((args, kwargs))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"points": torch.zeros(4, 3), "label": torch.tensor(i % 2)}


def test_adapter_passes_root_seed_and_hold_out_only_when_asked():
    _Recorder.calls = []
    spec = PointDataset(_Recorder, "point_cls", ("normals", "per_class"), root=True, seed=True, val_fraction=True)
    splits = _point_dataset(spec, _cfg("x", root="/data/x", args={"normals": True, "per_class": [1, 2, 3]}))
    assert [(a, {k: v for k, v in kw.items() if k != "transform"}) for a, kw in _Recorder.calls] == [
        (("/data/x", split), {"normals": True, "per_class": (1, 2, 3), "num_points": 128, "seed": 3,
                              "val_fraction": 0.25}) for split in ("train", "test", "val")]
    assert splits.info == {"task": "point_cls", "num_classes": 2, "classes": ["a", "b"], "input_spec": [4, 3]}

    _Recorder.calls = []
    held = _point_dataset(PointDataset(_Recorder, "point_cls", has_val=False), _cfg("x"))
    assert [a for a, _ in _Recorder.calls] == [("train",), ("test",), ("train",)]
    assert all(kw == {"num_points": 128, "transform": None} for _, kw in _Recorder.calls)
    assert (len(held.train), len(held.val)) == (6, 2)  # a quarter of 8 held out for validation


def test_unknown_args_and_missing_root_name_the_dataset():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) fps for data.name=synthetic_shapes"):
        build_splits(_cfg("synthetic_shapes", args={"fps": True}))
    with pytest.raises(ConfigError, match="data.root is not set; data.name=modelnet40_h5"):
        build_splits(_cfg("modelnet40_h5"))
    with pytest.raises(ConfigError, match="data.name='nope' is not one of"):
        build_splits(_cfg("nope"))


def test_embedded_shapes_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path))
    splits = build_splits(_cfg("synthetic_shapes", args={"tiny": True, "per_class": [4, 2, 2]}))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (48, 24, 24)
    assert splits.info["task"] == "point_cls" and splits.info["input_spec"] == [128, 3]
