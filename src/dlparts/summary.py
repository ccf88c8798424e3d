"""Model summaries: per-layer shapes, parameters, MACs/FLOPs, receptive field and activation memory of any module.

The model runs once with forward hooks on every module.  By default it runs on the **meta device**: tensors carry
shapes but no data, so a 224x224 AlexNet costs milliseconds and no activation memory.  Models whose forward reads
values (farthest point sampling, ball query) cannot run on meta; they are re-materialized on the CPU with fresh
parameters and run on one small random input of the requested shape.

Units, as in :mod:`dlparts.arith` (whose formulas the tests hold these counts to):

* **MACs**: multiply-accumulates of weighted layers (Conv1d/2d/3d, transposed convolutions, Linear), bias excluded.
* **FLOPs**: ``2 x MACs`` for weighted layers, plus the other layers' operations: pooling (``window - 1``
  comparisons or ``window`` adds per output), local response normalization (``2 n + 3`` per element), batch norm
  (2 per element at inference), elementwise activations (1 per element), softmax (3 per element), and whatever a
  module reports through ``dlparts_cost(inputs, output)`` (sampling, grouping, interpolation in point networks).
  Operations done outside modules (a functional ``x + y`` in a residual block) are not seen and not counted.
* **Activation memory**: the bytes of each layer's output; the total leaves out in-place layers (they reuse their
  input's storage).
* **Receptive field** and **jump** (in input pixels) along the first spatial dimension, for convolution/pooling
  chains; ``None`` once a layer sees the whole input (Linear, global pooling).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import torch
from torch import nn

from dlparts.arith import Field, field_after, lrn_flops_per_element
from dlparts.errors import ConfigError, ShapeError
from dlparts.models.registry import random_inputs

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
          nn.InstanceNorm3d)
_FREE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten,
         nn.Unflatten, nn.Embedding)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVTS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


@dataclass
class LayerRow:
    """One module call. ``params`` are the module's own (not its children's); shapes include the batch."""

    name: str
    type: str
    depth: int
    input_shape: list[int] | None
    output_shape: list[int] | None
    params: int
    trainable: int
    macs: int
    flops: int
    activation_bytes: int
    inplace: bool = False
    rf: int | None = None
    jump: float | None = None
    counted: bool = True


@dataclass
class Summary:
    """The result of :func:`summarize`: rows in execution order and the totals."""

    model: str
    input_shape: list[int]
    device: str
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    uncounted: list[str] = field(default_factory=list)

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows if not r.inplace)

    def totals(self) -> dict[str, Any]:
        return {
            "params": self.total_params, "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params, "param_bytes": self.param_bytes, "macs": self.macs,
            "flops": self.flops, "activation_bytes": self.activation_bytes,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input_shape": self.input_shape, "device": self.device,
                "units": {"macs": "multiply-accumulates", "flops": "floating-point operations (2 per MAC)"},
                "layers": [asdict(r) for r in self.rows], "totals": self.totals(), "uncounted": self.uncounted}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        names = list(LayerRow.__dataclass_fields__)
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for row in self.rows:
            writer.writerow(asdict(row))
        writer.writerow({"name": "TOTAL", "params": self.total_params, "trainable": self.trainable_params,
                         "macs": self.macs, "flops": self.flops, "activation_bytes": self.activation_bytes})
        return out.getvalue()


# ---------------------------------------------------------------------------------------------------------- the counts
def _pool_window(module: nn.Module, dims: int) -> int:
    k = module.kernel_size
    return math.prod((k,) * dims if isinstance(k, int) else k)


def layer_cost(module: nn.Module, inputs: tuple, output: Any) -> tuple[int, int, bool]:
    """``(macs, flops, counted)`` of one call of a leaf ``module``; ``counted`` is False for unknown types."""
    x = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
    out = output if isinstance(output, torch.Tensor) else None
    in_n, out_n = (x.numel() if x is not None else 0), (out.numel() if out is not None else 0)
    if hasattr(module, "dlparts_cost"):
        cost = module.dlparts_cost(inputs, output)
        return int(cost.get("macs", 0)), int(cost.get("flops", 2 * cost.get("macs", 0))), True
    if isinstance(module, _CONVS):
        macs = out_n * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return macs, 2 * macs, True
    if isinstance(module, _CONVTS):
        macs = in_n * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return macs, 2 * macs, True
    if isinstance(module, nn.Linear):
        macs = out_n * module.in_features
        return macs, 2 * macs, True
    if isinstance(module, _POOLS):
        dims = x.dim() - 2
        window = _pool_window(module, dims)
        return 0, out_n * (window - 1 if "Max" in type(module).__name__ else window), True
    if isinstance(module, _ADAPTIVE):
        return 0, in_n, True
    if all(hasattr(module, a) for a in ("size", "alpha", "beta", "k")):  # LRN, torch's or the paper's
        return 0, out_n * lrn_flops_per_element(int(module.size)), True
    if isinstance(module, _NORMS):
        return 0, 2 * out_n, True
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return 0, 5 * out_n, True
    if isinstance(module, _ACTIVATIONS):
        return 0, out_n, True
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return 0, 3 * out_n, True
    if isinstance(module, _FREE):
        return 0, 0, True
    return 0, 0, False


def _first(value) -> int:
    return value if isinstance(value, int) else value[0]


def _field_after(module: nn.Module, x: torch.Tensor | None, out: Any, rf: int | None, jump: Fraction | None):
    """Receptive field and jump after ``module`` along the first spatial dimension."""
    if rf is None:
        return None, None
    if isinstance(module, nn.Linear) and x is not None and x.dim() == 2:
        return None, None
    if isinstance(module, (*_CONVS, *_POOLS, *_CONVTS)):
        k, s, d = (_first(getattr(module, a, 1)) for a in ("kernel_size", "stride", "dilation"))
        return field_after(Field(rf, jump), k, s, d, transposed=isinstance(module, _CONVTS))
    if isinstance(module, _ADAPTIVE) and isinstance(out, torch.Tensor) and x is not None:
        i, o = x.shape[2], out.shape[2]
        if o == i:
            return rf, jump
        if o == 1:
            return None, None
        stride = i // o
        return field_after(Field(rf, jump), i - (o - 1) * stride, stride)  # the adaptive window: i - (o - 1) s
    return rf, jump


# ---------------------------------------------------------------------------------------------------------- the runner
def _example_inputs(model: nn.Module, input_shape: Sequence[int], batch_size: int, device: torch.device,
                    dtype: torch.dtype) -> tuple:
    """The model's own example inputs (``model.example_inputs``, which adds e.g. part segmentation's category) of
    ``input_shape``, or one random tensor for any other module; seeded, so that CPU runs repeat."""
    gen = torch.Generator().manual_seed(0)
    make = getattr(model, "example_inputs", None)
    if make is not None:
        return make(batch_size, tuple(input_shape), device=device, dtype=dtype, generator=gen)
    return random_inputs(batch_size, tuple(input_shape), device=device, dtype=dtype, generator=gen)


class _Recorder:
    """Forward hooks that turn each module call into a :class:`LayerRow`."""

    def __init__(self, model: nn.Module, dtype_bytes: int):
        self.rows: list[LayerRow] = []
        self.uncounted: set[str] = set()
        self.dtype_bytes = dtype_bytes
        self.fields: dict[int, tuple[int | None, Fraction | None]] = {}
        self.keep: list[torch.Tensor] = []  # keeps recorded tensors alive so their ids stay unique during the run
        self.last_field: tuple[int | None, Fraction | None] = (1, Fraction(1))
        self.handles = []
        self.own: dict[int, tuple[int, int]] = {}
        for name, module in model.named_modules():
            params = list(module.parameters(recurse=False))
            self.own[id(module)] = (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
            leaf = not any(True for _ in module.children())
            if leaf or params or hasattr(module, "dlparts_cost"):
                self.handles.append(module.register_forward_hook(self._hook(name or "(model)", module)))

    def _hook(self, name: str, module: nn.Module):
        def hook(mod, inputs, output):
            x = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
            out = output if isinstance(output, torch.Tensor) else None
            if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
                out = output[0]
            leaf = not any(True for _ in mod.children())
            if leaf or hasattr(mod, "dlparts_cost"):
                macs, flops, counted = layer_cost(mod, inputs, out if out is not None else output)
            else:
                macs, flops, counted = 0, 0, False
            if leaf and not counted:
                self.uncounted.add(type(mod).__name__)
            rf, jump = self.fields.get(id(x), self.last_field) if x is not None else self.last_field
            rf, jump = _field_after(mod, x, out, rf, jump)
            if out is not None:
                self.fields[id(out)] = (rf, jump)
                self.keep.append(out)
            self.last_field = (rf, jump)
            own, trainable = self.own[id(mod)]
            self.rows.append(LayerRow(
                name=name, type=type(mod).__name__, depth=name.count(".") + (name != "(model)"),
                input_shape=list(x.shape) if x is not None else None,
                output_shape=list(out.shape) if out is not None else None,
                params=own, trainable=trainable,
                macs=macs, flops=flops,
                activation_bytes=(out.numel() * out.element_size()) if out is not None else 0,
                inplace=bool(getattr(mod, "inplace", False)), rf=rf,
                jump=float(jump) if jump is not None else None, counted=counted or not leaf,
            ))

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _materialize(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with freshly initialized parameters (for models built on the meta device)."""
    model = model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def summarize(model: nn.Module, input_shape: Sequence[int] | None = None, *, batch_size: int = 1,
              dtype: torch.dtype = torch.float32, device: str = "auto", inputs: tuple | None = None) -> Summary:
    """Summarize ``model`` on one batch of ``input_shape`` (without the batch dimension, e.g. ``(3, 224, 224)``).

    ``device="auto"`` runs on the meta device and falls back to a small real CPU run when the forward reads values;
    ``"meta"`` or ``"cpu"`` force one.  ``inputs`` gives explicit example tensors instead of a shape; without them the
    model's ``example_inputs`` are used where it has them.  The model runs in eval mode with its tensors swapped for
    meta or device copies (a model built on meta is copied and materialized) and is left as it was: hooks removed,
    every submodule's training mode restored, no attribute left behind.
    """
    if inputs is None:
        if input_shape is None or not len(input_shape) or any(int(s) <= 0 for s in input_shape):
            raise ConfigError(f"input shape {input_shape!r} must be positive sizes without the batch dimension")
        input_shape = [int(s) for s in input_shape]
    if batch_size <= 0:
        raise ConfigError(f"batch size {batch_size} must be positive")
    if device not in ("auto", "meta", "cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not auto, meta, cpu or cuda")
    attempts = ["meta", "cpu"] if device == "auto" else [device]
    error: Exception | None = None
    for dev in attempts:
        try:
            return _run(model, input_shape, batch_size, dtype, torch.device(dev), inputs)
        except (NotImplementedError, RuntimeError) as exc:  # data-dependent ops cannot run on meta
            error = exc
    raise ShapeError(f"the model does not run on input shape {input_shape}: {error}") from None


