"""Point-file readers: text (whitespace / comma, 3/4/6/7 columns, .pts count line), .npy, .npz, HDF5; bad files."""

import h5py
import numpy as np
import pytest
import torch

from dlparts.data import load_points, points, read_points
from dlparts.errors import DataError


def test_comma_separated_xyz_normals(tmp_path):
    path = tmp_path / "airplane_0001.txt"
    path.write_text("0.1,0.2,0.3,0,0,1\n-0.5,0.5,0.0,1,0,0\n")
    pf = read_points(path)
    assert torch.equal(pf.points, torch.tensor([[0.1, 0.2, 0.3], [-0.5, 0.5, 0.0]]))
    assert pf.normals.tolist() == [[0, 0, 1], [1, 0, 0]] and pf.labels is None


def test_whitespace_with_labels_and_comments(tmp_path):
    path = tmp_path / "a.xyz"
    path.write_text("# x y z nx ny nz part\n1 2 3 0 0 1 12\n\n4 5 6 0 1 0 13\n")
    pf = read_points(path)
    assert pf.points.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert pf.labels.tolist() == [12, 13] and pf.labels.dtype == torch.int64
    path.write_text("1 2 3 4\n5 6 7 8\n")
    pf = read_points(path)
    assert pf.normals is None and pf.labels.tolist() == [4, 8]


def test_pts_count_line(tmp_path):
    path = tmp_path / "a.pts"
    path.write_text("2\n1 2 3\n4 5 6\n")
    assert read_points(path).points.tolist() == [[1, 2, 3], [4, 5, 6]]
    path.write_text("5\n1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match="promises 5 points"):
        read_points(path)


@pytest.mark.parametrize("content, message", [
    ("1 2 3\n4 5\n", "line 2 has 2 values where line 1 has 3"),
    ("1 2 x\n", "not a number"),
    ("1 2\n3 4\n", "got shape \\[2, 2\\]"),
    ("1 nan 3\n", "NaN"),
    ("", "empty"),
])
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_points(path)
    assert str(path) in str(info.value)


def test_npy_npz_h5(tmp_path):
    xyz = np.arange(30, dtype=np.float64).reshape(10, 3)
    nrm = np.tile([0.0, 0, 1], (10, 1))
    np.save(tmp_path / "a.npy", np.concatenate([xyz, nrm], 1))
    np.savez(tmp_path / "b.npz", points=xyz, normals=nrm, seg=np.arange(10))
    np.savez(tmp_path / "c.npz", whatever=xyz[None])
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"], f["label"] = xyz, np.arange(10)
    for name in ("a.npy", "b.npz"):
        pf = read_points(tmp_path / name)
        assert pf.points.tolist() == xyz.tolist() and pf.normals.tolist() == nrm.tolist()
    assert read_points(tmp_path / "b.npz").labels.tolist() == list(range(10))
    assert read_points(tmp_path / "c.npz").points.tolist() == xyz.tolist()
    pf = read_points(tmp_path / "d.h5")
    assert pf.points.tolist() == xyz.tolist() and pf.labels.tolist() == list(range(10))


def test_bad_binary_point_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 5, 3)))
    with pytest.raises(DataError, match="expected a \\[N, C\\] array"):
        read_points(tmp_path / "a.npy")
    np.savez(tmp_path / "b.npz", foo=np.zeros((4, 3)), bar=np.zeros(4))
    with pytest.raises(DataError, match="no point array"):
        read_points(tmp_path / "b.npz")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["data"] = np.zeros((3, 8, 3))
    with pytest.raises(DataError, match="read by the dataset classes"):
        read_points(tmp_path / "c.h5")
    (tmp_path / "d.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DataError, match="not a readable .npy"):
        read_points(tmp_path / "d.npy")


def test_load_points_subsets_point_files(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(100, 3))
    (tmp_path / "a.txt").write_text("\n".join(",".join(map(str, r)) for r in xyz))
    cloud = load_points(tmp_path / "a.txt", 40, seed=0)
    assert cloud.shape == (40, 3)
    # a subset of the original points, after the same centring and scaling
    norm = torch.from_numpy(xyz) - torch.from_numpy(xyz)[torch.randperm(100, generator=torch.Generator()
                                                                        .manual_seed(0))[:40]].mean(0)
    norm = norm / norm[torch.randperm(100, generator=torch.Generator().manual_seed(0))[:40]].norm(dim=1).max()
    d = torch.cdist(cloud.double(), norm)
    assert d.min(dim=1).values.max() < 1e-5
    assert load_points(tmp_path / "a.txt", 100, fps=True).shape == (100, 3)


@pytest.mark.parametrize("seed", range(6))
def test_table_fast_path_equals_line_reader(tmp_path, seed):
    rng = np.random.default_rng(seed)
    width = [3, 4, 6, 7][seed % 4]
    table = rng.normal(size=(int(rng.integers(1, 50)), width)) * 10.0 ** rng.integers(-4, 5)
    sep = [",", " ", "\t", ", "][seed % 4]
    newline = "\r\n" if seed % 2 else "\n"
    data = (newline.join(sep.join(f"{x:.10g}" for x in r) for r in table) + newline * (seed % 2)).encode()
    fast = points._plain_table(data.replace(b",", b" "))
    assert fast is not None
    slow = points._table_lines(tmp_path / "x.txt", data.replace(b",", b" "))
    assert np.array_equal(fast, slow) and np.allclose(fast, table, rtol=1e-9)


@pytest.mark.parametrize("text", ["1 2 3\n\n4 5 6\n", "# c\n1 2 3\n", "2\n1 2 3\n4 5 6\n", "1 2 3\n4 5\n",
                                  "1 2 x\n"])
def test_table_fast_path_declines_what_it_does_not_handle(text):
    assert points._plain_table(text.encode()) is None
