"""AlexNet image pipeline: colour modes, the paper's preprocessing, RGB statistics, augmentations and ten-crop."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlparts.data.images import (CenterCrop, PCALighting, RandomCropFlip, RGBStats, SubtractMean, ToFloat,
                                 build_transform, compute_rgb_stats, load_rgb, preprocess, ten_crop,
                                 ten_crop_predict)
from dlparts.errors import ConfigError, DataError, ShapeError


def _save(tmp_path, name, img, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def test_colour_modes_become_rgb(tmp_path):
    palette = Image.new("P", (4, 4))
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    cases = {
        "gray.png": (Image.new("L", (4, 4), 128), (128, 128, 128)),
        "rgba.png": (Image.new("RGBA", (4, 4), (10, 200, 30, 0)), (255, 255, 255)),  # hidden colour: not shown
        "half.png": (Image.new("RGBA", (4, 4), (0, 0, 0, 128)), (127, 127, 127)),  # half black over white
        "la.png": (Image.new("LA", (4, 4), (77, 255)), (77, 77, 77)),
        "palette.png": (palette, (10, 20, 30)),
        "cmyk.tif": (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        "gray16.png": (Image.new("I;16", (4, 4), 0), (0, 0, 0)),
        "gray16-mid.png": (Image.fromarray(np.full((4, 4), 40000, np.uint16)), (156, 156, 156)),  # scaled, not 255
        "gray16.tif": (Image.fromarray(np.full((4, 4), 65535, np.uint16)), (255, 255, 255)),
        "gray16.pgm": (Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)), (100, 100, 100)),  # opens as "I"
        "float.tif": (Image.fromarray(np.full((4, 4), 0.5, np.float32)), (128, 128, 128)),  # not black
        "float255.tif": (Image.fromarray(np.full((4, 4), 200.0, np.float32)), (200, 200, 200)),
    }
    for name, (img, expected) in cases.items():
        out = load_rgb(_save(tmp_path, name, img))
        assert out.mode == "RGB" and out.getpixel((1, 1)) == expected, name


def test_palette_with_transparency_and_cmyk_jpeg(tmp_path):
    gif = Image.new("P", (4, 4))
    gif.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    gif.info["transparency"] = 0
    assert load_rgb(_save(tmp_path, "t.gif", gif, transparency=0)).getpixel((0, 0)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = load_rgb(_save(tmp_path, "c.jpg", cmyk)).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("content", [b"", b"this is not an image", None])
def test_unreadable_files_raise_data_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content is None:  # a truncated JPEG
        Image.new("RGB", (64, 64), (1, 2, 3)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="bad.jpg: not a readable image"):
        load_rgb(path)


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (300, 300), (257, 1000), (40, 30), (256, 256)])
def test_preprocess_equals_torchvision_resize_center_crop(size):
    rng = np.random.default_rng(size[0])
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours = preprocess(img, 256)
    theirs = TF.pil_to_tensor(v2.CenterCrop(256)(v2.Resize(256)(img)))
    assert ours.dtype == torch.uint8 and ours.shape == (3, 256, 256)
    assert torch.equal(ours, theirs)


def test_preprocess_hand_computed():
    # 4x2 image, shorter side already 2: no resize; the centre 2x2 is columns 1..2.
    array = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    out = preprocess(Image.fromarray(array), 2)
    assert torch.equal(out, torch.from_numpy(array[:, 1:3].copy()).permute(2, 0, 1))


def test_rgb_stats_match_numpy():
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 8, 8), generator=gen, dtype=torch.uint8) for _ in range(5)]
    images[0][0] = 255  # correlated channels somewhere
    stats = compute_rgb_stats(iter(images))
    stack = np.stack([im.numpy() / 255.0 for im in images])  # [5, 3, 8, 8]
    pixels = stack.transpose(1, 0, 2, 3).reshape(3, -1)  # [3, 5*64]
    np.testing.assert_allclose(stats.mean_image.numpy(), stack.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats.mean_rgb.numpy(), pixels.mean(1), atol=1e-6)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(pixels, bias=True), atol=1e-6)
    cov = stats.cov.double()
    for i in range(3):
        v = stats.eigvecs[:, i].double()
        torch.testing.assert_close(cov @ v, stats.eigvals[i].double() * v, atol=1e-6, rtol=1e-5)
    assert stats.num_images == 5
    assert compute_rgb_stats(iter(images), max_images=2).num_images == 2


def test_rgb_stats_errors_and_round_trip(tmp_path):
    with pytest.raises(DataError, match="no images"):
        compute_rgb_stats(iter([]))
    with pytest.raises(ShapeError, match="image 1 has shape"):
        compute_rgb_stats(iter([torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(3, 5, 5, dtype=torch.uint8)]))
    stats = compute_rgb_stats(iter([torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)]))
    stats.save(tmp_path / "rgb.pt")
    again = RGBStats.load(tmp_path / "rgb.pt")
    assert torch.equal(again.cov, stats.cov) and again.num_images == 1
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(DataError, match="junk.pt: not an RGB statistics file"):
        RGBStats.load(tmp_path / "junk.pt")


def test_pca_lighting_adds_one_shift_per_image():
    eigvals, eigvecs = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    img = torch.rand(3, 5, 6)
    out = PCALighting(eigvals, eigvecs, std=0.1, generator=torch.Generator().manual_seed(3))(img)
    a = torch.randn(3, generator=torch.Generator().manual_seed(3)) * 0.1
    expected = torch.stack([2 * a[1], 1 * a[0], 3 * a[2]])  # eigvecs @ (a * eigvals), by hand
    torch.testing.assert_close(out - img, expected.reshape(3, 1, 1).expand(3, 5, 6))
    assert torch.equal(PCALighting(eigvals, eigvecs, std=0.0)(img), img)
    with pytest.raises(ShapeError):
        PCALighting(torch.ones(2), eigvecs)
    with pytest.raises(ConfigError, match="std=-1"):
        PCALighting(eigvals, eigvecs, std=-1)


def test_random_crop_flip_gives_real_crops_and_both_flips():
    img = torch.arange(3 * 10 * 12, dtype=torch.float32).reshape(3, 10, 12)
    crop = RandomCropFlip(6, generator=torch.Generator().manual_seed(0))
    seen_flip, corners = set(), set()
    for _ in range(300):
        out = crop(img)
        assert out.shape == (3, 6, 6)
        flipped = bool(out[0, 0, 0] > out[0, 0, 1])
        plain = out.flip(-1) if flipped else out
        top, left = divmod(int(plain[0, 0, 0].item()), 12)
        assert torch.equal(plain, img[:, top: top + 6, left: left + 6])
        seen_flip.add(flipped)
        corners.add((top, left))
    assert seen_flip == {True, False}
    assert {(0, 0), (4, 6)} <= corners and all(0 <= t <= 4 and 0 <= l <= 6 for t, l in corners)
    assert torch.equal(RandomCropFlip(10, flip_p=0.0)(img[:, :, :10]), img[:, :, :10])
    with pytest.raises(ShapeError, match="crop 11 is larger"):
        RandomCropFlip(11)(img)


def test_center_crop_and_mean_subtraction_exact():
    img = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5)
    assert torch.equal(CenterCrop(3)(img), img[:, 1:4, 1:4])
    x = torch.ones(3, 2, 2)
    assert torch.equal(SubtractMean(torch.tensor([1.0, 2.0, 3.0]))(x)[:, 0, 0], torch.tensor([0.0, -1.0, -2.0]))
    assert torch.equal(SubtractMean(torch.ones(3, 2, 2))(x), torch.zeros(3, 2, 2))
    assert torch.equal(x, torch.ones(3, 2, 2))  # the input is left alone
    with pytest.raises(ShapeError):
        SubtractMean(torch.ones(3, 4, 4))(x)
    assert torch.equal(ToFloat()(torch.tensor([[[255]]], dtype=torch.uint8)), torch.ones(1, 1, 1))


def test_build_transform():
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 16, 16), generator=gen, dtype=torch.uint8) for _ in range(3)]
    stats = compute_rgb_stats(iter(images))
    train = build_transform(True, crop=12, stats=stats, generator=gen)
    out = train(images[0])
    assert out.shape == (3, 12, 12) and out.dtype == torch.float32
    assert "PCALighting" in repr(train) and "RandomCropFlip(size=12" in repr(train)
    test = build_transform(False, crop=12, stats=stats, mean="channel")
    expected = (images[1].float() / 255 - stats.mean_rgb.reshape(3, 1, 1))[:, 2:14, 2:14]
    torch.testing.assert_close(test(images[1]), expected)
    plain = build_transform(True, crop=16, mean=None, lighting_std=0.0, generator=gen)
    scaled = images[2].float() / 255
    outs = [plain(images[2]) for _ in range(20)]  # a full-size crop: the image or its mirror, nothing else
    assert all(torch.equal(o, scaled) or torch.equal(o, scaled.flip(-1)) for o in outs)
    assert any(torch.equal(o, scaled) for o in outs) and any(torch.equal(o, scaled.flip(-1)) for o in outs)
    with pytest.raises(ConfigError, match="mean='median'"):
        build_transform(True, mean="median", stats=stats)
    with pytest.raises(ConfigError, match="need stats"):
        build_transform(True)


def test_ten_crop_equals_torchvision():
    images = torch.rand(2, 3, 9, 11)
    crops = ten_crop(images, 5)
    assert crops.shape == (2, 10, 3, 5, 5)
    for b in range(2):
        theirs = TF.ten_crop(images[b], [5, 5])
        for i in range(10):
            assert torch.equal(crops[b, i], theirs[i]), i


def test_ten_crop_predict_averages_softmax():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    images = torch.rand(3, 3, 6, 6)
    probs = ten_crop_predict(model, images, 4)
    crops = ten_crop(images, 4)
    expected = torch.stack([model(crops[:, i]).softmax(-1) for i in range(10)]).mean(0)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (8, 4), (0, 0, 255))
    img.putpixel((0, 0), (255, 0, 0))  # a red pixel at the top left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    img.save(tmp_path / "r.jpg", exif=exif, quality=100, subsampling=0)
    upright = load_rgb(tmp_path / "r.jpg")
    assert upright.size == (4, 8)
    r, g, b = upright.getpixel((3, 0))  # the stored top left, turned to the top right
    assert r > 200 and b < 80


def test_an_extreme_strip_is_cut_to_its_centre_before_scaling(tmp_path):
    strip = Image.new("RGB", (1, 65535), (200, 10, 10))
    out = preprocess(strip, 256)
    assert out.shape == (3, 256, 256) and out[:, 128, 128].tolist() == [200, 10, 10]
    wide = np.zeros((10, 1000, 3), np.uint8)
    wide[:, 498:502] = 255  # a white band in the middle of a 100:1 image, inside its central 10 x 10
    out = preprocess(Image.fromarray(wide), 64)
    assert out.shape == (3, 64, 64) and int(out[:, 32, 32].min()) > 200 and int(out[:, 32, 0].max()) < 30


def test_a_decompression_bomb_is_a_data_error(tmp_path, monkeypatch):
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # 40,000 pixels: over the limit, under twice it
    with pytest.raises(DataError, match="big.png: not a readable image"):
        load_rgb(tmp_path / "big.png")


def test_stats_sample_is_seeded_spread_and_never_the_holdout():
    from dlparts.data.images import stats_sample
    from dlparts.data.splits import holdout

    train, val = holdout(1000, 0.1, seed=3)
    picked = stats_sample(train, 100, seed=3)
    assert len(set(picked)) == 100 and picked == sorted(picked) and not set(picked) & set(val)
    assert picked == stats_sample(train, 100, seed=3) and picked != stats_sample(train, 100, seed=4)
    assert max(picked) > 800 and min(picked) < 200  # over the whole split, not its first files (first classes)
    assert stats_sample(train, None, seed=3) == list(train) == stats_sample(train, 10 ** 6, seed=3)
