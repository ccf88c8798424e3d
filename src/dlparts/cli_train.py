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
    from dlparts.train.config import load_config, output_folder

    if args.resume:
        cfg = engine.resume_config(args.resume, args.overrides)
    elif args.config or args.overrides:
        cfg = load_config(args.config, args.overrides)
    else:
        raise ConfigError("give --config FILE (a recipe), model.name=... data.name=... overrides, or --resume RUN_DIR")
    output_folder(cfg["run"]["dir"], "run.dir")
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
#: ``dlparts.train.whole_scene.PRECISIONS``, written out here so that ``dlparts --help`` does not import torch (tested).
_PRECISIONS = ("fp32", "bf16")
_PRECISION_HELP = ("fp32 (default) or bf16: bfloat16 autocast, faster on CPUs with AMX or AVX-512 BF16 and on GPUs "
                   "(other CPUs run it too, without the gain); labels can differ from fp32's where two classes score "
                   "nearly alike")


def _add_test(sub) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on its dataset's test split",
                       description="Test.\n\nexamples:\n  dlparts test --ckpt runs/X/checkpoints/best.ckpt\n"
                                   "  dlparts test --ckpt best.ckpt eval.votes=12 data.root=/data/modelnet40\n"
                                   "Overrides apply to the config saved in the checkpoint (voting, data root, batch).\n"
                                   "s3dis and scene_folder runs are also scored on every point of every test scene\n"
                                   "(overlapping blocks, the PointNet++ protocol), beside the sampled-block figure.")
    p.add_argument("--ckpt", required=True, help="a checkpoint written by dlparts fit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. eval.votes=12")
    p.add_argument("--scene-stride", type=float, help="s3dis / scene_folder: metres between the blocks of the "
                                                      "every-point evaluation (default: half the training block)")
    p.add_argument("--scene-votes", type=int, default=1, help="s3dis / scene_folder: passes of the every-point "
                                                              "evaluation (default 1)")
    p.add_argument("--scene-precision", default="fp32", choices=_PRECISIONS, help="s3dis / scene_folder: the "
                   f"every-point evaluation's precision; {_PRECISION_HELP}")
    p.set_defaults(_unknown_hint=override_hint)


def _run_test(args) -> int:
    from dlparts.train import engine
    from dlparts.train.whole_scene import SCENE_DATASETS

    if args.scene_votes < 1 or (args.scene_stride is not None and not args.scene_stride > 0):
        raise ConfigError(f"--scene-votes must be >= 1 and --scene-stride > 0; got {args.scene_votes}, "
                          f"{args.scene_stride}")
    result = engine.test(args.ckpt, args.overrides)
    _print_results([result])
    if result["data"] in SCENE_DATASETS:
        _test_whole_scenes(args, result)
    return 0


def _test_whole_scenes(args, result: dict) -> None:
    """Beside the block-sampled figures: every point of every test scene, printed and added to the test JSON."""
    import json

    from dlparts.train.engine import load_checkpoint
    from dlparts.train.whole_scene import evaluate_scenes

    module, cfg = load_checkpoint(args.ckpt, args.overrides)
    whole = evaluate_scenes(module, cfg, stride=args.scene_stride, votes=args.scene_votes,
                            precision=args.scene_precision)
    console = report.console()
    blocks = result["test"]
    console.print(f"test, sampled blocks ({cfg['data']['num_points']} points each): mIoU {blocks['miou']:.1%}, "
                  f"OA {blocks['oa']:.1%}", soft_wrap=True)
    console.print(f"test, {whole['protocol']}: mIoU {whole['miou']:.1%}, OA {whole['oa']:.1%}", soft_wrap=True)
    console.print("  per-class IoU: " + ", ".join(f"{name} {'-' if v is None else f'{v:.1%}'}"
                                                  for name, v in whole["per_class_iou"].items()), soft_wrap=True)
    saved = Path(result["run_dir"]) / f"test-{Path(args.ckpt).stem}.json"
    if saved.is_file():
        saved.write_text(json.dumps({**result, "test_whole_scenes": whole}, indent=2))


