"""Augmentations: do-nothing settings are the identity, outputs stay in bounds, labels follow their points."""

import math

import pytest
import torch

from dlparts.data.transforms import (Jitter, Normalize, RandomDropout, RotatePerturb, RotateSO3, RotateUp,
                                     ScaleAniso, Shift, Shuffle, axis_rotation, build_transforms)
from dlparts.errors import ConfigError


def cloud(n=200, normals=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * 2 - 1
    nrm = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    pts = torch.cat([xyz, nrm], 1) if normals else xyz
    return {"points": pts, "seg": torch.arange(n), "label": torch.tensor(3)}


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("t", [RotateUp(max_angle=0.0, normals=True), RotatePerturb(sigma=0.0, normals=True),
                               ScaleAniso(1.0, 1.0), Shift(0.0), Jitter(sigma=0.0), RandomDropout(0.0),
                               build_transforms([])])
def test_do_nothing_settings_are_identity(t):
    s = cloud()
    out = t(s)
    assert torch.equal(out["points"], s["points"]) and torch.equal(out["seg"], s["seg"])
    assert out["label"] is s["label"]


def test_axis_rotation_by_hand():
    # row vectors, p @ R: a quarter turn takes the lower of the two other axes to the higher (x->y, x->z, y->z)
    e = torch.eye(3, dtype=torch.float64)
    quarter = math.pi / 2
    for axis, (src, dst) in enumerate([(1, 2), (0, 2), (0, 1)]):
        r = axis_rotation(quarter, axis)
        assert torch.allclose(e[src] @ r, e[dst], atol=1e-15) and torch.equal(e[axis] @ r, e[axis])
    r = axis_rotation(0.3, 1)
    assert r.dtype == torch.float64 and torch.allclose(r @ r.T, e) and torch.linalg.det(r).item() == pytest.approx(1)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_rotate_up_keeps_the_axis_and_norms(axis):
    s = cloud()
    out = RotateUp(axis=axis, normals=True, generator=gen())(s)
    a = "xyz".index(axis)
    assert torch.equal(out["points"][:, a], s["points"][:, a])
    assert torch.allclose(out["points"][:, :3].norm(dim=1), s["points"][:, :3].norm(dim=1), atol=1e-5)
    assert torch.allclose(out["points"][:, 3:].norm(dim=1), torch.ones(200), atol=1e-5)
    # normals turn with the surface: dot products between points and normals are preserved
    dots = (s["points"][:, :3] * s["points"][:, 3:]).sum(1)
    assert torch.allclose((out["points"][:, :3] * out["points"][:, 3:]).sum(1), dots, atol=1e-5)
    assert not torch.allclose(out["points"], s["points"])


def test_rotate_up_quarter_turn_by_hand():
    s = {"points": torch.tensor([[1.0, 2.0, 0.0]])}
    # max_angle quarter turn with a generator whose first draw we know
    g = gen(5)
    u = torch.rand(1, generator=gen(5), dtype=torch.float64).item()
    out = RotateUp(axis="y", max_angle=math.pi / 2, generator=g)(s)["points"][0]
    a = u * math.pi / 2
    assert out.tolist() == pytest.approx([math.cos(a), 2.0, math.sin(a)], abs=1e-6)


def test_so3_is_a_proper_rotation():
    s = cloud()
    for seed in range(5):
        out = RotateSO3(normals=True, generator=gen(seed))(s)
        m = torch.linalg.lstsq(s["points"][:, :3].double(), out["points"][:, :3].double()).solution
        assert torch.allclose(m.T @ m, torch.eye(3, dtype=torch.float64), atol=1e-5)
        assert torch.linalg.det(m).item() == pytest.approx(1.0, abs=1e-5)


def test_perturbation_angles_are_clipped():
    s = {"points": torch.eye(3)}
    for seed in range(20):
        out = RotatePerturb(sigma=10.0, clip=0.18, generator=gen(seed))(s)["points"]
        # three rotations of at most 0.18 rad each move a unit vector by at most 3 * 0.18
        assert (out - s["points"]).norm(dim=1).max() <= 3 * 0.18 + 1e-6


def test_scale_shift_jitter_bounds():
    s = cloud(normals=False)
    for seed in range(10):
        sc = ScaleAniso(0.8, 1.25, generator=gen(seed))(s)["points"] / s["points"]
        assert ((sc >= 0.8 - 1e-6) & (sc <= 1.25 + 1e-6)).all()
        assert torch.allclose(sc, sc[0].expand_as(sc), atol=1e-4)  # one factor per axis
        d = Shift(0.1, generator=gen(seed))(s)["points"] - s["points"]
        assert d.abs().max() <= 0.1 + 1e-6 and torch.allclose(d, d[0].expand_as(d), atol=1e-6)
        j = Jitter(sigma=1.0, clip=0.05, generator=gen(seed))(s)["points"] - s["points"]
        assert j.abs().max() <= 0.05 + 1e-6 and j.abs().max() > 0.04


def test_jitter_leaves_normals():
    s = cloud()
    out = Jitter(generator=gen())(s)["points"]
    assert torch.equal(out[:, 3:], s["points"][:, 3:])


def test_dropout_replaces_by_first_point_and_labels_follow():
    s = cloud()
    out = RandomDropout(0.875, generator=gen(2))(s)
    assert out["points"].shape == s["points"].shape
    changed = (out["points"] != s["points"]).any(dim=1)
    assert changed.any()
    assert torch.equal(out["points"][changed], s["points"][0].expand(int(changed.sum()), 6))
    assert (out["seg"][changed] == 0).all() and torch.equal(out["seg"][~changed], s["seg"][~changed])


def test_shuffle_is_a_permutation_with_labels_following():
    s = cloud()
    out = Shuffle(generator=gen())(s)
    assert sorted(out["seg"].tolist()) == list(range(200)) and not torch.equal(out["seg"], s["seg"])
    assert torch.equal(out["points"], s["points"][out["seg"]])  # seg was arange, so it is the permutation


def test_normalize_puts_cloud_in_unit_sphere():
    s = {"points": torch.rand(50, 3) * 10 + 5}
    out = Normalize()(s)["points"]
    assert out.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-5)
    assert out.mean(0).abs().max() < 1e-5


def test_factory_repr_and_seeding():
    spec = ["rotate_up", {"jitter": {"sigma": 0.02}}, "dropout", "shuffle"]
    t = build_transforms(spec, seed=0)
    assert repr(t) == ("Compose([RotateUp(axis='y', max_angle=6.283185307179586, normals=False), "
                       "Jitter(sigma=0.02, clip=0.05), RandomDropout(max_ratio=0.875), Shuffle()])")
    a, b = build_transforms(spec, seed=0)(cloud()), build_transforms(spec, seed=0)(cloud())
    assert torch.equal(a["points"], b["points"]) and torch.equal(a["seg"], b["seg"])
    assert repr(build_transforms("scale, shift")) == "Compose([ScaleAniso(low=0.8, high=1.25), Shift(shift=0.1)])"


@pytest.mark.parametrize("spec, message", [(["spin"], "unknown transform 'spin'"),
                                           ([{"jitter": {"sgima": 1}}], "transform 'jitter': bad options"),
                                           ([{"a": 1, "b": 2}], "one-key mapping")])
def test_factory_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_transforms(spec)


@pytest.mark.parametrize("make, message", [(lambda: ScaleAniso(1.5, 1.0), "low <= high"),
                                           (lambda: RandomDropout(1.0), "max_ratio"),
                                           (lambda: RotateUp(axis="w"), "axis"),
                                           (lambda: Jitter(sigma=-1), "sigma")])
def test_bad_settings(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
