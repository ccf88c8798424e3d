"""The embedded image dataset: shapes and arrangements drawn as real image files, deterministic from a seed.

Ten classes, told apart by **shape and spatial arrangement**: ``disk``, ``square``, ``triangle``, ``star``,
``cross``, ``ring``, ``pair`` (two dots), ``row3`` (three dots in a line), ``dots3`` (three dots in a triangle),
``halfdisk``.  Some share most of their outline (disk, ring and halfdisk; pair, row3 and dots3), so a part decides.
Within every class the colour of the shape and a texture on it, its
size (radius ``_RADIUS`` of the image), position and rotation, and the background (a random two-colour gradient with
a random stripe or checker texture and pixel noise) are drawn at random; distractor strokes (lines and open arcs)
clutter the image, and a share of the shapes is cut by an occluding edge, so that no single pixel statistic
separates the classes and some images are truly ambiguous.  The knobs below are calibrated so that
``alexnet_small_cpu`` lands at 80-95% test top-1, not at saturation (``benchmarks/datasets_headroom.py``).

The files are written in the ImageNet layout, ``<root>/train/<class>/NNNNN.png`` and ``<root>/val/<class>/...``, so
:class:`dlparts.data.imagefolder.ImageFolderDataset` reads them like any image folder.  They are generated once into
the cache folder (env ``DLPARTS_CACHE``, default ``~/.cache/dlparts``) and reused; the defaults (3,500 images of
64x64) take about 30 s of one CPU core, the presets' 48x48 about half that.  Nothing is downloaded.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dlparts.data._cache import cache_root
from dlparts.errors import ConfigError

SHAPES = ("disk", "square", "triangle", "star", "cross", "ring", "pair", "row3", "dots3", "halfdisk")
_SUPERSAMPLE = 2  # draw at twice the size and reduce, for anti-aliased edges
_VERSION = 5  # bump when the drawing changes, so old caches are not reused
# The difficulty knobs (calibrated so that alexnet_small_cpu lands at 80-95% test top-1, see
# benchmarks/datasets_headroom.py): shape radius range as a fraction of the image, the share of darker-than-background
# shapes, the least brightness contrast, the largest texture amplitude (background and fill), at most how many clutter
# strokes, and the share of images with an occluding bar.
_RADIUS = (0.22, 0.42)
_DARK = 0.0
_CONTRAST = 60.0
_TEXTURE = 10.0
_CLUTTER = 2
_OCCLUDED = 0.15


def _regular(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    """``[n, 2]`` vertices of a regular polygon of circumradius ``radius`` centred on 0."""
    angles = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _outline(name: str) -> tuple[np.ndarray | None, list[tuple[float, float, float]]]:
    """A shape in unit coordinates (extent about 1): a polygon ``[V, 2]`` or None, and dots ``(x, y, radius)``."""
    if name == "square":
        return _regular(4, 1.0, math.pi / 4), []
    if name == "triangle":
        return _regular(3, 1.0, -math.pi / 2), []
    if name == "star":
        outer, inner = _regular(5, 1.0, -math.pi / 2), _regular(5, 0.42, -math.pi / 2 + math.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(10, 2), []  # [10, 2] alternating tips and notches
    if name == "cross":
        a = 0.33
        return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a),
                         (-1, -a), (-a, -a)], dtype=float), []
    if name == "halfdisk":
        angles = np.linspace(0, math.pi, 24)
        return np.stack([np.cos(angles), np.sin(angles) - 0.4], axis=1), []
    if name == "pair":
        return None, [(-0.6, 0, 0.36), (0.6, 0, 0.36)]
    if name == "row3":
        return None, [(-0.72, 0, 0.26), (0, 0, 0.26), (0.72, 0, 0.26)]
    if name == "dots3":
        return None, [(float(x), float(y), 0.3) for x, y in _regular(3, 0.7, -math.pi / 2)]
    return None, []  # disk and ring are drawn directly


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random texture in ``[-1, 1]``, ``float [side, side]``: stripes of random direction and period, or (for a
    third of the draws) a checkerboard made of two such stripe sets."""
    ys, xs = np.mgrid[0:side, 0:side]

    def wave() -> np.ndarray:
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.06, 0.2) * side
        return np.sin(2 * math.pi * (np.cos(angle) * xs + np.sin(angle) * ys) / period + rng.uniform(0, 2 * math.pi))

    texture = wave()
    return np.sign(texture * wave()) if rng.random() < 1 / 3 else texture


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random linear gradient between two random colours, a texture of random strength and pixel noise:
    ``float [side, side, 3]`` (0..255 before clipping)."""
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:side, 0:side] / (side - 1)
    t = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) * math.sqrt(0.5) + 0.5  # [side, side] in [0, 1]
    img = c0 + t[..., None] * (c1 - c0)  # [side, side, 3]
    img += rng.uniform(0, _TEXTURE) * _texture(rng, side)[..., None] * rng.uniform(0.3, 1, 3)
    return img + rng.normal(0, rng.uniform(2, 6), img.shape)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _foreground(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour ``[3]`` whose brightness differs from the background's mean by at least ``_CONTRAST``, darker
    for a share ``_DARK`` of the draws (where the background leaves room), so edge polarity tells little."""
    mean = float(_luma(background.reshape(-1, 3)).mean())
    room_dark, room_light = mean - _CONTRAST >= 10, mean + _CONTRAST <= 245
    darker = room_dark and (not room_light or rng.random() < _DARK)
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        if (mean - _luma(colour) if darker else _luma(colour) - mean) >= _CONTRAST:
            break
    return colour


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, side: int) -> None:
    """Up to ``_CLUTTER`` distractor strokes drawn into the mask ``draw``: thin lines and open arcs, never a closed
    shape of any class."""
    for _ in range(rng.integers(0, _CLUTTER + 1)):
        x, y = rng.uniform(0, side, 2)
        length, angle = rng.uniform(0.15, 0.5) * side, rng.uniform(0, 2 * math.pi)
        width = max(1, round(rng.uniform(0.01, 0.03) * side))
        if rng.random() < 0.5:
            draw.line((x, y, x + length * math.cos(angle), y + length * math.sin(angle)), fill=255, width=width)
        else:
            start = rng.uniform(0, 360)
            draw.arc((x - length / 2, y - length / 2, x + length / 2, y + length / 2), start,
                     start + rng.uniform(60, 200), fill=255, width=width)


