"""Export a model to ONNX, a ``torch.export`` program or TorchScript, each file loaded back and checked against eager.

ONNX (default): every model, the point operators included, in standard ONNX operators only (opset 17, no custom
domain; :mod:`dlparts.ops.onnx`), with the batch and the number of points dynamic, so the file runs in plain
onnxruntime without torch or dlparts.  ``export``: a ``torch.export`` program (``.pt2``), which needs dlparts imported
to run (its custom ops).  ``torchscript``: ``torch.jit.trace``, kept for old deployments (``torch.jit`` is deprecated).

The check: the written file, loaded back, runs the example inputs of :data:`SEEDS` seeds; the largest absolute
difference of its logits from PyTorch eager must stay within :data:`TOLERANCE` and the argmax labels must be identical,
else :class:`~dlparts.errors.ConfigError`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlparts.errors import ConfigError
from dlparts.train.config import output_folder

FORMATS = {"onnx": ".onnx", "export": ".pt2", "torchscript": ".pt"}
SEEDS = 3
TOLERANCE = 1e-4
# The largest batch of check inputs: they are random clouds or images, run three times.
MAX_BATCH = 1024


@dataclass
class ExportReport:
    """``inputs``: the shapes checked, by input name; ``max_abs_diff``: over every check; ``seeds``: checks run."""

    path: Path
    format: str
    inputs: dict[str, list[int]]
    max_abs_diff: float
    seeds: int


def example_inputs(module, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's example inputs (``model.example_inputs``) at the run's sizes, by name: ``images [B,3,H,W]``, or
    ``points [B,N,C]`` (plus ``category [B]`` for part segmentation)."""
    info, cfg = module.info, module.cfg
    shape = tuple(info["input_spec"]) if info["task"] == "image_cls" else (cfg["data"]["num_points"],
                                                                             info["input_spec"][-1])
    return model_inputs(module.model, info["task"], batch, shape, seed)


def model_inputs(model, task: str, batch: int, shape: tuple[int, ...], seed: int) -> dict[str, torch.Tensor]:
    """``model.example_inputs(batch, shape)`` drawn from ``seed``, by input name."""
    names = ("images",) if task == "image_cls" else ("points", "category")
    return dict(zip(names, model.example_inputs(batch, shape, generator=torch.Generator().manual_seed(seed))))


def metadata(module) -> dict[str, str]:
    """What a deployment needs besides the graph (ONNX ``metadata_props``): task, model, classes; a point model's
    points, channels and ``data`` (JSON of :func:`deployed_data`: a scene model's training blocks, read by the ONNX
    predictor); an image model's preprocessing (``image_size``, ``crop``, and the mean its images are centred with,
    :func:`encode_mean`)."""
    info, cfg = module.info, module.cfg
    meta = {"task": info["task"], "model": cfg["model"]["name"], "classes": json.dumps(list(info["classes"])),
            "input_spec": json.dumps(list(info["input_spec"]))}
    if info["task"] == "image_cls":
        meta |= {"image_size": str(info["image_size"]), "crop": str(info["input_spec"][-1])}
        meta |= encode_mean(image_mean(module))
    else:
        meta |= {"num_points": str(cfg["data"]["num_points"]), "channels": str(info["input_spec"][-1]),
                 "data": json.dumps(deployed_data(cfg))}
    if "categories" in info:
        meta["categories"] = json.dumps(list(info["categories"]))
        meta["parts_of_category"] = json.dumps(info["parts_of_category"])
    return meta


#: The data settings a point deployment reads its inputs with: the training blocks of a scene model (metres) and
#: the label property or table columns of its files.
DEPLOYED_DATA = ("block_size", "stride", "label_field", "columns")


def deployed_data(cfg: dict) -> dict:
    """The :data:`DEPLOYED_DATA` keys a run set (``data`` or ``data.args``), for the ``data`` metadata entry."""
    data = {**cfg["data"], **cfg["data"].get("args", {})}
    return {key: data[key] for key in DEPLOYED_DATA if data.get(key) is not None}


def image_mean(module) -> torch.Tensor:
    """The mean a run's images are centred with: its mean image (``data.args.mean=image``) or its mean colour."""
    return module.extra_state["mean_image" if module.info.get("mean") == "image" else "mean_rgb"]


def encode_mean(mean: torch.Tensor) -> dict[str, str]:
    """A mean image ``[3, S, S]`` or colour ``[3]`` as metadata strings: ``mean`` (base64 of little-endian float32,
    exact) and ``mean_shape`` (JSON); :func:`decode_mean` reads it back."""
    values = mean.detach().cpu().numpy().astype("<f4")
    return {"mean": base64.b64encode(values.tobytes()).decode("ascii"), "mean_shape": json.dumps(list(values.shape))}


def decode_mean(meta: dict[str, str]) -> torch.Tensor:
    """The mean :func:`encode_mean` wrote into ``meta``."""
    values = np.frombuffer(base64.b64decode(meta["mean"]), dtype="<f4")
    return torch.from_numpy(values.reshape(json.loads(meta["mean_shape"])).astype(np.float32))


