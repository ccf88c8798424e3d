"""Numbers over seeds and the verdict rule of ``dlparts ablate``.

A setting's metric is summarized as mean +- sample standard deviation over its seeds.  An effect is the difference of
two settings' means, ``b - a``, with standard error ``sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (or, where one setting's metric
is itself the effect, its mean with standard error ``s / sqrt(n)``); the verdict compares it with what the paper says:

* a direction (the paper's setting is better): **agrees** when the difference exceeds twice its standard error in the
  paper's direction, **disagrees** when it does in the other, **inconclusive** otherwise;
* a bound (the paper says an effect stays within ``bound``, e.g. an accuracy drop of at most 3.8 points):
  **agrees** when ``effect + 2 se <= bound``, **disagrees** when ``effect - 2 se > bound``, **inconclusive** otherwise.

With fewer than two seeds on a side there is no error estimate (``None``: ``null`` in the JSON, ``n/a`` in the
table) and the verdict is inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

RULE = ("agrees / disagrees when the difference of means exceeds twice its standard error sqrt(s_a^2/n_a + "
        "s_b^2/n_b) (sample std over seeds) in the paper's / the other direction, else inconclusive; a bound claim "
        "agrees when effect + 2 se <= bound, disagrees when effect - 2 se > bound")


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (``None`` for one value, so that the JSON holds ``null``, never ``NaN``) and
    count of one setting's values over seeds."""

    mean: float
    std: float | None
    n: int

    def text(self, digits: int = 1) -> str:
        std = "n/a" if self.std is None else f"{self.std:.{digits}f}"
        return f"{self.mean:.{digits}f} +- {std}"


def stat(values: Sequence[float]) -> Stat:
    """:class:`Stat` of ``values`` (at least one)."""
    n = len(values)
    if n == 0:
        raise ValueError("stat() needs at least one value")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Stat(mean, std, n)


@dataclass(frozen=True)
class Effect:
    """The difference ``b.mean - a.mean`` and its standard error (``None`` without two seeds on each side)."""

    diff: float
    se: float | None


def effect(a: Stat, b: Stat | None = None) -> Effect:
    """``b - a``; without ``b``, ``a`` itself (an experiment whose one setting measures the effect, such as an
    accuracy drop), with standard error ``s_a / sqrt(n_a)``."""
    if b is None:
        return Effect(a.mean, None if a.std is None else a.std / math.sqrt(a.n))
    if a.std is None or b.std is None:
        return Effect(b.mean - a.mean, None)
    return Effect(b.mean - a.mean, math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n))


def verdict(e: Effect, *, sign: int = 0, bound: float | None = None) -> str:
    """``"agrees"``, ``"disagrees"`` or ``"inconclusive"`` (module docstring).  ``sign``: +1 when the paper says the
    effect is positive, -1 negative; ``bound``: the paper's largest effect (give one of the two)."""
    if (sign == 0) == (bound is None):
        raise ValueError("verdict() takes either sign=+1/-1 or bound=")
    if e.se is None:
        return "inconclusive"
    if bound is not None:
        if e.diff + 2 * e.se <= bound:
            return "agrees"
        return "disagrees" if e.diff - 2 * e.se > bound else "inconclusive"
    if abs(e.diff) > 2 * e.se:
        return "agrees" if e.diff * sign > 0 else "disagrees"
    return "inconclusive"
