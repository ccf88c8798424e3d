"""The ``dlparts`` command: thin argument parsing over the library, printing with rich.

Each sub-command is a pair of functions, ``_add_<name>(subparsers)`` that declares its arguments (with examples in its
help) and ``_run_<name>(args)`` that does the work; ``COMMANDS`` lists them (the training commands come from
:mod:`dlparts.cli_train`).  A user's mistake raises a
:class:`dlparts.errors.DlpartsError`, which ``main`` prints as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

from dlparts import __version__, arith, report, stacks
from dlparts.cli_ablate import ABLATE_COMMANDS
from dlparts.cli_train import TRAIN_COMMANDS
from dlparts.errors import ConfigError, DlpartsError, ModelNotFoundError, ShapeError

def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors say ``dlparts <cmd>: error: ...`` in one line and exit 2 (argparse's own code),
    and descriptions keep their line breaks (the examples)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


# ----------------------------------------------------------------------------------------------------------------- conv
_CONV_EXAMPLES = """\
examples:
One layer (the input is HxWxC unless --channels-first):
  dlparts conv --input 55x55x3 --filters 32 --kernel 5 --padding same
  dlparts conv --input 3x224x224 --channels-first --filters 64 --kernel 7 --stride 2 --padding same
  dlparts conv --input 14x14x512 --filters 256 --kernel 4 --stride 2 --padding 1 --transposed
  dlparts conv --input 55x55x96 --type maxpool --kernel 3 --stride 2
A stack, from a spec string, a named stack or a YAML file (a list of layer strings or mappings):
  dlparts conv --stack alexnet-paper
  dlparts conv --input 32x32x3 --stack "conv(32, k=3, p=same), relu, maxpool(2), fc(10)"
  dlparts conv --input 227x227x3 --stack-file net.yaml --format json
Layer strings: conv(N, k=, s=, p=valid|same|full|int, d=, g=, bias=false), convT(N, k=, s=, p=, op=),
  maxpool(k=, s=, p=, ceil=true), avgpool(k), lrn(n=5, alpha=1e-4, beta=0.75, k=2), bn, relu, dropout(0.5), fc(N).
Named stacks: alexnet-paper (227x227x3, two towers), alexnet-paper-ungrouped, alexnet-torchvision (224x224x3).
MACs are multiply-accumulates; FLOPs count 2 per MAC plus pooling, LRN, batch norm (2 per element, parameters
gamma and beta per channel) and activation operations."""


def _add_conv(sub) -> None:
    p = sub.add_parser("conv", help="output size, parameters, MACs/FLOPs, receptive field of a layer or stack",
                       description="Convolution arithmetic.\n\n" + _CONV_EXAMPLES)
    p.add_argument("--input", "-i", help="input volume, e.g. 55x55x3 (HxWxC), 100x3 (1-D) or 16x112x112x3 (3-D)")
    p.add_argument("--channels-first", action="store_true", help="read and print volumes as CxHxW")
    p.add_argument("--batch", type=int, default=None, help="batch size (counts scale with it)")
    p.add_argument("--type", default="conv", choices=["conv", "convT", "maxpool", "avgpool", "lrn"],
                   help="single-layer type (default conv)")
    p.add_argument("--filters", "-f", type=int, help="number of filters (output channels)")
    p.add_argument("--kernel", "-k", default="3", help="kernel size, e.g. 5 or 3x5 (default 3)")
    p.add_argument("--stride", "-s", default=None, help="stride (default 1; pooling: the kernel)")
    p.add_argument("--padding", "-p", default="valid",
                   help="valid, same (TensorFlow rule), full, an integer, per-dimension 1,2 or per-side 0,1,1,2")
    p.add_argument("--dilation", "-d", default="1", help="dilation (default 1)")
    p.add_argument("--groups", "-g", type=int, default=1, help="groups (must divide both channel counts)")
    p.add_argument("--no-bias", action="store_true", help="filters have no bias")
    p.add_argument("--transposed", action="store_true", help="transposed convolution (same as --type convT)")
    p.add_argument("--output-padding", default="0", help="transposed convolution output_padding")
    p.add_argument("--ceil-mode", action="store_true", help="pooling rounds the output size up")
    p.add_argument("--lrn-size", type=int, default=5, help="LRN neighbourhood n (default 5, the paper's)")
    p.add_argument("--stack", help="a layer stack: a spec string or a named stack")
    p.add_argument("--stack-file", help="a YAML file holding a list of layers")
    p.add_argument("--dtype", default="float32", help="dtype for memory figures (default float32)")
    p.add_argument("--format", default="table", choices=["table", "json"], help="output format")


def _single_layer(args):
    kernel, dilation = stacks.parse_sizes(args.kernel, "kernel"), stacks.parse_sizes(args.dilation, "dilation")
    padding = stacks.parse_padding(args.padding)
    kind = "convT" if args.transposed else args.type
    if kind in ("conv", "convT"):
        if args.filters is None:
            raise ConfigError("--filters is required for a convolution (or give --stack)")
        stride, output_padding = (stacks.parse_sizes(args.stride or "1", "stride"),
                                  stacks.parse_sizes(args.output_padding, "output-padding"))
        return arith.Conv(args.filters, kernel, stride, padding, dilation, args.groups, not args.no_bias,
                          kind == "convT", output_padding)
    if kind == "lrn":
        return arith.LRN(args.lrn_size)
    stride = stacks.parse_sizes(args.stride, "stride") if args.stride else None
    return arith.Pool(kind[:3], kernel, stride, padding, dilation, args.ceil_mode)


def _run_conv(args) -> int:
    stack_spec = stacks.read_stack_file(args.stack_file) if args.stack_file else args.stack
    input_text = args.input
    if input_text is None and isinstance(stack_spec, str) and stack_spec.strip().lower() in stacks.STACK_INPUTS:
        input_text = stacks.STACK_INPUTS[stack_spec.strip().lower()]
    if input_text is None:
        raise ConfigError("--input is required, e.g. --input 55x55x3")
    volume = arith.parse_volume(input_text, channels_first=args.channels_first, batch=args.batch)
    for warning in stacks.input_warnings(input_text, volume, args.channels_first):
        print(f"dlparts conv: warning: {warning}", file=sys.stderr)
    if stack_spec is None:
        layer = _single_layer(args)
        cost, _ = layer.apply(volume)
        if args.format == "json":
            print(report.stack_json(stacks.StackReport(volume, [stacks.StackRow(1, args.type, cost)], args.dtype)))
        else:
            report.print_single_layer(report.console(), layer, cost, volume, args.dtype, args.channels_first)
        return 0
    result = stacks.apply_stack(stacks.parse_stack(stack_spec), volume, args.dtype)
    if args.format == "json":
        print(report.stack_json(result))
    else:
        report.print_stack(report.console(), result, args.channels_first)
    return 0


# -------------------------------------------------------------------------------------------------------------- summary
_SUMMARY_EXAMPLES = """\
examples:
  dlparts summary alexnet --input 3x224x224
  dlparts summary alexnet_paper --format json
  dlparts summary torchvision.models:resnet50 --input 3x224x224 --format csv
  dlparts summary pointnet2_cls_ssg --input 1024x3
