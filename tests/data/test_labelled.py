"""Labelled files (PLY label property, tables with data.columns) and the scene_folder / part_folder datasets."""

import numpy as np
import pytest

from dlparts.data.labelled import read_labelled, write_labelled_ply
from dlparts.data.s3dis import room_to_blocks
from dlparts.data.scene_folder import PartFolder, SceneFolder, scene_files
from dlparts.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def scene(n=400, size=2.0):
    xyz = (RNG.random((n, 3)) * [size, size, 1.0]).astype(np.float32)
    rgb = RNG.integers(0, 256, (n, 3)).astype(np.uint8)
    labels = (xyz[:, 0] > size / 2).astype(np.int64) + 2 * (xyz[:, 2] > 0.5)  # 4 classes by position
    return xyz, rgb, labels


def test_binary_ply_round_trip_keeps_points_colours_and_labels(tmp_path):
    xyz, rgb, labels = scene()
    path = write_labelled_ply(tmp_path / "s.ply", xyz, rgb, labels)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian")
    got = read_labelled(path)
    assert np.array_equal(got.xyz, xyz) and np.array_equal(got.rgb, rgb) and np.array_equal(got.labels, labels)
    assert got.labels.dtype == np.int64 and got.dropped == 0
    assert read_labelled(write_labelled_ply(tmp_path / "n.ply", xyz, None, labels)).rgb is None


def test_ply_label_field_by_name_and_the_error_listing_the_fields(tmp_path):
    xyz, rgb, labels = scene(50)
    header = ["ply", "format ascii 1.0", "element vertex 50", *(f"property float {a}" for a in "xyz"),
              *(f"property uchar {c}" for c in ("red", "green", "blue")), "property float scalar_Label", "end_header"]
    rows = [f"{x} {y} {z} {r} {g} {b} {lab}.0" for (x, y, z), (r, g, b), lab in zip(xyz.tolist(), rgb, labels)]
    path = tmp_path / "cc.ply"  # CloudCompare's label name, as a float, in a text PLY
    path.write_text("\n".join(header + rows) + "\n")
    assert np.array_equal(read_labelled(path).labels, labels)
    with pytest.raises(DataError) as err:
        read_labelled(path, label_field="semantic_id")
    assert str(err.value).startswith(f"{path}: no per-vertex label property semantic_id; the vertices have x, y, z, "
                                     "red, green, blue, scalar_Label")


def test_tables_by_columns_and_the_missing_label_column(tmp_path):
    xyz, rgb, labels = scene(30)
    table = np.concatenate([labels[:, None], rgb, xyz], axis=1).astype(np.float64)  # label first, then rgb, xyz
    np.savetxt(tmp_path / "s.txt", table)
    np.save(tmp_path / "s.npy", table)
    columns = {"xyz": [4, 5, 6], "rgb": [1, 2, 3], "label": 0}
    for name in ("s.txt", "s.npy"):
        got = read_labelled(tmp_path / name, columns=columns)
        assert np.allclose(got.xyz, xyz, atol=1e-6) and np.array_equal(got.rgb, rgb)
        assert np.array_equal(got.labels, labels)
    with pytest.raises(DataError, match=r"s\.txt: no label column; the table has 7 columns \(0\.\.6\)"):
        read_labelled(tmp_path / "s.txt", columns={"xyz": [4, 5, 6]})
    with pytest.raises(DataError, match=r"names column 9, but the table has 7 columns"):
        read_labelled(tmp_path / "s.txt", columns={"xyz": [4, 5, 9], "label": 0})
    with pytest.raises(ConfigError, match="data.columns"):
        read_labelled(tmp_path / "s.txt", columns={"xyz": [0, 1], "label": 0})


def test_non_finite_points_refused_with_count_or_dropped_and_counted(tmp_path):
    xyz, rgb, labels = scene(40)
    xyz[[3, 7, 11]] = [np.nan, 0, 0]
    path = write_labelled_ply(tmp_path / "nan.ply", xyz, rgb, labels)
    with pytest.raises(DataError, match=r"nan\.ply: 3 of 40 points have NaN or infinite coordinates"):
        read_labelled(path)
    got = read_labelled(path, drop_nonfinite=True)
    keep = np.ones(40, bool)
    keep[[3, 7, 11]] = False
    assert got.dropped == 3 and np.array_equal(got.labels, labels[keep]) and np.array_equal(got.rgb, rgb[keep])


