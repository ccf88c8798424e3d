"""The unreadable files of the user's folders (point_folder, scene_folder, part_folder) reach the run's results:
``results.json`` of ``dlparts fit`` and ``test-<checkpoint>.json`` of ``dlparts test``, count and list."""

import json

import numpy as np
import pytest

from dlparts.cli import main
from dlparts.data.labelled import write_labelled_ply
from dlparts.train.config import load_config
from dlparts.train.data import build_splits

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "cache"))


def labelled(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * [2.0, 2.0, 1.0]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_labelled_ply(path, xyz, None, (xyz[:, 2] > 0.5).astype(np.int64))


def broken(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n")
    return path


def test_fit_and_test_of_a_scene_folder_list_the_skipped_files(tmp_path, capsys):
    root = tmp_path / "scenes"
    for split, k in (("train", 0), ("train", 1), ("test", 2)):
        labelled(root / split / f"s{k}.ply", seed=k)
    bad = [broken(root / "train" / "bad.ply"), broken(root / "test" / "bad.ply")]
    (root / "classes.txt").write_text("low\nhigh\n")
    run = ["model.name=pointnet_semseg", "data.name=scene_folder", f"data.root={root}", "data.num_points=32",
           "data.batch_size=4", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
           "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", f"run.dir={tmp_path / 'runs'}",
           "run.name=r", "plots.enabled=false", "trainer.progress=false"]
    assert main(["fit", *run]) == 0
    results = json.loads((tmp_path / "runs" / "r" / "results.json").read_text())
    assert results["skipped_files"] == 2 and results["dropped_nonfinite_points"] == 0
    assert [s.split(": ")[0] for s in results["skipped"]] == [str(p) for p in bad]
    assert all("the header promises 3 vertex" in s for s in results["skipped"])
    capsys.readouterr()
    assert main(["test", "--ckpt", str(tmp_path / "runs" / "r" / "checkpoints" / "best.ckpt")]) == 0
    tested = json.loads((tmp_path / "runs" / "r" / "test-best.json").read_text())
    assert tested["skipped"] == results["skipped"] and tested["test_whole_scenes"]["scenes"] == 1


def test_part_and_point_folders_count_their_skipped_files(tmp_path):
    for split, k in (("train", 0), ("train", 1), ("train", 2), ("test", 3)):
        labelled(tmp_path / "parts" / "mug" / split / f"{k}.ply", n=60, seed=k)
    broken(tmp_path / "parts" / "mug" / "test" / "bad.ply")
    cfg = load_config(None, ["model.name=pointnet_partseg", "data.name=part_folder", f"data.root={tmp_path / 'parts'}",
                             "data.num_points=16", "data.classes=[low, high]"])
    files = build_splits(cfg).files
    assert files["skipped_files"] == 1 and files["skipped"][0].startswith(f"{tmp_path}/parts/mug/test/bad.ply: ")
    for kind in ("box", "ball"):
        (tmp_path / "shapes" / kind).mkdir(parents=True)
        for k in range(4):
            np.savetxt(tmp_path / "shapes" / kind / f"{k}.xyz", np.random.default_rng(k).normal(size=(50, 3)))
    (tmp_path / "shapes" / "ball" / "bad.xyz").write_text("1 2\n")
    cfg = load_config(None, ["model.name=pointnet_cls_vanilla", "data.name=point_folder",
                             f"data.root={tmp_path / 'shapes'}", "data.num_points=16", "trainer.progress=false"])
    files = build_splits(cfg).files
    assert files["skipped_files"] == 1 and files["skipped"][0].startswith(f"{tmp_path}/shapes/ball/bad.xyz: ")
