"""Argument checks of the point operators: each raises a dlparts.errors type naming the function, argument and value.

Checks of shapes, dtypes and devices always run.  Checks of values (finite coordinates, index and length ranges) need
the data, so they are skipped while a tensor has none: on the meta device (:mod:`dlparts.summary`) and while
``torch.compile`` or ``torch.export`` traces (see :func:`tracing`).  Values on the host (CPU tensors, Python lists) are
checked on the host, with messages that name the value at fault.  Values on a GPU are checked on the GPU by
``torch._assert_async`` (see :func:`on_host`): reading them on the host would stall the CPU until the GPU drains and
make the operators impossible to capture in a CUDA graph; a failed device assertion stops the process's CUDA context
with the message.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

from dlparts.errors import ConfigError, ShapeError


# Squared distances are float32; a cloud spanning more than this (squared, summed over the axes) has pairs whose
# squared distance rounds to inf.  Half of float32's largest value leaves room for the rounding of each product and sum.
MAX_SQUARED_SPAN = float(np.finfo(np.float32).max) / 2


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def tracing(t: torch.Tensor) -> bool:
    """Whether ``t`` carries no values to check: a meta tensor, or a trace by ``torch.compile`` / ``torch.export``."""
    return t.is_meta or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def on_host(t: torch.Tensor) -> bool:
    """Whether the values of ``t`` are checked on the host (CPU tensors); elsewhere they are checked on the device."""
    return t.device.type == "cpu"


def require(condition: torch.Tensor, message: str) -> None:
    """A device-side check: ``condition`` (a bool tensor, reduced with ``all``) must hold, else ``message``."""
    torch._assert_async(condition.all(), message)


def tensor(fn: str, name: str, value, *, floating: bool = True) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"{fn}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise ConfigError(f"{fn}: {name} must be a floating-point tensor, got dtype {value.dtype}")
    if not floating and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise ConfigError(f"{fn}: {name} must be an integer tensor, got dtype {value.dtype}")
    return value


def coords(fn: str, name: str, value, batch: int | None = None) -> torch.Tensor:
    """A ``[B, N, 3]`` floating coordinate tensor with N >= 1 (``batch``: the B it must have); its values are checked,
    with those of the tensors it is compared with, by :func:`comparable`."""
    t = tensor(fn, name, value)
    if t.dim() != 3 or t.shape[2] != 3:
        raise ShapeError(f"{fn}: {name} must have shape [B, N, 3], got {_shape(t)}")
    if batch is not None and t.shape[0] != batch:
        raise ShapeError(f"{fn}: {name} has batch size {t.shape[0]} but the first argument has {batch}")
    if t.shape[1] == 0:
        raise ShapeError(f"{fn}: {name} holds no points (shape {_shape(t)})")
    return t


def comparable(fn: str, *clouds: tuple[str, torch.Tensor]) -> None:
    """The coordinates of ``clouds`` (``(name, [B, N, 3] tensor)`` pairs checked by :func:`coords`, on one device) can
    be searched in float32: every value finite after the cast to float32 (float64 beyond its range is refused), and
    the squared distances between any two points of a cloud ``b``, over all the tensors, finite: the float32 kernels
    would otherwise compare infinities and return neighbours in an arbitrary order."""
    if tracing(clouds[0][1]) or clouds[0][1].shape[0] == 0:
        return
    if not on_host(clouds[0][1]):
        _comparable_on_device(fn, clouds)
        return
    largest = 0.0
    for name, t in clouds:
        a = _float32(t)
        low, high = float(a.min()), float(a.max())  # NaN and inf reach these
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ConfigError(_non_finite(fn, name, t))
        largest = max(largest, -low, high)
    if 12.0 * largest * largest > MAX_SQUARED_SPAN:  # a span of 2 * largest on each axis could overflow: look closer
        _check_spans(fn, clouds, [torch.from_numpy(_float32(t)) for _, t in clouds])


def _float32(t: torch.Tensor) -> np.ndarray:
    """The values of the CPU tensor ``t`` as float32, as the index searches see them (numpy, single-threaded: a torch
    op here would wake torch's OpenMP pool, whose spinning threads then compete with the numba kernel that follows)."""
    if t.dtype in (torch.float32, torch.float64):
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused by the caller
            return t.detach().numpy().astype(np.float32, copy=False)
    return t.detach().to(torch.float32).numpy()  # float16 / bfloat16: exact in float32


def _non_finite(fn: str, name: str, t: torch.Tensor) -> str:
    wide = " or beyond the float32 range" if t.dtype == torch.float64 else ""
    return f"{fn}: {name} holds non-finite coordinates (NaN or inf{wide})"


def _spans(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``float64 [B]``: per cloud, the squared extent of the points of all ``tensors`` ``[B, N_i, 3]``, summed over
    the axes."""
    low = torch.stack([t.amin(dim=1) for t in tensors]).amin(dim=0).double()  # [B, 3]
    high = torch.stack([t.amax(dim=1) for t in tensors]).amax(dim=0).double()  # [B, 3]
    return ((high - low) ** 2).sum(dim=1)


def _check_spans(fn: str, clouds, tensors: list[torch.Tensor]) -> None:
    span2 = _spans(tensors)
    bad = (span2 > MAX_SQUARED_SPAN).nonzero()
    if len(bad):
        b = int(bad[0, 0])
        names = " and ".join(name for name, _ in clouds)
        raise ConfigError(f"{fn}: squared distances between the points of {names} overflow float32: cloud {b} spans "
                          f"{float(span2[b]) ** 0.5:.3g} (at most {MAX_SQUARED_SPAN ** 0.5:.3g}); scale the "
                          "coordinates down")


def _comparable_on_device(fn: str, clouds) -> None:
    tensors = [t.detach().to(torch.float32) for _, t in clouds]
    for (name, t), t32 in zip(clouds, tensors):
        require(torch.isfinite(t32), _non_finite(fn, name, t))
    names = " and ".join(name for name, _ in clouds)
    require(_spans(tensors) <= MAX_SQUARED_SPAN,
            f"{fn}: squared distances between the points of {names} overflow float32; scale the coordinates down")


def same_device(fn: str, first: tuple[str, torch.Tensor], *others: tuple[str, torch.Tensor]) -> None:
    for name, t in others:
        if t.device != first[1].device:
            raise ConfigError(f"{fn}: {name} is on {t.device} but {first[0]} is on {first[1].device}")


def integer(fn: str, name: str, value, low: int, high: int | None = None, high_text: str = "") -> int:
    """An int in ``[low, high]``; ``high_text`` explains where the upper bound comes from."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{fn}: {name} must be an integer, got {value!r}")
    value = int(value)
    if value < low:
        raise ConfigError(f"{fn}: {name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{fn}: {name}={value} exceeds {high_text or high}")
    return value


def positive_float(fn: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{fn}: {name} must be a number, got {value!r}")
    value = float(value)
    if not (value > 0.0 and value < float("inf")):
        raise ConfigError(f"{fn}: {name} must be a positive finite number, got {value!r}")
    return value


# The most entries an operator's output may have (16 GiB of int64 indices): beyond it an argument is a mistake.
MAX_OUTPUT_ENTRIES = 1 << 31


def output_size(fn: str, name: str, value: int, shape: tuple[int, ...]) -> None:
    """Refuse ``name=value`` when it would make an output of ``shape`` with more than ``MAX_OUTPUT_ENTRIES``."""
    entries = math.prod(shape)
    if entries > MAX_OUTPUT_ENTRIES:
        raise ConfigError(f"{fn}: {name}={value} would make an output of shape {list(shape)} ({entries:.3g} entries, "
                          f"at most {MAX_OUTPUT_ENTRIES} allowed)")


class Lengths(NamedTuple):
    """Checked cloud sizes: ``values int64 [B]`` on the points' device; ``fewest`` the smallest, when it is known on
    the host without reading the device (``None``: lengths given on a GPU, or being traced)."""

    values: torch.Tensor
    fewest: int | None


def lengths(fn: str, value, batch: int, n: int, device: torch.device) -> Lengths:
    """``int64 [B]`` on ``device`` with ``1 <= lengths[b] <= N``; ``None`` means every cloud has all N points."""
    if value is None:
        return Lengths(torch.full((batch,), n, dtype=torch.int64, device=device), n)
    if isinstance(value, (list, tuple)):
        value = torch.tensor(value)
    t = tensor(fn, "lengths", value, floating=False)
    if t.shape != (batch,):
        raise ShapeError(f"{fn}: lengths must have shape [{batch}] (one per cloud), got {_shape(t)}")
    t = t.to(dtype=torch.int64)
    if tracing(t):
        return Lengths(t.to(device).contiguous(), None)
    if not on_host(t):
        require((t >= 1) & (t <= n), f"{fn}: lengths must lie in [1, {n}] (the number of points)")
        return Lengths(t.to(device).contiguous(), None)
    low, high = int(t.min()), int(t.max())
    if low < 1 or high > n:
        raise ConfigError(f"{fn}: lengths must lie in [1, {n}] (the number of points), got values from {low} to {high}")
    return Lengths(t.to(device).contiguous(), low)


def at_most_fewest(fn: str, name: str, value: int, lens: Lengths, what: str) -> None:
    """``value`` (already checked >= 1) must not exceed any cloud's size; ``what`` names what the size counts."""
    if lens.fewest is not None:
        if value > lens.fewest:
            raise ConfigError(f"{fn}: {name}={value} exceeds the number of {what} ({lens.fewest})")
    elif not tracing(lens.values):
        require(lens.values >= value, f"{fn}: {name}={value} exceeds the number of {what} of a cloud")


def indices(fn: str, name: str, value, batch: int, n: int, device: torch.device) -> torch.Tensor:
    """An int64 index tensor ``[B, ...]`` with every value in ``[0, n)``."""
    t = tensor(fn, name, value, floating=False)
    if t.dim() < 2 or t.shape[0] != batch:
        raise ShapeError(f"{fn}: {name} must have shape [B, ...] with B={batch}, got {_shape(t)}")
    if t.device != device:
        raise ConfigError(f"{fn}: {name} is on {t.device} but the points are on {device}")
    if t.numel() > 0 and not tracing(t) and not on_host(t):
        require((t >= 0) & (t < n), f"{fn}: {name} must lie in [0, {n - 1}]")
    elif t.numel() > 0 and not tracing(t):
        low, high = int(t.min()), int(t.max())
        if low < 0 or high >= n:
            raise ConfigError(f"{fn}: {name} must lie in [0, {n - 1}], got values from {low} to {high}")
    return t.to(torch.int64)
