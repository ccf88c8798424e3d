"""The embedded image dataset: shapes and arrangements drawn as real image files, deterministic from a seed.

Ten classes, told apart only by **shape and spatial arrangement**: ``disk``, ``square``, ``triangle``, ``star``,
``cross``, ``ring``, ``pair`` (two dots), ``row3`` (three dots in a line), ``dots3`` (three dots in a triangle),
``halfdisk``.  Within every class the colour of the shape, its size, position and rotation, and the background (a
random two-colour gradient with pixel noise) are drawn at random, so no single pixel statistic separates the classes.
Shapes are always lighter than their background, so that edges have one polarity: that keeps the task about shape
and lets a small network learn it in minutes on a CPU.

The files are written in the ImageNet layout, ``<root>/train/<class>/NNNNN.png`` and ``<root>/val/<class>/...``, so
:class:`dlparts.data.imagefolder.ImageFolderDataset` reads them like any image folder.  They are generated once into
the cache folder (env ``DLPARTS_CACHE``, default ``~/.cache/dlparts``) and reused; the defaults (3,500 images of
64x64) take a few seconds.  Nothing is downloaded.
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
_VERSION = 3  # bump when the drawing changes, so old caches are not reused


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


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random linear gradient between two random colours, with mild noise: ``uint8 [side, side, 3]``."""
    c0, c1 = rng.uniform(0, 140, 3), rng.uniform(0, 140, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:side, 0:side] / (side - 1)
    t = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) * math.sqrt(0.5) + 0.5  # [side, side] in [0, 1]
    img = c0 + t[..., None] * (c1 - c0)  # [side, side, 3]
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _foreground(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A random colour clearly lighter than the background's lightest corner, so that every edge of every shape has
    the same polarity (the hue still varies freely)."""
    floor = max(_luma(background[0, 0]), _luma(background[-1, -1]), _luma(background[0, -1]),
                _luma(background[-1, 0])) + 60
    colour = rng.uniform(0, 255, 3)
    for _ in range(100):
        if _luma(colour) >= floor:
            break
        colour = rng.uniform(0, 255, 3)
    return tuple(int(c) for c in colour)


def render(name: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One ``size x size`` RGB image of class ``name`` with random colour, size, position, rotation, background."""
    if name not in SHAPES:
        raise ConfigError(f"shape {name!r} is not one of {', '.join(SHAPES)}")
    side = size * _SUPERSAMPLE
    bg = _background(rng, side)
    fill = _foreground(rng, bg)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    radius = rng.uniform(0.25, 0.42) * side
    cx, cy = rng.uniform(radius + 1, side - radius - 1, 2)
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    polygon, dots = _outline(name)
    if name == "disk":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif name == "ring":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=fill,
                     width=max(2, round(radius * 0.35)))
    if polygon is not None:
        points = polygon @ rot.T * radius + (cx, cy)  # [V, 2] in pixels
        draw.polygon([tuple(p) for p in points], fill=fill)
    for x, y, r in dots:
        px, py = rot @ (x, y) * radius + (cx, cy)
        rr = r * radius
        draw.ellipse((px - rr, py - rr, px + rr, py + rr), fill=fill)
    return img.reduce(_SUPERSAMPLE)


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
