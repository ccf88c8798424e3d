"""What a depth sensor sees of an embedded object, and the local details that tell the embedded classes apart.

Used by :mod:`dlparts.data.synthetic` to make its classification set hard the way ModelNet and real scans are:

- local detail on a surface sample ``xyz, nrm [P, 3]``: bumps and ridges (:func:`bumps`, :func:`ridges`: the surface
  moved along its normal by a height field ``h``, the normal tilted by ``h``'s gradient along the surface, first
  order) and through-holes (:func:`drill`: the points within a radius of a line removed);
- a single-view scan (:func:`visible`): the points a sensor looking from one direction sees: back faces culled by
  their normals, and parts hidden behind others (self-occlusion) found with a coarse depth buffer;
- non-uniform density (:func:`uneven_choice`): points kept with a probability that varies smoothly across the object,
  as a scanner's density falls off with distance and angle.

Everything is numpy and draws from the ``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def displace(xyz: np.ndarray, nrm: np.ndarray, height: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The surface ``xyz [P, 3]`` moved by ``height [P]`` along its unit normals ``nrm [P, 3]``, and its new normals:
    ``nrm`` minus the tangential part of the height's gradient ``grad [P, 3]``, normalized."""
    tangential = grad - (grad * nrm).sum(axis=1, keepdims=True) * nrm  # [P, 3]
    return xyz + height[:, None] * nrm, _unit(nrm - tangential)


def bumps(rng: np.random.Generator, xyz: np.ndarray, nrm: np.ndarray, count: int, amplitude: tuple[float, float],
          width: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``count`` Gaussian bumps (heights drawn from ``amplitude``, widths from ``width``) centred on random surface
    points."""
    centres = xyz[rng.choice(len(xyz), count, replace=False)]  # [K, 3]
    amp, sigma = rng.uniform(*amplitude, count), rng.uniform(*width, count)  # [K]
    offset = xyz[:, None, :] - centres[None]  # [P, K, 3]
    g = amp * np.exp(-(offset ** 2).sum(axis=2) / (2 * sigma ** 2))  # [P, K]
    grad = (-g[:, :, None] * offset / sigma[:, None] ** 2).sum(axis=1)  # [P, 3]
    return displace(xyz, nrm, g.sum(axis=1), grad)


def ridges(rng: np.random.Generator, xyz: np.ndarray, nrm: np.ndarray, axis: int, count: tuple[int, int],
           amplitude: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Narrow parallel ridges across coordinate ``axis`` (rings around a cylinder whose axis it is), ``count`` of
    them over the object's extent; only surface facing away from the axis (``|n_axis| < 0.5``) is raised."""
    lo, hi = xyz[:, axis].min(), xyz[:, axis].max()
    k = 2 * np.pi * rng.integers(*count, endpoint=True) / max(hi - lo, 1e-9)
    phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(*amplitude)
    u = k * (xyz[:, axis] - lo) + phase  # [P]
    crest = (1 + np.cos(u)) / 2  # [P] in [0, 1], 1 on a ridge
    side = np.abs(nrm[:, axis]) < 0.5  # [P]
    height = side * amp * crest ** 4
    grad = np.zeros_like(xyz)
    grad[:, axis] = side * amp * 4 * crest ** 3 * (-np.sin(u) / 2) * k
    return displace(xyz, nrm, height, grad)


def drill(xyz: np.ndarray, origin: np.ndarray, direction: np.ndarray, radius: float) -> np.ndarray:
    """``bool [P]``: the points outside a through-hole of ``radius`` along the line ``origin + t * direction``."""
    d = _unit(np.asarray(direction, dtype=np.float64))
    rel = xyz - origin  # [P, 3]
    return np.linalg.norm(rel - (rel @ d)[:, None] * d, axis=1) > radius


def visible(xyz: np.ndarray, nrm: np.ndarray, view: np.ndarray, cells: int = 32,
            depth_tolerance: float = 0.15) -> np.ndarray:
    """``bool [P]``: the points of the cloud ``xyz [P, 3]`` (about unit size, unit normals ``nrm [P, 3]``) that an
    orthographic sensor looking along ``view`` sees: facing it (back faces culled by the normal), and not hidden
    behind another part.  For that, points fall into ``cells x cells`` pixels across the view; a point is hidden when
    it lies more than ``depth_tolerance`` behind the nearest point facing the sensor in its pixel (so surfaces seen
    at a grazing angle thin out, as they do in real scans)."""
    w = _unit(np.asarray(view, dtype=np.float64))
    helper = np.array([0.0, 1.0, 0.0]) if abs(w[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    a = _unit(np.cross(w, helper))
    b = np.cross(w, a)
    facing = nrm @ w < 0  # [P]
    depth = np.where(facing, xyz @ w, np.inf)  # [P], larger is farther; back faces hide nothing
    uv = np.stack([xyz @ a, xyz @ b], axis=1)  # [P, 2] image-plane coordinates
    lo, span = uv.min(axis=0), np.maximum(np.ptp(uv, axis=0).max(), 1e-9)
    pix = np.minimum(((uv - lo) / span * cells).astype(np.int64), cells - 1)  # [P, 2]
    nearest = np.full((cells, cells), np.inf)  # [cells, cells] depth buffer
    np.minimum.at(nearest, (pix[:, 0], pix[:, 1]), depth)
    return facing & (depth <= nearest[pix[:, 0], pix[:, 1]] + depth_tolerance)


def uneven_choice(rng: np.random.Generator, xyz: np.ndarray, n: int, strength: float) -> np.ndarray:
    """``int64 [n]`` indices into ``xyz [P, 3]`` drawn without replacement (then with, when ``P < n``) with weights
    ``exp(strength * x . d)`` along a random direction ``d``: the density varies by ``e^(2 strength)`` across a unit
    object."""
    d = _unit(rng.normal(size=3))
    logits = strength * (xyz @ d)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    if len(xyz) >= n:
        return rng.choice(len(xyz), n, replace=False, p=p)
    return np.concatenate([rng.permutation(len(xyz)), rng.choice(len(xyz), n - len(xyz), p=p)])
