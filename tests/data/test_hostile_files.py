"""Readers validate before they allocate: every broken, mislabelled or oversized file is one DataError naming it,
found from headers and sizes before any large array exists (the failures listed in issue 18)."""

import io
import zipfile

import h5py
import numpy as np
import pytest

from dlparts.data import load_points, read_mesh, read_points
from dlparts.data._limits import MAX_LINE_BYTES
from dlparts.errors import ConfigError, DataError


def _refused(path, message, reader=read_points):
    with pytest.raises(DataError, match=message) as info:
        reader(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, content, message", [
    ("a.txt", "# only a comment\n", "holds no numbers"),
    ("a.pts", "#x\n\n# y\n", "holds no numbers"),
    ("a.pts", "9" * 5000 + "\n1 2 3\n", "is not a count"),
    ("a.pts", "\u00b2\n1 2 3\n", "line 2 has 3 values where line 1 has 1"),  # \u00b2 is no count
    ("a.txt", "# header\n1 2 3\n\n4 5 6\n7 8\n", "line 5 has 2 values where line 2 has 3"),
    ("a.txt", "1 2 3\n4 5 6 7\n", "line 2 has 4 values where line 1 has 3"),
    ("a.txt", "1 2 3\n1e39 0 0\n", "point 1 has a NaN or infinite value, or one beyond the float32 range"),
    ("a.txt", "1 2 3 0 0 1\n4 5 6 0 -1e300 0\n", "the normal of point 1 .* beyond the float32 range"),
    ("a.txt", "1 2 3 0.5\n", "label of point 0 is 0.5, not a whole number"),
    ("a.txt", "1 2 3 1e300\n", "label of point 0 .* not a whole number"),
    ("a.txt", "1 2 3\n4 x 6\n# c\n", "line 2 holds something that is not a number: 'x'"),
])
def test_text_tables(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="latin-1" if "\u00b2" in content else "utf-8")
    _refused(path, message)


def test_a_line_beyond_the_limit_is_refused_before_it_is_split(tmp_path):
    path = tmp_path / "long.xyz"
    path.write_bytes(b"1 2 3\n" + b"1 " * (MAX_LINE_BYTES // 2 + 1) + b"\n")
    _refused(path, f"line 2 is {MAX_LINE_BYTES + 2} bytes long")


def test_a_float64_array_beyond_float32_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[0.0, 0, 0], [0, 4e38, 0]]))
    _refused(tmp_path / "a.npy", "point 1 .* beyond the float32 range")


@pytest.mark.parametrize("array, message", [
    (np.array([["a", "b", "c"]]), "dtype <U1; expected plain numbers"),
    (np.zeros(3, dtype=[("x", "f4"), ("y", "f4")]), "expected plain numbers"),
    (np.array([[1, 2, 3]], dtype=object), "dtype object"),
    (np.zeros((2, 3), dtype=np.complex64), "dtype complex64"),
])
def test_arrays_that_are_not_plain_numbers(tmp_path, array, message):
    np.save(tmp_path / "a.npy", array, allow_pickle=True)
    _refused(tmp_path / "a.npy", message)
    np.savez(tmp_path / "b.npz", points=array)
    _refused(tmp_path / "b.npz", message)


def test_mislabelled_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3)))
    (tmp_path / "a.npz").write_bytes((tmp_path / "a.npy").read_bytes())
    _refused(tmp_path / "a.npz", "a single .npy array named .npz")
    np.savez(tmp_path / "b.npz", points=np.zeros((4, 3)))
    (tmp_path / "b.npy").write_bytes((tmp_path / "b.npz").read_bytes())
    _refused(tmp_path / "b.npy", "an .npz archive named .npy")


@pytest.mark.parametrize("cut", [10, 100, 200, -30, -1])
def test_truncated_npz_and_npy(tmp_path, cut):
    np.savez_compressed(tmp_path / "a.npz", points=np.random.default_rng(0).random((50, 3)))
    np.save(tmp_path / "a.npy", np.zeros((50, 3)))
    for name in ("a.npz", "a.npy"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[:cut])
        _refused(tmp_path / f"cut-{name}", "not a readable|cannot be read|follow its header|truncated")


def test_corrupt_compressed_member(tmp_path):
    np.savez_compressed(tmp_path / "a.npz", points=np.random.default_rng(0).random((500, 3)))
    data = bytearray((tmp_path / "a.npz").read_bytes())
    data[200:260] = bytes(60)  # inside the deflated stream: zlib (or the CRC) must complain
    (tmp_path / "a.npz").write_bytes(bytes(data))
    _refused(tmp_path / "a.npz", "cannot be read .*(Error|error)")


