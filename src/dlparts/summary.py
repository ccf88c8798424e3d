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
  ``nn.MultiheadAttention`` is counted by formula (projections, ``Q K^T``, ``A V``, softmax).  Matrix products a
  module does with tensors rather than child modules (``q @ k.T``, ``bmm``, ``einsum``,
  ``F.scaled_dot_product_attention``, ``F.linear``) are measured with ``FlopCounterMode`` and put on that module's
  row, 2 FLOPs per MAC.  Elementwise operations outside modules (a functional ``x + y`` in a residual block, a
  softmax by ``tensor.softmax``) are not counted; modules of unknown types are listed in ``uncounted``.
* **Rows**: one per module call that has parameters, a cost or work of its own; :meth:`Summary.at_depth` rolls them
  up to a nesting depth (torchinfo's ``depth``), and the rows of every depth add up to the totals.
* **Activation memory**: the bytes of each layer's output; the total leaves out in-place layers (they reuse their
  input's storage).
* **Receptive field** and **jump** (in input pixels) along the first spatial dimension, for convolution/pooling
  chains; ``None`` once a layer sees the whole input (Linear, global pooling).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import torch
from torch import nn

from dlparts.arith import Field, field_after
from dlparts.errors import ConfigError, ShapeError
from dlparts.layer_costs import _ADAPTIVE, _CONVS, _CONVTS, _POOLS, MatmulTally, layer_cost
from dlparts.meta_run import eval_mode, prepare, shape_only_norms
from dlparts.models.registry import random_inputs
from dlparts.report import SUMMARY_COLUMNS, human_bytes


@dataclass
class LayerRow:
    """One module call. ``params`` are the module's own (not its children's, but including those of child modules
    its forward uses without calling them); shapes include the batch."""

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
class ModuleEntry:
    """One module of the model, called or not: its type, its parameters with its children's (``params``) and
    without (``own``), and the shapes of its last call."""

    type: str
    params: int
    trainable: int
    own: int
    own_trainable: int
    called: bool = False
    input_shape: list[int] | None = None
    output_shape: list[int] | None = None


def _depth(name: str) -> int:
    return 0 if name == "(model)" else name.count(".") + 1


def _ancestor(name: str, depth: int) -> str:
    """The name of ``name``'s ancestor at ``depth`` (itself when it is not deeper)."""
    return ".".join(name.split(".")[:depth]) if depth and name != "(model)" else "(model)"


@dataclass
class Summary:
    """The result of :func:`summarize`: rows in execution order and the totals; ``print(summary)`` prints the table,
    :meth:`at_depth` rolls it up to a nesting depth."""

    model: str
    input_shape: list[int]
    device: str
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    uncounted: list[str] = field(default_factory=list)
    modules: dict[str, ModuleEntry] = field(default_factory=dict, repr=False)
    batch_size: int = 1

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

    def at_depth(self, depth: int | None = None) -> list[LayerRow]:
        """The rows to nesting ``depth`` (``0`` is the model itself, ``None`` every row), as torchinfo's ``depth``:
        the rows nested deeper are rolled up into their ancestor at ``depth``, which then carries everything beneath
        it (parameters of the whole submodule, MACs, FLOPs and the activation bytes of every call beneath, its type
        and its call's shapes).  A module's parameters show on its first row only, so the rows add up to the totals:
        parameters, MACs, FLOPs, and activation bytes of the rows not in place."""
        if depth is not None and depth < 0:
            raise ConfigError(f"depth {depth} must be 0 or more")
        view: list[LayerRow | list[LayerRow]] = []
        key = None
        for row in self.rows:
            if depth is None or row.depth < depth:
                view.append(row)
                key = None
            elif _ancestor(row.name, depth) == key:
                view[-1].append(row)
            else:
                key = _ancestor(row.name, depth)
                view.append([row])
        seen: set[str] = set()
        out = []
        for item in view:
            row = item if isinstance(item, LayerRow) else self._rolled(item, depth)
            if row.name in seen:
                row = dataclasses.replace(row, params=0, trainable=0)
            seen.add(row.name)
            out.append(row)
        return out

    def _rolled(self, rows: list[LayerRow], depth: int) -> LayerRow:
        """One row for the contiguous ``rows`` of one call of the module at ``depth`` that holds them."""
        name = _ancestor(rows[0].name, depth)
        if len(rows) == 1 and rows[0].name == name:
            return rows[0]
        entry = self.modules[name]
        return LayerRow(
            name=name, type=entry.type, depth=depth, input_shape=entry.input_shape or rows[0].input_shape,
            output_shape=entry.output_shape or rows[-1].output_shape, params=entry.params, trainable=entry.trainable,
            macs=sum(r.macs for r in rows), flops=sum(r.flops for r in rows),
            activation_bytes=sum(r.activation_bytes for r in rows if not r.inplace), rf=rows[-1].rf,
            jump=rows[-1].jump, counted=all(r.counted for r in rows))

    def table_rows(self, depth: int | None = None) -> list[list[str]]:
        """The cells of :meth:`at_depth`'s rows under :data:`SUMMARY_COLUMNS`, for a command-line table."""
        return [[r.name, r.type, "x".join(map(str, r.output_shape or [])) or "-", f"{r.params:,}", f"{r.macs:,}",
                 f"{r.flops:,}", "-" if r.rf is None else str(r.rf), human_bytes(r.activation_bytes)]
                for r in self.at_depth(depth)]

    def title(self) -> str:
        return f"{self.model} on {'x'.join(map(str, [self.batch_size, *self.input_shape]))} ({self.device} device)"

    def notes(self) -> list[str]:
        """The totals line and, when some layers are not counted, the line naming them."""
        t = self.totals()
        lines = [f"parameters {t['params']:,} (trainable {t['trainable_params']:,}, frozen {t['frozen_params']:,}; "
                 f"{human_bytes(t['param_bytes'])}); MACs {t['macs']:,}; FLOPs {t['flops']:,}; "
                 f"activations {human_bytes(t['activation_bytes'])}"]
        if self.uncounted:
            lines.append(f"not counted (unknown layer types): {', '.join(self.uncounted)}")
        return lines

    def table(self, depth: int | None = None) -> str:
        """A plain-text table of :meth:`at_depth`'s rows, the title above and :meth:`notes` below."""
        cells = [list(SUMMARY_COLUMNS), *self.table_rows(depth)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(SUMMARY_COLUMNS))]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 for row in cells]
        return "\n".join([self.title(), *lines, *self.notes()])

    def __str__(self) -> str:
        return self.table()

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


