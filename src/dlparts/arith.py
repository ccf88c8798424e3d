"""Convolution arithmetic: output sizes, padding, parameters, MACs/FLOPs and receptive fields, over plain integers.

This module is the single source of truth for the formulas (no torch import); ``dlparts.summary`` measures real
modules and is tested against it.  Conventions, following Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (2016), and PyTorch's layer semantics:

* Sizes are per spatial dimension; a layer sees ``in_size`` (i), kernel ``k``, stride ``s``, dilation ``d`` and
  padding ``(lo, hi)`` per side.  The effective kernel is ``k_eff = k + (k - 1)(d - 1)``.
* Convolution: ``o = floor((i + lo + hi - k_eff) / s) + 1``.
* Transposed convolution: ``o = (i - 1) s - (lo + hi) + k_eff + output_padding``.
* Pooling with ``ceil_mode``: ``o = ceil((i + lo + hi - k_eff) / s) + 1``, minus one when the last window would start
  in the right padding (PyTorch's rule).
* ``same`` padding has TensorFlow's semantics for any stride: ``total = max((ceil(i/s) - 1) s + k_eff - i, 0)``,
  split ``lo = total // 2``, ``hi = total - lo`` (the extra pixel at the end).  ``full`` pads ``k_eff - 1`` per side.
* **MACs** are multiply-accumulates of the weighted layers (convolution, linear): one per weight use, bias excluded.
  **FLOPs** count every floating-point operation: ``2 x MACs`` for weighted layers, and for the others (pooling,
  local response normalization, activations, batch norm) the operations listed on each function.  Tools that print
  "FLOPs" for what are MACs are off by two; dlparts always says which unit it prints.
* Receptive field ``r`` and jump ``j`` (distance in input pixels between adjacent outputs) compose as
  ``r_out = r_in + (k_eff - 1) j_in`` and ``j_out = j_in s`` (Araujo et al., "Computing receptive fields of
  convolutional neural networks", Distill 2019).

Layer-spec strings (``"conv(96, k=11, s=4), relu"``) and the named stacks are parsed in :mod:`dlparts.stacks`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, Sequence, Union

from dlparts.errors import ConfigError, ShapeError

PaddingSpec = Union[str, int, Sequence[int], Sequence[Sequence[int]]]

DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}


def dtype_bytes(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


# ------------------------------------------------------------------------------------------------ one dimension at a time
def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``k + (k - 1)(d - 1)``."""
    return kernel + (kernel - 1) * (dilation - 1)