def _shape_mask(name: str, rng: np.random.Generator, side: int) -> Image.Image:
    """The class's shape as a mask ``L [side, side]`` with random size (radius ``_RADIUS`` of the image), place and
    rotation; for a share ``_OCCLUDED`` of the draws a bar across it is cut out (an occluder in the background's
    colour), hiding up to about a quarter of the shape."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    radius = rng.uniform(*_RADIUS) * side
    cx, cy = rng.uniform(radius + 1, side - radius - 1, 2)
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    polygon, dots = _outline(name)
    if name == "disk":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    elif name == "ring":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=255,
                     width=max(2, round(radius * 0.35)))
    if polygon is not None:
        points = polygon @ rot.T * radius + (cx, cy)  # [V, 2] in pixels
        draw.polygon([tuple(p) for p in points], fill=255)
    for x, y, r in dots:
        px, py = rot @ (x, y) * radius + (cx, cy)
        rr = r * radius
        draw.ellipse((px - rr, py - rr, px + rr, py + rr), fill=255)
    if rng.random() < _OCCLUDED:
        angle, offset = rng.uniform(0, math.pi), rng.uniform(0.45, 0.8) * radius
        normal = np.array([math.cos(angle), math.sin(angle)])
        along = np.array([-normal[1], normal[0]]) * 2 * side
        near = np.array([cx, cy]) + normal * offset  # the bar covers the shape beyond this line
        far = near + normal * 2 * side
        draw.polygon([tuple(near - along), tuple(near + along), tuple(far + along), tuple(far - along)], fill=0)
    return mask


def render(name: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One ``size x size`` RGB image of class ``name``: the shape with random colour (lighter or darker than the
    background), texture, size, position, rotation and occlusion, over a textured background with clutter."""
    if name not in SHAPES:
        raise ConfigError(f"shape {name!r} is not one of {', '.join(SHAPES)}")
    side = size * _SUPERSAMPLE
    img = _background(rng, side)
    clutter = Image.new("L", (side, side), 0)
    _clutter(rng, ImageDraw.Draw(clutter), side)
    for mask, colour in ((clutter, rng.uniform(0, 255, 3)), (_shape_mask(name, rng, side), _foreground(rng, img))):
        fill = colour + rng.uniform(0, _TEXTURE) * _texture(rng, side)[..., None]  # [side, side, 3] textured fill
        alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255  # [side, side, 1]
        img = img * (1 - alpha) + fill * alpha
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).reduce(_SUPERSAMPLE)


def make_synthetic_images(root: str | Path | None = None, *, seed: int = 0, num_classes: int = 10,
                          train_per_class: int = 300, val_per_class: int = 50, size: int = 64,
                          fmt: str = "png") -> Path:
    """Write (once) the embedded dataset and return its root, holding ``train/<class>/`` and ``val/<class>/``.

    ``root`` defaults to ``<cache_root()>/synthetic_images/<settings>``; a root already complete (marked by a
    ``.complete`` file) is reused as is.  The images depend only on the arguments: the same seed gives the same
    files, byte for byte for PNG.  ``fmt`` is ``"png"`` or ``"jpeg"``.
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ConfigError(f"num_classes={num_classes} must be between 2 and {len(SHAPES)}")
    if train_per_class < 1 or val_per_class < 1:
        raise ConfigError(f"train_per_class={train_per_class} and val_per_class={val_per_class} must be >= 1")
    if size < 16:
        raise ConfigError(f"size={size} must be at least 16 pixels")
    if fmt not in ("png", "jpeg"):
        raise ConfigError(f"fmt={fmt!r} must be 'png' or 'jpeg'")
    if root is None:
        name = f"v{_VERSION}-seed{seed}-c{num_classes}-n{train_per_class}-{val_per_class}-s{size}-{fmt}"
        root = cache_root() / "synthetic_images" / name
    root = Path(root)
    if (root / ".complete").exists():
        return root
    staging = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    rng = np.random.default_rng(seed)
    ext = "png" if fmt == "png" else "jpg"
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in SHAPES[:num_classes]:
            folder = staging / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                render(name, rng, size).save(folder / f"{i:05d}.{ext}", **({"quality": 90} if fmt == "jpeg" else {}))
    (staging / ".complete").write_text("complete\n")
    try:
        staging.rename(root)
    except OSError:  # another process finished first; its files are the same
        shutil.rmtree(staging, ignore_errors=True)
    return root