# ------------------------------------------------------------------------------------------------- receptive field
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
    """Forward hooks that turn module calls into :class:`LayerRow` s: every leaf, and every module with parameters of
    its own, a cost formula or matrix products of its own (measured by ``tally``); containers with none of these
    leave their totals to their children's rows."""

    def __init__(self, model: nn.Module, tally: MatmulTally):
        self.rows: list[LayerRow] = []
        self.uncounted: set[str] = set()
        self.tally = tally
        self.fields: dict[int, tuple[int | None, Fraction | None]] = {}
        self.keep: list[torch.Tensor] = []  # keeps recorded tensors alive so their ids stay unique during the run
        self.last_field: tuple[int | None, Fraction | None] = (1, Fraction(1))
        self.handles = []
        self.modules: dict[str, ModuleEntry] = {}
        for name, module in model.named_modules():
            name = name or "(model)"
            own, every = list(module.parameters(recurse=False)), list(module.parameters())
            self.modules[name] = ModuleEntry(
                type(module).__name__, sum(p.numel() for p in every), sum(p.numel() for p in every if p.requires_grad),
                sum(p.numel() for p in own), sum(p.numel() for p in own if p.requires_grad))
            self.handles.append(module.register_forward_pre_hook(lambda *_: tally.enter()))
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(mod, inputs, output):
            own_products = self.tally.leave()
            x = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
            out = output if isinstance(output, torch.Tensor) else None
            if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
                out = output[0]
            entry = self.modules[name]
            entry.called = True
            entry.input_shape = list(x.shape) if x is not None else None
            entry.output_shape = list(out.shape) if out is not None else None
            leaf = not any(True for _ in mod.children())
            macs, flops, counted = layer_cost(mod, inputs, out if out is not None else output)
            if not counted and own_products:
                macs, flops, counted = own_products // 2, own_products, True
            if not (leaf or entry.own or counted):
                return
            if leaf and not counted:
                self.uncounted.add(type(mod).__name__)
            if leaf:
                rf, jump = self.fields.get(id(x), self.last_field) if x is not None else self.last_field
                rf, jump = _field_after(mod, x, out, rf, jump)
            else:  # a container's output field is what its children made of it
                rf, jump = self.fields.get(id(out), self.last_field)
            if out is not None:
                self.fields[id(out)] = (rf, jump)
                self.keep.append(out)
            self.last_field = (rf, jump)
            self.rows.append(LayerRow(
                name=name, type=type(mod).__name__, depth=_depth(name),
                input_shape=entry.input_shape, output_shape=entry.output_shape, params=entry.own,
                trainable=entry.own_trainable, macs=macs, flops=flops,
                activation_bytes=(out.numel() * out.element_size()) if out is not None else 0,
                inplace=bool(getattr(mod, "inplace", False)), rf=rf,
                jump=float(jump) if jump is not None else None, counted=counted or not leaf,
            ))

        return hook

    def finish(self) -> None:
        """Remove the hooks; give the parameters of modules the forward never called (``MultiheadAttention`` uses its
        ``out_proj`` weights without calling it) to the first row of their nearest recorded ancestor."""
        for h in self.handles:
            h.remove()
        first: dict[str, LayerRow] = {}
        for row in self.rows:
            first.setdefault(row.name, row)
        for name, entry in self.modules.items():
            if entry.called or not entry.own:
                continue
            ancestors = (_ancestor(name, d) for d in range(_depth(name) - 1, -1, -1))
            row = next((first[a] for a in ancestors if a in first), None)
            if row is not None:
                row.params += entry.own
                row.trainable += entry.own_trainable


