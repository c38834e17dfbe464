"""Constraint-aware proposals: let a sampler repair an infeasible vector before it is tried.

Under a tight budget (say 35% of the base's FLOPs) almost no uniformly drawn channel
genome is feasible, so a sampler that only learns from recorded infeasible trials wastes
its whole budget. The driver therefore hands every strategy that supports it a
:class:`FeasibilityHint`: the space's distributions, a cheap cost check (the run's pricer:
no model is built) and each gene's direction (``Space.directions``: does raising it raise
or lower cost?). A proposal that breaks a constraint is *repaired*: numeric genes are
stepped one grid step at a time the way that lowers cost, a gene picked with probability
proportional to its room on that side, until the vector is feasible; genes of unknown
direction (categoricals) are left alone. The repair is deterministic given the RNG, so
resumed runs stay exact. A vector that cannot be repaired within ``max_steps`` is
proposed as is and recorded infeasible by the driver, never trained.

Example:
    >>> from optuna.distributions import IntDistribution
    >>> import numpy as np
    >>> space = {"a": IntDistribution(1, 10), "sparsity": IntDistribution(0, 9)}
    >>> cost = lambda p: p["a"] * (10 - p["sparsity"])  # more sparsity, less cost
    >>> hint = FeasibilityHint(space, lambda p: cost(p) <= 20, directions={"a": 1, "sparsity": -1})
    >>> fixed = hint.repair({"a": 9, "sparsity": 2}, np.random.default_rng(0))
    >>> cost(fixed) <= 20, fixed["sparsity"] >= 2
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution


class FeasibilityHint:
    """The space's distributions plus ``feasible(params) -> bool`` (cheap, model-free), each
    gene's cost direction (``+1``: raising it raises cost, the default; ``-1``: lowers it;
    ``0``: unknown, never stepped), and optionally ``key(params)``: the architecture a vector
    stands for, where several vectors map to one (a strategy's mutant should differ from
    its parent there, not in raw params)."""

    def __init__(self, space: dict[str, BaseDistribution], feasible: Callable[[dict[str, Any]], bool],
                 max_steps: int = 2000, key: Callable[[dict[str, Any]], Any] | None = None,
                 directions: dict[str, int] | None = None):
        self.space = dict(space)
        self._feasible = feasible
        self.max_steps = max_steps
        self.key = key
        self.directions = {n: 1 for n in self.space} if directions is None else \
            {n: int(directions.get(n, 0)) for n in self.space}

    def feasible(self, params: dict[str, Any]) -> bool:
        return all(n in params for n in self.space) and bool(self._feasible(params))

    def repair(self, params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A feasible vector near ``params`` (or ``params`` itself if none is found)."""
        if not all(n in params for n in self.space) or self.feasible(params):
            return params
        out = dict(params)
        names = [n for n, d in self.space.items()
                 if isinstance(d, (IntDistribution, FloatDistribution)) and self.directions[n]]
        for _ in range(self.max_steps):
            heights = np.array([self._room(n, out[n]) for n in names], dtype=float)
            if heights.sum() <= 0:
                return params
            name = names[int(rng.choice(len(names), p=heights / heights.sum()))]
            out[name] = self._step(name, out[name])
            if self.feasible(out):
                return out
        return params

    def _room(self, name: str, value: Any) -> float:
        """How far the gene can move the cheap way."""
        d = self.space[name]
        if self.directions[name] > 0:
            return max(0.0, float(value) - float(d.low))
        return max(0.0, float(d.high) - float(value))

    def _step(self, name: str, value: Any) -> Any:
        """One grid step the cheap way."""
        d, way = self.space[name], -self.directions[name]
        if isinstance(d, IntDistribution):
            return min(d.high, max(d.low, int(value) + way * (d.step or 1)))
        step = d.step if d.step else (d.high - d.low) / 20
        return min(d.high, max(d.low, float(value) + way * step))


def attach(sampler: Any, hint: FeasibilityHint | None) -> bool:
    """Give ``hint`` to a sampler that accepts one; returns whether it did."""
    method = getattr(sampler, "set_feasibility", None)
    if method is None:
        return False
    method(hint)
    return True
