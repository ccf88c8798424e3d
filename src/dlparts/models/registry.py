"""The model registry: builders registered by name with the paper's metadata.

``register_model`` records a builder and its :class:`ModelInfo`; ``create_model`` builds one by name and attaches the
info to the module as ``model.model_info``.  Registering a name twice is refused, so a typo cannot silently replace a
model.  Families live one per file in ``dlparts/models/``; the package ``dlparts.models``, which Python imports
before this module, imports them all, so every builder is registered before any lookup.

Every registered model has one interface (timm's), so that no other layer needs to know a family:

* ``forward(*inputs)``: logits; ``forward_features(*inputs)`` then ``forward_head(features, pre_logits=False)``
  compute the same in two steps;
* ``reset_classifier(num_classes)``: a fresh last layer;
* ``example_inputs(batch=1, shape=None, *, device=None, dtype=torch.float32, generator=None)``: a tuple of random
  inputs that ``forward`` takes (``shape`` is one sample's, default the model's own; see :func:`random_inputs`);
* optional: ``regularization_loss()`` (a term the training loss adds) and ``critical_points(points)`` (the points
  that decide a global max-pooled feature, which the test plots draw).

Builders take their own variant arguments (e.g. PointNet++'s ``variant`` table), so the engine only passes them on.
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from dlparts.errors import ModelNotFoundError, RegistryError

TASKS = ("image_cls", "point_cls", "point_partseg", "point_semseg")


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is and what it must count.

    ``num_params`` is the exact parameter count of the model built with its default arguments; tests check it against
    ``sum(p.numel())``, ``dlparts.summary`` and, where the layers are plain convolutions, ``dlparts.arith``.
    ``input_spec`` describes one sample without the batch dimension, e.g. ``(3, 227, 227)`` for images or
    ``(1024, 3)`` for a point cloud of 1024 xyz points.  ``extra`` holds what only some models have:
    ``num_categories`` (part segmentation), ``recipe`` (the name of the shipped training recipe, for
    ``dlparts.train.config.load_config``), ``variant`` (the table row a model was built with).
    """

    name: str
    family: str
    task: str
    paper: str
    num_params: int
    input_spec: tuple[int, ...]
    num_classes: int
    extra: dict[str, Any] = field(default_factory=dict)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_INFOS: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    family: str,
    task: str,
    paper: str,
    num_params: int,
    input_spec: tuple[int, ...],
    num_classes: int,
    **extra: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name``."""
    if task not in TASKS:
        raise RegistryError(f"model {name!r}: task must be one of {', '.join(TASKS)}, got {task!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise RegistryError(f"model name {name!r} is already registered (by {_BUILDERS[name].__module__})")
        _BUILDERS[name] = builder
        _INFOS[name] = ModelInfo(name, family, task, paper, num_params, tuple(input_spec), num_classes, dict(extra))
        return builder

    return decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style filter such as ``"pointnet2_*"``."""
    names = sorted(_BUILDERS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_model_info(name: str) -> ModelInfo:
    if name not in _INFOS:
        raise ModelNotFoundError(_unknown(name))
    return _INFOS[name]


def builder_arguments(name: str) -> tuple[str, ...] | None:
    """The keyword arguments that the builder of ``name`` takes; ``None`` when it takes any (``**kwargs``)."""
    get_model_info(name)
    params = inspect.signature(_BUILDERS[name]).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its builder (e.g. ``num_classes=10``).

    A model built with a ``variant`` (another table row of its family) carries its own parameter count and the
    variant in ``model.model_info`` (``num_params`` and ``extra["variant"]``).
    """
    info = get_model_info(name)
    try:
        model = _BUILDERS[name](**kwargs)
    except TypeError as exc:
        raise RegistryError(f"model {name!r}: {exc}") from None
    if kwargs.get("variant") is not None:
        info = replace(info, num_params=sum(p.numel() for p in model.parameters()),
                       extra={**info.extra, "variant": kwargs["variant"]})
    model.model_info = info
    return model


def create_model_for_counting(name: str, **kwargs: Any) -> nn.Module:
    """Build ``name`` on the meta device (no memory, no init cost) when its builder allows it, else on the CPU.

    Builders that place parts on explicit devices (``alexnet_paper_split``) cannot be built on meta.
    """
    try:
        with torch.device("meta"):
            return create_model(name, **kwargs)
    except (NotImplementedError, RuntimeError):
        return create_model(name, **kwargs)


def random_inputs(batch: int, shape: tuple[int, ...], *, categories: int = 0,
                  device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """The example inputs of the model interface: ``x [batch, *shape]`` uniform in ``[-1, 1)`` and, when
    ``categories > 0``, a category index ``int64 [batch]`` below it (part segmentation's second input).  On the meta
    device the tensors carry shapes only."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "meta":
        x = torch.empty(batch, *shape, device=device, dtype=dtype)
        return (x, torch.empty(batch, device=device, dtype=torch.long)) if categories else (x,)
    x = (torch.rand(batch, *shape, generator=generator, dtype=dtype) * 2 - 1).to(device)  # [B, *shape]
    if not categories:
        return (x,)
    return x, torch.randint(0, categories, (batch,), generator=generator).to(device)  # [B]


def _unknown(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(_BUILDERS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `dlparts models` lists them"
    return f"unknown model {name!r}{hint}"
