"""The ``dlparts`` command: thin argument parsing over the library, printing with rich.

Each sub-command is a pair of functions, ``_add_<name>(subparsers)`` that declares its arguments (with examples in its
help) and ``_run_<name>(args)`` that does the work; ``COMMANDS`` lists them.  A user's mistake raises a
:class:`dlparts.errors.DlpartsError`, which ``main`` prints as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from dlparts import __version__, arith, report, stacks
from dlparts.errors import ConfigError, DlpartsError, ModelNotFoundError

_STARTED = time.time()  # for the time-to-first-step figure of `dlparts fit`


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors say ``dlparts <cmd>: error: ...`` in one line and exit 2 (argparse's own code)."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


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
  maxpool(k=, s=, p=, ceil=true), avgpool(k), lrn(n=5, alpha=1e-4, beta=0.75, k=2), relu, dropout(0.5), fc(N).
Named stacks: alexnet-paper (227x227x3, two towers), alexnet-paper-ungrouped, alexnet-torchvision (224x224x3).
MACs are multiply-accumulates; FLOPs count 2 per MAC plus pooling, LRN and activation operations."""


def _add_conv(sub) -> None:
    p = sub.add_parser("conv", help="output size, parameters, MACs/FLOPs, receptive field of a layer or stack",
                       formatter_class=_formatter, description="Convolution arithmetic.\n\n" + _CONV_EXAMPLES)
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
                       formatter_class=_formatter, description="Model summary.\n\n" + _SUMMARY_EXAMPLES)
    p.add_argument("model", help="a registered model name or module:callable returning an nn.Module")
    p.add_argument("--input", "-i", help="input shape without batch, e.g. 3x224x224 or 1024x3")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--device", default="auto", choices=["auto", "meta", "cpu"],
                   help="auto runs on the meta device, falling back to a small CPU run (default)")
    p.add_argument("--depth", type=int, default=None, help="hide rows nested deeper than this")
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
        with torch.device("meta"):
            model = factory()
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model {spec!r}: {attr} returned {type(model).__name__}, not an nn.Module")
        return model
    if spec not in list_models():
        raise ModelNotFoundError(f"unknown model {spec!r}; `dlparts models` lists them, or give module:callable")
    return create_model_for_counting(spec)


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
    result = summarize(model, shape, batch_size=args.batch, device=args.device)
    if args.format == "json":
        print(result.to_json())
    elif args.format == "csv":
        print(result.to_csv(), end="")
    else:
        report.print_summary(report.console(), result, shape, args.batch, args.depth)
    return 0


# --------------------------------------------------------------------------------------------------------------- models
def _add_models(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models with their parameter counts",
        formatter_class=_formatter,
        description="List registered models.\n\nexamples:\n  dlparts models\n  dlparts models 'pointnet2_*'",
    )
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'alexnet*'")


def _run_models(args) -> int:
    from dlparts.models import get_model_info, list_models

    report.print_models(report.console(), ((name, get_model_info(name)) for name in list_models(args.pattern)))
    return 0


# ------------------------------------------------------------------------------------------------------------------ fit
_FIT_EXAMPLES = """\
examples:
  dlparts fit --config configs/pointnet2_cls_ssg_cpu.yaml
  dlparts fit --config configs/pointnet_cls_modelnet40.yaml data.root=/data/modelnet40 trainer.max_epochs=2 optim.lr=0.01
  dlparts fit --config configs/alexnet_small_cpu.yaml run.name=try2 trainer.devices=2 trainer.strategy=ddp
  dlparts fit --resume runs/alexnet_small-synthetic_images trainer.max_epochs=12
  torchrun --nproc_per_node 2 -m dlparts.cli fit --config X.yaml trainer.devices=2 trainer.strategy=ddp
Overrides are key=value with dotted keys of the config (values read as YAML); an unknown key or a bad value stops
before training.  The run folder (run.dir/run.name) receives config.yaml, checkpoints/last.ckpt and best.ckpt (best
on validation, a hold-out of the training split), logs/metrics.csv, TensorBoard files in tb/, plots/ and results.json."""


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="train a model from a recipe config, then test its best checkpoint",
                       formatter_class=_formatter, description="Train.\n\n" + _FIT_EXAMPLES)
    p.add_argument("--config", "-c", help="a recipe YAML (configs/*.yaml)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.ckpt")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.01")


