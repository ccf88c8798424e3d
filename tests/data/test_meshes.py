"""Mesh readers (each OFF quirk, PLY/OBJ/STL through trimesh), bad-input errors, surface sampling, load_points."""

import math
import tracemalloc

import numpy as np
import pytest
import torch
import trimesh

from dlparts.data import load_points, normalize_unit_sphere, read_mesh, sample_surface
from dlparts.data import meshes
from dlparts.data.meshes import Mesh
from dlparts.errors import DataError, DataNotFoundError

CUBE_OFF_BODY = """0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
"""


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_off_modelnet_header_on_one_line(tmp_path):
    path = write(tmp_path, "a.off", "OFF8 1 0\n" + CUBE_OFF_BODY + "3 0 1 2\n")
    mesh = read_mesh(path)
    assert mesh.vertices.shape == (8, 3) and mesh.vertices.dtype == torch.float32
    assert mesh.faces.tolist() == [[0, 1, 2]]


def test_off_comments_blank_lines_quads_ngons_and_colours(tmp_path):
    text = ("# made by hand\nOFF\n\n# counts\n8 3 0\n" + CUBE_OFF_BODY.replace("0 1 1\n", "0 1 1 255 0 0\n")
            + "4 0 1 2 3  # a quad\n5 4 5 6 7 0\n3 0 1 5 0.5 0.5 0.5 1.0\n")
    mesh = read_mesh(write(tmp_path, "b.off", text))
    assert mesh.vertices[7].tolist() == [0, 1, 1]  # colour columns dropped
    # quad -> 2 fan triangles, pentagon -> 3, coloured triangle -> 1
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [4, 7, 0], [0, 1, 5]]


