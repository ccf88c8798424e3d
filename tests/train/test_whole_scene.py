"""Every point labelled: whole-scene semantic segmentation (blocks with overlap, scores averaged, nearest sampled
neighbour for the rest) and part labels carried to every point of an object, through `dlparts predict`."""

import copy
import json

import numpy as np
import pytest
import torch

import dlparts.train.engine
from dlparts.cli import main
from dlparts.data.labelled import read_labelled, write_labelled_ply
from dlparts.data.s3dis import room_to_blocks
from dlparts.errors import ConfigError
from dlparts.train.whole_scene import _sum_by_point, confusion, confusion_figures, label_scene, module_scores
from dlparts.viz import label_colors

pytestmark = pytest.mark.usefixtures("one_thread")


def room(n=3000, seed=0):
    """A 3 m x 2 m floor: red points (class 1) where x > 1.5, grey (class 0) elsewhere."""
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * [3.0, 2.0, 0.5]).astype(np.float32)
    labels = (xyz[:, 0] > 1.5).astype(np.int64)
    rgb = np.where(labels[:, None] == 1, [220, 20, 20], [128, 128, 128]).astype(np.uint8)
    return xyz, rgb, labels


def by_colour(features: np.ndarray) -> np.ndarray:
    """A perfect model of :func:`room`: class 1 where the red channel (feature 3) is high."""
    red = features[..., 3] > 0.75
    return np.stack([~red, red], axis=-1).astype(np.float32)  # [B, n, 2]


def test_every_point_is_labelled_and_unsampled_points_take_their_neighbours_scores():
    xyz, rgb, labels = room()
    done = label_scene(by_colour, xyz, rgb, num_points=64, block_size=1.0, batch_size=4)
    assert done.labels.shape == (3000,) and done.sampled < 3000  # most points were never sampled
    assert done.blocks == 5 * 3  # corners every 0.5 m (half a block): 5 along 3 m, 3 along 2 m
    wrong = done.labels != labels
    assert wrong.mean() < 0.02 and (np.abs(xyz[wrong, 0] - 1.5) < 0.15).all()  # errors only at the border
    full = label_scene(by_colour, xyz, rgb, num_points=2048, block_size=1.0, stride=0.5, votes=2)
    assert np.array_equal(full.labels, labels) and full.blocks == 30  # every point sampled: exact


def test_scores_are_summed_per_point_bit_for_bit_as_add_at_does():
    rng = np.random.default_rng(0)
    picks, probs = rng.integers(0, 500, 4000), rng.random((4000, 13), dtype=np.float32)
    index, inverse = np.unique(picks, return_inverse=True)
    want = np.zeros((len(index), 13), np.float32)
    np.add.at(want, inverse, probs)
    got_index, got = _sum_by_point(picks, probs)
    assert np.array_equal(got_index, index) and np.array_equal(got, want)
    assert _sum_by_point(np.array([3, 1, 3]), np.array([[1.0], [2.0], [4.0]], np.float32))[1].tolist() == [[2.0], [5.0]]


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ConfigError, match="precision='fp16' is not one of fp32, bf16"):
        module_scores(torch.nn.Identity(), precision="fp16")


