"""Labelled files (PLY label property, tables with data.columns) and the scene_folder / part_folder datasets."""

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("form", ["ascii", "binary_big_endian"])
def test_ply_with_a_class_property_in_ascii_and_big_endian_binary(tmp_path, form):
    """Written by hand (not by the reader's library): x y z, colours, an int ``class``, and a face element after
    the vertices (a list property the reader must step over)."""
    xyz, rgb, labels = scene(30)
    vertex = np.zeros(30, dtype=[("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("red", "u1"), ("green", "u1"),
                                 ("blue", "u1"), ("class", ">i4")])
    for k, name in enumerate("xyz"):
        vertex[name] = xyz[:, k]
    for k, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, k]
    vertex["class"] = labels
    header = ["ply", f"format {form} 1.0", "element vertex 30", *(f"property float {a}" for a in "xyz"),
              *(f"property uchar {c}" for c in ("red", "green", "blue")), "property int class", "element face 1",
              "property list uchar int vertex_indices", "end_header"]
    if form == "ascii":
        body = "".join(" ".join(map(str, row)) + "\n" for row in vertex.tolist()).encode() + b"3 0 1 2\n"
    else:
        body = vertex.tobytes() + np.array([3], ">u1").tobytes() + np.array([0, 1, 2], ">i4").tobytes()
    path = tmp_path / "s.ply"
    path.write_bytes("\n".join(header).encode() + b"\n" + body)
    got = read_labelled(path)
    assert np.array_equal(got.xyz, xyz) and np.array_equal(got.rgb, rgb) and np.array_equal(got.labels, labels)
    assert got.xyz.dtype == np.float32 and got.labels.dtype == np.int64
    path.write_bytes(path.read_bytes()[:-20])  # cut inside the body: the header's counts no longer fit
    with pytest.raises(DataError, match=r"s\.ply: the header promises 30 vertex, 1 face|s\.ply: not a readable PLY"):
        read_labelled(path)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_ascii_ply_fast_path_equals_plyfile(tmp_path, monkeypatch, newline):
    """Text PLY vertices parsed in one C parse equal plyfile's, name, type and value, for every scalar type; a
    ragged row or a list property among the vertices goes to plyfile (which names a ragged row's fault)."""
    from plyfile import PlyData

    from dlparts.data.labelled import _ply_vertices

    types = ["char", "uchar", "short", "ushort", "int", "uint", "float", "double"]
    values = [RNG.integers(-128, 128, 40), RNG.integers(0, 256, 40), RNG.integers(-9999, 9999, 40),
              RNG.integers(0, 65535, 40), RNG.integers(-10**9, 10**9, 40), RNG.integers(0, 4 * 10**9, 40),
              RNG.normal(size=40).astype(np.float32), RNG.normal(size=40) * 1e5]
    header = ["ply", "format ascii 1.0", "element vertex 40", *(f"property {t} p{k}" for k, t in enumerate(types)),
              "element face 1", "property list uchar int vertex_indices", "end_header"]
    rows = [" ".join(repr(v[i].item()) for v in values) for i in range(40)]
    path = tmp_path / "a.ply"
    path.write_bytes(newline.join(header + rows + ["3 0 1 2", ""]).encode())
    ref = PlyData.read(str(path))["vertex"]
    with monkeypatch.context() as patch:
        patch.setattr(PlyData, "read", None)  # the fast path must not call plyfile
        fast = _ply_vertices(path)
    assert list(fast) == [f"p{k}" for k in range(8)]
    for name in fast:
        assert fast[name].dtype == ref[name].dtype and np.array_equal(fast[name], ref[name]), name
    path.write_bytes(newline.join(header + rows[:3] + [rows[3] + " 7", " ".join(rows[4].split()[:-1])] + rows[5:] + ["3 0 1 2", ""])
                     .encode())
    with pytest.raises(DataError, match=r"a\.ply: not a readable PLY"):
        _ply_vertices(path)  # 10 + 6 values on two rows: the same count, ragged rows
    listed = header[:3] + ["property list uchar int p0"] + header[4:]
    path.write_bytes(newline.join(listed + ["1 " + row for row in rows] + ["3 0 1 2", ""]).encode())
    assert _ply_vertices(path).keys() == {f"p{k}" for k in range(1, 8)}  # read by plyfile, lists left out


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_ply_read_in_chunks_equals_plyfile(tmp_path, monkeypatch, order):
    """Binary PLY vertices read a chunk at a time (no memory map of the whole body) equal plyfile's, name, type and
    value, in both byte orders, with a face element after them; a body shorter than the header says is refused."""
    from plyfile import PlyData, PlyElement

    import dlparts.data.labelled as labelled

    kinds = ["i1", "u1", "i2", "u2", "i4", "u4", "f4", "f8"]
    vertex = np.empty(37, [(f"p{k}", order + kind) for k, kind in enumerate(kinds)])
    for k, kind in enumerate(kinds):
        vertex[f"p{k}"] = RNG.normal(size=37) * 100 if kind[0] == "f" else RNG.integers(0, 100, 37)
    face = np.array([([0, 1, 2],)], [("vertex_indices", "i4", (3,))])
    path = tmp_path / "b.ply"
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")],
            byte_order=order).write(str(path))
    ref = PlyData.read(str(path))["vertex"]
    monkeypatch.setattr(labelled, "_CHUNK", 10)  # 4 chunks, the last one short
    with monkeypatch.context() as patch:
        patch.setattr(PlyData, "read", None)  # the chunked path must not call plyfile
        fast = labelled._ply_vertices(path)
    assert list(fast) == [f"p{k}" for k in range(8)]
    for name in fast:
        native = np.dtype(ref[name].dtype).newbyteorder("=")
        assert fast[name].dtype == native and np.array_equal(fast[name], ref[name]), name
    path.write_bytes(path.read_bytes()[:-40 - 3 * 37])  # the vertices cut short
    with pytest.raises(DataError, match=r"b\.ply: the header promises 37 vertex"):
        labelled._ply_vertices(path)


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
    assert str(err.value) == (f"scene_folder {root}, train split: none of its 1 file(s) could be read; "
                              f"{root / 'train' / 's.ply'}: {bad} points have labels outside the 2 classes (0..1): "
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


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Parsed files are cached under $DLPARTS_CACHE: each test its own."""
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "cache"))


def unlabelled_ply(path, n=50):
    xyz = RNG.random((n, 3)).astype(np.float32)
    header = ["ply", "format ascii 1.0", f"element vertex {n}", *(f"property float {a}" for a in "xyz"), "end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header + [" ".join(map(str, p)) for p in xyz.tolist()]) + "\n")
    return path


def test_scene_folder_skips_each_unreadable_file_once_with_its_reason(tmp_path, caplog):
    root = tmp_path / "split"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
    for split, name in (("train", "a"), ("train", "b"), ("test", "c")):
        write_labelled_ply(root / split / f"{name}.ply", *scene())
    (root / "train" / "corrupt.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n"
                                                "property float y\nproperty float z\nend_header\n0 0 0\n1 oops 1\n")
    unlabelled_ply(root / "train" / "nolabel.ply")
    xyz, rgb, labels = scene()
    write_labelled_ply(root / "train" / "outside.ply", xyz, rgb, labels + 4)  # classes are 0..3
    xyz[5] = np.inf
    write_labelled_ply(root / "train" / "inf.ply", xyz, rgb, labels)
    (root / "classes.txt").write_text("a\nb\nc\nd\n")
    with caplog.at_level("WARNING", logger="dlparts.data"):
        train = SceneFolder(root, "train", num_points=64)
        SceneFolder(root, "train", num_points=64)  # built again (as for validation): nothing reported twice
    reasons = dict(train.skipped)
    assert sorted(reasons) == sorted(str(root / "train" / f) for f in ("corrupt.ply", "inf.ply", "nolabel.ply",
                                                                      "outside.ply"))
    assert "not a readable PLY file" in reasons[str(root / "train" / "corrupt.ply")]
    assert reasons[str(root / "train" / "nolabel.ply")].startswith("no per-vertex label property label or class")
    assert reasons[str(root / "train" / "outside.ply")].endswith("labels outside the 4 classes (0..3): 4, 5, 6, 7")
    assert reasons[str(root / "train" / "inf.ply")].startswith("1 of 400 points have NaN or infinite coordinates")
    assert len(train.files) == 6 and len(train) > 0 and set(train.seg.unique().tolist()) <= {0, 1, 2, 3}
    warned = [r.getMessage() for r in caplog.records]
    assert sum("skipped " + str(root / "train" / "corrupt.ply") in m for m in warned) == 1
    assert sum("skipped 4 bad file(s)" in m for m in warned) == 1
    dropping = SceneFolder(root, "train", num_points=64, drop_nonfinite=True)
    assert len(dropping.skipped) == 3 and dropping.dropped == 1


def test_scene_folder_stops_at_start_when_no_file_of_a_split_is_readable(tmp_path):
    root = tmp_path / "scenes"
    for k in range(3):
        unlabelled_ply(root / f"s{k}.ply")
    with pytest.raises(DataError) as err:
        SceneFolder(root, "train", classes=["a", "b"], num_points=16)
    message = str(err.value)
    assert message.startswith(f"scene_folder {root}, train split: none of its 2 file(s) could be read; {root}/s")
    assert message.endswith("the vertices have x, y, z (set data.label_field to the one holding the classes)")


def test_part_folder_skips_bad_objects_and_names_a_category_with_none_readable(tmp_path):
    root = tmp_path / "parts"
    for split in ("train", "test"):
        (root / "mug" / split).mkdir(parents=True)
    for split, k in (("train", 0), ("train", 1), ("test", 2)):
        xyz, _, labels = scene(60)
        write_labelled_ply(root / "mug" / split / f"{k}.ply", xyz, None, labels % 2)
    bad = unlabelled_ply(root / "mug" / "train" / "3.ply")
    both = [PartFolder(root, split, num_points=16, classes=list("ab")) for split in ("train", "test")]
    assert [len(d) for d in both] == [2, 1] and [p for d in both for p, _ in d.skipped] == [str(bad)]
    for split in ("train", "test"):
        unlabelled_ply(root / "lamp" / split / "0.ply")
    with pytest.raises(DataError, match=r"part_folder category 'lamp' \(.*lamp\): none of its 2 file\(s\) could "
                                        r"be read; .*lamp/train/0\.ply: no per-vertex label property"):
        PartFolder(root, "train", num_points=16, classes=list("ab"))


def test_parsed_files_are_cached_and_a_touched_file_is_read_again(tmp_path, monkeypatch):
    import os

    from dlparts.data import scene_folder

    root = folder(tmp_path, scenes=3)
    unlabelled_ply(root / "bad.ply")
    read = []

    def counting(path, **options):
        read.append(path.name)
        return read_labelled(path, **options)

    def both():
        return [SceneFolder(root, split, num_points=64) for split in ("train", "test")]

    monkeypatch.setattr(scene_folder, "read_labelled", counting)
    first = both()
    assert sorted(read) == ["bad.ply", "room0.ply", "room1.ply", "room2.ply"]
    assert [p for d in first for p, _ in d.skipped] == [str(root / "bad.ply")]
    read.clear()
    again = both()
    assert read == [] and all(torch.equal(a.points, b.points) for a, b in zip(first, again))
    assert [d.skipped for d in again] == [d.skipped for d in first]
    stamp = (root / "room1.ply").stat()
    os.utime(root / "room1.ply", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    both()
    assert read == ["room1.ply"]