def summarize(model: nn.Module, input_shape: Sequence[int] | None = None, *, batch_size: int = 1,
              dtype: torch.dtype = torch.float32, device: str = "auto", inputs: tuple | None = None,
              input_size: Sequence[int] | None = None) -> Summary:
    """Summarize ``model`` on one batch of ``input_shape`` (without the batch dimension, e.g. ``(3, 224, 224)``), or
    of ``input_size`` with the batch first (torchinfo's convention, e.g. ``(1, 3, 224, 224)``).  An ``input_shape``
    the model does not take, but whose first size read as the batch makes one it does, is read that way (the
    summary's ``batch_size`` and ``input_shape`` say how it was read).

    ``device="auto"`` runs on the meta device and falls back to a small real CPU run when the forward reads values;
    ``"meta"`` or ``"cpu"`` force one.  ``inputs`` gives explicit example tensors instead of a shape; without them the
    model's ``example_inputs`` are used where it has them.  The model runs in eval mode with its tensors swapped for
    meta or device copies (a model built on meta is copied and materialized) and is left as it was: hooks removed,
    every submodule's training mode restored, no attribute left behind.
    """
    if input_size is not None:
        if input_shape is not None or len(input_size) < 2:
            raise ConfigError(f"input_size {input_size!r} is the batch then the input shape, given instead of it")
        batch_size, input_shape = int(input_size[0]), input_size[1:]
    if inputs is None:
        if input_shape is None or not len(input_shape) or any(int(s) <= 0 for s in input_shape):
            raise ConfigError(f"input shape {input_shape!r} must be positive sizes without the batch dimension")
        input_shape = [int(s) for s in input_shape]
    if batch_size <= 0:
        raise ConfigError(f"batch size {batch_size} must be positive")
    if device not in ("auto", "meta", "cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not auto, meta, cpu or cuda")
    readings = [(input_shape, batch_size)]
    if inputs is None and input_size is None and batch_size == 1 and len(input_shape) >= 2:
        readings.append((input_shape[1:], input_shape[0]))
    error: Exception | None = None
    for shape, batch in readings:
        for dev in ["meta", "cpu"] if device == "auto" else [device]:
            # data-dependent ops cannot run on meta; a shape the model does not take fails in torch (RuntimeError)
            # or in the model's own checks (ValueError: `n, c, h, w = x.shape`, AssertionError)
            try:
                return _run(model, shape, batch, dtype, torch.device(dev), inputs)
            except (NotImplementedError, RuntimeError, ValueError, AssertionError) as exc:
                error = exc if shape is input_shape else error
    raise ShapeError(f"the model does not run on input shape {input_shape} (a shape without the batch dimension; "
                     f"batch_size gives the batch): {error}") from None


def _run(model, input_shape, batch_size, dtype, device, inputs) -> Summary:
    work, state = prepare(model, device)
    if inputs is None:
        inputs = _example_inputs(model, input_shape, batch_size, device, dtype)
    else:
        inputs = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)
        input_shape = list(inputs[0].shape[1:])
    tally = MatmulTally()
    recorder = _Recorder(work, tally)
    try:
        with eval_mode(work), shape_only_norms(work if device.type == "meta" else None), torch.no_grad(), tally:
            torch.func.functional_call(work, state, inputs) if state else work(*inputs)
    finally:
        recorder.finish()
    params = list(model.parameters())
    return Summary(
        model=type(model).__name__ if getattr(model, "model_info", None) is None else model.model_info.name,
        input_shape=list(input_shape), device=device.type, rows=recorder.rows, batch_size=inputs[0].shape[0],
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        uncounted=sorted(recorder.uncounted), modules=recorder.modules,
    )