def _run_fit(args) -> int:
    from dlparts.train import engine
    from dlparts.train.config import load_config

    if args.resume:
        cfg = engine.resume_config(args.resume, args.overrides)
    elif args.config or args.overrides:
        cfg = load_config(args.config, args.overrides)
    else:
        raise ConfigError("give --config FILE (a recipe), model.name=... data.name=... overrides, or --resume RUN_DIR")
    result = engine.fit(cfg, resume=args.resume)
    _print_results([result])
    if result.get("first_step_at") is not None:
        report.console().print(f"time to the first training step: {result['first_step_at'] - _STARTED:.1f} s after start")
    return 0


def _print_results(results: list[dict]) -> None:
    from dlparts.train.report import result_rows

    report.print_results(report.console(), result_rows(results), results)


# ----------------------------------------------------------------------------------------------------------------- test
def _add_test(sub) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on its dataset's test split", formatter_class=_formatter,
                       description="Test.\n\nexamples:\n  dlparts test --ckpt runs/X/checkpoints/best.ckpt\n"
                                   "  dlparts test --ckpt best.ckpt eval.votes=12 data.root=/data/modelnet40\n"
                                   "Overrides apply to the config saved in the checkpoint (voting, data root, batch).")
    p.add_argument("--ckpt", required=True, help="a checkpoint written by dlparts fit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. eval.votes=12")


def _run_test(args) -> int:
    from dlparts.train import engine

    _print_results([engine.test(args.ckpt, args.overrides)])
    return 0


# -------------------------------------------------------------------------------------------------------------- predict
#: What ``predict`` reads (``dlparts.data.points.POINT_SUFFIXES`` and ``dlparts.data.meshes.MESH_SUFFIXES``; written
#: out here so that ``dlparts --help`` does not import torch, and tested against them).
_PREDICT_FILES = ("Images: any format Pillow reads; point files: .xyz .txt .pts (text rows), .npy .npz .h5 .hdf5;\n"
                  "meshes: .off .ply .obj .stl")
def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="top-5 classes of images/clouds, or coloured segmentations (PLY + PNG)",
                       formatter_class=_formatter,
                       description="Predict.\n\nexamples:\n  dlparts predict --ckpt best.ckpt photo.jpg cat.png\n"
                                   "  dlparts predict --ckpt cls.ckpt chair.off cloud.npy points.txt\n"
                                   "  dlparts predict --ckpt partseg.ckpt --category airplane plane.ply --out seg/\n"
                                   f"{_PREDICT_FILES}.")
    p.add_argument("--ckpt", required=True, help="a checkpoint written by dlparts fit")
    p.add_argument("files", nargs="+", metavar="FILE", help="images, point files or meshes")
    p.add_argument("--category", help="object category of the shapes (part segmentation)")
    p.add_argument("--out", help="folder for segmentation PLY/PNG files (default: beside each input)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling points from meshes (default 0)")


def _run_predict(args) -> int:
    from dlparts.train.engine import load_checkpoint
    from dlparts.train.predict import predict_file

    module, _ = load_checkpoint(args.ckpt)
    console = report.console()
    for path in args.files:
        result = predict_file(module, path, category=args.category, out_dir=args.out, seed=args.seed)
        if result.top:
            console.print(f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in result.top), soft_wrap=True)
        else:
            counts = ", ".join(f"{name} {n}" for name, n in result.counts.items())
            console.print(f"{path}: {counts} -> {', '.join(result.outputs)}", soft_wrap=True)
    return 0


