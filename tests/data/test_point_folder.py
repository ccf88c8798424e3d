"""``data.name: point_folder``: a class-per-folder root of mixed mesh and point files, split (stratified, seeded, or
by train/ and test/ folders), sampled once and cached per file, with bad files skipped and counted."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dlparts.data import folders, read_mesh, read_points
from dlparts.data.folders import PointFolder, plan_splits, read_splits
from dlparts.errors import DataError, DataNotFoundError, NonFiniteError
from dlparts.train import engine
from dlparts.train.config import load_config
from dlparts.train.data import build_splits

FORMATS = ("off", "ply", "obj", "stl", "xyz")


def _write(path: Path, index: int, kind: str) -> None:
    """A small shape of class ``kind``, in the format of ``path``'s suffix."""
    rng = np.random.default_rng(index)
    mesh = trimesh.creation.box(extents=rng.uniform(0.5, 2, 3)) if kind == "box" else \
        trimesh.creation.icosphere(subdivisions=1, radius=rng.uniform(0.5, 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".xyz":
        np.savetxt(path, mesh.sample(100, seed=index))
    else:
        mesh.export(path)


@pytest.fixture
def root(tmp_path, monkeypatch):
    """``box/`` and ``ball/`` with 8 files each (5 formats, some in a subfolder); the cache in ``tmp_path``."""
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shapes"
    for kind in ("box", "ball"):
        for i in range(8):
            _write(root / kind / ("deep" if i % 3 == 0 else "") / f"{kind}{i}.{FORMATS[i % 5]}", i, kind)
    return root


@pytest.fixture
def counted(monkeypatch):
    """The names of the files sampled, in order (load_points as the cache calls it)."""
    names = []
    real = folders.load_points

    def load(path, *args, **kwargs):
        names.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(folders, "load_points", load)
    return names


def test_seeded_split_is_stratified_disjoint_and_repeatable(root):
    plan = plan_splits(root, val_fraction=0.2, test_fraction=0.25, seed=3)
    assert plan.classes == ["ball", "box"] and plan.layout == "seeded fractions"
    counts = {s: [sum(1 for _, c in plan.files[s] if c == k) for k in (0, 1)] for s in plan.files}
    assert counts == {"train": [5, 5], "val": [1, 1], "test": [2, 2]}  # 8 = 2 test + round(6 * 0.2) val + 5
    names = [f for s in plan.files for f, _ in plan.files[s]]
    assert len(names) == len(set(names)) == 16 and "ball/deep/ball0.off" in names
    assert plan == plan_splits(root, val_fraction=0.2, test_fraction=0.25, seed=3)
    assert plan.files["test"] != plan_splits(root, val_fraction=0.2, test_fraction=0.25, seed=4).files["test"]
    chosen = plan_splits(root, classes=["box", "ball"])
    assert chosen.classes == ["box", "ball"] and {c for _, c in chosen.files["test"] if _.startswith("box")} == {0}


def test_train_and_test_folders_are_the_splits(root, tmp_path):
    published = tmp_path / "published"
    for kind in ("box", "ball"):
        for i in range(6):
            _write(published / kind / ("test" if i < 2 else "train") / f"{kind}{i}.{FORMATS[i % 5]}", i, kind)
    plan = plan_splits(published, val_fraction=0.25)
    assert plan.layout == "train/test folders"
    assert sorted(f for f, _ in plan.files["test"]) == ["ball/test/ball0.off", "ball/test/ball1.ply",
                                                        "box/test/box0.off", "box/test/box1.ply"]
    assert all("/train/" in f for s in ("train", "val") for f, _ in plan.files[s])
    assert len(plan.files["val"]) == 2 and len(plan.files["train"]) == 6


def test_empty_class_too_few_files_and_missing_classes_name_the_class(root):
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="class 'empty': its folder .*empty holds no file of a known format"):
        plan_splits(root)
    (root / "empty" / "one.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (root / "empty" / "two.xyz").write_text("0 0 0\n1 0 0\n")
    with pytest.raises(DataError, match="class 'empty' has 1 training and 1 test file"):
        plan_splits(root)
    with pytest.raises(DataNotFoundError, match="data.classes names 'cone', but .* has no such folder"):
        plan_splits(root, classes=["box", "cone"])


def test_clouds_are_cached_and_only_changed_or_added_files_resampled(root, counted):
    train = PointFolder(root, "train", num_points=64)
    assert len(counted) == 16 and train.points.shape == (len(train), 64, 3)
    assert np.allclose(train.points.norm(dim=2).amax(dim=1).numpy(), 1, atol=1e-5)  # each in the unit sphere
    assert train.labels.tolist() == [0 if f.startswith("ball") else 1 for f in train.files]
    counted.clear()
    again = PointFolder(root, "test", num_points=64)
    assert counted == [] and PointFolder(root, "train", num_points=64).points.equal(train.points)
    changed = root / "box" / "box2.stl"
    _write(changed, 99, "box")  # new content
    stamp = changed.stat()
    os.utime(root / "box" / "box4.xyz", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # only a new mtime
    plan = plan_splits(root)
    _write(root / "ball" / "ball8.off", 8, "ball")  # an added file joins the plan given
    plan.files["train"].append(("ball/ball8.off", 0))
    PointFolder(root, "test", num_points=64, plan=plan)
    assert sorted(counted) == ["ball8.off", "box2.stl", "box4.xyz"]
    assert len(again) == 4


def test_unreadable_and_nonfinite_files_are_skipped_counted_or_dropped(root, caplog):
    (root / "box" / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 99\nproperty float x\n"
                                              b"end_header\n1\n")
    nan = np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 1], [0, 1, 0], [np.inf, 0, 1], [0, 0, 1]])
    np.save(root / "ball" / "holes.npy", nan)
    plan = plan_splits(root)
    skipped = {f: why for s in plan.files for f, why in PointFolder(root, s, num_points=32, plan=plan).skipped}
    assert skipped.keys() == {"box/broken.ply", "ball/holes.npy"}
    assert "broken.ply: the header promises 99 vertex" in skipped["box/broken.ply"]
    assert "holes.npy: point 2 has a NaN or infinite value" in skipped["ball/holes.npy"]
    assert "2 of 6 rows have one; set data.drop_nonfinite=true" in skipped["ball/holes.npy"]
    assert caplog.text.count("broken.ply: the header promises") == 1  # reported once
    dropping = {s: PointFolder(root, s, num_points=32, plan=plan, drop_nonfinite=True) for s in plan.files}
    holder = next(d for d in dropping.values() if "ball/holes.npy" in d.files)
    assert holder.dropped == 2 and holder[holder.files.index("ball/holes.npy")]["points"].isfinite().all()
    assert sum(len(d.skipped) for d in dropping.values()) == 1


