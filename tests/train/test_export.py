"""Export of every registered model: ONNX in standard operators only, run by onnxruntime in a process without torch or
dlparts, and torch.export programs loaded back; both equal eager (logits within 1e-4, identical argmax) on 3 seeds.

The models are small versions of the registered ones (PointNet++ tables with fewer centres and narrower MLPs, fewer
points) so the whole file takes seconds per model; the exported operators and layers are the same.  The three
~60M-parameter AlexNets share their layers with alexnet_small (and alexnet's plain one-tower form has no operator
that alexnet_small lacks but adaptive pooling by a divisor, which torch's own symbolic covers).
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dlparts.errors import ConfigError  # noqa: E402
from dlparts.models import create_model, get_model_info, list_models  # noqa: E402
from dlparts.train.export import TOLERANCE, export_model, model_inputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

BIG = {"alexnet", "alexnet_paper", "alexnet_paper_split"}
MODELS = [name for name in list_models() if name not in BIG]


def _narrow(widths):
    return [max(4, w // 8) for w in widths]


def small_model(name: str):
    """The registered model, PointNet++ with its table shrunk (centres / 8, at most 8 neighbours, widths / 8)."""
    torch.manual_seed(0)
    info = get_model_info(name)
    if info.family != "pointnet2":
        return create_model(name).eval()
    from dlparts.models.pointnet2 import VARIANTS

    row = VARIANTS[name.removeprefix("pointnet2_")]
    levels = [[lv.npoint and lv.npoint // 8, list(lv.radii), [min(8, k) for k in lv.nsamples],
               [_narrow(m) for m in lv.mlps]] for lv in row.levels]
    variant = {"levels": levels, "fp": [_narrow(f) for f in row.fp], "head": _narrow(row.head)}
    return create_model(name, variant=variant).eval()


def checks(model, name: str) -> list[dict]:
    """Three seeds; the second with another batch size, the third with another number of points (dynamic axes)."""
    info = get_model_info(name)
    if info.task == "image_cls":
        return [model_inputs(model, info.task, 2 + (seed == 1), tuple(info.input_spec), seed) for seed in range(3)]
    n = 160 if info.family == "pointnet2" else 64
    return [model_inputs(model, info.task, 2 + (seed == 1), (n + 37 * (seed == 2), info.input_spec[-1]), seed)
            for seed in range(3)]


# One process that imports neither torch nor dlparts runs every file on the saved inputs and compares with eager.
RUNNER = textwrap.dedent("""
    import json, sys, numpy as np, onnxruntime
    folder, results = sys.argv[1], {}
    data = np.load(f"{folder}/data.npz")
    for name in sys.argv[2:]:
        session = onnxruntime.InferenceSession(f"{folder}/{name}.onnx", providers=["CPUExecutionProvider"])
        worst, same = 0.0, True
        for seed in range(3):
            feed = {i.name: data[f"{name}/{seed}/{i.name}"] for i in session.get_inputs()}
            got, want = session.run(None, feed)[0], data[f"{name}/{seed}/logits"]
            worst = max(worst, float(np.abs(got - want).max()))
            same = same and bool(np.array_equal(got.argmax(-1), want.argmax(-1)))
        results[name] = [worst, same]
    assert "torch" not in sys.modules and "dlparts" not in sys.modules
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every model exported to ONNX once, for all the tests of this file: ``(folder, reports, runs)``; ``reports``
    by model name: the ExportReport, or the exception its export raised; ``runs`` by name: ``[max abs difference,
    labels identical]`` from the torch-free process (one process for all the files)."""
    folder = tmp_path_factory.mktemp("onnx")
    reports, data = {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_thread fixture, which a module fixture precedes
    for name in MODELS:
        model = small_model(name)
        inputs = checks(model, name)
        try:
            reports[name] = export_model(model, folder / f"{name}.onnx", "onnx", inputs,
                                         {"task": get_model_info(name).task})
        except Exception as exc:  # raised again by this model's tests, not by every test of the file
            reports[name] = exc
            continue
        for seed, feed in enumerate(inputs):
            with torch.no_grad():
                data[f"{name}/{seed}/logits"] = model(*feed.values()).numpy()
            data |= {f"{name}/{seed}/{k}": v.numpy() for k, v in feed.items()}
    torch.set_num_threads(threads)
    np.savez(folder / "data.npz", **data)
    done = [name for name in MODELS if not isinstance(reports[name], Exception)]
    out = subprocess.run([sys.executable, "-c", RUNNER, str(folder), *done], capture_output=True, text=True,
                         check=True).stdout
    return folder, reports, json.loads(out)


def _report(exported, name):
    report = exported[1][name]
    if isinstance(report, Exception):
        raise report
    return report


@pytest.mark.parametrize("name", MODELS)
def test_onnx_runs_without_torch_and_equals_eager(exported, name):
    report = _report(exported, name)
    worst, same = exported[2][name]
    assert worst <= TOLERANCE and same, name
    assert report.seeds == 3 and report.max_abs_diff <= TOLERANCE


def _domains(graph) -> set[str]:
    found = set()
    for node in graph.node:
        found.add(node.domain)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found |= _domains(attr.g)
    return found


@pytest.mark.parametrize("name", MODELS)
def test_onnx_uses_standard_operators_only(exported, name):
    report = _report(exported, name)
    proto = onnx.load(str(report.path))
    assert _domains(proto.graph) <= {"", "ai.onnx"}, name
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert {p.key: p.value for p in proto.metadata_props} == {"task": get_model_info(name).task}
    ops = {node.op_type for node in proto.graph.node}
    if get_model_info(name).family == "pointnet2":
        assert {"Loop", "TopK", "ArgMin"} <= ops  # the point operators are in the graph, not in a custom domain


# MSG with feature propagation and a category input, a T-Net, an image model
@pytest.mark.parametrize("name", ["pointnet2_partseg_msg", "pointnet_cls", "alexnet_small"])
def test_torch_export_program_equals_eager(name, tmp_path):
    model = small_model(name)
    report = export_model(model, tmp_path / f"{name}.pt2", "export", checks(model, name))
    assert report.path.stat().st_size > 0 and report.max_abs_diff <= TOLERANCE and report.seeds == 3
    program = torch.export.load(str(report.path))
    assert any("dlparts.fps" in str(n.target) for n in program.graph.nodes) == name.startswith("pointnet2")


def test_export_is_quiet(capfd, tmp_path):
    model = small_model("pointnet2_cls_ssg")
    export_model(model, tmp_path / "m.onnx", "onnx", checks(model, "pointnet2_cls_ssg"))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


class Noisy(torch.nn.Module):
    """Eager and exported runs draw different noise: the check must refuse the file."""

    def forward(self, points):
        return points.mean(dim=1) + torch.rand(points.shape[0], 3)


@pytest.mark.parametrize("fmt", ["onnx", "export"])
def test_a_file_that_disagrees_with_eager_is_refused(fmt, tmp_path):
    inputs = [{"points": torch.zeros(2, 5, 3)}]
    with pytest.raises(ConfigError, match=f"the {fmt} file disagrees with PyTorch"):
        export_model(Noisy(), tmp_path / f"m.{fmt}", fmt, inputs)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--format 'tflite' must be one of onnx, export, torchscript"):
        export_model(Noisy(), tmp_path / "m", "tflite", [{"points": torch.zeros(1, 4, 3)}])


def test_onnx_metadata_carries_what_a_deployment_needs(tmp_path):
    model = small_model("pointnet_cls_vanilla")
    meta = {"task": "point_cls", "num_points": "64", "channels": "3", "classes": json.dumps(["a", "b"])}
    report = export_model(model, tmp_path / "m.onnx", "onnx", checks(model, "pointnet_cls_vanilla"), meta)
    assert {p.key: p.value for p in onnx.load(str(report.path)).metadata_props} == meta


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from dlparts.cli import main

    folder = tmp_path_factory.mktemp("run")
    assert main(["fit", "model.name=pointnet_cls_vanilla", "data.name=synthetic_shapes", "data.args.tiny=true",
                 "data.num_points=64", "data.batch_size=8", "trainer.max_epochs=1", "trainer.progress=false",
                 "trainer.accelerator=cpu", "trainer.devices=1", "plots.enabled=false",
                 "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                 f"run.dir={folder}", "run.name=r"]) == 0
    return folder / "r" / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("export", ".pt2")])
def test_export_command_writes_one_line_per_file(fmt, suffix, checkpoint, capsys):
    from dlparts.cli import main

    capsys.readouterr()
    assert main(["export", "--ckpt", str(checkpoint), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"best{suffix} ({fmt}); checked on points 2x64x3, 3 seeds" in out
    assert float(out.split("PyTorch ")[1].split()[0]) <= TOLERANCE and checkpoint.with_suffix(suffix).stat().st_size
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(checkpoint.with_suffix(suffix))).metadata_props}
        assert meta["task"] == "point_cls" and meta["num_points"] == "64" and len(json.loads(meta["classes"])) > 1


def test_predict_onnx_prints_what_predict_ckpt_prints(checkpoint, tmp_path, capsys):
    from dlparts.cli import main

    cloud = tmp_path / "ball.xyz"
    np.savetxt(cloud, np.random.default_rng(0).normal(size=(300, 3)))
    model = tmp_path / "m.onnx"
    assert main(["export", "--ckpt", str(checkpoint), "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(checkpoint), str(cloud)]) == 0
    by_ckpt = capsys.readouterr().out
    assert main(["predict", "--onnx", str(model), str(cloud)]) == 0
    assert capsys.readouterr().out == by_ckpt and by_ckpt.count("%") == 5


def test_predict_onnx_part_segmentation_equals_the_module(tmp_path):
    """Part segmentation (category input, labels restricted to the category's parts) through the file's metadata."""
    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits
    from dlparts.train.export import export
    from dlparts.train.modules import build_module
    from dlparts.train.predict import load_onnx, predict_file, predict_file_onnx

    cfg = load_config(None, ["model.name=pointnet_partseg", "data.name=synthetic_parts", "data.args.tiny=true",
                             "data.num_points=64"])
    module = build_module(cfg, build_splits(cfg).info).eval()
    export(module, tmp_path / "m.onnx", "onnx")
    cloud = tmp_path / "c.xyz"
    np.savetxt(cloud, np.random.default_rng(1).normal(size=(200, 3)))
    category = module.info["categories"][1]
    want = predict_file(module, cloud, category=category, out_dir=tmp_path / "ckpt")
    got = predict_file_onnx(load_onnx(tmp_path / "m.onnx"), cloud, category=category, out_dir=tmp_path / "onnx")
    assert got.counts == want.counts and len(got.outputs) == len(want.outputs)
    assert (tmp_path / "onnx" / "c.seg.ply").read_bytes() == (tmp_path / "ckpt" / "c.seg.ply").read_bytes()


def test_predict_onnx_scene_model_labels_with_its_training_block_size(tmp_path, monkeypatch):
    """The ONNX file carries the run's block size; labelling a scene through it uses 1.5 m blocks, not the 1 m
    default, and gives the checkpoint's labels."""
    from dlparts.data.labelled import write_labelled_ply
    from dlparts.train import whole_scene
    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits
    from dlparts.train.export import export
    from dlparts.train.modules import build_module
    from dlparts.train.predict import load_onnx, predict_file, predict_file_onnx

    rng = np.random.default_rng(3)
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "classes.txt").write_text("floor\nwall\n")
    for k in range(3):
        xyz = (rng.random((300, 3)) * [3.0, 3.0, 1.0]).astype(np.float32)
        write_labelled_ply(root / f"s{k}.ply", xyz, None, (xyz[:, 2] > 0.5).astype(np.int64))
    cfg = load_config(None, ["model.name=pointnet_semseg", "data.name=scene_folder", f"data.root={root}",
                             "data.num_points=32", "data.args.block_size=1.5", "data.test_fraction=0.34"])
    module = build_module(cfg, build_splits(cfg).info).eval()
    export(module, tmp_path / "m.onnx", "onnx")
    deployed = load_onnx(tmp_path / "m.onnx")
    assert json.loads(deployed.meta["data"]) == {"block_size": 1.5}
    sizes = []
    label_scene = whole_scene.label_scene

    def spy(*args, **kwargs):
        sizes.append(kwargs["block_size"])
        return label_scene(*args, **kwargs)

    monkeypatch.setattr(whole_scene, "label_scene", spy)
    got = predict_file_onnx(deployed, root / "s0.ply", out_dir=tmp_path / "onnx")
    want = predict_file(module, root / "s0.ply", out_dir=tmp_path / "ckpt")
    assert sizes == [1.5, 1.5] and got.notes == want.notes and got.counts == want.counts


