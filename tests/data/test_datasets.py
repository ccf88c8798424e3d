"""Dataset loaders on tiny fixture trees built in the published layouts (nothing downloaded, no data committed)."""

import json
import logging

import h5py
import numpy as np
import pytest
import torch

from dlparts.data import S3DIS, ModelNet, ModelNet40H5, ModelNet40Normal, ShapeNetPart
from dlparts.data.s3dis import CLASSES as S3DIS_CLASSES, Room, read_room, room_blocks, room_to_blocks
from dlparts.data.shapenetpart import CATEGORIES, PARTS_OF_CATEGORY, PART_CLASSES
from dlparts.errors import ConfigError, DataError, DataNotFoundError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "cache"))


def cube_off(scale=1.0, joined=False):
    v = [(x * scale, y * scale, z * scale) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    head = "OFF8 6 0\n" if joined else "OFF\n8 6 0\n"
    return head + "".join(f"{a} {b} {c}\n" for a, b, c in v) + "".join(f"4 {a} {b} {c} {d}\n" for a, b, c, d in quads)


def cone_off(h=2.0):
    ring = [(np.cos(a), np.sin(a), 0.0) for a in np.linspace(0, 2 * np.pi, 9)[:-1]]
    v = ring + [(0, 0, h)]
    faces = [(i, (i + 1) % 8, 8) for i in range(8)] + [(0, 1 + i, 2 + i) for i in range(6)]
    return (f"OFF\n{len(v)} {len(faces)} 0\n" + "".join(f"{a} {b} {c}\n" for a, b, c in v)
            + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces))


def modelnet_tree(root, train=6, test=2, bad=True):
    for name, make in (("bed", cube_off), ("cone", cone_off)):
        for split, count in (("train", train), ("test", test)):
            folder = root / name / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{name}_{i:04d}.off").write_text(make(joined=i % 2 == 0) if name == "bed" else make())
    if bad:
        (root / "bed" / "train" / "bed_9999.off").write_text("OFF\n100000000 3 0\n")
    return root


