"""Prediction's model without Lightning: ``TaskModel`` holds what a task's Lightning module holds for inference (the
same state_dict keys, the same outputs), and ``dlparts predict`` runs without importing Lightning, torchmetrics or
``torch._dynamo`` (eager calls of the point operators skip their custom ops), nor what a point classification does not
use (Pillow, matplotlib, the datasets, a progress bar for one file)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from dlparts.errors import ConfigError
from dlparts.train.config import load_config
from dlparts.train.inference import TaskModel

PARTSEG_CFG = ["model.name=pointnet_partseg", "data.name=synthetic_parts", "data.num_points=64"]
PARTSEG_INFO = {"task": "point_partseg", "num_classes": 4, "classes": ["wing", "body", "seat", "leg"],
                "categories": ["plane", "chair"], "parts_of_category": {"0": [0, 1], "1": [2, 3]},
                "input_spec": [64, 3]}
CLS_CFG = ["model.name=pointnet_cls", "data.name=synthetic_shapes", "data.num_points=64"]
CLS_INFO = {"task": "point_cls", "num_classes": 3, "classes": ["ball", "box", "rod"], "input_spec": [64, 3]}
#: Modules that a point classification's ``dlparts predict`` on one file must not import.
NOT_FOR_PREDICT = ("lightning", "torchmetrics", "torch._dynamo", "PIL", "matplotlib", "rich.progress",
                   "dlparts.data.imagefolder", "dlparts.data.modelnet", "dlparts.data.synthetic", "dlparts.viz")


def test_task_model_loads_a_lightning_module_state_and_predicts_the_same():
    from dlparts.train.modules import build_module

    cfg = load_config(None, PARTSEG_CFG)
    torch.manual_seed(0)
    trained = build_module(cfg, PARTSEG_INFO).eval()
    model = TaskModel(cfg, PARTSEG_INFO).eval()
    model.load_state_dict(trained.state_dict())  # strict: the same keys
    batch = {"points": torch.rand(2, 64, 3, generator=torch.Generator().manual_seed(1)),
             "category": torch.tensor([0, 1])}
    with torch.no_grad():
        logits, expected = model(batch), trained(batch)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    parts = model.predict_parts(logits, batch["category"])  # [B, N]
    assert torch.equal(parts, trained.predict_parts(expected, batch["category"]))
    assert set(parts[0].tolist()) <= {0, 1} and set(parts[1].tolist()) <= {2, 3}  # each category's own parts


def test_task_model_refuses_an_unknown_task():
    with pytest.raises(ConfigError, match="task 'point_regression' is not one of point_cls, "):
        TaskModel(load_config(None, CLS_CFG), {**CLS_INFO, "task": "point_regression"})


def test_predict_imports_only_what_it_needs(tmp_path):
    cfg = load_config(None, CLS_CFG)
    ckpt = tmp_path / "cls.ckpt"
    torch.save({"hyper_parameters": {"cfg": cfg, "info": CLS_INFO},
                "state_dict": TaskModel(cfg, CLS_INFO).state_dict()}, ckpt)
    xyz = np.random.default_rng(0).normal(size=(100, 3))
    np.savetxt(tmp_path / "ball.xyz", xyz / np.linalg.norm(xyz, axis=1, keepdims=True))
    code = (f"import sys; from dlparts.cli import main; code = main(['predict', '--ckpt', {str(ckpt)!r}, "
            f"{str(tmp_path / 'ball.xyz')!r}]); "
            f"print([m for m in {NOT_FOR_PREDICT!r} if m in sys.modules]); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'ball.xyz'}: ") and "%" in lines[0]  # top classes
    assert lines[-1] == "[]"
