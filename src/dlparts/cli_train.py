"""The training commands of ``dlparts``: ``fit``, ``test``, ``predict``, ``export`` and ``demo`` over
:mod:`dlparts.train`, in the same ``_add_<name>`` / ``_run_<name>`` pairs as :mod:`dlparts.cli` (``TRAIN_COMMANDS``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from dlparts import report
from dlparts.errors import ConfigError, DlpartsError

_STARTED = time.time()  # for the time-to-first-step figure of `dlparts fit` (imported when the command starts)


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
                       description="Train.\n\n" + _FIT_EXAMPLES)
    p.add_argument("--config", "-c", help="a recipe YAML (configs/*.yaml)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.ckpt")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.01")
    p.set_defaults(_unknown_hint=override_hint)


def override_hint(unknown: list[str], argv: list[str]) -> str:
    """For options that are config keys written the argparse way (``--max_epochs 1``), the ``key=value`` form to
    use instead (``; config keys are set as key=value: trainer.max_epochs=1``); empty when none is."""
    from dlparts.train.config import DEFAULTS

    forms = []
    for token in (t for t in unknown if t.startswith("--")):
        name, sep, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if not sep:
            at = argv.index(token) + 1
            value = argv[at] if at < len(argv) and not argv[at].startswith("-") else "VALUE"
        keys = [f"{section}.{name}" for section, keys in DEFAULTS.items() if isinstance(keys, dict) and name in keys]
        forms += [f"{key}={value}" for key in keys or ([name] if name in DEFAULTS else [])]
    return f"; config keys are set as key=value: {' '.join(forms)}" if forms else ""


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
        seconds = result["first_step_at"] - _STARTED
        report.console().print(f"time to the first training step: {seconds:.1f} s after start")
    return 0


def _print_results(results: list[dict]) -> None:
    from dlparts.train.report import checkpoint_line, result_rows

    report.print_results(report.console(), result_rows(results), results, [checkpoint_line(r) for r in results])


# ----------------------------------------------------------------------------------------------------------------- test
def _add_test(sub) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on its dataset's test split",
                       description="Test.\n\nexamples:\n  dlparts test --ckpt runs/X/checkpoints/best.ckpt\n"
                                   "  dlparts test --ckpt best.ckpt eval.votes=12 data.root=/data/modelnet40\n"
                                   "Overrides apply to the config saved in the checkpoint (voting, data root, batch).")
    p.add_argument("--ckpt", required=True, help="a checkpoint written by dlparts fit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. eval.votes=12")
    p.set_defaults(_unknown_hint=override_hint)


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
    p = sub.add_parser("predict", help="top-5 classes of images/clouds, or coloured segmentations (PLY, PNG, HTML)",
                       description="Predict.\n\nexamples:\n  dlparts predict --ckpt best.ckpt photo.jpg cat.png\n"
                                   "  dlparts predict --ckpt cls.ckpt chair.off cloud.npy points.txt\n"
                                   "  dlparts predict --ckpt partseg.ckpt --category airplane plane.ply --out seg/\n"
                                   "  dlparts predict --onnx cls.onnx chair.off\n"
                                   f"{_PREDICT_FILES}.")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="a checkpoint written by dlparts fit")
    model.add_argument("--onnx", metavar="MODEL.onnx", help="a point model's ONNX file written by dlparts export, "
                       "run by onnxruntime")
    p.add_argument("files", nargs="+", metavar="FILE", help="images, point files or meshes")
    p.add_argument("--category", help="object category of the shapes (part segmentation)")
    p.add_argument("--out", help="folder for segmentation PLY/PNG/HTML files (default: beside each input)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling points from meshes (default 0)")


def _run_predict(args) -> int:
    from dlparts.train.engine import load_checkpoint
    from dlparts.train.predict import load_onnx, predict_file, predict_file_onnx

    if args.onnx:
        model, predict = load_onnx(args.onnx), predict_file_onnx
    else:
        model, predict = load_checkpoint(args.ckpt)[0], predict_file
    console = report.console()
    failed = []
    for path in args.files:
        try:
            result = predict(model, path, category=args.category, out_dir=args.out, seed=args.seed)
        except DlpartsError as exc:  # one bad file is reported, the others still predicted
            failed.append(path)
            print(f"dlparts predict: error: {report.one_line(exc)}", file=sys.stderr)
            continue
        if result.top:
            console.print(f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in result.top), soft_wrap=True)
        else:
            counts = ", ".join(f"{name} {n}" for name, n in result.counts.items())
            console.print(f"{path}: {counts} -> {', '.join(result.outputs)}", soft_wrap=True)
        for note in result.notes:
            console.print(f"  {note}", soft_wrap=True)
    if failed:
        print(f"dlparts predict: {len(failed)} of {len(args.files)} files failed: {', '.join(failed)}",
              file=sys.stderr)
    return 2 if failed else 0


# --------------------------------------------------------------------------------------------------------------- export
def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint's model to ONNX, torch.export or TorchScript, checked",
                       description="Export.\n\nexamples:\n  dlparts export --ckpt best.ckpt --format onnx\n"
                                   "  dlparts export --ckpt best.ckpt --format export --output model.pt2\n"
                                   "ONNX files hold the point operators in standard ONNX operators and run in plain\n"
                                   "onnxruntime; 'export' writes a torch.export program; 'torchscript' (torch.jit,\n"
                                   "deprecated) is kept for old deployments.  The file is loaded back and run on\n"
                                   "random inputs of 3 seeds; the largest difference from PyTorch is reported.")
    p.add_argument("--ckpt", required=True, help="a checkpoint written by dlparts fit")
    p.add_argument("--format", default="onnx", choices=["onnx", "export", "torchscript"],
                   help="output format (default onnx)")
    p.add_argument("--output", "-o", help="output file (default: beside the checkpoint, .onnx, .pt2 or .pt)")
    p.add_argument("--batch", type=int, default=2, help="batch of the check inputs (default 2)")


def _run_export(args) -> int:
    from dlparts.train.engine import load_checkpoint
    from dlparts.train.export import FORMATS, export

    module, _ = load_checkpoint(args.ckpt)
    output = args.output or str(Path(args.ckpt).with_suffix(FORMATS[args.format]))
    done = export(module, output, args.format, args.batch)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in done.inputs.items())
    report.console().print(f"wrote {done.path} ({done.format}); checked on {shapes}, {done.seeds} seeds: max abs "
                           f"difference from PyTorch {done.max_abs_diff:.3g} (labels identical)", soft_wrap=True)
    return 0


# ----------------------------------------------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train and test four models on the embedded datasets (CPU, under 10 minutes)",
                       description="Demo: PointNet++ SSG and PointNet classification, part segmentation and\n"
                                   "alexnet_small on the embedded datasets, each trained then tested, with a results\n"
                                   "table, what each figure shows, and plots.\n\n"
                                   "examples:\n  dlparts demo\n  dlparts demo --only alexnet_small --out /tmp/demo")
    p.add_argument("--out", default="runs/demo", help="folder for the runs (default runs/demo)")
    p.add_argument("--only", action="append",
                   help="run only this part (repeatable): pointnet2, pointnet, partseg, alexnet_small")


def _run_demo(args) -> int:
    from dlparts.train.demo import demo_notes, run_demo

    results = run_demo(args.out, only=args.only)
    _print_results(results)
    for line in demo_notes(results):
        report.console().print(line, soft_wrap=True)
    return 0


TRAIN_COMMANDS: list[tuple[Callable, Callable]] = [
    (_add_fit, _run_fit),
    (_add_test, _run_test),
    (_add_predict, _run_predict),
    (_add_export, _run_export),
    (_add_demo, _run_demo),
]
