"""Layer stacks: :func:`apply_stack` runs :mod:`dlparts.arith`'s layers over a volume (one row per layer, totals),
:func:`parse_stack` reads them from text (``"conv(96, k=11, s=4), relu, maxpool(k=3, s=2)"``) or YAML lists (a file:
:func:`read_stack_file`), and ``STACKS`` names the AlexNet paper's net and torchvision's AlexNet.  The sizes and
padding of ``dlparts conv``'s options are read here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from dlparts.arith import (LRN, Activation, BatchNorm, Conv, Dropout, Field, Layer, LayerCost, Linear, Pool, Volume,
                           dtype_bytes)
from dlparts.errors import ConfigError, DataNotFoundError, ShapeError


@dataclass(frozen=True)
class StackRow:
    """Layer ``index`` (1-based) of a stack, its spec text and its cost."""

    index: int
    spec: str
    cost: LayerCost


@dataclass
class StackReport:
    """A stack of layers applied to an input volume: one row per layer and the totals."""

    input: Volume
    rows: list[StackRow] = field(default_factory=list)
    dtype: str = "float32"

    @property
    def params(self) -> int:
        return sum(r.cost.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.cost.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return sum(r.cost.flops for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return sum(r.cost.activation_bytes(self.dtype) for r in self.rows)

    @property
    def output(self) -> Volume:
        return self.rows[-1].cost.output if self.rows else self.input


def apply_stack(layers: Iterable[tuple[str, Layer]], volume: Volume, dtype: str = "float32") -> StackReport:
    """Run ``(spec_text, layer)`` pairs over ``volume``; errors name the layer (1-based) and its spec."""
    dtype_bytes(dtype)
    report = StackReport(volume, dtype=dtype)
    v, f = volume, Field()
    for n, (text, layer) in enumerate(layers, start=1):
        try:
            cost, f = layer.apply(v, f)
        except (ConfigError, ShapeError) as exc:
            raise type(exc)(f"layer {n} ({text}) on input {v.hwc()}: {exc}") from None
        report.rows.append(StackRow(n, text, cost))
        v = cost.output
    return report


_LAYER_RE = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$", re.IGNORECASE | re.DOTALL)
_KEYS = {
    "k": "kernel", "kernel": "kernel", "s": "stride", "stride": "stride", "p": "padding", "pad": "padding",
    "padding": "padding", "d": "dilation", "dilation": "dilation", "g": "groups", "groups": "groups",
    "bias": "bias", "op": "output_padding", "output_padding": "output_padding", "ceil": "ceil_mode",
    "ceil_mode": "ceil_mode", "n": "size", "size": "size", "alpha": "alpha", "beta": "beta", "p_drop": "p",
}


def _parse_value(text: str):
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if "x" in low and re.fullmatch(r"\d+(x\d+)+", low):
        return tuple(int(p) for p in low.split("x"))
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def parse_layer(text: str) -> Layer:
    """One layer from text: ``conv(96, k=11, s=4)``, ``conv(256, k=5, p=same, g=2)``, ``convT(64, k=4, s=2, p=1)``,
    ``maxpool(k=3, s=2)``, ``avgpool(2)``, ``lrn`` / ``lrn(n=5, alpha=1e-4, beta=0.75, k=2)``, ``bn``, ``relu``,
    ``dropout(0.5)``, ``fc(4096)``.  Sizes may be ``3x5``; padding may be valid, same, full or an integer."""
    m = _LAYER_RE.match(text)
    if not m:
        raise ConfigError(f"layer spec {text!r} is malformed; expected e.g. conv(96, k=11, s=4)")
    name, arg_text = m.group(1).lower(), (m.group(2) or "").strip()
    positional, kwargs = [], {}
    for part in filter(None, (a.strip() for a in arg_text.split(",")) if arg_text else ()):
        if "=" in part:
            key, _, val = part.partition("=")
            key = key.strip().lower()
            if name == "lrn" and key == "k":
                kwargs["k"] = _parse_value(val)
                continue
            if key not in _KEYS:
                raise ConfigError(f"layer spec {text!r}: unknown option {key!r}")
            kwargs[_KEYS[key]] = _parse_value(val)
        else:
            positional.append(_parse_value(part))
    try:
        return _build_layer(name, positional, kwargs)
    except TypeError as exc:
        raise ConfigError(f"layer spec {text!r}: {exc}") from None


def _build_layer(name: str, positional: list, kwargs: dict) -> Layer:
    if name in ("conv", "convt", "deconv"):
        if len(positional) != 1 or not isinstance(positional[0], int):
            raise ConfigError(f"{name} needs the number of filters first, e.g. {name}(96, k=11, s=4)")
        return Conv(positional[0], transposed=name != "conv", **kwargs)
    if name in ("maxpool", "avgpool", "pool"):
        if positional:
            kwargs.setdefault("kernel", positional[0])
        return Pool("avg" if name == "avgpool" else "max", **kwargs)
    if name == "lrn":
        return LRN(*positional, **kwargs)
    if name in ("fc", "linear", "dense"):
        if len(positional) != 1 or not isinstance(positional[0], int):
            raise ConfigError(f"{name} needs the number of output features, e.g. fc(4096)")
        return Linear(positional[0], **kwargs)
    if name in ("bn", "batchnorm"):
        return BatchNorm(*positional, **kwargs)
    if name in ("relu", "tanh", "sigmoid", "gelu", "leaky_relu"):
        return Activation(name)
    if name == "dropout":
        return Dropout(*positional, **kwargs)
    known = "conv, convT, maxpool, avgpool, lrn, bn, relu, dropout, fc"
    raise ConfigError(f"unknown layer type {name!r}; known: {known}")


def split_spec(spec: str) -> list[str]:
    """Split a stack spec at top-level commas, semicolons, newlines or ``->``."""
    parts, depth, current = [], 0, ""
    for ch in spec.replace("->", ";"):
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            raise ConfigError(f"stack spec has an unmatched ')': {spec!r}")
        if ch in ",;\n" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise ConfigError(f"stack spec has an unmatched '(': {spec!r}")
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_stack(spec: str | Sequence) -> list[tuple[str, Layer]]:
    """A stack from a spec string (or a named stack in :data:`STACKS`) or a list of layer strings / dicts (YAML)."""
    if isinstance(spec, str):
        spec = STACKS.get(spec.strip().lower(), spec)
        items: Sequence = split_spec(spec)
    else:
        items = spec
    layers = []
    for item in items:
        if isinstance(item, dict):
            item = dict(item)
            kind = str(item.pop("type", item.pop("layer", ""))).lower()
            pos = [item.pop(key)] if (key := next((k for k in ("filters", "features") if k in item), None)) else []
            text = f"{kind}({', '.join([*map(str, pos), *(f'{k}={v}' for k, v in item.items())])})"
            kwargs = {(k if kind == "lrn" and k == "k" else _KEYS.get(k, k)): tuple(v) if isinstance(v, list) else v
                      for k, v in item.items()}
            try:
                layers.append((text, _build_layer(kind, pos, kwargs)))
            except TypeError as exc:
                raise ConfigError(f"layer {text!r}: {exc}") from None
        elif isinstance(item, str):
            layers.append((item, parse_layer(item)))
        else:
            raise ConfigError(f"layer {item!r} is neither a spec string nor a mapping")
    if not layers:
        raise ConfigError("the stack has no layers")
    return layers


def read_stack_file(path: str | Path) -> list:
    """The layers of a YAML stack file: a list of layer strings or mappings, or a mapping holding ``layers``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise DataNotFoundError(f"stack file {path} does not exist") from None
    except IsADirectoryError:
        raise DataNotFoundError(f"stack file {path} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"stack file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"stack file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"stack file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(data, dict) and "layers" in data:
        data = data["layers"]
    if not isinstance(data, list):
        raise ConfigError(f"stack file {path} must hold a list of layers (or a mapping with 'layers')")
    return data


def parse_sizes(text: str, name: str) -> int | tuple[int, ...]:
    """``"3"`` -> 3, ``"3x5"`` or ``"3,5"`` -> (3, 5); errors name the option ``--<name>``."""
    try:
        values = tuple(int(v) for v in str(text).replace(",", "x").split("x"))
    except ValueError:
        raise ConfigError(f"--{name} {text!r} is not an integer or sizes like 3x5") from None
    return values[0] if len(values) == 1 else values


def input_warnings(text: str, volume: Volume, channels_first: bool) -> list[str]:
    """Readings of ``--input`` that are valid but likely unintended: a leading 1 before a 3-D volume (a batch of one
    written the torchinfo way, ``1x3x224x224``), and two sizes with a large last one read as a 1-D signal with that
    many channels (``224x224``: an image without its channel count)."""
    warnings = []
    shape = volume.chw() if channels_first else volume.hwc()
    if len(volume.spatial) == 3 and (volume.channels if channels_first else volume.spatial[0]) == 1:
        rest = "x".join(map(str, volume.spatial if channels_first else (*volume.spatial[1:], volume.channels)))
        part = "1 channel" if channels_first else "depth 1"
        warnings.append(f"input {text} was read as a 3-D volume ({part}); if the leading 1 is a batch, write "
                        f"--input {rest} --batch 1")
    if len(volume.spatial) == 1 and volume.channels > 16 and volume.channels >= volume.spatial[0]:
        image = f"1x{shape}" if channels_first else f"{shape}x1"
        warnings.append(f"input {text} was read as a 1-D signal of length {volume.spatial[0]} with {volume.channels} "
                        f"channels; for a one-channel image write --input {image}")
    return warnings


def parse_padding(text: str) -> str | int | list[int]:
    """``valid``, ``same``, ``full``, an integer, or integers per dimension or side (``1,2`` / ``0,1,1,2``)."""
    if text.lower() in ("valid", "same", "full"):
        return text.lower()
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--padding {text!r} is not valid, same, full or integers") from None
    return values[0] if len(values) == 1 else values


_ALEXNET_PAPER = (
    "conv(96, k=11, s=4), relu, lrn, maxpool(k=3, s=2), "
    "conv(256, k=5, p=2, g={g}), relu, lrn, maxpool(k=3, s=2), "
    "conv(384, k=3, p=1), relu, conv(384, k=3, p=1, g={g}), relu, conv(256, k=3, p=1, g={g}), relu, "
    "maxpool(k=3, s=2), fc(4096), relu, dropout(0.5), fc(4096), relu, dropout(0.5), fc(1000)"
)

#: Named stacks usable wherever a spec string is: the AlexNet paper net at 227x227x3 with its two towers (groups=2
#: on conv2, conv4, conv5), the same widths in one tower, and torchvision's AlexNet at 224x224x3.
STACKS = {
    "alexnet-paper": _ALEXNET_PAPER.format(g=2),
    "alexnet-paper-ungrouped": _ALEXNET_PAPER.format(g=1),
    "alexnet-torchvision": (
        "conv(64, k=11, s=4, p=2), relu, maxpool(k=3, s=2), conv(192, k=5, p=2), relu, maxpool(k=3, s=2), "
        "conv(384, k=3, p=1), relu, conv(256, k=3, p=1), relu, conv(256, k=3, p=1), relu, maxpool(k=3, s=2), "
        "dropout(0.5), fc(4096), relu, dropout(0.5), fc(4096), relu, fc(1000)"
    ),
}

#: The input each named stack is defined on (HWC).
STACK_INPUTS = {"alexnet-paper": "227x227x3", "alexnet-paper-ungrouped": "227x227x3",
                "alexnet-torchvision": "224x224x3"}
