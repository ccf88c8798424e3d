"""Valid seed files of every format dlparts reads, and the mutators a hostile tester would apply to them.

Shared by the fuzzing tests (``tests/fuzz/test_fuzz_readers.py``, a few hundred cases) and ``benchmarks/fuzz.py``
(thousands).  A mutation is a pure function of the seed's bytes and a ``random.Random``, so a failing case is
replayed from its (seed name, mutator, number).
"""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile

import numpy as np

RNG = np.random.default_rng(0)
_XYZ = RNG.normal(size=(12, 3)).round(4)  # [12, 3]
_NRM = _XYZ / np.linalg.norm(_XYZ, axis=1, keepdims=True)  # [12, 3]
_LAB = np.arange(12) % 3  # [12]
_TETRA_V = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
_TETRA_F = [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)]


def _table(columns: np.ndarray, sep: str = " ") -> bytes:
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in columns).encode()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npz(compressed: bool, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _h5(**arrays: np.ndarray) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, array in arrays.items():
            f[name] = array
    return buf.getvalue()


def _ply(binary: bool) -> bytes:
    fmt = "binary_little_endian" if binary else "ascii"
    header = (f"ply\nformat {fmt} 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
              "element face 4\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if not binary:
        return header + _table(np.array(_TETRA_V)) + "".join(f"3 {a} {b} {c}\n" for a, b, c in _TETRA_F).encode()
    body = b"".join(struct.pack("<3f", *v) for v in _TETRA_V)
    return header + body + b"".join(struct.pack("<B3i", 3, *f) for f in _TETRA_F)


def _stl(binary: bool) -> bytes:
    tris = [[_TETRA_V[i] for i in face] for face in _TETRA_F]
    if binary:
        rows = b"".join(struct.pack("<12fH", 0, 0, 0, *(c for v in t for c in v), 0) for t in tris)
        return bytes(80) + struct.pack("<I", len(tris)) + rows
    facets = "".join("facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {x} {y} {z}\n" for x, y, z in t)
                     + "endloop\nendfacet\n" for t in tris)
    return f"solid t\n{facets}endsolid t\n".encode()


def _image(fmt: str, mode: str = "RGB", **save) -> bytes:
    from PIL import Image

    grad = np.linspace(0, 1, 16 * 12).reshape(12, 16)  # [H, W]
    if mode == "F":
        img = Image.fromarray(grad.astype(np.float32))
    elif mode == "I;16":
        img = Image.fromarray((grad * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((np.stack([grad, grad[::-1], 1 - grad], axis=2) * 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def image_seeds() -> dict[str, bytes]:
    """File name -> bytes of small valid images: the formats and modes the AlexNet pipeline meets."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated
    return {"photo.png": _image("PNG"), "photo.jpg": _image("JPEG", exif=exif), "alpha.png": _image("PNG", "RGBA"),
            "palette.gif": _image("GIF", "P", transparency=0), "grey16.png": _image("PNG", "I;16"),
            "float.tif": _image("TIFF", "F"), "icon.bmp": _image("BMP"), "cmyk.jpg": _image("JPEG", "CMYK")}


def seeds() -> dict[str, bytes]:
    """File name -> bytes of a small valid file, one per format and layout (the suffix says the format)."""
    off = "OFF\n4 4 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in _TETRA_V) + \
        "".join(f"3 {a} {b} {c}\n" for a, b, c in _TETRA_F)
    return {
        "xyz.xyz": _table(_XYZ),
        "normals.txt": _table(np.hstack([_XYZ, _NRM]), ","),
        "labels.txt": _table(np.hstack([_XYZ, _NRM, _LAB[:, None]])),
        "count.pts": b"12\n# a comment\n" + _table(_XYZ),
        "cloud.npy": _npy(np.hstack([_XYZ, _LAB[:, None]])),
        "cloud.npz": _npz(False, points=_XYZ, normals=_NRM, seg=_LAB),
        "packed.npz": _npz(True, data=_XYZ[None].astype(np.float32)),
        "cloud.h5": _h5(data=_XYZ, label=_LAB),
        "tetra.off": off.encode(),
        "modelnet.off": off.replace("OFF\n", "OFF").encode(),
        "tetra.ply": _ply(False),
        "binary.ply": _ply(True),
        "tetra.obj": ("".join(f"v {x} {y} {z}\n" for x, y, z in _TETRA_V)
                      + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in _TETRA_F)).encode(),
        "ascii.stl": _stl(False),
        "binary.stl": _stl(True),
        **image_seeds(),
    }


# ------------------------------------------------------------------------------------------------------ mutators
def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


_HUGE_COUNTS = ("4294967295", "18446744073709551616", "9" * 30, "9" * 5000, "1000000000", "-1", "0")


def inflate_counts(data: bytes, rng: random.Random) -> bytes:
    """A run of digits (a header count, an index, a coordinate) replaced by a huge or negative number; in binary
    files, a little-endian uint32 overwritten with a huge value."""
    runs = [m.span() for m in re.finditer(rb"[0-9]+", data[:4096])]
    if runs and rng.random() < 0.8:
        start, end = rng.choice(runs)
        return data[:start] + rng.choice(_HUGE_COUNTS).encode() + data[end:]
    pos = rng.randrange(max(len(data) - 4, 1))
    return data[:pos] + struct.pack("<I", rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 1 << 24))) + data[pos + 4:]


_NASTY_NUMBERS = ("nan", "inf", "-inf", "1e39", "-3.5e38", "1e308", "1e999", "4e-320", "0x10", "1e", "--1", "1,5",
                  "9" * 400)


def nasty_numbers(data: bytes, rng: random.Random) -> bytes:
    """A number of a text file replaced by a non-finite, float32-overflowing or malformed one."""
    numbers = [m.span() for m in re.finditer(rb"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?", data)]
    if not numbers:
        return flip_bytes(data, rng)
    out = data
    for start, end in sorted(rng.sample(numbers, min(len(numbers), rng.randint(1, 3))), reverse=True):
        out = out[:start] + rng.choice(_NASTY_NUMBERS).encode() + out[end:]
    return out


def wrong_extension(data: bytes, rng: random.Random) -> bytes:
    """The bytes unchanged: :func:`mutated_name` gives them another format's suffix."""
    return data


def encodings(data: bytes, rng: random.Random) -> bytes:
    """The same content in another encoding or with other line ends: UTF-16, a BOM, CRLF, CR, tabs, NULs."""
    text = data.decode("latin-1")
    choice = rng.randrange(6)
    if choice == 0:
        return text.encode("utf-16")
    if choice == 1:
        return b"\xef\xbb\xbf" + data
    if choice == 2:
        return data.replace(b"\n", b"\r\n")
    if choice == 3:
        return data.replace(b"\n", b"\r")
    if choice == 4:
        return data.replace(b" ", b"\t")
    pos = rng.randrange(len(data))
    return data[:pos] + b"\x00" * rng.randint(1, 64) + data[pos:]


def zip_members(data: bytes, rng: random.Random) -> bytes:
    """For archives: a member whose header lies about its size, a bomb of zeros, or a foreign member; else a
    byte flip."""
    if not data.startswith(b"PK"):
        return flip_bytes(data, rng)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        shape = rng.choice([(10 ** 9, 3), (2 ** 40,), (5, 3), (0, 3), (1, 10 ** 7, 3)])
        descr = rng.choice(["<f8", "|O", "<U4", [("x", "<f4")], "<c8", ">f4"])
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
        z.writestr("points.npy", header.getvalue() + bytes(rng.choice([0, 60, 4096])))
        if rng.random() < 0.3:
            z.writestr("normals.npy", bytes(rng.randrange(200)))
    return buf.getvalue()


MUTATORS = {f.__name__: f for f in (truncate, flip_bytes, inflate_counts, nasty_numbers, wrong_extension,
                                    encodings, zip_members)}
SUFFIXES = (".xyz", ".txt", ".pts", ".npy", ".npz", ".h5", ".off", ".ply", ".obj", ".stl", ".png", ".jpg",
            ".gif", ".tif", ".bmp")
IMAGE_SUFFIXES = (".png", ".jpg", ".gif", ".tif", ".bmp")


def mutated_name(name: str, mutator: str, rng: random.Random) -> str:
    """The file name of a mutated case: the seed's, or another format's suffix for ``wrong_extension``."""
    if mutator != "wrong_extension":
        return name
    return name.rsplit(".", 1)[0] + rng.choice([s for s in SUFFIXES if not name.endswith(s)])


def case(seed_name: str, mutator: str, number: int, seed_files: dict[str, bytes]) -> tuple[str, bytes]:
    """The (file name, bytes) of case ``number`` of ``mutator`` applied to seed ``seed_name``: replayable."""
    rng = random.Random(f"{seed_name}/{mutator}/{number}")
    data = MUTATORS[mutator](seed_files[seed_name], rng)
    return mutated_name(seed_name, mutator, rng), data