# -------------------------------------------------------------------------------------------------------------- predict
#: What ``predict`` reads (``dlparts.data.points.POINT_SUFFIXES`` and ``dlparts.data.meshes.MESH_SUFFIXES``; written
#: out here so that ``dlparts --help`` does not import torch, and tested against them).
_PREDICT_FILES = ("Images: any format Pillow reads; point files: .xyz .txt .pts (text rows), .npy .npz .h5 .hdf5;\n"
                  "meshes: .off .ply .obj .stl")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="top-5 classes of images/clouds, or every point labelled (PLY, PNG, HTML)",
                       description="Predict.\n\nexamples:\n  dlparts predict --ckpt best.ckpt photo.jpg cat.png\n"
                                   "  dlparts predict --ckpt cls.ckpt chair.off cloud.npy points.txt\n"
                                   "  dlparts predict --ckpt cls.ckpt meshes/ --format json --out results/\n"
                                   "  dlparts predict --ckpt partseg.ckpt --category airplane plane.ply --out seg/\n"
                                   "  dlparts predict --ckpt semseg.ckpt room.ply --stride 0.5 --votes 2 --out seg/\n"
                                   "  dlparts predict --onnx cls.onnx chair.off\n"
                                   f"{_PREDICT_FILES}.\nFolders are searched recursively.  Segmentations label every "
                                   "point of the input: <stem>.seg.ply\n(binary, the input's points in order, a "
                                   "colour per class and an integer label property),\n<stem>.seg.png and "
                                   "<stem>.seg.html; scenes are labelled block by block with overlap.")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="a checkpoint written by dlparts fit")
    model.add_argument("--onnx", metavar="MODEL.onnx", help="an ONNX file written by dlparts export (its metadata "
                       "holds the classes and preprocessing), run by onnxruntime")
    p.add_argument("files", nargs="+", metavar="PATH", help="images, point files, meshes, scenes, or folders of them")
    p.add_argument("--category", help="object category of the shapes (part segmentation)")
    p.add_argument("--out", help="folder for segmentation PLY/PNG/HTML files (default: beside each input) and, with "
                                 "--format json, predictions.json (else printed)")
    p.add_argument("--format", default="table", choices=["table", "json"], help="print lines (table, default) or "
                   "one JSON list of {path, top: [[class, probability], ...]} (segmentations: counts, outputs)")
    p.add_argument("--stride", type=float, help="scenes: metres between block corners (default: half the training "
                                                "block)")
    p.add_argument("--votes", type=int, default=1, help="scenes: passes over the blocks, scores averaged (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling points (default 0)")
    p.add_argument("--precision", default="fp32", choices=_PRECISIONS, help=f"checkpoints: {_PRECISION_HELP}")


def _prediction_row(result) -> dict:
    row = {"path": result.path}
    if result.top:
        row["top"] = [[name, round(p, 6)] for name, p in result.top]
    else:
        row.update(counts=result.counts, outputs=result.outputs, **result.scores)
    return row


def _print_prediction(console, result) -> None:
    if result.top:
        console.print(f"{result.path}: " + ", ".join(f"{name} {p:.1%}" for name, p in result.top), soft_wrap=True)
    else:
        counts = ", ".join(f"{name} {n}" for name, n in result.counts.items())
        console.print(f"{result.path}: {counts} -> {', '.join(result.outputs)}", soft_wrap=True)
        if result.scores:
            console.print(f"  against the file's labels, every point: OA {result.scores['oa']:.1%}, mIoU "
                          f"{result.scores['miou']:.1%}", soft_wrap=True)
    for note in result.notes:
        console.print(f"  {note}", soft_wrap=True)


def _run_predict(args) -> int:
    import functools
    import json

    from dlparts.data._progress import progress
    from dlparts.train.config import output_folder
    from dlparts.train.engine import load_checkpoint
    from dlparts.train.predict import (expand_inputs, from_module, from_onnx, load_onnx, predict_file,
                                       predict_file_onnx, predict_points)

    if args.votes < 1 or (args.stride is not None and not args.stride > 0):
        raise ConfigError(f"--votes must be >= 1 and --stride > 0; got {args.votes}, {args.stride}")
    if args.onnx and args.precision != "fp32":
        raise ConfigError(f"--precision {args.precision} applies to --ckpt; an ONNX model runs as it was exported")
    if args.out is not None:
        output_folder(args.out, "--out")  # before any model is loaded
    if args.onnx:
        model, predict, to_points = load_onnx(args.onnx), predict_file_onnx, from_onnx
        task = model.meta["task"]
    else:
        model = load_checkpoint(args.ckpt, training=False)[0]
        predict = functools.partial(predict_file, precision=args.precision)
        to_points = functools.partial(from_module, precision=args.precision)
        task = model.info["task"]
    if task != "image_cls":  # a point model's Predictor (its batch norm folded) made once, not once per file
        model, predict = to_points(model), predict_points
    console = report.console()
    files = expand_inputs(args.files, task)
    failed, rows = [], []
    for path in progress(files, "predict", enabled=len(files) > 1):
        try:
            result = predict(model, path, category=args.category, out_dir=args.out, seed=args.seed,
                             stride=args.stride, votes=args.votes)
        except DlpartsError as exc:  # one bad file is reported, the others still predicted
            failed.append(str(path))
            print(f"dlparts predict: error: {report.one_line(exc)}", file=sys.stderr)
            continue
        rows.append(_prediction_row(result))
        if args.format == "table":
            _print_prediction(console, result)
    if args.format == "json" and args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "predictions.json").write_text(json.dumps(rows, indent=1))
        console.print(f"wrote {Path(args.out) / 'predictions.json'}", soft_wrap=True)
    elif args.format == "json":
        print(json.dumps(rows, indent=1))
    if failed:
        print(f"dlparts predict: {len(failed)} of {len(files)} files failed: {', '.join(failed)}", file=sys.stderr)
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
