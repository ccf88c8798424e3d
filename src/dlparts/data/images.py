"""AlexNet's image preprocessing and augmentation (Krizhevsky, Sutskever, Hinton, NeurIPS 2012, sections 2 and 4.1).

* **Preprocessing** (section 2): rescale the shorter side to 256, take the central 256x256 patch
  (:func:`load_rgb`, :func:`preprocess`).  Images are kept as ``uint8 [3, S, S]`` tensors after that, so a disk cache
  of them (``dlparts.data.imagefolder``) saves decoding full-size JPEGs every epoch.
* **Mean subtraction**: the per-pixel mean image of the training set (the paper) or the per-channel mean.
* **Augmentation** (section 4.1): random crops (227 here, see ``dlparts.models.alexnet`` on 224 vs 227) with
  horizontal flips, and **PCA lighting**: with ``p_i, l_i`` the eigenvectors and eigenvalues of the 3x3 covariance
  of RGB pixel values over the training set, add ``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` to every pixel, with
  ``a_i ~ N(0, 0.1)`` drawn once per image each time it is used.
* **Test**: the centre crop, or ten crops (four corners and centre, and their mirror images) with the softmax
  outputs averaged (:func:`ten_crop`, :func:`ten_crop_predict`).

Units: after :class:`ToFloat`, pixel values are in ``[0, 1]``, and :func:`compute_rgb_stats` measures the covariance
in those units.  The paper does not say in what units its eigenvalues were; in ``[0, 1]`` units the lighting shifts
colours by a few hundredths of the range, the gentle change the paper describes.

Randomness: every random transform takes an optional ``torch.Generator`` (for reproducible tests); without one it
draws from torch's global generator, which ``DataLoader`` seeds differently in every worker.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from dlparts.data.splits import rng_for
from dlparts.data.transforms import Compose
from dlparts.errors import ConfigError, DataError, ShapeError

log = logging.getLogger("dlparts.data")


#: What transparent pixels are composited over: white, as an image viewer shows them.
BACKGROUND = (255, 255, 255)
#: The longest side a decoded image may have per unit of its short side before :func:`preprocess` keeps only its
#: central part (the centre crop never looks further): a 1 x 65,535 strip is not scaled to 256 x 16.7 million.
MAX_ASPECT = 4


def load_rgb(path: str | Path) -> Image.Image:
    """Decode any image Pillow reads and return it as 8-bit RGB, upright and opaque.

    The EXIF orientation is applied (a rotated photo comes out as it was taken); transparent pixels are composited
    over :data:`BACKGROUND` (the colours hidden behind them never show); 16-bit grey is scaled to 8 bits and float
    images in ``[0, 1]`` to ``[0, 255]`` (not clipped); palette, grey and CMYK are converted.  Raises
    :class:`DataError` naming the file when it is not a readable image (empty, truncated, not an image, or a
    decompression bomb by Pillow's pixel limit).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float64)  # [H, W]
        if img.mode == "F":
            values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
            scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0  # floats in [0, 1], else already 0..255
        else:
            scale = 255.0 / 65535.0  # 16-bit grey ("I" is how Pillow opens 16-bit PGM)
        img = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _centre_offset(length: int, size: int) -> int:
    return int(round((length - size) / 2.0))


def preprocess(img: Image.Image, size: int = 256) -> torch.Tensor:
    """Section 2: rescale so the shorter side is ``size`` (bilinear, antialiased), then centre-crop ``size x size``.

    Returns ``uint8 [3, size, size]``.  Images smaller than ``size`` are scaled up by the same rule.  Sizes and
    offsets are rounded as torchvision's ``Resize(size)`` and ``CenterCrop(size)`` round them, so the two agree
    pixel for pixel (for images up to :data:`MAX_ASPECT`:1; longer ones are first cut to their central part, so
    that no strip is scaled to millions of pixels).
    """
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):  # keep the central MAX_ASPECT:1 part: the centre crop lies inside it
        long_side = MAX_ASPECT * min(w, h)
        box = ((w - long_side) // 2, 0, (w - long_side) // 2 + long_side, h) if w > h else \
            (0, (h - long_side) // 2, w, (h - long_side) // 2 + long_side)
        img = img.crop(box)
        w, h = img.size
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    left, top = _centre_offset(new_w, size), _centre_offset(new_h, size)
    img = img.crop((left, top, left + size, top + size))
    array = np.array(img, dtype=np.uint8)  # [S, S, 3], a writable copy
    return torch.from_numpy(array).permute(2, 0, 1)  # [3, S, S]


# --------------------------------------------------------------------------------------------- training statistics
@dataclass
class RGBStats:
    """Training-set colour statistics in ``[0, 1]`` units: ``mean_image [3, S, S]``, ``mean_rgb [3]``,
    ``cov [3, 3]`` and its eigen-decomposition (``eigvals [3]`` ascending, ``eigvecs [3, 3]`` one per column)."""

    mean_image: torch.Tensor
    mean_rgb: torch.Tensor
    cov: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    num_images: int

    def save(self, path: str | Path) -> None:
        torch.save({k: getattr(self, k) for k in self.__dataclass_fields__}, path)

    @classmethod
    def load(cls, path: str | Path) -> "RGBStats":
        try:
            fields = torch.load(path, map_location="cpu", weights_only=True)
            return cls(**fields)
        except FileNotFoundError:
            raise DataError(f"{path}: RGB statistics file not found") from None
        except Exception as exc:  # torch.load fails in many ways on a file it did not write
            raise DataError(f"{path}: not an RGB statistics file ({type(exc).__name__}: {exc})") from None


def stats_sample(candidates: Sequence[int], max_images: int | None, seed: int) -> list[int]:
    """Sorted indices of at most ``max_images`` of ``candidates`` (the training split without its validation
    hold-out), drawn at random with ``seed``: the mean image and PCA covariance come from every class, not from the
    first ``max_images`` files in class order (on ImageNet, about the first 8 classes)."""
    candidates = list(candidates)
    if max_images is None or max_images >= len(candidates):
        return candidates
    picked = rng_for(seed, 4217).choice(len(candidates), size=max_images, replace=False)
    return sorted(candidates[i] for i in picked)


def compute_rgb_stats(images: Iterable[torch.Tensor], *, max_images: int | None = None) -> RGBStats:
    """Mean image, mean colour and RGB covariance over ``uint8 [3, S, S]`` images, in one streaming pass.

    Sums are accumulated in float64 (pixel sums over a million images stay exact); ``max_images`` stops early, for a
    sample of a large set (pass the images in random order for a fair sample).
    """
    total_image, second, count = None, torch.zeros(3, 3, dtype=torch.float64), 0
    for img in images:
        if max_images is not None and count >= max_images:
            break
        x = img.to(torch.float64) / 255.0  # [3, S, S]
        if total_image is None:
            total_image = torch.zeros_like(x)
        elif x.shape != total_image.shape:
            raise ShapeError(f"image {count} has shape {list(x.shape)}, the first had {list(total_image.shape)}")
        total_image += x
        pixels = x.reshape(3, -1)  # [3, S*S]
        second += pixels @ pixels.T
        count += 1
    if total_image is None:
        raise DataError("no images to compute RGB statistics from")
    mean_image = total_image / count
    mean_rgb = mean_image.reshape(3, -1).mean(dim=1)  # [3]
    n_pixels = count * total_image[0].numel()
    cov = second / n_pixels - torch.outer(mean_rgb, mean_rgb)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    return RGBStats(mean_image.float(), mean_rgb.float(), cov.float(), eigvals.clamp_min(0).float(),
                    eigvecs.float(), count)


# -------------------------------------------------------------------------------------------------------- transforms
class ToFloat:
    """``uint8 [3, H, W]`` -> ``float32 [3, H, W]`` in ``[0, 1]``."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return img.to(torch.float32).div_(255.0)

    def __repr__(self) -> str:
        return "ToFloat()"


class SubtractMean:
    """Subtract a mean image ``[3, S, S]`` (the paper's per-pixel mean) or a mean colour ``[3]`` from ``[3, S, S]``.

    Apply it before cropping, on the full ``S x S`` image, as the mean image is defined there.
    """

    def __init__(self, mean: torch.Tensor):
        if mean.dim() not in (1, 3) or mean.shape[0] != 3:
            raise ShapeError(f"mean must be [3] or [3, S, S], got {list(mean.shape)}")
        self.mean = mean.reshape(3, 1, 1) if mean.dim() == 1 else mean  # [3, 1, 1] or [3, S, S]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.mean.dim() == 3 and self.mean.shape[1:] != (1, 1) and self.mean.shape != img.shape:
            raise ShapeError(f"mean image {list(self.mean.shape)} does not match image {list(img.shape)}")
        return img - self.mean

    def __repr__(self) -> str:
        kind = "colour" if self.mean.shape[1:] == (1, 1) else f"image {tuple(self.mean.shape)}"
        return f"SubtractMean({kind})"


def _check_crop(img: torch.Tensor, size: int) -> None:
    if img.shape[-1] < size or img.shape[-2] < size:
        raise ShapeError(f"crop {size} is larger than the image {list(img.shape[-2:])}")


class RandomCropFlip:
    """A random ``size x size`` crop of ``[3, H, W]``, mirrored left-right with probability ``flip_p`` (section 4.1:
    ``(256 - 224)^2 * 2`` variants per 256 image).  Returns a view when not flipped."""

    def __init__(self, size: int, flip_p: float = 0.5, generator: torch.Generator | None = None):
        if size < 1 or not 0.0 <= flip_p <= 1.0:
            raise ConfigError(f"RandomCropFlip(size={size}, flip_p={flip_p}): size >= 1 and 0 <= flip_p <= 1")
        self.size, self.flip_p, self.generator = size, flip_p, generator

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_crop(img, self.size)
        h, w = img.shape[-2:]
        draws = torch.rand(3, generator=self.generator).tolist()
        top, left = int(draws[0] * (h - self.size + 1)), int(draws[1] * (w - self.size + 1))
        crop = img[..., top: top + self.size, left: left + self.size]  # [3, size, size]
        return crop.flip(-1) if draws[2] < self.flip_p else crop

    def __repr__(self) -> str:
        return f"RandomCropFlip(size={self.size}, flip_p={self.flip_p})"


class CenterCrop:
    """The central ``size x size`` patch of ``[3, H, W]`` (the single-crop test of section 6)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_crop(img, self.size)
        h, w = img.shape[-2:]
        top, left = _centre_offset(h, self.size), _centre_offset(w, self.size)
        return img[..., top: top + self.size, left: left + self.size]  # [3, size, size]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class PCALighting:
    """Section 4.1's colour augmentation: add ``eigvecs @ (a * eigvals)`` to every pixel of ``[3, H, W]``, with
    ``a ~ N(0, std)`` drawn once per call.  ``std=0`` is the identity."""

    def __init__(self, eigvals: torch.Tensor, eigvecs: torch.Tensor, std: float = 0.1,
                 generator: torch.Generator | None = None):
        if eigvals.shape != (3,) or eigvecs.shape != (3, 3):
            raise ShapeError(f"eigvals must be [3] and eigvecs [3, 3], got {list(eigvals.shape)}, "
                             f"{list(eigvecs.shape)}")
        if std < 0:
            raise ConfigError(f"PCA lighting std={std} must be >= 0")
        self.eigvals, self.eigvecs = eigvals.float(), eigvecs.float()
        self.std, self.generator = std, generator

    def shift(self) -> torch.Tensor:
        """One draw of the RGB shift ``[3]``."""
        alpha = torch.randn(3, generator=self.generator) * self.std
        return self.eigvecs @ (alpha * self.eigvals)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return img
        return img + self.shift().reshape(3, 1, 1)  # [3, H, W]

    def __repr__(self) -> str:
        return f"PCALighting(std={self.std}, eigvals={[round(v, 5) for v in self.eigvals.tolist()]})"


def build_transform(train: bool, *, crop: int = 227, stats: RGBStats | None = None, mean: str | None = "image",
                    lighting_std: float = 0.1, generator: torch.Generator | None = None) -> Compose:
    """The paper's pipeline on preprocessed ``uint8 [3, S, S]`` images -> ``float32 [3, crop, crop]``.

    Train: to ``[0, 1]``, subtract the mean, random crop + flip, PCA lighting.  Test: the same without randomness
    (centre crop).  ``mean`` is ``"image"`` (per-pixel, the paper), ``"channel"`` or ``None``; mean subtraction and
    lighting need ``stats`` from :func:`compute_rgb_stats` on the training set.
    """
    if mean not in ("image", "channel", None):
        raise ConfigError(f"mean={mean!r} must be 'image', 'channel' or None")
    if stats is None and (mean is not None or (train and lighting_std > 0)):
        raise ConfigError("mean subtraction and PCA lighting need stats=compute_rgb_stats(training images)")
    steps: list[Callable] = [ToFloat()]
    if mean is not None:
        steps.append(SubtractMean(stats.mean_image if mean == "image" else stats.mean_rgb))
    if train:
        steps.append(RandomCropFlip(crop, generator=generator))
        if lighting_std > 0:
            steps.append(PCALighting(stats.eigvals, stats.eigvecs, lighting_std, generator=generator))
    else:
        steps.append(CenterCrop(crop))
    return Compose(steps)


# --------------------------------------------------------------------------------------------------------- ten crop
def ten_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Section 4.1's test-time crops of ``[B, 3, H, W]``: four corners, centre, and their mirror images.

    Returns ``[B, 10, 3, size, size]``: top-left, top-right, bottom-left, bottom-right and centre crops, then the same
    five crops of the mirrored images (torchvision's ``ten_crop`` order; the set is the five crops and their mirrors).
    """
    _check_crop(images, size)
    return torch.cat([_five_crop(images, size), _five_crop(images.flip(-1), size)], dim=1)  # [B, 10, 3, s, s]


def _five_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 3, H, W] -> [B, 5, 3, size, size]``: top-left, top-right, bottom-left, bottom-right, centre."""
    h, w = images.shape[-2:]
    cy, cx = _centre_offset(h, size), _centre_offset(w, size)
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (cy, cx)]
    return torch.stack([images[..., t: t + size, l: l + size] for t, l in corners], dim=1)  # [B, 5, 3, s, s]


def ten_crop_predict(model: torch.nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """Average of the softmax outputs over the ten crops of ``[B, 3, H, W]``: probabilities ``[B, K]``."""
    crops = ten_crop(images, size)
    b = crops.shape[0]
    logits = model(crops.reshape(b * 10, *crops.shape[2:]))  # [B*10, K]
    return logits.softmax(dim=-1).reshape(b, 10, -1).mean(dim=1)  # [B, K]