def test_a_zip_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_MAX_POINTS", "1000000")
    np.savez_compressed(tmp_path / "bomb.npz", points=np.zeros((1_000_000, 3)))  # 24 MB inflating from ~25 kB
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    _refused(tmp_path / "bomb.npz", "declares 3000000 values, more than the limit of 1000000")


def test_only_the_needed_member_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_MAX_POINTS", "1000000")
    np.savez_compressed(tmp_path / "a.npz", points=np.ones((5, 3)), junk=np.zeros((1_000_000, 3)),
                        names=np.array(["not", "numbers"]))
    assert read_points(tmp_path / "a.npz").points.tolist() == [[1, 1, 1]] * 5


def test_a_member_lying_about_its_size(tmp_path):
    """The .npy header inside says 10^6 rows, the archive holds a few bytes: refused before reading."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1000, 3)})
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        z.writestr("points.npy", header.getvalue() + bytes(48))
    _refused(tmp_path / "lie.npz", "needs 24000 bytes, but only 48 follow its header")


def test_hdf5_links_and_unwritten_datasets(tmp_path, monkeypatch):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["points"] = h5py.SoftLink("/nowhere")
    _refused(path, "array 'points' is a SoftLink")
    with h5py.File(path, "w") as f:
        f["points"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
    _refused(path, "array 'points' is a ExternalLink")
    with h5py.File(path, "w") as f:
        f.create_dataset("points", shape=(10 ** 7, 3), dtype="f8")  # declared, never written
    _refused(path, "declares shape \\[10000000, 3\\] but none of it was ever written")
    monkeypatch.setenv("DLPARTS_MAX_POINTS", "1000")
    with h5py.File(path, "w") as f:
        f.create_dataset("points", data=np.zeros((1000, 3)), compression="gzip")
    _refused(path, "declares 3000 values, more than the limit of 1000")
    with h5py.File(path, "w") as f:
        f["points"], f["names"] = np.zeros((4, 3)), h5py.SoftLink("/gone")
    assert read_points(path).points.shape == (4, 3)  # a dangling link that is not needed does no harm


def test_the_ceiling_must_be_a_positive_number(tmp_path, monkeypatch):
    path = tmp_path / "a.xyz"
    path.write_text("1 2 3\n")
    for bad in ("-1", "0", "lots", "9" * 30):
        monkeypatch.setenv("DLPARTS_MAX_POINTS", bad)
        with pytest.raises(ConfigError, match="DLPARTS_MAX_POINTS"):
            read_points(path)
    monkeypatch.setenv("DLPARTS_MAX_POINTS", "100")
    with pytest.raises(ConfigError, match="n=100 points"):
        load_points(path, 100)


def test_a_folder_given_as_a_file(tmp_path):
    (tmp_path / "d.xyz").mkdir()
    _refused(tmp_path / "d.xyz", "is a folder, not a file")


@pytest.mark.parametrize("name, content, message", [
    ("a.off", "# nothing but a comment\n", "holds only comments"),
    ("a.off", "OFF\n" + "9" * 5000 + " 1 0\n", "OFF count '9999.*' is not a count"),
    ("a.off", "OFF" + "9" * 5000 + " 1 0\n", "OFF count"),
    ("a.off", "OFF\n3 1 0\n0 0\n1 0\n0 1\n3 0 1 2\n", "vertex 0 has fewer than 3"),
    ("a.off", "OFF\n3 1 0\n0 0 0\n1e39 0 0\n0 1 0\n3 0 1 2\n", "vertex 1 .* beyond the float32 range"),
    ("a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 99999999999999999999999\n", "face 0 refers to vertex 9999"),
    ("a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 -2\n", "face 0 refers to vertex -2,"),
    ("a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\nx 0 1 2\n", "face 0 does not start with its vertex count"),
    ("a.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty\nend_header\n0 0 0\n", "malformed PLY header"),
    ("a.ply", "ply\nformat ascii 1.0\nelement face 1\nproperty list uchar\nend_header\n3 0 1 2\n",
     "malformed PLY header"),
    ("a.ply", "ply\nformat ascii 1.0\nelement vertex " + "9" * 5000 + "\nproperty float x\nend_header\n",
     "PLY count of element 'vertex'"),
    ("a.ply", "ply\nformat ascii 1.0\nelement vertex -3\nproperty float x\nend_header\n", "negative PLY count"),
    ("a.obj", "v 0 0\nv 1 0\nv 0 1\n", "2 coordinates, not 3"),
])
def test_meshes(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    _refused(path, message, read_mesh)
