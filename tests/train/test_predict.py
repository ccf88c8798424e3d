"""`dlparts predict` on several files: normals completed for xyz-only files, every bad file reported, none stopping
the rest (an untrained part segmentation model with normals, built from its config: no training needed)."""

import numpy as np
import pytest
import trimesh
from PIL import Image

import dlparts.train.engine
from dlparts.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = ["model.name=pointnet_partseg", "data.name=synthetic_parts", "data.args.tiny=true", "data.args.normals=true",
       "data.num_points=128"]


@pytest.fixture(scope="module")
def module_and_cfg():
    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits
    from dlparts.train.modules import build_module

    cfg = load_config(None, CFG)
    splits = build_splits(cfg)
    module = build_module(cfg, splits.info).eval()
    assert module.info["input_spec"][-1] == 6  # xyz + normals
    return module, cfg


@pytest.fixture()
def files(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(300, 3))
    np.savetxt(tmp_path / "ball.xyz", xyz / np.linalg.norm(xyz, axis=1, keepdims=True))  # xyz only
    trimesh.creation.box().export(tmp_path / "box.off")  # a mesh: normals from its faces
    (tmp_path / "bad.xyz").write_text("not numbers\n")
    return tmp_path


def test_read_cloud_estimates_normals_only_where_the_file_has_none(files):
    from dlparts.train.predict import read_cloud

    ball = read_cloud(files / "ball.xyz", 64, 6)
    assert ball.points.shape == (64, 6) and "normals estimated from the 16 nearest neighbours" in ball.note
    radial = ball.points[:, :3] / np.linalg.norm(ball.points[:, :3], axis=1, keepdims=True)
    assert (ball.points[:, 3:] * radial).sum(axis=1).min() > 0.9  # a sphere's normals point outward
    box = read_cloud(files / "box.off", 64, 6)
    assert box.note is None and np.allclose(np.abs(box.points[:, 3:]).max(axis=1), 1)  # axis-aligned face normals
    assert read_cloud(files / "ball.xyz", 64, 3).note is None


def test_predict_goes_on_past_bad_files(module_and_cfg, files, monkeypatch, capsys):
    monkeypatch.setattr(dlparts.train.engine, "load_checkpoint", lambda ckpt, **kwargs: module_and_cfg)
    names = [str(files / n) for n in ("bad.xyz", "ball.xyz", "missing.xyz", "box.off")]
    category = module_and_cfg[0].info["categories"][0]
    assert main(["predict", "--ckpt", "any.ckpt", "--category", category, *names, "--out", str(files / "seg")]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"dlparts predict: error: {names[0]}: line 1 holds something that is not a number: "
                                "'not'",
                                f"dlparts predict: error: {names[2]} does not exist",
                                f"dlparts predict: 2 of 4 files failed: {names[0]}, {names[2]}"]
    lines = out.splitlines()
    assert lines[0].startswith(f"{names[1]}: ") and "normals estimated" in lines[1]
    assert lines[2].startswith(f"{names[3]}: ") and len(lines) == 3
    assert {p.name for p in (files / "seg").iterdir()} == {f"{stem}.seg.{kind}" for stem in ("ball", "box")
                                                           for kind in ("ply", "png", "html")}
    assert min(Image.open(files / "seg" / "ball.seg.png").size) >= 800
    names = module_and_cfg[0].info["classes"]
    assert any(name in (files / "seg" / "ball.seg.html").read_text() for name in names)  # the legend


def test_predict_of_good_files_exits_0(module_and_cfg, files, monkeypatch, capsys):
    monkeypatch.setattr(dlparts.train.engine, "load_checkpoint", lambda ckpt, **kwargs: module_and_cfg)
    category = module_and_cfg[0].info["categories"][0]
    assert main(["predict", "--ckpt", "any.ckpt", "--category", category, str(files / "box.off")]) == 0
    assert capsys.readouterr().err == ""