def test_off_fast_and_line_by_line_paths_agree(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3))
    f = rng.integers(0, 50, size=(80, 3))
    body = "".join(f"{a} {b} {c}\n" for a, b, c in v)
    plain = "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
    coloured = "".join(f"3 {a} {b} {c} 0.1 0.2 0.3\n" for a, b, c in f)  # floats force the per-line path
    m1 = read_mesh(write(tmp_path, "p.off", f"OFF\n50 80 0\n{body}{plain}"))
    m2 = read_mesh(write(tmp_path, "c.off", f"OFF\n50 80 0\n{body}{coloured}"))
    assert torch.equal(m1.faces, m2.faces) and torch.equal(m1.vertices, m2.vertices)
    assert m1.faces.tolist() == f.tolist()
    assert torch.allclose(m1.vertices.double(), torch.from_numpy(v), atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_off_fast_path_equals_line_reader_on_random_files(tmp_path, seed):
    rng = np.random.default_rng(seed)
    nv, nf = int(rng.integers(3, 40)), int(rng.integers(0, 60))
    v = rng.normal(size=(nv, 3)) * 10.0 ** rng.integers(-3, 4)
    f = rng.integers(0, nv, size=(nf, 3))
    sep = [" ", "\t", "  "][seed % 3]
    newline = "\r\n" if seed % 2 else "\n"
    header = [f"OFF{nv} {nf} 0", f"OFF\n{nv} {nf} 0", f"OFF\n{nv} {nf}", f"  OFF {nv} {nf} 0"][seed % 4]
    rows = [sep.join(f"{x:.9g}" for x in r) for r in v] + [sep.join(map(str, (3, *r))) for r in f]
    data = (header + newline + newline.join(rows) + newline).encode()
    fast = meshes._parse_plain_off(data)
    assert fast is not None, "the fast path must take plain files"
    slow = meshes._parse_off_lines(tmp_path / "x.off", data)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    assert np.array_equal(fast[1].reshape(-1, 3), f) and np.allclose(fast[0], v, rtol=1e-8)


@pytest.mark.parametrize("text", ["OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2 0\n",  # a quad
                                  "OFF\n3 1 0\n0 0 0 # c\n1 0 0\n0 1 0\n3 0 1 2\n",  # a comment
                                  "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2.5\n",  # a fractional index
                                  "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 x\n3 0 1 2\n",  # not a number
                                  "COFF\n3 1 0\n0 0 0 1 1 1 1\n1 0 0 1 1 1 1\n0 1 0 1 1 1 1\n3 0 1 2\n"])
def test_off_fast_path_declines_what_it_does_not_handle(text):
    assert meshes._parse_plain_off(text.encode()) is None


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("   \n\n", "empty"),
    ("OFF\n4 1 0\n0 0 0\n1 0 0\n# padding " + "x" * 60, "truncated: the header promises 4 vertices"),
    ("OFF\n8 2 0\n0 0 0\n1 0 0\n", "more than the 22 bytes"),
    ("OFF\n1000000000 5 0\n0 0 0\n", "1000000000 vertices"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "vertex 7"),
    ("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", "NaN"),
    ("OFF\n3 1 0\n0 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n", "NaN or infinite"),
    ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "vertex 1 has fewer than 3"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "face 0 needs at least 3"),
    ("OFF\nabc 1 0\n", "OFF count 'abc' is not a count"),
    ("PLY\n3 1 0\n", "not an OFF file"),
])
def test_off_bad_input_names_file_and_problem(tmp_path, content, message):
    path = write(tmp_path, "bad.off", content)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=message) as info:
            read_mesh(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 1_000_000  # refused before allocating what the header promises (a billion vertices), not after


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such file"):
        read_mesh(tmp_path / "none.off")
    with pytest.raises(DataError, match="unknown mesh format '.dae'"):
        read_mesh(write(tmp_path, "x.dae", "<xml/>"))
    with pytest.raises(DataError, match="unknown format '.foo'"):
        load_points(write(tmp_path, "x.foo", "1 2 3"), 4)


def box_mesh():
    return trimesh.creation.box(extents=(1, 2, 3))


@pytest.mark.parametrize("name, kwargs", [("b.ply", {}), ("a.ply", {"encoding": "ascii"}), ("b.stl", {}),
                                          ("a.stl", {"file_type": "stl_ascii"}), ("m.obj", {})])
def test_trimesh_formats_round_trip(tmp_path, name, kwargs):
    box = box_mesh()
    path = tmp_path / name
    box.export(path, **kwargs)
    mesh = read_mesh(path)
    assert len(mesh.faces) == 12
    # same surface: the triangle corners are the box's, whatever the vertex sharing
    corners = sorted(map(tuple, mesh.vertices[mesh.faces].reshape(-1, 3).unique(dim=0).tolist()))
    assert corners == sorted(map(tuple, np.unique(box.vertices, axis=0).tolist()))


def test_point_only_ply_and_load_points(tmp_path):
    pts = np.random.default_rng(1).normal(size=(30, 3))
    trimesh.PointCloud(pts).export(tmp_path / "pc.ply")
    mesh = read_mesh(tmp_path / "pc.ply")
    assert mesh.faces.shape == (0, 3) and np.allclose(mesh.vertices.numpy(), pts, atol=1e-6)
    cloud = load_points(tmp_path / "pc.ply", 20)
    assert cloud.shape == (20, 3)
    with pytest.raises(DataError, match="only xyz"):
        load_points(tmp_path / "pc.ply", 20, normals=True)


def test_ply_header_promising_too_much(tmp_path):
    path = write(tmp_path, "big.ply", "ply\nformat ascii 1.0\nelement vertex 1000000000\nproperty float x\n"
                 "property float y\nproperty float z\nend_header\n0 0 0\n")
    with pytest.raises(DataError, match="1000000000 vertex"):
        read_mesh(path)
    binary = b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nproperty float y\n" \
             b"property float z\nend_header\n" + np.zeros(12, "<f4").tobytes()
    with pytest.raises(DataError, match="more than the 48 bytes"):
        read_mesh(write(tmp_path, "short.ply", binary))


def test_truncated_binary_stl(tmp_path):
    box_mesh().export(tmp_path / "b.stl")
    data = (tmp_path / "b.stl").read_bytes()
    with pytest.raises(DataError, match="promises 12 triangles"):
        read_mesh(write(tmp_path, "cut.stl", data[:-20]))
    with pytest.raises(DataError, match="truncated"):
        read_mesh(write(tmp_path, "tiny.stl", data[:40]))


def test_obj_face_with_missing_vertex(tmp_path):
    with pytest.raises(DataError, match="bad.obj"):
        read_mesh(write(tmp_path, "bad.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n"))


def test_zero_area_is_refused(tmp_path):
    path = write(tmp_path, "flat.off", "OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n")
    with pytest.raises(DataError, match="surface area is zero"):
        load_points(path, 8)


def two_triangles():
    """Unit right triangle (area 0.5) in z=0 and a 3x-larger one (area 1.5) in the plane z=5."""
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 1, 5.0]])
    return Mesh(v, torch.tensor([[0, 1, 2], [3, 4, 5]]))


