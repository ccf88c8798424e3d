"""Image folders: the layout, bad files reported once and skipped, layout errors, the disk cache, and the embedded
synthetic dataset served by the same loader."""

import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dlparts.data import imagefolder
from dlparts.data.imagefolder import ImageFolderDataset, scan_image_folder
from dlparts.data.synthetic_images import SHAPES, make_synthetic_images, render
from dlparts.errors import ConfigError, DataError, DataNotFoundError

SIZE = 16


def _image(mode, size=(24, 20), colour=None):
    return Image.new(mode, size, colour if colour is not None else 100)


@pytest.fixture
def tree(tmp_path):
    """train/{cat,dog}/ with good images in every colour mode and every kind of bad file."""
    cat, dog = tmp_path / "train" / "cat", tmp_path / "train" / "dog"
    (cat / "nested").mkdir(parents=True)
    dog.mkdir(parents=True)
    _image("RGB", colour=(200, 10, 10)).save(cat / "a_rgb.jpg")
    _image("RGBA", colour=(10, 200, 10, 128)).save(cat / "b_rgba.png")
    _image("L").save(cat / "nested" / "c_gray.png")
    _image("CMYK", colour=(0, 0, 0, 0)).save(dog / "d_cmyk.jpg")
    _image("P").save(dog / "e_palette.gif")
    _image("RGB", size=(5, 4), colour=(1, 2, 3)).save(dog / "f_tiny.png")
    good = _image("RGB", size=(64, 64), colour=(9, 9, 9))
    good.save(dog / "g_truncated.jpg", quality=95)
    (dog / "g_truncated.jpg").write_bytes((dog / "g_truncated.jpg").read_bytes()[:200])
    (dog / "h_empty.jpg").write_bytes(b"")
    (dog / "i_text.jpg").write_text("not an image at all")
    (dog / "README.txt").write_text("notes")
    (dog / ".DS_Store").write_bytes(b"\0\1")
    return tmp_path


def test_scan_lists_images_and_classes(tree, caplog):
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        classes, samples = scan_image_folder(tree / "train")
    assert classes == ["cat", "dog"]
    names = [p.split("/")[-1] for p, _ in samples]
    assert names == ["a_rgb.jpg", "b_rgba.png", "c_gray.png", "d_cmyk.jpg", "e_palette.gif", "f_tiny.png",
                     "g_truncated.jpg", "h_empty.jpg", "i_text.jpg"]
    assert [label for _, label in samples] == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert [r.message for r in caplog.records] == [f"{tree}/train/dog/README.txt: skipped, not an image file "
                                                   "(extension '.txt')"]


def test_an_epoch_survives_bad_files_reported_once(tree, caplog):
    ds = ImageFolderDataset(tree, "train", size=SIZE)
    assert ds.classes == ["cat", "dog"] and len(ds) == 9
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        for _ in range(2):  # two epochs
            items = [ds[i] for i in range(len(ds))]
    for item in items:
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, SIZE, SIZE)
        assert item["label"].dtype == torch.int64 and item["label"].shape == ()
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    messages = [r.message for r in caplog.records]
    for bad in ("g_truncated.jpg", "h_empty.jpg", "i_text.jpg", "f_tiny.png"):
        assert sum(bad in m for m in messages) == 1, bad
    assert any("f_tiny.png: image is 5x4, smaller than 16; scaled up" in m for m in messages)
    assert any("h_empty.jpg: skipped" in m for m in messages)
    # bad items are replaced by the next good one: i_text.jpg (last) wraps around to a_rgb.jpg, a red cat
    assert torch.equal(items[8]["image"], items[0]["image"]) and items[8]["label"] == 0
    torch.testing.assert_close(items[0]["image"][:, 0, 0], torch.tensor([200, 10, 10]) / 255, atol=0.02, rtol=0)
    assert torch.equal(items[3]["image"][:, 0, 0], torch.ones(3))  # CMYK (0, 0, 0, 0) is white
    assert torch.equal(items[5]["image"][:, 0, 0], torch.tensor([1.0, 2.0, 3.0]) / 255)  # tiny, scaled up


