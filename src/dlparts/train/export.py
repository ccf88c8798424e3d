"""Export a trained model to ONNX (checked against PyTorch with onnxruntime) or TorchScript (checked the same way)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlparts.errors import ConfigError


@dataclass
class ExportReport:
    path: Path
    format: str
    inputs: dict[str, list[int]]
    max_abs_diff: float


def example_inputs(module, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's example inputs (``model.example_inputs``) at the run's sizes, by name: ``images [B,3,H,W]``, or
    ``points [B,N,C]`` (plus ``category [B]`` for part segmentation)."""
    info, cfg = module.info, module.cfg
    g = torch.Generator().manual_seed(seed)
    if info["task"] == "image_cls":
        names, shape = ("images",), tuple(info["input_spec"])
    else:
        names, shape = ("points", "category"), (cfg["data"]["num_points"], info["input_spec"][-1])
    return dict(zip(names, module.model.example_inputs(batch, shape, generator=g)))


def export(module, path: str | Path, fmt: str, batch: int = 2) -> ExportReport:
    """Write ``module.model`` (eval mode) to ``path`` as ``onnx`` (batch dimension dynamic) or ``torchscript``, run
    the file on the example inputs and report the largest absolute difference from the PyTorch outputs."""
    model = module.model.eval()
    inputs = example_inputs(module, batch)
    args = tuple(inputs.values())
    with torch.no_grad():
        expected = model(*args).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        got = _onnx(model, args, list(inputs), path)
    elif fmt == "torchscript":
        got = _torchscript(model, args, path)
    else:
        raise ConfigError(f"--format {fmt!r} must be onnx or torchscript")
    diff = float(np.abs(got - expected).max())
    return ExportReport(path, fmt, {k: list(v.shape) for k, v in inputs.items()}, diff)


def _onnx(model, args: tuple, names: list[str], path: Path) -> np.ndarray:
    import onnxruntime

    dynamic = {name: {0: "batch"} for name in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        try:
            torch.onnx.export(model, args, str(path), input_names=names, output_names=["logits"],
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        except Exception as exc:  # an operator without an ONNX form: say which model, keep torch's reason
            raise ConfigError(f"this model cannot be exported to ONNX: {str(exc).splitlines()[0]}") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: a.numpy() for name, a in zip(names, args)})[0]


def _torchscript(model, args: tuple, path: Path) -> np.ndarray:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, args, check_trace=False)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        return loaded(*args).numpy()