The input shape is the model's own tensor layout without the batch (images CxHxW, point clouds NxC); registered
models default to their declared input. MACs are multiply-accumulates; FLOPs count 2 per MAC plus the other layers."""


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="per-layer shapes, parameters, MACs/FLOPs, memory of a model",
                       description="Model summary.\n\n" + _SUMMARY_EXAMPLES)
    p.add_argument("model", help="a registered model name or module:callable returning an nn.Module")
    p.add_argument("--input", "-i", help="input shape without batch, e.g. 3x224x224 or 1024x3")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--device", default="auto", choices=["auto", "meta", "cpu"],
                   help="auto runs on the meta device, falling back to a small CPU run (default)")
    p.add_argument("--depth", type=int, default=None,
                   help="roll rows nested deeper than this up into their ancestor, which carries their totals")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"], help="output format")


def _load_model(spec: str):
    import importlib

    import torch

    from dlparts.models import list_models
    from dlparts.models.registry import create_model_for_counting

    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"model {spec!r}: cannot load {attr!r} from {module_name!r} ({exc})") from None
        model = _call_factory(spec, attr, factory)
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model {spec!r}: {attr} returned {type(model).__name__}, not an nn.Module")
        return model
    if spec not in list_models():
        raise ModelNotFoundError(f"unknown model {spec!r}; `dlparts models` lists them, or give module:callable")
    return create_model_for_counting(spec)


def _call_factory(spec: str, attr: str, factory):
    """``factory()`` on the meta device; a factory that needs arguments, or fails, is the user's mistake."""
    import inspect

    import torch

    if not callable(factory):
        raise ConfigError(f"model {spec!r}: {attr} is a {type(factory).__name__}, not a callable")
    try:
        required = [p.name for p in inspect.signature(factory).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):  # no signature to read (some builtins): call it and see
        required = []
    if required:
        raise ConfigError(f"model {spec!r}: {attr}() needs arguments ({', '.join(required)}); give a callable that "
                          "takes none, e.g. a function that calls it with yours")
    try:
        with torch.device("meta"):
            return factory()
    except Exception as exc:  # the user's code: its failure is reported as theirs, in one line
        raise ConfigError(f"model {spec!r}: {attr}() raised {type(exc).__name__}: {exc}") from None


def _run_summary(args) -> int:
    from dlparts.summary import summarize

    model = _load_model(args.model)
    info = getattr(model, "model_info", None)
    if args.input:
        try:
            shape = [int(v) for v in args.input.lower().split("x")]
        except ValueError:
            raise ConfigError(f"--input {args.input!r} is not sizes joined by 'x', e.g. 3x224x224") from None
    elif info is not None:
        shape = list(info.input_spec)
    else:
        raise ConfigError("--input is required for a model that is not registered, e.g. --input 3x224x224")
    try:
        result = summarize(model, shape, batch_size=args.batch, device=args.device)
    except ShapeError as exc:
        if len(shape) < 2:
            raise
        without = "x".join(map(str, shape[1:]))
        raise ShapeError(f"{exc}; --input is the shape without the batch: if {shape[0]} is the batch, write "
                         f"--input {without} --batch {shape[0]}") from None
    if args.format == "json":
        print(result.to_json())
    elif args.format == "csv":
        print(result.to_csv(), end="")
    else:
        report.print_summary(report.console(), result, args.depth)
    return 0