def test_transform_and_dataloader(tree):
    ds = ImageFolderDataset(tree, "train", size=SIZE, transform=lambda img: img[:, :8, :8].float())
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["label"].tolist() == [0, 0, 0, 1]
    again = pickle.loads(pickle.dumps(ImageFolderDataset(tree, "train", size=SIZE)))  # what workers receive
    assert len(again) == 9


def test_cache_is_built_once_and_drops_bad_files(tree, tmp_path, monkeypatch):
    plain = ImageFolderDataset(tree, "train", size=SIZE)
    cached = ImageFolderDataset(tree, "train", size=SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert len(cached) == 6  # the three unreadable files are gone
    good = [i for i, (p, _) in enumerate(plain.samples) if p in {q for q, _ in cached.samples}]
    for j, i in enumerate(good):
        assert torch.equal(cached.load(j), plain.decode(i))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache holds it")

    monkeypatch.setattr(imagefolder, "load_rgb", no_decoding)
    reused = ImageFolderDataset(tree, "train", size=SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert len(reused) == 6 and torch.equal(reused[5]["image"], cached[5]["image"])
    assert torch.equal(pickle.loads(pickle.dumps(reused))[0]["image"], cached[0]["image"])


def test_layout_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere: dataset root folder does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "root").mkdir()
    with pytest.raises(DataNotFoundError, match=r"root/train: no such folder"):
        ImageFolderDataset(tmp_path / "root")
    (tmp_path / "root" / "train").mkdir()
    with pytest.raises(DataNotFoundError, match="no class folders"):
        ImageFolderDataset(tmp_path / "root")
    _image("RGB").save(tmp_path / "root" / "train" / "loose.jpg")
    with pytest.raises(DataNotFoundError, match="'loose.jpg' lie directly in the split folder"):
        ImageFolderDataset(tmp_path / "root")
    (tmp_path / "root" / "train" / "loose.jpg").unlink()
    (tmp_path / "root" / "train" / "cat").mkdir()
    (tmp_path / "root" / "train" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataNotFoundError, match="no image files in any of its 1 class folders"):
        ImageFolderDataset(tmp_path / "root")
    _image("RGB").save(tmp_path / "root" / "train" / "cat" / "x.png")
    (tmp_path / "root" / "train" / "dog").mkdir()
    with pytest.raises(DataNotFoundError, match="class folder 'dog' has no image files"):
        ImageFolderDataset(tmp_path / "root")


def test_validation_classes_follow_training(tree):
    val = tree / "val"
    for name in ("dog", "cow"):
        (val / name).mkdir(parents=True)
        _image("RGB").save(val / name / "x.png")
    with pytest.raises(DataNotFoundError, match="class folder 'cow' is not one of the 2 training classes"):
        ImageFolderDataset(tree, "val", classes=["cat", "dog"])
    (val / "cow" / "x.png").unlink()
    (val / "cow").rmdir()
    ds = ImageFolderDataset(tree, "val", classes=["cat", "dog"], size=SIZE)
    assert ds.classes == ["cat", "dog"] and ds[0]["label"] == 1


def test_every_file_unreadable_is_an_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 1 image files could be read"):
        ImageFolderDataset(tmp_path, size=SIZE)[0]
    with pytest.raises(DataError, match="none of the 1 image files could be read"):
        ImageFolderDataset(tmp_path, size=SIZE, cache_dir=tmp_path / "c", progress=False)


# ------------------------------------------------------------------------------------------- embedded synthetic set
def test_synthetic_layout_determinism_and_loader(tmp_path):
    kwargs = dict(seed=3, train_per_class=2, val_per_class=1, size=32)
    root = make_synthetic_images(tmp_path / "a", **kwargs)
    again = make_synthetic_images(tmp_path / "b", **kwargs)
    other = make_synthetic_images(tmp_path / "c", **{**kwargs, "seed": 4})
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert len(files) == 10 * 3 and {p.parts[1] for p in files} == set(SHAPES)
    assert all((root / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert any((root / f).read_bytes() != (other / f).read_bytes() for f in files)
    train = ImageFolderDataset(root, "train", size=32)
    val = ImageFolderDataset(root, "val", size=32, classes=train.classes)
    assert len(train) == 20 and len(val) == 10 and train.classes == sorted(SHAPES)
    assert Image.open(root / files[0]).size == (32, 32)


def test_synthetic_cache_folder_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path / "cache"))
    root = make_synthetic_images(num_classes=3, train_per_class=1, val_per_class=1, size=16, fmt="jpeg")
    assert root.parent == tmp_path / "cache" / "synthetic_images" and (root / ".complete").exists()
    assert len(list(root.rglob("*.jpg"))) == 6
    stamp = (root / "train" / "disk" / "00000.jpg").stat().st_mtime_ns
    assert make_synthetic_images(num_classes=3, train_per_class=1, val_per_class=1, size=16, fmt="jpeg") == root
    assert (root / "train" / "disk" / "00000.jpg").stat().st_mtime_ns == stamp  # reused, not rewritten


def test_no_single_pixel_statistic_separates_the_classes():
    rng = np.random.default_rng(0)
    images = np.array([[np.asarray(render(name, rng, 32), dtype=float) for _ in range(40)]
                       for name in SHAPES])  # [classes, 40, 32, 32, 3]
    statistics = {"mean red": images[..., 0].mean(axis=(2, 3)), "mean green": images[..., 1].mean(axis=(2, 3)),
                  "mean blue": images[..., 2].mean(axis=(2, 3)), "brightness": images.mean(axis=(2, 3, 4)),
                  "centre pixel": images[:, :, 16, 16].mean(axis=-1), "contrast": images.std(axis=(2, 3, 4))}
    for name, values in statistics.items():  # values: [classes, 40]
        class_means = values.mean(axis=1)  # [classes]
        predicted = np.abs(values[..., None] - class_means).argmin(axis=-1)  # nearest class mean, [classes, 40]
        accuracy = (predicted == np.arange(len(SHAPES))[:, None]).mean()
        assert accuracy < 0.25, f"{name} alone classifies {accuracy:.0%} (chance is 10%)"


def test_synthetic_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="num_classes=11"):
        make_synthetic_images(tmp_path, num_classes=11)
    with pytest.raises(ConfigError, match="size=8"):
        make_synthetic_images(tmp_path, size=8)
    with pytest.raises(ConfigError, match="fmt='gif'"):
        make_synthetic_images(tmp_path, fmt="gif")
    with pytest.raises(ConfigError, match="shape 'hexagon'"):
        render("hexagon", np.random.default_rng(0))


def test_a_dangling_symlink_is_reported(tree, caplog):
    (tree / "train" / "dog" / "j_link.jpg").symlink_to(tree / "gone.jpg")
    with caplog.at_level(logging.WARNING, logger="dlparts.data"):
        _, samples = scan_image_folder(tree / "train")
    assert not any(p.endswith("j_link.jpg") for p, _ in samples)
    assert f"{tree}/train/dog/j_link.jpg: skipped, a symbolic link to {tree}/gone.jpg, which does not exist" in \
        [r.message for r in caplog.records]


def test_a_failed_cache_build_leaves_no_partial_file(tree, tmp_path, monkeypatch):
    calls = []

    def failing(self, index):
        calls.append(index)
        if len(calls) == 3:
            raise MemoryError("out of memory in the middle of the build")
        return torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)

    monkeypatch.setattr(ImageFolderDataset, "decode", failing)
    with pytest.raises(MemoryError):
        ImageFolderDataset(tree, "train", size=SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 3 and list((tmp_path / "cache").iterdir()) == []
