"""Point-cloud augmentations of PointNet (Qi et al., CVPR 2017) and PointNet++ (Qi et al., NeurIPS 2017).

Each is a small class: settings in ``__init__``, work in ``__call__(sample) -> sample`` on a dataset item (a dict
with ``points [N, C]``, xyz in channels 0..2 and normals in 3..5 when ``normals=True``, and optionally ``seg [N]``),
and a ``__repr__``.  Rotations turn the normals with the points; per-point labels follow permutations and dropout.
Randomness comes from the ``generator`` given (a ``torch.Generator``), or torch's global one when None (which
DataLoader workers seed apart).  :func:`build_transforms` composes them from a spec.

The defaults are the papers' training settings: rotation about the up axis, rotation perturbation (sigma 0.06, clip
0.18), anisotropic scaling in [0.8, 1.25], shift in [-0.1, 0.1], jitter (sigma 0.01, clip 0.05), and PointNet++'s
random input dropout (a per-cloud ratio in [0, 0.875]; dropped points become copies of the first point).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from dlparts.data.clouds import normalize_unit_sphere
from dlparts.errors import ConfigError

_AXES = {"x": 0, "y": 1, "z": 2}


class _Transform:
    """Base: holds the generator and prints its settings."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def _settings(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "generator"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, dtype=torch.float64)

    def _randn(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, dtype=torch.float64)


def _rotate(sample: dict, matrix: torch.Tensor, normals: bool) -> dict:
    """Apply ``matrix [3, 3]`` (row vectors: ``p @ matrix``) to xyz and, with ``normals``, to channels 3..5."""
    points = sample["points"]
    rot = matrix.to(points.dtype)
    parts = [points[:, :3] @ rot]
    if normals:
        parts.append(points[:, 3:6] @ rot)
    parts.append(points[:, 6 if normals else 3:])
    return {**sample, "points": torch.cat(parts, dim=1)}


def axis_rotation(angle: float, axis: int) -> torch.Tensor:
    """``float64 [3, 3]`` rotation by ``angle`` about coordinate ``axis``, for row vectors."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    m = torch.eye(3, dtype=torch.float64)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, s, -s, c
    return m


class RotateUp(_Transform):
    """Rotation by a uniform angle in ``[0, max_angle)`` about the up axis (``"y"`` for ModelNet, ``"z"`` S3DIS)."""

    def __init__(self, axis: str = "y", max_angle: float = 2 * math.pi, normals: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__(generator)
        if axis not in _AXES:
            raise ConfigError(f"RotateUp: axis must be x, y or z, got {axis!r}")
        self.axis, self.max_angle, self.normals = axis, float(max_angle), normals

    def __call__(self, sample: dict) -> dict:
        angle = float(self._rand(1)) * self.max_angle
        return _rotate(sample, axis_rotation(angle, _AXES[self.axis]), self.normals)


class RotateSO3(_Transform):
    """A rotation uniform over SO(3) (QR of a Gaussian matrix with the sign fixed; Mezzadri 2007)."""

    def __init__(self, normals: bool = False, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.normals = normals

    def __call__(self, sample: dict) -> dict:
        q, r = torch.linalg.qr(self._randn(3, 3))
        q = q * torch.sign(torch.diagonal(r))[None, :]
        if torch.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]  # a reflection: flip one axis to make it a proper rotation
        return _rotate(sample, q, self.normals)


class RotatePerturb(_Transform):
    """Small rotation about x, y and z, each angle ``clip(N(0, sigma), -clip, clip)`` (PointNet++ provider.py)."""

    def __init__(self, sigma: float = 0.06, clip: float = 0.18, normals: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__(generator)
        if sigma < 0 or clip < 0:
            raise ConfigError(f"RotatePerturb: sigma={sigma} and clip={clip} must be >= 0")
        self.sigma, self.clip, self.normals = float(sigma), float(clip), normals

    def __call__(self, sample: dict) -> dict:
        angles = (self._randn(3) * self.sigma).clamp(-self.clip, self.clip).tolist()
        m = axis_rotation(angles[0], 0) @ axis_rotation(angles[1], 1) @ axis_rotation(angles[2], 2)
        return _rotate(sample, m, self.normals)


class ScaleAniso(_Transform):
    """Scale x, y and z by factors drawn uniformly from ``[low, high]`` (normals are left unchanged)."""

    def __init__(self, low: float = 0.8, high: float = 1.25, generator: torch.Generator | None = None):
        super().__init__(generator)
        if not 0 < low <= high:
            raise ConfigError(f"ScaleAniso: need 0 < low <= high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def __call__(self, sample: dict) -> dict:
        factors = self.low + (self.high - self.low) * self._rand(3)
        points = sample["points"].clone()
        points[:, :3] *= factors.to(points.dtype)
        return {**sample, "points": points}


class Shift(_Transform):
    """Translate xyz by a vector uniform in ``[-shift, shift]^3``."""

    def __init__(self, shift: float = 0.1, generator: torch.Generator | None = None):
        super().__init__(generator)
        if shift < 0:
            raise ConfigError(f"Shift: shift must be >= 0, got {shift}")
        self.shift = float(shift)

    def __call__(self, sample: dict) -> dict:
        offset = (2 * self._rand(3) - 1) * self.shift
        points = sample["points"].clone()
        points[:, :3] += offset.to(points.dtype)
        return {**sample, "points": points}


class Jitter(_Transform):
    """Add ``clip(N(0, sigma), -clip, clip)`` to every coordinate independently (PointNet)."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05, generator: torch.Generator | None = None):
        super().__init__(generator)
        if sigma < 0 or clip < 0:
            raise ConfigError(f"Jitter: sigma={sigma} and clip={clip} must be >= 0")
        self.sigma, self.clip = float(sigma), float(clip)

    def __call__(self, sample: dict) -> dict:
        points = sample["points"].clone()
        noise = (self._randn(len(points), 3) * self.sigma).clamp(-self.clip, self.clip)  # [N, 3]
        points[:, :3] += noise.to(points.dtype)
        return {**sample, "points": points}


