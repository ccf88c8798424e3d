"""Running a module once on the meta device or a CPU copy for :mod:`dlparts.summary`, and leaving it as it was:
every submodule's training mode restored, no method or attribute left behind."""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from dlparts.layer_costs import _NORMS


def materialize(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with freshly initialized parameters (for models built on the meta device)."""
    model = model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def _same_shape(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return torch.empty_like(x)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
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
def shape_only_norms(model: nn.Module | None):
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


def prepare(model: nn.Module, device: torch.device) -> tuple[nn.Module, dict | None]:
    """The module to run and, when it runs with swapped-in tensors, the state to swap (the model is not copied)."""
    on_meta = any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    if device.type == "meta":
        state = {n: torch.empty_like(t, device="meta") for n, t in (*model.named_parameters(), *model.named_buffers())}
        return model, state
    if on_meta:
        return materialize(copy.deepcopy(model)).to(device), None
    state = {n: t.to(device) for n, t in (*model.named_parameters(), *model.named_buffers())}
    return model, state