def export(module, path: str | Path, fmt: str, batch: int = 2) -> ExportReport:
    """Write ``module.model`` to ``path`` in ``fmt`` (a key of :data:`FORMATS`) and check it on :data:`SEEDS` seeds of
    the run's example inputs, ``1 <= batch <= MAX_BATCH``."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"--batch {batch!r} must be an integer in [1, {MAX_BATCH}] (the batch of the check inputs)")
    checks = [example_inputs(module, batch, seed) for seed in range(SEEDS)]
    return export_model(module.model, path, fmt, checks, metadata(module))


def export_model(model: torch.nn.Module, path: str | Path, fmt: str, checks: list[dict[str, torch.Tensor]],
                 meta: dict[str, str] | None = None) -> ExportReport:
    """Write ``model`` (eval mode) traced on ``checks[0]``, load the file back, run every input dict of ``checks``
    through it and compare with eager (:data:`TOLERANCE`, identical argmax)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} must be one of {', '.join(FORMATS)}")
    model = model.eval()
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; give a file, e.g. {path / ('model' + FORMATS[fmt])}")
    output_folder(path.parent, "--output").mkdir(parents=True, exist_ok=True)
    writer = {"onnx": _onnx, "export": _torch_export, "torchscript": _torchscript}[fmt]
    run = writer(model, checks[0], path, meta or {})
    diff = 0.0
    for inputs in checks:
        with torch.no_grad():
            expected = model(*inputs.values()).numpy()
        got = run(inputs)
        diff = max(diff, float(np.abs(got - expected).max()))
        if diff > TOLERANCE or not np.array_equal(got.argmax(-1), expected.argmax(-1)):
            raise ConfigError(f"{path}: the {fmt} file disagrees with PyTorch (max abs difference {diff:.3g}, "
                              f"tolerance {TOLERANCE:g}, labels identical: "
                              f"{np.array_equal(got.argmax(-1), expected.argmax(-1))})")
    return ExportReport(path, fmt, {k: list(v.shape) for k, v in checks[0].items()}, diff, len(checks))


def _dynamic_axes(names: list[str], per_point: bool) -> dict[str, dict[int, str]]:
    """Batch dynamic everywhere; the number of points too (FPS sizes are the model's, not the input's), in the
    logits when they are per point (``[B, N, classes]``)."""
    axes = {name: {0: "batch"} for name in names} | {"logits": {0: "batch"}}
    if "points" in names:
        axes["points"][1] = "num_points"
        if per_point:
            axes["logits"][1] = "num_points"
    return axes


@contextlib.contextmanager
def _silenced():
    """Nothing written to file descriptors 1 and 2 reaches the terminal: the TorchScript-based exporter's C++ side
    prints the whole graph when an operator fails (its ONNX log is left on: ``setup_onnx_logging`` tests the function
    ``_jit_is_onnx_log_enabled`` for truth instead of calling it) and its shape-inference warnings."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _onnx(model, inputs: dict, path: Path, meta: dict[str, str]):
    import onnx
    import onnxruntime

    from dlparts.ops import onnx as ops_onnx

    names = list(inputs)
    with torch.no_grad():
        axes = _dynamic_axes(names, model(*inputs.values()).dim() == 3)
    ops_onnx.register()
    torch.onnx.register_custom_op_symbolic("aten::adaptive_avg_pool2d", _adaptive_avg_pool2d, ops_onnx.OPSET)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _silenced():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(model, tuple(inputs.values()), buffer, input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=ops_onnx.OPSET, dynamo=False)
        except Exception as exc:  # an operator without an ONNX form: keep torch's one-line reason
            raise ConfigError(f"this model cannot be exported to ONNX: {str(exc).splitlines()[0]}") from None
    proto = ops_onnx.inline(onnx.load_from_string(buffer.getvalue()))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, {k: v.numpy() for k, v in feed.items()})[0]


def _adaptive_avg_pool2d(g, x, output_size):
    """``aten::adaptive_avg_pool2d`` for any output size (torch's symbolic takes only divisors of the input size, and
    alexnet_small pools 1x1 to 2x2): one ``ReduceMean`` per output cell over torch's bin ``[floor(i*H/oh),
    ceil((i+1)*H/oh))``, for the static ``H, W`` of an image model."""
    from torch.onnx import symbolic_helper, symbolic_opset9

    oh, ow = symbolic_helper._parse_arg(output_size, "is")
    h, w = symbolic_helper._get_tensor_sizes(x)[2:]
    if h % oh == 0 and w % ow == 0:
        return symbolic_opset9.adaptive_avg_pool2d(g, x, output_size)

    def const(values):
        return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    rows = []
    for i in range(oh):
        cells = []
        for j in range(ow):
            starts, ends = [i * h // oh, j * w // ow], [-(-(i + 1) * h // oh), -(-(j + 1) * w // ow)]
            cell = g.op("Slice", x, const(starts), const(ends), const([2, 3]))  # [B, C, bin_h, bin_w]
            cells.append(g.op("ReduceMean", cell, axes_i=[2, 3], keepdims_i=1))  # [B, C, 1, 1]
        rows.append(g.op("Concat", *cells, axis_i=3))  # [B, C, 1, ow]
    return g.op("Concat", *rows, axis_i=2)  # [B, C, oh, ow]


def _torch_export(model, inputs: dict, path: Path, meta: dict[str, str]):
    dim = torch.export.Dim.AUTO
    shapes = {name: {0: dim, 1: dim} if name == "points" else {0: dim} for name in inputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, tuple(inputs.values()), dynamic_shapes=tuple(shapes.values()))
    torch.export.save(program, str(path), extra_files={"dlparts.json": json.dumps(meta)})
    loaded = torch.export.load(str(path)).module()

    def run(feed):
        with torch.no_grad():
            return loaded(*feed.values()).numpy()
    return run


def _torchscript(model, inputs: dict, path: Path, meta: dict[str, str]):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation: the format is kept on purpose
        traced = torch.jit.trace(model, tuple(inputs.values()), check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))

    def run(feed):
        with torch.no_grad():
            return loaded(*feed.values()).numpy()
    return run