def folder(tmp_path, scenes=4, classes="a\nb\nc\nd\n", rgb=True):
    root = tmp_path / "scenes"
    root.mkdir(parents=True)
    (root / "classes.txt").write_text(classes)
    for k in range(scenes):
        xyz, colours, labels = scene()
        write_labelled_ply(root / f"room{k}.ply", xyz, colours if rgb else None, labels)
    return root


def test_scene_folder_cuts_scenes_into_blocks_as_s3dis_does(tmp_path):
    root = folder(tmp_path)
    train = SceneFolder(root, "train", num_points=64, seed=3)
    test = SceneFolder(root, "test", num_points=64, seed=3)
    assert train.classes == ["a", "b", "c", "d"] and len(test.files) == 1 and len(train.files) == 3
    assert not set(train.files) & set(test.files)
    assert train[0]["points"].shape == (64, 9) and train[0]["seg"].max() <= 3
    first = read_labelled(train.files[0])
    want, _ = room_to_blocks(first.xyz, first.rgb, first.labels, np.random.default_rng([3, 0]), num_points=64,
                             min_points=16)
    assert np.array_equal(train.points[:len(want)].numpy(), want)
    plain = SceneFolder(folder(tmp_path / "x", rgb=False), "train", num_points=64)
    assert plain[0]["points"].shape == (64, 6)


def test_scene_folder_train_and_test_folders_and_label_errors(tmp_path):
    root = tmp_path / "split"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        xyz, rgb, labels = scene()
        write_labelled_ply(root / split / "s.ply", xyz, rgb, labels)
    assert scene_files(root, "test") == [root / "test" / "s.ply"]
    with pytest.raises(ConfigError, match="classes.txt"):
        SceneFolder(root, "train", num_points=64)
    with pytest.raises(DataError) as err:
        SceneFolder(root, "train", num_points=64, classes=["a", "b"])
    bad = int((scene_labels := read_labelled(root / "train" / "s.ply").labels >= 2).sum())
    assert str(err.value) == (f"{root / 'train' / 's.ply'}: {bad} points have labels outside the 2 classes (0..1): "
                              f"2, 3") and scene_labels.any()


def test_part_folder_categories_and_parts(tmp_path):
    root = tmp_path / "parts"
    for category, first in (("mug", 0), ("lamp", 2)):
        (root / category).mkdir(parents=True)
        for k in range(3):
            xyz, _, labels = scene(100)
            write_labelled_ply(root / category / f"{k}.ply", xyz, None, first + labels % 2)
    train = PartFolder(root, "train", num_points=32, classes=["handle", "body", "shade", "base"])
    assert train.categories == ["lamp", "mug"] and train.parts_of_category == {0: [2, 3], 1: [0, 1]}
    item = train[0]
    assert item["points"].shape == (32, 3) and float(item["points"].norm(dim=1).max()) == pytest.approx(1, abs=1e-5)
    assert len(train) == 4 and len(PartFolder(root, "test", num_points=32, classes=list("abcd"))) == 2


def test_registry_builds_both_folders_from_data_keys(tmp_path):
    from dlparts.train.config import load_config
    from dlparts.train.data import build_splits

    root = folder(tmp_path, scenes=5, rgb=False)
    cfg = load_config(None, ["model.name=pointnet_semseg", "data.name=scene_folder", f"data.root={root}",
                             "data.num_points=32", "data.test_fraction=0.4", "data.args.block_size=0.5"])
    splits = build_splits(cfg)
    assert splits.info["task"] == "point_semseg" and splits.info["input_spec"] == [32, 6]
    assert splits.info["classes"] == ["a", "b", "c", "d"] and len(splits.test.files) == 2
    cfg = load_config(None, ["model.name=pointnet_partseg", "data.name=part_folder", f"data.root={tmp_path / 'x'}",
                             "data.num_points=16", "data.classes=[p, q, r, s]"])
    (tmp_path / "x" / "cup").mkdir(parents=True)
    for k in range(3):
        xyz, _, labels = scene(60)
        write_labelled_ply(tmp_path / "x" / "cup" / f"{k}.ply", xyz, None, labels)
    info = build_splits(cfg).info
    assert info["categories"] == ["cup"] and info["parts_of_category"] == {0: [0, 1, 2, 3]}