def same_padding(in_size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding ``(lo, hi)``: output ``ceil(i / s)``, the odd pixel on the high side."""
    k_eff = effective_kernel(kernel, dilation)
    total = max((math.ceil(in_size / stride) - 1) * stride + k_eff - in_size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: PaddingSpec, in_sizes: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """Per-dimension ``(lo, hi)`` padding from ``valid``, ``same``, ``full``, an int, per-dim ints or per-side pairs."""
    dims = len(in_sizes)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return tuple((0, 0) for _ in range(dims))
        if mode == "same":
            return tuple(same_padding(i, k, s, d) for i, k, s, d in zip(in_sizes, kernels, strides, dilations))
        if mode == "full":
            return tuple((effective_kernel(k, d) - 1,) * 2 for k, d in zip(kernels, dilations))
        raise ConfigError(f"padding {padding!r} is not valid, same, full, an integer or per-side pairs")
    if isinstance(padding, int):
        pads = [(padding, padding)] * dims
    else:
        items = list(padding)
        if all(isinstance(p, int) for p in items) and len(items) == dims:
            pads = [(p, p) for p in items]
        elif all(isinstance(p, int) for p in items) and len(items) == 2 * dims:
            pads = [(items[2 * n], items[2 * n + 1]) for n in range(dims)]
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 for p in items) and len(items) == dims:
            pads = [(int(p[0]), int(p[1])) for p in items]
        else:
            raise ConfigError(f"padding {padding!r} does not fit {dims} spatial dimension(s)")
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ConfigError(f"padding {padding!r} is negative")
    return tuple(pads)


def conv_output_size(in_size: int, kernel: int, stride: int = 1, padding: tuple[int, int] = (0, 0),
                     dilation: int = 1) -> int:
    """``floor((i + lo + hi - k_eff) / s) + 1``; raises :class:`ShapeError` when the kernel overhangs the input."""
    padded = in_size + padding[0] + padding[1]
    k_eff = effective_kernel(kernel, dilation)
    if k_eff > padded:
        raise ShapeError(
            f"kernel {kernel} (effective {k_eff} with dilation {dilation}) is larger than the padded input "
            f"{in_size}+{padding[0]}+{padding[1]}={padded}"
        )
    return (padded - k_eff) // stride + 1


def transposed_output_size(in_size: int, kernel: int, stride: int = 1, padding: tuple[int, int] = (0, 0),
                           dilation: int = 1, output_padding: int = 0) -> int:
    """``(i - 1) s - (lo + hi) + k_eff + output_padding`` (PyTorch ``ConvTranspose``)."""
    if output_padding < 0 or (output_padding >= stride and output_padding >= dilation):
        raise ShapeError(
            f"output_padding {output_padding} must be smaller than stride {stride} (or dilation {dilation})"
        )
    out = (in_size - 1) * stride - padding[0] - padding[1] + effective_kernel(kernel, dilation) + output_padding
    if out <= 0:
        raise ShapeError(f"transposed convolution output size {out} is not positive (padding {padding} too large)")
    return out


def pool_output_size(in_size: int, kernel: int, stride: int, padding: tuple[int, int] = (0, 0), dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Pooling output size, PyTorch's rule for ``ceil_mode`` included."""
    if not ceil_mode:
        return conv_output_size(in_size, kernel, stride, padding, dilation)
    padded = in_size + padding[0] + padding[1]
    k_eff = effective_kernel(kernel, dilation)
    out = -(-(padded - k_eff) // stride) + 1  # a window may overhang the end, so k_eff > padded can still fit one
    if (out - 1) * stride >= in_size + padding[0]:  # the last window would start in the right padding
        out -= 1
    if out < 1:
        raise ShapeError(f"pooling window {k_eff} leaves no output on the padded input {padded}")
    return out


# ------------------------------------------------------------------------------------------------------------ volumes
@dataclass(frozen=True)
class Volume:
    """A feature volume: ``spatial`` sizes (1-3 dims), ``channels``, optional ``batch``; ``flat`` after flattening."""

    spatial: tuple[int, ...]
    channels: int
    batch: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.spatial) * self.channels * (self.batch or 1)

    def hwc(self) -> str:
        return "x".join(str(v) for v in (*self.spatial, self.channels))

    def chw(self) -> str:
        return "x".join(str(v) for v in (self.channels, *self.spatial))


def parse_volume(text: str, *, channels_first: bool = False, batch: int | None = None) -> Volume:
    """Parse ``"55x55x3"`` (HWC; with ``channels_first`` ``"3x55x55"``); 1-D ``"100x3"`` and 3-D ``"8x32x32x3"`` too."""
    parts = re.split(r"[x×, ]+", text.strip().lower())
    try:
        sizes = [int(p) for p in parts if p]
    except ValueError:
        raise ConfigError(f"input {text!r} is not sizes joined by 'x', e.g. 55x55x3") from None
    if not 2 <= len(sizes) <= 4:
        raise ConfigError(f"input {text!r} needs 1-3 spatial sizes and a channel count, e.g. 55x55x3")
    if any(s <= 0 for s in sizes):
        raise ConfigError(f"input {text!r} has a non-positive size")
    if batch is not None and batch <= 0:
        raise ConfigError(f"batch {batch} must be positive")
    if channels_first:
        return Volume(tuple(sizes[1:]), sizes[0], batch)
    return Volume(tuple(sizes[:-1]), sizes[-1], batch)


# ------------------------------------------------------------------------------------------------------------- layers
def _per_dim(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ConfigError(f"{name} {value!r} must be a whole number or a list of them")
    if len(values) == 1:
        values = values * dims
    if len(values) != dims:
        raise ConfigError(f"{name} {value!r} does not fit {dims} spatial dimension(s)")
    if any(v <= 0 for v in values):
        raise ConfigError(f"{name} {value!r} must be positive")
    return values


@dataclass(frozen=True)
class LayerCost:
    """What one layer does to a volume. ``rf`` and ``jump`` are ``None`` once a layer sees the whole input."""

    kind: str
    output: Volume
    params: int
    macs: int
    flops: int
    padding: tuple[tuple[int, int], ...] = ()
    rf: int | None = None
    jump: Fraction | None = None
    notes: tuple[str, ...] = ()

    def activation_bytes(self, dtype: str = "float32") -> int:
        return self.output.numel * dtype_bytes(dtype)


class Field(NamedTuple):
    """Receptive field ``rf`` (input pixels) and ``jump`` (input pixels between adjacent outputs) along the first
    spatial dimension; both None once a layer mixes every position (a fully connected layer)."""

    rf: int | None = 1
    jump: Fraction | None = Fraction(1)


@dataclass(frozen=True)
class Conv:
    """Convolution (or transposed convolution) with ``filters`` output maps.

    Parameters: ``filters * (C_in / groups) * prod(k)`` weights (+ ``filters`` biases); transposed: ``C_in *
    (filters / groups) * prod(k)`` weights.  MACs: per output element ``(C_in / groups) * prod(k)``; transposed: per
    input element ``(filters / groups) * prod(k)`` (every product the scatter computes, including those that fall in
    the cropped border).
    """

    filters: int
    kernel: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 1
    padding: PaddingSpec = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: bool = True
    transposed: bool = False
    output_padding: int | tuple[int, ...] = 0

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        dims = len(v.spatial)
        k = _per_dim(self.kernel, dims, "kernel")
        s = _per_dim(self.stride, dims, "stride")
        d = _per_dim(self.dilation, dims, "dilation")
        if self.filters <= 0:
            raise ConfigError(f"filters {self.filters} must be positive")
        if self.groups <= 0 or v.channels % self.groups or self.filters % self.groups:
            raise ConfigError(
                f"groups {self.groups} must divide both the input channels {v.channels} and the filters {self.filters}"
            )
        op = (self.output_padding,) * dims if isinstance(self.output_padding, int) else tuple(self.output_padding)
        if self.transposed and isinstance(self.padding, str) and self.padding.lower() != "valid":
            raise ConfigError(f"padding {self.padding!r} is not defined for a transposed convolution; give integers")
        pads = resolve_padding(self.padding, v.spatial, k, s, d)
        if self.transposed:
            out = tuple(transposed_output_size(*a) for a in zip(v.spatial, k, s, pads, d, op))
            weights = v.channels * (self.filters // self.groups) * math.prod(k)
            macs = math.prod(v.spatial) * v.channels * (self.filters // self.groups) * math.prod(k)
        else:
            if any(o != 0 for o in op):
                raise ConfigError("output_padding only applies to a transposed convolution")
            out = tuple(conv_output_size(*a) for a in zip(v.spatial, k, s, pads, d))
            weights = self.filters * (v.channels // self.groups) * math.prod(k)
            macs = math.prod(out) * self.filters * (v.channels // self.groups) * math.prod(k)
        batch = v.batch or 1
        out_v = Volume(out, self.filters, v.batch)
        field_out = field_after(field_in, k[0], s[0], d[0], transposed=self.transposed)
        notes = _padding_notes(pads, self.padding)
        cost = LayerCost("convT" if self.transposed else "conv", out_v, weights + (self.filters if self.bias else 0),
                         macs * batch, 2 * macs * batch, pads, field_out.rf, field_out.jump, notes)
        return cost, field_out


@dataclass(frozen=True)
class Pool:
    """Max or average pooling. FLOPs per output: ``prod(k) - 1`` comparisons (max), ``prod(k)`` adds+divide (avg)."""

    mode: str = "max"
    kernel: int | tuple[int, ...] = 2
    stride: int | tuple[int, ...] | None = None
    padding: PaddingSpec = 0
    dilation: int | tuple[int, ...] = 1
    ceil_mode: bool = False

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        if self.mode not in ("max", "avg"):
            raise ConfigError(f"pooling mode {self.mode!r} is not max or avg")
        dims = len(v.spatial)
        k = _per_dim(self.kernel, dims, "kernel")
        s = _per_dim(self.stride if self.stride is not None else self.kernel, dims, "stride")
        d = _per_dim(self.dilation, dims, "dilation")
        pads = resolve_padding(self.padding, v.spatial, k, s, d)
        for (lo, hi), kk in zip(pads, k):
            if max(lo, hi) > kk // 2 and not (isinstance(self.padding, str) and self.padding.lower() == "same"):
                raise ConfigError(f"pooling padding {(lo, hi)} must be at most half the kernel {kk}")
        out = tuple(pool_output_size(*a, self.ceil_mode) for a in zip(v.spatial, k, s, pads, d))
        out_v = Volume(out, v.channels, v.batch)
        window = math.prod(k)
        flops = out_v.numel * (window - 1 if self.mode == "max" else window)
        field_out = field_after(field_in, k[0], s[0], d[0])
        return LayerCost(f"{self.mode}pool", out_v, 0, 0, flops, pads, field_out.rf, field_out.jump,
                         _padding_notes(pads, self.padding)), field_out


@dataclass(frozen=True)
class LRN:
    """Local response normalization across channels (Krizhevsky et al. 2012, eq. 3), paper constants by default.

    ``b = a / (k + alpha * sum_{n neighbours} a^2) ** beta``.  FLOPs per element, computed directly: ``size`` squares
    and ``size - 1`` adds for the sum, one multiply by alpha, one add of k, one power, one divide: ``2 * size + 3``.
    No parameters; MACs 0 (it is not a weighted layer).
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        if self.size <= 0:
            raise ConfigError(f"LRN size {self.size} must be positive")
        return LayerCost("lrn", v, 0, 0, v.numel * lrn_flops_per_element(self.size), (), field_in.rf,
                         field_in.jump), field_in


def lrn_flops_per_element(size: int) -> int:
    return 2 * size + 3


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalization (Ioffe & Szegedy 2015) at inference, folded to ``y = a x + b`` per channel: 2 FLOPs per
    element, as :mod:`dlparts.summary` counts it.  Parameters ``2 C`` (gamma and beta; the running mean and variance
    are buffers, not parameters); MACs 0."""

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        return LayerCost("bn", v, 2 * v.channels, 0, 2 * v.numel, (), field_in.rf, field_in.jump), field_in


@dataclass(frozen=True)
class Activation:
    """Elementwise activation (ReLU etc.): one FLOP per element, no parameters."""

    name: str = "relu"

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        return LayerCost(self.name, v, 0, 0, v.numel, (), field_in.rf, field_in.jump), field_in


@dataclass(frozen=True)
class Dropout:
    """Dropout: identity at inference (0 FLOPs), no parameters."""

    p: float = 0.5

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        if not 0 <= self.p < 1:
            raise ConfigError(f"dropout probability {self.p} must be in [0, 1)")
        return LayerCost("dropout", v, 0, 0, 0, (), field_in.rf, field_in.jump), field_in


@dataclass(frozen=True)
class Linear:
    """Fully connected layer; flattens its input. ``in * out`` weights (+ ``out`` biases), ``in * out`` MACs."""

    features: int
    bias: bool = True

    def apply(self, v: Volume, field_in: Field = Field()) -> tuple[LayerCost, Field]:
        if self.features <= 0:
            raise ConfigError(f"fc features {self.features} must be positive")
        fan_in = math.prod(v.spatial) * v.channels
        out_v = Volume((), self.features, v.batch)
        macs = fan_in * self.features * (v.batch or 1)
        params = fan_in * self.features + (self.features if self.bias else 0)
        return LayerCost("fc", out_v, params, macs, 2 * macs), Field(None, None)


Layer = Union[Conv, Pool, LRN, BatchNorm, Activation, Dropout, Linear]


def field_after(f: Field, kernel: int, stride: int, dilation: int = 1, transposed: bool = False) -> Field:
    """:class:`Field` after a layer of ``kernel``, ``stride`` and ``dilation`` along one dimension: ``r + (k_eff - 1)
    j`` and ``j s``; a transposed layer's output sees ``ceil(k_eff / s)`` neighbouring inputs and is ``s`` times
    denser (``j / s``).  Only the first spatial dimension is tracked (square layers are the norm)."""
    if f.rf is None:
        return f
    k_eff = effective_kernel(kernel, dilation)
    if transposed:
        return Field(f.rf + (math.ceil(k_eff / stride) - 1) * int(f.jump), f.jump / stride)
    return Field(int(f.rf + (k_eff - 1) * f.jump), f.jump * stride)


def _padding_notes(pads: tuple[tuple[int, int], ...], spec: PaddingSpec) -> tuple[str, ...]:
    if any(lo != hi for lo, hi in pads):
        f_pad = tuple(v for lo, hi in reversed(pads) for v in (lo, hi))  # F.pad lists the last dimension first
        return (f"padding {spec!r} is asymmetric {pads}: PyTorch's padding argument is symmetric, so apply "
                f"F.pad(x, {f_pad}) before a padding=0 layer",)
    return ()