def _cfg(tmp_path, root, *more):
    return load_config(None, ["model.name=pointnet_cls", "data.name=point_folder", f"data.root={root}",
                              "data.num_points=64", "trainer.progress=true", f"run.dir={tmp_path / 'runs'}",
                              "run.name=r", *more])


def test_registry_writes_split_lists_and_counts_and_a_run_reads_them_back(root, tmp_path, capsys):
    cfg = _cfg(tmp_path, root)
    splits = build_splits(cfg)
    assert splits.info["classes"] == ["ball", "box"] and splits.info["input_spec"] == [64, 3]
    saved = tmp_path / "runs" / "r" / "splits.json"
    record = json.loads(saved.read_text())
    assert record["counts"] == {"ball": {"train": 5, "val": 1, "test": 2}, "box": {"train": 5, "val": 1, "test": 2}}
    assert sorted(splits.test.files) == sorted(f for f, _ in record["files"]["test"])
    assert re.search(r"\n  ball\s+5 /\s+1 /\s+2\n  box\s+5 /\s+1 /\s+2\n", capsys.readouterr().err)
    written = saved.read_text()
    (saved.parent / "checkpoints").mkdir()
    (saved.parent / "checkpoints" / "last.ckpt").write_bytes(b"")  # the folder now holds a run
    for i in range(9, 15):  # more files: a fresh draw would move some into the test split
        _write(root / "box" / f"box{i}.off", i, "box")
    again = build_splits(_cfg(tmp_path, root, "data.test_fraction=0.5"))
    assert again.test.files == splits.test.files and saved.read_text() == written
    assert [f for f, _ in read_splits(saved).files["test"]] == splits.test.files
    assert len(build_splits(_cfg(tmp_path, root, "run.name=fresh")).test.files) == 2 + 3  # 14 boxes: 3 to test


def test_fit_and_test_one_epoch_on_a_folder(root, tmp_path, one_thread):
    cfg = _cfg(tmp_path, root, "trainer.max_epochs=1", "trainer.progress=false", "trainer.accelerator=cpu",
               "trainer.devices=1", "data.batch_size=4", "plots.enabled=false", "trainer.limit_train_batches=2")
    result = engine.fit(cfg)
    assert result["data"] == "point_folder" and 0 <= result["test"]["acc"] <= 1
    _write(root / "box" / "box20.off", 20, "box")  # added after the fit: never a test file of this run
    tested = engine.test(result["best_ckpt"])
    assert tested["test"] == result["test"]


def test_readers_count_nonfinite_rows_or_drop_them_with_the_faces_using_them(tmp_path):
    off = tmp_path / "holes.off"
    off.write_text("OFF\n5 2 0\n0 0 0\n1 0 0\nnan 0 0\n0 1 0\n0 0 1e39\n3 0 1 3\n3 0 2 4\n")
    with pytest.raises(NonFiniteError, match=r"holes.off: vertex 2 has a NaN .*; 2 of 5 rows have one") as info:
        read_mesh(off)
    assert info.value.count == 2
    mesh = read_mesh(off, drop_nonfinite=True)
    assert mesh.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]] and mesh.faces.tolist() == [[0, 1, 2]]
    table = tmp_path / "holes.xyz"
    table.write_text("0 0 0 5\ninf 0 0 6\n1 1 1 7\n")
    assert read_points(table, drop_nonfinite=True).labels.tolist() == [5, 7]


def test_worker_processes_sample_the_same_clouds_and_all_splits_equal_one_by_one(root, tmp_path, monkeypatch):
    alone = PointFolder.all_splits(root, num_points=32)
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "other_cache"))
    monkeypatch.setattr(folders, "_FILES_PER_WORKER", 4)  # 16 files: as many workers as cores, up to 4
    for split, dataset in alone.items():
        one = PointFolder(root, split, num_points=32)
        assert one.files == dataset.files and one.points.equal(dataset.points) and one.labels.equal(dataset.labels)