# --------------------------------------------------------------------------------------------------------------- models
def _add_models(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models with their parameter counts",
        description="List registered models.\n\nexamples:\n  dlparts models\n  dlparts models 'pointnet2_*'\n"
                    "A pattern that matches no model is an error (one line, exit code 2).",
    )
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'alexnet*'")


def _run_models(args) -> int:
    from dlparts.models import get_model_info, list_models

    names = list_models(args.pattern)
    if not names:
        raise ModelNotFoundError(f"no model matches {args.pattern!r}; `dlparts models` lists them all")
    report.print_models(report.console(), ((name, get_model_info(name)) for name in names))
    return 0


# --------------------------------------------------------------------------------------------------------------- sample
_SAMPLE_EXAMPLES = """\
examples:
  dlparts sample chair_0001.off --points 1024 --out clouds/
  dlparts sample meshes/*.ply scans/*.xyz --points 2048 --normals --fps --out clouds/
Meshes (OFF, PLY, OBJ, STL) are sampled uniformly on their surfaces; point files (.xyz .txt .pts .npy .npz .h5) are
subsampled.  Each cloud is centred and scaled into the unit sphere and written as OUT/<stem>.npy ([N, 3] or [N, 6]);
files that share a stem keep their suffix (table.off -> OUT/table.off.npy, table.ply -> OUT/table.ply.npy)."""


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample point clouds from meshes or point files into .npy files",
                       description="Surface sampling.\n\n" + _SAMPLE_EXAMPLES)
    p.add_argument("files", nargs="+", metavar="FILE", help="mesh or point files")
    p.add_argument("--points", "-n", type=int, default=1024, help="points per cloud (default 1024)")
    p.add_argument("--out", "-o", required=True, help="output folder (created if missing)")
    p.add_argument("--normals", action="store_true", help="write xyz + normals ([N, 6])")
    p.add_argument("--fps", action="store_true", help="oversample 4x, keep N by farthest point sampling")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _run_sample(args) -> int:
    import numpy as np

    from dlparts.data import load_points
    from dlparts.train.config import output_folder

    out = output_folder(args.out, "--out")
    targets = _sample_targets(args.files, out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, target) in enumerate(zip(args.files, targets)):
        cloud = load_points(name, args.points, normals=args.normals, fps=args.fps, seed=args.seed + i)
        replaced = " (replaced the file there)" if target.exists() else ""
        np.save(target, cloud.numpy())
        print(f"{name} -> {target} {list(cloud.shape)}{replaced}")
    return 0


def _sample_targets(files: list[str], out: Path) -> list[Path]:
    """``OUT/<stem>.npy`` per file, ``OUT/<name>.npy`` (suffix kept: ``table.off.npy``) for stems that more than
    one file shares; two files that would still meet in one target are refused before anything is written."""
    stems = Counter(Path(f).stem for f in files)
    targets = [out / ((Path(f).stem if stems[Path(f).stem] == 1 else Path(f).name) + ".npy") for f in files]
    first: dict[Path, str] = {}
    for name, target in zip(files, targets):
        if target in first:
            raise ConfigError(f"{first[target]} and {name} would both be written to {target}; "
                              "sample them into different --out folders")
        first[target] = name
    return targets


COMMANDS: list[tuple[Callable, Callable]] = [
    (_add_conv, _run_conv),
    (_add_summary, _run_summary),
    (_add_models, _run_models),
    *TRAIN_COMMANDS,
    *ABLATE_COMMANDS,
    (_add_sample, _run_sample),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlparts",
        description="dlparts: convolution arithmetic, AlexNet, PointNet and PointNet++, faithful and fast.",
    )
    parser.add_argument("--version", action="version", version=f"dlparts {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error (a bug in dlparts) print its traceback, not one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    runners = {}
    for add, run in COMMANDS:
        before = set(sub.choices)
        add(sub)
        for name in set(sub.choices) - before:
            runners[name] = run
    parser.set_defaults(_runners=runners)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse's own message, plus the key=value form where the options are config keys (fit, test)
        hint = getattr(args, "_unknown_hint", None)
        where = f"dlparts {args.command}" if args.command else "dlparts"
        parser.exit(2, f"{where}: error: unrecognized arguments: {' '.join(unknown)}"
                       f"{hint(unknown, argv) if hint else ''}\n")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._runners[args.command](args) or 0)
    except DlpartsError as exc:
        print(f"dlparts {args.command}: error: {report.one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dlparts {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug: one line, the traceback only when asked for
        if args.debug:
            raise
        print(f"dlparts {args.command}: internal error (a bug in dlparts, please report it): {type(exc).__name__}: "
              f"{report.one_line(exc)}; run 'dlparts --debug {args.command} ...' for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
