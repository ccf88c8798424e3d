"""Text meshes and tables in the encodings users' tools write: UTF-16 with a byte-order mark (assimp's
``box_UTF16BE.obj``), Latin-1 comments and names (``regr01.obj``), UTF-8 with a mark; never a missing-module error."""

import sys

import numpy as np
import pytest
import trimesh

from dlparts.data import load_points, read_mesh, read_points
from dlparts.data.points import text_utf8
from dlparts.errors import DataError

OBJ = "# boîte à outils, façade\no boîte\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"
OFF = "OFF\n# modèle\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
TETRA = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
ENCODINGS = {"utf16be_bom": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
             "utf16le_bom": lambda t: b"\xff\xfe" + t.encode("utf-16-le"),
             "utf8_bom": lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),
             "latin1": lambda t: t.encode("latin-1")}


@pytest.fixture
def no_charset_module(monkeypatch):
    """The optional module trimesh falls back on to guess encodings is absent (as in a bare install)."""
    monkeypatch.setitem(sys.modules, "charset_normalizer", None)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("suffix, text", [(".obj", OBJ), (".off", OFF)])
def test_obj_and_off_in_every_encoding_load(tmp_path, no_charset_module, encoding, suffix, text):
    path = tmp_path / f"tetra_{encoding}{suffix}"
    path.write_bytes(ENCODINGS[encoding](text))
    mesh = read_mesh(path)
    assert np.array_equal(mesh.vertices.numpy(), TETRA)
    assert mesh.faces.shape == (4, 3)
    assert load_points(path, 32).shape == (32, 3)


def test_utf16_text_ply_and_latin1_header_of_binary_ply(tmp_path, no_charset_module):
    box = trimesh.creation.box()
    text = box.export(file_type="ply", encoding="ascii")
    text = text.decode() if isinstance(text, bytes) else text
    (tmp_path / "u16.ply").write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    binary = box.export(file_type="ply", encoding="binary")
    end = binary.index(b"end_header")
    (tmp_path / "latin1.ply").write_bytes(binary[:end] + "comment façade\n".encode("latin-1") + binary[end:])
    for name in ("u16.ply", "latin1.ply"):
        mesh = read_mesh(tmp_path / name)
        assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3)
        assert np.allclose(np.sort(mesh.vertices.numpy(), axis=0), np.sort(box.vertices, axis=0))


def test_utf16_point_table(tmp_path):
    path = tmp_path / "cloud.xyz"
    path.write_bytes(b"\xff\xfe" + "# é\n0 0 0\n1 2 3\n".encode("utf-16-le"))
    assert read_points(path).points.tolist() == [[0, 0, 0], [1, 2, 3]]


def test_text_utf8_keeps_utf8_and_names_a_broken_utf16_file():
    assert text_utf8("a.obj", "v é".encode("utf-8")) == "v é".encode("utf-8")
    assert text_utf8("a.obj", "v é".encode("latin-1")) == "v é".encode("utf-8")
    with pytest.raises(DataError, match=r"a\.obj: starts with a UTF-16 byte-order mark but is not UTF-16"):
        text_utf8("a.obj", b"\xff\xfev\x00 \x00\x00\xd8")  # a lone surrogate