def test_figures_of_a_confusion_matrix():
    truth = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    cm = confusion(pred, truth, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    got = confusion_figures(cm, ["a", "b", "c", "d"])
    assert got["oa"] == pytest.approx(0.6) and got["per_class_iou"] == {"a": pytest.approx(1 / 3),
                                                                        "b": pytest.approx(2 / 3), "c": 0.0, "d": None}
    assert got["miou"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def semseg():
    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits
    from dlparts.train.modules import build_module

    cfg = load_config(None, ["model.name=pointnet_semseg", "data.name=synthetic_rooms", "data.args.tiny=true",
                             "data.num_points=128"])
    return build_module(cfg, build_splits(cfg).info).eval(), cfg


def test_predict_labels_every_point_of_a_scene_file(semseg, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dlparts.train.engine, "load_checkpoint", lambda ckpt, **kwargs: semseg)
    xyz, rgb, labels = room(2000)
    (tmp_path / "scans" / "deep").mkdir(parents=True)
    scan = write_labelled_ply(tmp_path / "scans" / "deep" / "room.ply", xyz, rgb, labels)  # found in the folder
    out = tmp_path / "seg"
    assert main(["predict", "--ckpt", "any.ckpt", str(tmp_path / "scans"), "--out", str(out), "--votes", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{scan}: ") and "against the file's labels, every point: OA" in printed
    got = read_labelled(out / "room.seg.ply")
    assert np.array_equal(got.xyz, xyz) and got.labels.shape == (2000,)  # the input's points, in order
    assert (out / "room.seg.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")
    classes = semseg[0].info["classes"]
    assert got.labels.max() < len(classes)
    assert np.array_equal(got.rgb, (label_colors(got.labels) * 255).round().astype(np.uint8))  # colour per class
    assert main(["predict", "--ckpt", "any.ckpt", str(scan), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["path"] == str(scan) and sum(rows[0]["counts"].values()) == 2000 and 0 <= rows[0]["oa"] <= 1


def test_predict_precision_bf16_reaches_the_model_and_keeps_most_labels(semseg, tmp_path, monkeypatch, capsys):
    xyz, rgb, labels = room(2000)
    module = copy.deepcopy(semseg[0])
    for bn in module.modules():  # batch norm statistics of this room: an untrained model's labels then vary
        if isinstance(bn, torch.nn.BatchNorm1d):
            bn.momentum = 1.0
    blocks, _ = room_to_blocks(xyz, rgb, labels, np.random.default_rng(0), num_points=128)  # [6, 128, 9]
    with torch.no_grad():
        module.model.train()(torch.from_numpy(blocks))
    monkeypatch.setattr(dlparts.train.engine, "load_checkpoint", lambda ckpt, **kwargs: (module.eval(), semseg[1]))
    scan = write_labelled_ply(tmp_path / "room.ply", xyz, rgb, labels)
    dtypes = []  # the logits layer's output dtype, seen through the folded copy predict makes (hooks are copied)
    module.model.head[1].register_forward_hook(lambda layer, args, out: dtypes.append(out.dtype))
    got = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["predict", "--ckpt", "any.ckpt", str(scan), "--out", str(out), "--precision", precision]) == 0
        got[precision] = read_labelled(out / "room.seg.ply").labels
        assert set(dtypes) == {torch.float32 if precision == "fp32" else torch.bfloat16}
        dtypes.clear()
    assert len(np.unique(got["fp32"])) > 5 and (got["bf16"] == got["fp32"]).mean() > 0.9  # 97% on this machine
    capsys.readouterr()
    assert main(["predict", "--onnx", "m.onnx", str(scan), "--precision", "bf16"]) == 2
    assert capsys.readouterr().err == ("dlparts predict: error: --precision bf16 applies to --ckpt; an ONNX model runs "
                                       "as it was exported\n")


def test_the_cli_offers_the_precisions_module_scores_takes():
    from dlparts.cli_train import _PRECISIONS
    from dlparts.train.whole_scene import PRECISIONS

    assert _PRECISIONS == PRECISIONS


def test_a_scene_without_colours_for_a_colour_model_is_one_error(semseg, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dlparts.train.engine, "load_checkpoint", lambda ckpt, **kwargs: semseg)
    xyz, _, labels = room(500)
    scan = write_labelled_ply(tmp_path / "grey.ply", xyz, None, labels)
    assert main(["predict", "--ckpt", "any.ckpt", str(scan)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (f"dlparts predict: error: {scan}: the model takes colours (9 "
                                                       "channels: xyz, rgb, location), and the file has none")


def test_part_labels_reach_every_point_of_the_object(tmp_path):
    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits
    from dlparts.train.modules import build_module
    from dlparts.train.predict import predict_file

    cfg = load_config(None, ["model.name=pointnet_partseg", "data.name=synthetic_parts", "data.args.tiny=true",
                             "data.num_points=64"])
    module = build_module(cfg, build_splits(cfg).info).eval()
    xyz = np.random.default_rng(2).normal(size=(700, 3)) * [3, 1, 1] + 10  # far from the unit sphere: moved back
    np.savetxt(tmp_path / "long.xyz", xyz)
    category = module.info["categories"][1]
    result = predict_file(module, tmp_path / "long.xyz", category=category, out_dir=tmp_path)
    got = read_labelled(tmp_path / "long.seg.ply")
    assert np.allclose(got.xyz, xyz, atol=1e-4) and sum(result.counts.values()) == 700
    allowed = module.info["parts_of_category"][1]
    assert set(np.unique(got.labels).tolist()) <= set(allowed)


def test_dlparts_test_scores_every_point_of_the_test_scenes(tmp_path, capsys):
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "classes.txt").write_text("grey\nred\n")
    for k in range(3):
        write_labelled_ply(root / f"room{k}.ply", *room(1500, seed=k))
    run = ["model.name=pointnet_semseg", "data.name=scene_folder", f"data.root={root}", "data.num_points=64",
           "data.batch_size=8", "trainer.max_epochs=1", f"run.dir={tmp_path / 'runs'}", "run.name=r",
           "plots.enabled=false", "trainer.progress=false"]
    assert main(["fit", *run]) == 0
    capsys.readouterr()
    ckpt = tmp_path / "runs" / "r" / "checkpoints" / "best.ckpt"
    assert main(["test", "--ckpt", str(ckpt), "--scene-stride", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "test, sampled blocks (64 points each): mIoU" in out
    assert "test, every point of 1 test scenes (1500 points): 1 m blocks of 64 points every 0.5 m" in out
    assert "per-class IoU: grey " in out
    assert main(["test", "--ckpt", str(ckpt), "--scene-precision", "bf16"]) == 0
    assert "vote(s), unsampled points from their nearest sampled neighbour, bf16: mIoU" in capsys.readouterr().out
    saved = json.loads((tmp_path / "runs" / "r" / "test-best.json").read_text())
    whole = saved["test_whole_scenes"]
    assert whole["points"] == 1500 and set(whole["per_class_iou"]) == {"grey", "red"} and 0 <= whole["miou"] <= 1


def test_s3dis_test_scenes_are_the_full_rooms_of_the_test_area(tmp_path):
    from dlparts.train.whole_scene import scenes_to_test

    for area, room_name, n in ((1, "office_1", 30), (5, "office_1", 40), (5, "hallway_2", 25)):
        folder = tmp_path / f"Area_{area}" / room_name / "Annotations"
        folder.mkdir(parents=True)
        rows = np.concatenate([np.random.default_rng(n).random((n, 3)), np.full((n, 3), 200.0)], axis=1)
        np.savetxt(folder / "chair_1.txt", rows)
    cfg = {"seed": 0, "data": {"name": "s3dis", "root": str(tmp_path), "args": {"test_area": 5}}}
    scenes = list(scenes_to_test(cfg))
    assert [(name, len(xyz)) for name, xyz, _, _ in scenes] == [("Area_5 room 0", 25), ("Area_5 room 1", 40)]
    assert all((labels == 8).all() and rgb.shape == (len(xyz), 3) for _, xyz, rgb, labels in scenes)  # chair
