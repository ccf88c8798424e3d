"""Choosing the backend module of a call: by device, or by ``backend=`` / the ``DLPARTS_OPS_BACKEND`` variable.

``"auto"`` (the default) picks ``cpu`` (numba) for CPU tensors and ``cuda`` (Triton) for CUDA tensors.  A backend
whose module cannot be imported (numba or Triton missing or broken) falls back to the reference, with one warning per
backend per process.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

import torch

from dlparts.errors import ConfigError

BACKENDS = ("auto", "reference", "cpu", "cuda")
ENV_VAR = "DLPARTS_OPS_BACKEND"

_loaded: dict[str, ModuleType] = {}
_warned: set[str] = set()


def _load(name: str) -> ModuleType:
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"dlparts.ops.{name}")
        except Exception as exc:  # any import failure (missing package, broken toolchain) means: use the reference
            if name not in _warned:
                _warned.add(name)
                warnings.warn(f"dlparts.ops: the {name!r} backend cannot load ({type(exc).__name__}: {exc}); "
                              "using the plain PyTorch reference instead", RuntimeWarning, stacklevel=4)
            _loaded[name] = importlib.import_module("dlparts.ops.reference")
    return _loaded[name]


def resolve(fn: str, backend: str | None, device: torch.device) -> ModuleType:
    """The backend module for a call on ``device``; ``backend`` None reads ``DLPARTS_OPS_BACKEND`` (default auto)."""
    source = "backend"
    if backend is None:
        backend, source = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", ENV_VAR
    if backend not in BACKENDS:
        raise ConfigError(f"{fn}: {source} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = "cuda" if device.type == "cuda" else "cpu" if device.type == "cpu" else "reference"
    module = _load(backend)
    if module.DEVICE_TYPES and device.type not in module.DEVICE_TYPES:
        raise ConfigError(f"{fn}: {source}={backend!r} runs on {', '.join(module.DEVICE_TYPES)} tensors, "
                          f"got tensors on {device}")
    return module
