"""Grid-aware draws and snapping for Optuna distributions (samplers, spaces, benchmarks).

Example:
    >>> import numpy as np
    >>> from optuna.distributions import IntDistribution
    >>> d = IntDistribution(1, 10)
    >>> snap(d, 12.7), 1 <= draw(d, np.random.default_rng(0)) <= 10
    (10, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution


def snap(dist: BaseDistribution, v: float) -> Any:
    """An internal (linear) value rounded to the distribution's grid, clipped, in external form
    (a categorical's internal value is the choice index)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(min(max(round(v), 0), len(dist.choices) - 1))]
    if dist.step is not None:
        v = dist.low + round((v - dist.low) / dist.step) * dist.step
    v = min(max(v, dist.low), dist.high)
    return int(round(v)) if isinstance(dist, IntDistribution) else float(v)


def draw(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    """One uniform draw: over the grid for stepped distributions, in log space for log ones
    (an int's end values are padded half a step so they are as likely as their neighbours)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if dist.log:
        pad = 0.5 if isinstance(dist, IntDistribution) else 0.0
        return snap(dist, math.exp(rng.uniform(*np.log([dist.low - pad, dist.high + pad]))))
    if dist.step is not None:
        return snap(dist, dist.low + dist.step * int(rng.integers(round((dist.high - dist.low) / dist.step) + 1)))
    return float(rng.uniform(dist.low, dist.high))
