"""Embedded datasets: deterministic from the seed, cached, in the contracts' item format, labels that make sense."""

import numpy as np
import pytest
import torch

from dlparts.data import Parts, Rooms, Shapes
from dlparts.data.s3dis import CLASSES as S3DIS_CLASSES, Room
from dlparts.data.synthetic import (PART_CLASSES, PARTS_OF_CATEGORY, SCAN_FRACTION, SHAPE_CLASSES, _holes, _knobs,
                                    make_shapes)
from dlparts.data.synthetic_rooms import make_room
from dlparts.data.synthetic_scan import bumps, displace, drill, ridges, uneven_choice, visible
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


def test_classes_come_in_groups_told_apart_by_local_detail():
    arrays = make_shapes(num_points=256, per_class=(6, 0, 0), classes=["cylinder", "cylinder_ridges", "sphere"])
    points, labels = arrays["train_points"], arrays["train_label"]
    assert points.shape == (18, 256, 6) and labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert np.allclose(np.linalg.norm(points[..., 3:], axis=2), 1, atol=1e-5)
    r = np.linalg.norm(points[..., :3], axis=2)
    assert np.allclose(r.max(axis=1), 1, atol=1e-5)
    # whole objects and single-view scans: a scan's points face the sensor, a whole object's face every way
    spread = np.linalg.norm(points[..., 3:].mean(axis=1), axis=1)  # [18] length of the mean normal
    assert spread.min() < 0.3 < spread.max()


def test_scan_fraction_gives_the_same_objects_whole_or_scanned():
    kw = dict(num_points=128, per_class=(0, 0, 4), classes=["box", "sphere"])
    whole, scanned = make_shapes(**kw, scan_fraction=0.0), make_shapes(**kw, scan_fraction=1.0)
    spread = {k: np.linalg.norm(a["test_points"][..., 3:].mean(axis=1), axis=1) for k, a in
              (("whole", whole), ("scanned", scanned))}  # [8] each: a scan's normals face the sensor
    assert spread["whole"].max() < 0.4 < spread["scanned"].min()  # uneven density tilts a whole one a little
    default, explicit = make_shapes(**kw), make_shapes(**kw, scan_fraction=SCAN_FRACTION)
    assert np.array_equal(default["test_points"], explicit["test_points"])


def _box_surface(rng, size, n):
    """``(xyz [n + 400, 3], normals)`` on the faces of a box of ``size`` centred at 0, the last 400 points exactly on
    the vertical edges of the x and z faces."""
    half = np.asarray(size) / 2
    xyz = rng.uniform(-1, 1, size=(n, 3)) * half
    axis, side = rng.integers(0, 3, n), rng.choice([-1.0, 1.0], n)
    xyz[np.arange(n), axis] = side * half[axis]  # [n, 3] each point moved onto one face
    edges = np.c_[rng.choice([-1.0, 1.0], 400), rng.uniform(-1, 1, 400), rng.choice([-1.0, 1.0], 400)] * half
    nrm = np.zeros((n + 400, 3))
    nrm[np.arange(n), axis] = side
    return np.r_[xyz, edges], nrm


def test_holes_go_through_side_faces_with_walls_and_stay_inside_them():
    rng = np.random.default_rng(0)
    size = np.array([1.0, 0.8, 0.6])
    xyz, nrm = _box_surface(rng, size, 20000)
    out, out_nrm = _holes("box")(rng, xyz, nrm, size)
    rows = {tuple(p) for p in xyz}
    new = np.array([p not in rows for p in map(tuple, out)])  # [M] the holes' walls
    kept = {tuple(p) for p in out[~new]}
    removed = np.array([p for p in xyz if tuple(p) not in kept])  # [R, 3]
    assert len(removed) > 0 and len(kept) + len(removed) == len(xyz)
    on_x, on_z = np.isclose(np.abs(removed[:, 0]), 0.5), np.isclose(np.abs(removed[:, 2]), 0.3)
    assert np.all(on_x | on_z)  # never the top or the bottom
    assert len(set(np.sign(removed[on_x, 0]))) == 2 or len(set(np.sign(removed[on_z, 2]))) == 2  # through
    assert all(tuple(p) in kept for p in xyz[-400:])  # each hole inside its face: the face's edges all kept
    # the walls: inside the box, normals across a horizontal hole, about as dense as the faces (0.085 < r < 0.18)
    walls, wall_nrm = out[new], out_nrm[new]
    assert np.all(np.abs(walls) <= size / 2 + 1e-12) and np.allclose((wall_nrm[:, [0, 2]] ** 2).min(axis=1), 0)
    density = len(xyz) / (2 * (0.8 + 0.48 + 0.6))
    assert 2 * 2 * np.pi * 0.085 * 0.6 * density * 0.8 < len(walls) < 4 * 2 * np.pi * 0.18 * 1.0 * density * 1.2