def test_sampling_is_area_weighted_on_the_surface_with_normals():
    s = sample_surface(two_triangles(), 20000, seed=0)
    upper = s.points[:, 2] > 2.5
    assert abs(upper.float().mean().item() - 0.75) < 0.015  # 1.5 / (0.5 + 1.5)
    assert torch.equal(upper, s.face == 1)
    lo, hi = s.points[~upper], s.points[upper]
    assert (lo[:, 2] == 0).all() and (hi[:, 2] == 5).all()
    assert (lo[:, :2] >= 0).all() and (lo[:, 0] + lo[:, 1] <= 1 + 1e-6).all()
    assert (hi[:, 0] / 3 + hi[:, 1] <= 1 + 1e-6).all()
    # uniform inside a triangle: the mean is the centroid
    assert torch.allclose(lo[:, :2].mean(0), torch.tensor([1 / 3, 1 / 3]), atol=0.02)
    assert torch.allclose(s.normals, torch.tensor([0, 0, 1.0]).expand_as(s.normals))


def test_sampling_is_seeded():
    a = sample_surface(two_triangles(), 100, seed=3).points
    b = sample_surface(two_triangles(), 100, generator=torch.Generator().manual_seed(3)).points
    c = sample_surface(two_triangles(), 100, seed=4).points
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_unit_sphere_hand_values():
    pts = torch.tensor([[1.0, 0, 0, 7], [3.0, 0, 0, 8]])
    assert normalize_unit_sphere(pts).tolist() == [[-1, 0, 0, 7], [1, 0, 0, 8]]
    same = torch.tensor([[2.0, 2, 2], [2.0, 2, 2]])
    assert normalize_unit_sphere(same).tolist() == [[0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize("fps", [False, True])
def test_load_points_from_mesh_is_centred_in_unit_sphere(tmp_path, fps):
    box_mesh().export(tmp_path / "box.stl")
    cloud = load_points(tmp_path / "box.stl", 256, normals=True, fps=fps, seed=1)
    assert cloud.shape == (256, 6) and cloud.dtype == torch.float32
    r = cloud[:, :3].norm(dim=1)
    assert r.max().item() == pytest.approx(1.0, abs=1e-5)
    assert cloud[:, :3].mean(0).abs().max() < 1e-5
    assert torch.allclose(cloud[:, 3:].norm(dim=1), torch.ones(256), atol=1e-5)


def test_fps_resampling_spreads_points_more_than_random(tmp_path):
    box_mesh().export(tmp_path / "box.stl")
    spread = []
    for fps in (False, True):
        c = load_points(tmp_path / "box.stl", 128, fps=fps, oversample=8, seed=2)
        d = torch.cdist(c, c) + torch.eye(128) * 10
        spread.append(d.min(dim=1).values.min().item())
    assert spread[1] > 2 * spread[0]  # FPS keeps the minimum gap large; random sampling has near-duplicates


def test_load_points_pads_small_point_files(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[0, 0, 0], [2, 0, 0.0]]))
    cloud = load_points(tmp_path / "p.npy", 5)
    assert cloud.shape == (5, 3)
    assert len(set(cloud[:, 0].tolist())) == 2
    assert cloud[0, 0] != cloud[1, 0]  # every original point appears before the repeats
    assert math.isclose(cloud.norm(dim=1).max().item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("vertex, face, message", [("0 1 0", "3 0 1 5", "refers to vertex 5"),
                                                   ("0 nan 0", "3 0 1 2", "vertex 2 has a NaN")])
def test_ply_bad_faces_and_coordinates(tmp_path, vertex, face, message):
    text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n{vertex}\n{face}\n")
    with pytest.raises(DataError, match=message) as info:
        read_mesh(write(tmp_path, "bad.ply", text))
    assert "bad.ply" in str(info.value)