class RandomDropout(_Transform):
    """PointNet++ random input dropout: draw ``ratio ~ U[0, max_ratio]``, drop each point with that probability.

    Dropped points (and their ``seg`` labels) are replaced by the first point, so the count stays ``N``.
    """

    def __init__(self, max_ratio: float = 0.875, generator: torch.Generator | None = None):
        super().__init__(generator)
        if not 0 <= max_ratio < 1:
            raise ConfigError(f"RandomDropout: max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = float(max_ratio)

    def __call__(self, sample: dict) -> dict:
        n = len(sample["points"])
        ratio = float(self._rand(1)) * self.max_ratio
        drop = self._rand(n) <= ratio  # [N] bool
        if ratio == 0:
            return sample
        source = torch.where(drop, torch.zeros(n, dtype=torch.long), torch.arange(n))  # [N] index to copy from
        return _take(sample, source)


class Shuffle(_Transform):
    """Permute the points (and their ``seg`` labels) uniformly at random."""

    def __call__(self, sample: dict) -> dict:
        return _take(sample, torch.randperm(len(sample["points"]), generator=self.generator))


class Normalize(_Transform):
    """Centre xyz on its mean and scale it into the unit sphere (no randomness)."""

    def __call__(self, sample: dict) -> dict:
        return {**sample, "points": normalize_unit_sphere(sample["points"])}


def _take(sample: dict, index: torch.Tensor) -> dict:
    """Reorder ``points [N, C]`` and ``seg [N]`` by ``index [N]``; other entries are unchanged."""
    out = {**sample, "points": sample["points"][index]}  # [N, C]
    if "seg" in sample:
        out["seg"] = sample["seg"][index]  # [N]
    return out


class Compose:
    """Apply callables in order: point transforms on a sample dict here, image transforms on ``[3, H, W]`` tensors
    in :mod:`dlparts.data.images`."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, sample):
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


TRANSFORMS = {"rotate_up": RotateUp, "rotate_so3": RotateSO3, "rotate_perturb": RotatePerturb,
              "scale": ScaleAniso, "shift": Shift, "jitter": Jitter, "dropout": RandomDropout,
              "shuffle": Shuffle, "normalize": Normalize}


def build_transforms(spec, *, generator: torch.Generator | None = None, seed: int | None = None) -> Compose:
    """A :class:`Compose` from ``spec``: a comma-separated string (``"rotate_up,scale,jitter"``), or a list of names
    and one-key mappings ``{"jitter": {"sigma": 0.02}}``.  Names: ``TRANSFORMS``.  All share one generator
    (``generator``, or a new one seeded by ``seed``, or torch's global one when both are None).
    """
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    if spec is None:
        spec = []
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    transforms = []
    for item in spec:
        name, options = (item, {}) if isinstance(item, str) else _one_entry(item)
        if name not in TRANSFORMS:
            raise ConfigError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
        try:
            transforms.append(TRANSFORMS[name](**options, generator=generator))
        except TypeError as exc:
            raise ConfigError(f"transform {name!r}: bad options {options} ({exc})") from None
    return Compose(transforms)


def _one_entry(item) -> tuple[str, dict]:
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(f"a transform is a name or a one-key mapping {{name: {{options}}}}, got {item!r}")
    name, options = next(iter(item.items()))
    return name, dict(options or {})
