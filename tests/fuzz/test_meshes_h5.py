"""Issue 18, data: surface sampling beyond ``torch.multinomial``'s 2^24 faces, and ModelNet40H5 files read through the
validating reader of ``dlparts.data._arrays`` (bad files skipped with their reason, nothing read before its header is
checked)."""

import logging
import re

import h5py
import numpy as np
import pytest
import torch

from dlparts.data import ModelNet40H5, meshes
from dlparts.data.meshes import Mesh, sample_surface
from dlparts.errors import DataError


def test_sampling_beyond_the_multinomial_limit_draws_by_area(monkeypatch):
    monkeypatch.setattr(meshes, "_MULTINOMIAL_MAX", 2)  # the cumulative-area search, on a mesh of 4 faces
    vertices = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 0], [0, 3, 0]], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [0, 1, 4], [0, 4, 5], [0, 2, 3]])  # areas 0.5, 0 (degenerate), 4.5, 0.5
    sample = sample_surface(Mesh(vertices, faces), 40000, seed=0)
    counts = torch.bincount(sample.face, minlength=4).double() / 40000
    assert counts[1] == 0
    assert torch.allclose(counts, torch.tensor([0.5, 0.0, 4.5, 0.5], dtype=torch.float64) / 5.5, atol=0.01)
    on_xy = sample.face != 3
    assert torch.all(sample.points[on_xy, 2] == 0) and torch.all(sample.points[~on_xy, 0] == 0)
    again = sample_surface(Mesh(vertices, faces), 100, seed=0).points
    assert torch.equal(again, sample_surface(Mesh(vertices, faces), 100, seed=0).points)


def _write(path, **arrays):
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f[name] = value


@pytest.mark.parametrize("make, reason", [
    (lambda p: _write(p, data=np.zeros((2, 8, 3), np.float32)), "no array 'label'"),
    (lambda p: _write(p, data=np.array([[b"ab"]] * 2), label=np.zeros(2)), "'data'"),
    (lambda p: _write(p, data=np.zeros((2, 8), np.float32), label=np.zeros(2)),
     r"shape \[2, 8\], expected \[B, N, 3\]"),
    (lambda p: _write(p, data=np.zeros((2, 4, 3), np.float32), label=np.zeros(2)), "clouds of 4 points"),
    (lambda p: _write(p, data=np.zeros((2, 8, 3), np.float32), label=np.zeros(3)), "2 clouds but 3 labels"),
    (lambda p: _write(p, data=np.full((2, 8, 3), 1e39), label=np.zeros(2)), "beyond the float32 range"),
    (lambda p: _write(p, data=np.zeros((2, 8, 3), np.float32), label=np.array([0, 7])),
     r"labels must be whole .*\[0, 3\)"),
    (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64)), "not a readable HDF5 file"),
])
def test_modelnet40_h5_skips_a_bad_file_with_its_reason(tmp_path, caplog, make, reason):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    (root / "shape_names.txt").write_text("a\nb\nc\n")
    _write(root / "good.h5", data=np.ones((3, 8, 3), np.float32), label=np.array([[0], [2], [1]]))
    make(root / "bad.h5")
    (root / "test_files.txt").write_text("x/good.h5\nx/bad.h5\n")
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        data = ModelNet40H5(root, "test", num_points=8)
    assert data.labels.tolist() == [0, 2, 1]
    skipped = [r.getMessage() for r in caplog.records if "bad.h5" in r.getMessage()]
    assert len(skipped) == 1 and re.search(reason, skipped[0]), skipped


def test_modelnet40_h5_refuses_a_dataset_declared_huge_but_never_written(tmp_path):
    root = tmp_path / "h5"
    root.mkdir()
    (root / "shape_names.txt").write_text("a\n")
    with h5py.File(root / "bomb.h5", "w") as f:
        f.create_dataset("data", shape=(10**6, 2048, 3), dtype="f4")  # 24 GB declared, nothing stored
        f["label"] = np.zeros(10**6)
    (root / "test_files.txt").write_text("bomb.h5\n")
    with pytest.raises(DataError, match="no readable file"):
        ModelNet40H5(root, "test", num_points=8)
