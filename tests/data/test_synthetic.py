"""Embedded datasets: deterministic from the seed, cached, in the contracts' item format, labels that make sense."""

import numpy as np
import pytest
import torch

from dlparts.data import Parts, Rooms, Shapes
from dlparts.data.s3dis import CLASSES as S3DIS_CLASSES, Room
from dlparts.data.synthetic import PART_CLASSES, PARTS_OF_CATEGORY, SHAPE_CLASSES, make_shapes
from dlparts.data.synthetic_rooms import make_room
from dlparts.errors import ConfigError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "cache"))


def test_shapes_tiny_items_and_splits():
    train, val, test = (Shapes(s, tiny=True) for s in ("train", "val", "test"))
    assert len(SHAPE_CLASSES) >= 12 and train.classes == SHAPE_CLASSES
    assert (len(train), len(val), len(test)) == (4 * 12, 2 * 12, 2 * 12)
    item = train[5]
    assert item["points"].shape == (128, 3) and item["points"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    assert sorted(set(train.labels.tolist())) == list(range(12))
    r = train.points.norm(dim=2)
    assert torch.allclose(r.max(dim=1).values, torch.ones(len(train)), atol=1e-5)
    assert train.points.mean(dim=1).abs().max() < 1e-5
    # splits are different draws, not copies
    assert not any(torch.equal(a, b) for a in train.points[:4] for b in test.points[:4])


def test_shapes_deterministic_and_cached(tmp_path, monkeypatch):
    a = Shapes("train", tiny=True, normals=True)
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "other"))
    b = Shapes("train", tiny=True, normals=True)
    assert torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels)
    assert torch.allclose(a.points[..., 3:].norm(dim=2), torch.ones(a.points.shape[:2]), atol=1e-5)
    assert len(list((tmp_path / "other").rglob("shapes.npz"))) == 1
    c = Shapes("train", tiny=True, seed=1)
    assert not torch.equal(a.points[..., :3], c.points)


def test_sphere_and_box_geometry():
    arrays = make_shapes(num_points=256, per_class=(1, 0, 0), classes=["sphere", "box"])
    sphere, box = arrays["train_points"][:, :, :3]
    # an ellipsoid surface: no point near the centre
    assert np.linalg.norm(sphere, axis=1).min() > 0.4

    def at_top_or_bottom(cloud):  # y (up) is untouched by the random turn: a box has flat top and bottom faces
        y = cloud[:, 1]
        return np.mean((y < y.min() + 0.03) | (y > y.max() - 0.03))

    assert at_top_or_bottom(box) > 0.12 and at_top_or_bottom(box) > 2 * at_top_or_bottom(sphere)


def test_parts_labels_belong_to_their_category():
    train = Parts("train", tiny=True)
    assert train.categories == ["table", "chair", "lamp", "mug", "airplane"]
    assert train.classes == PART_CLASSES and train.parts_of_category == PARTS_OF_CATEGORY
    assert sorted(sum(train.parts_of_category.values(), [])) == list(range(len(PART_CLASSES)))
    for i in range(len(train)):
        item = train[i]
        allowed = set(train.parts_of_category[int(item["category"])])
        assert item["seg"].shape == (128,) and set(item["seg"].tolist()) <= allowed
    # every part shows up somewhere
    assert set(train.seg.unique().tolist()) == set(range(len(PART_CLASSES)))
    # a table's top is above its legs (y is up before the random turn about y)
    table = train.category == 0
    pts, seg = train.points[table], train.seg[table]
    assert all(p[s == 0, 1].mean() > p[s == 1, 1].mean() for p, s in zip(pts, seg))


def test_rooms_blocks():
    train = Rooms("train", tiny=True)
    assert len(train.classes) == 13 and train.classes[:3] == ["ceiling", "floor", "wall"]
    item = train[0]
    assert item["points"].shape == (256, 9) and item["seg"].shape == (256,)
    p = train.points
    assert (p[..., :2].abs() <= 0.5 + 1e-6).all() and (p[..., 3:] >= 0).all() and (p[..., 3:] <= 1).all()
    present = set(train.seg.unique().tolist())
    assert {0, 1, 2, 7, 8} <= present  # ceiling, floor, wall, table, chair
    # the floor is at the bottom, the ceiling at the top of each room
    floor, ceiling = p[..., 2][train.seg == 1], p[..., 2][train.seg == 0]
    assert floor.max() < 0.05 and ceiling.min() > 2.5


def test_make_room_is_a_named_room_with_s3dis_classes():
    room = make_room(np.random.default_rng(0), density=20.0)
    assert isinstance(room, Room) and len(room.xyz) == len(room.rgb) == len(room.labels) > 0
    assert room.xyz.dtype == np.float32 and room.rgb.dtype == np.uint8 and room.labels.dtype == np.int64
    names = {S3DIS_CLASSES[i] for i in np.unique(room.labels)}
    assert {"ceiling", "floor", "wall", "door", "window", "table", "chair"} <= names
    floor = room.xyz[room.labels == S3DIS_CLASSES.index("floor")]
    assert np.abs(floor[:, 2]).max() < 0.05  # the floor lies at z = 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="split must be one of"):
        Shapes("validation", tiny=True)
    with pytest.raises(ConfigError, match="per_class"):
        Shapes(per_class=(1, 2))
    with pytest.raises(ConfigError, match="density"):
        Rooms(density=0)