def test_holes_in_a_cylinder_keep_only_the_walls_within_it():
    rng = np.random.default_rng(2)
    angle, y = rng.uniform(0, 2 * np.pi, 20000), rng.uniform(-0.4, 0.4, 20000)
    xyz = np.c_[0.5 * np.cos(angle), y, 0.3 * np.sin(angle)]  # [20000, 3] side of an elliptic cylinder
    nrm = np.c_[np.cos(angle) / 0.5, np.zeros(20000), np.sin(angle) / 0.3]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    out, _ = _holes("cylinder")(rng, xyz, nrm, np.array([1.0, 0.8, 0.6]))
    rows = {tuple(p) for p in xyz}
    walls = out[[p not in rows for p in map(tuple, out)]]  # [M, 3]
    assert len(walls) > 100 and np.all((walls[:, 0] / 0.5) ** 2 + (walls[:, 2] / 0.3) ** 2 <= 1)


def test_knobs_raise_local_bulges_on_an_ellipsoid():
    rng = np.random.default_rng(1)
    nrm = rng.normal(size=(8000, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)  # [8000, 3] unit sphere, its own normals
    xyz, _ = _knobs(rng, 0.5 * nrm, nrm, np.ones(3))
    height = np.linalg.norm(xyz, axis=1) - 0.5  # [8000] outwards along the normal only
    assert height.min() > -1e-12 and height.max() >= 0.1 * 0.5  # at least 0.1 once in the unit sphere
    assert (height > 0.01).mean() < 0.5  # local: most of the surface stays where it was


def test_drill_removes_a_through_hole():
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 21), np.linspace(-1, 1, 21), [-0.5, 0.5]), -1).reshape(-1, 3)
    keep = drill(grid, np.zeros(3), np.array([0, 0, 2.0]), 0.25)
    assert (~keep).sum() == 2 * 21  # spacing 0.1: the 21 (i, j) with i^2 + j^2 <= 2.5^2, on both faces
    assert np.all(np.linalg.norm(grid[~keep, :2], axis=1) <= 0.25)


def test_visible_keeps_the_side_facing_the_sensor():
    xyz = np.random.default_rng(0).normal(size=(4000, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)  # [4000, 3] on the unit sphere
    seen = visible(xyz, xyz, np.array([0, 0, 1.0]))  # looking along +z: the z < 0 half faces the sensor
    assert np.all(xyz[seen, 2] < 0) and seen[xyz[:, 2] < -0.3].mean() > 0.95
    # a small plate in front of the sphere hides the sphere's middle, not its rim
    plate = np.c_[np.random.default_rng(1).uniform(-0.3, 0.3, size=(400, 2)), np.full(400, -1.5)]
    both = np.r_[xyz, plate]
    seen = visible(both, np.r_[xyz, np.tile([0, 0, -1.0], (400, 1))], np.array([0, 0, 1.0]))
    assert seen[4000:].all()
    square = np.abs(xyz[:, :2]).max(axis=1)  # [4000] the plate covers square < 0.3 (one pixel's margin)
    assert not seen[:4000][square < 0.25].any() and seen[:4000][(xyz[:, 2] < -0.3) & (square > 0.35)].all()


def test_bumps_and_ridges_move_points_along_their_normals():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, size=(500, 3)) * [1, 1, 0]  # [500, 3] the plane z = 0, normals +z
    nrm = np.tile([0.0, 0, 1], (500, 1))
    flat = displace(xyz, nrm, np.zeros(500), np.zeros((500, 3)))
    assert np.array_equal(flat[0], xyz) and np.array_equal(flat[1], nrm)
    up, tilted = bumps(rng, xyz, nrm, 3, (0.1, 0.2), (0.2, 0.3))
    assert np.array_equal(up[:, :2], xyz[:, :2]) and up[:, 2].min() >= 0 and 0.1 <= up[:, 2].max() < 0.65
    assert np.allclose(np.linalg.norm(tilted, axis=1), 1) and np.abs(tilted[:, :2]).max() > 0.1
    ribbed, _ = ridges(rng, np.c_[np.ones(200), np.linspace(0, 1, 200), np.zeros(200)],
                       np.tile([1.0, 0, 0], (200, 1)), 1, (4, 4), (0.05, 0.05))  # 4 rings across y
    assert np.isclose(ribbed[:, 0].max(), 1.05, atol=1e-3) and ribbed[:, 0].min() >= 1
    crossings = np.diff((ribbed[:, 0] > 1.025).astype(int))
    assert (crossings == 1).sum() in (4, 5)


def test_uneven_choice_draws_distinct_points_densest_along_one_direction():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, size=(3000, 3))
    idx = uneven_choice(rng, xyz, 1000, 3.0)
    assert len(set(idx.tolist())) == 1000
    assert len(uneven_choice(rng, xyz[:10], 25, 1.0)) == 25  # too few points: all of them, then repeats
    assert np.linalg.norm(xyz[idx].mean(axis=0)) > 0.3  # a uniform draw would stay near the centre


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
    assert floor.max() < 0.06 and ceiling.min() > 2.5  # 5 mm sensor noise


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