def test_modelnet_raw_meshes_cached_and_split(tmp_path, caplog):
    root = modelnet_tree(tmp_path / "ModelNet10")
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        train = ModelNet(root, "train", num_points=64, val_fraction=0.25)
    bad = [r for r in caplog.records if "bed_9999.off" in r.getMessage()]
    assert len(bad) == 1 and "100000000 vertices" in bad[0].getMessage()
    assert any("skipped 1 bad file" in r.getMessage() for r in caplog.records)
    val = ModelNet(root, "val", num_points=64, val_fraction=0.25)
    test = ModelNet(root, "test", num_points=64, normals=True)
    assert train.classes == ["bed", "cone"]
    assert len(train) + len(val) == 12 and len(val) == 3 and len(test) == 4
    assert not set(train.files) & set(val.files)
    assert all("/test/" in f for f in test.files) and not any("/test/" in f for f in train.files + val.files)
    item = test[0]
    assert item["points"].shape == (64, 6) and item["points"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    assert item["points"][:, :3].norm(dim=1).max() <= 1 + 1e-5
    # labels match the folder of each file
    assert all(train.classes[int(lbl)] in f for lbl, f in zip(train.labels, train.files))
    # surface sampling, not vertices: every point of a cube lies on a face of the clouds' bounding box
    cube = train.points[train.labels == 0]
    lo, hi = cube.min(dim=1, keepdim=True).values, cube.max(dim=1, keepdim=True).values
    on_face = ((cube - (lo + hi) / 2).abs() / ((hi - lo) / 2)).max(dim=2).values  # [clouds, N]
    assert torch.allclose(on_face, torch.ones_like(on_face), atol=1e-4)
    assert len(torch.unique(cube[0], dim=0)) == 64
    # the cache is used: with every mesh made unreadable, the same clouds come back
    for f in root.rglob("*.off"):
        f.write_text("garbage")
    again = ModelNet(root, "train", num_points=64, val_fraction=0.25)
    assert torch.equal(again.points, train.points)


def test_modelnet_layout_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist.*<class>/\\{train,test\\}/\\*.off.*modelnet"):
        ModelNet(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no <class>/train"):
        ModelNet(tmp_path / "empty")
    with pytest.raises(ConfigError, match="split"):
        ModelNet(modelnet_tree(tmp_path / "m", bad=False), "validation")


def test_modelnet40_normal_resampled(tmp_path, caplog):
    root = tmp_path / "modelnet40_normal_resampled"
    rng = np.random.default_rng(0)
    names = ["airplane", "night_stand"]
    (root).mkdir()
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    shapes = {"train": [f"{n}_{i:04d}" for n in names for i in range(1, 5)], "test": ["night_stand_0100"]}
    for split, lst in shapes.items():
        (root / f"modelnet40_{split}.txt").write_text("\n".join(lst) + "\n")
        for s in lst:
            (root / s.rsplit("_", 1)[0]).mkdir(exist_ok=True)
            table = rng.normal(size=(40, 6))
            (root / s.rsplit("_", 1)[0] / f"{s}.txt").write_text("\n".join(",".join(f"{v:.6f}" for v in r)
                                                                           for r in table))
    (root / "airplane" / "airplane_0002.txt").write_text("1,2,3\n")
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        train = ModelNet40Normal(root, "train", num_points=32, normals=True, val_fraction=0.2)
    assert sum("airplane_0002.txt" in r.getMessage() for r in caplog.records) == 1
    val = ModelNet40Normal(root, "val", num_points=32, val_fraction=0.2)
    test = ModelNet40Normal(root, "test", num_points=32)
    assert len(train) + len(val) == 7 and len(val) == 2  # 8 listed, the bad one skipped
    assert train[0]["points"].shape == (32, 6) and test[0]["points"].shape == (32, 3)
    assert test.labels.tolist() == [1] and test.classes == names
    expected = np.loadtxt(root / "night_stand" / "night_stand_0100.txt", delimiter=",")[:32, :3]
    assert np.allclose(test[0]["points"].numpy(), expected, atol=1e-6)
    with pytest.raises(DataNotFoundError, match="modelnet40_shape_names.txt"):
        ModelNet40Normal(tmp_path, "train")


def test_modelnet40_h5(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    (root / "shape_names.txt").write_text("a\nb\nc\n")
    data = np.random.default_rng(1).normal(size=(10, 16, 3)).astype(np.float32)
    with h5py.File(root / "ply_data_train0.h5", "w") as f:
        f["data"], f["label"] = data[:6], np.arange(6).reshape(6, 1) % 3
    with h5py.File(root / "ply_data_test0.h5", "w") as f:
        f["data"], f["label"] = data[6:], np.array([[2], [1], [0], [2]])
    (root / "train_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n")
    (root / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n"
                                         "data/modelnet40_ply_hdf5_2048/missing.h5\n")
    test = ModelNet40H5(root, "test", num_points=8)
    assert len(test) == 4 and test.labels.tolist() == [2, 1, 0, 2]
    assert torch.equal(test[1]["points"], torch.from_numpy(data[7, :8]))
    train, val = (ModelNet40H5(root, s, num_points=8, val_fraction=0.5) for s in ("train", "val"))
    assert len(train) == 3 and len(val) == 3


def shapenet_tree(root):
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("Airplane\t02691156\nMug\t03797390\n")
    rng = np.random.default_rng(2)
    files = {"train": [], "val": [], "test": []}
    for i, (synset, cat) in enumerate([("02691156", 0), ("03797390", 11)] * 3):
        split = ["train", "val", "test"][i // 2]
        (root / synset).mkdir(exist_ok=True)
        parts = PARTS_OF_CATEGORY[cat]
        n = 20 + 5 * i
        table = np.concatenate([rng.normal(size=(n, 6)), rng.choice(parts, size=(n, 1))], axis=1)
        np.savetxt(root / synset / f"shape{i}.txt", table, fmt="%.6f")
        files[split].append(f"shape_data/{synset}/shape{i}")
    (root / "03797390" / "broken.txt").write_text("1 2 3 0 0 1 2\n")  # part 2 is a Cap part, not a Mug part
    files["train"].append("shape_data/03797390/broken")
    for split, entries in files.items():
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return root


def test_shapenetpart(tmp_path, caplog):
    root = shapenet_tree(tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal")
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        train = ShapeNetPart(root, "train", num_points=32, normals=True)
    assert any("broken.txt" in r.getMessage() and "not a Mug part" in r.getMessage() for r in caplog.records)
    assert len(train) == 2 and train.category.tolist() == [0, 11]
    assert len(train.classes) == 50 and len(train.categories) == 16 and train.categories == CATEGORIES
    assert sum(len(p) for p in train.parts_of_category.values()) == 50
    assert train.parts_of_category[11] == [36, 37] and PART_CLASSES[36] == "Mug_0"
    item = train[1]
    assert item["points"].shape == (32, 6) and item["seg"].shape == (32,) and item["category"].item() == 11
    assert set(item["seg"].tolist()) <= {36, 37}
    # each point keeps its own label: look the point up in the file
    table = np.loadtxt(root / "03797390" / "shape1.txt")
    for p, s in zip(item["points"].numpy(), item["seg"].numpy()):
        row = np.abs(table[:, :6] - p).sum(1).argmin()
        assert table[row, 6] == s and np.abs(table[row, :6] - p).max() < 1e-5
    assert len(ShapeNetPart(root, "trainval", num_points=8)) == 4
    assert len(ShapeNetPart(root, "test", num_points=64)[0]["points"]) == 64  # fewer points in file: repeats
    with pytest.raises(DataNotFoundError, match="synsetoffset2category.txt is missing.*shapenetcore"):
        ShapeNetPart(tmp_path)


def test_room_to_blocks_by_hand():
    xyz = np.array([[0.2, 0.2, 0.0], [0.4, 0.6, 1.0], [1.5, 0.5, 2.0], [1.9, 1.9, 0.5]])
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]])
    labels = np.array([1, 2, 3, 4])
    pts, seg = room_to_blocks(xyz + 10, rgb, labels, np.random.default_rng(0), num_points=2, min_points=1)
    # the room is shifted to start at 0: (0, 0, 0)..(1.7, 1.7, 2.0) -> 2x2 blocks, three hold points
    assert pts.shape == (3, 2, 9) and seg.shape == (3, 2)
    assert sorted(map(sorted, seg.tolist())) == [[1, 2], [3, 3], [4, 4]]
    first = pts[np.argmax(seg.min(1) == 1)]
    row = first[np.argmax(first[:, 0] < 0.0 + 0.5 - 0.45)]  # the point at (0, 0, 0) after the shift
    assert row.tolist() == pytest.approx([-0.5, -0.5, 0, 1, 0, 0, 0, 0, 0], abs=1e-6)


def s3dis_tree(root):
    rng = np.random.default_rng(3)
    for area in (1, 5):
        room = root / f"Area_{area}" / "office_1" / "Annotations"
        room.mkdir(parents=True)
        for name in ("floor_1", "chair_1", "stairs_1"):
            xyz = rng.uniform(0, 2, size=(300, 3))
            rgb = rng.integers(0, 256, size=(300, 3))
            np.savetxt(room / f"{name}.txt", np.concatenate([xyz, rgb], 1), fmt="%.4f")
    (root / "Area_1" / "office_1" / "Annotations" / "wall_1.txt").write_text("1 2 3\n")
    return root


def test_s3dis(tmp_path, caplog):
    root = s3dis_tree(tmp_path / "Stanford3dDataset_v1.2_Aligned_Version")
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        train = S3DIS(root, "train", num_points=128)
    assert sum("wall_1.txt" in r.getMessage() for r in caplog.records) == 1
    test = S3DIS(root, "test", num_points=128)
    assert train.classes == S3DIS_CLASSES and len(S3DIS_CLASSES) == 13
    assert len(train) == 4 and len(test) == 4  # 2 m x 2 m rooms -> 4 blocks each
    item = train[0]
    assert item["points"].shape == (128, 9) and item["seg"].dtype == torch.int64
    assert set(train.seg.unique().tolist()) == {1, 8, 12}  # floor, chair, stairs -> clutter
    p = train.points
    assert (p[..., 3:6] >= 0).all() and (p[..., 3:6] <= 1).all()
    assert (p[..., 6:] >= 0).all() and (p[..., 6:] <= 1).all()
    assert (p[..., :2].abs() <= 0.5 + 1e-6).all()
    with pytest.raises(DataNotFoundError, match="no Area_3.*Stanford3dDataset"):
        S3DIS(root, "test", test_area=3)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        S3DIS(tmp_path / "nothing")


def test_read_room_names_its_arrays(tmp_path):
    root = s3dis_tree(tmp_path / "s3dis")
    skipped = []
    room = read_room(root / "Area_1" / "office_1", skipped)
    assert isinstance(room, Room) and [s[0].endswith("wall_1.txt") for s in skipped] == [True]
    assert room.xyz.shape == (900, 3) and room.xyz.dtype == np.float32
    assert room.rgb.shape == (900, 3) and room.rgb.dtype == np.uint8
    assert sorted(set(room.labels.tolist())) == [1, 8, 12]  # chair, floor, stairs (clutter): sorted file order
    assert room.labels[:300].tolist() == [S3DIS_CLASSES.index("chair")] * 300
    assert read_room(tmp_path / "empty", []) is None


def test_dataset_with_no_readable_file(tmp_path):
    root = tmp_path / "m"
    (root / "bed" / "train").mkdir(parents=True)
    (root / "bed" / "train" / "bed_0001.off").write_text("OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n")
    with pytest.raises(DataError, match="none of the 1 files"):
        ModelNet(root)


def test_room_blocks_are_the_dense_masks_of_the_grid():
    rng = np.random.default_rng(0)
    xyz = (rng.random((3000, 3)) * [3.3, 2.1, 1.0]).astype(np.float32)
    xyz[:40, :2] = np.round(xyz[:40, :2] * 4) / 4  # points on block edges (a multiple of the stride)
    low = xyz.min(axis=0)
    blocks = list(room_blocks(xyz, low, 1.0, 0.5))
    shifted = xyz - low
    want = []
    for i in range(int(np.ceil((shifted[:, 0].max() - 1.0) / 0.5)) + 1):
        for j in range(int(np.ceil((shifted[:, 1].max() - 1.0) / 0.5)) + 1):
            x0, y0 = i * 0.5, j * 0.5
            inside = np.flatnonzero((shifted[:, 0] >= x0) & (shifted[:, 0] <= x0 + 1.0) & (shifted[:, 1] >= y0)
                                    & (shifted[:, 1] <= y0 + 1.0))
            if len(inside):
                want.append(((x0, y0), inside))
    assert [b.origin for b in blocks] == [w[0] for w in want]
    for block, (_, inside) in zip(blocks, want):
        np.testing.assert_array_equal(block.inside, inside)