@pytest.mark.parametrize("mean", ["image", "channel"])
def test_predict_onnx_image_model_equals_the_checkpoint(mean, tmp_path):
    """The file carries the preprocessing (image size, crop, the run's mean image or colour, exactly)."""
    from PIL import Image

    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits
    from dlparts.train.export import decode_mean, export, image_mean
    from dlparts.train.modules import build_module
    from dlparts.train.predict import load_onnx, predict_file, predict_file_onnx

    cfg = load_config(None, ["model.name=alexnet_small", "data.name=synthetic_images", "data.args.image_size=48",
                             "data.args.crop_size=40", "data.args.train_per_class=2", "data.args.val_per_class=1",
                             f"data.args.mean={mean}"])
    splits = build_splits(cfg)
    module = build_module(cfg, splits.info).eval()
    module.extra_state = splits.extra_state
    export(module, tmp_path / "m.onnx", "onnx")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(photo)
    deployed = load_onnx(tmp_path / "m.onnx")
    assert torch.equal(decode_mean(deployed.meta), image_mean(module))
    assert decode_mean(deployed.meta).dim() == (3 if mean == "image" else 1)
    want, got = predict_file(module, photo), predict_file_onnx(deployed, photo)
    assert [c for c, _ in got.top] == [c for c, _ in want.top] and len(got.top) == 5
    assert np.allclose([p for _, p in got.top], [p for _, p in want.top], atol=1e-5)


@torch.library.custom_op("dlparts_tests::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


class Unexportable(torch.nn.Module):
    def forward(self, points):
        return twice(points).mean(dim=1)


def test_a_model_that_cannot_be_exported_gets_one_line_naming_the_operator(capfd, tmp_path):
    with pytest.raises(ConfigError, match="cannot be exported to ONNX: .*dlparts_tests::twice") as caught:
        export_model(Unexportable(), tmp_path / "m.onnx", "onnx", [{"points": torch.zeros(2, 5, 3)}])
    assert "\n" not in str(caught.value)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no graph dump on the terminal