def _run(model, input_shape, batch_size, dtype, device, inputs) -> Summary:
    work, state = _prepare(model, device)
    if inputs is None:
        inputs = _example_inputs(model, input_shape, batch_size, device, dtype)
    else:
        inputs = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)
        input_shape = list(inputs[0].shape[1:])
    recorder = _Recorder(work, torch.empty((), dtype=dtype).element_size())
    try:
        with _eval_mode(work), _shape_only_norms(work if device.type == "meta" else None), torch.no_grad():
            torch.func.functional_call(work, state, inputs) if state else work(*inputs)
    finally:
        recorder.remove()
    params = list(model.parameters())
    return Summary(
        model=type(model).__name__ if getattr(model, "model_info", None) is None else model.model_info.name,
        input_shape=list(input_shape), device=device.type, rows=recorder.rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        uncounted=sorted(recorder.uncounted),
    )


def _same_shape(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return torch.empty_like(x)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Every submodule in eval mode for the run, then back to its own mode (``model.train(was)`` would give every
    submodule the root's mode)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _shape_only_norms(model: nn.Module | None):
    """On meta, normalization layers run through slow Python decompositions although their output has the input's
    shape; give them a shape-only forward for this run (their hooks still fire and are counted), then restore what
    each had (an instance ``forward`` of the caller's own is kept)."""
    kinds = (*_NORMS, nn.LayerNorm, nn.GroupNorm)
    norms = [] if model is None else [m for m in model.modules() if isinstance(m, kinds)]
    own = [(m, vars(m).get("forward")) for m in norms]
    for module in norms:
        module.forward = _same_shape
    try:
        yield
    finally:
        for module, forward in own:
            if forward is None:
                del module.forward
            else:
                module.forward = forward


def _prepare(model: nn.Module, device: torch.device) -> tuple[nn.Module, dict | None]:
    """The module to run and, when it runs with swapped-in tensors, the state to swap (the model is not copied)."""
    on_meta = any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    if device.type == "meta":
        state = {n: torch.empty_like(t, device="meta") for n, t in (*model.named_parameters(), *model.named_buffers())}
        return model, state
    if on_meta:
        return _materialize(copy.deepcopy(model)).to(device), None
    state = {n: t.to(device) for n, t in (*model.named_parameters(), *model.named_buffers())}
    return model, state