# --------------------------------------------------------------------------------------------------------------- export
def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint's model to ONNX or TorchScript, checked against PyTorch",
                       formatter_class=_formatter,
                       description="Export.\n\nexamples:\n  dlparts export --ckpt best.ckpt --format onnx\n"
                                   "  dlparts export --ckpt best.ckpt --format torchscript --output model.pt\n"
                                   "The exported file is run on random inputs (onnxruntime for ONNX) and the largest\n"
                                   "absolute difference from the PyTorch outputs is reported.")
    p.add_argument("--ckpt", required=True, help="a checkpoint written by dlparts fit")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="output format (default onnx)")
    p.add_argument("--output", "-o", help="output file (default: beside the checkpoint, .onnx or .pt)")
    p.add_argument("--batch", type=int, default=2, help="batch of the check inputs (default 2)")


def _run_export(args) -> int:
    from dlparts.train.engine import load_checkpoint
    from dlparts.train.export import export

    module, _ = load_checkpoint(args.ckpt)
    output = args.output or str(Path(args.ckpt).with_suffix(".onnx" if args.format == "onnx" else ".pt"))
    done = export(module, output, args.format, args.batch)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in done.inputs.items())
    report.console().print(f"wrote {done.path} ({done.format}); checked on {shapes}: max abs difference from "
                           f"PyTorch {done.max_abs_diff:.3g}", soft_wrap=True)
    return 0


# ----------------------------------------------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train and test three models on the embedded datasets (CPU, under 10 minutes)",
                       formatter_class=_formatter,
                       description="Demo: PointNet++ SSG classification, part segmentation and alexnet_small on the\n"
                                   "embedded datasets, each trained then tested, with a results table and plots.\n\n"
                                   "examples:\n  dlparts demo\n  dlparts demo --only alexnet_small --out /tmp/demo")
    p.add_argument("--out", default="runs/demo", help="folder for the three runs (default runs/demo)")
    p.add_argument("--only", action="append", help="run only this part (repeatable): pointnet2, partseg, alexnet_small")


def _run_demo(args) -> int:
    from dlparts.train.demo import run_demo

    results = run_demo(args.out, only=args.only)
    _print_results(results)
    return 0


# --------------------------------------------------------------------------------------------------------------- sample
_SAMPLE_EXAMPLES = """\
examples:
  dlparts sample chair_0001.off --points 1024 --out clouds/
  dlparts sample meshes/*.ply scans/*.xyz --points 2048 --normals --fps --out clouds/
Meshes (OFF, PLY, OBJ, STL) are sampled uniformly on their surfaces; point files (.xyz .txt .pts .npy .npz .h5) are
subsampled.  Each cloud is centred and scaled into the unit sphere and written as OUT/<name>.npy ([N, 3] or [N, 6])."""


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample point clouds from meshes or point files into .npy files",
                       formatter_class=_formatter, description="Surface sampling.\n\n" + _SAMPLE_EXAMPLES)
    p.add_argument("files", nargs="+", metavar="FILE", help="mesh or point files")
    p.add_argument("--points", "-n", type=int, default=1024, help="points per cloud (default 1024)")
    p.add_argument("--out", "-o", required=True, help="output folder (created if missing)")
    p.add_argument("--normals", action="store_true", help="write xyz + normals ([N, 6])")
    p.add_argument("--fps", action="store_true", help="oversample 4x, keep N by farthest point sampling")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _run_sample(args) -> int:
    import numpy as np

    from dlparts.data import load_points

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(args.files):
        cloud = load_points(name, args.points, normals=args.normals, fps=args.fps, seed=args.seed + i)
        target = out / (Path(name).stem + ".npy")
        np.save(target, cloud.numpy())
        print(f"{name} -> {target} {list(cloud.shape)}")
    return 0


COMMANDS: list[tuple[Callable, Callable]] = [
    (_add_conv, _run_conv),
    (_add_summary, _run_summary),
    (_add_models, _run_models),
    (_add_fit, _run_fit),
    (_add_test, _run_test),
    (_add_predict, _run_predict),
    (_add_export, _run_export),
    (_add_demo, _run_demo),
    (_add_sample, _run_sample),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlparts",
        formatter_class=_formatter,
        description="dlparts: convolution arithmetic, AlexNet, PointNet and PointNet++, faithful and fast.",
    )
    parser.add_argument("--version", action="version", version=f"dlparts {__version__}")
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
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._runners[args.command](args) or 0)
    except DlpartsError as exc:
        print(f"dlparts {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dlparts {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
